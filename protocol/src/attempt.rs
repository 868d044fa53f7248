//! Call attempts: which candidate a call tries next, what is retried, and when the
//! call gives up. A stepped state machine; the node drives it over libp2p and the
//! simulator over simulated messages, so both follow the same rules.
//!
//! ```text
//! let mut a = Attempts::new(&ranked, &fallbacks, &config, timeout_ms);
//! loop {
//!     match a.next(now) {
//!         Step::Try { peer, local, deadline_ms } => { send; later a.on_answer(now, peer, result) }
//!         Step::GiveUp { last } => return last,
//!     }
//! }
//! ```
//!
//! The rules:
//! - Candidates are tried in placement's order, then the **fallbacks**: peers whose
//!   latest advert said they were saturated (adverts are periodic, so a slot may have
//!   freed since), nearest first. A peer is tried at most once per call.
//! - At most `max_attempts` candidates are tried.
//! - An error's [`Disposition`] decides: `RetryElsewhere` and `PenalisePeer` go on to
//!   the next candidate (the latter also tells the driver to count it against the
//!   peer); `ReturnToCaller` ends the call with that error.
//! - A remote attempt has a deadline: the function's `timeout_ms` plus
//!   [`Config::forward_slack_ms`] (a cold peer compiles, the answer travels). A peer
//!   that has not answered by then is `unreachable` and penalised.
//! - A fault of the function (a trap, say: [`ErrorKind::is_guest_fault`]) answered by
//!   a remote peer is checked when the driver asks for it ([`Attempts::confirm_faults`]:
//!   the node does for a function whose calls have succeeded before): the call goes
//!   on to the next candidate — the placing node itself first, if it is a candidate,
//!   whose answer settles it (it does not lie to itself). Another remote peer's fault
//!   does not settle it (two liars can agree): the call goes on while candidates and
//!   attempts are left. The first output wins, and every peer that claimed a fault
//!   before it lied ([`Attempts::refuted`]: the driver penalises them); with none,
//!   the caller gets the fault. An honest fault of a known-good function so costs up
//!   to `max_attempts` runs; a liar's costs the caller nothing.

use crate::error::{Disposition, ErrorKind};
use crate::placement::Candidate;

/// How many candidates a call tries by default.
pub const DEFAULT_MAX_ATTEMPTS: usize = 3;

/// The rules' constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Most candidates one call tries (1 to 16).
    pub max_attempts: usize,
    /// How long past the function's own timeout a remote candidate may take to
    /// answer before it counts as unreachable, in milliseconds.
    pub forward_slack_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            forward_slack_ms: 5_000,
        }
    }
}

/// What the driver does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<P> {
    /// Run the call on `peer` (this node itself when `local`). A remote attempt that
    /// has not answered by `deadline_ms` is reported with [`Attempts::on_timeout`].
    Try {
        /// The candidate.
        peer: P,
        /// True for the placing node itself.
        local: bool,
        /// When a remote candidate counts as unreachable (`u64::MAX` for local).
        deadline_ms: u64,
    },
    /// No candidate is left, or the call ended: the call fails with `last` (`None`
    /// when no candidate was capable at all, so nothing was tried).
    GiveUp {
        /// The last error seen.
        last: Option<ErrorKind>,
    },
}

/// What an answer means for the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The call succeeded.
    Done,
    /// Try the next candidate; when `penalise`, count this one against its peer.
    TryNext {
        /// The peer misbehaved.
        penalise: bool,
    },
    /// The call ends with this error.
    Fail(ErrorKind),
    /// The answer was not for the attempt in flight (late, or from another peer):
    /// ignore it.
    Stale,
}

/// One call's attempts.
#[derive(Debug, Clone)]
pub struct Attempts<P> {
    order: Vec<(P, bool, f64)>,
    next: usize,
    slack_ms: u64,
    timeout_ms: u64,
    in_flight: Option<(P, bool, u64)>,
    last: Option<ErrorKind>,
    ended: bool,
    confirm: bool,
    disputed: Vec<(P, ErrorKind)>,
    refuted: Vec<(P, ErrorKind)>,
}

impl<P: Copy + Eq> Attempts<P> {
    /// The attempts of a call placed as `ranked` (placement's order) with `fallbacks`
    /// (saturated peers, nearest first), for a function whose timeout is `timeout_ms`.
    /// A peer listed twice is tried once.
    pub fn new(ranked: &[Candidate<P>], fallbacks: &[P], config: &Config, timeout_ms: u64) -> Self {
        let order = ranked
            .iter()
            .map(|c| (c.peer, c.local))
            .chain(fallbacks.iter().map(|p| (*p, false)));
        let mut a = Self::from_order(order, config, timeout_ms);
        for (peer, _, predicted) in &mut a.order {
            if let Some(c) = ranked.iter().find(|c| c.peer == *peer) {
                // What placement expects the peer to take, before what it charges for
                // the peer's past (so conduct is judged on the claim alone).
                *predicted = c.cost.total_ms - c.cost.penalty_ms - c.cost.conduct_ms;
            }
        }
        a
    }

    /// The time placement predicted `peer` would take (its cost without penalty and
    /// conduct), ms; 0 for a fallback or an explicit order.
    pub fn predicted_ms(&self, peer: P) -> f64 {
        self.order
            .iter()
            .find(|(p, _, _)| *p == peer)
            .map_or(0.0, |x| x.2)
    }

