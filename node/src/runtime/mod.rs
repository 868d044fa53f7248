//! The WebAssembly runtime: one engine configuration, modules compiled once (on a
//! bounded compile pool, with a deadline) and cached on disk, a fresh store and
//! instance per call, and every limit enforced with its own error.
//!
//! Limits per call, and how each is enforced:
//! - fuel: kith's instrumentation compiled into every module (`fuel.rs`); every
//!   operator costs one unit and bulk memory and table operations cost in proportion
//!   to their length; running out traps.
//! - memory: tunables cap every memory's maximum at the manifest's ceiling; a refused
//!   `memory.grow` is noticed on the running thread, so the resulting trap is reported
//!   as a memory limit, not a generic trap. A module has exactly one memory.
//! - tables: tunables cap every table's maximum at the manifest's `table_elements`; a
//!   refused `table.grow` is flagged by the instrumentation, so a trap after it is
//!   reported as a table limit.
//! - wall time: a watchdog thread drains the fuel of a guest past its deadline, so it
//!   traps at its next metering check (see `watchdog.rs`).
//! - the start function: taken out of instantiation by the instrumentation and run by
//!   the runtime like the entry points, under the same fuel, memory and watchdog.
//! - input and output size: checked before the input is copied in and inside the
//!   `output` host function, before the output is copied out.
//! - stack: the guest runs on its own fixed-size stack; overflow traps.
//! - compilation: structural limits at publish (`kith_protocol::module::structure`),
//!   then a compile pool of its own threads with a deadline (`compile.rs`).

mod backend;
mod compile;
#[cfg(feature = "jit")]
mod engine;
#[cfg(feature = "jit")]
mod fuel;
mod host;
mod interp;
mod invoke;
#[cfg(feature = "jit")]
mod jit;
#[cfg(feature = "jit")]
mod link;
mod wasi;
#[cfg(feature = "jit")]
mod watchdog;

pub use backend::Backend;
pub use compile::{COMPILE_QUEUE, MAX_REFUSALS, RuntimeConfig, TIMEOUT_MEMORY};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
#[cfg(feature = "jit")]
use std::time::Instant;

use kith_protocol::{ErrorKind, FunctionId, Manifest};
#[cfg(feature = "jit")]
use wasmer::{Engine, Instance, Module, Store, TypedFunction};

use crate::clock::lock;
use crate::store::StoreError;
pub use host::StateAccess;

/// How many compiled modules stay loaded in memory.
const LOADED_CAPACITY: usize = 256;

/// The CPU score's workload, encoded by hand (so the node needs no WAT parser):
///
/// ```wat
/// (module
///   (func (export "spin") (param $n i64) (result i64) (local $acc i64)
///     (loop $l
///       (local.set $acc (i64.add (local.get $acc) (i64.mul (local.get $n) (i64.const 3))))
///       (local.set $n (i64.sub (local.get $n) (i64.const 1)))
///       (br_if $l (i64.gt_s (local.get $n) (i64.const 0))))
///     (local.get $acc)))
/// ```
const SPIN_MODULE: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
    0x01, 0x06, 0x01, 0x60, 0x01, 0x7e, 0x01, 0x7e, // types: (i64) -> (i64)
    0x03, 0x02, 0x01, 0x00, // functions: one of type 0
    0x07, 0x08, 0x01, 0x04, b's', b'p', b'i', b'n', 0x00, 0x00, // export "spin" = func 0
    0x0a, 0x23, 0x01, 0x21, // code: one body of 33 bytes
    0x01, 0x01, 0x7e, // one local: i64 (acc)
    0x03, 0x40, // loop
    0x20, 0x01, 0x20, 0x00, 0x42, 0x03, 0x7e, 0x7c, 0x21, 0x01, // acc += n * 3
    0x20, 0x00, 0x42, 0x01, 0x7d, 0x21, 0x00, // n -= 1
    0x20, 0x00, 0x42, 0x00, 0x55, 0x0d, 0x00, // br_if (n > 0)
    0x0b, // end loop
    0x20, 0x01, 0x0b, // acc, end
];

