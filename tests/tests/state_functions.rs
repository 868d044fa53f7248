//! Functions that use application state (ABI 2), on real nodes: a function called on
//! one node writes, a function called on another reads the write after sync (fetching
//! the document before it first runs); the manifest's permissions are enforced; bad
//! pointers trap; an ABI 1 module cannot import state.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use kith_tests::cluster::{
    EXAMPLE_NAMESPACE, change_grants, grant_functions, grant_writers, hold_example_key, publish,
};
use kith_tests::{NodeProcess, Raw, get, guest, post};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");

/// The document the example functions use (`sdk/functions/visit-counter`).
const VISITS: &str = "d209b66ad471ec4c84bd324baa72799fabd5376ed0841281fa8ff3781bcd715c/visits";

fn call(node: &NodeProcess, id: &str, input: &str) -> Raw {
    post(
        &format!("{}/v1/call/{id}", node.url),
        input.as_bytes().to_vec(),
    )
}

fn call_ok(node: &NodeProcess, id: &str, input: &str) -> (Value, String) {
    let r = call(node, id, input);
    assert_eq!(r.status, 200, "{}", r.text());
    (r.json(), r.header("kith-executed-by"))
}

/// Two connected nodes that have each other's adverts; B joins through A. A holds the
/// examples' namespace key (it owns the example functions' documents).
fn two_nodes(
    dir: &std::path::Path,
    a_flags: &[&str],
    b_flags: &[&str],
) -> (NodeProcess, NodeProcess) {
    let fast = ["--advert-interval-ms", "500"];
    let a_args: Vec<&str> = fast.iter().chain(a_flags).copied().collect();
    hold_example_key(&dir.join("a"));
    let a = NodeProcess::start(BIN, &dir.join("a"), &a_args);
    let addr = a.p2p_addr();
    let b_args: Vec<&str> = fast
        .iter()
        .chain(b_flags)
        .copied()
        .chain(["--bootstrap", addr.as_str()])
        .collect();
    let b = NodeProcess::start(BIN, &dir.join("b"), &b_args);
    for n in [&a, &b] {
        n.wait_for_peers(Duration::from_secs(30), |peers| {
            peers
                .iter()
                .any(|p| p["connected"] == true && p["advert"].is_object())
        });
    }
    (a, b)
}

fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Node A runs the counter (its memory cap is too small for the report), node B the
/// report (its timeout cap is too short for the counter). B never saw the document: it fetches it before the report's first run, and
/// later writes on A reach it by sync. B's own increments add up with A's.
#[test]
fn a_function_on_one_node_writes_and_a_function_on_another_reads_after_sync() {
    let dir = tempfile::tempdir().unwrap();
    // visit-counter asks for 2 MiB of memory and a 3 s timeout, visit-report for 4 MiB
    // and 2 s: A can run only the counter, B only the report.
    let (a, b) = two_nodes(
        dir.path(),
        &["--max-memory-bytes", "3145728"],
        &["--max-timeout-ms", "2500"],
    );
    let counter = publish(&a, guest("visit_counter"));
    let report = publish(&b, guest("visit_report"));
    let (a_id, b_id) = (a.status()["node_id"].clone(), b.status()["node_id"].clone());
    // Until the namespace's owner grants them, the functions may not touch its
    // documents: the call is refused naming the missing grant, and nothing is written.
    let r = call(&a, &counter, "alice");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.kind(), "permission_denied");
    assert!(
        r.message().contains("has not granted") && r.message().contains("kith grant"),
        "{}",
        r.message()
    );
    assert_eq!(a.status()["state"]["documents"], 0, "nothing was created");
    grant_functions(&a, EXAMPLE_NAMESPACE, &[&counter, &report], &[&b]);
    // B's operator writes too (HTTP below), with B's own key.
    grant_writers(&a, EXAMPLE_NAMESPACE, &[&b]);

    for i in 1..=3 {
        let (out, by) = call_ok(&a, &counter, "alice");
        assert_eq!(out["yours"], i, "{out}");
        assert_eq!(out["total"], i, "{out}");
        assert_eq!(by, a_id.as_str().unwrap(), "the counter runs on A");
    }
    assert_eq!(b.status()["state"]["documents"], 0, "B holds nothing yet");

    // B's first report fetches the document, then reads A's writes.
    let (out, by) = call_ok(&b, &report, "alice");
    assert_eq!(by, b_id.as_str().unwrap(), "the report runs on B");
    assert_eq!(out["visits"], 3, "{out}");
    let state = &b.status()["state"];
    assert_eq!(state["documents"], 1, "{state}");
    assert_eq!(state["fetches"], 1, "{state}");

    // New writes on A reach B by sync.
    for _ in 0..2 {
        call_ok(&a, &counter, "bob");
    }
    wait_until(Duration::from_secs(15), "B sees bob's visits", || {
        call_ok(&b, &report, "bob").0["visits"] == 2
    });

    // Increments made on B (wherever placement runs them) add up with A's.
    for _ in 0..4 {
        let r = post(
            &format!("{}/v1/state/{VISITS}/increment?path=/total&by=1", b.url),
            Vec::new(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    for _ in 0..3 {
        call_ok(&a, &counter, "carol");
    }
    wait_until(
        Duration::from_secs(15),
        "both nodes agree on the total",
        || {
            let total =
                |n: &NodeProcess| get(&format!("{}/v1/state/{VISITS}?path=total", n.url)).json();
            let (ta, tb) = (total(&a), total(&b));
            // A counter call's increment and its log entry are two changes, which
            // may reach B in separate sync rounds: wait for the log too.
            ta == tb && ta == 12 && call_ok(&b, &report, "").0["visits_logged"] == 8
        },
    );
    let (out, _) = call_ok(&b, &report, "");
    assert_eq!(out["total"], 12, "{out}");
    assert_eq!(
        out["visits_logged"], 8,
        "one log entry per counter call: {out}"
    );
    assert_eq!(out["by_visitor"]["alice"], 3, "{out}");
}

/// A module built by hand against the raw ABI: `state_<op>` on `doc` with `path` (and
/// `value`), then the status (8 bytes, little-endian) and the result buffer as output.
fn raw_module(
    abi: u32,
    read: &[&str],
    write: &[&str],
    op: &str,
    doc: &str,
    path: &str,
    value: &str,
) -> Vec<u8> {
    let list = |l: &[&str]| {
        l.iter()
            .map(|d| format!("\\\"{d}\\\""))
            .collect::<Vec<_>>()
            .join(",")
    };
    let manifest = format!(
        "{{\\\"abi\\\":{abi}{}{}}}",
        if read.is_empty() {
            String::new()
        } else {
            format!(",\\\"state_read\\\":[{}]", list(read))
        },
        if write.is_empty() {
            String::new()
        } else {
            format!(",\\\"state_write\\\":[{}]", list(write))
        }
    );
    let (import, args) = match op {
        "get" | "delete" => (
            format!("(import \"kith\" \"state_{op}\" (func $op (param i32 i32 i32 i32) (result i64)))"),
            "",
        ),
        "increment" => (
            "(import \"kith\" \"state_increment\" (func $op (param i32 i32 i32 i32 i64) (result i64)))".to_owned(),
            "(i64.const 5)",
        ),
        _ => (
            format!("(import \"kith\" \"state_{op}\" (func $op (param i32 i32 i32 i32 i32 i32) (result i64)))"),
            "(i32.const 3072) (i32.const VLEN)",
        ),
    };
    let args = args.replace("VLEN", &value.len().to_string());
    let wat = format!(
        r#"(module
          {import}
          (import "kith" "result" (func $result (param i32 i32) (result i32)))
          (import "kith" "output" (func $output (param i32 i32)))
          (memory (export "memory") 1)
          (@custom "kith.manifest" "{manifest}")
          (data (i32.const 1024) "{doc}")
          (data (i32.const 2048) "{path}")
          (data (i32.const 3072) "{value}")
          (func (export "kith_alloc") (param i32) (result i32) (i32.const 8192))
          (func (export "kith_call") (param i32 i32) (result i32)
            (local $n i32)
            (i64.store (i32.const 4096)
              (call $op (i32.const 1024) (i32.const {dl}) (i32.const 2048) (i32.const {pl}) {args}))
            (local.set $n (call $result (i32.const 4104) (i32.const 2048)))
            (call $output (i32.const 4096) (i32.add (i32.const 8) (local.get $n)))
            (i32.const 0)))"#,
        dl = doc.len(),
        pl = path.len(),
        value = value.replace('"', "\\\""),
    );
    wat::parse_str(&wat).unwrap()
}

/// Runs a raw module's call (granted by `ns`'s owner, `node`) and splits the output
/// into status and result text.
fn raw_call(node: &NodeProcess, ns: &str, module: Vec<u8>) -> (i64, String) {
    let id = publish(node, module);
    change_grants(
        node,
        ns,
        serde_json::json!({ "functions": [id] }),
        serde_json::json!({}),
    );
    let r = call(node, &id, "");
    assert_eq!(r.status, 200, "{}", r.text());
    let status = i64::from_le_bytes(r.body[..8].try_into().unwrap());
    (status, String::from_utf8_lossy(&r.body[8..]).into_owned())
}

#[test]
fn the_manifest_decides_which_documents_a_function_may_touch() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(BIN, &dir.path().join("n"), &[]);
    let r = post(
        &format!("{}/v1/keys", node.url),
        br#"{"name":"shop"}"#.to_vec(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let ns = r.json()["namespace"].as_str().unwrap().to_owned();
    let doc = format!("{ns}/cart");
    let other = format!("{ns}/other");

    // Listed for writing: a put works, and the value is there over HTTP.
    let (status, text) = raw_call(
        &node,
        &ns,
        raw_module(2, &[], &[&doc], "put", &doc, "items/apple", "3"),
    );
    assert_eq!((status, text.as_str()), (0, ""));
    assert_eq!(
        get(&format!("{}/v1/state/{doc}?path=items/apple", node.url)).json(),
        3
    );
    // A get returns the JSON; the whole document with the empty path.
    let (status, text) = raw_call(&node, &ns, raw_module(2, &[&doc], &[], "get", &doc, "", ""));
    assert_eq!(status, text.len() as i64);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        serde_json::json!({"items": {"apple": 3}})
    );
    // Increment returns the new value.
    let (status, text) = raw_call(
        &node,
        &ns,
        raw_module(2, &[], &[&format!("{ns}/c*")], "increment", &doc, "n", ""),
    );
    assert_eq!((status, text.as_str()), (1, "5"));

    // Listed for reading only: writes are refused, the document untouched.
    let before = get(&format!("{}/v1/state/{doc}", node.url)).json();
    let (status, text) = raw_call(
        &node,
        &ns,
        raw_module(2, &[&doc], &[], "put", &doc, "items/pear", "1"),
    );
    assert_eq!(status, -1, "{text}");
    assert!(
        text.contains("permission denied") && text.contains("state_write"),
        "{text}"
    );
    let (status, text) = raw_call(
        &node,
        &ns,
        raw_module(2, &[&doc], &[], "delete", &doc, "items", ""),
    );
    assert_eq!(status, -1, "{text}");
    assert_eq!(get(&format!("{}/v1/state/{doc}", node.url)).json(), before);
    // Not listed at all: reads are refused too.
    let (status, text) = raw_call(
        &node,
        &ns,
        raw_module(2, &[&doc], &[], "get", &other, "", ""),
    );
    assert_eq!(status, -1, "{text}");
    assert!(text.contains(&other), "names the document: {text}");

    // Bad input comes back as a status and a message, never a crash.
    let (status, text) = raw_call(
        &node,
        &ns,
        raw_module(2, &[], &[&doc], "put", &doc, "x", "{not json"),
    );
    assert_eq!(status, -3, "{text}");
    assert!(text.contains("not JSON"), "{text}");
    let (status, text) = raw_call(
        &node,
        &ns,
        raw_module(2, &[], &[&doc], "increment", &doc, "items", ""),
    );
    assert_eq!(status, -4, "{text}");
    assert!(text.contains("not a counter"), "{text}");
    let (status, text) = raw_call(
        &node,
        &ns,
        raw_module(2, &[], &[&doc], "get", &doc, "missing/key", ""),
    );
    assert_eq!(status, -2, "{text}");
    let (status, text) = raw_call(
        &node,
        &ns,
        raw_module(2, &[], &[&doc], "get", "shop/cart", "", ""),
    );
    assert_eq!(status, -3, "{text}");
    assert!(text.contains("64 hex digits"), "{text}");
    assert_eq!(
        get(&format!("{}/v1/state/{doc}", node.url)).json()["items"],
        before["items"]
    );

    // An ABI 1 module may not import state functions, nor name documents.
    let r = post(
        &format!("{}/v1/functions", node.url),
        raw_module(1, &[], &[], "get", &doc, "", ""),
    );
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("needs ABI version 2"), "{}", r.text());
    let r = post(
        &format!("{}/v1/functions", node.url),
        raw_module(1, &[&doc], &[], "get", &doc, "", ""),
    );
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("state_read"), "{}", r.text());

    // The 1001st state operation of one call is refused, naming the limit.
    let wat = format!(
        r#"(module
          (import "kith" "state_get" (func $get (param i32 i32 i32 i32) (result i64)))
          (import "kith" "result" (func $result (param i32 i32) (result i32)))
          (import "kith" "output" (func $output (param i32 i32)))
          (memory (export "memory") 1)
          (@custom "kith.manifest" "{{\"abi\":2,\"state_read\":[\"{doc}\"]}}")
          (data (i32.const 1024) "{doc}")
          (func (export "kith_alloc") (param i32) (result i32) (i32.const 8192))
          (func (export "kith_call") (param i32 i32) (result i32)
            (local $i i32) (local $n i32)
            (loop $again
              (i64.store (i32.const 4096)
                (call $get (i32.const 1024) (i32.const {dl}) (i32.const 0) (i32.const 0)))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $again (i32.lt_u (local.get $i) (i32.const 1001))))
            (local.set $n (call $result (i32.const 4104) (i32.const 2048)))
            (call $output (i32.const 4096) (i32.add (i32.const 8) (local.get $n)))
            (i32.const 0)))"#,
        dl = doc.len()
    );
    let (status, text) = raw_call(&node, &ns, wat::parse_str(&wat).unwrap());
    assert_eq!(status, -5, "{text}");
    assert!(text.contains("max_state_ops"), "{text}");

    // A pointer outside memory traps, naming the host function.
    let wat = format!(
        r#"(module
          (import "kith" "state_get" (func $get (param i32 i32 i32 i32) (result i64)))
          (memory (export "memory") 1)
          (@custom "kith.manifest" "{{\"abi\":2,\"state_read\":[\"{doc}\"]}}")
          (func (export "kith_alloc") (param i32) (result i32) (i32.const 8192))
          (func (export "kith_call") (param i32 i32) (result i32)
            (drop (call $get (i32.const 65530) (i32.const 100) (i32.const 0) (i32.const 0)))
            (i32.const 0)))"#
    );
    let id = publish(&node, wat::parse_str(&wat).unwrap());
    change_grants(
        &node,
        &ns,
        serde_json::json!({ "functions": [id] }),
        serde_json::json!({}),
    );
    let r = call(&node, &id, "");
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.kind(), "trap");
    assert!(r.message().contains("kith.state_get"), "{}", r.message());

    // A function claiming a namespace whose owner never granted it (here one whose
    // key is nowhere) is refused before it runs, naming the grant.
    let foreign = format!("{}/cart", "cd".repeat(32));
    let id = publish(
        &node,
        raw_module(2, &[], &[&foreign], "put", &foreign, "x", "1"),
    );
    let r = call(&node, &id, "");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.kind(), "permission_denied");
    assert!(r.message().contains(&"cd".repeat(32)), "{}", r.message());
    let held = get(&format!("{}/v1/state", node.url)).json();
    assert!(
        !held.to_string().contains(&"cd".repeat(32)),
        "nothing of the foreign namespace was created: {held}"
    );
}