    /// Attempts over an explicit order of `(peer, local)` (a baseline strategy of the
    /// simulator). A peer listed twice is tried once.
    pub fn from_order(
        order: impl IntoIterator<Item = (P, bool)>,
        config: &Config,
        timeout_ms: u64,
    ) -> Self {
        let max = config.max_attempts.clamp(1, 16);
        let mut unique: Vec<(P, bool, f64)> = Vec::new();
        for (peer, local) in order {
            if unique.len() == max {
                break;
            }
            if !unique.iter().any(|(p, _, _)| *p == peer) {
                unique.push((peer, local, 0.0));
            }
        }
        Self {
            order: unique,
            next: 0,
            slack_ms: config.forward_slack_ms,
            timeout_ms,
            in_flight: None,
            last: None,
            ended: false,
            confirm: false,
            disputed: Vec::new(),
            refuted: Vec::new(),
        }
    }

    /// Check a remote peer's fault of the function on the next candidate before
    /// believing it (see the module docs).
    pub fn confirm_faults(mut self, confirm: bool) -> Self {
        self.confirm = confirm;
        self
    }

    /// The peers that claimed a fault a later candidate did not reproduce, each with
    /// the fault it claimed: they lied (set once the call is done).
    pub fn refuted(&self) -> &[(P, ErrorKind)] {
        &self.refuted
    }

    /// The next step. While an attempt is in flight, asking again abandons it as
    /// unreachable (the driver gave up waiting).
    pub fn next(&mut self, now_ms: u64) -> Step<P> {
        if let Some((peer, _, _)) = self.in_flight {
            let _ = self.answer(peer, Err(ErrorKind::Unreachable));
        }
        if self.ended {
            return Step::GiveUp { last: self.last };
        }
        let Some(&(peer, local, _)) = self.order.get(self.next) else {
            // A fault nobody could check stands.
            if let Some((_, kind)) = self.disputed.first() {
                self.last = Some(*kind);
            }
            return Step::GiveUp { last: self.last };
        };
        self.next += 1;
        let deadline_ms = if local {
            u64::MAX
        } else {
            now_ms
                .saturating_add(self.timeout_ms)
                .saturating_add(self.slack_ms)
        };
        self.in_flight = Some((peer, local, deadline_ms));
        Step::Try {
            peer,
            local,
            deadline_ms,
        }
    }

    /// The answer of `peer` to the attempt in flight: `Ok` when the call ran and
    /// returned output, else the error's kind.
    pub fn on_answer(&mut self, peer: P, result: Result<(), ErrorKind>) -> Verdict {
        self.answer(peer, result)
    }

    /// Time passed: if the attempt in flight is past its deadline, it counts as
    /// unreachable (and its peer is penalised).
    pub fn on_timeout(&mut self, now_ms: u64) -> Verdict {
        match self.in_flight {
            Some((peer, _, deadline)) if now_ms >= deadline => {
                self.answer(peer, Err(ErrorKind::Unreachable))
            }
            _ => Verdict::Stale,
        }
    }

    /// When the attempt in flight times out, if one is.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.in_flight.map(|(_, _, d)| d).filter(|d| *d != u64::MAX)
    }

    /// Attempts made so far.
    pub fn made(&self) -> usize {
        self.next
    }

    /// The peers this call will try, in order (tried ones included).
    pub fn order(&self) -> impl Iterator<Item = P> + '_ {
        self.order.iter().map(|(p, _, _)| *p)
    }

    fn answer(&mut self, peer: P, result: Result<(), ErrorKind>) -> Verdict {
        let local = match self.in_flight {
            Some((p, local, _)) if p == peer => local,
            _ => return Verdict::Stale,
        };
        self.in_flight = None;
        match result {
            Ok(()) => {
                self.ended = true;
                self.refuted = std::mem::take(&mut self.disputed);
                Verdict::Done
            }
            Err(kind) => {
                self.last = Some(kind);
                if kind.is_guest_fault() {
                    if local && !self.disputed.is_empty() {
                        // This node reproduced it: the fault is the function's.
                        self.disputed.clear();
                        self.ended = true;
                        return Verdict::Fail(kind);
                    }
                    if self.confirm && !local && self.next < self.order.len() {
                        // This node's own answer settles it, if it can run the call.
                        if let Some(i) = self.order[self.next..].iter().position(|o| o.1) {
                            let me = self.order.remove(self.next + i);
                            self.order.insert(self.next, me);
                        }
                        self.disputed.push((peer, kind));
                        return Verdict::TryNext { penalise: false };
                    }
                    if !self.disputed.is_empty() {
                        // The last candidate claims a fault too: it stands.
                        self.ended = true;
                        return Verdict::Fail(kind);
                    }
                }
                match kind.disposition() {
                    Disposition::RetryElsewhere => Verdict::TryNext { penalise: false },
                    // The placing node never penalises itself.
                    Disposition::PenalisePeer => Verdict::TryNext { penalise: !local },
                    Disposition::ReturnToCaller => {
                        self.ended = true;
                        Verdict::Fail(kind)
                    }
                }
            }
        }
    }
}
