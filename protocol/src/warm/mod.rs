//! Who near here has a function warm, asked of the neighbourhood two hops out instead
//! of carried in every peer's advert to everyone.
//!
//! Each neighbour's advert already says what it has warm, so a node knows that of
//! its ~30 neighbours. When placement finds none with a call's function warm, it asks
//! [`WarmIndex::providers`]: a cached answer, or a question ([`Action::Ask`]) the
//! driver sends to the [`Config::ask`] nearest neighbours (`Message::FindWarm`). Each
//! answers from what it holds (`Neighbourhood::warm_peers`: its neighbours with the
//! function warm, nearest first; the neighbours of a near peer are near), and the
//! answers become warm links of the asker's neighbourhood
//! (`Neighbourhood::link_warm`), whose adverts reach the next calls. So a node sees
//! warmth among ~30 × 30 peers around it at the cost of one small question per
//! function per [`Config::found_ttl_ms`], whatever the size of the network.
//!
//! Late binding (after Sparrow): the call that found no warm neighbour need not go
//! cold. While its question is out the driver may [`WarmIndex::hold`] it, for at most
//! [`Config::hold_ms`]; the first answer that names a peer (or the last answer, or
//! the deadline) releases it ([`Action::Release`]) and the driver places it again,
//! now with the peers named as candidates. Each answer carries the answerer's held
//! advert of every peer it names (`A`, signed by that peer on a node), so placement
//! ranks them on their load and coordinates without waiting for a warm link to
//! settle: the wait is one round trip to the nearest neighbours, where a cold start
//! costs a fetch and a compile.
//!
//! Rejected after measuring it: DHT provider records keyed by function and a cell of
//! Vivaldi coordinates. In the simulator's European world (10 metro areas, 16
//! rounds of Vivaldi, median error 34%) the areas' centroids lie within ~2 ms of one
//! another and each area's peers spread ~17 ms around them, so a 10 ms cell holds 6%
//! of one area (18% at 40 ms): a cell does not name a place, and lookups found
//! nobody. Keyed by function alone, the DHT returns providers from anywhere.
//!
//! Caps: cached answers ≤ [`Config::max_cached`] (beyond it the least recently used
//! goes), peers kept per answer ≤ [`Config::max_found`], questions in flight ≤
//! [`Config::max_lookups`] (beyond it a call does without), actions waiting ≤
//! [`MAX_ACTIONS`] (beyond it dropped and counted), calls held ≤ [`Config::max_held`]
//! (beyond it a call is placed at once, without waiting).

mod hold;

use std::collections::VecDeque;

use crate::FunctionId;

use hold::Held;

/// Most actions waiting for the driver.
pub const MAX_ACTIONS: usize = 256;

/// Constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Neighbours asked, nearest first.
    pub ask: usize,
    /// Most answers cached.
    pub max_cached: usize,
    /// An answer with peers is used this long, ms. Placement ranks the peers named
    /// on the loads the answer carried, so this is short: the loads were up to a
    /// heartbeat old when answered, and a warm link that was refused (the strong
    /// peers are the popular ones) leaves the answer as the only view of them.
    pub found_ttl_ms: u64,
    /// An empty answer (nobody near has it warm) is believed this long, ms.
    pub empty_ttl_ms: u64,
    /// Most peers kept from the answers to one question.
    pub max_found: usize,
    /// Most questions in flight.
    pub max_lookups: usize,
    /// A question not answered in this time counts as answered empty, ms.
    pub lookup_timeout_ms: u64,
    /// Most peers a node puts in one answer.
    pub max_answer: usize,
    /// Longest a call waits for an answer before it is placed without one, ms.
    pub hold_ms: u64,
    /// Most calls held at once.
    pub max_held: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ask: 3,
            max_cached: 64,
            found_ttl_ms: 5_000,
            empty_ttl_ms: 10_000,
            max_found: 8,
            max_lookups: 4,
            lookup_timeout_ms: 2_000,
            max_answer: 8,
            hold_ms: 150,
            max_held: 64,
        }
    }
}

/// What the driver does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ask the [`Config::ask`] nearest neighbours who near them has this function
    /// warm; report each answer with [`WarmIndex::found`].
    /// After it, report with [`WarmIndex::asked`] how many were asked.
    Ask(FunctionId),
    /// Place this held call now ([`WarmIndex::hold`]): an answer came, or it waited
    /// [`Config::hold_ms`].
    Release(u64),
}

/// Counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Questions asked.
    pub lookups: u64,
    /// Questions nobody answered with a peer (or that timed out).
    pub empty: u64,
    /// Answers served from the cache.
    pub cache_hits: u64,
    /// Calls that did without, because the questions in flight were at their cap.
    pub lookups_capped: u64,
    /// Actions dropped because the queue was full.
    pub dropped_actions: u64,
    /// Calls held for an answer.
    pub held: u64,
    /// Held calls released by an answer naming a peer.
    pub released_found: u64,
    /// Held calls released empty-handed (every answer empty, or the deadline).
    pub released_empty: u64,
    /// Calls not held because [`Config::max_held`] were.
    pub held_capped: u64,
}

#[derive(Debug, Clone)]
struct Answer<P, A> {
    function: FunctionId,
    until_ms: u64,
    used_ms: u64,
    peers: Vec<(P, A)>,
}

#[derive(Debug, Clone)]
struct Lookup {
    function: FunctionId,
    started_ms: u64,
    /// Answers still to come.
    left: usize,
}

/// One node's warm-function index: the answers it holds (each peer named with the
/// advert the answer carried, `A`), the questions out and the calls held for them.
#[derive(Debug, Clone)]
pub struct WarmIndex<P, A = ()> {
    config: Config,
    me: P,
    answers: Vec<Answer<P, A>>,
    lookups: Vec<Lookup>,
    held: Vec<Held>,
    actions: VecDeque<Action>,
    stats: Stats,
}

impl<P: Copy + PartialEq, A> WarmIndex<P, A> {
    /// A node `me` that has asked nothing yet.
    pub fn new(me: P, config: Config) -> Self {
        Self {
            config,
            me,
            answers: Vec::new(),
            lookups: Vec::new(),
            held: Vec::new(),
            actions: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// Its constants.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// How many answers are cached.
    pub fn answers(&self) -> usize {
        self.answers.len()
    }

    /// Bytes held on the heap by its tables (their capacity).
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.answers
            .iter()
            .map(|a| a.peers.capacity() * size_of::<(P, A)>())
            .sum::<usize>()
            + self.answers.capacity() * size_of::<Answer<P, A>>()
            + self.lookups.capacity() * size_of::<Lookup>()
            + self.held.capacity() * size_of::<Held>()
            + self.actions.capacity() * size_of::<Action>()
    }

    /// The next thing the driver should do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`WarmIndex::handle_timeout`] next has work, ms.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.lookups
            .iter()
            .map(|l| l.started_ms + self.config.lookup_timeout_ms)
            .chain(self.held.iter().map(|h| h.until_ms))
            .min()
    }

