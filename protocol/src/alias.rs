//! Aliases: deployless routing. `NAMESPACE/NAME@CHANNEL` points at one function hash
//! or a weighted set of them.
//!
//! A **namespace** is a publisher's ed25519 public key. Every change to an alias is a
//! [`Record`] with a sequence number, signed by the namespace key ([`Signed`]). Peers
//! keep every valid record they see in a [`Registry`] and exchange them freely: the
//! registry is a grow-only set of signed records, and an alias's current target is its
//! record with the highest `(seq, digest)`. Merging two registries is set union, so
//! peers that have seen the same records agree on every alias, whatever order the
//! records came in — including two different records with the same sequence number,
//! which resolve to the one with the larger blake3 digest on every peer.
//!
//! Why not Automerge for this: an alias record must be verifiable on its own (the
//! publisher's signature vouches for the hashes), and the only merge rule needed is
//! "highest sequence number wins, history is kept". A set of signed records gives
//! exactly that, in a few hundred lines, with nothing a peer can forge or reorder.
//!
//! A split resolves deterministically from a request key: the same key lands on the
//! same target while the record is unchanged ([`pick`]). Byte layouts are in
//! `docs/wire-format.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, VerifyingKey};

use crate::FunctionId;

/// Format version of a record.
pub const VERSION: u8 = 1;
/// Domain separation prefix of the signed bytes.
pub const SIGNING_CONTEXT: &[u8] = b"kith-alias-v1";
/// Gossipsub topic on which new records are announced.
pub const TOPIC: &str = "kith/aliases/1";
/// Request-response protocol for a full registry sync.
pub const SYNC_PROTOCOL: &str = "/kith/aliases/1";
/// Longest alias name or channel, in bytes.
pub const MAX_NAME: usize = 64;
/// Most targets in one record.
pub const MAX_TARGETS: usize = 16;
/// Largest encoded record, in bytes.
pub const MAX_RECORD: usize =
    1 + 32 + 8 + 8 + 1 + MAX_NAME + 1 + MAX_NAME + 1 + MAX_TARGETS * 36 + 64;
/// Most records in one sync response.
pub const MAX_SYNC_RECORDS: usize = 4096;
/// Largest sync response, in bytes.
pub const MAX_SYNC_RESPONSE: usize = 1 + 4 + MAX_SYNC_RECORDS * (2 + MAX_RECORD);

/// A publisher's namespace: its ed25519 public key. Text form: 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Namespace(pub [u8; 32]);

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Namespace({self})")
    }
}

impl FromStr for Namespace {
    type Err = AliasError;
    fn from_str(s: &str) -> Result<Self, AliasError> {
        let mut out = [0u8; 32];
        if s.len() != 64 || hex::decode_to_slice(s, &mut out).is_err() {
            return Err(AliasError::Name(format!(
                "namespace \"{s}\" is not 64 hex digits"
            )));
        }
        Ok(Self(out))
    }
}

/// A reference as a user types it: `NAMESPACE/NAME@CHANNEL`, where NAMESPACE is either
/// a namespace id or a local key name (a petname, resolved by the node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasRef {
    /// Namespace id or petname.
    pub namespace: String,
    /// Alias name.
    pub name: String,
    /// Channel (e.g. `prod`).
    pub channel: String,
}

impl AliasRef {
    /// True if `text` looks like an alias reference rather than a function id.
    pub fn looks_like(text: &str) -> bool {
        text.contains('/') && text.contains('@')
    }
}

impl FromStr for AliasRef {
    type Err = AliasError;
    fn from_str(s: &str) -> Result<Self, AliasError> {
        let bad = || {
            AliasError::Name(format!(
                "\"{s}\" is not an alias reference (NAMESPACE/NAME@CHANNEL)"
            ))
        };
        let (namespace, rest) = s.split_once('/').ok_or_else(bad)?;
        let (name, channel) = rest.split_once('@').ok_or_else(bad)?;
        check_name("namespace", namespace)?;
        check_name("name", name)?;
        check_name("channel", channel)?;
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            channel: channel.to_owned(),
        })
    }
}

impl fmt::Display for AliasRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.namespace, self.name, self.channel)
    }
}

/// Names and channels: 1 to 64 bytes of `a-z 0-9 - _ .`.
fn check_name(what: &str, s: &str) -> Result<(), AliasError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_NAME
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
    if ok {
        Ok(())
    } else {
        Err(AliasError::Name(format!(
            "{what} \"{s}\" must be 1 to {MAX_NAME} characters of a-z, 0-9, '-', '_', '.'"
        )))
    }
}

/// A fully resolved alias.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Alias {
    /// The publisher.
    pub namespace: Namespace,
    /// Alias name.
    pub name: String,
    /// Channel.
    pub channel: String,
}

