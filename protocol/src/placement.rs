//! Placement: which peer should run a call. A pure function.
//!
//! "Nearest" means the lowest **expected completion time**:
//!
//! ```text
//! total = rtt + queue wait + cold start + execution + penalty + conduct
//! ```
//!
//! - `rtt`: measured (ping) when known, else predicted from network coordinates;
//!   zero for the local peer.
//! - `queue wait`: when every slot is busy, the queued calls ahead (plus this one)
//!   divided over the slots, times the execution time.
//! - `cold start`: zero when the peer's cache summary says it has the function;
//!   otherwise fetching the module (an RTT plus size over bandwidth) and compiling it.
//!   Plus, when the function names state documents the peer does not hold (by its
//!   summary, which lists held documents too), fetching them: a sync exchange plus
//!   their size over bandwidth.
//! - `execution`: the call's expected fuel over the peer's CPU score.
//! - `penalty`: the peer's decayed penalty (`crate::peerbook`) times
//!   [`Config::penalty_ms`]: a peer that failed calls or sent bad bytes ranks below an
//!   equal one that did not, until its penalty decays.
//! - `conduct`: the time the peer wasted per call it was sent, by this node's own
//!   observation (`crate::conduct`): calls it dropped, delayed past the prediction or
//!   answered with a fault another peer did not reproduce.
//!
//! Claims that cannot be true are not believed: a CPU score above
//! [`crate::capacity::MAX_CPU_SCORE`] counts as that score, and a cache filter more
//! than [`crate::capacity::MAX_BLOOM_FILL`] full counts as empty.
//!
//! A peer is **capable** when it offers at least the memory the manifest asks for, has
//! a backend, and is not saturated (every slot and queue place taken). Incapable peers
//! are never returned. Ties break on the peer key, so the ranking is deterministic.

use crate::FunctionId;
use crate::capacity::Advert;

/// Cost model constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Assumed bandwidth for fetching a module, bytes per millisecond.
    pub fetch_bytes_per_ms: f64,
    /// Fixed compile cost of any module, milliseconds, on a peer with
    /// `reference_cpu_score` (creating the engine, metering, code memory).
    pub compile_base_ms: f64,
    /// Compile cost, milliseconds per KiB of module, on a peer with `reference_cpu_score`.
    pub compile_ms_per_kib: f64,
    /// The CPU score the compile cost is measured on.
    pub reference_cpu_score: f64,
    /// Fixed per-call overhead on the executing peer (instantiate, copy), ms.
    pub call_overhead_ms: f64,
    /// Fixed cost of fetching missing state documents (a sync session of about two
    /// round trips with a peer that holds them), ms.
    pub state_fetch_ms: f64,
    /// Cost added per unit of a peer's penalty (one failed call is one unit), ms.
    pub penalty_ms: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            // 10 MB/s: a modest home uplink.
            fetch_bytes_per_ms: 10_000.0,
            // Fitted to docs/benchmarks.md (c): 48.8 ms for 24.5 KiB, 92.5 ms for
            // 102.9 KiB, on a machine whose CPU score is about 5.5 M fuel/ms.
            compile_base_ms: 35.0,
            compile_ms_per_kib: 0.56,
            reference_cpu_score: 5_500_000.0,
            call_overhead_ms: 0.05,
            // Two round trips on a typical home link.
            state_fetch_ms: 40.0,
            // One unanswered call costs a peer as much as a distant region's RTT.
            penalty_ms: 200.0,
        }
    }
}

/// The call to place.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Call<'a> {
    /// The function.
    pub function: FunctionId,
    /// Memory the manifest asks for, in bytes.
    pub memory_bytes: u64,
    /// Fuel the call is expected to use (e.g. the function's observed average).
    pub expected_fuel: u64,
    /// Module size, for the fetch and compile estimate.
    pub module_bytes: u64,
    /// The state documents the function names ([`doc_key`] of each).
    pub state_docs: &'a [FunctionId],
    /// Their size, for the fetch estimate (0 when unknown).
    pub state_bytes: u64,
}

/// The key under which a peer's cache summary lists a state document it holds.
pub fn doc_key(doc: &crate::state::DocName) -> FunctionId {
    FunctionId::of(format!("kith-state-doc:{doc}").as_bytes())
}

