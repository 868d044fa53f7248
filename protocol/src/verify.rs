//! Redundant execution: run one call on several peers and believe the majority.
//!
//! A receipt ([`crate::receipt`]) says who answered what, not that the answer is
//! right. A caller that wants to check results asks for `verify = N`: the call runs
//! on N peers of **distinct networks** (no two of one IPv4 /24 or IPv6 /48, so one
//! host's many identities are one vote), the entry compares what they answered, and
//! the caller gets the answer a strict majority (⌊N/2⌋ + 1) agrees on, with every
//! receipt. Peers that answered something else are **dissenters**: the driver
//! penalises them and charges their conduct.
//!
//! A stepped state machine, driven like [`crate::attempt::Attempts`] but with several
//! attempts in flight:
//!
//! ```text
//! let mut v = Vote::new(order, n, &config);
//! loop {
//!     for (peer, local) in v.start() { send the call to peer }
//!     match v.outcome() {
//!         Outcome::Pending => wait for an answer, then v.on_answer(peer, answer),
//!         Outcome::Decided { .. } | Outcome::NoQuorum { .. } => break,
//!     }
//! }
//! ```
//!
//! The rules:
//! - Candidates come in placement's order; a candidate whose subnet is already
//!   taken by a vote (counted or in flight) is skipped. A candidate without a subnet
//!   (this node, a peer on loopback) is its own network.
//! - What votes: an output (by its hash), or a fault that every honest run of a
//!   deterministic function answers alike ([`counts_as_vote`]: a trap, the function's
//!   own error, out of fuel, a memory, table or output limit). A fault that depends on
//!   the machine or the moment (`timeout`, `stack_overflow`, `internal`) abstains.
//! - A candidate that refuses or fails (busy, unreachable, a bad receipt …) or
//!   abstains is replaced by the next candidate of a network not yet voting, while
//!   fewer than N are voting and at most N + `max_attempts` − 1 candidates were
//!   started in all. Its network is free again.
//! - The call is decided once every started candidate has answered: the answer with
//!   most votes wins if it has a strict majority of N; else there is no quorum, and
//!   the call fails (`no_quorum`) without believing anyone.
//!
//! Only deterministic functions may be verified: a function that imports the wall
//! clock or state ([`crate::module::ModuleInfo::nondeterministic`]) is refused before
//! it runs, since honest peers would disagree.

use crate::attempt::Config;
use crate::error::{Disposition, ErrorKind};
use crate::subnet::Subnet;

/// Most peers one call may be verified on.
pub const MAX_VERIFY: u8 = 7;

/// What one peer answered, as a vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Answer {
    /// An output, by its blake3 hash.
    Output([u8; 32]),
    /// A deterministic fault of the function.
    Fault(ErrorKind),
}

/// True when an error of this kind is an answer every honest run of a deterministic
/// function gives alike, so it counts as a vote.
pub fn counts_as_vote(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Trap
            | ErrorKind::FunctionError
            | ErrorKind::OutOfFuel
            | ErrorKind::MemoryLimit
            | ErrorKind::TableLimit
            | ErrorKind::OutputTooLarge
    )
}

/// Votes a strict majority of `n` needs.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// Where the vote stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<P> {
    /// Answers are still awaited.
    Pending,
    /// A strict majority agreed on `answer`.
    Decided {
        /// The majority's answer.
        answer: Answer,
        /// The peers that gave it, in the order they answered.
        agree: Vec<P>,
        /// The peers that voted otherwise, each with its answer.
        dissent: Vec<(P, Answer)>,
    },
    /// No answer has a strict majority of the votes wanted.
    NoQuorum {
        /// The votes counted, in the order they came.
        votes: Vec<(P, Answer)>,
        /// Votes wanted (N).
        wanted: usize,
        /// Distinct networks among the candidates at the start.
        networks: usize,
    },
}

/// What the driver does with a peer's failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Nothing beyond replacing it.
    Replace,
    /// Count it against the peer, and replace it.
    Penalise,
}

/// One verified call's votes.
#[derive(Debug, Clone)]
pub struct Vote<P> {
    order: Vec<(P, bool, Option<Subnet>)>,
    wanted: usize,
    max_started: usize,
    started: usize,
    in_flight: Vec<(P, Option<Subnet>)>,
    votes: Vec<(P, Answer, Option<Subnet>)>,
    networks: usize,
}

