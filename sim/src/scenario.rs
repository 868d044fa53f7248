//! Scenario files: what world to simulate.
//!
//! A scenario is TOML. Every key has a default except the lists that make a world
//! (regions, device classes, populations, functions, workload); `docs/simulator.md`
//! lists every key. [`Scenario::parse`] reads and validates one; every error names the
//! line it is about, and nothing in here panics on any input.

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

/// One problem with a scenario.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct Problem {
    /// The file, as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Why a scenario was refused: every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ScenarioError(pub Vec<Problem>);

/// Largest counts accepted (guards against typos that would eat the machine).
pub const MAX_PEERS: u64 = 10_000_000;
/// Most functions in one scenario.
pub const MAX_FUNCTIONS: usize = 4096;

struct Checker<'a> {
    file: &'a str,
    text: &'a str,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    /// The line a problem is about: the key the message names, searched within
    /// `span` (a table), or within the `[table]` section for top-level settings.
    fn locate(&self, span: &std::ops::Range<usize>, message: &str) -> usize {
        let head = message.split(" = ").next().unwrap_or(message);
        let key = if message.contains(" = ") {
            head.rsplit([':', '.', ' '])
                .find(|k| !k.is_empty())
                .unwrap_or(head)
        } else if message.contains("no region called") {
            "region"
        } else if message.contains("no class called") {
            "class"
        } else if message.contains("no function called") || message.contains("weights") {
            "functions"
        } else if message.contains("defined twice") {
            "name"
        } else if message.contains("two groups") {
            "groups"
        } else if message.contains("session ends") {
            "downtime"
        } else {
            head.split(['.', ' ']).nth(1).unwrap_or("")
        };
        let key = key.split('[').next().unwrap_or(key);
        if !span.is_empty() {
            // An array-of-tables entry's span is its `[[header]]`: the keys follow, up
            // to the next header.
            let from = span.end.min(self.text.len());
            let mut offset = from;
            let mut end = self.text.len();
            for (i, line) in self.text[from..].split_inclusive('\n').enumerate() {
                if i > 0 && line.trim_start().starts_with('[') {
                    end = offset;
                    break;
                }
                offset += line.len();
            }
            return self.find_key(span.start, end, key);
        }
        let header = format!("[{}]", head.split('.').next().unwrap_or(""));
        let mut offset = 0;
        let mut section = None;
        for line in self.text.split_inclusive('\n') {
            if let Some(from) = section
                && line.trim_start().starts_with('[')
            {
                return self.find_key(from, offset, key);
            }
            if section.is_none() && line.trim() == header {
                section = Some(offset);
            }
            offset += line.len();
        }
        section.map_or(1, |from| self.find_key(from, self.text.len(), key))
    }

    fn find_key(&self, start: usize, end: usize, key: &str) -> usize {
        if key.is_empty() {
            return self.line_of(start);
        }
        let mut offset = start;
        for line in self
            .text
            .get(start..end)
            .unwrap_or("")
            .split_inclusive('\n')
        {
            let t = line.trim_start();
            if let Some(rest) = t.strip_prefix(key)
                && rest.trim_start().starts_with('=')
            {
                return self.line_of(offset);
            }
            offset += line.len();
        }
        self.line_of(start)
    }

    fn at(&mut self, span: std::ops::Range<usize>, message: impl Into<String>) {
        let message = message.into();
        let line = self.locate(&span, &message);
        self.problems.push(Problem {
            file: self.file.to_string(),
            line,
            message,
        });
    }

    /// Requires `v` to be finite and within `range`.
    fn num(&mut self, span: &std::ops::Range<usize>, what: &str, v: f64, lo: f64, hi: f64) {
        if !(v.is_finite() && v >= lo && v <= hi) {
            self.at(
                span.clone(),
                format!("{what} = {v} is out of range {lo}..={hi}"),
            );
        }
    }

    fn duration(&mut self, span: &std::ops::Range<usize>, what: &str, d: Duration) {
        match d {
            Duration::Forever => {}
            Duration::Exponential { mean_s } => self.num(span, what, mean_s, 1e-3, 1e9),
            Duration::Lognormal { median_s, sigma } => {
                self.num(span, what, median_s, 1e-3, 1e9);
                self.num(span, &format!("{what}.sigma"), sigma, 0.0, 10.0);
            }
            Duration::Weibull { scale_s, shape } => {
                self.num(span, what, scale_s, 1e-3, 1e9);
                self.num(span, &format!("{what}.shape"), shape, 0.05, 20.0);
            }
        }
    }
}

