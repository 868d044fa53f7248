//! The rules a call follows across real peers (protocol's call attempts), and what
//! happens when a peer bends them: a local refusal is retried like a remote one, a
//! peer cannot make a node forward again by claiming zero hops, a shutting-down node
//! says so and stops offering slots, a restarted node is believed at once, and lies
//! about fuel or error kinds stay contained.

#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::time::Duration;

use kith_tests::cluster::{advert_of, network, penalties, publish, test_peer, wait_until};
use kith_tests::{NodeProcess, get, guest, post};

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");
const PEER: &str = env!("CARGO_BIN_EXE_kith-test-peer");

/// The entry node's own caps are too small for the function (its `timeout_ms` is
/// above the node's `--max-timeout-ms`): that refusal is retried on a peer, exactly as
/// the same refusal from a remote peer is.
#[test]
fn a_local_refusal_over_the_node_caps_is_retried_on_a_peer() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = network(BIN, dir.path(), 2, &[&["--max-timeout-ms", "500"]]);
    let hello = publish(&nodes[0], guest("hello"));
    let r = post(
        &format!("{}/v1/call/{hello}", nodes[0].url),
        b"caps".to_vec(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, b"hello, caps!");
    assert_eq!(
        r.header("kith-executed-by"),
        nodes[1].node_id,
        "the peer with room ran it"
    );
}

/// A peer sends a call claiming it was never forwarded (`hops = 0`) to a gateway that
/// has a capable peer: the gateway must not forward it again (it runs calls from peers
/// itself or refuses them), so a peer cannot bounce calls through its victims.
#[test]
fn a_peer_claiming_zero_hops_cannot_make_a_node_forward() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = network(BIN, dir.path(), 2, &[&["--max-concurrent-calls", "0"]]);
    let gateway = &nodes[0];
    let hello = publish(gateway, guest("hello"));
    // The gateway itself forwards a call of its own to its peer.
    let r = post(&format!("{}/v1/call/{hello}", gateway.url), b"own".to_vec());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("kith-executed-by"), nodes[1].node_id);

    for hops in ["0", "1"] {
        let (_peer, mut out, _) = test_peer(PEER, &["invoke", &gateway.p2p_addr(), &hello, hops]);
        let mut answer = String::new();
        std::io::BufRead::read_line(&mut out, &mut answer).unwrap();
        assert_eq!(
            answer.trim(),
            "busy",
            "a call from a peer claiming hops = {hops} is refused by the gateway, not forwarded"
        );
    }
    assert_eq!(
        nodes[1].status()["remote_calls_served"],
        1,
        "only the gateway's own call reached the peer"
    );
}

/// From SIGTERM on, a node refuses new calls from peers as `shutting_down` (which an
/// entry node retries elsewhere) and advertises no free slot at once, while it lets
/// what is in flight finish.
#[test]
fn a_shutting_down_node_refuses_calls_retryably_and_offers_no_slots() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = network(
        BIN,
        dir.path(),
        3,
        &[
            &["--max-concurrent-calls", "0"],
            &["--max-concurrent-calls", "4"],
        ],
    );
    let (entry, leaving, staying) = (&nodes[0], &nodes[1], &nodes[2]);
    let hello = publish(entry, guest("hello"));
    wait_until(
        Duration::from_secs(10),
        "the entry sees 4 free slots",
        || advert_of(entry, &leaving.node_id).is_some_and(|a| a["free_slots"] == 4),
    );

    // An HTTP request in flight keeps the leaving node in its shutdown (the API
    // finishes open requests): half a request body, sent and left hanging.
    let addr = leaving.url.trim_start_matches("http://").to_owned();
    let mut open = std::net::TcpStream::connect(&addr).unwrap();
    let token = leaving.token().unwrap_or_default();
    write!(
        open,
        "POST /v1/functions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 1000\r\n\r\npartial"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // Its API takes no new connections once shutting down: ask for its address first.
    let leaving_addr = leaving.p2p_addr();
    // SAFETY: kill(2) on our own child process.
    unsafe { libc::kill(leaving.pid() as i32, libc::SIGTERM) };

    wait_until(
        Duration::from_secs(5),
        "the entry learns the leaving node has no free slot",
        || advert_of(entry, &leaving.node_id).is_some_and(|a| a["free_slots"] == 0),
    );
    let (_peer, mut out, _) = test_peer(PEER, &["invoke", &leaving_addr, &hello, "1"]);
    let mut answer = String::new();
    std::io::BufRead::read_line(&mut out, &mut answer).unwrap();
    assert_eq!(answer.trim(), "shutting_down");

    let r = post(&format!("{}/v1/call/{hello}", entry.url), b"later".to_vec());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("kith-executed-by"), staying.node_id);
    drop(open);
}

