//! The discrete-event engine: one run of one strategy over a world.
//!
//! Events sit in a binary heap ordered by (time, sequence number), so two events at
//! the same microsecond always run in the order they were scheduled: a run is a pure
//! function of the scenario and the seed. Every processed event is fed to a blake3
//! hasher; the digest is the run's trace hash.
//!
//! A call's life: it **arrives** at an entry peer in its region (Poisson arrivals,
//! thinned to the diurnal rate), the strategy ranks candidates, and the entry tries
//! them with protocol's call attempts (`kith_protocol::attempt`, the code the node
//! runs): in order, then the saturated fallbacks, each peer once, at most
//! `sim.max_attempts`, retrying what the error kind's disposition says to retry. A
//! request to a peer that has vanished or sits across a partition costs
//! `sim.failure_detect_ms` before it counts as `unreachable`; a peer whose slots and
//! queue are full answers `busy` at once (a round trip). The executing peer fetches the module if it lacks it (from the
//! nearest known peer that has it, else the origin; the flow's rate is its fair share
//! of both ends' links when it starts), compiles it (time scaled by its CPU score),
//! runs it (fuel over CPU score), and answers. Peers going offline kill what they
//! were running; the entry notices after the detection time and retries.

use std::collections::{BinaryHeap, VecDeque};

use kith_protocol::ErrorKind;
use kith_protocol::admission::{self, Admit};
use kith_protocol::alias::{self, Alias, Namespace, Target};
use kith_protocol::attempt::{self, Attempts, Step, Verdict};
use kith_protocol::capacity::{Advert, Cached};
use kith_protocol::fetch::{self, Known};
use kith_protocol::placement::{self, PeerView};

use crate::rng::{Rng, Stream};
use crate::scenario::{Duration, Scenario, Strategy};
use crate::world::World;

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Still running when the run ended (never, once the heap drains).
    Pending,
    /// Answered.
    Ok,
    /// No online entry peer in the caller's region.
    NoEntry,
    /// No capable peer known to the entry.
    NoCapablePeer,
    /// Every attempt failed (busy, vanished, unreachable).
    Exhausted,
    /// The entry went away before the answer came back.
    Lost,
}

impl Outcome {
    /// Its name in files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Ok => "ok",
            Self::NoEntry => "no_entry",
            Self::NoCapablePeer => "no_capable_peer",
            Self::Exhausted => "exhausted",
            Self::Lost => "lost",
        }
    }
}

/// No peer (yet).
pub const NONE: u32 = u32::MAX;

/// One call, as the run leaves it.
#[derive(Debug, Clone)]
pub struct Call {
    /// Arrival, µs.
    pub t0_us: u64,
    /// Answer, µs (0 when not answered).
    pub done_us: u64,
    /// The entry peer.
    pub entry: u32,
    /// The peer that ran it (last tried), or [`NONE`].
    pub executor: u32,
    /// The function.
    pub function: u16,
    /// The caller's region.
    pub region: u16,
    /// Attempts made.
    pub attempts: u8,
    /// True if the executor had to fetch or wait for the module.
    pub cold: bool,
    /// How it ended.
    pub outcome: Outcome,
    /// Base RTT entry → executor, ms (NaN when none).
    pub rtt_ms: f32,
    /// RTT(chosen) / RTT(nearest capable peer) from the oracle, NaN when not sampled.
    pub stretch: f32,
    /// The call's attempts while it is pending (dropped when it ends).
    tries: Option<Box<Attempts<u32>>>,
    /// Why the attempt in flight failed, when a retry is scheduled.
    failed_with: ErrorKind,
    slot_start_us: u64,
}

impl Call {
    /// Latency in ms, if answered.
    pub fn latency_ms(&self) -> Option<f64> {
        (self.outcome == Outcome::Ok).then(|| (self.done_us - self.t0_us) as f64 / 1000.0)
    }
}

/// Totals of one run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Totals {
    /// Events processed.
    pub events: u64,
    /// Module fetches.
    pub fetches: u64,
    /// Bytes of modules moved.
    pub fetch_bytes: f64,
    /// Bytes of requests and responses moved between peers.
    pub call_bytes: f64,
    /// Marginal compute energy (above idle), joules.
    pub compute_joules: f64,
    /// Network energy, joules.
    pub network_joules: f64,
    /// Compute cost, USD.
    pub cost_usd: f64,
    /// Refusals because a peer was full.
    pub refused_busy: u64,
    /// Attempts that hit a vanished or unreachable peer.
    pub peer_failures: u64,
    /// Calls run by the entry itself.
    pub local_runs: u64,
    /// Peers going offline (churn, crash, daily cycle, outage).
    pub departures: u64,
}

/// Busy and offered slot-time per device class per time bucket.
#[derive(Debug, Clone)]
pub struct Load {
    /// Bucket width, µs.
    pub bucket_us: u64,
    /// `busy[class][bucket]`: slot-ms spent on calls.
    pub busy: Vec<Vec<f64>>,
    /// `offered[class][bucket]`: slot-ms of online peers.
    pub offered: Vec<Vec<f64>>,
}

impl Load {
    fn spread(row: &mut [f64], bucket_us: u64, from_us: u64, to_us: u64, weight: f64) {
        let mut t = from_us;
        while t < to_us {
            let b = (t / bucket_us) as usize;
            let Some(cell) = row.get_mut(b) else { break };
            let end = ((b as u64 + 1) * bucket_us).min(to_us);
            *cell += (end - t) as f64 / 1000.0 * weight;
            t = end;
        }
    }
}

/// The result of one run.
#[derive(Debug, Clone)]
pub struct Run {
    /// The strategy.
    pub strategy: Strategy,
    /// Every call, in arrival order.
    pub calls: Vec<Call>,
    /// Totals.
    pub totals: Totals,
    /// Load per class over time.
    pub load: Load,
    /// blake3 of every processed event.
    pub trace_hash: [u8; 32],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Arrival { workload: u32 },
    Deliver { call: u32, attempt: u8 },
    Finish { call: u32, attempt: u8 },
    Done { call: u32 },
    Retry { call: u32, attempt: u8 },
    Churn { peer: u32 },
    Crash { peer: u32 },
    Restart { peer: u32 },
    Daily { peer: u32, off: bool },
    Outage { index: u32, start: bool },
    Partition { index: u32, start: bool },
}

