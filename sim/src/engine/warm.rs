//! Warm-function questions and late binding (neighbourhood model): every online peer
//! runs protocol's warm index (`kith_protocol::warm`, the code a node runs). When no
//! neighbour (nor the entry) has a call's function warm, the entry asks its index; a
//! question goes to its three nearest neighbours as `FindWarm`, each answers with its
//! own neighbours that have the function warm (`Neighbourhood::warm_peers`, from the
//! adverts it holds) and the adverts it holds of them. The call waits for the answer
//! if the index says so (`WarmIndex::hold`), and is then placed with the peers named
//! as candidates; the first of them become warm links of the entry's neighbourhood,
//! whose own adverts reach the next calls. Questions and answers are control
//! messages like the others: bytes, delay, loss.

use kith_protocol::FunctionId;
use kith_protocol::capacity::{Advert, Cached};
use kith_protocol::neighbourhood::Message;
use kith_protocol::warm::{self, Action, WarmIndex};

use super::control::{Held, Wire};
use super::*;

/// Warm links asked for per answer (or cached answer) naming peers.
const LINKS_PER_CALL: usize = 2;

/// An advert as an answer carries it: what the answerer held, when it heard it, and
/// the answerer's measured RTT to the peer (the entry adds its own RTT to the
/// answerer: an upper bound of the RTT to the peer, by the triangle inequality).
#[derive(Debug, Clone, Copy)]
pub(super) struct SecondHand {
    held: Held,
    heard_ms: u64,
    rtt_ms: f64,
}

type Index = WarmIndex<u32, SecondHand>;

/// The warm indexes, one per online peer.
#[derive(Default)]
pub(super) struct Warm {
    pub(super) index: Vec<Option<Box<Index>>>,
    pub(super) lookups: u64,
    pub(super) links: u64,
    pub(super) held: u64,
    pub(super) released_found: u64,
}

impl Warm {
    pub(super) fn new(population: usize) -> Self {
        Self {
            index: (0..population).map(|_| None).collect(),
            ..Self::default()
        }
    }
}

