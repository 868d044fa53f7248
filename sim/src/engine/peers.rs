//! Peers coming and going: churn, crashes, daily cycles, outages, partitions, and
//! what an entry still believes about a peer that vanished.

use super::*;

/// Peers, churn and reachability.
impl Engine<'_> {
    pub(super) fn online(&self, p: u32) -> bool {
        self.peers[p as usize].online()
    }

    /// True if and only if no active partition separates `a` and `b`.
    pub(super) fn reachable(&self, a: u32, b: u32) -> bool {
        let (ra, rb) = (
            self.world.peers[a as usize].region as usize,
            self.world.peers[b as usize].region as usize,
        );
        self.reachable_regions(ra, rb)
    }

    pub(super) fn reachable_regions(&self, ra: usize, rb: usize) -> bool {
        self.active_partitions
            .iter()
            .all(|i| self.partitions[*i][ra] == self.partitions[*i][rb])
    }

    /// True if `e` still believes it is connected to `q`: `q` is up and reachable, or
    /// went away less than the detection time ago.
    pub(super) fn visible(&self, e: u32, q: u32) -> bool {
        let detect = us(self.scenario.sim.failure_detect_ms);
        let s = &self.peers[q as usize];
        // Peers offline from the start (down_since 0) were never connected.
        (s.online() || (s.down_since_us > 0 && self.now_us < s.down_since_us + detect))
            && (self.reachable(e, q) || self.now_us < self.partition_change_us + detect)
    }

    pub(super) fn churn(&mut self, peer: u32) {
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

    pub(super) fn set_down(&mut self, p: u32, bit: u8, down: bool) {
        let before = self.online(p);
        let s = &mut self.peers[p as usize];
        if down {
            s.down |= bit;
        } else {
            s.down &= !bit;
        }
        self.transition(p, before);
    }

    pub(super) fn set_outage(&mut self, p: u32, start: bool) {
        let before = self.online(p);
        let s = &mut self.peers[p as usize];
        s.outages = if start {
            s.outages.saturating_add(1)
        } else {
            s.outages.saturating_sub(1)
        };
        self.transition(p, before);
    }

    pub(super) fn flush_slots(&mut self, class: usize, to_us: u64) {
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
    pub(super) fn transition(&mut self, p: u32, was_online: bool) {
        let now_online = self.online(p);
        if now_online == was_online {
            return;
        }
        let class = self.world.peers[p as usize].class as usize;
        let slots = f64::from(self.world.classes[class].spec.slots);
        self.flush_slots(class, self.now_us);
        if now_online {
            self.online_slots[class] += slots;
            self.hood_start(p);
            return;
        }
        self.hood_stop(p);
        self.online_slots[class] -= slots;
        self.totals.departures += 1;
        let detect = us(self.scenario.sim.failure_detect_ms);
        let s = &mut self.peers[p as usize];
        s.down_since_us = self.now_us.max(1);
        let running = std::mem::take(&mut s.running);
        let queued: Vec<u32> = s.queue.drain(..).collect();
        for &call in &running {
            self.count_busy(class, self.calls[call as usize].slot_start_us);
        }
        for call in running.into_iter().chain(queued) {
            self.totals.peer_failures += 1;
            let attempt = self.calls[call as usize].attempts.saturating_sub(1);
            self.fail_attempt(call, attempt, ErrorKind::Unreachable, self.now_us + detect);
        }
    }

    /// Counts one slot of `class` busy from `start_us` until now.
    pub(super) fn count_busy(&mut self, class: usize, start_us: u64) {
        let end = self.now_us.min(self.end_us);
        Load::spread(
            &mut self.load.busy[class],
            self.load.bucket_us,
            start_us,
            end,
            1.0,
        );
    }
}