impl Ev {
    fn trace(&self) -> [u8; 9] {
        let (kind, a, b): (u8, u32, u32) = match *self {
            Self::Arrival { workload } => (0, workload, 0),
            Self::Deliver { call, attempt } => (1, call, u32::from(attempt)),
            Self::Finish { call, attempt } => (2, call, u32::from(attempt)),
            Self::Done { call } => (3, call, 0),
            Self::Retry { call, attempt } => (4, call, u32::from(attempt)),
            Self::Churn { peer } => (5, peer, 0),
            Self::Crash { peer } => (6, peer, 0),
            Self::Restart { peer } => (7, peer, 0),
            Self::Daily { peer, off } => (8, peer, u32::from(off)),
            Self::Outage { index, start } => (9, index, u32::from(start)),
            Self::Partition { index, start } => (10, index, u32::from(start)),
        };
        let mut out = [0u8; 9];
        out[0] = kind;
        out[1..5].copy_from_slice(&a.to_le_bytes());
        out[5..9].copy_from_slice(&b.to_le_bytes());
        out
    }
}

const CHURN: u8 = 1;
const CRASH: u8 = 2;
const DAILY: u8 = 4;

#[derive(Debug, Clone, Copy)]
struct Cache {
    function: u16,
    ready_us: u64,
    last_us: u64,
}

/// A peer's changing state.
#[derive(Debug, Clone, Default)]
struct PeerState {
    down: u8,
    outages: u8,
    down_since_us: u64,
    running: Vec<u32>,
    queue: VecDeque<u32>,
    cache: Vec<Cache>,
    cache_bytes: u64,
    flows_up: Vec<u64>,
    flows_down: Vec<u64>,
    next_advert_us: u64,
}

impl PeerState {
    fn online(&self) -> bool {
        self.down == 0 && self.outages == 0
    }
}

/// What a workload calls: a function, or an alias resolved per call.
#[derive(Debug, Clone, Copy)]
enum Callee {
    Function(u16),
    Alias(usize),
}

struct WorkloadState {
    region: usize,
    rng: Rng,
    rate: f64,
    amplitude: f64,
    peak_h: f64,
    utc_offset_h: f64,
    functions: Vec<(Callee, f64)>,
}

/// An alias of the scenario, as protocol's types.
struct AliasState {
    alias: Alias,
    targets: Vec<Target>,
}

/// Mean of a duration distribution, seconds.
fn mean_s(d: Duration) -> f64 {
    match d {
        Duration::Forever => f64::INFINITY,
        Duration::Exponential { mean_s } => mean_s,
        Duration::Lognormal { median_s, sigma } => median_s * (sigma * sigma / 2.0).exp(),
        Duration::Weibull { scale_s, shape } => scale_s * gamma(1.0 + 1.0 / shape),
    }
}

/// The gamma function for x > 0 (Lanczos, g = 7).
fn gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return std::f64::consts::PI / ((std::f64::consts::PI * x).sin() * gamma(1.0 - x));
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let sum = C[0] + (1..9).map(|i| C[i] / (x + i as f64)).sum::<f64>();
    (std::f64::consts::TAU).sqrt() * t.powf(x + 0.5) * (-t).exp() * sum
}

fn us(ms: f64) -> u64 {
    if ms.is_finite() && ms > 0.0 {
        (ms * 1000.0).round() as u64
    } else {
        0
    }
}

/// One run in progress.
pub struct Engine<'w> {
    world: &'w World,
    scenario: &'w Scenario,
    strategy: Strategy,
    heap: BinaryHeap<std::cmp::Reverse<(u64, u64, Ev)>>,
    seq: u64,
    now_us: u64,
    end_us: u64,
    peers: Vec<PeerState>,
    adverts: Vec<Advert>,
    choice: Vec<Rng>,
    churn: Vec<Rng>,
    jitter: Rng,
    workloads: Vec<WorkloadState>,
    aliases: Vec<AliasState>,
    partitions: Vec<Vec<u8>>,
    active_partitions: Vec<usize>,
    partition_change_us: u64,
    origin_flows: Vec<u64>,
    region_outages: Vec<u32>,
    calls: Vec<Call>,
    totals: Totals,
    load: Load,
    online_slots: Vec<f64>,
    slots_since_us: Vec<u64>,
    hasher: blake3::Hasher,
    placement: placement::Config,
    use_coordinates: bool,
}

