//! The `kith` command line.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use kith_sdk::client::{Client, ClientError};

use crate::config::{self, NodeConfig};

/// kith: a peer node for networked computation.
#[derive(Debug, Parser)]
#[command(name = "kith", version, about)]
pub struct Cli {
    /// URL of the node's HTTP API, for commands that talk to a running node.
    #[arg(
        long,
        global = true,
        env = "KITH_API",
        default_value = "http://127.0.0.1:7070"
    )]
    pub api: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a node (embedded defaults; no config file needed).
    Up(Box<UpArgs>),
    /// Publish a WebAssembly module; prints its function id.
    Publish {
        /// The .wasm file.
        file: PathBuf,
    },
    /// Call a function; writes its output to stdout.
    Call {
        /// The function id (64 hex characters), or an alias NAMESPACE/NAME@CHANNEL
        /// (namespace id, or the name of a key on the node).
        reference: String,
        /// Routing key for split aliases: the same key always gets the same version
        /// (e.g. a user id). Default: random.
        #[arg(long)]
        route_key: Option<String>,
        /// Input text.
        #[arg(long, conflicts_with = "input_file")]
        input: Option<String>,
        /// Read the input from a file.
        #[arg(long)]
        input_file: Option<PathBuf>,
        /// Also print the receipt (who ran it, fuel, wall time) to stderr.
        #[arg(long, short)]
        verbose: bool,
        /// Print the placement ranking (each candidate's peer id and cost terms) to stderr.
        #[arg(long)]
        explain: bool,
    },
    /// List connected and known peers.
    Peers {
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a stored function's manifest and size.
    Info {
        /// The function id.
        reference: String,
    },
    /// Show the node's status.
    Status {
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a .wasm file against the ABI locally and print its manifest.
    Inspect {
        /// The .wasm file.
        file: PathBuf,
    },
    /// Work with the manifest section of a .wasm file (for any source language).
    #[command(subcommand)]
    Manifest(ManifestCommand),
    /// The node's configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Running the node as a system service.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Publisher keys: a key's public half is a namespace for aliases.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Aliases NAMESPACE/NAME@CHANNEL: move, split, promote, roll back, inspect.
    #[command(subcommand)]
    Alias(AliasCommand),
    /// Application state: Automerge documents NAMESPACE/NAME that peers sync.
    #[command(subcommand)]
    State(StateCommand),
}

/// `kith state …` (NAMESPACE: a namespace id, or the name of a key on the node;
/// PATH: keys separated by `/`, e.g. `/cart/items/0`).
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Print the value at PATH (the whole document without PATH) as JSON.
    Get {
        /// The document, NAMESPACE/NAME.
        doc: String,
        /// A key path.
        path: Option<String>,
    },
    /// Put a JSON value at PATH (maps on the way are created).
    Put {
        /// The document, NAMESPACE/NAME.
        doc: String,
        /// A key path.
        path: String,
        /// The value, as JSON (a string needs its quotes: '"tea"').
        value: String,
    },
    /// Delete the value at PATH.
    Delete {
        /// The document.
        doc: String,
        /// A key path.
        path: String,
    },
    /// Add N (default 1) to the counter at PATH; concurrent increments add up.
    Increment {
        /// The document.
        doc: String,
        /// A key path.
        path: String,
        /// How much to add (may be negative).
        #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
        by: i64,
    },
    /// Append a JSON value to the list at PATH.
    Append {
        /// The document.
        doc: String,
        /// A key path.
        path: String,
        /// The value, as JSON.
        value: String,
    },
    /// Write the document as a standard Automerge binary to stdout.
    Export {
        /// The document.
        doc: String,
    },
    /// Merge a standard Automerge binary into the document.
    Import {
        /// The document.
        doc: String,
        /// The file.
        file: PathBuf,
    },
    /// Print the document's heads (Automerge change hashes).
    Heads {
        /// The document.
        doc: String,
    },
    /// Hold the document on this node, and fetch it from peers that have it.
    Pin {
        /// The document.
        doc: String,
    },
    /// List the documents this node holds.
    List,
}

/// `kith config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the configuration `kith up` would run with these flags, and where each
    /// value comes from: default, profile, file or flag.
    Show {
        /// Print JSON: `[{"key", "value", "source"}]`.
        #[arg(long)]
        json: bool,
        /// The same flags as `kith up`.
        #[command(flatten)]
        args: Box<UpArgs>,
    },
}

/// `kith service …`
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Print a systemd unit that runs this binary as a service (save it as
    /// /etc/systemd/system/kith.service, then `systemctl enable --now kith`).
    Unit {
        /// Settings file the service starts with.
        #[arg(long, default_value = "/etc/kith.toml")]
        config: PathBuf,
        /// User (and group) to run as.
        #[arg(long, default_value = "kith")]
        user: String,
        /// Data directory.
        #[arg(long, default_value = "/var/lib/kith")]
        data_dir: PathBuf,
    },
}

/// `kith key …`
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a publisher key on the node (kept in its data dir, mode 0600).
    New {
        /// A local name for it (a petname: `NAME/app@prod` works on this node).
        name: String,
    },
    /// List the node's publisher keys and their namespace ids.
    List,
}

