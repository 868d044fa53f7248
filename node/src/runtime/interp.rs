//! The interpreter backend: wasmi runs the same modules under the same limits, with
//! the same host (`host.rs`, `wasi.rs`) and the same errors, where cranelift cannot
//! generate code (32-bit ARM, MIPS) or when the operator asks for it.
//!
//! How each limit holds here:
//! - fuel: wasmi meters every instruction, and bulk memory and table operations by
//!   their length at kith's rate (`kith_protocol::limits::costs`: one unit per 4 bytes);
//!   a `memory.grow` is charged kith's price per page, wasmi's share at once and the
//!   rest when the slice ends (at most one slice late: the grow is bounded by the memory
//!   ceiling, and a call whose total passes its budget still ends `out_of_fuel`, even
//!   if it finished). The call runs in slices of [`SLICE`] fuel, and between slices the
//!   runtime checks the call's total against its budget (`out_of_fuel`) and the wall
//!   clock against its deadline (`timeout`). wasmi cannot be interrupted from another
//!   thread, so the deadline is kept on the calling thread, a slice at a time.
//! - memory and tables: a resource limiter refuses growth past the manifest's
//!   ceilings (the guest sees -1) and records it, so a trap that follows is named
//!   `memory_limit` or `table_limit`; an initial size over a ceiling is refused at
//!   instantiation.
//! - stack: wasmi's own call-depth and value-stack limits (`stack_overflow`).
//! - the start function: taken out of the module (`module::start_as_export`) and
//!   exported, so it runs like any other entry point, under the call's fuel and
//!   deadline.
//!
//! Fuel per instruction differs from cranelift's instrumentation in detail (wasmi counts
//! its own instructions, cranelift's path counts wasm operators), so `fuel_used` for one
//! call differs somewhat between backends; outputs and error kinds do not
//! (tests/tests/backends.rs).

use std::time::{Duration, Instant};

use kith_protocol::abi::{self, Signature, ValType};
use kith_protocol::limits::{EffectiveLimits, costs};
use kith_protocol::manifest::WASM_PAGE;
use wasmi::{Caller, Config, Engine, Extern, FuncType, Linker, Module, Store, TypedFunc, Val};
use wasmi_core::LimiterError;

use super::InvokeError;
use super::host::{self, HostError, HostState};
use super::wasi::{Bytes, Mem};

/// Fuel per slice: between two slices the deadline is checked.
pub(crate) const SLICE: u64 = 2_000_000;
/// Export the start function is moved to.
const START_EXPORT: &str = "kith_interp_start";
/// Calls deep, at most (the cranelift guest stack is 1 MiB; this is of the same order
/// for ordinary frames).
const MAX_DEPTH: usize = 16_384;
/// Bytes of wasmi's value stack, at most.
const MAX_STACK: usize = 8 << 20;

/// A module ready for the interpreter, with its host linked.
pub(crate) struct Compiled {
    module: Module,
    linker: Linker<State>,
}

impl Compiled {
    /// The module's imports: (module, name).
    pub(crate) fn imports(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.module
            .imports()
            .map(|i| (i.module().to_owned(), i.name().to_owned()))
    }
}

/// What a call's store holds: the host's state and the limiter.
pub(crate) struct State {
    host: HostState,
    limits: Limits,
}

/// The manifest's ceilings; what was refused.
struct Limits {
    max_memory: usize,
    max_table: usize,
    memory_refused: bool,
    table_refused: bool,
    /// Whether guest code runs (growth at instantiation is free, as on cranelift).
    metered: bool,
    /// Bytes `memory.grow` added while guest code ran.
    grown: u64,
    /// Bytes the grow under way adds (counted in `grown` already).
    pending: u64,
}

/// What a page added by `memory.grow` costs beyond what wasmi charges itself (its
/// copying rate over the page).
const GROW_SURCHARGE: u64 = costs::FUEL_PER_PAGE - WASM_PAGE / costs::BYTES_PER_FUEL;

