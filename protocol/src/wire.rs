//! Messages of kith's own libp2p protocols, and their byte encoding.
//!
//! Each message travels as one frame: a `u32` little-endian length, then that many
//! bytes of body. A receiver refuses a length above its limit before reading the body.
//! Every body starts with a format version byte ([`VERSION`]). `docs/wire-format.md`
//! is the byte-level specification.
//!
//! - `/kith/fetch/1`: [`FetchRequest`] → [`FetchResponse`] (module bytes by id).
//! - `/kith/invoke/2`: [`InvokeRequest`] → [`InvokeResponse`] (run a call; an answer
//!   with output carries the executor's signed [`crate::receipt`]).

use crate::FunctionId;
use crate::error::ErrorKind;
use crate::receipt::{self, CallId};

/// Format version of every body.
pub const VERSION: u8 = 1;
/// Protocol id of fetch.
pub const FETCH_PROTOCOL: &str = "/kith/fetch/1";
/// Protocol id of invoke (2: requests carry a call id, answers a receipt).
pub const INVOKE_PROTOCOL: &str = "/kith/invoke/2";
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
    /// An answer's receipt does not decode or its signature does not verify.
    #[error("the answer's receipt is refused: {0}")]
    Receipt(receipt::ReceiptError),
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

/// Largest chunk of module bytes one fetch answer carries. Modules travel as a series
/// of chunks, so no frame (and no buffer on either side) exceeds this, and a fetch can
/// continue from another provider.
pub const FETCH_CHUNK: u32 = 256 * 1024;

fn u64_at(bytes: &[u8]) -> u64 {
    let mut u = [0u8; 8];
    u.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(u)
}

/// Ask a peer for a range of a module's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// The function.
    pub id: FunctionId,
    /// First byte wanted.
    pub offset: u64,
    /// Bytes wanted at most (the answer carries at most [`FETCH_CHUNK`]).
    pub max_len: u32,
}

impl FetchRequest {
    /// Encoded length.
    pub const LEN: usize = 1 + 32 + 8 + 4;

    /// Encodes: version, id (32 bytes), offset (u64), max_len (u32).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(Self::LEN);
        b.push(VERSION);
        b.extend_from_slice(self.id.as_bytes());
        b.extend_from_slice(&self.offset.to_le_bytes());
        b.extend_from_slice(&self.max_len.to_le_bytes());
        b
    }

    /// Decodes.
    ///
    /// # Errors
    /// On a short, oversized or unknown-version body.
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        let rest = header(body, Self::LEN)?;
        if rest.len() != Self::LEN - 1 {
            return Err(WireError::Malformed("fetch request has trailing bytes"));
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(&rest[40..44]);
        Ok(Self {
            id: id_at(rest),
            offset: u64_at(&rest[32..]),
            max_len: u32::from_le_bytes(len),
        })
    }
}

/// A fetch answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchResponse {
    /// A chunk of the module (the receiver verifies the whole against the id).
    Found {
        /// The module's total size in bytes.
        total: u64,
        /// Where this chunk starts.
        offset: u64,
        /// The chunk.
        bytes: Vec<u8>,
    },
    /// The peer does not have it (or the range is outside it).
    NotFound,
}

impl FetchResponse {
    /// The answer to `request` from a peer holding `module`.
    pub fn answer(request: &FetchRequest, module: &[u8]) -> Self {
        let total = module.len() as u64;
        if request.offset > total || (request.offset == total && total > 0) {
            return Self::NotFound;
        }
        // Within `module`, so it fits in usize.
        let start = request.offset as usize;
        let len = request.max_len.min(FETCH_CHUNK) as usize;
        let end = start.saturating_add(len).min(module.len());
        Self::Found {
            total,
            offset: request.offset,
            bytes: module[start..end].to_vec(),
        }
    }

