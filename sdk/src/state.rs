//! Application state from inside a function (ABI 2): Automerge documents that the node
//! holds and syncs with its peers (`docs/state.md`).
//!
//! A document is named `NAMESPACE/NAME`, the namespace as its 64-hex id. The function's
//! manifest must list it in `state_read` or `state_write`, or every access is refused
//! with [`StateErrorKind::PermissionDenied`]:
//!
//! ```ignore
//! const VISITS: &str = "6b69…0001/visits";
//! kith_sdk::manifest!(state_write = &[VISITS]);
//!
//! fn visit(input: &[u8]) -> Result<String, kith_sdk::state::StateError> {
//!     let doc = kith_sdk::state::Doc::new(VISITS);
//!     let total = doc.increment("total", 1)?;
//!     Ok(format!("visit number {total}"))
//! }
//! ```
//!
//! Every write is its own change, durable on the node before the call returns; a call
//! that fails after a write leaves that write in place (there are no transactions).
//! Values travel as JSON: any `serde` type works.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

#[cfg(target_arch = "wasm32")]
mod host {
    #[link(wasm_import_module = "kith")]
    unsafe extern "C" {
        pub(super) fn state_get(doc: i32, doc_len: i32, path: i32, path_len: i32) -> i64;
        pub(super) fn state_put(
            doc: i32,
            doc_len: i32,
            path: i32,
            path_len: i32,
            json: i32,
            json_len: i32,
        ) -> i64;
        pub(super) fn state_delete(doc: i32, doc_len: i32, path: i32, path_len: i32) -> i64;
        pub(super) fn state_increment(
            doc: i32,
            doc_len: i32,
            path: i32,
            path_len: i32,
            by: i64,
        ) -> i64;
        pub(super) fn state_append(
            doc: i32,
            doc_len: i32,
            path: i32,
            path_len: i32,
            json: i32,
            json_len: i32,
        ) -> i64;
        pub(super) fn result(ptr: i32, len: i32) -> i32;
    }
}

/// Outside WebAssembly there is no node: every operation reports `Unavailable`. (Put
/// and append are `extern "C"` like the imports, so both pass as the same pointer type.)
#[cfg(not(target_arch = "wasm32"))]
mod host {
    const UNAVAILABLE: i64 = -6;
    pub(super) unsafe fn state_get(_: i32, _: i32, _: i32, _: i32) -> i64 {
        UNAVAILABLE
    }
    pub(super) unsafe extern "C" fn state_put(
        _: i32,
        _: i32,
        _: i32,
        _: i32,
        _: i32,
        _: i32,
    ) -> i64 {
        UNAVAILABLE
    }
    pub(super) unsafe fn state_delete(_: i32, _: i32, _: i32, _: i32) -> i64 {
        UNAVAILABLE
    }
    pub(super) unsafe fn state_increment(_: i32, _: i32, _: i32, _: i32, _: i64) -> i64 {
        UNAVAILABLE
    }
    pub(super) unsafe extern "C" fn state_append(
        _: i32,
        _: i32,
        _: i32,
        _: i32,
        _: i32,
        _: i32,
    ) -> i64 {
        UNAVAILABLE
    }
    pub(super) unsafe fn result(_: i32, _: i32) -> i32 {
        0
    }
}

/// What went wrong, as the node reports it (`docs/abi.md`, state status codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateErrorKind {
    /// The manifest's `state_read`/`state_write` does not list the document.
    PermissionDenied,
    /// The document is not held, or nothing is at the path.
    NotFound,
    /// A malformed document name, path or value.
    BadRequest,
    /// The operation does not fit the value there (e.g. incrementing a string).
    Conflict,
    /// A size or count limit; the message names it.
    TooLarge,
    /// The node cannot serve it (namespace not hosted, disk trouble, not on a node).
    Unavailable,
    /// The node's answer could not be decoded as the expected type.
    Decode,
}

/// A failed state operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateError {
    /// Its kind.
    pub kind: StateErrorKind,
    /// The node's message, naming the document, path or limit.
    pub message: String,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StateError {}

fn take_result(len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    // SAFETY: the host writes at most `len` bytes into this buffer of `len` bytes.
    let copied = unsafe { host::result(buf.as_mut_ptr() as i32, len as i32) };
    buf.truncate(usize::try_from(copied).unwrap_or(0));
    buf
}

/// Turns a host return value into the result bytes or an error.
fn finish(code: i64) -> Result<Vec<u8>, StateError> {
    if let Ok(len) = usize::try_from(code) {
        return Ok(take_result(len));
    }
    let kind = match code {
        -1 => StateErrorKind::PermissionDenied,
        -2 => StateErrorKind::NotFound,
        -3 => StateErrorKind::BadRequest,
        -4 => StateErrorKind::Conflict,
        -5 => StateErrorKind::TooLarge,
        _ => StateErrorKind::Unavailable,
    };
    // The message is in the result buffer; 4 KiB is plenty for any of them.
    let message = String::from_utf8_lossy(&take_result(4096)).into_owned();
    let message = if message.is_empty() {
        format!("state operation failed with status {code}")
    } else {
        message
    };
    Err(StateError { kind, message })
}