impl<'w> Engine<'w> {
    /// A run of `strategy` over `world` for `seed`.
    pub fn new(scenario: &'w Scenario, world: &'w World, strategy: Strategy, seed: u64) -> Self {
        let n = world.peers.len();
        let end_us = us(scenario.sim.duration_s * 1000.0);
        let bucket_us = us(scenario.sim.bucket_s * 1000.0).max(1);
        let buckets = end_us.div_ceil(bucket_us) as usize;
        let classes = world.classes.len();
        let workloads = scenario
            .workloads
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let w = w.get_ref();
                let region = scenario.region_index(&w.region).unwrap_or(0);
                let callees: Vec<(Callee, f64)> = if w.functions.is_empty() {
                    (0..world.functions.len())
                        .map(|f| (Callee::Function(f as u16), world.functions[f].spec.weight))
                        .collect()
                } else {
                    w.functions
                        .iter()
                        .filter_map(|name| {
                            scenario
                                .function_index(name)
                                .map(|f| {
                                    (Callee::Function(f as u16), world.functions[f].spec.weight)
                                })
                                .or_else(|| {
                                    scenario.alias_index(name).map(|a| {
                                        (Callee::Alias(a), scenario.aliases[a].get_ref().weight)
                                    })
                                })
                        })
                        .collect()
                };
                WorkloadState {
                    region,
                    rng: Rng::stream(seed, Stream::Arrivals, i as u64),
                    rate: w.rate_per_s,
                    amplitude: w.diurnal_amplitude,
                    peak_h: w.peak_hour,
                    utc_offset_h: scenario.regions[region].get_ref().utc_offset_h
                        + scenario.sim.start_hour_utc,
                    functions: callees,
                }
            })
            .collect();
        let partitions = scenario
            .failures
            .partitions
            .iter()
            .map(|p| {
                let p = p.get_ref();
                let mut group = vec![p.groups.len() as u8; scenario.regions.len()];
                for (g, regions) in p.groups.iter().enumerate() {
                    for r in regions {
                        if let Some(i) = scenario.region_index(r) {
                            group[i] = g as u8;
                        }
                    }
                }
                group
            })
            .collect();
        let aliases = scenario
            .aliases
            .iter()
            .filter_map(|a| {
                let a = a.get_ref();
                let (name, channel) = a.name.split_once('@')?;
                Some(AliasState {
                    alias: Alias::new(Namespace([0; 32]), name, channel).ok()?,
                    targets: a
                        .targets
                        .iter()
                        .filter_map(|t| {
                            scenario.function_index(&t.function).map(|f| Target {
                                function: world.functions[f].id,
                                weight: t.weight,
                            })
                        })
                        .collect(),
                })
            })
            .collect();
        let adverts = (0..n as u32)
            .map(|p| world.advert(p, 0, 0, Cached::default()))
            .collect();
        Self {
            world,
            scenario,
            strategy,
            heap: BinaryHeap::new(),
            seq: 0,
            now_us: 0,
            end_us,
            peers: vec![PeerState::default(); n],
            adverts,
            choice: (0..world.population as u64)
                .map(|p| Rng::stream(seed, Stream::Choice, p))
                .collect(),
            churn: (0..n as u64)
                .map(|p| Rng::stream(seed, Stream::Churn, p))
                .collect(),
            jitter: Rng::stream(seed, Stream::Choice, u64::MAX),
            workloads,
            aliases,
            partitions,
            active_partitions: Vec::new(),
            partition_change_us: 0,
            origin_flows: Vec::new(),
            region_outages: vec![0; scenario.regions.len()],
            calls: Vec::new(),
            totals: Totals::default(),
            load: Load {
                bucket_us,
                busy: vec![vec![0.0; buckets]; classes],
                offered: vec![vec![0.0; buckets]; classes],
            },
            online_slots: vec![0.0; classes],
            slots_since_us: vec![0; classes],
            hasher: blake3::Hasher::new(),
            placement: placement::Config::default(),
            use_coordinates: false,
        }
    }

    /// Ranks by Vivaldi coordinates instead of measured RTTs (kith strategy only).
    pub fn use_coordinates(mut self, yes: bool) -> Self {
        self.use_coordinates = yes;
        self
    }

    fn at(&mut self, t_us: u64, ev: Ev) {
        self.seq += 1;
        self.heap.push(std::cmp::Reverse((t_us, self.seq, ev)));
    }

    /// Runs to the end. `progress` is called with the simulated fraction done, at most
    /// once per percent.
    pub fn run(mut self, progress: &mut dyn FnMut(f64)) -> Run {
        self.schedule_initial();
        let mut next_report = 0u64;
        let step = (self.end_us / 100).max(1);
        while let Some(std::cmp::Reverse((t, _, ev))) = self.heap.pop() {
            self.now_us = t;
            self.totals.events += 1;
            self.hasher.update(&t.to_le_bytes());
            self.hasher.update(&ev.trace());
            if t >= next_report {
                progress((t as f64 / self.end_us.max(1) as f64).min(1.0));
                next_report = t + step;
            }
            self.handle(ev);
        }
        let classes = self.world.classes.len();
        for c in 0..classes {
            self.flush_slots(c, self.end_us);
        }
        progress(1.0);
        Run {
            strategy: self.strategy,
            calls: self.calls,
            totals: self.totals,
            load: self.load,
            trace_hash: *self.hasher.finalize().as_bytes(),
        }
    }

    fn schedule_initial(&mut self) {
        let world = self.world;
        let f = &self.scenario.failures;
        for p in 0..world.peers.len() as u32 {
            let i = p as usize;
            let class = &world.classes[world.peers[i].class as usize].spec;
            // Churn streams are keyed by the seed alone (not the strategy), so every
            // strategy sees the same devices come and go.
            let rng = &mut self.churn[i];
            let mut events: Vec<(u64, Ev)> = Vec::new();
            let mut down = 0;
            // Start in the steady state: online with probability session/(session+down).
            let (on, off) = (mean_s(class.session), mean_s(class.downtime));
            if on.is_finite() {
                let online = rng.unit() < on / (on + off);
                if !online {
                    down |= CHURN;
                }
                let d = if online {
                    class.session
                } else {
                    class.downtime
                };
                events.push((us(rng.duration(d) * 1000.0), Ev::Churn { peer: p }));
            }
            if let Some([a, b]) = class.offline_hours {
                // Devices do not all switch off on the same second: ±30 minutes.
                let shift = (rng.unit() - 0.5) * 3600.0;
                let offset = self.scenario.regions[world.peers[i].region as usize]
                    .get_ref()
                    .utc_offset_h
                    + self.scenario.sim.start_hour_utc;
                let h0 = (offset - shift / 3600.0 + 48.0) % 24.0;
                let inside = if a <= b {
                    h0 >= a && h0 < b
                } else {
                    h0 >= a || h0 < b
                };
                if inside {
                    down |= DAILY;
                }
                for (edge, off) in [(a, true), (b, false)] {
                    let wait_h = (edge - h0 + 24.0) % 24.0;
                    events.push((us(wait_h * 3_600_000.0), Ev::Daily { peer: p, off }));
                }
            }
            if f.crash_rate_per_peer_hour > 0.0 && i < world.population {
                let t = us(rng.exp(3_600.0 / f.crash_rate_per_peer_hour) * 1000.0);
                events.push((t, Ev::Crash { peer: p }));
            }
            self.peers[i].down = down;
            for (t, ev) in events {
                if t < self.end_us {
                    self.at(t, ev);
                }
            }
            if self.peers[i].online() {
                let c = world.peers[i].class as usize;
                self.online_slots[c] += f64::from(class.slots);
            }
        }
        for (i, o) in f.outages.iter().enumerate() {
            let o = o.get_ref();
            self.at(
                us(o.at_s * 1000.0),
                Ev::Outage {
                    index: i as u32,
                    start: true,
                },
            );
            self.at(
                us((o.at_s + o.duration_s) * 1000.0),
                Ev::Outage {
                    index: i as u32,
                    start: false,
                },
            );
        }
        for (i, p) in f.partitions.iter().enumerate() {
            let p = p.get_ref();
            self.at(
                us(p.at_s * 1000.0),
                Ev::Partition {
                    index: i as u32,
                    start: true,
                },
            );
            self.at(
                us(p.heal_s * 1000.0),
                Ev::Partition {
                    index: i as u32,
                    start: false,
                },
            );
        }
        for w in 0..self.workloads.len() {
            if let Some(t) = self.next_arrival(w, 0) {
                self.at(t, Ev::Arrival { workload: w as u32 });
            }
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Arrival { workload } => self.arrival(workload as usize),
            Ev::Deliver { call, attempt } => self.deliver(call, attempt),
            Ev::Finish { call, attempt } => self.finish(call, attempt),
            Ev::Done { call } => self.done(call),
            Ev::Retry { call, attempt } => {
                if self.calls[call as usize].attempts == attempt + 1 {
                    self.answered_with_error(call);
                }
            }
            Ev::Churn { peer } => self.churn(peer),
            Ev::Crash { peer } => {
                self.set_down(peer, CRASH, true);
                let after = us(self.scenario.failures.restart_after_s * 1000.0);
                self.at(self.now_us + after.max(1), Ev::Restart { peer });
            }
            Ev::Restart { peer } => {
                self.set_down(peer, CRASH, false);
                let rate = self.scenario.failures.crash_rate_per_peer_hour;
                let t = self.now_us + us(self.churn[peer as usize].exp(3_600.0 / rate) * 1000.0);
                if t < self.end_us {
                    self.at(t, Ev::Crash { peer });
                }
            }
            Ev::Daily { peer, off } => {
                self.set_down(peer, DAILY, off);
                let t = self.now_us + 86_400_000_000;
                if t < self.end_us {
                    self.at(t, Ev::Daily { peer, off });
                }
            }
            Ev::Outage { index, start } => {
                let Some(o) = self.scenario.failures.outages.get(index as usize) else {
                    return;
                };
                let Some(region) = self.scenario.region_index(&o.get_ref().region) else {
                    return;
                };
                let out = &mut self.region_outages[region];
                *out = if start {
                    out.saturating_add(1)
                } else {
                    out.saturating_sub(1)
                };
                for p in 0..self.world.peers.len() as u32 {
                    if self.world.peers[p as usize].region as usize == region {
                        self.set_outage(p, start);
                    }
                }
            }
            Ev::Partition { index, start } => {
                if start {
                    self.active_partitions.push(index as usize);
                } else {
                    self.active_partitions.retain(|i| *i != index as usize);
                }
                self.partition_change_us = self.now_us;
            }
        }
    }
}

