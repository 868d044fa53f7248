//! Reading and printing setting values: numbers, addresses, device classes,
//! profiles.

use kith_protocol::capacity::DeviceClass;
use libp2p::Multiaddr;

use crate::config::{NetSettings, NodeConfig, Profile};

/// No profile sets this.
pub(super) fn none(_: Profile) -> Option<String> {
    None
}

/// Cores of this machine.
pub(super) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `v`, refused when 0.
pub(super) fn positive(v: u64) -> Result<u64, String> {
    if v == 0 {
        return Err("must be greater than 0".into());
    }
    Ok(v)
}

/// `v` as a usize, refused when too large.
pub(super) fn usize_of(v: u64) -> Result<usize, String> {
    usize::try_from(v).map_err(|_| format!("{v} is too large"))
}

/// Multiaddrs from their text, naming the one that is not.
pub(super) fn addrs(list: &[String]) -> Result<Vec<Multiaddr>, String> {
    list.iter()
        .map(|a| a.parse().map_err(|_| format!("{a:?} is not a multiaddr")))
        .collect()
}

/// Multiaddrs as `config show` prints them.
pub(super) fn show_addrs(v: &[Multiaddr]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The network settings (defaults when offline).
pub(super) fn net(c: &NodeConfig) -> NetSettings {
    c.net.clone().unwrap_or_default()
}

/// A device class by name, or an error listing the names.
pub fn parse_device(s: &str) -> Result<DeviceClass, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
        format!("unknown device class {s:?}; use thermostat, router, pi, phone, laptop or server")
    })
}

/// A profile by name.
pub(super) fn profile_of(s: &str) -> Result<Profile, String> {
    match s {
        "pi" => Ok(Profile::Pi),
        "router" => Ok(Profile::Router),
        "vm" => Ok(Profile::Vm),
        other => Err(format!("unknown profile {other:?}; use pi, router, vm")),
    }
}
