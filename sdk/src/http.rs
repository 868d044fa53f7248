//! A small blocking HTTP/1.1 client: what [`crate::client::Client`] needs to talk to a
//! node's API over plain `http://` — one request per connection (`Connection: close`),
//! bodies by `Content-Length`, chunked or to the end of the stream.
//!
//! Written for kith instead of a general client: the CLI lives in the node's own binary,
//! and the small build for routers has no room for a second HTTP stack (reqwest and
//! hyper's client side were about 270 KiB of its code, `docs/benchmarks.md` (q)). A node's API is plain HTTP on
//! loopback or a LAN; put TLS in front of it with a reverse proxy, which this client does
//! not speak to.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// An HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Method(&'static str);

impl Method {
    /// `GET`.
    pub const GET: Method = Method("GET");
    /// `POST`.
    pub const POST: Method = Method("POST");
    /// `PUT`.
    pub const PUT: Method = Method("PUT");
    /// `DELETE`.
    pub const DELETE: Method = Method("DELETE");

    /// The method's name.
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

/// Time to connect to the node, per address its name resolves to.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time one read or write may block: longer than the longest call a node allows.
pub const IO_TIMEOUT: Duration = Duration::from_secs(660);
/// Largest answer read, bytes: larger than any output, module or document a node sends.
pub const MAX_BODY: u64 = 1 << 30;
/// Largest status line plus headers, bytes.
pub const MAX_HEAD: usize = 64 * 1024;

/// Why a request failed before an answer was read whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The base URL is not `http://host[:port][/prefix]`.
    #[error("{url:?} is not an http:// URL ({why})")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A header value with a line break or a control character.
    #[error("header {name} has a value that cannot be sent (a line break or control character)")]
    BadHeader {
        /// The header's name.
        name: String,
    },
    /// No connection to any address of the host.
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        /// `host:port`.
        authority: String,
        /// The last address's error.
        source: std::io::Error,
    },
    /// Sending the request or reading the answer failed (including timeouts).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The answer is not HTTP/1.x as this client reads it.
    #[error("malformed answer: {0}")]
    Malformed(&'static str),
    /// The answer's body is larger than [`MAX_BODY`] or its head than [`MAX_HEAD`].
    #[error("the answer's {part} is larger than the client's limit of {limit} bytes ({name})")]
    TooLarge {
        /// `body` or `head`.
        part: &'static str,
        /// The limit's name (`MAX_BODY` or `MAX_HEAD`).
        name: &'static str,
        /// The limit passed.
        limit: u64,
    },
    /// The answer is not the JSON the call expects.
    #[error("the answer is not the JSON expected: {0}")]
    Decode(#[from] serde_json::Error),
}

/// Where a node's API is: host, port and a path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    host: String,
    port: u16,
    authority: String,
    prefix: String,
}

