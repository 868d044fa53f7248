//! Keeping documents in step with peers: heads announcements on the state topic, a
//! full sync with every peer that connects, and Automerge's sync protocol over
//! `/kith/sync/1` (`docs/state.md`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use kith_protocol::state::{DocName, Heads, SyncRequest, SyncResponse};
use libp2p::PeerId;

use crate::clock::lock;
use crate::net::StateInbound;
use crate::node::Node;
use crate::state::StateOpError;

/// Most request/response rounds in one sync session (a session normally ends in two
/// or three; this bounds a peer that never stops answering).
const MAX_ROUNDS: usize = 64;

impl Node {
    /// The documents held here.
    pub fn state(&self) -> &crate::state::StateStore {
        &self.state
    }

    /// Runs a write on the state store, then tells peers the document changed.
    ///
    /// # Errors
    /// The write's own.
    pub fn state_write<T>(
        &self,
        doc: &DocName,
        write: impl FnOnce(&crate::state::StateStore) -> Result<T, StateOpError>,
    ) -> Result<T, StateOpError> {
        let out = write(&self.state)?;
        self.announce_heads(doc);
        Ok(out)
    }

    /// Announces `doc`'s heads on the state topic.
    pub(crate) fn announce_heads(&self, doc: &DocName) {
        let (Some(net), Some(heads)) = (self.net.get(), self.state.raw_heads(doc)) else {
            return;
        };
        net.publish_heads(
            Heads {
                doc: doc.clone(),
                heads,
            }
            .encode(),
        );
    }

    /// Pins `doc` (creating it empty when missing) and syncs it with every connected
    /// peer, so a peer that holds it fills it in. Returns the heads afterwards.
    ///
    /// # Errors
    /// When the operator does not host the namespace.
    pub async fn pin(self: &Arc<Self>, doc: &DocName) -> Result<Vec<String>, StateOpError> {
        self.state.pin(doc)?;
        let peers = self.net.get().map_or_else(Vec::new, |net| {
            net.table
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .connected()
        });
        let syncs = peers
            .into_iter()
            .map(|peer| Arc::clone(self).sync_doc(peer, doc.clone()));
        futures::future::join_all(syncs).await;
        self.state.heads(doc)
    }

    /// Handles document-sync traffic from the network task.
    pub(crate) fn handle_state(self: &Arc<Self>, message: StateInbound) {
        match message {
            StateInbound::Sync {
                peer,
                request,
                respond,
            } => {
                let node = Arc::clone(self);
                // Applying and persisting changes touches the disk: off the async
                // threads.
                node.sync_received
                    .fetch_add(request.message.len() as u64, Ordering::Relaxed);
                tokio::task::spawn_blocking(move || {
                    let answer = node.state.answer_sync(
                        &request.doc,
                        &format!("in:{peer}"),
                        &request.message,
                    );
                    if let SyncResponse::Message(m) = &answer {
                        node.sync_sent.fetch_add(m.len() as u64, Ordering::Relaxed);
                    }
                    let _ = respond.send(answer);
                });
            }
            StateInbound::Heads { source, bytes } => {
                let heads = match Heads::decode(&bytes) {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::debug!(%source, error = %e, "malformed heads announcement");
                        return;
                    }
                };
                let ours = self.state.raw_heads(&heads.doc);
                if ours.as_ref().is_some_and(|o| *o != heads.heads) && source != self.peer_id {
                    tokio::spawn(Arc::clone(self).sync_doc(source, heads.doc));
                }
            }
            StateInbound::Connected(peer) => {
                for doc in self.state.names() {
                    self.state.reset_sync(&doc, &format!("out:{peer}"));
                    self.state.reset_sync(&doc, &format!("in:{peer}"));
                    tokio::spawn(Arc::clone(self).sync_doc(peer, doc));
                }
            }
        }
    }

    /// One sync session with `peer` about `doc`: send our message, apply theirs, until
    /// neither side has anything to send. One session per (peer, document) at a time;
    /// a request for another while one runs makes it go round once more.
    pub(crate) async fn sync_doc(self: Arc<Self>, peer: PeerId, doc: DocName) {
        let key = (peer, doc.clone());
        {
            let mut running = lock(&self.state_syncing);
            if let Some(again) = running.get_mut(&key) {
                *again = true;
                return;
            }
            running.insert(key.clone(), false);
        }
        let Some(net) = self.net.get().cloned() else {
            lock(&self.state_syncing).remove(&key);
            return;
        };
        let session = format!("out:{peer}");
        loop {
            for _ in 0..MAX_ROUNDS {
                let Some(message) = self.state.sync_message(&doc, &session) else {
                    break;
                };
                self.sync_sent
                    .fetch_add(message.len() as u64, Ordering::Relaxed);
                let request = SyncRequest {
                    doc: doc.clone(),
                    message,
                };
                match net.state_sync(peer, request).await {
                    Ok(SyncResponse::Message(reply)) => {
                        self.sync_received
                            .fetch_add(reply.len() as u64, Ordering::Relaxed);
                        let node = Arc::clone(&self);
                        let (d, s) = (doc.clone(), session.clone());
                        let applied = tokio::task::spawn_blocking(move || {
                            node.state.receive_sync(&d, &s, &reply)
                        })
                        .await;
                        match applied {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => {
                                tracing::info!(%peer, %doc, error = %e, "refused a peer's sync message");
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    Ok(SyncResponse::Done) => {}
                    Ok(SyncResponse::NotHosted) => break,
                    Ok(SyncResponse::Refused(why)) => {
                        tracing::info!(%peer, %doc, %why, "a peer refused our sync message");
                        self.state.reset_sync(&doc, &session);
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(%peer, %doc, error = %e, "sync round failed");
                        self.state.reset_sync(&doc, &session);
                        break;
                    }
                }
            }
            let mut running = lock(&self.state_syncing);
            if running.get(&key).copied().unwrap_or(false) {
                running.insert(key.clone(), false);
                continue;
            }
            running.remove(&key);
            return;
        }
    }
}