impl Engine<'_> {
    fn warm_mut(&mut self, p: u32) -> Option<&mut Index> {
        self.control
            .as_mut()?
            .warm
            .index
            .get_mut(p as usize)?
            .as_deref_mut()
    }

    fn warm_ref(&self, p: u32) -> Option<&Index> {
        self.control
            .as_ref()?
            .warm
            .index
            .get(p as usize)?
            .as_deref()
    }

    /// `p` came online: a fresh index.
    pub(super) fn warm_start(&mut self, p: u32) {
        if let Some(slot) = self
            .control
            .as_mut()
            .and_then(|c| c.warm.index.get_mut(p as usize))
        {
            *slot = Some(Box::new(WarmIndex::new(p, warm::Config::default())));
        }
    }

    /// `p` went offline: its index is gone (calls it held are lost with it).
    pub(super) fn warm_stop(&mut self, p: u32) {
        // The calls it held go with it (released, they find their entry offline).
        if let Some(w) = self.warm_mut(p) {
            w.handle_timeout(u64::MAX);
            self.warm_drive(p);
        }
        if let Some(slot) = self
            .control
            .as_mut()
            .and_then(|c| c.warm.index.get_mut(p as usize))
        {
            *slot = None;
        }
    }

    /// Whether placement at `e` would find nobody with `function` warm: neither `e`
    /// nor a neighbour (kith over the neighbourhood model only).
    pub(super) fn needs_warm(&self, e: u32, function: u16) -> bool {
        if self.strategy != Strategy::Kith || self.warm(e, function) {
            return false;
        }
        let Some(h) = self
            .control
            .as_ref()
            .and_then(|c| c.hoods.get(e as usize))
            .and_then(Option::as_deref)
        else {
            return false;
        };
        let bit = 1u64 << (function % 64);
        !h.neighbours()
            .iter()
            .any(|n| n.advert().is_some_and(|(a, _)| a.warm & bit != 0))
    }

    /// Call `call` at `e` found no warm candidate for `function`: ask the index, link
    /// to the peers it knows, and hold the call for the answer if the index says so.
    /// `true`: held (placed on [`Action::Release`]).
    pub(super) fn want_warm(&mut self, e: u32, function: u16, call: u32) -> bool {
        let now_ms = self.now_us / 1000;
        let id = self.world.functions[function as usize].id;
        let Some(w) = self.warm_mut(e) else {
            return false;
        };
        w.handle_timeout(now_ms);
        let found: Vec<u32> = w
            .providers(now_ms, &id)
            .map(|p| p.iter().map(|x| x.0).take(LINKS_PER_CALL).collect())
            .unwrap_or_default();
        self.warm_drive(e);
        let held = found.is_empty()
            && self
                .warm_mut(e)
                .is_some_and(|w| w.hold(now_ms, &id, u64::from(call)));
        if held {
            let until = self.now_us + warm::Config::default().hold_ms * 1000;
            if let Some(c) = self.control.as_mut() {
                c.warm.held += 1;
            }
            self.at(until, Ev::WarmTimer { peer: e });
        }
        self.link_warm_peers(e, &found);
        held
    }

    fn link_warm_peers(&mut self, e: u32, peers: &[u32]) {
        if peers.is_empty() {
            return;
        }
        let now_ms = self.now_us / 1000;
        if let Some(c) = self.control.as_mut() {
            c.warm.links += peers.len() as u64;
            if let Some(h) = c.hoods.get_mut(e as usize).and_then(Option::as_deref_mut) {
                for &q in peers {
                    h.link_warm(now_ms, q);
                }
            }
        }
        self.drive(e);
    }

    /// Placement at `e` chose `q` first (a warm link to it stays).
    pub(super) fn hood_used(&mut self, e: u32, q: u32) {
        let now_ms = self.now_us / 1000;
        if let Some(h) = self
            .control
            .as_mut()
            .and_then(|c| c.hoods.get_mut(e as usize))
            .and_then(Option::as_deref_mut)
        {
            h.used(now_ms, q);
        }
    }

    /// Carries out what `p`'s index asks for.
    fn warm_drive(&mut self, p: u32) {
        let mut released = Vec::new();
        while let Some(action) = self.warm_mut(p).and_then(WarmIndex::poll_action) {
            let f = match action {
                Action::Ask(f) => f,
                Action::Release(call) => {
                    released.push(call as u32);
                    continue;
                }
            };
            let Some(c) = self.control.as_ref() else {
                return;
            };
            let ask = c.warm.index[p as usize]
                .as_deref()
                .map_or(0, |w| w.config().ask);
            let nearest = c.hoods[p as usize]
                .as_deref()
                .map(|h| h.nearest_neighbours(ask))
                .unwrap_or_default();
            if let Some(c) = self.control.as_mut() {
                c.warm.lookups += 1;
            }
            let now_ms = self.now_us / 1000;
            let n = nearest.len();
            for q in nearest {
                self.send_control(p, q, Wire::Message(Message::FindWarm(f)));
            }
            if let Some(w) = self.warm_mut(p) {
                w.asked(now_ms, &f, n);
            }
        }
        for call in released {
            self.start_call(call);
        }
    }

    /// A held call's deadline at `p`.
    pub(super) fn warm_timer(&mut self, p: u32) {
        let now_ms = self.now_us / 1000;
        if let Some(w) = self.warm_mut(p) {
            w.handle_timeout(now_ms);
            self.warm_drive(p);
        }
    }

    /// `to` was asked by `from` which of its neighbours have `f` warm: it answers,
    /// with the adverts it holds of them.
    pub(super) fn answer_warm(&mut self, to: u32, from: u32, f: FunctionId) {
        let Some(i) = self.world.functions.iter().position(|x| x.id == f) else {
            return;
        };
        let bit = 1u64 << (i % 64);
        let max = warm::Config::default().max_answer;
        let Some(h) = self
            .control
            .as_ref()
            .and_then(|c| c.hoods.get(to as usize))
            .and_then(Option::as_deref)
        else {
            return;
        };
        let peers = h.warm_peers(from, max, |_, held: &Held| held.warm & bit != 0);
        let answer = peers
            .into_iter()
            .filter_map(|q| {
                let n = h.neighbours().iter().find(|n| n.peer == q)?;
                let (held, heard_ms) = n.advert()?;
                Some((
                    q,
                    SecondHand {
                        held: *held,
                        heard_ms,
                        rtt_ms: n.rtt_ms,
                    },
                ))
            })
            .collect();
        self.send_control(to, from, Wire::Warm(f, answer));
    }

    /// An answer to `to`'s question: into its index (which may release held calls),
    /// and the first peers named become warm links.
    pub(super) fn warm_answered(
        &mut self,
        to: u32,
        from: u32,
        f: FunctionId,
        mut peers: Vec<(u32, SecondHand)>,
    ) {
        let now_ms = self.now_us / 1000;
        let via = self
            .control
            .as_ref()
            .and_then(|c| c.hoods.get(to as usize))
            .and_then(Option::as_deref)
            .and_then(|h| h.neighbours().iter().find(|n| n.peer == from))
            .map_or(f64::NAN, |n| n.rtt_ms);
        for p in &mut peers {
            p.1.rtt_ms += via;
        }
        let link: Vec<u32> = peers.iter().map(|p| p.0).take(LINKS_PER_CALL).collect();
        let Some(w) = self.warm_mut(to) else {
            return;
        };
        let before = w.stats().released_found;
        w.found(now_ms, &f, peers);
        let released = w.stats().released_found - before;
        if let Some(c) = self.control.as_mut() {
            c.warm.released_found += released;
        }
        self.warm_drive(to);
        self.link_warm_peers(to, &link);
    }

    /// Candidates for a call of `function` at `e` from its cached warm answer, beyond
    /// its neighbours: (peer, advert as the answer carried it, the RTT bound through
    /// the answerer, when the answerer heard it).
    pub(super) fn second_hand_view(
        &self,
        e: u32,
        function: u16,
        skip: &[(u32, Advert, f64, u64)],
    ) -> Vec<(u32, Advert, f64, u64)> {
        let now_ms = self.now_us / 1000;
        let id = self.world.functions[function as usize].id;
        let Some(known) = self.warm_ref(e).and_then(|w| w.known(now_ms, &id)) else {
            return Vec::new();
        };
        known
            .iter()
            // Whether a peer named is still online is not known: a dead one costs an
            // attempt, as on a node.
            .filter(|(q, _)| !skip.iter().any(|s| s.0 == *q))
            .map(|(q, s)| {
                let mut cached = Cached::default();
                cached.insert(&id);
                let advert = self.world.advert(*q, s.held.running, s.held.queued, cached);
                (*q, advert, s.rtt_ms, s.heard_ms)
            })
            .collect()
    }

    /// The advert `e`'s cached answer about `function` carried of `q`.
    pub(super) fn second_hand(&self, e: u32, function: u16, q: u32) -> Option<SecondHand> {
        let now_ms = self.now_us / 1000;
        let id = self.world.functions[function as usize].id;
        let known = self.warm_ref(e)?.known(now_ms, &id)?;
        known.iter().find(|x| x.0 == q).map(|x| x.1)
    }

    /// How old, ms, and whether stale, the second-hand advert of `q` is.
    pub(super) fn second_hand_age(&self, s: SecondHand, q: u32) -> (f32, bool) {
        let age = (self.now_us / 1000).saturating_sub(s.heard_ms) as f32;
        let now = self.held(q);
        let current = s.held.running == now.running && s.held.queued == now.queued;
        (age, !current)
    }
}
