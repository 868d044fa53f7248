//! HTTP benchmark: round-trip latency (p50/p99) and calls/s for `hello` through a real
//! `kith up` process, at concurrency 1 and 64, from a load generator in this process on
//! the same machine (so both share its cores). The generator is a minimal keep-alive
//! HTTP/1.1 client on raw sockets, to spend as little CPU as possible.
//!
//! Run: `cargo bench -p kith-tests --bench http` (KITH_BENCH_SECS sets the duration).

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use kith_tests::{NodeProcess, guest, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");

async fn connection(
    addr: String,
    request: Vec<u8>,
    until: Instant,
    expect: &'static [u8],
) -> (Vec<Duration>, u64) {
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while Instant::now() < until {
        let t = Instant::now();
        stream.write_all(&request).await.unwrap();
        let mut filled = 0;
        let (head_end, content_length) = loop {
            let n = stream.read(&mut buf[filled..]).await.unwrap();
            assert!(n > 0, "server closed the connection");
            filled += n;
            if let Some(pos) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&buf[..pos])
                    .unwrap()
                    .to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .unwrap_or(0);
                if !head.starts_with("http/1.1 200") {
                    errors += 1;
                }
                break (pos + 4, len);
            }
        };
        while filled < head_end + content_length {
            let n = stream.read(&mut buf[filled..]).await.unwrap();
            assert!(n > 0);
            filled += n;
        }
        debug_assert_eq!(&buf[head_end..head_end + content_length], expect);
        latencies.push(t.elapsed());
    }
    (latencies, errors)
}

fn pct(v: &[Duration], p: f64) -> Duration {
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let secs: u64 = std::env::var("KITH_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(
        BIN,
        &dir.path().join("bench"),
        &["--max-queued-calls", "1024"],
    );
    let id = post(&format!("{}/v1/functions", node.url), guest("hello")).json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let addr = node.url.trim_start_matches("http://").to_owned();
    let body = b"bench";
    let request = format!(
        "POST /v1/call/{id} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes()
    .into_iter()
    .chain(body.iter().copied())
    .collect::<Vec<u8>>();

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
        rt.block_on(connection(
            addr.clone(),
            request.clone(),
            Instant::now() + Duration::from_millis(500),
            b"hello, bench!",
        ));
        let started = Instant::now();
        let until = started + Duration::from_secs(secs);
        let results = rt.block_on(async {
            let tasks: Vec<_> = (0..concurrency)
                .map(|_| {
                    tokio::spawn(connection(
                        addr.clone(),
                        request.clone(),
                        until,
                        b"hello, bench!",
                    ))
                })
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                all.push(t.await.unwrap());
            }
            all
        });
        let elapsed = started.elapsed();
        let errors: u64 = results.iter().map(|r| r.1).sum();
        let mut lat: Vec<Duration> = results.into_iter().flat_map(|r| r.0).collect();
        lat.sort();
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
