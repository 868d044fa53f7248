//! The names and numbers of the guest ABI, versions 1 and 2.
//!
//! `docs/abi.md` is the specification; this module is its executable copy. A guest is a
//! WebAssembly module that:
//!
//! - exports its linear memory as [`EXPORT_MEMORY`];
//! - exports [`EXPORT_ALLOC`] `(len: i32) -> i32`, returning a pointer to `len` writable
//!   bytes (or 0 when it cannot allocate);
//! - exports [`EXPORT_CALL`] `(ptr: i32, len: i32) -> i32`, the entry point, which
//!   reads its input at `ptr..ptr+len` and returns [`STATUS_OK`] or any other value for
//!   an error;
//! - may import, from module [`IMPORT_MODULE`], the host functions listed in
//!   [`HOST_FUNCTIONS`] and nothing else.
//!
//! Version 2 adds application state: the `state_*` host functions and `result`, and
//! the manifest keys `state_read` and `state_write`. A version 1 module runs unchanged.

/// The newest ABI version this crate speaks.
pub const ABI_VERSION: u32 = 2;
/// The oldest ABI version this crate still speaks.
pub const MIN_ABI_VERSION: u32 = 1;
/// The ABI version that introduced state: a module importing a `state_*` function or
/// naming `state_read`/`state_write` must declare at least this.
pub const STATE_ABI_VERSION: u32 = 2;

/// Name of the custom section that carries the manifest.
pub const MANIFEST_SECTION: &str = "kith.manifest";

/// The exported linear memory.
pub const EXPORT_MEMORY: &str = "memory";
/// The exported allocator: `(len: i32) -> i32`.
pub const EXPORT_ALLOC: &str = "kith_alloc";
/// The exported entry point: `(ptr: i32, len: i32) -> i32`.
pub const EXPORT_CALL: &str = "kith_call";

/// Exports whose names start with this are reserved for the host's instrumentation.
pub const RESERVED_EXPORT_PREFIX: &str = "wasmer_";

/// The import module name for host functions.
pub const IMPORT_MODULE: &str = "kith";

/// `output(ptr: i32, len: i32)`: sets the call's output to a copy of those bytes.
pub const HOST_OUTPUT: &str = "output";
/// `error(ptr: i32, len: i32)`: sets the call's error message (UTF-8) to a copy.
pub const HOST_ERROR: &str = "error";
/// `log(level: i32, ptr: i32, len: i32)`: writes a UTF-8 line to the node's log.
pub const HOST_LOG: &str = "log";
/// `now_ms() -> i64`: wall-clock milliseconds since the Unix epoch.
pub const HOST_NOW_MS: &str = "now_ms";

/// `state_get(doc_ptr, doc_len, path_ptr, path_len) -> i64`: the value at a key path
/// (the empty path: the whole document) as JSON, into the result buffer.
pub const HOST_STATE_GET: &str = "state_get";
/// `state_put(doc_ptr, doc_len, path_ptr, path_len, json_ptr, json_len) -> i64`.
pub const HOST_STATE_PUT: &str = "state_put";
/// `state_delete(doc_ptr, doc_len, path_ptr, path_len) -> i64`.
pub const HOST_STATE_DELETE: &str = "state_delete";
/// `state_increment(doc_ptr, doc_len, path_ptr, path_len, by: i64) -> i64`: the
/// counter's new value, as JSON, into the result buffer.
pub const HOST_STATE_INCREMENT: &str = "state_increment";
/// `state_append(doc_ptr, doc_len, path_ptr, path_len, json_ptr, json_len) -> i64`.
pub const HOST_STATE_APPEND: &str = "state_append";
/// `result(ptr, len) -> i32`: copies up to `len` bytes of the result buffer to `ptr`,
/// returns how many it copied.
pub const HOST_RESULT: &str = "result";

/// Host functions that need [`STATE_ABI_VERSION`].
pub const STATE_FUNCTIONS: &[&str] = &[
    HOST_STATE_GET,
    HOST_STATE_PUT,
    HOST_STATE_DELETE,
    HOST_STATE_INCREMENT,
    HOST_STATE_APPEND,
    HOST_RESULT,
];

/// Host functions whose results depend on the moment or on state, not on the input
/// alone: a function importing any of them is not deterministic, and cannot be
/// verified by redundant execution (`crate::verify`).
pub const NONDETERMINISTIC: &[&str] = &[
    HOST_NOW_MS,
    HOST_STATE_GET,
    HOST_STATE_PUT,
    HOST_STATE_DELETE,
    HOST_STATE_INCREMENT,
    HOST_STATE_APPEND,
];

