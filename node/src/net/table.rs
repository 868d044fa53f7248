//! What this node knows about its peers: protocol's peer book (adverts, freshness,
//! RTT, decaying penalties, eviction), keyed by libp2p peer id with the address each
//! is connected at, and this node's own view.

use kith_protocol::capacity::Advert;
use kith_protocol::peerbook::{self, AdvertVerdict, PeerBook};
use kith_protocol::vivaldi::Coord;
use libp2p::{Multiaddr, PeerId};

use crate::clock::now_ms;

/// One peer, as the book holds it; `extra` is the address it was last connected at.
pub type PeerInfo = peerbook::Entry<Option<Multiaddr>>;

/// The peer book and this node's own view.
#[derive(Debug, Clone)]
pub struct PeerTable {
    /// Known peers (ordered by peer id, so iteration is deterministic).
    pub book: PeerBook<PeerId, Option<Multiaddr>>,
    /// This node's latest advert.
    pub local: Option<Advert>,
    /// Addresses this node listens on (relayed ones included).
    pub listen_addrs: Vec<Multiaddr>,
    /// Whether peers can reach this node directly.
    pub nat: Reachability,
    /// How many entries the network task's per-peer maps hold (updated every second).
    pub tracked: Tracked,
    /// Bytes of kith's own protocols sent and received (updated every second).
    pub bytes: NetBytes,
    /// The warm index's counters: questions, held calls (updated every second).
    pub warm: kith_protocol::warm::Stats,
}

/// One of kith's own protocols, for byte counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Capacity adverts (`/kith/hood/1`: whole adverts and load updates).
    Adverts,
    /// The rest of `/kith/hood/1`: subscriptions and peer exchange.
    Neighbourhood,
    /// Alias records (gossip).
    AliasRecords,
    /// `/kith/fetch/1`.
    Fetch,
    /// `/kith/invoke/1`.
    Invoke,
    /// `/kith/sync/1`.
    Sync,
    /// `/kith/aliases/1`.
    AliasSync,
}

impl Proto {
    /// Every protocol, in label order.
    pub const ALL: [Proto; 7] = [
        Proto::Adverts,
        Proto::Neighbourhood,
        Proto::AliasRecords,
        Proto::Fetch,
        Proto::Invoke,
        Proto::Sync,
        Proto::AliasSync,
    ];

    /// Its label in `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Adverts => "adverts",
            Self::Neighbourhood => "neighbourhood",
            Self::AliasRecords => "alias_records",
            Self::Fetch => "fetch",
            Self::Invoke => "invoke",
            Self::Sync => "sync",
            Self::AliasSync => "alias_sync",
        }
    }
}

/// Message bytes (payloads, without libp2p's framing) per protocol and direction.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetBytes {
    sent: [u64; 8],
    received: [u64; 8],
}

impl NetBytes {
    /// Counts `n` bytes sent on `proto`.
    pub fn sent(&mut self, proto: Proto, n: usize) {
        self.sent[proto as usize] = self.sent[proto as usize].saturating_add(n as u64);
    }

    /// Counts `n` bytes received on `proto`.
    pub fn received(&mut self, proto: Proto, n: usize) {
        self.received[proto as usize] = self.received[proto as usize].saturating_add(n as u64);
    }

    /// (protocol, sent, received), for every protocol.
    pub fn totals(&self) -> impl Iterator<Item = (Proto, u64, u64)> + '_ {
        Proto::ALL
            .iter()
            .map(|p| (*p, self.sent[*p as usize], self.received[*p as usize]))
    }
}