    /// Encodes: version, status (0 found, 1 not found); when found, total (u64),
    /// offset (u64), then the chunk's bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Found {
                total,
                offset,
                bytes,
            } => {
                let mut b = Vec::with_capacity(bytes.len() + 18);
                b.extend_from_slice(&[VERSION, 0]);
                b.extend_from_slice(&total.to_le_bytes());
                b.extend_from_slice(&offset.to_le_bytes());
                b.extend_from_slice(bytes);
                b
            }
            Self::NotFound => vec![VERSION, 1],
        }
    }

    /// Decodes.
    ///
    /// # Errors
    /// On a short body, unknown version or status, or a chunk over [`FETCH_CHUNK`] or
    /// past the stated total.
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        let rest = header(body, 2)?;
        match rest[0] {
            0 if rest.len() >= 17 => {
                let (total, offset) = (u64_at(&rest[1..]), u64_at(&rest[9..]));
                let bytes = rest[17..].to_vec();
                if bytes.len() > FETCH_CHUNK as usize {
                    return Err(WireError::TooLarge {
                        size: bytes.len() as u64,
                        limit: u64::from(FETCH_CHUNK),
                    });
                }
                if offset.saturating_add(bytes.len() as u64) > total {
                    return Err(WireError::Malformed(
                        "fetch chunk runs past the module's size",
                    ));
                }
                Ok(Self::Found {
                    total,
                    offset,
                    bytes,
                })
            }
            0 => Err(WireError::Truncated(body.len())),
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
    /// The id the entry node gave the call (the receipt must name it).
    pub call: CallId,
    /// The input bytes.
    pub input: Vec<u8>,
}

impl InvokeRequest {
    /// Length before the input.
    pub const HEADER_LEN: usize = 1 + 32 + 1 + 16;

    /// Encodes: version, id (32), hops (1), call id (16), input bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.input.len() + Self::HEADER_LEN);
        b.push(VERSION);
        b.extend_from_slice(self.id.as_bytes());
        b.push(self.hops);
        b.extend_from_slice(&self.call.0);
        b.extend_from_slice(&self.input);
        b
    }

    /// Decodes.
    ///
    /// # Errors
    /// On a short body, unknown version, or too many hops.
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        let rest = header(body, Self::HEADER_LEN)?;
        let hops = rest[32];
        if hops > MAX_HOPS {
            return Err(WireError::Malformed("too many hops"));
        }
        let mut call = [0u8; 16];
        call.copy_from_slice(&rest[33..49]);
        Ok(Self {
            id: id_at(rest),
            hops,
            call: CallId(call),
            input: rest[49..].to_vec(),
        })
    }
}

/// An invoke answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeResponse {
    /// The call ran and returned output.
    Ok {
        /// The executor's signed receipt (fuel used, wall time, hashes of input and
        /// output); the receiver checks it (`receipt::Signed::check`).
        receipt: Box<receipt::Signed>,
        /// The output.
        output: Vec<u8>,
    },
    /// The call failed or was refused. `kind` travels as its wire code (e.g. `busy`,
    /// `out_of_fuel`; see `docs/http-api.md`); a code this version does not know
    /// decodes as [`ErrorKind::RemoteError`].
    Err {
        /// The error kind.
        kind: ErrorKind,
        /// A human-readable message.
        message: String,
    },
}

