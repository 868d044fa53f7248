//! Loading a module: its cached artifact, or a compile on the compile pool.
//!
//! - **One compile per module at a time** (single flight): callers that want a module
//!   already being loaded wait for that load; there is no lock shared between
//!   modules, so a slow compile never holds up another module, and calls of modules
//!   already loaded never wait for any compile.
//! - **A pool of its own**: `compile_workers` threads, separate from the call workers,
//!   with a queue of [`COMPILE_QUEUE`] places; when it is full the load is refused
//!   as busy (retryable, like a full call queue).
//! - **A deadline**: a compile that runs past `compile_timeout_ms` is aborted at the
//!   next function boundary (the structural limits bound one function's body) and
//!   the module is refused; the refusal is remembered (at most [`MAX_REFUSALS`]
//!   modules, oldest forgotten first), so it is not compiled again on every call. A
//!   timeout is measured in wall time, which a busy machine stretches, so it is
//!   remembered for [`TIMEOUT_MEMORY`] only: long enough that a slow module costs a
//!   node one compile per that time at most, short enough that a module refused under
//!   load gets another chance. A module the compiler rejects is remembered until
//!   forgotten; running out of resources is not remembered at all.

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kith_protocol::FunctionId;
use kith_protocol::module::{self, ModuleError};
use tokio::sync::oneshot;
#[cfg(feature = "jit")]
use wasmer::Module;
#[cfg(feature = "jit")]
use wasmer::sys::NativeEngineExt;
#[cfg(feature = "jit")]
use wasmer_types::{CompilationProgressCallback, CompileError, UserAbort};

#[cfg(feature = "jit")]
use super::engine;
use super::{Code, InvokeError, LoadSource, Loaded, Runtime};

/// The WASI functions among `names`, as the protocol's static names.
fn wasi_imports(names: impl Iterator<Item = String>) -> Vec<&'static str> {
    names
        .filter_map(|name| {
            kith_protocol::wasi::FUNCTIONS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(n, _)| *n)
        })
        .collect()
}
use crate::clock::lock;
use crate::executor::Executor;
use crate::store::Store as BlobStore;

/// Places in the compile queue, beyond the modules compiling.
pub const COMPILE_QUEUE: usize = 16;

/// Modules whose refusal is remembered.
pub const MAX_REFUSALS: usize = 1024;

/// How long a compile timeout is remembered.
pub const TIMEOUT_MEMORY: Duration = Duration::from_secs(600);

/// How the runtime compiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Largest module accepted, in bytes (`max_module_bytes`).
    pub max_module_bytes: u64,
    /// Modules compiled at once (`compile_workers`).
    pub compile_workers: usize,
    /// Longest a compile may take (`compile_timeout_ms`).
    pub compile_timeout: Duration,
    /// What runs functions (resolved: never `Auto`).
    pub backend: super::Backend,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_module_bytes: kith_protocol::Caps::default().max_module_bytes,
            compile_workers: 1,
            compile_timeout: Duration::from_secs(20),
            backend: super::Backend::default().resolve(),
        }
    }
}

type Waiter = oneshot::Sender<Result<Arc<Loaded>, InvokeError>>;

/// Modules refused, in the order they were refused.
#[derive(Default)]
struct Refusals {
    order: VecDeque<FunctionId>,
    /// Why, and until when (`None`: until forgotten).
    why: HashMap<FunctionId, (InvokeError, Option<Instant>)>,
}

/// The compile pool and what it remembers.
pub(crate) struct Compiler {
    pool: Executor,
    workers: usize,
    /// The compile deadline (cranelift's; translating for the interpreter is fast).
    #[cfg_attr(not(feature = "jit"), allow(dead_code))]
    timeout: Duration,
    inflight: Mutex<HashMap<FunctionId, Vec<Waiter>>>,
    refused: Mutex<Refusals>,
}

impl Compiler {
    pub(crate) fn start(config: &RuntimeConfig) -> std::io::Result<Self> {
        let workers = config.compile_workers.max(1);
        Ok(Self {
            pool: Executor::start("kith-compile", workers, COMPILE_QUEUE)?,
            workers,
            timeout: config.compile_timeout,
            inflight: Mutex::new(HashMap::new()),
            refused: Mutex::new(Refusals::default()),
        })
    }

    /// Modules compiling or waiting to.
    pub(crate) fn pending(&self) -> usize {
        lock(&self.inflight).len()
    }

    /// Modules refused and remembered.
    pub(crate) fn refused_count(&self) -> usize {
        lock(&self.refused).why.len()
    }

