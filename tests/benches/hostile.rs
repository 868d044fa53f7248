//! (l) Normal calls beside hostile ones: the latency of `hello` calls on a node while
//! a steady load of hostile calls (every class of `kith_tests::hostile::fail_at_call`,
//! one at a time, in a loop) runs on it, against the same node under the same number of
//! normal calls instead — side by side in one run, in alternating windows so both see
//! the same machine.
//!
//! The node has two call slots (one for the load, one for the measured calls), on this
//! 2-core machine. One client measures `hello` round trips one at a time; another keeps
//! one load call in flight at all times.
//!
//! Run: `cargo bench -p kith-tests --bench hostile` (KITH_BENCH_SECS: seconds per
//! window, default 10; four windows of each).

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kith_tests::hostile::{self, Expect};
use kith_tests::load::{self, pct};
use kith_tests::{NodeProcess, guest};

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");

fn main() {
    let secs = load::bench_secs();
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(
        BIN,
        &dir.path().join("bench"),
        &[
            "--offline",
            "--max-concurrent-calls",
            "2",
            "--max-queued-calls",
            "16",
        ],
    );
    let client = node.client();
    let hello = client.publish(guest("hello")).unwrap().id;
    let hostile_calls: Vec<(String, Vec<u8>, &str)> = hostile::fail_at_call()
        .into_iter()
        .map(|c| {
            let Expect::Fails(kind, _) = c.expect else {
                unreachable!()
            };
            (client.publish(c.module).unwrap().id, c.input, kind)
        })
        .collect();
    let normal_calls = vec![(hello.clone(), b"load".to_vec(), "ok")];

    let mut rows = Vec::new();
    for window in 0..8 {
        let hostile_window = window % 2 == 1;
        let calls = if hostile_window {
            hostile_calls.clone()
        } else {
            normal_calls.clone()
        };
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let loader = {
            let (stop, done, url) = (Arc::clone(&stop), Arc::clone(&done), node.url.clone());
            std::thread::spawn(move || {
                let client = kith_tests::Client::new(&url).unwrap();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (id, input, kind) = &calls[i % calls.len()];
                    let outcome = client.call(id, input.clone());
                    match (outcome, *kind) {
                        (Ok(_), "ok") => {}
                        (Err(kith_tests::ClientError::Api { kind: got, .. }), want)
                            if got == want || got == "busy" => {}
                        (other, want) => panic!("load call {i}: wanted {want}, got {other:?}"),
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        };
        let until = Instant::now() + Duration::from_secs(secs);
        let mut latencies = Vec::new();
        while Instant::now() < until {
            let started = Instant::now();
            let out = client.call(&hello, b"probe".to_vec()).unwrap();
            latencies.push(started.elapsed());
            assert_eq!(out.output, b"hello, probe!");
        }
        stop.store(true, Ordering::Relaxed);
        loader.join().unwrap();
        latencies.sort();
        rows.push((hostile_window, latencies, done.load(Ordering::Relaxed)));
    }
    let merged = |hostile: bool| {
        let mut all: Vec<Duration> = rows
            .iter()
            .filter(|r| r.0 == hostile)
            .flat_map(|r| r.1.iter().copied())
            .collect();
        all.sort();
        let load_calls: u64 = rows.iter().filter(|r| r.0 == hostile).map(|r| r.2).sum();
        (all, load_calls)
    };
    let (normal, normal_load) = merged(false);
    let (under_attack, hostile_load) = merged(true);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "(l) `hello` round trips beside a steady load, 4 windows of {secs} s each, interleaved\n"
    );
    println!("| beside | load calls | hello calls | p50 | p99 | max |");
    println!("|---|---|---|---|---|---|");
    for (name, lat, n) in [
        ("normal calls (hello)", &normal, normal_load),
        ("hostile calls (every class)", &under_attack, hostile_load),
    ] {
        println!(
            "| {name} | {n} | {} | {:.0} µs | {:.0} µs | {:.0} µs |",
            lat.len(),
            us(pct(lat, 0.5)),
            us(pct(lat, 0.99)),
            us(*lat.last().unwrap())
        );
    }
    println!(
        "\np99 under hostile load / p99 under normal load: {:.2}x (target ≤ 2x)",
        us(pct(&under_attack, 0.99)) / us(pct(&normal, 0.99))
    );
}
