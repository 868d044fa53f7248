//! Benchmark (n): what placing one call costs the entry — protocol's `placement::rank`
//! over every candidate it knows, the fallbacks, and the call's attempt order — for
//! as many candidates as a neighbourhood can hold (32 neighbours and 8 peers a warm
//! answer named: 40 at most, whatever the size of the network) and beyond.
//!
//! `cargo bench -p kith-tests --bench placement`; prints a table.

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use kith_protocol::FunctionId;
use kith_protocol::attempt::{self, Attempts};
use kith_protocol::capacity::{Advert, Cached, DeviceClass, backend};
use kith_protocol::placement::{self, Call, PeerView};
use kith_protocol::vivaldi::Coord;

/// A deterministic stream of numbers in 0..1.
struct Lcg(u64);

impl Lcg {
    fn unit(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn advert(i: u32, rng: &mut Lcg, function: &FunctionId) -> Advert {
    let mut cached = Cached::default();
    if rng.unit() < 0.3 {
        cached.insert(function);
    }
    for k in 0..8u32 {
        cached.insert(&FunctionId::of(&(i * 16 + k).to_le_bytes()));
    }
    let slots = 1 + (rng.unit() * 4.0) as u16;
    Advert {
        peer: [i as u8; 32],
        seq: 1,
        issued_ms: 0,
        device: DeviceClass::Pi,
        cores: 4,
        cpu_score: 2_000_000 + (rng.unit() * 8e6) as u32,
        memory_bytes: 256 << 20,
        max_concurrent: slots,
        max_queued: 8,
        running: (rng.unit() * f64::from(slots + 1)) as u16,
        queued: (rng.unit() * 3.0) as u16,
        backends: backend::CRANELIFT,
        coord: Coord {
            pos: [rng.unit() as f32 * 40.0, rng.unit() as f32 * 40.0, 0.0],
            height: 2.0,
            error: 0.3,
        },
        cached,
    }
}

fn main() {
    let function = FunctionId::of(b"bench function");
    let call = Call {
        function,
        memory_bytes: 64 << 20,
        expected_fuel: 5_000_000,
        module_bytes: 200_000,
        state_docs: &[],
        state_bytes: 0,
    };
    let config = attempt::Config::default();
    let mut rng = Lcg(7);
    let local = advert(0, &mut rng, &function);
    println!("| candidates | µs per placement (median of 7 rounds) | min | max |");
    println!("|---|---|---|---|");
    for n in [8u32, 32, 40, 64, 256] {
        let adverts: Vec<Advert> = (1..=n).map(|i| advert(i, &mut rng, &function)).collect();
        let rtts: Vec<Option<f64>> = (0..n)
            .map(|i| (i % 5 != 0).then(|| 2.0 + rng.unit() * 40.0))
            .collect();
        let views = || {
            std::iter::once(PeerView {
                peer: 0u32,
                advert: &local,
                measured_rtt_ms: Some(0.0),
                local: true,
                known_warm: Some(false),
                known_state: None,
                penalty: 0.0,
                conduct_ms: 0.0,
            })
            .chain(adverts.iter().zip(&rtts).enumerate().map(|(i, (a, r))| {
                PeerView {
                    peer: i as u32 + 1,
                    advert: a,
                    measured_rtt_ms: *r,
                    local: false,
                    known_warm: None,
                    known_state: None,
                    penalty: 0.0,
                    conduct_ms: 0.0,
                }
            }))
        };
        let iterations = 200_000 / n as usize;
        let mut rounds: Vec<f64> = (0..7)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..iterations {
                    let ranked = placement::rank(&call, views(), &local, &Default::default());
                    let fallbacks = if ranked.len() < config.max_attempts {
                        placement::fallbacks(&call, views(), &local)
                    } else {
                        Vec::new()
                    };
                    black_box(Attempts::new(&ranked, &fallbacks, &config, 0));
                }
                start.elapsed().as_secs_f64() * 1e6 / iterations as f64
            })
            .collect();
        rounds.sort_by(f64::total_cmp);
        println!(
            "| {n} | {:.2} | {:.2} | {:.2} |",
            rounds[3], rounds[0], rounds[6]
        );
    }
}
