//! A call's attempts on the wire: protocol's attempt rules decide, the engine moves
//! requests and answers with delays.

use super::*;

impl Engine<'_> {
    pub(super) fn one_way_us(&mut self, a: u32, b: u32, bytes: f64) -> u64 {
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

    pub(super) fn end(&mut self, call: u32, outcome: Outcome) {
        let c = &mut self.calls[call as usize];
        c.tries = None;
        if c.outcome == Outcome::Pending {
            c.outcome = outcome;
            c.done_us = self.now_us;
        }
    }

    /// Schedules the entry's learning, at `t_us`, that the attempt in flight failed
    /// with `kind`.
    pub(super) fn fail_attempt(&mut self, call: u32, attempt: u8, kind: ErrorKind, t_us: u64) {
        self.calls[call as usize].failed_with = kind;
        self.at(t_us, Ev::Retry { call, attempt });
    }

    /// The entry learnt that the attempt in flight failed: the attempt rules decide
    /// whether the call goes on.
    pub(super) fn answered_with_error(&mut self, call: u32) {
        let c = &mut self.calls[call as usize];
        let (peer, kind, entry) = (c.executor, c.failed_with, c.entry);
        if c.tries.is_none() {
            return;
        }
        // No simulated function faults by itself: every function is known good.
        let seen = match kind {
            ErrorKind::Unreachable => kith_protocol::conduct::Outcome::TimedOut,
            kind if kind.is_guest_fault() => kith_protocol::conduct::Outcome::Suspect(kind),
            kind => kith_protocol::conduct::Outcome::Failed(kind),
        };
        self.observe(call, seen);
        let Some(tries) = self.calls[call as usize].tries.as_mut() else {
            return;
        };
        match tries.on_answer(peer, Err(kind)) {
            Verdict::TryNext { penalise } => {
                if penalise {
                    self.penalise(entry, peer);
                }
                if kind == ErrorKind::Unreachable {
                    self.hood_unreachable(entry, peer);
                }
                self.attempt(call);
            }
            Verdict::Stale => self.attempt(call),
            Verdict::Fail(_) | Verdict::Done => self.end(call, Outcome::Exhausted),
        }
    }

    /// `entry` counts a misbehaviour of `peer` in its peer book (made on first use:
    /// most entries never penalise anyone, so most have no book).
    pub(super) fn penalise(&mut self, entry: u32, peer: u32) {
        let now_ms = self.now_us / 1000;
        if let Some(slot) = self.books.get_mut(entry as usize) {
            slot.get_or_insert_with(|| Box::new(PeerBook::new(peerbook::Config::default())))
                .penalise(now_ms, peer, 1.0);
        }
    }

    /// `peer`'s penalty in `entry`'s peer book now.
    pub(super) fn penalty(&self, entry: u32, peer: u32) -> f64 {
        self.books
            .get(entry as usize)
            .and_then(Option::as_ref)
            .map_or(0.0, |b| b.penalty(self.now_us / 1000, &peer))
    }

    pub(super) fn attempt(&mut self, call: u32) {
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
        c.attempt_us = self.now_us;
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

    pub(super) fn deliver(&mut self, call: u32, attempt: u8) {
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
        if self.lie(call, attempt, target) {
            return;
        }
        self.admit(call, target, attempt);
    }
}
