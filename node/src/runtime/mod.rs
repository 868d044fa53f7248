//! The WebAssembly runtime: one engine, modules compiled once (and cached on disk),
//! a fresh store and instance per call, and every limit enforced with its own error.
//!
//! Limits per call, and how each is enforced:
//! - fuel: a metering middleware compiled into every module; running out traps.
//! - memory: tunables cap every memory's maximum at the manifest's ceiling; a refused
//!   `memory.grow` is noticed on the running thread, so the resulting trap is reported
//!   as a memory limit, not a generic trap.
//! - wall time: a watchdog thread drains the fuel of a guest past its deadline, so it
//!   traps at its next metering check (see `watchdog.rs`).
//! - input and output size: checked before the input is copied in and inside the
//!   `output` host function, before the output is copied out.
//! - stack: the guest runs on its own fixed-size stack; overflow traps.

mod engine;
mod host;
mod watchdog;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kith_protocol::abi;
use kith_protocol::limits::EffectiveLimits;
use kith_protocol::module::{self, ModuleError};
use kith_protocol::{FunctionId, Manifest};
use wasmer::{Engine, FunctionEnv, Instance, Module, RuntimeError, Store, TypedFunction};
use wasmer_middlewares::metering::{MeteringPoints, get_remaining_points, set_remaining_points};

use crate::store::{Store as BlobStore, StoreError};
pub use host::StateAccess;
use host::{HostError, HostState};

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
    /// Something failed on this node, not in the guest.
    #[error("internal error: {0}")]
    Internal(String),
}

impl InvokeError {
    /// The error kind, as in the HTTP API (`docs/http-api.md`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InputTooLarge { .. } => "input_too_large",
            Self::OutputTooLarge { .. } => "output_too_large",
            Self::OutOfFuel { .. } => "out_of_fuel",
            Self::MemoryLimit { .. } => "memory_limit",
            Self::Timeout { .. } => "timeout",
            Self::StackOverflow { .. } => "stack_overflow",
            Self::Trap { .. } => "trap",
            Self::FunctionError { .. } => "function_error",
            Self::Incapable(_) => "exceeds_node_caps",
            Self::NotFound(_) => "not_found",
            Self::Corrupt(_) => "corrupt",
            Self::Invalid(_) => "invalid_module",
            Self::Internal(_) => "internal",
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
    module: Module,
    engine: Engine,
    last_used: AtomicU64,
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
    /// Modules loaded from the artifact cache since start.
    pub artifact_cache_hits: u64,
    /// Modules loaded in memory now.
    pub loaded: usize,
}

/// The runtime.
pub struct Runtime {
    max_fuel: u64,
    tag: String,
    loaded: Mutex<HashMap<FunctionId, Arc<Loaded>>>,
    compile_lock: Mutex<()>,
    watchdog: watchdog::Watchdog,
    clock: AtomicU64,
    compiled: AtomicU64,
    artifact_hits: AtomicU64,
    max_module_bytes: u64,
}

impl Runtime {
    /// Builds the engine and starts the watchdog. `max_fuel` bounds start functions;
    /// `max_module_bytes` is the module size cap.
    ///
    /// # Errors
    /// Fails if the watchdog thread cannot be started.
    pub fn new(max_fuel: u64, max_module_bytes: u64) -> std::io::Result<Self> {
        let tag = engine::tag(&engine::build(max_fuel));
        Ok(Self {
            max_fuel,
            tag,
            loaded: Mutex::new(HashMap::new()),
            compile_lock: Mutex::new(()),
            watchdog: watchdog::Watchdog::start()?,
            clock: AtomicU64::new(0),
            compiled: AtomicU64::new(0),
            artifact_hits: AtomicU64::new(0),
            max_module_bytes,
        })
    }

    /// The engine tag naming cached artifacts.
    pub fn engine_tag(&self) -> &str {
        &self.tag
    }

