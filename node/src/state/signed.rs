//! Signed changes: every change this node makes is authored by one of its keys (the
//! change's actor id is the public key) and signed; every change a peer sends is
//! checked — parsed only after a forked child has loaded it into a copy of the
//! document, signature verified, author judged against the namespace's grants
//! ([`kith_protocol::state::writes::judge`]) — before any of the message is applied.
//! Orphans (changes whose dependencies have not arrived) are held, bounded, outside
//! the document, so Automerge's own unbounded queue stays empty.

use automerge::sync::ChunkList;
use automerge::transaction::CommitOptions;
use automerge::{ActorId, Change};
use kith_protocol::FunctionId;
use kith_protocol::grant::Authority;
use kith_protocol::state::writes::{
    self, ChangeFacts, Held, MAX_ORPHANS_PER_PEER, Orphan, SignedSync,
};

use super::sessions::session;
use super::untrusted::decode_sync_message_unchecked;
use super::*;

/// Who writes a change made here: the key that signs it and, for a function's
/// write, the function (named in the change's commit message).
#[derive(Clone)]
pub struct Writer {
    /// The signing key; its public half is the change's actor id.
    pub key: ed25519_dalek::SigningKey,
    /// The function that made the change, if one did.
    pub function: Option<FunctionId>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("key", &hex::encode(self.key.verifying_key().to_bytes()))
            .field("function", &self.function)
            .finish()
    }
}

impl Writer {
    fn key_bytes(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// A writer from an ed25519 secret key's 32 bytes.
    pub fn from_secret(secret: [u8; 32], function: Option<FunctionId>) -> Self {
        Self {
            key: ed25519_dalek::SigningKey::from_bytes(&secret),
            function,
        }
    }

    /// The public key (the changes' actor id), hex.
    pub fn public_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    /// The actor id of this writer's changes made through `store`: the key, then the
    /// store's own suffix.
    fn actor(&self, suffix: &[u8; 16]) -> ActorId {
        let mut a = self.key_bytes().to_vec();
        a.extend_from_slice(suffix);
        ActorId::from(a)
    }
}

/// What the namespaces' owners say of a writer: the node's grant book.
pub trait Authorities: Send + Sync {
    /// The authority of a change to a document of `namespace` by `actor`, made by
    /// `function` if the change names one.
    fn authority(
        &self,
        namespace: &Namespace,
        actor: &[u8],
        function: Option<&FunctionId>,
    ) -> Authority;
}

/// What one received sync message did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// Changes applied (held orphans included).
    pub applied: usize,
    /// Changes held as orphans.
    pub orphans: usize,
    /// Changes by revoked writers, dropped.
    pub revoked: usize,
    /// Orphans dropped because the sender already has its cap held: a flood.
    pub flooded: usize,
}

impl StateStore {
    /// Sets who may write what (once, at start).
    pub fn set_authorities(&self, authorities: Arc<dyn Authorities>) {
        let _ = self.authorities.set(authorities);
    }

    fn authority(&self, namespace: &Namespace, actor: &[u8], f: Option<&FunctionId>) -> Authority {
        match self.authorities.get() {
            Some(a) => a.authority(namespace, actor, f),
            None if actor == namespace.0 => Authority::Owner,
            None => Authority::Never,
        }
    }

    /// Orphan changes held for `doc`.
    pub fn orphans_of(&self, doc: &DocName) -> usize {
        lock(&self.orphans).of(doc)
    }

    /// Orphan changes held, all documents.
    pub fn orphan_count(&self) -> usize {
        lock(&self.orphans).len()
    }

    /// Sets `entry`'s actor to `writer`'s key, runs `edit`, commits (naming the
    /// function, if any) and signs the new change.
    pub(super) fn edit_as(
        &self,
        entry: &mut Entry,
        writer: &Writer,
        edit: impl FnOnce(&mut AutoCommit) -> Result<(), StateOpError>,
    ) -> Result<(), StateOpError> {
        let actor = writer.actor(&self.actor_suffix);
        if entry.doc.get_actor() != &actor {
            entry.doc.set_actor(actor);
        }
        if let Err(e) = edit(&mut entry.doc) {
            entry.doc.rollback();
            return Err(e);
        }
        match &writer.function {
            Some(f) if entry.doc.pending_ops() > 0 => {
                entry.doc.commit_with(
                    CommitOptions::default().with_message(writes::function_message(f)),
                );
            }
            _ => {
                entry.doc.commit();
            }
        }
        self.sign_own(entry, &writer.key);
        Ok(())
    }