impl wasmi::ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool, LimiterError> {
        if desired > self.max_memory {
            self.memory_refused = true;
            return Ok(false);
        }
        if self.metered {
            // Taken back in `memory_grow_failed` if the grow does not happen (no fuel
            // for wasmi's own charge, which it retries after the next slice; no memory).
            self.pending = desired.saturating_sub(current) as u64;
            self.grown += self.pending;
        }
        Ok(true)
    }

    fn memory_grow_failed(
        &mut self,
        _error: &wasmi::errors::MemoryError,
    ) -> Result<(), LimiterError> {
        self.grown -= std::mem::take(&mut self.pending);
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool, LimiterError> {
        if desired > self.max_table {
            self.table_refused = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        // The structural limits bound a module's tables far below this.
        10_000
    }

    fn memories(&self) -> usize {
        1
    }
}

impl wasmi::errors::HostError for HostError {}

/// The one engine configuration: fuel, the accepted features, eager translation (so
/// translating never costs a call fuel), bounded stacks.
pub(crate) fn engine() -> Engine {
    let mut c = Config::default();
    c.consume_fuel(true)
        .fuel_cost(wasmi_core::CustomFuelCosts {
            bytes_copied_per_fuel: costs::BYTES_PER_FUEL as u32,
            // Translation is eager (at load), never charged to a call.
            fuel_per_bytes_translated: 7,
            fuel_per_bytes_validated: 2,
        })
        .compilation_mode(wasmi::CompilationMode::Eager)
        .wasm_tail_call(false)
        .wasm_multi_memory(false)
        .set_max_recursion_depth(MAX_DEPTH)
        .set_max_stack_height(MAX_STACK);
    Engine::new(&c)
}

fn val_types(v: &[ValType]) -> Vec<wasmi::ValType> {
    v.iter()
        .map(|t| match t {
            ValType::I32 => wasmi::ValType::I32,
            ValType::I64 => wasmi::ValType::I64,
        })
        .collect()
}

type Run = fn(&'static str, &mut HostState, &mut dyn Mem, &[i64]) -> Result<Option<i64>, HostError>;

fn link(
    linker: &mut Linker<State>,
    module: &'static str,
    name: &'static str,
    sig: &Signature,
    run: Run,
) -> Result<(), String> {
    let ty = FuncType::new(val_types(sig.params), val_types(sig.results));
    linker
        .func_new(
            module,
            name,
            ty,
            move |mut caller: Caller<'_, State>, args: &[Val], results: &mut [Val]| {
                let args: Vec<i64> = args
                    .iter()
                    .map(|v| match v {
                        Val::I32(x) => i64::from(*x),
                        Val::I64(x) => *x,
                        _ => 0,
                    })
                    .collect();
                let Some(Extern::Memory(memory)) = caller.get_export(abi::EXPORT_MEMORY) else {
                    return Err(wasmi::Error::host(HostError::BadBuffer {
                        func: name,
                        ptr: 0,
                        len: 0,
                    }));
                };
                let (data, state) = memory.data_and_store_mut(&mut caller);
                let ret = run(name, &mut state.host, &mut Bytes(data), &args)
                    .map_err(wasmi::Error::host)?;
                if let (Some(slot), Some(v)) = (results.first_mut(), ret) {
                    *slot = match slot {
                        Val::I64(_) => Val::I64(v),
                        _ => Val::I32(v as i32),
                    };
                }
                Ok(())
            },
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Translates `bytes` (already inspected) for `engine` and links the host.
///
/// # Errors
/// What wasmi refuses, as `invalid_module`.
pub(crate) fn compile(engine: &Engine, bytes: &[u8]) -> Result<Compiled, InvokeError> {
    let invalid =
        |e: String| InvokeError::Invalid(format!("the interpreter refused the module: {e}"));
    let bytes = kith_protocol::module::start_as_export(bytes, START_EXPORT)
        .map_err(|e| invalid(e.to_string()))?;
    let module = Module::new(engine, &bytes).map_err(|e| invalid(e.to_string()))?;
    let mut linker = Linker::new(engine);
    for (name, sig) in abi::HOST_FUNCTIONS {
        link(&mut linker, abi::IMPORT_MODULE, name, sig, host::dispatch).map_err(invalid)?;
    }
    for (name, sig) in kith_protocol::wasi::FUNCTIONS {
        link(
            &mut linker,
            kith_protocol::wasi::MODULE,
            name,
            sig,
            host::dispatch_wasi,
        )
        .map_err(invalid)?;
    }
    Ok(Compiled { module, linker })
}

/// Fuel per millisecond the interpreter runs `spin` (the CPU-score module) at, the
/// best of five runs; `None` if it cannot run it.
pub(crate) fn cpu_score(engine: &Engine, spin: &[u8]) -> Option<f64> {
    const FUEL: u64 = 2_000_000;
    let module = Module::new(engine, spin).ok()?;
    let mut store = Store::new(engine, ());
    let instance = Linker::<()>::new(engine)
        .instantiate_and_start(&mut store, &module)
        .ok()?;
    let spin = instance.get_typed_func::<i64, i64>(&store, "spin").ok()?;
    let mut best: f64 = 0.0;
    for _ in 0..5 {
        store.set_fuel(FUEL).ok()?;
        let started = Instant::now();
        // Runs out of fuel by design: the trap ends the measurement.
        let _ = spin.call(&mut store, i64::MAX);
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        best = best.max(FUEL as f64 / ms.max(0.001));
    }
    Some(best)
}

/// A call's fuel and deadline, kept across its entry points.
struct Budget {
    fuel: u64,
    given: u64,
    deadline: Instant,
    timeout_ms: u64,
}

/// How a call ended early.
enum Stop {
    /// A trap, or an error wasmi raised.
    Error(wasmi::Error),
    /// A limit, or a host function's error.
    Limit(InvokeError),
    /// `proc_exit`.
    Exit(i32),
}

/// What a wasmi error means for the call.
fn stop_of(e: &wasmi::Error) -> Option<Stop> {
    match e.downcast_ref::<HostError>() {
        Some(HostError::Exit(code)) => Some(Stop::Exit(*code)),
        Some(h) => Some(Stop::Limit(host_error(h))),
        None => None,
    }
}

fn stop(e: wasmi::Error) -> Stop {
    stop_of(&e).unwrap_or(Stop::Error(e))
}

impl Budget {
    /// Runs `func` to the end, a slice of fuel at a time.
    fn run<P: wasmi::WasmParams, R: wasmi::WasmResults>(
        &mut self,
        store: &mut Store<State>,
        func: &TypedFunc<P, R>,
        params: P,
    ) -> Result<R, Stop> {
        self.top_up(store, 0)?;
        let mut call = func.call_resumable(&mut *store, params).map_err(stop)?;
        loop {
            match call {
                wasmi::TypedResumableCall::Finished(r) => {
                    return if self.spent(store) > self.fuel {
                        Err(Stop::Limit(InvokeError::OutOfFuel { limit: self.fuel }))
                    } else {
                        Ok(r)
                    };
                }
                wasmi::TypedResumableCall::HostTrap(trap) => {
                    let e = trap.host_error();
                    return Err(
                        stop_of(e).unwrap_or_else(|| Stop::Error(wasmi::Error::new(e.to_string())))
                    );
                }
                wasmi::TypedResumableCall::OutOfFuel(out) => {
                    self.top_up(store, out.required_fuel())?;
                    call = out.resume(&mut *store).map_err(stop)?;
                }
            }
        }
    }

    /// Gives the store the next slice (at least `required`), or stops the call at its
    /// deadline or budget.
    fn top_up(&mut self, store: &mut Store<State>, required: u64) -> Result<(), Stop> {
        let left = store.get_fuel().unwrap_or(0);
        if Instant::now() >= self.deadline {
            return Err(Stop::Limit(InvokeError::Timeout {
                limit_ms: self.timeout_ms,
            }));
        }
        let remaining = self.fuel.saturating_sub(self.spent(store));
        let next = SLICE.max(required).min(remaining);
        if next < required.max(1) {
            return Err(Stop::Limit(InvokeError::OutOfFuel { limit: self.fuel }));
        }
        self.given = self.given - left + next;
        store
            .set_fuel(next)
            .map_err(|e| Stop::Limit(InvokeError::Internal(e.to_string())))
    }

    /// Fuel the `memory.grow`s so far owe beyond wasmi's own charge.
    fn surcharge(store: &Store<State>) -> u64 {
        (store.data().limits.grown / WASM_PAGE).saturating_mul(GROW_SURCHARGE)
    }

    /// Fuel spent so far, the grow surcharge included (may pass the budget by what the
    /// last slice grew).
    fn spent(&self, store: &Store<State>) -> u64 {
        (self.given - store.get_fuel().unwrap_or(0)).saturating_add(Self::surcharge(store))
    }

    fn used(&self, store: &Store<State>) -> u64 {
        self.spent(store).min(self.fuel)
    }
}

/// The error a host function ended the call with (an exit is handled by the caller).
fn host_error(e: &HostError) -> InvokeError {
    match e {
        HostError::OutputTooLarge { size, limit } => InvokeError::OutputTooLarge {
            size: *size,
            limit: *limit,
        },
        other => InvokeError::Trap {
            message: other.to_string(),
        },
    }
}

/// The end of a call that stopped early, named as the wasmer backend names it.
fn classify(stop: Stop, store: &mut Store<State>, limits: &EffectiveLimits) -> InvokeError {
    let e = match stop {
        Stop::Limit(e) => return e,
        Stop::Exit(code) => {
            return InvokeError::Trap {
                message: HostError::Exit(code).to_string(),
            };
        }
        Stop::Error(e) => e,
    };
    if let Some(h) = e.downcast_ref::<HostError>() {
        return host_error(h);
    }
    let state = store.data_mut();
    match e.as_trap_code() {
        Some(wasmi::TrapCode::StackOverflow) => {
            return InvokeError::StackOverflow {
                limit: MAX_STACK as u64,
            };
        }
        Some(wasmi::TrapCode::OutOfFuel) => return InvokeError::OutOfFuel { limit: limits.fuel },
        _ => {}
    }
    if state.limits.memory_refused {
        return InvokeError::MemoryLimit {
            limit: u64::from(limits.memory_pages) * WASM_PAGE,
        };
    }
    if state.limits.table_refused {
        return InvokeError::TableLimit {
            limit: limits.table_elements,
        };
    }
    let message = state
        .host
        .error
        .take()
        .unwrap_or_else(|| match e.as_trap_code() {
            Some(code) => format!("wasm trap: {}", code.trap_message()),
            None => e.to_string(),
        });
    InvokeError::Trap { message }
}

/// What a call produced, before the runtime wraps it.
pub(crate) struct Ran {
    /// The host state at the end (output, error, logs, WASI context).
    pub host: HostState,
    /// Fuel used.
    pub fuel_used: u64,
    /// For a WASI command: its exit code; for a native module: `kith_call`'s status.
    pub status: i32,
}

/// Runs one call of `compiled` (a native module, or a WASI command when `command`).
///
/// # Errors
/// One variant per limit, a trap, or the function's own error.
pub(crate) fn invoke(
    engine: &Engine,
    compiled: &Compiled,
    command: bool,
    host: HostState,
    input: &[u8],
    limits: &EffectiveLimits,
) -> Result<Ran, InvokeError> {
    let started = Instant::now();
    let state = State {
        host,
        limits: Limits {
            max_memory: usize::try_from(u64::from(limits.memory_pages) * WASM_PAGE)
                .unwrap_or(usize::MAX),
            max_table: usize::try_from(limits.table_elements).unwrap_or(usize::MAX),
            memory_refused: false,
            table_refused: false,
            metered: false,
            grown: 0,
            pending: 0,
        },
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    let mut budget = Budget {
        fuel: limits.fuel,
        given: 0,
        deadline: started + Duration::from_millis(limits.timeout_ms),
        timeout_ms: limits.timeout_ms,
    };
    // No guest code runs here: the start function was moved out.
    store
        .set_fuel(0)
        .map_err(|e| InvokeError::Internal(e.to_string()))?;
    let instance = match compiled
        .linker
        .instantiate_and_start(&mut store, &compiled.module)
    {
        Ok(i) => i,
        Err(_) if store.data().limits.memory_refused => {
            return Err(InvokeError::MemoryLimit {
                limit: u64::from(limits.memory_pages) * WASM_PAGE,
            });
        }
        Err(_) if store.data().limits.table_refused => {
            return Err(InvokeError::TableLimit {
                limit: limits.table_elements,
            });
        }
        Err(e) => {
            return Err(InvokeError::Trap {
                message: format!("while initialising the instance: {e}"),
            });
        }
    };
    store.data_mut().limits.metered = true;
    let invalid = |e: wasmi::Error| InvokeError::Invalid(e.to_string());
    if let Ok(start) = instance.get_typed_func::<(), ()>(&store, START_EXPORT) {
        budget
            .run(&mut store, &start, ())
            .map_err(|s| classify(s, &mut store, limits))?;
    }
    if command {
        let entry = instance
            .get_typed_func::<(), ()>(&store, kith_protocol::wasi::EXPORT_START)
            .map_err(invalid)?;
        let status = match budget.run(&mut store, &entry, ()) {
            Ok(()) => 0,
            Err(Stop::Exit(code)) => code,
            Err(s) => return Err(classify(s, &mut store, limits)),
        };
        let fuel_used = budget.used(&store);
        return Ok(Ran {
            host: store.into_data().host,
            fuel_used,
            status,
        });
    }
    let alloc = instance
        .get_typed_func::<i32, i32>(&store, abi::EXPORT_ALLOC)
        .map_err(invalid)?;
    let call = instance
        .get_typed_func::<(i32, i32), i32>(&store, abi::EXPORT_CALL)
        .map_err(invalid)?;
    let len = i32::try_from(input.len()).map_err(|_| InvokeError::InputTooLarge {
        size: input.len() as u64,
        limit: limits.max_input_bytes,
    })?;
    let ptr = budget
        .run(&mut store, &alloc, len)
        .map_err(|s| classify(s, &mut store, limits))?;
    let memory = instance
        .get_memory(&store, abi::EXPORT_MEMORY)
        .ok_or_else(|| InvokeError::Invalid("no memory export".into()))?;
    let written = usize::try_from(ptr)
        .ok()
        .filter(|p| *p != 0 || len == 0)
        .and_then(|p| memory.write(&mut store, p, input).ok());
    if written.is_none() {
        return Err(InvokeError::Trap {
            message: format!(
                "kith_alloc({len}) returned {ptr}, which is not a writable buffer of that size"
            ),
        });
    }
    let status = budget
        .run(&mut store, &call, (ptr, len))
        .map_err(|s| classify(s, &mut store, limits))?;
    let fuel_used = budget.used(&store);
    Ok(Ran {
        host: store.into_data().host,
        fuel_used,
        status,
    })
}
