//! The neighbourhood: which peers a node hears capacity adverts from, and which peers
//! hear its own. A stepped state machine (time passed in, randomness from a seed, no
//! I/O): the node drives it over libp2p, the simulator over simulated messages.
//!
//! Why: a global advert topic costs every peer O(N) messages. Here each peer
//! **subscribes** to the adverts of a bounded set of neighbours and accepts a bounded
//! set of subscribers; adverts travel one hop and are never forwarded. What a peer
//! spends is bounded by its caps, whatever the size of the network.
//!
//! The rules:
//! - **Who is a neighbour.** Of the peers whose RTT it has measured, a node wants the
//!   [`Config::near`] nearest; then, in rings of exponentially growing RTT
//!   (`< base`, `base..2 base`, `2 base..4 base`, …), the [`Config::per_ring`] nearest
//!   of each ring not already chosen (Meridian's rings: near peers dominate, far
//!   regions stay reachable); plus [`Config::random`] random links, refreshed one at a
//!   time every [`Config::random_refresh_ms`], which keep the overlay connected and
//!   reach new regions. A neighbour keeps its place unless a candidate is more than
//!   [`HYSTERESIS`] and [`HYSTERESIS_FLOOR_MS`] nearer, so measurements that wobble do
//!   not churn links. A candidate that already subscribes to this node gets the same
//!   head start (the link then serves both directions on one connection).
//! - **Compute links.** RTT alone fills the nearest slots with whatever sits on the
//!   fastest access links (routers, Pis), while placement sends most calls to the
//!   stronger devices a few ms further (a laptop's 4 slots at 4x the CPU beat a
//!   router's one). So after the nearest, [`Config::compute`] slots go to the peers
//!   with the lowest RTT plus the time a reference call ([`Config::compute_fuel`],
//!   [`Config::compute_memory_bytes`]) would run there, by their [`Capacity`]: a
//!   neighbour's from its own advert ([`Neighbourhood::capacity`]), a candidate's as
//!   hearsay carried in [`Message::Peers`] (a lie costs one subscription: the
//!   peer's own advert then replaces it).
//! - **Warm links.** Placement may ask for a peer that has a call's function warm
//!   ([`Neighbourhood::link_warm`], found through `crate::warm`): it is probed and
//!   subscribed to in one of [`Config::warm`] slots of its own (the least recently
//!   used goes when they are full; one not chosen by placement for
//!   [`Config::warm_idle_ms`] is dropped).
//! - **Finding candidates.** Bootstrap peers, mDNS and DHT random walks arrive as
//!   [`Neighbourhood::discovered`]; every [`Config::exchange_ms`] a neighbour (one of
//!   the nearest three times in four, else any) is asked for its nearest neighbours
//!   (peer exchange: the neighbours of a near peer are likely near), every
//!   [`Config::exchange_fast_ms`] while that still brings nearer neighbours. While the candidates run short, the node asks its driver for a
//!   [`Action::Lookup`]. Each candidate is probed once for its RTT
//!   ([`Action::Probe`], at most [`Config::max_probes`] at a time).
//! - **Subscribing.** A [`Message::Subscribe`] is a lease of [`Config::lease_ms`],
//!   renewed at half-time; the peer answers [`Message::Accepted`] (and sends its full
//!   advert at once) or [`Message::Refused`] when it already has
//!   [`Config::max_subscribers`]. A refused candidate is not asked again for
//!   [`Config::refused_backoff_ms`]. At most [`Config::max_pending`] subscriptions are
//!   in flight.
//! - **Adverts.** A node sends its advert to its subscribers: its load (a small
//!   delta) every [`Config::heartbeat_ms`], changed or not, and when its load changes
//!   ([`Neighbourhood::changed`]), at most one every [`Config::min_delta_ms`] (changes
//!   in between are coalesced); the whole signed advert to a new subscriber at once,
//!   when more than the load changed, and every [`Config::full_every_ms`]. An advert is kept
//!   only from a neighbour and only if its sequence number is higher than the one
//!   held. A neighbour silent for [`Config::expire_ms`] is dropped, as is one the
//!   driver reports unreachable.
//! - **Caps.** Neighbours ≤ `near + rings × per_ring + random`, subscribers ≤
//!   `max_subscribers`, candidates ≤ `max_candidates` (when full, a new candidate
//!   replaces the oldest unmeasured one, else the farthest measured one), the action
//!   queue ≤ [`MAX_ACTIONS`] (beyond it, actions are dropped and counted: every one of
//!   them is repeated by a later timer). A [`Message::Peers`] list longer than
//!   [`Config::share`] is cut.

