//! Receipts and redundant execution (issue 16), side by side in one run:
//!
//! 1. What a receipt costs per call: hashing input and output, signing (the executor),
//!    decoding with the signature verified and checking every field (the entry), at
//!    two output sizes — beside a plain forwarded call of `hello` measured in part 2.
//! 2. `verify = 3` against `verify = 1`: latency (p50, p99) and calls/s of `hello`
//!    through a gateway with three nodes behind it, at concurrency 1 and 8, rounds
//!    alternating so both see the same machine.
//!
//! Run: `cargo bench -p kith-tests --bench receipts` (KITH_BENCH_SECS sets the
//! duration of each row, default 10).

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use kith_protocol::FunctionId;
use kith_protocol::receipt::{CallId, Expected, Receipt, Signed, digest};
use kith_tests::cluster::{network, publish};
use kith_tests::guest;
use kith_tests::load::{self, pct};

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");

fn median_us(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Median µs of `f` over `n` runs.
fn time(n: usize, mut f: impl FnMut()) -> f64 {
    let samples = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    median_us(samples)
}

fn receipt_costs() {
    let executor = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    let entry = [2u8; 32];
    println!("Receipt costs per call (median of 20,000 runs)\n");
    println!(
        "| output | hash input + output | sign | decode + verify | check fields (hashes input and output) | executor + entry |"
    );
    println!("|---|---|---|---|---|---|");
    for (label, input, output) in [
        ("13 B (hello)", b"bench".to_vec(), b"hello, bench!".to_vec()),
        ("64 KiB", b"bench".to_vec(), vec![7u8; 64 << 10]),
    ] {
        let receipt = Receipt {
            function: FunctionId::of(b"f"),
            input: digest(&input),
            output: digest(&output),
            fuel_used: 4000,
            wall_us: 5,
            executor: executor.verifying_key().to_bytes(),
            entry,
            call: CallId([3; 16]),
        };
        let hash = time(20_000, || {
            std::hint::black_box((digest(&input), digest(&output)));
        });
        let sign = time(20_000, || {
            std::hint::black_box(receipt.sign(&executor));
        });
        let bytes = receipt.sign(&executor).encode();
        let decode = time(20_000, || {
            std::hint::black_box(Signed::decode(&bytes).unwrap());
        });
        let signed = receipt.sign(&executor);
        let expected = Expected {
            entry,
            executor: executor.verifying_key().to_bytes(),
            call: CallId([3; 16]),
            function: FunctionId::of(b"f"),
            input: &input,
            output: &output,
            fuel: 10_000,
            timeout_ms: 1000,
        };
        let check = time(20_000, || signed.check_fields(&expected).unwrap());
        // The executor hashes and signs; the entry decodes (verifying) and checks the
        // fields (hashing input and output again).
        println!(
            "| {label} | {hash:.1} µs | {sign:.1} µs | {decode:.1} µs | {check:.1} µs | {:.1} µs |",
            hash + sign + decode + check
        );
    }
    println!();
}

fn main() {
    receipt_costs();
    let secs = load::bench_secs();
    let dir = tempfile::tempdir().unwrap();
    let nodes = network(
        BIN,
        dir.path(),
        4,
        &[&["--max-concurrent-calls", "0", "--max-queued-calls", "1024"]],
    );
    let gateway = &nodes[0];
    let id = publish(gateway, guest("hello"));
    let addr = gateway.url.trim_start_matches("http://").to_owned();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let request =
        |verify: u8| load::request(&addr, &format!("/v1/call/{id}?verify={verify}"), b"bench");
    // Warm every node (fetch, compile) with verified calls.
    for _ in 0..5 {
        load::run(
            &rt,
            &addr,
            &request(3),
            1,
            Duration::from_millis(300),
            b"hello, bench!",
        );
    }
    println!(
        "`hello` through a gateway (max_concurrent_calls = 0) and three nodes on loopback, {secs} s per row, rounds alternating\n"
    );
    println!("| verify | concurrency | calls | calls/s | p50 | p99 | errors |");
    println!("|---|---|---|---|---|---|---|");
    let mut rows: Vec<(u8, usize, Vec<Duration>, u64, Duration)> = Vec::new();
    for concurrency in [1usize, 8] {
        for round in 0..2 {
            for verify in [1u8, 3] {
                let (lat, errors, elapsed) = load::run(
                    &rt,
                    &addr,
                    &request(verify),
                    concurrency,
                    Duration::from_secs(secs.div_ceil(2)),
                    b"hello, bench!",
                );
                match rows
                    .iter_mut()
                    .find(|r| r.0 == verify && r.1 == concurrency && round > 0)
                {
                    Some(r) => {
                        r.2.extend(lat);
                        r.2.sort();
                        r.3 += errors;
                        r.4 += elapsed;
                    }
                    None => rows.push((verify, concurrency, lat, errors, elapsed)),
                }
            }
        }
    }
    for (verify, concurrency, lat, errors, elapsed) in &rows {
        println!(
            "| {verify} | {concurrency} | {} | {:.0} | {:.2} ms | {:.2} ms | {errors} |",
            lat.len(),
            lat.len() as f64 / elapsed.as_secs_f64(),
            pct(lat, 0.5).as_secs_f64() * 1e3,
            pct(lat, 0.99).as_secs_f64() * 1e3,
        );
    }
    let ledger = kith_tests::get(&format!("{}/v1/ledger", gateway.url)).json();
    println!(
        "\ngateway ledger: {} calls consumed from {} peers, {} receipts refused",
        ledger["consumed"]["calls"],
        ledger["consumed_by_peer"].as_array().map_or(0, Vec::len),
        gateway.status()["receipts"]["refused"]
    );
}
