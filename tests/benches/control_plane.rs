//! Control-plane benchmark: 25, 50 and 100 real `kith up` processes on 127.0.0.1, side
//! by side in one run. Each network is started (every node bootstraps from two earlier
//! ones, no mDNS), left to settle, then measured over a window: per node, established
//! connections, control bytes/s in and out (the node's own `/metrics`: adverts and the
//! rest of `/kith/hood/1`), CPU% (from /proc) and RSS. Then calls: `hello` is published
//! and warmed on one node; every fifth node is a gateway (`--max-concurrent-calls 0`),
//! so its calls are forwarded; each gateway calls once, and the call must succeed and
//! land on a peer it holds an advert from (one of its neighbours) — on the warm node
//! when that node is one of them (placement ranks a warm peer first).
//!
//! Run: `cargo bench -p kith-tests --bench control_plane`
//! (`KITH_BENCH_SIZES=25,50,100`, `KITH_BENCH_SETTLE_SECS=60`, `KITH_BENCH_SECS=30`).

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use kith_tests::cluster::publish;
use kith_tests::{NodeProcess, get, guest, post};

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Control bytes (sent, received) so far: adverts plus the rest of the neighbourhood.
fn control_bytes(node: &NodeProcess) -> (u64, u64) {
    let metrics = get(&format!("{}/metrics", node.url)).text();
    let count = |protocol: &str, direction: &str| -> u64 {
        let key =
            format!("kith_net_bytes_total{{protocol=\"{protocol}\",direction=\"{direction}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (
        count("adverts", "sent") + count("neighbourhood", "sent"),
        count("adverts", "received") + count("neighbourhood", "received"),
    )
}

/// CPU time of a process so far (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime is 14th, stime 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

fn connected(node: &NodeProcess) -> usize {
    node.client()
        .get_json("/v1/peers")
        .map(|v| {
            v.as_array()
                .map_or(0, |a| a.iter().filter(|p| p["connected"] == true).count())
        })
        .unwrap_or(0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

struct Row {
    n: usize,
    conns: Vec<f64>,
    sent: Vec<f64>,
    received: Vec<f64>,
    cpu: Vec<f64>,
    rss: Vec<f64>,
    calls: usize,
    ok: usize,
    on_neighbour: usize,
    warm_neighbour: usize,
    on_warm: usize,
}

fn run(n: usize, settle: Duration, window: Duration) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes: Vec<NodeProcess> = Vec::with_capacity(n);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |below: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % below as u64) as usize
    };
    for i in 0..n {
        let mut flags: Vec<String> = vec!["--listen".into(), "/ip4/127.0.0.1/tcp/0".into()];
        if i > 0 {
            let a = next(i);
            let b = next(i);
            for j in [a, b] {
                flags.push("--bootstrap".into());
                flags.push(nodes[j].p2p_addr());
            }
        }
        if i % 5 == 4 {
            flags.extend(["--max-concurrent-calls".into(), "0".into()]);
        }
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        nodes.push(NodeProcess::start(
            BIN,
            &dir.path().join(format!("n{i}")),
            &flags,
        ));
    }
    std::thread::sleep(settle);
    let before: Vec<((u64, u64), u64)> = nodes
        .iter()
        .map(|x| (control_bytes(x), cpu_ticks(x.pid())))
        .collect();
    let t = Instant::now();
    std::thread::sleep(window);
    let secs = t.elapsed().as_secs_f64();
    let ticks = 100.0; // USER_HZ on Linux
    let mut row = Row {
        n,
        conns: Vec::new(),
        sent: Vec::new(),
        received: Vec::new(),
        cpu: Vec::new(),
        rss: Vec::new(),
        calls: 0,
        ok: 0,
        on_neighbour: 0,
        warm_neighbour: 0,
        on_warm: 0,
    };
    for (x, ((s0, r0), c0)) in nodes.iter().zip(before) {
        let (s1, r1) = control_bytes(x);
        row.sent.push((s1 - s0) as f64 / secs);
        row.received.push((r1 - r0) as f64 / secs);
        row.cpu
            .push((cpu_ticks(x.pid()) - c0) as f64 / ticks / secs * 100.0);
        row.rss
            .push(kith_tests::proc_status_bytes(x.pid(), "VmRSS:") as f64 / 1048576.0);
        row.conns.push(connected(x) as f64);
    }
    // Calls: hello warm on node 0; each gateway calls once.
    let warm = &nodes[0];
    let id = publish(warm, guest("hello"));
    let r = post(&format!("{}/v1/call/{id}", warm.url), b"warm".to_vec());
    assert_eq!(r.status, 200, "{}", r.text());
    std::thread::sleep(Duration::from_secs(3));
    for g in nodes.iter().skip(4).step_by(5) {
        let peers = g.client().get_json("/v1/peers").unwrap();
        let neighbours: Vec<String> = peers
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["connected"] == true && !p["advert"].is_null())
            .map(|p| p["peer_id"].as_str().unwrap_or_default().to_owned())
            .collect();
        let warm_is_neighbour = neighbours.contains(&warm.node_id);
        let r = post(&format!("{}/v1/call/{id}", g.url), b"bench".to_vec());
        row.calls += 1;
        if r.status != 200 {
            eprintln!("call at a gateway failed: {} {}", r.status, r.text());
            continue;
        }
        row.ok += 1;
        let by = r.header("kith-executed-by");
        row.on_neighbour += usize::from(neighbours.contains(&by));
        if warm_is_neighbour {
            row.warm_neighbour += 1;
            row.on_warm += usize::from(by == warm.node_id);
        }
    }
    row
}

fn main() {
    let sizes: Vec<usize> = std::env::var("KITH_BENCH_SIZES")
        .unwrap_or_else(|_| "25,50,100".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let settle = Duration::from_secs(env_or("KITH_BENCH_SETTLE_SECS", 60));
    let window = Duration::from_secs(env_or("KITH_BENCH_SECS", 30));
    let rows: Vec<Row> = sizes.iter().map(|&n| run(n, settle, window)).collect();
    println!(
        "\nPer node, median (max), after {} s to settle, measured over {} s:\n",
        settle.as_secs(),
        window.as_secs()
    );
    println!(
        "| nodes | connections | control B/s out | control B/s in | CPU % | RSS MiB | gateway calls ok | on a neighbour | on the warm peer when it is a neighbour |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for mut r in rows {
        let cell = |v: &mut Vec<f64>, prec: usize| {
            let m = max(v);
            format!("{:.*} ({:.*})", prec, median(v), prec, m)
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {}/{} | {}/{} | {}/{} |",
            r.n,
            cell(&mut r.conns, 0),
            cell(&mut r.sent, 0),
            cell(&mut r.received, 0),
            cell(&mut r.cpu, 1),
            cell(&mut r.rss, 1),
            r.ok,
            r.calls,
            r.on_neighbour,
            r.ok,
            r.on_warm,
            r.warm_neighbour,
        );
    }
}
