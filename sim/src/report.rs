//! Reports: summaries per strategy, the table, per-call CSV, confidence intervals.

use std::fmt::Write as _;

use serde::Serialize;

use crate::engine::{ControlStats, NONE, Outcome, Run};
use crate::world::World;

/// Latency percentiles, ms.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Mean.
    pub mean: f64,
}

/// Placement stretch: RTT(chosen) / RTT(nearest capable peer), on oracle samples.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stretch {
    /// Samples (remote placements the oracle looked at).
    pub samples: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// Calls that did not succeed, by reason.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Failures {
    /// No online entry peer in the caller's region.
    pub no_entry: u64,
    /// The entry knew no capable peer.
    pub no_capable_peer: u64,
    /// Every attempt failed.
    pub exhausted: u64,
    /// The entry vanished before the answer.
    pub lost: u64,
}

/// One strategy's results.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StrategySummary {
    /// The strategy.
    pub strategy: String,
    /// Calls made.
    pub calls: u64,
    /// Calls answered.
    pub ok: u64,
    /// Calls per function (after alias resolution), in the scenario's order.
    pub calls_by_function: Vec<(String, u64)>,
    /// ok / calls.
    pub success_rate: f64,
    /// Latency of answered calls.
    pub latency_ms: Latency,
    /// Answered calls whose executor had to fetch or wait for the module.
    pub cold_fraction: f64,
    /// Answered calls run by the entry itself.
    pub local_fraction: f64,
    /// Mean attempts per answered call.
    pub mean_attempts: f64,
    /// Placement stretch.
    pub stretch: Stretch,
    /// Module fetches.
    pub fetches: u64,
    /// All bytes moved (requests, responses, modules) per answered call.
    pub bytes_per_call: f64,
    /// Module bytes moved.
    pub fetch_bytes: f64,
    /// Marginal compute + network energy per 1,000 answered calls, joules.
    pub energy_j_per_1000_calls: f64,
    /// Compute cost per 1,000 answered calls, USD.
    pub cost_usd_per_1000_calls: f64,
    /// Failures by reason.
    pub failures: Failures,
    /// Refusals because a peer was full.
    pub refused_busy: u64,
    /// Attempts that met a vanished or unreachable peer.
    pub peer_failures: u64,
    /// Peers going offline during the run.
    pub departures: u64,
    /// Events processed.
    pub events: u64,
    /// The run's trace hash, hex.
    pub trace_hash: String,
    /// The control plane's cost and freshness (neighbourhood model only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<ControlSummary>,
}

/// What the control plane cost per peer, and how fresh what placement used was.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ControlSummary {
    /// Cost per peer.
    #[serde(flatten)]
    pub cost: ControlStats,
    /// Age of the advert the first remote candidate was chosen on, ms: median.
    pub advert_age_ms_p50: f64,
    /// … 99th percentile.
    pub advert_age_ms_p99: f64,
    /// Share of those adverts whose load was no longer true when used.
    pub advert_stale_fraction: f64,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// The sorted latencies (ms) of a run's answered calls.
