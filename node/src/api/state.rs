//! HTTP routes of application state (`docs/http-api.md`, "State"):
//!
//! - `GET /v1/state` — documents held here.
//! - `GET /v1/state/{ns}/{name}?path=/a/b` — the value at a path (the whole document
//!   without `path`), as JSON.
//! - `PUT …?path=` (body: JSON), `DELETE …?path=` — put or delete a value.
//! - `POST …/increment?path=&by=N`, `POST …/append?path=` (body: JSON).
//! - `GET …/heads`, `GET …/export` (a standard Automerge binary), `POST …/import`
//!   (body: an Automerge binary, merged), `POST …/pin`.
//!
//! `{ns}` is a namespace id or the name of a key on this node.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kith_protocol::state::{DocName, parse_path};
use serde_json::json;

use kith_protocol::ErrorKind;

use super::{ApiError, read_body};
use crate::node::Node;
use crate::state::{StateOpError, Writer};

type Shared = Arc<Node>;

/// The state routes.
pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/state", get(list))
        .route(
            "/v1/state/{namespace}/{name}",
            get(read).put(put).delete(delete),
        )
        .route("/v1/state/{namespace}/{name}/increment", post(increment))
        .route("/v1/state/{namespace}/{name}/append", post(append))
        .route("/v1/state/{namespace}/{name}/heads", get(heads))
        .route("/v1/state/{namespace}/{name}/export", get(export))
        .route("/v1/state/{namespace}/{name}/import", post(import))
        .route("/v1/state/{namespace}/{name}/pin", post(pin))
}

#[derive(Debug, Default, serde::Deserialize)]
struct PathQuery {
    #[serde(default)]
    path: String,
    by: Option<i64>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::BadRequest, message)
}

fn doc_name(node: &Node, namespace: &str, name: &str) -> Result<DocName, ApiError> {
    let namespace = node
        .aliases()
        .namespace_of(namespace)
        .map_err(|e| bad(e.to_string()))?;
    DocName::new(namespace, name).map_err(|e| bad(e.to_string()))
}

fn key_path(query: &PathQuery) -> Result<Vec<String>, ApiError> {
    parse_path(&query.path).map_err(|e| bad(e.to_string()))
}

async fn json_value(node: &Node, body: Body) -> Result<serde_json::Value, ApiError> {
    let limit = node.state().limits().max_change_bytes;
    let bytes = read_body(body, limit, "state value", "max_change_bytes").await?;
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("the body is not a JSON value: {e}")))
}

/// Runs a blocking state write (it fsyncs) and announces the change. The write is
/// signed by a key on this node that the namespace's owner authorised
/// (`permission_denied` when there is none).
async fn write<T: Send + 'static>(
    node: &Shared,
    doc: DocName,
    op: impl FnOnce(&crate::state::StateStore, &DocName, &Writer) -> Result<T, StateOpError>
    + Send
    + 'static,
) -> Result<T, ApiError> {
    let writer = node.operator_writer(&doc.namespace)?;
    let node = Arc::clone(node);
    tokio::task::spawn_blocking(move || node.state_write(&doc, |s| op(s, &doc, &writer)))
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?
        .map_err(ApiError::from)
}

async fn list(State(node): State<Shared>) -> impl IntoResponse {
    axum::Json(node.state().list())
}

async fn read(
    State(node): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<PathQuery>,
) -> Result<Response, ApiError> {
    let doc = doc_name(&node, &namespace, &name)?;
    let value = node.state().get(&doc, &key_path(&query)?)?;
    Ok(axum::Json(value).into_response())
}

async fn put(
    State(node): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<PathQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let doc = doc_name(&node, &namespace, &name)?;
    let path = key_path(&query)?;
    let value = json_value(&node, body).await?;
    let heads = write(&node, doc, move |s, d, w| s.put(d, w, &path, &value)).await?;
    Ok(axum::Json(json!({ "heads": heads })).into_response())
}

async fn delete(
    State(node): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<PathQuery>,
) -> Result<Response, ApiError> {
    let doc = doc_name(&node, &namespace, &name)?;
    let path = key_path(&query)?;
    let heads = write(&node, doc, move |s, d, w| s.delete(d, w, &path)).await?;
    Ok(axum::Json(json!({ "heads": heads })).into_response())
}

async fn increment(
    State(node): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<PathQuery>,
) -> Result<Response, ApiError> {
    let doc = doc_name(&node, &namespace, &name)?;
    let path = key_path(&query)?;
    let by = query.by.unwrap_or(1);
    let (heads, value) = write(&node, doc, move |s, d, w| s.increment(d, w, &path, by)).await?;
    Ok(axum::Json(json!({ "heads": heads, "value": value })).into_response())
}

async fn append(
    State(node): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<PathQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let doc = doc_name(&node, &namespace, &name)?;
    let path = key_path(&query)?;
    let value = json_value(&node, body).await?;
    let heads = write(&node, doc, move |s, d, w| s.append(d, w, &path, &value)).await?;
    Ok(axum::Json(json!({ "heads": heads })).into_response())
}

async fn heads(
    State(node): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let doc = doc_name(&node, &namespace, &name)?;
    let heads = node.state().heads(&doc)?;
    Ok(axum::Json(json!({ "doc": doc.to_string(), "heads": heads })).into_response())
}

async fn export(
    State(node): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let doc = doc_name(&node, &namespace, &name)?;
    let bytes = node.state().export(&doc)?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

async fn import(
    State(node): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let doc = doc_name(&node, &namespace, &name)?;
    let limit = node.state().limits().max_doc_bytes;
    let bytes = read_body(body, limit, "Automerge document", "max_doc_bytes").await?;
    let heads = write(&node, doc, move |s, d, w| s.import(d, w, &bytes)).await?;
    Ok(axum::Json(json!({ "heads": heads })).into_response())
}

async fn pin(
    State(node): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let doc = doc_name(&node, &namespace, &name)?;
    let heads = node.pin(&doc).await?;
    Ok(
        axum::Json(json!({ "doc": doc.to_string(), "heads": heads, "pinned": true }))
            .into_response(),
    )
}