impl Alias {
    /// Builds an alias, checking the name and channel.
    ///
    /// # Errors
    /// If the name or channel is empty, too long, or has other characters than
    /// `a-z 0-9 - _ .`.
    pub fn new(namespace: Namespace, name: &str, channel: &str) -> Result<Self, AliasError> {
        check_name("name", name)?;
        check_name("channel", channel)?;
        Ok(Self {
            namespace,
            name: name.to_owned(),
            channel: channel.to_owned(),
        })
    }
}

impl fmt::Display for Alias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.namespace, self.name, self.channel)
    }
}

/// One target of an alias and its weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Target {
    /// The function.
    pub function: FunctionId,
    /// Its share, relative to the other targets' weights.
    pub weight: u32,
}

/// A change to an alias (unsigned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The alias.
    pub alias: Alias,
    /// Sequence number; a change supersedes records with lower numbers.
    pub seq: u64,
    /// Wall-clock time of signing, ms since the Unix epoch (informational).
    pub issued_ms: u64,
    /// Where it points.
    pub targets: Vec<Target>,
}

/// A record with its publisher's signature, as received or created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The record.
    pub record: Record,
    /// The encoded bytes (body and signature).
    pub bytes: Vec<u8>,
    /// blake3 of `bytes`: the record's identity and the conflict tie-break.
    pub digest: [u8; 32],
}

/// Why a record or reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AliasError {
    /// Not a valid name, channel, namespace or reference.
    #[error("{0}")]
    Name(String),
    /// Empty, too many, zero-weight or duplicate targets.
    #[error("{0}")]
    Targets(String),
    /// Truncated, oversized, trailing bytes or unknown version.
    #[error("malformed alias record: {0}")]
    Malformed(String),
    /// The signature does not verify against the record's namespace.
    #[error("alias record signature does not verify against its namespace key")]
    BadSignature,
}

fn check_targets(targets: &[Target]) -> Result<(), AliasError> {
    if targets.is_empty() || targets.len() > MAX_TARGETS {
        return Err(AliasError::Targets(format!(
            "an alias points at 1 to {MAX_TARGETS} functions, not {}",
            targets.len()
        )));
    }
    for (i, t) in targets.iter().enumerate() {
        if t.weight == 0 {
            return Err(AliasError::Targets(format!(
                "target {} has weight 0; weights are 1 or more",
                t.function
            )));
        }
        if targets[..i].iter().any(|u| u.function == t.function) {
            return Err(AliasError::Targets(format!(
                "target {} is listed twice",
                t.function
            )));
        }
    }
    Ok(())
}

impl Record {
    /// The signed body (see `docs/wire-format.md`).
    ///
    /// # Errors
    /// If the targets are invalid (empty, over [`MAX_TARGETS`], zero weight, duplicate).
    pub fn body(&self) -> Result<Vec<u8>, AliasError> {
        check_targets(&self.targets)?;
        let a = &self.alias;
        let mut b = Vec::with_capacity(MAX_RECORD);
        b.push(VERSION);
        b.extend_from_slice(&a.namespace.0);
        b.extend_from_slice(&self.seq.to_le_bytes());
        b.extend_from_slice(&self.issued_ms.to_le_bytes());
        for s in [&a.name, &a.channel] {
            b.push(s.len() as u8);
            b.extend_from_slice(s.as_bytes());
        }
        b.push(self.targets.len() as u8);
        for t in &self.targets {
            b.extend_from_slice(t.function.as_bytes());
            b.extend_from_slice(&t.weight.to_le_bytes());
        }
        Ok(b)
    }

