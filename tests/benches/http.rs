//! HTTP benchmark: round-trip latency (p50/p99) and calls/s for `hello` through a real
//! `kith up` process, at concurrency 1 and 64, from a load generator in this process on
//! the same machine (so both share its cores). The generator is a minimal keep-alive
//! HTTP/1.1 client on raw sockets, to spend as little CPU as possible.
//!
//! Run: `cargo bench -p kith-tests --bench http` (KITH_BENCH_SECS sets the duration).

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use kith_tests::cluster::publish;
use kith_tests::load::{self, pct};
use kith_tests::{NodeProcess, guest};

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");

fn main() {
    let secs = load::bench_secs();
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(
        BIN,
        &dir.path().join("bench"),
        &["--max-queued-calls", "1024"],
    );
    let id = publish(&node, guest("hello"));
    let addr = node.url.trim_start_matches("http://").to_owned();
    let request = load::request(&addr, &format!("/v1/call/{id}"), b"bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    println!("HTTP round trips of `hello` through `kith up`, {secs} s per row\n");
    println!("| concurrency | calls | calls/s | p50 | p99 | errors |");
    println!("|---|---|---|---|---|---|");
    for concurrency in [1usize, 64] {
        // Warm up.
        load::run(
            &rt,
            &addr,
            &request,
            1,
            Duration::from_millis(500),
            b"hello, bench!",
        );
        let (lat, errors, elapsed) = load::run(
            &rt,
            &addr,
            &request,
            concurrency,
            Duration::from_secs(secs),
            b"hello, bench!",
        );
        println!(
            "| {concurrency} | {} | {:.0} | {:.0} µs | {:.0} µs | {errors} |",
            lat.len(),
            lat.len() as f64 / elapsed.as_secs_f64(),
            pct(&lat, 0.5).as_secs_f64() * 1e6,
            pct(&lat, 0.99).as_secs_f64() * 1e6,
        );
    }
    let status = node.status();
    println!(
        "\nnode: {} calls served, {} failed, {} refused",
        status["calls_served"], status["calls_failed"], status["calls_refused"]
    );
}
