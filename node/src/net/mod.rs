//! The peer network: a libp2p swarm driven by one task.
//!
//! Transports: QUIC and TCP (noise + yamux), and circuits through a relay. Behaviours:
//! identify and ping (so any libp2p implementation can connect and see what we speak),
//! Kademlia (provider records for function ids, addresses, random walks that find
//! neighbours), gossipsub (alias records), mDNS (optional), AutoNAT (are we reachable?),
//! circuit relay v2 (a client always; a server when `relay_server` is on), DCUtR (hole
//! punching a relayed connection into a direct one), and kith's own request-response
//! protocols `/kith/hood/1` (the neighbourhood: subscriptions, adverts one hop to
//! subscribers, peer exchange; see [`hood`]), `/kith/fetch/1`, `/kith/invoke/1`,
//! `/kith/aliases/1` and `/kith/sync/1` (`docs/wire-format.md`).
//!
//! Behind a NAT: AutoNAT finds out the node is private, the node reserves a slot on up
//! to [`MAX_AUTO_RELAYS`] connected relays, and its relayed addresses reach peers through
//! identify and Kademlia. A peer that learns of the node through peer exchange dials
//! those addresses, through the relay; DCUtR then punches a direct
//! connection and the relayed one is closed (`docs/node.md`, "Behind a NAT").
//!
//! The rest of the node talks to this task through [`Net`]: commands go in over a
//! bounded channel, inbound requests come out over another, and what the task learns
//! about peers (adverts, RTTs, addresses) is shared in a [`PeerTable`].

mod addr;
mod aliases;
mod answer;
pub mod codec;
mod commands;
mod discovery;
mod errors;
mod events;
mod fetch;
mod hood;
mod inbound;
mod invoke;
mod nat;
mod subnet;
mod swarm;
mod sync;
mod table;
mod task;
mod warm;

pub use codec::Frames;
pub use errors::{FetchError, InvokeFailure};
pub use inbound::{AliasInbound, Inbound, StateInbound};

use crate::clock::now_ms;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use kith_protocol::alias;
use kith_protocol::capacity::Advert;
use kith_protocol::ratelimit::TokenBucket;
use kith_protocol::state;
use kith_protocol::vivaldi;
use kith_protocol::wire::{self, InvokeRequest, InvokeResponse};
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
    Multiaddr, PeerId, StreamProtocol, Swarm, autonat, connection_limits, dcutr, gossipsub,
    identify, kad, mdns, noise, ping, relay, tcp, yamux,
};
use std::time::Instant;

use addr::{is_loopback, is_relayed, peer_of, resolve_names, unsupported, without_peer};
use answer::{Answer, AnswerChannel, Traffic};
use commands::Command;
pub use hood::{MAX_HOOD_ADDRS, MIN_HEARTBEAT, TRIM_AFTER};
use nat::PinnedRelay;
use swarm::{Behaviour, BehaviourEvent, build_swarm};
pub use swarm::{MAX_CONNECTIONS_PER_PEER, MAX_PENDING_INCOMING, RESERVED_OUTGOING};
use task::Task;
use tokio::sync::{mpsc, oneshot, watch};

pub use subnet::subnet_of;
pub use table::{NetBytes, PeerInfo, PeerTable, Proto, Reachability, Tracked};
pub use warm::WarmCandidate;

/// Relays a private node reserves a slot on, chosen among connected relay servers.
pub const MAX_AUTO_RELAYS: usize = 2;
/// Peers dialled after hearing of them, remembered at most (for redial back-off).
pub const MAX_DIALLED_PEERS: usize = 48;
/// Address lookups for peers heard of that may run at once (a flood of made-up peers
/// in peer exchange costs at most this many DHT queries at a time).
const MAX_LOOKUPS: usize = 8;
/// A peer that could not be dialled is not tried again for this long.
const REDIAL_AFTER: Duration = Duration::from_secs(30);
/// How often a disconnected bootstrap peer is dialled again.
const BOOTSTRAP_REDIAL: Duration = Duration::from_secs(10);
/// How often reservations, pinned relays and relayed connections are checked.
const MAINTENANCE: Duration = Duration::from_secs(1);
/// How often the task publishes a snapshot of its peer table, if it changed.
pub const SNAPSHOT_EVERY: Duration = Duration::from_millis(50);
/// A relayed connection is closed only once a direct one has existed this long, so
/// requests the peer sent over the relay just before have arrived (and are waited for).
const RELAYED_GRACE: Duration = Duration::from_secs(1);

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
    /// Established connections at most (`docs/node.md`, `--max-connections`).
    pub max_connections: u32,
    /// Distinct peers of one IPv4 /24 or IPv6 /48 connected at once
    /// (`kith_protocol::subnet`, `--max-peers-per-subnet`).
    pub max_peers_per_subnet: usize,
    /// Neighbourhood messages (adverts, subscriptions, peer exchange) accepted from
    /// one peer per second (burst: 8).
    pub advert_rate_per_peer: f64,
    /// How often the node's load goes to its subscribers, changed or not.
    pub advert_interval: Duration,
    /// Relay circuits for other peers (circuit relay v2 server).
    pub relay_server: bool,
    /// Relays to hold a reservation on whatever AutoNAT says (`…/p2p/<relay id>`).
    pub relays: Vec<Multiaddr>,
    /// Delay before the first AutoNAT probe.
    pub autonat_delay: Duration,
}