    /// Signs the record with `sign` (the namespace's key).
    ///
    /// # Errors
    /// If the targets are invalid.
    pub fn sign(self, sign: impl FnOnce(&[u8]) -> [u8; 64]) -> Result<Signed, AliasError> {
        let body = self.body()?;
        let mut message = SIGNING_CONTEXT.to_vec();
        message.extend_from_slice(&body);
        let mut bytes = body;
        bytes.extend_from_slice(&sign(&message));
        let digest = *blake3::hash(&bytes).as_bytes();
        Ok(Signed {
            record: self,
            bytes,
            digest,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AliasError> {
        if self.0.len() < n {
            return Err(AliasError::Malformed("truncated".into()));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, AliasError> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64, AliasError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    fn string(&mut self) -> Result<String, AliasError> {
        let n = usize::from(self.u8()?);
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| AliasError::Malformed("name is not UTF-8".into()))
    }
}

impl Signed {
    /// Decodes a record and verifies its signature against its namespace key.
    ///
    /// # Errors
    /// [`AliasError`]: malformed, invalid names or targets, bad signature.
    pub fn decode(bytes: &[u8]) -> Result<Self, AliasError> {
        if bytes.len() > MAX_RECORD {
            return Err(AliasError::Malformed(format!(
                "{} bytes; a record is at most {MAX_RECORD} bytes",
                bytes.len()
            )));
        }
        if bytes.len() < 64 {
            return Err(AliasError::Malformed("truncated".into()));
        }
        let (body, sig) = bytes.split_at(bytes.len() - 64);
        let mut r = Reader(body);
        let version = r.u8()?;
        if version != VERSION {
            return Err(AliasError::Malformed(format!(
                "record version {version} (this node speaks {VERSION})"
            )));
        }
        let mut ns = [0u8; 32];
        ns.copy_from_slice(r.take(32)?);
        let seq = r.u64()?;
        let issued_ms = r.u64()?;
        let name = r.string()?;
        let channel = r.string()?;
        let alias = Alias::new(Namespace(ns), &name, &channel)?;
        let n = usize::from(r.u8()?);
        let mut targets = Vec::with_capacity(n.min(MAX_TARGETS));
        for _ in 0..n {
            let mut id = [0u8; 32];
            id.copy_from_slice(r.take(32)?);
            let mut w = [0u8; 4];
            w.copy_from_slice(r.take(4)?);
            targets.push(Target {
                function: FunctionId::from_bytes(id),
                weight: u32::from_le_bytes(w),
            });
        }
        if !r.0.is_empty() {
            return Err(AliasError::Malformed("trailing bytes".into()));
        }
        check_targets(&targets)?;
        let key = VerifyingKey::from_bytes(&ns).map_err(|_| AliasError::BadSignature)?;
        let mut signature = [0u8; 64];
        signature.copy_from_slice(sig);
        let mut message = SIGNING_CONTEXT.to_vec();
        message.extend_from_slice(body);
        key.verify_strict(&message, &Signature::from_bytes(&signature))
            .map_err(|_| AliasError::BadSignature)?;
        Ok(Self {
            record: Record {
                alias,
                seq,
                issued_ms,
                targets,
            },
            bytes: bytes.to_vec(),
            digest: *blake3::hash(bytes).as_bytes(),
        })
    }
}

/// Picks the target of a split for `key` (a caller-supplied routing key, or random
/// bytes when the caller gave none): deterministic, and proportional to the weights
/// over uniformly distributed keys.
pub fn pick(alias: &Alias, targets: &[Target], key: &[u8]) -> Option<FunctionId> {
    let total: u64 = targets.iter().map(|t| u64::from(t.weight)).sum();
    if total == 0 {
        return None;
    }
    if targets.len() == 1 {
        return Some(targets[0].function);
    }
    let mut h = blake3::Hasher::new();
    h.update(&alias.namespace.0);
    h.update(&[alias.name.len() as u8]);
    h.update(alias.name.as_bytes());
    h.update(&[alias.channel.len() as u8]);
    h.update(alias.channel.as_bytes());
    h.update(key);
    let mut x = [0u8; 8];
    x.copy_from_slice(&h.finalize().as_bytes()[..8]);
    // Multiply-shift maps the 64-bit hash onto 0..total without modulo bias.
    let mut point = ((u128::from(u64::from_le_bytes(x)) * u128::from(total)) >> 64) as u64;
    for t in targets {
        let w = u64::from(t.weight);
        if point < w {
            return Some(t.function);
        }
        point -= w;
    }
    targets.last().map(|t| t.function)
}

/// What [`Registry::apply`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    /// It is now the alias's current record.
    Current,
    /// It was new but older than (or lost the tie-break to) the current record: kept
    /// in the history only.
    History,
    /// Already known.
    Duplicate,
}

/// Every signed record a peer knows, by alias.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// Per alias, its records in `(seq, digest)` order: the last one is current.
    entries: BTreeMap<Alias, Vec<Signed>>,
    records: usize,
}

impl Registry {
    /// Adds a verified record.
    pub fn apply(&mut self, signed: Signed) -> Applied {
        let history = self.entries.entry(signed.record.alias.clone()).or_default();
        let key = (signed.record.seq, signed.digest);
        match history.binary_search_by(|s| (s.record.seq, s.digest).cmp(&key)) {
            Ok(_) => Applied::Duplicate,
            Err(at) => {
                let current = at == history.len();
                history.insert(at, signed);
                self.records += 1;
                if current {
                    Applied::Current
                } else {
                    Applied::History
                }
            }
        }
    }

    /// The current record of `alias`.
    pub fn current(&self, alias: &Alias) -> Option<&Signed> {
        self.entries.get(alias).and_then(|h| h.last())
    }

    /// Every record of `alias`, oldest first.
    pub fn history(&self, alias: &Alias) -> &[Signed] {
        self.entries.get(alias).map_or(&[], Vec::as_slice)
    }

    /// The record before the current one (the highest sequence number below the
    /// current's), for a rollback.
    pub fn previous(&self, alias: &Alias) -> Option<&Signed> {
        let h = self.entries.get(alias)?;
        let current = h.last()?;
        h.iter().rev().find(|s| s.record.seq < current.record.seq)
    }

    /// Resolves `alias` for routing key `key`: the function and the record used.
    pub fn resolve(&self, alias: &Alias, key: &[u8]) -> Option<(FunctionId, &Signed)> {
        let current = self.current(alias)?;
        pick(alias, &current.record.targets, key).map(|f| (f, current))
    }

    /// Every alias's current record, in alias order.
    pub fn currents(&self) -> impl Iterator<Item = &Signed> {
        self.entries.values().filter_map(|h| h.last())
    }

    /// Every record, in alias then `(seq, digest)` order.
    pub fn records(&self) -> impl Iterator<Item = &Signed> {
        self.entries.values().flatten()
    }

    /// How many records.
    pub fn len(&self) -> usize {
        self.records
    }

    /// True if and only if there are no records.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// A digest of the whole registry: equal digests mean equal record sets.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        for s in self.records() {
            h.update(&s.digest);
        }
        *h.finalize().as_bytes()
    }