/// Why a call did not produce output. Each limit has its own variant.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum InvokeError {
    /// The input is larger than the function accepts.
    #[error("input is {size} bytes, the limit is {limit} bytes (max_input_bytes)")]
    InputTooLarge {
        /// Input size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The output is larger than the function may produce.
    #[error("output is {size} bytes, the limit is {limit} bytes (max_output_bytes)")]
    OutputTooLarge {
        /// Output size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The call used up its fuel.
    #[error("out of fuel: the call used its whole budget of {limit} fuel (fuel)")]
    OutOfFuel {
        /// The budget.
        limit: u64,
    },
    /// The guest tried to grow memory past its ceiling.
    #[error("memory limit: the guest tried to grow its memory past {limit} bytes (memory_bytes)")]
    MemoryLimit {
        /// The ceiling, in bytes.
        limit: u64,
    },
    /// The guest tried to grow a table past its ceiling.
    #[error("table limit: the guest tried to grow a table past {limit} elements (table_elements)")]
    TableLimit {
        /// The ceiling, in elements.
        limit: u64,
    },
    /// The call ran past its wall-clock limit.
    #[error("timeout: the call ran longer than {limit_ms} ms (timeout_ms)")]
    Timeout {
        /// The limit, in milliseconds.
        limit_ms: u64,
    },
    /// The guest's call stack overflowed.
    #[error("stack overflow: the guest exhausted its {limit} byte stack (deep recursion?)")]
    StackOverflow {
        /// Stack size, in bytes.
        limit: u64,
    },
    /// The guest trapped; the message is the guest's own when it gave one (a panic).
    #[error("trap: {message}")]
    Trap {
        /// What happened.
        message: String,
    },
    /// The function returned an error.
    #[error("the function returned an error: {message}")]
    FunctionError {
        /// The guest's error message.
        message: String,
    },
    /// The function asks for more than this node gives any call.
    #[error(transparent)]
    Incapable(#[from] kith_protocol::LimitExceeded),
    /// The function is not stored here.
    #[error("function {0} is not stored on this node")]
    NotFound(FunctionId),
    /// The stored module failed verification and was deleted.
    #[error(
        "the stored bytes of function {0} failed verification and were deleted; publish it again"
    )]
    Corrupt(FunctionId),
    /// The stored module is not a valid function (e.g. stored by an older version).
    #[error("invalid module: {0}")]
    Invalid(String),
    /// Compiling the module took longer than the node allows; it is refused here
    /// from now on, without compiling again.
    #[error(
        "compiling function {function} took longer than {limit_ms} ms (compile_timeout_ms); this node refuses it"
    )]
    CompileTimeout {
        /// The function.
        function: FunctionId,
        /// The deadline, in milliseconds.
        limit_ms: u64,
    },
    /// Every compile worker is busy and the compile queue is full.
    #[error(
        "busy: {queued} modules are waiting to compile (compile_workers = {workers}); retry shortly"
    )]
    CompileBusy {
        /// Compile workers.
        workers: usize,
        /// Modules waiting.
        queued: usize,
    },
    /// Something failed on this node, not in the guest.
    #[error("internal error: {0}")]
    Internal(String),
}

impl InvokeError {
    /// The error kind (`docs/http-api.md`).
    pub fn kind(&self) -> ErrorKind {
        use ErrorKind as K;
        match self {
            Self::InputTooLarge { .. } => K::InputTooLarge,
            Self::OutputTooLarge { .. } => K::OutputTooLarge,
            Self::OutOfFuel { .. } => K::OutOfFuel,
            Self::MemoryLimit { .. } => K::MemoryLimit,
            Self::TableLimit { .. } => K::TableLimit,
            Self::Timeout { .. } => K::Timeout,
            Self::StackOverflow { .. } => K::StackOverflow,
            Self::Trap { .. } => K::Trap,
            Self::FunctionError { .. } => K::FunctionError,
            Self::Incapable(_) => K::ExceedsNodeCaps,
            Self::NotFound(_) => K::NotFound,
            Self::Corrupt(_) => K::Corrupt,
            Self::Invalid(_) => K::InvalidModule,
            Self::CompileTimeout { .. } => K::CompileTimeout,
            Self::CompileBusy { .. } => K::Busy,
            Self::Internal(_) => K::Internal,
        }
    }
}

