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

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use kith_protocol::FunctionId;
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
        _ => S::UNPROCESSABLE_ENTITY,
    }
}

fn kind_static(kind: &str) -> &'static str {
    const KINDS: &[&str] = &[
        "input_too_large",
        "output_too_large",
        "out_of_fuel",
        "memory_limit",
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

/// The router for a node.
pub fn router(node: Shared) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics))
        .route("/v1/peers", get(peers))
        .route("/v1/functions", post(publish))
        .route("/v1/functions/{id}", get(function_info))
        .route("/v1/call/{reference}", post(call))
        .route("/v1/call/{namespace}/{alias}", post(call_alias))
        .route("/v1/keys", get(keys_list).post(keys_new))
        .route("/v1/aliases", get(alias_list))
        .route("/v1/aliases/records", post(alias_import))
        .route(
            "/v1/aliases/{namespace}/{alias}",
            get(alias_show).put(alias_put),
        )
        .route(
            "/v1/aliases/{namespace}/{alias}/history",
            get(alias_history),
        )
        .route(
            "/v1/aliases/{namespace}/{alias}/resolve",
            get(alias_resolve),
        )
        .route(
            "/v1/aliases/{namespace}/{alias}/promote",
            post(alias_promote),
        )
        .route(
            "/v1/aliases/{namespace}/{alias}/rollback",
            post(alias_rollback),
        )
        .merge(crate::state_api::routes())
        .fallback(not_found)
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

pub(crate) async fn read_body(
    body: Body,
    limit: u64,
    what: &'static str,
    key: &str,
) -> Result<Vec<u8>, ApiError> {
    let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    match limited.collect().await {
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

fn parse_id(text: &str) -> Result<FunctionId, ApiError> {
    text.parse().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_reference",
            format!("{text:?}: {e}"),
        )
    })
}

async fn publish(State(node): State<Shared>, body: Body) -> Result<Response, ApiError> {
    let limit = node.config().caps.max_module_bytes;
    let bytes = read_body(body, limit, "module", "max_module_bytes").await?;
    let published = node.publish(bytes).await?;
    let status = if published.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(published)).into_response())
}

async fn function_info(
    State(node): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let node2 = Arc::clone(&node);
    let info = tokio::task::spawn_blocking(move || node2.function_info(&id))
        .await
        .map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })??;
    Ok(axum::Json(info).into_response())
}

/// Query flags of a call.
#[derive(Debug, Default, serde::Deserialize)]
struct CallQuery {
    /// Add the placement ranking as the `kith-placement` header (JSON).
    #[serde(default)]
    explain: bool,
}

async fn call(
    State(node): State<Shared>,
    Path(reference): Path<String>,
    axum::extract::Query(query): axum::extract::Query<CallQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let id = parse_id(&reference)?;
    run_call(&node, id, &query, body, HeaderMap::new()).await
}

/// The request header carrying a routing key for splits (e.g. a user id).
pub const ROUTE_KEY_HEADER: &str = "kith-route-key";

async fn call_alias(
    State(node): State<Shared>,
    Path((namespace, alias)): Path<(String, String)>,
    axum::extract::Query(query): axum::extract::Query<CallQuery>,
    request_headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let alias = node.aliases().parse(&format!("{namespace}/{alias}"))?;
    let key = request_headers
        .get(ROUTE_KEY_HEADER)
        .map(HeaderValue::as_bytes);
    let resolved = node.aliases().resolve(&alias, key)?;
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&resolved.alias.to_string()) {
        headers.insert("kith-alias", v);
    }
    headers.insert("kith-alias-seq", HeaderValue::from(resolved.seq));
    run_call(&node, resolved.function, &query, body, headers).await
}

async fn run_call(
    node: &Shared,
    id: FunctionId,
    query: &CallQuery,
    body: Body,
    mut headers: HeaderMap,
) -> Result<Response, ApiError> {
    let input = read_body(
        body,
        node.config().caps.max_input_bytes,
        "input",
        "max_input_bytes",
    )
    .await?;
    let receipt = node.call(id, input, 0).await?;
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    put("kith-function", receipt.function.to_hex());
    put("kith-fuel-used", receipt.fuel_used.to_string());
    put("kith-executed-by", receipt.executed_by.to_string());
    put("kith-wall-us", receipt.wall.as_micros().to_string());
    if let Some(cold) = receipt.cold {
        put(
            "kith-cold-start",
            serde_json::to_value(cold)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        );
    }
    if query.explain {
        put(
            "kith-placement",
            serde_json::to_string(&receipt.placement).unwrap_or_default(),
        );
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok((StatusCode::OK, headers, receipt.output).into_response())
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
const MAX_JSON_BODY: u64 = 64 * 1024;

/// Reads a JSON body whatever its content type (so `curl --data` works), with errors in
/// the API's own format.
async fn json_body<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let bytes = read_body(body, MAX_JSON_BODY, "JSON body", "MAX_JSON_BODY").await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the request body is not the expected JSON: {e}"),
        )
    })
}

