//! Deployless routing: publisher keys and signed aliases across real nodes.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use kith_protocol::FunctionId;
use kith_protocol::alias::{Alias, Namespace, Record, Target};
use kith_tests::{NodeProcess, get, guest, post};
use libp2p::identity::ed25519;

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");
/// An input both test functions accept (hello greets anything; json_transform wants
/// an order).
const INPUT: &str = r#"{"items":[]}"#;

fn network(dir: &std::path::Path, n: usize, extra: &[&[&str]]) -> Vec<NodeProcess> {
    let flags = |i: usize| -> Vec<&str> {
        let mut v = vec!["--advert-interval-ms", "500"];
        v.extend(extra.get(i).copied().unwrap_or(&[]));
        v
    };
    let first = NodeProcess::start(BIN, &dir.join("node0"), &flags(0));
    let boot = first.p2p_addr();
    let mut nodes = vec![first];
    for i in 1..n {
        let mut f = flags(i);
        f.extend(["--bootstrap", boot.as_str()]);
        nodes.push(NodeProcess::start(BIN, &dir.join(format!("node{i}")), &f));
    }
    for node in &nodes {
        node.wait_for_peers(Duration::from_secs(30), |peers| {
            peers.iter().filter(|p| p["connected"] == true).count() >= 1
        });
    }
    // Gossip meshes form within a few heartbeats (500 ms).
    std::thread::sleep(Duration::from_secs(2));
    nodes
}

/// `seq` and function an alias resolves to on `node` (for `key`), if known.
fn resolve(node: &NodeProcess, reference: &str, key: &str) -> Option<(u64, String)> {
    let r = get(&format!(
        "{}/v1/aliases/{reference}/resolve?key={key}",
        node.url
    ));
    (r.status == 200).then(|| {
        let v = r.json();
        (
            v["seq"].as_u64().unwrap(),
            v["function"].as_str().unwrap().to_owned(),
        )
    })
}

/// Waits until every node resolves `reference` to record `seq`; returns the time the
/// slowest took.
fn wait_all(nodes: &[NodeProcess], reference: &str, seq: u64) -> Duration {
    let start = Instant::now();
    for node in nodes {
        loop {
            if resolve(node, reference, "probe").is_some_and(|(s, _)| s == seq) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{} never saw record {seq} of {reference}; log:\n{}",
                node.url,
                node.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    start.elapsed()
}

fn put_json(url: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let r = reqwest::blocking::Client::new()
        .put(url)
        .json(body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(serde_json::Value::Null))
}

fn post_json(url: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let r = post(url, serde_json::to_vec(body).unwrap());
    let v = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
    (r.status, v)
}

fn targets(t: &[(&str, u32)]) -> serde_json::Value {
    serde_json::json!({
        "targets": t.iter().map(|(f, w)| serde_json::json!({"function": f, "weight": w})).collect::<Vec<_>>()
    })
}

/// Calls `reference` on `node`; returns the function that ran (`kith-function`).
fn call(node: &NodeProcess, reference: &str, key: Option<&str>) -> String {
    let client = reqwest::blocking::Client::new();
    let mut req = client
        .post(format!("{}/v1/call/{reference}", node.url))
        .body(INPUT);
    if let Some(k) = key {
        req = req.header("kith-route-key", k);
    }
    let r = req.send().unwrap();
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text());
    r.headers()["kith-function"].to_str().unwrap().to_owned()
}

#[test]
fn five_nodes_follow_set_split_promote_and_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = network(dir.path(), 5, &[]);
    let n0 = &nodes[0];
    let (status, key) = post_json(
        &format!("{}/v1/keys", n0.url),
        &serde_json::json!({"name": "me"}),
    );
    assert_eq!(status, 201, "{key}");
    let ns = key["namespace"].as_str().unwrap().to_owned();
    let h1 = n0.client().publish(guest("hello")).unwrap().id;
    let h2 = n0.client().publish(guest("json_transform")).unwrap().id;
    let staging = format!("{ns}/app@staging");
    let prod = format!("{ns}/app@prod");
    let mut times = Vec::new();

    // Set staging (by petname on the owning node), promote it to prod.
    let (s, _) = put_json(
        &format!("{}/v1/aliases/me/app@staging", n0.url),
        &targets(&[(&h1, 1)]),
    );
    assert_eq!(s, 200);
    let (s, v) = post_json(
        &format!("{}/v1/aliases/me/app@prod/promote", n0.url),
        &serde_json::json!({"from": "me/app@staging"}),
    );
    assert_eq!(s, 200, "{v}");
    times.push(wait_all(&nodes, &prod, 1));
    assert_eq!(
        call(&nodes[3], &prod, None),
        h1,
        "prod routes to the promoted hash"
    );

    // Canary: 90/10 split.
    let (s, _) = put_json(
        &format!("{}/v1/aliases/{prod}", n0.url),
        &targets(&[(&h1, 90), (&h2, 10)]),
    );
    assert_eq!(s, 200);
    times.push(wait_all(&nodes, &prod, 2));
    // 10,000 real calls on another node, no routing key: 10% ± 1 point to the canary.
    let caller = &nodes[2];
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (url, prod, h2) = (caller.url.clone(), prod.clone(), h2.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                let mut canary = 0;
                for _ in 0..2_500 {
                    let r = client
                        .post(format!("{url}/v1/call/{prod}"))
                        .body(INPUT)
                        .send()
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 200);
                    if r.headers()["kith-function"].to_str().unwrap() == h2 {
                        canary += 1;
                    }
                }
                canary
            })
        })
        .collect();
    let canary: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let share = canary as f64 / 10_000.0;
    assert!((share - 0.10).abs() <= 0.01, "canary got {share} of calls");
    // A routing key sticks to one version, and every node agrees which.
    for user in ["alice", "bob", "carol", "dave"] {
        let first = call(&nodes[1], &prod, Some(user));
        for node in &nodes {
            assert_eq!(call(node, &prod, Some(user)), first, "{user} moved");
        }
    }

    // Roll back: prod points at h1 alone again, everywhere.
    let (s, v) = post_json(
        &format!("{}/v1/aliases/{prod}/rollback", n0.url),
        &serde_json::json!({}),
    );
    assert_eq!(s, 200, "{v}");
    times.push(wait_all(&nodes, &prod, 3));
    for node in &nodes[1..] {
        assert_eq!(resolve(node, &prod, "x").unwrap().1, h1);
        assert_eq!(call(node, &prod, Some("alice")), h1);
    }
    // History is kept, on every node.
    for node in &nodes {
        let h = get(&format!("{}/v1/aliases/{prod}/history", node.url)).json();
        let seqs: Vec<u64> = h
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, [1, 2, 3], "{}", node.url);
    }
    // Only the key's node can move the alias.
    let (s, v) = put_json(
        &format!("{}/v1/aliases/{prod}", nodes[4].url),
        &targets(&[(&h2, 1)]),
    );
    assert_eq!(s, 403, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("no key"));
    assert_eq!(resolve(&nodes[4], &staging, "x").unwrap().1, h1);
    eprintln!("alias propagation to all 5 nodes: {times:?}");
    for t in times {
        assert!(t < Duration::from_secs(10), "propagation took {t:?}");
    }
}