/// [`finish`], with "nothing there" as `None` rather than an error.
fn found(code: i64) -> Result<Option<Vec<u8>>, StateError> {
    match finish(code) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind == StateErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(value).map_err(|e| StateError {
        kind: StateErrorKind::BadRequest,
        message: format!("value is not representable as JSON: {e}"),
    })
}

fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StateError> {
    serde_json::from_slice(bytes).map_err(|e| StateError {
        kind: StateErrorKind::Decode,
        message: format!("the stored value does not decode as the expected type: {e}"),
    })
}

/// A state document, by name. Creating one is free: nothing is checked until it is
/// used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    name: String,
}

impl Doc {
    /// The document `NAMESPACE/NAME`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The document name and `path` as the ABI takes them: pointer and length pairs
    /// (32-bit on wasm32, the only target where they are read).
    fn args(&self, path: &str) -> (i32, i32, i32, i32) {
        let (n, p) = (&self.name, path);
        (
            n.as_ptr() as i32,
            n.len() as i32,
            p.as_ptr() as i32,
            p.len() as i32,
        )
    }

    /// Put and append: `op` with `value` as JSON.
    fn write<T: Serialize + ?Sized>(
        &self,
        op: unsafe extern "C" fn(i32, i32, i32, i32, i32, i32) -> i64,
        path: &str,
        value: &T,
    ) -> Result<(), StateError> {
        let json = to_json(value)?;
        let (d, dl, p, pl) = self.args(path);
        finish(unsafe { op(d, dl, p, pl, json.as_ptr() as i32, json.len() as i32) }).map(drop)
    }

    /// The value at `path` (keys separated by `/`), or `None` when nothing is there.
    ///
    /// # Errors
    /// Permission, a malformed path, or a value that is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, StateError> {
        match self.get_json(path)? {
            Some(json) => from_json(&json).map(Some),
            None => Ok(None),
        }
    }

    /// The value at `path` as JSON text, or `None` when nothing is there.
    ///
    /// # Errors
    /// Permission or a malformed path.
    pub fn get_json(&self, path: &str) -> Result<Option<Vec<u8>>, StateError> {
        let (d, dl, p, pl) = self.args(path);
        found(unsafe { host::state_get(d, dl, p, pl) })
    }

    /// The whole document as a `T` (e.g. `serde_json::Value`); an empty document (or
    /// one not held yet) reads as `{}`.
    ///
    /// # Errors
    /// Permission, or a document that is not a `T`.
    pub fn read<T: DeserializeOwned>(&self) -> Result<T, StateError> {
        let json = self.get_json("")?.unwrap_or_else(|| b"{}".to_vec());
        from_json(&json)
    }

    /// Puts `value` at `path`, creating maps along the way.
    ///
    /// # Errors
    /// Permission, a malformed path, a value over the node's `max_change_bytes`.
    pub fn put<T: Serialize + ?Sized>(&self, path: &str, value: &T) -> Result<(), StateError> {
        self.write(host::state_put, path, value)
    }

    /// Deletes the value at `path`; `false` when nothing was there.
    ///
    /// # Errors
    /// Permission or a malformed path.
    pub fn delete(&self, path: &str) -> Result<bool, StateError> {
        let (d, dl, p, pl) = self.args(path);
        found(unsafe { host::state_delete(d, dl, p, pl) }).map(|r| r.is_some())
    }

    /// Adds `by` to the counter at `path` (created at 0 when missing) and returns its
    /// new value. Concurrent increments on different nodes add up.
    ///
    /// # Errors
    /// Permission, or a value there that is not a counter.
    pub fn increment(&self, path: &str, by: i64) -> Result<i64, StateError> {
        let (d, dl, p, pl) = self.args(path);
        from_json(&finish(unsafe { host::state_increment(d, dl, p, pl, by) })?)
    }

    /// Appends `value` to the list at `path` (created empty when missing).
    ///
    /// # Errors
    /// Permission, or a value there that is not a list.
    pub fn append<T: Serialize + ?Sized>(&self, path: &str, value: &T) -> Result<(), StateError> {
        self.write(host::state_append, path, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_node_everything_is_unavailable() {
        let doc = Doc::new("ns/doc");
        let e = doc.increment("n", 1).unwrap_err();
        assert_eq!(e.kind, StateErrorKind::Unavailable);
        assert!(e.message.contains("status -6"), "{e}");
        assert!(doc.get::<i64>("n").is_err());
    }
}
