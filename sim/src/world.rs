//! The simulated world: peers with positions, classes, known peers and network
//! coordinates, built deterministically from a scenario and a seed.

use kith_protocol::FunctionId;
use kith_protocol::capacity::{Advert, Cached, DeviceClass, backend};
use kith_protocol::vivaldi::{self, Coord};

use crate::geo::{self, Latency, Point};
use crate::rng::{Rng, Stream};
use crate::scenario::{ClassSpec, FunctionSpec, Lie, Scenario};

/// A resolved device class.
#[derive(Debug, Clone)]
pub struct Class {
    /// Its spec.
    pub spec: ClassSpec,
    /// Memory per call, bytes.
    pub memory_bytes: u64,
    /// Store budget, bytes.
    pub store_bytes: u64,
    /// Uplink, bytes per ms.
    pub up_bytes_per_ms: f64,
    /// Downlink, bytes per ms.
    pub down_bytes_per_ms: f64,
}

/// A resolved function.
#[derive(Debug, Clone)]
pub struct Function {
    /// Its spec.
    pub spec: FunctionSpec,
    /// A stand-in content id (blake3 of the name), so cache filters behave as real.
    pub id: FunctionId,
    /// Module size, bytes.
    pub module_bytes: u64,
    /// Memory asked for, bytes.
    pub memory_bytes: u64,
}

/// One device. Kept small: a million of these must fit in a few GiB.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Index into [`World::classes`].
    pub class: u16,
    /// Index into the scenario's regions.
    pub region: u16,
    /// Where it is.
    pub pos: Point,
    /// The peers it is connected to (population indices).
    pub view: Box<[u32]>,
    /// How it lies, if it does (`[[failures.liar]]`).
    pub lie: Option<Lie>,
}

/// The static part of a simulated world; the engine keeps the changing state.
#[derive(Debug, Clone)]
pub struct World {
    /// Device classes.
    pub classes: Vec<Class>,
    /// Functions.
    pub functions: Vec<Function>,
    /// Every device: the population first, then the baseline's servers.
    pub peers: Vec<Peer>,
    /// How many of `peers` are the population (the rest are baseline servers).
    pub population: usize,
    /// Population peers per region.
    pub by_region: Vec<Vec<u32>>,
    /// Each peer's Vivaldi coordinate after the warm-up.
    pub coords: Vec<Coord>,
    /// The latency model.
    pub latency: Latency,
    /// Where the origin (publisher's copy) sits: region and point.
    pub origin: (usize, Point),
    /// Median relative error of Vivaldi's RTT predictions to known peers.
    pub vivaldi_error: f64,
}

