//! Runtime benchmarks, printed as tables (results go to docs/benchmarks.md):
//!
//! (a) a warm call through the node's runtime path (fresh store and instance, fuel,
//!     memory cap, watchdog, host functions) vs. bare wasmer instantiate + call of the
//!     same module in the same process, measured interleaved so both see the same
//!     machine state;
//! (c) the first call after publish (compile included), a load from the artifact cache
//!     (what a restart costs), and a warm call.
//!
//! Run: `cargo bench -p kith-tests --bench runtime`

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use kith_node::runtime::Runtime;
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

fn main() {
    let iterations: usize = std::env::var("KITH_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().unwrap();
    let caps = Caps::default();
    let store = BlobStore::open(dir.path(), 1 << 30).unwrap();
    let runtime = Runtime::new(caps.max_fuel, caps.max_module_bytes).unwrap();

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
        let loaded = runtime.load(&store, &id).unwrap();
        let limits = EffectiveLimits::new(&loaded.manifest, &caps).unwrap();
        runtime.invoke(&loaded, &input, &limits).unwrap();
        let first = t.elapsed();
        // A restart: a fresh runtime loads the artifact from disk.
        let fresh = Runtime::new(caps.max_fuel, caps.max_module_bytes).unwrap();
        let t = Instant::now();
        let reloaded = fresh.load(&store, &id).unwrap();
        fresh.invoke(&reloaded, &input, &limits).unwrap();
        let from_cache = t.elapsed();
        let mut warm: Vec<Duration> = (0..1000)
            .map(|_| {
                let t = Instant::now();
                runtime.invoke(&loaded, &input, &limits).unwrap();
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
    let loaded = runtime.load(&store, &id).unwrap();
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
        runtime.invoke(&loaded, b"warmup", &limits).unwrap();
    }
    for _ in 0..iterations {
        let t = Instant::now();
        let o = runtime.invoke(&loaded, b"bench", &limits).unwrap();
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
}
