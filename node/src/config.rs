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
                addr(format!("/ip4/0.0.0.0/udp/{DEFAULT_P2P_PORT}/quic-v1")),
                addr(format!("/ip4/0.0.0.0/tcp/{DEFAULT_P2P_PORT}")),
            ]
            .into_iter()
            .flatten()
            .collect(),
            bootstrap: Vec::new(),
            external: Vec::new(),
            mdns: true,
            advert_interval_ms: 2_000,
            invoke_rate_per_peer: 10_000.0,
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
            cpu_share: 1.0,
            store_budget_bytes: 1024 * 1024 * 1024,
            device: default_device(),
            net: Some(NetSettings::default()),
            trust: Vec::new(),
            trusted_only: false,
            offer_hours: None,
            state: crate::state::StateLimits::default(),
        }
    }
}

/// The platform's default data directory: `$KITH_DATA_DIR`, else
/// `$XDG_DATA_HOME/kith`, else `$HOME/.local/share/kith`, else `./kith-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KITH_DATA_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("kith");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".local/share/kith");
    }
    PathBuf::from("kith-data")
}

/// A device profile: caps that suit a kind of device, below the settings file and the
/// flags (`kith up --profile pi`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
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

    /// The settings it sets, as `(key, value)` with the keys of the settings file.
    pub fn settings(self) -> Vec<(&'static str, String)> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let (calls, queue, share, memory, store, module, device) = match self {
            Self::Pi => (2, 32, 0.5, 128u64 << 20, 512u64 << 20, 8u64 << 20, "pi"),
            Self::Router => (1, 8, 0.25, 32 << 20, 64 << 20, 2 << 20, "router"),
            Self::Vm => (cores, 1024, 1.0, 1 << 30, 8 << 30, 64 << 20, "server"),
        };
        let state: u64 = match self {
            Self::Pi => 128 << 20,
            Self::Router => 16 << 20,
            Self::Vm => 4 << 30,
        };
        vec![
            ("max_concurrent_calls", calls.to_string()),
            ("max_queued_calls", queue.to_string()),
            ("cpu_share", share.to_string()),
            ("max_memory_bytes", memory.to_string()),
            ("store_budget_bytes", store.to_string()),
            ("max_module_bytes", module.to_string()),
            ("state_budget_bytes", state.to_string()),
            ("device_class", device.to_owned()),
        ]
    }
}

/// The settings file of `kith up --config FILE` (TOML). Keys are the flags' names with
/// underscores; unknown keys are refused, so a typo never silently does nothing.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct FileConfig {
    pub profile: Option<Profile>,
    pub data_dir: Option<PathBuf>,
    pub http: Option<SocketAddr>,
    pub max_concurrent_calls: Option<usize>,
    pub max_queued_calls: Option<usize>,
    pub store_budget_bytes: Option<u64>,
    pub state_budget_bytes: Option<u64>,
    pub max_doc_bytes: Option<u64>,
    #[serde(default)]
    pub state_namespace: Vec<String>,
    pub max_module_bytes: Option<u64>,
    pub max_memory_bytes: Option<u64>,
    pub max_fuel: Option<u64>,
    pub max_timeout_ms: Option<u64>,
    pub max_input_bytes: Option<u64>,
    pub max_output_bytes: Option<u64>,
    pub cpu_share: Option<f64>,
    pub device_class: Option<DeviceClass>,
    #[serde(default)]
    pub listen: Vec<String>,
    #[serde(default)]
    pub bootstrap: Vec<String>,
    #[serde(default)]
    pub external_address: Vec<String>,
    #[serde(default)]
    pub relay: Vec<String>,
    pub relay_server: Option<bool>,
    pub no_mdns: Option<bool>,
    pub offline: Option<bool>,
    pub advert_interval_ms: Option<u64>,
    pub invoke_rate_per_peer: Option<f64>,
    #[serde(default)]
    pub trust: Vec<String>,
    pub trusted_only: Option<bool>,
    pub offer_hours: Option<String>,
}

/// Why a settings file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FileConfigError {
    /// It could not be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// It is not valid TOML, or has an unknown key or a value of the wrong type.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where (line and column).
        message: String,
    },
}

impl FileConfig {
    /// Reads and parses `path`.
    ///
    /// # Errors
    /// See [`FileConfigError`].
    pub fn load(path: &std::path::Path) -> Result<Self, FileConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| FileConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| FileConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }
}
