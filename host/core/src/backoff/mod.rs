//! Restart and retry delays: capped exponential backoff with jitter ([`Jitter`]), reset after a stable period
//! (Kubernetes CrashLoopBackOff), and a retry budget ([`RetryBudget`]). Owns delay arithmetic only; it never sleeps —
//! the runtime does, with the returned `Duration`. Time (`now`) and randomness (`&mut dyn RngCore`) are injected.

pub mod budget;
pub mod jitter;

use std::time::{Duration, Instant};

use rand::RngCore;
use serde::{Deserialize, Serialize};

pub use self::budget::{BudgetSettings, RetryBudget};
pub use self::jitter::Jitter;
use crate::error::ConfigError;

/// Backoff parameters (seed-000 names: `initialInterval`, `maxInterval`, `multiplier`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffSettings {
    /// First delay (before jitter).
    pub initial: Duration,
    /// Cap on every delay, jitter included.
    pub max: Duration,
    /// Growth factor per attempt (values below 1, or not finite, are treated as 1 by [`Backoff::new`]).
    pub multiplier: f64,
    /// Randomisation.
    pub jitter: Jitter,
    /// Restart from `initial` when at least this long passed since the previous attempt (CrashLoopBackOff resets
    /// after 10 minutes of running). `None` never resets by itself.
    pub reset_after: Option<Duration>,
}

impl Default for BackoffSettings {
    /// 1 s doubling to 60 s, equal jitter (see [`Jitter::Equal`] for why), no automatic reset.
    fn default() -> Self {
        BackoffSettings {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: Jitter::Equal,
            reset_after: None,
        }
    }
}

impl BackoffSettings {
    /// Kubernetes CrashLoopBackOff: 10 s doubling to 5 min, no jitter, reset after 10 min.
    pub fn crash_loop() -> Self {
        BackoffSettings {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            multiplier: 2.0,
            jitter: Jitter::None,
            reset_after: Some(Duration::from_secs(600)),
        }
    }

    /// Checks ranges: `multiplier` finite and `>= 1`, `initial <= max`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(ConfigError::invalid("backoff.multiplier", self.multiplier, "must be a finite number >= 1"));
        }
        if self.initial > self.max {
            return Err(ConfigError::invalid(
                "backoff.initialInterval",
                format!("{:?}", self.initial),
                format!("must not exceed maxInterval {:?}", self.max),
            ));
        }
        Ok(())
    }
}