pub fn latencies(run: &Run) -> Vec<f64> {
    let mut v: Vec<f64> = run.calls.iter().filter_map(|c| c.latency_ms()).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// The sorted stretch samples of a run.
pub fn stretches(run: &Run) -> Vec<f64> {
    let mut v: Vec<f64> = run
        .calls
        .iter()
        .map(|c| f64::from(c.stretch))
        .filter(|s| s.is_finite())
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Summarises one run.
pub fn summarise(world: &World, run: &Run) -> StrategySummary {
    let mut by_function = vec![0u64; world.functions.len()];
    for c in &run.calls {
        if let Some(n) = by_function.get_mut(usize::from(c.function)) {
            *n += 1;
        }
    }
    let calls = run.calls.len() as u64;
    let lat = latencies(run);
    let ok = lat.len() as u64;
    let answered: Vec<_> = run
        .calls
        .iter()
        .filter(|c| c.outcome == Outcome::Ok)
        .collect();
    let per_answered = |n: usize| {
        if answered.is_empty() {
            f64::NAN
        } else {
            n as f64 / answered.len() as f64
        }
    };
    let st = stretches(run);
    let count = |o: Outcome| run.calls.iter().filter(|c| c.outcome == o).count() as u64;
    let t = &run.totals;
    // Normalised by answered calls: work spent on failed calls is a cost of the
    // answered ones, so a strategy that fails more never looks cheaper.
    let per_call = |x: f64| if ok == 0 { f64::NAN } else { x / ok as f64 };
    StrategySummary {
        strategy: run.strategy.name().to_string(),
        calls,
        ok,
        calls_by_function: world
            .functions
            .iter()
            .zip(by_function)
            .map(|(f, n)| (f.spec.name.clone(), n))
            .collect(),
        success_rate: if calls == 0 {
            f64::NAN
        } else {
            ok as f64 / calls as f64
        },
        latency_ms: Latency {
            p50: percentile(&lat, 0.50),
            p90: percentile(&lat, 0.90),
            p99: percentile(&lat, 0.99),
            mean: mean(&lat),
        },
        cold_fraction: per_answered(answered.iter().filter(|c| c.cold).count()),
        local_fraction: per_answered(answered.iter().filter(|c| c.executor == c.entry).count()),
        mean_attempts: per_answered(answered.iter().map(|c| usize::from(c.attempts)).sum()),
        stretch: Stretch {
            samples: st.len() as u64,
            mean: mean(&st),
            p50: percentile(&st, 0.50),
            p99: percentile(&st, 0.99),
        },
        fetches: t.fetches,
        bytes_per_call: per_call(t.call_bytes + t.fetch_bytes),
        fetch_bytes: t.fetch_bytes,
        energy_j_per_1000_calls: per_call(t.compute_joules + t.network_joules) * 1000.0,
        cost_usd_per_1000_calls: per_call(t.cost_usd) * 1000.0,
        failures: Failures {
            no_entry: count(Outcome::NoEntry),
            no_capable_peer: count(Outcome::NoCapablePeer),
            exhausted: count(Outcome::Exhausted),
            lost: count(Outcome::Lost),
        },
        refused_busy: t.refused_busy,
        peer_failures: t.peer_failures,
        departures: t.departures,
        events: t.events,
        trace_hash: hex::encode(run.trace_hash),
        control: run.control.clone().map(|cost| {
            let mut ages: Vec<f64> = run
                .calls
                .iter()
                .filter(|c| c.advert_age_ms.is_finite())
                .map(|c| f64::from(c.advert_age_ms))
                .collect();
            ages.sort_by(f64::total_cmp);
            let stale = run.calls.iter().filter(|c| c.advert_stale).count();
            ControlSummary {
                cost,
                advert_age_ms_p50: percentile(&ages, 0.50),
                advert_age_ms_p99: percentile(&ages, 0.99),
                advert_stale_fraction: if ages.is_empty() {
                    f64::NAN
                } else {
                    stale as f64 / ages.len() as f64
                },
            }
        }),
    }
}

/// The summary of one seed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Scenario file.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Simulated peers (population, then baseline servers).
    pub peers: u64,
    /// Baseline servers among them.
    pub baseline_servers: u64,
    /// Simulated seconds.
    pub duration_s: f64,
    /// Median relative error of Vivaldi RTT predictions after warm-up.
    pub vivaldi_median_error: f64,
    /// One entry per strategy, in the scenario's order.
    pub strategies: Vec<StrategySummary>,
    /// blake3 over the strategies' trace hashes.
    pub trace_hash: String,
}

/// Builds the summary of a seed's runs.
pub fn summary(scenario: &str, seed: u64, duration_s: f64, world: &World, runs: &[Run]) -> Summary {
    let mut h = blake3::Hasher::new();
    for r in runs {
        h.update(&r.trace_hash);
    }
    Summary {
        scenario: scenario.to_string(),
        seed,
        peers: world.peers.len() as u64,
        baseline_servers: (world.peers.len() - world.population) as u64,
        duration_s,
        vivaldi_median_error: world.vivaldi_error,
        strategies: runs.iter().map(|r| summarise(world, r)).collect(),
        trace_hash: h.finalize().to_hex().to_string(),
    }
}

fn cell(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "-".to_string()
    }
}

