//! WASI preview 1 command modules as kith functions: the names, signatures and
//! numbers a module and the host agree on (`docs/abi.md`, WASI).
//!
//! A **WASI command** exports `_start` (`() -> ()`) and its `memory`, and imports from
//! `wasi_snapshot_preview1` (any of [`FUNCTIONS`], with exactly these signatures) and,
//! if it wants state, from `kith`. A call is one run of `_start`: stdin is the call's
//! input, stdout its output, stderr lines go to the node's log, and the exit code
//! decides (`proc_exit(0)` or returning from `_start` is success; anything else is a
//! function error carrying the last stderr line). There is no filesystem, no socket
//! and no preopened directory: those calls answer with an errno and never touch the
//! host.

use crate::abi::Signature;
use crate::abi::ValType::{I32, I64};

/// The import module of WASI preview 1.
pub const MODULE: &str = "wasi_snapshot_preview1";
/// The entry point a WASI command exports.
pub const EXPORT_START: &str = "_start";
/// Signature of [`EXPORT_START`].
pub const START_SIGNATURE: Signature = Signature {
    params: &[],
    results: &[],
};

/// `proc_exit`: ends the call with an exit code.
pub const PROC_EXIT: &str = "proc_exit";

/// Imports whose result depends on the moment or on chance: a WASI command importing
/// one is not deterministic (`crate::verify`).
pub const NONDETERMINISTIC: &[&str] = &["clock_time_get", "random_get", "poll_oneoff"];

/// Most arguments and environment variables a manifest may give a WASI command, each.
pub const MAX_ARGS: usize = 64;

/// WASI errno values the host answers with.
pub mod errno {
    /// Success.
    pub const SUCCESS: i32 = 0;
    /// Bad file descriptor.
    pub const BADF: i32 = 8;
    /// Bad address (a buffer outside memory).
    pub const FAULT: i32 = 21;
    /// Invalid argument.
    pub const INVAL: i32 = 28;
    /// Function not implemented.
    pub const NOSYS: i32 = 52;
    /// Not supported.
    pub const NOTSUP: i32 = 58;
    /// Invalid seek (stdio is a stream).
    pub const SPIPE: i32 = 70;
    /// Not permitted by the capabilities held (no filesystem).
    pub const NOTCAPABLE: i32 = 76;
}

const fn sig(params: &'static [crate::abi::ValType], results: bool) -> Signature {
    Signature {
        params,
        results: if results { &[I32] } else { &[] },
    }
}

/// Every function of `wasi_snapshot_preview1`, with its signature.
pub const FUNCTIONS: &[(&str, Signature)] = &[
    ("args_get", sig(&[I32, I32], true)),
    ("args_sizes_get", sig(&[I32, I32], true)),
    ("environ_get", sig(&[I32, I32], true)),
    ("environ_sizes_get", sig(&[I32, I32], true)),
    ("clock_res_get", sig(&[I32, I32], true)),
    ("clock_time_get", sig(&[I32, I64, I32], true)),
    ("fd_advise", sig(&[I32, I64, I64, I32], true)),
    ("fd_allocate", sig(&[I32, I64, I64], true)),
    ("fd_close", sig(&[I32], true)),
    ("fd_datasync", sig(&[I32], true)),
    ("fd_fdstat_get", sig(&[I32, I32], true)),
    ("fd_fdstat_set_flags", sig(&[I32, I32], true)),
    ("fd_fdstat_set_rights", sig(&[I32, I64, I64], true)),
    ("fd_filestat_get", sig(&[I32, I32], true)),
    ("fd_filestat_set_size", sig(&[I32, I64], true)),
    ("fd_filestat_set_times", sig(&[I32, I64, I64, I32], true)),
    ("fd_pread", sig(&[I32, I32, I32, I64, I32], true)),
    ("fd_prestat_get", sig(&[I32, I32], true)),
    ("fd_prestat_dir_name", sig(&[I32, I32, I32], true)),
    ("fd_pwrite", sig(&[I32, I32, I32, I64, I32], true)),
    ("fd_read", sig(&[I32, I32, I32, I32], true)),
    ("fd_readdir", sig(&[I32, I32, I32, I64, I32], true)),
    ("fd_renumber", sig(&[I32, I32], true)),
    ("fd_seek", sig(&[I32, I64, I32, I32], true)),
    ("fd_sync", sig(&[I32], true)),
    ("fd_tell", sig(&[I32, I32], true)),
    ("fd_write", sig(&[I32, I32, I32, I32], true)),
    ("path_create_directory", sig(&[I32, I32, I32], true)),
    ("path_filestat_get", sig(&[I32, I32, I32, I32, I32], true)),
    (
        "path_filestat_set_times",
        sig(&[I32, I32, I32, I32, I64, I64, I32], true),
    ),
    ("path_link", sig(&[I32, I32, I32, I32, I32, I32, I32], true)),
    (
        "path_open",
        sig(&[I32, I32, I32, I32, I32, I64, I64, I32, I32], true),
    ),
    ("path_readlink", sig(&[I32, I32, I32, I32, I32, I32], true)),
    ("path_remove_directory", sig(&[I32, I32, I32], true)),
    ("path_rename", sig(&[I32, I32, I32, I32, I32, I32], true)),
    ("path_symlink", sig(&[I32, I32, I32, I32, I32], true)),
    ("path_unlink_file", sig(&[I32, I32, I32], true)),
    ("poll_oneoff", sig(&[I32, I32, I32, I32], true)),
    (PROC_EXIT, sig(&[I32], false)),
    ("proc_raise", sig(&[I32], true)),
    ("sched_yield", sig(&[], true)),
    ("random_get", sig(&[I32, I32], true)),
    ("sock_accept", sig(&[I32, I32, I32], true)),
    ("sock_recv", sig(&[I32, I32, I32, I32, I32, I32], true)),
    ("sock_send", sig(&[I32, I32, I32, I32, I32], true)),
    ("sock_shutdown", sig(&[I32, I32], true)),
];

/// The signature of the WASI function `name`, if there is one.
pub fn signature(name: &str) -> Option<&'static Signature> {
    FUNCTIONS.iter().find(|(n, _)| *n == name).map(|(_, s)| s)
}
