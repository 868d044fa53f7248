//! The HTTP gateway. Routes (see `docs/http-api.md`):
//!
//! - `POST /v1/functions` — body: module bytes. 201 `{"id", "size", "manifest"}`, or 200
//!   if already stored.
//! - `GET /v1/functions/{id}` — manifest and size.
//! - `POST /v1/call/{ref}` — body: input bytes. 200 with the output bytes; headers
//!   `kith-function`, `kith-fuel-used`, `kith-executed-by`, `kith-wall-us`. `{ref}` is
//!   a function id or an alias `NS/NAME@CHANNEL` (header `kith-route-key` for splits).
//! - `POST /v1/keys`, `GET /v1/keys` — publisher keys.
//! - `/v1/aliases/…` — set (PUT), promote, rollback, show, history, resolve, list,
//!   and import of signed records.
//! - `GET /v1/status` — JSON status.
//!
//! Errors are JSON `{"error": {"kind": "...", "message": "..."}}`.
//!
//! Every request passes the guard first (`guard.rs`): a cap on requests in flight,
//! the `Host` check, the cross-origin check, and the API token where it is needed.

mod aliases;
mod calls;
pub mod guard;
mod state;
pub mod token;

pub use calls::ROUTE_KEY_HEADER;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use kith_protocol::module::ModuleError;
use serde_json::json;

use crate::node::{CallError, Node, PublishError};
use crate::runtime::InvokeError;
use crate::store::StoreError;

/// An API error: status, kind and message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    /// The peer that ran the call and reported the error, when it was not this node.
    peer: Option<String>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            peer: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"kind": self.kind, "message": self.message});
        if let Some(peer) = &self.peer {
            error["peer"] = json!(peer);
        }
        let mut resp = (self.status, axum::Json(json!({ "error": error }))).into_response();
        if let Some(value) = self.peer.and_then(|p| HeaderValue::from_str(&p).ok()) {
            resp.headers_mut().insert("kith-executed-by", value);
        }
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        let msg = e.to_string();
        match e {
            PublishError::Invalid(ModuleError::TooLarge { .. }) => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "module_too_large", msg)
            }
            PublishError::Invalid(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_module", msg)
            }
            PublishError::Store(StoreError::OverBudget { .. }) => {
                Self::new(StatusCode::INSUFFICIENT_STORAGE, "store_full", msg)
            }
            PublishError::Store(_) => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", msg),
            PublishError::Compile(e) => e.into(),
        }
    }
}

/// The HTTP status of an error kind (`docs/http-api.md`).
pub fn status_of(kind: &str) -> StatusCode {
    use StatusCode as S;
    match kind {
        "bad_reference" | "bad_request" => S::BAD_REQUEST,
        "not_found" => S::NOT_FOUND,
        "untrusted" | "forbidden" | "state_not_hosted" => S::FORBIDDEN,
        "conflict" => S::CONFLICT,
        "bad_record" => S::BAD_REQUEST,
        "input_too_large" | "module_too_large" | "too_large" => S::PAYLOAD_TOO_LARGE,
        "busy" | "rate_limited" => S::TOO_MANY_REQUESTS,
        "timeout" => S::GATEWAY_TIMEOUT,
        "store_full" => S::INSUFFICIENT_STORAGE,
        "corrupt" | "internal" => S::INTERNAL_SERVER_ERROR,
        "unreachable" => S::BAD_GATEWAY,
        "unauthorized" => S::UNAUTHORIZED,
        "cross_origin" => S::FORBIDDEN,
        "bad_host" => S::MISDIRECTED_REQUEST,
        _ => S::UNPROCESSABLE_ENTITY,
    }
}

fn kind_static(kind: &str) -> &'static str {
    const KINDS: &[&str] = &[
        "input_too_large",
        "output_too_large",
        "out_of_fuel",
        "memory_limit",
        "table_limit",
        "compile_timeout",
        "timeout",
        "stack_overflow",
        "trap",
        "function_error",
        "exceeds_node_caps",
        "not_found",
        "corrupt",
        "invalid_module",
        "internal",
        "busy",
        "rate_limited",
        "bad_request",
        "unreachable",
        "untrusted",
        "state_not_hosted",
    ];
    KINDS
        .iter()
        .find(|k| **k == kind)
        .copied()
        .unwrap_or("remote_error")
}

impl From<InvokeError> for ApiError {
    fn from(e: InvokeError) -> Self {
        let kind = e.kind();
        Self::new(status_of(kind), kind, e.to_string())
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        let kind = kind_static(e.kind());
        let mut error = Self::new(status_of(kind), kind, e.to_string());
        if let CallError::Remote { peer, .. } = &e {
            error.peer = Some(peer.to_string());
        }
        error
    }
}

type Shared = Arc<Node>;

/// The router for a node: every route behind the guard (`guard.rs`).
pub fn router(node: Shared, guard: guard::Guard) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics))
        .route("/v1/peers", get(peers))
        .merge(calls::routes())
        .merge(aliases::routes())
        .merge(state::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(guard),
            guard::check,
        ))
        .with_state(node)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; see docs/http-api.md",
    )
}

/// The status page: plain HTML and JavaScript served by the binary; it polls
/// `/v1/status` and `/v1/peers` every two seconds.
const STATUS_PAGE: &str = include_str!("status.html");

async fn root() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        STATUS_PAGE,
    )
}

async fn metrics(State(node): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render_node(&node),
    )
}

async fn peers(State(node): State<Shared>) -> impl IntoResponse {
    axum::Json(node.peers())
}

async fn status(State(node): State<Shared>) -> impl IntoResponse {
    axum::Json(node.status())
}

/// How long a request body may take to arrive: a client that trickles it holds one of
/// the `api_max_requests` places no longer than this.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub(crate) async fn read_body(
    body: Body,
    limit: u64,
    what: &'static str,
    key: &str,
) -> Result<Vec<u8>, ApiError> {
    let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    let Ok(read) = tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await else {
        return Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "bad_request",
            format!(
                "the {what} did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        ));
    };
    match read {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.is::<LengthLimitError>() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            if what == "module" {
                "module_too_large"
            } else {
                "input_too_large"
            },
            format!("{what} is larger than {limit} bytes ({key})"),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("reading the {what}: {e}"),
        )),
    }
}

impl From<crate::state::StateOpError> for ApiError {
    fn from(e: crate::state::StateOpError) -> Self {
        let kind = e.kind();
        Self::new(status_of(kind), kind, e.to_string())
    }
}

impl From<crate::aliases::AliasOpError> for ApiError {
    fn from(e: crate::aliases::AliasOpError) -> Self {
        let kind = e.kind();
        Self::new(status_of(kind), kind, e.to_string())
    }
}

/// Largest JSON request body, in bytes.
pub(crate) const MAX_JSON_BODY: u64 = 64 * 1024;
