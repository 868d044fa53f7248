//! The messages of `/kith/sync/1` and their bytes.

use super::{DocName, MAX_NAME, MAX_SYNC_MESSAGE, StateError, VERSION};
use crate::alias::Namespace;
use crate::error::ErrorKind;

/// One round of document sync: "here is my Automerge sync message for `doc`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    /// The document.
    pub doc: DocName,
    /// An encoded Automerge sync message (opaque here).
    pub message: Vec<u8>,
}

/// The answer to a [`SyncRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncResponse {
    /// The peer's next sync message.
    Message(Vec<u8>),
    /// The peer has nothing more to send for now.
    Done,
    /// The peer does not hold this document (and will not start to).
    NotHosted,
    /// The peer refused the message (malformed, over a cap): the error kind (an
    /// unknown code decodes as `remote_error`) and why.
    Refused {
        /// The kind.
        kind: ErrorKind,
        /// Why, for people.
        message: String,
    },
}

fn put_name(out: &mut Vec<u8>, doc: &DocName) {
    out.extend_from_slice(&doc.namespace.0);
    // Names are at most MAX_NAME (64) bytes, checked when built.
    out.push(u8::try_from(doc.name.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(doc.name.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], StateError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| StateError::Malformed(format!("truncated {what}")))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8, StateError> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32, StateError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn name(&mut self) -> Result<DocName, StateError> {
        let mut ns = [0u8; 32];
        ns.copy_from_slice(self.take(32, "namespace")?);
        let len = usize::from(self.u8("name length")?);
        let name = std::str::from_utf8(self.take(len, "name")?)
            .map_err(|_| StateError::Malformed("document name is not UTF-8".into()))?;
        DocName::new(Namespace(ns), name)
    }

    fn version(&mut self) -> Result<(), StateError> {
        match self.u8("version")? {
            VERSION => Ok(()),
            v => Err(StateError::Malformed(format!(
                "version {v} (this node speaks {VERSION})"
            ))),
        }
    }

    fn end(&self) -> Result<(), StateError> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(StateError::Malformed(format!(
                "{} trailing bytes",
                self.bytes.len() - self.at
            )))
        }
    }

    fn message(&mut self) -> Result<Vec<u8>, StateError> {
        let len = self.u32("message length")? as usize;
        if len > MAX_SYNC_MESSAGE {
            return Err(StateError::TooLarge {
                size: len,
                limit: MAX_SYNC_MESSAGE,
            });
        }
        Ok(self.take(len, "message")?.to_vec())
    }
}

/// Largest encoded request or response.
pub const MAX_ENCODED: usize = 1 + 32 + 1 + MAX_NAME + 4 + MAX_SYNC_MESSAGE;

impl SyncRequest {
    /// Encodes: version, namespace (32), name length (1), name, message length (u32
    /// LE), message.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 32 + 1 + self.doc.name.len() + 4 + self.message.len());
        out.push(VERSION);
        put_name(&mut out, &self.doc);
        out.extend_from_slice(
            &u32::try_from(self.message.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        out.extend_from_slice(&self.message);
        out
    }

    /// Decodes what [`Self::encode`] wrote.
    ///
    /// # Errors
    /// On anything else, or a message over [`MAX_SYNC_MESSAGE`].
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let mut r = Reader { bytes, at: 0 };
        r.version()?;
        let doc = r.name()?;
        let message = r.message()?;
        r.end()?;
        Ok(Self { doc, message })
    }
}

impl SyncResponse {
    /// Encodes: version, a tag (0 message, 1 done, 2 not hosted, 3 refused), then the
    /// message (u32 LE length + bytes), or for a refusal the kind's code (u8 length +
    /// ASCII) and the reason (u32 LE length + UTF-8).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        let body: &[u8] = match self {
            Self::Message(m) => {
                out.push(0);
                m
            }
            Self::Done => {
                out.push(1);
                return out;
            }
            Self::NotHosted => {
                out.push(2);
                return out;
            }
            Self::Refused { kind, message } => {
                out.push(3);
                let code = kind.code();
                out.push(u8::try_from(code.len()).unwrap_or(u8::MAX));
                out.extend_from_slice(code.as_bytes());
                message.as_bytes()
            }
        };
        out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(body);
        out
    }

    /// Decodes what [`Self::encode`] wrote.
    ///
    /// # Errors
    /// On anything else.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let mut r = Reader { bytes, at: 0 };
        r.version()?;
        let out = match r.u8("tag")? {
            0 => Self::Message(r.message()?),
            1 => Self::Done,
            2 => Self::NotHosted,
            3 => {
                let len = usize::from(r.u8("kind length")?);
                let code = String::from_utf8_lossy(r.take(len, "kind")?).into_owned();
                let why = r.message()?;
                Self::Refused {
                    kind: ErrorKind::from_code(&code),
                    message: String::from_utf8_lossy(&why).into_owned(),
                }
            }
            t => return Err(StateError::Malformed(format!("unknown response tag {t}"))),
        };
        r.end()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> DocName {
        DocName::new(Namespace([7; 32]), "cart").expect("valid")
    }

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let req = SyncRequest {
            doc: doc(),
            message: vec![1, 2, 3],
        };
        assert_eq!(SyncRequest::decode(&req.encode()), Ok(req.clone()));
        for resp in [
            SyncResponse::Message(vec![9; 10]),
            SyncResponse::Done,
            SyncResponse::NotHosted,
            SyncResponse::Refused {
                kind: ErrorKind::TooLarge,
                message: "too big".into(),
            },
        ] {
            assert_eq!(SyncResponse::decode(&resp.encode()), Ok(resp.clone()));
        }
        let bytes = req.encode();
        for cut in 0..bytes.len() {
            assert!(SyncRequest::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(SyncRequest::decode(&long).is_err());
        let mut huge = vec![VERSION];
        put_name(&mut huge, &doc());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            SyncRequest::decode(&huge),
            Err(StateError::TooLarge { .. })
        ));
    }
}
