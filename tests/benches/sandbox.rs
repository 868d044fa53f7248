//! Sandbox benchmarks, printed as tables (results go to docs/benchmarks.md):
//!
//! (j) fuel per CPU-millisecond: ordinary code (arithmetic, loads and stores, calls,
//!     the example functions) beside bulk-heavy code (`memory.fill`, `memory.copy`,
//!     `table.fill`, `memory.grow` then touching every page), each run in process
//!     through the node's runtime until its fuel runs out or it returns, timed by the
//!     thread's own CPU clock; interleaved rounds, medians;
//! (k) compile time and peak memory of the worst function bodies the structural
//!     limits allow, compiled one at a time.
//!
//! Run: `cargo bench -p kith-tests --bench sandbox`

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use kith_node::runtime::{Runtime, RuntimeConfig};
use kith_node::store::Store;
use kith_protocol::limits::{Caps, EffectiveLimits};
use kith_tests::hostile::module;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the pointer we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn peak_rss_mib() -> u64 {
    kith_tests::proc_status_bytes(std::process::id(), "VmHWM:") >> 20
}

const FUEL: u64 = 500_000_000;

fn workloads() -> Vec<(&'static str, &'static str, Vec<u8>, Vec<u8>)> {
    let m = |body: &str| {
        module(
            &format!(r#"{{"fuel": {FUEL}, "timeout_ms": 30000, "memory_bytes": 67108864}}"#),
            body,
        )
    };
    vec![
        (
            "ordinary",
            "arithmetic loop",
            m(
                r#"(func (export "kith_call") (param i32 i32) (result i32) (local $x i64)
                   (loop $l (local.set $x (i64.add (i64.mul (local.get $x) (i64.const 3)) (i64.const 7))) (br $l))
                   i32.const 0)"#,
            ),
            Vec::new(),
        ),
        (
            "ordinary",
            "loads and stores over 1 MiB",
            m(
                r#"(func (export "kith_call") (param i32 i32) (result i32) (local $i i32)
                   (drop (memory.grow (i32.const 16)))
                   (loop $l
                     (i32.store (local.get $i) (i32.add (i32.load (local.get $i)) (i32.const 1)))
                     (local.set $i (i32.and (i32.add (local.get $i) (i32.const 4)) (i32.const 1048575)))
                     (br $l))
                   i32.const 0)"#,
            ),
            Vec::new(),
        ),
        (
            "ordinary",
            "function calls",
            m(
                r#"(func $f (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
                 (func (export "kith_call") (param i32 i32) (result i32) (local $x i32)
                   (loop $l (local.set $x (call $f (local.get $x))) (br $l))
                   i32.const 0)"#,
            ),
            Vec::new(),
        ),
        (
            "ordinary",
            "cpu_heavy example (Rust)",
            kith_tests::guest("cpu_heavy"),
            b"200000".to_vec(),
        ),
        (
            "bulk",
            "memory.fill, 64 KiB each",
            m(r#"(func (export "kith_call") (param i32 i32) (result i32)
                   (loop $l (memory.fill (i32.const 0) (i32.const 7) (i32.const 65536)) (br $l))
                   i32.const 0)"#),
            Vec::new(),
        ),
        (
            "bulk",
            "memory.fill, 16 MiB each",
            m(r#"(func (export "kith_call") (param i32 i32) (result i32)
                   (drop (memory.grow (i32.const 512)))
                   (loop $l (memory.fill (i32.const 0) (i32.const 7) (i32.const 16777216)) (br $l))
                   i32.const 0)"#),
            Vec::new(),
        ),
        (
            "bulk",
            "memory.copy, 1 MiB each",
            m(r#"(func (export "kith_call") (param i32 i32) (result i32)
                   (drop (memory.grow (i32.const 32)))
                   (loop $l (memory.copy (i32.const 0) (i32.const 1048576) (i32.const 1048576)) (br $l))
                   i32.const 0)"#),
            Vec::new(),
        ),
        (
            "bulk",
            "memory.copy, 16 bytes each",
            m(r#"(func (export "kith_call") (param i32 i32) (result i32)
                   (loop $l (memory.copy (i32.const 0) (i32.const 64) (i32.const 16)) (br $l))
                   i32.const 0)"#),
            Vec::new(),
        ),
        (
            "bulk",
            "table.fill, 60,000 elements each",
            m(r#"(table 60000 funcref)
                 (func (export "kith_call") (param i32 i32) (result i32)
                   (loop $l (table.fill (i32.const 0) (ref.null func) (i32.const 60000)) (br $l))
                   i32.const 0)"#),
            Vec::new(),
        ),
        (
            "bulk",
            "memory.grow to 64 MiB, touching every page",
            module(
                r#"{"fuel": 500000000, "memory_bytes": 67108864}"#,
                r#"(func (export "kith_call") (param i32 i32) (result i32) (local $p i32)
                     (drop (memory.grow (i32.const 1000)))
                     (loop $l
                       (i32.store8 (local.get $p) (i32.const 1))
                       (local.set $p (i32.add (local.get $p) (i32.const 4096)))
                       (br_if $l (i32.lt_u (local.get $p) (i32.const 65536000))))
                     i32.const 0)"#,
            ),
            Vec::new(),
        ),
    ]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), 1 << 30).unwrap());
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let loads: Vec<_> = workloads()
        .into_iter()
        .map(|(kind, name, bytes, input)| {
            let info = kith_protocol::module::inspect(&bytes, 1 << 24).unwrap();
            let (id, _) = store.put(&bytes).unwrap();
            let loaded = runtime.load_blocking(&store, &id).unwrap();
            let limits = EffectiveLimits::new(&info.manifest, &Caps::default()).unwrap();
            (kind, name, loaded, limits, input)
        })
        .collect();
    println!("(k) compiling the worst bodies the structural limits allow, one at a time\n");
    println!("| function body | wasm bytes | compile | peak RSS above before the compile |");
    println!("|---|---|---|---|");
    let worst = [
        (
            "dependent i64 arithmetic, 256 KiB",
            module(
                "{}",
                &format!(
                    r#"(func (export "kith_call") (param i32 i32) (result i32) (i64.const 1) {} (drop) i32.const 0)"#,
                    "(i64.const 3) (i64.mul) ".repeat(87_000)
                ),
            ),
        ),
        (
            "a br_table of 60,000 targets in 999 blocks",
            module(
                "{}",
                &format!(
                    r#"(func (export "kith_call") (param i32 i32) (result i32) {} (br_table {} 0 (local.get 0)) {} i32.const 0)"#,
                    "(block ".repeat(999),
                    (0..60_000)
                        .map(|i| (i % 999).to_string())
                        .collect::<Vec<_>>()
                        .join(" "),
                    ")".repeat(999)
                ),
            ),
        ),
        (
            "20,000 locals, all live",
            module(
                "{}",
                &format!(
                    r#"(func (export "kith_call") (param i32 i32) (result i32) (local {}) {} i32.const 0)"#,
                    "i64 ".repeat(19_998),
                    (0..9_000)
                        .map(|i| format!(
                            "(local.set {} (i64.add (local.get {}) (local.get {})))",
                            2 + (i * 7919) % 19_998,
                            2 + i % 19_998,
                            2 + (i * 31) % 19_998
                        ))
                        .collect::<String>()
                ),
            ),
        ),
    ];
    for (name, bytes) in worst {
        let (id, _) = store.put(&bytes).unwrap();
        // Resets the peak RSS to the current RSS (Linux: clear_refs, "5").
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
        let before = peak_rss_mib();
        let started = Instant::now();
        let result = runtime.load_blocking(&store, &id);
        let took = started.elapsed();
        assert!(result.is_ok(), "{name}: {:?}", result.err());
        println!(
            "| {name} | {} | {:.0} ms | {} MiB |",
            bytes.len(),
            took.as_secs_f64() * 1000.0,
            peak_rss_mib() - before
        );
    }

    const ROUNDS: usize = 5;
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); loads.len()];
    for _ in 0..ROUNDS {
        for (i, (_, _, loaded, limits, input)) in loads.iter().enumerate() {
            let cpu = thread_cpu();
            let fuel = match runtime.invoke(loaded, input, limits, None) {
                Ok(o) => o.fuel_used,
                Err(_) => limits.fuel,
            };
            let ms = (thread_cpu() - cpu).as_secs_f64() * 1000.0;
            rates[i].push(fuel as f64 / ms);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = rates.iter_mut().map(median).collect();
    let ordinary = medians[0];
    println!("(j) fuel per CPU-millisecond, {ROUNDS} interleaved rounds, medians\n");
    println!("| kind | workload | fuel per CPU-ms | vs. the arithmetic loop |");
    println!("|---|---|---|---|");
    for ((kind, name, ..), m) in loads.iter().zip(&medians) {
        println!("| {kind} | {name} | {:.0} | {:.2}× |", m, m / ordinary);
    }
    println!(
        "\nA ratio above 1 means the workload is charged more fuel per CPU-millisecond than \
         plain arithmetic (it cannot take more CPU than its fuel suggests); below 1, less.\n"
    );
}
