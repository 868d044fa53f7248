//! Warm links: a few neighbours taken for a function placement wants, beyond the ones
//! chosen by RTT.
//!
//! When no neighbour has a call's function warm, the node asks its nearest neighbours
//! who near them has it (`crate::warm`) and asks the neighbourhood to link to one or
//! two of the peers named. A warm link is a subscription like any other (the peer's
//! adverts then reach placement, with its load and RTT), held in
//! [`super::Config::warm`] slots of its own: when they are full the least recently
//! used one goes, and one placement has not chosen for
//! [`super::Config::warm_idle_ms`] is dropped.

use super::{Action, Link, Message, Neighbourhood};

impl<P: Copy + Ord, A> Neighbourhood<P, A> {
    /// How many neighbours are linked for `link`.
    pub(super) fn linked(&self, link: Link) -> usize {
        self.neighbours.iter().filter(|n| n.link == link).count()
    }

    /// Placement wants `peer` as a neighbour: it has a function warm that no
    /// neighbour has. It is probed (if its RTT is not known) and then subscribed to as
    /// a warm link. Ignored for a peer already a neighbour (it is only marked used).
    pub fn link_warm(&mut self, now_ms: u64, peer: P) {
        if peer == self.me || self.config.warm == 0 {
            return;
        }
        if self.is_neighbour(peer) {
            self.used(now_ms, peer);
            return;
        }
        if !self.warm_wanted.contains(&peer) {
            if self.warm_wanted.len() >= self.config.warm {
                self.warm_wanted.remove(0);
            }
            self.warm_wanted.push(peer);
        }
        self.add_candidate(now_ms, peer, None);
        self.select(now_ms);
    }

    /// Placement chose `peer`: a warm link to it stays.
    pub fn used(&mut self, now_ms: u64, peer: P) {
        if let Some(n) = self.neighbours.iter_mut().find(|n| n.peer == peer) {
            n.used_ms = now_ms;
        }
    }

    /// Subscribes to wanted warm peers whose RTT is known, making room by dropping
    /// the least recently used warm link.
    pub(super) fn link_wanted(&mut self, now_ms: u64) {
        let mut i = 0;
        while i < self.warm_wanted.len() {
            let p = self.warm_wanted[i];
            if self.is_neighbour(p) || self.pending.iter().any(|x| x.0 == p) {
                self.warm_wanted.swap_remove(i);
                continue;
            }
            let measured = self
                .candidates
                .iter()
                .any(|c| c.peer == p && c.rtt_ms.is_some());
            let in_candidates = self.candidates.iter().any(|c| c.peer == p);
            if !in_candidates {
                // Evicted, or found unreachable: given up.
                self.warm_wanted.swap_remove(i);
                continue;
            }
            if !measured || self.pending.len() >= self.config.max_pending {
                i += 1;
                continue;
            }
            let asked = self.pending.iter().filter(|x| x.2 == Link::Warm).count();
            if self.linked(Link::Warm) + asked >= self.config.warm {
                let lru = self
                    .neighbours
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| n.link == Link::Warm)
                    .min_by_key(|(_, n)| n.used_ms)
                    .map(|(j, _)| j);
                let Some(j) = lru else {
                    i += 1;
                    continue; // the slots are all being asked for
                };
                let n = self.neighbours.swap_remove(j);
                self.push(Action::Send(n.peer, Message::Unsubscribe));
            }
            self.warm_wanted.swap_remove(i);
            self.pending.push((p, now_ms, Link::Warm));
            self.push(Action::Send(p, Message::Subscribe));
        }
    }

    /// Drops warm links placement has not chosen for a while.
    pub(super) fn drop_idle_warm(&mut self, now_ms: u64) {
        let idle = self.config.warm_idle_ms;
        let mut gone = Vec::new();
        self.neighbours.retain(|n| {
            let keep = n.link != Link::Warm || now_ms < n.used_ms.saturating_add(idle);
            if !keep {
                gone.push(n.peer);
            }
            keep
        });
        for p in gone {
            self.push(Action::Send(p, Message::Unsubscribe));
        }
    }
}
