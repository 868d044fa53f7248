//! The `kith` command line: one module per command (`up`, `state`, `alias`), the
//! settings of `kith up` declared once (`settings`), and the printers (`print`).

mod alias;
mod grant;
mod print;
pub mod settings;
mod state;
mod up;

pub use alias::{AliasCommand, KeyCommand};
pub use state::StateCommand;
pub use up::UpArgs;

use alias::alias_command;
use print::{print_peers, print_ranking, print_status};
use state::state_command;
use up::{service_unit, up};

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kith_sdk::client::{Client, ClientError};

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
    /// The node's API token, for a node that needs one (default: $KITH_API_TOKEN, else
    /// the `api-token` file in the default data dir).
    #[arg(long, global = true, value_name = "TOKEN")]
    pub api_token: Option<String>,
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
        /// Also print the receipt (who ran it, fuel, wall time, the hashes the
        /// executing peer signed) to stderr, after checking it.
        #[arg(long, short)]
        verbose: bool,
        /// Print the placement ranking (each candidate's peer id and cost terms) to stderr.
        #[arg(long)]
        explain: bool,
        /// Run the call on N peers of distinct networks and take the majority's
        /// answer (1 to 7; deterministic functions only).
        #[arg(long, value_name = "N")]
        verify: Option<u64>,
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
    /// Let keys, functions or aliases write a namespace's documents (signed by the
    /// namespace's key on this node; replicated to peers).
    Grant(grant::GrantArgs),
    /// Take write back from keys, functions or aliases of a namespace.
    Revoke(grant::GrantArgs),
    /// Show a namespace's current grants.
    Grants {
        /// The namespace (its id, or the name of its key on this node).
        namespace: String,
    },
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

/// Logs to stderr, filtered by `RUST_LOG` ([`log_filter`]).
fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (filter, warning) = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    if let Some(warning) = warning {
        eprintln!("warning: {warning}");
    }
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(filter)
        .try_init();
}

/// The log filter `RUST_LOG` asks for (`info`, `info,kith_node::net=debug,libp2p=warn`,
/// …: a default level and levels per module path prefix), `info` when unset, and a
/// warning when it does not parse. A plain target filter, not `EnvFilter`: that one's
/// span and field matching needs a regex engine (about 240 KiB of the small build's code).
fn log_filter(spec: Option<&str>) -> (tracing_subscriber::filter::Targets, Option<String>) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    let default = || Targets::new().with_default(LevelFilter::INFO);
    match spec.map(str::trim).filter(|s| !s.is_empty()) {
        None => (default(), None),
        Some(spec) => match spec.parse::<Targets>() {
            Ok(filter) => (filter, None),
            Err(e) => (
                default(),
                Some(format!(
                    "RUST_LOG={spec:?} is not a log filter ({e}); logging at info"
                )),
            ),
        },
    }
}

/// Runs a parsed command line.
///
/// # Errors
/// Any failure, for printing at the edge.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(token) = &cli.api_token {
        let _ = API_TOKEN.set(token.clone());
    }
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
            verify,
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
            let options = kith_sdk::client::CallOptions {
                verify,
                route_key,
                explain: explain_placement,
            };
            let out = c
                .call_opts(&reference, input.clone(), &options)
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
                if !print::receipt(&out, &input) {
                    return Ok(ExitCode::FAILURE);
                }
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
        Command::Grant(args) => grant::grant_command(&cli.api, &args, false),
        Command::Revoke(args) => grant::grant_command(&cli.api, &args, true),
        Command::Grants { namespace } => grant::grants_command(&cli.api, &namespace),
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
            let rows = args.rows()?;
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

/// The token given with `--api-token`, for every client this process makes.
static API_TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn client(api: &str) -> anyhow::Result<Client> {
    let token = API_TOKEN
        .get()
        .cloned()
        .or_else(kith_sdk::client::local_token);
    Client::with_token(api, token.as_deref()).map_err(explain)
}

fn explain(e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Transport { url, source } => anyhow::anyhow!(
            "cannot reach the kith node at {url} ({source}); is `kith up` running? (set --api or KITH_API)"
        ),
        other => anyhow::anyhow!(other),
    }
}

#[cfg(test)]
mod log_tests {
    use super::log_filter;
    use tracing::Level;

    #[test]
    fn rust_log_sets_a_default_and_levels_per_module() {
        let (f, warning) = log_filter(Some("warn,kith_node::net=debug"));
        assert!(warning.is_none());
        assert!(f.would_enable("kith_node::net::swarm", &Level::DEBUG));
        assert!(!f.would_enable("kith_node::api", &Level::INFO));
        assert!(f.would_enable("libp2p_kad", &Level::WARN));
        let (f, warning) = log_filter(None);
        assert!(warning.is_none());
        assert!(f.would_enable("anything", &Level::INFO));
        assert!(!f.would_enable("anything", &Level::DEBUG));
        let (f, warning) = log_filter(Some("kith_node=loud"));
        assert!(warning.is_some_and(|w| w.contains("RUST_LOG")));
        assert!(f.would_enable("kith_node", &Level::INFO));
    }
}
