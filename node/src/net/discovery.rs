//! Finding peers: bootstrap dials (after the listeners are up, redialled while
//! disconnected), and addresses of peers heard of looked up in the DHT.

use super::*;

/// Bootstrap peers, dials and lookups.
pub(super) struct Discovery {
    /// Bootstrap peers not dialled yet, the listeners still starting, and since when:
    /// dials wait for the listeners so they leave from the listening port, which is
    /// then the port a NAT maps and peers observe (what hole punching needs).
    pub(super) bootstrap: Option<(Vec<Multiaddr>, HashSet<ListenerId>, Instant)>,
    /// The bootstrap peers, redialled while disconnected (after a partition, a
    /// restart of theirs, a network change).
    pub(super) bootstrap_peers: Vec<Multiaddr>,
    /// When the bootstrap peers are next redialled, if disconnected.
    pub(super) bootstrap_redial_at: Instant,
    /// Where we dialled each connected peer (direct connections).
    pub(super) dialled_addrs: HashMap<PeerId, Multiaddr>,
    /// Peers heard of and dialled, and when.
    pub(super) dialled: HashMap<PeerId, Instant>,
    /// Address lookups (Kademlia) for peers to dial.
    pub(super) lookups: HashMap<kad::QueryId, PeerId>,
}

impl Task {
    /// Dials the bootstrap peers once every listener is up (or, with `tick`, once
    /// [`MAINTENANCE`] has passed without them all starting).
    pub(super) fn dial_bootstrap(&mut self, tick: bool) {
        let ready = match &self.discovery.bootstrap {
            Some((_, waiting, since)) => {
                waiting.is_empty() || (tick && since.elapsed() >= MAINTENANCE)
            }
            None => false,
        };
        if !ready {
            return;
        }
        let Some((addrs, _, _)) = self.discovery.bootstrap.take() else {
            return;
        };
        for addr in addrs {
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::warn!(%addr, error = %e, "cannot dial bootstrap peer");
            }
        }
    }

    /// Dials bootstrap peers that are not connected, every [`BOOTSTRAP_REDIAL`].
    pub(super) fn redial_bootstrap(&mut self) {
        let now = Instant::now();
        if self.discovery.bootstrap.is_some() || now < self.discovery.bootstrap_redial_at {
            return;
        }
        self.discovery.bootstrap_redial_at = now + BOOTSTRAP_REDIAL;
        for addr in self.discovery.bootstrap_peers.clone() {
            let Some(peer) = peer_of(&addr) else { continue };
            if self.swarm.is_connected(&peer) {
                continue;
            }
            tracing::debug!(%addr, "redialling a bootstrap peer");
            let opts = DialOpts::peer_id(peer)
                .addresses(vec![addr])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            let _ = self.swarm.dial(opts);
        }
    }

    pub(super) fn forget_listen_addr(&mut self, address: &Multiaddr) {
        let table = self.table();
        table.listen_addrs.retain(|a| a != address);
        let text = address.to_string();
        table.nat.relayed_addresses.retain(|a| *a != text);
    }

    pub(super) fn look_up(&mut self, peer: PeerId) {
        if self.discovery.lookups.len() < MAX_LOOKUPS
            && !self.discovery.lookups.values().any(|p| *p == peer)
        {
            let query = self.swarm.behaviour_mut().kad.get_closest_peers(peer);
            self.discovery.lookups.insert(query, peer);
        }
    }

    /// A Kademlia lookup ended: a random walk's peers become candidate neighbours; a
    /// lookup for a peer heard of dials the addresses it found.
    pub(super) fn looked_up(&mut self, query: kad::QueryId, result: kad::GetClosestPeersResult) {
        if self.hood.walks.remove(&query) {
            let peers = match result {
                Ok(ok) => ok.peers,
                Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
            };
            self.walked(peers);
            return;
        }
        let Some(peer) = self.discovery.lookups.remove(&query) else {
            return;
        };
        let peers = match result {
            Ok(ok) => ok.peers,
            Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
        };
        let Some(found) = peers.into_iter().find(|p| p.peer_id == peer) else {
            tracing::debug!(%peer, "no addresses found for a peer heard of");
            return;
        };
        // A remote peer's loopback addresses lead back to us unless every node is on
        // this host (then we listen on loopback only).
        let all_local = self.swarm.listeners().all(is_loopback);
        let addrs: Vec<Multiaddr> = found
            .addrs
            .into_iter()
            .filter(|a| all_local || !is_loopback(a))
            .collect();
        if self.swarm.is_connected(&peer) || addrs.is_empty() {
            return;
        }
        tracing::debug!(%peer, ?addrs, "dialling a peer heard of");
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(%peer, error = %e, "cannot dial a peer heard of");
        }
    }
}