/// Peers, churn and reachability.
impl Engine<'_> {
    fn online(&self, p: u32) -> bool {
        self.peers[p as usize].online()
    }

    /// True if and only if no active partition separates `a` and `b`.
    fn reachable(&self, a: u32, b: u32) -> bool {
        let (ra, rb) = (
            self.world.peers[a as usize].region as usize,
            self.world.peers[b as usize].region as usize,
        );
        self.reachable_regions(ra, rb)
    }

    fn reachable_regions(&self, ra: usize, rb: usize) -> bool {
        self.active_partitions
            .iter()
            .all(|i| self.partitions[*i][ra] == self.partitions[*i][rb])
    }

    /// True if `e` still believes it is connected to `q`: `q` is up and reachable, or
    /// went away less than the detection time ago.
    fn visible(&self, e: u32, q: u32) -> bool {
        let detect = us(self.scenario.sim.failure_detect_ms);
        let s = &self.peers[q as usize];
        // Peers offline from the start (down_since 0) were never connected.
        (s.online() || (s.down_since_us > 0 && self.now_us < s.down_since_us + detect))
            && (self.reachable(e, q) || self.now_us < self.partition_change_us + detect)
    }

    fn churn(&mut self, peer: u32) {
        let class = &self.world.classes[self.world.peers[peer as usize].class as usize].spec;
        let was_down = self.peers[peer as usize].down & CHURN != 0;
        let next = if was_down {
            class.session
        } else {
            class.downtime
        };
        let t = self.now_us + us(self.churn[peer as usize].duration(next) * 1000.0).max(1);
        self.set_down(peer, CHURN, !was_down);
        if t < self.end_us {
            self.at(t, Ev::Churn { peer });
        }
    }

    fn set_down(&mut self, p: u32, bit: u8, down: bool) {
        let before = self.online(p);
        let s = &mut self.peers[p as usize];
        if down {
            s.down |= bit;
        } else {
            s.down &= !bit;
        }
        self.transition(p, before);
    }

    fn set_outage(&mut self, p: u32, start: bool) {
        let before = self.online(p);
        let s = &mut self.peers[p as usize];
        s.outages = if start {
            s.outages.saturating_add(1)
        } else {
            s.outages.saturating_sub(1)
        };
        self.transition(p, before);
    }

    fn flush_slots(&mut self, class: usize, to_us: u64) {
        let from = self.slots_since_us[class];
        let to = to_us.min(self.end_us);
        if to > from {
            Load::spread(
                &mut self.load.offered[class],
                self.load.bucket_us,
                from,
                to,
                self.online_slots[class],
            );
        }
        self.slots_since_us[class] = self.slots_since_us[class].max(to);
    }

    /// Applies an online/offline change: a peer that goes away loses what it was
    /// running and queueing; each entry notices after the detection time.
    fn transition(&mut self, p: u32, was_online: bool) {
        let now_online = self.online(p);
        if now_online == was_online {
            return;
        }
        let class = self.world.peers[p as usize].class as usize;
        let slots = f64::from(self.world.classes[class].spec.slots);
        self.flush_slots(class, self.now_us);
        if now_online {
            self.online_slots[class] += slots;
            return;
        }
        self.online_slots[class] -= slots;
        self.totals.departures += 1;
        let detect = us(self.scenario.sim.failure_detect_ms);
        let s = &mut self.peers[p as usize];
        s.down_since_us = self.now_us.max(1);
        let running = std::mem::take(&mut s.running);
        let queued: Vec<u32> = s.queue.drain(..).collect();
        for &call in &running {
            let start = self.calls[call as usize].slot_start_us;
            let end = self.now_us.min(self.end_us);
            Load::spread(
                &mut self.load.busy[class],
                self.load.bucket_us,
                start,
                end,
                1.0,
            );
        }
        for call in running.into_iter().chain(queued) {
            self.totals.peer_failures += 1;
            let attempt = self.calls[call as usize].attempts.saturating_sub(1);
            self.fail_attempt(call, attempt, ErrorKind::Unreachable, self.now_us + detect);
        }
    }
}

