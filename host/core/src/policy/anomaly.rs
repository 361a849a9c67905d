//! The anomaly seam: [`AnomalyScorer`] judges the newest sample of a metric series; [`ZScore`] is the built-in (mean
//! and standard deviation of the earlier samples, flag `|x − mean| > k·σ`). Owns the math only; collecting series is
//! the runtime's job.

use std::fmt;

/// One point of a metric series.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MetricSample {
    /// Unix epoch milliseconds.
    pub at_ms: u64,
    pub value: f64,
}

/// An anomalous sample; higher scores are more anomalous.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Anomaly {
    pub score: f64,
    pub reason: String,
}

/// Scores a metric series for anomalies.
pub trait AnomalyScorer: Send + Sync + fmt::Debug {
    /// `metric` is "latency", "error-rate" or "throughput"; `window` is the series, oldest first, and its newest
    /// sample is the one judged.
    fn score(&self, metric: &str, window: &[MetricSample]) -> Option<Anomaly>;
}

/// The built-in scorer: a plain z-score of the newest sample against the samples before it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ZScore {
    /// Standard deviations that count as anomalous.
    pub k: f64,
    /// Earlier samples needed before anything is judged.
    pub min_samples: usize,
    /// Floor of σ, so a flat series does not flag every blip.
    pub min_sigma: f64,
}

impl Default for ZScore {
    fn default() -> Self {
        ZScore { k: 3.0, min_samples: 5, min_sigma: 1.0 }
    }
}

impl AnomalyScorer for ZScore {
    fn score(&self, metric: &str, window: &[MetricSample]) -> Option<Anomaly> {
        let (newest, history) = window.split_last()?;
        let values: Vec<f64> = history.iter().map(|s| s.value).filter(|v| v.is_finite()).collect();
        if values.len() < self.min_samples.max(1) || !newest.value.is_finite() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let sigma = var.sqrt().max(self.min_sigma);
        if sigma <= 0.0 {
            return None;
        }
        let z = (newest.value - mean).abs() / sigma;
        (z > self.k).then(|| Anomaly {
            score: z,
            reason: format!("{metric} {:.1} is {z:.1}σ from the mean {mean:.1} (σ {sigma:.1})", newest.value),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[f64]) -> Vec<MetricSample> {
        values.iter().enumerate().map(|(i, &value)| MetricSample { at_ms: i as u64, value }).collect()
    }

    #[test]
    fn z_score_flags_outliers_after_min_samples() {
        let z = ZScore::default();
        assert_eq!(z.score("latency", &series(&[10.0, 10.0, 10.0, 10.0, 100.0])), None);
        let a = z.score("latency", &series(&[10.0, 12.0, 8.0, 10.0, 10.0, 100.0])).unwrap();
        assert!(a.score > 3.0 && a.reason.starts_with("latency 100.0"), "{a:?}");
        assert_eq!(z.score("latency", &series(&[10.0, 12.0, 8.0, 10.0, 10.0, 11.0])), None);
        assert_eq!(z.score("latency", &[]), None);
    }
}