fn forge(
    namespace: Namespace,
    signer: &ed25519::Keypair,
    channel: &str,
    seq: u64,
    function: &str,
) -> Vec<u8> {
    Record {
        alias: Alias::new(namespace, "app", channel).unwrap(),
        seq,
        issued_ms: 0,
        verify: 1,
        targets: vec![Target {
            function: function.parse::<FunctionId>().unwrap(),
            weight: 1,
        }],
    }
    .sign(|m| signer.sign(m).try_into().unwrap())
    .unwrap()
    .bytes
}

#[test]
fn forged_and_replayed_records_change_nothing_and_conflicts_resolve_identically() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = network(dir.path(), 3, &[]);
    let n0 = &nodes[0];
    let (_, key) = post_json(
        &format!("{}/v1/keys", n0.url),
        &serde_json::json!({"name": "me"}),
    );
    let ns_text = key["namespace"].as_str().unwrap().to_owned();
    let ns: Namespace = ns_text.parse().unwrap();
    let h1 = n0.client().publish(guest("hello")).unwrap().id;
    let h2 = n0.client().publish(guest("json_transform")).unwrap().id;
    let prod = format!("{ns_text}/app@prod");
    let (_, first) = put_json(
        &format!("{}/v1/aliases/{prod}", n0.url),
        &targets(&[(&h2, 1)]),
    );
    put_json(
        &format!("{}/v1/aliases/{prod}", n0.url),
        &targets(&[(&h1, 1)]),
    );
    wait_all(&nodes, &prod, 2);

    // A record for our namespace signed by another key: refused, with the reason.
    let intruder = ed25519::Keypair::generate();
    let forged = forge(ns, &intruder, "prod", 99, &h2);
    let r = post(&format!("{}/v1/aliases/records", nodes[1].url), forged);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.kind(), "bad_record");
    assert!(r.message().contains("signature"), "{}", r.message());
    // A replay of the old record: known, changes nothing.
    let old = hex::decode(first["signed"].as_str().unwrap()).unwrap();
    let r = post(&format!("{}/v1/aliases/records", nodes[2].url), old);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["applied"], "duplicate");
    // Garbage.
    let r = post(
        &format!("{}/v1/aliases/records", nodes[2].url),
        vec![7u8; 300],
    );
    assert_eq!(r.status, 400, "{}", r.text());
    std::thread::sleep(Duration::from_secs(2));
    for node in &nodes {
        assert_eq!(
            resolve(node, &prod, "x"),
            Some((2, h1.clone())),
            "{}",
            node.url
        );
        let h = get(&format!("{}/v1/aliases/{prod}/history", node.url)).json();
        assert_eq!(
            h.as_array().unwrap().len(),
            2,
            "a refused record entered the history"
        );
    }

    // Two different records with the same sequence number, signed by the namespace's
    // own key (one outside any node), sent to two different nodes at once.
    let publisher = ed25519::Keypair::generate();
    let other_ns = Namespace(publisher.public().to_bytes());
    let a = forge(other_ns, &publisher, "prod", 7, &h1);
    let b = forge(other_ns, &publisher, "prod", 7, &h2);
    let winner = if blake3::hash(&a).as_bytes() > blake3::hash(&b).as_bytes() {
        &h1
    } else {
        &h2
    };
    let (url_a, url_b) = (nodes[0].url.clone(), nodes[2].url.clone());
    let ta = std::thread::spawn(move || post(&format!("{url_a}/v1/aliases/records"), a).status);
    let tb = std::thread::spawn(move || post(&format!("{url_b}/v1/aliases/records"), b).status);
    assert_eq!((ta.join().unwrap(), tb.join().unwrap()), (200, 200));
    let conflicted = format!("{other_ns}/app@prod");
    let deadline = Instant::now() + Duration::from_secs(20);
    for node in &nodes {
        loop {
            let h = get(&format!("{}/v1/aliases/{conflicted}/history", node.url));
            if h.status == 200 && h.json().as_array().unwrap().len() == 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} never got both records",
                node.url
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            resolve(node, &conflicted, "x").unwrap(),
            (7, winner.clone()),
            "{}",
            node.url
        );
    }
}

