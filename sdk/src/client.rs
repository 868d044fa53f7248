//! A blocking client for a kith node's HTTP API.

use std::path::PathBuf;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::http::{Endpoint, Response};
pub use crate::http::{HttpError, Method};

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
        source: HttpError,
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
    /// When called by alias: the alias (with its namespace id) and the record's
    /// sequence number that chose `function`.
    pub alias: Option<(String, u64)>,
    /// The receipt the executing peer signed (header `kith-receipt`), when the node
    /// sent one whose signature verifies; [`CallOutput::check_receipt`] checks it
    /// against the call.
    pub receipt: Option<Receipt>,
    /// For a verified call: how many peers agreed, of how many asked.
    pub verified: Option<(usize, usize)>,
    /// For a verified call: every receipt of an answer with output, the majority's
    /// first (those that do not verify are left out).
    pub receipts: Vec<Receipt>,
    /// For a verified call: the peers that answered otherwise, as `peer=answer`.
    pub dissent: Vec<String>,
}

pub use kith_protocol::receipt::{ReceiptError, Signed as Receipt};

/// Options of a call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// Run the call on this many peers of distinct networks and return the majority's
    /// answer (`docs/http-api.md`); `None` leaves it to the function and alias.
    pub verify: Option<u64>,
    /// A routing key for split aliases (sticky canaries).
    pub route_key: Option<String>,
    /// Also return the placement ranking.
    pub explain: bool,
}

impl CallOutput {
    /// Checks the receipt against the call: its signature (by the key inside the
    /// executing peer's id), the function, and the hashes of `input` and of the
    /// output received.
    ///
    /// # Errors
    /// No receipt, or the first check that fails.
    pub fn check_receipt(&self, input: &[u8]) -> Result<&Receipt, ReceiptError> {
        let receipt = self.receipt.as_ref().ok_or(ReceiptError::Length(0))?;
        receipt.verify_signature()?;
        let r = &receipt.receipt;
        let mismatch = |field| Err(ReceiptError::Mismatch { field });
        if r.function.to_hex() != self.function {
            return mismatch("function");
        }
        if r.input != kith_protocol::receipt::digest(input) {
            return mismatch("input hash");
        }
        if r.output != kith_protocol::receipt::digest(&self.output) {
            return mismatch("output hash");
        }
        Ok(receipt)
    }
}

/// A blocking client for one node.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    endpoint: Endpoint,
    /// `Bearer <token>`, if a token is sent.
    authorization: Option<String>,
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

/// File name of the API token inside a node's data dir.
pub const TOKEN_FILE: &str = "api-token";

/// The platform's default data directory of a node: `$KITH_DATA_DIR`, else
/// `$XDG_DATA_HOME/kith`, else `$HOME/.local/share/kith`, else `./kith-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KITH_DATA_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("kith");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".local/share/kith");
    }
    PathBuf::from("kith-data")
}

