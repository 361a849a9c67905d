//! The trip window across the WIT boundary: the host packs a breaker's window (aegis-plugin's adapter), the guest
//! SDK unpacks it and keeps its copy in step by the summary alone, asking for the whole window when it cannot. After
//! every decision the guest's copy agrees with the host's window: the same outcomes for a count window, the same
//! length and totals for a time window (which sends per-bucket aggregates); and every packed outcome unpacks to the
//! sample it came from.

use std::time::{Duration, Instant};

use aegis_core::{Counts, Sample, TripContext, Window, WindowKind};
use aegis_plugin::boundary::{self, WindowSummary};
use aegis_plugin_sdk::{__WindowCopy as WindowCopy, __WindowSummary as GuestSummary, ProbeOutcome};

use crate::input::Input;

/// The host's side: one breaker's generation, counts and window.
struct Host {
    generation: u32,
    counts: Counts,
    window: Window,
    count_window: bool,
    now: Instant,
}

pub fn trip_window(data: &[u8]) {
    let mut input = Input::new(data);
    let kind = match input.byte() {
        k @ 0..=159 => WindowKind::Count(u32::from(k % 40)),
        k => WindowKind::Time {
            size: Duration::from_millis(u64::from(input.u32() % 120_000)),
            buckets: u32::from(k % 10),
        },
    };
    let mut host = Host {
        generation: input.u32() % 4,
        counts: Counts::default(),
        window: Window::new(kind),
        count_window: matches!(kind, WindowKind::Count(_)),
        now: Instant::now(),
    };
    let mut guest = WindowCopy::new();
    while !input.is_empty() {
        match input.byte() % 8 {
            // An outcome the plugin is asked about (the common case).
            0..=4 => {
                host.record(&mut input);
                host.decide(&mut guest);
            }
            // An outcome recorded without a decision (quarantine, a built-in fallback): the guest sees a gap.
            5 => host.record(&mut input),
            6 => {
                host.now += Duration::from_millis(u64::from(input.u32() % 200_000));
                host.window.advance(host.now);
                host.decide(&mut guest);
            }
            _ => {
                host.generation = host.generation.wrapping_add(1);
                host.counts = Counts::default();
                host.window.clear();
            }
        }
    }
}

impl Host {
    fn record(&mut self, input: &mut Input<'_>) {
        let flags = input.byte();
        let (success, slow) = (flags & 1 == 0, flags & 2 != 0);
        let duration = match flags >> 2 & 3 {
            0 => Duration::from_millis(u64::from(input.byte())),
            1 => Duration::from_micros(u64::from(input.u32())),
            2 => Duration::from_secs(input.u64()),
            _ => Duration::from_nanos(input.u64()),
        };
        self.now += Duration::from_millis(u64::from(input.byte()));
        self.counts.on_outcome(success, slow);
        self.window.record(self.now, Sample { success, duration, slow });
    }

    /// One decision: the host packs, the guest follows or asks for the whole window, and the two must agree.
    fn decide(&self, guest: &mut WindowCopy) {
        let ctx = TripContext::new(&self.counts, &self.window, 0).in_generation(self.generation);
        let (summary, packed) = boundary::trip_window(&ctx);
        let expected: Vec<ProbeOutcome> = ctx.recent().map(outcome).collect();
        let unpacked: Vec<ProbeOutcome> = packed.iter().map(|&p| ProbeOutcome::from_packed(p)).collect();
        assert_eq!(unpacked, expected, "packed outcomes do not unpack to the window");
        let newest = ctx.newest().map(outcome).unwrap_or_default();
        assert_eq!(ProbeOutcome::from_packed(summary.newest), newest, "the newest outcome does not round-trip");
        let summary = unpack(&summary);
        assert_eq!(
            (summary.len as usize, summary.failures, summary.slow_calls),
            (ctx.window_len(), ctx.window_failures(), ctx.window_slow_calls())
        );
        if !guest.advance(self.counts.requests, &summary) {
            guest.replace(self.counts.requests, &summary, unpacked.iter().copied());
        }
        let copy = guest.outcomes();
        if self.count_window {
            assert_eq!(copy, expected.as_slice(), "the guest's copy differs from the host's count window");
        } else {
            let failures = copy.iter().filter(|o| !o.success).count();
            let slow = copy.iter().filter(|o| o.slow).count();
            assert_eq!(
                (copy.len(), failures, slow),
                (expected.len(), ctx.window_failures() as usize, ctx.window_slow_calls() as usize),
                "the guest's copy disagrees with the host's time window"
            );
        }
    }
}

/// A sample as the guest must see it: its latency in whole milliseconds.
fn outcome(s: Sample) -> ProbeOutcome {
    let ms = u64::try_from(s.duration.as_millis()).unwrap_or(u64::MAX).min(u64::MAX >> 2);
    ProbeOutcome { success: s.success, slow: s.slow, latency_ms: ms }
}

/// The summary as the SDK's export macro unpacks it.
fn unpack(w: &WindowSummary) -> GuestSummary {
    GuestSummary {
        generation: w.generation,
        len: w.len,
        failures: w.failures,
        slow_calls: w.slow_calls,
        newest: ProbeOutcome::from_packed(w.newest),
    }
}
