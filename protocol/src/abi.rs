//! The names and numbers of the guest ABI, version 1.
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

/// The ABI version this crate speaks. A manifest naming another version is refused.
pub const ABI_VERSION: u32 = 1;

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
