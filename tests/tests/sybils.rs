//! Sybil bounds by network (issue 16): identities are free, addresses are not. One
//! host brings five peer ids to a node that allows two peers per /24; the node keeps
//! two connected and closes the others' connections as they open. Real namespaces
//! (tests/src/netns.rs: loopback is exempt from the cap, so the peers need an address
//! of their own).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use kith_tests::cluster::test_peer_from;
use kith_tests::netns::{HomeNat, Lan};
use kith_tests::{NodeProcess, get, guest, post};

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");
const PEER: &str = env!("CARGO_BIN_EXE_kith-test-peer");

/// Connected peers of `node` whose address is on `ip`.
fn connected_from(node: &NodeProcess, ip: &str) -> usize {
    let peers = get(&format!("{}/v1/peers", node.url)).json();
    peers
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["connected"] == true
                && p["address"]
                    .as_str()
                    .is_some_and(|a| a.starts_with(&format!("/ip4/{ip}/")))
        })
        .count()
}

#[test]
fn one_host_gets_at_most_max_peers_per_subnet_connections() {
    HomeNat::available().expect("network namespaces (root, ip, iptables)");
    let lan = Lan::create(2).expect("build the network");
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start_in_netns(
        &lan.hosts[0],
        &lan.ip(0),
        BIN,
        &dir.path().join("node"),
        &[
            "--listen",
            "/ip4/0.0.0.0/tcp/7081",
            "--max-peers-per-subnet",
            "2",
        ],
    );
    let hello = {
        let r = post(&format!("{}/v1/functions", node.url), guest("hello"));
        assert!(r.status == 201 || r.status == 200, "{}", r.text());
        r.json()["id"].as_str().unwrap().to_owned()
    };
    let target = format!("/ip4/{}/tcp/7081/p2p/{}", lan.ip(0), node.node_id);
    let mut sybils = Vec::new();
    for _ in 0..5 {
        // Connects, says ready, sends nothing and stays.
        sybils.push(test_peer_from(
            HomeNat::command(&lan.hosts[1], PEER),
            &["flood", &target, &hello, "0", "x", "stay"],
        ));
        std::thread::sleep(Duration::from_millis(200));
    }
    // Let every dial land and every close be seen.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut most = 0;
    while Instant::now() < deadline {
        let n = connected_from(&node, &lan.ip(1));
        most = most.max(n);
        assert!(n <= 2, "{n} peers of one /24 connected; the cap is 2");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(most, 2, "the first two peers of the subnet are kept");
    assert!(
        node.log_text().contains("max_peers_per_subnet"),
        "the log names the limit"
    );
}