mod config;
mod inbound;
mod select;
mod warm;
pub mod wire;

pub use config::Config;

use std::collections::VecDeque;

/// A candidate replaces a neighbour only if its RTT is below this fraction of the
/// neighbour's …
pub const HYSTERESIS: f64 = 0.9;

/// … and at least this much below it, ms: RTT measurements wobble by about a
/// millisecond whatever the distance (scheduling, timers), so two peers closer than
/// that are equally near and swapping one for the other only costs a subscribe round
/// and a whole advert.
pub const HYSTERESIS_FLOOR_MS: f64 = 1.0;

/// Most actions waiting for the driver.
pub const MAX_ACTIONS: usize = 1024;

/// A control message between two peers (one hop, never forwarded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<P> {
    /// Send me your adverts (a new lease, or a renewal).
    Subscribe,
    /// Subscription accepted; adverts follow.
    Accepted,
    /// I have as many subscribers as I take.
    Refused,
    /// Stop sending me adverts.
    Unsubscribe,
    /// This node's advert: the driver attaches it (in full, or the load delta).
    Advert {
        /// The whole signed advert (else only the load fields changed).
        full: bool,
    },
    /// Tell me your nearest neighbours.
    AskPeers,
    /// Some of my nearest neighbours, each with its capacity as its advert told me.
    Peers(Vec<(P, Option<Capacity>)>),
    /// Which of your neighbours have this function warm? (`crate::warm`; the driver
    /// answers with [`Neighbourhood::warm_peers`].)
    FindWarm(crate::FunctionId),
    /// Those of my neighbours with this function warm, nearest first.
    Warm(crate::FunctionId, Vec<P>),
}

/// What the driver does for the neighbourhood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<P> {
    /// Measure the RTT to this peer; report [`Neighbourhood::rtt`] or
    /// [`Neighbourhood::unreachable`].
    Probe(P),
    /// Send this message to this peer.
    Send(P, Message<P>),
    /// Find more peers (a DHT random walk, bootstrap peers); report each with
    /// [`Neighbourhood::discovered`].
    Lookup,
}

/// What became of an advert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdvertVerdict {
    /// From a neighbour and newer: kept.
    Accepted,
    /// From a neighbour but not newer than the one held: ignored.
    Older,
    /// Not from a neighbour: ignored (a peer pushing adverts nobody asked for).
    NotNeighbour,
}

/// The part of a peer's advert that does not change with its load and that choosing
/// neighbours needs: how fast it runs fuel and how much memory a call may have there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Fuel per millisecond (the advert's `cpu_score`).
    pub cpu_score: u32,
    /// Memory offered to one call, bytes.
    pub memory_bytes: u64,
}

impl From<&crate::capacity::Advert> for Capacity {
    fn from(a: &crate::capacity::Advert) -> Self {
        Self {
            cpu_score: a.cpu_score,
            memory_bytes: a.memory_bytes,
        }
    }
}

/// Why a peer is a neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Chosen by RTT: among the nearest, the nearest by RTT plus a reference call's
    /// run time ([`Config::compute`]), or its ring's nearest.
    Rtt,
    /// A random link, for reach.
    Random,
    /// A peer with a function warm that placement wanted ([`Neighbourhood::link_warm`]).
    Warm,
}

/// A neighbour: a peer this node hears adverts from.
#[derive(Debug, Clone)]
pub struct Neighbour<P, A> {
    /// Who.
    pub peer: P,
    /// Its measured RTT, ms.
    pub rtt_ms: f64,
    /// Why it is a neighbour.
    pub link: Link,
    advert: Option<(A, u64)>,
    capacity: Option<Capacity>,
    used_ms: u64,
    heard_ms: u64,
    renewed_ms: u64,
}

impl<P, A> Neighbour<P, A> {
    /// Its latest advert and when it came (ms).
    pub fn advert(&self) -> Option<(&A, u64)> {
        self.advert.as_ref().map(|(a, _)| (a, self.heard_ms))
    }

    /// Its capacity: from its own advert, or as hearsay until that came.
    pub fn capacity(&self) -> Option<Capacity> {
        self.capacity
    }
}

#[derive(Debug, Clone)]
struct Candidate<P> {
    peer: P,
    rtt_ms: Option<f64>,
    capacity: Option<Capacity>,
    not_before_ms: u64,
    learned_ms: u64,
}

#[derive(Debug, Clone, Copy)]
struct Subscriber<P> {
    peer: P,
    until_ms: u64,
}

/// Counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Subscriptions refused because the subscriber list was full.
    pub refused: u64,
    /// Adverts ignored (not from a neighbour, or not newer).
    pub ignored_adverts: u64,
    /// Neighbours dropped for silence or unreachability.
    pub expired: u64,
    /// Candidates evicted because the table was full.
    pub evicted_candidates: u64,
    /// Actions dropped because the queue was full.
    pub dropped_actions: u64,
}

/// One node's neighbourhood.
#[derive(Debug, Clone)]
pub struct Neighbourhood<P, A> {
    config: Config,
    me: P,
    rng: u64,
    neighbours: Vec<Neighbour<P, A>>,
    pending: Vec<(P, u64, Link)>,
    warm_wanted: Vec<P>,
    probing: Vec<(P, u64)>,
    candidates: Vec<Candidate<P>>,
    subscribers: Vec<Subscriber<P>>,
    actions: VecDeque<Action<P>>,
    next_heartbeat_ms: u64,
    next_full_ms: u64,
    next_tick_ms: u64,
    reselect: bool,
    reselect_at_ms: u64,
    last_send_ms: Option<u64>,
    dirty: Option<bool>,
    next_exchange_ms: u64,
    improved: bool,
    next_lookup_ms: u64,
    next_random_refresh_ms: u64,
    stats: Stats,
}

impl<P: Copy + Ord, A> Neighbourhood<P, A> {
    /// A node `me` with no neighbours yet, starting at `now_ms`; `seed` drives its
    /// random choices (the node: from its key; the simulator: from the run's seed).
    pub fn new(me: P, config: Config, seed: u64, now_ms: u64) -> Self {
        let mut n = Self {
            config,
            me,
            rng: seed | 1,
            neighbours: Vec::new(),
            pending: Vec::new(),
            warm_wanted: Vec::new(),
            probing: Vec::new(),
            candidates: Vec::new(),
            subscribers: Vec::new(),
            actions: VecDeque::new(),
            next_heartbeat_ms: now_ms,
            next_full_ms: now_ms + config.full_every_ms,
            next_tick_ms: now_ms,
            reselect: true,
            reselect_at_ms: 0,
            last_send_ms: None,
            dirty: None,
            next_exchange_ms: now_ms,
            improved: true,
            next_lookup_ms: now_ms,
            next_random_refresh_ms: now_ms + config.random_refresh_ms,
            stats: Stats::default(),
        };
        // Spread heartbeats and exchanges so peers started together do not beat in step.
        n.next_heartbeat_ms += n.random_below(config.heartbeat_ms.max(1));
        n.next_exchange_ms += n.random_below(config.exchange_fast_ms.max(1));
        n
    }

    /// Its constants.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The neighbours, in no particular order.
    pub fn neighbours(&self) -> &[Neighbour<P, A>] {
        &self.neighbours
    }

    /// Whether `peer` is a neighbour.
    pub fn is_neighbour(&self, peer: P) -> bool {
        self.neighbours.iter().any(|n| n.peer == peer)
    }

    /// Whether the neighbourhood has a use for a connection to `peer` now: a
    /// neighbour, a subscriber, or a peer being probed or asked to take us. (A
    /// measured candidate needs no connection until it is chosen.)
    pub fn involves(&self, peer: P) -> bool {
        self.is_neighbour(peer)
            || self.subscribers.iter().any(|s| s.peer == peer)
            || self.pending.iter().any(|p| p.0 == peer)
            || self.probing.iter().any(|p| p.0 == peer)
    }

