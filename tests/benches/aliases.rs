//! Alias benchmark.
//!
//! - Resolution cost per call, in-process: protocol's `pick` of a 90/10 split, a
//!   registry lookup plus pick among 1,000 aliases, and the node's full path
//!   (`Aliases::parse` of the text reference, then `resolve` with a random key) —
//!   what `POST /v1/call/NS/NAME@CHANNEL` does before placing the call.
//! - Propagation: N real `kith up` processes on 127.0.0.1 (N = 5 and 20); an alias is
//!   moved on node 0, and the time until every node resolves the new record is
//!   measured (20 moves per N; every node polled in turn, so the resolution of the
//!   measurement is one sweep of N HTTP requests).
//!
//! Run: `cargo bench -p kith-tests --bench aliases`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use kith_node::aliases::Aliases;
use kith_protocol::FunctionId;
use kith_protocol::alias::{Alias, Namespace, Record, Registry, Target, pick};
use kith_tests::{NodeProcess, get, guest, post};
use libp2p::identity::ed25519;

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");

fn median_ns(mut batches: Vec<f64>) -> f64 {
    batches.sort_by(f64::total_cmp);
    batches[batches.len() / 2]
}

/// Median over 21 batches of `n` iterations of `f`, in ns per iteration.
fn time_ns(n: u32, mut f: impl FnMut(u32)) -> f64 {
    let batches = (0..21)
        .map(|_| {
            let t = Instant::now();
            for i in 0..n {
                f(i);
            }
            t.elapsed().as_nanos() as f64 / f64::from(n)
        })
        .collect();
    median_ns(batches)
}

fn resolution() {
    let key = ed25519::Keypair::generate();
    let ns = Namespace(key.public().to_bytes());
    let split = [
        Target {
            function: FunctionId::of(b"v1"),
            weight: 90,
        },
        Target {
            function: FunctionId::of(b"v2"),
            weight: 10,
        },
    ];
    let mut registry = Registry::default();
    let dir = tempfile::tempdir().unwrap();
    let aliases = Aliases::open(dir.path(), &[], false).unwrap();
    for i in 0..1_000 {
        let signed = Record {
            alias: Alias::new(ns, &format!("app{i}"), "prod").unwrap(),
            seq: 1,
            issued_ms: 0,
            verify: 1,
            targets: split.to_vec(),
        }
        .sign(|m| key.sign(m).try_into().unwrap())
        .unwrap();
        aliases.apply_bytes(&signed.bytes).unwrap();
        registry.apply(signed);
    }
    let alias = Alias::new(ns, "app500", "prod").unwrap();
    let text = format!("{ns}/app500@prod");
    let mut sink = 0u64;
    let pick_ns = time_ns(200_000, |i| {
        let f = pick(&alias, &split, &i.to_le_bytes()).unwrap();
        sink += u64::from(f.as_bytes()[0]);
    });
    let registry_ns = time_ns(200_000, |i| {
        let (f, _) = registry.resolve(&alias, &i.to_le_bytes()).unwrap();
        sink += u64::from(f.as_bytes()[0]);
    });
    let node_ns = time_ns(200_000, |_| {
        let r = aliases.resolve(&alias, None).unwrap();
        sink += u64::from(r.function.as_bytes()[0]);
    });
    let full_ns = time_ns(100_000, |_| {
        let a = aliases.parse(&text).unwrap();
        let r = aliases.resolve(&a, None).unwrap();
        sink += u64::from(r.function.as_bytes()[0]);
    });
    println!("## Alias resolution per call (1,000 aliases, 90/10 split; median of 21 batches)\n");
    println!("| step | ns per call |");
    println!("|---|---|");
    println!("| protocol `pick` (blake3 of alias + key, weighted choice) | {pick_ns:.0} |");
    println!("| protocol `Registry::resolve` (lookup among 1,000 + pick) | {registry_ns:.0} |");
    println!("| node `Aliases::resolve` (lock, random key, lookup, pick) | {node_ns:.0} |");
    println!("| node parse of `NS/NAME@CHANNEL` text + resolve | {full_ns:.0} |");
    println!();
    std::hint::black_box(sink);
}

fn propagation(n: usize, moves: usize) {
    let dir = tempfile::tempdir().unwrap();
    let common = ["--advert-interval-ms", "1000"];
    let first = NodeProcess::start(BIN, &dir.path().join("node0"), &common);
    let boot0 = first.p2p_addr();
    let mut nodes = vec![first];
    for i in 1..n {
        // Each node joins through node 0 and through an earlier node (a tree), so
        // records cross several hops.
        let parent = nodes[(i - 1) / 2].p2p_addr();
        let mut flags = common.to_vec();
        flags.extend([
            "--bootstrap",
            boot0.as_str(),
            "--bootstrap",
            parent.as_str(),
        ]);
        nodes.push(NodeProcess::start(
            BIN,
            &dir.path().join(format!("node{i}")),
            &flags,
        ));
    }
    for node in &nodes {
        node.wait_for_peers(Duration::from_secs(60), |p| {
            p.iter().any(|p| p["connected"] == true)
        });
    }
    std::thread::sleep(Duration::from_secs(3));
    let n0 = &nodes[0];
    let key = post(
        &format!("{}/v1/keys", n0.url),
        br#"{"name":"bench"}"#.to_vec(),
    )
    .json();
    let ns = key["namespace"].as_str().unwrap().to_owned();
    let h1 = n0.client().publish(guest("hello")).unwrap().id;
    let h2 = n0.client().publish(guest("json_transform")).unwrap().id;
    let client = reqwest::blocking::Client::new();
    let mut times = Vec::new();
    for m in 0..moves {
        let target = if m % 2 == 0 { &h1 } else { &h2 };
        let body = format!(r#"{{"targets":[{{"function":"{target}","weight":1}}]}}"#);
        let start = Instant::now();
        let r = client
            .put(format!("{}/v1/aliases/bench/app@prod", n0.url))
            .body(body)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let seq = (m + 1) as u64;
        let mut pending: Vec<&NodeProcess> = nodes[1..].iter().collect();
        while !pending.is_empty() {
            pending.retain(|node| {
                let r = get(&format!(
                    "{}/v1/aliases/{ns}/app@prod/resolve?key=b",
                    node.url
                ));
                !(r.status == 200 && r.json()["seq"].as_u64() == Some(seq))
            });
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "record {seq} never reached every node"
            );
        }
        times.push(start.elapsed());
        std::thread::sleep(Duration::from_millis(200));
    }
    times.sort();
    println!(
        "| {n} nodes | {moves} | {:.1} ms | {:.1} ms | {:.1} ms |",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() * 9 / 10].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
    );
}

fn main() {
    resolution();
    println!("## Alias propagation: move on node 0 until every node resolves it\n");
    println!("| network | moves | median | p90 | max |");
    println!("|---|---|---|---|---|");
    propagation(5, 20);
    propagation(20, 20);
}
