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

mod arrivals;
mod attempts;
mod conduct;
mod control;
mod execution;
mod peers;
mod results;
mod warm;

pub use results::{Call, ControlStats, Load, NONE, Outcome, Run, Totals};

use std::collections::{BinaryHeap, VecDeque};

use kith_protocol::ErrorKind;
use kith_protocol::admission::{self, Admit};
use kith_protocol::alias::{self, Alias, Namespace, Target};
use kith_protocol::attempt::{self, Attempts, Step, Verdict};
use kith_protocol::capacity::{Advert, Cached};
use kith_protocol::fetch::{self, Known};
use kith_protocol::peerbook::{self, PeerBook};
use kith_protocol::placement::{self, PeerView};

use crate::rng::{Rng, Stream};
use crate::scenario::{ControlModel, Duration, Scenario, Strategy};
use crate::world::World;

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
    Control { to: u32, slot: u32 },
    Probe { from: u32, to: u32 },
    Lookup { peer: u32 },
    Hood { peer: u32 },
    WarmupEnd,
    WarmTimer { peer: u32 },
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
            Self::Control { to, slot } => (11, to, slot),
            Self::Probe { from, to } => (12, from, to),
            Self::Lookup { peer } => (13, peer, 0),
            Self::Hood { peer } => (14, peer, 0),
            Self::WarmupEnd => (15, 0, 0),
            Self::WarmTimer { peer } => (16, peer, 0),
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
    warmup_us: u64,
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
    /// Each entry's peer book, made when it first penalises a peer (protocol's
    /// decaying penalties, which placement adds to a peer's cost).
    books: Vec<Option<Box<PeerBook<u32>>>>,
    /// Each entry's record of its peers' conduct, made when it first sends a call
    /// away (`sim.learning`).
    conduct: Vec<Option<Box<kith_protocol::conduct::Conduct<u32>>>>,
    /// The control plane as messages (`sim.control = "neighbourhood"`).
    control: Option<Box<control::Control>>,
}

impl<'w> Engine<'w> {
    /// A run of `strategy` over `world` for `seed`.
    pub fn new(scenario: &'w Scenario, world: &'w World, strategy: Strategy, seed: u64) -> Self {
        let n = world.peers.len();
        let neighbourhood =
            scenario.sim.control == ControlModel::Neighbourhood && strategy != Strategy::Cloud;
        let warmup_us = if neighbourhood {
            us(scenario.sim.warmup_s * 1000.0)
        } else {
            0
        };
        let end_us = warmup_us + us(scenario.sim.duration_s * 1000.0);
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
            warmup_us,
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
            books: (0..world.population).map(|_| None).collect(),
            conduct: (0..world.population).map(|_| None).collect(),
            control: neighbourhood.then(|| Box::new(control::Control::new(world.population, seed))),
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
        let control = self.control_stats();
        Run {
            strategy: self.strategy,
            calls: self.calls,
            totals: self.totals,
            load: self.load,
            trace_hash: *self.hasher.finalize().as_bytes(),
            control,
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
            let index = i as u32;
            for (t_s, start) in [(o.at_s, true), (o.at_s + o.duration_s, false)] {
                self.at(us(t_s * 1000.0), Ev::Outage { index, start });
            }
        }
        for (i, p) in f.partitions.iter().enumerate() {
            let p = p.get_ref();
            let index = i as u32;
            for (t_s, start) in [(p.at_s, true), (p.heal_s, false)] {
                self.at(us(t_s * 1000.0), Ev::Partition { index, start });
            }
        }
        if self.control.is_some() {
            for p in 0..world.population as u32 {
                if self.online(p) {
                    self.hood_start(p);
                }
            }
            self.at(self.warmup_us, Ev::WarmupEnd);
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
            Ev::Control { to, slot } => self.control_arrives(to, slot),
            Ev::Probe { from, to } => self.probe_answered(from, to),
            Ev::Lookup { peer } => self.lookup_answered(peer),
            Ev::Hood { peer } => self.hood_timer(peer),
            Ev::WarmupEnd => self.control_warmed_up(),
            Ev::WarmTimer { peer } => self.warm_timer(peer),
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
