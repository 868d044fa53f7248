//! The network task's state, its loop, and its housekeeping.

use super::*;

/// The network task: owns the swarm and everything fed by peers; the rest of the
/// node reaches it through [`super::Net`].
pub(super) struct Task {
    /// The neighbourhood and what its driver keeps.
    pub(super) hood: hood::Hood,
    pub(super) swarm: Swarm<Behaviour>,
    pub(super) key: Keypair,
    pub(super) config: NetConfig,
    /// What the task knows about peers; only the task changes it.
    pub(super) table: PeerTable,
    /// Where snapshots of `table` go.
    pub(super) snapshots: watch::Sender<Arc<PeerTable>>,
    /// `table` changed since the last snapshot.
    pub(super) dirty: bool,
    /// When the last snapshot went out.
    pub(super) published_at: Instant,
    /// Bytes sent and received per protocol (copied into `table` every second).
    pub(super) bytes: NetBytes,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) inbound: mpsc::Sender<Inbound>,
    pub(super) alias_topic: gossipsub::IdentTopic,
    /// Document-sync requests in flight: who, and where the answer goes.
    pub(super) state_requests:
        HashMap<OutboundRequestId, (PeerId, oneshot::Sender<Result<state::SyncResponse, String>>)>,
    pub(super) seq: u64,
    pub(super) coord: vivaldi::Coord,
    /// Modules being fetched.
    pub(super) fetches: fetch::Fetches,
    pub(super) invoke_requests: HashMap<
        OutboundRequestId,
        (
            PeerId,
            oneshot::Sender<Result<InvokeResponse, InvokeFailure>>,
        ),
    >,
    pub(super) answers: FuturesUnordered<futures::future::BoxFuture<'static, Answer>>,
    pub(super) invoke_buckets: HashMap<PeerId, TokenBucket>,
    /// Rate limits of neighbourhood messages, per peer (until refilled).
    pub(super) advert_buckets: HashMap<PeerId, TokenBucket>,
    /// Alias sync requests in flight, by peer.
    pub(super) alias_requests: HashMap<OutboundRequestId, PeerId>,
    /// Requests from each peer that the node is still answering.
    pub(super) serving: HashMap<PeerId, usize>,
    /// Reachability: relays, relayed and direct connections, dial-backs.
    pub(super) nat: nat::NatState,
    /// Finding peers: bootstrap, dials, lookups.
    pub(super) discovery: discovery::Discovery,
}

impl Task {
    pub(super) async fn run(mut self) {
        let mut snapshot = tokio::time::interval(SNAPSHOT_EVERY);
        snapshot.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut maintenance = tokio::time::interval(MAINTENANCE);
        maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let hood_wait = self.hood_wait();
            tokio::select! {
                _ = snapshot.tick() => self.publish_snapshot(),
                () = tokio::time::sleep(hood_wait) => self.hood_tick(),
                _ = maintenance.tick() => {
                    self.trim_connections();
                    self.dial_bootstrap(true);
                    self.redial_bootstrap();
                    self.maintain_relays();
                    self.prune_peer_maps();
                    let peers: Vec<PeerId> = self.nat.relayed.keys().copied().collect();
                    for peer in peers {
                        self.drop_relayed(peer);
                    }
                }
                command = self.commands.recv() => match command {
                    Some(c) => self.command(c),
                    None => return,
                },
                Some((peer, channel, body)) = self.answers.next(), if !self.answers.is_empty() => {
                    self.answer(channel, body);
                    if let Some(n) = self.serving.get_mut(&peer) {
                        *n = n.saturating_sub(1);
                    }
                    self.drop_relayed(peer);
                }
                event = self.swarm.select_next_some() => self.event(event),
            }
            // Whatever happened may have given the neighbourhood something to do.
            self.drive_hood();
        }
    }

    /// The peer table, to change: the next snapshot tick publishes it.
    pub(super) fn table(&mut self) -> &mut PeerTable {
        self.dirty = true;
        &mut self.table
    }

    /// Counts a misbehaviour of `peer`, and publishes the table at once unless a
    /// snapshot went out in the last [`SNAPSHOT_EVERY`] (then the next tick does):
    /// placement should not pick a peer that just misbehaved, and a peer sending
    /// garbage must not buy a copy of the table per message.
    pub(super) fn penalise(&mut self, peer: PeerId) {
        self.table().penalise(&peer);
        if self.published_at.elapsed() >= SNAPSHOT_EVERY {
            self.publish_snapshot();
        }
    }

    /// Publishes the peer table to the rest of the node if it changed.
    pub(super) fn publish_snapshot(&mut self) {
        if std::mem::take(&mut self.dirty) {
            self.snapshots.send_replace(Arc::new(self.table.clone()));
            self.published_at = Instant::now();
        }
    }

    /// Drops what per-peer maps hold for peers that no longer need it: the peer book
    /// forgets peers gone for 10 minutes; invoke rate-limit buckets are kept only for
    /// connected peers (a reconnecting peer starts with a full bucket, which costs it a
    /// handshake), advert buckets until they refill; counters at zero and retry
    /// timestamps past their back-off go.
    pub(super) fn prune_peer_maps(&mut self) {
        let forgotten = self.table().evict();
        if forgotten > 0 {
            tracing::debug!(forgotten, "peer book: forgot peers gone for a while");
        }
        let swarm = &self.swarm;
        self.invoke_buckets.retain(|p, _| swarm.is_connected(p));
        // A neighbourhood bucket goes once it has refilled (forgetting it changes
        // nothing), whether or not its peer is still connected.
        let now_ms = now_ms();
        self.advert_buckets
            .retain(|_, b| b.balance(now_ms) < hood::HOOD_BURST);
        self.serving.retain(|_, n| *n > 0);
        let now = Instant::now();
        self.nat
            .relay_tried
            .retain(|_, t| now.duration_since(*t) < REDIAL_AFTER);
        self.discovery
            .dialled
            .retain(|_, t| now.duration_since(*t) < REDIAL_AFTER);
        self.nat
            .reversal_tried
            .retain(|_, t| now.duration_since(*t) < REDIAL_AFTER);
        let tracked = Tracked {
            peer_book: self.table.book.len(),
            invoke_buckets: self.invoke_buckets.len(),
            advert_buckets: self.advert_buckets.len(),
            serving: self.serving.len(),
            fetches: self.fetches.len(),
            retry_timers: self.nat.relay_tried.len() + self.nat.reversal_tried.len(),
            dialled: self.discovery.dialled.len(),
            neighbours: self.hood.machine.neighbours().len(),
            subscribers: self.hood.machine.subscribers().count(),
            candidates: self.hood.machine.candidates(),
            hood_addrs: self.hood.addrs.len(),
            warm_answers: self.hood.warm.index.answers(),
            warm_held: self.hood.warm.index.held(),
            warm_signed: self.hood.warm.signed.len(),
        };
        self.table().tracked = tracked;
        let warm = self.hood.warm.index.stats();
        self.table().warm = warm;
        let bytes = self.bytes;
        self.table().bytes = bytes;
    }
}
