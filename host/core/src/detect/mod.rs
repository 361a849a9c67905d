//! Built-in anomaly detectors beyond the plain [`ZScore`](crate::policy::ZScore): a static [`Threshold`], an
//! exponentially weighted [`Ewma`] band and a median/MAD [`RobustZ`]. Each implements
//! [`AnomalyScorer`](crate::policy::AnomalyScorer) and judges the newest sample of a window against the samples
//! before it. Owns the math only: no series collection, no clock, no alert state.
//!
//! Shared conventions: non-finite samples in the history are skipped, a non-finite newest sample is never judged,
//! too little history yields `None`, and scores are finite (capped at [`MAX_SCORE`]).

mod ewma;
mod robust_z;
mod threshold;

pub use ewma::Ewma;
pub use robust_z::RobustZ;
pub use threshold::{Direction, Threshold};

use crate::policy::MetricSample;

/// The cap on every score, so a zero denominator still produces a finite, comparable number.
pub const MAX_SCORE: f64 = 1e9;

/// The newest sample's value (if finite) and the finite values before it, oldest first.
fn split(window: &[MetricSample]) -> Option<(f64, Vec<f64>)> {
    let (newest, history) = window.split_last()?;
    newest
        .value
        .is_finite()
        .then(|| (newest.value, history.iter().map(|s| s.value).filter(|v| v.is_finite()).collect()))
}

/// `num / den`, capped at [`MAX_SCORE`]; a non-positive denominator counts as "infinitely" far.
fn ratio(num: f64, den: f64) -> f64 {
    if den > 0.0 { (num / den).clamp(0.0, MAX_SCORE) } else { MAX_SCORE }
}

/// A value for a human reason: one decimal for ordinary magnitudes, up to four for small ratios like error rates.
fn num(v: f64) -> String {
    if v == 0.0 || v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').to_owned()
    }
}

#[cfg(test)]
fn series(values: &[f64]) -> Vec<MetricSample> {
    values.iter().enumerate().map(|(i, &value)| MetricSample { at_ms: i as u64 * 1000, value }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well_in_reasons() {
        assert_eq!(num(812.0), "812.0");
        assert_eq!(num(0.0), "0.0");
        assert_eq!(num(0.05), "0.05");
        assert_eq!(num(0.12345), "0.1235");
        assert_eq!(ratio(1.0, 0.0), MAX_SCORE);
        assert_eq!(ratio(f64::MAX, 1e-300), MAX_SCORE);
    }

    #[test]
    fn split_skips_non_finite_history_and_refuses_non_finite_newest() {
        assert_eq!(split(&series(&[1.0, f64::NAN, 2.0, f64::INFINITY, 3.0])), Some((3.0, vec![1.0, 2.0])));
        assert_eq!(split(&series(&[1.0, 2.0, f64::NAN])), None);
        assert_eq!(split(&[]), None);
    }
}