/// A node restarted with the same identity is believed at once: its new adverts
/// (here: more slots) replace the ones peers remember, although they had higher
/// sequence numbers than a fresh counter would start from.
#[test]
fn a_restarted_node_is_believed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = NodeProcess::start(BIN, &dir.path().join("a"), &["--advert-interval-ms", "500"]);
    let boot = first.p2p_addr();
    let b_dir = dir.path().join("b");
    let start_b = |slots: &str, interval: &str| {
        let flags = [
            "--bootstrap",
            &boot,
            "--advert-interval-ms",
            interval,
            "--max-concurrent-calls",
            slots,
        ];
        NodeProcess::start(BIN, &b_dir, &flags)
    };
    // Many adverts first (one every 100 ms for 3 s), so its sequence number is high.
    let b = start_b("1", "100");
    let b_id = b.node_id.clone();
    wait_until(Duration::from_secs(20), "A hears B", || {
        advert_of(&first, &b_id).is_some()
    });
    std::thread::sleep(Duration::from_secs(3));
    b.kill();

    // Restarted with 3 slots and a slow advert interval.
    let b = start_b("3", "2000");
    assert_eq!(b.node_id, b_id, "same identity");
    wait_until(Duration::from_secs(10), "A believes B's new advert", || {
        advert_of(&first, &b_id).is_some_and(|a| a["max_concurrent"] == 3)
    });
}

/// A peer that advertises itself as a huge idle machine and then lies in its answers:
/// a receipt claiming more fuel than the call's budget is refused (`bad_receipt`, and
/// the peer penalised), and an error kind no kith version knows becomes
/// `remote_error` — in the answer and in /metrics, whose label set stays bounded.
#[test]
fn lies_about_fuel_and_error_kinds_are_contained() {
    let dir = tempfile::tempdir().unwrap();
    let entry = NodeProcess::start(
        BIN,
        &dir.path().join("entry"),
        &["--max-concurrent-calls", "0"],
    );
    let hello = publish(&entry, guest("hello"));
    let liar_ready = |liar: &str| {
        wait_until(Duration::from_secs(20), "the entry hears the liar", || {
            advert_of(&entry, liar).is_some()
        });
    };
    let penalised = |liar: &str| {
        // The penalty reaches the network task's peer book, then its next snapshot.
        wait_until(Duration::from_secs(5), "the liar is penalised", || {
            penalties(&entry, liar) >= 1
        });
    };

    let (liar, _out, liar_id) = test_peer(PEER, &["liar", &entry.p2p_addr(), &hello, "fuel"]);
    liar_ready(&liar_id);
    let r = post(&format!("{}/v1/call/{hello}", entry.url), b"x".to_vec());
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.kind(), "bad_receipt");
    assert!(
        r.message().contains("over the call's budget of 10000000"),
        "{}",
        r.message()
    );
    penalised(&liar_id);
    drop(liar);

    let (_liar, _out, liar_id) = test_peer(PEER, &["liar", &entry.p2p_addr(), &hello, "kind"]);
    liar_ready(&liar_id);
    let r = post(&format!("{}/v1/call/{hello}", entry.url), b"x".to_vec());
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.kind(), "remote_error");
    let metrics = get(&format!("{}/metrics", entry.url)).text();
    assert!(
        metrics.contains("kith_call_errors_total{kind=\"remote_error\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("made-up"), "{metrics}");
    penalised(&liar_id);
}

/// One peer may have at most `max_requests_per_peer` requests in progress on a node:
/// the rest of a burst is answered `busy` at once instead of each waiting in a task of
/// its own, however generous the rate limit.
#[test]
fn a_peer_has_a_bounded_number_of_requests_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(
        BIN,
        &dir.path().join("node"),
        &[
            "--max-concurrent-calls",
            "1",
            "--max-queued-calls",
            "100",
            "--max-requests-per-peer",
            "4",
        ],
    );
    let hostile = publish(&node, guest("hostile"));
    // Each "sleep" call runs until its 2 s timeout, one at a time.
    let (mut flooder, mut out, _) =
        test_peer(PEER, &["flood", &node.p2p_addr(), &hostile, "20", "sleep"]);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let _ = flooder.0.wait();
    let counts: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(counts["busy"], 16, "{counts}");
    assert_eq!(
        counts["other"], 4,
        "the four admitted ran into their timeout: {counts}"
    );
    let hello = publish(&node, guest("hello"));
    let r = post(&format!("{}/v1/call/{hello}", node.url), b"after".to_vec());
    assert_eq!(r.status, 200, "{}", r.text());
}

