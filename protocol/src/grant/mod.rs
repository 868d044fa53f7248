//! Grants: who may write a namespace's documents.
//!
//! A namespace is an ed25519 key ([`Namespace`]); its owner decides who else writes
//! its documents by signing a [`Grants`] record: the keys that may write (a publisher
//! key or a node's key), the functions that may (by content id) and the aliases of the
//! owner's own namespace whose functions may (so moving `app@prod` moves the right with
//! it). The record is the whole set: a new record with a higher sequence number
//! replaces it, so revoking is publishing the set without the subject. Peers keep every
//! valid record (a grow-only set, like alias records, and replicated the same way) and
//! use the one with the highest `(seq, digest)`.
//!
//! Keeping the history matters for revocation: a change written by a key while it was
//! granted is still part of the document's history after the key is revoked. An
//! [`Authority::Revoked`] writer is therefore neither believed nor treated as a forger:
//! its change is accepted only when a change by a currently authorised writer depends
//! on it ([`crate::state::writes::judge`]).

mod record;

pub use record::SIGNING_CONTEXT;

use std::collections::BTreeMap;

use crate::FunctionId;
use crate::alias::{Alias, Applied, Namespace};

/// First byte of an encoded grant record (alias records start with their version, 1).
pub const TAG: u8 = b'G';
/// Format version of a grant record.
pub const VERSION: u8 = 1;
/// Most writer keys in one record.
pub const MAX_WRITERS: usize = 64;
/// Most functions in one record.
pub const MAX_FUNCTIONS: usize = 64;
/// Most aliases in one record.
pub const MAX_ALIASES: usize = 16;
/// Largest encoded record, in bytes.
pub const MAX_RECORD: usize = 2
    + 32
    + 8
    + 8
    + 3
    + MAX_WRITERS * 32
    + MAX_FUNCTIONS * 32
    + MAX_ALIASES * (2 + 2 * crate::alias::MAX_NAME)
    + 64;
/// Most records kept per namespace (older ones are dropped first; the current one is
/// always kept).
pub const MAX_HISTORY: usize = 64;

/// The grant set of one namespace at one sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    /// The namespace (its owner signs the record).
    pub namespace: Namespace,
    /// Higher replaces lower.
    pub seq: u64,
    /// When it was issued (owner's clock; advisory).
    pub issued_ms: u64,
    /// Keys that may write (ed25519 public keys).
    pub writers: Vec<[u8; 32]>,
    /// Functions that may write, by content id.
    pub functions: Vec<FunctionId>,
    /// Aliases of this namespace whose target functions may write.
    pub aliases: Vec<Alias>,
}

/// A verified record and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedGrants {
    /// The record.
    pub grants: Grants,
    /// Its encoding, signature included.
    pub bytes: Vec<u8>,
    /// blake3 of `bytes`.
    pub digest: [u8; 32],
}

/// Why a grant record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// Truncated, oversized, trailing bytes, unknown version, too many subjects.
    #[error("malformed grant record: {0}")]
    Malformed(String),
    /// The signature does not verify against the namespace key.
    #[error("grant record signature does not verify against its namespace key")]
    BadSignature,
    /// An alias of another namespace (a grant names only the owner's own aliases).
    #[error("a grant may name only aliases of its own namespace; {0} is not")]
    ForeignAlias(String),
}

/// How far a namespace's owner vouches for a writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Authority {
    /// Never granted: its changes are refused and the peer that sent them penalised.
    Never,
    /// Granted once, not now: see the module docs.
    Revoked,
    /// Granted by the current record.
    Granted,
    /// The namespace key itself.
    Owner,
}

/// Every verified grant record this node knows, per namespace.
#[derive(Debug, Clone, Default)]
pub struct GrantBook {
    /// Per namespace, its records in `(seq, digest)` order: the last one is current.
    entries: BTreeMap<Namespace, Vec<SignedGrants>>,
}

impl GrantBook {
    /// Adds a verified record. A namespace keeps at most [`MAX_HISTORY`] records; the
    /// oldest go first.
    pub fn apply(&mut self, signed: SignedGrants) -> Applied {
        let history = self.entries.entry(signed.grants.namespace).or_default();
        let key = (signed.grants.seq, signed.digest);
        match history.binary_search_by(|s| (s.grants.seq, s.digest).cmp(&key)) {
            Ok(_) => Applied::Duplicate,
            Err(at) => {
                let current = at == history.len();
                if !current && history.len() >= MAX_HISTORY && at == 0 {
                    return Applied::Duplicate;
                }
                history.insert(at, signed);
                if history.len() > MAX_HISTORY {
                    history.remove(0);
                }
                if current {
                    Applied::Current
                } else {
                    Applied::History
                }
            }
        }
    }

    /// The current record of `namespace`.
    pub fn current(&self, namespace: &Namespace) -> Option<&SignedGrants> {
        self.entries.get(namespace).and_then(|h| h.last())
    }

    /// Every record of `namespace`, oldest first.
    pub fn history(&self, namespace: &Namespace) -> &[SignedGrants] {
        self.entries.get(namespace).map_or(&[], Vec::as_slice)
    }

    /// Every record, in namespace then `(seq, digest)` order.
    pub fn records(&self) -> impl Iterator<Item = &SignedGrants> {
        self.entries.values().flatten()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.entries.values().map(Vec::len).sum()
    }

    /// True when no record is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// blake3 over every record's digest, in order: equal books have equal digests.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        for s in self.records() {
            h.update(&s.digest);
        }
        *h.finalize().as_bytes()
    }

    /// What `namespace`'s owner says of `key` as a writer.
    pub fn writer(&self, namespace: &Namespace, key: &[u8]) -> Authority {
        if key == namespace.0 {
            return Authority::Owner;
        }
        self.judge(namespace, |g| g.writers.iter().any(|w| w[..] == *key))
    }

    /// What `namespace`'s owner says of `function` as a writer. `alias_targets` tells
    /// whether an alias points at the function now (`Granted`), did once (`Revoked`)
    /// or never (`Never`): the node's alias registry.
    pub fn function(
        &self,
        namespace: &Namespace,
        function: &FunctionId,
        alias_targets: impl Fn(&Alias, &FunctionId) -> Authority,
    ) -> Authority {
        let history = self.history(namespace);
        let Some(current) = history.last() else {
            return Authority::Never;
        };
        let named = |g: &Grants| g.functions.contains(function);
        if named(&current.grants) {
            return Authority::Granted;
        }
        let mut best = Authority::Never;
        for alias in &current.grants.aliases {
            best = best.max(alias_targets(alias, function));
        }
        if best == Authority::Granted {
            return best;
        }
        for s in history {
            if named(&s.grants) {
                return Authority::Revoked;
            }
            for alias in &s.grants.aliases {
                if alias_targets(alias, function) >= Authority::Revoked {
                    return Authority::Revoked;
                }
            }
        }
        best.min(Authority::Revoked)
    }

    fn judge(&self, namespace: &Namespace, names: impl Fn(&Grants) -> bool) -> Authority {
        let history = self.history(namespace);
        match history.last() {
            Some(c) if names(&c.grants) => Authority::Granted,
            _ if history.iter().any(|s| names(&s.grants)) => Authority::Revoked,
            _ => Authority::Never,
        }
    }
}
