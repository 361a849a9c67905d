//! [`Ewma`]: an exponentially weighted mean and variance band. Owns only that math.

use super::{num, ratio, split};
use crate::policy::{Anomaly, AnomalyScorer, MetricSample};

/// Flags the newest sample when it leaves an exponentially weighted band around the recent level.
///
/// Use it for metrics whose normal level moves (traffic-driven latency, throughput over the day): the mean follows
/// a slow drift, so only sudden jumps are flagged, unlike [`ZScore`](crate::policy::ZScore) whose mean over the whole
/// window lags behind a trend. The mean and variance are computed over the samples before the newest, oldest first
/// (incremental EW variance, Finch 2009); anomalous when `|x − mean| > k·max(σ, min_deviation)`, scored
/// `|x − mean| / max(σ, min_deviation)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ewma {
    /// Weight of each new sample, in (0, 1]; larger follows faster. Outside that range nothing is judged.
    pub alpha: f64,
    /// Deviations (in σ) that count as anomalous.
    pub k: f64,
    /// Earlier finite samples needed before anything is judged.
    pub min_samples: usize,
    /// Floor of σ in the metric's unit, so a flat series does not flag every blip. Lower it for ratios.
    pub min_deviation: f64,
}

impl Default for Ewma {
    fn default() -> Self {
        Ewma { alpha: 0.3, k: 3.0, min_samples: 5, min_deviation: 1.0 }
    }
}

impl Ewma {
    /// The weighted mean and standard deviation of `values` (oldest first, at least one).
    fn band(&self, values: &[f64]) -> Option<(f64, f64)> {
        let (&first, rest) = values.split_first()?;
        let (mut mean, mut var) = (first, 0.0);
        for &x in rest {
            let diff = x - mean;
            let incr = self.alpha * diff;
            mean += incr;
            var = (1.0 - self.alpha) * (var + diff * incr);
        }
        Some((mean, var.max(0.0).sqrt()))
    }
}

impl AnomalyScorer for Ewma {
    fn score(&self, metric: &str, window: &[MetricSample]) -> Option<Anomaly> {
        if !(self.alpha > 0.0 && self.alpha <= 1.0) {
            return None;
        }
        let (x, history) = split(window)?;
        if history.len() < self.min_samples.max(1) {
            return None;
        }
        let (mean, sigma) = self.band(&history)?;
        let scale = sigma.max(self.min_deviation);
        let dev = (x - mean).abs();
        (dev > self.k * scale).then(|| {
            let score = ratio(dev, scale);
            Anomaly {
                score,
                reason: format!(
                    "{metric} {} is {score:.1}σ from the moving average {} (σ {})",
                    num(x),
                    num(mean),
                    num(sigma)
                ),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::series;
    use super::*;
    use crate::policy::ZScore;

    #[test]
    fn a_spike_on_a_flat_series_is_flagged() {
        let e = Ewma::default();
        let a = e.score("latency", &series(&[100.0, 101.0, 99.0, 100.0, 100.0, 101.0, 180.0])).unwrap();
        assert!(a.score > 3.0 && a.reason.starts_with("latency 180.0 is"), "{a:?}");
        assert_eq!(e.score("latency", &series(&[100.0, 101.0, 99.0, 100.0, 100.0, 101.0, 101.5])), None);
        assert!(e.score("latency", &series(&[100.0, 100.0, 100.0, 100.0, 100.0, 90.0])).is_some(), "drops too");
    }

    #[test]
    fn a_gradual_drift_is_followed_not_flagged() {
        // A ramp after a long plateau: the whole-window mean lags far behind, the moving average keeps up.
        let mut values = vec![100.0; 60];
        values.extend((1..=15).map(|i| 100.0 + 0.5 * f64::from(i)));
        let e = Ewma::default();
        for end in 6..=values.len() {
            assert_eq!(e.score("latency", &series(&values[..end])), None, "flagged at {end}");
        }
        assert!(ZScore::default().score("latency", &series(&values)).is_some(), "the plain z-score does flag it");
    }

    #[test]
    fn nan_is_skipped_and_min_samples_is_honoured() {
        let e = Ewma { min_samples: 4, ..Ewma::default() };
        assert_eq!(e.score("latency", &series(&[10.0, 10.0, f64::NAN, 10.0, 50.0])), None, "3 finite < 4");
        assert!(e.score("latency", &series(&[10.0, 10.0, f64::NAN, 10.0, 10.0, 50.0])).is_some());
        assert_eq!(e.score("latency", &series(&[10.0, 10.0, 10.0, 10.0, 10.0, f64::NAN])), None);
        assert_eq!(Ewma { alpha: 0.0, ..e }.score("latency", &series(&[10.0, 10.0, 10.0, 10.0, 50.0])), None);
    }

    #[test]
    fn the_band_matches_a_hand_computation() {
        let e = Ewma { alpha: 0.5, ..Ewma::default() };
        // mean: 0 → 1 → 2.5; var: 0 → 0.5·(0 + 2·1) = 1 → 0.5·(1 + 3·1.5) = 2.75
        let (mean, sigma) = e.band(&[0.0, 2.0, 4.0]).unwrap();
        assert!((mean - 2.5).abs() < 1e-12 && (sigma - 2.75f64.sqrt()).abs() < 1e-12, "{mean} {sigma}");
    }
}