impl InvokeResponse {
    /// Encodes: version, status 0 then the receipt ([`receipt::ENCODED_LEN`] bytes),
    /// output; or status 1 then kind length (u8), kind (UTF-8), message (UTF-8, the
    /// rest).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Ok { receipt, output } => {
                let mut b = Vec::with_capacity(output.len() + 2 + receipt::ENCODED_LEN);
                b.extend_from_slice(&[VERSION, 0]);
                b.extend_from_slice(&receipt.encode());
                b.extend_from_slice(output);
                b
            }
            Self::Err { kind, message } => {
                let kind = truncate(kind.code(), MAX_KIND);
                let message = truncate(message, MAX_MESSAGE);
                let mut b = vec![VERSION, 1, kind.len() as u8];
                b.extend_from_slice(kind.as_bytes());
                b.extend_from_slice(message.as_bytes());
                b
            }
        }
    }

    /// Decodes. A receipt's signature is verified here; whether it belongs to the
    /// call is for the receiver to check.
    ///
    /// # Errors
    /// On a short body, unknown version or status, invalid UTF-8, a receipt that does
    /// not decode or verify.
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        let rest = header(body, 2)?;
        match rest[0] {
            0 => {
                let end = 1 + receipt::ENCODED_LEN;
                let bytes = rest.get(1..end).ok_or(WireError::Truncated(body.len()))?;
                let receipt = receipt::Signed::decode(bytes).map_err(WireError::Receipt)?;
                Ok(Self::Ok {
                    receipt: Box::new(receipt),
                    output: rest[end..].to_vec(),
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
                    kind: ErrorKind::from_code(&text(kind)?),
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

    fn test_receipt(output: &[u8]) -> receipt::Signed {
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        receipt::Receipt {
            function: FunctionId::of(b"x"),
            input: receipt::digest(b"in"),
            output: receipt::digest(output),
            fuel_used: 5,
            wall_us: 9,
            executor: key.verifying_key().to_bytes(),
            entry: [1; 32],
            call: CallId([3; 16]),
        }
        .sign(&key)
    }

    #[test]
    fn round_trips() {
        let id = FunctionId::of(b"x");
        let f = FetchRequest {
            id,
            offset: 7,
            max_len: 9,
        };
        assert_eq!(FetchRequest::decode(&f.encode()), Ok(f));
        for r in [
            FetchResponse::Found {
                total: 10,
                offset: 4,
                bytes: b"module".to_vec(),
            },
            FetchResponse::NotFound,
        ] {
            assert_eq!(FetchResponse::decode(&r.encode()), Ok(r));
        }
        let i = InvokeRequest {
            id,
            hops: 1,
            call: CallId([3; 16]),
            input: b"in".to_vec(),
        };
        assert_eq!(InvokeRequest::decode(&i.encode()), Ok(i));
        for r in [
            InvokeResponse::Ok {
                receipt: Box::new(test_receipt(b"out")),
                output: b"out".to_vec(),
            },
            InvokeResponse::Err {
                kind: ErrorKind::Busy,
                message: "full".into(),
            },
        ] {
            assert_eq!(InvokeResponse::decode(&r.encode()), Ok(r));
        }
    }

    #[test]
    fn answers_cover_a_module_in_chunks() {
        let module: Vec<u8> = (0..(FETCH_CHUNK as usize * 2 + 10))
            .map(|i| i as u8)
            .collect();
        let id = FunctionId::of(&module);
        let mut got = Vec::new();
        loop {
            let request = FetchRequest {
                id,
                offset: got.len() as u64,
                max_len: u32::MAX,
            };
            match FetchResponse::answer(&request, &module) {
                FetchResponse::Found {
                    total,
                    offset,
                    bytes,
                } => {
                    assert_eq!((total, offset), (module.len() as u64, got.len() as u64));
                    assert!(bytes.len() <= FETCH_CHUNK as usize);
                    got.extend_from_slice(&bytes);
                    if got.len() as u64 == total {
                        break;
                    }
                }
                FetchResponse::NotFound => panic!("range refused at {}", got.len()),
            }
        }
        assert_eq!(got, module);
        let past = FetchRequest {
            id,
            offset: module.len() as u64 + 1,
            max_len: 1,
        };
        assert_eq!(
            FetchResponse::answer(&past, &module),
            FetchResponse::NotFound
        );
    }

    #[test]
    fn refuses_malformed() {
        assert!(FetchRequest::decode(&[]).is_err());
        assert!(FetchRequest::decode(&[2; 45]).is_err());
        assert!(
            FetchRequest::decode(&[VERSION; 33]).is_err(),
            "the old, shorter request"
        );
        assert!(FetchResponse::decode(&[VERSION, 7]).is_err());
        assert!(
            FetchResponse::decode(&[VERSION, 0, 1]).is_err(),
            "truncated header"
        );
        let past_end = FetchResponse::Found {
            total: 3,
            offset: 2,
            bytes: b"xy".to_vec(),
        }
        .encode();
        assert!(FetchResponse::decode(&past_end).is_err());
        let oversized = FetchResponse::Found {
            total: u64::MAX,
            offset: 0,
            bytes: vec![0; FETCH_CHUNK as usize + 1],
        }
        .encode();
        assert!(matches!(
            FetchResponse::decode(&oversized),
            Err(WireError::TooLarge { .. })
        ));
        let mut hops = InvokeRequest {
            id: FunctionId::of(b"x"),
            hops: 0,
            call: CallId([0; 16]),
            input: vec![],
        }
        .encode();
        hops[33] = 5;
        assert_eq!(
            InvokeRequest::decode(&hops),
            Err(WireError::Malformed("too many hops"))
        );
        assert!(InvokeResponse::decode(&[VERSION, 0, 1]).is_err());
        let mut forged = InvokeResponse::Ok {
            receipt: Box::new(test_receipt(b"out")),
            output: b"out".to_vec(),
        }
        .encode();
        forged[40] ^= 1;
        assert_eq!(
            InvokeResponse::decode(&forged),
            Err(WireError::Receipt(receipt::ReceiptError::BadSignature))
        );
        assert!(InvokeResponse::decode(&[VERSION, 1, 9, b'a']).is_err());
        assert!(InvokeResponse::decode(&[VERSION, 1, 1, b'a', 0xff]).is_err());
    }
}
