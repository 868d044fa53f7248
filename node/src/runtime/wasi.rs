//! WASI preview 1, written for kith: what a WASI command may ask of the host, and
//! nothing more (`kith_protocol::wasi`, `docs/abi.md`).
//!
//! - stdin (fd 0) is the call's input; stdout (fd 1) is its output, capped at
//!   `max_output_bytes` (`output_too_large` past it); stderr (fd 2) goes to the node's
//!   log line by line, under the same caps as `kith.log`, and its last line is the
//!   message of a failed exit.
//! - arguments and environment come from the manifest (`args`, `env`); `argv[0]` is
//!   the function id.
//! - clocks: realtime and monotonic; the CPU-time clocks read the call's own monotonic
//!   time. `random_get` is the operating system's randomness. `poll_oneoff` never
//!   waits: a clock subscription fires at once (a function cannot sleep a worker), and
//!   stdio is always ready.
//! - everything else — files, directories, sockets, signals — answers with an errno
//!   (`EBADF` for a descriptor that is not stdio, `ENOTCAPABLE` for paths, `ENOTSUP` for
//!   sockets) and never touches the host. There are no preopened directories.
//!
//! The functions here are written once against [`Mem`] (the guest's memory) and
//! dispatched by name, so every backend links the same host.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use kith_protocol::wasi::errno;

use super::host::HostError;

/// The guest's linear memory, as the host functions see it.
pub(crate) trait Mem {
    /// The memory's size, in bytes.
    fn size(&self) -> u64;
    /// `len` bytes at `ptr`, or `None` when any of them is outside memory.
    fn read(&self, ptr: u32, len: u32) -> Option<Vec<u8>>;
    /// Writes `bytes` at `ptr`, or `None` (nothing written) when outside memory.
    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Option<()>;
}

/// A memory as a byte slice (the interpreter hands the host its memory this way).
pub(crate) struct Bytes<'a>(pub(crate) &'a mut [u8]);

impl Mem for Bytes<'_> {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read(&self, ptr: u32, len: u32) -> Option<Vec<u8>> {
        let end = (ptr as usize).checked_add(len as usize)?;
        self.0.get(ptr as usize..end).map(<[u8]>::to_vec)
    }
    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Option<()> {
        let end = (ptr as usize).checked_add(bytes.len())?;
        self.0.get_mut(ptr as usize..end)?.copy_from_slice(bytes);
        Some(())
    }
}

/// Most iovecs one read or write may pass (POSIX's `IOV_MAX`).
const MAX_IOVS: u32 = 1024;
/// Most subscriptions one `poll_oneoff` may pass.
const MAX_SUBSCRIPTIONS: u32 = 1024;
/// Longest stderr line kept (as `kith.log`'s).
const MAX_LINE: usize = kith_protocol::abi::MAX_LOG_LINE;

/// A WASI call's stdio, arguments and clocks.
pub(crate) struct Wasi {
    stdin: Vec<u8>,
    read: usize,
    stdout: Vec<u8>,
    max_stdout: u64,
    /// A native module's stdout goes to the log, like stderr.
    stdout_is_log: bool,
    /// The stderr line being written, and the last complete (or cut) one.
    line: Vec<u8>,
    pub(crate) last_line: Option<String>,
    args: Vec<Vec<u8>>,
    env: Vec<Vec<u8>>,
    started: Instant,
    /// stderr lines for the node's log: (lines written, lines dropped).
    pub(crate) log_lines: u32,
    pub(crate) logs_dropped: u32,
    function: String,
}

impl Wasi {
    /// The context of one call of `function` with `input` on stdin.
    pub(crate) fn new(
        function: kith_protocol::FunctionId,
        manifest: &kith_protocol::Manifest,
        input: Vec<u8>,
        max_stdout: u64,
    ) -> Self {
        Self::with_stdout(function, manifest, input, max_stdout, false)
    }

    /// The context of a native module that imports WASI functions: no stdin, and what
    /// it writes to stdout goes to the log (its output is `kith.output`'s).
    pub(crate) fn for_native(
        function: kith_protocol::FunctionId,
        manifest: &kith_protocol::Manifest,
    ) -> Self {
        Self::with_stdout(function, manifest, Vec::new(), 0, true)
    }