/// An operator who hosts only some namespaces does not run functions whose documents
/// are elsewhere: alone it refuses with `state_not_hosted`, naming the limit; with a
/// peer, the call runs on the peer.
#[test]
fn a_node_that_does_not_host_a_functions_documents_passes_the_call_on() {
    let dir = tempfile::tempdir().unwrap();
    let other = "cd".repeat(32);
    let alone = NodeProcess::start(
        BIN,
        &dir.path().join("alone"),
        &["--offline", "--state-namespace", &other],
    );
    let id = publish(&alone, guest("visit_counter"));
    let r = call(&alone, &id, "dave");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.kind(), "state_not_hosted");
    assert!(r.message().contains("state_namespaces"), "{}", r.message());
    assert_eq!(
        alone.status()["state"]["documents"],
        0,
        "nothing was created"
    );

    let (a, b) = two_nodes(dir.path(), &["--state-namespace", &other], &[]);
    let id = publish(&a, guest("visit_counter"));
    grant_functions(&a, EXAMPLE_NAMESPACE, &[&id], &[&b]);
    let (out, by) = call_ok(&a, &id, "dave");
    assert_eq!(out["total"], 1, "{out}");
    assert_eq!(by, b.status()["node_id"].as_str().unwrap(), "B ran it");
    assert_eq!(a.status()["state"]["documents"], 0);
}
