//! `kith-sim`: run and check simulator scenarios.

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use kith_sim::geo::Latency;
use kith_sim::scenario::Strategy;
use kith_sim::{Engine, Run, Scenario, World, report, svg};

#[derive(Parser)]
#[command(
    name = "kith-sim",
    version,
    about = "Simulate a kith network: latency, placement quality, bandwidth, energy and cost vs. a central cloud."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario: print a summary table, write summary.json, calls.csv and plots.
    Run(RunArgs),
    /// Validate a scenario and report every problem with its line number.
    Check {
        /// The scenario file (TOML).
        scenario: PathBuf,
    },
    /// Plot control bytes per peer against network size (log-log) from the
    /// summary.json of runs at different sizes; print the points.
    Scale {
        /// Where to write the SVG.
        #[arg(long)]
        out: PathBuf,
        /// summary.json files, one per network size.
        #[arg(required = true)]
        summaries: Vec<PathBuf>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The scenario file (TOML).
    scenario: PathBuf,
    /// Seed (default: the scenario's `sim.seed`).
    #[arg(long)]
    seed: Option<u64>,
    /// Run this many seeds (seed, seed+1, …) and report means with 95% confidence intervals.
    #[arg(long, default_value_t = 1)]
    seeds: u32,
    /// Output directory (default: sim-out/<scenario name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the trace hash of each seed (identical for identical inputs).
    #[arg(long)]
    trace_hash: bool,
    /// Do not write per-call records (calls.csv).
    #[arg(long)]
    no_calls: bool,
    /// Only these strategies (comma-separated: kith,random,nearest,cloud).
    #[arg(long, value_delimiter = ',')]
    strategies: Vec<String>,
    /// kith ranks peers by Vivaldi coordinates instead of measured RTTs.
    #[arg(long)]
    coordinates: bool,
    /// Show a progress bar even when stderr is not a terminal.
    #[arg(long, conflicts_with = "quiet")]
    progress: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Print wall time, events/s and memory per simulated peer.
    #[arg(long)]
    perf: bool,
    /// Share of peers that lie (0 to 1), split evenly between the scenario's
    /// `[[failures.liar]]` entries (replacing their fractions).
    #[arg(long)]
    liars: Option<f64>,
    /// Entries do not learn from what peers do with their calls (`sim.learning =
    /// false`).
    #[arg(long)]
    no_learning: bool,
}

fn main() -> std::process::ExitCode {
    match dispatch(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kith-sim: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Check { scenario } => {
            let (s, _) = load(&scenario)?;
            let peers: u64 = s
                .populations
                .iter()
                .map(|p| u64::from(p.get_ref().count))
                .sum();
            println!(
                "{}: ok — {} regions, {} classes, {peers} peers, {} functions, {} workloads, strategies {}",
                scenario.display(),
                s.regions.len(),
                s.classes.len(),
                s.functions.len(),
                s.workloads.len(),
                s.strategies()
                    .iter()
                    .map(|x| x.name())
                    .collect::<Vec<_>>()
                    .join(",")
            );
            Ok(())
        }
        Command::Run(args) => run(args),
        Command::Scale { out, summaries } => {
            let mut points = Vec::new();
            for path in &summaries {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let p = kith_sim::scale::point(&path.display().to_string(), &text)?;
                println!(
                    "{:>9} peers: {:.0} B/s (p99 {:.0}), {:.1} msgs/s per peer",
                    p.peers, p.bytes_mean, p.bytes_p99, p.msgs_mean
                );
                points.push(p);
            }
            std::fs::write(&out, kith_sim::scale::plot(&points))
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("wrote {}", out.display());
            Ok(())
        }
    }
}

/// Reads, parses and validates a scenario, and loads its RTT matrix if any.
fn load(path: &Path) -> anyhow::Result<(Scenario, Latency)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read scenario {}", path.display()))?;
    let s =
        Scenario::parse(&path.display().to_string(), &text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut latency = Latency::new(
        s.network.fibre_km_per_ms,
        s.network.path_inflation,
        s.regions.len(),
    );
    if let Some(m) = &s.network.rtt_matrix {
        let file = path.parent().unwrap_or(Path::new(".")).join(m.get_ref());
        let csv = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read network.rtt_matrix {}", file.display()))?;
        latency
            .load_matrix(&csv, |n| s.region_index(n))
            .with_context(|| format!("in {}", file.display()))?;
    }
    Ok((s, latency))
}

/// Resident and peak memory of this process, bytes (Linux; 0 elsewhere).
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

struct Bar {
    on: bool,
    label: String,
    last: i64,
}