    fn with_stdout(
        function: kith_protocol::FunctionId,
        manifest: &kith_protocol::Manifest,
        input: Vec<u8>,
        max_stdout: u64,
        stdout_is_log: bool,
    ) -> Self {
        let mut args = vec![function.to_hex().into_bytes()];
        args.extend(manifest.args.iter().map(|a| a.clone().into_bytes()));
        let env = manifest
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}").into_bytes())
            .collect();
        Self {
            stdin: input,
            read: 0,
            stdout: Vec::new(),
            max_stdout,
            stdout_is_log,
            line: Vec::new(),
            last_line: None,
            args,
            env,
            started: Instant::now(),
            log_lines: 0,
            logs_dropped: 0,
            function: function.to_hex(),
        }
    }

    /// What the command wrote to stdout.
    pub(crate) fn take_stdout(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.stdout)
    }

    /// Ends stderr: a last line without a newline still counts.
    pub(crate) fn flush_stderr(&mut self) {
        if !self.line.is_empty() {
            self.end_line();
        }
    }

    fn end_line(&mut self) {
        let text = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        if self.log_lines < kith_protocol::abi::MAX_LOG_LINES {
            self.log_lines += 1;
            tracing::info!(target: "kith::guest", function = %self.function, "{text}");
        } else {
            self.logs_dropped += 1;
        }
        self.last_line = Some(text);
    }

    fn stderr(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.end_line();
            } else if self.line.len() < MAX_LINE {
                self.line.push(b);
            }
        }
    }
}

/// Runs the WASI function `name` with `args` (each an i32 or i64 as its bits) for a
/// call whose WASI context is `wasi`: the errno it returns (`proc_exit` returns
/// nothing: it ends the call).
///
/// # Errors
/// [`HostError::Exit`] from `proc_exit`; [`HostError::OutputTooLarge`] when stdout
/// goes past `max_output_bytes`.
pub(crate) fn dispatch(
    name: &str,
    wasi: &mut Wasi,
    mem: &mut dyn Mem,
    args: &[i64],
) -> Result<i32, HostError> {
    let a = |i: usize| args.get(i).copied().unwrap_or(0);
    // Pointers and lengths are i32 on the wire, unsigned in meaning.
    let u = |i: usize| a(i) as u32;
    Ok(match name {
        "args_sizes_get" => sizes(mem, &wasi.args, u(0), u(1)),
        "args_get" => strings(mem, &wasi.args, u(0), u(1)),
        "environ_sizes_get" => sizes(mem, &wasi.env, u(0), u(1)),
        "environ_get" => strings(mem, &wasi.env, u(0), u(1)),
        "clock_res_get" => match u(0) {
            0..=3 => put_u64(mem, u(1), 1),
            _ => errno::INVAL,
        },
        "clock_time_get" => {
            let now = match u(0) {
                0 => SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
                1..=3 => u64::try_from(wasi.started.elapsed().as_nanos()).unwrap_or(u64::MAX),
                _ => return Ok(errno::INVAL),
            };
            put_u64(mem, u(2), now)
        }
        "random_get" => {
            let mut buf = vec![0u8; u(1) as usize];
            if getrandom::fill(&mut buf).is_err() {
                return Ok(errno::NOSYS);
            }
            put(mem, u(0), &buf)
        }
        "fd_write" => return fd_write(wasi, mem, u(0), u(1), u(2), u(3)),
        "fd_read" => fd_read(wasi, mem, u(0), u(1), u(2), u(3)),
        "fd_fdstat_get" => match u(0) {
            // filetype character device, no flags, rights: read for stdin, write else.
            fd @ 0..=2 => {
                let rights: u64 = if fd == 0 { 1 << 1 } else { 1 << 6 };
                let mut b = [0u8; 24];
                b[0] = 2;
                b[8..16].copy_from_slice(&rights.to_le_bytes());
                put(mem, u(1), &b)
            }
            _ => errno::BADF,
        },
        "fd_filestat_get" => match u(0) {
            0..=2 => {
                let mut b = [0u8; 64];
                b[16] = 2;
                put(mem, u(1), &b)
            }
            _ => errno::BADF,
        },
        // Closing or syncing stdio, or setting its flags, is allowed and does nothing.
        "fd_close" | "fd_sync" | "fd_datasync" | "fd_fdstat_set_flags" => {
            stdio(u(0), errno::SUCCESS)
        }
        "fd_seek" | "fd_tell" | "fd_pread" | "fd_pwrite" => stdio(u(0), errno::SPIPE),
        "fd_advise"
        | "fd_allocate"
        | "fd_fdstat_set_rights"
        | "fd_filestat_set_size"
        | "fd_filestat_set_times"
        | "fd_readdir"
        | "fd_renumber" => stdio(u(0), errno::NOTSUP),
        // No preopened directories: libc finds none and every path fails.
        "fd_prestat_get" | "fd_prestat_dir_name" => errno::BADF,
        "path_create_directory"
        | "path_filestat_get"
        | "path_filestat_set_times"
        | "path_link"
        | "path_open"
        | "path_readlink"
        | "path_remove_directory"
        | "path_rename"
        | "path_symlink"
        | "path_unlink_file" => errno::NOTCAPABLE,
        "sock_accept" | "sock_recv" | "sock_send" | "sock_shutdown" => errno::NOTSUP,
        "poll_oneoff" => poll_oneoff(wasi, mem, u(0), u(1), u(2), u(3)),
        "sched_yield" => errno::SUCCESS,
        "proc_raise" => errno::NOSYS,
        "proc_exit" => {
            wasi.flush_stderr();
            return Err(HostError::Exit(a(0) as i32));
        }
        _ => errno::NOSYS,
    })
}