/// Three significant digits (for values spanning orders of magnitude).
fn sig(v: f64) -> String {
    if !v.is_finite() {
        "-".to_string()
    } else if v == 0.0 {
        "0".to_string()
    } else {
        let digits = (2 - v.abs().log10().floor() as i32).clamp(0, 12) as usize;
        format!("{v:.digits$}")
    }
}

/// The summary as a plain-text table.
pub fn table(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}  seed {}  {} peers  {} s simulated  vivaldi median error {}",
        s.scenario,
        s.seed,
        s.peers,
        s.duration_s,
        cell(s.vivaldi_median_error * 100.0, 1) + "%"
    );
    let _ = writeln!(
        out,
        "{:<8} {:>9} {:>8} {:>8} {:>8} {:>9} {:>6} {:>6} {:>8} {:>8} {:>10} {:>9} {:>9}",
        "strategy",
        "calls",
        "ok %",
        "p50 ms",
        "p99 ms",
        "mean ms",
        "cold%",
        "local%",
        "stretch",
        "str p99",
        "KB/call",
        "J/1k",
        "$/1k"
    );
    for r in &s.strategies {
        let _ = writeln!(
            out,
            "{:<8} {:>9} {:>8} {:>8} {:>8} {:>9} {:>6} {:>6} {:>8} {:>8} {:>10} {:>9} {:>9}",
            r.strategy,
            r.calls,
            cell(r.success_rate * 100.0, 2),
            cell(r.latency_ms.p50, 1),
            cell(r.latency_ms.p99, 1),
            cell(r.latency_ms.mean, 1),
            cell(r.cold_fraction * 100.0, 1),
            cell(r.local_fraction * 100.0, 1),
            cell(r.stretch.mean, 2),
            cell(r.stretch.p99, 2),
            cell(r.bytes_per_call / 1000.0, 2),
            cell(r.energy_j_per_1000_calls, 1),
            sig(r.cost_usd_per_1000_calls),
        );
    }
    for r in &s.strategies {
        if let Some(c) = &r.control {
            let _ = writeln!(
                out,
                "{:<8} control per peer: {} msgs/s (p99 {}), {} B/s (p99 {}), {} neighbours, \
                 {} KiB; advert age at use p50 {} ms, p99 {} ms, stale {}%; warm questions {}, \
                 warm links {}, calls held {} ({} found)",
                r.strategy,
                sig(c.cost.msgs_per_peer_s),
                sig(c.cost.msgs_per_peer_s_p99),
                sig(c.cost.bytes_per_peer_s),
                sig(c.cost.bytes_per_peer_s_p99),
                cell(c.cost.neighbours_per_peer, 1),
                cell(c.cost.memory_bytes_per_peer / 1024.0, 1),
                sig(c.advert_age_ms_p50),
                sig(c.advert_age_ms_p99),
                cell(c.advert_stale_fraction * 100.0, 1),
                c.cost.warm_lookups,
                c.cost.warm_links,
                c.cost.warm_held,
                c.cost.warm_held_found,
            );
        }
    }
    out
}

/// Per-call records as CSV (one header line, then one line per call per strategy).
pub fn calls_csv(
    world: &World,
    runs: &[Run],
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "strategy,call,t_ms,region,function,entry,executor,executor_class,outcome,attempts,cold,latency_ms,rtt_ms,stretch"
    )?;
    for run in runs {
        for (i, c) in run.calls.iter().enumerate() {
            let class = if c.executor == NONE {
                ""
            } else {
                world.classes[world.peers[c.executor as usize].class as usize]
                    .spec
                    .name
                    .as_str()
            };
            let opt = |v: f64| {
                if v.is_finite() {
                    format!("{v:.3}")
                } else {
                    String::new()
                }
            };
            let peer = |p: u32| {
                if p == NONE {
                    String::new()
                } else {
                    p.to_string()
                }
            };
            writeln!(
                out,
                "{},{},{:.3},{},{},{},{},{},{},{},{},{},{},{}",
                run.strategy.name(),
                i,
                c.t0_us as f64 / 1000.0,
                c.region,
                world.functions[c.function as usize].spec.name,
                peer(c.entry),
                peer(c.executor),
                class,
                c.outcome.name(),
                c.attempts,
                u8::from(c.cold),
                opt(c.latency_ms().unwrap_or(f64::NAN)),
                opt(f64::from(c.rtt_ms)),
                opt(f64::from(c.stretch)),
            )?;
        }
    }
    Ok(())
}

