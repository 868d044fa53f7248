//! Scenario files: what world to simulate.
//!
//! A scenario is TOML. Every key has a default except the lists that make a world
//! (regions, device classes, populations, functions, workload); `docs/simulator.md`
//! lists every key. [`Scenario::parse`] reads and validates one; every error names the
//! line it is about, and nothing in here panics on any input.

mod check;
mod problems;
#[cfg(test)]
mod tests;

pub use problems::{MAX_FUNCTIONS, MAX_PEERS, Problem, ScenarioError};

use serde::Deserialize;
use toml::Spanned;

use kith_protocol::capacity::DeviceClass;

/// A whole scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Run length and engine knobs.
    #[serde(default)]
    pub sim: SimSpec,
    /// Latency, bandwidth and energy of the network itself.
    #[serde(default)]
    pub network: NetworkSpec,
    /// Places.
    #[serde(default, rename = "region")]
    pub regions: Vec<Spanned<RegionSpec>>,
    /// Kinds of device.
    #[serde(default, rename = "class")]
    pub classes: Vec<Spanned<ClassSpec>>,
    /// How many devices of which class live where.
    #[serde(default, rename = "population")]
    pub populations: Vec<Spanned<PopulationSpec>>,
    /// The functions called.
    #[serde(default, rename = "function")]
    pub functions: Vec<Spanned<FunctionSpec>>,
    /// Aliases (`NAME@CHANNEL`) splitting calls over functions by weight, resolved
    /// per call with protocol's alias code.
    #[serde(default, rename = "alias")]
    pub aliases: Vec<Spanned<AliasSpec>>,
    /// Who calls, where, how often.
    #[serde(default, rename = "workload")]
    pub workloads: Vec<Spanned<WorkloadSpec>>,
    /// Crashes, outages, partitions.
    #[serde(default)]
    pub failures: FailureSpec,
    /// The central-cloud baseline: one datacenter region.
    pub baseline: Option<Spanned<BaselineSpec>>,
    /// Where modules are published first.
    pub origin: Option<Spanned<OriginSpec>>,
    /// Which strategies to compare.
    #[serde(default)]
    pub strategies: StrategiesSpec,
}

/// `[sim]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimSpec {
    /// Simulated seconds.
    pub duration_s: f64,
    /// Seed used when the command line gives none.
    pub seed: u64,
    /// UTC hour of day at which simulated time starts.
    pub start_hour_utc: f64,
    /// Peers each peer is connected to (sees adverts of, measures RTT to).
    pub known_peers: u32,
    /// How often a peer publishes its capacity advert, seconds.
    pub advert_interval_s: f64,
    /// Attempts per call (the first try and the retries), as the node does.
    pub max_attempts: u32,
    /// How long a caller takes to notice a peer that vanished, milliseconds.
    pub failure_detect_ms: f64,
    /// Vivaldi rounds per peer before the run (RTT samples to known peers).
    pub vivaldi_rounds: u32,
    /// Compute the placement-stretch oracle on one call in this many.
    pub oracle_every: u32,
    /// Width of the time buckets of the load plot, seconds.
    pub bucket_s: f64,
    /// Truth for compile time: fixed ms at the reference CPU score.
    pub compile_base_ms: f64,
    /// Truth for compile time: ms per KiB at the reference CPU score.
    pub compile_ms_per_kib: f64,
    /// The CPU score (fuel per ms) the compile times are given for.
    pub reference_cpu_score: f64,
    /// How peers learn of each other: a fixed view (`static`) or protocol's
    /// neighbourhoods over simulated control messages (`neighbourhood`).
    pub control: ControlModel,
    /// Seconds the control plane runs before calls start (calls arrive over
    /// `duration_s` after it).
    pub warmup_s: f64,
    /// Share of control messages lost on the wire (neighbourhood model).
    pub control_loss: f64,
    /// Random peers a starting node is given (bootstrap peers; neighbourhood model).
    pub bootstrap_peers: u32,
    /// Entries learn from what peers do with their calls, as a node does (protocol's
    /// `conduct`: the time a peer wasted is charged to it, and a fault a peer claims
    /// is checked on the next candidate). `false` to measure without.
    pub learning: bool,
}

/// How peers learn of each other in the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlModel {
    /// Each peer is connected to `known_peers` others fixed when the world is built,
    /// and sees their adverts as of their last periodic publication (the first
    /// wave's global gossip, as an idealised full flood).
    #[default]
    Static,
    /// Each peer runs protocol's neighbourhood state machine: subscriptions, one-hop
    /// adverts and deltas, peer exchange and lookups are simulated messages with
    /// bytes, delay and loss.
    Neighbourhood,
}