#[test]
fn a_trusted_only_node_runs_only_what_trusted_aliases_point_at() {
    let dir = tempfile::tempdir().unwrap();
    // node0: a gateway that holds the publisher key and runs nothing itself.
    let gateway = NodeProcess::start(
        BIN,
        &dir.path().join("gateway"),
        &["--max-concurrent-calls", "0", "--advert-interval-ms", "500"],
    );
    let (_, key) = post_json(
        &format!("{}/v1/keys", gateway.url),
        &serde_json::json!({"name": "me"}),
    );
    let ns = key["namespace"].as_str().unwrap().to_owned();
    let boot = gateway.p2p_addr();
    let worker = NodeProcess::start(
        BIN,
        &dir.path().join("worker"),
        &[
            "--bootstrap",
            &boot,
            "--trust",
            &ns,
            "--trusted-only",
            "--advert-interval-ms",
            "500",
        ],
    );
    gateway.wait_for_peers(Duration::from_secs(30), |p| {
        p.iter()
            .any(|p| p["connected"] == true && !p["advert"].is_null())
    });
    std::thread::sleep(Duration::from_secs(2));
    let h1 = gateway.client().publish(guest("hello")).unwrap().id;
    let h2 = gateway
        .client()
        .publish(guest("json_transform"))
        .unwrap()
        .id;
    let prod = format!("{ns}/app@prod");
    put_json(
        &format!("{}/v1/aliases/{prod}", gateway.url),
        &targets(&[(&h1, 1)]),
    );
    wait_all(std::slice::from_ref(&worker), &prod, 1);
    // h2 by hash: the only node that could run it refuses, naming the policy.
    let r = post(
        &format!("{}/v1/call/{h2}", gateway.url),
        INPUT.as_bytes().to_vec(),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.kind(), "untrusted");
    assert!(r.message().contains("trusted"), "{}", r.message());
    // h1 through the trusted alias runs on the worker.
    let r = post(
        &format!("{}/v1/call/{prod}", gateway.url),
        INPUT.as_bytes().to_vec(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("kith-executed-by"), worker.node_id);
    // Move the alias to h2: now h2 runs, and h1 no longer does.
    put_json(
        &format!("{}/v1/aliases/{prod}", gateway.url),
        &targets(&[(&h2, 1)]),
    );
    wait_all(std::slice::from_ref(&worker), &prod, 2);
    let r = post(
        &format!("{}/v1/call/{h2}", gateway.url),
        INPUT.as_bytes().to_vec(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post(
        &format!("{}/v1/call/{h1}", gateway.url),
        INPUT.as_bytes().to_vec(),
    );
    assert_eq!(r.status, 403, "{}", r.text());
}

#[test]
fn aliases_survive_a_kill_and_a_torn_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let node = NodeProcess::start(BIN, &data, &["--offline"]);
    let (_, key) = post_json(
        &format!("{}/v1/keys", node.url),
        &serde_json::json!({"name": "me"}),
    );
    let ns = key["namespace"].as_str().unwrap().to_owned();
    let key_file = data.join("keys/me.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
    }
    let h1 = node.client().publish(guest("hello")).unwrap().id;
    let h2 = node.client().publish(guest("json_transform")).unwrap().id;
    for (i, h) in [&h1, &h2, &h1].into_iter().enumerate() {
        let (s, v) = put_json(
            &format!("{}/v1/aliases/me/app@ch{i}", node.url),
            &targets(&[(h, 1)]),
        );
        assert_eq!(s, 200, "{v}");
    }
    // Acknowledged, then SIGKILL.
    node.kill();
    // A torn write at the end of the log.
    let log = data.join("aliases.log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(&[200, 1, 1, 2, 3]);
    std::fs::write(&log, &bytes).unwrap();
    let node = NodeProcess::start(BIN, &data, &["--offline"]);
    for (i, h) in [&h1, &h2, &h1].into_iter().enumerate() {
        assert_eq!(
            resolve(&node, &format!("{ns}/app@ch{i}"), "k"),
            Some((1, h.clone()))
        );
    }
    assert!(node.log_text().contains("torn or corrupted tail"));
    // The key came back too: the node can still move its aliases.
    let (s, v) = put_json(
        &format!("{}/v1/aliases/me/app@ch0", node.url),
        &targets(&[(&h2, 1)]),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["seq"], 2);
    // Bad references and targets get clear errors.
    let (s, v) = put_json(
        &format!("{}/v1/aliases/me/App@prod", node.url),
        &targets(&[(&h1, 1)]),
    );
    assert_eq!(s, 400, "{v}");
    let (s, v) = put_json(
        &format!("{}/v1/aliases/nobody/app@prod", node.url),
        &targets(&[(&h1, 1)]),
    );
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("kith key list")
    );
    let (s, v) = put_json(
        &format!("{}/v1/aliases/me/app@prod", node.url),
        &targets(&[(&h1, 0)]),
    );
    assert_eq!(s, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("weight"));
    let r = get(&format!("{}/v1/aliases/me/app@nothing", node.url));
    assert_eq!(r.status, 404);
}

#[test]
fn a_peer_gossiping_a_forged_record_is_ignored_and_penalised() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(BIN, &dir.path().join("node"), &[]);
    let (_, key) = post_json(
        &format!("{}/v1/keys", node.url),
        &serde_json::json!({"name": "me"}),
    );
    let ns_text = key["namespace"].as_str().unwrap().to_owned();
    let ns: Namespace = ns_text.parse().unwrap();
    let h1 = node.client().publish(guest("hello")).unwrap().id;
    let h2 = node.client().publish(guest("json_transform")).unwrap().id;
    let prod = format!("{ns_text}/app@prod");
    put_json(
        &format!("{}/v1/aliases/me/app@prod", node.url),
        &targets(&[(&h1, 1)]),
    );
    // A real libp2p peer announces (gossip) and serves (sync) a record for our
    // namespace, signed by its own key, pointing prod elsewhere with a higher number.
    let forged = forge(ns, &ed25519::Keypair::generate(), "prod", 1_000, &h2);
    let mut peer = kith_tests::KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_kith-test-peer"))
            .args(["forge", &node.p2p_addr(), &hex::encode(&forged)])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut out = std::io::BufReader::new(peer.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let peer_id = line.trim().strip_prefix("ready ").unwrap().to_owned();
    // Wait until the node has seen both the gossip and the sync answer.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = node.log_text();
        if log.contains("alias record refused") && log.contains("do not verify") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "forgery never reached the node:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(resolve(&node, &prod, "x"), Some((1, h1.clone())));
    let h = get(&format!("{}/v1/aliases/{prod}/history", node.url)).json();
    assert_eq!(h.as_array().unwrap().len(), 1);
    // The peer list is a snapshot the network task publishes every 50 ms: on a
    // loaded machine it may trail the log by a moment, so wait for it (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let peers = get(&format!("{}/v1/peers", node.url)).json();
        let penalties = peers.as_array().and_then(|all| {
            all.iter()
                .find(|p| p["peer_id"] == peer_id.as_str())
                .and_then(|p| p["penalties"].as_u64())
        });
        if penalties.is_some_and(|n| n >= 2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the forger was not penalised twice: {penalties:?} in {peers}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