/// `errno` for stdio, `EBADF` for any other descriptor.
fn stdio(fd: u32, errno: i32) -> i32 {
    if fd <= 2 { errno } else { errno::BADF }
}

fn put(mem: &mut dyn Mem, ptr: u32, bytes: &[u8]) -> i32 {
    match mem.write(ptr, bytes) {
        Some(()) => errno::SUCCESS,
        None => errno::FAULT,
    }
}

fn put_u64(mem: &mut dyn Mem, ptr: u32, v: u64) -> i32 {
    put(mem, ptr, &v.to_le_bytes())
}

fn put_u32(mem: &mut dyn Mem, ptr: u32, v: u32) -> i32 {
    put(mem, ptr, &v.to_le_bytes())
}

/// `*_sizes_get`: the count and the bytes the NUL-terminated strings take.
fn sizes(mem: &mut dyn Mem, list: &[Vec<u8>], count: u32, bytes: u32) -> i32 {
    let total: usize = list.iter().map(|s| s.len() + 1).sum();
    let total = u32::try_from(total).unwrap_or(u32::MAX);
    let n = u32::try_from(list.len()).unwrap_or(u32::MAX);
    match put_u32(mem, count, n) {
        errno::SUCCESS => put_u32(mem, bytes, total),
        e => e,
    }
}

/// `args_get`/`environ_get`: pointers to the strings at `ptrs`, the strings at `buf`.
fn strings(mem: &mut dyn Mem, list: &[Vec<u8>], ptrs: u32, buf: u32) -> i32 {
    let mut at = buf;
    for (i, s) in list.iter().enumerate() {
        let slot = ptrs.wrapping_add(4 * i as u32);
        if put_u32(mem, slot, at) != errno::SUCCESS {
            return errno::FAULT;
        }
        let mut z = s.clone();
        z.push(0);
        if put(mem, at, &z) != errno::SUCCESS {
            return errno::FAULT;
        }
        at = at.wrapping_add(z.len() as u32);
    }
    errno::SUCCESS
}

/// The (pointer, length) pairs of an iovec array.
fn iovecs(mem: &dyn Mem, iovs: u32, count: u32) -> Result<Vec<(u32, u32)>, i32> {
    if count > MAX_IOVS {
        return Err(errno::INVAL);
    }
    let raw = mem.read(iovs, count * 8).ok_or(errno::FAULT)?;
    Ok(raw
        .chunks_exact(8)
        .map(|c| {
            let w = |o: usize| u32::from_le_bytes([c[o], c[o + 1], c[o + 2], c[o + 3]]);
            (w(0), w(4))
        })
        .collect())
}

