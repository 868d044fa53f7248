//! What this node knows about its peers.

use std::collections::BTreeMap;
use std::time::Instant;

use kith_protocol::capacity::Advert;
use kith_protocol::vivaldi::Coord;
use libp2p::{Multiaddr, PeerId};

/// Weight of a new RTT sample in the moving average.
const RTT_ALPHA: f64 = 0.3;

/// One peer.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// Connected now.
    pub connected: bool,
    /// Last address it was connected at.
    pub addr: Option<Multiaddr>,
    /// Smoothed ping RTT, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Its latest valid advert, and when it arrived.
    pub advert: Option<(Advert, Instant)>,
    /// Times it misbehaved (bad bytes, malformed messages, forged adverts).
    pub penalties: u32,
}

/// All known peers (ordered by peer id, so iteration is deterministic) and this node's
/// own view.
#[derive(Debug, Default)]
pub struct PeerTable {
    /// Known peers.
    pub peers: BTreeMap<PeerId, PeerInfo>,
    /// This node's latest advert.
    pub local: Option<Advert>,
    /// Addresses this node listens on (relayed ones included).
    pub listen_addrs: Vec<Multiaddr>,
    /// Whether peers can reach this node directly.
    pub nat: Reachability,
}

/// What this node knows about its own reachability (AutoNAT, relays, hole punches).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Reachability {
    /// `unknown` until AutoNAT has probed, then `public` (a peer dialled us back) or
    /// `private` (behind a NAT or firewall: reachable only through a relay).
    pub status: &'static str,
    /// The address a peer reached us at, when public.
    pub public_address: Option<String>,
    /// Relays holding a reservation for us, as the addresses peers dial us at.
    pub relayed_addresses: Vec<String>,
    /// This node relays for others (`relay_server`).
    pub relay_server: bool,
    /// Relayed connections replaced by direct ones: by dialling back a peer that came
    /// through a relay, or by hole punching (DCUtR).
    pub direct_upgrades: u64,
    /// Hole punches that failed (the relayed connection is kept).
    pub hole_punches_failed: u64,
    /// Connections through a relay, open now.
    pub relayed_connections: usize,
}

impl PeerTable {
    fn entry(&mut self, peer: PeerId) -> &mut PeerInfo {
        self.peers.entry(peer).or_insert(PeerInfo {
            connected: false,
            addr: None,
            rtt_ms: None,
            advert: None,
            penalties: 0,
        })
    }

    pub(crate) fn on_connected(&mut self, peer: PeerId, addr: Multiaddr) {
        let e = self.entry(peer);
        e.connected = true;
        e.addr = Some(addr);
    }

    pub(crate) fn on_disconnected(&mut self, peer: &PeerId) {
        if let Some(e) = self.peers.get_mut(peer) {
            e.connected = false;
        }
    }

    /// Records an RTT sample; returns the peer's advertised coordinate, if known.
    pub(crate) fn observe_rtt(&mut self, peer: &PeerId, rtt_ms: f64) -> Option<Coord> {
        let e = self.entry(*peer);
        e.rtt_ms = Some(match e.rtt_ms {
            Some(old) => old * (1.0 - RTT_ALPHA) + rtt_ms * RTT_ALPHA,
            None => rtt_ms,
        });
        e.advert.as_ref().map(|(a, _)| a.coord)
    }

    /// Keeps `advert` if it is newer than the one held.
    pub(crate) fn advert(&mut self, peer: PeerId, advert: Advert) {
        let e = self.entry(peer);
        if e.advert
            .as_ref()
            .is_some_and(|(old, _)| old.seq >= advert.seq)
        {
            return;
        }
        e.advert = Some((advert, Instant::now()));
    }

    pub(crate) fn penalise(&mut self, peer: &PeerId) {
        self.entry(*peer).penalties += 1;
    }

    /// Smoothed RTT to `peer`.
    pub fn rtt_ms(&self, peer: &PeerId) -> Option<f64> {
        self.peers.get(peer).and_then(|e| e.rtt_ms)
    }

    /// Connected peers whose latest advert arrived at most `fresh_ms` ago, with their
    /// entry and advert, in peer-id order.
    pub fn usable(&self, fresh_ms: u128) -> impl Iterator<Item = (PeerId, &PeerInfo, &Advert)> {
        self.peers.iter().filter_map(move |(peer, info)| {
            let (advert, at) = info.advert.as_ref()?;
            (info.connected && at.elapsed().as_millis() <= fresh_ms)
                .then_some((*peer, info, advert))
        })
    }

    /// Peers connected now.
    pub fn connected(&self) -> Vec<PeerId> {
        self.peers
            .iter()
            .filter(|(_, e)| e.connected)
            .map(|(p, _)| *p)
            .collect()
    }
}