    fn refusal(&self, id: &FunctionId) -> Option<InvokeError> {
        let mut r = lock(&self.refused);
        let (why, until) = r.why.get(id)?;
        if until.is_some_and(|t| Instant::now() >= t) {
            r.why.remove(id);
            r.order.retain(|o| o != id);
            return None;
        }
        Some(why.clone())
    }

    fn refuse(&self, id: FunctionId, why: InvokeError, for_how_long: Option<Duration>) {
        let mut r = lock(&self.refused);
        let until = for_how_long.map(|d| Instant::now() + d);
        if r.why.insert(id, (why, until)).is_none() {
            r.order.push_back(id);
        }
        while r.order.len() > MAX_REFUSALS {
            if let Some(old) = r.order.pop_front() {
                r.why.remove(&old);
            }
        }
    }

    /// Hands the result of `id`'s load to everyone waiting for it.
    fn finish(&self, id: &FunctionId, result: &Result<Arc<Loaded>, InvokeError>) {
        let waiters = lock(&self.inflight).remove(id).unwrap_or_default();
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

impl Runtime {
    /// The loaded module for `id`: from memory, else loaded on the compile pool (its
    /// artifact from the cache, or compiled). Whether this call loaded it is in
    /// [`Loaded::source`]; callers that got it from memory see `None`.
    ///
    /// # Errors
    /// `NotFound`, `Corrupt`, `Invalid`, `CompileTimeout` (now or remembered),
    /// `CompileBusy` when the compile queue is full, or `Internal`.
    pub async fn load(
        self: &Arc<Self>,
        store: &Arc<BlobStore>,
        id: &FunctionId,
    ) -> Result<(Arc<Loaded>, Option<LoadSource>), InvokeError> {
        if let Some(l) = self.cached(id) {
            return Ok((l, None));
        }
        if let Some(why) = self.compiler.refusal(id) {
            return Err(why);
        }
        let (tx, rx) = oneshot::channel();
        let first = {
            let mut inflight = lock(&self.compiler.inflight);
            let waiters = inflight.entry(*id).or_default();
            waiters.push(tx);
            waiters.len() == 1
        };
        if first {
            let (runtime, store, id2) = (Arc::clone(self), Arc::clone(store), *id);
            let submitted = self.compiler.pool.try_submit(move || {
                let result = catch_unwind(AssertUnwindSafe(|| runtime.load_blocking(&store, &id2)))
                    .unwrap_or_else(|_| Err(InvokeError::Internal("the compiler panicked".into())));
                runtime.compiler.finish(&id2, &result);
            });
            if let Err(full) = submitted {
                let busy = InvokeError::CompileBusy {
                    workers: self.compiler.workers,
                    queued: full.queued,
                };
                self.compiler.finish(id, &Err(busy));
            }
        }
        let loaded = rx
            .await
            .map_err(|_| InvokeError::Internal("the compile worker went away".into()))??;
        let source = loaded.source;
        Ok((loaded, Some(source)))
    }

    /// Why this node refuses `id`, if it remembers refusing it.
    pub fn refusal(&self, id: &FunctionId) -> Option<InvokeError> {
        self.compiler.refusal(id)
    }

    /// Runs `f` on the compile pool (validating a module, say: CPU work that must not
    /// hold up calls or the async runtime).
    ///
    /// # Errors
    /// `CompileBusy` when the compile queue is full.
    pub async fn background<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, InvokeError> {
        let done = self
            .compiler
            .pool
            .try_submit(f)
            .map_err(|full| InvokeError::CompileBusy {
                workers: self.compiler.workers,
                queued: full.queued,
            })?;
        done.await
            .map_err(|_| InvokeError::Internal("the compile worker panicked".into()))
    }

    /// Loads `id` from the store on this thread: verifies the blob, then loads its
    /// compiled artifact or compiles it under the deadline (and caches the artifact).
    /// [`Runtime::load`] runs this on the compile pool; benchmarks call it directly.
    ///
    /// # Errors
    /// As [`Runtime::load`], except `CompileBusy`.
    pub fn load_blocking(
        &self,
        store: &BlobStore,
        id: &FunctionId,
    ) -> Result<Arc<Loaded>, InvokeError> {
        if let Some(l) = self.cached(id) {
            return Ok(l);
        }
        if let Some(why) = self.compiler.refusal(id) {
            return Err(why);
        }
        let bytes = store.get(id)?;
        let info = module::inspect(&bytes, self.max_module_bytes.max(bytes.len() as u64))
            .map_err(|e: ModuleError| InvokeError::Invalid(e.to_string()))?;
        #[cfg(feature = "jit")]
        if self.backend == super::Backend::Cranelift {
            return self.load_compiled(store, id, &bytes, info);
        }
        self.load_interpreted(id, &bytes, info)
    }

    /// Loads the module's compiled artifact from the cache, or compiles it with
    /// cranelift (and caches the artifact).
    #[cfg(feature = "jit")]
    fn load_compiled(
        &self,
        store: &BlobStore,
        id: &FunctionId,
        bytes: &[u8],
        info: module::ModuleInfo,
    ) -> Result<Arc<Loaded>, InvokeError> {
        let limits_pages = u32::try_from(info.manifest.memory_pages()).unwrap_or(u32::MAX);
        let tables = u32::try_from(info.manifest.table_elements).unwrap_or(u32::MAX);
        let engine = engine::for_module(limits_pages, tables);
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
            None => (
                self.compile(store, &engine, id, bytes)?,
                LoadSource::Compiled,
            ),
        };
        let wasi = wasi_imports(
            module
                .imports()
                .filter(|i| i.module() == kith_protocol::wasi::MODULE)
                .map(|i| i.name().to_owned()),
        );
        Ok(self.keep(id, info, source, wasi, Code::Jit { module, engine }))
    }

    /// Keeps a loaded module in memory; returns it.
    fn keep(
        &self,
        id: &FunctionId,
        info: module::ModuleInfo,
        source: LoadSource,
        wasi: Vec<&'static str>,
        code: Code,
    ) -> Arc<Loaded> {
        let loaded = Arc::new(Loaded {
            id: *id,
            manifest: info.manifest,
            source,
            kind: info.kind,
            wasi,
            code,
            last_used: AtomicU64::new(self.clock.fetch_add(1, Ordering::Relaxed)),
        });
        self.remember(&loaded);
        loaded
    }

    /// Translates a module for the interpreter (no artifact cache: translating is
    /// fast, and a Pi's SD card is better spared).
    fn load_interpreted(
        &self,
        id: &FunctionId,
        bytes: &[u8],
        info: module::ModuleInfo,
    ) -> Result<Arc<Loaded>, InvokeError> {
        self.compile_attempts.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let compiled = super::interp::compile(&self.interp, bytes).inspect_err(|e| {
            self.compiler.refuse(*id, e.clone(), None);
        })?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        tracing::info!(function = %id, ms = started.elapsed().as_millis() as u64, "translated for the interpreter");
        let wasi = wasi_imports(
            compiled
                .imports()
                .filter(|(m, _)| *m == kith_protocol::wasi::MODULE)
                .map(|(_, n)| n),
        );
        Ok(self.keep(id, info, LoadSource::Compiled, wasi, Code::Interp(compiled)))
    }

    /// Compiles `bytes` under the deadline and caches the artifact; a compile past the
    /// deadline is refused and remembered.
    #[cfg(feature = "jit")]
    fn compile(
        &self,
        store: &BlobStore,
        engine: &wasmer::Engine,
        id: &FunctionId,
        bytes: &[u8],
    ) -> Result<Module, InvokeError> {
        let timeout = self.compiler.timeout;
        self.compile_attempts.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let deadline = started + timeout;
        let progress = CompilationProgressCallback::new(move |_| {
            if Instant::now() > deadline {
                Err(UserAbort::new("compile_timeout_ms"))
            } else {
                Ok(())
            }
        });
        let compiled = engine.new_module_with_progress(bytes, progress);
        let elapsed = started.elapsed();
        let late = || InvokeError::CompileTimeout {
            function: *id,
            limit_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        };
        let module = match compiled {
            Ok(_) | Err(CompileError::Aborted(_)) if elapsed > timeout => {
                let why = late();
                tracing::warn!(function = %id, ms = elapsed.as_millis() as u64, "compile over its deadline; refused");
                self.compiler.refuse(*id, why.clone(), Some(TIMEOUT_MEMORY));
                return Err(why);
            }
            Ok(m) => m,
            Err(CompileError::Resource(e)) => {
                return Err(InvokeError::Internal(format!(
                    "compile failed for want of resources: {e}"
                )));
            }
            Err(e) => {
                let why = InvokeError::Invalid(format!("compile failed: {e}"));
                self.compiler.refuse(*id, why.clone(), None);
                return Err(why);
            }
        };
        self.compiled.fetch_add(1, Ordering::Relaxed);
        tracing::info!(function = %id, ms = elapsed.as_millis() as u64, "compiled");
        match module.serialize() {
            Ok(art) => {
                if let Err(e) = store.put_artifact(id, &self.tag, &art) {
                    tracing::warn!(function = %id, error = %e, "could not cache compiled artifact");
                }
            }
            Err(e) => tracing::warn!(function = %id, error = %e, "could not serialize module"),
        }
        Ok(module)
    }
}
