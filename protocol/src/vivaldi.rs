//! Network coordinates (Vivaldi with height vectors), so a peer can estimate the RTT to
//! peers it has never measured.
//!
//! Each peer keeps a coordinate: a point in 3-D Euclidean space plus a non-negative
//! "height" (the access-link delay every path to it pays) and an error estimate. The
//! predicted RTT between two peers is `|a - b| + a.height + b.height`, in milliseconds.
//! Each RTT sample against a peer whose coordinate is known moves the local coordinate
//! a step along the error, weighted by the two error estimates (Dabek et al., 2004).
//! Coordinates travel in capacity adverts.
//!
//! Pure and deterministic: when two coordinates coincide, the caller supplies the
//! direction to push apart along (the node derives it from the two peer ids).

use serde::{Deserialize, Serialize};

/// Tuning constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Weight of the error estimate update (c_e).
    pub ce: f64,
    /// Weight of the coordinate update (c_c).
    pub cc: f64,
    /// Smallest height, in milliseconds.
    pub min_height: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ce: 0.25,
            cc: 0.25,
            min_height: 0.01,
        }
    }
}

/// A network coordinate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Coord {
    /// Position, in milliseconds.
    pub pos: [f32; 3],
    /// Height (access delay), in milliseconds.
    pub height: f32,
    /// Relative error estimate, in 0..=1 (1 = knows nothing).
    pub error: f32,
}

impl Default for Coord {
    fn default() -> Self {
        Self {
            pos: [0.0; 3],
            height: 0.01,
            error: 1.0,
        }
    }
}

/// The largest coordinate magnitude accepted from a peer, in milliseconds.
pub const MAX_MAGNITUDE: f32 = 100_000.0;

impl Coord {
    /// Predicted RTT to `other`, in milliseconds.
    pub fn rtt_ms(&self, other: &Coord) -> f64 {
        distance(&self.pos, &other.pos) + f64::from(self.height) + f64::from(other.height)
    }

    /// True if and only if every field is finite and within plausible bounds.
    pub fn is_sane(&self) -> bool {
        self.pos
            .iter()
            .all(|v| v.is_finite() && v.abs() <= MAX_MAGNITUDE)
            && self.height.is_finite()
            && (0.0..=MAX_MAGNITUDE).contains(&self.height)
            && self.error.is_finite()
            && (0.0..=1.0).contains(&self.error)
    }

    /// Moves this coordinate given an RTT sample `rtt_ms` to a peer at `remote`.
    /// `fallback` is the unit-ish direction to push along when the two positions
    /// coincide. Samples that are not finite and positive, or remotes that are not
    /// sane, are ignored.
    pub fn observe(&mut self, remote: &Coord, rtt_ms: f64, fallback: [f32; 3], config: &Config) {
        if !(rtt_ms.is_finite() && rtt_ms > 0.0 && remote.is_sane()) {
            return;
        }
        let (le, re) = (f64::from(self.error), f64::from(remote.error));
        let weight = if le + re > 0.0 { le / (le + re) } else { 0.5 };
        let predicted = self.rtt_ms(remote);
        let sample_error = ((predicted - rtt_ms).abs() / rtt_ms).min(1.0);
        let alpha = config.ce * weight;
        let error = sample_error * alpha + le * (1.0 - alpha);
        self.error = error.clamp(0.0, 1.0) as f32;

        let delta = config.cc * weight;
        let force = delta * (rtt_ms - predicted);
        // Unit vector from remote to us (in the height-vector space the height
        // components add, so the height moves with the same sign).
        let mut dir = [0.0f64; 3];
        let mut norm = 0.0;
        for (i, d) in dir.iter_mut().enumerate() {
            *d = f64::from(self.pos[i]) - f64::from(remote.pos[i]);
            norm += *d * *d;
        }
        let mut norm = norm.sqrt();
        if norm < 1e-9 {
            for (i, d) in dir.iter_mut().enumerate() {
                *d = f64::from(fallback[i]);
            }
            norm = dir.iter().map(|d| d * d).sum::<f64>().sqrt().max(1e-9);
        }
        let height_sum = f64::from(self.height) + f64::from(remote.height);
        let total = norm + height_sum;
        for (i, d) in dir.iter().enumerate() {
            let moved = f64::from(self.pos[i]) + force * d / total;
            self.pos[i] = moved.clamp(-f64::from(MAX_MAGNITUDE), f64::from(MAX_MAGNITUDE)) as f32;
        }
        let height = f64::from(self.height) + force * f64::from(self.height) / total.max(1e-9);
        self.height = height.clamp(config.min_height, f64::from(MAX_MAGNITUDE)) as f32;
    }
}

fn distance(a: &[f32; 3], b: &[f32; 3]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = f64::from(*x) - f64::from(*y);
            d * d
        })
        .sum::<f64>()
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four peers on a line with known RTTs converge to predictions within 15%.
    #[test]
    fn converges_on_a_simple_topology() {
        let truth = |a: usize, b: usize| -> f64 { 5.0 + 20.0 * (a as f64 - b as f64).abs() };
        let mut coords = [Coord::default(); 4];
        let config = Config::default();
        for round in 0..400 {
            for a in 0..4 {
                let b = (a + 1 + round % 3) % 4;
                let remote = coords[b];
                let fallback = [(a as f32) - 1.5, (b as f32) * 0.5 - 0.7, 0.3];
                coords[a].observe(&remote, truth(a, b), fallback, &config);
            }
        }
        for a in 0..4 {
            for b in 0..4 {
                if a != b {
                    let predicted = coords[a].rtt_ms(&coords[b]);
                    let real = truth(a, b);
                    assert!(
                        (predicted - real).abs() / real < 0.15,
                        "{a}->{b}: predicted {predicted:.1} vs {real:.1}"
                    );
                }
            }
        }
        assert!(coords.iter().all(|c| c.error < 0.3 && c.is_sane()));
    }

    #[test]
    fn ignores_garbage() {
        let mut c = Coord::default();
        let before = c;
        c.observe(
            &Coord::default(),
            f64::NAN,
            [1.0, 0.0, 0.0],
            &Config::default(),
        );
        c.observe(&Coord::default(), -3.0, [1.0, 0.0, 0.0], &Config::default());
        let insane = Coord {
            pos: [f32::INFINITY, 0.0, 0.0],
            ..Coord::default()
        };
        c.observe(&insane, 10.0, [1.0, 0.0, 0.0], &Config::default());
        assert_eq!(c, before);
    }
}