    /// Signs the changes since the last persist that `key` authored and that carry
    /// no signature yet.
    pub(super) fn sign_own(&self, entry: &mut Entry, key: &ed25519_dalek::SigningKey) {
        let actor = key.verifying_key().to_bytes();
        let persisted = entry.persisted.clone();
        for change in entry.doc.get_changes(&persisted) {
            let hash = change.hash().0;
            if writes::writer_key(change.actor_id().to_bytes()) == Some(actor)
                && !entry.signatures.contains_key(&hash)
            {
                let sig = writes::sign_change(key, &entry.name, &hash);
                entry.signatures.insert(hash, sig);
                entry.unsaved.push((hash, sig));
            }
        }
    }

    /// Our next sync message for `peer` about `doc`, with the signatures of the
    /// changes it carries. A change without a signature (a document written before
    /// changes were signed) is left out: peers would refuse it.
    pub fn sync_message(&self, doc: &DocName, peer: &str) -> Option<Vec<u8>> {
        let entry = self.entry(doc)?;
        let mut entry = lock(&entry);
        let Entry {
            doc: am,
            peers,
            signatures,
            ..
        } = &mut *entry;
        let state = session(peers, peer);
        // Generating reads the peer's bloom filters; should Automerge panic on what a
        // peer sent, the peer's sync state is forgotten and the next sync starts over.
        let message = match guarded("sync message", || {
            Ok::<_, std::convert::Infallible>(am.sync().generate_sync_message(state))
        }) {
            Ok(message) => message?,
            Err(_) => {
                tracing::warn!(%peer, "Automerge panicked generating a sync message; forgetting the peer's sync state");
                peers.remove(peer);
                return None;
            }
        };
        let mut message = message;
        let mut sigs = Vec::new();
        let mut kept = Vec::new();
        for blob in message.changes.iter() {
            // Automerge's version 2 messages put several changes, or a whole saved
            // document, in one blob: every change in it needs its signature.
            let Ok(parts) = split_chunks(blob) else {
                continue;
            };
            let mut blob_kept = Vec::new();
            for part in parts {
                if part.get(8) == Some(&DOCUMENT_CHUNK) {
                    sigs.extend(signatures.iter().map(|(h, s)| (*h, *s)));
                    blob_kept.extend_from_slice(part);
                    continue;
                }
                let Ok(change) = Change::from_bytes(part.to_vec()) else {
                    continue;
                };
                let hash = change.hash().0;
                match signatures.get(&hash) {
                    Some(sig) => {
                        sigs.push((hash, *sig));
                        blob_kept.extend_from_slice(part);
                    }
                    None => {
                        tracing::warn!(%doc, change = %hex::encode(hash), "a change without a signature is not sent (written before changes were signed)");
                    }
                }
            }
            if !blob_kept.is_empty() {
                kept.push(blob_kept);
            }
        }
        sigs.sort_unstable_by_key(|(h, _)| *h);
        sigs.dedup_by_key(|(h, _)| *h);
        message.changes = ChunkList::from(kept);
        Some(
            SignedSync {
                signatures: sigs,
                message: message.encode(),
            }
            .encode(),
        )
    }

