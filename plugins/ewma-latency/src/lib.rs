//! `ewma-latency`: flags the newest sample of a series when it lies more than `k` standard deviations from the
//! exponentially weighted moving average of the samples before it (`m ← α·x + (1−α)·m`, variance likewise).
//!
//! The scorer keeps no state between calls: the host passes the recent series every time, and a plugin instance may
//! be replaced at any moment (after a trap, on reload), so the average is recomputed from the window.
//!
//! Config (all optional):
//! - `metric`    — the metric this scorer judges (default `latency`); other metrics are never flagged
//! - `alpha`     — smoothing factor in (0, 1] (default 0.3)
//! - `k`         — how many standard deviations count as anomalous (default 3)
//! - `warmup`    — samples needed before the newest one is judged (default 5)
//! - `min_sigma` — floor of the standard deviation, so a perfectly flat series does not flag tiny blips (default 1)

use aegis_plugin_sdk::{Anomaly, AnomalyScorer, Config, Policy, Sample, ServiceInfo};

#[derive(Debug, Clone, PartialEq)]
pub struct EwmaLatency {
    metric: String,
    alpha: f64,
    k: f64,
    warmup: usize,
    min_sigma: f64,
}

impl Policy for EwmaLatency {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["metric", "alpha", "k", "warmup", "min_sigma"])?;
        let p = EwmaLatency {
            metric: config.get("metric").unwrap_or("latency").to_owned(),
            alpha: config.parse_or("alpha", 0.3)?,
            k: config.parse_or("k", 3.0)?,
            warmup: config.parse_or("warmup", 5)?,
            min_sigma: config.parse_or("min_sigma", 1.0)?,
        };
        if !(p.alpha > 0.0 && p.alpha <= 1.0) {
            return Err(format!("config key `alpha`: must be in (0, 1], got {}", p.alpha));
        }
        if !(p.k.is_finite() && p.k > 0.0) {
            return Err(format!("config key `k`: must be positive, got {}", p.k));
        }
        if !(p.min_sigma.is_finite() && p.min_sigma >= 0.0) {
            return Err(format!("config key `min_sigma`: must be zero or positive, got {}", p.min_sigma));
        }
        Ok(EwmaLatency { warmup: p.warmup.max(1), ..p })
    }
}

/// EWMA mean and variance of `values` (West's incremental form).
fn ewma(alpha: f64, values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let mut state: Option<(f64, f64)> = None;
    for x in values.filter(|x| x.is_finite()) {
        state = Some(match state {
            None => (x, 0.0),
            Some((mean, var)) => {
                let diff = x - mean;
                let incr = alpha * diff;
                (mean + incr, (1.0 - alpha) * (var + diff * incr))
            }
        });
    }
    state
}

impl AnomalyScorer for EwmaLatency {
    fn score(&self, service: &ServiceInfo, metric: &str, window: &[Sample]) -> Option<Anomaly> {
        if metric != self.metric {
            return None;
        }
        let (newest, history) = window.split_last()?;
        if history.len() < self.warmup || !newest.value.is_finite() {
            return None;
        }
        let (mean, var) = ewma(self.alpha, history.iter().map(|s| s.value))?;
        let sigma = var.sqrt().max(self.min_sigma);
        if sigma <= 0.0 {
            return None;
        }
        let z = (newest.value - mean).abs() / sigma;
        (z > self.k).then(|| Anomaly {
            score: z,
            reason: format!(
                "{} {metric} {:.1} is {z:.1}σ {} its EWMA {mean:.1} (σ {sigma:.1}, k {})",
                service.name,
                newest.value,
                if newest.value > mean { "above" } else { "below" },
                self.k
            ),
        })
    }
}

aegis_plugin_sdk::export_anomaly_scorer!(EwmaLatency);

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(pairs: &[(&str, &str)]) -> Result<EwmaLatency, String> {
        EwmaLatency::init(&Config::from(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>()))
    }

    fn series(values: &[f64]) -> Vec<Sample> {
        values.iter().enumerate().map(|(i, &value)| Sample { at_ms: i as u64 * 1000, value }).collect()
    }

    fn svc() -> ServiceInfo {
        ServiceInfo { name: "api".into(), ..ServiceInfo::default() }
    }

    #[test]
    fn flags_a_spike_after_a_steady_series() {
        let p = policy(&[]).unwrap();
        let mut values = vec![100.0, 104.0, 98.0, 101.0, 99.0, 102.0, 100.0];
        assert_eq!(p.score(&svc(), "latency", &series(&values)), None);
        values.push(400.0);
        let a = p.score(&svc(), "latency", &series(&values)).unwrap();
        assert!(a.score > 3.0, "{a:?}");
        assert!(a.reason.starts_with("api latency 400.0 is ") && a.reason.contains("above its EWMA"), "{}", a.reason);
    }

    #[test]
    fn a_noisy_series_tolerates_larger_swings() {
        let p = policy(&[]).unwrap();
        let noisy = [100.0, 180.0, 60.0, 150.0, 90.0, 170.0, 70.0, 160.0, 200.0];
        assert_eq!(p.score(&svc(), "latency", &series(&noisy)), None);
    }

    #[test]
    fn flags_drops_too_and_respects_min_sigma() {
        let p = policy(&[("min_sigma", "5")]).unwrap();
        let flat = [50.0; 8];
        assert_eq!(p.score(&svc(), "latency", &series(&[&flat[..], &[60.0]].concat())), None);
        let a = p.score(&svc(), "latency", &series(&[&flat[..], &[10.0]].concat())).unwrap();
        assert!(a.reason.contains("below"), "{}", a.reason);
        assert!((a.score - 8.0).abs() < 1e-9, "{a:?}");
    }

    #[test]
    fn waits_for_warmup_and_ignores_other_metrics() {
        let p = policy(&[("warmup", "5")]).unwrap();
        assert_eq!(p.score(&svc(), "latency", &series(&[1.0, 1.0, 1.0, 1.0, 900.0])), None);
        assert!(p.score(&svc(), "latency", &series(&[1.0, 1.0, 1.0, 1.0, 1.0, 900.0])).is_some());
        assert_eq!(p.score(&svc(), "throughput", &series(&[1.0, 1.0, 1.0, 1.0, 1.0, 900.0])), None);
        assert_eq!(p.score(&svc(), "latency", &[]), None);
    }

    #[test]
    fn non_finite_values_are_skipped() {
        let p = policy(&[]).unwrap();
        let values = [10.0, f64::NAN, 10.0, 10.0, f64::INFINITY, 10.0, 10.0, f64::NAN];
        assert_eq!(p.score(&svc(), "latency", &series(&values)), None);
    }

    #[test]
    fn bad_config_is_refused_with_the_key() {
        assert!(policy(&[("alpha", "0")]).unwrap_err().contains("`alpha`"));
        assert!(policy(&[("alpha", "1.5")]).unwrap_err().contains("`alpha`"));
        assert!(policy(&[("k", "-1")]).unwrap_err().contains("`k`"));
        assert!(policy(&[("k", "x")]).unwrap_err().contains("`k`"));
        assert!(policy(&[("sigma", "1")]).unwrap_err().contains("`sigma`"));
    }
}
