//! The control plane as messages (`sim.control = "neighbourhood"`): every online peer
//! runs protocol's neighbourhood state machine (`kith_protocol::neighbourhood`, the
//! code a node runs), and the engine only moves what it asks for. A subscription, an
//! advert or delta, a peer list, an RTT probe or a DHT lookup is an event with bytes,
//! a delay (half the RTT, jitter, transfer time) and a loss rate; a peer that goes
//! offline loses its machine and starts afresh when it comes back. Placement sees
//! what the entry's neighbourhood holds, as old as it is.

use kith_protocol::capacity::{self, Cached};
use kith_protocol::neighbourhood::{
    Action, AdvertVerdict, Capacity, Config, Message, Neighbourhood,
};

use super::*;

/// What a neighbour's advert tells, as the simulator keeps it (the node keeps the
/// signed advert itself): the load, and the functions warm there as a 64-bit filter
/// (bit `function % 64`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Held {
    pub(super) running: u16,
    pub(super) queued: u16,
    pub(super) warm: u64,
}

pub(super) type Hood = Neighbourhood<u32, Held>;

/// Bytes on the wire of each control message (payload plus ~40 bytes of framing,
/// stream and protocol headers).
const FRAME: u64 = 40;
const DELTA: u64 = FRAME + 8 + 2 + 2;
const FULL: u64 = FRAME + capacity::ENCODED_LEN as u64;
const PEER: u64 = 38 + 24; // a peer id and one address
const CAPACITY: u64 = 12; // after a flag byte: a cpu score and a memory size, when known
const PROBE: u64 = FRAME + 8;
/// A DHT lookup: this many request/response pairs per `log2(N)`.
const LOOKUP_MSG: u64 = FRAME + 8 * PEER;

/// A control message in flight.
#[derive(Debug, Clone)]
pub(super) enum Wire {
    Message(Message<u32>),
    /// One advert (or load update) to one or more subscribers, delivered to all of them
    /// at once, when the slowest of them would have it (see `Engine::send_adverts`).
    Adverts {
        full: bool,
        seq: u64,
        held: Held,
        to: Vec<u32>,
    },
    /// `Message::Warm` with the adverts the answer carries.
    Warm(
        kith_protocol::FunctionId,
        Vec<(u32, super::warm::SecondHand)>,
    ),
}

/// The control plane's state in a run.
pub(super) struct Control {
    pub(super) config: Config,
    pub(super) hoods: Vec<Option<Box<Hood>>>,
    timers: Vec<u64>,
    slab: Vec<Option<(u32, Wire)>>,
    free: Vec<u32>,
    seq: Vec<u64>,
    rng: Rng,
    pub(super) msgs: Vec<u32>,
    pub(super) bytes: Vec<u64>,
    pub(super) online_us: Vec<u64>,
    pub(super) since_us: Vec<u64>,
    pub(super) heap_bytes_sum: f64,
    pub(super) heap_samples: u64,
    pub(super) neighbours_sum: f64,
    pub(super) warm: super::warm::Warm,
}

impl Control {
    pub(super) fn new(population: usize, seed: u64) -> Self {
        Self {
            config: Config::default(),
            hoods: (0..population).map(|_| None).collect(),
            timers: vec![u64::MAX; population],
            slab: Vec::new(),
            free: Vec::new(),
            seq: vec![0; population],
            rng: Rng::stream(seed, Stream::Control, 0),
            msgs: vec![0; population],
            bytes: vec![0; population],
            online_us: vec![0; population],
            since_us: vec![0; population],
            heap_bytes_sum: 0.0,
            heap_samples: 0,
            neighbours_sum: 0.0,
            warm: super::warm::Warm::new(population),
        }
    }

    /// Keeps a message in flight; its slot.
    fn store(&mut self, from: u32, wire: Wire) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = Some((from, wire));
                i
            }
            None => {
                self.slab.push(Some((from, wire)));
                (self.slab.len() - 1) as u32
            }
        }
    }

    fn count(&mut self, p: u32, bytes: u64) {
        if let Some(m) = self.msgs.get_mut(p as usize) {
            *m = m.saturating_add(1);
            self.bytes[p as usize] += bytes;
        }
    }
}

