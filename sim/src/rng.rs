//! Seeded random streams.
//!
//! Every source of randomness in a run is its own stream derived from the seed and a
//! stream label (a peer's churn, a region's arrivals, an entry's random choices), so
//! adding a consumer never shifts what the others draw. The generator is
//! xoshiro256** seeded through SplitMix64: small, fast and identical on every
//! platform.

use crate::scenario::Duration;

/// Labels of the kinds of stream, mixed into the seed.
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
pub enum Stream {
    /// Building the world (positions, views).
    World = 1,
    /// One peer's churn and crashes.
    Churn = 2,
    /// One region's call arrivals and function choice.
    Arrivals = 3,
    /// One entry peer's choices (random strategy, jitter).
    Choice = 4,
    /// Vivaldi warm-up.
    Vivaldi = 5,
    /// The control plane (message loss, lookups, machines' seeds).
    Control = 6,
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A random stream.
#[derive(Debug, Clone)]
pub struct Rng([u64; 4]);

impl Rng {
    /// The stream `(kind, index)` of `seed`.
    pub fn stream(seed: u64, kind: Stream, index: u64) -> Self {
        let mut s = seed ^ (kind as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut s = splitmix(&mut s) ^ index.wrapping_mul(0x8CB9_2BA7_2F3D_8DD7);
        Self(std::array::from_fn(|_| splitmix(&mut s)))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let out = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in (0, 1]: safe to take the log of.
    fn open_unit(&mut self) -> f64 {
        1.0 - self.unit()
    }

    /// Uniform integer in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        // Lemire's multiply-shift; the tiny bias is irrelevant here.
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }

    /// Exponential with the given mean.
    pub fn exp(&mut self, mean: f64) -> f64 {
        -self.open_unit().ln() * mean
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.open_unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// A sample of `d`, in seconds; infinity for [`Duration::Forever`].
    pub fn duration(&mut self, d: Duration) -> f64 {
        match d {
            Duration::Forever => f64::INFINITY,
            Duration::Exponential { mean_s } => self.exp(mean_s),
            Duration::Lognormal { median_s, sigma } => median_s * (sigma * self.normal()).exp(),
            Duration::Weibull { scale_s, shape } => {
                scale_s * (-self.open_unit().ln()).powf(1.0 / shape)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4)
            .map(|_| Rng::stream(7, Stream::Churn, 3).next_u64())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut x = Rng::stream(7, Stream::Churn, 3);
        let mut y = Rng::stream(7, Stream::Churn, 4);
        let mut z = Rng::stream(8, Stream::Churn, 3);
        let (x, y, z) = (x.next_u64(), y.next_u64(), z.next_u64());
        assert!(x != y && x != z && y != z);
    }

    #[test]
    fn distributions_have_their_means() {
        let mut r = Rng::stream(1, Stream::World, 0);
        let n = 200_000;
        let mean = (0..n).map(|_| r.exp(3.0)).sum::<f64>() / f64::from(n);
        assert!((mean - 3.0).abs() < 0.05, "{mean}");
        let unit = (0..n).map(|_| r.unit()).sum::<f64>() / f64::from(n);
        assert!((unit - 0.5).abs() < 0.01, "{unit}");
        let mut below = [0u32; 4];
        for _ in 0..n {
            below[r.below(4) as usize] += 1;
        }
        assert!(
            below.iter().all(|c| (*c as i64 - 50_000).abs() < 1_500),
            "{below:?}"
        );
        let median = {
            let mut v: Vec<f64> = (0..n)
                .map(|_| {
                    r.duration(Duration::Lognormal {
                        median_s: 10.0,
                        sigma: 1.0,
                    })
                })
                .collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        assert!((median - 10.0).abs() < 0.3, "{median}");
    }
}
