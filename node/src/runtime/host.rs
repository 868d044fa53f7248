//! Host functions of the guest ABI (module `kith`), see `docs/abi.md`: written once
//! against the guest's memory ([`Mem`]) and dispatched by name ([`dispatch`]), so every
//! backend links the same host (`link.rs` for wasmer).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use kith_protocol::abi::{self, LogLevel, StateStatus};
use kith_protocol::state::{self as proto_state, DocName};
use kith_protocol::{FunctionId, Manifest};

use super::wasi::Mem;
use crate::clock::lock;
use crate::state::{StateOpError, StateStore};

/// The node's documents, as a call sees them: what it may touch is its manifest's
/// `state_read`/`state_write` ([`Manifest::may_read`], [`Manifest::may_write`]).
pub struct StateAccess {
    /// The node's documents.
    pub store: Arc<StateStore>,
    /// Documents the call changed (the node announces their new heads).
    pub written: Arc<Mutex<BTreeSet<DocName>>>,
    /// Who the call's changes are by: the node's key, naming the function.
    pub writer: crate::state::Writer,
}

/// Per-call state the host functions share.
pub(crate) struct HostState {
    pub(crate) function: FunctionId,
    pub(crate) max_output: u64,
    pub(crate) output: Option<Vec<u8>>,
    pub(crate) error: Option<String>,
    pub(crate) log_lines: u32,
    pub(crate) logs_dropped: u32,
    /// State access and the manifest that says what it covers (only for calls that
    /// have it).
    pub(crate) state: Option<(StateAccess, Manifest)>,
    /// The last state operation's result (JSON) or error message.
    pub(crate) result: Vec<u8>,
    /// State operations this call made (a `Cell`: counted while `state` is borrowed).
    pub(crate) state_ops: std::cell::Cell<u32>,
    /// The WASI context (stdio, arguments, clocks) of a WASI command, or of a native
    /// module that imports WASI functions.
    pub(crate) wasi: Option<super::wasi::Wasi>,
}

