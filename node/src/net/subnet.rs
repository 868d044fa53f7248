//! Sybil bounds by network (`kith_protocol::subnet`): at most `max_peers_per_subnet`
//! distinct peers of one IPv4 /24 or IPv6 /48 connected at once, and the subnet of a
//! peer's address for placement's per-subnet candidate cap.

use super::*;

use kith_protocol::subnet::{self, Ip, Subnet};
use libp2p::multiaddr::Protocol;

/// The subnet a peer connected from: its address's first IP, unless the connection is
/// relayed (then the IP is the relay's, shared by every peer behind it: no subnet).
pub fn subnet_of(addr: &Multiaddr) -> Option<Subnet> {
    if addr.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
        return None;
    }
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => subnet::of(Ip::V4(ip.octets())),
        Protocol::Ip6(ip) => subnet::of(Ip::V6(ip.octets())),
        _ => None,
    })
}

impl Task {
    /// Whether a new connection of `peer` from `addr` would bring more distinct peers
    /// of its subnet than the cap allows (a peer already connected always fits).
    pub(super) fn subnet_full(&mut self, peer: PeerId, addr: &Multiaddr) -> bool {
        let Some(net) = subnet_of(addr) else {
            return false;
        };
        let book = &self.table.book;
        if book.get(&peer).is_some_and(|e| e.connected) {
            return false;
        }
        let max = self.config.max_peers_per_subnet;
        let others = book
            .iter()
            .filter(|(p, e)| {
                **p != peer && e.connected && e.extra.as_ref().and_then(subnet_of) == Some(net)
            })
            .count();
        if others < max {
            return false;
        }
        tracing::info!(%peer, subnet = %net, limit = max, "connection closed: max_peers_per_subnet peers of its subnet are connected");
        true
    }
}
