//! The compact encoding of recorded history: a chunk is a run of one service's outcomes (or one metric's samples,
//! or one log rule's counts) as a byte string that grows by appending, so the store can keep hundreds of checks in
//! one row and add a second's worth with `data || ?`. Pure: no I/O, no clock; the store decides where chunks start.
//!
//! A chunk starts with [`FORMAT`] and its entries carry their time as the delta (ms, LEB128) from the entry before,
//! the first from the chunk's `first_ms` (kept by the store beside the bytes). Deltas are never negative: an entry
//! older than the last one (the wall clock stepped back) cannot be appended ([`Encoder::push`] says so) and the
//! store starts a new chunk. Per entry:
//! - outcome: `delta << 4 | flags` (success, slow, has detail, new detail), the latency (µs), and only when the
//!   failure detail differs from the last one in the chunk, the detail (length + UTF-8). A steady service costs
//!   4–6 bytes per check; an outage repeating one reason costs no more.
//! - sample: `delta << 1 | integral`, then the value as a zigzag varint when it is a whole number below 2^53, else
//!   its 8 IEEE bytes.
//! - log count: the delta, then the count.
//!
//! Decoding a damaged chunk is an error naming what is wrong and where, never a panic.

use super::{LogCount, MetricSample, Outcome};

/// The first byte of every chunk: the version of this encoding.
pub const FORMAT: u8 = 1;

const SUCCESS: u64 = 1;
const SLOW: u64 = 2;
const HAS_DETAIL: u64 = 4;
const NEW_DETAIL: u64 = 8;
const FLAG_BITS: u32 = 4;
/// The largest magnitude an `f64` holds exactly as an integer.
const EXACT_INT: f64 = 9_007_199_254_740_992.0;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty chunk")]
    Empty,
    #[error("unknown chunk format {0} (this aegis-host reads format {FORMAT})")]
    Format(u8),
    #[error("chunk cut short at byte {0}")]
    Truncated(usize),
    #[error("malformed number at byte {0}")]
    Varint(usize),
    #[error("value out of range at byte {0}")]
    Range(usize),
    #[error("failure detail at byte {0} is not UTF-8")]
    Utf8(usize),
    #[error("entry at byte {0} repeats a failure detail before any was recorded")]
    NoDetail(usize),
}

/// Appends `v` as LEB128.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Reads a chunk front to back.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    at_ms: i64,
}

impl<'a> Reader<'a> {
    fn new(first_ms: i64, bytes: &'a [u8]) -> Result<Self, DecodeError> {
        match bytes.first() {
            None => Err(DecodeError::Empty),
            Some(&FORMAT) => Ok(Reader { bytes, pos: 1, at_ms: first_ms }),
            Some(&other) => Err(DecodeError::Format(other)),
        }
    }

    fn done(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.bytes.get(self.pos) else { return Err(DecodeError::Truncated(self.pos)) };
            self.pos += 1;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                return Err(DecodeError::Varint(start));
            }
            v |= part << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Varint(start))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or(DecodeError::Truncated(self.pos))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    /// Reads a head `delta << bits | flags`, advances the time and returns the flags.
    fn head(&mut self, bits: u32) -> Result<u64, DecodeError> {
        let start = self.pos;
        let head = self.varint()?;
        let delta = i64::try_from(head >> bits).map_err(|_| DecodeError::Range(start))?;
        self.at_ms = self.at_ms.checked_add(delta).ok_or(DecodeError::Range(start))?;
        Ok(head & ((1 << bits) - 1))
    }
}

/// Appends entries to one chunk: remembers the time of the last entry (and, for outcomes, the last failure detail).
#[derive(Clone, Debug)]
pub struct Encoder {
    last_ms: i64,
    detail: Option<Box<str>>,
}

