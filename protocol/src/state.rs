//! Application state: named Automerge documents that peers hold and sync.
//!
//! This module is sans-IO. It names documents, parses key paths, and encodes the two
//! messages peers exchange about documents: a sync request/response on
//! [`SYNC_PROTOCOL`] (carrying Automerge sync messages, which this crate does not look
//! inside) and a heads announcement on the gossip [`TOPIC`]. The node owns the
//! documents themselves (`node/src/state.rs`, `docs/state.md`).
//!
//! A document is named `NAMESPACE/NAME`: the namespace is a publisher's namespace id
//! (its ed25519 key, as for aliases), so once writes are signed a document's owner is
//! already in its name.

use std::fmt;
use std::str::FromStr;

use crate::alias::Namespace;
use crate::error::ErrorKind;

/// The request-response protocol of document sync.
pub const SYNC_PROTOCOL: &str = "/kith/sync/1";
/// The gossip topic of heads announcements.
pub const TOPIC: &str = "kith/state/1";
/// Longest document name (after the namespace), in bytes.
pub const MAX_NAME: usize = 64;
/// Largest Automerge sync message carried in one request or response, in bytes.
pub const MAX_SYNC_MESSAGE: usize = 8 << 20;
/// Most heads in one announcement (more concurrent heads than this are announced as
/// "changed", and peers sync to find out).
pub const MAX_HEADS: usize = 32;
/// Deepest key path.
pub const MAX_PATH_DEPTH: usize = 32;
/// Longest key in a path, in bytes.
pub const MAX_KEY: usize = 256;
/// Encoding version of the messages below.
const VERSION: u8 = 1;

/// Why a name, path or message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A bad document name.
    #[error("{0}")]
    Name(String),
    /// A bad key path.
    #[error("{0}")]
    Path(String),
    /// A malformed message.
    #[error("malformed state message: {0}")]
    Malformed(String),
    /// A message over its size limit.
    #[error("state message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// Most bits per entry a peer's Automerge bloom filter may claim (Automerge uses 10).
pub const MAX_BLOOM_BITS_PER_ENTRY: u32 = 64;
/// Most probes per hash a peer's Automerge bloom filter may claim (Automerge uses 7).
pub const MAX_BLOOM_PROBES: u32 = 64;

/// Checks the encoding of a bloom filter in a peer's Automerge sync message before the
/// node lets Automerge use it: Automerge trusts the numbers in it, and divides by zero
/// on a filter with entries but no bits, or reserves memory for as many probes as the
/// filter claims (up to 2^32) every time it tests a hash.
///
/// The encoding is empty (no entries), or the LEB128 numbers `entries`,
/// `bits_per_entry`, `probes`, then the bits.
///
/// # Errors
/// [`StateError::Malformed`] naming the number that is out of bounds.
pub fn check_bloom(encoded: &[u8]) -> Result<(), StateError> {
    if encoded.is_empty() {
        return Ok(());
    }
    let mut at = 0;
    let mut number = |what: &str| -> Result<u32, StateError> {
        let mut value: u64 = 0;
        for shift in (0..35).step_by(7) {
            let byte = *encoded
                .get(at)
                .ok_or_else(|| StateError::Malformed(format!("bloom filter: {what} truncated")))?;
            at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return u32::try_from(value).map_err(|_| {
                    StateError::Malformed(format!("bloom filter: {what} over 32 bits"))
                });
            }
        }
        Err(StateError::Malformed(format!(
            "bloom filter: {what} over 32 bits"
        )))
    };
    let entries = number("entries")?;
    let bits_per_entry = number("bits per entry")?;
    let probes = number("probes")?;
    let bits = encoded.len() - at;
    if entries == 0 {
        return Ok(());
    }
    if !(1..=MAX_BLOOM_BITS_PER_ENTRY).contains(&bits_per_entry) {
        return Err(StateError::Malformed(format!(
            "bloom filter of {bits_per_entry} bits per entry (1 ..= {MAX_BLOOM_BITS_PER_ENTRY})"
        )));
    }
    if !(1..=MAX_BLOOM_PROBES).contains(&probes) {
        return Err(StateError::Malformed(format!(
            "bloom filter of {probes} probes (1 ..= {MAX_BLOOM_PROBES})"
        )));
    }
    if bits == 0 || bits >= (1 << 28) {
        return Err(StateError::Malformed(format!(
            "bloom filter of {entries} entries in {bits} bytes"
        )));
    }
    Ok(())
}

/// A document's full name: a publisher namespace and a name.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocName {
    /// The publisher's namespace.
    pub namespace: Namespace,
    /// The name within it (1 to [`MAX_NAME`] bytes of `a-z 0-9 - _ .`).
    pub name: String,
}