impl Bar {
    fn show(&mut self, fraction: f64) {
        if !self.on {
            return;
        }
        let pct = (fraction * 100.0).floor() as i64;
        if pct == self.last {
            return;
        }
        self.last = pct;
        let filled = (fraction * 30.0).round() as usize;
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\r{:<22} [{}{}] {pct:>3}%",
            self.label,
            "#".repeat(filled),
            ".".repeat(30 - filled.min(30))
        );
        if pct >= 100 {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let base_rss = rss().0;
    let (mut scenario, latency) = load(&args.scenario)?;
    if let Some(share) = args.liars {
        if !(0.0..=1.0).contains(&share) {
            bail!("--liars {share}: a share of peers, from 0 to 1");
        }
        let n = scenario.failures.liars.len();
        if n == 0 && share > 0.0 {
            bail!("--liars: the scenario has no [[failures.liar]] entry to scale");
        }
        for l in &mut scenario.failures.liars {
            l.get_mut().fraction = share / n as f64;
        }
    }
    if args.no_learning {
        scenario.sim.learning = false;
    }
    let mut strategies = scenario.strategies();
    if !args.strategies.is_empty() {
        let wanted: Vec<Strategy> = args
            .strategies
            .iter()
            .map(|s| match s.as_str() {
                "kith" => Ok(Strategy::Kith),
                "random" => Ok(Strategy::Random),
                "nearest" => Ok(Strategy::Nearest),
                "cloud" => Ok(Strategy::Cloud),
                other => bail!("unknown strategy \"{other}\" (kith, random, nearest, cloud)"),
            })
            .collect::<anyhow::Result<_>>()?;
        if wanted.contains(&Strategy::Cloud) && scenario.baseline.is_none() {
            bail!("strategy cloud needs a [baseline] section in the scenario");
        }
        strategies = wanted;
    }
    if args.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let name = args.scenario.file_stem().map_or_else(
        || "scenario".to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new("sim-out").join(&name));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let first_seed = args.seed.unwrap_or(scenario.sim.seed);
    let show = !args.quiet && (args.progress || std::io::stderr().is_terminal());
    let mut summaries = Vec::new();
    for k in 0..u64::from(args.seeds) {
        let seed = first_seed.wrapping_add(k);
        let t0 = Instant::now();
        let world = World::build(&scenario, seed, latency.clone());
        let build_s = t0.elapsed().as_secs_f64();
        let mut runs: Vec<Run> = Vec::new();
        for &strategy in &strategies {
            let t = Instant::now();
            let engine =
                Engine::new(&scenario, &world, strategy, seed).use_coordinates(args.coordinates);
            // Memory of the world and one engine's state, before any call record exists.
            let state_rss = if runs.is_empty() { rss().0 } else { 0 };
            let mut bar = Bar {
                on: show,
                label: format!("seed {seed} {}", strategy.name()),
                last: -1,
            };
            let r = engine.run(&mut |f| bar.show(f));
            if args.perf {
                let wall = t.elapsed().as_secs_f64();
                let (now, peak) = rss();
                eprintln!(
                    "perf: seed {seed} {:<8} {} peers, {} calls, {} events in {wall:.2} s ({:.2} M events/s); world built in {build_s:.2} s; {}RSS {:.0} MiB, peak {:.0} MiB",
                    strategy.name(),
                    world.peers.len(),
                    r.calls.len(),
                    r.totals.events,
                    r.totals.events as f64 / wall / 1e6,
                    if state_rss > 0 {
                        format!(
                            "memory per peer (world + engine state) {:.0} B; ",
                            state_rss.saturating_sub(base_rss) as f64 / world.peers.len() as f64
                        )
                    } else {
                        String::new()
                    },
                    now as f64 / 1_048_576.0,
                    peak as f64 / 1_048_576.0,
                );
            }
            runs.push(r);
        }
        let summary = report::summary(
            &args.scenario.display().to_string(),
            seed,
            scenario.sim.duration_s,
            &world,
            &runs,
        );
        print!("{}", report::table(&summary));
        if args.trace_hash {
            println!("trace hash (seed {seed}): {}", summary.trace_hash);
        }
        let dir = if args.seeds > 1 {
            out.join(format!("seed-{seed}"))
        } else {
            out.clone()
        };
        std::fs::create_dir_all(&dir)?;
        write(
            &dir.join("summary.json"),
            &serde_json::to_vec_pretty(&summary)?,
        )?;
        if !args.no_calls {
            let file = dir.join("calls.csv");
            let f = std::fs::File::create(&file)
                .with_context(|| format!("cannot write {}", file.display()))?;
            let mut w = std::io::BufWriter::new(f);
            report::calls_csv(&world, &runs, &mut w)?;
            w.flush()?;
        }
        write(
            &dir.join("latency-cdf.svg"),
            svg::latency_cdf(&runs).as_bytes(),
        )?;
        write(
            &dir.join("stretch-cdf.svg"),
            svg::stretch_cdf(&runs).as_bytes(),
        )?;
        for r in &runs {
            write(
                &dir.join(format!("load-{}.svg", r.strategy.name())),
                svg::load(&world, r).as_bytes(),
            )?;
        }
        summaries.push(summary);
    }
    if summaries.len() > 1 {
        let agg = report::aggregate(&summaries);
        print!("{}", report::aggregate_table(summaries.len(), &agg));
        let json = serde_json::json!({ "seeds": summaries, "aggregate": agg });
        write(
            &out.join("summary.json"),
            &serde_json::to_vec_pretty(&json)?,
        )?;
    }
    println!("wrote {}", out.display());
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}
