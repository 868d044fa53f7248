//! The scale sweep's plot: control cost per peer against network size, log-log, from
//! the `summary.json` of runs at different sizes (`kith-sim scale`).

use crate::svg::{self, Series};

/// Why a summary could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// Not JSON.
    #[error("{0}: not a kith-sim summary.json: {1}")]
    Json(String, serde_json::Error),
    /// No kith run with the control plane modelled as messages.
    #[error(
        "{0}: has no kith run with `sim.control = \"neighbourhood\"` (its control cost is not measured)"
    )]
    NoControl(String),
}

/// One sweep point: peers, and per-peer control cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Peers in the run.
    pub peers: f64,
    /// Control bytes per peer-second, mean over peers.
    pub bytes_mean: f64,
    /// … the 99th percentile over peers.
    pub bytes_p99: f64,
    /// Control messages per peer-second, mean over peers.
    pub msgs_mean: f64,
}

/// The sweep point in one `summary.json` (named `name` in errors).
///
/// # Errors
/// Not JSON, or no kith run with its control cost measured.
pub fn point(name: &str, json: &str) -> Result<Point, ScaleError> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| ScaleError::Json(name.to_owned(), e))?;
    let kith = v["strategies"]
        .as_array()
        .and_then(|s| s.iter().find(|r| r["strategy"] == "kith"));
    let c = kith
        .map(|k| &k["control"])
        .filter(|c| c.is_object())
        .ok_or_else(|| ScaleError::NoControl(name.to_owned()))?;
    let num = |x: &serde_json::Value| x.as_f64().unwrap_or(f64::NAN);
    Ok(Point {
        peers: num(&v["peers"]),
        bytes_mean: num(&c["bytes_per_peer_s"]),
        bytes_p99: num(&c["bytes_per_peer_s_p99"]),
        msgs_mean: num(&c["msgs_per_peer_s"]),
    })
}

/// Control bytes per peer-second against peers, both axes logarithmic, with the
/// 10 kB/s target.
pub fn plot(points: &[Point]) -> String {
    let mut p = points.to_vec();
    p.sort_by(|a, b| a.peers.total_cmp(&b.peers));
    let (lo, hi) = (
        p.first().map_or(1_000.0, |x| x.peers),
        p.last().map_or(1_000_000.0, |x| x.peers),
    );
    let series = [
        Series {
            name: "mean".into(),
            points: p.iter().map(|x| (x.peers, x.bytes_mean)).collect(),
        },
        Series {
            name: "p99 over peers".into(),
            points: p.iter().map(|x| (x.peers, x.bytes_p99)).collect(),
        },
        Series {
            name: "target 10 kB/s".into(),
            points: vec![(lo, 10_000.0), (hi, 10_000.0)],
        },
    ];
    svg::log_log_chart(
        "Control traffic per peer against network size",
        "peers",
        "control bytes per peer-second (in + out)",
        &series,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_gives_its_point_and_one_without_control_says_so() {
        let json = r#"{"peers": 1000, "strategies": [{"strategy": "kith", "control":
            {"bytes_per_peer_s": 1900.5, "bytes_per_peer_s_p99": 4500, "msgs_per_peer_s": 30}}]}"#;
        let p = point("a", json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (p.peers, p.bytes_mean, p.bytes_p99, p.msgs_mean),
            (1000.0, 1900.5, 4500.0, 30.0)
        );
        let none = r#"{"peers": 5, "strategies": [{"strategy": "kith", "control": null}]}"#;
        assert!(matches!(point("b", none), Err(ScaleError::NoControl(_))));
        assert!(matches!(point("c", "{"), Err(ScaleError::Json(..))));
        let svg = plot(&[
            p,
            Point {
                peers: 10_000.0,
                ..p
            },
        ]);
        assert!(svg.starts_with("<svg") && svg.contains("target 10 kB/s"));
        assert_eq!(
            svg.matches("<circle").count(),
            6,
            "markers on the sweep points"
        );
    }
}
