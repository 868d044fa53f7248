//! Calls held for a warm answer (late binding): at most [`super::Config::max_held`],
//! each for at most [`super::Config::hold_ms`].

use super::{Action, WarmIndex};
use crate::FunctionId;

/// A call waiting for the answer about its function.
#[derive(Debug, Clone)]
pub(super) struct Held {
    call: u64,
    function: FunctionId,
    pub(super) until_ms: u64,
}

impl<P: Copy + PartialEq, A> WarmIndex<P, A> {
    /// Whether the driver should hold call `call` (its own id) until an
    /// [`Action::Release`] for it: only while a question about `function` is out,
    /// for at most [`super::Config::hold_ms`], and while fewer than
    /// [`super::Config::max_held`] calls wait. `false` means place it now.
    pub fn hold(&mut self, now_ms: u64, function: &FunctionId, call: u64) -> bool {
        if self.config.hold_ms == 0 || !self.lookups.iter().any(|l| l.function == *function) {
            return false;
        }
        if self.held.iter().any(|h| h.call == call) {
            return true;
        }
        if self.held.len() >= self.config.max_held {
            self.stats.held_capped += 1;
            return false;
        }
        self.stats.held += 1;
        self.held.push(Held {
            call,
            function: *function,
            until_ms: now_ms.saturating_add(self.config.hold_ms),
        });
        true
    }

    /// How many calls are held.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Releases the calls held for `function` (`found`: an answer named a peer).
    pub(super) fn release(&mut self, function: &FunctionId, found: bool) {
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].function != *function {
                i += 1;
                continue;
            }
            let h = self.held.remove(i);
            if found {
                self.stats.released_found += 1;
            } else {
                self.stats.released_empty += 1;
            }
            self.push(Action::Release(h.call));
        }
    }

    /// Releases the calls that have waited their longest.
    pub(super) fn release_late(&mut self, now_ms: u64) {
        let mut i = 0;
        while i < self.held.len() {
            if now_ms < self.held[i].until_ms {
                i += 1;
                continue;
            }
            let h = self.held.remove(i);
            self.stats.released_empty += 1;
            self.push(Action::Release(h.call));
        }
    }
}
