//! Reachability behind NATs: relay reservations (pinned and automatic), dial-backs and
//! hole punches that replace relayed connections with direct ones.

use super::*;

/// What the task knows and does about reachability.
#[derive(Default)]
pub(super) struct NatState {
    /// AutoNAT's verdict: peers cannot dial us.
    pub(super) nat_private: bool,
    /// Connected relay servers, with an address to reach each.
    pub(super) relay_candidates: HashMap<PeerId, Multiaddr>,
    /// Reservations made because we are private: listener → relay.
    pub(super) auto_relays: HashMap<ListenerId, PeerId>,
    /// When a reservation on a relay was last attempted.
    pub(super) relay_tried: HashMap<PeerId, Instant>,
    /// Relays configured by the operator.
    pub(super) pinned_relays: Vec<PinnedRelay>,
    /// Open relayed connections per peer (closed once a direct one exists and no
    /// request is in flight with the peer).
    pub(super) relayed: HashMap<PeerId, Vec<ConnectionId>>,
    /// Open direct connections per peer, and since when the peer has had one.
    pub(super) direct: HashMap<PeerId, (usize, Instant)>,
    /// Direct dials to peers that reached us through a relay, and when each peer was
    /// last tried.
    pub(super) reversals: HashMap<ConnectionId, PeerId>,
    /// When each peer was last dialled back.
    pub(super) reversal_tried: HashMap<PeerId, Instant>,
}

impl Task {
    pub(super) fn count_relayed(&mut self) {
        let open = self.nat.relayed.values().map(Vec::len).sum();
        self.table().nat.relayed_connections = open;
    }

    /// A connected peer offers relay circuits: remember how to reach it.
    pub(super) fn relay_candidate(&mut self, peer: PeerId, listen: &[Multiaddr]) {
        // The address we reached it at, if we dialled it; else one it listens on that
        // is neither relayed nor loopback.
        let addr = self
            .discovery
            .dialled_addrs
            .get(&peer)
            .cloned()
            .or_else(|| {
                listen
                    .iter()
                    .find(|a| !is_relayed(a) && !is_loopback(a))
                    .cloned()
            });
        if let Some(addr) = addr {
            self.nat.relay_candidates.insert(peer, without_peer(&addr));
            self.maintain_relays();
        }
    }

    /// Keeps reservations where they are needed: on every configured relay, and, while
    /// AutoNAT says we are private, on up to [`MAX_AUTO_RELAYS`] connected relays.
    pub(super) fn maintain_relays(&mut self) {
        let now = Instant::now();
        for i in 0..self.nat.pinned_relays.len() {
            let pinned = &self.nat.pinned_relays[i];
            if pinned.listener.is_some() || pinned.retry_at > now {
                continue;
            }
            let circuit = pinned.circuit.clone();
            match self.swarm.listen_on(circuit.clone()) {
                Ok(id) => self.nat.pinned_relays[i].listener = Some(id),
                Err(e) => {
                    tracing::warn!(relay = %circuit, error = %e, "cannot reserve on the relay");
                    self.nat.pinned_relays[i].retry_at = now + REDIAL_AFTER;
                }
            }
        }
        if !self.nat.nat_private {
            // Reachable directly: give automatic reservations back.
            for (listener, relay) in self.nat.auto_relays.drain() {
                tracing::info!(%relay, "reachable directly; releasing the relay reservation");
                self.swarm.remove_listener(listener);
            }
            return;
        }
        let mut candidates: Vec<(PeerId, Multiaddr)> = self
            .nat
            .relay_candidates
            .iter()
            .filter(|(p, _)| {
                !self.nat.auto_relays.values().any(|r| r == *p)
                    && self
                        .nat
                        .relay_tried
                        .get(p)
                        .is_none_or(|t| now.duration_since(*t) >= REDIAL_AFTER)
            })
            .map(|(p, a)| (*p, a.clone()))
            .collect();
        // Nearest relays first.
        {
            let table = &self.table;
            candidates.sort_by(|a, b| {
                let rtt = |p: &PeerId| table.rtt_ms(p).unwrap_or(f64::MAX);
                rtt(&a.0).total_cmp(&rtt(&b.0)).then(a.0.cmp(&b.0))
            });
        }
        for (relay, addr) in candidates {
            if self.nat.auto_relays.len() >= MAX_AUTO_RELAYS {
                break;
            }
            self.nat.relay_tried.insert(relay, now);
            let circuit = addr.with(Protocol::P2p(relay)).with(Protocol::P2pCircuit);
            match self.swarm.listen_on(circuit.clone()) {
                Ok(listener) => {
                    tracing::info!(%relay, "behind a NAT: reserving a slot on a relay");
                    self.nat.auto_relays.insert(listener, relay);
                }
                Err(e) => tracing::warn!(%circuit, error = %e, "cannot reserve on the relay"),
            }
        }
    }

