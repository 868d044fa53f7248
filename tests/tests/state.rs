//! Application state with real nodes: Automerge documents written concurrently on
//! several nodes converge, counters lose no increment, acknowledged writes survive
//! SIGKILL, and bad input leaves a document untouched.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use kith_tests::cluster::grant_writers;
use kith_tests::{NodeProcess, get, post, send as request};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");

/// A namespace: a publisher key created on `node`.
fn namespace(node: &NodeProcess) -> String {
    let r = post(
        &format!("{}/v1/keys", node.url),
        br#"{"name":"app"}"#.to_vec(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["namespace"].as_str().unwrap().to_owned()
}

fn doc_url(node: &NodeProcess, doc: &str) -> String {
    format!("{}/v1/state/{doc}", node.url)
}

fn heads(node: &NodeProcess, doc: &str) -> Value {
    get(&format!("{}/heads", doc_url(node, doc))).json()["heads"].clone()
}

fn whole(node: &NodeProcess, doc: &str) -> Value {
    get(&doc_url(node, doc)).json()
}

fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn three_nodes(dir: &std::path::Path) -> Vec<NodeProcess> {
    let a = NodeProcess::start(BIN, &dir.join("a"), &["--advert-interval-ms", "500"]);
    let addr = a.p2p_addr();
    let b = NodeProcess::start(
        BIN,
        &dir.join("b"),
        &["--bootstrap", &addr, "--advert-interval-ms", "500"],
    );
    let c = NodeProcess::start(
        BIN,
        &dir.join("c"),
        &["--bootstrap", &addr, "--advert-interval-ms", "500"],
    );
    let nodes = vec![a, b, c];
    // Everyone connected to everyone (b and c find each other through a's gossip).
    for n in &nodes {
        n.wait_for_peers(Duration::from_secs(30), |peers| {
            peers.iter().filter(|p| p["connected"] == true).count() >= 2
        });
    }
    nodes
}

/// Three nodes write one document at once — their own keys, one shared key, and 100
/// increments each of one counter — and end with identical heads and values, the
/// counter at exactly 300.
#[test]
fn concurrent_writes_on_three_nodes_converge_and_counters_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = three_nodes(dir.path());
    let ns = namespace(&nodes[0]);
    let doc = format!("{ns}/shop");
    // The other two write with their own keys, which the namespace's owner grants.
    grant_writers(&nodes[0], &ns, &[&nodes[1], &nodes[2]]);
    // The counter, the list and the map exist before concurrent use: concurrent
    // creations of one key conflict (in Automerge as in any map CRDT) and only one
    // of the created objects survives, with the writes made into it.
    let r = request(
        "POST",
        &format!("{}/increment?path=/visits&by=0", doc_url(&nodes[0], &doc)),
        Vec::new(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    for (path, empty) in [("/orders", "[]"), ("/by", "{}")] {
        let r = request(
            "PUT",
            &format!("{}?path={path}", doc_url(&nodes[0], &doc)),
            empty.as_bytes().to_vec(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // The others pin it and get it from the first.
    for n in &nodes[1..] {
        let r = request("POST", &format!("{}/pin", doc_url(n, &doc)), Vec::new());
        assert_eq!(r.status, 200, "{}", r.text());
    }
    wait_until(Duration::from_secs(20), "the pinned copies fill in", || {
        nodes
            .iter()
            .all(|n| whole(n, &doc) == json!({"visits": 0, "orders": [], "by": {}}))
    });

    std::thread::scope(|s| {
        for (i, n) in nodes.iter().enumerate() {
            let doc = doc.clone();
            s.spawn(move || {
                let url = doc_url(n, &doc);
                for k in 0..100 {
                    let r = request("POST", &format!("{url}/increment?path=/visits"), Vec::new());
                    assert_eq!(r.status, 200, "{}", r.text());
                    if k % 10 == 0 {
                        let r = request(
                            "POST",
                            &format!("{url}/append?path=/orders"),
                            json!({"node": i, "k": k}).to_string().into_bytes(),
                        );
                        assert_eq!(r.status, 200, "{}", r.text());
                    }
                }
                let r = request(
                    "PUT",
                    &format!("{url}?path=/by/node{i}"),
                    json!({"done": true}).to_string().into_bytes(),
                );
                assert_eq!(r.status, 200, "{}", r.text());
                let r = request(
                    "PUT",
                    &format!("{url}?path=/last"),
                    json!(i).to_string().into_bytes(),
                );
                assert_eq!(r.status, 200, "{}", r.text());
            });
        }
    });

    wait_until(Duration::from_secs(30), "all three converge", || {
        let h: Vec<Value> = nodes.iter().map(|n| heads(n, &doc)).collect();
        h.iter().all(|x| *x == h[0])
    });
    let values: Vec<Value> = nodes.iter().map(|n| whole(n, &doc)).collect();
    assert_eq!(values[0], values[1]);
    assert_eq!(values[0], values[2]);
    let v = &values[0];
    assert_eq!(v["visits"], 300, "{v}");
    assert_eq!(v["orders"].as_array().unwrap().len(), 30, "{v}");
    for i in 0..3 {
        assert_eq!(v["by"][format!("node{i}")]["done"], true, "{v}");
    }
    assert!(
        v["last"].as_i64().is_some_and(|l| (0..3).contains(&l)),
        "{v}"
    );
}

/// Writes acknowledged to the client survive SIGKILL right after; the export is a
/// standard Automerge binary that another node imports.
/// A change goes to the document's holders only: a connected peer that does not hold
/// the document hears nothing of 20 writes, while the holder has them within seconds
/// (well inside the 30 s anti-entropy round, so by the holders' path).
#[test]
fn changes_reach_holders_and_no_one_else() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = three_nodes(dir.path());
    let (writer, holder, bystander) = (&nodes[0], &nodes[1], &nodes[2]);
    let doc = format!("{}/notes", namespace(writer));
    let r = request(
        "PUT",
        &format!("{}?path=/n", doc_url(writer, &doc)),
        b"0".to_vec(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(
        "POST",
        &format!("{}/pin", doc_url(holder, &doc)),
        Vec::new(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    wait_until(Duration::from_secs(10), "the pinned copy fills in", || {
        whole(holder, &doc) == json!({"n": 0})
    });
    let received = |n: &NodeProcess| n.status()["state"]["sync_received_bytes"].clone();
    let before = received(bystander);

    let started = Instant::now();
    for k in 1..=20 {
        let r = request(
            "PUT",
            &format!("{}?path=/n", doc_url(writer, &doc)),
            k.to_string().into_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    wait_until(
        Duration::from_secs(10),
        "the holder has every write",
        || whole(holder, &doc) == json!({"n": 20}),
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "by the holders' path, not the 30 s round"
    );
    assert_eq!(heads(holder, &doc), heads(writer, &doc));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        received(bystander),
        before,
        "a peer that does not hold the document is sent nothing about it"
    );
    let held = get(&format!("{}/v1/state", bystander.url)).json();
    assert_eq!(held, json!([]), "the bystander holds no document: {held}");
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let node = NodeProcess::start(BIN, &data, &["--offline"]);
    let doc = format!("{}/log", namespace(&node));
    let url = doc_url(&node, &doc);
    for i in 0..200 {
        let r = request(
            "POST",
            &format!("{url}/append?path=/entries"),
            json!({ "i": i }).to_string().into_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let r = request("POST", &format!("{url}/increment?path=/n"), Vec::new());
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let before = heads(&node, &doc);
    let export = get(&format!("{url}/export")).body;
    node.kill();

    let node = NodeProcess::start(BIN, &data, &["--offline"]);
    assert_eq!(heads(&node, &doc), before);
    let v = whole(&node, &doc);
    assert_eq!(v["n"], 200);
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 200);
    assert!(entries.iter().enumerate().all(|(i, e)| e["i"] == i));

    // The export is a standard Automerge binary.
    let loaded = automerge::AutoCommit::load(&export).unwrap().get_heads();
    let loaded: Vec<String> = loaded.iter().map(ToString::to_string).collect();
    assert_eq!(json!(loaded), before);
    // Another node cannot import it: it holds no key that wrote those changes, and a
    // node signs only its own (others' arrive by sync, with their signatures).
    let other = NodeProcess::start(BIN, &dir.path().join("other"), &["--offline"]);
    let r = request(
        "POST",
        &format!("{}/import", doc_url(&other, &doc)),
        export.clone(),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.message().contains("permission_denied"), "{}", r.text());
    other.kill();
    // With the publisher key moved there, it imports.
    let keys = dir.path().join("moved").join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::copy(data.join("keys/app.key"), keys.join("app.key")).unwrap();
    let moved = NodeProcess::start(BIN, &dir.path().join("moved"), &["--offline"]);
    let r = request("POST", &format!("{}/import", doc_url(&moved, &doc)), export);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(heads(&moved, &doc), before);
}

/// Bad input gets a clear error naming the problem, and the document is untouched.
#[test]
fn bad_input_is_refused_and_the_document_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(BIN, &dir.path().join("n"), &["--offline"]);
    let doc = format!("{}/cart", namespace(&node));
    let url = doc_url(&node, &doc);
    let r = request("PUT", &format!("{url}?path=/item"), br#""tea""#.to_vec());
    assert_eq!(r.status, 200);
    let before = heads(&node, &doc);

    let cases: Vec<(&str, String, Vec<u8>, u16, &str)> = vec![
        (
            "PUT",
            format!("{url}?path=/x"),
            b"{not json".to_vec(),
            400,
            "not a JSON value",
        ),
        (
            "PUT",
            format!("{url}?path=a//b"),
            b"1".to_vec(),
            400,
            "empty key",
        ),
        (
            "POST",
            format!("{url}/increment?path=/item"),
            Vec::new(),
            409,
            "not a counter",
        ),
        (
            "POST",
            format!("{url}/import"),
            b"not automerge".to_vec(),
            400,
            "not an Automerge document",
        ),
        (
            "PUT",
            format!("{url}?path=/big"),
            serde_json::to_vec(&json!("x".repeat(2 << 20))).unwrap(),
            413,
            "max_change_bytes",
        ),
    ];
    for (method, u, body, status, says) in cases {
        let r = request(method, &u, body);
        assert_eq!(r.status, status, "{method} {u}: {}", r.text());
        assert!(r.message().contains(says), "{method} {u}: {}", r.text());
    }
    let r = request("GET", &format!("{}/v1/state/me/Bad", node.url), Vec::new());
    assert_eq!(r.status, 400, "{}", r.text());
    let r = request("GET", &format!("{url}?path=/missing"), Vec::new());
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(heads(&node, &doc), before);
    assert_eq!(whole(&node, &doc), json!({"item": "tea"}));
}

/// A real partition: three nodes in their own network namespaces; one is cut off
/// (iptables drops everything between it and the others), both sides write, and after
/// the partition heals every node has every write.
#[test]
fn writes_on_both_sides_of_a_partition_converge_after_it_heals() {
    use kith_tests::netns::{HomeNat, Lan};
    if let Err(why) = HomeNat::available() {
        assert!(
            std::env::var_os("KITH_REQUIRE_NETNS").is_none(),
            "KITH_REQUIRE_NETNS is set but network namespaces are unavailable: {why}"
        );
        eprintln!("skipped: network namespaces unavailable ({why})");
        return;
    }
    let lan = Lan::create(3).expect("build the network");
    let dir = tempfile::tempdir().unwrap();
    let listen = [
        "--listen",
        "/ip4/0.0.0.0/tcp/7071",
        "--advert-interval-ms",
        "500",
    ];
    let a = NodeProcess::start_in_netns(
        &lan.hosts[0],
        &lan.ip(0),
        BIN,
        &dir.path().join("a"),
        &listen,
    );
    let first = format!("/ip4/{}/tcp/7071/p2p/{}", lan.ip(0), a.node_id);
    let mut flags = listen.to_vec();
    flags.extend(["--bootstrap", &first]);
    let b = NodeProcess::start_in_netns(
        &lan.hosts[1],
        &lan.ip(1),
        BIN,
        &dir.path().join("b"),
        &flags,
    );
    let c = NodeProcess::start_in_netns(
        &lan.hosts[2],
        &lan.ip(2),
        BIN,
        &dir.path().join("c"),
        &flags,
    );
    let nodes = [&a, &b, &c];
    for n in nodes {
        n.wait_for_peers(Duration::from_secs(30), |peers| {
            peers.iter().filter(|p| p["connected"] == true).count() >= 2
        });
    }
    let ns = namespace(&a);
    let doc = format!("{ns}/notes");
    grant_writers(&a, &ns, &[&b, &c]);
    let r = request(
        "POST",
        &format!("{}/increment?path=/n&by=0", doc_url(&a, &doc)),
        Vec::new(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    for n in &nodes[1..] {
        let r = request("POST", &format!("{}/pin", doc_url(n, &doc)), Vec::new());
        assert_eq!(r.status, 200, "{}", r.text());
    }
    wait_until(Duration::from_secs(20), "the pinned copies fill in", || {
        nodes.iter().all(|n| whole(n, &doc) == json!({"n": 0}))
    });

    lan.partition(2).expect("partition");
    let write = |n: &NodeProcess, key: &str, times: usize| {
        for _ in 0..times {
            let r = request(
                "POST",
                &format!("{}/increment?path=/n", doc_url(n, &doc)),
                Vec::new(),
            );
            assert_eq!(r.status, 200, "{}", r.text());
        }
        let r = request(
            "PUT",
            &format!("{}?path=/{key}", doc_url(n, &doc)),
            br#""written during the partition""#.to_vec(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    };
    write(&a, "from_a", 10);
    write(&c, "from_c", 7);
    write(&b, "from_b", 5);
    // The cut is real: the isolated node does not see the others' writes (give gossip
    // time it would need), and they do not see its.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        whole(&c, &doc)["n"],
        7,
        "the isolated node saw the others' writes"
    );
    assert!(whole(&a, &doc).get("from_c").is_none());
    wait_until(
        Duration::from_secs(20),
        "a and b converge on their side",
        || heads(&a, &doc) == heads(&b, &doc),
    );

    lan.heal(2).expect("heal");
    wait_until(
        Duration::from_secs(60),
        "all three converge after the heal",
        || {
            let h: Vec<Value> = nodes.iter().map(|n| heads(n, &doc)).collect();
            h.iter().all(|x| *x == h[0])
        },
    );
    for n in nodes {
        let v = whole(n, &doc);
        assert_eq!(v["n"], 22, "{v}");
        for k in ["from_a", "from_b", "from_c"] {
            assert_eq!(v[k], "written during the partition", "{v}");
        }
    }
}
