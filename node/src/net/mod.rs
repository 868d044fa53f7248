//! The peer network: a libp2p swarm driven by one task.
//!
//! Transports: QUIC and TCP (noise + yamux), and circuits through a relay. Behaviours:
//! identify and ping (so any libp2p implementation can connect and see what we speak),
//! Kademlia (provider records for function ids, and addresses of peers we hear of),
//! gossipsub (signed capacity adverts), mDNS (optional), AutoNAT (are we reachable?),
//! circuit relay v2 (a client always; a server when `relay_server` is on), DCUtR (hole
//! punching a relayed connection into a direct one), and kith's own request-response
//! protocols `/kith/fetch/1`, `/kith/invoke/1` and `/kith/aliases/1`
//! (`docs/wire-format.md`).
//!
//! Behind a NAT: AutoNAT finds out the node is private, the node reserves a slot on up
//! to [`MAX_AUTO_RELAYS`] connected relays, and its relayed addresses reach peers through
//! identify and Kademlia. A peer that hears the node's advert but is not connected to it
//! looks its addresses up and dials, through the relay; DCUtR then punches a direct
//! connection and the relayed one is closed (`docs/node.md`, "Behind a NAT").
//!
//! The rest of the node talks to this task through [`Net`]: commands go in over a
//! bounded channel, inbound requests come out over another, and what the task learns
//! about peers (adverts, RTTs, addresses) is shared in a [`PeerTable`].

pub mod codec;
mod fetch;
mod table;

pub use codec::Frames;

use crate::clock::now_ms;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use kith_protocol::alias;
use kith_protocol::capacity::Advert;
use kith_protocol::ratelimit::TokenBucket;
use kith_protocol::state;
use kith_protocol::vivaldi;
use kith_protocol::wire::{
    self, FetchRequest, FetchResponse, InvokeRequest, InvokeResponse, WireError,
};
use kith_protocol::{ErrorKind, FunctionId};
use libp2p::core::ConnectedPoint;
use libp2p::core::transport::ListenerId;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, autonat, dcutr, gossipsub, identify, kad, mdns,
    noise, ping, relay, tcp, yamux,
};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

pub use table::{PeerInfo, PeerTable, Reachability};

/// Relays a private node reserves a slot on, chosen among connected relay servers.
pub const MAX_AUTO_RELAYS: usize = 2;
/// Peers heard of through adverts are dialled only while fewer than this many are
/// connected.
pub const MAX_DIALLED_PEERS: usize = 48;
/// Address lookups for peers heard of that may run at once (a flood of adverts from
/// made-up peers costs at most this many DHT queries at a time).
const MAX_LOOKUPS: usize = 8;
/// A peer that could not be dialled is not tried again for this long.
const REDIAL_AFTER: Duration = Duration::from_secs(30);
/// How often a disconnected bootstrap peer is dialled again.
const BOOTSTRAP_REDIAL: Duration = Duration::from_secs(10);
/// How often reservations, pinned relays and relayed connections are checked.
const MAINTENANCE: Duration = Duration::from_secs(1);
/// Adverts one source may send at once before its rate limit applies.
const ADVERT_BURST: f64 = 3.0;
/// A relayed connection is closed only once a direct one has existed this long, so
/// requests the peer sent over the relay just before have arrived (and are waited for).
const RELAYED_GRACE: Duration = Duration::from_secs(1);

/// Gossipsub topic of capacity adverts.
pub const ADVERT_TOPIC: &str = "kith/adverts/1";
/// The identify protocol version string.
pub const PROTOCOL_VERSION: &str = "/kith/1.0.0";

/// Network settings.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start (`…/p2p/<peer id>`).
    pub bootstrap: Vec<Multiaddr>,
    /// Addresses to announce in addition to the listen addresses (e.g. a port forward).
    pub external: Vec<Multiaddr>,
    /// Discover peers on the LAN with mDNS.
    pub mdns: bool,
    /// Largest module fetched or served, in bytes.
    pub max_module_bytes: u64,
    /// Largest call input forwarded or accepted, in bytes.
    pub max_input_bytes: u64,
    /// Largest call output, in bytes.
    pub max_output_bytes: u64,
    /// Timeout of one invoke request (the longest call a peer may run, plus slack).
    pub request_timeout: Duration,
    /// Timeout of one fetch request; a provider slower than this is skipped.
    pub fetch_timeout: Duration,
    /// Invoke requests accepted from one peer per second (burst: 4x).
    pub invoke_rate_per_peer: f64,
    /// Requests of one peer the node works on at once; beyond it an invoke is answered
    /// `busy` and other requests are dropped (the peer sees the stream close).
    pub max_requests_per_peer: usize,
    /// Adverts accepted from one peer per second (burst: 3).
    pub advert_rate_per_peer: f64,
    /// Relay circuits for other peers (circuit relay v2 server).
    pub relay_server: bool,
    /// Relays to hold a reservation on whatever AutoNAT says (`…/p2p/<relay id>`).
    pub relays: Vec<Multiaddr>,
    /// Delay before the first AutoNAT probe.
    pub autonat_delay: Duration,
}

/// Why a fetch failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// No peer had it (or every peer that claimed to sent bad bytes).
    #[error("no peer could provide function {id} (asked {asked} peers, {bad} sent bad bytes)")]
    NotFound {
        /// The function.
        id: FunctionId,
        /// Peers asked.
        asked: usize,
        /// Peers that sent bytes that did not match the id.
        bad: usize,
    },
    /// Too many fetches (or callers of one fetch) in progress.
    #[error(
        "busy: too many module fetches in progress (limit {limit}); function {id} was not fetched"
    )]
    Busy {
        /// The function.
        id: FunctionId,
        /// The limit hit.
        limit: usize,
    },
    /// The network task is gone.
    #[error("the network is shut down")]
    Closed,
}

/// Why an invoke request got no answer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum InvokeFailure {
    /// The peer could not be reached, hung up or timed out.
    #[error("peer {peer} failed: {reason}")]
    Transport {
        /// The peer.
        peer: PeerId,
        /// What happened.
        reason: String,
    },
    /// The peer answered with something we cannot decode.
    #[error("peer {peer} sent a malformed answer: {error}")]
    Malformed {
        /// The peer.
        peer: PeerId,
        /// The decode error.
        error: WireError,
    },
    /// The network task is gone.
    #[error("the network is shut down")]
    Closed,
}

