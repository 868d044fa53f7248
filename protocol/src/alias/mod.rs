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

mod record;
mod registry;
mod sync;

pub use registry::{Applied, Registry};
pub use sync::{SyncRequest, SyncResponse};

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, VerifyingKey};

use crate::FunctionId;

/// Format version of a record.
pub const VERSION: u8 = 1;
/// Format version of a record that asks for verification (`verify` > 1): version 1's
/// layout and one byte more, the verify count, after the targets.
pub const VERSION_VERIFY: u8 = 2;
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
    1 + 32 + 8 + 8 + 1 + MAX_NAME + 1 + MAX_NAME + 1 + MAX_TARGETS * 36 + 1 + 64;
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
    /// Peers each call through the alias runs on, whose majority answer is returned
    /// (`crate::verify`; 1: no verification).
    pub verify: u8,
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
