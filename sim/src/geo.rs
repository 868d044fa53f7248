//! Geography and the latency model.
//!
//! A device sits at a point on the sphere (its region's centre plus a uniform offset
//! within the region's radius). The base RTT between two devices is
//!
//! ```text
//! rtt = 2 × (access_a + access_b) + path
//! path = 2 × great_circle_km × path_inflation / fibre_km_per_ms
//! ```
//!
//! or, between two different regions listed in a measured RTT matrix, the matrix's
//! value in place of `path`. Each message also gains a uniform `0..jitter_ms` of
//! one-way delay (drawn by the engine).

use crate::rng::Rng;

/// Mean Earth radius, km.
pub const EARTH_RADIUS_KM: f64 = 6_371.0;

/// A point on the unit sphere.
pub type Point = [f32; 3];

/// The unit vector of a latitude and longitude in degrees.
pub fn point(lat_deg: f64, lon_deg: f64) -> Point {
    let (lat, lon) = (lat_deg.to_radians(), lon_deg.to_radians());
    [
        (lat.cos() * lon.cos()) as f32,
        (lat.cos() * lon.sin()) as f32,
        lat.sin() as f32,
    ]
}

/// A uniformly random point within `radius_km` of `(lat, lon)`.
pub fn scatter(lat_deg: f64, lon_deg: f64, radius_km: f64, rng: &mut Rng) -> Point {
    let r = radius_km * rng.unit().sqrt();
    let bearing = rng.unit() * std::f64::consts::TAU;
    let dlat = r * bearing.cos() / 111.2;
    let dlon = r * bearing.sin() / (111.2 * lat_deg.to_radians().cos().abs().max(0.01));
    point((lat_deg + dlat).clamp(-90.0, 90.0), lon_deg + dlon)
}

/// Great-circle distance between two unit vectors, km.
pub fn distance_km(a: &Point, b: &Point) -> f64 {
    let chord = a
        .iter()
        .zip(b)
        .map(|(x, y)| {
            let d = f64::from(*x) - f64::from(*y);
            d * d
        })
        .sum::<f64>()
        .sqrt();
    2.0 * EARTH_RADIUS_KM * (chord / 2.0).min(1.0).asin()
}

/// The latency model of a scenario.
#[derive(Debug, Clone)]
pub struct Latency {
    km_per_ms: f64,
    inflation: f64,
    regions: usize,
    /// Measured inter-region RTTs, row-major; NaN where not given.
    matrix: Vec<f64>,
}

/// Why a measured RTT matrix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("RTT matrix line {line}: {message}")]
pub struct MatrixError {
    /// 1-based line of the CSV.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl Latency {
    /// The model for `regions` regions, with no measured matrix.
    pub fn new(km_per_ms: f64, inflation: f64, regions: usize) -> Self {
        Self {
            km_per_ms,
            inflation,
            regions,
            matrix: vec![f64::NAN; regions * regions],
        }
    }

    /// Loads a measured matrix: CSV lines `from,to,rtt_ms` naming regions (an optional
    /// `from,…` header line and `#` comments are skipped). Each pair applies both ways.
    ///
    /// # Errors
    /// The first line that is not three fields, names an unknown region, or has an
    /// RTT that is not a finite non-negative number.
    pub fn load_matrix(
        &mut self,
        csv: &str,
        region_index: impl Fn(&str) -> Option<usize>,
    ) -> Result<(), MatrixError> {
        let mut seen_data = false;
        for (i, raw) in csv.lines().enumerate() {
            let line = raw.trim();
            let err = |message: String| MatrixError {
                line: i + 1,
                message,
            };
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if !seen_data && line.starts_with("from,") {
                seen_data = true; // the header
                continue;
            }
            seen_data = true;
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [from, to, rtt] = fields[..] else {
                return Err(err(format!(
                    "expected from,to,rtt_ms; got {} fields",
                    fields.len()
                )));
            };
            let a =
                region_index(from).ok_or_else(|| err(format!("no region called \"{from}\"")))?;
            let b = region_index(to).ok_or_else(|| err(format!("no region called \"{to}\"")))?;
            let v: f64 = rtt
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0 && *v < 1e6)
                .ok_or_else(|| err(format!("rtt_ms \"{rtt}\" is not a number in 0..1000000")))?;
            self.matrix[a * self.regions + b] = v;
            self.matrix[b * self.regions + a] = v;
        }
        Ok(())
    }

    /// The measured path RTT between two different regions, if the matrix has one.
    fn measured(&self, ra: usize, rb: usize) -> Option<f64> {
        (ra != rb)
            .then(|| self.matrix[ra * self.regions + rb])
            .filter(|v| !v.is_nan())
    }

    /// The RTT between two devices without jitter, ms.
    pub fn base_rtt_ms(
        &self,
        (ra, pa, access_a): (usize, &Point, f64),
        (rb, pb, access_b): (usize, &Point, f64),
    ) -> f64 {
        let path = self
            .measured(ra, rb)
            .unwrap_or_else(|| 2.0 * distance_km(pa, pb) * self.inflation / self.km_per_ms);
        2.0 * (access_a + access_b) + path
    }

    /// A lower bound on the base RTT from a device to any device of region `rb`
    /// (centre, radius and smallest access delay given), ms.
    pub fn lower_bound_ms(
        &self,
        (ra, pa, access_a): (usize, &Point, f64),
        (rb, centre, radius_km, min_access): (usize, &Point, f64, f64),
    ) -> f64 {
        let path = self.measured(ra, rb).unwrap_or_else(|| {
            2.0 * (distance_km(pa, centre) - radius_km - 1.0).max(0.0) * self.inflation
                / self.km_per_ms
        });
        2.0 * (access_a + min_access) + path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    #[test]
    fn distances_are_great_circles() {
        let london = point(51.507, -0.128);
        let new_york = point(40.713, -74.006);
        let d = distance_km(&london, &new_york);
        assert!((d - 5_570.0).abs() < 20.0, "{d}");
        assert!(distance_km(&london, &london) < 1e-6);
    }

    #[test]
    fn scatter_stays_in_the_disc() {
        let mut rng = Rng::stream(1, Stream::World, 0);
        let centre = point(60.0, 10.0);
        for _ in 0..1000 {
            let p = scatter(60.0, 10.0, 25.0, &mut rng);
            assert!(distance_km(&centre, &p) <= 25.5);
        }
    }

    #[test]
    fn matrix_overrides_and_reports_bad_lines() {
        let mut l = Latency::new(200.0, 1.5, 2);
        let idx = |n: &str| ["a", "b"].iter().position(|x| *x == n);
        let (pa, pb) = (point(0.0, 0.0), point(0.0, 90.0));
        let geo = l.base_rtt_ms((0, &pa, 1.0), (1, &pb, 2.0));
        assert!(
            (geo - (6.0 + 2.0 * 10_007.5 * 1.5 / 200.0)).abs() < 1.0,
            "{geo}"
        );
        l.load_matrix("from,to,rtt_ms\na,b,80\n", idx)
            .expect("valid");
        assert_eq!(l.base_rtt_ms((1, &pb, 2.0), (0, &pa, 1.0)), 86.0);
        let e = l.load_matrix("a,b,80\na,c,3\n", idx).expect_err("unknown");
        assert_eq!(e.line, 2);
        let e = l.load_matrix("a,b,-1", idx).expect_err("negative");
        assert!(e.to_string().contains("not a number"), "{e}");
    }
}