/// A request from a peer that the node must answer.
pub enum Inbound {
    /// A peer wants a module's bytes.
    Fetch {
        /// Who asks.
        peer: PeerId,
        /// The request.
        request: FetchRequest,
        /// Where to send the answer.
        respond: oneshot::Sender<FetchResponse>,
    },
    /// Alias-registry traffic.
    Alias(AliasInbound),
    /// Document-sync traffic.
    State(StateInbound),
    /// A peer wants a call run here.
    Invoke {
        /// Who asks.
        peer: PeerId,
        /// The request.
        request: InvokeRequest,
        /// Where to send the answer.
        respond: oneshot::Sender<InvokeResponse>,
    },
}

/// Alias-registry traffic the node must handle.
pub enum AliasInbound {
    /// A record announced on the alias topic (not yet verified).
    Record {
        /// The peer that relayed it.
        peer: PeerId,
        /// The encoded record.
        bytes: Vec<u8>,
    },
    /// A peer asks for our records (it sent its registry digest).
    Sync {
        /// Who asks.
        peer: PeerId,
        /// Its request.
        request: alias::SyncRequest,
        /// Where to send the answer.
        respond: oneshot::Sender<alias::SyncResponse>,
    },
    /// A peer answered our sync request.
    Records {
        /// The peer.
        peer: PeerId,
        /// Its records (not yet verified).
        records: Vec<Vec<u8>>,
    },
    /// A peer connected for the first time since it was last disconnected.
    Connected(PeerId),
}

/// Document-sync traffic the node must handle.
pub enum StateInbound {
    /// A peer sent its sync message for a document.
    Sync {
        /// Who asks.
        peer: PeerId,
        /// Its request.
        request: state::SyncRequest,
        /// Where to send the answer.
        respond: oneshot::Sender<state::SyncResponse>,
    },
    /// A heads announcement (not yet decoded), from `source` (its author).
    Heads {
        /// The peer that wrote the change.
        source: PeerId,
        /// The encoded announcement.
        bytes: Vec<u8>,
    },
    /// A peer connected for the first time since it was last disconnected.
    Connected(PeerId),
}

/// What the local node offers, for its next advert.
#[derive(Debug, Clone)]
pub struct LocalOffer {
    /// The advert without identity, sequence, time and coordinate, which the network
    /// task fills in.
    pub advert: Advert,
}

enum Command {
    Fetch {
        id: FunctionId,
        /// A peer known to hold it, asked first.
        prefer: Option<PeerId>,
        reply: oneshot::Sender<Result<Vec<u8>, FetchError>>,
    },
    Provide(FunctionId),
    Invoke {
        peer: PeerId,
        request: InvokeRequest,
        reply: oneshot::Sender<Result<InvokeResponse, InvokeFailure>>,
    },
    Advertise(Box<Advert>),
    PublishAlias(Vec<u8>),
    PublishHeads(Vec<u8>),
    StateSync {
        peer: PeerId,
        request: state::SyncRequest,
        reply: oneshot::Sender<Result<state::SyncResponse, String>>,
    },
    SyncAliases {
        peer: PeerId,
        digest: [u8; 32],
    },
}

/// A handle to the network task.
#[derive(Clone)]
pub struct Net {
    commands: mpsc::Sender<Command>,
    /// What is known about peers.
    pub table: Arc<RwLock<PeerTable>>,
    /// This node's peer id.
    pub local_peer_id: PeerId,
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    gossipsub: gossipsub::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
    fetch: request_response::Behaviour<codec::Frames>,
    invoke: request_response::Behaviour<codec::Frames>,
    aliases: request_response::Behaviour<codec::Frames>,
    state: request_response::Behaviour<codec::Frames>,
    autonat: autonat::Behaviour,
    relay_client: relay::client::Behaviour,
    relay_server: Toggle<relay::Behaviour>,
    dcutr: dcutr::Behaviour,
}

/// The Kademlia key under which providers of `id` are announced: the raw 32 bytes of
/// the blake3 hash.
pub fn provider_key(id: &FunctionId) -> kad::RecordKey {
    kad::RecordKey::new(id.as_bytes())
}

