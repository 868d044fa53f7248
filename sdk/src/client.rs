//! A blocking client for a kith node's HTTP API.

use std::time::Duration;

use serde::Deserialize;

/// Why a request to the node failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The node answered with an error.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The error kind, e.g. `out_of_fuel` (see `docs/http-api.md`).
        kind: String,
        /// A human-readable explanation naming the limit, if any.
        message: String,
    },
    /// The node could not be reached or the answer could not be read.
    #[error("cannot reach the kith node at {url}: {source}")]
    Transport {
        /// The API URL.
        url: String,
        /// The underlying error.
        source: reqwest::Error,
    },
}

/// A published function.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Published {
    /// The function id (blake3 hex).
    pub id: String,
    /// Module size in bytes.
    pub size: u64,
    /// False if the node already had it.
    #[serde(default)]
    pub created: bool,
}

/// The result of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOutput {
    /// The output bytes.
    pub output: Vec<u8>,
    /// The function id that ran.
    pub function: String,
    /// Fuel the call used.
    pub fuel_used: u64,
    /// Which node ran it.
    pub executed_by: String,
    /// Wall time of the call on the node that ran it, in microseconds.
    pub wall_us: u64,
    /// The placement ranking, when asked for with [`Client::call_explained`].
    pub placement: Option<serde_json::Value>,
}

/// A blocking client for one node.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::blocking::Client,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    kind: String,
    message: String,
}

impl Client {
    /// A client for the node whose API is at `base` (e.g. `http://127.0.0.1:7070`).
    ///
    /// # Errors
    /// Fails if the HTTP client cannot be built (no TLS is needed, so this is rare).
    pub fn new(base: &str) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_owned();
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(660))
            .build()
            .map_err(|source| ClientError::Transport {
                url: base.clone(),
                source,
            })?;
        Ok(Self { base, http })
    }

    fn transport(&self, source: reqwest::Error) -> ClientError {
        ClientError::Transport {
            url: self.base.clone(),
            source,
        }
    }

    fn check(
        &self,
        resp: reqwest::blocking::Response,
    ) -> Result<reqwest::blocking::Response, ClientError> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let text = resp.text().map_err(|e| self.transport(e))?;
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => ClientError::Api {
                status,
                kind: body.error.kind,
                message: body.error.message,
            },
            Err(_) => ClientError::Api {
                status,
                kind: "http".into(),
                message: format!("HTTP {status}: {text}"),
            },
        })
    }

    /// Publishes module bytes; returns the function id.
    ///
    /// # Errors
    /// Fails if the node refuses the module (the error names the problem) or is unreachable.
    pub fn publish(&self, module: Vec<u8>) -> Result<Published, ClientError> {
        let resp = self
            .http
            .post(format!("{}/v1/functions", self.base))
            .body(module)
            .send()
            .map_err(|e| self.transport(e))?;
        let created = resp.status().as_u16() == 201;
        let mut p: Published = self.check(resp)?.json().map_err(|e| self.transport(e))?;
        p.created = created;
        Ok(p)
    }

    /// Calls a function by reference (a function id) with `input`.
    ///
    /// # Errors
    /// Fails with the node's error (e.g. `out_of_fuel`, `timeout`, `function_error`).
    pub fn call(&self, reference: &str, input: Vec<u8>) -> Result<CallOutput, ClientError> {
        self.call_with(reference, input, false)
    }

    /// Like [`Client::call`], and also returns the placement ranking: every capable
    /// candidate with its cost terms.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn call_explained(
        &self,
        reference: &str,
        input: Vec<u8>,
    ) -> Result<CallOutput, ClientError> {
        self.call_with(reference, input, true)
    }

    fn call_with(
        &self,
        reference: &str,
        input: Vec<u8>,
        explain: bool,
    ) -> Result<CallOutput, ClientError> {
        let query = if explain { "?explain=true" } else { "" };
        let resp = self
            .http
            .post(format!("{}/v1/call/{reference}{query}", self.base))
            .body(input)
            .send()
            .map_err(|e| self.transport(e))?;
        let resp = self.check(resp)?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let function = header("kith-function");
        let fuel_used = header("kith-fuel-used").parse().unwrap_or(0);
        let executed_by = header("kith-executed-by");
        let wall_us = header("kith-wall-us").parse().unwrap_or(0);
        let placement = serde_json::from_str(&header("kith-placement")).ok();
        let output = resp.bytes().map_err(|e| self.transport(e))?.to_vec();
        Ok(CallOutput {
            output,
            function,
            fuel_used,
            executed_by,
            wall_us,
            placement,
        })
    }

    /// `GET` a JSON document from the API, e.g. `/v1/status`.
    ///
    /// # Errors
    /// Fails with the node's error or when unreachable.
    pub fn get_json(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .map_err(|e| self.transport(e))?;
        self.check(resp)?.json().map_err(|e| self.transport(e))
    }
}
