//! Enforces wall-clock limits: one thread that stops guests past their deadline.
//!
//! A guest is stopped by draining its fuel (see [`FuelCell`]), so it traps at its next
//! metering check, in guest code, never from inside host or runtime code. (wasmer's
//! signal-based interrupt unwinds from wherever the thread happens to be, including
//! the middle of a host function holding a lock; we do not use it.)
//!
//! The thread ticks every [`TICK`] while calls are registered, so registering a call is
//! a map insert under a mutex and never wakes it; only the first call after an idle
//! spell does. A deadline is therefore enforced within one tick.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::engine::FuelCell;

/// Resolution of wall-clock limits; expired guests are drained again at this rate
/// until their call returns (a drain can be overwritten by a metering update that was
/// already under way).
const TICK: Duration = Duration::from_millis(5);

/// How long the thread keeps ticking with nothing registered before it sleeps.
const IDLE_AFTER: Duration = Duration::from_secs(1);

#[derive(Default)]
struct State {
    next_id: u64,
    /// (deadline, id) -> the call's fuel, and whether the watchdog stopped it
    calls: BTreeMap<(Instant, u64), (FuelCell, bool)>,
    /// True while the thread sleeps until notified.
    parked: bool,
    shutdown: bool,
}

/// The watchdog. Dropping it stops its thread.
pub(crate) struct Watchdog {
    shared: Arc<(Mutex<State>, Condvar)>,
}

/// A registered call; dropping it deregisters.
pub(crate) struct Guard<'a> {
    watchdog: &'a Watchdog,
    key: (Instant, u64),
}

impl Guard<'_> {
    /// Whether the watchdog stopped this call at its deadline. (Asked only when a call
    /// failed, so it takes the lock rather than cost every call an allocation.)
    pub(crate) fn expired(&self) -> bool {
        let (lock, _) = &*self.watchdog.shared;
        lock.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .calls
            .get(&self.key)
            .is_some_and(|(_, expired)| *expired)
    }
}

impl Watchdog {
    pub(crate) fn start() -> std::io::Result<Self> {
        let shared = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let worker = Arc::clone(&shared);
        thread::Builder::new()
            .name("kith-watchdog".into())
            .spawn(move || run(&worker))?;
        Ok(Self { shared })
    }

    /// Drains `fuel` if its call is still running at `deadline`.
    ///
    /// # Safety
    /// The instance `fuel` belongs to must outlive the returned guard.
    pub(crate) unsafe fn watch(&self, deadline: Instant, fuel: FuelCell) -> Guard<'_> {
        let (lock, wake) = &*self.shared;
        let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
        state.next_id += 1;
        let key = (deadline, state.next_id);
        state.calls.insert(key, (fuel, false));
        let parked = std::mem::take(&mut state.parked);
        drop(state);
        if parked {
            wake.notify_one();
        }
        Guard {
            watchdog: self,
            key,
        }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let (lock, _) = &*self.watchdog.shared;
        lock.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .calls
            .remove(&self.key);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (lock, wake) = &*self.shared;
        lock.lock().unwrap_or_else(PoisonError::into_inner).shutdown = true;
        wake.notify_one();
    }
}

fn run(shared: &(Mutex<State>, Condvar)) {
    let (lock, wake) = shared;
    let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
    let mut idle_since = Instant::now();
    loop {
        if state.shutdown {
            return;
        }
        let now = Instant::now();
        for ((deadline, _), (fuel, expired)) in &mut state.calls {
            if *deadline > now {
                break;
            }
            *expired = true;
            // SAFETY: a call stays registered only while its guard lives, which its
            // instance outlives (`watch`'s contract); we hold the lock the guard's drop
            // takes.
            unsafe { fuel.drain() };
        }
        if !state.calls.is_empty() {
            idle_since = now;
        }
        if now.duration_since(idle_since) >= IDLE_AFTER {
            state.parked = true;
            while state.parked && !state.shutdown {
                state = wake.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            idle_since = Instant::now();
            continue;
        }
        state = wake
            .wait_timeout(state, TICK)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}