    /// Counters.
    pub fn stats(&self) -> RuntimeStats {
        RuntimeStats {
            compiled: self.compiled.load(Ordering::Relaxed),
            artifact_cache_hits: self.artifact_hits.load(Ordering::Relaxed),
            loaded: self
                .loaded
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len(),
        }
    }

    /// Ids of the modules loaded in memory.
    pub fn loaded_ids(&self) -> Vec<FunctionId> {
        self.loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect()
    }

    /// Measures this machine's CPU speed score: fuel units executed per millisecond on
    /// one core, by running a metered arithmetic loop for about 20 ms.
    pub fn measure_cpu_score(&self) -> u32 {
        const FUEL: u64 = 20_000_000;

        // The best of several short runs: other work on the machine (e.g. several nodes
        // starting at once) only ever makes a run slower, so the fastest is the steady
        // speed.
        let measure = || -> Option<f64> {
            let engine = engine::build(FUEL);
            let module = Module::new(&engine, SPIN_MODULE).ok()?;
            let mut store = Store::new(engine);
            let instance = Instance::new(&mut store, &module, &wasmer::imports! {}).ok()?;
            let spin: TypedFunction<i64, i64> =
                instance.exports.get_typed_function(&store, "spin").ok()?;
            let mut best: f64 = 0.0;
            for _ in 0..7 {
                set_remaining_points(&mut store, &instance, FUEL);
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
        let loaded = self
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()?;
        loaded.last_used.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        Some(loaded)
    }

    /// Drops a module from memory (e.g. after its blob was evicted).
    pub fn forget(&self, id: &FunctionId) {
        self.loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    /// Loads `id` from the store: verifies the blob, then loads its compiled artifact or
    /// compiles it (and caches the artifact). Blocking; run it off the async runtime.
    ///
    /// # Errors
    /// `NotFound`, `Corrupt`, `Invalid`, or `Internal` when compilation fails.
    pub fn load(&self, store: &BlobStore, id: &FunctionId) -> Result<Arc<Loaded>, InvokeError> {
        if let Some(l) = self.cached(id) {
            return Ok(l);
        }
        let _one_at_a_time = self
            .compile_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(l) = self.cached(id) {
            return Ok(l);
        }
        let bytes = store.get(id)?;
        let info = module::inspect(&bytes, self.max_module_bytes.max(bytes.len() as u64))
            .map_err(|e: ModuleError| InvokeError::Invalid(e.to_string()))?;
        let limits_pages = u32::try_from(info.manifest.memory_pages()).unwrap_or(u32::MAX);
        let engine = engine::for_module(self.max_fuel, limits_pages);
        let from_cache = store.get_artifact(id, &self.tag).and_then(|artifact| {
            // SAFETY: the artifact was produced by `Module::serialize` of an engine with
            // this exact tag (wasmer version, compiler, target, CPU features, codegen
            // revision), written atomically by this node, and its blake3 checksum was
            // just verified, so these are the bytes wasmer wrote.
            match unsafe { Module::deserialize(&engine, artifact) } {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::warn!(function = %id, error = %e, "cached artifact unusable; recompiling");
                    None
                }
            }
        });
        let (module, source) = match from_cache {
            Some(m) => {
                self.artifact_hits.fetch_add(1, Ordering::Relaxed);
                tracing::info!(function = %id, "loaded compiled artifact from cache");
                (m, LoadSource::ArtifactCache)
            }
            None => {
                let started = Instant::now();
                let m = Module::new(&engine, &bytes)
                    .map_err(|e| InvokeError::Invalid(format!("compile failed: {e}")))?;
                self.compiled.fetch_add(1, Ordering::Relaxed);
                tracing::info!(function = %id, ms = started.elapsed().as_millis() as u64, "compiled");
                match m.serialize() {
                    Ok(art) => {
                        if let Err(e) = store.put_artifact(id, &self.tag, &art) {
                            tracing::warn!(function = %id, error = %e, "could not cache compiled artifact");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(function = %id, error = %e, "could not serialize module")
                    }
                }
                (m, LoadSource::Compiled)
            }
        };
        let loaded = Arc::new(Loaded {
            id: *id,
            manifest: info.manifest,
            source,
            module,
            engine,
            last_used: AtomicU64::new(self.clock.fetch_add(1, Ordering::Relaxed)),
        });
        let mut map = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= LOADED_CAPACITY {
            let victim = map
                .iter()
                .min_by_key(|(_, l)| l.last_used.load(Ordering::Relaxed))
                .map(|(id, _)| *id);
            if let Some(v) = victim {
                map.remove(&v);
            }
        }
        map.insert(*id, Arc::clone(&loaded));
        Ok(loaded)
    }

    /// Runs one call of `loaded` with `input` under `limits`, with access to `state`
    /// as its manifest allows (`None`: every state operation is unavailable). Blocking.
    ///
    /// # Errors
    /// One variant per limit, a guest trap, or the function's own error.
    pub fn invoke(
        &self,
        loaded: &Loaded,
        input: &[u8],
        limits: &EffectiveLimits,
        state: Option<StateAccess>,
    ) -> Result<Outcome, InvokeError> {
        let size = input.len() as u64;
        if size > limits.max_input_bytes {
            return Err(InvokeError::InputTooLarge {
                size,
                limit: limits.max_input_bytes,
            });
        }
        let mut store = Store::new(loaded.engine.clone());
        let env = FunctionEnv::new(
            &mut store,
            HostState::new(
                loaded.id,
                limits.max_output_bytes,
                state.map(|s| (s, loaded.manifest.clone())),
            ),
        );
        let imports = host::imports(&mut store, &env);
        let started = Instant::now();
        engine::take_grow_refused();
        let fail = |store: &mut Store, instance: Option<&Instance>, e: RuntimeError| {
            classify(store, instance, &env, e, limits, false)
        };
        // Clear whatever an earlier instantiation on this thread left behind.
        engine::take_fuel_cell();
        let instance = match Instance::new(&mut store, &loaded.module, &imports) {
            Ok(i) => i,
            Err(wasmer::InstantiationError::Start(e)) => return Err(fail(&mut store, None, e)),
            Err(wasmer::InstantiationError::Link(e)) if e.to_string().contains("memory") => {
                return Err(InvokeError::MemoryLimit {
                    limit: u64::from(limits.memory_pages) * kith_protocol::manifest::WASM_PAGE,
                });
            }
            Err(e) => return Err(InvokeError::Internal(format!("instantiation failed: {e}"))),
        };
        let exports = || -> Result<_, wasmer::ExportError> {
            let memory = instance.exports.get_memory(abi::EXPORT_MEMORY)?.clone();
            let alloc: TypedFunction<i32, i32> = instance
                .exports
                .get_typed_function(&store, abi::EXPORT_ALLOC)?;
            let call: TypedFunction<(i32, i32), i32> = instance
                .exports
                .get_typed_function(&store, abi::EXPORT_CALL)?;
            Ok((memory, alloc, call))
        };
        let (memory, alloc, call) = exports().map_err(|e| InvokeError::Invalid(e.to_string()))?;
        let fuel_cell = engine::take_fuel_cell()
            .ok_or_else(|| InvokeError::Internal("the instance has no fuel counter".into()))?;
        // SAFETY: `watch` is declared after `instance` and `store`, so it is dropped (and
        // the call deregistered) before the instance goes away.
        let watch = unsafe {
            self.watchdog.watch(
                started + Duration::from_millis(limits.timeout_ms),
                fuel_cell,
            )
        };
        let fail = |store: &mut Store, instance: Option<&Instance>, e: RuntimeError| {
            classify(store, instance, &env, e, limits, watch.expired())
        };
        env.as_mut(&mut store).memory = Some(memory.clone());
        set_remaining_points(&mut store, &instance, limits.fuel);

        // At most 1 GiB by the manifest bound, so it fits in i32.
        let len = i32::try_from(input.len()).map_err(|_| InvokeError::InputTooLarge {
            size,
            limit: limits.max_input_bytes,
        })?;
        let ptr = alloc
            .call(&mut store, len)
            .map_err(|e| fail(&mut store, Some(&instance), e))?;
        let written = u64::try_from(ptr)
            .ok()
            .filter(|p| *p != 0 || len == 0)
            .and_then(|p| memory.view(&store).write(p, input).ok());
        if written.is_none() {
            return Err(InvokeError::Trap {
                message: format!(
                    "kith_alloc({len}) returned {ptr}, which is not a writable buffer of that size"
                ),
            });
        }
        let status = call
            .call(&mut store, ptr, len)
            .map_err(|e| fail(&mut store, Some(&instance), e))?;
        let fuel_used = match get_remaining_points(&mut store, &instance) {
            MeteringPoints::Remaining(left) => limits.fuel.saturating_sub(left),
            MeteringPoints::Exhausted => limits.fuel,
        };
        let wall = started.elapsed();
        let state = env.as_mut(&mut store);
        if status != abi::STATUS_OK {
            let message = state
                .error
                .take()
                .unwrap_or_else(|| format!("the function returned status {status}"));
            return Err(InvokeError::FunctionError { message });
        }
        Ok(Outcome {
            output: state.output.take().unwrap_or_default(),
            fuel_used,
            wall,
            logs_dropped: state.logs_dropped,
        })
    }
}

fn classify(
    store: &mut Store,
    instance: Option<&Instance>,
    env: &FunctionEnv<HostState>,
    e: RuntimeError,
    limits: &EffectiveLimits,
    expired: bool,
) -> InvokeError {
    let grow_refused = engine::take_grow_refused();
    if let Some(host) = e.downcast_ref::<HostError>() {
        return match host {
            HostError::OutputTooLarge { size, limit } => InvokeError::OutputTooLarge {
                size: *size,
                limit: *limit,
            },
            other => InvokeError::Trap {
                message: other.to_string(),
            },
        };
    }
    if expired {
        return InvokeError::Timeout {
            limit_ms: limits.timeout_ms,
        };
    }
    if let Some(instance) = instance
        && matches!(
            get_remaining_points(store, instance),
            MeteringPoints::Exhausted
        )
    {
        return InvokeError::OutOfFuel { limit: limits.fuel };
    }
    let code = e.clone().to_trap();
    if code == Some(wasmer::sys::vm::TrapCode::StackOverflow) {
        return InvokeError::StackOverflow {
            limit: engine::WASM_STACK_BYTES as u64,
        };
    }
    if grow_refused {
        return InvokeError::MemoryLimit {
            limit: u64::from(limits.memory_pages) * kith_protocol::manifest::WASM_PAGE,
        };
    }
    let guest_message = env.as_mut(store).error.take();
    InvokeError::Trap {
        message: guest_message.unwrap_or_else(|| e.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-encoded CPU-score module is valid and computes what its WAT says:
    /// spin(5) = 3 * (5 + 4 + 3 + 2 + 1).
    #[test]
    fn the_spin_module_is_the_documented_loop() {
        let engine = engine::build(1_000_000);
        let module = Module::new(&engine, SPIN_MODULE).unwrap();
        let mut store = Store::new(engine);
        let instance = Instance::new(&mut store, &module, &wasmer::imports! {}).unwrap();
        set_remaining_points(&mut store, &instance, 1_000_000);
        let spin: TypedFunction<i64, i64> =
            instance.exports.get_typed_function(&store, "spin").unwrap();
        assert_eq!(spin.call(&mut store, 5).unwrap(), 45);
        assert_eq!(spin.call(&mut store, 1).unwrap(), 3);
    }
}
