//! Publisher keys and aliases.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use kith_protocol::ErrorKind;

use super::calls::parse_id;
use super::{ApiError, MAX_JSON_BODY, Shared, read_body};

/// The routes of keys and aliases.
pub(super) fn routes() -> axum::Router<Shared> {
    use axum::routing::{get, post};
    axum::Router::new()
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
}

/// Reads a JSON body whatever its content type (so `curl --data` works), with errors in
/// the API's own format.
async fn json_body<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let bytes = read_body(body, MAX_JSON_BODY, "JSON body", "MAX_JSON_BODY").await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            ErrorKind::BadRequest,
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
    /// Peers each call through the alias runs on (absent: keep the current setting).
    #[serde(default)]
    verify: Option<u8>,
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
    let signed = node.alias_set(&alias, targets, body.verify).await?;
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
