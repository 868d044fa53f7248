//! The HTTP gateway. Routes (see `docs/http-api.md`):
//!
//! - `POST /v1/functions` — body: module bytes. 201 `{"id", "size", "manifest"}`, or 200
//!   if already stored.
//! - `GET /v1/functions/{id}` — manifest and size.
//! - `POST /v1/call/{ref}` — body: input bytes. 200 with the output bytes; headers
//!   `kith-function`, `kith-fuel-used`, `kith-executed-by`, `kith-wall-us`.
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
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"kind": self.kind, "message": self.message}});
        let mut resp = (self.status, axum::Json(body)).into_response();
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
        }
    }
}

impl From<InvokeError> for ApiError {
    fn from(e: InvokeError) -> Self {
        use StatusCode as S;
        let msg = e.to_string();
        let (status, kind) = match e {
            InvokeError::InputTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "input_too_large"),
            InvokeError::OutputTooLarge { .. } => (S::UNPROCESSABLE_ENTITY, "output_too_large"),
            InvokeError::OutOfFuel { .. } => (S::UNPROCESSABLE_ENTITY, "out_of_fuel"),
            InvokeError::MemoryLimit { .. } => (S::UNPROCESSABLE_ENTITY, "memory_limit"),
            InvokeError::Timeout { .. } => (S::GATEWAY_TIMEOUT, "timeout"),
            InvokeError::StackOverflow { .. } => (S::UNPROCESSABLE_ENTITY, "stack_overflow"),
            InvokeError::Trap { .. } => (S::UNPROCESSABLE_ENTITY, "trap"),
            InvokeError::FunctionError { .. } => (S::UNPROCESSABLE_ENTITY, "function_error"),
            InvokeError::Incapable(_) => (S::UNPROCESSABLE_ENTITY, "exceeds_node_caps"),
            InvokeError::NotFound(_) => (S::NOT_FOUND, "not_found"),
            InvokeError::Corrupt(_) => (S::INTERNAL_SERVER_ERROR, "corrupt"),
            InvokeError::Invalid(_) => (S::UNPROCESSABLE_ENTITY, "invalid_module"),
            _ => (S::INTERNAL_SERVER_ERROR, "internal"),
        };
        Self::new(status, kind, msg)
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Busy { .. } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "busy", e.to_string())
            }
            CallError::Invoke(e) => e.into(),
        }
    }
}

type Shared = Arc<Node>;

/// The router for a node.
pub fn router(node: Shared) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/v1/status", get(status))
        .route("/v1/functions", post(publish))
        .route("/v1/functions/{id}", get(function_info))
        .route("/v1/call/{reference}", post(call))
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

async fn root(State(node): State<Shared>) -> impl IntoResponse {
    format!("kith node {}\nstatus: GET /v1/status\n", node.peer_id())
}

async fn status(State(node): State<Shared>) -> impl IntoResponse {
    axum::Json(node.status())
}

async fn read_body(
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
    let node2 = Arc::clone(&node);
    let published = tokio::task::spawn_blocking(move || node2.publish(&bytes))
        .await
        .map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })??;
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

async fn call(
    State(node): State<Shared>,
    Path(reference): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let id = parse_id(&reference)?;
    let input = read_body(
        body,
        node.config().caps.max_input_bytes,
        "input",
        "max_input_bytes",
    )
    .await?;
    let receipt = node.call(id, input).await?;
    let mut headers = HeaderMap::new();
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
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok((StatusCode::OK, headers, receipt.output).into_response())
}