impl DocName {
    /// A name, checked.
    ///
    /// # Errors
    /// When `name` is empty, too long or has other characters than `a-z 0-9 - _ .`.
    pub fn new(namespace: Namespace, name: &str) -> Result<Self, StateError> {
        check_name(name)?;
        Ok(Self {
            namespace,
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for DocName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl fmt::Debug for DocName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocName({self})")
    }
}

impl FromStr for DocName {
    type Err = StateError;
    fn from_str(s: &str) -> Result<Self, StateError> {
        let doc: DocRef = s.parse()?;
        let namespace = doc.namespace.parse().map_err(|_| {
            StateError::Name(format!(
                "namespace \"{}\" is not 64 hex digits",
                doc.namespace
            ))
        })?;
        Ok(Self {
            namespace,
            name: doc.name,
        })
    }
}

/// A document as a user types it: `NAMESPACE/NAME`, where NAMESPACE is a namespace id
/// or the name of a key on the node (resolved there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocRef {
    /// Namespace id or key name.
    pub namespace: String,
    /// Document name.
    pub name: String,
}

impl FromStr for DocRef {
    type Err = StateError;
    fn from_str(s: &str) -> Result<Self, StateError> {
        let (namespace, name) = s.split_once('/').ok_or_else(|| {
            StateError::Name(format!("\"{s}\" is not a document name (NAMESPACE/NAME)"))
        })?;
        let namespace_ok = !namespace.is_empty()
            && namespace.len() <= 64
            && namespace.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            });
        if !namespace_ok {
            return Err(StateError::Name(format!(
                "namespace \"{namespace}\" must be a namespace id or a key name (a-z, 0-9, '-', '_', '.')"
            )));
        }
        check_name(name)?;
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }
}

/// A document permission in a manifest: `NAMESPACE/NAME` for one document, or
/// `NAMESPACE/PREFIX*` for every document of the namespace whose name starts with
/// PREFIX (`NAMESPACE/*`: all of them). The namespace is always a 64-hex namespace id:
/// a manifest travels with the module, and key names are local to a node.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocPattern {
    /// The namespace.
    pub namespace: Namespace,
    /// The name, or the prefix when `prefix` is set.
    pub name: String,
    /// True for `PREFIX*`.
    pub prefix: bool,
}

impl DocPattern {
    /// True when `doc` is covered.
    pub fn matches(&self, doc: &DocName) -> bool {
        doc.namespace == self.namespace
            && if self.prefix {
                doc.name.starts_with(&self.name)
            } else {
                doc.name == self.name
            }
    }

    /// The one document this pattern names, when it is not a prefix.
    pub fn exact(&self) -> Option<DocName> {
        (!self.prefix).then(|| DocName {
            namespace: self.namespace,
            name: self.name.clone(),
        })
    }
}

impl fmt::Display for DocPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}{}",
            self.namespace,
            self.name,
            if self.prefix { "*" } else { "" }
        )
    }
}

impl fmt::Debug for DocPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocPattern({self})")
    }
}

impl FromStr for DocPattern {
    type Err = StateError;
    fn from_str(s: &str) -> Result<Self, StateError> {
        let (namespace, name) = s.split_once('/').ok_or_else(|| {
            StateError::Name(format!(
                "\"{s}\" is not a document (NAMESPACE/NAME or NAMESPACE/PREFIX*)"
            ))
        })?;
        let namespace: Namespace = namespace.parse().map_err(|_| {
            StateError::Name(format!(
                "namespace \"{namespace}\" of \"{s}\" is not 64 hex digits (a manifest names documents by namespace id)"
            ))
        })?;
        let (name, prefix) = match name.strip_suffix('*') {
            Some("") => (String::new(), true),
            Some(p) => {
                check_name(p)?;
                (p.to_owned(), true)
            }
            None => {
                check_name(name)?;
                (name.to_owned(), false)
            }
        };
        Ok(Self {
            namespace,
            name,
            prefix,
        })
    }
}

impl serde::Serialize for DocPattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DocPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn check_name(name: &str) -> Result<(), StateError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
    if ok {
        Ok(())
    } else {
        Err(StateError::Name(format!(
            "document name \"{name}\" must be 1 to {MAX_NAME} characters of a-z, 0-9, '-', '_', '.'"
        )))
    }
}

