//! Several real nodes on 127.0.0.1: functions are fetched by hash from peers and
//! verified, calls are placed on capable peers, and the network survives a node dying.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use kith_tests::cluster::{self, publish};
use kith_tests::relay::DelayRelay;
use kith_tests::{NodeProcess, guest, padded, post};

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");
const PEER: &str = env!("CARGO_BIN_EXE_kith-test-peer");

fn test_peer(
    args: &[&str],
) -> (
    kith_tests::KillOnDrop,
    std::io::BufReader<std::process::ChildStdout>,
    String,
) {
    cluster::test_peer(PEER, args)
}

fn network(dir: &std::path::Path, n: usize, extra: &[&[&str]]) -> Vec<NodeProcess> {
    cluster::network(BIN, dir, n, extra)
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
    // Node 0 has a single call slot and no queue. Nodes 1 and 2 give calls at most
    // 8 MiB of memory, so only node 0 can run `hostile` (16 MiB); `hello` (2 MiB) runs
    // anywhere.
    let small: &[&str] = &["--max-memory-bytes", "8388608"];
    let nodes = network(
        dir.path(),
        3,
        &[
            &["--max-concurrent-calls", "1", "--max-queued-calls", "0"],
            small,
            small,
        ],
    );
    let hostile = publish(&nodes[0], guest("hostile"));
    let hello = publish(&nodes[0], guest("hello"));

    // Fill node 0's only slot with a call that runs for its whole 2 s timeout.
    let slow_node0 = {
        let url0 = format!("{}/v1/call/{hostile}", nodes[0].url);
        std::thread::spawn(move || post(&url0, b"sleep".to_vec()))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while nodes[0].status()["calls_running"] != 1 {
        assert!(
            Instant::now() < deadline,
            "the slow call never started on node 0"
        );
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
    assert_eq!(slow_node0.join().unwrap().kind(), "timeout");

    // Node 1 cannot run `hostile`, so it places the call on node 0. The error the
    // function itself raises there is returned, naming node 0, and not retried.
    let r = post(
        &format!("{}/v1/call/{hostile}", nodes[1].url),
        b"fail".to_vec(),
    );
    assert_eq!(r.kind(), "function_error", "{}", r.json());
    assert_eq!(r.json()["error"]["peer"], nodes[0].node_id.as_str());
    assert_eq!(r.header("kith-executed-by"), nodes[0].node_id);
    assert_eq!(
        nodes[0].status()["calls_failed"],
        2,
        "sleep and fail, both on node 0"
    );
    assert_eq!(
        nodes[2].status()["calls_failed"],
        0,
        "never retried elsewhere"
    );
}

/// A node whose only way in is a relay adding `one_way` of delay in each direction.
/// Returns the node, the relay (keep it alive), and the address to dial.
fn delayed_node(
    dir: &std::path::Path,
    one_way: Duration,
    extra: &[&str],
) -> (NodeProcess, DelayRelay, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let relay = DelayRelay::start(([127, 0, 0, 1], port).into(), one_way);
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let external = format!("/ip4/127.0.0.1/tcp/{}", relay.addr.port());
    let mut flags = vec![
        "--listen",
        listen.as_str(),
        "--external-address",
        external.as_str(),
        "--advert-interval-ms",
        "500",
    ];
    flags.extend_from_slice(extra);
    let node = NodeProcess::start(BIN, dir, &flags);
    let dial = format!("{external}/p2p/{}", node.node_id);
    (node, relay, dial)
}

/// Latency for real: two peers behind delaying relays (RTT about 6 ms and 50 ms) and a
/// gateway entry node that runs nothing itself. Calls go to the near peer, move to the
/// far one while the near one is full, and stay there once the near one dies.
#[test]
fn calls_go_to_the_nearest_capable_peer_and_move_when_it_is_full_or_dies() {
    let dir = tempfile::tempdir().unwrap();
    let (near, _near_relay, near_addr) = delayed_node(
        &dir.path().join("near"),
        Duration::from_millis(3),
        &["--max-concurrent-calls", "1", "--max-queued-calls", "0"],
    );
    // The far peer gives calls at most 8 MiB, so `hostile` (16 MiB) can only run on the
    // near one; `hello` (2 MiB) runs on either.
    let (far, _far_relay, far_addr) = delayed_node(
        &dir.path().join("far"),
        Duration::from_millis(25),
        &["--max-memory-bytes", "8388608"],
    );
    let entry = NodeProcess::start(
        BIN,
        &dir.path().join("entry"),
        &[
            "--max-concurrent-calls",
            "0",
            "--advert-interval-ms",
            "500",
            "--bootstrap",
            &near_addr,
            "--bootstrap",
            &far_addr,
        ],
    );
    let rtt_of = |peers: &[serde_json::Value], id: &str| {
        peers
            .iter()
            .find(|p| p["peer_id"] == id && p["connected"] == true && !p["advert"].is_null())
            .and_then(|p| p["rtt_ms"].as_f64())
    };
    entry.wait_for_peers(Duration::from_secs(30), |peers| {
        rtt_of(peers, &near.node_id).is_some() && rtt_of(peers, &far.node_id).is_some()
    });
    // The delays must really be on the wire; otherwise this test proves nothing.
    let peers = entry.client().get_json("/v1/peers").unwrap();
    let peers = peers.as_array().unwrap();
    let (rtt_near, rtt_far) = (
        rtt_of(peers, &near.node_id).unwrap(),
        rtt_of(peers, &far.node_id).unwrap(),
    );
    assert!(
        rtt_far >= 40.0 && rtt_near < rtt_far - 20.0,
        "relay delays not in effect: near {rtt_near} ms, far {rtt_far} ms"
    );

    let hello = publish(&entry, guest("hello"));
    for i in 0..3 {
        let out = entry
            .client()
            .call_explained(&hello, format!("near {i}").into_bytes())
            .unwrap();
        assert_eq!(
            out.executed_by, near.node_id,
            "call {i} goes to the nearest peer"
        );
        let ranking = out.placement.unwrap();
        let ranking = ranking.as_array().unwrap();
        assert_eq!(
            ranking.len(),
            2,
            "the gateway is not a candidate: {ranking:?}"
        );
        assert_eq!(ranking[0]["peer"], near.node_id.as_str());
        assert!(ranking[0]["rtt_ms"].as_f64() < ranking[1]["rtt_ms"].as_f64());
    }

    // The near peer's only slot is taken: calls move to the far peer meanwhile.
    let hostile = publish(&near, guest("hostile"));
    let slow = {
        let url = format!("{}/v1/call/{hostile}", near.url);
        std::thread::spawn(move || post(&url, b"sleep".to_vec()))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while near.status()["calls_running"] != 1 {
        assert!(
            Instant::now() < deadline,
            "the slow call never started on the near peer"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = entry.client().call(&hello, b"busy".to_vec()).unwrap();
    assert_eq!(out.output, b"hello, busy!");
    assert_eq!(out.executed_by, far.node_id, "a full peer is passed over");
    assert_eq!(slow.join().unwrap().kind(), "timeout");

    // The near peer dies: calls keep succeeding, on the far peer.
    near.kill();
    for i in 0..3 {
        let out = entry
            .client()
            .call(&hello, format!("after {i}").into_bytes())
            .unwrap();
        assert_eq!(out.executed_by, far.node_id);
    }
}

/// A peer that answers a fetch with bytes that do not match the hash is detected before
/// anything is stored or run, penalised, and the next provider (50 ms away) is used.
#[test]
fn a_provider_sending_wrong_bytes_is_penalised_and_another_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let (publisher, _relay, publisher_addr) = delayed_node(
        &dir.path().join("publisher"),
        Duration::from_millis(25),
        &[],
    );
    let id = publish(&publisher, guest("hello"));
    let node = NodeProcess::start(
        BIN,
        &dir.path().join("node"),
        &[
            "--advert-interval-ms",
            "500",
            "--bootstrap",
            &publisher_addr,
        ],
    );
    let measured = |peer: &str| {
        let peer = peer.to_owned();
        move |peers: &[serde_json::Value]| {
            peers
                .iter()
                .any(|p| p["peer_id"] == peer.as_str() && p["rtt_ms"].is_f64())
        }
    };
    node.wait_for_peers(Duration::from_secs(30), measured(&publisher.node_id));
    // The liar is next door, so it is the first provider asked.
    let (mut liar, _out, liar_id) = test_peer(&["lie", &node.p2p_addr(), &id]);
    node.wait_for_peers(Duration::from_secs(10), measured(&liar_id));
    // Its advert claims the module too, so it is a claimant like the publisher.
    node.wait_for_peers(Duration::from_secs(10), |peers| {
        peers
            .iter()
            .any(|p| p["peer_id"] == liar_id.as_str() && !p["advert"].is_null())
    });

    let out = node.client().call(&id, b"honest".to_vec()).unwrap();
    assert_eq!(out.output, b"hello, honest!");
    let peers = node.client().get_json("/v1/peers").unwrap();
    let liar_row = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer_id"] == liar_id.as_str())
        .unwrap();
    assert_eq!(liar_row["penalties"], 1, "the liar was asked and penalised");
    assert!(
        node.log_text()
            .contains("peer sent bytes that do not match the function id")
    );
    let stored = std::fs::read(node.data_dir.join("store/blobs").join(&id)).unwrap();
    assert_eq!(blake3::hash(&stored).to_hex().as_str(), id);
    assert_eq!(node.status()["fetched"], 1);
    let _ = liar.kill();
    let _ = liar.wait();
}

/// A peer that floods invoke requests gets `rate_limited` beyond its rate, while the
/// node keeps serving everyone else.
#[test]
fn a_peer_flooding_invoke_requests_is_rate_limited_while_others_are_served() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(
        BIN,
        &dir.path().join("node"),
        &["--invoke-rate-per-peer", "5"],
    );
    let id = publish(&node, guest("hello"));
    let (mut flooder, mut out, _) = test_peer(&["flood", &node.p2p_addr(), &id, "90"]);
    for i in 0..10 {
        let r = node
            .client()
            .call(&id, format!("user {i}").into_bytes())
            .unwrap();
        assert_eq!(r.output, format!("hello, user {i}!").into_bytes());
    }
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let _ = flooder.wait();
    let counts: serde_json::Value = serde_json::from_str(&line).unwrap();
    let (ok, limited) = (
        counts["ok"].as_u64().unwrap(),
        counts["rate_limited"].as_u64().unwrap(),
    );
    // Burst 20 (4x the rate), then 5 per second.
    assert!((20..=40).contains(&ok), "{counts}");
    assert!(limited >= 50, "{counts}");
    assert_eq!(counts["other"], 0, "{counts}");
    assert!(node.status()["remote_calls_served"].as_u64().unwrap() >= 20);
}

/// The chosen peer hangs (SIGSTOP: its connection stays up, it never answers): after
/// the function's timeout plus a little slack, the entry node gives up on it and the
/// call runs on the next candidate.
#[test]
fn a_chosen_peer_that_hangs_is_skipped_for_the_next_candidate() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--advert-interval-ms", "500"];
    let p1 = NodeProcess::start(BIN, &dir.path().join("p1"), &flags);
    let boot = p1.p2p_addr();
    let p2 = NodeProcess::start(
        BIN,
        &dir.path().join("p2"),
        &["--advert-interval-ms", "500", "--bootstrap", &boot],
    );
    let entry = NodeProcess::start(
        BIN,
        &dir.path().join("entry"),
        &["--max-concurrent-calls", "0", "--bootstrap", &boot],
    );
    entry.wait_for_peers(Duration::from_secs(30), |peers| {
        peers
            .iter()
            .filter(|p| p["connected"] == true && !p["advert"].is_null())
            .count()
            == 2
    });
    let hello = publish(&entry, guest("hello"));
    let first = entry.client().call(&hello, b"one".to_vec()).unwrap();
    // The peer that ran it is now warm; wait until the entry ranks a warm peer first
    // and runs the call there (its advert says warm: no cold start), so it is chosen
    // again; freeze that one. (Usually the first peer; the other when the first call's
    // cold start ran late against its prediction on a loaded machine, and placement
    // charged it for that.)
    let deadline = Instant::now() + Duration::from_secs(10);
    let chosen_id = loop {
        let r = entry
            .client()
            .call_explained(&hello, b"warm?".to_vec())
            .unwrap();
        let ranking = r.placement.unwrap_or_default();
        let warm_first = ranking
            .as_array()
            .and_then(|c| c.first())
            .filter(|c| c["cold_ms"].as_f64() == Some(0.0))
            .and_then(|c| c["peer"].as_str().map(str::to_owned));
        if let Some(peer) = warm_first
            && r.executed_by == peer
        {
            break peer;
        }
        assert!(
            Instant::now() < deadline,
            "no warm peer ranked first: {ranking}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let (chosen, other) = if chosen_id == p1.node_id {
        (&p1, &p2)
    } else {
        (&p2, &p1)
    };
    // SAFETY: sending a signal to a child process we started.
    assert_eq!(unsafe { libc::kill(chosen.pid() as i32, libc::SIGSTOP) }, 0);
    let forwarded = entry.status()["forwarded"].as_u64().unwrap();
    let started = Instant::now();
    let out = entry.client().call(&hello, b"two".to_vec());
    // SAFETY: as above.
    unsafe { libc::kill(chosen.pid() as i32, libc::SIGCONT) };
    let out = out.unwrap();
    assert_eq!(out.output, b"hello, two!");
    assert_eq!(
        out.executed_by,
        other.node_id,
        "call two ran on the frozen peer? entry {}, p1 {}, p2 {}, call one ran on {}; entry log:\n{}",
        entry.node_id,
        p1.node_id,
        p2.node_id,
        first.executed_by,
        entry.log_text()
    );
    assert_eq!(
        entry.status()["forwarded"].as_u64().unwrap() - forwarded,
        2,
        "the frozen peer was tried first, then the other"
    );
    // hello's timeout_ms is 1000; the slack is 5 s.
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(6) && waited < Duration::from_secs(20),
        "{waited:?}"
    );
}

/// A 3 MiB module travels in chunks (12 of 256 KiB), is reassembled, verified and run.
#[test]
fn a_large_module_is_fetched_in_chunks_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = network(dir.path(), 2, &[]);
    let big = padded(&guest("hello"), 3 << 20, 7);
    let id = publish(&nodes[0], big.clone());
    let out = nodes[1].client().call(&id, b"big".to_vec()).unwrap();
    assert_eq!(out.output, b"hello, big!");
    assert_eq!(nodes[1].status()["fetched"], 1);
    assert_eq!(
        nodes[0].status()["fetches_served"],
        1,
        "one module, counted once"
    );
    let stored = std::fs::read(nodes[1].data_dir.join("store/blobs").join(&id)).unwrap();
    assert_eq!(stored, big);
}

/// Settings can come from a TOML file (`--config`), bootstrap peers included; flags
/// override it; a bad file is refused naming the file, the key and the line.
#[test]
fn a_config_file_sets_bootstrap_peers_and_bad_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = NodeProcess::start(BIN, &dir.path().join("a"), &["--advert-interval-ms", "500"]);
    let file = dir.path().join("b.toml");
    std::fs::write(
        &file,
        format!(
            "# node b\nbootstrap = [\"{}\"]\nadvert_interval_ms = 500\nmax_queued_calls = 7\n",
            a.p2p_addr()
        ),
    )
    .unwrap();
    let config = file.to_str().unwrap();
    let b = NodeProcess::start(BIN, &dir.path().join("b"), &["--config", config]);
    b.wait_for_peers(Duration::from_secs(30), |peers| {
        peers
            .iter()
            .any(|p| p["peer_id"] == a.node_id.as_str() && p["connected"] == true)
    });
    let hello = publish(&a, guest("hello"));
    let out = b.client().call(&hello, b"file".to_vec()).unwrap();
    assert_eq!(out.output, b"hello, file!");

    let bad = |text: &str| {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(BIN)
            .args(["up", "--http", "127.0.0.1:0", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{text:?} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = bad("max_queued_calls = 7\nbootstrapp = []\n");
    assert!(
        err.contains("bad.toml") && err.contains("bootstrapp") && err.contains("line 2"),
        "{err}"
    );
    let err = bad("bootstrap = [\"not an address\"]\n");
    assert!(
        err.contains("bootstrap") && err.contains("not a multiaddr"),
        "{err}"
    );
    let err = bad("cpu_share = 3.0\n");
    assert!(
        err.contains("bad.toml")
            && err.contains("cpu_share: must be above 0 and at most 1 (got 3)"),
        "{err}"
    );
}

/// A node advertises at once (not at its next periodic advert) that a function became
/// warm there, so peers place calls on the warm copy right away.
#[test]
fn peers_learn_at_once_that_a_function_is_warm() {
    let dir = tempfile::tempdir().unwrap();
    let slow = ["--advert-interval-ms", "5000"];
    let a = NodeProcess::start(BIN, &dir.path().join("a"), &slow);
    let boot = a.p2p_addr();
    // b gives calls at most 1 MiB, so it never runs hello (2 MiB) itself: every hello
    // call runs on a, and b's ranking shows what a's advert says.
    let b = NodeProcess::start(
        BIN,
        &dir.path().join("b"),
        &[
            "--advert-interval-ms",
            "5000",
            "--max-memory-bytes",
            "1048576",
            "--bootstrap",
            &boot,
        ],
    );
    b.wait_for_peers(Duration::from_secs(30), |peers| {
        peers
            .iter()
            .any(|p| p["peer_id"] == a.node_id.as_str() && !p["advert"].is_null())
    });
    let hello = publish(&a, guest("hello"));
    let warm = a.client().call(&hello, b"warm".to_vec()).unwrap();
    assert_eq!(warm.executed_by, a.node_id);
    std::thread::sleep(Duration::from_millis(1500));
    let out = b
        .client()
        .call_explained(&hello, b"where".to_vec())
        .unwrap();
    let ranking = out.placement.unwrap();
    let a_row = ranking
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["peer"] == a.node_id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(
        a_row["cold_ms"], 0.0,
        "a's advert says hello is warm: {ranking}"
    );
    assert_eq!(out.executed_by, a.node_id);
}
