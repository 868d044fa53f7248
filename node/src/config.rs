//! Node configuration: embedded defaults, overridden by flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use kith_protocol::Caps;

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
    /// Disk budget for modules and compiled artifacts, in bytes.
    pub store_budget_bytes: u64,
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
            store_budget_bytes: 1024 * 1024 * 1024,
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
