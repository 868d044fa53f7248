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

#[test]
fn a_c_program_built_with_clang_and_wasi_libc_is_a_function() {
    let Some(module) = toolchains::c("wordfreq") else {
        return;
    };
    let module = with_manifest(&module, r#"{"args":["2"],"fuel":20000000}"#);
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(BIN, &dir.path().join("node"), &["--offline"]);
    let published = post(&format!("{}/v1/functions", node.url), module);
    assert_eq!(published.status, 201, "{}", published.text());
    let id = published.json()["id"].as_str().unwrap().to_owned();
    let info = kith_tests::get(&format!("{}/v1/functions/{id}", node.url)).json();
    assert_eq!(info["manifest"]["args"][0], "2", "{info}");

    let r = post(
        &format!("{}/v1/call/{id}", node.url),
        b"The cat and the hat. The end, and the rest.".to_vec(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let out: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(out["words"], 10);
    assert_eq!(out["distinct"], 6);
    assert_eq!(
        out["top"],
        serde_json::json!([{"word": "the", "count": 4}, {"word": "and", "count": 2}])
    );

    // An exit code other than 0 is the function's error, with its last stderr line.
    let r = post(&format!("{}/v1/call/{id}", node.url), b"  ...  ".to_vec());
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.kind(), "function_error");
    assert!(
        r.message().contains("exit code 2: no words in the input"),
        "{}",
        r.message()
    );
    assert!(node.log_text().contains("no words in the input"));

    // Limits apply unchanged: the fuel the manifest gives runs out on a big input.
    let big = "lorem ipsum dolor sit amet ".repeat(30_000).into_bytes();
    let r = post(&format!("{}/v1/call/{id}", node.url), big);
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.kind(), "out_of_fuel");
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
    let node = NodeProcess::start(BIN, &dir.path().join("node"), &["--offline"]);
    let published = post(&format!("{}/v1/functions", node.url), module);
    assert_eq!(published.status, 201, "{}", published.text());
    let id = published.json()["id"].as_str().unwrap().to_owned();
    let r = post(&format!("{}/v1/call/{id}", node.url), b"echo me".to_vec());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, b"echo me");
    let r = post(
        &format!("{}/v1/call/{id}", node.url),
        b"open /etc/passwd".to_vec(),
    );
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.kind(), "function_error");
    assert!(r.message().contains("exit code 76"), "{}", r.message());
}
