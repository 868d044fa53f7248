//! The libp2p swarm: transports and behaviours, configured.

use super::*;

use kith_protocol::neighbourhood::wire as hood_wire;

/// Every behaviour the node runs.
#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    /// Connection caps: total, incoming, per peer, pending (`connection_limits`).
    pub(super) limits: connection_limits::Behaviour,
    pub(super) identify: identify::Behaviour,
    pub(super) ping: ping::Behaviour,
    pub(super) kad: kad::Behaviour<kad::store::MemoryStore>,
    pub(super) gossipsub: gossipsub::Behaviour,
    /// `/kith/hood/1`: the neighbourhood's messages.
    pub(super) hood: request_response::Behaviour<codec::Frames>,
    pub(super) mdns: Toggle<mdns::tokio::Behaviour>,
    pub(super) fetch: request_response::Behaviour<codec::Frames>,
    pub(super) invoke: request_response::Behaviour<codec::Frames>,
    pub(super) aliases: request_response::Behaviour<codec::Frames>,
    pub(super) state: request_response::Behaviour<codec::Frames>,
    pub(super) autonat: autonat::Behaviour,
    pub(super) relay_client: relay::client::Behaviour,
    pub(super) relay_server: Toggle<relay::Behaviour>,
    pub(super) dcutr: dcutr::Behaviour,
}

/// Connections one peer may hold with this node at once (a direct one, a relayed one
/// while hole punching replaces it, and one spare for a simultaneous dial).
pub const MAX_CONNECTIONS_PER_PEER: u32 = 3;
/// Incoming connections still in their handshake, at most.
pub const MAX_PENDING_INCOMING: u32 = 32;
/// Connections kept free of incoming ones for this node's own dials (bootstrap peers,
/// relays, peers it heard of), so a flood of incoming connections cannot lock it out.
pub const RESERVED_OUTGOING: u32 = 8;
/// How often each connection is pinged. A ping measures the RTT the neighbourhood
/// and placement rank peers by (the first comes as the connection opens, so a probe
/// does not wait for this) and feeds the network coordinates; each one also wakes
/// both ends, and both ends ping: at 2 s, a node with 30 connections handled 30 pings
/// a second while idle. RTTs between devices that stay put move slower than this.
pub(crate) const PING_INTERVAL: Duration = Duration::from_secs(15);

/// The connection caps for `max_connections` established connections in all.
fn connection_limits(max_connections: u32) -> connection_limits::ConnectionLimits {
    connection_limits::ConnectionLimits::default()
        .with_max_established(Some(max_connections))
        .with_max_established_incoming(Some(
            max_connections.saturating_sub(RESERVED_OUTGOING).max(1),
        ))
        .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
        .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
}

/// Largest gossip RPC, bytes: room for a few of the largest message (an alias record,
/// `alias::MAX_RECORD`) and for IHAVE/IWANT lists of [`GOSSIP_MAX_IHAVE`] ids.
pub(super) const GOSSIP_MAX_TRANSMIT: usize = 64 * 1024;
/// Most message ids in one IHAVE (20 bytes each, so 1000 fit in [`GOSSIP_MAX_TRANSMIT`]).
pub(super) const GOSSIP_MAX_IHAVE: usize = 1000;

