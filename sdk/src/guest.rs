//! The guest half of the ABI: what runs inside the WebAssembly module.

use std::fmt::Display;

#[cfg(target_arch = "wasm32")]
mod host {
    #[link(wasm_import_module = "kith")]
    unsafe extern "C" {
        pub(super) fn output(ptr: i32, len: i32);
        pub(super) fn error(ptr: i32, len: i32);
        pub(super) fn log(level: i32, ptr: i32, len: i32);
        pub(super) fn now_ms() -> i64;
    }
}

/// Stand-ins so function logic can be unit-tested natively.
#[cfg(not(target_arch = "wasm32"))]
mod host {
    pub(super) unsafe fn output(_ptr: i32, _len: i32) {}
    pub(super) unsafe fn error(_ptr: i32, _len: i32) {}
    pub(super) unsafe fn log(_level: i32, _ptr: i32, _len: i32) {}
    pub(super) unsafe fn now_ms() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum LogLevel {
    /// Something failed.
    Error = 0,
    /// Something looks wrong.
    Warn = 1,
    /// Normal operation.
    Info = 2,
    /// Detail for debugging.
    Debug = 3,
    /// Even more detail.
    Trace = 4,
}

/// Writes a line to the node's log, tagged with this function's id.
///
/// The node keeps at most 1024 bytes of a line and 64 lines per call.
pub fn log(level: LogLevel, message: &str) {
    // Pointers and lengths are 32-bit on wasm32, the only target where this is live.
    unsafe { host::log(level as i32, message.as_ptr() as i32, message.len() as i32) }
}

/// Wall-clock time, in milliseconds since the Unix epoch, as the node sees it.
pub fn now_ms() -> i64 {
    unsafe { host::now_ms() }
}

fn set_error(message: &str) {
    unsafe { host::error(message.as_ptr() as i32, message.len() as i32) }
}

/// ABI `kith_alloc`: hands the host `len` writable bytes, which [`call`] takes back.
pub fn alloc(len: i32) -> i32 {
    let Ok(len) = usize::try_from(len) else {
        return 0;
    };
    let mut buf = std::mem::ManuallyDrop::new(Vec::<u8>::with_capacity(len));
    buf.as_mut_ptr() as i32
}

/// ABI `kith_call`: runs `handler` on the input the host wrote at `ptr`.
pub fn call<O, E>(ptr: i32, len: i32, handler: fn(&[u8]) -> Result<O, E>) -> i32
where
    O: Into<Vec<u8>>,
    E: Display,
{
    std::panic::set_hook(Box::new(|info| set_error(&info.to_string())));
    let input = match usize::try_from(len) {
        // SAFETY: the host calls `kith_alloc(len)` once, writes `len` bytes there, and
        // passes the same pointer and length here; the allocation had capacity `len`.
        Ok(len) if ptr != 0 => unsafe { Vec::from_raw_parts(ptr as *mut u8, len, len) },
        _ => Vec::new(),
    };
    match handler(&input) {
        Ok(out) => {
            let out: Vec<u8> = out.into();
            unsafe { host::output(out.as_ptr() as i32, out.len() as i32) };
            0
        }
        Err(e) => {
            set_error(&e.to_string());
            1
        }
    }
}
