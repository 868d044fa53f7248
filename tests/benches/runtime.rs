//! Runtime benchmarks, printed as tables (results go to docs/benchmarks.md):
//!
//! (a) a warm call through the node's runtime path (fresh store and instance, fuel,
//!     memory cap, watchdog, host functions) vs. bare wasmer instantiate + call of the
//!     same module in the same process, measured interleaved so both see the same
//!     machine state;
//! (c) the first call after publish (compile included), a load from the artifact cache
//!     (what a restart costs), and a warm call;
//! (i) state inside a call: the same tiny module with no state access, one
//!     `state_get`, one `state_put` (an fsynced change), and the `visit_counter`
//!     example (two increments and an append), interleaved.
//!
//! Run: `cargo bench -p kith-tests --bench runtime`

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use kith_node::runtime::{Runtime, StateAccess};
use kith_node::state::{StateLimits, StateStore};
use kith_node::store::Store as BlobStore;
use kith_protocol::limits::{Caps, EffectiveLimits};
use wasmer::{
    Function, FunctionEnv, FunctionEnvMut, Instance, Memory, Module, Store, TypedFunction, imports,
};

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

struct Bare {
    store_engine: wasmer::Engine,
    module: Module,
}

#[derive(Default)]
struct Env {
    memory: Option<Memory>,
    output: Vec<u8>,
}

fn out(mut env: FunctionEnvMut<'_, Env>, ptr: i32, len: i32) {
    let memory = env.data().memory.clone().unwrap();
    let bytes = memory
        .view(&env)
        .copy_range_to_vec(ptr as u64..(ptr + len) as u64)
        .unwrap();
    env.data_mut().output = bytes;
}

impl Bare {
    fn call(&self, input: &[u8]) -> Vec<u8> {
        let mut store = Store::new(self.store_engine.clone());
        let env = FunctionEnv::new(&mut store, Env::default());
        let imports = imports! {
            "kith" => {
                "output" => Function::new_typed_with_env(&mut store, &env, out),
                "error" => Function::new_typed(&mut store, |_: i32, _: i32| {}),
                "log" => Function::new_typed(&mut store, |_: i32, _: i32, _: i32| {}),
                "now_ms" => Function::new_typed(&mut store, || 0i64),
            }
        };
        let instance = Instance::new(&mut store, &self.module, &imports).unwrap();
        let memory = instance.exports.get_memory("memory").unwrap().clone();
        env.as_mut(&mut store).memory = Some(memory.clone());
        let alloc: TypedFunction<i32, i32> = instance
            .exports
            .get_typed_function(&store, "kith_alloc")
            .unwrap();
        let call: TypedFunction<(i32, i32), i32> = instance
            .exports
            .get_typed_function(&store, "kith_call")
            .unwrap();
        let ptr = alloc.call(&mut store, input.len() as i32).unwrap();
        memory.view(&store).write(ptr as u64, input).unwrap();
        assert_eq!(call.call(&mut store, ptr, input.len() as i32).unwrap(), 0);
        std::mem::take(&mut env.as_mut(&mut store).output)
    }
}

/// A module that does `op` once (none, a get, or a put of its input as the value) and
/// outputs the status it returned (8 bytes, little-endian; 0 for none).
fn state_module(op: &str, doc: &str) -> Vec<u8> {
    let (import, body) = match op {
        // (The status slot stays 0.)
        "none" => (String::new(), String::new()),
        "get" => (
            r#"(import "kith" "state_get" (func $op (param i32 i32 i32 i32) (result i64)))"#
                .to_owned(),
            format!(
                "(i64.store (i32.const 4096) (call $op (i32.const 1024) (i32.const {}) (i32.const 2048) (i32.const 5)))",
                doc.len()
            ),
        ),
        _ => (
            r#"(import "kith" "state_put" (func $op (param i32 i32 i32 i32 i32 i32) (result i64)))"#
                .to_owned(),
            format!(
                "(i64.store (i32.const 4096) (call $op (i32.const 1024) (i32.const {}) (i32.const 2048) (i32.const 5) (local.get 0) (local.get 1)))",
                doc.len()
            ),
        ),
    };
    // The put writes a key of its own: `total` is visit_counter's counter.
    let path = if op == "put" { "lastv" } else { "total" };
    wat::parse_str(format!(
        r#"(module {import}
          (import "kith" "output" (func $output (param i32 i32)))
          (memory (export "memory") 1)
          (@custom "kith.manifest" "{{\"abi\":2,\"state_write\":[\"{doc}\"]}}")
          (data (i32.const 1024) "{doc}")
          (data (i32.const 2048) "{path}")
          (func (export "kith_alloc") (param i32) (result i32) (i32.const 8192))
          (func (export "kith_call") (param i32 i32) (result i32)
            {body}
            (call $output (i32.const 4096) (i32.const 8))
            (i32.const 0)))"#
    ))
    .unwrap()
}

