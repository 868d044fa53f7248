//! Calls over HTTP: the example functions work, every hostile function hits its own
//! typed limit, and the node keeps serving after each.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use kith_tests::cluster::publish;
use kith_tests::{NodeProcess, Raw, guest, post};

const BIN: &str = env!("CARGO_BIN_EXE_kith-under-test");

struct Fixture {
    node: NodeProcess,
    hello: String,
    _dir: tempfile::TempDir,
}

fn fixture(extra: &[&str]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(BIN, &dir.path().join("n"), extra);
    let hello = publish(&node, guest("hello"));
    Fixture {
        node,
        hello,
        _dir: dir,
    }
}

fn call(node: &NodeProcess, id: &str, input: &[u8]) -> Raw {
    post(&format!("{}/v1/call/{id}", node.url), input.to_vec())
}

fn assert_hello_works(f: &Fixture) {
    let r = call(&f.node, &f.hello, b"still here");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello, still here!");
}

#[test]
fn hello_greets_its_input_and_says_who_ran_it() {
    let f = fixture(&[]);
    let r = call(&f.node, &f.hello, b"Ada Lovelace");
    assert_eq!(r.status, 200);
    let out = String::from_utf8(r.body.clone()).unwrap();
    assert!(out.contains("Ada Lovelace"), "{out}");
    assert_eq!(r.header("kith-function"), f.hello);
    assert_eq!(r.header("kith-executed-by"), f.node.node_id);
    let fuel: u64 = r.header("kith-fuel-used").parse().unwrap();
    assert!(fuel > 0 && fuel <= 10_000_000, "fuel {fuel}");
    let status = f.node.status();
    assert_eq!(status["calls_served"], 1);
    assert_eq!(status["node_id"], f.node.node_id.as_str());
}

#[test]
fn json_transform_and_cpu_heavy() {
    let f = fixture(&[]);
    let json = publish(&f.node, guest("json_transform"));
    let order = br#"{"items":[{"name":"tea","price":2.5,"qty":2},{"name":"cake","price":4.0}]}"#;
    let r = call(&f.node, &json, order);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["count"], 2);
    assert_eq!(v["total"], 9.0);
    assert_eq!(v["most_expensive"], "cake");
    assert_eq!(v["names"], serde_json::json!(["CAKE", "TEA"]));

    let bad = call(&f.node, &json, b"{oops");
    assert_eq!((bad.status, bad.kind().as_str()), (422, "function_error"));
    assert!(
        bad.message().contains("bad order JSON"),
        "{}",
        bad.message()
    );

    let cpu = publish(&f.node, guest("cpu_heavy"));
    let small = call(&f.node, &cpu, b"100");
    assert_eq!(small.body, b"25");
    let big = call(&f.node, &cpu, b"20000");
    assert_eq!(big.body, b"2262");
    let fuel = |r: &Raw| r.header("kith-fuel-used").parse::<u64>().unwrap();
    // Both pay the same for growing memory at start (3 fuel per byte); the trial
    // divisions below 20000 are millions of operations more.
    assert!(
        fuel(&big) > fuel(&small) + 1_000_000,
        "work grows with the size parameter: {} then {}",
        fuel(&small),
        fuel(&big)
    );
}