    /// Applies a signed sync message from `peer` (its session name, `in:PEER` or
    /// `out:PEER`) about `doc` and persists what it brought. Nothing is applied when a
    /// change is malformed, unsigned, forged, by a writer never granted, or would take
    /// the document over a cap.
    ///
    /// # Errors
    /// When the document is not held, the message is refused, or a cap is hit.
    pub fn receive_sync(
        &self,
        doc: &DocName,
        peer: &str,
        bytes: &[u8],
    ) -> Result<Received, StateOpError> {
        if bytes.len() as u64 > self.limits.max_doc_bytes {
            return Err(StateOpError::TooLarge {
                what: "a sync message",
                size: bytes.len() as u64,
                limit_name: "max_doc_bytes",
                limit: self.limits.max_doc_bytes,
            });
        }
        let signed =
            SignedSync::decode(bytes).map_err(|e| StateOpError::BadDocument(e.to_string()))?;
        let mut message = decode_sync_message_unchecked(&signed.message)?;
        let entry = self
            .entry(doc)
            .ok_or_else(|| StateOpError::NoDocument(doc.clone()))?;
        let mut entry = lock(&entry);
        let sender = peer.split_once(':').map_or(peer, |(_, p)| p).to_owned();
        // Received into a fork: a child process loads the changes into a copy of the
        // document under memory and CPU limits before this process parses them.
        let chunks: Vec<Vec<u8>> = message.changes.iter().map(<[u8]>::to_vec).collect();
        let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        check_changes(
            "the sync message's changes were refused",
            Some(&entry.doc),
            &refs,
        )?;
        let held = lock(&self.orphans).take(doc);
        let mut changes: Vec<(Change, Option<[u8; 64]>, Option<String>)> = Vec::new();
        let sigs: HashMap<[u8; 32], [u8; 64]> = signed.signatures.into_iter().collect();
        for blob in &chunks {
            for change in changes_in(blob)? {
                let hash = change.hash();
                if entry.doc.get_change_meta_by_hash(&hash).is_some()
                    || changes.iter().any(|(c, _, _)| c.hash() == hash)
                {
                    continue;
                }
                let sig = sigs.get(&hash.0).copied();
                changes.push((change, sig, Some(sender.clone())));
            }
        }
        let from_store = changes.len();
        for o in &held {
            if changes.iter().any(|(c, _, _)| c.hash().0 == o.hash) {
                continue;
            }
            if let Ok(change) = guarded("a held change", || Change::from_bytes(o.bytes.clone())) {
                changes.push((change, Some(o.signature), Some(o.from.clone())));
            }
        }
        let facts: Vec<ChangeFacts> = changes
            .iter()
            .map(|(c, sig, _)| ChangeFacts {
                hash: c.hash().0,
                actor: c.actor_id().to_bytes().to_vec(),
                deps: c.deps().iter().map(|d| d.0).collect(),
                function: writes::function_of(c.message()),
                signature: *sig,
            })
            .collect();
        let namespace = entry.name.namespace;
        let verdict = {
            let am = &mut entry.doc;
            let deps: std::collections::HashSet<[u8; 32]> =
                facts.iter().flat_map(|f| f.deps.iter().copied()).collect();
            let known: std::collections::HashSet<[u8; 32]> = deps
                .into_iter()
                .filter(|d| {
                    am.get_change_meta_by_hash(&automerge::ChangeHash(*d))
                        .is_some()
                })
                .collect();
            writes::judge(
                doc,
                &facts,
                |actor, f| self.authority(&namespace, actor, f),
                |h| known.contains(h),
            )
        };
        let verdict = match verdict {
            Ok(v) => v,
            Err(refusal) => {
                // Put back what was held; the message itself is dropped whole.
                let mut orphans = lock(&self.orphans);
                for o in held {
                    orphans.hold(doc, o);
                }
                return Err(StateOpError::Unauthorised(refusal));
            }
        };
        // Held orphans now applicable were loaded by no check yet against this
        // document: check them too.
        let late: Vec<&[u8]> = verdict
            .apply
            .iter()
            .filter(|i| **i >= from_store)
            .map(|i| changes[*i].0.raw_bytes())
            .collect();
        if !late.is_empty() {
            check_changes("held changes were refused", Some(&entry.doc), &late)?;
        }
        let mut received = Received {
            applied: verdict.apply.len(),
            revoked: verdict.revoked.len(),
            ..Received::default()
        };
        let apply: Vec<Change> = verdict
            .apply
            .iter()
            .map(|i| changes[*i].0.clone())
            .collect();
        for i in &verdict.apply {
            if let Some(sig) = changes[*i].1 {
                let hash = changes[*i].0.hash().0;
                entry.signatures.insert(hash, sig);
                entry.unsaved.push((hash, sig));
            }
        }
        {
            let mut orphans = lock(&self.orphans);
            for i in &verdict.orphans {
                let (c, sig, from) = &changes[*i];
                let (Some(sig), Some(from)) = (sig, from) else {
                    continue;
                };
                let orphan = Orphan {
                    from: from.clone(),
                    hash: c.hash().0,
                    signature: *sig,
                    bytes: c.raw_bytes().to_vec(),
                };
                match orphans.hold(doc, orphan) {
                    Held::Kept | Held::Evicted | Held::Duplicate => received.orphans += 1,
                    Held::PeerFull => received.flooded += 1,
                    Held::BytesFull => {}
                }
            }
            // More orphans in one message than a document may hold: no honest peer
            // sends that (Automerge sends changes in dependency order).
            let from_sender = verdict.orphans.iter().filter(|i| **i < from_store).count();
            received.flooded += from_sender.saturating_sub(writes::MAX_ORPHANS_PER_DOC);
            if received.flooded > 0 {
                tracing::warn!(%doc, peer = %sender, dropped = received.flooded, cap = MAX_ORPHANS_PER_PEER, "dropped orphan changes: the peer has MAX_ORPHANS_PER_PEER held already");
            }
        }
        // Applied here, not by Automerge's sync: what it sees is the message without
        // its changes.
        message.changes = ChunkList::from(Vec::<Vec<u8>>::new());
        let result = {
            let Entry { doc: am, peers, .. } = &mut *entry;
            let state = session(peers, peer);
            guarded("the sync message could not be applied", || {
                am.apply_changes(apply)?;
                am.sync().receive_sync_message(state, message)
            })
        };
        if let Err(why) = result {
            entry.peers.remove(peer);
            self.revert(&mut entry)?;
            return Err(StateOpError::BadDocument(why));
        }
        self.persist(&mut entry)?;
        if received.revoked > 0 {
            tracing::info!(%doc, peer = %sender, dropped = received.revoked, "dropped changes by revoked writers that no authorised change builds on");
        }
        Ok(received)
    }
}