    /// Closes questions not answered in time, releases calls held too long and
    /// forgets expired answers.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.release_late(now_ms);
        let timeout = self.config.lookup_timeout_ms;
        let late: Vec<FunctionId> = self
            .lookups
            .iter()
            .filter(|l| now_ms >= l.started_ms + timeout)
            .map(|l| l.function)
            .collect();
        for f in late {
            self.lookups.retain(|l| l.function != f);
            if !self.answers.iter().any(|a| a.function == f) {
                self.store(now_ms, f, Vec::new());
            }
            self.release(&f, false);
        }
        self.answers.retain(|a| now_ms < a.until_ms);
    }

    /// Who near here has `function` warm, with the adverts the answers carried:
    /// `Some` of a cached answer (possibly empty), or `None` while the question is
    /// out (asked now if it is not yet and the cap allows).
    pub fn providers(&mut self, now_ms: u64, function: &FunctionId) -> Option<&[(P, A)]> {
        let hit = self
            .answers
            .iter()
            .position(|a| a.function == *function && now_ms < a.until_ms);
        let open = self.lookups.iter().any(|l| l.function == *function);
        // An empty partial answer while others are still to come: still asking.
        let hit = hit.filter(|&i| !(open && self.answers[i].peers.is_empty()));
        if let Some(i) = hit {
            self.stats.cache_hits += 1;
            let a = &mut self.answers[i];
            a.used_ms = now_ms;
            return Some(&a.peers);
        }
        if open {
            return None;
        }
        if self.lookups.len() >= self.config.max_lookups {
            self.stats.lookups_capped += 1;
            return None;
        }
        self.lookups.push(Lookup {
            function: *function,
            started_ms: now_ms,
            left: self.config.ask,
        });
        self.stats.lookups += 1;
        self.push(Action::Ask(*function));
        None
    }

    /// The cached answer about `function`, if any: what [`WarmIndex::providers`]
    /// would return, without asking or counting.
    pub fn known(&self, now_ms: u64, function: &FunctionId) -> Option<&[(P, A)]> {
        self.answers
            .iter()
            .find(|a| a.function == *function && now_ms < a.until_ms)
            .map(|a| &a.peers[..])
    }

    /// Whether a question about `function` is out (an answer about it is wanted).
    pub fn asking(&self, function: &FunctionId) -> bool {
        self.lookups.iter().any(|l| l.function == *function)
    }

    /// The driver asked `n` neighbours about `function` (after [`Action::Ask`]):
    /// that many answers are awaited. With none asked the question is closed empty
    /// and its held calls are released.
    pub fn asked(&mut self, now_ms: u64, function: &FunctionId, n: usize) {
        let Some(i) = self.lookups.iter().position(|l| l.function == *function) else {
            return;
        };
        if n > 0 {
            self.lookups[i].left = n;
            return;
        }
        self.lookups.swap_remove(i);
        if !self.answers.iter().any(|a| a.function == *function) {
            self.store(now_ms, *function, Vec::new());
        }
        self.release(function, false);
    }

    /// One neighbour's answer: peers near it with `function` warm, each with the
    /// advert the answer carried. Merged into the answer held (ignored unless asked
    /// for: a question out, or an answer held from it). Calls held for it are
    /// released once a peer is known or every answer is in.
    pub fn found(
        &mut self,
        now_ms: u64,
        function: &FunctionId,
        peers: impl IntoIterator<Item = (P, A)>,
    ) {
        let lookup = self.lookups.iter().position(|l| l.function == *function);
        let held = self.answers.iter().position(|a| a.function == *function);
        if lookup.is_none() && held.is_none() {
            return;
        }
        let mut open = false;
        if let Some(i) = lookup {
            let l = &mut self.lookups[i];
            l.left = l.left.saturating_sub(1);
            open = l.left > 0;
            if !open {
                self.lookups.swap_remove(i);
            }
        }
        let (mut kept, until) = match held {
            Some(i) => {
                let a = self.answers.swap_remove(i);
                (a.peers, Some(a.until_ms))
            }
            None => (Vec::new(), None),
        };
        let was_empty = kept.is_empty();
        for (p, a) in peers {
            if kept.len() >= self.config.max_found {
                break;
            }
            if p != self.me && !kept.iter().any(|k| k.0 == p) {
                kept.push((p, a));
            }
        }
        let found = !kept.is_empty();
        match until {
            // An answer adding to a non-empty one keeps its expiry.
            Some(until_ms) if !was_empty => self.answers.push(Answer {
                function: *function,
                until_ms,
                used_ms: now_ms,
                peers: kept,
            }),
            _ => self.store(now_ms, *function, kept),
        }
        if found || !open {
            self.release(function, found);
        }
    }

    fn store(&mut self, now_ms: u64, function: FunctionId, peers: Vec<(P, A)>) {
        let ttl = if peers.is_empty() {
            self.stats.empty += 1;
            self.config.empty_ttl_ms
        } else {
            self.config.found_ttl_ms
        };
        if self.config.max_cached == 0 {
            return;
        }
        if self.answers.len() >= self.config.max_cached {
            let lru = self
                .answers
                .iter()
                .enumerate()
                .min_by_key(|(_, a)| a.used_ms)
                .map(|(i, _)| i);
            if let Some(i) = lru {
                self.answers.swap_remove(i);
            }
        }
        self.answers.push(Answer {
            function,
            until_ms: now_ms.saturating_add(ttl),
            used_ms: now_ms,
            peers,
        });
    }

    fn push(&mut self, action: Action) {
        if self.actions.len() >= MAX_ACTIONS {
            self.stats.dropped_actions += 1;
            return;
        }
        self.actions.push_back(action);
    }
}