/// Entries in the network task's per-peer maps, for `/metrics`: each has a cap or a
/// pruning rule (`docs/security.md`), and this shows them holding.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tracked {
    /// Peers in the peer book.
    pub peer_book: usize,
    /// Invoke rate-limit buckets (connected peers only).
    pub invoke_buckets: usize,
    /// Advert rate-limit buckets (until refilled).
    pub advert_buckets: usize,
    /// Peers with requests being answered.
    pub serving: usize,
    /// Module fetches in progress.
    pub fetches: usize,
    /// Relay and dial-back retry timestamps.
    pub retry_timers: usize,
    /// Peers dialled after hearing of them.
    pub dialled: usize,
    /// Neighbours (peers whose adverts this node takes).
    pub neighbours: usize,
    /// Subscribers (peers this node sends its adverts to).
    pub subscribers: usize,
    /// Candidate neighbours held.
    pub candidates: usize,
    /// Addresses held for the neighbourhood's dials.
    pub hood_addrs: usize,
    /// Warm answers cached.
    pub warm_answers: usize,
    /// Calls held for a warm answer.
    pub warm_held: usize,
    /// Signed adverts of neighbours kept for warm answers.
    pub warm_signed: usize,
}

impl Tracked {
    /// Each count with its label.
    pub fn labelled(&self) -> [(&'static str, usize); 14] {
        [
            ("peer_book", self.peer_book),
            ("invoke_buckets", self.invoke_buckets),
            ("advert_buckets", self.advert_buckets),
            ("serving", self.serving),
            ("fetches", self.fetches),
            ("retry_timers", self.retry_timers),
            ("dialled", self.dialled),
            ("neighbours", self.neighbours),
            ("subscribers", self.subscribers),
            ("candidates", self.candidates),
            ("hood_addrs", self.hood_addrs),
            ("warm_answers", self.warm_answers),
            ("warm_held", self.warm_held),
            ("warm_signed", self.warm_signed),
        ]
    }
}

impl Default for PeerTable {
    fn default() -> Self {
        Self::new(peerbook::Config::default().max_peers)
    }
}

impl PeerTable {
    /// An empty table whose book holds at most `max_peers` peers.
    pub(crate) fn new(max_peers: usize) -> Self {
        Self {
            book: PeerBook::new(peerbook::Config {
                max_peers,
                ..peerbook::Config::default()
            }),
            local: None,
            listen_addrs: Vec::new(),
            nat: Reachability::default(),
            tracked: Tracked::default(),
            bytes: NetBytes::default(),
            warm: kith_protocol::warm::Stats::default(),
        }
    }
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
    pub(crate) fn on_connected(&mut self, peer: PeerId, addr: Multiaddr) {
        match self.book.on_connected(now_ms(), peer) {
            Some(e) => e.extra = Some(addr),
            None => tracing::debug!(%peer, "peer book full of connected peers; not recorded"),
        }
    }

    pub(crate) fn on_disconnected(&mut self, peer: &PeerId) {
        self.book.on_disconnected(now_ms(), peer);
    }

    /// Records an RTT sample; returns the peer's advertised coordinate, if known.
    pub(crate) fn observe_rtt(&mut self, peer: &PeerId, rtt_ms: f64) -> Option<Coord> {
        self.book.on_rtt(now_ms(), *peer, rtt_ms)
    }

    /// Keeps `advert` if it is newer than the one held.
    pub(crate) fn advert(&mut self, peer: PeerId, advert: Advert) {
        if self.book.on_advert(now_ms(), peer, advert) == AdvertVerdict::Full {
            tracing::debug!(%peer, "peer book full of connected peers; advert not recorded");
        }
    }

    /// Counts one misbehaviour of `peer` (a decaying penalty placement sees).
    pub(crate) fn penalise(&mut self, peer: &PeerId) {
        self.book.penalise(now_ms(), *peer, 1.0);
    }

    /// `peer`'s decayed penalty now.
    pub fn penalty(&self, peer: &PeerId) -> f64 {
        self.book.penalty(now_ms(), peer)
    }

    /// Smoothed RTT to `peer`.
    pub fn rtt_ms(&self, peer: &PeerId) -> Option<f64> {
        self.book.rtt_ms(peer)
    }

    /// Connected peers with a fresh advert, with their entry and advert, in peer-id
    /// order.
    pub fn usable(&self) -> impl Iterator<Item = (PeerId, &PeerInfo, &Advert)> {
        self.book.usable(now_ms())
    }

    /// Peers connected now.
    pub fn connected(&self) -> Vec<PeerId> {
        self.book.connected()
    }

    /// Forgets peers gone for a while; returns how many.
    pub(crate) fn evict(&mut self) -> usize {
        self.book.evict(now_ms()).len()
    }
}