impl World {
    /// Builds the world of `scenario` for `seed`. `latency` carries any measured
    /// matrix already loaded.
    pub fn build(scenario: &Scenario, seed: u64, latency: Latency) -> Self {
        let classes: Vec<Class> = scenario
            .classes
            .iter()
            .map(|c| {
                let spec = c.get_ref().clone();
                Class {
                    memory_bytes: (spec.memory_mb * 1_048_576.0) as u64,
                    store_bytes: (spec.store_mb * 1_048_576.0) as u64,
                    up_bytes_per_ms: spec.up_mbps * 125.0,
                    down_bytes_per_ms: spec.down_mbps * 125.0,
                    spec,
                }
            })
            .collect();
        let functions: Vec<Function> = scenario
            .functions
            .iter()
            .map(|f| {
                let spec = f.get_ref().clone();
                Function {
                    id: FunctionId::of(spec.name.as_bytes()),
                    module_bytes: (spec.module_kib * 1024.0) as u64,
                    memory_bytes: (spec.memory_mb * 1_048_576.0) as u64,
                    spec,
                }
            })
            .collect();
        let regions: Vec<_> = scenario.regions.iter().map(|r| r.get_ref()).collect();
        let mut rng = Rng::stream(seed, Stream::World, 0);
        let mut peers = Vec::new();
        let mut by_region = vec![Vec::new(); regions.len()];
        for p in &scenario.populations {
            let p = p.get_ref();
            let (Some(class), Some(region)) = (
                scenario.class_index(&p.class),
                scenario.region_index(&p.region),
            ) else {
                continue; // validated already
            };
            let r = regions[region];
            for _ in 0..p.count {
                by_region[region].push(peers.len() as u32);
                peers.push(Peer {
                    class: class as u16,
                    region: region as u16,
                    pos: geo::scatter(r.lat, r.lon, r.radius_km, &mut rng),
                    view: Box::new([]),
                    lie: None,
                });
            }
        }
        let population = peers.len();
        // Liars, from a stream of their own (so adding them moves nothing else).
        let mut lies = Rng::stream(seed, Stream::World, 7);
        for l in &scenario.failures.liars {
            let l = l.get_ref();
            let class = l.class.as_deref().and_then(|c| scenario.class_index(c));
            for p in peers.iter_mut() {
                if p.lie.is_none()
                    && class.is_none_or(|c| usize::from(p.class) == c)
                    && lies.unit() < l.fraction
                {
                    p.lie = Some(l.lie);
                }
            }
        }
        if let Some(b) = &scenario.baseline {
            let b = b.get_ref();
            if let (Some(class), Some(region)) = (
                scenario.class_index(&b.class),
                scenario.region_index(&b.region),
            ) {
                let r = regions[region];
                for _ in 0..b.servers {
                    peers.push(Peer {
                        class: class as u16,
                        region: region as u16,
                        // One datacenter: a single site.
                        pos: geo::scatter(r.lat, r.lon, 1.0, &mut rng),
                        view: Box::new([]),
                        lie: None,
                    });
                }
            }
        }
        // Views: three quarters from the peer's own region (what mDNS and nearby
        // bootstrap peers give a real node), the rest from anywhere.
        let k = scenario.sim.known_peers as usize;
        if k + 1 >= population {
            // Everyone knows everyone (a full view, for comparisons).
            for (i, peer) in peers.iter_mut().enumerate().take(population) {
                let all: Vec<u32> = (0..population as u32)
                    .filter(|&q| q as usize != i)
                    .collect();
                peer.view = all.into_boxed_slice();
            }
        }
        for i in (0..population).filter(|_| k + 1 < population) {
            let own = &by_region[peers[i].region as usize];
            let mut view: Vec<u32> = Vec::with_capacity(k);
            let local_quota = (k * 3).div_ceil(4).min(own.len().saturating_sub(1));
            let mut tries = 0;
            while view.len() < local_quota && tries < local_quota * 8 {
                tries += 1;
                let q = own[rng.below(own.len() as u64) as usize];
                if q as usize != i && !view.contains(&q) {
                    view.push(q);
                }
            }
            let want = k.min(population - 1);
            let mut tries = 0;
            while view.len() < want && tries < want * 8 {
                tries += 1;
                let q = rng.below(population as u64) as u32;
                if q as usize != i && !view.contains(&q) {
                    view.push(q);
                }
            }
            view.sort_unstable();
            peers[i].view = view.into_boxed_slice();
        }
        let origin = scenario
            .origin
            .as_ref()
            .and_then(|o| scenario.region_index(&o.get_ref().region))
            .or_else(|| {
                scenario
                    .baseline
                    .as_ref()
                    .and_then(|b| scenario.region_index(&b.get_ref().region))
            })
            .unwrap_or(0);
        let origin = (origin, geo::point(regions[origin].lat, regions[origin].lon));
        let mut world = Self {
            classes,
            functions,
            peers,
            population,
            by_region,
            coords: Vec::new(),
            latency,
            origin,
            vivaldi_error: f64::NAN,
        };
        world.warm_up_coordinates(scenario, seed);
        world
    }

    /// One-way access delay of peer `p`, ms.
    pub fn access_ms(&self, p: u32) -> f64 {
        self.classes[self.peers[p as usize].class as usize]
            .spec
            .access_ms
    }

    /// Base RTT between two peers, ms (0 to itself).
    pub fn rtt_ms(&self, a: u32, b: u32) -> f64 {
        if a == b {
            return 0.0;
        }
        let (pa, pb) = (&self.peers[a as usize], &self.peers[b as usize]);
        self.latency.base_rtt_ms(
            (pa.region as usize, &pa.pos, self.access_ms(a)),
            (pb.region as usize, &pb.pos, self.access_ms(b)),
        )
    }

