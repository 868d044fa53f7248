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
mod grants;
pub mod guard;
mod prometheus;
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
use kith_protocol::ErrorKind;
use kith_protocol::module::ModuleError;
use serde_json::json;

use crate::node::{CallError, Node, PublishError};
use crate::runtime::InvokeError;
use crate::store::StoreError;

/// An API error: status, kind and message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: ErrorKind,
    message: String,
    /// The peer that ran the call and reported the error, when it was not this node.
    peer: Option<String>,
}

impl ApiError {
    /// An error of `kind`, answered with the kind's HTTP status.
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(kind.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            kind,
            message: message.into(),
            peer: None,
        }
    }

    /// The same error answered with another status (a body that timed out is a
    /// `bad_request` answered 408).
    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
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
        if matches!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
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
                Self::new(ErrorKind::ModuleTooLarge, msg)
            }
            PublishError::Invalid(_) => Self::new(ErrorKind::InvalidModule, msg),
            PublishError::Store(StoreError::OverBudget { .. }) => {
                Self::new(ErrorKind::StoreFull, msg)
            }
            PublishError::Store(_) => Self::new(ErrorKind::Internal, msg),
            PublishError::Compile(e) => e.into(),
        }
    }
}

impl From<InvokeError> for ApiError {
    fn from(e: InvokeError) -> Self {
        Self::new(e.kind(), e.to_string())
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        let mut error = Self::new(e.kind(), e.to_string());
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
        .route("/v1/ledger", get(ledger))
        .merge(calls::routes())
        .merge(aliases::routes())
        .merge(grants::routes())
        .merge(state::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(guard),
            guard::check,
        ))
        .with_state(node)
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorKind::NotFound, "no such route; see docs/http-api.md")
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
        prometheus::render_node(&node),
    )
}

async fn peers(State(node): State<Shared>) -> impl IntoResponse {
    axum::Json(node.peers())
}

/// How much of the ledger `GET /v1/ledger` shows.
#[derive(Debug, serde::Deserialize)]
struct LedgerQuery {
    /// Accounts per side, most fuel first (default and most: the ledger's cap).
    peers: Option<usize>,
    /// Latest receipts, newest first (default and most: the ledger's cap).
    recent: Option<usize>,
}

async fn ledger(
    State(node): State<Shared>,
    axum::extract::Query(q): axum::extract::Query<LedgerQuery>,
) -> impl IntoResponse {
    use kith_protocol::ledger::{MAX_PEERS, MAX_RECENT};
    axum::Json(node.ledger(
        q.peers.unwrap_or(MAX_PEERS).min(MAX_PEERS),
        q.recent.unwrap_or(MAX_RECENT).min(MAX_RECENT),
    ))
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
            ErrorKind::BadRequest,
            format!(
                "the {what} did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        )
        .with_status(StatusCode::REQUEST_TIMEOUT));
    };
    match read {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.is::<LengthLimitError>() => Err(ApiError::new(
            if what == "module" {
                ErrorKind::ModuleTooLarge
            } else {
                ErrorKind::InputTooLarge
            },
            format!("{what} is larger than {limit} bytes ({key})"),
        )),
        Err(e) => Err(ApiError::new(
            ErrorKind::BadRequest,
            format!("reading the {what}: {e}"),
        )),
    }
}

impl From<crate::state::StateOpError> for ApiError {
    fn from(e: crate::state::StateOpError) -> Self {
        Self::new(e.kind(), e.to_string())
    }
}

impl From<crate::aliases::AliasOpError> for ApiError {
    fn from(e: crate::aliases::AliasOpError) -> Self {
        Self::new(e.kind(), e.to_string())
    }
}

/// Largest JSON request body, in bytes.
pub(crate) const MAX_JSON_BODY: u64 = 64 * 1024;
