//! What a run leaves: every call with its outcome, the totals, load over time.

use kith_protocol::ErrorKind;
use kith_protocol::attempt::Attempts;

use crate::scenario::Strategy;

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Still running when the run ended (never, once the heap drains).
    Pending,
    /// Answered.
    Ok,
    /// No online entry peer in the caller's region.
    NoEntry,
    /// No capable peer known to the entry.
    NoCapablePeer,
    /// Every attempt failed (busy, vanished, unreachable).
    Exhausted,
    /// The entry went away before the answer came back.
    Lost,
}

impl Outcome {
    /// Its name in files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Ok => "ok",
            Self::NoEntry => "no_entry",
            Self::NoCapablePeer => "no_capable_peer",
            Self::Exhausted => "exhausted",
            Self::Lost => "lost",
        }
    }
}

/// No peer (yet).
pub const NONE: u32 = u32::MAX;

/// One call, as the run leaves it.
#[derive(Debug, Clone)]
pub struct Call {
    /// Arrival, µs.
    pub t0_us: u64,
    /// Answer, µs (0 when not answered).
    pub done_us: u64,
    /// The entry peer.
    pub entry: u32,
    /// The peer that ran it (last tried), or [`NONE`].
    pub executor: u32,
    /// The function.
    pub function: u16,
    /// The caller's region.
    pub region: u16,
    /// Attempts made.
    pub attempts: u8,
    /// True if the executor had to fetch or wait for the module.
    pub cold: bool,
    /// How it ended.
    pub outcome: Outcome,
    /// Base RTT entry → executor, ms (NaN when none).
    pub rtt_ms: f32,
    /// RTT(chosen) / RTT(nearest capable peer) from the oracle, NaN when not sampled.
    pub stretch: f32,
    /// Age of the advert the first remote candidate was chosen on, ms (NaN when the
    /// first candidate was the entry, or in the static control model).
    pub advert_age_ms: f32,
    /// Whether that advert's load was no longer true when it was used.
    pub advert_stale: bool,
    /// The call's attempts while it is pending (dropped when it ends).
    pub(super) tries: Option<Box<Attempts<u32>>>,
    /// Why the attempt in flight failed, when a retry is scheduled.
    pub(super) failed_with: ErrorKind,
    pub(super) slot_start_us: u64,
    /// When the attempt in flight was sent, µs.
    pub(super) attempt_us: u64,
}

impl Call {
    /// Latency in ms, if answered.
    pub fn latency_ms(&self) -> Option<f64> {
        (self.outcome == Outcome::Ok).then(|| (self.done_us - self.t0_us) as f64 / 1000.0)
    }
}

/// Totals of one run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Totals {
    /// Events processed.
    pub events: u64,
    /// Module fetches.
    pub fetches: u64,
    /// Bytes of modules moved.
    pub fetch_bytes: f64,
    /// Bytes of requests and responses moved between peers.
    pub call_bytes: f64,
    /// Marginal compute energy (above idle), joules.
    pub compute_joules: f64,
    /// Network energy, joules.
    pub network_joules: f64,
    /// Compute cost, USD.
    pub cost_usd: f64,
    /// Refusals because a peer was full.
    pub refused_busy: u64,
    /// Attempts that reached a lying peer (`[[failures.liar]]`).
    pub lied_to: u64,
    /// Attempts that hit a vanished or unreachable peer.
    pub peer_failures: u64,
    /// Calls run by the entry itself.
    pub local_runs: u64,
    /// Peers going offline (churn, crash, daily cycle, outage).
    pub departures: u64,
}

/// Busy and offered slot-time per device class per time bucket.
#[derive(Debug, Clone)]
pub struct Load {
    /// Bucket width, µs.
    pub bucket_us: u64,
    /// `busy[class][bucket]`: slot-ms spent on calls.
    pub busy: Vec<Vec<f64>>,
    /// `offered[class][bucket]`: slot-ms of online peers.
    pub offered: Vec<Vec<f64>>,
}

impl Load {
    pub(super) fn spread(row: &mut [f64], bucket_us: u64, from_us: u64, to_us: u64, weight: f64) {
        let mut t = from_us;
        while t < to_us {
            let b = (t / bucket_us) as usize;
            let Some(cell) = row.get_mut(b) else { break };
            let end = ((b as u64 + 1) * bucket_us).min(to_us);
            *cell += (end - t) as f64 / 1000.0 * weight;
            t = end;
        }
    }
}

/// What the control plane cost per peer (neighbourhood model), after the warm-up.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ControlStats {
    /// Control messages per online peer-second, in and out, mean over peers.
    pub msgs_per_peer_s: f64,
    /// … the 99th percentile over peers.
    pub msgs_per_peer_s_p99: f64,
    /// Control bytes per online peer-second, in and out, mean over peers.
    pub bytes_per_peer_s: f64,
    /// … the 99th percentile over peers.
    pub bytes_per_peer_s_p99: f64,
    /// Heap bytes of a peer's neighbourhood tables (mean over timer samples).
    pub memory_bytes_per_peer: f64,
    /// Neighbours per peer (mean over timer samples).
    pub neighbours_per_peer: f64,
    /// Warm-function questions asked of neighbours, all peers.
    pub warm_lookups: u64,
    /// Warm links asked for from the answers, all peers.
    pub warm_links: u64,
    /// Calls held for a warm answer (late binding), all peers.
    pub warm_held: u64,
    /// … of which released by an answer naming a peer.
    pub warm_held_found: u64,
}

/// The result of one run.
#[derive(Debug, Clone)]
pub struct Run {
    /// The strategy.
    pub strategy: Strategy,
    /// Every call, in arrival order.
    pub calls: Vec<Call>,
    /// Totals.
    pub totals: Totals,
    /// Load per class over time.
    pub load: Load,
    /// blake3 of every processed event.
    pub trace_hash: [u8; 32],
    /// The control plane's cost (neighbourhood model only).
    pub control: Option<ControlStats>,
}