/// Most state operations one call may make.
pub const MAX_STATE_OPS: u32 = 1000;

/// What a `state_*` host function returns when it fails (a negative number); the
/// result buffer then holds the error message. A non-negative return is the length of
/// the result in the result buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
pub enum StateStatus {
    /// The manifest's `state_read`/`state_write` does not list the document.
    PermissionDenied = -1,
    /// The document is not held, or nothing is at the path.
    NotFound = -2,
    /// A malformed document name, key path or JSON value.
    BadRequest = -3,
    /// The operation does not fit the value there (e.g. incrementing a string).
    Conflict = -4,
    /// A size or count limit (the message names it).
    TooLarge = -5,
    /// The node cannot serve it (namespace not hosted, disk trouble).
    Unavailable = -6,
}

impl StateStatus {
    /// The error kind's name, as in `docs/abi.md`.
    pub fn kind(self) -> &'static str {
        match self {
            Self::PermissionDenied => "permission_denied",
            Self::NotFound => "not_found",
            Self::BadRequest => "bad_request",
            Self::Conflict => "conflict",
            Self::TooLarge => "too_large",
            Self::Unavailable => "unavailable",
        }
    }
}

/// A WebAssembly value type, as far as the ABI needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValType {
    /// 32-bit integer.
    I32,
    /// 64-bit integer.
    I64,
}

/// A function signature: parameters and results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    /// Parameter types, in order.
    pub params: &'static [ValType],
    /// Result types, in order.
    pub results: &'static [ValType],
}

impl std::fmt::Display for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[ValType]| {
            v.iter()
                .map(|t| match t {
                    ValType::I32 => "i32",
                    ValType::I64 => "i64",
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(f, "({}) -> ({})", list(self.params), list(self.results))
    }
}

use ValType::{I32, I64};

/// Signature of [`EXPORT_ALLOC`].
pub const ALLOC_SIGNATURE: Signature = Signature {
    params: &[I32],
    results: &[I32],
};
/// Signature of [`EXPORT_CALL`].
pub const CALL_SIGNATURE: Signature = Signature {
    params: &[I32, I32],
    results: &[I32],
};

/// Every host function a guest may import, with its signature.
pub const HOST_FUNCTIONS: &[(&str, Signature)] = &[
    (
        HOST_OUTPUT,
        Signature {
            params: &[I32, I32],
            results: &[],
        },
    ),
    (
        HOST_ERROR,
        Signature {
            params: &[I32, I32],
            results: &[],
        },
    ),
    (
        HOST_LOG,
        Signature {
            params: &[I32, I32, I32],
            results: &[],
        },
    ),
    (
        HOST_NOW_MS,
        Signature {
            params: &[],
            results: &[I64],
        },
    ),
    (
        HOST_STATE_GET,
        Signature {
            params: &[I32, I32, I32, I32],
            results: &[I64],
        },
    ),
    (
        HOST_STATE_PUT,
        Signature {
            params: &[I32, I32, I32, I32, I32, I32],
            results: &[I64],
        },
    ),
    (
        HOST_STATE_DELETE,
        Signature {
            params: &[I32, I32, I32, I32],
            results: &[I64],
        },
    ),
    (
        HOST_STATE_INCREMENT,
        Signature {
            params: &[I32, I32, I32, I32, I64],
            results: &[I64],
        },
    ),
    (
        HOST_STATE_APPEND,
        Signature {
            params: &[I32, I32, I32, I32, I32, I32],
            results: &[I64],
        },
    ),
    (
        HOST_RESULT,
        Signature {
            params: &[I32, I32],
            results: &[I32],
        },
    ),
];

/// The status [`EXPORT_CALL`] returns on success.
pub const STATUS_OK: i32 = 0;

/// Log levels accepted by [`HOST_LOG`]; other values are logged at `Info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// 0
    Error,
    /// 1
    Warn,
    /// 2
    Info,
    /// 3
    Debug,
    /// 4
    Trace,
}

impl LogLevel {
    /// The level for an ABI value; unknown values map to `Info`.
    pub fn from_abi(level: i32) -> Self {
        match level {
            0 => Self::Error,
            1 => Self::Warn,
            3 => Self::Debug,
            4 => Self::Trace,
            _ => Self::Info,
        }
    }
}

/// The most bytes of one guest log line the host keeps; longer lines are truncated.
pub const MAX_LOG_LINE: usize = 1024;
/// The most log lines one call may write; later lines are dropped (and counted).
pub const MAX_LOG_LINES: u32 = 64;
/// The most bytes of a guest error message the host keeps.
pub const MAX_ERROR_MESSAGE: usize = 4096;
