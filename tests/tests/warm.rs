//! Who near here has a function warm, across real processes: a node whose neighbours
//! have nothing warm asks them (`FindWarm` on `/kith/hood/1`), holds the call for the
//! answer, and places it on the peer named — a peer it had never heard of, checked by
//! the advert that peer signed. An answer naming a forged advert is refused and its
//! sender penalised; the call loses nothing.

#![allow(clippy::unwrap_used)]

use std::io::BufRead as _;
use std::time::{Duration, Instant};

use kith_tests::cluster::{network, publish, test_peer};
use kith_tests::{NodeProcess, get, guest, post};

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");
const PEER: &str = env!("CARGO_BIN_EXE_kith-test-peer");

fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `node`'s peers (`GET /v1/peers`).
fn peers(node: &NodeProcess) -> Vec<serde_json::Value> {
    get(&format!("{}/v1/peers", node.url))
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn holds_advert_of(node: &NodeProcess, peer: &str) -> bool {
    peers(node)
        .iter()
        .any(|p| p["peer_id"] == peer && !p["advert"].is_null())
}

/// `kith_warm_total{event=...}` on `node`'s /metrics.
fn warm_metric(node: &NodeProcess, event: &str) -> u64 {
    let metrics = get(&format!("{}/metrics", node.url)).text();
    let key = format!("kith_warm_total{{event=\"{event}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The entry is a gateway (it runs nothing itself) whose only neighbour is full and
/// has nothing warm: without the warm answer there is nowhere to run the call. Its
/// neighbour answers naming C — a node the entry has never been connected to, with
/// the function warm — and the call runs on C.
#[test]
fn a_call_is_held_for_the_warm_answer_and_runs_on_the_peer_named() {
    let dir = tempfile::tempdir().unwrap();
    let c = NodeProcess::start(BIN, &dir.path().join("c"), &[]);
    let hello = publish(&c, guest("hello"));
    let r = post(&format!("{}/v1/call/{hello}", c.url), b"c".to_vec());
    assert_eq!(r.status, 200, "{}", r.text());
    let entry = NodeProcess::start(
        BIN,
        &dir.path().join("entry"),
        &["--max-concurrent-calls", "0"],
    );
    assert_eq!(publish(&entry, guest("hello")), hello);
    // The neighbour subscribes to C, and is ready once C's advert has hello warm.
    let (_t, mut out, t_id) = test_peer(PEER, &["warm", &entry.p2p_addr(), &hello, &c.p2p_addr()]);
    wait_until(
        Duration::from_secs(20),
        "the entry hears its neighbour",
        || holds_advert_of(&entry, &t_id),
    );
    assert!(
        !peers(&entry)
            .iter()
            .any(|p| p["peer_id"] == c.node_id.as_str()),
        "the entry knows nothing of C yet: {:?}",
        peers(&entry)
    );

    let r = post(&format!("{}/v1/call/{hello}", entry.url), b"warm".to_vec());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, b"hello, warm!");
    assert_eq!(
        r.header("kith-executed-by"),
        c.node_id,
        "ran on the peer named"
    );
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "asked", "the entry asked its neighbour");
    wait_until(Duration::from_secs(5), "the held call counted", || {
        warm_metric(&entry, "held") >= 1 && warm_metric(&entry, "released_found") >= 1
    });
    assert_eq!(warm_metric(&entry, "questions"), 1);
    // The next call finds the answer cached (and C linked): no second question.
    let r = post(&format!("{}/v1/call/{hello}", entry.url), b"again".to_vec());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("kith-executed-by"), c.node_id);
    assert_eq!(warm_metric(&entry, "questions"), 1);
}

/// A neighbour answers with an advert it signed itself for a peer it names: the entry
/// (a gateway) refuses it and penalises the neighbour, and the call runs on its other,
/// honest neighbour (cold: nobody had it warm).
#[test]
fn a_forged_warm_answer_is_refused_and_its_sender_penalised() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = network(BIN, dir.path(), 2, &[&["--max-concurrent-calls", "0"]]);
    let (entry, honest) = (&nodes[0], &nodes[1]);
    let hello = publish(entry, guest("hello"));
    let (_t, mut out, t_id) = test_peer(PEER, &["warm", &entry.p2p_addr(), &hello, "forged"]);
    wait_until(
        Duration::from_secs(20),
        "the entry hears its neighbour",
        || holds_advert_of(entry, &t_id),
    );
    let r = post(&format!("{}/v1/call/{hello}", entry.url), b"x".to_vec());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, b"hello, x!");
    assert_eq!(r.header("kith-executed-by"), honest.node_id);
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "asked");
    wait_until(Duration::from_secs(5), "the forger is penalised", || {
        peers(entry)
            .iter()
            .any(|p| p["peer_id"] == t_id.as_str() && p["penalties"].as_u64().unwrap_or(0) >= 1)
    });
    assert_eq!(warm_metric(entry, "released_found"), 0, "nobody was found");
    assert!(
        !peers(entry)
            .iter()
            .any(|p| p["peer_id"] != t_id.as_str() && p["peer_id"] != honest.node_id.as_str()),
        "the peer the forged advert named was never taken in"
    );
}
