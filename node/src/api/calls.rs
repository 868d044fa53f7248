//! Functions and calls: publish, function info, call by id or alias.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kith_protocol::FunctionId;

use kith_protocol::ErrorKind;

use super::{ApiError, Shared, read_body};

/// The routes of functions and calls.
pub(super) fn routes() -> axum::Router<Shared> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/v1/functions", post(publish))
        .route("/v1/functions/{id}", get(function_info))
        .route("/v1/call/{reference}", post(call))
        .route("/v1/call/{namespace}/{alias}", post(call_alias))
}

pub(super) fn parse_id(text: &str) -> Result<FunctionId, ApiError> {
    text.parse()
        .map_err(|e| ApiError::new(ErrorKind::BadReference, format!("{text:?}: {e}")))
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
        .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))??;
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
