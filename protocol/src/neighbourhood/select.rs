//! The neighbourhood's timers and its choice of neighbours.

use super::{
    Action, Candidate, Capacity, HYSTERESIS, HYSTERESIS_FLOOR_MS, Link, Message, Neighbourhood,
};

impl<P: Copy + Ord, A> Neighbourhood<P, A> {
    /// When [`Neighbourhood::handle_timeout`] next has work (ms): the next heartbeat,
    /// a coalesced delta falling due, or the next housekeeping tick. O(1).
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut t = self.next_heartbeat_ms.min(self.next_tick_ms);
        if self.dirty.is_some() {
            t = t.min(self.delta_due_ms());
        }
        Some(t)
    }

    /// Does what is due at `now_ms`: heartbeats and coalesced deltas; and on each
    /// [`super::Config::tick_ms`] tick, expiry of silent neighbours, lapsed subscribers and
    /// unanswered requests, lease renewals, peer exchange, lookups, the random links'
    /// refresh, and a new choice of neighbours.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let c = self.config;
        if now_ms >= self.next_heartbeat_ms {
            let full = self.dirty.take().unwrap_or(false) || now_ms >= self.next_full_ms;
            self.send_adverts(now_ms, full);
        }
        self.flush_delta(now_ms);
        if now_ms < self.next_tick_ms {
            return;
        }
        self.next_tick_ms = now_ms + c.tick_ms.max(1);
        let before = self.neighbours.len();
        let mut gone = Vec::new();
        self.neighbours.retain(|n| {
            let keep = now_ms < n.heard_ms + c.expire_ms;
            if !keep {
                gone.push(n.peer);
            }
            keep
        });
        self.stats.expired += (before - self.neighbours.len()) as u64;
        for p in gone {
            self.push(Action::Send(p, Message::Unsubscribe));
        }
        self.subscribers.retain(|s| now_ms < s.until_ms);
        let waiting = self.pending.len();
        self.pending.retain(|p| now_ms < p.1 + c.answer_timeout_ms);
        self.reselect |= self.pending.len() != waiting;
        let mut failed = Vec::new();
        self.probing.retain(|p| {
            let keep = now_ms < p.1 + c.answer_timeout_ms;
            if !keep {
                failed.push(p.0);
            }
            keep
        });
        self.candidates.retain(|x| !failed.contains(&x.peer));
        self.reselect |= !failed.is_empty() || before != self.neighbours.len();
        let mut renew = Vec::new();
        for n in &mut self.neighbours {
            if now_ms >= n.renewed_ms + c.lease_ms / 2 {
                n.renewed_ms = now_ms;
                renew.push(n.peer);
            }
        }
        for p in renew {
            self.push(Action::Send(p, Message::Subscribe));
        }
        if now_ms >= self.next_exchange_ms {
            let every = if self.improved {
                c.exchange_fast_ms
            } else {
                c.exchange_ms
            };
            self.improved = false;
            self.next_exchange_ms = now_ms + every.max(1);
            if self.neighbours.is_empty() {
                self.push(Action::Lookup);
            } else {
                let near = if self.random_below(4) < 3 {
                    self.nearest(c.near)
                } else {
                    self.neighbours.iter().map(|n| n.peer).collect()
                };
                let p = near[self.random_below(near.len() as u64) as usize];
                self.push(Action::Send(p, Message::AskPeers));
            }
        }
        if self.short_of_candidates() && now_ms >= self.next_lookup_ms {
            self.next_lookup_ms = now_ms + c.lookup_ms.max(1);
            self.push(Action::Lookup);
        }
        if now_ms >= self.next_random_refresh_ms {
            self.next_random_refresh_ms = now_ms + c.random_refresh_ms.max(1);
            let random: Vec<usize> = (0..self.neighbours.len())
                .filter(|&i| self.neighbours[i].link == Link::Random)
                .collect();
            if random.len() >= c.random && !random.is_empty() {
                let i = random[self.random_below(random.len() as u64) as usize];
                let n = self.neighbours.swap_remove(i);
                self.push(Action::Send(n.peer, Message::Unsubscribe));
                self.reselect = true;
            }
            self.push(Action::Lookup);
        }
        self.drop_idle_warm(now_ms);
        self.select(now_ms);
    }

    pub(super) fn delta_due_ms(&self) -> u64 {
        self.last_send_ms
            .map_or(0, |t| t + self.config.min_delta_ms)
    }

    pub(super) fn flush_delta(&mut self, now_ms: u64) {
        if let Some(full) = self.dirty
            && now_ms >= self.delta_due_ms()
        {
            self.dirty = None;
            self.send_adverts(now_ms, full);
        }
    }

    /// Sends the advert to every subscriber; any send counts as the heartbeat.
    fn send_adverts(&mut self, now_ms: u64, full: bool) {
        self.last_send_ms = Some(now_ms);
        self.next_heartbeat_ms = now_ms + self.config.heartbeat_ms.max(1);
        if full {
            self.next_full_ms = now_ms + self.config.full_every_ms.max(1);
        }
        for i in 0..self.subscribers.len() {
            let p = self.subscribers[i].peer;
            self.push(Action::Send(p, Message::Advert { full }));
        }
    }

    fn short_of_candidates(&self) -> bool {
        self.neighbours.len() + self.candidates.len() < self.config.max_neighbours()
    }

    /// Whether a new neighbour fills a random slot.
    pub(super) fn wants_random(&self) -> bool {
        let random = self.linked(Link::Random);
        let asked = self.pending.iter().filter(|p| p.2 == Link::Random).count();
        let by_rtt = self.linked(Link::Rtt);
        random + asked < self.config.random && by_rtt >= self.config.near
    }

    /// A peer to consider, with its capacity if someone said what it is.
    pub(super) fn add_candidate(&mut self, now_ms: u64, peer: P, capacity: Option<Capacity>) {
        if peer == self.me || self.neighbours.iter().any(|n| n.peer == peer) {
            return;
        }
        if let Some(c) = self.candidates.iter_mut().find(|c| c.peer == peer) {
            // Hearsay fills a gap; it never replaces what is already known.
            if c.capacity.is_none() && capacity.is_some() {
                c.capacity = capacity;
                self.reselect = true;
            }
            return;
        }
        if self.candidates.len() >= self.config.max_candidates {
            // The oldest unmeasured one goes, else the farthest measured one (never
            // one being probed or subscribed to).
            let busy = |p: &P| {
                self.pending.iter().any(|x| x.0 == *p) || self.probing.iter().any(|x| x.0 == *p)
            };
            let victim = self
                .candidates
                .iter()
                .enumerate()
                .filter(|(_, c)| c.rtt_ms.is_none() && !busy(&c.peer))
                .min_by_key(|(_, c)| c.learned_ms)
                .or_else(|| {
                    self.candidates
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| !busy(&c.peer))
                        .max_by(|a, b| {
                            let ra = a.1.rtt_ms.unwrap_or(f64::INFINITY);
                            let rb = b.1.rtt_ms.unwrap_or(f64::INFINITY);
                            ra.total_cmp(&rb)
                        })
                })
                .map(|(i, _)| i);
            let Some(i) = victim else { return };
            self.candidates.swap_remove(i);
            self.stats.evicted_candidates += 1;
        }
        self.reselect = true;
        self.candidates.push(Candidate {
            peer,
            rtt_ms: None,
            capacity,
            not_before_ms: 0,
            learned_ms: now_ms,
        });
    }

    /// Probes unmeasured candidates, subscribes to the ones the rules want, and
    /// drops neighbours beyond the cap that the rules no longer want.
    pub(super) fn select(&mut self, now_ms: u64) {
        let c = self.config;
        // Probe, oldest candidates first.
        while self.probing.len() < c.max_probes {
            let next = self
                .candidates
                .iter()
                .filter(|x| x.rtt_ms.is_none())
                .filter(|x| !self.probing.iter().any(|p| p.0 == x.peer))
                .min_by_key(|x| (x.learned_ms, x.peer))
                .map(|x| x.peer);
            let Some(p) = next else { break };
            self.probing.push((p, now_ms));
            self.push(Action::Probe(p));
        }
        self.link_wanted(now_ms);
        // Choosing again only matters when the known peers, their RTTs or the
        // requests in flight changed (or a refusal's back-off may have ended).
        if !self.reselect && now_ms < self.reselect_at_ms {
            return;
        }
        self.reselect = false;
        self.reselect_at_ms = self
            .candidates
            .iter()
            .map(|x| x.not_before_ms)
            .filter(|&t| t > now_ms)
            .min()
            .unwrap_or(u64::MAX);
        let wanted = self.wanted(now_ms);
        // Subscribe to wanted candidates, nearest first.
        for (rtt, p) in &wanted {
            if self.pending.len() >= c.max_pending {
                break;
            }
            if rtt.is_finite()
                && !self.neighbours.iter().any(|n| n.peer == *p)
                && !self.pending.iter().any(|x| x.0 == *p)
            {
                self.pending.push((*p, now_ms, Link::Rtt));
                self.push(Action::Send(*p, Message::Subscribe));
            }
        }
        // Random links, from candidates the rules did not want by RTT.
        if self.wants_random() && self.pending.len() < c.max_pending {
            let options: Vec<P> = self
                .candidates
                .iter()
                .filter(|x| x.rtt_ms.is_some() && x.not_before_ms <= now_ms)
                .map(|x| x.peer)
                .filter(|p| !self.pending.iter().any(|x| x.0 == *p))
                .collect();
            if !options.is_empty() {
                let p = options[self.random_below(options.len() as u64) as usize];
                self.pending.push((p, now_ms, Link::Random));
                self.push(Action::Send(p, Message::Subscribe));
            }
        }
        // Beyond the cap, the unwanted non-random neighbours go, farthest first.
        let max = c.max_neighbours() - c.warm;
        while self.neighbours.len() - self.linked(Link::Warm) > max {
            let victim = self
                .neighbours
                .iter()
                .enumerate()
                .filter(|(_, n)| n.link == Link::Rtt && !wanted.iter().any(|w| w.1 == n.peer))
                .max_by(|a, b| a.1.rtt_ms.total_cmp(&b.1.rtt_ms))
                .map(|(i, _)| i);
            let Some(i) = victim else { break };
            let n = self.neighbours.swap_remove(i);
            self.push(Action::Send(n.peer, Message::Unsubscribe));
        }
    }

    /// The peers the rules want by RTT (the nearest, then the nearest by RTT plus a
    /// reference call's run time, then per ring), as (rtt, peer), in that order.
    /// Neighbours, and peers that subscribe to this node, count nearer than they
    /// measured (see [`sticky`]; a neighbour that also subscribes twice so), so links
    /// settle and become mutual.
    fn wanted(&self, now_ms: u64) -> Vec<(f64, P)> {
        let c = &self.config;
        // Sorted once, searched per peer: this runs on every RTT measured.
        let mut subscribers: Vec<P> = self.subscribers.iter().map(|s| s.peer).collect();
        subscribers.sort_unstable();
        let mut other_links: Vec<P> = self
            .neighbours
            .iter()
            .filter(|n| n.link != Link::Rtt)
            .map(|n| n.peer)
            .collect();
        other_links.sort_unstable();
        let subscriber = |p: &P| subscribers.binary_search(p).is_ok();
        let mut known: Vec<Known<P>> = self
            .neighbours
            .iter()
            .filter(|n| n.link == Link::Rtt)
            .map(|n| {
                let key = sticky(n.rtt_ms);
                let key = if subscriber(&n.peer) {
                    sticky(key)
                } else {
                    key
                };
                Known {
                    key,
                    rtt: n.rtt_ms,
                    peer: n.peer,
                    capacity: n.capacity,
                }
            })
            .chain(
                self.candidates
                    .iter()
                    .filter(|x| x.not_before_ms <= now_ms)
                    .filter_map(|x| {
                        let r = x.rtt_ms?;
                        let key = if subscriber(&x.peer) { sticky(r) } else { r };
                        Some(Known {
                            key,
                            rtt: r,
                            peer: x.peer,
                            capacity: x.capacity,
                        })
                    }),
            )
            .filter(|k| other_links.binary_search(&k.peer).is_err())
            .collect();
        known.sort_by(|a, b| a.key.total_cmp(&b.key).then(a.peer.cmp(&b.peer)));
        let mut out: Vec<(f64, P)> = Vec::with_capacity(c.near + c.compute + c.rings * c.per_ring);
        let near = known.len().min(c.near);
        out.extend(known[..near].iter().map(|k| (k.rtt, k.peer)));
        let rest = &known[near..];
        // The compute slots: lowest RTT plus the reference call's run time.
        let mut by_compute: Vec<(f64, usize)> = rest
            .iter()
            .enumerate()
            .filter_map(|(i, k)| Some((k.key + c.compute_ms(k.capacity?)?, i)))
            .collect();
        by_compute.sort_by(|a, b| {
            a.0.total_cmp(&b.0)
                .then(rest[a.1].peer.cmp(&rest[b.1].peer))
        });
        let mut taken = vec![false; rest.len()];
        for &(_, i) in by_compute.iter().take(c.compute) {
            taken[i] = true;
            out.push((rest[i].rtt, rest[i].peer));
        }
        let mut per_ring = vec![0usize; c.rings.max(1)];
        for (k, _) in rest.iter().zip(&taken).filter(|(_, t)| !**t) {
            let r = c.ring(k.rtt);
            if per_ring[r] < c.per_ring {
                per_ring[r] += 1;
                out.push((k.rtt, k.peer));
            }
        }
        out
    }
}

/// A peer [`Neighbourhood::wanted`] weighs: its sort key, measured RTT, and capacity.
struct Known<P> {
    key: f64,
    rtt: f64,
    peer: P,
    capacity: Option<Capacity>,
}

/// The RTT a peer already linked to counts as when choosing: [`HYSTERESIS`] of its
/// measurement and at least [`HYSTERESIS_FLOOR_MS`] less (it may go below zero; only
/// the order matters).
fn sticky(rtt_ms: f64) -> f64 {
    (rtt_ms * HYSTERESIS).min(rtt_ms - HYSTERESIS_FLOOR_MS)
}