/// Backoff state of one retried thing (one service's restarts, one request's retries).
///
/// Delays are kept as integer nanoseconds and grown by one multiplication per attempt, so `next_delay` needs no
/// `powi` and no float-to-`Duration` conversion (both showed up as most of its cost).
#[derive(Clone, Debug)]
pub struct Backoff {
    settings: BackoffSettings,
    attempt: u32,
    /// Un-jittered delay of the next attempt, already capped.
    exp_ns: u64,
    /// Previous delay, for decorrelated jitter.
    prev_ns: u64,
    initial_ns: u64,
    max_ns: u64,
    /// `now` of the previous `next_delay`, for `reset_after`.
    last: Option<Instant>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Backoff {
    /// Starts at attempt 0.
    pub fn new(mut s: BackoffSettings) -> Self {
        if !(s.multiplier.is_finite() && s.multiplier >= 1.0) {
            s.multiplier = 1.0;
        }
        let (initial_ns, max_ns) = (nanos(s.initial), nanos(s.max));
        Backoff {
            settings: s,
            attempt: 0,
            exp_ns: initial_ns.min(max_ns),
            prev_ns: initial_ns,
            initial_ns,
            max_ns,
            last: None,
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> &BackoffSettings {
        &self.settings
    }

    /// Delay before the next attempt; first resets to `initial` if `reset_after` elapsed since the previous attempt.
    /// Always within `[0, max]`. No allocation; one RNG call for the jittered modes.
    pub fn next_delay(&mut self, now: Instant, rng: &mut dyn RngCore) -> Duration {
        if let (Some(stable), Some(last)) = (self.settings.reset_after, self.last)
            && now.saturating_duration_since(last) >= stable
        {
            self.reset();
        }
        self.last = Some(now);
        let delay = self.settings.jitter.apply_ns(self.exp_ns, self.initial_ns, self.max_ns, self.prev_ns, rng);
        self.attempt = self.attempt.saturating_add(1);
        self.prev_ns = delay;
        // `as u64` saturates, and the cap applies before the next use.
        self.exp_ns = ((self.exp_ns as f64 * self.settings.multiplier) as u64).min(self.max_ns);
        Duration::from_nanos(delay)
    }

    /// The un-jittered delay of `attempt`: `min(max, initial · multiplier^attempt)`.
    pub fn exponential(&self, attempt: u32) -> Duration {
        let s = &self.settings;
        let exp = i32::try_from(attempt).unwrap_or(i32::MAX);
        let secs = s.initial.as_secs_f64() * s.multiplier.powi(exp);
        // Overflow shows up as infinity (or NaN for 0 · ∞); both mean "past the cap".
        if secs.is_finite() && secs < s.max.as_secs_f64() {
            Duration::try_from_secs_f64(secs).map_or(s.max, |d| d.min(s.max))
        } else {
            s.max
        }
    }

    /// Attempts made since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Back to the initial interval.
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.exp_ns = self.initial_ns.min(self.max_ns);
        self.prev_ns = self.initial_ns;
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn exponential_doubles_to_the_cap() {
        let t0 = Instant::now();
        let mut rng = SmallRng::seed_from_u64(1);
        let mut b = Backoff::new(BackoffSettings {
            jitter: Jitter::None,
            max: secs(30),
            initial: secs(2),
            ..Default::default()
        });
        let got: Vec<_> = (0..6).map(|i| b.next_delay(t0 + secs(i), &mut rng)).collect();
        assert_eq!(got, vec![secs(2), secs(4), secs(8), secs(16), secs(30), secs(30)]);
        assert_eq!(b.attempt(), 6);
        b.reset();
        assert_eq!(b.attempt(), 0);
        assert_eq!(b.next_delay(t0, &mut rng), secs(2));
        assert_eq!(b.exponential(u32::MAX), secs(30));
    }

    #[test]
    fn crash_loop_resets_after_stable_period() {
        let t0 = Instant::now();
        let mut rng = SmallRng::seed_from_u64(1);
        let mut b = Backoff::new(BackoffSettings::crash_loop());
        assert_eq!(b.next_delay(t0, &mut rng), secs(10));
        assert_eq!(b.next_delay(t0 + secs(20), &mut rng), secs(20));
        assert_eq!(b.next_delay(t0 + secs(50), &mut rng), secs(40));
        // Ran for 10 minutes without another failure: back to 10 s.
        assert_eq!(b.next_delay(t0 + secs(650), &mut rng), secs(10));
        assert_eq!(b.attempt(), 1);
    }

    #[test]
    fn decorrelated_grows_from_previous_delay() {
        let t0 = Instant::now();
        let mut rng = SmallRng::seed_from_u64(3);
        let mut b = Backoff::new(BackoffSettings { jitter: Jitter::Decorrelated, ..Default::default() });
        let mut prev = secs(1);
        for _ in 0..50 {
            let d = b.next_delay(t0, &mut rng);
            assert!(d >= secs(1) && d <= (prev * 3).min(secs(60)), "{d:?} after {prev:?}");
            prev = d;
        }
    }

    #[test]
    fn bad_multiplier_is_sanitised_and_rejected_by_validate() {
        let s = BackoffSettings { multiplier: f64::NAN, jitter: Jitter::None, ..Default::default() };
        assert!(s.validate().is_err());
        let mut b = Backoff::new(s);
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(b.next_delay(Instant::now(), &mut rng), secs(1));
        assert_eq!(b.next_delay(Instant::now(), &mut rng), secs(1));
        let s = BackoffSettings { initial: secs(100), ..Default::default() };
        assert!(s.validate().unwrap_err().to_string().contains("initialInterval"));
        assert!(BackoffSettings::default().validate().is_ok());
    }
}
