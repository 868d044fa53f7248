//! Who may write state (issue 16), with real nodes and a real hostile libp2p peer
//! (`kith-test-peer state`): a change without a signature, with a forged one, by a key
//! never granted, claiming another writer's actor id, by a revoked key, and a flood of
//! orphan changes are each refused; both honest nodes' documents are byte-identical
//! before and after; honest writes from both still converge.

#![allow(clippy::unwrap_used)]

use std::io::BufRead;
use std::time::{Duration, Instant};

use kith_tests::cluster::{change_grants, grant_writers, network, test_peer, wait_for_grants};
use kith_tests::{NodeProcess, get, post, send};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");
const PEER: &str = env!("CARGO_BIN_EXE_kith-test-peer");

fn new_key(node: &NodeProcess, name: &str) -> String {
    let r = post(
        &format!("{}/v1/keys", node.url),
        format!(r#"{{"name":"{name}"}}"#).into_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["namespace"].as_str().unwrap().to_owned()
}

fn secret(node: &NodeProcess, name: &str) -> String {
    std::fs::read_to_string(node.data_dir.join(format!("keys/{name}.key")))
        .unwrap()
        .trim()
        .to_owned()
}

fn put(node: &NodeProcess, doc: &str, path: &str, value: &Value) {
    let r = send(
        "PUT",
        &format!("{}/v1/state/{doc}?path={path}", node.url),
        value.to_string().into_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

fn export(node: &NodeProcess, doc: &str) -> Vec<u8> {
    let r = get(&format!("{}/v1/state/{doc}/export", node.url));
    assert_eq!(r.status, 200, "{}", r.text());
    r.body
}

fn heads(node: &NodeProcess, doc: &str) -> Value {
    get(&format!("{}/v1/state/{doc}/heads", node.url)).json()["heads"].clone()
}

fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `attack` against `node` on `doc`: the node's answer to the attacking message.
fn attack(node: &NodeProcess, doc: &str, attack: &str) -> Value {
    let (_peer, mut out, _) = test_peer(PEER, &["state", &node.p2p_addr(), doc, attack]);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "{attack}: the test peer ended"
        );
        if let Ok(v) = serde_json::from_str::<Value>(line.trim()) {
            return v;
        }
    }
}

#[test]
fn changes_nobody_granted_never_enter_a_document() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = network(BIN, dir.path(), 2, &[]);
    let (a, b) = (&nodes[0], &nodes[1]);
    let ns = new_key(a, "app");
    let doc = format!("{ns}/notes");
    grant_writers(a, &ns, &[b]);
    put(a, &doc, "/from_a", &json!("a"));
    let r = post(&format!("{}/v1/state/{doc}/pin", b.url), Vec::new());
    assert_eq!(r.status, 200, "{}", r.text());
    put(b, &doc, "/from_b", &json!("b"));
    wait_until(Duration::from_secs(20), "A and B converge", || {
        heads(a, &doc) == heads(b, &doc)
    });
    let before = (export(a, &doc), export(b, &doc));
    let refused = |n: &NodeProcess| n.status()["state"]["refused_syncs"].as_u64().unwrap();

    // A key that was granted and is revoked now; one that is granted (for the flood).
    let old_pub = new_key(a, "old");
    change_grants(a, &ns, json!({ "writers": [old_pub] }), json!({}));
    let seq = change_grants(a, &ns, json!({}), json!({ "writers": [old_pub] }));
    wait_for_grants(&[b], &ns, seq);
    let flood_pub = new_key(a, "flood");
    let seq = change_grants(a, &ns, json!({ "writers": [flood_pub] }), json!({}));
    wait_for_grants(&[b], &ns, seq);
    let unchanged = |what: &str| {
        // Give a wrongly accepted change time to travel on to B.
        std::thread::sleep(Duration::from_millis(500));
        assert!(export(a, &doc) == before.0, "{what}: A's document changed");
        assert!(export(b, &doc) == before.1, "{what}: B's document changed");
    };

    // Refused whole, and the sender penalised.
    for (case, says) in [
        ("unsigned", "carries no signature"),
        ("forged", "is not signed by its actor"),
        ("stranger", "has not granted write"),
        (
            &format!("impersonate:{ns}") as &str,
            "is not signed by its actor",
        ),
    ] {
        let was = refused(a);
        let answer = attack(a, &doc, case);
        assert_eq!(answer["answer"], "refused", "{case}: {answer}");
        assert_eq!(answer["kind"], "forbidden", "{case}: {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(says),
            "{case}: {answer}"
        );
        assert!(refused(a) > was, "{case}: counted and penalised");
        unchanged(case);
    }

    // A revoked key's new change: answered (an honest peer may hold such changes from
    // before the revocation), but it does not enter.
    let answer = attack(a, &doc, &format!("revoked:{}", secret(a, "old")));
    assert_ne!(answer["answer"], "refused", "{answer}");
    unchanged("revoked");

    // 300 orphans from a granted key: at most MAX_ORPHANS_PER_DOC (64) held, the
    // flood refused and penalised, nothing in the document.
    let was = refused(a);
    let answer = attack(a, &doc, &format!("orphans:{}:300", secret(a, "flood")));
    assert_eq!(answer["answer"], "refused", "{answer}");
    assert_eq!(answer["kind"], "too_large", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("MAX_ORPHANS_PER_PEER"),
        "{answer}"
    );
    let held = a.status()["state"]["orphans"].as_u64().unwrap();
    assert!(held <= 64, "{held} orphans held");
    assert!(refused(a) > was);
    unchanged("orphans");

    // Honest writes from both nodes still converge.
    put(a, &doc, "/after_a", &json!(1));
    put(b, &doc, "/after_b", &json!(2));
    wait_until(Duration::from_secs(20), "A and B converge again", || {
        heads(a, &doc) == heads(b, &doc)
    });
    let v = get(&format!("{}/v1/state/{doc}", b.url)).json();
    assert_eq!(
        v,
        json!({"from_a": "a", "from_b": "b", "after_a": 1, "after_b": 2}),
        "{v}"
    );
}

/// The operator's writes need a key the namespace's owner authorised; `kith grant`
/// and `kith revoke` decide, and the grant travels to peers.
#[test]
fn operator_writes_need_a_granted_key() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = network(BIN, dir.path(), 2, &[]);
    let (a, b) = (&nodes[0], &nodes[1]);
    let ns = new_key(a, "app");
    let doc = format!("{ns}/cart");
    put(a, &doc, "/n", &json!(1));
    let r = post(&format!("{}/v1/state/{doc}/pin", b.url), Vec::new());
    assert_eq!(r.status, 200, "{}", r.text());
    let r = send(
        "PUT",
        &format!("{}/v1/state/{doc}?path=/n", b.url),
        b"2".to_vec(),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.kind(), "permission_denied");
    let key = b.status()["state"]["state_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        r.message().contains(&key),
        "names the key to grant: {}",
        r.message()
    );
    grant_writers(a, &ns, &[b]);
    put(b, &doc, "/n", &json!(2));
    wait_until(Duration::from_secs(20), "A sees B's write", || {
        get(&format!("{}/v1/state/{doc}?path=/n", a.url)).json() == json!(2)
    });
    let seq = change_grants(a, &ns, json!({}), json!({ "writers": [key] }));
    wait_for_grants(&[b], &ns, seq);
    let r = send(
        "PUT",
        &format!("{}/v1/state/{doc}?path=/n", b.url),
        b"3".to_vec(),
    );
    assert_eq!(r.status, 403, "revoked: {}", r.text());
    let view = get(&format!("{}/v1/grants/{ns}", b.url)).json();
    assert_eq!(view["writers"], json!([]), "{view}");
}
