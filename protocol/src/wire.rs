//! Messages of kith's own libp2p protocols, and their byte encoding.
//!
//! Each message travels as one frame: a `u32` little-endian length, then that many
//! bytes of body. A receiver refuses a length above its limit before reading the body.
//! Every body starts with a format version byte ([`VERSION`]). `docs/wire-format.md`
//! is the byte-level specification.
//!
//! - `/kith/fetch/1`: [`FetchRequest`] → [`FetchResponse`] (module bytes by id).
//! - `/kith/invoke/1`: [`InvokeRequest`] → [`InvokeResponse`] (run a call).

use crate::FunctionId;

/// Format version of every body.
pub const VERSION: u8 = 1;
/// Protocol id of fetch.
pub const FETCH_PROTOCOL: &str = "/kith/fetch/1";
/// Protocol id of invoke.
pub const INVOKE_PROTOCOL: &str = "/kith/invoke/1";
/// Most hops a call may be forwarded: an invoked peer runs the call itself.
pub const MAX_HOPS: u8 = 1;
/// Most bytes of an error kind.
pub const MAX_KIND: usize = 64;
/// Most bytes of an error message.
pub const MAX_MESSAGE: usize = 4096;
/// Bytes of framing and headers a body adds to its payload, at most.
pub const OVERHEAD: u64 = 128 + MAX_KIND as u64 + MAX_MESSAGE as u64;

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Shorter than its fixed part.
    #[error("message truncated: {0} bytes")]
    Truncated(usize),
    /// Unknown version.
    #[error("message format version {0} is not supported (this node speaks {VERSION})")]
    Version(u8),
    /// Unknown status or field value.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// Over a size limit.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size.
        size: u64,
        /// Limit.
        limit: u64,
    },
}

fn header(body: &[u8], min: usize) -> Result<&[u8], WireError> {
    if body.len() < min.max(1) {
        return Err(WireError::Truncated(body.len()));
    }
    if body[0] != VERSION {
        return Err(WireError::Version(body[0]));
    }
    Ok(&body[1..])
}

fn id_at(bytes: &[u8]) -> FunctionId {
    let mut id = [0u8; 32];
    id.copy_from_slice(&bytes[..32]);
    FunctionId::from_bytes(id)
}

/// Ask a peer for a module's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// The function.
    pub id: FunctionId,
}

impl FetchRequest {
    /// Encodes: version, id (32 bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![VERSION];
        b.extend_from_slice(self.id.as_bytes());
        b
    }

    /// Decodes.
    ///
    /// # Errors
    /// On a short, oversized or unknown-version body.
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        let rest = header(body, 33)?;
        if rest.len() != 32 {
            return Err(WireError::Malformed("fetch request has trailing bytes"));
        }
        Ok(Self { id: id_at(rest) })
    }
}

/// A fetch answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchResponse {
    /// The module bytes (the receiver verifies them against the id).
    Found(Vec<u8>),
    /// The peer does not have it.
    NotFound,
}

impl FetchResponse {
    /// Encodes: version, status (0 found, 1 not found), module bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Found(bytes) => {
                let mut b = Vec::with_capacity(bytes.len() + 2);
                b.extend_from_slice(&[VERSION, 0]);
                b.extend_from_slice(bytes);
                b
            }
            Self::NotFound => vec![VERSION, 1],
        }
    }

    /// Decodes.
    ///
    /// # Errors
    /// On a short body, unknown version or status.
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        let rest = header(body, 2)?;
        match rest[0] {
            0 => Ok(Self::Found(rest[1..].to_vec())),
            1 if rest.len() == 1 => Ok(Self::NotFound),
            _ => Err(WireError::Malformed("unknown fetch status")),
        }
    }
}

/// Ask a peer to run a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeRequest {
    /// The function.
    pub id: FunctionId,
    /// Times this call has been forwarded so far (the receiver refuses more than
    /// [`MAX_HOPS`] and never forwards further).
    pub hops: u8,
    /// The input bytes.
    pub input: Vec<u8>,
}

impl InvokeRequest {
    /// Encodes: version, id (32), hops (1), input bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.input.len() + 34);
        b.push(VERSION);
        b.extend_from_slice(self.id.as_bytes());
        b.push(self.hops);
        b.extend_from_slice(&self.input);
        b
    }

    /// Decodes.
    ///
    /// # Errors
    /// On a short body, unknown version, or too many hops.
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        let rest = header(body, 34)?;
        let hops = rest[32];
        if hops > MAX_HOPS {
            return Err(WireError::Malformed("too many hops"));
        }
        Ok(Self {
            id: id_at(rest),
            hops,
            input: rest[33..].to_vec(),
        })
    }
}