/// What the placing peer knows about one candidate.
#[derive(Debug, Clone, Copy)]
pub struct PeerView<'a, P> {
    /// The candidate's id (the node uses libp2p's `PeerId`; the simulator an index).
    pub peer: P,
    /// Its latest valid advert.
    pub advert: &'a Advert,
    /// Measured RTT, in milliseconds, if any.
    pub measured_rtt_ms: Option<f64>,
    /// True for the placing peer itself.
    pub local: bool,
    /// True if the placing peer knows for certain the candidate has the function
    /// cached (e.g. itself); otherwise the advert's summary decides.
    pub known_warm: Option<bool>,
    /// True if the placing peer knows for certain whether the candidate holds all
    /// the call's state documents (e.g. itself); otherwise the summary decides.
    pub known_state: Option<bool>,
    /// The candidate's decayed penalty (`crate::peerbook::PeerBook::penalty`), 0 for
    /// none.
    pub penalty: f64,
    /// What its observed conduct costs, ms (`crate::conduct::Conduct::cost_ms`; 0 for
    /// the placing peer).
    pub conduct_ms: f64,
}

/// The cost terms of one candidate, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Cost {
    /// Round trip to the peer.
    pub rtt_ms: f64,
    /// True if `rtt_ms` was measured, false if predicted from coordinates.
    pub rtt_measured: bool,
    /// Expected wait for a slot.
    pub queue_ms: f64,
    /// Fetch and compile, when the peer lacks the function, plus fetching state
    /// documents it lacks.
    pub cold_ms: f64,
    /// Execution on that peer.
    pub exec_ms: f64,
    /// The peer's penalty, as cost.
    pub penalty_ms: f64,
    /// The time the peer wasted per call, as this node observed it.
    pub conduct_ms: f64,
    /// The sum.
    pub total_ms: f64,
}

/// A ranked candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate<P> {
    /// The peer.
    pub peer: P,
    /// True for the placing peer.
    pub local: bool,
    /// Its cost terms.
    pub cost: Cost,
}

/// Why a peer is not capable of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incapable {
    /// Offers less memory than the manifest asks for.
    Memory,
    /// Every slot and queue place is taken.
    Saturated,
    /// No wasm backend.
    NoBackend,
}

/// Checks whether a peer can take the call.
///
/// # Errors
/// The first reason it cannot.
pub fn capable(call: &Call<'_>, advert: &Advert) -> Result<(), Incapable> {
    if advert.memory_bytes < call.memory_bytes {
        return Err(Incapable::Memory);
    }
    if advert.backends == 0 {
        return Err(Incapable::NoBackend);
    }
    if advert.saturated() {
        return Err(Incapable::Saturated);
    }
    Ok(())
}

/// The RTT to `view`'s peer as seen from `local`, and whether it was measured: zero
/// for the placing peer, the measured RTT when there is a sane one, else the
/// coordinates' prediction.
fn rtt<P>(view: &PeerView<'_, P>, local: &Advert) -> (f64, bool) {
    if view.local {
        (0.0, true)
    } else if let Some(m) = view.measured_rtt_ms.filter(|m| m.is_finite() && *m >= 0.0) {
        (m, true)
    } else {
        (local.coord.rtt_ms(&view.advert.coord), false)
    }
}