impl Scenario {
    /// Parses and validates scenario text. `file` names it in error messages.
    ///
    /// # Errors
    /// Every problem found, each with its line: TOML syntax, unknown keys, wrong
    /// types, values out of range, names that refer to nothing, duplicate names.
    pub fn parse(file: &str, text: &str) -> Result<Self, ScenarioError> {
        let mut c = Checker {
            file,
            text,
            problems: Vec::new(),
        };
        let scenario: Scenario = match toml::from_str(text) {
            Ok(s) => s,
            Err(e) => {
                let line = e.span().map_or(1, |s| c.line_of(s.start));
                return Err(ScenarioError(vec![Problem {
                    file: file.to_string(),
                    line,
                    message: e.message().trim().to_string(),
                }]));
            }
        };
        scenario.validate(&mut c);
        if c.problems.is_empty() {
            Ok(scenario)
        } else {
            c.problems.sort_by_key(|p| p.line);
            Err(ScenarioError(c.problems))
        }
    }

    /// The index of the region called `name`.
    pub fn region_index(&self, name: &str) -> Option<usize> {
        self.regions.iter().position(|r| r.get_ref().name == name)
    }

    /// The index of the class called `name`.
    pub fn class_index(&self, name: &str) -> Option<usize> {
        self.classes.iter().position(|r| r.get_ref().name == name)
    }

    /// The index of the alias called `name`.
    pub fn alias_index(&self, name: &str) -> Option<usize> {
        self.aliases.iter().position(|a| a.get_ref().name == name)
    }

    /// The index of the function called `name`.
    pub fn function_index(&self, name: &str) -> Option<usize> {
        self.functions.iter().position(|r| r.get_ref().name == name)
    }

    /// The strategies to run, in order.
    pub fn strategies(&self) -> Vec<Strategy> {
        self.strategies.run.iter().map(|s| *s.get_ref()).collect()
    }

