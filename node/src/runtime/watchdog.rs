//! Enforces wall-clock limits: one thread that interrupts guests past their deadline.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use wasmer::Interrupter;

/// How often an expired guest is interrupted again until its call returns (an
/// interrupt can be missed, e.g. while the guest is inside a host function).
const REPEAT: Duration = Duration::from_millis(5);

#[derive(Default)]
struct State {
    next_id: u64,
    /// (deadline, id) -> interrupter
    calls: BTreeMap<(Instant, u64), Interrupter>,
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

impl Watchdog {
    pub(crate) fn start() -> std::io::Result<Self> {
        let shared = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let worker = Arc::clone(&shared);
        thread::Builder::new()
            .name("kith-watchdog".into())
            .spawn(move || run(&worker))?;
        Ok(Self { shared })
    }

    /// Interrupts the guest behind `interrupter` if it is still running at `deadline`.
    pub(crate) fn watch(&self, deadline: Instant, interrupter: Interrupter) -> Guard<'_> {
        let (lock, wake) = &*self.shared;
        let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
        state.next_id += 1;
        let key = (deadline, state.next_id);
        let earliest = state.calls.keys().next().is_none_or(|k| key < *k);
        state.calls.insert(key, interrupter);
        drop(state);
        if earliest {
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
    loop {
        if state.shutdown {
            return;
        }
        let now = Instant::now();
        let mut next = None;
        for ((deadline, _), interrupter) in &state.calls {
            if *deadline <= now {
                interrupter.interrupt();
            } else {
                next = Some(*deadline);
                break;
            }
        }
        let expired_remain = state.calls.keys().next().is_some_and(|(d, _)| *d <= now);
        let wait = match (expired_remain, next) {
            (true, _) => REPEAT,
            (false, Some(d)) => d - now,
            (false, None) => Duration::from_secs(3600),
        };
        state = wake
            .wait_timeout(state, wait)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}