impl From<StoreError> for InvokeError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => Self::NotFound(id),
            StoreError::Corrupt(id) => Self::Corrupt(id),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// Where a loaded module's machine code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadSource {
    /// Compiled now.
    Compiled,
    /// Loaded from the on-disk artifact cache.
    ArtifactCache,
}

/// A compiled module, ready to instantiate.
pub struct Loaded {
    /// The function id.
    pub id: FunctionId,
    /// Its manifest.
    pub manifest: Manifest,
    /// Where the code came from.
    pub source: LoadSource,
    /// kith's own ABI or a WASI command.
    pub kind: kith_protocol::module::ModuleKind,
    /// The WASI functions it imports (linked for its calls only).
    wasi: Vec<&'static str>,
    code: Code,
    last_used: AtomicU64,
}

/// A loaded module's code, for the backend that loaded it.
pub(crate) enum Code {
    /// Machine code from cranelift, and its engine.
    #[cfg(feature = "jit")]
    Jit { module: Module, engine: Engine },
    /// Translated for the interpreter, with its host linked.
    Interp(interp::Compiled),
}

/// A successful call.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The output bytes.
    pub output: Vec<u8>,
    /// Fuel used.
    pub fuel_used: u64,
    /// Time from instantiation to return.
    pub wall: Duration,
    /// Log lines dropped because the call wrote too many.
    pub logs_dropped: u32,
}

/// Counters.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct RuntimeStats {
    /// Modules compiled since start.
    pub compiled: u64,
    /// Compiles started since start, whatever their end (a refused one included).
    pub compile_attempts: u64,
    /// Modules loaded from the artifact cache since start.
    pub artifact_cache_hits: u64,
    /// Modules loaded in memory now.
    pub loaded: usize,
    /// Modules compiling or waiting to compile now.
    pub compiling: usize,
    /// Modules this node refuses because compiling them took too long.
    pub refused: usize,
}

/// The runtime.
pub struct Runtime {
    tag: String,
    loaded: Mutex<HashMap<FunctionId, Arc<Loaded>>>,
    compiler: compile::Compiler,
    #[cfg(feature = "jit")]
    watchdog: watchdog::Watchdog,
    clock: AtomicU64,
    compiled: AtomicU64,
    compile_attempts: AtomicU64,
    artifact_hits: AtomicU64,
    max_module_bytes: u64,
    backend: Backend,
    /// The interpreter's engine (one for the process: its configuration is global).
    interp: wasmi::Engine,
}