/// A mean with its 95% confidence half-width.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Estimate {
    /// Mean over seeds.
    pub mean: f64,
    /// Half-width of the 95% confidence interval (Student's t).
    pub ci95: f64,
}

/// Student's t quantile for a two-sided 95% interval with `df` degrees of freedom.
fn t95(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    T.get(df.wrapping_sub(1)).copied().unwrap_or(1.96)
}

/// Mean and 95% CI of `values` (NaN values are skipped).
pub fn estimate(values: &[f64]) -> Estimate {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let m = mean(&v);
    if v.len() < 2 {
        return Estimate {
            mean: m,
            ci95: f64::NAN,
        };
    }
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64;
    Estimate {
        mean: m,
        ci95: t95(v.len() - 1) * (var / v.len() as f64).sqrt(),
    }
}

/// The metrics aggregated over seeds, by name.
pub const METRICS: [&str; 8] = [
    "success_rate",
    "p50_ms",
    "p99_ms",
    "mean_ms",
    "stretch_mean",
    "bytes_per_call",
    "energy_j_per_1000_calls",
    "cost_usd_per_1000_calls",
];

fn metric(s: &StrategySummary, name: &str) -> f64 {
    match name {
        "success_rate" => s.success_rate,
        "p50_ms" => s.latency_ms.p50,
        "p99_ms" => s.latency_ms.p99,
        "mean_ms" => s.latency_ms.mean,
        "stretch_mean" => s.stretch.mean,
        "bytes_per_call" => s.bytes_per_call,
        "energy_j_per_1000_calls" => s.energy_j_per_1000_calls,
        "cost_usd_per_1000_calls" => s.cost_usd_per_1000_calls,
        _ => f64::NAN,
    }
}

/// One strategy over several seeds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Aggregate {
    /// The strategy.
    pub strategy: String,
    /// `(metric, estimate)` in [`METRICS`] order.
    pub metrics: Vec<(String, Estimate)>,
}

/// Aggregates per-seed summaries (same scenario, same strategies).
pub fn aggregate(seeds: &[Summary]) -> Vec<Aggregate> {
    let Some(first) = seeds.first() else {
        return Vec::new();
    };
    first
        .strategies
        .iter()
        .enumerate()
        .map(|(i, s)| Aggregate {
            strategy: s.strategy.clone(),
            metrics: METRICS
                .iter()
                .map(|m| {
                    let v: Vec<f64> = seeds
                        .iter()
                        .filter_map(|x| x.strategies.get(i))
                        .map(|x| metric(x, m))
                        .collect();
                    (m.to_string(), estimate(&v))
                })
                .collect(),
        })
        .collect()
}

/// The aggregate as a table of `mean ± ci`.
pub fn aggregate_table(seeds: usize, agg: &[Aggregate]) -> String {
    let mut out = format!("means over {seeds} seeds, ± 95% confidence half-width\n");
    let _ = write!(out, "{:<8}", "strategy");
    for m in METRICS {
        let _ = write!(out, " {m:>22}");
    }
    out.push('\n');
    for a in agg {
        let _ = write!(out, "{:<8}", a.strategy);
        for (name, e) in &a.metrics {
            let text = if name.starts_with("cost") {
                format!("{} ± {}", sig(e.mean), sig(e.ci95))
            } else {
                format!("{} ± {}", cell(e.mean, 3), cell(e.ci95, 3))
            };
            let _ = write!(out, " {text:>22}");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_intervals() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert!(percentile(&[], 0.5).is_nan());
        let e = estimate(&[10.0, 12.0, 14.0]);
        assert_eq!(e.mean, 12.0);
        // sd = 2, n = 3, t(2) = 4.303: 4.303 * 2 / sqrt(3).
        assert!((e.ci95 - 4.969).abs() < 0.01, "{e:?}");
        assert!(estimate(&[1.0]).ci95.is_nan());
    }
}