impl<P: Copy + Eq> Vote<P> {
    /// The vote of a call that wants `wanted` agreeing-or-not answers (N, at least 1,
    /// at most [`MAX_VERIFY`]) from `order`: `(peer, local, subnet)` in placement's
    /// order. A peer listed twice is asked once.
    pub fn new(
        order: impl IntoIterator<Item = (P, bool, Option<Subnet>)>,
        wanted: u8,
        config: &Config,
    ) -> Self {
        let mut unique: Vec<(P, bool, Option<Subnet>)> = Vec::new();
        for c in order {
            if !unique.iter().any(|u| u.0 == c.0) {
                unique.push(c);
            }
        }
        let mut nets: Vec<Option<Subnet>> = Vec::new();
        let mut networks = 0;
        for (_, _, s) in &unique {
            match s {
                None => networks += 1,
                Some(s) if !nets.contains(&Some(*s)) => {
                    nets.push(Some(*s));
                    networks += 1;
                }
                Some(_) => {}
            }
        }
        let wanted = usize::from(wanted.clamp(1, MAX_VERIFY));
        Self {
            order: unique,
            wanted,
            max_started: wanted + config.max_attempts.clamp(1, 16) - 1,
            started: 0,
            in_flight: Vec::new(),
            votes: Vec::new(),
            networks,
        }
    }

    /// Votes wanted (N).
    pub fn wanted(&self) -> usize {
        self.wanted
    }

    /// The candidates to start now: `(peer, local)`, each to be answered with
    /// [`Vote::on_answer`] or [`Vote::on_failure`].
    pub fn start(&mut self) -> Vec<(P, bool)> {
        let mut out = Vec::new();
        while self.can_start() {
            let Some(i) = self.order.iter().position(|c| self.free(c.2)) else {
                break;
            };
            let (peer, local, subnet) = self.order.remove(i);
            self.in_flight.push((peer, subnet));
            self.started += 1;
            out.push((peer, local));
        }
        out
    }

    fn can_start(&self) -> bool {
        self.votes.len() + self.in_flight.len() < self.wanted
            && self.started < self.max_started
            && self.order.iter().any(|c| self.free(c.2))
    }

    fn free(&self, subnet: Option<Subnet>) -> bool {
        let Some(s) = subnet else { return true };
        !self.in_flight.iter().any(|(_, n)| *n == Some(s))
            && !self.votes.iter().any(|(_, _, n)| *n == Some(s))
    }

    fn take(&mut self, peer: P) -> Option<Option<Subnet>> {
        let i = self.in_flight.iter().position(|(p, _)| *p == peer)?;
        Some(self.in_flight.remove(i).1)
    }

    /// `peer` answered. Returns false when it had no attempt in flight (ignored).
    pub fn on_answer(&mut self, peer: P, answer: Answer) -> bool {
        let Some(subnet) = self.take(peer) else {
            return false;
        };
        self.votes.push((peer, answer, subnet));
        true
    }

    /// `peer`'s attempt failed with `kind` (or abstained): it is replaced, and what
    /// the driver does to the peer is returned. A vote kind ([`counts_as_vote`]) is
    /// counted as a vote instead (`None`).
    pub fn on_failure(&mut self, peer: P, local: bool, kind: ErrorKind) -> Option<Failure> {
        if counts_as_vote(kind) {
            self.on_answer(peer, Answer::Fault(kind));
            return None;
        }
        self.take(peer)?;
        Some(match kind.disposition() {
            Disposition::PenalisePeer if !local => Failure::Penalise,
            _ => Failure::Replace,
        })
    }

    /// Where the vote stands.
    pub fn outcome(&self) -> Outcome<P> {
        if !self.in_flight.is_empty() || self.can_start() {
            return Outcome::Pending;
        }
        let mut tally: Vec<(Answer, usize)> = Vec::new();
        for (_, a, _) in &self.votes {
            match tally.iter_mut().find(|(t, _)| t == a) {
                Some(t) => t.1 += 1,
                None => tally.push((*a, 1)),
            }
        }
        // Most votes first; among equals the first answer to arrive.
        let best = tally
            .iter()
            .max_by(|x, y| x.1.cmp(&y.1).then(std::cmp::Ordering::Greater));
        match best {
            Some((answer, count)) if *count >= majority(self.wanted) => Outcome::Decided {
                answer: *answer,
                agree: self
                    .votes
                    .iter()
                    .filter(|v| v.1 == *answer)
                    .map(|v| v.0)
                    .collect(),
                dissent: self
                    .votes
                    .iter()
                    .filter(|v| v.1 != *answer)
                    .map(|v| (v.0, v.1))
                    .collect(),
            },
            _ => Outcome::NoQuorum {
                votes: self.votes.iter().map(|v| (v.0, v.1)).collect(),
                wanted: self.wanted,
                networks: self.networks,
            },
        }
    }
}