    /// The subscribers this node sends its adverts to.
    pub fn subscribers(&self) -> impl Iterator<Item = P> + '_ {
        self.subscribers.iter().map(|s| s.peer)
    }

    /// How many candidates are held.
    pub fn candidates(&self) -> usize {
        self.candidates.len()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Bytes held on the heap by the neighbourhood's tables (their capacity).
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.neighbours.capacity() * size_of::<Neighbour<P, A>>()
            + self.pending.capacity() * size_of::<(P, u64, Link)>()
            + self.warm_wanted.capacity() * size_of::<P>()
            + self.probing.capacity() * size_of::<(P, u64)>()
            + self.candidates.capacity() * size_of::<Candidate<P>>()
            + self.subscribers.capacity() * size_of::<Subscriber<P>>()
            + self.actions.capacity() * size_of::<Action<P>>()
    }

    /// The next thing the driver should do.
    pub fn poll_action(&mut self) -> Option<Action<P>> {
        self.actions.pop_front()
    }

    /// A peer was found (bootstrap, mDNS, DHT walk, peer exchange).
    pub fn discovered(&mut self, now_ms: u64, peer: P) {
        self.add_candidate(now_ms, peer, None);
        self.select(now_ms);
    }

    /// `peer`'s capacity, from an advert of its own that the driver checked (its
    /// signature, its sequence number): replaces any hearsay. Ignored for peers the
    /// neighbourhood does not hold.
    pub fn capacity(&mut self, peer: P, capacity: Capacity) {
        let held = if let Some(n) = self.neighbours.iter_mut().find(|n| n.peer == peer) {
            &mut n.capacity
        } else if let Some(c) = self.candidates.iter_mut().find(|c| c.peer == peer) {
            &mut c.capacity
        } else {
            return;
        };
        if *held != Some(capacity) {
            *held = Some(capacity);
            self.reselect = true;
        }
    }

    /// An RTT measurement to `peer` (a probe's answer, or a ping on a connection).
    pub fn rtt(&mut self, now_ms: u64, peer: P, rtt_ms: f64) {
        if !rtt_ms.is_finite() || rtt_ms < 0.0 {
            return;
        }
        self.probing.retain(|p| p.0 != peer);
        self.reselect = true;
        if let Some(n) = self.neighbours.iter_mut().find(|n| n.peer == peer) {
            n.rtt_ms = rtt_ms;
        } else if let Some(c) = self.candidates.iter_mut().find(|c| c.peer == peer) {
            c.rtt_ms = Some(rtt_ms);
        }
        self.select(now_ms);
    }

    /// `peer` cannot be reached (a probe failed, a connection closed, a request to it
    /// timed out): it stops being a neighbour, candidate or subscriber.
    pub fn unreachable(&mut self, now_ms: u64, peer: P) {
        let before = self.neighbours.len();
        self.neighbours.retain(|n| n.peer != peer);
        self.stats.expired += (before - self.neighbours.len()) as u64;
        self.candidates.retain(|c| c.peer != peer);
        self.pending.retain(|p| p.0 != peer);
        self.probing.retain(|p| p.0 != peer);
        self.subscribers.retain(|s| s.peer != peer);
        self.reselect = true;
        self.select(now_ms);
    }

    /// This node's advert changed: `full` when more than the load did (the cache
    /// filter, the caps), so subscribers need the whole advert.
    pub fn changed(&mut self, now_ms: u64, full: bool) {
        self.dirty = Some(self.dirty.unwrap_or(false) | full);
        self.flush_delta(now_ms);
    }

    /// Up to `k` of its neighbours whose advert (held here, or by the driver when
    /// `A` is `()`) says `is_warm`, nearest first, not counting `asker`: the answer
    /// to a [`Message::FindWarm`].
    pub fn warm_peers(&self, asker: P, k: usize, is_warm: impl Fn(&P, &A) -> bool) -> Vec<P> {
        self.nearest_where(k, |n| {
            n.peer != asker && n.advert.as_ref().is_some_and(|(a, _)| is_warm(&n.peer, a))
        })
    }

    /// Up to `k` neighbours, nearest first, not counting warm links (whom to ask a
    /// question: a warm link was taken for one function, and its own neighbours are
    /// no nearer than ours). Random links count: a small neighbourhood may be all
    /// random links.
    pub fn nearest_neighbours(&self, k: usize) -> Vec<P> {
        self.nearest_where(k, |n| n.link != Link::Warm)
    }

    /// Up to `k` neighbours, nearest first.
    pub(super) fn nearest(&self, k: usize) -> Vec<P> {
        self.nearest_where(k, |_| true)
    }

    /// Up to `k` neighbours that pass `keep`, nearest first.
    fn nearest_where(&self, k: usize, keep: impl Fn(&Neighbour<P, A>) -> bool) -> Vec<P> {
        let mut v: Vec<(f64, P)> = self
            .neighbours
            .iter()
            .filter(|n| keep(n))
            .map(|n| (n.rtt_ms, n.peer))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        v.into_iter().take(k).map(|x| x.1).collect()
    }

    fn push(&mut self, action: Action<P>) {
        if self.actions.len() >= MAX_ACTIONS {
            self.stats.dropped_actions += 1;
            return;
        }
        self.actions.push_back(action);
    }

    fn random_below(&mut self, n: u64) -> u64 {
        // xorshift64*: small, deterministic, seeded by the driver.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let x = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        if n == 0 { 0 } else { x % n }
    }
}
