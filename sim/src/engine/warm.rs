//! Warm-function questions (neighbourhood model): every online peer runs protocol's
//! warm index (`kith_protocol::warm`, the code a node runs). When no neighbour (nor
//! the entry) has a call's function warm, the entry asks its index; a question goes
//! to its three nearest neighbours as `FindWarm`, each answers with its own
//! neighbours that have the function warm (`Neighbourhood::warm_peers`, from the
//! adverts it holds), and the peers named become warm links of the entry's
//! neighbourhood, whose adverts reach the next calls. Questions and answers are
//! control messages like the others: bytes, delay, loss.

use kith_protocol::FunctionId;
use kith_protocol::neighbourhood::Message;
use kith_protocol::warm::{self, Action, WarmIndex};

use super::control::{Held, Wire};
use super::*;

/// Warm links asked for per call that found no warm neighbour.
const LINKS_PER_CALL: usize = 2;

/// The warm indexes, one per online peer.
#[derive(Default)]
pub(super) struct Warm {
    pub(super) index: Vec<Option<Box<WarmIndex<u32>>>>,
    pub(super) lookups: u64,
    pub(super) links: u64,
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
    fn warm_mut(&mut self, p: u32) -> Option<&mut WarmIndex<u32>> {
        self.control
            .as_mut()?
            .warm
            .index
            .get_mut(p as usize)?
            .as_deref_mut()
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

    /// `p` went offline: its index is gone.
    pub(super) fn warm_stop(&mut self, p: u32) {
        if let Some(slot) = self
            .control
            .as_mut()
            .and_then(|c| c.warm.index.get_mut(p as usize))
        {
            *slot = None;
        }
    }

    /// Placement at `e` found no warm candidate for `function`: ask the index, and
    /// link to the peers it knows.
    pub(super) fn want_warm(&mut self, e: u32, function: u16) {
        let now_ms = self.now_us / 1000;
        let id = self.world.functions[function as usize].id;
        let Some(w) = self.warm_mut(e) else {
            return;
        };
        w.handle_timeout(now_ms);
        let found: Vec<u32> = w
            .providers(now_ms, &id)
            .map(|p| p.iter().copied().take(LINKS_PER_CALL).collect())
            .unwrap_or_default();
        self.warm_drive(e);
        if found.is_empty() {
            return;
        }
        if let Some(c) = self.control.as_mut() {
            c.warm.links += found.len() as u64;
            if let Some(h) = c.hoods.get_mut(e as usize).and_then(Option::as_deref_mut) {
                for q in found {
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
        while let Some(action) = self.warm_mut(p).and_then(WarmIndex::poll_action) {
            let Action::Ask(f) = action;
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
            for q in nearest {
                self.send_control(p, q, Wire::Message(Message::FindWarm(f)));
            }
        }
    }

    /// `to` was asked by `from` which of its neighbours have `f` warm: it answers.
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
        let peers = h.warm_peers(from, max, |held: &Held| held.warm & bit != 0);
        self.send_control(to, from, Wire::Message(Message::Warm(f, peers)));
    }

    /// An answer to `to`'s question.
    pub(super) fn warm_answered(&mut self, to: u32, f: FunctionId, peers: Vec<u32>) {
        let now_ms = self.now_us / 1000;
        if let Some(w) = self.warm_mut(to) {
            w.found(now_ms, &f, peers);
        }
    }
}