impl Default for SimSpec {
    fn default() -> Self {
        Self {
            duration_s: 600.0,
            seed: 1,
            start_hour_utc: 0.0,
            known_peers: 24,
            advert_interval_s: 5.0,
            max_attempts: 3,
            failure_detect_ms: 2_000.0,
            vivaldi_rounds: 32,
            oracle_every: 50,
            bucket_s: 10.0,
            compile_base_ms: 35.0,
            compile_ms_per_kib: 0.56,
            reference_cpu_score: 5_500_000.0,
            control: ControlModel::Static,
            warmup_s: 0.0,
            control_loss: 0.0,
            bootstrap_peers: 4,
            learning: true,
        }
    }
}

/// `[network]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSpec {
    /// Signal speed in fibre, km per millisecond (one way).
    pub fibre_km_per_ms: f64,
    /// Real paths are longer than great circles by this factor.
    pub path_inflation: f64,
    /// Each message's one-way delay gains a uniform 0..jitter_ms.
    pub jitter_ms: f64,
    /// Optional CSV `from,to,rtt_ms` of measured RTTs between regions (path relative
    /// to the scenario file), replacing the great-circle estimate between regions.
    pub rtt_matrix: Option<Spanned<String>>,
    /// Energy to move one byte across the network, joules.
    pub joules_per_byte: f64,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        Self {
            fibre_km_per_ms: 200.0,
            path_inflation: 1.5,
            jitter_ms: 1.0,
            rtt_matrix: None,
            // About 0.06 kWh per GB.
            joules_per_byte: 2.0e-7,
        }
    }
}

/// `[[region]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSpec {
    /// Unique name.
    pub name: String,
    /// Latitude of its centre, degrees.
    pub lat: f64,
    /// Longitude of its centre, degrees.
    pub lon: f64,
    /// Devices are spread uniformly over a disc of this radius, km.
    #[serde(default = "default_radius")]
    pub radius_km: f64,
    /// Local time minus UTC, hours.
    #[serde(default)]
    pub utc_offset_h: f64,
}

fn default_radius() -> f64 {
    20.0
}

/// A distribution of durations, seconds.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, tag = "dist", rename_all = "snake_case")]
pub enum Duration {
    /// Never ends.
    Forever,
    /// Exponential with this mean.
    Exponential {
        /// Mean, seconds.
        mean_s: f64,
    },
    /// Log-normal with this median and shape (sigma of the log).
    Lognormal {
        /// Median, seconds.
        median_s: f64,
        /// Sigma of ln(duration).
        sigma: f64,
    },
    /// Weibull with this scale and shape.
    Weibull {
        /// Scale, seconds.
        scale_s: f64,
        /// Shape k.
        shape: f64,
    },
}

/// `[[class]]`: a kind of device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassSpec {
    /// Unique name.
    pub name: String,
    /// The device class it advertises.
    pub device: DeviceClass,
    /// Fuel per millisecond on one core (the node measures this at start).
    pub cpu_score: f64,
    /// Cores.
    #[serde(default = "one")]
    pub cores: u32,
    /// Calls it runs at once.
    #[serde(default = "one")]
    pub slots: u32,
    /// Calls it queues beyond those.
    #[serde(default = "default_queue")]
    pub queue: u32,
    /// Guest memory offered to one call, MiB.
    pub memory_mb: f64,
    /// Store budget for cached modules, MiB.
    #[serde(default = "default_store")]
    pub store_mb: f64,
    /// One-way delay of its access link, ms.
    pub access_ms: f64,
    /// Uplink, Mbit/s.
    pub up_mbps: f64,
    /// Downlink, Mbit/s.
    pub down_mbps: f64,
    /// Power when idle, watts.
    #[serde(default)]
    pub idle_w: f64,
    /// Power with every core busy, watts.
    #[serde(default)]
    pub busy_w: f64,
    /// Price of one core-hour of compute, USD (0 for devices people already own).
    #[serde(default)]
    pub usd_per_cpu_hour: f64,
    /// How long it stays online.
    #[serde(default = "forever")]
    pub session: Duration,
    /// How long it stays offline after a session.
    #[serde(default = "forever")]
    pub downtime: Duration,
    /// Local hours `[from, to)` when it is off every day (e.g. `[1, 7]`).
    #[serde(default)]
    pub offline_hours: Option<[f64; 2]>,
}

fn one() -> u32 {
    1
}
fn default_queue() -> u32 {
    8
}
fn default_store() -> f64 {
    256.0
}
fn forever() -> Duration {
    Duration::Forever
}

/// `[[population]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopulationSpec {
    /// A class name.
    pub class: String,
    /// A region name.
    pub region: String,
    /// How many.
    pub count: u32,
}

/// `[[function]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    /// Unique name.
    pub name: String,
    /// Module size, KiB.
    pub module_kib: f64,
    /// Fuel per call.
    pub fuel: f64,
    /// Memory the manifest asks for, MiB.
    pub memory_mb: f64,
    /// Request size, bytes.
    #[serde(default = "default_io")]
    pub input_bytes: f64,
    /// Response size, bytes.
    #[serde(default = "default_io")]
    pub output_bytes: f64,
    /// Share of calls (relative to the other functions of a workload).
    #[serde(default = "one_f")]
    pub weight: f64,
}

