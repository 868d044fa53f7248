//! On the executing peer: protocol's admission, the module fetch (provider chosen by
//! protocol's fetch session), compile, run, answer, and the queue behind it.

use super::*;

impl Engine<'_> {
    /// The node's admission (`kith_protocol::admission`): a free slot runs, a free
    /// queue place waits, a refusal goes back to the entry. Simulated peers are never
    /// shutting down, off hours (being offline models that), untrusting or capped in
    /// CPU share.
    pub(super) fn admit(&mut self, call: u32, p: u32, attempt: u8) {
        let class = &self.world.classes[self.world.peers[p as usize].class as usize].spec;
        let s = &mut self.peers[p as usize];
        let load = admission::Load {
            draining: false,
            offering: true,
            trusted: true,
            slots: class.slots as usize,
            queue: class.queue as usize,
            running: s.running.len(),
            queued: s.queue.len(),
            cpu_share_spent: false,
        };
        match admission::admit(&load) {
            Ok(Admit::Run) => self.start(call, p, attempt),
            Ok(Admit::Queue) => {
                s.queue.push_back(call);
                self.load_changed(p, false);
            }
            Err(refusal) => {
                self.totals.refused_busy += 1;
                let entry = self.calls[call as usize].entry;
                let t = self.now_us + self.one_way_us(p, entry, 64.0);
                self.fail_attempt(call, attempt, refusal.kind(), t);
            }
        }
    }

    /// Where a cold peer fetches from: the first peer protocol's fetch session asks
    /// (`kith_protocol::fetch`: connected claimants by penalty, then RTT) among the
    /// reachable peers it knows that hold the module, else the origin. `None` when
    /// neither is reachable.
    pub(super) fn provider(&self, p: u32, function: u16) -> Option<(Option<u32>, f64)> {
        let world = self.world;
        let hood: Vec<u32>;
        let view: &[u32] = match self.neighbour_ids(p) {
            Some(ids) => {
                hood = ids;
                &hood
            }
            None => &world.peers[p as usize].view,
        };
        let known: Vec<Known<u32>> = view
            .iter()
            .filter(|&&q| self.online(q) && self.warm(q, function) && self.reachable(p, q))
            .map(|&q| Known {
                peer: q,
                claims: true,
                penalty: self.penalty(p, q),
                rtt_ms: Some(world.rtt_ms(p, q)),
            })
            .collect();
        let id = world.functions[function as usize].id;
        if let fetch::Step::Ask { peer, .. } =
            fetch::Session::new(id, u64::MAX, None).next(p, &known)
        {
            return Some((Some(peer), world.rtt_ms(p, peer)));
        }
        let origin = world.origin.0;
        let region = world.peers[p as usize].region as usize;
        (self.region_outages[origin] == 0 && self.reachable_regions(region, origin))
            .then(|| (None, world.rtt_to_origin_ms(p)))
    }

    pub(super) fn start(&mut self, call: u32, p: u32, attempt: u8) {
        let world = self.world;
        let now = self.now_us;
        let fi = self.calls[call as usize].function;
        let f = &world.functions[fi as usize];
        let class = &world.classes[world.peers[p as usize].class as usize];
        let spec = &class.spec;
        let mut ready = now;
        let mut cold = false;
        let mut compile_ms = 0.0;
        let cached = self.peers[p as usize]
            .cache
            .iter_mut()
            .find(|c| c.function == fi);
        if let Some(c) = cached {
            c.last_us = now;
            if c.ready_us > now {
                ready = c.ready_us;
                cold = true;
            }
        } else {
            let Some((provider, rtt)) = self.provider(p, fi) else {
                // Nobody to fetch from: the peer answers with a fetch error.
                self.totals.peer_failures += 1;
                let entry = self.calls[call as usize].entry;
                let t = now + self.one_way_us(p, entry, 64.0);
                self.fail_attempt(call, attempt, ErrorKind::NotFound, t);
                return;
            };
            cold = true;
            let bytes = f.module_bytes as f64;
            let s = &mut self.peers[p as usize];
            s.flows_down.retain(|end| *end > now);
            let down = class.down_bytes_per_ms / (s.flows_down.len() + 1) as f64;
            let up = match provider {
                Some(q) => {
                    let qs = &mut self.peers[q as usize];
                    qs.flows_up.retain(|end| *end > now);
                    let qc = &world.classes[world.peers[q as usize].class as usize];
                    qc.up_bytes_per_ms / (qs.flows_up.len() + 1) as f64
                }
                None => {
                    self.origin_flows.retain(|end| *end > now);
                    let mbps = self
                        .scenario
                        .origin
                        .as_ref()
                        .map_or(1_000.0, |o| o.get_ref().up_mbps);
                    mbps * 125.0 / (self.origin_flows.len() + 1) as f64
                }
            };
            let fetch_ms = rtt + bytes / down.min(up);
            let fetch_end = now + us(fetch_ms);
            match provider {
                Some(q) => self.peers[q as usize].flows_up.push(fetch_end),
                None => self.origin_flows.push(fetch_end),
            }
            let sim = &self.scenario.sim;
            compile_ms = (sim.compile_base_ms + f.spec.module_kib * sim.compile_ms_per_kib)
                * sim.reference_cpu_score
                / spec.cpu_score;
            ready = fetch_end + us(compile_ms);
            self.totals.fetches += 1;
            self.totals.fetch_bytes += bytes;
            self.totals.network_joules += bytes * self.scenario.network.joules_per_byte;
            let s = &mut self.peers[p as usize];
            s.flows_down.push(fetch_end);
            s.cache.push(Cache {
                function: fi,
                ready_us: ready,
                last_us: now,
            });
            s.cache_bytes += f.module_bytes;
            // Evict least recently used modules beyond the store budget.
            while s.cache_bytes > class.store_bytes && s.cache.len() > 1 {
                let Some(lru) = s
                    .cache
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.function != fi)
                    .min_by_key(|(_, c)| (c.last_us, c.function))
                    .map(|(i, _)| i)
                else {
                    break;
                };
                let gone = s.cache.swap_remove(lru);
                s.cache_bytes -= world.functions[gone.function as usize].module_bytes;
            }
        }
        let exec_ms = f.spec.fuel / spec.cpu_score + self.placement.call_overhead_ms;
        let busy_ms = exec_ms + compile_ms;
        let pue = if (p as usize) >= world.population {
            self.scenario
                .baseline
                .as_ref()
                .map_or(1.0, |b| b.get_ref().pue)
        } else {
            1.0
        };
        self.totals.compute_joules +=
            busy_ms / 1000.0 * (spec.busy_w - spec.idle_w) / f64::from(spec.cores) * pue;
        self.totals.cost_usd += busy_ms / 3.6e6 * spec.usd_per_cpu_hour;
        let c = &mut self.calls[call as usize];
        c.cold |= cold;
        c.slot_start_us = now;
        self.peers[p as usize].running.push(call);
        self.load_changed(p, false);
        self.at(ready + us(exec_ms), Ev::Finish { call, attempt });
    }

    pub(super) fn finish(&mut self, call: u32, attempt: u8) {
        let c = &self.calls[call as usize];
        if c.attempts != attempt + 1 {
            return;
        }
        let (p, entry, fi, start) = (c.executor, c.entry, c.function, c.slot_start_us);
        let s = &mut self.peers[p as usize];
        let Some(i) = s.running.iter().position(|x| *x == call) else {
            return;
        };
        s.running.swap_remove(i);
        let class = self.world.peers[p as usize].class as usize;
        self.count_busy(class, start);
        // The node advertises at once when a function becomes warm.
        let id = self.world.functions[fi as usize].id;
        let newly_warm = !self.adverts[p as usize].cached.may_contain(&id);
        self.adverts[p as usize].cached.insert(&id);
        if entry == p {
            self.done(call);
        } else if !self.online(entry) || !self.reachable(entry, p) {
            self.end(call, Outcome::Lost);
        } else {
            let output = self.world.functions[fi as usize].spec.output_bytes;
            let t = self.now_us + self.one_way_us(p, entry, output);
            self.at(t, Ev::Done { call });
        }
        let slots = self.world.classes[class].spec.slots as usize;
        while self.peers[p as usize].running.len() < slots {
            let Some(next) = self.peers[p as usize].queue.pop_front() else {
                break;
            };
            let attempt = self.calls[next as usize].attempts.saturating_sub(1);
            self.start(next, p, attempt);
        }
        self.load_changed(p, newly_warm);
    }

    pub(super) fn done(&mut self, call: u32) {
        let entry = self.calls[call as usize].entry;
        if self.online(entry) {
            self.observe(call, kith_protocol::conduct::Outcome::Answered);
            let c = &mut self.calls[call as usize];
            let executor = c.executor;
            let refuted = c.tries.as_mut().map_or_else(Vec::new, |t| {
                let _ = t.on_answer(executor, Ok(()));
                t.refuted().to_vec()
            });
            for (liar, kind) in refuted {
                self.refuted(entry, liar, kind);
            }
            self.end(call, Outcome::Ok);
        } else {
            self.end(call, Outcome::Lost);
        }
    }
}