impl Net {
    /// Builds the swarm, starts listening and dialling, and spawns the network task.
    /// Returns the handle and the stream of inbound requests.
    ///
    /// # Errors
    /// If a transport cannot be built or an address cannot be listened on.
    pub fn start(
        key: Keypair,
        config: NetConfig,
    ) -> anyhow::Result<(Self, mpsc::Receiver<Inbound>)> {
        let local_peer_id = key.public().to_peer_id();
        let mut swarm = build_swarm(&key, &config)?;
        let mut listeners = HashSet::new();
        for addr in &config.listen {
            let id = swarm
                .listen_on(addr.clone())
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
            listeners.insert(id);
        }
        for addr in &config.external {
            swarm.add_external_address(addr.clone());
        }
        let bootstrap = config.bootstrap.clone();
        let mut pinned_relays = Vec::new();
        for addr in &config.relays {
            let Some(relay) = peer_of(addr) else {
                anyhow::bail!("relay address {addr} must end with /p2p/<peer id>");
            };
            swarm.behaviour_mut().kad.add_address(&relay, addr.clone());
            pinned_relays.push(PinnedRelay {
                circuit: addr.clone().with(Protocol::P2pCircuit),
                listener: None,
                retry_at: Instant::now(),
            });
        }
        for addr in &config.bootstrap {
            let Some(peer) = peer_of(addr) else {
                anyhow::bail!("bootstrap address {addr} must end with /p2p/<peer id>");
            };
            swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
        }
        let topic = gossipsub::IdentTopic::new(ADVERT_TOPIC);
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&topic)
            .map_err(|e| anyhow::anyhow!("cannot subscribe to adverts: {e:?}"))?;
        let alias_topic = gossipsub::IdentTopic::new(alias::TOPIC);
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&alias_topic)
            .map_err(|e| anyhow::anyhow!("cannot subscribe to aliases: {e:?}"))?;
        let state_topic = gossipsub::IdentTopic::new(state::TOPIC);
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&state_topic)
            .map_err(|e| anyhow::anyhow!("cannot subscribe to state heads: {e:?}"))?;
        let mut table = PeerTable::default();
        table.nat.status = "unknown";
        table.nat.relay_server = config.relay_server;
        let table = Arc::new(RwLock::new(table));
        let (commands, command_rx) = mpsc::channel(1024);
        let (inbound_tx, inbound) = mpsc::channel(1024);
        let task = Task {
            swarm,
            key,
            config,
            table: Arc::clone(&table),
            commands: command_rx,
            inbound: inbound_tx,
            topic,
            alias_topic,
            state_topic,
            state_requests: HashMap::new(),
            // A restarted node's adverts must outrank the ones peers remember.
            seq: kith_protocol::capacity::first_seq(now_ms()),
            coord: vivaldi::Coord::default(),
            fetches: fetch::Fetches::default(),
            invoke_requests: HashMap::new(),
            answers: FuturesUnordered::new(),
            invoke_buckets: HashMap::new(),
            advert_buckets: HashMap::new(),
            nat_private: false,
            bootstrap: Some((bootstrap.clone(), listeners, Instant::now())),
            bootstrap_peers: bootstrap,
            bootstrap_redial_at: Instant::now() + BOOTSTRAP_REDIAL,
            relay_candidates: HashMap::new(),
            auto_relays: HashMap::new(),
            relay_tried: HashMap::new(),
            pinned_relays,
            relayed: HashMap::new(),
            direct: HashMap::new(),
            alias_requests: HashMap::new(),
            serving: HashMap::new(),
            reversals: HashMap::new(),
            reversal_tried: HashMap::new(),
            dialled: HashMap::new(),
            dialled_addrs: HashMap::new(),
            lookups: HashMap::new(),
        };
        tokio::spawn(task.run());
        Ok((
            Self {
                commands,
                table,
                local_peer_id,
            },
            inbound,
        ))
    }

    /// Fetches a module's bytes from peers, verified against `id`.
    ///
    /// # Errors
    /// When no peer provides correct bytes.
    pub async fn fetch(
        &self,
        id: FunctionId,
        prefer: Option<PeerId>,
    ) -> Result<Vec<u8>, FetchError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Fetch { id, prefer, reply })
            .await
            .map_err(|_| FetchError::Closed)?;
        rx.await.map_err(|_| FetchError::Closed)?
    }

    /// Announces this node as a provider of `id`.
    pub async fn provide(&self, id: FunctionId) {
        let _ = self.commands.send(Command::Provide(id)).await;
    }

    /// Counts a misbehaviour against `peer` (it did not answer a call in time, or
    /// answered with nonsense).
    pub fn penalise(&self, peer: PeerId) {
        self.table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .penalise(&peer);
    }

    /// Announces this node as a provider of `id` without waiting (dropped if the
    /// network's command queue is full; stored functions are re-announced at start).
    pub fn provide_soon(&self, id: FunctionId) {
        let _ = self.commands.try_send(Command::Provide(id));
    }

    /// Sends an invoke request to `peer`.
    ///
    /// # Errors
    /// When the peer cannot be reached or answers garbage.
    pub async fn invoke(
        &self,
        peer: PeerId,
        request: InvokeRequest,
    ) -> Result<InvokeResponse, InvokeFailure> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Invoke {
                peer,
                request,
                reply,
            })
            .await
            .map_err(|_| InvokeFailure::Closed)?;
        rx.await.map_err(|_| InvokeFailure::Closed)?
    }

    /// Announces a new alias record on the alias topic.
    pub async fn publish_alias(&self, bytes: Vec<u8>) {
        let _ = self.commands.send(Command::PublishAlias(bytes)).await;
    }

    /// Announces a document's new heads on the state topic.
    pub fn publish_heads(&self, bytes: Vec<u8>) {
        let _ = self.commands.try_send(Command::PublishHeads(bytes));
    }

    /// Sends one round of document sync to `peer`.
    ///
    /// # Errors
    /// When the peer cannot be reached or answers garbage (the reason).
    pub async fn state_sync(
        &self,
        peer: PeerId,
        request: state::SyncRequest,
    ) -> Result<state::SyncResponse, String> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::StateSync {
                peer,
                request,
                reply,
            })
            .await
            .map_err(|_| "the network is shut down".to_owned())?;
        rx.await
            .map_err(|_| "the network is shut down".to_owned())?
    }

    /// Asks `peer` for the alias records we lack (we send our registry digest).
    pub fn sync_aliases(&self, peer: PeerId, digest: [u8; 32]) {
        let _ = self
            .commands
            .try_send(Command::SyncAliases { peer, digest });
    }

    /// Publishes an advert built from `advert` (identity, sequence number, time and
    /// coordinate are filled in by the network task).
    pub async fn advertise(&self, advert: Advert) {
        let _ = self
            .commands
            .send(Command::Advertise(Box::new(advert)))
            .await;
    }
}

/// The last `/p2p/<id>` of an address (for a relayed address, the destination).
fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter()
        .filter_map(|p| match p {
            Protocol::P2p(id) => Some(id),
            _ => None,
        })
        .last()
}

/// Whether an address goes through a relay.
fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// Whether an address is a loopback one (useless to tell a peer elsewhere).
fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