impl Encoder {
    /// Starts a chunk whose entries are timed from `first_ms` (the time of its first entry): writes [`FORMAT`].
    pub fn start(first_ms: i64, out: &mut Vec<u8>) -> Encoder {
        out.push(FORMAT);
        Encoder { last_ms: first_ms, detail: None }
    }

    /// The time of the last entry (or `first_ms`).
    pub fn last_ms(&self) -> i64 {
        self.last_ms
    }

    /// The delta to `at_ms`, or `None` when it lies before the last entry.
    fn delta(&mut self, at_ms: i64) -> Option<u64> {
        let delta = u64::try_from(at_ms.checked_sub(self.last_ms)?).ok()?;
        // The head shifts the delta left by up to four bits; a gap of 2^59 ms (18 million years) starts a chunk.
        if delta >> 59 != 0 {
            return None;
        }
        self.last_ms = at_ms;
        Some(delta)
    }

    /// Appends `o`; false (nothing written) when it is older than the last entry.
    pub fn push_outcome(&mut self, o: &Outcome, out: &mut Vec<u8>) -> bool {
        let Some(delta) = self.delta(o.at_ms) else { return false };
        let mut flags = if o.success { SUCCESS } else { 0 } | if o.slow { SLOW } else { 0 };
        let new_detail = match &o.detail {
            None => None,
            Some(d) => {
                flags |= HAS_DETAIL;
                (self.detail.as_deref() != Some(&**d)).then_some(d)
            }
        };
        if new_detail.is_some() {
            flags |= NEW_DETAIL;
        }
        put_varint(out, delta << FLAG_BITS | flags);
        put_varint(out, u64::from(o.latency_us));
        if let Some(d) = new_detail {
            put_varint(out, d.len() as u64);
            out.extend_from_slice(d.as_bytes());
            self.detail = Some(d.clone());
        }
        true
    }

    /// Appends the value of a sample at `at_ms` (the metric's name is the chunk's); false when older than the last.
    pub fn push_sample(&mut self, at_ms: i64, value: f64, out: &mut Vec<u8>) -> bool {
        let Some(delta) = self.delta(at_ms) else { return false };
        // -0.0 is whole but its sign would not survive the integer.
        let integral = value.fract() == 0.0 && value.abs() < EXACT_INT && !(value == 0.0 && value.is_sign_negative());
        put_varint(out, delta << 1 | u64::from(integral));
        if integral {
            put_varint(out, zigzag(value as i64));
        } else {
            out.extend_from_slice(&value.to_bits().to_le_bytes());
        }
        true
    }

    /// Appends a log count at `at_ms` (the rule is the chunk's); false when older than the last.
    pub fn push_count(&mut self, at_ms: i64, count: u64, out: &mut Vec<u8>) -> bool {
        let Some(delta) = self.delta(at_ms) else { return false };
        put_varint(out, delta);
        put_varint(out, count);
        true
    }
}

/// The outcomes of a chunk whose first entry is timed from `first_ms`, in recorded order.
pub fn decode_outcomes(first_ms: i64, bytes: &[u8]) -> Result<Vec<Outcome>, DecodeError> {
    let mut r = Reader::new(first_ms, bytes)?;
    let mut detail: Option<Box<str>> = None;
    let mut outcomes = Vec::new();
    while !r.done() {
        let start = r.pos;
        let flags = r.head(FLAG_BITS)?;
        let latency_pos = r.pos;
        let latency_us = u32::try_from(r.varint()?).map_err(|_| DecodeError::Range(latency_pos))?;
        if flags & NEW_DETAIL != 0 {
            let len_pos = r.pos;
            let len = usize::try_from(r.varint()?).map_err(|_| DecodeError::Range(len_pos))?;
            let raw = r.take(len)?;
            detail = Some(std::str::from_utf8(raw).map_err(|_| DecodeError::Utf8(len_pos))?.into());
        }
        let this_detail =
            if flags & HAS_DETAIL != 0 { Some(detail.clone().ok_or(DecodeError::NoDetail(start))?) } else { None };
        outcomes.push(Outcome {
            at_ms: r.at_ms,
            success: flags & SUCCESS != 0,
            slow: flags & SLOW != 0,
            latency_us,
            detail: this_detail,
        });
    }
    Ok(outcomes)
}

