//! What entries learn from the calls they send (protocol's `conduct`, as a node
//! does), and what lying peers (`[[failures.liar]]`) do with the calls they win.

use kith_protocol::conduct::{self, Conduct, Outcome as Seen};

use super::*;
use crate::scenario::Lie;

impl Engine<'_> {
    /// What `entry`'s placement charges `peer` for its conduct, ms (0 without
    /// learning).
    pub(super) fn conduct_ms(&self, entry: u32, peer: u32) -> f64 {
        if !self.scenario.sim.learning {
            return 0.0;
        }
        match self.conduct.get(entry as usize).and_then(Option::as_deref) {
            Some(c) => c.cost_ms(self.now_us / 1000, &peer),
            None => conduct::Config::default().unproven_ms,
        }
    }

    /// `entry` saw the remote attempt of `call` in flight end with `seen`.
    pub(super) fn observe(&mut self, call: u32, seen: Seen) {
        if !self.scenario.sim.learning {
            return;
        }
        let c = &self.calls[call as usize];
        let (entry, peer) = (c.entry, c.executor);
        if peer == entry || peer == NONE {
            return;
        }
        let predicted = c.tries.as_ref().map_or(0.0, |t| t.predicted_ms(peer));
        let elapsed = self.now_us.saturating_sub(c.attempt_us) as f64 / 1000.0;
        let now_ms = self.now_us / 1000;
        if let Some(slot) = self.conduct.get_mut(entry as usize) {
            slot.get_or_insert_with(|| Box::new(Conduct::new(conduct::Config::default())))
                .observe(now_ms, peer, predicted, elapsed, seen);
        }
    }

    /// `entry` learnt that `liar` claimed a fault the next candidate did not
    /// reproduce.
    pub(super) fn refuted(&mut self, entry: u32, liar: u32, kind: ErrorKind) {
        self.penalise(entry, liar);
        let now_ms = self.now_us / 1000;
        if let Some(slot) = self.conduct.get_mut(entry as usize) {
            slot.get_or_insert_with(|| Box::new(Conduct::new(conduct::Config::default())))
                .observe(now_ms, liar, 0.0, 0.0, Seen::Refuted(kind));
        }
    }

    /// A call's attempt reached `target`: if it lies, it mistreats the call and
    /// `true` is returned.
    pub(super) fn lie(&mut self, call: u32, attempt: u8, target: u32) -> bool {
        let Some(lie) = self.world.peers[target as usize].lie else {
            return false;
        };
        self.totals.lied_to += 1;
        let entry = self.calls[call as usize].entry;
        let detect = us(self.scenario.sim.failure_detect_ms);
        match lie {
            Lie::Drop => {
                let t = self.now_us + detect;
                self.fail_attempt(call, attempt, ErrorKind::Unreachable, t);
            }
            Lie::Delay => {
                let output = self.world.functions[self.calls[call as usize].function as usize]
                    .spec
                    .output_bytes;
                let t = self.now_us + detect * 9 / 10 + self.one_way_us(target, entry, output);
                self.at(t, Ev::Done { call });
            }
            Lie::Trap => {
                let t = self.now_us + self.one_way_us(target, entry, 64.0);
                self.fail_attempt(call, attempt, ErrorKind::Trap, t);
            }
        }
        true
    }
}
