//! [`RobustZ`]: the modified z-score of Iglewicz and Hoaglin, from the median and the median absolute deviation.
//! Owns only that math.

use super::{num, ratio, split};
use crate::policy::{Anomaly, AnomalyScorer, MetricSample};

/// 0.6745 is the 0.75 quantile of the standard normal, so `MAD / 0.6745` estimates σ for normal data.
const NORMAL_MAD: f64 = 0.6745;

/// Flags the newest sample by its modified z-score `0.6745·(x − median) / MAD` over the earlier samples.
///
/// Use it when the history itself may hold outliers (an earlier incident, a GC pause): the median and MAD ignore
/// them, where one huge earlier value inflates the σ of [`ZScore`](crate::policy::ZScore) enough to hide the next
/// incident. Anomalous when `|M| > k` (Iglewicz–Hoaglin recommend 3.5); the score is `|M|`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RobustZ {
    /// Modified z-score that counts as anomalous.
    pub k: f64,
    /// Earlier finite samples needed before anything is judged.
    pub min_samples: usize,
    /// Floor of the MAD in the metric's unit: when more than half the history is identical the MAD is zero.
    pub min_mad: f64,
}

impl Default for RobustZ {
    fn default() -> Self {
        RobustZ { k: 3.5, min_samples: 5, min_mad: 1.0 }
    }
}

/// The median of finite `values` (sorted in place); `None` when empty.
fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

impl AnomalyScorer for RobustZ {
    fn score(&self, metric: &str, window: &[MetricSample]) -> Option<Anomaly> {
        let (x, mut history) = split(window)?;
        if history.len() < self.min_samples.max(1) {
            return None;
        }
        let med = median(&mut history)?;
        let mut deviations: Vec<f64> = history.iter().map(|v| (v - med).abs()).collect();
        let mad = median(&mut deviations)?.max(self.min_mad);
        let dev = NORMAL_MAD * (x - med).abs();
        (dev > self.k * mad).then(|| {
            let score = ratio(dev, mad);
            Anomaly {
                score,
                reason: format!(
                    "{metric} {} has modified z-score {score:.1} (median {}, MAD {})",
                    num(x),
                    num(med),
                    num(mad)
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
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn a_spike_on_a_flat_series_is_flagged() {
        let r = RobustZ::default();
        let a = r.score("latency", &series(&[10.0, 11.0, 9.0, 10.0, 12.0, 10.0, 40.0])).unwrap();
        // median 10, MAD 1 (floored) → 0.6745·30 = 20.2
        assert!((a.score - 20.235).abs() < 1e-9, "{a:?}");
        assert!(a.reason.starts_with("latency 40.0 has modified z-score 20.2"), "{a:?}");
        assert_eq!(r.score("latency", &series(&[10.0, 11.0, 9.0, 10.0, 12.0, 10.0, 13.0])), None);
    }

    #[test]
    fn an_earlier_outlier_neither_hides_the_next_spike_nor_raises_false_alarms() {
        let history = [10.0, 11.0, 9.0, 10.0, 12.0, 10.0, 9.0, 11.0, 5000.0, 10.0];
        let with = |x: f64| {
            let mut v = history.to_vec();
            v.push(x);
            series(&v)
        };
        let (r, z) = (RobustZ::default(), ZScore::default());
        assert!(r.score("latency", &with(100.0)).is_some(), "robust z still sees the spike");
        assert_eq!(z.score("latency", &with(100.0)), None, "the outlier inflated σ and hid the spike");
        assert_eq!(r.score("latency", &with(11.0)), None, "an ordinary value stays ordinary");
    }

    #[test]
    fn nan_is_skipped_and_min_samples_is_honoured() {
        let r = RobustZ { min_samples: 4, ..RobustZ::default() };
        assert_eq!(r.score("latency", &series(&[10.0, f64::NAN, 10.0, 10.0, 90.0])), None, "3 finite < 4");
        assert!(r.score("latency", &series(&[10.0, f64::NAN, 10.0, 10.0, 10.0, 90.0])).is_some());
        assert_eq!(r.score("latency", &series(&[10.0, 10.0, 10.0, 10.0, 10.0, f64::NAN])), None);
        assert_eq!(r.score("latency", &series(&[90.0])), None);
    }
}
