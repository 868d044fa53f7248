//! Keeping documents in step with peers: a change goes to the document's holders (and
//! each holder that learns something new passes it on to its own), a full sync with
//! every peer that connects, and Automerge's sync protocol over `/kith/sync/1`
//! (`docs/state.md`). No change is announced to peers that do not hold the document.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use kith_protocol::state::{DocName, SyncRequest, SyncResponse};
use libp2p::PeerId;

use crate::clock::lock;
use crate::net::StateInbound;
use crate::node::Node;
use crate::state::StateOpError;

/// Most request/response rounds in one sync session (a session normally ends in two
/// or three; this bounds a peer that never stops answering).
const MAX_ROUNDS: usize = 64;
/// Longest a call waits for its documents to be fetched before it runs anyway (with
/// what it has): the call's own timeout when that is shorter.
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
/// Most peers asked at once for a document this node lacks.
const FETCH_PEERS: usize = 8;

impl Node {
    /// The documents held here.
    pub fn state(&self) -> &crate::state::StateStore {
        &self.state
    }

    /// Runs a write on the state store, then tells the document's holders.
    ///
    /// # Errors
    /// The write's own.
    pub fn state_write<T>(
        self: &Arc<Self>,
        doc: &DocName,
        write: impl FnOnce(&crate::state::StateStore) -> Result<T, StateOpError>,
    ) -> Result<T, StateOpError> {
        let out = write(&self.state)?;
        self.pass_on(doc, None);
        Ok(out)
    }

    /// Tells the holders of `doc` that it changed here: a sync session with each (at
    /// most the holder book's per-document cap), which carries the new changes; `from`
    /// is the peer a change came from (it has it), None for a change made here.
    pub(crate) fn pass_on(self: &Arc<Self>, doc: &DocName, from: Option<PeerId>) {
        if self.net.get().is_none() {
            return;
        }
        let targets = lock(&self.state_holders).targets(doc, from);
        for peer in targets {
            tokio::spawn(Arc::clone(self).sync_doc(peer, doc.clone()));
        }
    }

    /// Pins `doc` (creating it empty when missing) and syncs it with every connected
    /// peer, so a peer that holds it fills it in. Returns the heads afterwards.
    ///
    /// # Errors
    /// When the operator does not host the namespace.
    pub async fn pin(self: &Arc<Self>, doc: &DocName) -> Result<Vec<String>, StateOpError> {
        self.state.pin(doc)?;
        let peers = self
            .net
            .get()
            .map_or_else(Vec::new, |net| net.peers().connected());
        let syncs = peers
            .into_iter()
            .map(|peer| self.sync_doc_now(peer, doc.clone()));
        futures::future::join_all(syncs).await;
        self.state.heads(doc)
    }

