//! The neighbourhood's constants.

/// The neighbourhood's constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// How many of the nearest peers are neighbours.
    pub near: usize,
    /// How many peers, after the nearest, are chosen by RTT plus the time a reference
    /// call would run there (compute links).
    pub compute: usize,
    /// The reference call's fuel.
    pub compute_fuel: u64,
    /// The reference call's memory, bytes: peers offering less are not compute links.
    pub compute_memory_bytes: u64,
    /// RTT of the first ring's upper edge, ms; each next ring doubles it.
    pub ring_base_ms: f64,
    /// Number of rings (the last one is open-ended).
    pub rings: usize,
    /// Neighbours per ring beyond the nearest.
    pub per_ring: usize,
    /// Random links.
    pub random: usize,
    /// Most subscribers accepted.
    pub max_subscribers: usize,
    /// Most candidates held.
    pub max_candidates: usize,
    /// Most subscriptions in flight.
    pub max_pending: usize,
    /// Most RTT probes in flight.
    pub max_probes: usize,
    /// Housekeeping (expiry, renewals, exchange, a new choice) this often, ms.
    pub tick_ms: u64,
    /// The advert's load to every subscriber this often, ms, changed or not (so what a
    /// neighbour holds is never older than this).
    pub heartbeat_ms: u64,
    /// The whole advert to every subscriber this often, ms.
    pub full_every_ms: u64,
    /// Least time between two advert sends on load changes, ms.
    pub min_delta_ms: u64,
    /// A neighbour not heard from for this long is dropped, ms.
    pub expire_ms: u64,
    /// A subscription lasts this long unless renewed, ms.
    pub lease_ms: u64,
    /// A subscribe or probe not answered in this time fails, ms.
    pub answer_timeout_ms: u64,
    /// A candidate that refused is not asked again for this long, ms.
    pub refused_backoff_ms: u64,
    /// Ask a neighbour for its neighbours this often, ms, once the neighbourhood has
    /// settled.
    pub exchange_ms: u64,
    /// … and this often while the last exchange still brought a nearer neighbour.
    pub exchange_fast_ms: u64,
    /// While candidates are short, ask the driver for a lookup this often, ms.
    pub lookup_ms: u64,
    /// Replace one random link this often, ms.
    pub random_refresh_ms: u64,
    /// Warm links: peers found to have a function warm that placement asked for
    /// ([`super::Neighbourhood::link_warm`]).
    pub warm: usize,
    /// A warm link placement has not chosen for this long is dropped, ms.
    pub warm_idle_ms: u64,
    /// Most peers in one [`super::Message::Peers`].
    pub share: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            near: 12,
            compute: 4,
            // A thumbnail-sized call: 40 M fuel is 10 ms on a laptop, 33 ms on a Pi.
            compute_fuel: 40_000_000,
            compute_memory_bytes: 64 << 20,
            ring_base_ms: 4.0,
            rings: 6,
            per_ring: 2,
            random: 4,
            max_subscribers: 48,
            max_candidates: 64,
            max_pending: 4,
            max_probes: 4,
            tick_ms: 1_000,
            heartbeat_ms: 2_500,
            full_every_ms: 60_000,
            min_delta_ms: 1_000,
            expire_ms: 25_000,
            lease_ms: 60_000,
            answer_timeout_ms: 5_000,
            refused_backoff_ms: 120_000,
            exchange_ms: 20_000,
            exchange_fast_ms: 2_000,
            lookup_ms: 5_000,
            random_refresh_ms: 120_000,
            warm: 4,
            warm_idle_ms: 60_000,
            share: 16,
        }
    }
}

impl Config {
    /// The most neighbours a node holds.
    pub fn max_neighbours(&self) -> usize {
        self.near + self.compute + self.rings * self.per_ring + self.random + self.warm
    }

    /// How long the reference call runs on a peer of `capacity`, ms; `None` if the
    /// peer offers too little memory for it.
    pub fn compute_ms(&self, capacity: super::Capacity) -> Option<f64> {
        (capacity.memory_bytes >= self.compute_memory_bytes)
            .then(|| self.compute_fuel as f64 / f64::from(capacity.cpu_score.max(1)))
    }

    /// The ring an RTT falls in.
    pub fn ring(&self, rtt_ms: f64) -> usize {
        let base = self.ring_base_ms.max(f64::MIN_POSITIVE);
        if rtt_ms.is_nan() || rtt_ms < base {
            return 0;
        }
        let r = (rtt_ms / base).log2().floor() as usize + 1;
        r.min(self.rings.saturating_sub(1))
    }
}
