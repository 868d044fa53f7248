//! What a node saw each peer do with the calls it sent: calls sent, answered, failed
//! (by kind), timed out, and how long they took against what placement predicted —
//! and the cost placement adds for it. A stepped table: every input carries the time,
//! nothing reads a clock.
//!
//! Adverts are claims; this is evidence. A peer is charged the time it **wasted** for
//! the caller, per call sent to it:
//!
//! ```text
//! conduct_ms = wasted / (attempts + 1)  +  unproven_ms / (attempts + 1)
//! ```
//!
//! - A failed attempt that is the peer's fault (it did not answer, answered nonsense,
//!   answered with a fault another peer did not reproduce) wastes everything it took,
//!   and at least [`Config::min_failure_ms`] (a quick refusal still makes the call try
//!   the next candidate).
//! - An answered attempt wastes what it took beyond the prediction, less a tolerance
//!   ([`Config::tolerance`] of the prediction plus [`Config::slack_ms`]): a peer that
//!   claims a fast CPU and runs slowly, or sits on calls, is charged the difference.
//! - `wasted` and `attempts` both halve every [`Config::half_life_ms`]. While a peer
//!   keeps being used, the charge is its recent mean waste per call, so one that
//!   behaves again recovers as good calls outnumber bad ones; one no longer chosen
//!   recovers with time alone (the `+ 1` lets the charge fall as both decay), slowly:
//!   a peer that wasted 10 s is tried again after about 11 half-lives.
//! - A peer with no history is charged [`Config::unproven_ms`]: between equal
//!   candidates, one with a measured history wins, so a fresh identity has to earn its
//!   place (see docs/security.md, Sybils).
//!
//! Caps: at most [`Config::max_peers`] records; when full, the record touched longest
//! ago goes (losing a liar's record costs at most one more wasted call).

use std::collections::BTreeMap;

use crate::error::ErrorKind;

/// The table's constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Time for the evidence to halve, ms.
    pub half_life_ms: u64,
    /// Least waste charged for a failed attempt, ms.
    pub min_failure_ms: f64,
    /// Part of the prediction an answer may run over without waste.
    pub tolerance: f64,
    /// Time an answer may run over without waste, ms (measurement noise).
    pub slack_ms: f64,
    /// Charge of a peer never sent a call, ms.
    pub unproven_ms: f64,
    /// Most peers with a record.
    pub max_peers: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            half_life_ms: 600_000,
            min_failure_ms: 200.0,
            tolerance: 0.5,
            slack_ms: 20.0,
            unproven_ms: 1.0,
            max_peers: 1024,
        }
    }
}

/// What became of one attempt, as the driver saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The peer answered with output.
    Answered,
    /// The peer did not answer by the attempt's deadline.
    TimedOut,
    /// The peer answered with an error of this kind.
    Failed(ErrorKind),
    /// The peer answered with a fault of the function (a trap, say) that another peer
    /// did not reproduce: it lied.
    Refuted(ErrorKind),
    /// The peer answered with a fault of a function that has run well before (so the
    /// answer is suspect, and checked elsewhere): charged like a failure whether or
    /// not it is refuted later, since several liars can agree and leave it standing.
    /// Honest peers asked the same bad input pay alike, which leaves their order be.
    Suspect(ErrorKind),
    /// The peer's answer to a verified call (`crate::verify`) lost the vote: a strict
    /// majority of peers on other networks answered otherwise. Counted as refuted.
    Outvoted,
}

impl Outcome {
    /// True when the attempt's time is the peer's fault.
    fn wasteful(self) -> bool {
        match self {
            Self::Answered => false,
            Self::TimedOut | Self::Refuted(_) | Self::Suspect(_) | Self::Outvoted => true,
            Self::Failed(kind) => kind.disposition() == crate::Disposition::PenalisePeer,
        }
    }
}

/// What the table holds of one peer. The counts are for display (since the record
/// was made); placement uses the decayed evidence.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// Attempts sent.
    pub sent: u32,
    /// Answered with output.
    pub answered: u32,
    /// Not answered in time.
    pub timed_out: u32,
    /// Answered with an error, by kind (at most one entry per kind).
    pub failed: Vec<(ErrorKind, u32)>,
    /// Answered with a fault another peer did not reproduce.
    pub refuted: u32,
    /// Sum of the predictions of the answered attempts, ms.
    pub predicted_ms: f64,
    /// Sum of what the answered attempts took, ms.
    pub observed_ms: f64,
    wasted: f64,
    attempts: f64,
    at_ms: u64,
}

