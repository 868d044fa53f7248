//! Several real nodes on 127.0.0.1: functions are fetched by hash from peers and
//! verified, calls are placed on capable peers, and the network survives a node dying.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use kith_tests::{NodeProcess, guest, post};

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");

/// Starts `n` nodes: the first alone, the rest bootstrapping from it; waits until every
/// node has an advert from every other.
fn network(dir: &std::path::Path, n: usize, extra: &[&[&str]]) -> Vec<NodeProcess> {
    let no_extra: &[&str] = &[];
    let flags = |i: usize| -> Vec<String> {
        let mut v = vec!["--advert-interval-ms".to_owned(), "500".to_owned()];
        v.extend(
            extra
                .get(i)
                .copied()
                .unwrap_or(no_extra)
                .iter()
                .map(|s| (*s).to_owned()),
        );
        v
    };
    let first_flags = flags(0);
    let first_refs: Vec<&str> = first_flags.iter().map(String::as_str).collect();
    let first = NodeProcess::start(BIN, &dir.join("node0"), &first_refs);
    let boot = first.p2p_addr();
    let mut nodes = vec![first];
    for i in 1..n {
        let mut f = flags(i);
        f.extend(["--bootstrap".to_owned(), boot.clone()]);
        let refs: Vec<&str> = f.iter().map(String::as_str).collect();
        nodes.push(NodeProcess::start(
            BIN,
            &dir.join(format!("node{i}")),
            &refs,
        ));
    }
    for node in &nodes {
        node.wait_for_peers(Duration::from_secs(30), |peers| {
            peers
                .iter()
                .filter(|p| p["connected"] == true && !p["advert"].is_null())
                .count()
                >= n - 1
        });
    }
    nodes
}

fn publish(node: &NodeProcess, bytes: Vec<u8>) -> String {
    let r = post(&format!("{}/v1/functions", node.url), bytes);
    assert!(r.status == 201 || r.status == 200, "{:?}", r.json());
    r.json()["id"].as_str().unwrap().to_owned()
}

#[test]
fn a_function_published_on_one_node_runs_on_nodes_that_never_saw_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = network(dir.path(), 5, &[]);
    let id = publish(&nodes[0], guest("hello"));

    // Node 1 never saw the function: it fetches it by hash, verifies it, and the call
    // succeeds.
    let out = nodes[1].client().call(&id, b"five nodes".to_vec()).unwrap();
    assert_eq!(out.output, b"hello, five nodes!");
    let s1 = nodes[1].status();
    assert_eq!(s1["fetched"], 1, "node 1 fetched the module from a peer");
    assert_eq!(s1["functions_stored"], 1);
    let stored = std::fs::read(nodes[1].data_dir.join("store/blobs").join(&id)).unwrap();
    assert_eq!(
        blake3::hash(&stored).to_hex().as_str(),
        id,
        "the fetched bytes match the hash"
    );
    assert!(nodes[1].log_text().contains("fetched and verified"));
    let served: u64 = nodes
        .iter()
        .map(|n| n.status()["fetches_served"].as_u64().unwrap())
        .sum();
    assert!(served >= 1);

    // Kill the publisher outright: later calls elsewhere still succeed.
    let publisher = nodes.remove(0);
    publisher.kill();
    for (i, node) in nodes.iter().enumerate() {
        let out = node
            .client()
            .call(&id, format!("after {i}").into_bytes())
            .unwrap();
        assert_eq!(out.output, format!("hello, after {i}!").into_bytes());
    }
    // Nodes 2..4 got it from someone other than the dead publisher.
    for node in &nodes[1..] {
        assert_eq!(node.status()["fetched"], 1);
    }
}

#[test]
fn a_busy_node_places_calls_on_a_peer_and_says_who_ran_them() {
    let dir = tempfile::tempdir().unwrap();
    // Node 0 has a single call slot and no queue.
    let nodes = network(
        dir.path(),
        3,
        &[&["--max-concurrent-calls", "1", "--max-queued-calls", "0"]],
    );
    let hostile = publish(&nodes[0], guest("hostile"));
    let hello = publish(&nodes[0], guest("hello"));
    // Warm node 0 up so it is the obvious choice for both functions.
    let local = nodes[0].client().call(&hello, b"warm".to_vec()).unwrap();
    assert_eq!(local.executed_by, nodes[0].node_id);
    let r = post(
        &format!("{}/v1/call/{hostile}", nodes[0].url),
        b"fail".to_vec(),
    );
    assert_eq!(r.kind(), "function_error");
    assert_eq!(nodes[0].status()["calls_failed"], 1, "node 0 ran it itself");

    // Fill node 0's only slot with a call that runs for its whole 2 s timeout.
    let url = format!("{}/v1/call/{hostile}", nodes[2].url);
    let slow_node0 = {
        let url0 = format!("{}/v1/call/{hostile}", nodes[0].url);
        std::thread::spawn(move || post(&url0, b"sleep".to_vec()))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while nodes[0].status()["calls_running"] != 1 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = nodes[0]
        .client()
        .call_explained(&hello, b"elsewhere".to_vec())
        .unwrap();
    assert_eq!(out.output, b"hello, elsewhere!");
    assert_ne!(
        out.executed_by, nodes[0].node_id,
        "the busy node forwarded the call"
    );
    assert!(nodes.iter().any(|n| n.node_id == out.executed_by));
    let ranking = out.placement.unwrap();
    let ranking = ranking.as_array().unwrap();
    assert!(ranking.len() >= 2, "{ranking:?}");
    assert!(
        ranking
            .iter()
            .all(|c| c["total_ms"].as_f64().is_some() && c["peer"].is_string())
    );
    assert!(nodes[0].status()["forwarded"].as_u64().unwrap() >= 1);
    let _ = slow_node0.join();
    drop(url);

    // An error raised by the function itself is returned, not retried elsewhere.
    let r = post(
        &format!("{}/v1/call/{hostile}", nodes[1].url),
        b"fail".to_vec(),
    );
    assert_eq!(r.kind(), "function_error");
    let served: u64 = nodes
        .iter()
        .map(|n| n.status()["calls_failed"].as_u64().unwrap())
        .sum();
    assert!(served >= 1);
}