fn fd_write(
    wasi: &mut Wasi,
    mem: &mut dyn Mem,
    fd: u32,
    iovs: u32,
    count: u32,
    written: u32,
) -> Result<i32, HostError> {
    if fd != 1 && fd != 2 {
        return Ok(errno::BADF);
    }
    let list = match iovecs(mem, iovs, count) {
        Ok(l) => l,
        Err(e) => return Ok(e),
    };
    let mut total: u64 = 0;
    let to_log = fd == 2 || wasi.stdout_is_log;
    for (ptr, len) in list {
        if !to_log {
            let size = wasi.stdout.len() as u64 + u64::from(len);
            if size > wasi.max_stdout {
                return Err(HostError::OutputTooLarge {
                    size,
                    limit: wasi.max_stdout,
                });
            }
        }
        let Some(bytes) = mem.read(ptr, len) else {
            return Ok(errno::FAULT);
        };
        if to_log {
            wasi.stderr(&bytes);
        } else {
            wasi.stdout.extend_from_slice(&bytes);
        }
        total += u64::from(len);
    }
    Ok(put_u32(
        mem,
        written,
        u32::try_from(total).unwrap_or(u32::MAX),
    ))
}

fn fd_read(wasi: &mut Wasi, mem: &mut dyn Mem, fd: u32, iovs: u32, count: u32, read: u32) -> i32 {
    if fd != 0 {
        return errno::BADF;
    }
    let list = match iovecs(mem, iovs, count) {
        Ok(l) => l,
        Err(e) => return e,
    };
    let mut total = 0usize;
    for (ptr, len) in list {
        let rest = &wasi.stdin[wasi.read..];
        let n = rest.len().min(len as usize);
        if n == 0 {
            break;
        }
        if mem.write(ptr, &rest[..n]).is_none() {
            return errno::FAULT;
        }
        wasi.read += n;
        total += n;
    }
    put_u32(mem, read, u32::try_from(total).unwrap_or(u32::MAX))
}