    /// True if `function` is a current target of some alias in `namespace`.
    pub fn vouches(&self, namespace: &Namespace, function: &FunctionId) -> bool {
        self.currents().any(|s| {
            s.record.alias.namespace == *namespace
                && s.record.targets.iter().any(|t| t.function == *function)
        })
    }
}

/// A sync request: "here is the digest of what I have".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncRequest {
    /// The asker's [`Registry::digest`].
    pub digest: [u8; 32],
}

impl SyncRequest {
    /// Encoded length.
    pub const LEN: usize = 1 + 32;

    /// Encodes the request.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![VERSION];
        b.extend_from_slice(&self.digest);
        b
    }

    /// Decodes a request.
    ///
    /// # Errors
    /// Wrong length or version.
    pub fn decode(bytes: &[u8]) -> Result<Self, AliasError> {
        if bytes.len() != Self::LEN || bytes[0] != VERSION {
            return Err(AliasError::Malformed(format!(
                "sync request of {} bytes (expected {} starting with version {VERSION})",
                bytes.len(),
                Self::LEN
            )));
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&bytes[1..]);
        Ok(Self { digest })
    }
}

/// A sync response: nothing to send, or the responder's records (each still to be
/// verified by the receiver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncResponse {
    /// The digests matched.
    Same,
    /// Up to [`MAX_SYNC_RECORDS`] encoded records.
    Records(Vec<Vec<u8>>),
}

impl SyncResponse {
    /// Encodes the response.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Same => vec![0],
            Self::Records(records) => {
                let records = &records[..records.len().min(MAX_SYNC_RECORDS)];
                let mut b = vec![1];
                b.extend_from_slice(&(records.len() as u32).to_le_bytes());
                for r in records {
                    b.extend_from_slice(&(r.len().min(usize::from(u16::MAX)) as u16).to_le_bytes());
                    b.extend_from_slice(r);
                }
                b
            }
        }
    }

    /// Decodes a response (the records are not verified here).
    ///
    /// # Errors
    /// Unknown tag, too many records, a record over [`MAX_RECORD`], truncation or
    /// trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, AliasError> {
        let mut r = Reader(bytes);
        match r.u8()? {
            0 if bytes.len() == 1 => Ok(Self::Same),
            1 => {
                let mut n = [0u8; 4];
                n.copy_from_slice(r.take(4)?);
                let n = u32::from_le_bytes(n) as usize;
                if n > MAX_SYNC_RECORDS {
                    return Err(AliasError::Malformed(format!(
                        "{n} records; a sync response carries at most {MAX_SYNC_RECORDS}"
                    )));
                }
                let mut records = Vec::with_capacity(n);
                for _ in 0..n {
                    let mut len = [0u8; 2];
                    len.copy_from_slice(r.take(2)?);
                    let len = usize::from(u16::from_le_bytes(len));
                    if len > MAX_RECORD {
                        return Err(AliasError::Malformed(format!(
                            "a record of {len} bytes; at most {MAX_RECORD}"
                        )));
                    }
                    records.push(r.take(len)?.to_vec());
                }
                if !r.0.is_empty() {
                    return Err(AliasError::Malformed("trailing bytes".into()));
                }
                Ok(Self::Records(records))
            }
            t => Err(AliasError::Malformed(format!("sync response tag {t}"))),
        }
    }
}