impl HostState {
    pub(crate) fn new(
        function: FunctionId,
        max_output: u64,
        state: Option<(StateAccess, Manifest)>,
    ) -> Self {
        Self {
            function,
            max_output,
            output: None,
            error: None,
            log_lines: 0,
            logs_dropped: 0,
            state,
            result: Vec::new(),
            state_ops: std::cell::Cell::new(0),
            wasi: None,
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
    /// A WASI command called `proc_exit`.
    #[error("the function exited with code {0}")]
    Exit(i32),
}

/// Up to `max` of the `len` bytes at `ptr` (the whole buffer must be in memory).
fn read(
    mem: &dyn Mem,
    func: &'static str,
    ptr: i32,
    len: i32,
    max: u64,
) -> Result<Vec<u8>, HostError> {
    let bad = || HostError::BadBuffer { func, ptr, len };
    let (Ok(start), Ok(len)) = (u32::try_from(ptr), u32::try_from(len)) else {
        return Err(bad());
    };
    // The whole buffer must be in memory, even when only its start is kept.
    if u64::from(start) + u64::from(len) > mem.size() {
        return Err(bad());
    }
    let take = u32::try_from(u64::from(len).min(max)).unwrap_or(u32::MAX);
    mem.read(start, take).ok_or_else(bad)
}

fn output(host: &mut HostState, mem: &dyn Mem, ptr: i32, len: i32) -> Result<(), HostError> {
    let limit = host.max_output;
    let size = u64::try_from(len).unwrap_or(0);
    if size > limit {
        return Err(HostError::OutputTooLarge { size, limit });
    }
    host.output = Some(read(mem, abi::HOST_OUTPUT, ptr, len, limit)?);
    Ok(())
}

fn error(host: &mut HostState, mem: &dyn Mem, ptr: i32, len: i32) -> Result<(), HostError> {
    let bytes = read(
        mem,
        abi::HOST_ERROR,
        ptr,
        len,
        abi::MAX_ERROR_MESSAGE as u64,
    )?;
    host.error = Some(String::from_utf8_lossy(&bytes).into_owned());
    Ok(())
}

fn log(
    host: &mut HostState,
    mem: &dyn Mem,
    level: i32,
    ptr: i32,
    len: i32,
) -> Result<(), HostError> {
    if host.log_lines >= abi::MAX_LOG_LINES {
        host.logs_dropped += 1;
        return Ok(());
    }
    let bytes = read(mem, abi::HOST_LOG, ptr, len, abi::MAX_LOG_LINE as u64)?;
    let line = String::from_utf8_lossy(&bytes);
    let function = host.function;
    host.log_lines += 1;
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

/// A refused state operation: its status and message.
type Refusal = (StateStatus, String);

fn refusal(e: &StateOpError) -> Refusal {
    let status = match e {
        StateOpError::BadRequest(_) | StateOpError::BadDocument(_) => StateStatus::BadRequest,
        StateOpError::NoDocument(_) | StateOpError::NoValue { .. } => StateStatus::NotFound,
        StateOpError::TooLarge { .. } => StateStatus::TooLarge,
        StateOpError::Conflict(_) => StateStatus::Conflict,
        StateOpError::PermissionDenied(_) | StateOpError::Unauthorised(_) => {
            StateStatus::PermissionDenied
        }
        StateOpError::NotHosted(_) | StateOpError::Io(_) => StateStatus::Unavailable,
    };
    (status, e.to_string())
}

/// The kind of state operation, for permissions and messages.
#[derive(Clone, Copy)]
enum Op {
    Get,
    Put,
    Delete,
    Increment(i64),
    Append,
}

impl Op {
    /// The host function that asks for it.
    fn host_function(self) -> &'static str {
        match self {
            Self::Get => abi::HOST_STATE_GET,
            Self::Put => abi::HOST_STATE_PUT,
            Self::Delete => abi::HOST_STATE_DELETE,
            Self::Increment(_) => abi::HOST_STATE_INCREMENT,
            Self::Append => abi::HOST_STATE_APPEND,
        }
    }

    fn writes(self) -> bool {
        !matches!(self, Self::Get)
    }
}

/// One state call's arguments: `ptr, len` pairs in guest memory.
struct StateCall {
    op: Op,
    doc: (i32, i32),
    path: (i32, i32),
    /// The JSON value, for put and append.
    value: Option<(i32, i32)>,
}

/// Longest document name a guest can pass: a 64-hex namespace, `/`, a name.
const MAX_DOC_ARG: u64 = 64 + 1 + proto_state::MAX_NAME as u64;
/// Longest key path a guest can pass.
const MAX_PATH_ARG: u64 = (proto_state::MAX_PATH_DEPTH * (proto_state::MAX_KEY + 1)) as u64;

/// Runs one state operation for the guest. Bad pointers trap; everything else becomes
/// a negative status with the message in the result buffer.
fn state_op(host: &mut HostState, mem: &dyn Mem, call: StateCall) -> Result<i64, HostError> {
    let outcome = state_op_inner(host, mem, call)?;
    let data = host;
    Ok(match outcome {
        Ok(bytes) => {
            let len = bytes.len() as i64;
            data.result = bytes;
            len
        }
        Err((status, mut message)) => {
            tracing::debug!(function = %data.function, kind = status.kind(), %message, "state operation refused");
            // A guest's buffer of MAX_ERROR_MESSAGE bytes always holds it (docs/abi.md).
            if message.len() > abi::MAX_ERROR_MESSAGE {
                let mut end = abi::MAX_ERROR_MESSAGE;
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                message.truncate(end);
            }
            data.result = message.into_bytes();
            status as i64
        }
    })
}

fn state_op_inner(
    host: &mut HostState,
    mem: &dyn Mem,
    StateCall {
        op,
        doc: (doc_ptr, doc_len),
        path: (path_ptr, path_len),
        value,
    }: StateCall,
) -> Result<Result<Vec<u8>, Refusal>, HostError> {
    let func = op.host_function();
    let too_long = |what: &str, len: i32, max: u64| {
        Ok(Err((
            StateStatus::BadRequest,
            format!("the {what} passed to kith.{func} is {len} bytes; at most {max}"),
        )))
    };
    if u64::try_from(doc_len).unwrap_or(0) > MAX_DOC_ARG {
        return too_long("document name", doc_len, MAX_DOC_ARG);
    }
    if u64::try_from(path_len).unwrap_or(0) > MAX_PATH_ARG {
        return too_long("key path", path_len, MAX_PATH_ARG);
    }
    let doc_bytes = read(mem, func, doc_ptr, doc_len, MAX_DOC_ARG)?;
    let path_bytes = read(mem, func, path_ptr, path_len, MAX_PATH_ARG)?;
    let data = &*host;
    let Some((access, manifest)) = data.state.as_ref() else {
        return Ok(Err((
            StateStatus::Unavailable,
            "application state is not available on this node".into(),
        )));
    };
    let max_change = access.store.limits().max_change_bytes;
    let value_bytes = match value {
        Some((ptr, len)) => {
            let size = u64::try_from(len).unwrap_or(0);
            if size > max_change {
                // Still check the buffer: a bad pointer is a bug in the guest.
                read(mem, func, ptr, 0, 0)?;
                return Ok(Err((
                    StateStatus::TooLarge,
                    format!(
                        "the value is {size} bytes; the limit is max_change_bytes = {max_change}"
                    ),
                )));
            }
            Some(read(mem, func, ptr, len, max_change)?)
        }
        None => None,
    };
    let ops = data.state_ops.get();
    if ops >= abi::MAX_STATE_OPS {
        return Ok(Err((
            StateStatus::TooLarge,
            format!(
                "the call made {ops} state operations; at most {} per call (max_state_ops)",
                abi::MAX_STATE_OPS
            ),
        )));
    }
    data.state_ops.set(ops + 1);
    let bad =
        |what: &str, e: &dyn std::fmt::Display| (StateStatus::BadRequest, format!("{what}: {e}"));
    let Ok(doc_text) = std::str::from_utf8(&doc_bytes) else {
        return Ok(Err(bad("document name", &"not UTF-8")));
    };
    let doc: DocName = match doc_text.parse() {
        Ok(d) => d,
        Err(e) => return Ok(Err(bad("document name", &e))),
    };
    let Ok(path_text) = std::str::from_utf8(&path_bytes) else {
        return Ok(Err(bad("key path", &"not UTF-8")));
    };
    let path = match proto_state::parse_path(path_text) {
        Ok(p) => p,
        Err(e) => return Ok(Err(bad("key path", &e))),
    };
    let writes = op.writes();
    let allowed = if writes {
        manifest.may_write(&doc)
    } else {
        manifest.may_read(&doc)
    };
    if !allowed {
        let key = if writes {
            "state_write"
        } else {
            "state_read or state_write"
        };
        return Ok(Err((
            StateStatus::PermissionDenied,
            format!("permission denied: the function's manifest does not list {doc} in {key}"),
        )));
    }
    let json = || -> Result<serde_json::Value, Refusal> {
        let bytes = value_bytes.as_deref().unwrap_or_default();
        serde_json::from_slice(bytes).map_err(|e| bad("the value is not JSON", &e))
    };
    let store = &access.store;
    let result = match op {
        Op::Get => store
            .get(&doc, &path)
            .map(|v| v.to_string().into_bytes())
            .map_err(|e| refusal(&e)),
        Op::Put => json().and_then(|v| {
            store
                .put(&doc, &access.writer, &path, &v)
                .map_err(|e| refusal(&e))
                .map(|_| Vec::new())
        }),
        Op::Append => json().and_then(|v| {
            store
                .append(&doc, &access.writer, &path, &v)
                .map_err(|e| refusal(&e))
                .map(|_| Vec::new())
        }),
        Op::Delete => store
            .delete(&doc, &access.writer, &path)
            .map(|_| Vec::new())
            .map_err(|e| refusal(&e)),
        Op::Increment(by) => store
            .increment(&doc, &access.writer, &path, by)
            .map(|(_, value)| value.to_string().into_bytes())
            .map_err(|e| refusal(&e)),
    };
    if writes && result.is_ok() {
        lock(&access.written).insert(doc);
    }
    Ok(result)
}

/// Copies up to `len` bytes of the result buffer to `ptr`; returns how many.
fn result(host: &HostState, mem: &mut dyn Mem, ptr: i32, len: i32) -> Result<i32, HostError> {
    let bad = || HostError::BadBuffer {
        func: abi::HOST_RESULT,
        ptr,
        len,
    };
    let (Ok(start), Ok(len)) = (u32::try_from(ptr), usize::try_from(len)) else {
        return Err(bad());
    };
    let n = len.min(host.result.len());
    mem.write(start, &host.result[..n]).ok_or_else(bad)?;
    // At most `len`, which came in as an i32.
    Ok(i32::try_from(n).unwrap_or(i32::MAX))
}

/// Runs the `kith` host function `name` with `args` (each an i32 or i64 as its bits):
/// its result, if it has one.
///
/// # Errors
/// A [`HostError`] ends the call: a buffer outside memory, output over its cap.
pub(crate) fn dispatch(
    name: &str,
    host: &mut HostState,
    mem: &mut dyn Mem,
    args: &[i64],
) -> Result<Option<i64>, HostError> {
    let a = |i: usize| args.get(i).copied().unwrap_or(0) as i32;
    let state = |op: Op, value: bool| StateCall {
        op,
        doc: (a(0), a(1)),
        path: (a(2), a(3)),
        value: value.then(|| (a(4), a(5))),
    };
    Ok(match name {
        abi::HOST_OUTPUT => output(host, mem, a(0), a(1)).map(|()| None)?,
        abi::HOST_ERROR => error(host, mem, a(0), a(1)).map(|()| None)?,
        abi::HOST_LOG => log(host, mem, a(0), a(1), a(2)).map(|()| None)?,
        abi::HOST_NOW_MS => Some(now_ms()),
        abi::HOST_STATE_GET => Some(state_op(host, mem, state(Op::Get, false))?),
        abi::HOST_STATE_PUT => Some(state_op(host, mem, state(Op::Put, true))?),
        abi::HOST_STATE_DELETE => Some(state_op(host, mem, state(Op::Delete, false))?),
        abi::HOST_STATE_INCREMENT => {
            let by = args.get(4).copied().unwrap_or(0);
            Some(state_op(host, mem, state(Op::Increment(by), false))?)
        }
        abi::HOST_STATE_APPEND => Some(state_op(host, mem, state(Op::Append, true))?),
        abi::HOST_RESULT => Some(i64::from(result(host, mem, a(0), a(1))?)),
        _ => None,
    })
}

/// Runs the WASI function `name` for the call (its errno as the result), through the
/// call's WASI context.
///
/// # Errors
/// As `wasi::dispatch`; a call without a WASI context traps.
pub(crate) fn dispatch_wasi(
    name: &str,
    host: &mut HostState,
    mem: &mut dyn Mem,
    args: &[i64],
) -> Result<Option<i64>, HostError> {
    let wasi = host.wasi.as_mut().ok_or(HostError::BadBuffer {
        func: "(a WASI call without its context)",
        ptr: 0,
        len: 0,
    })?;
    super::wasi::dispatch(name, wasi, mem, args).map(|errno| Some(i64::from(errno)))
}