    fn validate(&self, c: &mut Checker<'_>) {
        let top = 0..0;
        let s = &self.sim;
        c.num(&top, "sim.duration_s", s.duration_s, 1e-3, 1e8);
        if !(1..=1024).contains(&s.known_peers) {
            c.at(
                top.clone(),
                format!(
                    "sim.known_peers = {} is out of range 1..=1024",
                    s.known_peers
                ),
            );
        }
        c.num(&top, "sim.start_hour_utc", s.start_hour_utc, 0.0, 24.0);
        c.num(
            &top,
            "sim.advert_interval_s",
            s.advert_interval_s,
            0.01,
            3600.0,
        );
        if !(1..=16).contains(&s.max_attempts) {
            c.at(
                top.clone(),
                format!(
                    "sim.max_attempts = {} is out of range 1..=16",
                    s.max_attempts
                ),
            );
        }
        c.num(
            &top,
            "sim.failure_detect_ms",
            s.failure_detect_ms,
            0.0,
            600_000.0,
        );
        if s.vivaldi_rounds > 10_000 {
            c.at(top.clone(), "sim.vivaldi_rounds is out of range 0..=10000");
        }
        if s.oracle_every == 0 {
            c.at(top.clone(), "sim.oracle_every must be at least 1");
        }
        c.num(&top, "sim.bucket_s", s.bucket_s, 1e-3, 1e8);
        c.num(&top, "sim.compile_base_ms", s.compile_base_ms, 0.0, 1e6);
        c.num(
            &top,
            "sim.compile_ms_per_kib",
            s.compile_ms_per_kib,
            0.0,
            1e6,
        );
        c.num(
            &top,
            "sim.reference_cpu_score",
            s.reference_cpu_score,
            1.0,
            1e12,
        );
        let n = &self.network;
        c.num(
            &top,
            "network.fibre_km_per_ms",
            n.fibre_km_per_ms,
            1.0,
            300.0,
        );
        c.num(&top, "network.path_inflation", n.path_inflation, 1.0, 10.0);
        c.num(&top, "network.jitter_ms", n.jitter_ms, 0.0, 10_000.0);
        c.num(&top, "network.joules_per_byte", n.joules_per_byte, 0.0, 1.0);

        let mut seen: Vec<&str> = Vec::new();
        for r in &self.regions {
            let (sp, v) = (r.span(), r.get_ref());
            if seen.contains(&v.name.as_str()) {
                c.at(
                    sp.clone(),
                    format!("region \"{}\" is defined twice", v.name),
                );
            }
            seen.push(&v.name);
            c.num(&sp, "region.lat", v.lat, -90.0, 90.0);
            c.num(&sp, "region.lon", v.lon, -180.0, 180.0);
            c.num(&sp, "region.radius_km", v.radius_km, 0.0, 5_000.0);
            c.num(&sp, "region.utc_offset_h", v.utc_offset_h, -14.0, 14.0);
        }
        if self.regions.len() > 65_535 || self.classes.len() > 65_535 {
            c.at(top.clone(), "more than 65535 regions or classes");
        }
        if self.regions.is_empty() {
            c.at(top.clone(), "no [[region]]: a scenario needs at least one");
        }
        let mut seen: Vec<&str> = Vec::new();
        for k in &self.classes {
            let (sp, v) = (k.span(), k.get_ref());
            if seen.contains(&v.name.as_str()) {
                c.at(sp.clone(), format!("class \"{}\" is defined twice", v.name));
            }
            seen.push(&v.name);
            let what = |f: &str| format!("class \"{}\": {f}", v.name);
            c.num(&sp, &what("cpu_score"), v.cpu_score, 1.0, 1e9);
            c.num(&sp, &what("cores"), f64::from(v.cores), 1.0, 4096.0);
            c.num(&sp, &what("slots"), f64::from(v.slots), 1.0, 65_535.0);
            c.num(&sp, &what("queue"), f64::from(v.queue), 0.0, 65_535.0);
            c.num(&sp, &what("memory_mb"), v.memory_mb, 0.0, 1e6);
            c.num(&sp, &what("store_mb"), v.store_mb, 0.0, 1e9);
            c.num(&sp, &what("access_ms"), v.access_ms, 0.0, 10_000.0);
            c.num(&sp, &what("up_mbps"), v.up_mbps, 1e-3, 1e6);
            c.num(&sp, &what("down_mbps"), v.down_mbps, 1e-3, 1e6);
            c.num(&sp, &what("idle_w"), v.idle_w, 0.0, 1e5);
            c.num(&sp, &what("busy_w"), v.busy_w, v.idle_w.max(0.0), 1e5);
            c.num(&sp, &what("usd_per_cpu_hour"), v.usd_per_cpu_hour, 0.0, 1e4);
            c.duration(&sp, &what("session"), v.session);
            c.duration(&sp, &what("downtime"), v.downtime);
            if v.session != Duration::Forever && v.downtime == Duration::Forever {
                c.at(
                    sp.clone(),
                    what("a session ends but downtime is forever; give downtime a distribution"),
                );
            }
            if let Some([a, b]) = v.offline_hours {
                c.num(&sp, &what("offline_hours[0]"), a, 0.0, 24.0);
                c.num(&sp, &what("offline_hours[1]"), b, 0.0, 24.0);
            }
        }
        if self.classes.is_empty() {
            c.at(
                top.clone(),
                "no [[class]]: a scenario needs at least one device class",
            );
        }
        let mut total: u64 = 0;
        for p in &self.populations {
            let (sp, v) = (p.span(), p.get_ref());
            if self.class_index(&v.class).is_none() {
                c.at(
                    sp.clone(),
                    format!("population: no class called \"{}\"", v.class),
                );
            }
            if self.region_index(&v.region).is_none() {
                c.at(
                    sp.clone(),
                    format!("population: no region called \"{}\"", v.region),
                );
            }
            total += u64::from(v.count);
        }
        if total == 0 {
            c.at(top.clone(), "the populations add up to no peers");
        } else if total > MAX_PEERS {
            c.at(
                top.clone(),
                format!("the populations add up to {total} peers; the limit is {MAX_PEERS}"),
            );
        }
        let mut seen: Vec<&str> = Vec::new();
        for f in &self.functions {
            let (sp, v) = (f.span(), f.get_ref());
            if seen.contains(&v.name.as_str()) {
                c.at(
                    sp.clone(),
                    format!("function \"{}\" is defined twice", v.name),
                );
            }
            seen.push(&v.name);
            let what = |k: &str| format!("function \"{}\": {k}", v.name);
            c.num(&sp, &what("module_kib"), v.module_kib, 0.0, 1e6);
            c.num(&sp, &what("fuel"), v.fuel, 0.0, 1e15);
            c.num(&sp, &what("memory_mb"), v.memory_mb, 0.0, 1e6);
            c.num(&sp, &what("input_bytes"), v.input_bytes, 0.0, 1e10);
            c.num(&sp, &what("output_bytes"), v.output_bytes, 0.0, 1e10);
            c.num(&sp, &what("weight"), v.weight, 0.0, 1e9);
        }
        if self.functions.is_empty() {
            c.at(
                top.clone(),
                "no [[function]]: a scenario needs at least one",
            );
        } else if self.functions.len() > MAX_FUNCTIONS {
            c.at(
                top.clone(),
                format!(
                    "{} functions; the limit is {MAX_FUNCTIONS}",
                    self.functions.len()
                ),
            );
        }
        for w in &self.workloads {
            let (sp, v) = (w.span(), w.get_ref());
            if self.region_index(&v.region).is_none() {
                c.at(
                    sp.clone(),
                    format!("workload: no region called \"{}\"", v.region),
                );
            }
            c.num(&sp, "workload.rate_per_s", v.rate_per_s, 0.0, 1e8);
            c.num(
                &sp,
                "workload.diurnal_amplitude",
                v.diurnal_amplitude,
                0.0,
                1.0,
            );
            c.num(&sp, "workload.peak_hour", v.peak_hour, 0.0, 24.0);
            for f in &v.functions {
                if self.function_index(f).is_none() && self.alias_index(f).is_none() {
                    c.at(
                        sp.clone(),
                        format!("workload: no function or alias called \"{f}\""),
                    );
                }
            }
            let names: Vec<&str> = if v.functions.is_empty() {
                self.functions
                    .iter()
                    .map(|f| f.get_ref().name.as_str())
                    .collect()
            } else {
                v.functions.iter().map(String::as_str).collect()
            };
            let weight: f64 = names
                .iter()
                .map(|n| {
                    self.function_index(n)
                        .map(|i| self.functions[i].get_ref().weight)
                        .or_else(|| {
                            self.alias_index(n)
                                .map(|i| self.aliases[i].get_ref().weight)
                        })
                        .unwrap_or(0.0)
                })
                .sum();
            if weight.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
                && !self.functions.is_empty()
            {
                c.at(sp.clone(), "workload: its functions' weights add up to 0");
            }
        }
        let mut seen: Vec<&str> = Vec::new();
        for a in &self.aliases {
            let (sp, v) = (a.span(), a.get_ref());
            if seen.contains(&v.name.as_str()) || self.function_index(&v.name).is_some() {
                c.at(
                    sp.clone(),
                    format!(
                        "alias \"{}\" is defined twice (or is also a function's name)",
                        v.name
                    ),
                );
            }
            seen.push(&v.name);
            let valid = v.name.split_once('@').is_some_and(|(n, ch)| {
                kith_protocol::alias::Alias::new(kith_protocol::alias::Namespace([0; 32]), n, ch)
                    .is_ok()
            });
            if !valid {
                c.at(sp.clone(), format!("alias \"{}\": name must be NAME@CHANNEL, each 1 to 64 characters of a-z, 0-9, '-', '_', '.'", v.name));
            }
            if v.targets.is_empty() || v.targets.len() > kith_protocol::alias::MAX_TARGETS {
                c.at(sp.clone(), format!("alias \"{}\": targets has {} entries; an alias points at 1 to 16 functions", v.name, v.targets.len()));
            }
            for t in &v.targets {
                if self.function_index(&t.function).is_none() {
                    c.at(
                        sp.clone(),
                        format!(
                            "alias \"{}\": no function called \"{}\"",
                            v.name, t.function
                        ),
                    );
                }
                if t.weight == 0 {
                    c.at(
                        sp.clone(),
                        format!(
                            "alias \"{}\": target \"{}\" has weight 0; weights are 1 or more",
                            v.name, t.function
                        ),
                    );
                }
            }
            c.num(&sp, "alias.weight", v.weight, 0.0, 1e9);
        }
        if self.workloads.is_empty() {
            c.at(
                top.clone(),
                "no [[workload]]: a scenario needs at least one",
            );
        }
        let f = &self.failures;
        c.num(
            &top,
            "failures.crash_rate_per_peer_hour",
            f.crash_rate_per_peer_hour,
            0.0,
            1e4,
        );
        c.num(
            &top,
            "failures.restart_after_s",
            f.restart_after_s,
            0.0,
            1e8,
        );
        for o in &f.outages {
            let (sp, v) = (o.span(), o.get_ref());
            if self.region_index(&v.region).is_none() {
                c.at(
                    sp.clone(),
                    format!("outage: no region called \"{}\"", v.region),
                );
            }
            c.num(&sp, "outage.at_s", v.at_s, 0.0, 1e9);
            c.num(&sp, "outage.duration_s", v.duration_s, 0.0, 1e9);
        }
        for p in &f.partitions {
            let (sp, v) = (p.span(), p.get_ref());
            c.num(&sp, "partition.at_s", v.at_s, 0.0, 1e9);
            c.num(&sp, "partition.heal_s", v.heal_s, v.at_s.max(0.0), 1e9);
            if v.groups.len() > 200 {
                c.at(
                    sp.clone(),
                    format!("partition: {} groups; the limit is 200", v.groups.len()),
                );
            }
            let mut seen: Vec<&str> = Vec::new();
            for r in v.groups.iter().flatten() {
                if self.region_index(r).is_none() {
                    c.at(sp.clone(), format!("partition: no region called \"{r}\""));
                }
                if seen.contains(&r.as_str()) {
                    c.at(
                        sp.clone(),
                        format!("partition: region \"{r}\" is in two groups"),
                    );
                }
                seen.push(r);
            }
        }
        let strategies = self.strategies();
        if strategies.is_empty() {
            c.at(top.clone(), "strategies.run is empty");
        }
        if let Some(b) = &self.baseline {
            let (sp, v) = (b.span(), b.get_ref());
            if self.region_index(&v.region).is_none() {
                c.at(
                    sp.clone(),
                    format!("baseline: no region called \"{}\"", v.region),
                );
            }
            if self.class_index(&v.class).is_none() {
                c.at(
                    sp.clone(),
                    format!("baseline: no class called \"{}\"", v.class),
                );
            }
            if !(1..=1_000_000).contains(&v.servers) {
                c.at(
                    sp.clone(),
                    format!(
                        "baseline.servers = {} is out of range 1..=1000000",
                        v.servers
                    ),
                );
            }
            c.num(&sp, "baseline.pue", v.pue, 1.0, 5.0);
        } else if strategies.contains(&Strategy::Cloud) {
            c.at(
                top.clone(),
                "strategy \"cloud\" needs a [baseline] section (region, class, servers)",
            );
        }
        if let Some(o) = &self.origin {
            let (sp, v) = (o.span(), o.get_ref());
            if self.region_index(&v.region).is_none() {
                c.at(
                    sp.clone(),
                    format!("origin: no region called \"{}\"", v.region),
                );
            }
            c.num(&sp, "origin.up_mbps", v.up_mbps, 1e-3, 1e7);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const MINIMAL: &str = r#"
[[region]]
name = "here"
lat = 51.5
lon = 0.0

[[class]]
name = "pi"
device = "pi"
cpu_score = 1000000
memory_mb = 256
access_ms = 5
up_mbps = 20
down_mbps = 100

[[population]]
class = "pi"
region = "here"
count = 10

[[function]]
name = "f"
module_kib = 100
fuel = 1000000
memory_mb = 16

[[workload]]
region = "here"
rate_per_s = 5

[baseline]
region = "here"
class = "pi"
servers = 2
"#;

    #[test]
    fn minimal_parses_with_defaults() {
        let s = Scenario::parse("m.toml", MINIMAL).expect("valid");
        assert_eq!(s.sim.known_peers, 24);
        assert_eq!(s.classes[0].get_ref().slots, 1);
        assert_eq!(s.strategies().len(), 4);
    }

    #[test]
    fn errors_name_lines() {
        let bad = MINIMAL.replace("region = \"here\"\ncount", "region = \"nowhere\"\ncount");
        let e = Scenario::parse("m.toml", &bad).expect_err("unknown region");
        assert_eq!(e.0.len(), 1);
        assert_eq!(e.0[0].line, 18, "{e}");
        assert!(
            e.to_string().contains("no region called \"nowhere\""),
            "{e}"
        );

        let bad = MINIMAL.replace("cpu_score = 1000000", "cpu_score = 1000000\nspeed = 3");
        let e = Scenario::parse("m.toml", &bad).expect_err("unknown key");
        assert_eq!(e.0[0].line, 11, "{e}");
        assert!(e.to_string().contains("speed"), "{e}");

        let bad = MINIMAL.replace("fuel = 1000000", "fuel = -5");
        let e = Scenario::parse("m.toml", &bad).expect_err("negative");
        assert!(e.to_string().contains("fuel = -5 is out of range"), "{e}");
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "",
            "[[[",
            "x = ",
            "[sim]\nduration_s = \"long\"",
            "\u{0}\u{ffff}",
            "[[region]]\nname=1",
        ] {
            assert!(Scenario::parse("g.toml", text).is_err(), "{text:?}");
        }
    }
}
