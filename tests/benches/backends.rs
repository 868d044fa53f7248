//! The two backends and the two ABIs side by side in one run (issue 17), printed as
//! tables for docs/benchmarks.md (p):
//!
//! - per backend (cranelift, interpreter): the first call of a function (compile or
//!   translate, then run) and its warm call, for `hello` and `cpu_heavy` (n = 1000);
//! - the same function (`hello, NAME!` from the input) as a native-ABI module and as a
//!   WASI command, written alike in WAT, warm, on each backend.
//!
//! Warm calls are interleaved between the backends so both see the same machine.
//!
//! Run: `cargo bench -p kith-tests --bench backends` (KITH_BENCH_ITERS sets the warm
//! calls per row, default 2000).

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use kith_node::runtime::{Backend, Loaded, Runtime, RuntimeConfig};
use kith_node::store::Store as BlobStore;
use kith_protocol::limits::{Caps, EffectiveLimits};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn micros(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

/// `hello, INPUT!` through kith's native ABI.
const NATIVE_HELLO: &str = r#"(module
  (import "kith" "output" (func $output (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "hello, ")
  (func (export "kith_alloc") (param i32) (result i32) (i32.const 7))
  (func (export "kith_call") (param $ptr i32) (param $len i32) (result i32)
    (i32.store8 (i32.add (i32.const 7) (local.get $len)) (i32.const 33))
    (call $output (i32.const 0) (i32.add (local.get $len) (i32.const 8)))
    (i32.const 0)))"#;

/// The same, as a WASI command: the input from stdin, the answer to stdout.
const WASI_HELLO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "hello, ")
  (func (export "_start") (local $n i32)
    (i32.store (i32.const 0) (i32.const 1031))
    (i32.store (i32.const 4) (i32.const 4096))
    (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (local.set $n (i32.load (i32.const 8)))
    (i32.store8 (i32.add (i32.const 1031) (local.get $n)) (i32.const 33))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.add (local.get $n) (i32.const 8)))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 12)))))"#;

struct Side {
    name: &'static str,
    runtime: Arc<Runtime>,
}

fn runtime(backend: Backend) -> Arc<Runtime> {
    Arc::new(
        Runtime::new(RuntimeConfig {
            backend,
            ..RuntimeConfig::default()
        })
        .unwrap(),
    )
}

fn main() {
    let iterations: usize = std::env::var("KITH_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    let dir = tempfile::tempdir().unwrap();
    let caps = Caps::default();
    let store = BlobStore::open(dir.path(), 1 << 30).unwrap();
    let sides = [
        Side {
            name: "cranelift",
            runtime: runtime(Backend::Cranelift),
        },
        Side {
            name: "interpreter",
            runtime: runtime(Backend::Interpreter),
        },
    ];
    let functions: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        (
            "hello (Rust SDK)",
            kith_tests::guest("hello"),
            b"bench".to_vec(),
        ),
        (
            "cpu_heavy n = 1000 (Rust SDK)",
            kith_tests::guest("cpu_heavy"),
            b"1000".to_vec(),
        ),
        (
            "hello, native ABI (WAT)",
            wat::parse_str(NATIVE_HELLO).unwrap(),
            b"bench".to_vec(),
        ),
        (
            "hello, WASI command (WAT)",
            wat::parse_str(WASI_HELLO).unwrap(),
            b"bench".to_vec(),
        ),
    ];
    println!("kith backends side by side ({iterations} warm calls per row, interleaved)\n");
    println!("| function | backend | first call (load + run) | warm call (median) | fuel used |");
    println!("|---|---|---|---|---|");
    for (name, bytes, input) in &functions {
        let (id, _) = store.put(bytes).unwrap();
        let mut loaded: Vec<(Arc<Loaded>, EffectiveLimits, Duration, u64)> = Vec::new();
        for side in &sides {
            let t = Instant::now();
            let l = side.runtime.load_blocking(&store, &id).unwrap();
            let limits = EffectiveLimits::new(&l.manifest, &caps).unwrap();
            let out = side.runtime.invoke(&l, input, &limits, None).unwrap();
            loaded.push((l, limits, t.elapsed(), out.fuel_used));
        }
        let expected = sides[0]
            .runtime
            .invoke(&loaded[0].0, input, &loaded[0].1, None)
            .unwrap()
            .output;
        let mut warm: Vec<Vec<Duration>> = vec![Vec::new(); sides.len()];
        let rounds = if name.starts_with("cpu_heavy") {
            iterations / 10
        } else {
            iterations
        };
        for _ in 0..rounds.max(10) {
            for (i, side) in sides.iter().enumerate() {
                let (l, limits, _, _) = &loaded[i];
                let t = Instant::now();
                let out = side.runtime.invoke(l, input, limits, None).unwrap();
                warm[i].push(t.elapsed());
                assert_eq!(out.output, expected, "{name} on {}", side.name);
            }
        }
        for (i, side) in sides.iter().enumerate() {
            println!(
                "| {name} | {} | {} | {} | {} |",
                side.name,
                micros(loaded[i].2),
                micros(median(std::mem::take(&mut warm[i]))),
                loaded[i].3
            );
        }
    }
    for side in &sides {
        println!(
            "\n{}: CPU score {} fuel/ms",
            side.name,
            side.runtime.measure_cpu_score()
        );
    }
}
