//! Functions from other languages' own toolchains (issue 17): a WASI preview 1 command
//! module is a kith function with no glue — stdin is the input, stdout the output,
//! stderr goes to the log, the exit code decides, arguments come from the manifest —
//! and it runs under every limit a native function does.

#![allow(clippy::unwrap_used)]

use kith_tests::{NodeProcess, post, toolchains};

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");

/// Sets a module's manifest with `kith manifest set`, as an author would.
fn with_manifest(module: &[u8], json: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let (plain, out) = (dir.path().join("in.wasm"), dir.path().join("out.wasm"));
    std::fs::write(&plain, module).unwrap();
    let status = std::process::Command::new(BIN)
        .args(["manifest", "set"])
        .arg(&plain)
        .arg(json)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(out).unwrap()
}

/// Publishes `module` on `node`; its id.
fn publish(node: &NodeProcess, module: Vec<u8>) -> String {
    let published = post(&format!("{}/v1/functions", node.url), module);
    assert_eq!(published.status, 201, "{}", published.text());
    published.json()["id"].as_str().unwrap().to_owned()
}

/// Calls `id` on `node` with `input`: (status, body, error kind, error message).
fn call(node: &NodeProcess, id: &str, input: &[u8]) -> (u16, Vec<u8>, String, String) {
    let r = post(&format!("{}/v1/call/{id}", node.url), input.to_vec());
    let (kind, message) = if r.status == 200 {
        (String::new(), String::new())
    } else {
        (r.kind(), r.message())
    };
    (r.status, r.body, kind, message)
}

fn offline_node(dir: &std::path::Path) -> NodeProcess {
    NodeProcess::start(BIN, &dir.join("node"), &["--offline"])
}

#[test]
fn a_go_program_built_by_go_is_a_function() {
    let Some(module) = toolchains::go() else {
        return;
    };
    let module = with_manifest(&module, r#"{"env":{"CURRENCY":"EUR"}}"#);
    let dir = tempfile::tempdir().unwrap();
    let node = offline_node(dir.path());
    let id = publish(&node, module);
    let order = br#"{"items":[{"name":"tea","price":2.5,"qty":2},{"name":"cake","price":3.2,"qty":1}],"tax_percent":20}"#;
    let (status, body, _, message) = call(&node, &id, order);
    assert_eq!(status, 200, "{message}");
    let invoice: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(invoice["currency"], "EUR", "{invoice}");
    assert_eq!(invoice["lines"][0]["name"], "tea");
    assert_eq!(invoice["subtotal_cents"], 820);
    assert_eq!(invoice["tax_cents"], 164);
    assert_eq!(invoice["total_cents"], 984);
    let (status, _, kind, message) = call(&node, &id, b"not json");
    assert_eq!(
        (status, kind.as_str()),
        (422, "function_error"),
        "{message}"
    );
    assert!(
        message.contains("exit code 2: the input is not an order"),
        "{message}"
    );
}

#[test]
fn a_zig_program_built_by_zig_is_a_function() {
    let Some(module) = toolchains::zig() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let node = offline_node(dir.path());
    let id = publish(&node, module);
    let (status, body, _, message) = call(&node, &id, b"name, qty\ntea,2\ncake,1\n");
    assert_eq!(status, 200, "{message}");
    let rows: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        rows,
        serde_json::json!([{"name": "tea", "qty": "2"}, {"name": "cake", "qty": "1"}])
    );
    // The separator comes from the manifest's args.
    let tabs = with_manifest(&toolchains::zig().unwrap(), r#"{"args":[";"]}"#);
    let tabs = publish(&node, tabs);
    let (status, body, _, _) = call(&node, &tabs, b"a;b\n1;2\n");
    assert_eq!(status, 200);
    assert_eq!(body, b"[{\"a\":\"1\",\"b\":\"2\"}]\n");
    let (status, _, kind, message) = call(&node, &id, b"a,b\n1\n");
    assert_eq!(
        (status, kind.as_str()),
        (422, "function_error"),
        "{message}"
    );
    assert!(
        message.contains("row 2 has 1 fields, the header has 2"),
        "{message}"
    );
}

#[test]
fn an_assemblyscript_program_built_by_asc_is_a_function() {
    let Some(module) = toolchains::assemblyscript() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let node = offline_node(dir.path());
    let id = publish(&node, module);
    let markdown = b"# Hello\n\nSome *text* and **bold** `a<b`.\nMore.\n\n- one\n- two\n";
    let (status, body, _, message) = call(&node, &id, markdown);
    assert_eq!(status, 200, "{message}");
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "<h1>Hello</h1>\n<p>Some <em>text</em> and <strong>bold</strong> <code>a&lt;b</code>. More.</p>\n<ul>\n<li>one</li>\n<li>two</li>\n</ul>\n"
    );
    let (status, _, kind, message) = call(&node, &id, b"\n\n");
    assert_eq!(
        (status, kind.as_str()),
        (422, "function_error"),
        "{message}"
    );
    assert!(message.contains("nothing to render"), "{message}");
}