/// `addr` without any `/p2p/<id>` part.
fn without_peer(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

fn build_swarm(key: &Keypair, config: &NetConfig) -> anyhow::Result<Swarm<Behaviour>> {
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
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_quic()
        .with_dns()?
        .with_relay_client(noise::Config::new, yamux::Config::default)?
        .with_behaviour(|key, relay_client| {
            let gossip_config = gossipsub::ConfigBuilder::default()
                .heartbeat_interval(Duration::from_millis(500))
                .validation_mode(gossipsub::ValidationMode::Strict)
                .max_transmit_size(4096)
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
                identify: identify::Behaviour::new(
                    identify::Config::new(PROTOCOL_VERSION.into(), key.public())
                        // A relayed address must reach peers as soon as it exists.
                        .with_push_listen_addr_updates(true),
                ),
                ping: ping::Behaviour::new(
                    ping::Config::new().with_interval(Duration::from_secs(2)),
                ),
                kad,
                gossipsub,
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

type Answer = (PeerId, AnswerChannel, Option<Vec<u8>>);

enum AnswerChannel {
    Fetch(ResponseChannel<Vec<u8>>),
    Invoke(ResponseChannel<Vec<u8>>),
    Aliases(ResponseChannel<Vec<u8>>),
    State(ResponseChannel<Vec<u8>>),
}

struct Task {
    swarm: Swarm<Behaviour>,
    key: Keypair,
    config: NetConfig,
    table: Arc<RwLock<PeerTable>>,
    commands: mpsc::Receiver<Command>,
    inbound: mpsc::Sender<Inbound>,
    topic: gossipsub::IdentTopic,
    alias_topic: gossipsub::IdentTopic,
    state_topic: gossipsub::IdentTopic,
    /// Document-sync requests in flight: who, and where the answer goes.
    state_requests:
        HashMap<OutboundRequestId, (PeerId, oneshot::Sender<Result<state::SyncResponse, String>>)>,
    seq: u64,
    coord: vivaldi::Coord,
    /// Modules being fetched.
    fetches: fetch::Fetches,
    invoke_requests: HashMap<
        OutboundRequestId,
        (
            PeerId,
            oneshot::Sender<Result<InvokeResponse, InvokeFailure>>,
        ),
    >,
    answers: FuturesUnordered<futures::future::BoxFuture<'static, Answer>>,
    invoke_buckets: HashMap<PeerId, TokenBucket>,
    advert_buckets: HashMap<PeerId, TokenBucket>,
    /// Bootstrap peers not dialled yet, the listeners still starting, and since when:
    /// dials wait for the listeners so they leave from the listening port, which is
    /// then the port a NAT maps and peers observe (what hole punching needs).
    bootstrap: Option<(Vec<Multiaddr>, HashSet<ListenerId>, Instant)>,
    /// The bootstrap peers, redialled while disconnected (after a partition, a
    /// restart of theirs, a network change).
    bootstrap_peers: Vec<Multiaddr>,
    bootstrap_redial_at: Instant,
    /// AutoNAT's verdict: peers cannot dial us.
    nat_private: bool,
    /// Connected relay servers, with an address to reach each.
    relay_candidates: HashMap<PeerId, Multiaddr>,
    /// Reservations made because we are private: listener → relay.
    auto_relays: HashMap<ListenerId, PeerId>,
    /// When a reservation on a relay was last attempted.
    relay_tried: HashMap<PeerId, Instant>,
    /// Relays configured by the operator.
    pinned_relays: Vec<PinnedRelay>,
    /// Open relayed connections per peer (closed once a direct one exists and no
    /// request is in flight with the peer).
    relayed: HashMap<PeerId, Vec<ConnectionId>>,
    /// Open direct connections per peer, and since when the peer has had one.
    direct: HashMap<PeerId, (usize, Instant)>,
    /// Alias sync requests in flight, by peer.
    alias_requests: HashMap<OutboundRequestId, PeerId>,
    /// Requests from each peer that the node is still answering.
    serving: HashMap<PeerId, usize>,
    /// Direct dials to peers that reached us through a relay, and when each peer was
    /// last tried.
    reversals: HashMap<ConnectionId, PeerId>,
    reversal_tried: HashMap<PeerId, Instant>,
    /// Where we dialled each connected peer (direct connections).
    dialled_addrs: HashMap<PeerId, Multiaddr>,
    /// Peers heard of and dialled, and when.
    dialled: HashMap<PeerId, Instant>,
    /// Address lookups (Kademlia) for peers to dial.
    lookups: HashMap<kad::QueryId, PeerId>,
}

/// A relay the operator configured (`relays`): a reservation is kept on it.
struct PinnedRelay {
    /// `…/p2p/<relay>/p2p-circuit`.
    circuit: Multiaddr,
    listener: Option<ListenerId>,
    retry_at: Instant,
}

impl Task {
    async fn run(mut self) {
        let mut maintenance = tokio::time::interval(MAINTENANCE);
        maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = maintenance.tick() => {
                    self.dial_bootstrap(true);
                    self.redial_bootstrap();
                    self.maintain_relays();
                    self.prune_peer_maps();
                    let peers: Vec<PeerId> = self.relayed.keys().copied().collect();
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
        }
    }

    fn table(&self) -> std::sync::RwLockWriteGuard<'_, PeerTable> {
        self.table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Fetch { id, prefer, reply } => self.start_fetch(id, prefer, reply),
            Command::Provide(id) => {
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .start_providing(provider_key(&id))
                {
                    tracing::warn!(function = %id, error = ?e, "cannot announce as provider");
                }
            }
            Command::Invoke {
                peer,
                request,
                reply,
            } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .invoke
                    .send_request(&peer, request.encode());
                self.invoke_requests.insert(id, (peer, reply));
            }
            Command::PublishAlias(bytes) => {
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(self.alias_topic.clone(), bytes)
                {
                    tracing::debug!(error = ?e, "alias record not announced (no peers yet?); peers get it at their next sync");
                }
            }
            Command::PublishHeads(bytes) => {
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(self.state_topic.clone(), bytes)
                {
                    tracing::debug!(error = ?e, "heads not announced (no peers yet?); peers sync on connect");
                }
            }
            Command::StateSync {
                peer,
                request,
                reply,
            } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .state
                    .send_request(&peer, request.encode());
                self.state_requests.insert(id, (peer, reply));
            }
            Command::SyncAliases { peer, digest } => {
                let request = alias::SyncRequest { digest }.encode();
                let id = self
                    .swarm
                    .behaviour_mut()
                    .aliases
                    .send_request(&peer, request);
                self.alias_requests.insert(id, peer);
            }
            Command::Advertise(mut advert) => {
                self.seq += 1;
                advert.peer = match self.key.public().try_into_ed25519() {
                    Ok(k) => k.to_bytes(),
                    Err(_) => return,
                };
                advert.seq = self.seq;
                advert.issued_ms = now_ms();
                advert.coord = self.coord;
                let key = self.key.clone();
                let bytes = advert.encode(|m| {
                    let sig = key.sign(m).unwrap_or_default();
                    sig.try_into().unwrap_or([0; 64])
                });
                self.table().local = Some(*advert);
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(self.topic.clone(), bytes)
                {
                    tracing::debug!(error = ?e, "advert not published (no peers yet?)");
                }
            }
        }
    }

    fn answer(&mut self, channel: AnswerChannel, body: Option<Vec<u8>>) {
        let Some(body) = body else { return };
        let result = match channel {
            AnswerChannel::Fetch(c) => self.swarm.behaviour_mut().fetch.send_response(c, body),
            AnswerChannel::Invoke(c) => self.swarm.behaviour_mut().invoke.send_response(c, body),
            AnswerChannel::Aliases(c) => self.swarm.behaviour_mut().aliases.send_response(c, body),
            AnswerChannel::State(c) => self.swarm.behaviour_mut().state.send_response(c, body),
        };
        if result.is_err() {
            tracing::debug!("a peer went away before its answer was ready");
        }
    }

    /// Asks the next candidate of fetch `n` for the bytes, or finishes it.
    ///
    /// Candidates, best first: peers that claim the function (Kademlia providers, and
    /// connected peers whose advert lists it as cached), then, once the provider query
    /// is over, every other connected peer. Within a group, peers with fewer penalties
    /// and then lower RTT come first. One request is outstanding at a time; the first
    /// claimant is asked as soon as it is known, without waiting for the query to end.
    fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr {
                address,
                listener_id,
            } => {
                if let Some((_, waiting, _)) = &mut self.bootstrap {
                    waiting.remove(&listener_id);
                }
                self.dial_bootstrap(false);
                let mut table = self.table();
                if is_relayed(&address) {
                    tracing::info!(%address, "reachable through a relay");
                    table.nat.relayed_addresses.push(address.to_string());
                } else {
                    tracing::info!(%address, "listening");
                }
                table.listen_addrs.push(address);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => self.forget_listen_addr(&address),
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                for address in &addresses {
                    self.forget_listen_addr(address);
                }
                if let Some(relay) = self.auto_relays.remove(&listener_id) {
                    tracing::info!(%relay, ?reason, "relay reservation ended");
                }
                for pinned in &mut self.pinned_relays {
                    if pinned.listener == Some(listener_id) {
                        tracing::warn!(relay = %pinned.circuit, ?reason, "reservation on a configured relay ended; retrying in 30 s");
                        pinned.listener = None;
                        pinned.retry_at = Instant::now() + REDIAL_AFTER;
                    }
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                let addr = endpoint.get_remote_address().clone();
                if endpoint.is_relayed() {
                    self.relayed.entry(peer_id).or_default().push(connection_id);
                    self.count_relayed();
                } else {
                    if let ConnectedPoint::Dialer { address, .. } = &endpoint {
                        self.dialled_addrs.insert(peer_id, address.clone());
                    }
                    self.direct.entry(peer_id).or_insert((0, Instant::now())).0 += 1;
                    if self.reversals.remove(&connection_id).is_some() {
                        tracing::info!(peer = %peer_id, "dialled back a peer that came through a relay: direct connection");
                        self.table().nat.direct_upgrades += 1;
                    }
                    self.drop_relayed(peer_id);
                }
                self.table().on_connected(peer_id, addr);
                if num_established.get() == 1 {
                    let _ = self
                        .inbound
                        .try_send(Inbound::Alias(AliasInbound::Connected(peer_id)));
                    let _ = self
                        .inbound
                        .try_send(Inbound::State(StateInbound::Connected(peer_id)));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                if let Some(ids) = self.relayed.get_mut(&peer_id) {
                    ids.retain(|c| *c != connection_id);
                    if ids.is_empty() {
                        self.relayed.remove(&peer_id);
                    }
                    self.count_relayed();
                }
                if !endpoint.is_relayed()
                    && let Some((n, _)) = self.direct.get_mut(&peer_id)
                {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.direct.remove(&peer_id);
                    }
                }
                if num_established == 0 {
                    self.relay_candidates.remove(&peer_id);
                    self.dialled_addrs.remove(&peer_id);
                    self.table().on_disconnected(&peer_id);
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                connection_id,
                error,
            } => {
                if self.reversals.remove(&connection_id).is_some() {
                    tracing::debug!(%peer, %error, "cannot dial back a peer that came through a relay");
                    return;
                }
                // A peer heard of whose addresses we lack: look them up.
                if self.dialled.contains_key(&peer)
                    && matches!(error, libp2p::swarm::DialError::NoAddresses)
                {
                    self.look_up(peer);
                } else {
                    tracing::debug!(%peer, %error, "dial failed");
                }
            }
            SwarmEvent::Behaviour(event) => self.behaviour(event),
            _ => {}
        }
    }

    fn behaviour(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(
                identify::Event::Received { peer_id, info, .. }
                | identify::Event::Pushed { peer_id, info, .. },
            ) => {
                if info.protocols.contains(&relay::HOP_PROTOCOL_NAME) {
                    self.relay_candidate(peer_id, &info.listen_addrs);
                }
                self.dial_back(peer_id, &info.listen_addrs);
                // A peer's loopback addresses are only any use if it is on this host.
                let local = self
                    .table
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .book
                    .get(&peer_id)
                    .and_then(|i| i.extra.as_ref())
                    .is_some_and(is_loopback);
                for addr in info.listen_addrs {
                    if local || !is_loopback(&addr) {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
            }
            BehaviourEvent::Autonat(autonat::Event::StatusChanged { old, new }) => {
                tracing::info!(?old, ?new, "reachability (AutoNAT)");
                self.nat_private = matches!(new, autonat::NatStatus::Private);
                {
                    let mut table = self.table();
                    table.nat.status = match &new {
                        autonat::NatStatus::Public(_) => "public",
                        autonat::NatStatus::Private => "private",
                        autonat::NatStatus::Unknown => "unknown",
                    };
                    table.nat.public_address = match &new {
                        autonat::NatStatus::Public(a) => Some(a.to_string()),
                        _ => None,
                    };
                }
                self.maintain_relays();
            }
            BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal: false,
                ..
            }) => {
                tracing::info!(relay = %relay_peer_id, "relay accepted our reservation");
            }
            BehaviourEvent::RelayServer(relay::Event::ReservationReqAccepted {
                src_peer_id,
                renewed: false,
            }) => {
                tracing::info!(peer = %src_peer_id, "relaying for a peer");
            }
            BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            }) => self.hole_punched(remote_peer_id, result),
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetClosestPeers(result),
                ..
            }) => self.looked_up(id, result),
            BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            }) => {
                let rtt_ms = rtt.as_secs_f64() * 1000.0;
                let remote = self.table().observe_rtt(&peer, rtt_ms);
                if let Some(remote) = remote {
                    let fallback = fallback_direction(self.swarm.local_peer_id(), &peer);
                    self.coord.observe(
                        &remote,
                        rtt_ms.max(0.01),
                        fallback,
                        &vivaldi::Config::default(),
                    );
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                    if !self.swarm.is_connected(&peer) {
                        let _ = self.swarm.dial(addr);
                    }
                }
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message,
                ..
            }) => {
                if message.topic == self.alias_topic.hash() {
                    let _ = self.inbound.try_send(Inbound::Alias(AliasInbound::Record {
                        peer: propagation_source,
                        bytes: message.data,
                    }));
                } else if message.topic == self.state_topic.hash() {
                    let _ = self.inbound.try_send(Inbound::State(StateInbound::Heads {
                        source: message.source.unwrap_or(propagation_source),
                        bytes: message.data,
                    }));
                } else {
                    self.advert(propagation_source, message);
                }
            }
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetProviders(result),
                step,
                ..
            }) => self.providers_found(id, &result, step.last),
            BehaviourEvent::Fetch(event) => self.fetch_event(event),
            BehaviourEvent::Invoke(event) => self.invoke_event(event),
            BehaviourEvent::Aliases(event) => self.aliases_event(event),
            BehaviourEvent::State(event) => self.state_event(event),
            _ => {}
        }
    }

    /// Progress of a provider query: ask a new provider at once; when the query is
    /// over, fall back to every connected peer.
    fn advert(&mut self, from: PeerId, message: gossipsub::Message) {
        let Some(source) = message.source else {
            return;
        };
        let now = now_ms();
        let bucket = self.advert_buckets.entry(source).or_insert_with(|| {
            TokenBucket::new(self.config.advert_rate_per_peer, ADVERT_BURST, now)
        });
        if !bucket.try_take(now) {
            tracing::debug!(peer = %source, "advert rate limit: dropped");
            return;
        }
        match Advert::decode(&message.data, now) {
            Ok(advert) => {
                let key_peer = libp2p::identity::ed25519::PublicKey::try_from_bytes(&advert.peer)
                    .map(|k| PeerId::from_public_key(&libp2p::identity::PublicKey::from(k)));
                if key_peer.ok() != Some(source) {
                    tracing::warn!(%source, "advert signed by another key than its sender; dropped");
                    self.table().penalise(&from);
                    return;
                }
                self.table().advert(source, advert);
                self.dial_heard_of(source);
            }
            Err(e) => {
                tracing::debug!(%source, error = %e, "advert dropped");
            }
        }
    }

    /// Dials the bootstrap peers once every listener is up (or, with `tick`, once
    /// [`MAINTENANCE`] has passed without them all starting).
    fn dial_bootstrap(&mut self, tick: bool) {
        let ready = match &self.bootstrap {
            Some((_, waiting, since)) => {
                waiting.is_empty() || (tick && since.elapsed() >= MAINTENANCE)
            }
            None => false,
        };
        if !ready {
            return;
        }
        let Some((addrs, _, _)) = self.bootstrap.take() else {
            return;
        };
        for addr in addrs {
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::warn!(%addr, error = %e, "cannot dial bootstrap peer");
            }
        }
    }

    /// Dials bootstrap peers that are not connected, every [`BOOTSTRAP_REDIAL`].
    fn redial_bootstrap(&mut self) {
        let now = Instant::now();
        if self.bootstrap.is_some() || now < self.bootstrap_redial_at {
            return;
        }
        self.bootstrap_redial_at = now + BOOTSTRAP_REDIAL;
        for addr in self.bootstrap_peers.clone() {
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

    fn forget_listen_addr(&mut self, address: &Multiaddr) {
        let mut table = self.table();
        table.listen_addrs.retain(|a| a != address);
        let text = address.to_string();
        table.nat.relayed_addresses.retain(|a| *a != text);
    }

    fn count_relayed(&mut self) {
        let open = self.relayed.values().map(Vec::len).sum();
        self.table().nat.relayed_connections = open;
    }

    /// A connected peer offers relay circuits: remember how to reach it.
    fn relay_candidate(&mut self, peer: PeerId, listen: &[Multiaddr]) {
        // The address we reached it at, if we dialled it; else one it listens on that
        // is neither relayed nor loopback.
        let addr = self.dialled_addrs.get(&peer).cloned().or_else(|| {
            listen
                .iter()
                .find(|a| !is_relayed(a) && !is_loopback(a))
                .cloned()
        });
        if let Some(addr) = addr {
            self.relay_candidates.insert(peer, without_peer(&addr));
            self.maintain_relays();
        }
    }

    /// Keeps reservations where they are needed: on every configured relay, and, while
    /// AutoNAT says we are private, on up to [`MAX_AUTO_RELAYS`] connected relays.
    /// Drops what per-peer maps hold for peers that no longer need it: the peer book
    /// forgets peers gone for 10 minutes; invoke rate-limit buckets are kept only for
    /// connected peers (a reconnecting peer starts with a full bucket, which costs it a
    /// handshake), advert buckets until they refill; counters at zero and retry
    /// timestamps past their back-off go.
    fn prune_peer_maps(&mut self) {
        let forgotten = self.table().evict();
        if forgotten > 0 {
            tracing::debug!(forgotten, "peer book: forgot peers gone for a while");
        }
        let swarm = &self.swarm;
        self.invoke_buckets.retain(|p, _| swarm.is_connected(p));
        // Adverts come from sources gossip forwards, not only connected peers: a
        // source's bucket goes once it has refilled (forgetting it changes nothing).
        let now_ms = now_ms();
        self.advert_buckets
            .retain(|_, b| b.balance(now_ms) < ADVERT_BURST);
        self.serving.retain(|_, n| *n > 0);
        let now = Instant::now();
        self.relay_tried
            .retain(|_, t| now.duration_since(*t) < REDIAL_AFTER);
        self.reversal_tried
            .retain(|_, t| now.duration_since(*t) < REDIAL_AFTER);
    }

    fn maintain_relays(&mut self) {
        let now = Instant::now();
        for i in 0..self.pinned_relays.len() {
            let pinned = &self.pinned_relays[i];
            if pinned.listener.is_some() || pinned.retry_at > now {
                continue;
            }
            let circuit = pinned.circuit.clone();
            match self.swarm.listen_on(circuit.clone()) {
                Ok(id) => self.pinned_relays[i].listener = Some(id),
                Err(e) => {
                    tracing::warn!(relay = %circuit, error = %e, "cannot reserve on the relay");
                    self.pinned_relays[i].retry_at = now + REDIAL_AFTER;
                }
            }
        }
        if !self.nat_private {
            // Reachable directly: give automatic reservations back.
            for (listener, relay) in self.auto_relays.drain() {
                tracing::info!(%relay, "reachable directly; releasing the relay reservation");
                self.swarm.remove_listener(listener);
            }
            return;
        }
        let mut candidates: Vec<(PeerId, Multiaddr)> = self
            .relay_candidates
            .iter()
            .filter(|(p, _)| {
                !self.auto_relays.values().any(|r| r == *p)
                    && self
                        .relay_tried
                        .get(p)
                        .is_none_or(|t| now.duration_since(*t) >= REDIAL_AFTER)
            })
            .map(|(p, a)| (*p, a.clone()))
            .collect();
        // Nearest relays first.
        {
            let table = self
                .table
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            candidates.sort_by(|a, b| {
                let rtt = |p: &PeerId| table.rtt_ms(p).unwrap_or(f64::MAX);
                rtt(&a.0).total_cmp(&rtt(&b.0)).then(a.0.cmp(&b.0))
            });
        }
        for (relay, addr) in candidates {
            if self.auto_relays.len() >= MAX_AUTO_RELAYS {
                break;
            }
            self.relay_tried.insert(relay, now);
            let circuit = addr.with(Protocol::P2p(relay)).with(Protocol::P2pCircuit);
            match self.swarm.listen_on(circuit.clone()) {
                Ok(listener) => {
                    tracing::info!(%relay, "behind a NAT: reserving a slot on a relay");
                    self.auto_relays.insert(listener, relay);
                }
                Err(e) => tracing::warn!(%circuit, error = %e, "cannot reserve on the relay"),
            }
        }
    }

    /// A hole punch ended: on success, close the relayed connections to the peer so
    /// requests go direct.
    fn hole_punched(&mut self, peer: PeerId, result: Result<ConnectionId, dcutr::Error>) {
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
    fn dial_back(&mut self, peer: PeerId, listen: &[Multiaddr]) {
        if !self.relayed.contains_key(&peer) || self.direct.contains_key(&peer) {
            return;
        }
        let now = Instant::now();
        if self
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
        self.reversal_tried.insert(peer, now);
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::Always)
            .build();
        let id = opts.connection_id();
        if self.swarm.dial(opts).is_ok() {
            self.reversals.insert(id, peer);
        }
    }

    /// Closes the relayed connections to `peer` once a direct one exists and nothing
    /// is in flight with it (requests go round-robin over a peer's connections, so a
    /// relayed one left open would carry half of them; one closed under a request would
    /// fail it).
    fn drop_relayed(&mut self, peer: PeerId) {
        let direct_for_a_while = self
            .direct
            .get(&peer)
            .is_some_and(|(_, since)| since.elapsed() >= RELAYED_GRACE);
        if !direct_for_a_while || !self.relayed.contains_key(&peer) {
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
        for relayed in self.relayed.get(&peer).cloned().unwrap_or_default() {
            tracing::debug!(%peer, "closing the relayed connection: a direct one exists");
            self.swarm.close_connection(relayed);
        }
    }

    /// We heard of `peer` (its advert reached us through others) but are not connected:
    /// dial it, at most once per [`REDIAL_AFTER`], while few peers are connected.
    fn dial_heard_of(&mut self, peer: PeerId) {
        if peer == *self.swarm.local_peer_id() || self.swarm.is_connected(&peer) {
            return;
        }
        let now = Instant::now();
        if self
            .dialled
            .get(&peer)
            .is_some_and(|t| now.duration_since(*t) < REDIAL_AFTER)
        {
            return;
        }
        if self.swarm.connected_peers().count() >= MAX_DIALLED_PEERS
            || self.lookups.len() >= MAX_LOOKUPS
        {
            return;
        }
        if self.dialled.len() >= 4 * MAX_DIALLED_PEERS {
            self.dialled
                .retain(|_, t| now.duration_since(*t) < REDIAL_AFTER);
        }
        self.dialled.insert(peer, now);
        let opts = DialOpts::peer_id(peer)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        match self.swarm.dial(opts) {
            Ok(()) => {}
            // Not in the routing table: ask the DHT where it is.
            Err(libp2p::swarm::DialError::NoAddresses) => self.look_up(peer),
            Err(e) => tracing::debug!(%peer, error = %e, "cannot dial a peer heard of"),
        }
    }

    fn look_up(&mut self, peer: PeerId) {
        if self.lookups.len() < MAX_LOOKUPS && !self.lookups.values().any(|p| *p == peer) {
            let query = self.swarm.behaviour_mut().kad.get_closest_peers(peer);
            self.lookups.insert(query, peer);
        }
    }

    /// A Kademlia lookup for a peer heard of ended: dial the addresses it found.
    fn looked_up(&mut self, query: kad::QueryId, result: kad::GetClosestPeersResult) {
        let Some(peer) = self.lookups.remove(&query) else {
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

    fn invoke_event(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.invoke_request(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((peer, reply)) = self.invoke_requests.remove(&request_id) {
                        let decoded = InvokeResponse::decode(&response)
                            .map_err(|error| InvokeFailure::Malformed { peer, error });
                        let _ = reply.send(decoded);
                        self.drop_relayed(peer);
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some((peer, reply)) = self.invoke_requests.remove(&request_id) {
                    let _ = reply.send(Err(InvokeFailure::Transport {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            _ => {}
        }
    }

    /// Hands a peer's request to the node and queues the node's answer for `channel`.
    /// When the node's inbound queue is full the request is dropped: the peer sees the
    /// stream close, as with any overloaded peer.
    fn ask_node<T: Send + 'static>(
        &mut self,
        peer: PeerId,
        request: Inbound,
        answer: oneshot::Receiver<T>,
        channel: AnswerChannel,
        encode: fn(&T) -> Vec<u8>,
    ) {
        if self.serving_full(peer) || self.inbound.try_send(request).is_err() {
            return;
        }
        *self.serving.entry(peer).or_default() += 1;
        self.answers.push(Box::pin(async move {
            (peer, channel, answer.await.ok().map(|r| encode(&r)))
        }));
    }

    fn state_event(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let request = match state::SyncRequest::decode(&request) {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "malformed state sync request");
                            self.table().penalise(&peer);
                            let refusal = state::SyncResponse::Refused(e.to_string()).encode();
                            let _ = self
                                .swarm
                                .behaviour_mut()
                                .state
                                .send_response(channel, refusal);
                            return;
                        }
                    };
                    let (respond, rx) = oneshot::channel();
                    let request = Inbound::State(StateInbound::Sync {
                        peer,
                        request,
                        respond,
                    });
                    self.ask_node(
                        peer,
                        request,
                        rx,
                        AnswerChannel::State(channel),
                        state::SyncResponse::encode,
                    );
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((peer, reply)) = self.state_requests.remove(&request_id) {
                        let decoded = state::SyncResponse::decode(&response).map_err(|e| {
                            self.table().penalise(&peer);
                            format!("malformed answer from {peer}: {e}")
                        });
                        let _ = reply.send(decoded);
                        self.drop_relayed(peer);
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some((peer, reply)) = self.state_requests.remove(&request_id) {
                    let _ = reply.send(Err(format!("{peer}: {error}")));
                }
            }
            _ => {}
        }
    }

    fn aliases_event(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let Ok(request) = alias::SyncRequest::decode(&request) else {
                        self.table().penalise(&peer);
                        return;
                    };
                    let (respond, rx) = oneshot::channel();
                    let request = Inbound::Alias(AliasInbound::Sync {
                        peer,
                        request,
                        respond,
                    });
                    self.ask_node(
                        peer,
                        request,
                        rx,
                        AnswerChannel::Aliases(channel),
                        alias::SyncResponse::encode,
                    );
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    self.alias_requests.remove(&request_id);
                    match alias::SyncResponse::decode(&response) {
                        Ok(alias::SyncResponse::Same) => {}
                        Ok(alias::SyncResponse::Records(records)) => {
                            let _ = self
                                .inbound
                                .try_send(Inbound::Alias(AliasInbound::Records { peer, records }));
                        }
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "malformed alias sync response");
                            self.table().penalise(&peer);
                        }
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                self.alias_requests.remove(&request_id);
                tracing::debug!(%peer, error = %error, "alias sync request failed");
            }
            _ => {}
        }
    }

    fn invoke_request(&mut self, peer: PeerId, body: Vec<u8>, channel: ResponseChannel<Vec<u8>>) {
        match self.admit_invoke(peer, &body) {
            Ok(rx) => {
                *self.serving.entry(peer).or_default() += 1;
                self.answers.push(Box::pin(async move {
                    (
                        peer,
                        AnswerChannel::Invoke(channel),
                        rx.await.ok().map(|r| r.encode()),
                    )
                }));
            }
            Err(refusal) => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .invoke
                    .send_response(channel, refusal.encode());
            }
        }
    }

    /// True when `peer` already has `max_requests_per_peer` requests being answered.
    fn serving_full(&self, peer: PeerId) -> bool {
        self.serving.get(&peer).copied().unwrap_or(0) >= self.config.max_requests_per_peer
    }

    /// Passes an invoke request on to the node, or says why not: over the peer's rate,
    /// malformed (the peer is penalised), too many of its requests in progress, or the
    /// node's inbound queue is full.
    fn admit_invoke(
        &mut self,
        peer: PeerId,
        body: &[u8],
    ) -> Result<oneshot::Receiver<InvokeResponse>, InvokeResponse> {
        let refuse = |kind: ErrorKind, message: String| InvokeResponse::Err { kind, message };
        let now = now_ms();
        let rate = self.config.invoke_rate_per_peer;
        let allowed = self
            .invoke_buckets
            .entry(peer)
            .or_insert_with(|| TokenBucket::new(rate, (rate * 4.0).max(4.0), now))
            .try_take(now);
        if !allowed {
            return Err(refuse(
                ErrorKind::RateLimited,
                format!(
                    "more than {rate} invoke requests per second from {peer} (invoke_rate_per_peer)"
                ),
            ));
        }
        let request = InvokeRequest::decode(body).map_err(|e| {
            self.table().penalise(&peer);
            refuse(ErrorKind::BadRequest, e.to_string())
        })?;
        if self.serving_full(peer) {
            let limit = self.config.max_requests_per_peer;
            return Err(refuse(
                ErrorKind::Busy,
                format!(
                    "busy: {limit} requests from {peer} are in progress here (max_requests_per_peer)"
                ),
            ));
        }
        let (respond, rx) = oneshot::channel();
        self.inbound
            .try_send(Inbound::Invoke {
                peer,
                request,
                respond,
            })
            .map_err(|_| refuse(ErrorKind::Busy, "the node's inbound queue is full".into()))?;
        Ok(rx)
    }
}

/// A deterministic direction to push two coinciding coordinates apart.
fn fallback_direction(a: &PeerId, b: &PeerId) -> [f32; 3] {
    let mut h = blake3::Hasher::new();
    h.update(&a.to_bytes());
    h.update(&b.to_bytes());
    let d = h.finalize();
    let d = d.as_bytes();
    std::array::from_fn(|i| f32::from(d[i]) / 255.0 - 0.5)
}
