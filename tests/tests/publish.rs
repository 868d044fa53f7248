//! Publishing over HTTP: valid modules are stored by hash; every kind of bad module is
//! refused with an error naming the problem and limit, and nothing is stored.

#![allow(clippy::unwrap_used)]

use kith_tests::{NodeProcess, get, guest, post};

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");

fn wat(body: &str) -> Vec<u8> {
    wat::parse_str(format!("(module {body})")).expect("test wat")
}

const EXPORTS: &str = r#"
    (memory (export "memory") 1)
    (func (export "kith_alloc") (param i32) (result i32) i32.const 16)
    (func (export "kith_call") (param i32 i32) (result i32) i32.const 0)
"#;

#[test]
fn publish_is_content_addressed_and_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(BIN, &dir.path().join("n"), &[]);
    let hello = guest("hello");
    let first = post(&format!("{}/v1/functions", node.url), hello.clone());
    assert_eq!(first.status, 201, "{:?}", first.json());
    let body = first.json();
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(id, blake3::hash(&hello).to_hex().as_str());
    assert_eq!(body["size"], hello.len());
    assert_eq!(body["manifest"]["fuel"], 10_000_000);

    let again = post(&format!("{}/v1/functions", node.url), hello.clone());
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["id"], id.as_str());

    let info = get(&format!("{}/v1/functions/{id}", node.url));
    assert_eq!(info.status, 200);
    let info = info.json();
    assert_eq!(info["size"], hello.len());
    assert_eq!(info["has_manifest"], true);
    assert_eq!(info["manifest"]["timeout_ms"], 1000);
    assert_eq!(info["manifest"]["memory_bytes"], 2 << 20);

    assert_eq!(node.status()["functions_stored"], 1);
}

#[test]
fn bad_modules_are_refused_with_named_problems_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(
        BIN,
        &dir.path().join("n"),
        &["--max-module-bytes", "100000"],
    );
    let url = format!("{}/v1/functions", node.url);
    let hello = guest("hello");
    let mut big = wat(EXPORTS);
    // A custom section makes a valid module over the 100000-byte cap.
    big.extend_from_slice(&[0, 0x84, 0x8d, 0x06, 0x01, b'x']);
    big.extend(std::iter::repeat_n(0u8, 100_000));
    let cases: Vec<(&str, Vec<u8>, u16, &str, &str)> = vec![
        (
            "empty",
            vec![],
            422,
            "invalid_module",
            "not a WebAssembly module",
        ),
        (
            "text",
            b"print('hi')".to_vec(),
            422,
            "invalid_module",
            "magic",
        ),
        (
            "truncated",
            hello[..hello.len() / 2].to_vec(),
            422,
            "invalid_module",
            "invalid WebAssembly",
        ),
        (
            "component",
            vec![0, b'a', b's', b'm', 0x0d, 0, 1, 0],
            422,
            "invalid_module",
            "components are not supported",
        ),
        (
            "no entry point",
            wat(r#"(memory (export "memory") 1)
                   (func (export "kith_alloc") (param i32) (result i32) i32.const 0)"#),
            422,
            "invalid_module",
            "missing export `kith_call`",
        ),
        (
            "wrong signature",
            wat(r#"(memory (export "memory") 1)
                   (func (export "kith_alloc") (param i32) (result i32) i32.const 0)
                   (func (export "kith_call") (param i64) (result i32) i32.const 0)"#),
            422,
            "invalid_module",
            "requires (i32, i32) -> (i32)",
        ),
        (
            "wasi import with the wrong signature",
            wat(&format!(
                r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32) (result i32))) {EXPORTS}"#
            )),
            422,
            "invalid_module",
            "wasi_snapshot_preview1.fd_write",
        ),
        (
            "unknown ABI version",
            wat(&format!(
                r#"(@custom "kith.manifest" "{{\"abi\":3}}") {EXPORTS}"#
            )),
            422,
            "invalid_module",
            "ABI versions 1 to 2",
        ),
        (
            "malformed manifest",
            wat(&format!(
                r#"(@custom "kith.manifest" "{{\"fuel\":\"lots\"}}") {EXPORTS}"#
            )),
            422,
            "invalid_module",
            "malformed manifest",
        ),
        (
            "absurd manifest",
            wat(&format!(
                r#"(@custom "kith.manifest" "{{\"timeout_ms\":99999999}}") {EXPORTS}"#
            )),
            422,
            "invalid_module",
            "timeout_ms",
        ),
        (
            "over the size cap",
            big,
            413,
            "module_too_large",
            "100000 bytes",
        ),
    ];
    for (name, bytes, status, kind, needle) in cases {
        let resp = post(&url, bytes);
        assert_eq!(resp.status, status, "{name}: {:?}", resp.json());
        assert_eq!(resp.kind(), kind, "{name}");
        assert!(
            resp.message().contains(needle),
            "{name}: expected {needle:?} in {:?}",
            resp.message()
        );
    }
    let status = node.status();
    assert_eq!(status["functions_stored"], 0);
    let blobs = std::fs::read_dir(node.data_dir.join("store/blobs"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0, "nothing may be stored for refused modules");

    // And the node still takes a good module.
    assert_eq!(post(&url, hello).status, 201);
}

#[test]
fn unknown_and_malformed_references() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(BIN, &dir.path().join("n"), &[]);
    let missing = "0".repeat(64);
    let r = post(&format!("{}/v1/call/{missing}", node.url), vec![]);
    assert_eq!((r.status, r.kind().as_str()), (404, "not_found"));
    let r = get(&format!("{}/v1/functions/{missing}", node.url));
    assert_eq!(r.status, 404);
    let r = post(&format!("{}/v1/call/not-a-hash", node.url), vec![]);
    assert_eq!((r.status, r.kind().as_str()), (400, "bad_reference"));
    assert!(r.message().contains("64 lowercase hex"), "{}", r.message());
    let r = get(&format!("{}/v1/nope", node.url));
    assert_eq!(r.status, 404);
}
