//! Who wrote a change, and whether it may enter a document.
//!
//! Every Automerge change in a kith document is authored by an ed25519 key: the
//! change's actor id is the 32-byte public key followed by up to 32 bytes that tell
//! the places the key writes from apart ([`writer_key`]; one key on two nodes must
//! not reuse an actor's sequence numbers), and the key signs
//! `CHANGE_CONTEXT | document name | change hash` ([`signing_message`]). A change a
//! function made names the function in its commit message (`kith-fn:<id>`,
//! [`function_message`]); the executing node's key signs it. Signatures travel beside
//! the changes in every sync message ([`SignedSync`]) and are kept with the document.
//!
//! [`judge`] decides, for the changes of one incoming sync message, what enters the
//! document: a change without a valid signature by its actor, or by a writer the
//! namespace never granted, refuses the whole message (nothing of it is applied, and
//! the sender is penalised); a change by a revoked writer enters only when a change
//! by an authorised writer depends on it; a change whose dependencies are missing is
//! an orphan, held (bounded, [`Orphans`]) until they arrive.

use std::collections::{BTreeMap, HashMap, HashSet};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use super::{DocName, StateError};
use crate::FunctionId;
use crate::grant::Authority;

/// Domain separation prefix of a change signature.
pub const CHANGE_CONTEXT: &[u8] = b"kith-change-v1";
/// Prefix of the commit message of a change a function made.
pub const FUNCTION_PREFIX: &str = "kith-fn:";
/// Most signatures in one sync message.
pub const MAX_SIGNATURES: usize = 1 << 16;
/// Most orphan changes held for one document.
pub const MAX_ORPHANS_PER_DOC: usize = 64;
/// Most orphan changes held from one peer, all documents together.
pub const MAX_ORPHANS_PER_PEER: usize = 256;
/// Most bytes of orphan changes held, all together.
pub const MAX_ORPHAN_BYTES: usize = 8 << 20;

/// The writer key of an actor id: its first 32 bytes, when it is 32 to 64 bytes long.
pub fn writer_key(actor: &[u8]) -> Option<[u8; 32]> {
    if !(32..=64).contains(&actor.len()) {
        return None;
    }
    actor[..32].try_into().ok()
}

/// The bytes a writer signs for `hash`, a change of `doc`.
pub fn signing_message(doc: &DocName, hash: &[u8; 32]) -> Vec<u8> {
    let name = doc.to_string();
    let mut m = Vec::with_capacity(CHANGE_CONTEXT.len() + name.len() + 33);
    m.extend_from_slice(CHANGE_CONTEXT);
    m.extend_from_slice(name.as_bytes());
    m.push(0);
    m.extend_from_slice(hash);
    m
}

/// Signs change `hash` of `doc` with `key`.
pub fn sign_change(key: &SigningKey, doc: &DocName, hash: &[u8; 32]) -> [u8; 64] {
    key.sign(&signing_message(doc, hash)).to_bytes()
}

/// True when `signature` is by `actor`'s writer key over change `hash` of `doc`.
pub fn verify_change(doc: &DocName, actor: &[u8], hash: &[u8; 32], signature: &[u8; 64]) -> bool {
    let Some(actor) = writer_key(actor) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(&actor) else {
        return false;
    };
    key.verify_strict(
        &signing_message(doc, hash),
        &Signature::from_bytes(signature),
    )
    .is_ok()
}

/// The commit message of a change `function` made.
pub fn function_message(function: &FunctionId) -> String {
    format!("{FUNCTION_PREFIX}{function}")
}

/// The function a change's commit message names, if any.
pub fn function_of(message: Option<&str>) -> Option<FunctionId> {
    message?.strip_prefix(FUNCTION_PREFIX)?.parse().ok()
}

/// An Automerge sync message with the signatures of the changes it carries.
///
/// ```text
/// n (u32 LE) | n × (change hash (32) | signature (64)) | Automerge sync message
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignedSync {
    /// Signature per change hash.
    pub signatures: Vec<([u8; 32], [u8; 64])>,
    /// The Automerge sync message (opaque here).
    pub message: Vec<u8>,
}

impl SignedSync {
    /// Encodes it.
    pub fn encode(&self) -> Vec<u8> {
        let n = self.signatures.len().min(MAX_SIGNATURES);
        let mut b = Vec::with_capacity(4 + n * 96 + self.message.len());
        b.extend_from_slice(&(n as u32).to_le_bytes());
        for (hash, sig) in &self.signatures[..n] {
            b.extend_from_slice(hash);
            b.extend_from_slice(sig);
        }
        b.extend_from_slice(&self.message);
        b
    }