/// What the local node offers, for its next advert.
#[derive(Debug, Clone)]
pub struct LocalOffer {
    /// The advert without identity, sequence, time and coordinate, which the network
    /// task fills in.
    pub advert: Advert,
}

/// A handle to the network task.
#[derive(Clone)]
pub struct Net {
    commands: mpsc::Sender<Command>,
    /// Snapshots of what the task knows about peers (see [`Net::peers`]).
    snapshots: watch::Receiver<Arc<PeerTable>>,
    /// This node's peer id.
    pub local_peer_id: PeerId,
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
        let mut config = config;
        if !cfg!(feature = "dns") {
            config.bootstrap = resolve_names(&config.bootstrap)?;
            config.relays = resolve_names(&config.relays)?;
        }
        let configured = [
            ("listen on", &config.listen),
            ("bootstrap from", &config.bootstrap),
            ("keep a relay at", &config.relays),
        ];
        for (what, addrs) in configured {
            for addr in addrs {
                if let Some(why) = unsupported(addr) {
                    anyhow::bail!("cannot {what} {addr}: {why}");
                }
            }
        }
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
        // Gossip carries alias records only: a document's changes go to its holders
        // (`/kith/sync/1`, the node's holder book), never to every peer.
        let alias_topic = gossipsub::IdentTopic::new(alias::TOPIC);
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&alias_topic)
            .map_err(|e| anyhow::anyhow!("cannot subscribe to {alias_topic}: {e:?}"))?;
        // The book holds every connected peer, and as many again that left lately.
        let max_peers = (config.max_connections as usize)
            .saturating_mul(2)
            .max(kith_protocol::peerbook::Config::default().max_peers);
        let mut table = PeerTable::new(max_peers);
        table.nat.status = "unknown";
        table.nat.relay_server = config.relay_server;
        let (snapshot_tx, snapshots) = watch::channel(Arc::new(table.clone()));
        let (commands, command_rx) = mpsc::channel(1024);
        let (inbound_tx, inbound) = mpsc::channel(1024);
        let hood = hood::Hood::new(local_peer_id, config.advert_interval);
        let task = Task {
            hood,
            swarm,
            key,
            config,
            table,
            snapshots: snapshot_tx,
            dirty: false,
            published_at: Instant::now(),
            bytes: NetBytes::default(),
            commands: command_rx,
            inbound: inbound_tx,
            alias_topic,
            state_requests: HashMap::new(),
            // A restarted node's adverts must outrank the ones peers remember.
            seq: kith_protocol::capacity::first_seq(now_ms()),
            coord: vivaldi::Coord::default(),
            fetches: fetch::Fetches::default(),
            invoke_requests: HashMap::new(),
            answers: FuturesUnordered::new(),
            invoke_buckets: HashMap::new(),
            advert_buckets: HashMap::new(),
            alias_requests: HashMap::new(),
            serving: HashMap::new(),
            nat: nat::NatState {
                pinned_relays,
                ..nat::NatState::default()
            },
            discovery: discovery::Discovery {
                bootstrap: Some((bootstrap.clone(), listeners, Instant::now())),
                bootstrap_peers: bootstrap,
                bootstrap_redial_at: Instant::now() + BOOTSTRAP_REDIAL,
                dialled_addrs: HashMap::new(),
                dialled: HashMap::new(),
                lookups: HashMap::new(),
            },
        };
        tokio::spawn(task.run());
        Ok((
            Self {
                commands,
                snapshots,
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
        // A soft signal: dropped if the task's queue is full.
        let _ = self.commands.try_send(Command::Penalise(peer));
    }

    /// The latest snapshot of what the network task knows about peers (published at
    /// most every [`SNAPSHOT_EVERY`]); cheap to take.
    pub fn peers(&self) -> Arc<PeerTable> {
        self.snapshots.borrow().clone()
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

    /// Peers near here with `id` warm, with their verified adverts, for a call that
    /// found no warm candidate: from the cache at once, else after the neighbours
    /// answer (the network task holds the call at most
    /// `kith_protocol::warm::Config::hold_ms`); empty when nobody near has it or the
    /// network is busy.
    pub async fn find_warm(&self, id: FunctionId) -> Vec<WarmCandidate> {
        let (reply, rx) = oneshot::channel();
        if self
            .commands
            .try_send(Command::FindWarm { id, reply })
            .is_err()
        {
            return Vec::new();
        }
        let hold = kith_protocol::warm::Config::default().hold_ms;
        let patience = Duration::from_millis(hold + 100);
        match tokio::time::timeout(patience, rx).await {
            Ok(Ok(found)) => found,
            _ => Vec::new(),
        }
    }

    /// Announces a new alias record on the alias topic.
    pub async fn publish_alias(&self, bytes: Vec<u8>) {
        let _ = self.commands.send(Command::PublishAlias(bytes)).await;
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

    /// The node's offer for its next advert (identity, sequence number, time and
    /// coordinate are filled in by the network task, which sends it to subscribers:
    /// at once when it changed, else at the next heartbeat).
    pub async fn advertise(&self, advert: Advert) {
        let _ = self
            .commands
            .send(Command::Advertise(Box::new(advert)))
            .await;
    }
}