/// The samples of a chunk of metric `metric` whose first entry is timed from `first_ms`.
pub fn decode_samples(first_ms: i64, metric: &str, bytes: &[u8]) -> Result<Vec<MetricSample>, DecodeError> {
    let mut r = Reader::new(first_ms, bytes)?;
    let mut samples = Vec::new();
    while !r.done() {
        let integral = r.head(1)? == 1;
        let value = if integral {
            r.varint().map(unzigzag)? as f64
        } else {
            let raw = r.take(8)?;
            let mut le = [0u8; 8];
            le.copy_from_slice(raw);
            f64::from_bits(u64::from_le_bytes(le))
        };
        samples.push(MetricSample { at_ms: r.at_ms, metric: metric.to_owned(), value });
    }
    Ok(samples)
}

/// The counts of a chunk of log rule `rule` whose first entry is timed from `first_ms`.
pub fn decode_counts(first_ms: i64, rule: &str, bytes: &[u8]) -> Result<Vec<LogCount>, DecodeError> {
    let mut r = Reader::new(first_ms, bytes)?;
    let mut counts = Vec::new();
    while !r.done() {
        r.head(0)?;
        let count = r.varint()?;
        counts.push(LogCount { at_ms: r.at_ms, rule: rule.to_owned(), count });
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn outcome(at_ms: i64, success: bool, latency_us: u32, detail: Option<&str>) -> Outcome {
        Outcome { at_ms, success, slow: latency_us > 500_000, latency_us, detail: detail.map(Box::from) }
    }

    fn encode(first_ms: i64, outcomes: &[Outcome]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = Encoder::start(first_ms, &mut out);
        for o in outcomes {
            assert!(enc.push_outcome(o, &mut out), "{o:?}");
        }
        out
    }

    #[test]
    fn outcomes_round_trip_and_a_repeated_detail_is_stored_once() {
        let t = 1_780_000_000_000;
        let outcomes = vec![
            outcome(t, true, 1_200, None),
            outcome(t + 1_000, false, 2_000_000, Some("status 503")),
            outcome(t + 2_000, false, 3_000, Some("status 503")),
            outcome(t + 3_000, true, 900, None),
            outcome(t + 4_000, false, 0, Some("status 503")),
            outcome(t + 4_000, false, 0, Some("connect refused")),
        ];
        let bytes = encode(t, &outcomes);
        assert_eq!(decode_outcomes(t, &bytes), Ok(outcomes.clone()));
        let once = encode(t, &outcomes[..2]).len();
        let twice = encode(t, &outcomes[..3]).len();
        assert!(twice - once <= 5, "a repeated detail cost {} bytes", twice - once);
    }

    #[test]
    fn a_steady_service_costs_a_few_bytes_per_check() {
        let t = 1_780_000_000_000;
        let outcomes: Vec<_> =
            (0..1000).map(|i| outcome(t + i * 1_000 + i % 7, true, 3_000 + (i as u32 % 500), None)).collect();
        let bytes = encode(t, &outcomes);
        assert!(bytes.len() <= 6 * outcomes.len(), "{} bytes", bytes.len());
    }

    #[test]
    fn an_older_entry_is_refused_not_encoded() {
        let mut out = Vec::new();
        let mut enc = Encoder::start(100, &mut out);
        assert!(enc.push_count(150, 3, &mut out));
        let len = out.len();
        assert!(!enc.push_count(149, 1, &mut out));
        assert!(!enc.push_outcome(&outcome(10, true, 1, None), &mut out));
        assert_eq!(out.len(), len);
        assert_eq!(enc.last_ms(), 150);
    }

    #[test]
    fn samples_and_counts_round_trip() {
        let mut out = Vec::new();
        let mut enc = Encoder::start(5, &mut out);
        let values = [12.0, -3.0, 0.25, f64::MAX, 1e300, -0.0, 9_007_199_254_740_993.0];
        for (i, v) in values.iter().enumerate() {
            assert!(enc.push_sample(5 + i as i64 * 10, *v, &mut out));
        }
        let back = decode_samples(5, "latency_ms", &out).expect("decode");
        assert_eq!(back.iter().map(|s| s.value.to_bits()).collect::<Vec<_>>(), values.map(f64::to_bits).to_vec());
        assert!(back.iter().all(|s| s.metric == "latency_ms"));
        assert_eq!(back[6].at_ms, 65);

        let mut out = Vec::new();
        let mut enc = Encoder::start(0, &mut out);
        assert!(enc.push_count(0, 0, &mut out) && enc.push_count(10_000, u64::MAX, &mut out));
        let counts = decode_counts(0, "panic", &out).expect("decode");
        assert_eq!(counts.iter().map(|c| (c.at_ms, c.count)).collect::<Vec<_>>(), vec![(0, 0), (10_000, u64::MAX)]);
    }

    #[test]
    fn damaged_chunks_are_errors_not_panics() {
        let t = 1_000;
        let good = encode(t, &[outcome(t, false, 70_000, Some("timeout")), outcome(t + 5, true, 1, None)]);
        assert_eq!(decode_outcomes(t, &[]), Err(DecodeError::Empty));
        assert_eq!(decode_outcomes(t, &[9, 0, 0]), Err(DecodeError::Format(9)));
        let whole = decode_outcomes(t, &good).expect("decode");
        for cut in 1..good.len() {
            // A cut between entries reads as the entries before it; a cut inside one is an error.
            match decode_outcomes(t, &good[..cut]) {
                Ok(head) => assert!(cut == 1 || head == whole[..1], "cut at {cut} decoded as {head:?}"),
                Err(e) => assert!(matches!(e, DecodeError::Truncated(_)), "cut at {cut}: {e}"),
            }
        }
        assert_eq!(decode_outcomes(t, &[FORMAT, HAS_DETAIL as u8, 0]), Err(DecodeError::NoDetail(1)));
        assert_eq!(decode_outcomes(t, &[FORMAT, NEW_DETAIL as u8, 0, 1, 0xff]), Err(DecodeError::Utf8(3)));
        let mut huge = vec![FORMAT];
        huge.extend_from_slice(&[0xff; 11]);
        assert!(matches!(decode_outcomes(t, &huge), Err(DecodeError::Varint(1))));
        assert!(matches!(decode_samples(t, "m", &[FORMAT, 0, 1, 2]), Err(DecodeError::Truncated(_))));
    }

    fn any_outcome() -> impl Strategy<Value = (u32, bool, bool, u32, Option<u8>)> {
        (0u32..100_000, any::<bool>(), any::<bool>(), any::<u32>(), proptest::option::of(0u8..4))
    }

    proptest! {
        #[test]
        fn any_run_of_outcomes_round_trips(first in -1_000_000_000_000i64..4_000_000_000_000, steps in proptest::collection::vec(any_outcome(), 0..200)) {
            let mut at = first;
            let outcomes: Vec<Outcome> = steps.into_iter().map(|(gap, success, slow, latency_us, detail)| {
                at += i64::from(gap);
                Outcome { at_ms: at, success, slow, latency_us, detail: detail.map(|d| format!("reason {d} ✓").into()) }
            }).collect();
            let bytes = encode(first, &outcomes);
            prop_assert_eq!(decode_outcomes(first, &bytes), Ok(outcomes));
        }

        #[test]
        fn any_bytes_decode_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_outcomes(0, &bytes);
            let _ = decode_samples(0, "m", &bytes);
            let _ = decode_counts(0, "r", &bytes);
        }
    }
}
