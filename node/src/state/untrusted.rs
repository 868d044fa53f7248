//! Automerge on bytes from outside the node: a peer's sync message, an import, a file.
//!
//! Automerge (0.12) trusts its input more than a node can. Fuzzing the node's state
//! paths found three ways a few hundred bytes from a peer could take a node down: a
//! bloom filter with entries and no bits (a division by zero), a column decoder that
//! `unwrap`s (a panic), and run-length columns that expand without bound (a 146-byte
//! change asked for gigabytes; another loops over a counter range of 2^63). So:
//!
//! - every bloom filter's numbers are checked before Automerge sees them;
//! - every Automerge call on outside bytes runs in [`guarded`], which turns a panic
//!   into an error (the document is then reloaded from its file);
//! - and before any outside changes are loaded into a held document, a forked child
//!   of the node loads them first into an empty one, under an address-space limit
//!   ([`CHECK_MEMORY`] over the node's own) and a CPU limit ([`CHECK_CPU_SECS`]), and
//!   is killed at a wall-clock deadline. Only when the child succeeds does the node
//!   load them itself. The child shares nothing with the node but a copy of its memory
//!   and exits with `_exit`, never running the node's destructors.

use std::time::{Duration, Instant};

use automerge::AutoCommit;
use automerge::sync::{self, SyncDoc};

use super::StateOpError;

/// Address space a check may take beyond the node's own.
pub const CHECK_MEMORY: u64 = 256 << 20;
/// CPU seconds a check may take.
pub const CHECK_CPU_SECS: u64 = 2;
/// Wall-clock time a check may take before its child is killed.
const CHECK_DEADLINE: Duration = Duration::from_secs(5);

/// Loads `chunks` (Automerge changes, bundles or documents from outside) into an empty
/// document in a forked child under [`CHECK_MEMORY`] and [`CHECK_CPU_SECS`]. `what`
/// names them in the error.
///
/// # Errors
/// [`StateOpError::BadDocument`] when the child ran out of memory or time, crashed, or
/// Automerge refused the bytes; also when the node cannot fork.
pub(super) fn check_changes(
    what: &str,
    base: Option<&AutoCommit>,
    chunks: &[&[u8]],
) -> Result<(), StateOpError> {
    if chunks.iter().all(|c| c.is_empty()) {
        return Ok(());
    }
    let bad = |why: &str| StateOpError::BadDocument(format!("{what}: {why}"));
    let address_space =
        own_address_space().ok_or_else(|| bad("cannot read this node's address space"))?;
    // SAFETY: the child runs only this thread; it loads the chunks (allocating through
    // the allocator, which glibc's fork handlers leave usable), then leaves with
    // `_exit`, without returning into the node, running destructors or taking locks
    // another thread may have held at the fork (it logs nothing).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(bad("cannot fork a checker"));
    }
    if pid == 0 {
        // The node's signal handlers (wasmer's trap handlers, a fuzzer's crash
        // reporter) are not the child's business: a crash here is just the verdict.
        for signal in [
            libc::SIGABRT,
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGILL,
            libc::SIGFPE,
        ] {
            // SAFETY: restores the default action; no handler runs in the child.
            unsafe { libc::signal(signal, libc::SIG_DFL) };
        }
        let limit = |resource, value: u64| {
            // A limit beyond what a 32-bit rlim_t holds is no limit there.
            let value = libc::rlim_t::try_from(value).unwrap_or(libc::RLIM_INFINITY);
            let rl = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            // SAFETY: setrlimit reads the struct we pass.
            unsafe { libc::setrlimit(resource, &rl) };
        };
        limit(libc::RLIMIT_AS, address_space.saturating_add(CHECK_MEMORY));
        limit(libc::RLIMIT_CPU, CHECK_CPU_SECS);
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // Into a copy of the document they are for (the child's copy of the
            // node's memory), so changes that depend on it are applied, not queued.
            let mut doc = base.cloned().unwrap_or_default();
            chunks.iter().all(|c| doc.load_incremental(c).is_ok())
        }));
        let code = if matches!(loaded, Ok(true)) { 0 } else { 1 };
        // SAFETY: ends the child at once; see above.
        unsafe { libc::_exit(code) };
    }
    let deadline = Instant::now() + CHECK_DEADLINE;
    loop {
        let mut status = 0;
        // SAFETY: waits for our own child, writing its status into `status`.
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if done == pid {
            return if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                Ok(())
            } else if libc::WIFEXITED(status) {
                Err(bad("Automerge could not load them"))
            } else {
                Err(bad(&format!(
                    "loading them took more than {} MiB or {CHECK_CPU_SECS} s of CPU",
                    CHECK_MEMORY >> 20
                )))
            };
        }
        if done < 0 {
            return Err(bad("lost the checker"));
        }
        if Instant::now() >= deadline {
            // SAFETY: kills and reaps our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Err(bad(&format!(
                "loading them took longer than {} s",
                CHECK_DEADLINE.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// This process's address space, in bytes (`/proc/self/statm`'s first field).
fn own_address_space() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// Runs Automerge on bytes from outside the node (a peer's sync message, an import, a
/// file): Automerge's parsers panic on some malformed input (the state fuzz targets
/// found a division by zero and an `unwrap` in its column decoder), so here a panic is
/// an error like any other, never a dead task or a half-applied change.
pub(super) fn guarded<T, E: std::fmt::Display>(
    what: &str,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: malformed (Automerge could not read it)")),
    }
}

/// Decodes a peer's Automerge sync message and checks what Automerge would trust in
/// it: every bloom filter's numbers ([`kith_protocol::state::check_bloom`]), and that
/// its changes load within [`CHECK_MEMORY`] and [`CHECK_CPU_SECS`] ([`check_changes`]).
///
/// # Errors
/// [`StateOpError::BadDocument`] naming what is malformed.
pub fn decode_sync_message(bytes: &[u8]) -> Result<sync::Message, StateOpError> {
    let message = decode_sync_message_unchecked(bytes)?;
    let chunks: Vec<&[u8]> = message.changes.iter().collect();
    check_changes("the sync message's changes were refused", None, &chunks)?;
    Ok(message)
}

/// [`decode_sync_message`] without loading the changes (the caller checks them
/// against the document they are for).
pub(super) fn decode_sync_message_unchecked(bytes: &[u8]) -> Result<sync::Message, StateOpError> {
    let bad = |e: String| StateOpError::BadDocument(format!("malformed sync message: {e}"));
    let message = guarded("sync message", || sync::Message::decode(bytes)).map_err(bad)?;
    for have in &message.have {
        kith_protocol::state::check_bloom(&have.bloom.to_bytes())
            .map_err(|e| bad(e.to_string()))?;
    }
    Ok(message)
}

/// Applies a peer's sync message to `doc` as the node does: decoded and checked
/// ([`decode_sync_message`]), received with Automerge's panics turned into errors,
/// then our answer generated (what the fuzz targets drive, without a store).
///
/// # Errors
/// When the message is malformed or cannot be applied.
pub fn receive_sync_message(
    doc: &mut AutoCommit,
    state: &mut sync::State,
    bytes: &[u8],
) -> Result<Option<Vec<u8>>, StateOpError> {
    let message = decode_sync_message(bytes)?;
    guarded("the sync message could not be applied", || {
        doc.sync().receive_sync_message(state, message)
    })
    .map_err(StateOpError::BadDocument)?;
    guarded("sync message", || {
        Ok::<_, std::convert::Infallible>(doc.sync().generate_sync_message(state))
    })
    .map(|m| m.map(sync::Message::encode))
    .map_err(StateOpError::BadDocument)
}
