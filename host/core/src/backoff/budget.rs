//! Retry budget (Finagle `RetryBudget`, Envoy `retry_budget`): retries are allowed while
//! `retries ≤ ratio × requests + min_per_second × window` over a sliding time window. Owns only the accounting; it
//! never sleeps or retries anything itself. Not internally synchronised (`&mut self`): wrap it in a mutex to share.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

const BUCKETS: usize = 10;

/// Budget parameters. Defaults are Finagle's: 20 % of requests, 10 retries per second reserve, 10 s window.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSettings {
    /// Retries allowed per request (a token deposit per request), e.g. 0.2.
    pub ratio: f64,
    /// Reserve that allows retries even with little traffic (tokens per second of window).
    pub min_per_second: f64,
    /// How long deposits and withdrawals count (Finagle `ttl`).
    pub window: Duration,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        BudgetSettings { ratio: 0.2, min_per_second: 10.0, window: Duration::from_secs(10) }
    }
}

impl BudgetSettings {
    /// Checks ranges: `ratio` and `min_per_second` finite and `>= 0`, `window > 0`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.ratio.is_finite() && self.ratio >= 0.0) {
            return Err(ConfigError::invalid("budget.ratio", self.ratio, "must be a finite number >= 0"));
        }
        if !(self.min_per_second.is_finite() && self.min_per_second >= 0.0) {
            return Err(ConfigError::invalid(
                "budget.min_per_second",
                self.min_per_second,
                "must be a finite number >= 0",
            ));
        }
        if self.window.is_zero() {
            return Err(ConfigError::invalid("budget.window", "0s", "must be positive"));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    index: u64,
    requests: u32,
    retries: u32,
}

/// The budget itself: ten time buckets, inline (no heap).
#[derive(Clone, Debug)]
pub struct RetryBudget {
    settings: BudgetSettings,
    bucket_nanos: u64,
    epoch: Option<Instant>,
    current: u64,
    buckets: [Bucket; BUCKETS],
}

impl RetryBudget {
    /// A fresh, empty budget (only the reserve is available).
    pub fn new(settings: BudgetSettings) -> Self {
        let nanos = u64::try_from(settings.window.as_nanos()).unwrap_or(u64::MAX);
        RetryBudget {
            settings,
            bucket_nanos: (nanos / BUCKETS as u64).max(1),
            epoch: None,
            current: 0,
            buckets: [Bucket::default(); BUCKETS],
        }
    }

    /// Counts one original request (a deposit of `ratio` tokens).
    pub fn record_request(&mut self, now: Instant) {
        let b = self.bucket(now);
        b.requests = b.requests.saturating_add(1);
    }

    /// Withdraws one retry if the budget allows it; returns whether the retry may go ahead.
    pub fn try_retry(&mut self, now: Instant) -> bool {
        if self.available(now) >= 1.0 {
            let b = self.bucket(now);
            b.retries = b.retries.saturating_add(1);
            true
        } else {
            false
        }
    }

    /// Retries that could be withdrawn now (fractional: partial deposits).
    pub fn available(&mut self, now: Instant) -> f64 {
        self.advance(now);
        let (requests, retries) =
            self.buckets.iter().fold((0u64, 0u64), |(q, r), b| (q + u64::from(b.requests), r + u64::from(b.retries)));
        let reserve = self.settings.min_per_second * self.settings.window.as_secs_f64();
        (self.settings.ratio * requests as f64 + reserve - retries as f64).max(0.0)
    }

    /// Original requests and retries currently inside the window.
    pub fn totals(&mut self, now: Instant) -> (u64, u64) {
        self.advance(now);
        self.buckets.iter().fold((0, 0), |(q, r), b| (q + u64::from(b.requests), r + u64::from(b.retries)))
    }

    fn advance(&mut self, now: Instant) {
        let epoch = *self.epoch.get_or_insert(now);
        let idx = u64::try_from(now.saturating_duration_since(epoch).as_nanos() / u128::from(self.bucket_nanos))
            .unwrap_or(u64::MAX);
        if idx <= self.current {
            return;
        }
        let start = (self.current + 1).max(idx.saturating_sub(BUCKETS as u64 - 1));
        for i in start..=idx {
            self.buckets[(i % BUCKETS as u64) as usize] = Bucket { index: i, ..Bucket::default() };
        }
        self.current = idx;
    }

    fn bucket(&mut self, now: Instant) -> &mut Bucket {
        self.advance(now);
        let b = &mut self.buckets[(self.current % BUCKETS as u64) as usize];
        b.index = self.current;
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_bounded_by_ratio_plus_reserve() {
        let t0 = Instant::now();
        let mut b =
            RetryBudget::new(BudgetSettings { ratio: 0.5, min_per_second: 0.0, window: Duration::from_secs(10) });
        assert!(!b.try_retry(t0), "no requests, no reserve");
        for _ in 0..10 {
            b.record_request(t0);
        }
        let granted = (0..20).filter(|_| b.try_retry(t0)).count();
        assert_eq!(granted, 5);
        assert_eq!(b.totals(t0), (10, 5));
        // Deposits and withdrawals expire together with the window.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(b.totals(later), (0, 0));
        assert!(!b.try_retry(later));
    }

    #[test]
    fn reserve_allows_retries_without_traffic() {
        let t0 = Instant::now();
        let mut b =
            RetryBudget::new(BudgetSettings { ratio: 0.0, min_per_second: 0.5, window: Duration::from_secs(4) });
        assert_eq!((0..5).filter(|_| b.try_retry(t0)).count(), 2);
        assert!(BudgetSettings::default().validate().is_ok());
        assert!(BudgetSettings { ratio: -1.0, ..BudgetSettings::default() }.validate().is_err());
        assert!(BudgetSettings { window: Duration::ZERO, ..BudgetSettings::default() }.validate().is_err());
    }
}
