//! State benchmark: convergence after a partition heals, and the bytes it takes.
//!
//! Five real `kith up` processes, each in its own network namespace on one bridged
//! network (`kith_tests::netns::Lan`; needs root). One document is created and pinned
//! everywhere; then every node is cut off from every other (iptables), and the five
//! make 1,000 changes between them at once (200 each: counter increments, with every
//! tenth an append of a small JSON object to a list). Then the partitions heal and we
//! time how long until all five report the same heads.
//!
//! Bytes: "the changes" are what each node appended to its own document file while
//! cut off (its own changes only, frame headers included). Every node must then
//! receive the changes it lacks, 4/5 of them; the Automerge sync messages it
//! receives (`sync_received_bytes` in the status) are compared with that ideal.
//!
//! Run: `sudo cargo bench -p kith-tests --bench state` (repeats the run 3 times).

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use kith_tests::netns::{HomeNat, Lan};
use kith_tests::{NodeProcess, get};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");
const NODES: usize = 5;
const CHANGES_PER_NODE: usize = 200;

fn request(method: &str, url: &str, body: Vec<u8>) -> u16 {
    kith_tests::send(method, url, body).status
}

fn status(n: &NodeProcess) -> Value {
    get(&format!("{}/v1/status", n.url)).json()
}

fn doc_bytes(n: &NodeProcess) -> u64 {
    get(&format!("{}/v1/state", n.url)).json()[0]["bytes"]
        .as_u64()
        .unwrap_or(0)
}

fn heads(n: &NodeProcess, doc: &str) -> Value {
    get(&format!("{}/v1/state/{doc}/heads", n.url)).json()["heads"].clone()
}

fn run_once(round: usize) -> (f64, u64, u64, u64) {
    let lan = Lan::create(NODES).expect("network");
    let dir = tempfile::tempdir().unwrap();
    let listen = [
        "--listen",
        "/ip4/0.0.0.0/tcp/7071",
        "--advert-interval-ms",
        "500",
    ];
    let first = NodeProcess::start_in_netns(
        &lan.hosts[0],
        &lan.ip(0),
        BIN,
        &dir.path().join("n0"),
        &listen,
    );
    let boot = format!("/ip4/{}/tcp/7071/p2p/{}", lan.ip(0), first.node_id);
    let mut nodes = vec![first];
    for i in 1..NODES {
        let mut flags = listen.to_vec();
        flags.extend(["--bootstrap", &boot]);
        nodes.push(NodeProcess::start_in_netns(
            &lan.hosts[i],
            &lan.ip(i),
            BIN,
            &dir.path().join(format!("n{i}")),
            &flags,
        ));
    }
    for n in &nodes {
        n.wait_for_peers(Duration::from_secs(60), |peers| {
            peers.iter().filter(|p| p["connected"] == true).count() >= NODES - 1
        });
    }
    let key = kith_tests::post(
        &format!("{}/v1/keys", nodes[0].url),
        br#"{"name":"bench"}"#.to_vec(),
    );
    assert_eq!(key.status, 201, "{}", key.text());
    let ns = key.json()["namespace"].as_str().unwrap().to_owned();
    let doc = format!("{ns}/bench{round}");
    let others: Vec<&NodeProcess> = nodes[1..].iter().collect();
    kith_tests::cluster::grant_writers(&nodes[0], &ns, &others);
    let base = |n: &NodeProcess| format!("{}/v1/state/{doc}", n.url);
    assert_eq!(
        request(
            "POST",
            &format!("{}/increment?path=/n&by=0", base(&nodes[0])),
            vec![]
        ),
        200
    );
    assert_eq!(
        request(
            "PUT",
            &format!("{}?path=/log", base(&nodes[0])),
            b"[]".to_vec()
        ),
        200
    );
    for n in &nodes[1..] {
        assert_eq!(request("POST", &format!("{}/pin", base(n)), vec![]), 200);
    }
    let want = heads(&nodes[0], &doc);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !nodes.iter().all(|n| heads(n, &doc) == want) {
        assert!(Instant::now() < deadline, "pinned copies did not fill in");
        std::thread::sleep(Duration::from_millis(50));
    }

    for i in 0..NODES {
        lan.partition(i).unwrap();
    }
    let before: Vec<u64> = nodes.iter().map(doc_bytes).collect();
    std::thread::scope(|s| {
        for (i, n) in nodes.iter().enumerate() {
            let url = base(n);
            s.spawn(move || {
                for k in 0..CHANGES_PER_NODE {
                    let code = if k % 10 == 0 {
                        request(
                            "POST",
                            &format!("{url}/append?path=/log"),
                            json!({"node": i, "k": k}).to_string().into_bytes(),
                        )
                    } else {
                        request("POST", &format!("{url}/increment?path=/n"), vec![])
                    };
                    assert_eq!(code, 200);
                }
            });
        }
    });
    let own: Vec<u64> = nodes
        .iter()
        .zip(&before)
        .map(|(n, b)| doc_bytes(n) - b)
        .collect();
    let received_before: Vec<u64> = nodes
        .iter()
        .map(|n| status(n)["state"]["sync_received_bytes"].as_u64().unwrap())
        .collect();

    let healed = Instant::now();
    for i in 0..NODES {
        lan.heal(i).unwrap();
    }
    loop {
        let h: Vec<Value> = nodes.iter().map(|n| heads(n, &doc)).collect();
        if h.iter().all(|x| *x == h[0]) {
            break;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(120),
            "no convergence"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let converged = healed.elapsed().as_secs_f64() * 1000.0;
    let v = get(&base(&nodes[0])).json();
    assert_eq!(v["n"], (NODES * CHANGES_PER_NODE * 9 / 10) as u64, "{v}");
    let total_changes: u64 = own.iter().sum();
    let received: u64 = nodes
        .iter()
        .zip(&received_before)
        .map(|(n, b)| status(n)["state"]["sync_received_bytes"].as_u64().unwrap() - b)
        .sum();
    let ideal = total_changes * (NODES as u64 - 1);
    (converged, total_changes, received, ideal)
}

fn main() {
    if let Err(why) = HomeNat::available() {
        eprintln!("the state benchmark needs network namespaces: {why}");
        std::process::exit(2);
    }
    println!(
        "| run | converged after heal | change bytes (all nodes) | sync bytes received (all nodes) | ideal (each node gets the 4/5 it lacks) | received / ideal |"
    );
    println!("|---|---|---|---|---|---|");
    let mut times = Vec::new();
    let mut ratios = Vec::new();
    for round in 0..3 {
        let (ms, changes, received, ideal) = run_once(round);
        let ratio = received as f64 / ideal as f64;
        println!(
            "| {} | {ms:.0} ms | {changes} | {received} | {ideal} | {ratio:.2} |",
            round + 1
        );
        times.push(ms);
        ratios.push(ratio);
    }
    times.sort_by(f64::total_cmp);
    ratios.sort_by(f64::total_cmp);
    println!(
        "\nmedian: converged {:.0} ms after the heal; received / ideal {:.2}",
        times[1], ratios[1]
    );
}
