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

mod select;
mod warm;
pub mod wire;

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

/// The neighbourhood's constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// How many of the nearest peers are neighbours.
    pub near: usize,
    /// RTT of the first ring's upper edge, ms; each next ring doubles it.
    pub ring_base_ms: f64,
    /// Number of rings (the last one is open-ended).
    pub rings: usize,
    /// Neighbours per ring beyond the nearest.
    pub per_ring: usize,
    /// Random links.
    pub random: usize,
    /// Most subscribers accepted.
    pub max_subscribers: usize,
    /// Most candidates held.
    pub max_candidates: usize,
    /// Most subscriptions in flight.
    pub max_pending: usize,
    /// Most RTT probes in flight.
    pub max_probes: usize,
    /// Housekeeping (expiry, renewals, exchange, a new choice) this often, ms.
    pub tick_ms: u64,
    /// The advert's load to every subscriber this often, ms, changed or not (so what a
    /// neighbour holds is never older than this).
    pub heartbeat_ms: u64,
    /// The whole advert to every subscriber this often, ms.
    pub full_every_ms: u64,
    /// Least time between two advert sends on load changes, ms.
    pub min_delta_ms: u64,
    /// A neighbour not heard from for this long is dropped, ms.
    pub expire_ms: u64,
    /// A subscription lasts this long unless renewed, ms.
    pub lease_ms: u64,
    /// A subscribe or probe not answered in this time fails, ms.
    pub answer_timeout_ms: u64,
    /// A candidate that refused is not asked again for this long, ms.
    pub refused_backoff_ms: u64,
    /// Ask a neighbour for its neighbours this often, ms, once the neighbourhood has
    /// settled.
    pub exchange_ms: u64,
    /// … and this often while the last exchange still brought a nearer neighbour.
    pub exchange_fast_ms: u64,
    /// While candidates are short, ask the driver for a lookup this often, ms.
    pub lookup_ms: u64,
    /// Replace one random link this often, ms.
    pub random_refresh_ms: u64,
    /// Warm links: peers found to have a function warm that placement asked for
    /// ([`Neighbourhood::link_warm`]).
    pub warm: usize,
    /// A warm link placement has not chosen for this long is dropped, ms.
    pub warm_idle_ms: u64,
    /// Most peers in one [`Message::Peers`].
    pub share: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            near: 16,
            ring_base_ms: 4.0,
            rings: 6,
            per_ring: 2,
            random: 4,
            max_subscribers: 48,
            max_candidates: 64,
            max_pending: 4,
            max_probes: 4,
            tick_ms: 1_000,
            heartbeat_ms: 2_500,
            full_every_ms: 60_000,
            min_delta_ms: 1_000,
            expire_ms: 25_000,
            lease_ms: 60_000,
            answer_timeout_ms: 5_000,
            refused_backoff_ms: 120_000,
            exchange_ms: 20_000,
            exchange_fast_ms: 2_000,
            lookup_ms: 5_000,
            random_refresh_ms: 120_000,
            warm: 4,
            warm_idle_ms: 60_000,
            share: 16,
        }
    }
}

impl Config {
    /// The most neighbours a node holds.
    pub fn max_neighbours(&self) -> usize {
        self.near + self.rings * self.per_ring + self.random + self.warm
    }

    /// The ring an RTT falls in.
    pub fn ring(&self, rtt_ms: f64) -> usize {
        let base = self.ring_base_ms.max(f64::MIN_POSITIVE);
        if rtt_ms.is_nan() || rtt_ms < base {
            return 0;
        }
        let r = (rtt_ms / base).log2().floor() as usize + 1;
        r.min(self.rings.saturating_sub(1))
    }
}

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
    /// Some of my nearest neighbours.
    Peers(Vec<P>),
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

/// Why a peer is a neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Chosen by RTT: among the nearest, or its ring's nearest.
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
    used_ms: u64,
    heard_ms: u64,
    renewed_ms: u64,
}

impl<P, A> Neighbour<P, A> {
    /// Its latest advert and when it came (ms).
    pub fn advert(&self) -> Option<(&A, u64)> {
        self.advert.as_ref().map(|(a, _)| (a, self.heard_ms))
    }
}

#[derive(Debug, Clone)]
struct Candidate<P> {
    peer: P,
    rtt_ms: Option<f64>,
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
        self.add_candidate(now_ms, peer);
        self.select(now_ms);
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

