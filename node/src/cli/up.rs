//! `kith up`: its flags (one per setting of [`SETTINGS`]), running a node until
//! SIGTERM or SIGINT, and the systemd unit that does.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Arg, ArgAction, ArgMatches, parser::ValueSource};

use super::settings::{self, Apply, Layer, SETTINGS, Setting, Value};
use crate::config::NodeConfig;

/// Flags of `kith up` (and of `kith config show`): `--config FILE` and one flag per
/// setting.
#[derive(Debug, Clone, Default)]
pub struct UpArgs {
    /// The settings file.
    pub config: Option<PathBuf>,
    flags: Layer,
}

impl UpArgs {
    /// The node configuration these flags describe (over the settings file, over the
    /// profile, over the defaults).
    ///
    /// # Errors
    /// The first value that cannot work, naming its flag or file key.
    pub fn config(&self) -> anyhow::Result<NodeConfig> {
        Ok(self.resolve()?.config)
    }

    fn resolve(&self) -> anyhow::Result<settings::Resolved> {
        settings::resolve(&self.flags, self.config.as_deref()).map_err(anyhow::Error::msg)
    }

    /// Every setting `kith up` would use: key, effective value, source.
    pub(crate) fn rows(&self) -> anyhow::Result<Vec<(&'static str, String, String)>> {
        let r = self.resolve()?;
        Ok(r.sources
            .iter()
            .map(|(s, source)| {
                let value = if s.key == "profile" {
                    r.profile.map_or("none".to_owned(), |p| p.name().to_owned())
                } else {
                    (s.show)(&r.config)
                };
                (s.key, value, source.to_string())
            })
            .collect())
    }
}

fn arg(s: &'static Setting) -> Arg {
    let a = Arg::new(s.key).long(s.flag()).help(s.help);
    match s.apply {
        Apply::Int(_) => a
            .value_name(s.value_name)
            .value_parser(clap::value_parser!(u64)),
        Apply::Float(_) => a
            .value_name(s.value_name)
            .allow_negative_numbers(true)
            .value_parser(clap::value_parser!(f64)),
        Apply::Bool(_) => a.action(ArgAction::SetTrue),
        Apply::Text(_) if s.key == "profile" => a
            .value_name(s.value_name)
            .value_parser(["pi", "router", "vm"]),
        Apply::Text(_) => a.value_name(s.value_name),
        Apply::List(_) => a.value_name(s.value_name).action(ArgAction::Append),
    }
}

impl clap::FromArgMatches for UpArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = Self::default();
        args.update_from_arg_matches(m)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        if let Some(file) = m.get_one::<String>("config") {
            self.config = Some(PathBuf::from(file));
        }
        for s in SETTINGS {
            if m.value_source(s.key) != Some(ValueSource::CommandLine) {
                continue;
            }
            let value = match s.apply {
                Apply::Int(_) => m.get_one::<u64>(s.key).copied().map(Value::Int),
                Apply::Float(_) => m.get_one::<f64>(s.key).copied().map(Value::Float),
                Apply::Bool(_) => m.get_flag(s.key).then_some(Value::Bool(true)),
                Apply::Text(_) => m.get_one::<String>(s.key).cloned().map(Value::Text),
                Apply::List(_) => m
                    .get_many::<String>(s.key)
                    .map(|v| Value::List(v.cloned().collect())),
            };
            if let Some(v) = value {
                self.flags.insert(s.key, v);
            }
        }
        Ok(())
    }
}

impl clap::Args for UpArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.arg(
            Arg::new("config")
                .long("config")
                .env("KITH_CONFIG")
                .value_name("FILE")
                .help("A TOML file with settings; every flag below has a key of the same name with underscores (e.g. `bootstrap = [\"/ip4/…/p2p/…\"]`). Flags override it"),
        )
        .args(SETTINGS.iter().map(arg))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

pub(crate) async fn up(config: NodeConfig) -> anyhow::Result<()> {
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

/// A systemd unit for `kith up`. SIGTERM makes the node stop taking calls and let
/// running ones finish (at most `SHUTDOWN_GRACE`), so the stop timeout is above it.
pub(crate) fn service_unit(exe: &Path, config: &Path, user: &str, data_dir: &Path) -> String {
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
