//! The table of settings: each one's key, help, check, effect, display and profile
//! values.

use std::path::PathBuf;

use super::values::{
    addrs, cores, net, none, parse_device, positive, profile_of, show_addrs, usize_of,
};
use super::{Apply, Setting};
use crate::config::Profile;

/// The caps of [`kith_protocol::Caps`], each a positive integer.
macro_rules! cap {
    ($key:literal, $field:ident, $help:literal, $profile:expr) => {
        Setting {
            key: $key,
            help: $help,
            value_name: "N",
            apply: Apply::Int(|d, v| {
                d.config.caps.$field = positive(v)?;
                Ok(())
            }),
            show: |c| c.caps.$field.to_string(),
            profile: $profile,
        }
    };
}

/// Every setting, in the order `kith config show` prints them.
pub(crate) const SETTINGS: &[Setting] = &[
    Setting {
        key: "profile",
        help: "Caps that suit a kind of device: pi, router or vm. The settings file and flags override what it sets",
        value_name: "PROFILE",
        apply: Apply::Text(|_, v| profile_of(v).map(|_| ())),
        show: |_| String::new(),
        profile: none,
    },
    Setting {
        key: "data_dir",
        help: "Data directory (identity, store). Default: $KITH_DATA_DIR, else $XDG_DATA_HOME/kith, else ~/.local/share/kith",
        value_name: "DIR",
        apply: Apply::Text(|d, v| {
            d.config.data_dir = PathBuf::from(v);
            Ok(())
        }),
        show: |c| c.data_dir.display().to_string(),
        profile: none,
    },
    Setting {
        key: "http",
        help: "HTTP API address. On an address other than loopback, every request needs the API token (the file api-token in the data dir)",
        value_name: "ADDR",
        apply: Apply::Text(|d, v| {
            d.config.http = v
                .parse()
                .map_err(|_| format!("{v:?} is not an address like 127.0.0.1:7070"))?;
            Ok(())
        }),
        show: |c| c.http.to_string(),
        profile: none,
    },
    Setting {
        key: "max_concurrent_calls",
        help: "Calls running at once (default: number of cores)",
        value_name: "N",
        apply: Apply::Int(|d, v| {
            d.config.max_concurrent_calls = usize_of(v)?;
            Ok(())
        }),
        show: |c| c.max_concurrent_calls.to_string(),
        profile: |p| {
            Some(match p {
                Profile::Pi => "2".into(),
                Profile::Router => "1".into(),
                Profile::Vm => cores().to_string(),
            })
        },
    },
    Setting {
        key: "max_queued_calls",
        help: "Calls waiting for a slot before new ones are refused as busy",
        value_name: "N",
        apply: Apply::Int(|d, v| {
            d.config.max_queued_calls = usize_of(v)?;
            Ok(())
        }),
        show: |c| c.max_queued_calls.to_string(),
        profile: |p| {
            Some(
                match p {
                    Profile::Pi => "32",
                    Profile::Router => "8",
                    Profile::Vm => "1024",
                }
                .into(),
            )
        },
    },
    Setting {
        key: "max_attempts",
        help: "Candidates one call tries (this node and peers) before it fails, 1 to 16",
        value_name: "N",
        apply: Apply::Int(|d, v| {
            if !(1..=16).contains(&v) {
                return Err(format!("must be 1 to 16 (got {v})"));
            }
            d.config.attempts.max_attempts = usize_of(v)?;
            Ok(())
        }),
        show: |c| c.attempts.max_attempts.to_string(),
        profile: none,
    },
    Setting {
        key: "cpu_share",
        help: "Share of this machine's CPU that calls may use on average, in (0, 1]",
        value_name: "F",
        apply: Apply::Float(|d, v| {
            if !(v > 0.0 && v <= 1.0) {
                return Err(format!("must be above 0 and at most 1 (got {v})"));
            }
            d.config.cpu_share = v;
            Ok(())
        }),
        show: |c| c.cpu_share.to_string(),
        profile: |p| {
            Some(
                match p {
                    Profile::Pi => "0.5",
                    Profile::Router => "0.25",
                    Profile::Vm => "1",
                }
                .into(),
            )
        },
    },
    Setting {
        key: "store_budget_bytes",
        help: "Disk budget for modules and compiled code, in bytes",
        value_name: "BYTES",
        apply: Apply::Int(|d, v| {
            d.config.store_budget_bytes = v;
            Ok(())
        }),
        show: |c| c.store_budget_bytes.to_string(),
        profile: |p| {
            Some(
                match p {
                    Profile::Pi => 512u64 << 20,
                    Profile::Router => 64 << 20,
                    Profile::Vm => 8 << 30,
                }
                .to_string(),
            )
        },
    },
    Setting {
        key: "state_budget_bytes",
        help: "Disk budget for application state (all documents together), in bytes",
        value_name: "BYTES",
        apply: Apply::Int(|d, v| {
            d.config.state.budget_bytes = v;
            Ok(())
        }),
        show: |c| c.state.budget_bytes.to_string(),
        profile: |p| {
            Some(
                match p {
                    Profile::Pi => 128u64 << 20,
                    Profile::Router => 16 << 20,
                    Profile::Vm => 4 << 30,
                }
                .to_string(),
            )
        },
    },
    Setting {
        key: "max_doc_bytes",
        help: "Largest state document, in bytes",
        value_name: "BYTES",
        apply: Apply::Int(|d, v| {
            if v < 4096 {
                return Err(format!("must be at least 4096 (got {v})"));
            }
            d.config.state.max_doc_bytes = v;
            Ok(())
        }),
        show: |c| c.state.max_doc_bytes.to_string(),
        profile: none,
    },
    Setting {
        key: "state_namespace",
        help: "Host only documents of this publisher namespace (a namespace id; repeatable; default: any)",
        value_name: "NAMESPACE",
        apply: Apply::List(|d, list| {
            for ns in list {
                let ns = ns
                    .parse()
                    .map_err(|_| format!("{ns}: a namespace id is 64 hex digits"))?;
                d.config.state.namespaces.push(ns);
            }
            Ok(())
        }),
        show: |c| {
            c.state
                .namespaces
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        },
        profile: none,
    },
    Setting {
        key: "device_class",
        help: "Device class to advertise: thermostat, router, pi, phone, laptop, server",
        value_name: "CLASS",
        apply: Apply::Text(|d, v| {
            d.config.device = parse_device(v)?;
            Ok(())
        }),
        show: |c| {
            serde_json::to_value(c.device)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        },
        profile: |p| {
            Some(
                match p {
                    Profile::Pi => "pi",
                    Profile::Router => "router",
                    Profile::Vm => "server",
                }
                .into(),
            )
        },
    },
    cap!(
        "max_module_bytes",
        max_module_bytes,
        "Largest module accepted, in bytes",
        |p| Some(
            match p {
                Profile::Pi => 8u64 << 20,
                Profile::Router => 2 << 20,
                Profile::Vm => 64 << 20,
            }
            .to_string()
        )
    ),
    cap!(
        "max_memory_bytes",
        max_memory_bytes,
        "Largest guest memory granted to a call, in bytes",
        |p| Some(
            match p {
                Profile::Pi => 128u64 << 20,
                Profile::Router => 32 << 20,
                Profile::Vm => 1 << 30,
            }
            .to_string()
        )
    ),
    cap!(
        "max_table_elements",
        max_table_elements,
        "Most elements granted to each of a call's tables",
        none
    ),
    cap!(
        "max_fuel",
        max_fuel,
        "Largest fuel budget granted to a call",
        none
    ),
    cap!(
        "max_timeout_ms",
        max_timeout_ms,
        "Longest wall-clock limit granted to a call, in milliseconds",
        none
    ),
    cap!(
        "max_input_bytes",
        max_input_bytes,
        "Largest call input, in bytes",
        none
    ),
    cap!(
        "max_output_bytes",
        max_output_bytes,
        "Largest call output, in bytes",
        none
    ),
    Setting {
        key: "compile_workers",
        help: "Modules compiled at once, on threads of their own (default: half the cores)",
        value_name: "N",
        apply: Apply::Int(|d, v| {
            d.config.compile_workers = usize_of(positive(v)?)?;
            Ok(())
        }),
        show: |c| c.compile_workers.to_string(),
        profile: none,
    },
    Setting {
        key: "backend",
        help: "What runs functions: cranelift (compiles to machine code), interpreter (wasmi: no compiler, slower, every device), or auto (cranelift where it can generate code for this machine, else the interpreter)",
        value_name: "BACKEND",
        apply: Apply::Text(|d, v| {
            d.config.backend = v.parse()?;
            Ok(())
        }),
        show: |c| c.backend.to_string(),
        profile: none,
    },
    Setting {
        key: "compile_timeout_ms",
        help: "Longest a module may take to compile, in milliseconds; slower modules are refused",
        value_name: "MS",
        apply: Apply::Int(|d, v| {
            d.config.compile_timeout_ms = positive(v)?;
            Ok(())
        }),
        show: |c| c.compile_timeout_ms.to_string(),
        profile: |p| match p {
            Profile::Pi | Profile::Router => Some("60000".into()),
            Profile::Vm => None,
        },
    },
    Setting {
        key: "offline",
        help: "Run alone: no peer network at all",
        value_name: "",
        apply: Apply::Bool(|d, v| d.offline = v),
        show: |c| c.net.is_none().to_string(),
        profile: none,
    },
    Setting {
        key: "listen",
        help: "Peer-network address to listen on (repeatable). Default: QUIC and TCP on all interfaces, port 7071",
        value_name: "MULTIADDR",
        apply: Apply::List(|d, list| {
            if !list.is_empty() {
                d.net.listen = addrs(list)?;
            }
            Ok(())
        }),
        show: |c| show_addrs(&net(c).listen),
        profile: none,
    },
    Setting {
        key: "bootstrap",
        help: "Peer to join through, `…/p2p/<peer id>` (repeatable)",
        value_name: "MULTIADDR",
        apply: Apply::List(|d, list| {
            d.net.bootstrap = addrs(list)?;
            Ok(())
        }),
        show: |c| show_addrs(&net(c).bootstrap),
        profile: none,
    },
    Setting {
        key: "external_address",
        help: "Extra address to announce to peers, e.g. a port forward (repeatable)",
        value_name: "MULTIADDR",
        apply: Apply::List(|d, list| {
            d.net.external = addrs(list)?;
            Ok(())
        }),
        show: |c| show_addrs(&net(c).external),
        profile: none,
    },
    Setting {
        key: "relay",
        help: "Keep a reservation on this relay (`…/p2p/<relay id>`), so peers reach this node through it even before AutoNAT has found it is behind a NAT (repeatable)",
        value_name: "MULTIADDR",
        apply: Apply::List(|d, list| {
            let relays = addrs(list)?;
            for relay in &relays {
                let ends_with_id = matches!(
                    relay.iter().last(),
                    Some(libp2p::multiaddr::Protocol::P2p(_))
                );
                if !ends_with_id {
                    return Err(format!(
                        "{relay}: a relay address must end with /p2p/<relay id>"
                    ));
                }
            }
            d.net.relays = relays;
            Ok(())
        }),
        show: |c| show_addrs(&net(c).relays),
        profile: none,
    },
    Setting {
        key: "relay_server",
        help: "Relay circuits for peers behind NATs (for well-connected nodes; off by default)",
        value_name: "",
        apply: Apply::Bool(|d, v| d.net.relay_server = v),
        show: |c| net(c).relay_server.to_string(),
        profile: none,
    },
    Setting {
        key: "no_mdns",
        help: "Do not discover peers on the LAN with mDNS",
        value_name: "",
        apply: Apply::Bool(|d, v| d.net.mdns = !v),
        show: |c| (!net(c).mdns).to_string(),
        profile: none,
    },
    Setting {
        key: "advert_interval_ms",
        help: "The advert heartbeat: how often subscribers get this node's load, changed or not, in milliseconds (below 500, 500 is used)",
        value_name: "MS",
        apply: Apply::Int(|d, v| {
            if v < 100 {
                return Err("must be at least 100".into());
            }
            d.net.advert_interval_ms = v;
            Ok(())
        }),
        show: |c| net(c).advert_interval_ms.to_string(),
        profile: none,
    },
    Setting {
        key: "invoke_rate_per_peer",
        help: "Calls one peer may ask this node to run per second (burst: 4x); beyond it the peer is answered `rate_limited`",
        value_name: "N",
        apply: Apply::Float(|d, v| {
            if !(v.is_finite() && v > 0.0) {
                return Err("must be a positive number of calls per second".into());
            }
            d.net.invoke_rate_per_peer = v;
            Ok(())
        }),
        show: |c| net(c).invoke_rate_per_peer.to_string(),
        profile: none,
    },
    Setting {
        key: "max_peers_per_subnet",
        help: "Distinct peers of one IPv4 /24 or IPv6 /48 connected at once (loopback not counted); a further peer's connection is closed as it opens",
        value_name: "N",
        apply: Apply::Int(|d, v| {
            if !(1..=100_000).contains(&v) {
                return Err(format!("must be 1 to 100000 (got {v})"));
            }
            d.net.max_peers_per_subnet =
                usize::try_from(v).map_err(|_| format!("{v} is too large"))?;
            Ok(())
        }),
        show: |c| net(c).max_peers_per_subnet.to_string(),
        profile: none,
    },
    Setting {
        key: "max_connections",
        help: "Peer connections held at once, at most (8 of them kept for this node's own dials); beyond it new connections are refused",
        value_name: "N",
        apply: Apply::Int(|d, v| {
            if !(10..=100_000).contains(&v) {
                return Err(format!("must be 10 to 100000 (got {v})"));
            }
            d.net.max_connections = u32::try_from(v).map_err(|_| format!("{v} is too large"))?;
            Ok(())
        }),
        show: |c| net(c).max_connections.to_string(),
        profile: |p| {
            Some(
                match p {
                    Profile::Pi => "128",
                    Profile::Router => "48",
                    Profile::Vm => "1024",
                }
                .into(),
            )
        },
    },
    Setting {
        key: "max_requests_per_peer",
        help: "Requests of one peer (calls, fetches, syncs) this node works on at once; beyond it a call is answered `busy` and other requests are dropped",
        value_name: "N",
        apply: Apply::Int(|d, v| {
            if v == 0 {
                return Err("must be at least 1".into());
            }
            d.net.max_requests_per_peer = usize_of(v)?;
            Ok(())
        }),
        show: |c| net(c).max_requests_per_peer.to_string(),
        profile: |p| {
            Some(
                match p {
                    Profile::Pi => "32",
                    Profile::Router => "8",
                    Profile::Vm => "64",
                }
                .into(),
            )
        },
    },
    Setting {
        key: "trust",
        help: "A publisher namespace to trust: its id, or the name of a key on this node (repeatable)",
        value_name: "NAMESPACE",
        apply: Apply::List(|d, list| {
            d.config.trust = list.to_vec();
            Ok(())
        }),
        show: |c| c.trust.join(","),
        profile: none,
    },
    Setting {
        key: "trusted_only",
        help: "Run only functions that an alias of a trusted publisher currently points at (default: run any function by hash)",
        value_name: "",
        apply: Apply::Bool(|d, v| d.config.trusted_only = v),
        show: |c| c.trusted_only.to_string(),
        profile: none,
    },
    Setting {
        key: "offer_hours",
        help: "Local hours FROM-TO when this node offers capacity (e.g. 8-23, or 22-7 across midnight); outside them it advertises itself full and refuses calls as busy",
        value_name: "FROM-TO",
        apply: Apply::Text(|d, v| {
            d.config.offer_hours = Some(v.parse()?);
            Ok(())
        }),
        show: |c| c.offer_hours.map_or("always".to_owned(), |h| h.to_string()),
        profile: none,
    },
    Setting {
        key: "api_host",
        help: "A host name the HTTP API answers to besides IP addresses and localhost, e.g. kith.local (repeatable); requests naming any other host are refused",
        value_name: "NAME",
        apply: Apply::List(|d, list| {
            for host in list {
                if host.is_empty() || host.contains(['/', ' ', '@']) {
                    return Err(format!("{host:?} is not a host name"));
                }
            }
            d.config.api.hosts = list.iter().map(|h| h.to_ascii_lowercase()).collect();
            Ok(())
        }),
        show: |c| c.api.hosts.join(","),
        profile: none,
    },
    Setting {
        key: "api_token_always",
        help: "Require the API token on every request, on a loopback address too",
        value_name: "",
        apply: Apply::Bool(|d, v| d.config.api.token_always = v),
        show: |c| c.api.token_always.to_string(),
        profile: none,
    },
    Setting {
        key: "api_token_for_reads",
        help: "Where the API token is required, require it for the status page, /metrics, /v1/status and /v1/peers too",
        value_name: "",
        apply: Apply::Bool(|d, v| d.config.api.token_for_reads = v),
        show: |c| c.api.token_for_reads.to_string(),
        profile: none,
    },
    Setting {
        key: "api_max_requests",
        help: "HTTP API requests handled at once; beyond it the API answers busy",
        value_name: "N",
        apply: Apply::Int(|d, v| {
            d.config.api.max_requests = usize_of(positive(v)?)?;
            Ok(())
        }),
        show: |c| c.api.max_requests.to_string(),
        profile: |p| match p {
            Profile::Router => Some("16".into()),
            _ => None,
        },
    },
];
