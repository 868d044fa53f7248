//! Network benchmark: two real `kith up` processes on 127.0.0.1, an entry node A and a
//! peer B that has `hello` warm.
//!
//! - Remote warm call: HTTP round trips to A, which forwards to B over `/kith/invoke/1`,
//!   beside the same calls made to B directly and beside the libp2p ping RTT between
//!   them, all in one run.
//! - Calls/s through A at concurrency 64.
//! - Cold remote call of a 1 MiB function published on B and first called at A: fetch
//!   by hash, verify, compile, run.
//!
//! Run: `cargo bench -p kith-tests --bench network` (KITH_BENCH_SECS sets the duration).

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use kith_tests::cluster::publish;
use kith_tests::load::{self, pct};
use kith_tests::{NodeProcess, guest, padded, post};

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");

fn row(name: &str, lat: &[Duration], elapsed: Duration, errors: u64) {
    println!(
        "| {name} | {} | {:.0} | {:.0} µs | {:.0} µs | {errors} |",
        lat.len(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(lat, 0.5).as_secs_f64() * 1e6,
        pct(lat, 0.99).as_secs_f64() * 1e6,
    );
}

fn main() {
    let secs = load::bench_secs();
    let dir = tempfile::tempdir().unwrap();
    let common = ["--advert-interval-ms", "500", "--max-queued-calls", "1024"];
    let b = NodeProcess::start(BIN, &dir.path().join("b"), &common);
    let boot = b.p2p_addr();
    // A is a gateway (runs nothing itself), so every call through it is forwarded.
    let mut a_flags = common.to_vec();
    a_flags.extend(["--bootstrap", boot.as_str(), "--max-concurrent-calls", "0"]);
    let a = NodeProcess::start(BIN, &dir.path().join("a"), &a_flags);
    a.wait_for_peers(Duration::from_secs(30), |peers| {
        peers
            .iter()
            .any(|p| p["peer_id"] == b.node_id && !p["advert"].is_null() && p["rtt_ms"].is_f64())
    });

    let ping_rtt = |a: &NodeProcess| {
        a.client()
            .get_json("/v1/peers")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["peer_id"] == b.node_id)
            .and_then(|p| p["rtt_ms"].as_f64())
            .unwrap()
    };
    std::thread::sleep(Duration::from_secs(5));
    let idle_rtt = ping_rtt(&a);

    // Cold remote calls: a new 1 MiB function each time, published on B, first called at
    // A: A fetches it (to read its manifest), forwards the call, B compiles and runs it.
    let hello = guest("hello");
    let mut cold = Vec::new();
    for seed in 0..5 {
        let id = publish(&b, padded(&hello, 1 << 20, seed));
        let t = Instant::now();
        let r = post(&format!("{}/v1/call/{id}", a.url), b"cold".to_vec());
        cold.push(t.elapsed());
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    cold.sort();

    // Warm remote calls: hello is warm on B.
    let id = publish(&b, hello);
    let warm = post(&format!("{}/v1/call/{id}", b.url), b"warm".to_vec());
    assert_eq!(warm.status, 200);
    let first = post(&format!("{}/v1/call/{id}", a.url), b"warm".to_vec());
    assert_eq!(
        first.header("kith-executed-by"),
        b.node_id,
        "A forwards to warm B"
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let path = format!("/v1/call/{id}");
    let a_addr = a.url.trim_start_matches("http://").to_owned();
    let b_addr = b.url.trim_start_matches("http://").to_owned();
    let via_a = load::request(&a_addr, &path, b"bench");
    let at_b = load::request(&b_addr, &path, b"bench");
    let expect = b"hello, bench!";
    let forwarded_before = a.status()["forwarded"].as_u64().unwrap();

    println!("Two kith nodes on 127.0.0.1; `hello` warm on B; {secs} s per row\n");
    println!("| path | calls | calls/s | p50 | p99 | errors |");
    println!("|---|---|---|---|---|---|");
    let span = Duration::from_secs(secs);
    load::run(&rt, &b_addr, &at_b, 1, Duration::from_millis(500), expect);
    let (lat, errors, elapsed) = load::run(&rt, &b_addr, &at_b, 1, span, expect);
    row("HTTP to B, runs on B (local), c=1", &lat, elapsed, errors);
    let local_p50 = pct(&lat, 0.5);
    load::run(&rt, &a_addr, &via_a, 1, Duration::from_millis(500), expect);
    let (lat, errors, elapsed) = load::run(&rt, &a_addr, &via_a, 1, span, expect);
    row("HTTP to A, forwarded to B, c=1", &lat, elapsed, errors);
    let remote_p50 = pct(&lat, 0.5);
    let (lat, errors, elapsed) = load::run(&rt, &a_addr, &via_a, 64, span, expect);
    row("HTTP to A, forwarded to B, c=64", &lat, elapsed, errors);
    let (lat, errors, elapsed) = load::run(&rt, &b_addr, &at_b, 64, span, expect);
    row("HTTP to B, runs on B (local), c=64", &lat, elapsed, errors);

    let loaded_rtt = ping_rtt(&a);
    let forwarded = a.status()["forwarded"].as_u64().unwrap() - forwarded_before;
    println!();
    println!(
        "libp2p ping RTT A→B (moving average): {:.0} µs idle, {:.0} µs after the load rows",
        idle_rtt * 1000.0,
        loaded_rtt * 1000.0
    );
    println!(
        "remote overhead (forwarded p50 − local p50): {:.0} µs = {:.1}x idle ping RTT",
        (remote_p50.as_secs_f64() - local_p50.as_secs_f64()) * 1e6,
        (remote_p50.as_secs_f64() - local_p50.as_secs_f64()) / (idle_rtt / 1000.0)
    );
    println!("calls A forwarded to B during the runs: {forwarded}");
    println!(
        "cold remote call of a 1 MiB function (fetch, verify, compile, run), 5 runs: median {:.1} ms, min {:.1} ms, max {:.1} ms",
        cold[2].as_secs_f64() * 1e3,
        cold[0].as_secs_f64() * 1e3,
        cold[4].as_secs_f64() * 1e3,
    );
}