impl Endpoint {
    /// Parses `http://host[:port][/prefix]` (an IPv6 host in brackets).
    ///
    /// # Errors
    /// Another scheme, no host, or a bad port.
    pub fn parse(url: &str) -> Result<Self, HttpError> {
        let bad = |why| HttpError::Url {
            url: url.to_owned(),
            why,
        };
        if url.starts_with("https://") {
            return Err(bad("https is not spoken here: a node's API is plain HTTP"));
        }
        // `host:port` alone means http.
        let rest = match url.strip_prefix("http://") {
            Some(rest) => rest,
            None if !url.contains("://") => url,
            None => return Err(bad("it must start with http://")),
        };
        let (authority, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') && !p.contains(']') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| bad("the port is not a number"))?,
            ),
            _ => (authority, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(['@', ' ']) {
            return Err(bad("no usable host"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            prefix: prefix.trim_end_matches('/').to_owned(),
        })
    }
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (any case), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `path` with every byte a request line cannot carry as-is percent-encoded.
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for &b in path.as_bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b);
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Sends one request and reads the answer whole.
///
/// # Errors
/// See [`HttpError`]; an error status is an answer, not an error.
pub fn send(
    endpoint: &Endpoint,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, HttpError> {
    let mut head = format!(
        "{} {}{} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        method.as_str(),
        endpoint.prefix,
        encode_path(path),
        endpoint.authority,
        body.len()
    );
    for (name, value) in headers {
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(HttpError::BadHeader {
                name: (*name).to_owned(),
            });
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = connect(endpoint)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let _ = stream.set_nodelay(true);
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    read_response(BufReader::new(stream))
}

fn connect(endpoint: &Endpoint) -> Result<TcpStream, HttpError> {
    let failed = |source| HttpError::Connect {
        authority: endpoint.authority.clone(),
        source,
    };
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "the name has no address");
    for addr in (endpoint.host.as_str(), endpoint.port)
        .to_socket_addrs()
        .map_err(failed)?
    {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(failed(last))
}

/// Reads one line of the head, without its line end, counting against [`MAX_HEAD`].
fn head_line(reader: &mut impl BufRead, budget: &mut usize) -> Result<String, HttpError> {
    let mut line = Vec::new();
    let limit = u64::try_from(*budget).unwrap_or(u64::MAX);
    let n = reader.by_ref().take(limit).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(HttpError::Malformed(
            "the connection closed before the head ended",
        ));
    }
    if line.last() != Some(&b'\n') {
        return Err(HttpError::TooLarge {
            part: "head",
            name: "MAX_HEAD",
            limit: MAX_HEAD as u64,
        });
    }
    *budget -= n;
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| HttpError::Malformed("a head line is not UTF-8"))
}

fn read_response(mut reader: impl BufRead) -> Result<Response, HttpError> {
    let mut budget = MAX_HEAD;
    let (status, headers) = loop {
        let status_line = head_line(&mut reader, &mut budget)?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") {
            return Err(HttpError::Malformed("not an HTTP/1.x status line"));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or(HttpError::Malformed("no status code"))?;
        let mut headers = Vec::new();
        loop {
            let line = head_line(&mut reader, &mut budget)?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or(HttpError::Malformed("a header line without a colon"))?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        // Interim answers (100 Continue) come before the real one.
        if !(100..200).contains(&status) {
            break (status, headers);
        }
    };
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    // No HEAD is ever sent, so only these statuses come without a body.
    if status == 204 || status == 304 {
        return Ok(response);
    }
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    response.body = if chunked {
        read_chunked(&mut reader)?
    } else if let Some(length) = response.header("content-length") {
        let length: u64 = length
            .parse()
            .map_err(|_| HttpError::Malformed("Content-Length is not a number"))?;
        if length > MAX_BODY {
            return Err(HttpError::TooLarge {
                part: "body",
                name: "MAX_BODY",
                limit: MAX_BODY,
            });
        }
        let mut body = Vec::new();
        reader.take(length).read_to_end(&mut body)?;
        if body.len() as u64 != length {
            return Err(HttpError::Malformed(
                "the body is shorter than its Content-Length",
            ));
        }
        body
    } else {
        read_to_end_capped(&mut reader)?
    };
    Ok(response)
}

/// Reads to the end of the stream, at most [`MAX_BODY`] bytes.
fn read_to_end_capped(reader: &mut impl Read) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    reader.take(MAX_BODY + 1).read_to_end(&mut body)?;
    if body.len() as u64 > MAX_BODY {
        return Err(HttpError::TooLarge {
            part: "body",
            name: "MAX_BODY",
            limit: MAX_BODY,
        });
    }
    Ok(body)
}

/// A chunked body, decoded (trailers read and dropped).
fn read_chunked(reader: &mut impl BufRead) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    let mut budget = MAX_HEAD;
    loop {
        let line = head_line(reader, &mut budget)?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size, 16)
            .map_err(|_| HttpError::Malformed("a chunk size is not hexadecimal"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !head_line(reader, &mut budget)?.is_empty() {}
            return Ok(body);
        }
        if body.len() as u64 + size > MAX_BODY {
            return Err(HttpError::TooLarge {
                part: "body",
                name: "MAX_BODY",
                limit: MAX_BODY,
            });
        }
        let before = body.len();
        reader.by_ref().take(size).read_to_end(&mut body)?;
        if (body.len() - before) as u64 != size {
            return Err(HttpError::Malformed("the stream ended inside a chunk"));
        }
        if !head_line(reader, &mut budget)?.is_empty() {
            return Err(HttpError::Malformed("a chunk is longer than its size"));
        }
        budget = MAX_HEAD;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(raw: &[u8]) -> Result<Response, HttpError> {
        read_response(raw)
    }

    #[test]
    fn endpoints_parse() {
        let e = Endpoint::parse("http://127.0.0.1:7070/").expect("valid");
        assert_eq!(
            (e.host.as_str(), e.port, e.prefix.as_str()),
            ("127.0.0.1", 7070, "")
        );
        let e = Endpoint::parse("http://[::1]:8080/kith").expect("valid");
        assert_eq!(
            (e.host.as_str(), e.port, e.prefix.as_str()),
            ("::1", 8080, "/kith")
        );
        assert_eq!(e.authority, "[::1]:8080");
        let e = Endpoint::parse("http://node.lan").expect("valid");
        assert_eq!((e.host.as_str(), e.port), ("node.lan", 80));
        let e = Endpoint::parse("127.0.0.1:7070").expect("http is implied");
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 7070));
        for bad in [
            "https://x",
            "ftp://x",
            "http://",
            "http://h:port",
            "http://a b",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_are_encoded_for_the_request_line() {
        assert_eq!(encode_path("/v1/call/a b?x=1"), "/v1/call/a%20b?x=1");
        assert_eq!(encode_path("/v1/call/é\r\n"), "/v1/call/%C3%A9%0D%0A");
    }

    #[test]
    fn bodies_by_length_chunks_and_end_of_stream() {
        let r = read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nKith-Fuel-Used: 7\r\n\r\nhello")
            .expect("an answer");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        assert_eq!(r.header("kith-fuel-used"), Some("7"));
        let r = read(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n",
        )
        .expect("an answer");
        assert_eq!((r.status, r.body.as_slice()), (201, &b"abcde"[..]));
        let r = read(b"HTTP/1.0 404 Not Found\r\n\r\ngone").expect("an answer");
        assert_eq!((r.status, r.body.as_slice()), (404, &b"gone"[..]));
    }

    #[test]
    fn bad_answers_are_errors_not_panics() {
        let cases: [&[u8]; 7] = [
            b"",
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        ];
        for raw in cases {
            assert!(read(raw).is_err(), "{:?}", String::from_utf8_lossy(raw));
        }
        let huge = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(matches!(
            read(huge.as_bytes()),
            Err(HttpError::TooLarge { .. })
        ));
        let long_head = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(matches!(
            read(long_head.as_bytes()),
            Err(HttpError::TooLarge { .. })
        ));
    }
}
