//! Arrivals and placement: when calls come, which function, which entry, and the
//! order the strategy tries candidates in (for kith: protocol's placement and call
//! attempts), plus the oracle that measures stretch.

use super::*;

impl Engine<'_> {
    pub(super) fn next_arrival(&mut self, w: usize, from_us: u64) -> Option<u64> {
        let end = self.end_us;
        let ws = &mut self.workloads[w];
        let max = ws.rate * (1.0 + ws.amplitude);
        if max <= 0.0 {
            return None;
        }
        let mut t = from_us.max(self.warmup_us);
        loop {
            t += us(ws.rng.exp(1000.0 / max)).max(1);
            if t >= end {
                return None;
            }
            let hour = (t as f64 / 3.6e9 + ws.utc_offset_h + 48.0) % 24.0;
            let phase = std::f64::consts::TAU * (hour - ws.peak_h) / 24.0;
            let rate = ws.rate * (1.0 + ws.amplitude * phase.cos());
            if ws.rng.unit() * max < rate {
                return Some(t);
            }
        }
    }

    pub(super) fn arrival(&mut self, w: usize) {
        if let Some(t) = self.next_arrival(w, self.now_us) {
            self.at(t, Ev::Arrival { workload: w as u32 });
        }
        let ws = &mut self.workloads[w];
        let total: f64 = ws.functions.iter().map(|f| f.1).sum();
        let mut pick = ws.rng.unit() * total;
        let mut callee = ws.functions.last().map_or(Callee::Function(0), |f| f.0);
        for &(f, weight) in &ws.functions {
            if pick < weight {
                callee = f;
                break;
            }
            pick -= weight;
        }
        let function = match callee {
            Callee::Function(f) => f,
            Callee::Alias(a) => {
                // The node's rule: a random 16-byte routing key per call, resolved
                // with protocol's split resolution.
                let key: [u8; 16] = std::array::from_fn(|_| ws.rng.below(256) as u8);
                let state = &self.aliases[a];
                let id = alias::pick(&state.alias, &state.targets, &key);
                self.world
                    .functions
                    .iter()
                    .position(|f| Some(f.id) == id)
                    .map_or(0, |f| f as u16)
            }
        };
        let region = ws.region;
        let members = &self.world.by_region[region];
        let mut entry = NONE;
        for _ in 0..16 {
            if members.is_empty() {
                break;
            }
            let q = members[self.workloads[w].rng.below(members.len() as u64) as usize];
            if self.online(q) {
                entry = q;
                break;
            }
        }
        let id = self.calls.len() as u32;
        self.calls.push(Call {
            t0_us: self.now_us,
            done_us: 0,
            entry,
            executor: NONE,
            function,
            region: region as u16,
            attempts: 0,
            cold: false,
            outcome: Outcome::Pending,
            rtt_ms: f32::NAN,
            stretch: f32::NAN,
            advert_age_ms: f32::NAN,
            advert_stale: false,
            tries: None,
            failed_with: ErrorKind::Unreachable,
            slot_start_us: 0,
            attempt_us: 0,
        });
        if entry == NONE {
            self.end(id, Outcome::NoEntry);
            return;
        }
        // No neighbour has it warm: ask who near here has, and maybe wait for them.
        if self.needs_warm(entry, function) && self.want_warm(entry, function, id) {
            return;
        }
        self.start_call(id);
    }

    /// Places call `id` and makes its first attempt (at arrival, or when the warm
    /// index releases it).
    pub(super) fn start_call(&mut self, id: u32) {
        let Some(c) = self.calls.get(id as usize) else {
            return;
        };
        let (entry, function) = (c.entry, c.function);
        if c.outcome != Outcome::Pending || c.tries.is_some() {
            return;
        }
        if !self.online(entry) {
            self.end(id, Outcome::Lost);
            return;
        }
        let tries = self.place(entry, function);
        let Some(first) = tries.order().next() else {
            self.end(id, Outcome::NoCapablePeer);
            return;
        };
        self.hood_used(entry, first);
        if first != entry
            && let Some((age, stale)) = self.advert_age(entry, function, first)
        {
            self.calls[id as usize].advert_age_ms = age;
            self.calls[id as usize].advert_stale = stale;
        }
        if (id as usize).is_multiple_of(self.scenario.sim.oracle_every as usize) && first != entry {
            let best = self.oracle(entry, function);
            if best.is_finite() && best > 0.0 {
                let chosen = self.world.rtt_ms(entry, first);
                self.calls[id as usize].stretch = (chosen / best) as f32;
            }
        }
        self.calls[id as usize].tries = Some(Box::new(tries));
        self.attempt(id);
    }

    /// How old the advert `e` chose `q` on was, ms, and whether its load was stale
    /// (neighbourhood model only; a neighbour's, or one a warm answer carried).
    fn advert_age(&self, e: u32, function: u16, q: u32) -> Option<(f32, bool)> {
        let h = self.control.as_ref()?.hoods.get(e as usize)?.as_deref()?;
        let Some(n) = h.neighbours().iter().find(|n| n.peer == q) else {
            let s = self.second_hand(e, function, q)?;
            return Some(self.second_hand_age(s, q));
        };
        let (_, heard_ms) = n.advert()?;
        let age = (self.now_us / 1000).saturating_sub(heard_ms) as f32;
        Some((age, !self.held_is_current(e, q)?))
    }

    pub(super) fn protocol_call(&self, function: u16) -> placement::Call<'static> {
        let f = &self.world.functions[function as usize];
        placement::Call {
            function: f.id,
            memory_bytes: f.memory_bytes,
            expected_fuel: f.spec.fuel as u64,
            module_bytes: f.module_bytes,
            state_docs: &[],
            state_bytes: 0,
        }
    }

    pub(super) fn warm(&self, p: u32, function: u16) -> bool {
        self.peers[p as usize]
            .cache
            .iter()
            .any(|c| c.function == function && c.ready_us <= self.now_us)
    }

    /// Refreshes `q`'s published advert if its advert period has passed (adverts are
    /// periodic: between them, others see the load as it was).
    pub(super) fn refresh_advert(&mut self, q: u32) {
        let interval = us(self.scenario.sim.advert_interval_s * 1000.0).max(1);
        let s = &mut self.peers[q as usize];
        if self.now_us < s.next_advert_us || !s.online() {
            return;
        }
        let phase = u64::from(q).wrapping_mul(7_919) % interval;
        let k = (self.now_us + interval - phase) / interval;
        s.next_advert_us = k * interval + phase;
        if self.world.peers[q as usize].lie.is_some() {
            return; // it claims to be idle, always
        }
        let a = &mut self.adverts[q as usize];
        a.running = s.running.len().min(usize::from(a.max_concurrent)) as u16;
        a.queued = s.queue.len().min(usize::from(a.max_queued)) as u16;
    }

    /// The entry's own advert, current to the microsecond.
    pub(super) fn local_advert(&self, e: u32) -> Advert {
        let s = &self.peers[e as usize];
        let class = &self.world.classes[self.world.peers[e as usize].class as usize].spec;
        self.world.advert(
            e,
            s.running.len().min(class.slots as usize) as u16,
            s.queue.len().min(class.queue as usize) as u16,
            Cached::default(),
        )
    }

    /// The call's attempts: protocol's attempt rules over the strategy's order.
    pub(super) fn place(&mut self, e: u32, function: u16) -> Attempts<u32> {
        let config = attempt::Config {
            max_attempts: self.scenario.sim.max_attempts as usize,
            ..attempt::Config::default()
        };
        let timeout_ms = 0;
        let call = self.protocol_call(function);
        let max = config.max_attempts;
        let world = self.world;
        if self.strategy == Strategy::Cloud {
            let mut servers: Vec<(bool, usize, u32)> = (world.population..world.peers.len())
                .map(|q| {
                    let s = &self.peers[q];
                    (!s.online(), s.running.len() + s.queue.len(), q as u32)
                })
                .collect();
            let k = max.min(servers.len());
            if k < servers.len() {
                servers.select_nth_unstable(k);
                servers.truncate(k);
            }
            servers.sort_unstable();
            let order = servers.into_iter().map(|s| (s.2, false));
            return Attempts::from_order(order, &config, timeout_ms);
        }
        // What the entry knows: its neighbourhood's adverts (neighbourhood model), or
        // its fixed view with the adverts as last published (static model).
        // Beyond the neighbours: peers a warm answer named, on the adverts it carried.
        let hood = self.control.is_some().then(|| {
            let mut h = self.hood_view(e, function);
            let id = world.functions[function as usize].id;
            if self.strategy == Strategy::Kith && !h.iter().any(|x| x.1.cached.may_contain(&id)) {
                let more = self.second_hand_view(e, function, &h);
                h.extend(more);
            }
            h
        });
        let view: Vec<u32> = match &hood {
            Some(h) => h.iter().map(|x| x.0).collect(),
            None => world.peers[e as usize]
                .view
                .iter()
                .copied()
                .filter(|&q| self.visible(e, q))
                .collect(),
        };
        if hood.is_none() {
            for &q in &view {
                self.refresh_advert(q);
            }
        }
        let local = self.local_advert(e);
        let adverts = &self.adverts;
        let advert_of = |i: usize, q: u32| match &hood {
            Some(h) => &h[i].1,
            None => &adverts[q as usize],
        };
        let rtt_of = |i: usize, q: u32| match &hood {
            Some(h) => Some(h[i].2),
            None => (!self.use_coordinates).then(|| world.rtt_ms(e, q)),
        };
        match self.strategy {
            Strategy::Kith => {
                let views: Vec<PeerView<'_, u32>> = std::iter::once(PeerView {
                    peer: e,
                    advert: &local,
                    measured_rtt_ms: Some(0.0),
                    local: true,
                    known_warm: Some(self.warm(e, function)),
                    known_state: None,
                    penalty: 0.0,
                    conduct_ms: 0.0,
                })
                .chain(view.iter().enumerate().map(|(i, &q)| PeerView {
                    peer: q,
                    advert: advert_of(i, q),
                    measured_rtt_ms: rtt_of(i, q),
                    local: false,
                    known_warm: None,
                    known_state: None,
                    penalty: self.penalty(e, q),
                    conduct_ms: self.conduct_ms(e, q),
                }))
                .collect();
                let ranked = placement::rank(&call, views.iter().copied(), &local, &self.placement);
                // Fallbacks matter only when the capable candidates cannot fill the
                // attempts (as on the node).
                let fallbacks = if ranked.len() < config.max_attempts {
                    placement::fallbacks(&call, views, &local)
                } else {
                    Vec::new()
                };
                Attempts::new(&ranked, &fallbacks, &config, timeout_ms)
                    .confirm_faults(self.scenario.sim.learning)
            }
            Strategy::Random | Strategy::Nearest => {
                let mut capable: Vec<u32> = std::iter::once(e)
                    .filter(|_| placement::capable(&call, &local).is_ok())
                    .chain(view.iter().enumerate().filter_map(|(i, &q)| {
                        placement::capable(&call, advert_of(i, q))
                            .is_ok()
                            .then_some(q)
                    }))
                    .collect();
                if self.strategy == Strategy::Random {
                    let rng = &mut self.choice[e as usize];
                    for i in (1..capable.len()).rev() {
                        let j = rng.below(i as u64 + 1) as usize;
                        capable.swap(i, j);
                    }
                } else {
                    let pe = world.peers[e as usize].pos;
                    let mut keyed: Vec<(f64, u32)> = capable
                        .iter()
                        .map(|&q| {
                            (
                                crate::geo::distance_km(&pe, &world.peers[q as usize].pos),
                                q,
                            )
                        })
                        .collect();
                    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    capable = keyed.into_iter().map(|k| k.1).collect();
                }
                let order = capable.into_iter().map(|q| (q, q == e));
                Attempts::from_order(order, &config, timeout_ms)
            }
            Strategy::Cloud => Attempts::from_order([], &config, timeout_ms),
        }
    }

    /// The RTT from `e` to the nearest peer (other than `e`) able to take the call
    /// right now, from the simulator's complete knowledge.
    pub(super) fn oracle(&self, e: u32, function: u16) -> f64 {
        let world = self.world;
        let need = world.functions[function as usize].memory_bytes;
        let pe = &world.peers[e as usize];
        let access_e = world.access_ms(e);
        let min_access = world
            .classes
            .iter()
            .map(|c| c.spec.access_ms)
            .fold(f64::INFINITY, f64::min);
        let mut order: Vec<(f64, usize)> = (0..world.by_region.len())
            .map(|r| {
                let spec = self.scenario.regions[r].get_ref();
                let lb = world.latency.lower_bound_ms(
                    (pe.region as usize, &pe.pos, access_e),
                    (
                        r,
                        &crate::geo::point(spec.lat, spec.lon),
                        spec.radius_km,
                        min_access,
                    ),
                );
                (lb, r)
            })
            .collect();
        order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut best = f64::INFINITY;
        for (lb, r) in order {
            if lb >= best {
                break;
            }
            for &q in &world.by_region[r] {
                if q == e {
                    continue;
                }
                let s = &self.peers[q as usize];
                let class = &world.classes[world.peers[q as usize].class as usize];
                let full = s.running.len() >= class.spec.slots as usize
                    && s.queue.len() >= class.spec.queue as usize;
                if s.online() && !full && class.memory_bytes >= need && self.reachable(e, q) {
                    best = best.min(world.rtt_ms(e, q));
                }
            }
        }
        best
    }
}