/// An invoke answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeResponse {
    /// The call ran and returned output.
    Ok {
        /// Fuel used.
        fuel_used: u64,
        /// Wall time of the guest call, in microseconds.
        wall_us: u64,
        /// The output.
        output: Vec<u8>,
    },
    /// The call failed or was refused. `kind` is an HTTP API error kind (e.g. `busy`,
    /// `out_of_fuel`); see `docs/http-api.md`.
    Err {
        /// The error kind.
        kind: String,
        /// A human-readable message.
        message: String,
    },
}

impl InvokeResponse {
    /// Encodes: version, status 0 then fuel (u64), wall µs (u64), output; or status 1
    /// then kind length (u8), kind (UTF-8), message (UTF-8, the rest).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Ok {
                fuel_used,
                wall_us,
                output,
            } => {
                let mut b = Vec::with_capacity(output.len() + 18);
                b.extend_from_slice(&[VERSION, 0]);
                b.extend_from_slice(&fuel_used.to_le_bytes());
                b.extend_from_slice(&wall_us.to_le_bytes());
                b.extend_from_slice(output);
                b
            }
            Self::Err { kind, message } => {
                let kind = truncate(kind, MAX_KIND);
                let message = truncate(message, MAX_MESSAGE);
                let mut b = vec![VERSION, 1, kind.len() as u8];
                b.extend_from_slice(kind.as_bytes());
                b.extend_from_slice(message.as_bytes());
                b
            }
        }
    }

    /// Decodes.
    ///
    /// # Errors
    /// On a short body, unknown version or status, invalid UTF-8.
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        let rest = header(body, 2)?;
        match rest[0] {
            0 => {
                if rest.len() < 17 {
                    return Err(WireError::Truncated(body.len()));
                }
                let mut u = [0u8; 8];
                u.copy_from_slice(&rest[1..9]);
                let fuel_used = u64::from_le_bytes(u);
                u.copy_from_slice(&rest[9..17]);
                Ok(Self::Ok {
                    fuel_used,
                    wall_us: u64::from_le_bytes(u),
                    output: rest[17..].to_vec(),
                })
            }
            1 => {
                let len = usize::from(*rest.get(1).ok_or(WireError::Truncated(body.len()))?);
                let kind = rest
                    .get(2..2 + len)
                    .ok_or(WireError::Truncated(body.len()))?;
                let message = &rest[2 + len..];
                if message.len() > MAX_MESSAGE {
                    return Err(WireError::TooLarge {
                        size: message.len() as u64,
                        limit: MAX_MESSAGE as u64,
                    });
                }
                let text = |b: &[u8]| {
                    std::str::from_utf8(b)
                        .map(str::to_owned)
                        .map_err(|_| WireError::Malformed("error text is not UTF-8"))
                };
                Ok(Self::Err {
                    kind: text(kind)?,
                    message: text(message)?,
                })
            }
            _ => Err(WireError::Malformed("unknown invoke status")),
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let id = FunctionId::of(b"x");
        let f = FetchRequest { id };
        assert_eq!(FetchRequest::decode(&f.encode()), Ok(f));
        for r in [
            FetchResponse::Found(b"module".to_vec()),
            FetchResponse::NotFound,
        ] {
            assert_eq!(FetchResponse::decode(&r.encode()), Ok(r));
        }
        let i = InvokeRequest {
            id,
            hops: 1,
            input: b"in".to_vec(),
        };
        assert_eq!(InvokeRequest::decode(&i.encode()), Ok(i));
        for r in [
            InvokeResponse::Ok {
                fuel_used: 5,
                wall_us: 9,
                output: b"out".to_vec(),
            },
            InvokeResponse::Err {
                kind: "busy".into(),
                message: "full".into(),
            },
        ] {
            assert_eq!(InvokeResponse::decode(&r.encode()), Ok(r));
        }
    }

    #[test]
    fn refuses_malformed() {
        assert!(FetchRequest::decode(&[]).is_err());
        assert!(FetchRequest::decode(&[2; 33]).is_err());
        assert!(FetchResponse::decode(&[VERSION, 7]).is_err());
        let mut hops = InvokeRequest {
            id: FunctionId::of(b"x"),
            hops: 0,
            input: vec![],
        }
        .encode();
        hops[33] = 5;
        assert_eq!(
            InvokeRequest::decode(&hops),
            Err(WireError::Malformed("too many hops"))
        );
        assert!(InvokeResponse::decode(&[VERSION, 0, 1]).is_err());
        assert!(InvokeResponse::decode(&[VERSION, 1, 9, b'a']).is_err());
        assert!(InvokeResponse::decode(&[VERSION, 1, 1, b'a', 0xff]).is_err());
    }
}
