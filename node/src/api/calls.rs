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
    /// Run the call on this many peers of distinct networks and return the majority's
    /// answer (the function's manifest or alias may ask for more).
    #[serde(default)]
    verify: Option<u64>,
}

async fn call(
    State(node): State<Shared>,
    Path(reference): Path<String>,
    axum::extract::Query(query): axum::extract::Query<CallQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let id = parse_id(&reference)?;
    run_call(&node, id, &query, 1, body, HeaderMap::new()).await
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
    run_call(
        &node,
        resolved.function,
        &query,
        resolved.verify,
        body,
        headers,
    )
    .await
}

/// The response header carrying the receipt of the answer (hex, `docs/wire-format.md`).
const RECEIPT_HEADER: &str = "kith-receipt";

async fn run_call(
    node: &Shared,
    id: FunctionId,
    query: &CallQuery,
    alias_verify: u8,
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
    let verify = query.verify.unwrap_or(1).max(u64::from(alias_verify));
    // With verify = 1 the function's manifest may still ask for verification.
    let receipt = node.call_verified(id, input, verify).await?;
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
    put(RECEIPT_HEADER, receipt.proof.to_hex());
    if let Some(v) = &receipt.verification {
        put("kith-verify", format!("{}/{}", v.agree.len(), v.wanted));
        put(
            "kith-receipts",
            v.receipts
                .iter()
                .map(kith_protocol::receipt::Signed::to_hex)
                .collect::<Vec<_>>()
                .join(","),
        );
        if !v.dissent.is_empty() {
            put(
                "kith-dissent",
                v.dissent
                    .iter()
                    .map(|(p, said)| format!("{p}={said}"))
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
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
