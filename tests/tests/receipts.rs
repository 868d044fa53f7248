//! Results carry receipts and can be checked (issue 16): every answer comes with a
//! receipt its executor signed, which the entry node checks before it answers; a
//! forged or replayed receipt is refused, the peer penalised and the call run
//! elsewhere; `verify = 3` runs a call on three peers and outvotes a real libp2p peer
//! that answers wrongly with a receipt that checks out; every node keeps a ledger of
//! the receipts it issued and received.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kith_node::receipts::ed25519_of;
use kith_sdk::client::CallOptions;
use kith_tests::cluster::{advert_of, network, penalties, publish, test_peer, wait_until};
use kith_tests::{NodeProcess, get, guest, post, send};

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");
const PEER: &str = env!("CARGO_BIN_EXE_kith-test-peer");

fn key_of(peer: &str) -> [u8; 32] {
    ed25519_of(&peer.parse().unwrap()).unwrap()
}

fn liar(gateway: &NodeProcess, id: &str, answer: &str) -> (kith_tests::KillOnDrop, String) {
    let (liar, _out, liar_id) = test_peer(PEER, &["liar", &gateway.p2p_addr(), id, answer]);
    wait_until(
        Duration::from_secs(20),
        "the gateway hears the liar",
        || advert_of(gateway, &liar_id).is_some(),
    );
    (liar, liar_id)
}

#[test]
fn answers_carry_checked_receipts_and_fill_both_ledgers() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = network(BIN, dir.path(), 2, &[&["--max-concurrent-calls", "0"]]);
    let (gateway, honest) = (&nodes[0], &nodes[1]);
    let id = publish(gateway, guest("hello"));

    let out = gateway.client().call(&id, b"Ada".to_vec()).unwrap();
    assert_eq!(out.output, b"hello, Ada!");
    assert_eq!(out.executed_by, honest.node_id);
    let receipt = out.check_receipt(b"Ada").unwrap().receipt;
    assert_eq!(receipt.executor, key_of(&honest.node_id));
    assert_eq!(receipt.entry, key_of(&gateway.node_id));
    assert_eq!(receipt.fuel_used, out.fuel_used);
    assert!(
        out.check_receipt(b"Bo").is_err(),
        "a receipt is for one input"
    );

    // The CLI checks and prints it.
    let cli = std::process::Command::new(BIN)
        .args([
            "--api",
            &gateway.url,
            "call",
            &id,
            "--input",
            "Ada",
            "--verbose",
        ])
        .output()
        .unwrap();
    assert!(cli.status.success(), "{cli:?}");
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert!(stderr.contains("receipt ok"), "{stderr}");
    assert!(
        stderr.contains(&hex::encode(key_of(&honest.node_id))),
        "{stderr}"
    );

    // Both ledgers: the gateway consumed two calls from the honest node, which served
    // them (and donated the fuel).
    let consumed = get(&format!("{}/v1/ledger", gateway.url)).json();
    assert_eq!(consumed["consumed"]["calls"], 2, "{consumed}");
    assert_eq!(
        consumed["consumed_by_peer"][0]["peer"],
        honest.node_id.as_str()
    );
    let served = get(&format!("{}/v1/ledger", honest.url)).json();
    assert_eq!(served["served"]["calls"], 2, "{served}");
    assert_eq!(
        served["served_by_peer"][0]["peer"],
        gateway.node_id.as_str()
    );
    assert_eq!(
        served["served"]["fuel"].as_u64().unwrap(),
        2 * out.fuel_used
    );
    assert_eq!(served["recent"][0]["direction"], "served");
    assert_eq!(
        served["recent"][1]["receipt"]["call_id"],
        receipt.call.to_string()
    );
    assert_eq!(honest.status()["receipts"]["served"]["calls"], 2);
}

