//! Host functions of the guest ABI (module `kith`), see `docs/abi.md`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use kith_protocol::abi::{self, LogLevel, StateStatus};
use kith_protocol::state::{self as proto_state, DocName};
use kith_protocol::{FunctionId, Manifest};
use wasmer::{
    Function, FunctionEnv, FunctionEnvMut, Imports, Memory, RuntimeError, Store, imports,
};

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
    pub(crate) memory: Option<Memory>,
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
            memory: None,
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
fn state_op(env: &mut FunctionEnvMut<'_, HostState>, call: StateCall) -> Result<i64, RuntimeError> {
    let outcome = state_op_inner(env, call)?;
    let data = env.data_mut();
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
    env: &mut FunctionEnvMut<'_, HostState>,
    StateCall {
        op,
        doc: (doc_ptr, doc_len),
        path: (path_ptr, path_len),
        value,
    }: StateCall,
) -> Result<Result<Vec<u8>, Refusal>, RuntimeError> {
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
    let doc_bytes = read(env, func, doc_ptr, doc_len, MAX_DOC_ARG)?;
    let path_bytes = read(env, func, path_ptr, path_len, MAX_PATH_ARG)?;
    let data = env.data();
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
                read(env, func, ptr, 0, 0)?;
                return Ok(Err((
                    StateStatus::TooLarge,
                    format!(
                        "the value is {size} bytes; the limit is max_change_bytes = {max_change}"
                    ),
                )));
            }
            Some(read(env, func, ptr, len, max_change)?)
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

fn state_get(
    mut env: FunctionEnvMut<'_, HostState>,
    doc: i32,
    doc_len: i32,
    path: i32,
    path_len: i32,
) -> Result<i64, RuntimeError> {
    let (doc, path) = ((doc, doc_len), (path, path_len));
    state_op(
        &mut env,
        StateCall {
            op: Op::Get,
            doc,
            path,
            value: None,
        },
    )
}

fn state_put(
    mut env: FunctionEnvMut<'_, HostState>,
    doc: i32,
    doc_len: i32,
    path: i32,
    path_len: i32,
    json: i32,
    json_len: i32,
) -> Result<i64, RuntimeError> {
    let (doc, path, value) = ((doc, doc_len), (path, path_len), Some((json, json_len)));
    state_op(
        &mut env,
        StateCall {
            op: Op::Put,
            doc,
            path,
            value,
        },
    )
}

fn state_delete(
    mut env: FunctionEnvMut<'_, HostState>,
    doc: i32,
    doc_len: i32,
    path: i32,
    path_len: i32,
) -> Result<i64, RuntimeError> {
    let (doc, path) = ((doc, doc_len), (path, path_len));
    state_op(
        &mut env,
        StateCall {
            op: Op::Delete,
            doc,
            path,
            value: None,
        },
    )
}

fn state_increment(
    mut env: FunctionEnvMut<'_, HostState>,
    doc: i32,
    doc_len: i32,
    path: i32,
    path_len: i32,
    by: i64,
) -> Result<i64, RuntimeError> {
    let (doc, path) = ((doc, doc_len), (path, path_len));
    state_op(
        &mut env,
        StateCall {
            op: Op::Increment(by),
            doc,
            path,
            value: None,
        },
    )
}

fn state_append(
    mut env: FunctionEnvMut<'_, HostState>,
    doc: i32,
    doc_len: i32,
    path: i32,
    path_len: i32,
    json: i32,
    json_len: i32,
) -> Result<i64, RuntimeError> {
    let (doc, path, value) = ((doc, doc_len), (path, path_len), Some((json, json_len)));
    state_op(
        &mut env,
        StateCall {
            op: Op::Append,
            doc,
            path,
            value,
        },
    )
}

/// Copies up to `len` bytes of the result buffer to `ptr`; returns how many.
fn result(env: FunctionEnvMut<'_, HostState>, ptr: i32, len: i32) -> Result<i32, RuntimeError> {
    let bad = || {
        RuntimeError::user(Box::new(HostError::BadBuffer {
            func: abi::HOST_RESULT,
            ptr,
            len,
        }))
    };
    let (Ok(start), Ok(len)) = (u64::try_from(ptr), usize::try_from(len)) else {
        return Err(bad());
    };
    let data = env.data();
    let n = len.min(data.result.len());
    let memory = data.memory.as_ref().ok_or_else(bad)?;
    memory
        .view(&env)
        .write(start, &data.result[..n])
        .map_err(|_| bad())?;
    // At most `len`, which came in as an i32.
    Ok(i32::try_from(n).unwrap_or(i32::MAX))
}

