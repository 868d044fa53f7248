//! One call: the host's state for it, then the backend that loaded the module runs
//! it (`jit.rs` on wasmer, `interp.rs` on wasmi), and the end is read the same way
//! for both: a native call's status, or a WASI command's exit code.

use std::time::{Duration, Instant};

use kith_protocol::abi;
use kith_protocol::limits::EffectiveLimits;
use kith_protocol::module::ModuleKind;

use super::host::HostState;
use super::wasi::Wasi;
use super::{Code, InvokeError, Loaded, Outcome, Runtime, StateAccess, interp};

impl Runtime {
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
        let mut host = HostState::new(
            loaded.id,
            limits.max_output_bytes,
            state.map(|s| (s, loaded.manifest.clone())),
        );
        let wasi_command = loaded.kind == ModuleKind::Wasi;
        if wasi_command {
            host.wasi = Some(Wasi::new(
                loaded.id,
                &loaded.manifest,
                input.to_vec(),
                limits.max_output_bytes,
            ));
        } else if !loaded.wasi.is_empty() {
            host.wasi = Some(Wasi::for_native(loaded.id, &loaded.manifest));
        }
        match &loaded.code {
            #[cfg(feature = "jit")]
            Code::Jit { module, engine } => {
                self.invoke_jit(loaded, module, engine, host, input, limits, wasi_command)
            }
            Code::Interp(compiled) => {
                let started = Instant::now();
                let mut ran =
                    interp::invoke(&self.interp, compiled, wasi_command, host, input, limits)?;
                let wall = started.elapsed();
                if wasi_command {
                    finish_command(&mut ran.host, ran.status, ran.fuel_used, wall)
                } else {
                    finish_native(&mut ran.host, ran.status, ran.fuel_used, wall)
                }
            }
        }
    }
}

/// The end of a native call: status 0 is success with what `kith.output` set; any
/// other is the function's error, with what `kith.error` set.
pub(super) fn finish_native(
    state: &mut HostState,
    status: i32,
    fuel_used: u64,
    wall: Duration,
) -> Result<Outcome, InvokeError> {
    if status != abi::STATUS_OK {
        let message = state
            .error
            .take()
            .unwrap_or_else(|| format!("the function returned status {status}"));
        return Err(InvokeError::FunctionError { message });
    }
    let logs_dropped = state.logs_dropped + state.wasi.as_ref().map_or(0, |w| w.logs_dropped);
    Ok(Outcome {
        output: state.output.take().unwrap_or_default(),
        fuel_used,
        wall,
        logs_dropped,
    })
}

/// The end of a WASI command: exit code 0 is success, with stdout as the output (or
/// what `kith.output` set, if it was called); any other code is the function's error,
/// carrying the last line it wrote to stderr.
pub(super) fn finish_command(
    state: &mut HostState,
    code: i32,
    fuel_used: u64,
    wall: Duration,
) -> Result<Outcome, InvokeError> {
    let Some(wasi) = state.wasi.as_mut() else {
        return Err(InvokeError::Internal(
            "a WASI call without its context".into(),
        ));
    };
    wasi.flush_stderr();
    let logs_dropped = state.logs_dropped + wasi.logs_dropped;
    if code != 0 {
        let message = match wasi.last_line.take() {
            Some(line) => format!("exit code {code}: {line}"),
            None => format!("exit code {code}"),
        };
        return Err(InvokeError::FunctionError { message });
    }
    let stdout = wasi.take_stdout();
    Ok(Outcome {
        output: state.output.take().unwrap_or(stdout),
        fuel_used,
        wall,
        logs_dropped,
    })
}