/// What a node keeps per peer goes when the peer does: a flooding peer's rate-limit
/// bucket is dropped within seconds of it disconnecting (`kith_net_tracked` in
/// /metrics), so peers that come and go cannot grow the node's maps.
#[test]
fn per_peer_state_goes_when_the_peer_does() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(BIN, &dir.path().join("node"), &[]);
    let hello = publish(&node, guest("hello"));
    let tracked = |map: &str| -> u64 {
        let metrics = get(&format!("{}/metrics", node.url)).text();
        let key = format!("kith_net_tracked{{map=\"{map}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {metrics}"))
    };
    let (mut flooder, mut out, _) = test_peer(
        PEER,
        &["flood", &node.p2p_addr(), &hello, "5", "flood", "stay"],
    );
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    // Still connected after its answers: it has a bucket (and is in the book).
    wait_until(Duration::from_secs(5), "a bucket for the flooder", || {
        tracked("invoke_buckets") == 1
    });
    assert!(tracked("peer_book") >= 1);
    flooder.0.kill().unwrap();
    let _ = flooder.0.wait();
    wait_until(
        Duration::from_secs(10),
        "the flooder's bucket is dropped",
        || tracked("invoke_buckets") == 0,
    );
    assert_eq!(tracked("serving"), 0);
}

/// A node holds at most `max_connections` peer connections, of which all but 8 (kept
/// for its own dials) may be incoming: peers beyond that are refused, and the node
/// keeps serving.
#[test]
fn connections_beyond_the_cap_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // 10 in all, 8 reserved for its own dials: 2 incoming.
    let node = NodeProcess::start(BIN, &dir.path().join("node"), &["--max-connections", "10"]);
    let hello = publish(&node, guest("hello"));
    let addr = node.p2p_addr();
    // Peers that stay connected (advertising some other function).
    let other = blake3::hash(b"another function").to_hex().to_string();
    let _peers: Vec<kith_tests::KillOnDrop> = (0..5)
        .map(|_| {
            kith_tests::KillOnDrop(
                std::process::Command::new(PEER)
                    .args(["liar", &addr, &other, "fuel"])
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    wait_until(Duration::from_secs(10), "two peers connected", || {
        node.status()["peers_connected"] == 2
    });
    // They keep trying; the cap holds.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(node.status()["peers_connected"], 2);
    let r = post(&format!("{}/v1/call/{hello}", node.url), b"capped".to_vec());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, b"hello, capped!");
}

/// /metrics counts the bytes of kith's own protocols per protocol and direction: two
/// nodes exchange adverts, and a call placed on the other node shows up as invoke bytes
/// sent at the entry and received at the peer.
#[test]
fn protocol_bytes_are_counted_per_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = network(BIN, dir.path(), 2, &[&["--max-concurrent-calls", "0"]]);
    let (entry, peer) = (&nodes[0], &nodes[1]);
    let counted = |node: &NodeProcess, protocol: &str, direction: &str| -> u64 {
        let metrics = get(&format!("{}/metrics", node.url)).text();
        let key =
            format!("kith_net_bytes_total{{protocol=\"{protocol}\",direction=\"{direction}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {metrics}"))
    };
    wait_until(Duration::from_secs(10), "advert bytes both ways", || {
        counted(peer, "adverts", "sent") > 0 && counted(entry, "adverts", "received") > 0
    });
    let hello = publish(entry, guest("hello"));
    let r = post(
        &format!("{}/v1/call/{hello}", entry.url),
        b"counted".to_vec(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("kith-executed-by"), peer.node_id);
    wait_until(Duration::from_secs(5), "invoke and fetch bytes", || {
        counted(entry, "invoke", "sent") > 0
            && counted(peer, "invoke", "received") > 0
            && counted(peer, "fetch", "received") > 0
            && counted(entry, "fetch", "sent") > 0
    });
}