    /// Decodes it (the signatures are not verified here).
    ///
    /// # Errors
    /// Truncated, or more than [`MAX_SIGNATURES`].
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let bad = |why: String| StateError::Malformed(format!("signed sync message: {why}"));
        let Some((n, rest)) = bytes.split_first_chunk::<4>() else {
            return Err(bad("truncated".into()));
        };
        let n = u32::from_le_bytes(*n) as usize;
        if n > MAX_SIGNATURES {
            return Err(bad(format!(
                "{n} signatures; at most {MAX_SIGNATURES} (MAX_SIGNATURES)"
            )));
        }
        if rest.len() < n * 96 {
            return Err(bad("truncated signatures".into()));
        }
        let (sigs, message) = rest.split_at(n * 96);
        let signatures = sigs
            .chunks_exact(96)
            .map(|c| {
                let mut hash = [0u8; 32];
                let mut sig = [0u8; 64];
                hash.copy_from_slice(&c[..32]);
                sig.copy_from_slice(&c[32..]);
                (hash, sig)
            })
            .collect();
        Ok(Self {
            signatures,
            message: message.to_vec(),
        })
    }
}

/// What the node read out of one incoming change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeFacts {
    /// Its hash.
    pub hash: [u8; 32],
    /// Its actor id (a kith writer's public key and a suffix, [`writer_key`]).
    pub actor: Vec<u8>,
    /// The hashes it depends on.
    pub deps: Vec<[u8; 32]>,
    /// The function its commit message names.
    pub function: Option<FunctionId>,
    /// The signature sent with it.
    pub signature: Option<[u8; 64]>,
}

/// Why a sync message was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A change came without a signature.
    #[error("change {} carries no signature", hex::encode(.0))]
    Unsigned([u8; 32]),
    /// A change's signature is not its actor's.
    #[error("change {} is not signed by its actor {}", hex::encode(.0), hex::encode(.1))]
    Forged([u8; 32], Vec<u8>),
    /// A change by a writer the namespace's owner never granted.
    #[error("change {} is by {}, whom the namespace's owner has not granted write", hex::encode(.0), hex::encode(.1))]
    Unauthorised([u8; 32], Vec<u8>),
}

/// What enters the document of the changes [`judge`]d.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Indices to apply, in an order where each change's dependencies come first.
    pub apply: Vec<usize>,
    /// Indices of authorised changes whose dependencies are missing.
    pub orphans: Vec<usize>,
    /// Indices of changes by revoked writers that no authorised change depends on:
    /// dropped (not penalised: an honest peer may hold them from before the revocation).
    pub revoked: Vec<usize>,
}

/// Judges `changes` for `doc`: `authority(key, function)` is what the namespace's
/// owner says of the writer ([`crate::grant::GrantBook`]), `present(hash)` whether
/// the document already has a change.
///
/// # Errors
/// [`Refusal`] for the first unsigned, forged or never-authorised change: the caller
/// applies nothing of the message.
pub fn judge(
    doc: &DocName,
    changes: &[ChangeFacts],
    authority: impl Fn(&[u8], Option<&FunctionId>) -> Authority,
    present: impl Fn(&[u8; 32]) -> bool,
) -> Result<Verdict, Refusal> {
    let mut level = Vec::with_capacity(changes.len());
    for c in changes {
        let Some(sig) = &c.signature else {
            return Err(Refusal::Unsigned(c.hash));
        };
        if !verify_change(doc, &c.actor, &c.hash, sig) {
            return Err(Refusal::Forged(c.hash, c.actor.clone()));
        }
        let Some(key) = writer_key(&c.actor) else {
            return Err(Refusal::Forged(c.hash, c.actor.clone()));
        };
        let a = authority(&key, c.function.as_ref());
        if a == Authority::Never {
            return Err(Refusal::Unauthorised(c.hash, c.actor.clone()));
        }
        level.push(a);
    }
    let index: HashMap<[u8; 32], usize> = changes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.hash, i))
        .collect();
    // Authorised changes vouch for the revoked ones they depend on (transitively).
    let mut vouched: Vec<bool> = level.iter().map(|a| *a >= Authority::Granted).collect();
    let mut work: Vec<usize> = (0..changes.len()).filter(|i| vouched[*i]).collect();
    while let Some(i) = work.pop() {
        for d in &changes[i].deps {
            if let Some(&j) = index.get(d)
                && !vouched[j]
            {
                vouched[j] = true;
                work.push(j);
            }
        }
    }
    let mut verdict = Verdict::default();
    let mut pending: Vec<usize> = Vec::new();
    for (i, v) in vouched.iter().enumerate() {
        if *v {
            pending.push(i);
        } else {
            verdict.revoked.push(i);
        }
    }
    // Apply in dependency order: a change goes once all its dependencies are in the
    // document or applied before it.
    let mut applied: HashSet<[u8; 32]> = HashSet::new();
    loop {
        let before = pending.len();
        pending.retain(|&i| {
            let ready = changes[i]
                .deps
                .iter()
                .all(|d| applied.contains(d) || present(d));
            if ready {
                applied.insert(changes[i].hash);
                verdict.apply.push(i);
            }
            !ready
        });
        if pending.is_empty() || pending.len() == before {
            break;
        }
    }
    verdict.orphans = pending;
    Ok(verdict)
}

