//! Node configuration: embedded defaults, overridden by a settings file, overridden by flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use kith_protocol::Caps;
use kith_protocol::capacity::DeviceClass;
use libp2p::Multiaddr;

/// The default HTTP API address.
pub const DEFAULT_HTTP: &str = "127.0.0.1:7070";

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Where the node keeps its identity, store and artifacts.
    pub data_dir: PathBuf,
    /// Where the HTTP API listens. Port 0 picks a free port.
    pub http: SocketAddr,
    /// What any one call may get.
    pub caps: Caps,
    /// Calls running at once.
    pub max_concurrent_calls: usize,
    /// Calls waiting for a slot; beyond this, calls are refused as busy.
    pub max_queued_calls: usize,
    /// How a call tries candidates: at most `max_attempts`, and how long past its
    /// timeout a peer may take to answer (`kith_protocol::attempt`).
    pub attempts: kith_protocol::attempt::Config,
    /// Share of this machine's CPU (all cores) that calls may use on average, in
    /// (0, 1]. Below 1, calls draw fuel from a budget of `cpu_score` × 1000 × cores ×
    /// share fuel per second (burst: one second's worth); when it is spent, calls are
    /// refused as busy until it refills.
    pub cpu_share: f64,
    /// Disk budget for modules and compiled artifacts, in bytes.
    pub store_budget_bytes: u64,
    /// The device class this node advertises.
    pub device: DeviceClass,
    /// The peer network; `None` runs the node alone.
    pub net: Option<NetSettings>,
    /// Publisher namespaces (ids or local key names) the operator trusts.
    pub trust: Vec<String>,
    /// Run only functions that a trusted namespace's aliases currently point at.
    pub trusted_only: bool,
    /// Local hours when this node offers capacity to calls (`None`: always).
    pub offer_hours: Option<OfferHours>,
    /// Application state: disk budget, document cap, hosted namespaces.
    pub state: crate::state::StateLimits,
    /// Modules compiled at once, on threads of their own (not the call workers).
    pub compile_workers: usize,
    /// Longest a module's compilation may take, in milliseconds; a module that takes
    /// longer is refused (and the refusal remembered).
    pub compile_timeout_ms: u64,
    /// Which WebAssembly backend runs functions (`--backend`).
    pub backend: crate::runtime::Backend,
    /// Who may use the HTTP API, and how much of it at once.
    pub api: ApiSettings,
}

/// Who may use the HTTP API (`docs/security.md`, "The HTTP API").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    /// Host names (besides IP addresses and `localhost`) the API answers to; any
    /// other `Host` is refused (DNS rebinding).
    pub hosts: Vec<String>,
    /// Require the API token on every request, even on a loopback address.
    pub token_always: bool,
    /// Where the token is required, require it for the read-only pages too (`/`,
    /// `/metrics`, `/v1/status`, `/v1/peers`), which are otherwise open.
    pub token_for_reads: bool,
    /// Requests handled at once; beyond it the API answers busy.
    pub max_requests: usize,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            hosts: Vec::new(),
            token_always: false,
            token_for_reads: false,
            max_requests: 64,
        }
    }
}

/// Local hours `[from, to)` when a node offers capacity; wraps midnight when
/// `from > to` (e.g. `22-7`). Outside them the node advertises itself full and refuses
/// calls as busy, so they are placed elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferHours {
    /// First hour offered, 0..=23.
    pub from: u8,
    /// Hour at which offering stops, 0..=24.
    pub to: u8,
}

impl OfferHours {
    /// True if and only if local hour `hour` (0..=23) is offered.
    pub fn contains(&self, hour: u8) -> bool {
        if self.from <= self.to {
            hour >= self.from && hour < self.to
        } else {
            hour >= self.from || hour < self.to
        }
    }
}

impl std::fmt::Display for OfferHours {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.from, self.to)
    }
}

impl std::str::FromStr for OfferHours {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("offer hours {s:?} must be FROM-TO in local hours, e.g. 8-23 or 22-7");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let from: u8 = a.trim().parse().map_err(|_| bad())?;
        let to: u8 = b.trim().parse().map_err(|_| bad())?;
        if from > 23 || to > 24 || from == to {
            return Err(bad());
        }
        Ok(Self { from, to })
    }
}

