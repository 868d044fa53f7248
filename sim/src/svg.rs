//! Plots as standalone SVG: line charts with axes, ticks and a legend.

use std::fmt::Write as _;

use crate::engine::Run;
use crate::report;
use crate::world::World;

const W: f64 = 720.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 55.0;
const COLOURS: [&str; 8] = [
    "#1b6ac9", "#d1495b", "#2e933c", "#edae49", "#6a4c93", "#00798c", "#8c564b", "#444444",
];

/// A named series of points.
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Points, in x order.
    pub points: Vec<(f64, f64)>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn nice_ticks(lo: f64, hi: f64, log: bool) -> Vec<f64> {
    if log {
        let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        // Within two decades, 2 and 5 times each power of ten too.
        let steps: &[f64] = if b - a <= 2 { &[1.0, 2.0, 5.0] } else { &[1.0] };
        return (a..=b)
            .flat_map(|e| steps.iter().map(move |m| m * 10f64.powi(e)))
            .filter(|t| *t >= lo * 0.999 && *t <= hi * 1.001)
            .collect();
    }
    let span = (hi - lo).max(1e-12);
    let raw = span / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 7.0)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 && out.len() < 20 {
        out.push(t);
        t += step;
    }
    out
}

fn label(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 10_000.0 || v.abs() < 0.01) {
        format!("{v:.0e}")
    } else if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}").trim_end_matches('0').to_string()
    }
}

/// A line chart. `log_x` plots x on a log scale (non-positive x are dropped).
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_x: bool,
) -> String {
    chart(title, x_label, y_label, series, log_x, false)
}

/// A line chart with both axes on log scales (non-positive values are dropped).
pub fn log_log_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    chart(title, x_label, y_label, series, true, true)
}

fn chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_x: bool,
    log_y: bool,
) -> String {
    let keep = |x: f64, y: f64| {
        x.is_finite() && y.is_finite() && (!log_x || x > 0.0) && (!log_y || y > 0.0)
    };
    let pts = || {
        series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(x, y)| keep(*x, *y))
    };
    let mut y0 = if log_y { f64::INFINITY } else { 0.0f64 };
    let (mut x0, mut x1, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY);
    for &(x, y) in pts() {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if !x0.is_finite() {
        (x0, x1, y1) = (if log_x { 1.0 } else { 0.0 }, 10.0, 1.0);
        y0 = if log_y { 0.1 } else { 0.0 };
    }
    if x1 <= x0 {
        x1 = if log_x { x0 * 10.0 } else { x0 + 1.0 };
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    if log_x {
        x0 = 10f64.powf(x0.log10().floor());
        x1 = 10f64.powf(x1.log10().ceil());
    }
    if log_y {
        y0 = 10f64.powf(y0.log10().floor());
        y1 = 10f64.powf(y1.log10().ceil()).max(y0 * 10.0);
    }
    let fx = |x: f64| {
        let r = if log_x {
            (x.log10() - x0.log10()) / (x1.log10() - x0.log10())
        } else {
            (x - x0) / (x1 - x0)
        };
        LEFT + r * (W - LEFT - RIGHT)
    };
    let fy = |y: f64| {
        let r = if log_y {
            (y.log10() - y0.log10()) / (y1.log10() - y0.log10())
        } else {
            (y - y0) / (y1 - y0)
        };
        H - BOTTOM - r * (H - TOP - BOTTOM)
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        escape(title)
    );
    for t in nice_ticks(x0, x1, log_x) {
        let x = fx(t);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#e4e4e4"/>"##,
            H - BOTTOM
        );
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            H - BOTTOM + 16.0,
            label(t)
        );
    }
    for t in nice_ticks(y0, y1, log_y) {
        let y = fy(t);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e4e4e4"/>"##,
            W - RIGHT
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y + 4.0,
            label(t)
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{:.1}" height="{:.1}" fill="none" stroke="#888"/>"##,
        W - LEFT - RIGHT,
        H - TOP - BOTTOM
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 12.0,
        escape(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        (TOP + H - BOTTOM) / 2.0,
        escape(y_label)
    );
    for (i, series) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = series
            .points
            .iter()
            .filter(|(x, y)| keep(*x, *y))
            .map(|&(x, y)| format!("{:.1},{:.1}", fx(x), fy(y)))
            .collect();
        // Markers where there are few points (a sweep), not on a CDF.
        for p in path.iter().filter(|_| path.len() <= 20) {
            if let Some((x, y)) = p.split_once(',') {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{x}" cy="{y}" r="3" fill="{}"/>"#,
                    COLOURS[i % COLOURS.len()]
                );
            }
        }
        if !path.is_empty() {
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
        }
        let ly = TOP + 10.0 + 20.0 * i as f64;
        let lx = W - RIGHT + 14.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="3"/>"#,
            lx + 22.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}">{}</text>"#,
            lx + 28.0,
            ly + 4.0,
            escape(&series.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// An empirical CDF with at most ~400 points.
fn cdf(sorted: &[f64]) -> Vec<(f64, f64)> {
    let n = sorted.len();
    if n == 0 {
        return Vec::new();
    }
    let step = (n / 400).max(1);
    let mut out: Vec<(f64, f64)> = (0..n)
        .step_by(step)
        .map(|i| (sorted[i], (i + 1) as f64 / n as f64))
        .collect();
    out.push((sorted[n - 1], 1.0));
    out
}

/// Latency CDF, one line per strategy.
pub fn latency_cdf(runs: &[Run]) -> String {
    let series: Vec<Series> = runs
        .iter()
        .map(|r| Series {
            name: r.strategy.name().to_string(),
            points: cdf(&report::latencies(r)),
        })
        .collect();
    line_chart(
        "Latency of answered calls",
        "latency (ms, log scale)",
        "fraction of calls",
        &series,
        true,
    )
}

/// Placement stretch CDF, one line per strategy.
pub fn stretch_cdf(runs: &[Run]) -> String {
    let series: Vec<Series> = runs
        .iter()
        .map(|r| Series {
            name: r.strategy.name().to_string(),
            points: cdf(&report::stretches(r)),
        })
        .collect();
    line_chart(
        "Placement stretch: RTT(chosen) / RTT(nearest capable)",
        "stretch (log scale)",
        "fraction of sampled remote placements",
        &series,
        true,
    )
}

/// Utilisation per device class over time for one run.
pub fn load(world: &World, run: &Run) -> String {
    let bucket_s = run.load.bucket_us as f64 / 1e6;
    let series: Vec<Series> = world
        .classes
        .iter()
        .enumerate()
        .map(|(c, class)| Series {
            name: class.spec.name.clone(),
            points: run.load.busy[c]
                .iter()
                .zip(&run.load.offered[c])
                .enumerate()
                .map(|(b, (busy, offered))| {
                    let u = if *offered > 0.0 {
                        busy / offered
                    } else {
                        f64::NAN
                    };
                    ((b as f64 + 0.5) * bucket_s, u)
                })
                .collect(),
        })
        .collect();
    line_chart(
        &format!("Load per device class ({})", run.strategy.name()),
        "time (s)",
        "busy slots / online slots",
        &series,
        false,
    )
}
