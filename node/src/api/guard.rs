//! What every API request passes before its route, in this order:
//!
//! 1. **A cap on requests in flight** (`api_max_requests`): beyond it, `busy`.
//! 2. **The `Host` check** (DNS rebinding): the API answers only to an IP address it
//!    serves, `localhost` when it serves loopback, and the names given with
//!    `--api-host`. A web page whose name an attacker points at 127.0.0.1 sends its
//!    own name as `Host`, and is refused (`bad_host`).
//! 3. **The read-only pages stay open** — `GET /`, `/metrics`, `/v1/status`,
//!    `/v1/peers` — unless the token is required and `api_token_for_reads` is set.
//! 4. **The cross-origin check** (CSRF): browsers send `Origin` on every request but a
//!    plain GET or HEAD, and mark requests to loopback and secure origins with
//!    `Sec-Fetch-Site`. A request whose `Sec-Fetch-Site` is not `same-origin` or
//!    `none`, or whose `Origin` is not this API's own, is refused (`cross_origin`).
//!    Every route that changes anything is a POST, PUT or DELETE, so it always carries
//!    `Origin` from a browser. Tools like curl send neither header, and the node's own
//!    status page is same-origin.
//! 5. **The API token**, on an API bound to an address other than loopback (or always,
//!    with `api_token_always`): `Authorization: Bearer <token>`, else `unauthorized`.
//!
//! Each refusal is counted in `/metrics` (`kith_api_refused_total{reason}`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use kith_protocol::ErrorKind;

use super::ApiError;
use crate::config::ApiSettings;
use crate::metrics::{ApiRefusal, Metrics};

/// The read-only routes that stay open without the token (unless
/// `api_token_for_reads`).
pub const OPEN_READS: &[&str] = &["/", "/metrics", "/v1/status", "/v1/peers"];

/// The guard of one API listener.
pub struct Guard {
    bind: SocketAddr,
    hosts: Vec<String>,
    token: String,
    token_required: bool,
    token_for_reads: bool,
    in_flight: Arc<Semaphore>,
    max_requests: usize,
    metrics: Arc<Metrics>,
}

impl Guard {
    /// The guard for an API listening on `bind` with `settings` and `token`; refusals
    /// are counted in `metrics`.
    pub fn new(
        bind: SocketAddr,
        settings: &ApiSettings,
        token: String,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            bind,
            hosts: settings.hosts.clone(),
            token,
            token_required: settings.token_always || !bind.ip().is_loopback(),
            token_for_reads: settings.token_for_reads,
            in_flight: Arc::new(Semaphore::new(settings.max_requests)),
            max_requests: settings.max_requests,
            metrics,
        }
    }

    /// True if and only if requests (but the read-only pages, unless
    /// `api_token_for_reads`) must carry the token.
    pub fn token_required(&self) -> bool {
        self.token_required
    }

    fn refuse(&self, reason: ApiRefusal, error: ApiError) -> Response {
        self.metrics.api_refused(reason);
        error.into_response()
    }

    /// True if and only if `host` (a `Host` header) names an address this API serves.
    fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        let bound = self.bind.ip();
        if let Ok(ip) = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return bound.is_unspecified()
                || ip == bound
                || (ip.is_loopback() && bound.is_loopback());
        }
        if name == "localhost" || name.ends_with(".localhost") {
            return bound.is_loopback() || bound.is_unspecified();
        }
        self.hosts.contains(&name)
    }

    /// Why a request that changes something would be refused as cross-origin, if it is.
    fn cross_origin(headers: &HeaderMap) -> Option<String> {
        let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site"))
            && site != "same-origin"
            && site != "none"
        {
            return Some(format!("Sec-Fetch-Site: {site}"));
        }
        let origin = headers.get(header::ORIGIN)?;
        let host = text(header::HOST).unwrap_or_default();
        let origin_text = origin.to_str().unwrap_or("(not text)");
        let own = [format!("http://{host}"), format!("https://{host}")];
        if own.iter().any(|o| o.eq_ignore_ascii_case(origin_text)) {
            return None;
        }
        Some(format!("Origin: {origin_text}"))
    }

    fn has_token(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .is_some_and(|(_, given)| super::token::matches(given.trim(), &self.token))
    }
}

/// `host[:port]` → `host` (an IPv6 literal keeps its brackets); anything else after
/// the name than `:` and a port makes the whole text the name, which matches nothing.
fn host_name(host: &str) -> &str {
    let (name, rest) = if host.starts_with('[') {
        match host.find(']') {
            Some(end) => host.split_at(end + 1),
            None => return host,
        }
    } else {
        host.rsplit_once(':')
            .map_or((host, ""), |(n, _)| (n, &host[n.len()..]))
    };
    let port_ok = rest.is_empty()
        || rest
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if port_ok { name } else { host }
}

/// The middleware.
pub(crate) async fn check(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let Ok(_permit) = Arc::clone(&guard.in_flight).try_acquire_owned() else {
        return guard.refuse(
            ApiRefusal::Busy,
            ApiError::new(
                ErrorKind::Busy,
                format!(
                    "busy: {} API requests are in flight (api_max_requests); retry shortly",
                    guard.max_requests
                ),
            ),
        );
    };
    let headers = req.headers();
    if let Some(host) = headers.get(header::HOST) {
        let host = host.to_str().unwrap_or("(not text)");
        if !guard.host_allowed(host) {
            return guard.refuse(
                ApiRefusal::Host,
                ApiError::new(ErrorKind::BadHost,
                    format!(
                        "this node's API does not answer to host {host:?} (a defence against DNS rebinding); \
                         if the node really is reached by that name, start it with --api-host NAME"
                    ),
                ),
            );
        }
    }
    let open = matches!(*req.method(), Method::GET | Method::HEAD)
        && OPEN_READS.contains(&req.uri().path())
        && !guard.token_for_reads;
    if !open {
        if let Some(why) = Guard::cross_origin(headers) {
            return guard.refuse(
                ApiRefusal::CrossOrigin,
                ApiError::new(ErrorKind::CrossOrigin,
                    format!(
                        "refused a request from a web page of another origin ({why}): the API acts only \
                         for its own status page and for programs such as the kith CLI (docs/security.md)"
                    ),
                ),
            );
        }
        if guard.token_required && !guard.has_token(headers) {
            return guard.refuse(
                ApiRefusal::Token,
                ApiError::new(ErrorKind::Unauthorized,
                    "this request needs the node's API token: send `Authorization: Bearer TOKEN` with the \
                     token in the node's data dir (file api-token); the kith CLI and the SDK client on \
                     the node's machine send it by themselves",
                ),
            );
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::host_name;

    #[test]
    fn host_names_are_parsed_strictly() {
        assert_eq!(host_name("127.0.0.1:7070"), "127.0.0.1");
        assert_eq!(host_name("localhost"), "localhost");
        assert_eq!(host_name("[::1]:7070"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
        // Anything odd after the name keeps the whole text, which names no host.
        assert_eq!(host_name("[::1]junk"), "[::1]junk");
        assert_eq!(host_name("127.0.0.1:"), "127.0.0.1:");
        assert_eq!(host_name("127.0.0.1:70x"), "127.0.0.1:70x");
    }
}
