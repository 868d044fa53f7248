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

    /// Answers a peer's sync request: apply its message, reply with ours. The flag is
    /// true when the peer misbehaved (a change it cannot have been given, an orphan
    /// flood) and should be penalised.
    pub fn answer_sync(&self, doc: &DocName, peer: &str, bytes: &[u8]) -> (SyncResponse, bool) {
        if !self.holds(doc) {
            return (SyncResponse::NotHosted, false);
        }
        match self.receive_sync(doc, peer, bytes) {
            Err(e) => {
                tracing::info!(%doc, %peer, error = %e, "refused a sync message");
                let penalise = matches!(e, StateOpError::Unauthorised(_));
                let refused = SyncResponse::Refused {
                    kind: e.kind(),
                    message: e.to_string(),
                };
                return (refused, penalise);
            }
            Ok(received) if received.flooded > 0 => {
                let refused = SyncResponse::Refused {
                    kind: kith_protocol::ErrorKind::TooLarge,
                    message: format!(
                        "dropped {} orphan changes: at most {} held per peer (MAX_ORPHANS_PER_PEER)",
                        received.flooded,
                        kith_protocol::state::writes::MAX_ORPHANS_PER_PEER
                    ),
                };
                return (refused, true);
            }
            Ok(_) => {}
        }
        match self.sync_message(doc, peer) {
            Some(m) => (SyncResponse::Message(m), false),
            None => (SyncResponse::Done, false),
        }
    }
}