/// The first four bytes of every Automerge chunk.
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// Chunk type of a saved document (1: a change, 2: a compressed change).
const DOCUMENT_CHUNK: u8 = 0;

/// Splits a blob of concatenated Automerge chunks (magic, checksum, type, LEB128
/// length, data) into its chunks.
fn split_chunks(blob: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < blob.len() {
        let rest = &blob[at..];
        if rest.len() < 10 || rest[..4] != MAGIC {
            return Err("not an Automerge chunk".into());
        }
        let (mut len, mut shift, mut i) = (0u64, 0u32, 9);
        loop {
            let byte = *rest.get(i).ok_or("truncated chunk length")?;
            len |= u64::from(byte & 0x7f) << shift;
            i += 1;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 56 {
                return Err("chunk length too long".into());
            }
        }
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| i.checked_add(l))
            .filter(|e| *e <= rest.len())
            .ok_or("chunk longer than the message")?;
        out.push(&rest[..end]);
        at += end;
    }
    Ok(out)
}

/// Every change in a blob of a sync message: a change chunk is one; a saved document
/// holds its whole history. Called only on bytes the forked check has loaded.
fn changes_in(blob: &[u8]) -> Result<Vec<Change>, StateOpError> {
    let bad = |e: String| StateOpError::BadDocument(format!("a change in the sync message: {e}"));
    let mut out = Vec::new();
    for part in split_chunks(blob).map_err(bad)? {
        if part.get(8) == Some(&DOCUMENT_CHUNK) {
            let mut doc = guarded("a saved document", || AutoCommit::load(part)).map_err(bad)?;
            out.extend(doc.get_changes(&[]));
        } else {
            let change = guarded("a change", || Change::from_bytes(part.to_vec())).map_err(bad)?;
            out.push(change);
        }
    }
    Ok(out)
}