/// The guest's memory through wasmer, for the WASI host.
struct View<'a>(wasmer::MemoryView<'a>);

impl super::wasi::Mem for View<'_> {
    fn read(&self, ptr: u32, len: u32) -> Option<Vec<u8>> {
        let end = u64::from(ptr).checked_add(u64::from(len))?;
        if end > self.0.data_size() {
            return None;
        }
        self.0.copy_range_to_vec(u64::from(ptr)..end).ok()
    }
    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Option<()> {
        self.0.write(u64::from(ptr), bytes).ok()
    }
}

/// The WASI preview 1 functions `names` (the ones the module imports), each
/// dispatched by name to `super::wasi`.
fn wasi_imports(
    store: &mut Store,
    env: &FunctionEnv<HostState>,
    names: &[&'static str],
) -> wasmer::Exports {
    let mut exports = wasmer::Exports::new();
    for (name, sig) in kith_protocol::wasi::FUNCTIONS
        .iter()
        .filter(|(n, _)| names.contains(n))
    {
        let ty = |v: &[abi::ValType]| -> Vec<wasmer::Type> {
            v.iter()
                .map(|t| match t {
                    abi::ValType::I32 => wasmer::Type::I32,
                    abi::ValType::I64 => wasmer::Type::I64,
                })
                .collect()
        };
        let func_type = wasmer::FunctionType::new(ty(sig.params), ty(sig.results));
        let returns = !sig.results.is_empty();
        let f = Function::new_with_env(
            store,
            env,
            func_type,
            move |mut env: FunctionEnvMut<'_, HostState>, args: &[wasmer::Value]| {
                let args: Vec<i64> = args
                    .iter()
                    .map(|v| match v {
                        wasmer::Value::I32(x) => i64::from(*x),
                        wasmer::Value::I64(x) => *x,
                        _ => 0,
                    })
                    .collect();
                let (data, store) = env.data_and_store_mut();
                let no_memory = || {
                    RuntimeError::user(Box::new(HostError::BadBuffer {
                        func: "wasi",
                        ptr: 0,
                        len: 0,
                    }))
                };
                let memory = data.memory.clone().ok_or_else(no_memory)?;
                let wasi = data.wasi.as_mut().ok_or_else(no_memory)?;
                let mut view = View(memory.view(&store));
                let errno = super::wasi::dispatch(name, wasi, &mut view, &args)
                    .map_err(|e| RuntimeError::user(Box::new(e)))?;
                Ok(if returns {
                    vec![wasmer::Value::I32(errno)]
                } else {
                    Vec::new()
                })
            },
        );
        exports.insert(*name, f);
    }
    exports
}

/// The import object for one call of a module that imports the WASI functions
/// `wasi` (none for most native modules).
pub(crate) fn imports(
    store: &mut Store,
    env: &FunctionEnv<HostState>,
    wasi: &[&'static str],
) -> Imports {
    let mut imports = kith_imports(store, env);
    if !wasi.is_empty() {
        let functions = wasi_imports(store, env, wasi);
        imports.register_namespace(kith_protocol::wasi::MODULE, functions);
    }
    imports
}

fn kith_imports(store: &mut Store, env: &FunctionEnv<HostState>) -> Imports {
    imports! {
        abi::IMPORT_MODULE => {
            abi::HOST_OUTPUT => Function::new_typed_with_env(store, env, output),
            abi::HOST_ERROR => Function::new_typed_with_env(store, env, error),
            abi::HOST_LOG => Function::new_typed_with_env(store, env, log),
            abi::HOST_NOW_MS => Function::new_typed(store, now_ms),
            abi::HOST_STATE_GET => Function::new_typed_with_env(store, env, state_get),
            abi::HOST_STATE_PUT => Function::new_typed_with_env(store, env, state_put),
            abi::HOST_STATE_DELETE => Function::new_typed_with_env(store, env, state_delete),
            abi::HOST_STATE_INCREMENT => Function::new_typed_with_env(store, env, state_increment),
            abi::HOST_STATE_APPEND => Function::new_typed_with_env(store, env, state_append),
            abi::HOST_RESULT => Function::new_typed_with_env(store, env, result),
        }
    }
}