    /// An advert from `from` with sequence number `seq`; from a peer asked to take us
    /// as a subscriber, it also counts as the acceptance.
    pub fn advert(&mut self, now_ms: u64, from: P, seq: u64, advert: A) -> AdvertVerdict {
        // A peer we asked may send its advert before its acceptance arrives (they
        // travel apart): the advert counts as the acceptance.
        if self.pending.iter().any(|p| p.0 == from) {
            self.on_accepted(now_ms, from);
        }
        let Some(n) = self.neighbours.iter_mut().find(|n| n.peer == from) else {
            self.stats.ignored_adverts += 1;
            return AdvertVerdict::NotNeighbour;
        };
        if n.advert.as_ref().is_some_and(|(_, held)| *held >= seq) {
            self.stats.ignored_adverts += 1;
            return AdvertVerdict::Older;
        }
        n.advert = Some((advert, seq));
        n.heard_ms = now_ms;
        AdvertVerdict::Accepted
    }

    /// A control message from `from`.
    pub fn message(&mut self, now_ms: u64, from: P, message: Message<P>) {
        if from == self.me {
            return;
        }
        match message {
            Message::Subscribe => self.on_subscribe(now_ms, from),
            Message::Unsubscribe => self.subscribers.retain(|s| s.peer != from),
            Message::Accepted => self.on_accepted(now_ms, from),
            Message::Refused => {
                self.pending.retain(|p| p.0 != from);
                self.reselect = true;
                if let Some(c) = self.candidates.iter_mut().find(|c| c.peer == from) {
                    c.not_before_ms = now_ms + self.config.refused_backoff_ms;
                }
                self.select(now_ms);
            }
            Message::AskPeers => {
                let peers = self.nearest(self.config.share);
                self.push(Action::Send(from, Message::Peers(peers)));
            }
            Message::Peers(peers) => {
                for p in peers.into_iter().take(self.config.share) {
                    self.add_candidate(now_ms, p);
                }
                self.select(now_ms);
            }
            // Adverts come with their payload through `advert`; the warm questions
            // are the driver's (`crate::warm`).
            Message::Advert { .. } | Message::FindWarm(_) | Message::Warm(..) => {}
        }
    }

    fn on_subscribe(&mut self, now_ms: u64, from: P) {
        let until_ms = now_ms + self.config.lease_ms;
        if let Some(s) = self.subscribers.iter_mut().find(|s| s.peer == from) {
            // A renewal, or a subscriber whose first answer was lost (it asks again):
            // answered either way, so it never waits on an answer that will not come.
            s.until_ms = until_ms;
            self.push(Action::Send(from, Message::Accepted));
            return;
        }
        if self.subscribers.len() >= self.config.max_subscribers {
            self.stats.refused += 1;
            self.push(Action::Send(from, Message::Refused));
            return;
        }
        self.subscribers.push(Subscriber {
            peer: from,
            until_ms,
        });
        self.push(Action::Send(from, Message::Accepted));
        self.push(Action::Send(from, Message::Advert { full: true }));
        // A subscriber is a peer worth subscribing back to (one link, both ways).
        self.add_candidate(now_ms, from);
        self.reselect = true;
    }

    fn on_accepted(&mut self, now_ms: u64, from: P) {
        let Some(i) = self.pending.iter().position(|p| p.0 == from) else {
            return; // not asked, or given up on: ignore
        };
        let (_, _, link) = self.pending.swap_remove(i);
        let rtt_ms = self
            .candidates
            .iter()
            .find(|c| c.peer == from)
            .and_then(|c| c.rtt_ms)
            .unwrap_or(f64::INFINITY);
        self.candidates.retain(|c| c.peer != from);
        self.improved |= link == Link::Rtt;
        self.reselect = true;
        self.neighbours.push(Neighbour {
            peer: from,
            rtt_ms,
            link,
            advert: None,
            used_ms: now_ms,
            heard_ms: now_ms,
            renewed_ms: now_ms,
        });
        self.select(now_ms);
    }

    /// Up to `k` of its neighbours whose advert says `is_warm`, nearest first, not
    /// counting `asker`: the answer to a [`Message::FindWarm`].
    pub fn warm_peers(&self, asker: P, k: usize, is_warm: impl Fn(&A) -> bool) -> Vec<P> {
        let mut v: Vec<(f64, P)> = self
            .neighbours
            .iter()
            .filter(|n| n.peer != asker && n.advert.as_ref().is_some_and(|(a, _)| is_warm(a)))
            .map(|n| (n.rtt_ms, n.peer))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        v.into_iter().take(k).map(|x| x.1).collect()
    }

    /// Up to `k` neighbours chosen by RTT, nearest first (whom to ask a question).
    pub fn nearest_neighbours(&self, k: usize) -> Vec<P> {
        let mut v: Vec<(f64, P)> = self
            .neighbours
            .iter()
            .filter(|n| n.link == Link::Rtt)
            .map(|n| (n.rtt_ms, n.peer))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        v.into_iter().take(k).map(|x| x.1).collect()
    }

    /// Up to `k` neighbours, nearest first.
    pub(super) fn nearest(&self, k: usize) -> Vec<P> {
        let mut v: Vec<(f64, P)> = self.neighbours.iter().map(|n| (n.rtt_ms, n.peer)).collect();
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