/// `kith alias …` (REF is NAMESPACE/NAME@CHANNEL)
#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Point REF at one function.
    Set {
        /// The alias.
        reference: String,
        /// The function id.
        function: String,
    },
    /// Split REF over several functions by weight, e.g. HASH1=90 HASH2=10.
    Split {
        /// The alias.
        reference: String,
        /// FUNCTION=WEIGHT pairs.
        #[arg(required = true, num_args = 1..)]
        targets: Vec<String>,
    },
    /// Point TO at FROM's current targets (e.g. me/app@staging me/app@prod).
    Promote {
        /// The alias to copy.
        from: String,
        /// The alias to move.
        to: String,
    },
    /// Point REF back at its previous record's targets.
    Rollback {
        /// The alias.
        reference: String,
    },
    /// Show REF's current record.
    Show {
        /// The alias.
        reference: String,
    },
    /// Show every record of REF, oldest first.
    History {
        /// The alias.
        reference: String,
    },
    /// List every alias the node knows.
    List,
}

/// `kith manifest …`
#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Write a copy of FILE with JSON as its `kith.manifest` section (replacing any).
    Set {
        /// The .wasm file.
        file: PathBuf,
        /// The manifest as JSON, e.g. '{"fuel": 10000000, "timeout_ms": 1000}'.
        json: String,
        /// Where to write the result.
        #[arg(short, long)]
        output: PathBuf,
    },
}

/// Flags of `kith up`.
#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Caps that suit a kind of device: pi, router or vm. The settings file and flags
    /// override what it sets.
    #[arg(long, value_enum)]
    pub profile: Option<config::Profile>,
    /// A TOML file with settings; every flag below has a key of the same name with
    /// underscores (e.g. `bootstrap = ["/ip4/…/p2p/…"]`). Flags override it.
    #[arg(long, env = "KITH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (identity, store). Default: $KITH_DATA_DIR, else
    /// $XDG_DATA_HOME/kith, else ~/.local/share/kith.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// HTTP API address.
    #[arg(long)]
    pub http: Option<std::net::SocketAddr>,
    /// Calls running at once (default: number of cores).
    #[arg(long)]
    pub max_concurrent_calls: Option<usize>,
    /// Calls waiting for a slot before new ones are refused as busy.
    #[arg(long)]
    pub max_queued_calls: Option<usize>,
    /// Disk budget for modules and compiled code, in bytes.
    #[arg(long)]
    pub store_budget_bytes: Option<u64>,
    /// Disk budget for application state (all documents together), in bytes.
    #[arg(long)]
    pub state_budget_bytes: Option<u64>,
    /// Largest state document, in bytes.
    #[arg(long)]
    pub max_doc_bytes: Option<u64>,
    /// Host only documents of this publisher namespace (a namespace id; repeatable;
    /// default: any).
    #[arg(long, value_name = "NAMESPACE")]
    pub state_namespace: Vec<String>,
    /// Largest module accepted, in bytes.
    #[arg(long)]
    pub max_module_bytes: Option<u64>,
    /// Largest guest memory granted to a call, in bytes.
    #[arg(long)]
    pub max_memory_bytes: Option<u64>,
    /// Largest fuel budget granted to a call.
    #[arg(long)]
    pub max_fuel: Option<u64>,
    /// Longest wall-clock limit granted to a call, in milliseconds.
    #[arg(long)]
    pub max_timeout_ms: Option<u64>,
    /// Largest call input, in bytes.
    #[arg(long)]
    pub max_input_bytes: Option<u64>,
    /// Largest call output, in bytes.
    #[arg(long)]
    pub max_output_bytes: Option<u64>,
    /// Peer-network address to listen on (repeatable). Default: QUIC and TCP on all
    /// interfaces, port 7071.
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<libp2p::Multiaddr>,
    /// Peer to join through, `…/p2p/<peer id>` (repeatable).
    #[arg(long, value_name = "MULTIADDR")]
    pub bootstrap: Vec<libp2p::Multiaddr>,
    /// Extra address to announce to peers, e.g. a port forward (repeatable).
    #[arg(long, value_name = "MULTIADDR")]
    pub external_address: Vec<libp2p::Multiaddr>,
    /// Keep a reservation on this relay (`…/p2p/<relay id>`), so peers reach this node
    /// through it even before AutoNAT has found it is behind a NAT (repeatable).
    #[arg(long, value_name = "MULTIADDR")]
    pub relay: Vec<libp2p::Multiaddr>,
    /// Relay circuits for peers behind NATs (for well-connected nodes; off by default).
    #[arg(long)]
    pub relay_server: bool,
    /// Do not discover peers on the LAN with mDNS.
    #[arg(long)]
    pub no_mdns: bool,
    /// Run alone: no peer network at all.
    #[arg(long)]
    pub offline: bool,
    /// Share of this machine's CPU that calls may use on average, in (0, 1].
    #[arg(long, value_name = "F")]
    pub cpu_share: Option<f64>,
    /// How often to publish a capacity advert, in milliseconds.
    #[arg(long)]
    pub advert_interval_ms: Option<u64>,
    /// Calls one peer may ask this node to run per second (burst: 4x); beyond it the
    /// peer is answered `rate_limited`.
    #[arg(long, value_name = "N")]
    pub invoke_rate_per_peer: Option<f64>,
    /// Device class to advertise: thermostat, router, pi, phone, laptop, server.
    #[arg(long, value_parser = parse_device)]
    pub device_class: Option<kith_protocol::capacity::DeviceClass>,
    /// A publisher namespace to trust: its id, or the name of a key on this node
    /// (repeatable).
    #[arg(long, value_name = "NAMESPACE")]
    pub trust: Vec<String>,
    /// Run only functions that an alias of a trusted publisher currently points at
    /// (default: run any function by hash).
    #[arg(long)]
    pub trusted_only: bool,
    /// Local hours FROM-TO when this node offers capacity (e.g. 8-23, or 22-7 across
    /// midnight); outside them it advertises itself full and refuses calls as busy.
    #[arg(long, value_name = "FROM-TO")]
    pub offer_hours: Option<config::OfferHours>,
}