/// Every subscription fires at once: clocks as if their time had come, stdio as
/// ready (stdin with what is left of it), any other descriptor with `EBADF`.
fn poll_oneoff(wasi: &Wasi, mem: &mut dyn Mem, subs: u32, events: u32, n: u32, count: u32) -> i32 {
    if n == 0 || n > MAX_SUBSCRIPTIONS {
        return errno::INVAL;
    }
    let Some(raw) = mem.read(subs, n * 48) else {
        return errno::FAULT;
    };
    let mut out = Vec::with_capacity(n as usize * 32);
    for s in raw.chunks_exact(48) {
        let userdata = &s[0..8];
        let tag = s[8];
        let fd = u32::from_le_bytes([s[16], s[17], s[18], s[19]]);
        let mut e = [0u8; 32];
        e[0..8].copy_from_slice(userdata);
        e[10] = tag;
        let (error, nbytes): (u16, u64) = match tag {
            0 => (0, 0),
            1 | 2 if fd <= 2 => (
                0,
                if fd == 0 {
                    (wasi.stdin.len() - wasi.read) as u64
                } else {
                    0
                },
            ),
            1 | 2 => (errno::BADF as u16, 0),
            _ => (errno::INVAL as u16, 0),
        };
        e[8..10].copy_from_slice(&error.to_le_bytes());
        e[16..24].copy_from_slice(&nbytes.to_le_bytes());
        out.extend_from_slice(&e);
    }
    match put(mem, events, &out) {
        errno::SUCCESS => put_u32(mem, count, n),
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wasi(input: &[u8]) -> Wasi {
        let mut m = kith_protocol::Manifest {
            args: vec!["-n".into(), "3".into()],
            ..Default::default()
        };
        m.env.insert("LANG".into(), "C".into());
        Wasi::new(kith_protocol::FunctionId::of(b"f"), &m, input.to_vec(), 8)
    }

    fn iov(mem: &mut Bytes<'_>, at: u32, ptr: u32, len: u32) {
        mem.write(at, &ptr.to_le_bytes()).unwrap();
        mem.write(at + 4, &len.to_le_bytes()).unwrap();
    }

    #[test]
    fn stdin_in_stdout_out_and_stdout_is_capped() {
        let mut w = wasi(b"hello");
        let mut buf = vec![0u8; 256];
        let mut mem = Bytes(&mut buf);
        iov(&mut mem, 0, 100, 3);
        assert_eq!(
            dispatch("fd_read", &mut w, &mut mem, &[0, 0, 1, 200]).unwrap(),
            0
        );
        assert_eq!(mem.read(100, 3).unwrap(), b"hel");
        assert_eq!(mem.read(200, 4).unwrap(), 3u32.to_le_bytes());
        iov(&mut mem, 0, 100, 3);
        assert_eq!(
            dispatch("fd_write", &mut w, &mut mem, &[1, 0, 1, 200]).unwrap(),
            0
        );
        assert_eq!(w.stdout, b"hel");
        iov(&mut mem, 0, 100, 6);
        assert!(matches!(
            dispatch("fd_write", &mut w, &mut mem, &[1, 0, 1, 200]),
            Err(HostError::OutputTooLarge { size: 9, limit: 8 })
        ));
        mem.write(100, b"oops\nlast").unwrap();
        iov(&mut mem, 0, 100, 9);
        assert_eq!(
            dispatch("fd_write", &mut w, &mut mem, &[2, 0, 1, 200]).unwrap(),
            0
        );
        assert_eq!(w.last_line.as_deref(), Some("oops"));
        assert!(matches!(
            dispatch("proc_exit", &mut w, &mut mem, &[3]),
            Err(HostError::Exit(3))
        ));
        assert_eq!(w.last_line.as_deref(), Some("last"), "flushed at exit");
    }

    #[test]
    fn args_and_env_come_from_the_manifest() {
        let mut w = wasi(b"");
        let mut buf = vec![0u8; 512];
        let mut mem = Bytes(&mut buf);
        assert_eq!(
            dispatch("args_sizes_get", &mut w, &mut mem, &[0, 4]).unwrap(),
            0
        );
        assert_eq!(mem.read(0, 4).unwrap(), 3u32.to_le_bytes());
        assert_eq!(
            dispatch("args_get", &mut w, &mut mem, &[16, 64]).unwrap(),
            0
        );
        let second = u32::from_le_bytes(mem.read(20, 4).unwrap().try_into().unwrap());
        assert_eq!(mem.read(second, 3).unwrap(), b"-n\0");
        assert_eq!(
            dispatch("environ_get", &mut w, &mut mem, &[300, 320]).unwrap(),
            0
        );
        assert_eq!(mem.read(320, 7).unwrap(), b"LANG=C\0");
    }

    #[test]
    fn files_sockets_and_bad_pointers_get_errnos() {
        let mut w = wasi(b"");
        let mut buf = vec![0u8; 64];
        let mut mem = Bytes(&mut buf);
        let call = |w: &mut Wasi, mem: &mut Bytes<'_>, name: &str, args: &[i64]| {
            dispatch(name, w, mem, args).unwrap()
        };
        assert_eq!(
            call(&mut w, &mut mem, "path_open", &[3, 0, 0, 4, 0, 0, 0, 0, 8]),
            errno::NOTCAPABLE
        );
        assert_eq!(
            call(&mut w, &mut mem, "fd_prestat_get", &[3, 0]),
            errno::BADF
        );
        assert_eq!(
            call(&mut w, &mut mem, "fd_write", &[5, 0, 0, 0]),
            errno::BADF
        );
        assert_eq!(
            call(&mut w, &mut mem, "sock_send", &[3, 0, 0, 0, 0]),
            errno::NOTSUP
        );
        assert_eq!(
            call(&mut w, &mut mem, "fd_seek", &[1, 0, 0, 0]),
            errno::SPIPE
        );
        assert_eq!(
            call(&mut w, &mut mem, "fd_read", &[0, 60, 1, 0]),
            errno::FAULT
        );
        assert_eq!(
            call(&mut w, &mut mem, "clock_time_get", &[1, 0, 1000]),
            errno::FAULT
        );
        assert_eq!(
            call(&mut w, &mut mem, "clock_time_get", &[9, 0, 0]),
            errno::INVAL
        );
        assert_eq!(
            call(&mut w, &mut mem, "random_get", &[0, 16]),
            errno::SUCCESS
        );
    }
}