/// The local hour of day now (0..=23), from the system's time zone.
pub fn local_hour() -> u8 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let t = libc::time_t::try_from(now).unwrap_or(0);
    // SAFETY: localtime_r writes only into the tm we pass; both pointers are valid.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if ok {
        u8::try_from(tm.tm_hour.clamp(0, 23)).unwrap_or(0)
    } else {
        u8::try_from((now / 3600) % 24).unwrap_or(0)
    }
}

/// The default peer-network port (QUIC on UDP and TCP).
pub const DEFAULT_P2P_PORT: u16 = 7071;

/// Peer-network settings.
#[derive(Debug, Clone)]
pub struct NetSettings {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start (`…/p2p/<peer id>`).
    pub bootstrap: Vec<Multiaddr>,
    /// Extra addresses to announce (e.g. a port forward or a relay in front of us).
    pub external: Vec<Multiaddr>,
    /// Discover peers on the LAN with mDNS.
    pub mdns: bool,
    /// How often to publish a capacity advert, in milliseconds.
    pub advert_interval_ms: u64,
    /// Invoke requests accepted from one peer per second.
    pub invoke_rate_per_peer: f64,
    /// Requests of one peer the node works on at once (calls, fetches, syncs).
    pub max_requests_per_peer: usize,
    /// Established peer connections at most.
    pub max_connections: u32,
    /// Distinct peers of one IPv4 /24 or IPv6 /48 connected at once.
    pub max_peers_per_subnet: usize,
    /// Relay circuits for peers behind NATs (for well-connected nodes that opt in).
    pub relay_server: bool,
    /// Relays to keep a reservation on (`…/p2p/<relay id>`), whatever AutoNAT says.
    pub relays: Vec<Multiaddr>,
}

impl Default for NetSettings {
    fn default() -> Self {
        let addr = |s: String| s.parse::<Multiaddr>().ok();
        Self {
            listen: [
                cfg!(feature = "quic")
                    .then(|| addr(format!("/ip4/0.0.0.0/udp/{DEFAULT_P2P_PORT}/quic-v1")))
                    .flatten(),
                addr(format!("/ip4/0.0.0.0/tcp/{DEFAULT_P2P_PORT}")),
            ]
            .into_iter()
            .flatten()
            .collect(),
            bootstrap: Vec::new(),
            external: Vec::new(),
            mdns: true,
            advert_interval_ms: 2_500,
            invoke_rate_per_peer: 10_000.0,
            max_requests_per_peer: 64,
            max_connections: 256,
            max_peers_per_subnet: kith_protocol::subnet::MAX_PEERS_PER_SUBNET,
            relay_server: false,
            relays: Vec::new(),
        }
    }
}

/// The device class to advertise when none is configured: `pi` on ARM, else `laptop`.
pub fn default_device() -> DeviceClass {
    if cfg!(any(target_arch = "aarch64", target_arch = "arm")) {
        DeviceClass::Pi
    } else {
        DeviceClass::Laptop
    }
}

impl NodeConfig {
    /// The defaults, with data in `data_dir`.
    pub fn with_data_dir(data_dir: PathBuf) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            data_dir,
            http: DEFAULT_HTTP
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7070))),
            caps: Caps::default(),
            max_concurrent_calls: cores,
            max_queued_calls: 256,
            attempts: kith_protocol::attempt::Config::default(),
            cpu_share: 1.0,
            store_budget_bytes: 1024 * 1024 * 1024,
            device: default_device(),
            net: Some(NetSettings::default()),
            trust: Vec::new(),
            trusted_only: false,
            offer_hours: None,
            state: crate::state::StateLimits::default(),
            compile_workers: (cores / 2).max(1),
            compile_timeout_ms: 20_000,
            backend: crate::runtime::Backend::default(),
            api: ApiSettings::default(),
        }
    }
}

/// The platform's default data directory: `$KITH_DATA_DIR`, else
/// `$XDG_DATA_HOME/kith`, else `$HOME/.local/share/kith`, else `./kith-data`.
pub fn default_data_dir() -> PathBuf {
    kith_sdk::client::default_data_dir()
}

/// A device profile: caps that suit a kind of device, below the settings file and the
/// flags (`kith up --profile pi`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// A Raspberry Pi: 2 calls at once, half the CPU, 128 MiB per call, 512 MiB store.
    Pi,
    /// A home router: 1 call at once, a quarter of the CPU, 32 MiB per call, 64 MiB store.
    Router,
    /// A cloud VM or server: every core, 1 GiB per call, 8 GiB store.
    Vm,
}

impl Profile {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pi => "pi",
            Self::Router => "router",
            Self::Vm => "vm",
        }
    }
}