/// The cost of running `call` on `view`'s peer, as seen from `local` (the placing
/// peer's own advert, for its coordinate).
pub fn cost<P>(call: &Call<'_>, view: &PeerView<'_, P>, local: &Advert, config: &Config) -> Cost {
    let a = view.advert;
    let (rtt_ms, rtt_measured) = rtt(view, local);
    let score = f64::from(a.cpu_score.clamp(1, crate::capacity::MAX_CPU_SCORE));
    let exec_ms = call.expected_fuel as f64 / score + config.call_overhead_ms;
    let slots = f64::from(a.max_concurrent.max(1));
    let queue_ms = if a.running >= a.max_concurrent {
        (f64::from(a.queued) + 1.0) / slots * exec_ms
    } else {
        0.0
    };
    let warm = view
        .known_warm
        .unwrap_or_else(|| a.cached.plausible() && a.cached.may_contain(&call.function));
    let cold_ms = if warm {
        0.0
    } else {
        let fetch = rtt_ms + call.module_bytes as f64 / config.fetch_bytes_per_ms;
        let compile = (config.compile_base_ms
            + call.module_bytes as f64 / 1024.0 * config.compile_ms_per_kib)
            * (config.reference_cpu_score / score);
        fetch + compile
    };
    let has_state = view.known_state.unwrap_or_else(|| {
        call.state_docs.is_empty()
            || (a.cached.plausible() && call.state_docs.iter().all(|d| a.cached.may_contain(d)))
    });
    let cold_ms = if has_state {
        cold_ms
    } else {
        cold_ms + config.state_fetch_ms + call.state_bytes as f64 / config.fetch_bytes_per_ms
    };
    let penalty_ms = if view.penalty.is_finite() && view.penalty > 0.0 && !view.local {
        view.penalty * config.penalty_ms
    } else {
        0.0
    };
    let conduct_ms = if view.conduct_ms.is_finite() && view.conduct_ms > 0.0 && !view.local {
        view.conduct_ms
    } else {
        0.0
    };
    Cost {
        rtt_ms,
        rtt_measured,
        queue_ms,
        cold_ms,
        exec_ms,
        penalty_ms,
        conduct_ms,
        total_ms: rtt_ms + queue_ms + cold_ms + exec_ms + penalty_ms + conduct_ms,
    }
}

/// Ranks the capable peers among `peers` for `call`, cheapest first. `local` is the
/// placing peer's own advert.
pub fn rank<'a, P: Copy + Ord + 'a>(
    call: &Call<'_>,
    peers: impl IntoIterator<Item = PeerView<'a, P>>,
    local: &Advert,
    config: &Config,
) -> Vec<Candidate<P>> {
    let mut out: Vec<Candidate<P>> = peers
        .into_iter()
        .filter(|v| capable(call, v.advert).is_ok())
        .map(|v| Candidate {
            peer: v.peer,
            local: v.local,
            cost: cost(call, &v, local, config),
        })
        .collect();
    out.sort_by(|a, b| {
        a.cost
            .total_ms
            .total_cmp(&b.cost.total_ms)
            .then_with(|| a.peer.cmp(&b.peer))
    });
    out
}

/// The fallbacks among `peers` for `call`: peers that offer the memory and a backend
/// but whose latest advert said every slot and queue place was taken. Adverts are
/// periodic, so a slot may have freed since; a call tries them, nearest first (by
/// measured RTT, else by coordinates), only after every capable candidate refused
/// (see [`crate::attempt`]). The placing peer itself is never a fallback: it knows its
/// own load exactly.
pub fn fallbacks<'a, P: Copy + Ord + 'a>(
    call: &Call<'_>,
    peers: impl IntoIterator<Item = PeerView<'a, P>>,
    local: &Advert,
) -> Vec<P> {
    let mut out: Vec<(f64, P)> = peers
        .into_iter()
        .filter(|v| !v.local && capable(call, v.advert) == Err(Incapable::Saturated))
        .map(|v| (rtt(&v, local).0, v.peer))
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    out.into_iter().map(|(_, p)| p).collect()
}

/// The fuel a function's next call is expected to use: a moving average (weight 1/8
/// for each new call) of what its calls used. Each sample is clamped to the call's
/// budget first (no peer can truthfully report more), and the sum is taken in 128
/// bits, so no report can overflow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FuelAverage(u64);

impl FuelAverage {
    /// The average after one call that used `fuel` of `budget`.
    pub fn first(fuel: u64, budget: u64) -> Self {
        Self(fuel.min(budget))
    }

    /// Adds a call that used `fuel` of `budget`.
    pub fn note(&mut self, fuel: u64, budget: u64) {
        let sample = u128::from(fuel.min(budget));
        let mixed = (u128::from(self.0) * 7 + sample) / 8;
        self.0 = u64::try_from(mixed).unwrap_or(u64::MAX);
    }

    /// The expected fuel.
    pub fn value(self) -> u64 {
        self.0
    }
}
