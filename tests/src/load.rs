//! A minimal keep-alive HTTP/1.1 load generator on raw sockets, for benchmarks: it
//! spends as little CPU as possible, since it shares the machine with the nodes.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Seconds per benchmark row: `KITH_BENCH_SECS`, default 10.
pub fn bench_secs() -> u64 {
    std::env::var("KITH_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

/// A raw `POST {path}` request with `body`.
pub fn request(addr: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Runs concurrent connections until `secs` have passed; returns the sorted latencies,
/// the error count, and the elapsed time.
///
/// # Panics
/// If the server cannot be reached or closes a connection.
pub fn run(
    rt: &tokio::runtime::Runtime,
    addr: &str,
    request: &[u8],
    concurrency: usize,
    duration: Duration,
    expect: &'static [u8],
) -> (Vec<Duration>, u64, Duration) {
    let started = Instant::now();
    let until = started + duration;
    let results = rt.block_on(async {
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| tokio::spawn(connection(addr.to_owned(), request.to_vec(), until, expect)))
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.expect("load task"));
        }
        all
    });
    let elapsed = started.elapsed();
    let errors = results.iter().map(|r| r.1).sum();
    let mut lat: Vec<Duration> = results.into_iter().flat_map(|r| r.0).collect();
    lat.sort();
    (lat, errors, elapsed)
}

/// The `p` quantile (0..=1) of sorted durations.
///
/// # Panics
/// If `v` is empty.
pub fn pct(v: &[Duration], p: f64) -> Duration {
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[allow(clippy::unwrap_used)]
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
