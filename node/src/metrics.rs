//! Call metrics: what the status page and `GET /metrics` (Prometheus text format) show.
//!
//! Everything here is bounded: per-function counts keep at most [`MAX_FUNCTIONS`]
//! functions (later ones are counted under `other`), recent errors keep the last
//! [`RECENT_ERRORS`].

use crate::clock::{lock, now_ms};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kith_protocol::{ErrorKind, FunctionId};
use serde::Serialize;

/// Functions tracked individually.
pub const MAX_FUNCTIONS: usize = 1024;
/// Recent errors kept.
pub const RECENT_ERRORS: usize = 20;
/// Upper bounds of the latency histogram buckets, seconds.
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One recent error.
#[derive(Debug, Clone, Serialize)]
pub struct RecentError {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// The function.
    pub function: String,
    /// The error kind.
    pub kind: ErrorKind,
    /// The message.
    pub message: String,
}

/// Calls and errors of one function.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct FunctionCounts {
    /// Calls handled.
    pub calls: u64,
    /// Of which failed or were refused.
    pub errors: u64,
}

/// A function's counts, for the status page.
#[derive(Debug, Clone, Serialize)]
pub struct TopFunction {
    /// The function id (or `other`).
    pub function: String,
    /// Its counts.
    #[serde(flatten)]
    pub counts: FunctionCounts,
}

/// Why the HTTP API refused a request before its route (`api/guard.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiRefusal {
    /// Too many requests in flight.
    Busy,
    /// A `Host` the API does not serve.
    Host,
    /// A request from a web page of another origin.
    CrossOrigin,
    /// The API token was needed and missing or wrong.
    Token,
}

impl ApiRefusal {
    /// Every reason, in the order `/metrics` lists them.
    pub const ALL: [Self; 4] = [Self::Busy, Self::Host, Self::CrossOrigin, Self::Token];

    /// Its label in `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Busy => "busy",
            Self::Host => "host",
            Self::CrossOrigin => "cross_origin",
            Self::Token => "token",
        }
    }
}

/// The node's call metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    api_refused: [AtomicU64; 4],
    /// Failed calls by kind: one counter per [`ErrorKind`], so the label set is
    /// bounded by construction whatever peers send.
    errors_by_kind: Mutex<BTreeMap<ErrorKind, u64>>,
    functions: Mutex<BTreeMap<FunctionId, FunctionCounts>>,
    other: Mutex<FunctionCounts>,
    recent: Mutex<VecDeque<RecentError>>,
    fuel: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Metrics {
    /// Counts a request the API refused before its route.
    pub fn api_refused(&self, reason: ApiRefusal) {
        self.api_refused[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests the API refused for `reason` since start.
    pub fn api_refusals(&self, reason: ApiRefusal) -> u64 {
        self.api_refused[reason as usize].load(Ordering::Relaxed)
    }

    /// Records one call: its function, how long it took end to end here, the fuel it
    /// used, and its error kind and message if it failed.
    pub fn record(
        &self,
        function: &FunctionId,
        elapsed: Duration,
        fuel: u64,
        error: Option<(ErrorKind, String)>,
    ) {
        let failed = u64::from(error.is_some());
        {
            let mut functions = lock(&self.functions);
            let tracked = functions.len() < MAX_FUNCTIONS || functions.contains_key(function);
            let mut other;
            let counts = if tracked {
                functions.entry(*function).or_default()
            } else {
                other = lock(&self.other);
                &mut *other
            };
            counts.calls += 1;
            counts.errors += failed;
        }
        self.fuel.fetch_add(fuel, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if let Some((kind, message)) = error {
            *lock(&self.errors_by_kind).entry(kind).or_default() += 1;
            let mut recent = lock(&self.recent);
            if recent.len() == RECENT_ERRORS {
                recent.pop_front();
            }
            recent.push_back(RecentError {
                at_ms: now_ms(),
                function: function.to_hex(),
                kind,
                message,
            });
        }
    }

    /// The most called functions, most first (at most `n`).
    pub fn top_functions(&self, n: usize) -> Vec<TopFunction> {
        let mut all: Vec<TopFunction> = lock(&self.functions)
            .iter()
            .map(|(id, c)| TopFunction {
                function: id.to_hex(),
                counts: *c,
            })
            .collect();
        let other = *lock(&self.other);
        if other.calls > 0 {
            all.push(TopFunction {
                function: "other".into(),
                counts: other,
            });
        }
        all.sort_by(|a, b| {
            b.counts
                .calls
                .cmp(&a.counts.calls)
                .then_with(|| a.function.cmp(&b.function))
        });
        all.truncate(n);
        all
    }

    /// The last errors, newest first.
    pub fn recent_errors(&self) -> Vec<RecentError> {
        lock(&self.recent).iter().rev().cloned().collect()
    }

    /// Appends the call metrics in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        header(
            out,
            "kith_call_errors_total",
            "counter",
            "Calls handled here that failed or were refused, by error kind.",
        );
        for (kind, n) in lock(&self.errors_by_kind).iter() {
            let _ = writeln!(
                out,
                "kith_call_errors_total{{kind=\"{}\"}} {n}",
                kind.code()
            );
        }
        header(
            out,
            "kith_fuel_used_total",
            "counter",
            "Fuel used by calls handled here.",
        );
        let _ = writeln!(
            out,
            "kith_fuel_used_total {}",
            self.fuel.load(Ordering::Relaxed)
        );
        header(
            out,
            "kith_call_duration_seconds",
            "histogram",
            "End-to-end time of calls handled here (placement, fetch, run, answer).",
        );
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "kith_call_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "kith_call_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "kith_call_duration_seconds_sum {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "kith_call_duration_seconds_count {count}");
    }
}

/// Writes a metric family's `# HELP` and `# TYPE` lines.
pub(crate) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}