#[test]
fn forged_and_replayed_receipts_are_refused_and_the_call_runs_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = network(BIN, dir.path(), 2, &[&["--max-concurrent-calls", "0"]]);
    let (gateway, honest) = (&nodes[0], &nodes[1]);
    let id = publish(gateway, guest("hello"));
    let warm = post(&format!("{}/v1/call/{id}", gateway.url), b"x".to_vec());
    assert_eq!(warm.status, 200, "{}", warm.text());

    for (n, answer) in ["forged", "replay"].into_iter().enumerate() {
        let (_liar, liar_id) = liar(gateway, &id, answer);
        // The liar claims the best capacity there is, so it is tried first; its
        // answer is refused and the honest node runs the call.
        let r = post(&format!("{}/v1/call/{id}", gateway.url), b"Ada".to_vec());
        assert_eq!(r.status, 200, "{answer}: {}", r.text());
        assert_eq!(r.body, b"hello, Ada!", "{answer}");
        assert_eq!(r.header("kith-executed-by"), honest.node_id, "{answer}");
        wait_until(Duration::from_secs(5), "the liar is penalised", || {
            penalties(gateway, &liar_id) >= 1
        });
        let refused = gateway.status()["receipts"]["refused"].as_u64().unwrap();
        assert_eq!(refused, n as u64 + 1, "{answer}");
        assert!(
            gateway.log_text().contains("refused a receipt"),
            "{answer}: the log says why"
        );
    }
    let metrics = get(&format!("{}/metrics", gateway.url)).text();
    assert!(
        metrics.contains("kith_receipts_refused_total 2"),
        "{metrics}"
    );
    // Nothing the liars said reached the ledger.
    let ledger = get(&format!("{}/v1/ledger", gateway.url)).json();
    let peers: Vec<&str> = ledger["consumed_by_peer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["peer"].as_str().unwrap())
        .collect();
    assert_eq!(peers, [honest.node_id.as_str()]);
}

#[test]
fn verify_three_outvotes_a_peer_that_answers_wrongly_with_a_valid_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = network(BIN, dir.path(), 3, &[&["--max-concurrent-calls", "0"]]);
    let gateway = &nodes[0];
    let id = publish(gateway, guest("hello"));
    let url = |q: &str| format!("{}/v1/call/{id}{q}", gateway.url);

    // Two capable peers cannot make the three agreeing answers verify = 5 needs.
    let r = post(&url("?verify=5"), b"Ada".to_vec());
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.kind(), "no_quorum");
    assert!(r.message().contains("2 answered"), "{}", r.message());
    // Two agreeing of three asked for is a strict majority: the third answer could not
    // change it.
    let r = post(&url("?verify=3"), b"Ada".to_vec());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("kith-verify"), "2/3");
    // Out of bounds, and a function that reads the clock.
    let r = post(&url("?verify=9"), b"Ada".to_vec());
    assert_eq!((r.status, r.kind().as_str()), (400, "bad_request"));
    let hostile = publish(gateway, guest("hostile"));
    let r = post(
        &format!("{}/v1/call/{hostile}?verify=3", gateway.url),
        b"ok".to_vec(),
    );
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.kind(), "not_deterministic");
    assert!(r.message().contains("kith.now_ms"), "{}", r.message());

    // A liar joins: it answers "lie" with a receipt that checks out.
    let (_liar, liar_id) = liar(gateway, &id, "wrong");
    let out = gateway
        .client()
        .call_opts(
            &id,
            b"Ada".to_vec(),
            &CallOptions {
                verify: Some(3),
                ..CallOptions::default()
            },
        )
        .unwrap();
    assert_eq!(out.output, b"hello, Ada!");
    assert_eq!(out.verified, Some((2, 3)));
    assert_eq!(out.receipts.len(), 3, "the dissenter's receipt too");
    assert!(out.executed_by != liar_id);
    out.check_receipt(b"Ada").unwrap();
    assert_eq!(out.dissent.len(), 1, "{:?}", out.dissent);
    assert!(out.dissent[0].starts_with(&liar_id), "{:?}", out.dissent);
    wait_until(Duration::from_secs(5), "the liar is penalised", || {
        penalties(gateway, &liar_id) >= 1
    });
    assert_eq!(gateway.status()["receipts"]["outvoted"], 1);

    // An alias can ask for it: every call through it is verified.
    let key = post(
        &format!("{}/v1/keys", gateway.url),
        br#"{"name":"me"}"#.to_vec(),
    );
    assert_eq!(key.status, 201, "{}", key.text());
    let set = send(
        "PUT",
        &format!("{}/v1/aliases/me/app@prod", gateway.url),
        format!(r#"{{"targets":[{{"function":"{id}"}}],"verify":3}}"#).into_bytes(),
    );
    assert_eq!(set.status, 200, "{}", set.text());
    assert_eq!(set.json()["verify"], 3);
    let r = post(
        &format!("{}/v1/call/me/app@prod", gateway.url),
        b"Bo".to_vec(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, b"hello, Bo!");
    assert_eq!(r.header("kith-verify"), "2/3");
}
