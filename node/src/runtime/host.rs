//! Host functions of the guest ABI (module `kith`), see `docs/abi.md`.

use std::time::{SystemTime, UNIX_EPOCH};

use kith_protocol::FunctionId;
use kith_protocol::abi::{self, LogLevel};
use wasmer::{
    Function, FunctionEnv, FunctionEnvMut, Imports, Memory, RuntimeError, Store, imports,
};

/// Per-call state the host functions share.
pub(crate) struct HostState {
    pub(crate) function: FunctionId,
    pub(crate) memory: Option<Memory>,
    pub(crate) max_output: u64,
    pub(crate) output: Option<Vec<u8>>,
    pub(crate) error: Option<String>,
    pub(crate) log_lines: u32,
    pub(crate) logs_dropped: u32,
}

impl HostState {
    pub(crate) fn new(function: FunctionId, max_output: u64) -> Self {
        Self {
            function,
            memory: None,
            max_output,
            output: None,
            error: None,
            log_lines: 0,
            logs_dropped: 0,
        }
    }
}

/// An error a host function raises, which ends the call with a trap.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HostError {
    #[error("output is {size} bytes, the limit is {limit} bytes (max_output_bytes)")]
    OutputTooLarge { size: u64, limit: u64 },
    #[error("guest passed an out-of-bounds buffer ({ptr}, {len}) to kith.{func}")]
    BadBuffer {
        func: &'static str,
        ptr: i32,
        len: i32,
    },
}

fn read(
    env: &FunctionEnvMut<'_, HostState>,
    func: &'static str,
    ptr: i32,
    len: i32,
    max: u64,
) -> Result<Vec<u8>, RuntimeError> {
    let bad = || RuntimeError::user(Box::new(HostError::BadBuffer { func, ptr, len }));
    let (Ok(start), Ok(len)) = (u32::try_from(ptr), u32::try_from(len)) else {
        return Err(bad());
    };
    let take = u64::from(len).min(max);
    let memory = env.data().memory.as_ref().ok_or_else(bad)?;
    let view = memory.view(env);
    let start = u64::from(start);
    if start + u64::from(len) > view.data_size() {
        return Err(bad());
    }
    view.copy_range_to_vec(start..start + take)
        .map_err(|_| bad())
}

fn output(mut env: FunctionEnvMut<'_, HostState>, ptr: i32, len: i32) -> Result<(), RuntimeError> {
    let limit = env.data().max_output;
    let size = u64::try_from(len).unwrap_or(0);
    if size > limit {
        return Err(RuntimeError::user(Box::new(HostError::OutputTooLarge {
            size,
            limit,
        })));
    }
    let bytes = read(&env, abi::HOST_OUTPUT, ptr, len, limit)?;
    env.data_mut().output = Some(bytes);
    Ok(())
}

fn error(mut env: FunctionEnvMut<'_, HostState>, ptr: i32, len: i32) -> Result<(), RuntimeError> {
    let bytes = read(
        &env,
        abi::HOST_ERROR,
        ptr,
        len,
        abi::MAX_ERROR_MESSAGE as u64,
    )?;
    env.data_mut().error = Some(String::from_utf8_lossy(&bytes).into_owned());
    Ok(())
}

fn log(
    mut env: FunctionEnvMut<'_, HostState>,
    level: i32,
    ptr: i32,
    len: i32,
) -> Result<(), RuntimeError> {
    if env.data().log_lines >= abi::MAX_LOG_LINES {
        env.data_mut().logs_dropped += 1;
        return Ok(());
    }
    let bytes = read(&env, abi::HOST_LOG, ptr, len, abi::MAX_LOG_LINE as u64)?;
    let line = String::from_utf8_lossy(&bytes);
    let function = env.data().function;
    env.data_mut().log_lines += 1;
    match LogLevel::from_abi(level) {
        LogLevel::Error => tracing::error!(target: "kith::guest", %function, "{line}"),
        LogLevel::Warn => tracing::warn!(target: "kith::guest", %function, "{line}"),
        LogLevel::Info => tracing::info!(target: "kith::guest", %function, "{line}"),
        LogLevel::Debug => tracing::debug!(target: "kith::guest", %function, "{line}"),
        LogLevel::Trace => tracing::trace!(target: "kith::guest", %function, "{line}"),
    }
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The import object for one call.
pub(crate) fn imports(store: &mut Store, env: &FunctionEnv<HostState>) -> Imports {
    imports! {
        abi::IMPORT_MODULE => {
            abi::HOST_OUTPUT => Function::new_typed_with_env(store, env, output),
            abi::HOST_ERROR => Function::new_typed_with_env(store, env, error),
            abi::HOST_LOG => Function::new_typed_with_env(store, env, log),
            abi::HOST_NOW_MS => Function::new_typed(store, now_ms),
        }
    }
}