/// An orphan change held until its dependencies arrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan<P> {
    /// Who sent it.
    pub from: P,
    /// Its hash.
    pub hash: [u8; 32],
    /// Its signature.
    pub signature: [u8; 64],
    /// The change's bytes.
    pub bytes: Vec<u8>,
}

/// What [`Orphans::hold`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Kept.
    Kept,
    /// Already held.
    Duplicate,
    /// Kept, after dropping the oldest orphan of the peer holding most in the document.
    Evicted,
    /// Dropped: the sender holds [`MAX_ORPHANS_PER_PEER`] already.
    PeerFull,
    /// Dropped: held orphans are at [`MAX_ORPHAN_BYTES`].
    BytesFull,
}

/// Orphan changes per document, bounded per document ([`MAX_ORPHANS_PER_DOC`]), per
/// sending peer ([`MAX_ORPHANS_PER_PEER`]) and in bytes ([`MAX_ORPHAN_BYTES`]). When a
/// document is full the oldest orphan of the peer holding most of it goes, so one
/// flooding peer cannot crowd out another's; a peer at its own cap, or the byte cap,
/// has the new orphan dropped.
#[derive(Debug, Clone)]
pub struct Orphans<P> {
    docs: BTreeMap<DocName, Vec<Orphan<P>>>,
    per_peer: HashMap<P, usize>,
    bytes: usize,
}

impl<P> Default for Orphans<P> {
    fn default() -> Self {
        Self {
            docs: BTreeMap::new(),
            per_peer: HashMap::new(),
            bytes: 0,
        }
    }
}

impl<P: Clone + Eq + std::hash::Hash> Orphans<P> {
    /// Holds `orphan` for `doc`.
    pub fn hold(&mut self, doc: &DocName, orphan: Orphan<P>) -> Held {
        let held = self.docs.get(doc);
        if held.is_some_and(|h| h.iter().any(|o| o.hash == orphan.hash)) {
            return Held::Duplicate;
        }
        if self.per_peer.get(&orphan.from).copied().unwrap_or(0) >= MAX_ORPHANS_PER_PEER {
            return Held::PeerFull;
        }
        if self.bytes + orphan.bytes.len() > MAX_ORPHAN_BYTES {
            return Held::BytesFull;
        }
        let mut outcome = Held::Kept;
        if held.is_some_and(|h| h.len() >= MAX_ORPHANS_PER_DOC) {
            let list = self.docs.get(doc).map(Vec::as_slice).unwrap_or_default();
            let mut counts: HashMap<&P, usize> = HashMap::new();
            for o in list {
                *counts.entry(&o.from).or_default() += 1;
            }
            let heaviest = counts
                .into_iter()
                .max_by_key(|(_, n)| *n)
                .map(|(p, _)| p.clone());
            let at = heaviest.and_then(|p| list.iter().position(|o| o.from == p));
            match at {
                Some(at) => {
                    self.remove(doc, at);
                    outcome = Held::Evicted;
                }
                None => return Held::PeerFull,
            }
        }
        self.bytes += orphan.bytes.len();
        *self.per_peer.entry(orphan.from.clone()).or_default() += 1;
        self.docs.entry(doc.clone()).or_default().push(orphan);
        outcome
    }

    fn remove(&mut self, doc: &DocName, at: usize) {
        let Some(list) = self.docs.get_mut(doc) else {
            return;
        };
        let o = list.remove(at);
        self.bytes -= o.bytes.len();
        if let Some(n) = self.per_peer.get_mut(&o.from) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&o.from);
            }
        }
        if list.is_empty() {
            self.docs.remove(doc);
        }
    }

    /// Takes every orphan of `doc` (the caller holds again what is still missing
    /// dependencies).
    pub fn take(&mut self, doc: &DocName) -> Vec<Orphan<P>> {
        let list = self.docs.remove(doc).unwrap_or_default();
        for o in &list {
            self.bytes -= o.bytes.len();
            if let Some(n) = self.per_peer.get_mut(&o.from) {
                *n -= 1;
                if *n == 0 {
                    self.per_peer.remove(&o.from);
                }
            }
        }
        list
    }

    /// Orphans held for `doc`.
    pub fn of(&self, doc: &DocName) -> usize {
        self.docs.get(doc).map_or(0, Vec::len)
    }

    /// Orphans held from `peer`.
    pub fn from(&self, peer: &P) -> usize {
        self.per_peer.get(peer).copied().unwrap_or(0)
    }

    /// Orphans held, all documents.
    pub fn len(&self) -> usize {
        self.docs.values().map(Vec::len).sum()
    }

    /// True when none is held.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}
