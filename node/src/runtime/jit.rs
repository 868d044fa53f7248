//! One call on wasmer: a fresh store and instance, the start function and the entry
//! points run under the call's fuel, memory, tables and watchdog, and every way of
//! failing mapped to its own error.

use std::time::{Duration, Instant};

use kith_protocol::abi;
use kith_protocol::limits::EffectiveLimits;
use kith_protocol::manifest::WASM_PAGE;
use wasmer::{FunctionEnv, Instance, RuntimeError, Store, TypedFunction};

use super::engine::{self, Refused};
use super::host::{HostError, HostState};
use super::invoke::{finish_command, finish_native};
use super::link::{self, Env};
use super::{InvokeError, Loaded, Outcome, Runtime, fuel};

impl Runtime {
    /// The call on wasmer: a fresh store and instance, the watchdog armed.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn invoke_jit(
        &self,
        loaded: &Loaded,
        module: &wasmer::Module,
        engine: &wasmer::Engine,
        host: HostState,
        input: &[u8],
        limits: &EffectiveLimits,
        wasi_command: bool,
    ) -> Result<Outcome, InvokeError> {
        let size = input.len() as u64;
        let mut store = Store::new(engine.clone());
        let env = FunctionEnv::new(&mut store, Env { host, memory: None });
        let imports = link::imports(&mut store, &env, &loaded.wasi);
        let started = Instant::now();
        let deadline = started + Duration::from_millis(limits.timeout_ms);
        // Clear whatever an earlier call on this thread left behind.
        engine::take_refused();
        engine::take_fuel_cell();
        // No guest code runs here: the instrumentation moved the start function out.
        // Data and element segments are copied in (bounded by the module's size).
        let instance = Instance::new(&mut store, module, &imports)
            .map_err(|e| instantiation_failed(e, limits))?;
        let fuel_cell = engine::take_fuel_cell()
            .ok_or_else(|| InvokeError::Internal("the instance has no fuel counter".into()))?;
        // SAFETY: `watch` is declared after `instance` and `store`, so it is dropped (and
        // the call deregistered) before the instance goes away.
        let watch = unsafe { self.watchdog.watch(deadline, fuel_cell) };
        let fail = |store: &mut Store, e: RuntimeError| {
            classify(store, &instance, &env, e, limits, watch.expired())
        };
        fuel::set_remaining(&mut store, &instance, limits.fuel)
            .ok_or_else(|| InvokeError::Internal("the instance has no fuel counter".into()))?;
        if Instant::now() >= deadline {
            return Err(InvokeError::Timeout {
                limit_ms: limits.timeout_ms,
            });
        }
        let invalid = |e: wasmer::ExportError| InvokeError::Invalid(e.to_string());
        let memory = instance
            .exports
            .get_memory(abi::EXPORT_MEMORY)
            .map_err(invalid)?
            .clone();
        env.as_mut(&mut store).memory = Some(memory.clone());
        let start: Option<TypedFunction<(), ()>> = instance
            .exports
            .get_typed_function(&store, fuel::START_EXPORT)
            .ok();
        if let Some(start) = start {
            start.call(&mut store).map_err(|e| fail(&mut store, e))?;
        }
        if wasi_command {
            let entry: TypedFunction<(), ()> = instance
                .exports
                .get_typed_function(&store, kith_protocol::wasi::EXPORT_START)
                .map_err(invalid)?;
            let code = match entry.call(&mut store) {
                Ok(()) => 0,
                Err(e) => match e.downcast_ref::<HostError>() {
                    Some(HostError::Exit(code)) => *code,
                    _ => return Err(fail(&mut store, e)),
                },
            };
            let fuel_used = fuel::remaining(&mut store, &instance)
                .map_or(limits.fuel, |left| limits.fuel.saturating_sub(left));
            return finish_command(
                &mut env.as_mut(&mut store).host,
                code,
                fuel_used,
                started.elapsed(),
            );
        }
        let alloc: TypedFunction<i32, i32> = instance
            .exports
            .get_typed_function(&store, abi::EXPORT_ALLOC)
            .map_err(invalid)?;
        let call: TypedFunction<(i32, i32), i32> = instance
            .exports
            .get_typed_function(&store, abi::EXPORT_CALL)
            .map_err(invalid)?;

        // At most 1 GiB by the manifest bound, so it fits in i32.
        let len = i32::try_from(input.len()).map_err(|_| InvokeError::InputTooLarge {
            size,
            limit: limits.max_input_bytes,
        })?;
        let ptr = alloc
            .call(&mut store, len)
            .map_err(|e| fail(&mut store, e))?;
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
            .map_err(|e| fail(&mut store, e))?;
        let fuel_used = fuel::remaining(&mut store, &instance)
            .map_or(limits.fuel, |left| limits.fuel.saturating_sub(left));
        let wall = started.elapsed();
        finish_native(&mut env.as_mut(&mut store).host, status, fuel_used, wall)
    }
}

fn memory_limit(limits: &EffectiveLimits) -> InvokeError {
    InvokeError::MemoryLimit {
        limit: u64::from(limits.memory_pages) * WASM_PAGE,
    }
}

fn table_limit(limits: &EffectiveLimits) -> InvokeError {
    InvokeError::TableLimit {
        limit: limits.table_elements,
    }
}

/// Why an instance could not be created: a memory or table over its ceiling, a data
/// or element segment out of bounds (a trap), or something on this node.
fn instantiation_failed(e: wasmer::InstantiationError, limits: &EffectiveLimits) -> InvokeError {
    match engine::take_refused() {
        Some(Refused::Memory) => return memory_limit(limits),
        Some(Refused::Table) => return table_limit(limits),
        None => {}
    }
    match e {
        wasmer::InstantiationError::Start(e) => InvokeError::Trap {
            message: format!("while initialising the instance: {}", e.message()),
        },
        other => InvokeError::Internal(format!("instantiation failed: {other}")),
    }
}

/// Names what ended a call that trapped, most specific first: the host's own errors,
/// the deadline, fuel, the stack, then a refused memory or table grow.
fn classify(
    store: &mut Store,
    instance: &Instance,
    env: &FunctionEnv<Env>,
    e: RuntimeError,
    limits: &EffectiveLimits,
    expired: bool,
) -> InvokeError {
    let refused = engine::take_refused();
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
    if fuel::remaining(store, instance).is_none() {
        return InvokeError::OutOfFuel { limit: limits.fuel };
    }
    if e.clone().to_trap() == Some(wasmer::sys::vm::TrapCode::StackOverflow) {
        return InvokeError::StackOverflow {
            limit: engine::WASM_STACK_BYTES as u64,
        };
    }
    if refused == Some(Refused::Memory) {
        return memory_limit(limits);
    }
    if fuel::table_refused(store, instance) {
        return table_limit(limits);
    }
    let guest_message = env.as_mut(store).host.error.take();
    InvokeError::Trap {
        message: guest_message.unwrap_or_else(|| e.message()),
    }
}
