//! Reading multiaddrs: whose they are, whether they go through a relay or stay on
//! this host.

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

/// Why this build cannot use `addr`, if it cannot: a QUIC address in a build without
/// the `quic` feature (the small build speaks TCP only).
pub(super) fn unsupported(addr: &Multiaddr) -> Option<&'static str> {
    let quic = addr
        .iter()
        .any(|p| matches!(p, Protocol::QuicV1 | Protocol::Quic));
    (quic && !cfg!(feature = "quic")).then_some(
        "this kith is built without QUIC (the small build, no `quic` feature); use a /tcp/ address",
    )
}

/// Why a name in a configured address could not be resolved.
#[derive(Debug, thiserror::Error)]
pub(super) enum ResolveError {
    /// The system resolver failed or found no address of the family asked for.
    #[error("cannot resolve {name}: {why}")]
    Lookup {
        /// The name.
        name: String,
        /// What the resolver said.
        why: String,
    },
    /// A form this build cannot resolve.
    #[error("{addr}: {why}")]
    Unsupported {
        /// The address.
        addr: Multiaddr,
        /// Why.
        why: &'static str,
    },
}

/// `addrs` with every `/dns/`, `/dns4/` or `/dns6/` name replaced by an address the
/// system resolver (getaddrinfo) gives for it, for a build without libp2p's DNS
/// transport. Called once at start: a name that moves later needs a restart there.
/// Addresses without names come back unchanged; `/dnsaddr/` is refused.
///
/// # Errors
/// A name that does not resolve, or a `/dnsaddr/` address.
pub(super) fn resolve_names(addrs: &[Multiaddr]) -> Result<Vec<Multiaddr>, ResolveError> {
    use std::net::{IpAddr, ToSocketAddrs};
    addrs
        .iter()
        .map(|addr| {
            let mut out = Multiaddr::empty();
            let mut parts = addr.iter().peekable();
            while let Some(part) = parts.next() {
                let (name, want_v4, want_v6) = match &part {
                    Protocol::Dns(n) => (n.to_string(), true, true),
                    Protocol::Dns4(n) => (n.to_string(), true, false),
                    Protocol::Dns6(n) => (n.to_string(), false, true),
                    Protocol::Dnsaddr(_) => {
                        return Err(ResolveError::Unsupported {
                            addr: addr.clone(),
                            why: "this kith is built without the `dns` feature (the small \
                                  build): /dnsaddr/ is not resolved; give /dns4/, /ip4/ or \
                                  /ip6/ addresses",
                        });
                    }
                    _ => {
                        out.push(part);
                        continue;
                    }
                };
                // getaddrinfo wants a port; the one that follows, if any, else 0.
                let port = match parts.peek() {
                    Some(Protocol::Tcp(p) | Protocol::Udp(p)) => *p,
                    _ => 0,
                };
                let lookup = |why: String| ResolveError::Lookup {
                    name: name.clone(),
                    why,
                };
                let ip = (name.as_str(), port)
                    .to_socket_addrs()
                    .map_err(|e| lookup(e.to_string()))?
                    .map(|sa| sa.ip())
                    .find(|ip| match ip {
                        IpAddr::V4(_) => want_v4,
                        IpAddr::V6(_) => want_v6,
                    })
                    .ok_or_else(|| lookup("no address of that family".into()))?;
                out.push(match ip {
                    IpAddr::V4(v4) => Protocol::Ip4(v4),
                    IpAddr::V6(v6) => Protocol::Ip6(v6),
                });
            }
            Ok(out)
        })
        .collect()
}

/// The last `/p2p/<id>` of an address (for a relayed address, the destination).
pub(super) fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter()
        .filter_map(|p| match p {
            Protocol::P2p(id) => Some(id),
            _ => None,
        })
        .last()
}

/// Whether an address goes through a relay.
pub(super) fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// Whether an address is a loopback one (useless to tell a peer elsewhere).
pub(super) fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

/// `addr` without any `/p2p/<id>` part.
pub(super) fn without_peer(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ma(s: &str) -> Multiaddr {
        s.parse().expect("a multiaddr")
    }

    #[test]
    fn names_resolve_to_addresses_of_the_family_asked_for() {
        let id = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
        let got = resolve_names(&[
            ma(&format!("/dns4/localhost/tcp/7071/p2p/{id}")),
            ma("/ip4/10.0.0.1/tcp/7071"),
        ])
        .expect("localhost resolves");
        assert_eq!(
            got,
            [
                ma(&format!("/ip4/127.0.0.1/tcp/7071/p2p/{id}")),
                ma("/ip4/10.0.0.1/tcp/7071"),
            ]
        );
    }

    #[test]
    fn dnsaddr_is_refused_naming_the_build() {
        let err = resolve_names(&[ma("/dnsaddr/bootstrap.example.org")])
            .expect_err("no dnsaddr resolution");
        assert!(err.to_string().contains("`dns` feature"), "{err}");
    }
}