/// Parses a key path: keys separated by `/` (a leading `/` is optional; the empty path
/// is the document's root). A key that is all digits indexes a list when the object
/// it is applied to is a list.
///
/// # Errors
/// On an empty key (`a//b`), a key over [`MAX_KEY`] bytes, or more than
/// [`MAX_PATH_DEPTH`] keys.
pub fn parse_path(path: &str) -> Result<Vec<String>, StateError> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = trimmed.split('/').map(str::to_owned).collect();
    if keys.len() > MAX_PATH_DEPTH {
        return Err(StateError::Path(format!(
            "path \"{path}\" has {} keys; at most {MAX_PATH_DEPTH} (max_path_depth)",
            keys.len()
        )));
    }
    for key in &keys {
        if key.is_empty() {
            return Err(StateError::Path(format!(
                "path \"{path}\" has an empty key"
            )));
        }
        if key.len() > MAX_KEY {
            return Err(StateError::Path(format!(
                "a key of path \"{path}\" is {} bytes; at most {MAX_KEY}",
                key.len()
            )));
        }
    }
    Ok(keys)
}

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

/// "Document `doc` is now at `heads`", announced on [`TOPIC`] after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heads {
    /// The document.
    pub doc: DocName,
    /// Its heads (Automerge change hashes), at most [`MAX_HEADS`].
    pub heads: Vec<[u8; 32]>,
}

impl Heads {
    /// Largest encoded announcement.
    pub const MAX_ENCODED: usize = 1 + 32 + 1 + MAX_NAME + 1 + MAX_HEADS * 32;

    /// Encodes: version, namespace, name length, name, head count (1), heads.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        put_name(&mut out, &self.doc);
        let heads = &self.heads[..self.heads.len().min(MAX_HEADS)];
        out.push(u8::try_from(heads.len()).unwrap_or(0));
        for h in heads {
            out.extend_from_slice(h);
        }
        out
    }

    /// Decodes what [`Self::encode`] wrote.
    ///
    /// # Errors
    /// On anything else, or more than [`MAX_HEADS`] heads.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let mut r = Reader { bytes, at: 0 };
        r.version()?;
        let doc = r.name()?;
        let n = usize::from(r.u8("head count")?);
        if n > MAX_HEADS {
            return Err(StateError::Malformed(format!(
                "{n} heads; at most {MAX_HEADS}"
            )));
        }
        let mut heads = Vec::with_capacity(n);
        for _ in 0..n {
            let mut h = [0u8; 32];
            h.copy_from_slice(r.take(32, "head")?);
            heads.push(h);
        }
        r.end()?;
        Ok(Self { doc, heads })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bloom_filters_with_absurd_numbers_are_refused() {
        assert_eq!(check_bloom(&[]), Ok(()));
        // 1 entry, 10 bits each, 7 probes, 2 bytes of bits: what Automerge writes.
        assert_eq!(check_bloom(&[1, 10, 7, 0xff, 0x01]), Ok(()));
        // No bits per entry: Automerge would divide by zero.
        let e = check_bloom(&[1, 0, 7]).unwrap_err();
        assert!(e.to_string().contains("0 bits per entry"), "{e}");
        // 2^32 - 1 probes: Automerge would reserve 16 GiB per hash tested.
        let e = check_bloom(&[1, 10, 0xff, 0xff, 0xff, 0xff, 0x0f, 0]).unwrap_err();
        assert!(e.to_string().contains("probes"), "{e}");
        assert!(check_bloom(&[1, 10, 7]).is_err(), "entries but no bits");
        assert!(check_bloom(&[0x80, 0x80]).is_err(), "truncated");
        assert!(
            check_bloom(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err(),
            "over 32 bits"
        );
    }

    fn doc() -> DocName {
        DocName::new(Namespace([7; 32]), "cart").expect("valid")
    }

    #[test]
    fn names_parse_print_and_refuse_bad_input() {
        let text = format!("{}/cart", Namespace([7; 32]));
        let d: DocName = text.parse().expect("parses");
        assert_eq!(d, doc());
        assert_eq!(d.to_string(), text);
        assert!("cart".parse::<DocRef>().is_err());
        assert!("me/Cart".parse::<DocRef>().is_err());
        assert!("me/".parse::<DocRef>().is_err());
        assert!(
            "me/cart".parse::<DocName>().is_err(),
            "a petname is not an id"
        );
        let r: DocRef = "me/cart".parse().expect("a petname is fine in a reference");
        assert_eq!(r.namespace, "me");
    }

    #[test]
    fn paths() {
        assert_eq!(parse_path("").expect("root"), Vec::<String>::new());
        assert_eq!(parse_path("/").expect("root"), Vec::<String>::new());
        assert_eq!(parse_path("/a/0/b").expect("ok"), ["a", "0", "b"]);
        assert!(parse_path("a//b").is_err());
        assert!(parse_path(&"a/".repeat(40)).is_err());
        assert!(parse_path(&"k".repeat(300)).is_err());
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
        let heads = Heads {
            doc: doc(),
            heads: vec![[1; 32], [2; 32]],
        };
        assert_eq!(Heads::decode(&heads.encode()), Ok(heads.clone()));
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