/// (i): state operations inside a call, against a state directory on disk.
fn bench_state(runtime: &Runtime, store: &BlobStore, caps: &Caps, iterations: usize) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let state = Arc::new(StateStore::open(dir.path(), StateLimits::default()).unwrap());
    let ns = "d209b66ad471ec4c84bd324baa72799fabd5376ed0841281fa8ff3781bcd715c";
    let doc = format!("{ns}/visits");
    let modules: Vec<(&str, Vec<u8>, &[u8])> = vec![
        ("no state access", state_module("none", &doc), b""),
        ("one state_get (a counter)", state_module("get", &doc), b""),
        // The input (a new number each call) is the value: putting the value already
        // there would make no change, and write nothing.
        (
            "one state_put (a new value, fsynced)",
            state_module("put", &doc),
            b"",
        ),
        (
            "visit_counter: 2 increments + 1 append (SDK, serde)",
            kith_tests::guest("visit_counter"),
            b"alice",
        ),
    ];
    let loaded: Vec<_> = modules
        .iter()
        .map(|(_, bytes, _)| {
            let (id, _) = store.put(bytes).unwrap();
            let l = runtime.load_blocking(store, &id).unwrap();
            let limits = EffectiveLimits::new(&l.manifest, caps).unwrap();
            (l, limits)
        })
        .collect();
    let access = || StateAccess {
        store: Arc::clone(&state),
        written: Arc::new(Mutex::new(BTreeSet::new())),
        writer: kith_node::state::Writer::from_secret([7; 32], None),
    };
    // Each module's operation succeeds (a status below 0 would be a refusal, and would
    // time an error path instead). visit_counter first, so the counter exists.
    let input = |i: usize, round: usize| -> Vec<u8> {
        if i == 2 {
            round.to_string().into_bytes()
        } else {
            modules[i].2.to_vec()
        }
    };
    for i in [3, 0, 1, 2] {
        let (l, limits) = &loaded[i];
        let out = runtime
            .invoke(l, &input(i, 0), limits, Some(access()))
            .unwrap()
            .output;
        if i != 3 {
            let status = i64::from_le_bytes(out[..8].try_into().unwrap());
            assert!(status >= 0, "{}: status {status}", modules[i].0);
        }
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(iterations); modules.len()];
    for round in 0..iterations + 100 {
        // A different order each round, so no row always follows the slow one.
        for k in 0..loaded.len() {
            let i = (k + round) % loaded.len();
            let (l, limits) = &loaded[i];
            let input = input(i, round + 1);
            let t = Instant::now();
            runtime.invoke(l, &input, limits, Some(access())).unwrap();
            if round >= 100 {
                times[i].push(t.elapsed());
            }
        }
    }
    let base = median(&mut times[0]);
    println!("\n(i) state inside a call ({iterations} calls each, interleaved; state on ext4)");
    println!("| call | median | p99 | vs no state |");
    println!("|---|---|---|---|");
    for (i, (name, _, _)) in modules.iter().enumerate() {
        let m = median(&mut times[i]);
        println!(
            "| {name} | {:.1} µs | {:.1} µs | {:.2}x |",
            m.as_secs_f64() * 1e6,
            pct(&mut times[i], 0.99).as_secs_f64() * 1e6,
            m.as_secs_f64() / base.as_secs_f64()
        );
    }
    let total = state
        .get(&doc.parse().unwrap(), &["total".to_owned()])
        .unwrap();
    println!(
        "(final document: total = {total}, {} bytes on disk)",
        state.total_bytes()
    );
}