    /// Base RTT between a peer and the origin, ms (the origin's access is 0.5 ms).
    pub fn rtt_to_origin_ms(&self, a: u32) -> f64 {
        let pa = &self.peers[a as usize];
        self.latency.base_rtt_ms(
            (pa.region as usize, &pa.pos, self.access_ms(a)),
            (self.origin.0, &self.origin.1, 0.5),
        )
    }

    /// Peer `p`'s advert with the given load; the cache filter is filled by the engine.
    /// A liar's claims the best capacity there is, whatever its load.
    pub fn advert(&self, p: u32, running: u16, queued: u16, cached: Cached) -> Advert {
        let class = &self.classes[self.peers[p as usize].class as usize];
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&p.to_le_bytes());
        if self.peers[p as usize].lie.is_some() {
            // The best capacity there is: the fastest CPU, idle, everything warm.
            let mut cached = cached;
            for f in &self.functions {
                cached.insert(&f.id);
            }
            return Advert {
                cpu_score: 100_000_000,
                running: 0,
                queued: 0,
                cached,
                ..self.honest_advert(p, key, class, 0, 0, Cached::default())
            };
        }
        self.honest_advert(p, key, class, running, queued, cached)
    }

    fn honest_advert(
        &self,
        p: u32,
        key: [u8; 32],
        class: &Class,
        running: u16,
        queued: u16,
        cached: Cached,
    ) -> Advert {
        Advert {
            peer: key,
            seq: 0,
            issued_ms: 0,
            device: class.spec.device,
            cores: class.spec.cores.min(4096) as u16,
            cpu_score: class.spec.cpu_score.clamp(1.0, 1e8) as u32,
            memory_bytes: class.memory_bytes,
            max_concurrent: class.spec.slots.min(u32::from(u16::MAX)) as u16,
            max_queued: class.spec.queue.min(u32::from(u16::MAX)) as u16,
            running,
            queued,
            backends: backend::CRANELIFT,
            coord: self.coords.get(p as usize).copied().unwrap_or_default(),
            cached,
        }
    }

    /// The device class of peer `p`.
    pub fn device(&self, p: u32) -> DeviceClass {
        self.classes[self.peers[p as usize].class as usize]
            .spec
            .device
    }

    /// Runs protocol's Vivaldi: every peer samples the RTT to random known peers for
    /// `sim.vivaldi_rounds` rounds. Then measures the median prediction error.
    fn warm_up_coordinates(&mut self, scenario: &Scenario, seed: u64) {
        let n = self.peers.len();
        let mut coords = vec![Coord::default(); n];
        let config = vivaldi::Config::default();
        let mut rng = Rng::stream(seed, Stream::Vivaldi, 0);
        let jitter = scenario.network.jitter_ms;
        for _ in 0..scenario.sim.vivaldi_rounds {
            for p in 0..self.population {
                let view = &self.peers[p].view;
                if view.is_empty() {
                    continue;
                }
                let q = view[rng.below(view.len() as u64) as usize];
                let sample = self.rtt_ms(p as u32, q) + 2.0 * jitter * rng.unit();
                let fallback = [
                    (p % 7) as f32 - 3.0,
                    (q % 5) as f32 - 2.0,
                    ((p + q as usize) % 3) as f32 - 1.0,
                ];
                let remote = coords[q as usize];
                coords[p].observe(&remote, sample, fallback, &config);
            }
        }
        let mut errors = Vec::new();
        for p in (0..self.population).step_by((self.population / 2000).max(1)) {
            for &q in self.peers[p].view.iter().take(4) {
                let truth = self.rtt_ms(p as u32, q);
                if truth > 0.0 {
                    let predicted = coords[p].rtt_ms(&coords[q as usize]);
                    errors.push((predicted - truth).abs() / truth);
                }
            }
        }
        errors.sort_by(f64::total_cmp);
        self.vivaldi_error = errors.get(errors.len() / 2).copied().unwrap_or(f64::NAN);
        self.coords = coords;
    }
}
