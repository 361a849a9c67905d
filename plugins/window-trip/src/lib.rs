//! `window-trip`: open the breaker when at least `failures` of the last `window` probes failed or were slow.
//!
//! Config (all optional):
//! - `window`   — how many recent probes to look at (default 10)
//! - `failures` — how many bad probes among them trip the breaker (default 5)
//! - `slow_ms`  — a successful probe slower than this counts as bad (default: the host's own slow-call verdict)

use aegis_plugin_sdk::{Config, Counts, Policy, ProbeOutcome, ServiceInfo, TripPredicate};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowTrip {
    window: usize,
    failures: usize,
    slow_ms: Option<u64>,
}

impl Policy for WindowTrip {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["window", "failures", "slow_ms"])?;
        let window: usize = config.parse_or("window", 10)?;
        let failures: usize = config.parse_or("failures", 5)?;
        let slow_ms = match config.get("slow_ms") {
            None => None,
            Some(_) => Some(config.parse_or("slow_ms", 0u64)?),
        };
        if window == 0 || failures == 0 || failures > window {
            return Err(format!("need 1 <= failures <= window, got failures={failures}, window={window}"));
        }
        Ok(WindowTrip { window, failures, slow_ms })
    }
}

impl WindowTrip {
    fn is_bad(&self, o: &ProbeOutcome) -> bool {
        !o.success || o.slow || self.slow_ms.is_some_and(|limit| o.latency_ms > limit)
    }
}

impl TripPredicate for WindowTrip {
    fn should_trip(&self, _service: &ServiceInfo, _counts: &Counts, window: &[ProbeOutcome]) -> Option<String> {
        let recent = &window[window.len().saturating_sub(self.window)..];
        let bad = recent.iter().filter(|o| self.is_bad(o)).count();
        (bad >= self.failures).then(|| {
            let slow = match self.slow_ms {
                Some(ms) => format!(" or slower than {ms} ms"),
                None => " or slow".to_string(),
            };
            format!("{bad} of the last {} probes failed{slow}", recent.len())
        })
    }
}

aegis_plugin_sdk::export_trip_predicate!(WindowTrip);

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(pairs: &[(&str, &str)]) -> Result<WindowTrip, String> {
        WindowTrip::init(&Config::from(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>()))
    }

    fn ok(ms: u64) -> ProbeOutcome {
        ProbeOutcome { success: true, latency_ms: ms, slow: false }
    }

    fn fail() -> ProbeOutcome {
        ProbeOutcome { success: false, latency_ms: 1, slow: false }
    }

    fn trips(p: &WindowTrip, window: &[ProbeOutcome]) -> Option<String> {
        p.should_trip(&ServiceInfo::default(), &Counts::default(), window)
    }

    #[test]
    fn trips_at_n_failures_within_the_last_m() {
        let p = policy(&[("window", "4"), ("failures", "2")]).unwrap();
        assert_eq!(trips(&p, &[ok(1), fail(), ok(1), ok(1)]), None);
        let reason = trips(&p, &[ok(1), fail(), ok(1), fail()]).unwrap();
        assert_eq!(reason, "2 of the last 4 probes failed or slow");
    }

    #[test]
    fn only_the_last_m_probes_count() {
        let p = policy(&[("window", "3"), ("failures", "2")]).unwrap();
        assert_eq!(trips(&p, &[fail(), fail(), ok(1), ok(1), fail()]), None);
    }

    #[test]
    fn slow_successes_count_as_bad() {
        let p = policy(&[("window", "3"), ("failures", "2"), ("slow_ms", "100")]).unwrap();
        assert_eq!(trips(&p, &[ok(50), ok(150), ok(99)]), None);
        assert!(trips(&p, &[ok(101), ok(150), ok(99)]).is_some());
        let host_slow = ProbeOutcome { success: true, latency_ms: 1, slow: true };
        assert!(trips(&p, &[host_slow, host_slow]).is_some());
    }

    #[test]
    fn bad_config_is_refused_with_the_key() {
        assert!(policy(&[("failures", "11")]).unwrap_err().contains("failures=11"));
        assert!(policy(&[("window", "x")]).unwrap_err().contains("`window`"));
        assert!(policy(&[("windw", "3")]).unwrap_err().contains("`windw`"));
    }
}