    /// A hole punch ended: on success, close the relayed connections to the peer so
    /// requests go direct.
    pub(super) fn hole_punched(
        &mut self,
        peer: PeerId,
        result: Result<ConnectionId, dcutr::Error>,
    ) {
        match result {
            Ok(_) => {
                tracing::info!(%peer, "hole punched: direct connection");
                self.table().nat.direct_upgrades += 1;
                self.drop_relayed(peer);
            }
            Err(e) => {
                tracing::info!(%peer, error = %e, "hole punch failed; staying on the relay");
                self.table().nat.hole_punches_failed += 1;
            }
        }
    }

    /// `peer` reached us through a relay and we have no direct connection: dial it
    /// back directly. When it is publicly reachable (the usual case: the caller is a
    /// well-connected node and we sit behind a home NAT) this works at once, through the
    /// NAT's outbound mapping; when it is not, DCUtR's hole punch is the way.
    pub(super) fn dial_back(&mut self, peer: PeerId, listen: &[Multiaddr]) {
        if !self.nat.relayed.contains_key(&peer) || self.nat.direct.contains_key(&peer) {
            return;
        }
        let now = Instant::now();
        if self
            .nat
            .reversal_tried
            .get(&peer)
            .is_some_and(|t| now.duration_since(*t) < REDIAL_AFTER)
        {
            return;
        }
        let addrs: Vec<Multiaddr> = listen
            .iter()
            .filter(|a| !is_relayed(a) && !is_loopback(a))
            .cloned()
            .collect();
        if addrs.is_empty() {
            return;
        }
        self.nat.reversal_tried.insert(peer, now);
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::Always)
            .build();
        let id = opts.connection_id();
        if self.swarm.dial(opts).is_ok() {
            self.nat.reversals.insert(id, peer);
        }
    }

    /// Closes the relayed connections to `peer` once a direct one exists and nothing
    /// is in flight with it (requests go round-robin over a peer's connections, so a
    /// relayed one left open would carry half of them; one closed under a request would
    /// fail it).
    pub(super) fn drop_relayed(&mut self, peer: PeerId) {
        let direct_for_a_while = self
            .nat
            .direct
            .get(&peer)
            .is_some_and(|(_, since)| since.elapsed() >= RELAYED_GRACE);
        if !direct_for_a_while || !self.nat.relayed.contains_key(&peer) {
            return;
        }
        let busy = self.serving.get(&peer).is_some_and(|n| *n > 0)
            || self.invoke_requests.values().any(|(p, _)| *p == peer)
            || self.fetches.asking(&peer)
            || self.alias_requests.values().any(|p| *p == peer)
            || self.state_requests.values().any(|(p, _)| *p == peer);
        if busy {
            return;
        }
        for relayed in self.nat.relayed.get(&peer).cloned().unwrap_or_default() {
            tracing::debug!(%peer, "closing the relayed connection: a direct one exists");
            self.swarm.close_connection(relayed);
        }
    }
}

/// A relay the operator configured (`relays`): a reservation is kept on it.
pub(super) struct PinnedRelay {
    /// `…/p2p/<relay>/p2p-circuit`.
    pub(super) circuit: Multiaddr,
    /// The listener of its reservation, while one is up.
    pub(super) listener: Option<ListenerId>,
    /// When to try again after a failure.
    pub(super) retry_at: Instant,
}