fn default_io() -> f64 {
    1024.0
}
fn one_f() -> f64 {
    1.0
}

/// `[[alias]]`: a deployless alias, e.g. a 90/10 canary.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasSpec {
    /// `NAME@CHANNEL` (workloads call it by this name).
    pub name: String,
    /// Functions and weights.
    pub targets: Vec<AliasTarget>,
    /// Share of a workload's calls, like a function's weight.
    #[serde(default = "one_f")]
    pub weight: f64,
}

/// One target of an alias.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasTarget {
    /// A function name.
    pub function: String,
    /// Its weight (a whole number, 1 or more).
    pub weight: u32,
}

/// `[[workload]]`: calls entering the network in one region.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// A region name.
    pub region: String,
    /// Mean calls per second (Poisson).
    pub rate_per_s: f64,
    /// Daily swing: the rate is `rate * (1 + a * cos(2π (hour - peak) / 24))`.
    #[serde(default)]
    pub diurnal_amplitude: f64,
    /// Local hour of the daily peak.
    #[serde(default = "default_peak")]
    pub peak_hour: f64,
    /// Functions or aliases called (default: all functions), by weight.
    #[serde(default)]
    pub functions: Vec<String>,
}

fn default_peak() -> f64 {
    20.0
}

/// `[failures]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailureSpec {
    /// Crashes per peer per hour (Poisson), on top of churn.
    pub crash_rate_per_peer_hour: f64,
    /// A crashed peer comes back after this long, seconds.
    pub restart_after_s: f64,
    /// Regional outages.
    #[serde(rename = "outage")]
    pub outages: Vec<Spanned<OutageSpec>>,
    /// Partitions.
    #[serde(rename = "partition")]
    pub partitions: Vec<Spanned<PartitionSpec>>,
    /// Peers that lie.
    #[serde(rename = "liar")]
    pub liars: Vec<Spanned<LiarSpec>>,
}

/// `[[failures.liar]]`: a share of a class's peers (every class's, without `class`)
/// advertise the best capacity there is — a CPU score of 100 M fuel/ms, idle, every
/// function warm — and then mistreat the calls they win.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiarSpec {
    /// A class name; every class when absent.
    #[serde(default)]
    pub class: Option<String>,
    /// Share of that class's peers, 0 to 1.
    pub fraction: f64,
    /// What they do with a call.
    pub lie: Lie,
}

/// What a lying peer does with a call it won.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lie {
    /// Never answers: the entry waits `sim.failure_detect_ms`, then tries the next.
    Drop,
    /// Answers with output just before the entry would give up (90% of
    /// `sim.failure_detect_ms`).
    Delay,
    /// Answers at once with a trap, which the function never does.
    Trap,
}

/// `[[failures.outage]]`: every device in a region goes offline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutageSpec {
    /// A region name.
    pub region: String,
    /// Start, seconds.
    pub at_s: f64,
    /// Length, seconds.
    pub duration_s: f64,
}

/// `[[failures.partition]]`: no traffic between the groups from `at_s` to `heal_s`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionSpec {
    /// Start, seconds.
    pub at_s: f64,
    /// End, seconds.
    pub heal_s: f64,
    /// Groups of region names; regions not listed form one more group.
    pub groups: Vec<Vec<String>>,
}

/// `[baseline]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineSpec {
    /// The datacenter's region.
    pub region: String,
    /// The class of its servers.
    pub class: String,
    /// How many servers.
    pub servers: u32,
    /// Power usage effectiveness of the datacenter (energy multiplier).
    #[serde(default = "default_pue")]
    pub pue: f64,
}

fn default_pue() -> f64 {
    1.2
}

/// `[origin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginSpec {
    /// Where the publisher's copy lives.
    pub region: String,
    /// Its uplink, Mbit/s, shared by concurrent fetches.
    #[serde(default = "default_origin_up")]
    pub up_mbps: f64,
}

fn default_origin_up() -> f64 {
    1_000.0
}

/// `[strategies]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StrategiesSpec {
    /// Which to run, in this order.
    pub run: Vec<Spanned<Strategy>>,
}

impl Default for StrategiesSpec {
    fn default() -> Self {
        Self {
            run: [
                Strategy::Kith,
                Strategy::Random,
                Strategy::Nearest,
                Strategy::Cloud,
            ]
            .into_iter()
            .map(|s| Spanned::new(0..0, s))
            .collect(),
        }
    }
}

/// A way to choose the peer that runs a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// kith's placement (`kith_protocol::placement::rank`) over the entry's known peers.
    Kith,
    /// A random capable known peer (or the entry itself).
    Random,
    /// The capable known peer nearest by geography.
    Nearest,
    /// Every call to the baseline datacenter.
    Cloud,
}

impl Strategy {
    /// Its name in files and tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kith => "kith",
            Self::Random => "random",
            Self::Nearest => "nearest",
            Self::Cloud => "cloud",
        }
    }
}