    /// Penalises `peer` for what it sent about `doc` (a change it was not given the
    /// right to write, a forged signature, an orphan flood) and counts it.
    pub(crate) fn penalise_state_peer(&self, peer: PeerId, doc: &DocName) {
        self.state_refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%peer, %doc, "penalised a peer for the state changes it sent");
        if let Some(net) = self.net.get() {
            net.penalise(peer);
        }
    }

    /// Remembers that `peer` holds `doc`.
    pub(crate) fn note_holder(&self, doc: &DocName, peer: PeerId) {
        if peer != self.peer_id {
            lock(&self.state_holders).note(doc, peer);
        }
    }

    /// One of `doc`'s known holders among `connected`, the `turn`-th in rotation.
    pub(crate) fn holder_in_turn(
        &self,
        doc: &DocName,
        turn: usize,
        connected: &[PeerId],
    ) -> Option<PeerId> {
        let live = self.connected_holders(doc, connected);
        (!live.is_empty()).then(|| live[turn % live.len()])
    }

    /// `doc`'s known holders among `connected`, most recently heard first.
    fn connected_holders(&self, doc: &DocName, connected: &[PeerId]) -> Vec<PeerId> {
        lock(&self.state_holders)
            .of(doc)
            .iter()
            .filter(|p| connected.contains(p))
            .copied()
            .collect()
    }

    /// Forgets that `peer` holds `doc` (it does not, or cannot be reached; it is
    /// noted again the next time it syncs).
    fn forget_holder(&self, doc: &DocName, peer: PeerId) {
        lock(&self.state_holders).forget(doc, peer);
    }

    /// Fetches the documents among `docs` this node does not hold yet, from peers
    /// known to hold them (else from connected peers), waiting at most `patience`
    /// (capped at 3 s). A document nobody has stays empty: the function starts it.
    /// Documents outside the operator's `state_namespaces` are skipped (the function's
    /// access to them is refused).
    pub(crate) async fn fetch_docs(
        self: &Arc<Self>,
        docs: &[DocName],
        patience: std::time::Duration,
    ) {
        let missing: Vec<&DocName> = docs
            .iter()
            .filter(|d| !self.state.holds(d) && self.state.allowed(d))
            .collect();
        if missing.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        let connected = self
            .net
            .get()
            .map_or_else(Vec::new, |net| net.peers().connected());
        let mut sessions = Vec::new();
        for doc in &missing {
            if let Err(e) = self.state.hold(doc) {
                tracing::info!(%doc, error = %e, "cannot hold a function's document");
                continue;
            }
            let known = self.connected_holders(doc, &connected);
            let peers = if known.is_empty() {
                connected.clone()
            } else {
                known
            };
            for peer in peers.into_iter().take(FETCH_PEERS) {
                sessions.push(self.sync_doc_now(peer, (*doc).clone()));
            }
        }
        let all = futures::future::join_all(sessions);
        if tokio::time::timeout(patience.min(FETCH_TIMEOUT), all)
            .await
            .is_err()
        {
            tracing::info!(
                docs = missing.len(),
                "fetching a function's documents timed out; running with what is here"
            );
        }
        let ms = started.elapsed().as_millis() as u64;
        self.state_fetches
            .fetch_add(missing.len() as u64, Ordering::Relaxed);
        self.state_fetch_ms.fetch_add(ms, Ordering::Relaxed);
        tracing::debug!(docs = missing.len(), ms, "fetched a function's documents");
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
                    let doc = request.doc;
                    let before = node.state.raw_heads(&doc);
                    let (answer, misbehaved) =
                        node.state
                            .answer_sync(&doc, &format!("in:{peer}"), &request.message);
                    if misbehaved {
                        node.penalise_state_peer(peer, &doc);
                    }
                    if let SyncResponse::Message(m) = &answer {
                        node.sync_sent.fetch_add(m.len() as u64, Ordering::Relaxed);
                    }
                    let hosted = matches!(answer, SyncResponse::Message(_) | SyncResponse::Done);
                    let _ = respond.send(answer);
                    // A peer that syncs a document with us holds it; what it taught us
                    // goes on to the other holders.
                    if hosted {
                        node.note_holder(&doc, peer);
                        if node.state.raw_heads(&doc) != before {
                            node.pass_on(&doc, Some(peer));
                        }
                    }
                });
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
        self.sync_doc_now(peer, doc).await;
    }

    /// [`Self::sync_doc`], borrowing the node.
    pub(crate) async fn sync_doc_now(self: &Arc<Self>, peer: PeerId, doc: DocName) {
        let key = (peer, doc.clone());
        {
            let mut running = lock(&self.state_syncing);
            if let Some(again) = running.get_mut(&key) {
                *again = true;
                return;
            }
            running.insert(key.clone(), false);
        }
        // Whatever ends the session — done, an error, or the caller dropping this
        // future (a fetch that timed out) — the (peer, document) slot is freed.
        struct Slot<'a> {
            running: &'a std::sync::Mutex<std::collections::HashMap<(PeerId, DocName), bool>>,
            key: (PeerId, DocName),
        }
        impl Drop for Slot<'_> {
            fn drop(&mut self) {
                lock(self.running).remove(&self.key);
            }
        }
        let _slot = Slot {
            running: &self.state_syncing,
            key: key.clone(),
        };
        let Some(net) = self.net.get().cloned() else {
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
                        self.note_holder(&doc, peer);
                        let state = Arc::clone(&self.state);
                        let (d, s) = (doc.clone(), session.clone());
                        let applied = tokio::task::spawn_blocking(move || {
                            let before = state.raw_heads(&d);
                            state
                                .receive_sync(&d, &s, &reply)
                                .map(|r| (state.raw_heads(&d) != before, r.flooded > 0))
                        })
                        .await;
                        match applied {
                            Ok(Ok((changed, flooded))) => {
                                if changed {
                                    self.pass_on(&doc, Some(peer));
                                }
                                if flooded {
                                    self.penalise_state_peer(peer, &doc);
                                    break;
                                }
                            }
                            Ok(Err(e)) => {
                                tracing::info!(%peer, %doc, error = %e, "refused a peer's sync message");
                                if matches!(e, StateOpError::Unauthorised(_)) {
                                    self.penalise_state_peer(peer, &doc);
                                }
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    Ok(SyncResponse::Done) => self.note_holder(&doc, peer),
                    Ok(SyncResponse::NotHosted) => {
                        self.forget_holder(&doc, peer);
                        break;
                    }
                    Ok(SyncResponse::Refused { kind, message }) => {
                        tracing::info!(%peer, %doc, %kind, %message, "a peer refused our sync message");
                        self.state.reset_sync(&doc, &session);
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(%peer, %doc, error = %e, "sync round failed");
                        self.state.reset_sync(&doc, &session);
                        self.forget_holder(&doc, peer);
                        break;
                    }
                }
            }
            // Go round again if another sync was asked for meanwhile. (On return this
            // guard drops before `_slot`, which takes the same lock.)
            let mut running = lock(&self.state_syncing);
            if !running.get(&key).copied().unwrap_or(false) {
                return;
            }
            running.insert(key.clone(), false);
        }
    }
}