/// The API token a client on this machine uses by default: `$KITH_API_TOKEN`, else the
/// token file in [`default_data_dir`], if there is one.
pub fn local_token() -> Option<String> {
    if let Ok(token) = std::env::var("KITH_API_TOKEN") {
        return Some(token);
    }
    let text = std::fs::read_to_string(default_data_dir().join(TOKEN_FILE)).ok()?;
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

impl Client {
    /// A client for the node whose API is at `base` (e.g. `http://127.0.0.1:7070`),
    /// sending this machine's API token ([`local_token`]) if there is one.
    ///
    /// # Errors
    /// Fails if `base` is not an `http://host[:port]` URL.
    pub fn new(base: &str) -> Result<Self, ClientError> {
        Self::with_token(base, local_token().as_deref())
    }

    /// A client that sends `token` (`Authorization: Bearer …`) with every request, or
    /// none.
    ///
    /// # Errors
    /// As [`Client::new`].
    pub fn with_token(base: &str, token: Option<&str>) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_owned();
        let endpoint = Endpoint::parse(&base).map_err(|source| ClientError::Transport {
            url: base.clone(),
            source,
        })?;
        // A token that cannot be a header value is not sent (the node then answers
        // 401, which names the token).
        let authorization = token
            .map(|t| format!("Bearer {t}"))
            .filter(|v| !v.bytes().any(|b| b.is_ascii_control()));
        Ok(Self {
            base,
            endpoint,
            authorization,
        })
    }

    fn transport(&self, source: impl Into<HttpError>) -> ClientError {
        ClientError::Transport {
            url: self.base.clone(),
            source: source.into(),
        }
    }

    /// Sends one request (with the token, if any) and reads the answer whole.
    fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, ClientError> {
        let mut all: Vec<(&str, &str)> = Vec::with_capacity(headers.len() + 2);
        if let Some(auth) = &self.authorization {
            all.push(("Authorization", auth.as_str()));
        }
        all.extend_from_slice(headers);
        crate::http::send(&self.endpoint, method, path, &all, body).map_err(|e| self.transport(e))
    }

    /// A JSON request's headers.
    const JSON: &'static [(&'static str, &'static str)] = &[("Content-Type", "application/json")];

    fn json<T: DeserializeOwned>(&self, resp: &Response) -> Result<T, ClientError> {
        serde_json::from_slice(&resp.body).map_err(|e| self.transport(e))
    }

    fn check(&self, resp: Response) -> Result<Response, ClientError> {
        if (200..300).contains(&resp.status) {
            return Ok(resp);
        }
        let status = resp.status;
        let text = String::from_utf8_lossy(&resp.body);
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
        let resp = self.request(Method::POST, "/v1/functions", &[], &module)?;
        let created = resp.status == 201;
        let mut p: Published = self.json(&self.check(resp)?)?;
        p.created = created;
        Ok(p)
    }

    /// Calls by alias with a routing key: the same key always reaches the same
    /// version of a split alias while the alias is unchanged (sticky canaries).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn call_with_key(
        &self,
        reference: &str,
        input: Vec<u8>,
        route_key: &str,
    ) -> Result<CallOutput, ClientError> {
        self.call_full(reference, input, false, Some(route_key))
    }

    /// Calls a function by reference — a function id, or an alias
    /// `NAMESPACE/NAME@CHANNEL` (namespace id or a key name on the node) — with `input`.
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
        self.call_full(reference, input, explain, None)
    }

    fn call_full(
        &self,
        reference: &str,
        input: Vec<u8>,
        explain: bool,
        route_key: Option<&str>,
    ) -> Result<CallOutput, ClientError> {
        let options = CallOptions {
            verify: None,
            route_key: route_key.map(str::to_owned),
            explain,
        };
        self.call_opts(reference, input, &options)
    }

    /// Calls with `options`: verification, a routing key, the placement ranking.
    ///
    /// # Errors
    /// As [`Client::call`]; `no_quorum` when a verified call's peers do not agree.
    pub fn call_opts(
        &self,
        reference: &str,
        input: Vec<u8>,
        options: &CallOptions,
    ) -> Result<CallOutput, ClientError> {
        let mut query = Vec::new();
        if options.explain {
            query.push("explain=true".to_owned());
        }
        if let Some(n) = options.verify {
            query.push(format!("verify={n}"));
        }
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        let mut headers = Vec::new();
        if let Some(key) = &options.route_key {
            headers.push(("kith-route-key", key.as_str()));
        }
        let path = format!("/v1/call/{reference}{query}");
        let resp = self.check(self.request(Method::POST, &path, &headers, &input)?)?;
        let header = |name: &str| resp.header(name).unwrap_or_default().to_owned();
        let function = header("kith-function");
        let fuel_used = header("kith-fuel-used").parse().unwrap_or(0);
        let executed_by = header("kith-executed-by");
        let wall_us = header("kith-wall-us").parse().unwrap_or(0);
        let placement = serde_json::from_str(&header("kith-placement")).ok();
        let alias = Some(header("kith-alias"))
            .filter(|a| !a.is_empty())
            .map(|a| (a, header("kith-alias-seq").parse().unwrap_or(0)));
        let receipt = Receipt::from_hex(&header("kith-receipt")).ok();
        let verified = header("kith-verify")
            .split_once('/')
            .and_then(|(a, n)| Some((a.parse().ok()?, n.parse().ok()?)));
        let receipts = header("kith-receipts")
            .split(',')
            .filter_map(|h| Receipt::from_hex(h).ok())
            .collect();
        let dissent = header("kith-dissent")
            .split(',')
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(CallOutput {
            output: resp.body,
            function,
            fuel_used,
            executed_by,
            wall_us,
            placement,
            alias,
            receipt,
            verified,
            receipts,
            dissent,
        })
    }

    /// Sends `body` as JSON with `method` to `path` and returns the JSON answer.
    ///
    /// # Errors
    /// Fails with the node's error or when unreachable.
    pub fn send_json(
        &self,
        method: Method,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| self.transport(e))?;
        let resp = self.request(method, path, Self::JSON, &body)?;
        self.json(&self.check(resp)?)
    }

    /// Creates a publisher key named `name` on the node; returns `{"name", "namespace"}`.
    ///
    /// # Errors
    /// A taken or invalid name, or the node is unreachable.
    pub fn key_new(&self, name: &str) -> Result<serde_json::Value, ClientError> {
        self.send_json(
            Method::POST,
            "/v1/keys",
            &serde_json::json!({ "name": name }),
        )
    }

    /// Points alias `reference` at `targets` (function id, weight): one target is a
    /// plain `set`, several a weighted split. Returns the signed record.
    ///
    /// # Errors
    /// An invalid reference or target, no key for the namespace on the node, or the
    /// node is unreachable.
    pub fn alias_set(
        &self,
        reference: &str,
        targets: &[(&str, u32)],
    ) -> Result<serde_json::Value, ClientError> {
        self.alias_set_verified(reference, targets, None)
    }

    /// [`Client::alias_set`], also setting how many peers each call through the alias
    /// runs on (`verify`; `None` keeps the alias's current setting).
    ///
    /// # Errors
    /// As [`Client::alias_set`]; `verify` out of bounds.
    pub fn alias_set_verified(
        &self,
        reference: &str,
        targets: &[(&str, u32)],
        verify: Option<u8>,
    ) -> Result<serde_json::Value, ClientError> {
        let targets: Vec<serde_json::Value> = targets
            .iter()
            .map(|(f, w)| serde_json::json!({ "function": f, "weight": w }))
            .collect();
        let mut body = serde_json::json!({ "targets": targets });
        if let Some(v) = verify {
            body["verify"] = serde_json::json!(v);
        }
        self.send_json(Method::PUT, &format!("/v1/aliases/{reference}"), &body)
    }

    /// Points alias `to` at `from`'s current targets (e.g. staging → prod).
    ///
    /// # Errors
    /// As [`Client::alias_set`].
    pub fn alias_promote(&self, from: &str, to: &str) -> Result<serde_json::Value, ClientError> {
        self.send_json(
            Method::POST,
            &format!("/v1/aliases/{to}/promote"),
            &serde_json::json!({ "from": from }),
        )
    }

    /// Points alias `reference` back at its previous record's targets.
    ///
    /// # Errors
    /// As [`Client::alias_set`], or no earlier record.
    pub fn alias_rollback(&self, reference: &str) -> Result<serde_json::Value, ClientError> {
        self.send_json(
            Method::POST,
            &format!("/v1/aliases/{reference}/rollback"),
            &serde_json::json!({}),
        )
    }

    /// Sends raw bytes with `method` to `path` and returns the JSON answer.
    ///
    /// # Errors
    /// Fails with the node's error or when unreachable.
    pub fn send_bytes(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<serde_json::Value, ClientError> {
        let resp = self.request(method, path, &[], &body)?;
        self.json(&self.check(resp)?)
    }

    /// `GET` raw bytes from the API (e.g. a document export).
    ///
    /// # Errors
    /// Fails with the node's error or when unreachable.
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        Ok(self.check(self.request(Method::GET, path, &[], &[])?)?.body)
    }

    /// Changes namespace `namespace`'s grants (`{"grant": {...}, "revoke": {...}}`,
    /// see `docs/http-api.md`); the namespace's key must be on the node.
    ///
    /// # Errors
    /// Transport trouble or an error answer (no key for the namespace, a bad subject).
    pub fn grants_change(
        &self,
        namespace: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        self.send_json(Method::POST, &format!("/v1/grants/{namespace}"), body)
    }

    /// `GET` a JSON document from the API, e.g. `/v1/status`.
    ///
    /// # Errors
    /// Fails with the node's error or when unreachable.
    pub fn get_json(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        let resp = self.request(Method::GET, path, &[], &[])?;
        self.json(&self.check(resp)?)
    }
}
