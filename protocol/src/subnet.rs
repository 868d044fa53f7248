//! Where peers come from, by network, to bound Sybils: identities are free, addresses
//! are not, so one host (or one provider's block) bringing many peer ids is limited by
//! the block they share.
//!
//! - A **subnet** is an IPv4 /24 or an IPv6 /48 (an IPv4-mapped IPv6 address counts as
//!   IPv4). Loopback has none: a machine's own nodes (tests, benchmarks, several nodes
//!   on one box) are not strangers.
//! - A node holds connections from at most [`MAX_PEERS_PER_SUBNET`] distinct peers of
//!   one subnet (configurable: `max_peers_per_subnet`); a further peer's connection is
//!   closed as it is established.
//! - Placement considers at most [`MAX_CANDIDATES_PER_SUBNET`] candidates of one
//!   subnet for a call ([`cap_candidates`]): the best of them by cost, so a host with a
//!   hundred identities competes as four.

use crate::placement::Candidate;

/// Peers of one subnet a node keeps connections with, by default.
pub const MAX_PEERS_PER_SUBNET: usize = 16;

/// Candidates of one subnet placement considers for a call.
pub const MAX_CANDIDATES_PER_SUBNET: usize = 4;

/// An IPv4 /24 or IPv6 /48.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subnet {
    /// The first three octets.
    V4([u8; 3]),
    /// The first six bytes.
    V6([u8; 6]),
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::V4([a, b, c]) => write!(f, "{a}.{b}.{c}.0/24"),
            Self::V6(b) => write!(
                f,
                "{:02x}{:02x}:{:02x}{:02x}:{:02x}{:02x}::/48",
                b[0], b[1], b[2], b[3], b[4], b[5]
            ),
        }
    }
}

/// An address, as its bytes (the driver reads them from wherever it has them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ip {
    /// IPv4.
    V4([u8; 4]),
    /// IPv6.
    V6([u8; 16]),
}

/// The subnet of `ip`; `None` for loopback and unspecified addresses.
pub fn of(ip: Ip) -> Option<Subnet> {
    let ip = match ip {
        // IPv4-mapped IPv6 (::ffff:a.b.c.d) is IPv4.
        Ip::V6(b) if b[..10] == [0; 10] && b[10..12] == [0xff, 0xff] => {
            Ip::V4([b[12], b[13], b[14], b[15]])
        }
        other => other,
    };
    match ip {
        Ip::V4(o) if o[0] == 127 || o == [0; 4] => None,
        Ip::V4(o) => Some(Subnet::V4([o[0], o[1], o[2]])),
        Ip::V6(o) if o[..15] == [0; 15] && (o[15] == 1 || o[15] == 0) => None,
        Ip::V6(o) => Some(Subnet::V6([o[0], o[1], o[2], o[3], o[4], o[5]])),
    }
}

/// `ranked` (placement's order) keeping at most `per_subnet` candidates of any one
/// subnet (`subnet` of each peer; `None`, such as this node or a loopback peer, is
/// never capped). Order is kept.
pub fn cap_candidates<P>(
    ranked: Vec<Candidate<P>>,
    per_subnet: usize,
    subnet: impl Fn(&P) -> Option<Subnet>,
) -> Vec<Candidate<P>> {
    let mut seen: Vec<(Subnet, usize)> = Vec::new();
    ranked
        .into_iter()
        .filter(|c| {
            let Some(s) = (!c.local).then(|| subnet(&c.peer)).flatten() else {
                return true;
            };
            match seen.iter_mut().find(|(k, _)| *k == s) {
                Some((_, n)) if *n >= per_subnet => false,
                Some((_, n)) => {
                    *n += 1;
                    true
                }
                None => {
                    seen.push((s, 1));
                    true
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(head: [u8; 6], tail: [u8; 10]) -> Ip {
        let mut b = [0; 16];
        b[..6].copy_from_slice(&head);
        b[6..].copy_from_slice(&tail);
        Ip::V6(b)
    }

    #[test]
    fn subnets_are_v4_24_and_v6_48_and_loopback_has_none() {
        let a = of(Ip::V4([203, 0, 113, 7]));
        assert_eq!(a, Some(Subnet::V4([203, 0, 113])));
        assert_eq!(a, of(Ip::V4([203, 0, 113, 250])));
        assert_ne!(a, of(Ip::V4([203, 0, 114, 7])));
        // ::ffff:203.0.113.9 is IPv4.
        let mapped = v6([0; 6], [0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 9]);
        assert_eq!(of(mapped), a);
        // 2001:db8:aa:1::1 and 2001:db8:aa:ffff::2 share a /48.
        let head = [0x20, 0x01, 0x0d, 0xb8, 0x00, 0xaa];
        assert_eq!(
            of(v6(head, [0, 1, 0, 0, 0, 0, 0, 0, 0, 1])),
            of(v6(head, [0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 2]))
        );
        assert_eq!(of(Ip::V4([127, 0, 0, 1])), None);
        assert_eq!(of(v6([0; 6], [0, 0, 0, 0, 0, 0, 0, 0, 0, 1])), None);
        assert_eq!(a.map(|s| s.to_string()).as_deref(), Some("203.0.113.0/24"));
    }
}