#[test]
fn a_c_program_built_with_clang_and_wasi_libc_is_a_function() {
    let Some(module) = toolchains::c("wordfreq") else {
        return;
    };
    let module = with_manifest(&module, r#"{"args":["2"],"fuel":20000000}"#);
    let dir = tempfile::tempdir().unwrap();
    let node = offline_node(dir.path());
    let id = publish(&node, module);
    let info = kith_tests::get(&format!("{}/v1/functions/{id}", node.url)).json();
    assert_eq!(info["manifest"]["args"][0], "2", "{info}");

    let (status, body, _, message) =
        call(&node, &id, b"The cat and the hat. The end, and the rest.");
    assert_eq!(status, 200, "{message}");
    let out: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(out["words"], 10);
    assert_eq!(out["distinct"], 6);
    assert_eq!(
        out["top"],
        serde_json::json!([{"word": "the", "count": 4}, {"word": "and", "count": 2}])
    );

    // An exit code other than 0 is the function's error, with its last stderr line.
    let (status, _, kind, message) = call(&node, &id, b"  ...  ");
    assert_eq!(
        (status, kind.as_str()),
        (422, "function_error"),
        "{message}"
    );
    assert!(
        message.contains("exit code 2: no words in the input"),
        "{message}"
    );
    assert!(node.log_text().contains("no words in the input"));

    // Limits apply unchanged: the fuel the manifest gives runs out on a big input.
    let big = "lorem ipsum dolor sit amet ".repeat(30_000).into_bytes();
    let (status, _, kind, message) = call(&node, &id, &big);
    assert_eq!((status, kind.as_str()), (422, "out_of_fuel"), "{message}");
}

/// The WASI host itself, with a command written by hand: stdin back to stdout, and a
/// file it may not open (no filesystem: `path_open` answers ENOTCAPABLE, 76, which it
/// exits with).
#[test]
fn a_wasi_command_echoes_stdin_and_has_no_filesystem() {
    let module = wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "path_open"
            (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 64))
            (i32.store (i32.const 4) (i32.const 1024))
            (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
            (i32.store (i32.const 4) (i32.load (i32.const 8)))
            (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 12)))
            (if (i32.eq (i32.load8_u (i32.const 64)) (i32.const 111))
              (then (call $exit (call $open (i32.const 3) (i32.const 0) (i32.const 64)
                (i32.const 4) (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0)
                (i32.const 16)))))))"#,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = offline_node(dir.path());
    let id = publish(&node, module);
    let (status, body, _, message) = call(&node, &id, b"echo me");
    assert_eq!(
        (status, body.as_slice()),
        (200, &b"echo me"[..]),
        "{message}"
    );
    let (status, _, kind, message) = call(&node, &id, b"open /etc/passwd");
    assert_eq!(
        (status, kind.as_str()),
        (422, "function_error"),
        "{message}"
    );
    assert!(message.contains("exit code 76"), "{message}");
}

/// A WASI command may import kith's state functions too: this one increments a
/// counter in a document (`kith.state_increment`) and prints the new value on stdout.
/// Granted by the namespace's owner, it counts; on the interpreter backend as well.
#[test]
fn a_wasi_command_reads_and_writes_state() {
    use kith_tests::cluster::{EXAMPLE_NAMESPACE, grant_functions, hold_example_key};
    let doc = format!("{EXAMPLE_NAMESPACE}/wasi-counter");
    let module = wat::parse_str(format!(
        r#"(module
          (import "kith" "state_increment"
            (func $inc (param i32 i32 i32 i32 i64) (result i64)))
          (import "kith" "result" (func $result (param i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write"
            (func $write (param i32 i32 i32 i32) (result i32)))
          (@custom "kith.manifest" "{{\"abi\":2,\"state_write\":[\"{doc}\"]}}")
          (memory (export "memory") 1)
          (data (i32.const 1024) "{doc}")
          (data (i32.const 2048) "hits")
          (func (export "_start") (local $n i32)
            (drop (call $inc (i32.const 1024) (i32.const {len}) (i32.const 2048) (i32.const 4)
              (i64.const 1)))
            (local.set $n (call $result (i32.const 4096) (i32.const 64)))
            (i32.store (i32.const 0) (i32.const 4096))
            (i32.store (i32.const 4) (local.get $n))
            (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
        len = doc.len()
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for backend in ["cranelift", "interpreter"] {
        let data = dir.path().join(backend);
        hold_example_key(&data);
        let node = NodeProcess::start(BIN, &data, &["--offline", "--backend", backend]);
        let id = publish(&node, module.clone());
        let (status, _, kind, message) = call(&node, &id, b"");
        assert_eq!(
            (status, kind.as_str()),
            (403, "permission_denied"),
            "{message}"
        );
        grant_functions(&node, EXAMPLE_NAMESPACE, &[&id], &[]);
        for expected in [b"1", b"2"] {
            let (status, body, _, message) = call(&node, &id, b"");
            assert_eq!(status, 200, "{backend}: {message}");
            assert_eq!(body, expected, "{backend}");
        }
    }
}