impl Runtime {
    /// Builds the engine configuration, starts the watchdog and the compile pool.
    ///
    /// # Errors
    /// Fails if a thread cannot be started.
    pub fn new(config: RuntimeConfig) -> std::io::Result<Self> {
        // wasmer compiles call trampolines on rayon's global pool, which has a thread
        // per core by default: one is enough, so a compile never takes every core.
        // (Fails harmlessly when the pool already exists.)
        #[cfg(feature = "jit")]
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "kith-trampolines".into())
            .build_global();
        #[cfg(feature = "jit")]
        let tag = engine::tag(&engine::build());
        #[cfg(not(feature = "jit"))]
        let tag = "interpreter".to_owned();
        Ok(Self {
            tag,
            loaded: Mutex::new(HashMap::new()),
            compiler: compile::Compiler::start(&config)?,
            #[cfg(feature = "jit")]
            watchdog: watchdog::Watchdog::start()?,
            clock: AtomicU64::new(0),
            compiled: AtomicU64::new(0),
            compile_attempts: AtomicU64::new(0),
            artifact_hits: AtomicU64::new(0),
            max_module_bytes: config.max_module_bytes,
            backend: config.backend.resolve(),
            interp: interp::engine(),
        })
    }

    /// The engine tag naming cached artifacts.
    pub fn engine_tag(&self) -> &str {
        &self.tag
    }

    /// The backend that runs functions here.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Counters.
    pub fn stats(&self) -> RuntimeStats {
        RuntimeStats {
            compiled: self.compiled.load(Ordering::Relaxed),
            compile_attempts: self.compile_attempts.load(Ordering::Relaxed),
            artifact_cache_hits: self.artifact_hits.load(Ordering::Relaxed),
            loaded: lock(&self.loaded).len(),
            compiling: self.compiler.pending(),
            refused: self.compiler.refused_count(),
        }
    }

    /// Ids of the modules loaded in memory.
    pub fn loaded_ids(&self) -> Vec<FunctionId> {
        lock(&self.loaded).keys().copied().collect()
    }

    /// Measures this machine's CPU speed score: fuel units executed per millisecond on
    /// one core, by running a metered arithmetic loop for about 20 ms.
    pub fn measure_cpu_score(&self) -> u32 {
        if self.backend == Backend::Interpreter || cfg!(not(feature = "jit")) {
            return interp::cpu_score(&self.interp, SPIN_MODULE)
                .map_or(10_000, |score| score.clamp(1.0, 100_000_000.0) as u32);
        }
        self.jit_cpu_score()
    }

    #[cfg(not(feature = "jit"))]
    fn jit_cpu_score(&self) -> u32 {
        10_000
    }

    #[cfg(feature = "jit")]
    fn jit_cpu_score(&self) -> u32 {
        const FUEL: u64 = 20_000_000;
        // The best of several short runs: other work on the machine (e.g. several nodes
        // starting at once) only ever makes a run slower, so the fastest is the steady
        // speed.
        let measure = || -> Option<f64> {
            let engine = engine::build();
            let module = Module::new(&engine, SPIN_MODULE).ok()?;
            let mut store = Store::new(engine);
            let instance = Instance::new(&mut store, &module, &wasmer::imports! {}).ok()?;
            let spin: TypedFunction<i64, i64> =
                instance.exports.get_typed_function(&store, "spin").ok()?;
            let mut best: f64 = 0.0;
            for _ in 0..7 {
                fuel::set_remaining(&mut store, &instance, FUEL)?;
                let started = Instant::now();
                // Runs out of fuel by design: the trap ends the measurement.
                let _ = spin.call(&mut store, i64::MAX);
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                best = best.max(FUEL as f64 / ms.max(0.001));
            }
            Some(best)
        };
        measure().map_or(100_000, |score| score.clamp(1.0, 100_000_000.0) as u32)
    }

    /// The loaded module for `id`, if it is in memory. Cheap; never blocks on I/O.
    pub fn cached(&self, id: &FunctionId) -> Option<Arc<Loaded>> {
        let loaded = lock(&self.loaded).get(id).cloned()?;
        loaded.last_used.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        Some(loaded)
    }

    /// Drops a module from memory (e.g. after its blob was evicted).
    pub fn forget(&self, id: &FunctionId) {
        lock(&self.loaded).remove(id);
    }

    /// Keeps `loaded` in memory, evicting the least recently used module when full.
    fn remember(&self, loaded: &Arc<Loaded>) {
        let mut map = lock(&self.loaded);
        if map.len() >= LOADED_CAPACITY {
            let victim = map
                .iter()
                .min_by_key(|(_, l)| l.last_used.load(Ordering::Relaxed))
                .map(|(id, _)| *id);
            if let Some(v) = victim {
                map.remove(&v);
            }
        }
        map.insert(loaded.id, Arc::clone(loaded));
    }
}

#[cfg(all(test, feature = "jit"))]
mod tests {
    use super::*;

    /// The hand-encoded CPU-score module is valid and computes what its WAT says:
    /// spin(5) = 3 * (5 + 4 + 3 + 2 + 1).
    #[test]
    fn the_spin_module_is_the_documented_loop() {
        let engine = engine::build();
        let module = Module::new(&engine, SPIN_MODULE).unwrap();
        let mut store = Store::new(engine);
        let instance = Instance::new(&mut store, &module, &wasmer::imports! {}).unwrap();
        fuel::set_remaining(&mut store, &instance, 1_000_000).unwrap();
        let spin: TypedFunction<i64, i64> =
            instance.exports.get_typed_function(&store, "spin").unwrap();
        assert_eq!(spin.call(&mut store, 5).unwrap(), 45);
        assert_eq!(spin.call(&mut store, 1).unwrap(), 3);
    }
}
