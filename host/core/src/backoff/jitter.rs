//! Jitter modes of the AWS Architecture Blog article "Exponential Backoff And Jitter", applied to one exponential
//! delay. Owns only the randomisation formulas; the attempt counter and caps live in [`super::Backoff`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// How a delay is randomised. With `exp = min(cap, base · multiplier^attempt)`:
/// - `None`: `exp`;
/// - `Full`: uniform in `[0, exp]`;
/// - `Equal`: `exp/2 + uniform[0, exp/2]`;
/// - `Decorrelated`: `min(cap, uniform[base, prev · 3])`, where `prev` is the previous delay (initially `base`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Jitter {
    /// Plain exponential.
    None,
    /// AWS "full jitter".
    Full,
    /// AWS "equal jitter" — the default for restart backoff: never less than half the exponential delay, so a
    /// crashing service is not restarted immediately, yet restarts of many services still spread out.
    #[default]
    Equal,
    /// AWS "decorrelated jitter".
    Decorrelated,
}

impl Jitter {
    /// Every mode.
    pub const ALL: [Jitter; 4] = [Jitter::None, Jitter::Full, Jitter::Equal, Jitter::Decorrelated];

    /// Lower-case name, as in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Jitter::None => "none",
            Jitter::Full => "full",
            Jitter::Equal => "equal",
            Jitter::Decorrelated => "decorrelated",
        }
    }

    /// The jittered delay; always within `[0, cap]`.
    pub fn apply(
        self,
        exp: Duration,
        base: Duration,
        cap: Duration,
        prev: Duration,
        rng: &mut dyn RngCore,
    ) -> Duration {
        let n = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.apply_ns(n(exp), n(base), n(cap), n(prev), rng))
    }

    /// [`Self::apply`] on nanoseconds.
    #[inline]
    pub(crate) fn apply_ns(self, exp: u64, base: u64, cap: u64, prev: u64, rng: &mut dyn RngCore) -> u64 {
        let exp = exp.min(cap);
        match self {
            Jitter::None => exp,
            Jitter::Full => uniform_ns(0, exp, rng),
            Jitter::Equal => {
                let half = exp / 2;
                half + uniform_ns(0, exp - half, rng)
            }
            Jitter::Decorrelated => {
                let lo = base.min(cap);
                let hi = prev.saturating_mul(3).max(lo);
                uniform_ns(lo, hi, rng).min(cap)
            }
        }
    }
}

impl fmt::Display for Jitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Jitter {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Jitter::ALL
            .into_iter()
            .find(|j| j.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ConfigError::invalid("jitter", s, "expected none, full, equal or decorrelated"))
    }
}

/// Uniform duration in `[lo, hi]` (nanosecond resolution; `hi < lo` yields `lo`).
#[cfg(test)]
fn uniform(lo: Duration, hi: Duration, rng: &mut dyn RngCore) -> Duration {
    let n = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(uniform_ns(n(lo), n(hi).max(n(lo)), rng))
}

/// Uniform integer in `[lo, hi]` (`hi < lo` yields `lo`). Uses a widening multiply instead of rejection sampling:
/// the bias is below 2^-64 relative and the cost is one RNG call.
#[inline]
fn uniform_ns(lo: u64, hi: u64, rng: &mut dyn RngCore) -> u64 {
    if hi <= lo {
        return lo;
    }
    let span = u128::from(hi - lo) + 1;
    lo + ((u128::from(rng.next_u64()) * span) >> 64) as u64
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    #[test]
    fn modes_stay_in_their_ranges() {
        let mut rng = SmallRng::seed_from_u64(7);
        let (base, cap) = (Duration::from_millis(100), Duration::from_secs(10));
        let exp = Duration::from_secs(4);
        for _ in 0..1000 {
            assert_eq!(Jitter::None.apply(exp, base, cap, base, &mut rng), exp);
            assert!(Jitter::Full.apply(exp, base, cap, base, &mut rng) <= exp);
            let e = Jitter::Equal.apply(exp, base, cap, base, &mut rng);
            assert!(e >= exp / 2 && e <= exp);
            let d = Jitter::Decorrelated.apply(exp, base, cap, Duration::from_secs(5), &mut rng);
            assert!(d >= base && d <= cap);
        }
    }

    #[test]
    fn parse_and_display() {
        for j in Jitter::ALL {
            assert_eq!(j.to_string().parse::<Jitter>().ok(), Some(j));
        }
        assert_eq!(" FULL ".parse::<Jitter>().ok(), Some(Jitter::Full));
        assert!("sometimes".parse::<Jitter>().unwrap_err().to_string().contains("jitter"));
    }

    #[test]
    fn uniform_edges() {
        let mut rng = SmallRng::seed_from_u64(1);
        let d = Duration::from_millis(3);
        assert_eq!(uniform(d, d, &mut rng), d);
        assert_eq!(uniform(d, Duration::ZERO, &mut rng), d);
        let mut seen_low = false;
        for _ in 0..200 {
            let u = uniform(Duration::ZERO, Duration::from_nanos(1), &mut rng);
            seen_low |= u.is_zero();
            assert!(u <= Duration::from_nanos(1));
        }
        assert!(seen_low);
    }
}
