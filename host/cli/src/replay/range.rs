//! The stretch of history a replay reads: `--since 24h`, or `--from T --to T` (RFC 3339 times such as
//! `2026-11-30T18:00:00Z`, or milliseconds since the Unix epoch), or, without either, everything recorded up to now.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

/// From and to, both inclusive, in ms since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub from_ms: i64,
    pub to_ms: i64,
}

/// Resolves the range options against `now_ms`.
pub fn resolve(since: Option<&str>, from: Option<&str>, to: Option<&str>, now_ms: i64) -> anyhow::Result<Range> {
    let range = match (since, from) {
        (Some(_), Some(_)) => bail!("--since and --from exclude each other"),
        (Some(since), None) => {
            let d = humantime::parse_duration(since).with_context(|| format!("--since {since}: not a duration"))?;
            Range { from_ms: now_ms.saturating_sub(ms(d)), to_ms: now_ms }
        }
        (None, from) => Range {
            from_ms: from.map(|t| time("--from", t)).transpose()?.unwrap_or(0),
            to_ms: to.map(|t| time("--to", t)).transpose()?.unwrap_or(now_ms),
        },
    };
    if since.is_some() && to.is_some() {
        bail!("--to goes with --from, not with --since");
    }
    if range.from_ms > range.to_ms {
        bail!("--from is after --to");
    }
    Ok(range)
}

fn time(option: &str, text: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let at = humantime::parse_rfc3339_weak(text)
        .with_context(|| format!("{option} {text}: expected an RFC 3339 time (2026-11-30T18:00:00Z) or epoch ms"))?;
    Ok(ms(at.duration_since(UNIX_EPOCH).unwrap_or_default()))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Now, in ms since the Unix epoch.
pub fn now_ms() -> i64 {
    ms(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default())
}

/// `at_ms` as an RFC 3339 time with milliseconds, in UTC.
pub fn show(at_ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(at_ms).unwrap_or(0));
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_525_600_000; // 2025-11-30T18:00:00Z

    #[test]
    fn since_counts_back_from_now() {
        let r = resolve(Some("2h"), None, None, NOW).expect("valid");
        assert_eq!(r, Range { from_ms: NOW - 7_200_000, to_ms: NOW });
    }

    #[test]
    fn from_and_to_take_rfc3339_or_epoch_ms() {
        let r = resolve(None, Some("2025-11-30T17:00:00Z"), Some(&NOW.to_string()), NOW).expect("valid");
        assert_eq!(r, Range { from_ms: NOW - 3_600_000, to_ms: NOW });
        assert_eq!(resolve(None, None, None, NOW).expect("valid"), Range { from_ms: 0, to_ms: NOW });
    }

    #[test]
    fn bad_ranges_name_the_option() {
        let e = resolve(Some("soon"), None, None, NOW).expect_err("bad").to_string();
        assert!(e.contains("--since soon"), "{e}");
        let e = resolve(None, Some("yesterday"), None, NOW).expect_err("bad").to_string();
        assert!(e.contains("--from yesterday"), "{e}");
        assert!(resolve(Some("1h"), Some("1"), None, NOW).is_err());
        assert!(resolve(Some("1h"), None, Some("1"), NOW).is_err());
        assert!(resolve(None, Some("2"), Some("1"), NOW).is_err());
    }
}