/// Every hostile behaviour gets its own error kind, and naming the limit.
#[test]
fn hostile_functions_hit_typed_limits_and_the_node_keeps_serving() {
    let f = fixture(&[]);
    let hostile = publish(&f.node, guest("hostile"));
    let cases: &[(&[u8], u16, &str, &str)] = &[
        (b"loop", 422, "out_of_fuel", "2000000000 fuel"),
        (
            b"bomb",
            422,
            "memory_limit",
            "16777216 bytes (memory_bytes)",
        ),
        (
            b"huge",
            422,
            "output_too_large",
            "limit is 1048576 bytes (max_output_bytes)",
        ),
        (b"trap", 422, "trap", "unreachable"),
        (b"panic", 422, "trap", "panicked on purpose"),
        (b"fail", 422, "function_error", "failed on purpose"),
        (b"sleep", 504, "timeout", "2000 ms (timeout_ms)"),
        // Rust keeps its call stack in linear memory: deep recursion runs off its end.
        (b"recurse", 422, "trap", "out of bounds"),
    ];
    for (input, status, kind, needle) in cases {
        let name = String::from_utf8_lossy(input);
        let started = Instant::now();
        let r = call(&f.node, &hostile, input);
        assert_eq!(
            r.status,
            *status,
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.kind(), *kind, "{name}");
        assert!(
            r.message().contains(needle),
            "{name}: {needle:?} not in {:?}",
            r.message()
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name} took {:?}",
            started.elapsed()
        );
        assert_hello_works(&f);
    }
    // A log flood is cut off, not fatal.
    let r = call(&f.node, &hostile, b"log-flood");
    assert_eq!(r.body, b"flooded");
    let log = f.node.log_text();
    let lines = log.matches("line ").count();
    assert!(lines <= 64, "guest wrote {lines} log lines; the cap is 64");
    let status = f.node.status();
    assert_eq!(status["calls_failed"], cases.len());
}