pub(super) fn build_swarm(key: &Keypair, config: &NetConfig) -> anyhow::Result<Swarm<Behaviour>> {
    let peer_id = key.public().to_peer_id();
    let frames = |max_request: u64, max_response: u64| codec::Frames {
        max_request,
        max_response,
    };
    let rr_config =
        request_response::Config::default().with_request_timeout(config.request_timeout);
    let fetch_limits = frames(64, u64::from(wire::FETCH_CHUNK) + wire::OVERHEAD);
    let invoke_limits = frames(
        config.max_input_bytes + wire::OVERHEAD,
        config.max_output_bytes + wire::OVERHEAD,
    );
    let mdns_enabled = config.mdns;
    let relay_server = config.relay_server;
    let autonat_config = autonat::Config {
        boot_delay: config.autonat_delay,
        retry_interval: Duration::from_secs(30),
        throttle_server_period: Duration::from_secs(15),
        // Home networks and test beds use private ranges; what counts is whether a
        // peer can dial us back, not the kind of address.
        only_global_ips: false,
        ..autonat::Config::default()
    };
    let builder = libp2p::SwarmBuilder::with_existing_identity(key.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?;
    // Without the `quic` feature (the small build) the node speaks TCP only.
    #[cfg(feature = "quic")]
    let builder = builder.with_quic();
    // Without the `dns` feature (the small build) names in configured addresses are
    // resolved once at start by the system resolver (`addr::resolve_names`).
    #[cfg(feature = "dns")]
    let builder = builder.with_dns()?;
    let swarm = builder
        .with_relay_client(noise::Config::new, yamux::Config::default)?
        .with_behaviour(|key, relay_client| {
            let gossip_config = gossipsub::ConfigBuilder::default()
                .heartbeat_interval(Duration::from_millis(500))
                .validation_mode(gossipsub::ValidationMode::Strict)
                // Nothing is forwarded before the task has checked it.
                .validate_messages()
                // Content-addressed ids: the same bytes relayed by several peers are
                // one message.
                .message_id_fn(|m: &gossipsub::Message| {
                    gossipsub::MessageId::from(&blake3::hash(&m.data).as_bytes()[..20])
                })
                // One RPC carries messages and control traffic: the largest message
                // (an alias record) several times over, and IHAVE/IWANT lists of at
                // most GOSSIP_MAX_IHAVE ids of 20 bytes.
                .max_transmit_size(GOSSIP_MAX_TRANSMIT)
                .max_ihave_length(GOSSIP_MAX_IHAVE)
                .max_messages_per_rpc(Some(64))
                .build()
                .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))?;
            let gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossip_config,
            )
            .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?;
            let mut kad_config = kad::Config::new(StreamProtocol::new("/kith/kad/1"));
            kad_config.set_query_timeout(Duration::from_secs(5));
            let mut kad = kad::Behaviour::with_config(
                peer_id,
                kad::store::MemoryStore::new(peer_id),
                kad_config,
            );
            kad.set_mode(Some(kad::Mode::Server));
            let mdns = if mdns_enabled {
                Some(mdns::tokio::Behaviour::new(
                    mdns::Config::default(),
                    peer_id,
                )?)
            } else {
                None
            };
            // Generous circuits: a relayed connection carries calls and module fetches
            // until hole punching replaces it (and for good when it cannot).
            let relay_server = relay_server.then(|| {
                relay::Behaviour::new(
                    peer_id,
                    relay::Config {
                        max_reservations: 256,
                        max_circuits: 64,
                        max_circuits_per_peer: 8,
                        max_circuit_duration: Duration::from_secs(10 * 60),
                        max_circuit_bytes: 64 << 20,
                        ..relay::Config::default()
                    },
                )
            });
            Ok(Behaviour {
                limits: connection_limits::Behaviour::new(connection_limits(
                    config.max_connections,
                )),
                identify: identify::Behaviour::new(
                    identify::Config::new(PROTOCOL_VERSION.into(), key.public())
                        // A relayed address must reach peers as soon as it exists.
                        .with_push_listen_addr_updates(true),
                ),
                ping: ping::Behaviour::new(ping::Config::new().with_interval(PING_INTERVAL)),
                kad,
                gossipsub,
                hood: request_response::Behaviour::with_codec(
                    codec::Frames {
                        max_request: hood_wire::MAX_FRAME as u64,
                        // The answer is an empty acknowledgement.
                        max_response: 16,
                    },
                    [(
                        StreamProtocol::new(hood_wire::PROTOCOL),
                        ProtocolSupport::Full,
                    )],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(5)),
                ),
                mdns: Toggle::from(mdns),
                fetch: request_response::Behaviour::with_codec(
                    fetch_limits,
                    [(
                        StreamProtocol::new(wire::FETCH_PROTOCOL),
                        ProtocolSupport::Full,
                    )],
                    request_response::Config::default().with_request_timeout(config.fetch_timeout),
                ),
                invoke: request_response::Behaviour::with_codec(
                    invoke_limits,
                    [(
                        StreamProtocol::new(wire::INVOKE_PROTOCOL),
                        ProtocolSupport::Full,
                    )],
                    rr_config,
                ),
                state: request_response::Behaviour::with_codec(
                    codec::Frames {
                        max_request: state::MAX_ENCODED as u64,
                        max_response: state::MAX_ENCODED as u64,
                    },
                    [(
                        StreamProtocol::new(state::SYNC_PROTOCOL),
                        ProtocolSupport::Full,
                    )],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(30)),
                ),
                aliases: request_response::Behaviour::with_codec(
                    codec::Frames {
                        max_request: alias::SyncRequest::LEN as u64,
                        max_response: alias::MAX_SYNC_RESPONSE as u64,
                    },
                    [(
                        StreamProtocol::new(alias::SYNC_PROTOCOL),
                        ProtocolSupport::Full,
                    )],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(20)),
                ),
                autonat: autonat::Behaviour::new(peer_id, autonat_config),
                relay_client,
                relay_server: Toggle::from(relay_server),
                dcutr: dcutr::Behaviour::new(peer_id),
            })
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();
    Ok(swarm)
}