/// Calls: arrival, placement, attempts, execution, answers.
impl Engine<'_> {
    fn next_arrival(&mut self, w: usize, from_us: u64) -> Option<u64> {
        let end = self.end_us;
        let ws = &mut self.workloads[w];
        let max = ws.rate * (1.0 + ws.amplitude);
        if max <= 0.0 {
            return None;
        }
        let mut t = from_us;
        loop {
            t += us(ws.rng.exp(1000.0 / max)).max(1);
            if t >= end {
                return None;
            }
            let hour = (t as f64 / 3.6e9 + ws.utc_offset_h + 48.0) % 24.0;
            let phase = std::f64::consts::TAU * (hour - ws.peak_h) / 24.0;
            let rate = ws.rate * (1.0 + ws.amplitude * phase.cos());
            if ws.rng.unit() * max < rate {
                return Some(t);
            }
        }
    }

    fn arrival(&mut self, w: usize) {
        if let Some(t) = self.next_arrival(w, self.now_us) {
            self.at(t, Ev::Arrival { workload: w as u32 });
        }
        let ws = &mut self.workloads[w];
        let total: f64 = ws.functions.iter().map(|f| f.1).sum();
        let mut pick = ws.rng.unit() * total;
        let mut callee = ws.functions.last().map_or(Callee::Function(0), |f| f.0);
        for &(f, weight) in &ws.functions {
            if pick < weight {
                callee = f;
                break;
            }
            pick -= weight;
        }
        let function = match callee {
            Callee::Function(f) => f,
            Callee::Alias(a) => {
                // The node's rule: a random 16-byte routing key per call, resolved
                // with protocol's split resolution.
                let key: [u8; 16] = std::array::from_fn(|_| ws.rng.below(256) as u8);
                let state = &self.aliases[a];
                let id = alias::pick(&state.alias, &state.targets, &key);
                self.world
                    .functions
                    .iter()
                    .position(|f| Some(f.id) == id)
                    .map_or(0, |f| f as u16)
            }
        };
        let region = ws.region;
        let members = &self.world.by_region[region];
        let mut entry = NONE;
        for _ in 0..16 {
            if members.is_empty() {
                break;
            }
            let q = members[self.workloads[w].rng.below(members.len() as u64) as usize];
            if self.online(q) {
                entry = q;
                break;
            }
        }
        let id = self.calls.len() as u32;
        self.calls.push(Call {
            t0_us: self.now_us,
            done_us: 0,
            entry,
            executor: NONE,
            function,
            region: region as u16,
            attempts: 0,
            cold: false,
            outcome: Outcome::Pending,
            rtt_ms: f32::NAN,
            stretch: f32::NAN,
            tries: None,
            failed_with: ErrorKind::Unreachable,
            slot_start_us: 0,
        });
        if entry == NONE {
            self.end(id, Outcome::NoEntry);
            return;
        }
        let tries = self.place(entry, function);
        let Some(first) = tries.order().next() else {
            self.end(id, Outcome::NoCapablePeer);
            return;
        };
        if (id as usize).is_multiple_of(self.scenario.sim.oracle_every as usize) && first != entry {
            let best = self.oracle(entry, function);
            if best.is_finite() && best > 0.0 {
                let chosen = self.world.rtt_ms(entry, first);
                self.calls[id as usize].stretch = (chosen / best) as f32;
            }
        }
        self.calls[id as usize].tries = Some(Box::new(tries));
        self.attempt(id);
    }

    fn protocol_call(&self, function: u16) -> placement::Call<'static> {
        let f = &self.world.functions[function as usize];
        placement::Call {
            function: f.id,
            memory_bytes: f.memory_bytes,
            expected_fuel: f.spec.fuel as u64,
            module_bytes: f.module_bytes,
            state_docs: &[],
            state_bytes: 0,
        }
    }

    fn warm(&self, p: u32, function: u16) -> bool {
        self.peers[p as usize]
            .cache
            .iter()
            .any(|c| c.function == function && c.ready_us <= self.now_us)
    }

    /// Refreshes `q`'s published advert if its advert period has passed (adverts are
    /// periodic: between them, others see the load as it was).
    fn refresh_advert(&mut self, q: u32) {
        let interval = us(self.scenario.sim.advert_interval_s * 1000.0).max(1);
        let s = &mut self.peers[q as usize];
        if self.now_us < s.next_advert_us || !s.online() {
            return;
        }
        let phase = u64::from(q).wrapping_mul(7_919) % interval;
        let k = (self.now_us + interval - phase) / interval;
        s.next_advert_us = k * interval + phase;
        let a = &mut self.adverts[q as usize];
        a.running = s.running.len().min(usize::from(a.max_concurrent)) as u16;
        a.queued = s.queue.len().min(usize::from(a.max_queued)) as u16;
    }

    /// The entry's own advert, current to the microsecond.
    fn local_advert(&self, e: u32) -> Advert {
        let s = &self.peers[e as usize];
        let class = &self.world.classes[self.world.peers[e as usize].class as usize].spec;
        self.world.advert(
            e,
            s.running.len().min(class.slots as usize) as u16,
            s.queue.len().min(class.queue as usize) as u16,
            Cached::default(),
        )
    }

    /// The call's attempts: protocol's attempt rules over the strategy's order.
    fn place(&mut self, e: u32, function: u16) -> Attempts<u32> {
        let config = attempt::Config {
            max_attempts: self.scenario.sim.max_attempts as usize,
            ..attempt::Config::default()
        };
        let timeout_ms = 0;
        let call = self.protocol_call(function);
        let max = config.max_attempts;
        let world = self.world;
        if self.strategy == Strategy::Cloud {
            let mut servers: Vec<(bool, usize, u32)> = (world.population..world.peers.len())
                .map(|q| {
                    let s = &self.peers[q];
                    (!s.online(), s.running.len() + s.queue.len(), q as u32)
                })
                .collect();
            let k = max.min(servers.len());
            if k < servers.len() {
                servers.select_nth_unstable(k);
                servers.truncate(k);
            }
            servers.sort_unstable();
            let order = servers.into_iter().map(|s| (s.2, false));
            return Attempts::from_order(order, &config, timeout_ms);
        }
        let view: Vec<u32> = world.peers[e as usize]
            .view
            .iter()
            .copied()
            .filter(|&q| self.visible(e, q))
            .collect();
        for &q in &view {
            self.refresh_advert(q);
        }
        let local = self.local_advert(e);
        match self.strategy {
            Strategy::Kith => {
                let views: Vec<PeerView<'_, u32>> = std::iter::once(PeerView {
                    peer: e,
                    advert: &local,
                    measured_rtt_ms: Some(0.0),
                    local: true,
                    known_warm: Some(self.warm(e, function)),
                    known_state: None,
                    penalty: 0.0,
                })
                .chain(view.iter().map(|&q| PeerView {
                    peer: q,
                    advert: &self.adverts[q as usize],
                    measured_rtt_ms: (!self.use_coordinates).then(|| world.rtt_ms(e, q)),
                    local: false,
                    known_warm: None,
                    known_state: None,
                    penalty: 0.0,
                }))
                .collect();
                let fallbacks = placement::fallbacks(&call, views.iter().copied(), &local);
                let ranked = placement::rank(&call, views, &local, &self.placement);
                Attempts::new(&ranked, &fallbacks, &config, timeout_ms)
            }
            Strategy::Random | Strategy::Nearest => {
                let mut capable: Vec<u32> =
                    std::iter::once(e)
                        .filter(|_| placement::capable(&call, &local).is_ok())
                        .chain(view.into_iter().filter(|&q| {
                            placement::capable(&call, &self.adverts[q as usize]).is_ok()
                        }))
                        .collect();
                if self.strategy == Strategy::Random {
                    let rng = &mut self.choice[e as usize];
                    for i in (1..capable.len()).rev() {
                        let j = rng.below(i as u64 + 1) as usize;
                        capable.swap(i, j);
                    }
                } else {
                    let pe = world.peers[e as usize].pos;
                    let mut keyed: Vec<(f64, u32)> = capable
                        .iter()
                        .map(|&q| {
                            (
                                crate::geo::distance_km(&pe, &world.peers[q as usize].pos),
                                q,
                            )
                        })
                        .collect();
                    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    capable = keyed.into_iter().map(|k| k.1).collect();
                }
                let order = capable.into_iter().map(|q| (q, q == e));
                Attempts::from_order(order, &config, timeout_ms)
            }
            Strategy::Cloud => Attempts::from_order([], &config, timeout_ms),
        }
    }

    /// The RTT from `e` to the nearest peer (other than `e`) able to take the call
    /// right now, from the simulator's complete knowledge.
    fn oracle(&self, e: u32, function: u16) -> f64 {
        let world = self.world;
        let need = world.functions[function as usize].memory_bytes;
        let pe = &world.peers[e as usize];
        let access_e = world.access_ms(e);
        let min_access = world
            .classes
            .iter()
            .map(|c| c.spec.access_ms)
            .fold(f64::INFINITY, f64::min);
        let mut order: Vec<(f64, usize)> = (0..world.by_region.len())
            .map(|r| {
                let spec = self.scenario.regions[r].get_ref();
                let lb = world.latency.lower_bound_ms(
                    (pe.region as usize, &pe.pos, access_e),
                    (
                        r,
                        &crate::geo::point(spec.lat, spec.lon),
                        spec.radius_km,
                        min_access,
                    ),
                );
                (lb, r)
            })
            .collect();
        order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut best = f64::INFINITY;
        for (lb, r) in order {
            if lb >= best {
                break;
            }
            for &q in &world.by_region[r] {
                if q == e {
                    continue;
                }
                let s = &self.peers[q as usize];
                let class = &world.classes[world.peers[q as usize].class as usize];
                let full = s.running.len() >= class.spec.slots as usize
                    && s.queue.len() >= class.spec.queue as usize;
                if s.online() && !full && class.memory_bytes >= need && self.reachable(e, q) {
                    best = best.min(world.rtt_ms(e, q));
                }
            }
        }
        best
    }

    fn one_way_us(&mut self, a: u32, b: u32, bytes: f64) -> u64 {
        if a == b {
            return 0;
        }
        let w = self.world;
        let ca = &w.classes[w.peers[a as usize].class as usize];
        let cb = &w.classes[w.peers[b as usize].class as usize];
        let rate = ca.up_bytes_per_ms.min(cb.down_bytes_per_ms);
        self.totals.call_bytes += bytes;
        self.totals.network_joules += bytes * self.scenario.network.joules_per_byte;
        let jitter = self.scenario.network.jitter_ms * self.jitter.unit();
        us(w.rtt_ms(a, b) / 2.0 + jitter + bytes / rate)
    }

    fn end(&mut self, call: u32, outcome: Outcome) {
        let c = &mut self.calls[call as usize];
        c.tries = None;
        if c.outcome == Outcome::Pending {
            c.outcome = outcome;
            c.done_us = self.now_us;
        }
    }

    /// Schedules the entry's learning, at `t_us`, that the attempt in flight failed
    /// with `kind`.
    fn fail_attempt(&mut self, call: u32, attempt: u8, kind: ErrorKind, t_us: u64) {
        self.calls[call as usize].failed_with = kind;
        self.at(t_us, Ev::Retry { call, attempt });
    }

    /// The entry learnt that the attempt in flight failed: the attempt rules decide
    /// whether the call goes on.
    fn answered_with_error(&mut self, call: u32) {
        let c = &mut self.calls[call as usize];
        let (peer, kind) = (c.executor, c.failed_with);
        let Some(tries) = c.tries.as_mut() else {
            return;
        };
        match tries.on_answer(peer, Err(kind)) {
            Verdict::TryNext { .. } | Verdict::Stale => self.attempt(call),
            Verdict::Fail(_) | Verdict::Done => self.end(call, Outcome::Exhausted),
        }
    }

    fn attempt(&mut self, call: u32) {
        let now_ms = self.now_us / 1000;
        let c = &mut self.calls[call as usize];
        let entry = c.entry;
        if c.outcome != Outcome::Pending {
            return;
        }
        if !self.peers[entry as usize].online() {
            self.end(call, Outcome::Lost);
            return;
        }
        let step = match c.tries.as_mut() {
            Some(tries) => tries.next(now_ms),
            None => Step::GiveUp { last: None },
        };
        let Step::Try { peer: target, .. } = step else {
            self.end(call, Outcome::Exhausted);
            return;
        };
        let attempt = c.attempts;
        let rtt = self.world.rtt_ms(entry, target);
        let c = &mut self.calls[call as usize];
        c.attempts += 1;
        c.executor = target;
        c.rtt_ms = rtt as f32;
        if target == entry {
            self.totals.local_runs += 1;
            self.admit(call, target, attempt);
            return;
        }
        if !self.online(target) || !self.reachable(entry, target) {
            self.totals.peer_failures += 1;
            let detect = us(self.scenario.sim.failure_detect_ms);
            self.fail_attempt(call, attempt, ErrorKind::Unreachable, self.now_us + detect);
            return;
        }
        let input = self.world.functions[self.calls[call as usize].function as usize]
            .spec
            .input_bytes;
        let t = self.now_us + self.one_way_us(entry, target, input);
        self.at(t, Ev::Deliver { call, attempt });
    }

    fn deliver(&mut self, call: u32, attempt: u8) {
        let c = &self.calls[call as usize];
        if c.attempts != attempt + 1 || c.outcome != Outcome::Pending {
            return;
        }
        let (target, entry) = (c.executor, c.entry);
        if !self.online(target) || !self.reachable(entry, target) {
            self.totals.peer_failures += 1;
            let detect = us(self.scenario.sim.failure_detect_ms);
            self.fail_attempt(call, attempt, ErrorKind::Unreachable, self.now_us + detect);
            return;
        }
        self.admit(call, target, attempt);
    }

    /// The node's admission (`kith_protocol::admission`): a free slot runs, a free
    /// queue place waits, a refusal goes back to the entry. Simulated peers are never
    /// shutting down, off hours (being offline models that), untrusting or capped in
    /// CPU share.
    fn admit(&mut self, call: u32, p: u32, attempt: u8) {
        let class = &self.world.classes[self.world.peers[p as usize].class as usize].spec;
        let s = &mut self.peers[p as usize];
        let load = admission::Load {
            draining: false,
            offering: true,
            trusted: true,
            slots: class.slots as usize,
            queue: class.queue as usize,
            running: s.running.len(),
            queued: s.queue.len(),
            cpu_share_spent: false,
        };
        match admission::admit(&load) {
            Ok(Admit::Run) => self.start(call, p, attempt),
            Ok(Admit::Queue) => s.queue.push_back(call),
            Err(refusal) => {
                self.totals.refused_busy += 1;
                let entry = self.calls[call as usize].entry;
                let t = self.now_us + self.one_way_us(p, entry, 64.0);
                self.fail_attempt(call, attempt, refusal.kind(), t);
            }
        }
    }

    /// Where a cold peer fetches from: the first peer protocol's fetch session asks
    /// (`kith_protocol::fetch`: connected claimants by penalty, then RTT) among the
    /// reachable peers it knows that hold the module, else the origin. `None` when
    /// neither is reachable.
    fn provider(&self, p: u32, function: u16) -> Option<(Option<u32>, f64)> {
        let world = self.world;
        let known: Vec<Known<u32>> = world.peers[p as usize]
            .view
            .iter()
            .filter(|&&q| self.online(q) && self.warm(q, function) && self.reachable(p, q))
            .map(|&q| Known {
                peer: q,
                claims: true,
                penalty: 0.0,
                rtt_ms: Some(world.rtt_ms(p, q)),
            })
            .collect();
        let id = world.functions[function as usize].id;
        if let fetch::Step::Ask { peer, .. } =
            fetch::Session::new(id, u64::MAX, None).next(p, &known)
        {
            return Some((Some(peer), world.rtt_ms(p, peer)));
        }
        let origin = world.origin.0;
        let region = world.peers[p as usize].region as usize;
        (self.region_outages[origin] == 0 && self.reachable_regions(region, origin))
            .then(|| (None, world.rtt_to_origin_ms(p)))
    }

    fn start(&mut self, call: u32, p: u32, attempt: u8) {
        let world = self.world;
        let now = self.now_us;
        let fi = self.calls[call as usize].function;
        let f = &world.functions[fi as usize];
        let class = &world.classes[world.peers[p as usize].class as usize];
        let spec = &class.spec;
        let mut ready = now;
        let mut cold = false;
        let mut compile_ms = 0.0;
        let cached = self.peers[p as usize]
            .cache
            .iter_mut()
            .find(|c| c.function == fi);
        if let Some(c) = cached {
            c.last_us = now;
            if c.ready_us > now {
                ready = c.ready_us;
                cold = true;
            }
        } else {
            let Some((provider, rtt)) = self.provider(p, fi) else {
                // Nobody to fetch from: the peer answers with a fetch error.
                self.totals.peer_failures += 1;
                let entry = self.calls[call as usize].entry;
                let t = now + self.one_way_us(p, entry, 64.0);
                self.fail_attempt(call, attempt, ErrorKind::NotFound, t);
                return;
            };
            cold = true;
            let bytes = f.module_bytes as f64;
            let s = &mut self.peers[p as usize];
            s.flows_down.retain(|end| *end > now);
            let down = class.down_bytes_per_ms / (s.flows_down.len() + 1) as f64;
            let up = match provider {
                Some(q) => {
                    let qs = &mut self.peers[q as usize];
                    qs.flows_up.retain(|end| *end > now);
                    let qc = &world.classes[world.peers[q as usize].class as usize];
                    qc.up_bytes_per_ms / (qs.flows_up.len() + 1) as f64
                }
                None => {
                    self.origin_flows.retain(|end| *end > now);
                    let mbps = self
                        .scenario
                        .origin
                        .as_ref()
                        .map_or(1_000.0, |o| o.get_ref().up_mbps);
                    mbps * 125.0 / (self.origin_flows.len() + 1) as f64
                }
            };
            let fetch_ms = rtt + bytes / down.min(up);
            let fetch_end = now + us(fetch_ms);
            match provider {
                Some(q) => self.peers[q as usize].flows_up.push(fetch_end),
                None => self.origin_flows.push(fetch_end),
            }
            let sim = &self.scenario.sim;
            compile_ms = (sim.compile_base_ms + f.spec.module_kib * sim.compile_ms_per_kib)
                * sim.reference_cpu_score
                / spec.cpu_score;
            ready = fetch_end + us(compile_ms);
            self.totals.fetches += 1;
            self.totals.fetch_bytes += bytes;
            self.totals.network_joules += bytes * self.scenario.network.joules_per_byte;
            let s = &mut self.peers[p as usize];
            s.flows_down.push(fetch_end);
            s.cache.push(Cache {
                function: fi,
                ready_us: ready,
                last_us: now,
            });
            s.cache_bytes += f.module_bytes;
            // Evict least recently used modules beyond the store budget.
            while s.cache_bytes > class.store_bytes && s.cache.len() > 1 {
                let Some(lru) = s
                    .cache
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.function != fi)
                    .min_by_key(|(_, c)| (c.last_us, c.function))
                    .map(|(i, _)| i)
                else {
                    break;
                };
                let gone = s.cache.swap_remove(lru);
                s.cache_bytes -= world.functions[gone.function as usize].module_bytes;
            }
        }
        let exec_ms = f.spec.fuel / spec.cpu_score + self.placement.call_overhead_ms;
        let busy_ms = exec_ms + compile_ms;
        let pue = if (p as usize) >= world.population {
            self.scenario
                .baseline
                .as_ref()
                .map_or(1.0, |b| b.get_ref().pue)
        } else {
            1.0
        };
        self.totals.compute_joules +=
            busy_ms / 1000.0 * (spec.busy_w - spec.idle_w) / f64::from(spec.cores) * pue;
        self.totals.cost_usd += busy_ms / 3.6e6 * spec.usd_per_cpu_hour;
        let c = &mut self.calls[call as usize];
        c.cold |= cold;
        c.slot_start_us = now;
        self.peers[p as usize].running.push(call);
        self.at(ready + us(exec_ms), Ev::Finish { call, attempt });
    }

    fn finish(&mut self, call: u32, attempt: u8) {
        let c = &self.calls[call as usize];
        if c.attempts != attempt + 1 {
            return;
        }
        let (p, entry, fi, start) = (c.executor, c.entry, c.function, c.slot_start_us);
        let s = &mut self.peers[p as usize];
        let Some(i) = s.running.iter().position(|x| *x == call) else {
            return;
        };
        s.running.swap_remove(i);
        let class = self.world.peers[p as usize].class as usize;
        let end = self.now_us.min(self.end_us);
        Load::spread(
            &mut self.load.busy[class],
            self.load.bucket_us,
            start,
            end,
            1.0,
        );
        // The node advertises at once when a function becomes warm.
        let id = self.world.functions[fi as usize].id;
        self.adverts[p as usize].cached.insert(&id);
        if entry == p {
            self.done(call);
        } else if !self.online(entry) || !self.reachable(entry, p) {
            self.end(call, Outcome::Lost);
        } else {
            let output = self.world.functions[fi as usize].spec.output_bytes;
            let t = self.now_us + self.one_way_us(p, entry, output);
            self.at(t, Ev::Done { call });
        }
        let slots = self.world.classes[class].spec.slots as usize;
        while self.peers[p as usize].running.len() < slots {
            let Some(next) = self.peers[p as usize].queue.pop_front() else {
                break;
            };
            let attempt = self.calls[next as usize].attempts.saturating_sub(1);
            self.start(next, p, attempt);
        }
    }

    fn done(&mut self, call: u32) {
        let entry = self.calls[call as usize].entry;
        if self.online(entry) {
            self.end(call, Outcome::Ok);
        } else {
            self.end(call, Outcome::Lost);
        }
    }
}
