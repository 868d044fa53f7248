//! Grants: `GET /v1/grants/{namespace}` shows a namespace's current grants,
//! `POST /v1/grants/{namespace}` changes them (the namespace's key must be on this
//! node): `{"grant": {...}, "revoke": {...}}`, each with optional `writers` (hex
//! keys), `functions` (ids) and `aliases` (`NAME@CHANNEL` of the namespace).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use kith_protocol::ErrorKind;
use kith_protocol::alias::{Alias, Namespace};

use super::calls::parse_id;
use super::{ApiError, MAX_JSON_BODY, Shared, read_body};
use crate::grants::Subject;

/// The routes of grants.
pub(super) fn routes() -> axum::Router<Shared> {
    use axum::routing::get;
    axum::Router::new().route("/v1/grants/{namespace}", get(show).post(change))
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Subjects {
    #[serde(default)]
    writers: Vec<String>,
    #[serde(default)]
    functions: Vec<String>,
    #[serde(default)]
    aliases: Vec<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    #[serde(default)]
    grant: Subjects,
    #[serde(default)]
    revoke: Subjects,
}

fn bad(message: String) -> ApiError {
    ApiError::new(ErrorKind::BadRequest, message)
}

fn namespace(node: &Shared, text: &str) -> Result<Namespace, ApiError> {
    Ok(node.aliases().namespace_of(text)?)
}

fn subjects(namespace: &Namespace, s: &Subjects) -> Result<Vec<Subject>, ApiError> {
    let mut out = Vec::new();
    for w in &s.writers {
        let mut key = [0u8; 32];
        hex::decode_to_slice(w, &mut key)
            .map_err(|_| bad(format!("writer {w:?} is not a 64-hex key")))?;
        out.push(Subject::Writer(key));
    }
    for f in &s.functions {
        out.push(Subject::Function(parse_id(f)?));
    }
    for a in &s.aliases {
        let (name, channel) = a
            .split_once('@')
            .ok_or_else(|| bad(format!("alias {a:?} is not NAME@CHANNEL")))?;
        out.push(Subject::Alias(
            Alias::new(*namespace, name, channel).map_err(|e| bad(e.to_string()))?,
        ));
    }
    Ok(out)
}

async fn show(State(node): State<Shared>, Path(ns): Path<String>) -> Result<Response, ApiError> {
    let ns = namespace(&node, &ns)?;
    Ok(axum::Json(node.aliases().grants_view(&ns)).into_response())
}

async fn change(
    State(node): State<Shared>,
    Path(ns): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let ns = namespace(&node, &ns)?;
    let bytes = read_body(body, MAX_JSON_BODY, "JSON body", "MAX_JSON_BODY").await?;
    let change: Change = serde_json::from_slice(&bytes)
        .map_err(|e| bad(format!("the request body is not the expected JSON: {e}")))?;
    let add = subjects(&ns, &change.grant)?;
    let remove = subjects(&ns, &change.revoke)?;
    if add.is_empty() && remove.is_empty() {
        return Err(bad("name something to grant or revoke".into()));
    }
    let view = node.change_grants(&ns, &add, &remove).await?;
    Ok(axum::Json(view).into_response())
}