impl Record {
    fn decay(&mut self, now_ms: u64, half_life_ms: u64) {
        let dt = now_ms.saturating_sub(self.at_ms) as f64;
        let k = 0.5f64.powf(dt / half_life_ms.max(1) as f64);
        self.wasted *= k;
        self.attempts *= k;
        self.at_ms = self.at_ms.max(now_ms);
    }

    /// The decayed waste and attempts at `now_ms`.
    fn evidence(&self, now_ms: u64, half_life_ms: u64) -> (f64, f64) {
        let dt = now_ms.saturating_sub(self.at_ms) as f64;
        let k = 0.5f64.powf(dt / half_life_ms.max(1) as f64);
        (self.wasted * k, self.attempts * k)
    }
}

/// One node's records of its peers' conduct.
#[derive(Debug, Clone)]
pub struct Conduct<P> {
    config: Config,
    peers: BTreeMap<P, Record>,
}

/// A number a driver measured, made safe: finite and not negative.
fn sane(ms: f64) -> f64 {
    if ms.is_finite() { ms.max(0.0) } else { 0.0 }
}

impl<P: Ord + Copy> Conduct<P> {
    /// An empty table.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            peers: BTreeMap::new(),
        }
    }

    /// Its constants.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// An attempt sent to `peer` ended with `outcome` after `elapsed_ms`; placement
    /// had predicted `predicted_ms` for it.
    pub fn observe(
        &mut self,
        now_ms: u64,
        peer: P,
        predicted_ms: f64,
        elapsed_ms: f64,
        outcome: Outcome,
    ) {
        let (predicted_ms, elapsed_ms) = (sane(predicted_ms), sane(elapsed_ms));
        let c = self.config;
        let r = self.record(now_ms, peer);
        r.decay(now_ms, c.half_life_ms);
        r.sent = r.sent.saturating_add(1);
        r.attempts += 1.0;
        let waste = if outcome.wasteful() {
            elapsed_ms.max(c.min_failure_ms)
        } else if outcome == Outcome::Answered && predicted_ms > 0.0 {
            // (Without a prediction, as for a fallback tried because its advert said
            // full, there is nothing to be late against.)
            (elapsed_ms - predicted_ms * (1.0 + c.tolerance) - c.slack_ms).max(0.0)
        } else {
            0.0
        };
        r.wasted += waste;
        match outcome {
            Outcome::Answered => {
                r.answered = r.answered.saturating_add(1);
                r.predicted_ms += predicted_ms;
                r.observed_ms += elapsed_ms;
            }
            Outcome::TimedOut => r.timed_out = r.timed_out.saturating_add(1),
            Outcome::Failed(kind) | Outcome::Suspect(kind) => {
                match r.failed.iter_mut().find(|(k, _)| *k == kind) {
                    Some((_, n)) => *n = n.saturating_add(1),
                    None => r.failed.push((kind, 1)),
                }
            }
            Outcome::Refuted(_) | Outcome::Outvoted => r.refuted = r.refuted.saturating_add(1),
        }
    }

    /// What placement adds to `peer`'s cost at `now_ms`, ms.
    pub fn cost_ms(&self, now_ms: u64, peer: &P) -> f64 {
        let c = &self.config;
        let (wasted, attempts) = self
            .peers
            .get(peer)
            .map_or((0.0, 0.0), |r| r.evidence(now_ms, c.half_life_ms));
        (wasted + c.unproven_ms) / (attempts + 1.0)
    }

    /// The record of `peer`.
    pub fn get(&self, peer: &P) -> Option<&Record> {
        self.peers.get(peer)
    }

    /// Peers with a record.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// True when no peer has a record.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Every record, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&P, &Record)> {
        self.peers.iter()
    }

    fn record(&mut self, now_ms: u64, peer: P) -> &mut Record {
        if !self.peers.contains_key(&peer) && self.peers.len() >= self.config.max_peers.max(1) {
            let stalest = self
                .peers
                .iter()
                .min_by_key(|(p, r)| (r.at_ms, **p))
                .map(|(p, _)| *p);
            if let Some(p) = stalest {
                self.peers.remove(&p);
            }
        }
        self.peers.entry(peer).or_insert_with(|| Record {
            at_ms: now_ms,
            ..Record::default()
        })
    }
}