fn wire_bytes(w: &Wire) -> u64 {
    match w {
        Wire::Adverts { full: true, .. } => FULL,
        Wire::Adverts { full: false, .. } => DELTA,
        Wire::Message(Message::Peers(p)) => {
            let hinted = p.iter().filter(|x| x.1.is_some()).count() as u64;
            FRAME + (PEER + 1) * p.len() as u64 + CAPACITY * hinted
        }
        Wire::Message(Message::FindWarm(_)) => FRAME + 33,
        Wire::Message(Message::Warm(_, p)) => FRAME + 33 + PEER * p.len() as u64,
        // Each peer named with its signed advert.
        Wire::Warm(_, p) => FRAME + 33 + (PEER + FULL - FRAME) * p.len() as u64,
        Wire::Message(_) => FRAME + 8,
    }
}

impl Engine<'_> {
    fn hood_mut(&mut self, p: u32) -> Option<&mut Hood> {
        self.control
            .as_mut()?
            .hoods
            .get_mut(p as usize)?
            .as_deref_mut()
    }

    /// `p` came online: a new machine, given `sim.bootstrap_peers` random peers.
    pub(super) fn hood_start(&mut self, p: u32) {
        let now_ms = self.now_us / 1000;
        let population = self.world.population as u64;
        let k = self.scenario.sim.bootstrap_peers;
        let Some(c) = self.control.as_mut() else {
            return;
        };
        if p as usize >= c.hoods.len() {
            return;
        }
        let seed = c.rng.next_u64();
        let mut hood = Box::new(Hood::new(p, c.config, seed, now_ms));
        for _ in 0..k {
            hood.discovered(now_ms, c.rng.below(population) as u32);
        }
        c.hoods[p as usize] = Some(hood);
        c.since_us[p as usize] = self.now_us;
        c.timers[p as usize] = u64::MAX;
        self.drive(p);
        self.warm_start(p);
    }

    /// `p` went offline: its machine is gone.
    pub(super) fn hood_stop(&mut self, p: u32) {
        let now = self.now_us;
        if let Some(c) = self.control.as_mut()
            && let Some(slot) = c.hoods.get_mut(p as usize)
            && slot.take().is_some()
        {
            c.online_us[p as usize] += now - c.since_us[p as usize];
        }
        self.warm_stop(p);
    }

    /// `p`'s load or warm set changed (`full`: the warm set did).
    pub(super) fn load_changed(&mut self, p: u32, full: bool) {
        let now_ms = self.now_us / 1000;
        if let Some(h) = self.hood_mut(p) {
            h.changed(now_ms, full);
            self.drive(p);
        }
    }

    /// `entry` found `peer` unreachable on a call: the connection is gone.
    pub(super) fn hood_unreachable(&mut self, entry: u32, peer: u32) {
        let now_ms = self.now_us / 1000;
        if let Some(h) = self.hood_mut(entry) {
            h.unreachable(now_ms, peer);
            self.drive(entry);
        }
    }

    pub(super) fn held(&self, p: u32) -> Held {
        let s = &self.peers[p as usize];
        let warm = s
            .cache
            .iter()
            .filter(|c| c.ready_us <= self.now_us)
            .fold(0u64, |m, c| m | 1 << (c.function % 64));
        if self.world.peers[p as usize].lie.is_some() {
            // Idle, with everything warm.
            return Held {
                running: 0,
                queued: 0,
                warm: u64::MAX,
            };
        }
        Held {
            running: s.running.len().min(usize::from(u16::MAX)) as u16,
            queued: s.queue.len().min(usize::from(u16::MAX)) as u16,
            warm,
        }
    }

    /// Carries out what `p`'s machine asks for, and keeps its timer.
    pub(super) fn drive(&mut self, p: u32) {
        // The adverts of one batch of actions (load updates, whole adverts) carry the
        // same bytes to every subscriber: one event each.
        let mut batches: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
        while let Some(action) = self.hood_mut(p).and_then(Hood::poll_action) {
            match action {
                Action::Probe(q) => {
                    let t = self.now_us + self.control_delay_us(p, q, 2 * PROBE);
                    if let Some(c) = self.control.as_mut() {
                        c.count(p, PROBE);
                        c.count(p, PROBE);
                        c.count(q, PROBE);
                        c.count(q, PROBE);
                    }
                    self.control_at(t, Ev::Probe { from: p, to: q });
                }
                Action::Lookup => {
                    let hops = (self.world.population.max(2) as f64).log2().ceil() as u64;
                    if let Some(c) = self.control.as_mut() {
                        // Its own requests and answers, and as many served for others
                        // (each peer serves about as many lookups as it makes).
                        for _ in 0..4 * hops {
                            c.count(p, LOOKUP_MSG);
                        }
                    }
                    // About three rounds of parallel requests, each a typical RTT.
                    let t = self.now_us + us(3.0 * 40.0);
                    self.control_at(t, Ev::Lookup { peer: p });
                }
                Action::Send(q, Message::Advert { full }) => {
                    batches[usize::from(full)].push(q);
                }
                Action::Send(q, message) => self.send_control(p, q, Wire::Message(message)),
            }
        }
        for (full, to) in batches.into_iter().enumerate() {
            if !to.is_empty() {
                self.send_adverts(p, full == 1, to);
            }
        }
        let Some(c) = self.control.as_mut() else {
            return;
        };
        let Some(due_ms) = c.hoods[p as usize].as_ref().and_then(|h| h.poll_timeout()) else {
            return;
        };
        let due = (due_ms * 1000).max(self.now_us + 1);
        if due < c.timers[p as usize] && due < self.end_us {
            c.timers[p as usize] = due;
            self.at(due, Ev::Hood { peer: p });
        }
    }

    fn control_at(&mut self, t: u64, ev: Ev) {
        if t < self.end_us {
            self.at(t, ev);
        }
    }

    fn control_delay_us(&mut self, a: u32, b: u32, bytes: u64) -> u64 {
        let w = self.world;
        let ca = &w.classes[w.peers[a as usize].class as usize];
        let cb = &w.classes[w.peers[b as usize].class as usize];
        let rate = ca.up_bytes_per_ms.min(cb.down_bytes_per_ms);
        let jitter = self.scenario.network.jitter_ms * self.jitter.unit();
        us(w.rtt_ms(a, b) / 2.0 + jitter + bytes as f64 / rate)
    }

    pub(super) fn send_control(&mut self, from: u32, to: u32, wire: Wire) {
        let bytes = wire_bytes(&wire);
        let delay = self.control_delay_us(from, to, bytes);
        let loss = self.scenario.sim.control_loss;
        let Some(c) = self.control.as_mut() else {
            return;
        };
        c.count(from, bytes);
        if loss > 0.0 && c.rng.unit() < loss {
            return;
        }
        let slot = c.store(from, wire);
        self.control_at(self.now_us + delay, Ev::Control { to, slot });
    }

    /// `p`'s advert (`full`) or load update to its subscribers `to`: counted, and
    /// lost, per subscriber; delivered to those not lost in one event at the largest
    /// of their delays (so an advert's age at use errs old, by the spread of the
    /// subscribers' delays: tens of ms against a p99 age of seconds). One event per
    /// heartbeat instead of one per subscriber is what makes large sweeps affordable.
    fn send_adverts(&mut self, p: u32, full: bool, to: Vec<u32>) {
        let held = self.held(p);
        let bytes = if full { FULL } else { DELTA };
        let loss = self.scenario.sim.control_loss;
        let mut delay = 0;
        let mut kept = Vec::with_capacity(to.len());
        for q in to {
            let d = self.control_delay_us(p, q, bytes);
            let Some(c) = self.control.as_mut() else {
                return;
            };
            c.count(p, bytes);
            if loss > 0.0 && c.rng.unit() < loss {
                continue;
            }
            delay = delay.max(d);
            kept.push(q);
        }
        let Some(c) = self.control.as_mut() else {
            return;
        };
        if kept.is_empty() {
            return;
        }
        c.seq[p as usize] += 1;
        let wire = Wire::Adverts {
            full,
            seq: c.seq[p as usize],
            held,
            to: kept,
        };
        let slot = c.store(p, wire);
        self.control_at(self.now_us + delay, Ev::Control { to: p, slot });
    }

    /// A control message arrives at `to` (lost if `to` is offline or cut off).
    pub(super) fn control_arrives(&mut self, to: u32, slot: u32) {
        let now_ms = self.now_us / 1000;
        let Some(c) = self.control.as_mut() else {
            return;
        };
        let Some((from, wire)) = c.slab.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        c.free.push(slot);
        if let Wire::Adverts {
            full,
            seq,
            held,
            to,
        } = wire
        {
            for q in to {
                self.advert_arrives(from, q, full, seq, held);
            }
            return;
        }
        if c.hoods.get(to as usize).is_none_or(Option::is_none) || !self.reachable(from, to) {
            return;
        }
        let bytes = wire_bytes(&wire);
        let Some(c) = self.control.as_mut() else {
            return;
        };
        c.count(to, bytes);
        let Some(h) = c.hoods[to as usize].as_deref_mut() else {
            return;
        };
        match wire {
            Wire::Message(Message::FindWarm(f)) => {
                self.answer_warm(to, from, f);
                return;
            }
            Wire::Warm(f, peers) => {
                self.warm_answered(to, from, f, peers);
                return;
            }
            Wire::Message(Message::Warm(..)) => return, // the simulator sends Wire::Warm
            Wire::Message(m) => h.message(now_ms, from, m),
            Wire::Adverts { .. } => return, // above
        }
        self.drive(to);
    }

    /// `from`'s advert or load update reaches `to` (if online and not cut off).
    fn advert_arrives(&mut self, from: u32, to: u32, full: bool, seq: u64, held: Held) {
        let now_ms = self.now_us / 1000;
        let reachable = self.reachable(from, to);
        let Some(c) = self.control.as_mut() else {
            return;
        };
        if !reachable || c.hoods.get(to as usize).is_none_or(Option::is_none) {
            return;
        }
        c.count(to, if full { FULL } else { DELTA });
        let Some(h) = c.hoods[to as usize].as_deref_mut() else {
            return;
        };
        // A delta carries the load only: it needs a full advert held already.
        let merged = if full {
            Some(held)
        } else {
            h.neighbours()
                .iter()
                .find(|n| n.peer == from)
                .and_then(|n| n.advert())
                .map(|(old, _)| Held {
                    warm: old.warm,
                    ..held
                })
        };
        if let Some(a) = merged
            && h.advert(now_ms, from, seq, a) == AdvertVerdict::Accepted
            && full
        {
            let advert = self.world.advert(from, 0, 0, Cached::default());
            h.capacity(from, Capacity::from(&advert));
        }
        self.drive(to);
    }

    /// A probe's answer comes back to `from`.
    pub(super) fn probe_answered(&mut self, from: u32, to: u32) {
        let now_ms = self.now_us / 1000;
        let alive = self.online(to) && self.reachable(from, to);
        let rtt =
            self.world.rtt_ms(from, to) + self.scenario.network.jitter_ms * self.jitter.unit();
        if let Some(h) = self.hood_mut(from) {
            if alive {
                h.rtt(now_ms, to, rtt);
            } else {
                h.unreachable(now_ms, to);
            }
            self.drive(from);
        }
    }

    /// A lookup's answer: a few random peers.
    pub(super) fn lookup_answered(&mut self, p: u32) {
        let now_ms = self.now_us / 1000;
        let population = self.world.population as u64;
        let Some(c) = self.control.as_mut() else {
            return;
        };
        let found: Vec<u32> = (0..4).map(|_| c.rng.below(population) as u32).collect();
        if let Some(h) = c.hoods.get_mut(p as usize).and_then(Option::as_deref_mut) {
            for q in found {
                h.discovered(now_ms, q);
            }
            self.drive(p);
        }
    }

    /// `p`'s timer fired.
    pub(super) fn hood_timer(&mut self, p: u32) {
        let now = self.now_us;
        let Some(c) = self.control.as_mut() else {
            return;
        };
        if c.timers[p as usize] != now {
            return; // superseded
        }
        c.timers[p as usize] = u64::MAX;
        let warm_bytes = c.warm.index[p as usize].as_deref().map_or(0, |w| {
            w.heap_bytes() + std::mem::size_of::<kith_protocol::warm::WarmIndex<u32>>()
        });
        if let Some(h) = c.hoods[p as usize].as_deref_mut() {
            if h.poll_timeout().is_some_and(|t| t * 1000 <= now) {
                h.handle_timeout(now / 1000);
            }
            c.heap_bytes_sum += (h.heap_bytes() + warm_bytes) as f64;
            c.neighbours_sum += h.neighbours().len() as f64;
            c.heap_samples += 1;
            self.drive(p);
        }
    }

    /// The entry's view for placement: its neighbours with an advert, as (peer,
    /// advert rebuilt from what is held, measured RTT, when it was heard, ms).
    pub(super) fn hood_view(&self, e: u32, function: u16) -> Vec<(u32, Advert, f64, u64)> {
        let Some(h) = self
            .control
            .as_ref()
            .and_then(|c| c.hoods.get(e as usize))
            .and_then(Option::as_deref)
        else {
            return Vec::new();
        };
        let id = self.world.functions[function as usize].id;
        h.neighbours()
            .iter()
            .filter_map(|n| {
                let (held, heard) = n.advert()?;
                let mut cached = Cached::default();
                if held.warm & (1 << (function % 64)) != 0 {
                    cached.insert(&id);
                }
                let advert = self.world.advert(n.peer, held.running, held.queued, cached);
                Some((n.peer, advert, n.rtt_ms, heard))
            })
            .collect()
    }

    /// Whether what `e` holds of `q`'s load is still true.
    pub(super) fn held_is_current(&self, e: u32, q: u32) -> Option<bool> {
        let h = self.control.as_ref()?.hoods.get(e as usize)?.as_deref()?;
        let n = h.neighbours().iter().find(|n| n.peer == q)?;
        let (held, _) = n.advert()?;
        let now = self.held(q);
        Some(held.running == now.running && held.queued == now.queued)
    }
}

