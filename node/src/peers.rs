//! The peers this node knows, as the API and `kith peers` show them.

use serde::Serialize;

use crate::clock::now_ms;
use crate::node::Node;

impl Node {
    /// Addresses the peer network listens on.
    pub fn listen_addrs(&self) -> Vec<String> {
        self.net.get().map_or_else(Vec::new, |net| {
            let table = net.peers();
            table.listen_addrs.iter().map(ToString::to_string).collect()
        })
    }

    /// What the network task knows about this node's reachability.
    pub fn reachability(&self) -> Option<crate::net::Reachability> {
        self.net.get().map(|net| net.peers().nat.clone())
    }

    /// Number of peers connected now.
    pub fn peers_connected(&self) -> usize {
        self.net
            .get()
            .map_or(0, |net| net.peers().connected().len())
    }

    /// Peers as shown by `kith peers`.
    pub fn peers(&self) -> Vec<PeerSummary> {
        let Some(net) = self.net.get() else {
            return Vec::new();
        };
        let table = net.peers();
        let now = now_ms();
        table
            .book
            .iter()
            .map(|(peer, info)| {
                let advert = info.advert().map(|(a, at)| AdvertSummary {
                    device: a.device,
                    cpu_score: a.cpu_score,
                    memory_bytes: a.memory_bytes,
                    free_slots: a.max_concurrent.saturating_sub(a.running),
                    max_concurrent: a.max_concurrent,
                    queued: a.queued,
                    age_ms: now.saturating_sub(at),
                });
                PeerSummary {
                    peer_id: peer.to_string(),
                    connected: info.connected,
                    address: info.extra.as_ref().map(ToString::to_string),
                    rtt_ms: info.rtt_ms,
                    penalties: info.penalties,
                    penalty: table.penalty(peer),
                    advert,
                }
            })
            .collect()
    }
}

/// A peer, for `GET /v1/peers`.
#[derive(Debug, Clone, Serialize)]
pub struct PeerSummary {
    /// Its peer id.
    pub peer_id: String,
    /// Connected now.
    pub connected: bool,
    /// Address of the connection.
    pub address: Option<String>,
    /// Smoothed ping RTT, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Times it misbehaved.
    pub penalties: u32,
    /// Its penalty now (decays by half every minute; placement adds it to its cost).
    pub penalty: f64,
    /// Its latest advert.
    pub advert: Option<AdvertSummary>,
}

/// What a peer advertises, for `GET /v1/peers`.
#[derive(Debug, Clone, Serialize)]
pub struct AdvertSummary {
    /// Device class.
    pub device: kith_protocol::capacity::DeviceClass,
    /// CPU speed, fuel per millisecond.
    pub cpu_score: u32,
    /// Memory offered to one call.
    pub memory_bytes: u64,
    /// Call slots free.
    pub free_slots: u16,
    /// Call slots in all.
    pub max_concurrent: u16,
    /// Calls queued.
    pub queued: u16,
    /// Age of the advert, in milliseconds.
    pub age_ms: u64,
}