/// A guest that spends nearly all its time inside host calls (`now_ms` in a loop) is
/// stopped at its deadline over and over without harming the node: the stop lands in
/// guest code, never in the middle of a host function.
#[test]
fn timeouts_during_host_calls_leave_the_node_healthy() {
    let f = fixture(&[]);
    let bytes = guest("hostile");
    let mut manifest = kith_protocol::module::inspect(&bytes, u64::MAX)
        .unwrap()
        .manifest;
    manifest.timeout_ms = 40;
    let short = publish(
        &f.node,
        kith_protocol::module::with_manifest(&bytes, &manifest).unwrap(),
    );
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let url = format!("{}/v1/call/{short}", f.node.url);
            std::thread::spawn(move || {
                for _ in 0..15 {
                    let r = post(&url, b"sleep".to_vec());
                    assert_eq!((r.status, r.kind().as_str()), (504, "timeout"));
                    assert!(r.message().contains("40 ms"), "{}", r.message());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_hello_works(&f);
    assert_eq!(f.node.status()["calls_failed"], 60);
}

/// With a CPU share, calls draw fuel from a budget that refills at the share's rate;
/// once it is spent, calls are refused as busy, naming the cap.
#[test]
fn a_spent_cpu_share_refuses_calls_as_busy() {
    // A hundred-millionth of the machine: about 10^2 fuel per second here.
    let f = fixture(&["--cpu-share", "0.00000001"]);
    let cpu = publish(&f.node, guest("cpu_heavy"));
    let big = call(&f.node, &cpu, b"20000");
    assert_eq!(big.status, 200, "the budget starts full");
    let fuel: f64 = big.header("kith-fuel-used").parse().unwrap();
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let per_sec = f.node.status()["cpu_score"].as_f64().unwrap() * 1000.0 * cores * 1e-8;
    assert!(
        fuel > 10.0 * per_sec,
        "the call ({fuel} fuel) must overdraw the budget ({per_sec} per second) for a while"
    );
    let r = call(&f.node, &f.hello, b"x");
    assert_eq!(
        (r.status, r.kind().as_str()),
        (429, "busy"),
        "{}",
        r.message()
    );
    assert!(
        r.message().contains("cpu_share = 0.00000001"),
        "{}",
        r.message()
    );
    assert_eq!(f.node.status()["calls_refused"], 1);
}

/// A real wasm stack overflow (not Rust's shadow stack) is its own error.
#[test]
fn deep_recursion_is_a_stack_overflow() {
    let f = fixture(&[]);
    let module = wat::parse_str(
        r#"(module
            (memory (export "memory") 1)
            (func (export "kith_alloc") (param i32) (result i32) i32.const 16)
            (func $down (param i64) (result i64)
                local.get 0 i64.const 1 i64.add call $down i64.const 1 i64.add)
            (func (export "kith_call") (param i32 i32) (result i32)
                i64.const 0 call $down drop i32.const 0))"#,
    )
    .unwrap();
    let id = publish(&f.node, module);
    let r = call(&f.node, &id, b"");
    assert_eq!(
        (r.status, r.kind().as_str()),
        (422, "stack_overflow"),
        "{}",
        r.message()
    );
    assert_hello_works(&f);
}

/// Each call gets a fresh instance: state left by one call is invisible to the next.
#[test]
fn calls_cannot_see_each_other() {
    let f = fixture(&[]);
    let module = wat::parse_str(
        r#"(module
            (import "kith" "output" (func $out (param i32 i32)))
            (memory (export "memory") 1)
            (global $n (mut i32) (i32.const 0))
            (func (export "kith_alloc") (param i32) (result i32) i32.const 1024)
            (func (export "kith_call") (param i32 i32) (result i32)
                global.get $n i32.const 1 i32.add global.set $n
                ;; memory[0] += 1
                i32.const 0 i32.const 0 i32.load8_u i32.const 1 i32.add i32.store8
                ;; output "<global><memory[0]>" as two digits
                i32.const 8 global.get $n i32.const 48 i32.add i32.store8
                i32.const 9 i32.const 0 i32.load8_u i32.const 48 i32.add i32.store8
                i32.const 8 i32.const 2 call $out
                i32.const 0))"#,
    )
    .unwrap();
    let id = publish(&f.node, module);
    for _ in 0..5 {
        let r = call(&f.node, &id, b"");
        assert_eq!(r.body, b"11", "every call starts from a fresh instance");
    }
}

#[test]
fn inputs_over_the_limit_are_refused() {
    let f = fixture(&["--max-input-bytes", "2000000"]);
    // hello accepts at most 1 MiB (its manifest default); the node accepts 2 MB.
    let r = call(&f.node, &f.hello, &vec![b'a'; 1_500_000]);
    assert_eq!((r.status, r.kind().as_str()), (413, "input_too_large"));
    assert!(
        r.message().contains("1048576 bytes (max_input_bytes)"),
        "{}",
        r.message()
    );
    let r = call(&f.node, &f.hello, &vec![b'a'; 3_000_000]);
    assert_eq!((r.status, r.kind().as_str()), (413, "input_too_large"));
    assert!(r.message().contains("2000000 bytes"), "{}", r.message());
    assert_hello_works(&f);
}

#[test]
fn manifests_beyond_the_node_caps_are_refused() {
    let f = fixture(&["--max-fuel", "1000000"]);
    let r = call(&f.node, &f.hello, b"x");
    assert_eq!((r.status, r.kind().as_str()), (422, "exceeds_node_caps"));
    assert!(
        r.message().contains("fuel = 10000000") && r.message().contains("1000000"),
        "{}",
        r.message()
    );
}

#[test]
fn a_full_node_refuses_calls_as_busy() {
    let f = fixture(&["--max-concurrent-calls", "1", "--max-queued-calls", "0"]);
    let hostile = publish(&f.node, guest("hostile"));
    let url = f.node.url.clone();
    let id = hostile.clone();
    let slow = std::thread::spawn(move || post(&format!("{url}/v1/call/{id}"), b"sleep".to_vec()));
    // Wait until the slow call holds the only slot.
    let deadline = Instant::now() + Duration::from_secs(5);
    while f.node.status()["calls_running"] != 1 {
        assert!(Instant::now() < deadline, "the slow call never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = call(&f.node, &f.hello, b"x");
    assert_eq!((r.status, r.kind().as_str()), (429, "busy"));
    assert_eq!(r.header("retry-after"), "1");
    assert!(
        r.message().contains("max_concurrent_calls = 1"),
        "{}",
        r.message()
    );
    assert_eq!(slow.join().unwrap().kind(), "timeout");
    assert_hello_works(&f);
    assert_eq!(f.node.status()["calls_refused"], 1);
}

#[test]
fn concurrent_calls_all_succeed() {
    let f = fixture(&[]);
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let url = format!("{}/v1/call/{}", f.node.url, f.hello);
            std::thread::spawn(move || {
                for j in 0..20 {
                    let r = post(&url, format!("{i}-{j}").into_bytes());
                    assert_eq!(r.status, 200);
                    assert_eq!(r.body, format!("hello, {i}-{j}!").into_bytes());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(f.node.status()["calls_served"], 320);
}