fn main() {
    let iterations: usize = std::env::var("KITH_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().unwrap();
    let caps = Caps::default();
    let store = BlobStore::open(dir.path(), 1 << 30).unwrap();
    let runtime = Runtime::new(kith_node::runtime::RuntimeConfig::default()).unwrap();

    println!("kith runtime benchmarks ({iterations} iterations per row)\n");
    println!("(c) cold vs warm, per function");
    println!(
        "| function | module bytes | first call (compile) | from artifact cache | warm call (median) |"
    );
    println!("|---|---|---|---|---|");
    for (name, input) in [
        ("hello", b"world".to_vec()),
        (
            "json_transform",
            br#"{"items":[{"name":"tea","price":2.5,"qty":2}]}"#.to_vec(),
        ),
        ("cpu_heavy", b"1000".to_vec()),
    ] {
        let bytes = kith_tests::guest(name);
        let (id, _) = store.put(&bytes).unwrap();
        let t = Instant::now();
        let loaded = runtime.load_blocking(&store, &id).unwrap();
        let limits = EffectiveLimits::new(&loaded.manifest, &caps).unwrap();
        runtime.invoke(&loaded, &input, &limits, None).unwrap();
        let first = t.elapsed();
        // A restart: a fresh runtime loads the artifact from disk.
        let fresh = Runtime::new(kith_node::runtime::RuntimeConfig::default()).unwrap();
        let t = Instant::now();
        let reloaded = fresh.load_blocking(&store, &id).unwrap();
        fresh.invoke(&reloaded, &input, &limits, None).unwrap();
        let from_cache = t.elapsed();
        let mut warm: Vec<Duration> = (0..1000)
            .map(|_| {
                let t = Instant::now();
                runtime.invoke(&loaded, &input, &limits, None).unwrap();
                t.elapsed()
            })
            .collect();
        println!(
            "| {name} | {} | {:.1} ms | {:.2} ms | {:.1} µs |",
            bytes.len(),
            first.as_secs_f64() * 1e3,
            from_cache.as_secs_f64() * 1e3,
            median(&mut warm).as_secs_f64() * 1e6
        );
    }

    println!("\n(a) warm `hello` call: kith runtime path vs bare wasmer, interleaved");
    let bytes = kith_tests::guest("hello");
    let id = kith_protocol::FunctionId::of(&bytes);
    let loaded = runtime.load_blocking(&store, &id).unwrap();
    let limits = EffectiveLimits::new(&loaded.manifest, &caps).unwrap();
    let engine = wasmer::Engine::default();
    let bare = Bare {
        module: Module::new(&engine, &bytes).unwrap(),
        store_engine: engine,
    };
    assert_eq!(bare.call(b"x"), b"hello, x!");
    let mut ours = Vec::with_capacity(iterations);
    let mut theirs = Vec::with_capacity(iterations);
    for _ in 0..1000 {
        bare.call(b"warmup");
        runtime.invoke(&loaded, b"warmup", &limits, None).unwrap();
    }
    for _ in 0..iterations {
        let t = Instant::now();
        let o = runtime.invoke(&loaded, b"bench", &limits, None).unwrap();
        ours.push(t.elapsed());
        debug_assert_eq!(o.output, b"hello, bench!");
        let t = Instant::now();
        let o = bare.call(b"bench");
        theirs.push(t.elapsed());
        debug_assert_eq!(o, b"hello, bench!");
    }
    let (m_ours, m_bare) = (median(&mut ours), median(&mut theirs));
    println!("| path | median | p99 |");
    println!("|---|---|---|");
    println!(
        "| kith runtime (fuel, memory cap, watchdog, fresh instance) | {:.2} µs | {:.2} µs |",
        m_ours.as_secs_f64() * 1e6,
        pct(&mut ours, 0.99).as_secs_f64() * 1e6
    );
    println!(
        "| bare wasmer (instantiate + call) | {:.2} µs | {:.2} µs |",
        m_bare.as_secs_f64() * 1e6,
        pct(&mut theirs, 0.99).as_secs_f64() * 1e6
    );
    println!(
        "\nratio kith / bare (medians): {:.2}x (target <= 1.5x)",
        m_ours.as_secs_f64() / m_bare.as_secs_f64()
    );

    let state_iterations: usize = std::env::var("KITH_BENCH_STATE_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    bench_state(&runtime, &store, &caps, state_iterations);
}
