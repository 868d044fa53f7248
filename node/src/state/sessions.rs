//! Sync sessions: one Automerge sync state per peer and direction for each document,
//! capped per document; messages to send, received ones applied under the guards.

use super::*;

/// Most sync sessions (one per peer and direction) kept per document.
pub const MAX_SYNC_SESSIONS: usize = 64;

/// The sync state of `peer`'s session, made if new. A document keeps at most
/// [`MAX_SYNC_SESSIONS`]: a new one beyond that replaces another (the smallest key),
/// whose next sync then starts over from scratch — slower for that peer, never wrong.
pub(super) fn session<'a>(
    peers: &'a mut HashMap<String, sync::State>,
    peer: &str,
) -> &'a mut sync::State {
    if !peers.contains_key(peer)
        && peers.len() >= MAX_SYNC_SESSIONS
        && let Some(evict) = peers.keys().min().cloned()
    {
        peers.remove(&evict);
    }
    peers.entry(peer.to_owned()).or_default()
}

impl StateStore {
    /// Starts a fresh sync session with `peer` for `doc` (after a (re)connect).
    pub fn reset_sync(&self, doc: &DocName, peer: &str) {
        if let Some(entry) = self.entry(doc) {
            lock(&entry).peers.remove(peer);
        }
    }

    /// Our next sync message for `peer` about `doc`, if any.
    pub fn sync_message(&self, doc: &DocName, peer: &str) -> Option<Vec<u8>> {
        let entry = self.entry(doc)?;
        let mut entry = lock(&entry);
        let Entry { doc, peers, .. } = &mut *entry;
        let state = session(peers, peer);
        // Generating reads the peer's bloom filters; should Automerge panic on what a
        // peer sent, the peer's sync state is forgotten and the next sync starts over.
        match guarded("sync message", || {
            Ok::<_, std::convert::Infallible>(doc.sync().generate_sync_message(state))
        }) {
            Ok(message) => message.map(sync::Message::encode),
            Err(_) => {
                tracing::warn!(%peer, "Automerge panicked generating a sync message; forgetting the peer's sync state");
                peers.remove(peer);
                None
            }
        }
    }

    /// Applies a sync message from `peer` about `doc` and persists what it brought.
    /// A malformed message, or one that would take the document over its cap, changes
    /// nothing.
    ///
    /// # Errors
    /// When the document is not held, the message is bad, or a cap is hit.
    pub fn receive_sync(
        &self,
        doc: &DocName,
        peer: &str,
        bytes: &[u8],
    ) -> Result<(), StateOpError> {
        if bytes.len() as u64 > self.limits.max_doc_bytes {
            return Err(StateOpError::TooLarge {
                what: "a sync message",
                size: bytes.len() as u64,
                limit_name: "max_doc_bytes",
                limit: self.limits.max_doc_bytes,
            });
        }
        let message = decode_sync_message(bytes)?;
        let entry = self
            .entry(doc)
            .ok_or_else(|| StateOpError::NoDocument(doc.clone()))?;
        let mut entry = lock(&entry);
        let result = {
            let Entry { doc, peers, .. } = &mut *entry;
            let state = session(peers, peer);
            // Should Automerge fail (or panic) half way, the document is reloaded
            // from its file and the peer's sync state forgotten.
            guarded("the sync message could not be applied", || {
                doc.sync().receive_sync_message(state, message)
            })
        };
        if let Err(why) = result {
            entry.peers.remove(peer);
            self.revert(&mut entry)?;
            return Err(StateOpError::BadDocument(why));
        }
        self.persist(&mut entry)
    }

    /// Answers a peer's sync request: apply its message, reply with ours.
    pub fn answer_sync(&self, doc: &DocName, peer: &str, bytes: &[u8]) -> SyncResponse {
        if !self.holds(doc) {
            return SyncResponse::NotHosted;
        }
        if let Err(e) = self.receive_sync(doc, peer, bytes) {
            tracing::info!(%doc, %peer, error = %e, "refused a sync message");
            return SyncResponse::Refused {
                kind: e.kind(),
                message: e.to_string(),
            };
        }
        match self.sync_message(doc, peer) {
            Some(m) => SyncResponse::Message(m),
            None => SyncResponse::Done,
        }
    }
}