fn parse_device(s: &str) -> Result<kith_protocol::capacity::DeviceClass, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
        format!("unknown device class {s:?}; use thermostat, router, pi, phone, laptop or server")
    })
}

impl UpArgs {
    /// The node configuration these flags describe.
    ///
    /// # Errors
    /// On values that cannot work (e.g. zero concurrent calls).
    pub fn config(&self) -> anyhow::Result<NodeConfig> {
        self.layered()?.effective()
    }

    /// These flags over the settings file over the profile.
    fn layered(&self) -> anyhow::Result<Self> {
        let file = self
            .config
            .as_ref()
            .map(|p| config::FileConfig::load(p))
            .transpose()?;
        self.layered_with(file)
    }

    /// [`Self::layered`] with the settings file already read.
    fn layered_with(&self, file: Option<config::FileConfig>) -> anyhow::Result<Self> {
        let mut args = match (&self.config, file) {
            (Some(path), Some(file)) => self.clone().with_file(file, path)?,
            _ => self.clone(),
        };
        if let Some(profile) = args.profile {
            args.apply_profile(profile)?;
        }
        Ok(args)
    }

    /// Fills every setting not given by a flag or the file from `profile`.
    fn apply_profile(&mut self, profile: config::Profile) -> anyhow::Result<()> {
        for (key, value) in profile.settings() {
            let int = || value.parse::<u64>().context("profile value");
            match key {
                "max_concurrent_calls" => {
                    self.max_concurrent_calls = self.max_concurrent_calls.or(Some(int()? as usize));
                }
                "max_queued_calls" => {
                    self.max_queued_calls = self.max_queued_calls.or(Some(int()? as usize));
                }
                "cpu_share" => {
                    self.cpu_share = self.cpu_share.or(value.parse().ok());
                }
                "max_memory_bytes" => {
                    self.max_memory_bytes = self.max_memory_bytes.or(Some(int()?))
                }
                "store_budget_bytes" => {
                    self.store_budget_bytes = self.store_budget_bytes.or(Some(int()?));
                }
                "max_module_bytes" => {
                    self.max_module_bytes = self.max_module_bytes.or(Some(int()?))
                }
                "state_budget_bytes" => {
                    self.state_budget_bytes = self.state_budget_bytes.or(Some(int()?));
                }
                "device_class" => {
                    self.device_class = self.device_class.or(parse_device(&value).ok());
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Fills every setting not given as a flag from `file`.
    fn with_file(mut self, f: config::FileConfig, path: &std::path::Path) -> anyhow::Result<Self> {
        let addrs = |key: &str, list: Vec<String>| -> anyhow::Result<Vec<libp2p::Multiaddr>> {
            list.iter()
                .map(|a| {
                    a.parse().with_context(|| {
                        format!("{}: {key}: {a:?} is not a multiaddr", path.display())
                    })
                })
                .collect()
        };
        self.profile = self.profile.or(f.profile);
        self.data_dir = self.data_dir.or(f.data_dir);
        self.http = self.http.or(f.http);
        self.max_concurrent_calls = self.max_concurrent_calls.or(f.max_concurrent_calls);
        self.max_queued_calls = self.max_queued_calls.or(f.max_queued_calls);
        self.store_budget_bytes = self.store_budget_bytes.or(f.store_budget_bytes);
        self.state_budget_bytes = self.state_budget_bytes.or(f.state_budget_bytes);
        self.max_doc_bytes = self.max_doc_bytes.or(f.max_doc_bytes);
        if self.state_namespace.is_empty() {
            self.state_namespace = f.state_namespace;
        }
        self.max_module_bytes = self.max_module_bytes.or(f.max_module_bytes);
        self.max_memory_bytes = self.max_memory_bytes.or(f.max_memory_bytes);
        self.max_fuel = self.max_fuel.or(f.max_fuel);
        self.max_timeout_ms = self.max_timeout_ms.or(f.max_timeout_ms);
        self.max_input_bytes = self.max_input_bytes.or(f.max_input_bytes);
        self.max_output_bytes = self.max_output_bytes.or(f.max_output_bytes);
        self.cpu_share = self.cpu_share.or(f.cpu_share);
        self.advert_interval_ms = self.advert_interval_ms.or(f.advert_interval_ms);
        self.invoke_rate_per_peer = self.invoke_rate_per_peer.or(f.invoke_rate_per_peer);
        self.device_class = self.device_class.or(f.device_class);
        if self.listen.is_empty() {
            self.listen = addrs("listen", f.listen)?;
        }
        if self.bootstrap.is_empty() {
            self.bootstrap = addrs("bootstrap", f.bootstrap)?;
        }
        if self.external_address.is_empty() {
            self.external_address = addrs("external_address", f.external_address)?;
        }
        if self.relay.is_empty() {
            self.relay = addrs("relay", f.relay)?;
        }
        self.relay_server |= f.relay_server.unwrap_or(false);
        self.no_mdns |= f.no_mdns.unwrap_or(false);
        self.offline |= f.offline.unwrap_or(false);
        if self.trust.is_empty() {
            self.trust = f.trust;
        }
        self.trusted_only |= f.trusted_only.unwrap_or(false);
        if self.offer_hours.is_none()
            && let Some(h) = f.offer_hours
        {
            self.offer_hours =
                Some(h.parse().map_err(|e: String| {
                    anyhow::anyhow!("{}: offer_hours: {e}", path.display())
                })?);
        }
        Ok(self)
    }

    fn effective(&self) -> anyhow::Result<NodeConfig> {
        let mut c = NodeConfig::with_data_dir(
            self.data_dir
                .clone()
                .unwrap_or_else(config::default_data_dir),
        );
        if let Some(http) = self.http {
            c.http = http;
        }
        if let Some(v) = self.max_concurrent_calls {
            if v == 0 && self.offline {
                bail!(
                    "--max-concurrent-calls 0 makes a gateway that runs nothing itself; \
                     it needs the peer network, so it cannot be --offline"
                );
            }
            c.max_concurrent_calls = v;
        }
        if let Some(share) = self.cpu_share {
            if !(share > 0.0 && share <= 1.0) {
                bail!("--cpu-share must be above 0 and at most 1 (got {share})");
            }
            c.cpu_share = share;
        }
        if let Some(v) = self.max_queued_calls {
            c.max_queued_calls = v;
        }
        if let Some(v) = self.state_budget_bytes {
            c.state.budget_bytes = v;
        }
        if let Some(v) = self.max_doc_bytes {
            if v < 4096 {
                bail!("--max-doc-bytes must be at least 4096 (got {v})");
            }
            c.state.max_doc_bytes = v;
        }
        for ns in &self.state_namespace {
            let ns: kith_protocol::alias::Namespace = ns.parse().map_err(|_| {
                anyhow::anyhow!("--state-namespace {ns}: a namespace id is 64 hex digits")
            })?;
            c.state.namespaces.push(ns);
        }
        if let Some(v) = self.store_budget_bytes {
            c.store_budget_bytes = v;
        }
        if let Some(d) = self.device_class {
            c.device = d;
        }
        if self.trusted_only && self.trust.is_empty() {
            bail!(
                "--trusted-only needs at least one --trust NAMESPACE, or the node would run nothing"
            );
        }
        c.trust.clone_from(&self.trust);
        c.trusted_only = self.trusted_only;
        c.offer_hours = self.offer_hours;
        if self.offline {
            c.net = None;
        } else if let Some(net) = c.net.as_mut() {
            if !self.listen.is_empty() {
                net.listen.clone_from(&self.listen);
            }
            net.bootstrap.clone_from(&self.bootstrap);
            net.external.clone_from(&self.external_address);
            for relay in &self.relay {
                let ends_with_id = matches!(
                    relay.iter().last(),
                    Some(libp2p::multiaddr::Protocol::P2p(_))
                );
                if !ends_with_id {
                    bail!("--relay {relay}: a relay address must end with /p2p/<relay id>");
                }
            }
            net.relays.clone_from(&self.relay);
            net.relay_server = self.relay_server;
            net.mdns = !self.no_mdns;
            if let Some(ms) = self.advert_interval_ms {
                if ms < 100 {
                    bail!("--advert-interval-ms must be at least 100");
                }
                net.advert_interval_ms = ms;
            }
            if let Some(rate) = self.invoke_rate_per_peer {
                if !(rate.is_finite() && rate > 0.0) {
                    bail!("--invoke-rate-per-peer must be a positive number of calls per second");
                }
                net.invoke_rate_per_peer = rate;
            }
        }
        let caps = &mut c.caps;
        for (value, slot, name) in [
            (
                self.max_module_bytes,
                &mut caps.max_module_bytes,
                "--max-module-bytes",
            ),
            (
                self.max_memory_bytes,
                &mut caps.max_memory_bytes,
                "--max-memory-bytes",
            ),
            (self.max_fuel, &mut caps.max_fuel, "--max-fuel"),
            (
                self.max_timeout_ms,
                &mut caps.max_timeout_ms,
                "--max-timeout-ms",
            ),
            (
                self.max_input_bytes,
                &mut caps.max_input_bytes,
                "--max-input-bytes",
            ),
            (
                self.max_output_bytes,
                &mut caps.max_output_bytes,
                "--max-output-bytes",
            ),
        ] {
            if let Some(v) = value {
                if v == 0 {
                    bail!("{name} must be greater than 0");
                }
                *slot = v;
            }
        }
        Ok(c)
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Runs a parsed command line.
///
/// # Errors
/// Any failure, for printing at the edge.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Up(args) => {
            init_tracing();
            let config = args.config()?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(up(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Publish { file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let p = client(&cli.api)?.publish(bytes).map_err(explain)?;
            println!("{}", p.id);
            Ok(ExitCode::SUCCESS)
        }
        Command::Call {
            reference,
            route_key,
            input,
            input_file,
            verbose,
            explain: explain_placement,
        } => {
            let input = match (input, input_file) {
                (Some(text), _) => text.into_bytes(),
                (None, Some(path)) => std::fs::read(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                (None, None) => {
                    let mut buf = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut buf)
                        .context("cannot read the input from stdin")?;
                    buf
                }
            };
            let c = client(&cli.api)?;
            let out = match (&route_key, explain_placement) {
                (Some(key), _) => c.call_with_key(&reference, input, key),
                (None, true) => c.call_explained(&reference, input),
                (None, false) => c.call(&reference, input),
            }
            .map_err(explain)?;
            std::io::stdout().write_all(&out.output)?;
            std::io::stdout().flush()?;
            if let Some(ranking) = out.placement.as_ref().and_then(|p| p.as_array()) {
                print_ranking(ranking, &out.executed_by);
            }
            if verbose && let Some((alias, seq)) = &out.alias {
                eprintln!("alias {alias} (record {seq})");
            }
            if verbose {
                eprintln!(
                    "function {}\nexecuted by {}\nfuel used {}\nwall time {} µs",
                    out.function, out.executed_by, out.fuel_used, out.wall_us
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Peers { json } => {
            let v = client(&cli.api)?.get_json("/v1/peers").map_err(explain)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_peers(&v);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Key(KeyCommand::New { name }) => {
            let v = client(&cli.api)?.key_new(&name).map_err(explain)?;
            println!(
                "{}  {}",
                v["namespace"].as_str().unwrap_or_default(),
                v["name"].as_str().unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Key(KeyCommand::List) => {
            let v = client(&cli.api)?.get_json("/v1/keys").map_err(explain)?;
            for k in v.as_array().into_iter().flatten() {
                println!(
                    "{}  {}",
                    k["namespace"].as_str().unwrap_or_default(),
                    k["name"].as_str().unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Alias(command) => alias_command(&cli.api, command),
        Command::State(command) => state_command(&cli.api, command),
        Command::Service(ServiceCommand::Unit {
            config,
            user,
            data_dir,
        }) => {
            let exe = std::env::current_exe()
                .ok()
                .and_then(|p| p.canonicalize().ok())
                .unwrap_or_else(|| PathBuf::from("/usr/local/bin/kith"));
            print!("{}", service_unit(&exe, &config, &user, &data_dir));
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Show { json, args }) => {
            let rows = provenance(&args)?;
            if json {
                let v: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|(k, v, s)| serde_json::json!({"key": k, "value": v, "source": s}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).min(60);
                for (k, v, s) in rows {
                    println!("{k:<22} {v:<width$}  {s}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Info { reference } => {
            let v = client(&cli.api)?
                .get_json(&format!("/v1/functions/{reference}"))
                .map_err(explain)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json } => {
            let v = client(&cli.api)?.get_json("/v1/status").map_err(explain)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_status(&v);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Manifest(ManifestCommand::Set { file, json, output }) => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let manifest = kith_protocol::Manifest::parse(json.as_bytes())?;
            let out = kith_protocol::module::with_manifest(&bytes, &manifest)?;
            kith_protocol::module::inspect(&out, u64::MAX).with_context(|| {
                format!(
                    "{} with this manifest is not a valid kith function",
                    file.display()
                )
            })?;
            std::fs::write(&output, &out)
                .with_context(|| format!("cannot write {}", output.display()))?;
            println!("{}", kith_protocol::FunctionId::of(&out));
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect { file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let info = kith_protocol::module::inspect(&bytes, u64::MAX)
                .with_context(|| format!("{} is not a valid kith function", file.display()))?;
            println!("id        {}", kith_protocol::FunctionId::of(&bytes));
            println!("size      {} bytes", info.size);
            println!(
                "manifest  {}{}",
                info.manifest.to_json(),
                if info.has_manifest {
                    ""
                } else {
                    " (defaults: no manifest section)"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A systemd unit for `kith up`. SIGTERM makes the node stop taking calls and let
/// running ones finish (at most `SHUTDOWN_GRACE`), so the stop timeout is above it.
fn service_unit(exe: &Path, config: &Path, user: &str, data_dir: &Path) -> String {
    let grace = crate::SHUTDOWN_GRACE.as_secs();
    format!(
        "# kith peer node: save as /etc/systemd/system/kith.service, then
#   sudo useradd --system --home {data} {user}
#   sudo systemctl daemon-reload && sudo systemctl enable --now kith
[Unit]
Description=kith peer node
After=network-online.target
Wants=network-online.target

[Service]
ExecStart={exe} up --config {config} --data-dir {data}
User={user}
Group={user}
Restart=on-failure
RestartSec=5
# SIGTERM: stop taking calls, let running ones finish (at most {grace} s), exit.
KillSignal=SIGTERM
TimeoutStopSec={stop}
StateDirectory={state}
NoNewPrivileges=true
ProtectSystem=strict
ProtectHome=true
PrivateTmp=true
PrivateDevices=true
ReadWritePaths={data}

[Install]
WantedBy=multi-user.target
",
        exe = exe.display(),
        config = config.display(),
        data = data_dir.display(),
        stop = grace + 10,
        state = data_dir
            .strip_prefix("/var/lib")
            .map_or_else(|_| "kith".into(), |p| p.display().to_string()),
    )
}

/// Every setting `kith up` would use with `args`: key, effective value, source.
fn provenance(args: &UpArgs) -> anyhow::Result<Vec<(&'static str, String, String)>> {
    let file = args
        .config
        .as_ref()
        .map(|p| config::FileConfig::load(p))
        .transpose()?;
    let layered = args.layered_with(file.clone())?;
    let c = layered.effective()?;
    let profile = layered.profile;
    let profile_keys: Vec<&str> = profile
        .map(|p| p.settings().into_iter().map(|(k, _)| k).collect())
        .unwrap_or_default();
    let file_name = args
        .config
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let f = file.as_ref();
    let source = |key: &str, flag: bool, in_file: bool| -> String {
        if flag {
            "flag".to_owned()
        } else if in_file {
            format!("file {file_name}")
        } else if let (Some(p), true) = (profile, profile_keys.contains(&key)) {
            format!("profile {}", p.name())
        } else {
            "default".to_owned()
        }
    };
    let list = |v: &[libp2p::Multiaddr]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let net = c.net.clone().unwrap_or_default();
    let caps = &c.caps;
    let device = serde_json::to_value(c.device)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let rows = vec![
        (
            "profile",
            profile.map_or("none".to_owned(), |p| p.name().to_owned()),
            source(
                "profile",
                args.profile.is_some(),
                f.is_some_and(|f| f.profile.is_some()),
            ),
        ),
        (
            "data_dir",
            c.data_dir.display().to_string(),
            source(
                "data_dir",
                args.data_dir.is_some(),
                f.is_some_and(|f| f.data_dir.is_some()),
            ),
        ),
        (
            "http",
            c.http.to_string(),
            source(
                "http",
                args.http.is_some(),
                f.is_some_and(|f| f.http.is_some()),
            ),
        ),
        (
            "max_concurrent_calls",
            c.max_concurrent_calls.to_string(),
            source(
                "max_concurrent_calls",
                args.max_concurrent_calls.is_some(),
                f.is_some_and(|f| f.max_concurrent_calls.is_some()),
            ),
        ),
        (
            "max_queued_calls",
            c.max_queued_calls.to_string(),
            source(
                "max_queued_calls",
                args.max_queued_calls.is_some(),
                f.is_some_and(|f| f.max_queued_calls.is_some()),
            ),
        ),
        (
            "cpu_share",
            c.cpu_share.to_string(),
            source(
                "cpu_share",
                args.cpu_share.is_some(),
                f.is_some_and(|f| f.cpu_share.is_some()),
            ),
        ),
        (
            "store_budget_bytes",
            c.store_budget_bytes.to_string(),
            source(
                "store_budget_bytes",
                args.store_budget_bytes.is_some(),
                f.is_some_and(|f| f.store_budget_bytes.is_some()),
            ),
        ),
        (
            "state_budget_bytes",
            c.state.budget_bytes.to_string(),
            source(
                "state_budget_bytes",
                args.state_budget_bytes.is_some(),
                f.is_some_and(|f| f.state_budget_bytes.is_some()),
            ),
        ),
        (
            "max_doc_bytes",
            c.state.max_doc_bytes.to_string(),
            source(
                "max_doc_bytes",
                args.max_doc_bytes.is_some(),
                f.is_some_and(|f| f.max_doc_bytes.is_some()),
            ),
        ),
        (
            "state_namespace",
            c.state
                .namespaces
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            source(
                "state_namespace",
                !args.state_namespace.is_empty(),
                f.is_some_and(|f| !f.state_namespace.is_empty()),
            ),
        ),
        (
            "device_class",
            device,
            source(
                "device_class",
                args.device_class.is_some(),
                f.is_some_and(|f| f.device_class.is_some()),
            ),
        ),
        (
            "max_module_bytes",
            caps.max_module_bytes.to_string(),
            source(
                "max_module_bytes",
                args.max_module_bytes.is_some(),
                f.is_some_and(|f| f.max_module_bytes.is_some()),
            ),
        ),
        (
            "max_memory_bytes",
            caps.max_memory_bytes.to_string(),
            source(
                "max_memory_bytes",
                args.max_memory_bytes.is_some(),
                f.is_some_and(|f| f.max_memory_bytes.is_some()),
            ),
        ),
        (
            "max_fuel",
            caps.max_fuel.to_string(),
            source(
                "max_fuel",
                args.max_fuel.is_some(),
                f.is_some_and(|f| f.max_fuel.is_some()),
            ),
        ),
        (
            "max_timeout_ms",
            caps.max_timeout_ms.to_string(),
            source(
                "max_timeout_ms",
                args.max_timeout_ms.is_some(),
                f.is_some_and(|f| f.max_timeout_ms.is_some()),
            ),
        ),
        (
            "max_input_bytes",
            caps.max_input_bytes.to_string(),
            source(
                "max_input_bytes",
                args.max_input_bytes.is_some(),
                f.is_some_and(|f| f.max_input_bytes.is_some()),
            ),
        ),
        (
            "max_output_bytes",
            caps.max_output_bytes.to_string(),
            source(
                "max_output_bytes",
                args.max_output_bytes.is_some(),
                f.is_some_and(|f| f.max_output_bytes.is_some()),
            ),
        ),
        (
            "offline",
            c.net.is_none().to_string(),
            source(
                "offline",
                args.offline,
                f.is_some_and(|f| f.offline.is_some()),
            ),
        ),
        (
            "listen",
            list(&net.listen),
            source(
                "listen",
                !args.listen.is_empty(),
                f.is_some_and(|f| !f.listen.is_empty()),
            ),
        ),
        (
            "bootstrap",
            list(&net.bootstrap),
            source(
                "bootstrap",
                !args.bootstrap.is_empty(),
                f.is_some_and(|f| !f.bootstrap.is_empty()),
            ),
        ),
        (
            "external_address",
            list(&net.external),
            source(
                "external_address",
                !args.external_address.is_empty(),
                f.is_some_and(|f| !f.external_address.is_empty()),
            ),
        ),
        (
            "relay",
            list(&net.relays),
            source(
                "relay",
                !args.relay.is_empty(),
                f.is_some_and(|f| !f.relay.is_empty()),
            ),
        ),
        (
            "relay_server",
            net.relay_server.to_string(),
            source(
                "relay_server",
                args.relay_server,
                f.is_some_and(|f| f.relay_server.is_some()),
            ),
        ),
        (
            "no_mdns",
            (!net.mdns).to_string(),
            source(
                "no_mdns",
                args.no_mdns,
                f.is_some_and(|f| f.no_mdns.is_some()),
            ),
        ),
        (
            "advert_interval_ms",
            net.advert_interval_ms.to_string(),
            source(
                "advert_interval_ms",
                args.advert_interval_ms.is_some(),
                f.is_some_and(|f| f.advert_interval_ms.is_some()),
            ),
        ),
        (
            "invoke_rate_per_peer",
            net.invoke_rate_per_peer.to_string(),
            source(
                "invoke_rate_per_peer",
                args.invoke_rate_per_peer.is_some(),
                f.is_some_and(|f| f.invoke_rate_per_peer.is_some()),
            ),
        ),
        (
            "trust",
            c.trust.join(","),
            source(
                "trust",
                !args.trust.is_empty(),
                f.is_some_and(|f| !f.trust.is_empty()),
            ),
        ),
        (
            "trusted_only",
            c.trusted_only.to_string(),
            source(
                "trusted_only",
                args.trusted_only,
                f.is_some_and(|f| f.trusted_only.is_some()),
            ),
        ),
        (
            "offer_hours",
            c.offer_hours.map_or("always".to_owned(), |h| h.to_string()),
            source(
                "offer_hours",
                args.offer_hours.is_some(),
                f.is_some_and(|f| f.offer_hours.is_some()),
            ),
        ),
    ];
    Ok(rows)
}

fn print_record(v: &serde_json::Value) {
    let targets: Vec<String> = v["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{}={}",
                t["function"].as_str().unwrap_or_default(),
                t["weight"]
            )
        })
        .collect();
    println!(
        "{}  seq {}  {}",
        v["alias"].as_str().unwrap_or_default(),
        v["seq"],
        targets.join(" ")
    );
}

/// `/v1/state/NS/NAME` for a document reference, checked locally first.
fn state_url(doc: &str) -> anyhow::Result<String> {
    let r: kith_protocol::state::DocRef = doc.parse()?;
    Ok(format!("/v1/state/{}/{}", r.namespace, r.name))
}

fn path_query(path: &str) -> anyhow::Result<String> {
    kith_protocol::state::parse_path(path)?;
    let mut q = String::from("?path=");
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            q.push(char::from(b));
        } else {
            q.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(q)
}

fn json_arg(value: &str) -> anyhow::Result<Vec<u8>> {
    let v: serde_json::Value = serde_json::from_str(value).with_context(|| {
        format!("{value:?} is not a JSON value (a string needs quotes: '\"{value}\"')")
    })?;
    Ok(serde_json::to_vec(&v)?)
}

fn state_command(api: &str, command: StateCommand) -> anyhow::Result<ExitCode> {
    use reqwest::Method;
    let c = client(api)?;
    let heads = |v: &serde_json::Value| {
        for h in v["heads"].as_array().into_iter().flatten() {
            println!("{}", h.as_str().unwrap_or_default());
        }
    };
    match command {
        StateCommand::Get { doc, path } => {
            let q = path
                .as_deref()
                .map(path_query)
                .transpose()?
                .unwrap_or_default();
            let v = c
                .get_json(&format!("{}{q}", state_url(&doc)?))
                .map_err(explain)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        StateCommand::Put { doc, path, value } => {
            let url = format!("{}{}", state_url(&doc)?, path_query(&path)?);
            heads(
                &c.send_bytes(Method::PUT, &url, json_arg(&value)?)
                    .map_err(explain)?,
            );
        }
        StateCommand::Delete { doc, path } => {
            let url = format!("{}{}", state_url(&doc)?, path_query(&path)?);
            heads(
                &c.send_bytes(Method::DELETE, &url, Vec::new())
                    .map_err(explain)?,
            );
        }
        StateCommand::Increment { doc, path, by } => {
            let url = format!(
                "{}/increment{}&by={by}",
                state_url(&doc)?,
                path_query(&path)?
            );
            let v = c
                .send_bytes(Method::POST, &url, Vec::new())
                .map_err(explain)?;
            println!("{}", v["value"]);
        }
        StateCommand::Append { doc, path, value } => {
            let url = format!("{}/append{}", state_url(&doc)?, path_query(&path)?);
            heads(
                &c.send_bytes(Method::POST, &url, json_arg(&value)?)
                    .map_err(explain)?,
            );
        }
        StateCommand::Export { doc } => {
            let bytes = c
                .get_bytes(&format!("{}/export", state_url(&doc)?))
                .map_err(explain)?;
            std::io::Write::write_all(&mut std::io::stdout().lock(), &bytes)?;
        }
        StateCommand::Import { doc, file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let url = format!("{}/import", state_url(&doc)?);
            heads(&c.send_bytes(Method::POST, &url, bytes).map_err(explain)?);
        }
        StateCommand::Heads { doc } => {
            heads(
                &c.get_json(&format!("{}/heads", state_url(&doc)?))
                    .map_err(explain)?,
            );
        }
        StateCommand::Pin { doc } => {
            let url = format!("{}/pin", state_url(&doc)?);
            heads(
                &c.send_bytes(Method::POST, &url, Vec::new())
                    .map_err(explain)?,
            );
        }
        StateCommand::List => {
            let v = c.get_json("/v1/state").map_err(explain)?;
            for d in v.as_array().into_iter().flatten() {
                println!(
                    "{}  {} bytes  {} heads{}",
                    d["doc"].as_str().unwrap_or_default(),
                    d["bytes"],
                    d["heads"].as_array().map_or(0, Vec::len),
                    if d["pinned"] == true { "  pinned" } else { "" }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn alias_command(api: &str, command: AliasCommand) -> anyhow::Result<ExitCode> {
    let c = client(api)?;
    match command {
        AliasCommand::Set {
            reference,
            function,
        } => print_record(
            &c.alias_set(&reference, &[(&function, 1)])
                .map_err(explain)?,
        ),
        AliasCommand::Split { reference, targets } => {
            let parsed: Vec<(String, u32)> = targets
                .iter()
                .map(|t| {
                    let (f, w) = t
                        .split_once('=')
                        .with_context(|| format!("{t:?} is not FUNCTION=WEIGHT"))?;
                    let w: u32 = w.parse().ok().filter(|w| *w > 0).with_context(|| {
                        format!("weight {w:?} in {t:?} is not a whole number above 0")
                    })?;
                    Ok((f.to_owned(), w))
                })
                .collect::<anyhow::Result<_>>()?;
            let refs: Vec<(&str, u32)> = parsed.iter().map(|(f, w)| (f.as_str(), *w)).collect();
            print_record(&c.alias_set(&reference, &refs).map_err(explain)?);
        }
        AliasCommand::Promote { from, to } => {
            print_record(&c.alias_promote(&from, &to).map_err(explain)?);
        }
        AliasCommand::Rollback { reference } => {
            print_record(&c.alias_rollback(&reference).map_err(explain)?);
        }
        AliasCommand::Show { reference } => {
            print_record(
                &c.get_json(&format!("/v1/aliases/{reference}"))
                    .map_err(explain)?,
            );
        }
        AliasCommand::History { reference } => {
            let v = c
                .get_json(&format!("/v1/aliases/{reference}/history"))
                .map_err(explain)?;
            for r in v.as_array().into_iter().flatten() {
                print_record(r);
            }
        }
        AliasCommand::List => {
            let v = c.get_json("/v1/aliases").map_err(explain)?;
            for r in v.as_array().into_iter().flatten() {
                print_record(r);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn client(api: &str) -> anyhow::Result<Client> {
    Client::new(api).map_err(explain)
}

fn explain(e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Transport { url, source } => anyhow::anyhow!(
            "cannot reach the kith node at {url} ({source}); is `kith up` running? (set --api or KITH_API)"
        ),
        other => anyhow::anyhow!(other),
    }
}

fn print_ranking(ranking: &[serde_json::Value], ran: &str) {
    eprintln!(
        "{:<54} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "candidate", "rtt ms", "queue ms", "cold ms", "exec ms", "total ms"
    );
    for c in ranking {
        let f = |k: &str| c[k].as_f64().unwrap_or(0.0);
        let peer = c["peer"].as_str().unwrap_or("?");
        let mut label = peer.to_owned();
        if c["local"].as_bool() == Some(true) {
            label.push_str(" (this node)");
        }
        if peer == ran {
            label.push_str(" *");
        }
        let rtt = if c["rtt_measured"].as_bool() == Some(true) {
            format!("{:.2}", f("rtt_ms"))
        } else {
            format!("~{:.2}", f("rtt_ms"))
        };
        eprintln!(
            "{label:<54} {rtt:>9} {:>9.2} {:>9.2} {:>9.3} {:>9.3}",
            f("queue_ms"),
            f("cold_ms"),
            f("exec_ms"),
            f("total_ms")
        );
    }
    eprintln!("(* ran the call; ~ = estimated from network coordinates)");
}

fn print_peers(v: &serde_json::Value) {
    let Some(peers) = v.as_array() else { return };
    println!(
        "{:<54} {:>9} {:>8} {:>10} {:>10} {:>6}",
        "peer", "rtt ms", "device", "free/slots", "memory MiB", "state"
    );
    for p in peers {
        let a = &p["advert"];
        let rtt = p["rtt_ms"]
            .as_f64()
            .map_or("-".to_owned(), |r| format!("{r:.2}"));
        let slots = if a.is_null() {
            "-".to_owned()
        } else {
            format!("{}/{}", a["free_slots"], a["max_concurrent"])
        };
        let mem = a["memory_bytes"]
            .as_u64()
            .map_or("-".to_owned(), |m| (m >> 20).to_string());
        let state = if p["connected"].as_bool() == Some(true) {
            "up"
        } else {
            "known"
        };
        println!(
            "{:<54} {rtt:>9} {:>8} {slots:>10} {mem:>10} {state:>6}",
            p["peer_id"].as_str().unwrap_or("?"),
            a["device"].as_str().unwrap_or("-"),
        );
    }
}

fn print_status(v: &serde_json::Value) {
    let s = |k: &str| v[k].to_string().trim_matches('"').to_owned();
    println!("node        {}", s("node_id"));
    println!("version     {}", s("version"));
    println!("uptime      {} s", s("uptime_secs"));
    println!("functions   {}", s("functions_stored"));
    println!(
        "calls       {} served, {} failed, {} refused, {} running",
        s("calls_served"),
        s("calls_failed"),
        s("calls_refused"),
        s("calls_running")
    );
    println!(
        "store       {} of {} bytes",
        v["store"]["bytes"], v["store"]["budget"]
    );
    println!(
        "compiled    {} (from artifact cache: {})",
        v["runtime"]["compiled"], v["runtime"]["artifact_cache_hits"]
    );
    println!("peers       {} connected", s("peers_connected"));
    let nat = &v["nat"];
    if nat.is_object() {
        println!(
            "reachable   {} (relayed connections made direct: {}, hole punches failed: {}; relaying for others: {})",
            nat["status"].as_str().unwrap_or("?"),
            nat["direct_upgrades"],
            nat["hole_punches_failed"],
            if nat["relay_server"] == true {
                "yes"
            } else {
                "no"
            }
        );
    }
    if let Some(addrs) = v["listen_addrs"].as_array() {
        for a in addrs {
            println!(
                "listening   {}/p2p/{}",
                a.as_str().unwrap_or("?"),
                s("node_id")
            );
        }
    }
}

async fn up(config: NodeConfig) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone();
    // Install the signal handlers before announcing readiness, so a signal sent right
    // after the announcement is never missed.
    let signalled = shutdown_signal()?;
    let running = crate::start(config).await?;
    tracing::info!(
        node_id = %running.node.peer_id(),
        http = %running.url(),
        data_dir = %data_dir.display(),
        "kith node up"
    );
    println!(
        "kith node {} listening on {}",
        running.node.peer_id(),
        running.url()
    );
    signalled.await;
    tracing::info!("shutting down: letting in-flight calls finish");
    running.stop().await?;
    tracing::info!("stopped");
    Ok(())
}

fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    #[cfg(unix)]
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot install the SIGINT handler")?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    })
}
