//! [`Threshold`]: a static limit on the newest sample. Owns only the comparison and its score.

use super::{MAX_SCORE, num, ratio, split};
use crate::policy::{Anomaly, AnomalyScorer, MetricSample};

/// Which side of the limit is bad.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Values above the limit are anomalous (latency, error rate).
    #[default]
    Above,
    /// Values below the limit are anomalous (throughput).
    Below,
}

/// A static threshold on the newest sample.
///
/// Use it when "bad" has a known absolute meaning (an SLO, a capacity floor) and no history is needed: it judges
/// from the first sample. Score: `value / limit` (above) or `limit / value` (below), so a score over 1 means the
/// limit is crossed by that factor; a zero value below a positive limit scores [`MAX_SCORE`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Threshold {
    /// The limit, in the metric's unit.
    pub limit: f64,
    /// Which side of `limit` is anomalous.
    pub direction: Direction,
}

impl Threshold {
    /// Anomalous when the value is strictly above `limit`.
    pub fn above(limit: f64) -> Self {
        Threshold { limit, direction: Direction::Above }
    }

    /// Anomalous when the value is strictly below `limit`.
    pub fn below(limit: f64) -> Self {
        Threshold { limit, direction: Direction::Below }
    }

    /// The seed thresholds for the standard metrics: latency above 500 ms, error rate above 0.05, throughput below
    /// 10 req/s. `None` for any other metric.
    pub fn for_metric(metric: &str) -> Option<Self> {
        match metric {
            "latency" | "latency_ms" => Some(Threshold::above(500.0)),
            "error-rate" | "error_rate" => Some(Threshold::above(0.05)),
            "throughput" => Some(Threshold::below(10.0)),
            _ => None,
        }
    }
}

impl Default for Threshold {
    /// The latency seed: above 500 ms.
    fn default() -> Self {
        Threshold::above(500.0)
    }
}

impl AnomalyScorer for Threshold {
    fn score(&self, metric: &str, window: &[MetricSample]) -> Option<Anomaly> {
        let (x, _) = split(window)?;
        let (crossed, score, side) = match self.direction {
            Direction::Above => (x > self.limit, ratio(x, self.limit), "above"),
            Direction::Below => (x < self.limit, if x > 0.0 { ratio(self.limit, x) } else { MAX_SCORE }, "below"),
        };
        crossed.then(|| Anomaly { score, reason: format!("{metric} {} {side} {}", num(x), num(self.limit)) })
    }
}

#[cfg(test)]
mod tests {
    use super::super::series;
    use super::*;

    #[test]
    fn latency_above_the_limit_is_flagged_with_its_ratio() {
        let t = Threshold::for_metric("latency").unwrap();
        let a = t.score("latency", &series(&[100.0, 812.0])).unwrap();
        assert_eq!(a.reason, "latency 812.0 above 500.0");
        assert!((a.score - 1.624).abs() < 1e-9, "{a:?}");
        assert_eq!(t.score("latency", &series(&[812.0, 500.0])), None, "only the newest sample counts");
    }

    #[test]
    fn error_rate_and_throughput_seeds() {
        let e = Threshold::for_metric("error_rate").unwrap();
        assert_eq!(e.score("error_rate", &series(&[0.07])).unwrap().reason, "error_rate 0.07 above 0.05");
        assert_eq!(e.score("error_rate", &series(&[0.05])), None);
        let t = Threshold::for_metric("throughput").unwrap();
        let a = t.score("throughput", &series(&[4.0])).unwrap();
        assert_eq!((a.score, a.reason.as_str()), (2.5, "throughput 4.0 below 10.0"));
        let zero = t.score("throughput", &series(&[0.0])).unwrap();
        assert!(zero.score.is_finite() && zero.score >= MAX_SCORE, "{zero:?}");
        assert_eq!(t.score("throughput", &series(&[12.0])), None);
        assert_eq!(Threshold::for_metric("cpu"), None);
        assert_eq!(Threshold::default(), Threshold::above(500.0));
    }

    #[test]
    fn non_finite_or_empty_is_never_judged() {
        let t = Threshold::below(10.0);
        assert_eq!(t.score("throughput", &series(&[f64::NAN])), None);
        assert_eq!(Threshold::above(1.0).score("latency", &series(&[f64::INFINITY])), None);
        assert_eq!(t.score("throughput", &[]), None);
    }
}