/// The mean and the 99th percentile of `v` (sorted in place).
fn mean_p99(v: &mut [f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let rank = ((0.99 * v.len() as f64).ceil() as usize).clamp(1, v.len());
    (mean, v[rank - 1])
}

impl Engine<'_> {
    /// `p`'s neighbours (neighbourhood model; `None` in the static model).
    pub(super) fn neighbour_ids(&self, p: u32) -> Option<Vec<u32>> {
        let c = self.control.as_ref()?;
        Some(
            c.hoods
                .get(p as usize)?
                .as_deref()
                .map(|h| h.neighbours().iter().map(|n| n.peer).collect())
                .unwrap_or_default(),
        )
    }

    /// The warm-up is over: the cost counters start from zero.
    pub(super) fn control_warmed_up(&mut self) {
        let now = self.now_us;
        if let Some(c) = self.control.as_mut() {
            c.msgs.iter_mut().for_each(|m| *m = 0);
            c.bytes.iter_mut().for_each(|b| *b = 0);
            c.online_us.iter_mut().for_each(|t| *t = 0);
            c.since_us.iter_mut().for_each(|t| *t = now);
            c.heap_bytes_sum = 0.0;
            c.neighbours_sum = 0.0;
            c.heap_samples = 0;
            c.warm.lookups = 0;
            c.warm.links = 0;
            c.warm.held = 0;
            c.warm.released_found = 0;
        }
    }

    /// Per-peer cost over the run after the warm-up.
    pub(super) fn control_stats(&mut self) -> Option<ControlStats> {
        let end = self.end_us;
        let c = self.control.as_mut()?;
        let mut msgs = Vec::new();
        let mut bytes = Vec::new();
        for p in 0..c.hoods.len() {
            let mut online = c.online_us[p];
            if c.hoods[p].is_some() {
                online += end.saturating_sub(c.since_us[p]);
            }
            // Peers online for less than a second say little about a rate.
            if online >= 1_000_000 {
                let s = online as f64 / 1e6;
                msgs.push(f64::from(c.msgs[p]) / s);
                bytes.push(c.bytes[p] as f64 / s);
            }
        }
        let (msgs_mean, msgs_p99) = mean_p99(&mut msgs);
        let (bytes_mean, bytes_p99) = mean_p99(&mut bytes);
        let samples = c.heap_samples.max(1) as f64;
        Some(ControlStats {
            msgs_per_peer_s: msgs_mean,
            msgs_per_peer_s_p99: msgs_p99,
            bytes_per_peer_s: bytes_mean,
            bytes_per_peer_s_p99: bytes_p99,
            memory_bytes_per_peer: c.heap_bytes_sum / samples + std::mem::size_of::<Hood>() as f64,
            neighbours_per_peer: c.neighbours_sum / samples,
            warm_lookups: c.warm.lookups,
            warm_links: c.warm.links,
            warm_held: c.warm.held,
            warm_held_found: c.warm.released_found,
        })
    }
}