#[derive(serde::Deserialize)]
struct NewKey {
    name: String,
}

async fn keys_new(State(node): State<Shared>, body: Body) -> Result<Response, ApiError> {
    let req: NewKey = json_body(body).await?;
    let info = node.aliases().new_key(&req.name)?;
    Ok((StatusCode::CREATED, axum::Json(info)).into_response())
}

async fn keys_list(State(node): State<Shared>) -> impl IntoResponse {
    axum::Json(node.aliases().keys())
}

async fn alias_list(State(node): State<Shared>) -> impl IntoResponse {
    axum::Json(node.aliases().list())
}

fn alias_of(
    node: &Shared,
    namespace: &str,
    alias: &str,
) -> Result<kith_protocol::alias::Alias, ApiError> {
    Ok(node.aliases().parse(&format!("{namespace}/{alias}"))?)
}

async fn alias_show(
    State(node): State<Shared>,
    Path((namespace, alias)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let alias = alias_of(&node, &namespace, &alias)?;
    Ok(axum::Json(node.aliases().show(&alias)?).into_response())
}

async fn alias_history(
    State(node): State<Shared>,
    Path((namespace, alias)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let alias = alias_of(&node, &namespace, &alias)?;
    Ok(axum::Json(node.aliases().history(&alias)?).into_response())
}

#[derive(serde::Deserialize)]
struct ResolveQuery {
    key: Option<String>,
}

async fn alias_resolve(
    State(node): State<Shared>,
    Path((namespace, alias)): Path<(String, String)>,
    axum::extract::Query(q): axum::extract::Query<ResolveQuery>,
) -> Result<Response, ApiError> {
    let alias = alias_of(&node, &namespace, &alias)?;
    let r = node
        .aliases()
        .resolve(&alias, q.key.as_deref().map(str::as_bytes))?;
    Ok(axum::Json(json!({
        "alias": r.alias.to_string(),
        "seq": r.seq,
        "function": r.function.to_hex(),
    }))
    .into_response())
}

#[derive(serde::Deserialize)]
struct TargetsBody {
    targets: Vec<TargetBody>,
}

#[derive(serde::Deserialize)]
struct TargetBody {
    function: String,
    #[serde(default = "one")]
    weight: u32,
}

fn one() -> u32 {
    1
}

async fn alias_put(
    State(node): State<Shared>,
    Path((namespace, alias)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let alias = alias_of(&node, &namespace, &alias)?;
    let body: TargetsBody = json_body(body).await?;
    let targets = body
        .targets
        .iter()
        .map(|t| {
            Ok(kith_protocol::alias::Target {
                function: parse_id(&t.function)?,
                weight: t.weight,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let signed = node.alias_set(&alias, targets).await?;
    Ok(axum::Json(crate::aliases::RecordView::from(&signed)).into_response())
}

#[derive(serde::Deserialize)]
struct PromoteBody {
    from: String,
}

async fn alias_promote(
    State(node): State<Shared>,
    Path((namespace, alias)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let to = alias_of(&node, &namespace, &alias)?;
    let body: PromoteBody = json_body(body).await?;
    let from = node.aliases().parse(&body.from)?;
    let signed = node.alias_promote(&from, &to).await?;
    Ok(axum::Json(crate::aliases::RecordView::from(&signed)).into_response())
}

async fn alias_rollback(
    State(node): State<Shared>,
    Path((namespace, alias)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let alias = alias_of(&node, &namespace, &alias)?;
    let signed = node.alias_rollback(&alias).await?;
    Ok(axum::Json(crate::aliases::RecordView::from(&signed)).into_response())
}

async fn alias_import(State(node): State<Shared>, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(
        body,
        kith_protocol::alias::MAX_RECORD as u64,
        "alias record",
        "MAX_RECORD",
    )
    .await?;
    let applied = node.alias_import(&bytes).await?;
    Ok(axum::Json(json!({ "applied": applied })).into_response())
}
