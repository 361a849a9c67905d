//! How a trip/recovery replay is shown: a side-by-side table for people (one row per moment, the baseline's on the
//! left, the candidate's on the right, the first divergence marked), and one JSON document for scripts.

use std::fmt::Write as _;

use aegis_core::replay::{Divergence, Moment, Run, moments};
use serde_json::{Value, json};

use super::range::{Range, show};

/// One side's labels and run.
pub struct Shown<'a> {
    pub trip: &'a str,
    pub recovery: &'a str,
    pub run: &'a Run,
}

/// What the replay was about.
pub struct Header<'a> {
    pub service: &'a str,
    pub range: Range,
    pub outcomes: usize,
}

/// The table. Moments at the same millisecond that agree share a row.
pub fn table(h: &Header<'_>, baseline: &Shown<'_>, candidate: &Shown<'_>, divergence: Option<&Divergence>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "replay of {}: {} recorded checks from {} to {}",
        h.service,
        h.outcomes,
        show(h.range.from_ms),
        show(h.range.to_ms)
    );
    let _ = writeln!(out, "  baseline:  trip {}, recovery {}", baseline.trip, baseline.recovery);
    let _ = writeln!(out, "  candidate: trip {}, recovery {}", candidate.trip, candidate.recovery);
    let _ = writeln!(out);
    let rows = rows(&moments(baseline.run), &moments(candidate.run));
    let width = rows.iter().filter_map(|r| r.baseline.as_ref()).map(|m| cell(m).chars().count()).max().unwrap_or(0);
    let width = width.clamp("baseline".len(), 60);
    let _ = writeln!(out, "   {:<24}  {:<width$}  candidate", "time (UTC)", "baseline");
    let marked = divergence.map(|d| first_row(&rows, d));
    for (i, row) in rows.iter().enumerate() {
        let mark = if marked == Some(i) { ">>" } else { "  " };
        let left = row.baseline.as_ref().map(cell).unwrap_or_default();
        let right = row.candidate.as_ref().map(cell).unwrap_or_default();
        let _ = writeln!(out, "{mark} {:<24}  {:<width$}  {right}", show(row.at_ms), clip(&left, width));
    }
    if rows.is_empty() {
        let _ = writeln!(out, "   (no transitions and no recovery on either side)");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "   {:<24}  {:>10}  {:>10}", "", "baseline", "candidate");
    for (label, a, b) in [
        ("openings", baseline.run.openings() as i64, candidate.run.openings() as i64),
        ("restarts", baseline.run.restarts() as i64, candidate.run.restarts() as i64),
        ("checks refused", baseline.run.skipped as i64, candidate.run.skipped as i64),
    ] {
        let _ = writeln!(out, "   {label:<24}  {a:>10}  {b:>10}");
    }
    let _ = writeln!(
        out,
        "   {:<24}  {:>10}  {:>10}",
        "time open",
        duration(baseline.run.open_ms),
        duration(candidate.run.open_ms)
    );
    let _ = writeln!(out);
    match divergence {
        None => {
            let _ = writeln!(out, "no divergence: the candidate agrees with the baseline on this history");
        }
        Some(d) => {
            let _ = writeln!(
                out,
                "first divergence at {}: baseline {}, candidate {}",
                show(d.at_ms),
                d.baseline.as_ref().map_or_else(|| "nothing".to_owned(), at_cell),
                d.candidate.as_ref().map_or_else(|| "nothing".to_owned(), at_cell),
            );
        }
    }
    out
}

/// The JSON document.
pub fn json(h: &Header<'_>, baseline: &Shown<'_>, candidate: &Shown<'_>, divergence: Option<&Divergence>) -> Value {
    let side = |s: &Shown<'_>| {
        json!({
            "trip": s.trip,
            "recovery": s.recovery,
            "openings": s.run.openings(),
            "restarts": s.run.restarts(),
            "run": s.run,
        })
    };
    json!({
        "service": h.service,
        "from_ms": h.range.from_ms,
        "to_ms": h.range.to_ms,
        "outcomes": h.outcomes,
        "baseline": side(baseline),
        "candidate": side(candidate),
        "agrees": divergence.is_none(),
        "divergence": divergence,
    })
}

struct Row {
    at_ms: i64,
    baseline: Option<Moment>,
    candidate: Option<Moment>,
}

/// Merges two timelines by time; equal moments (time and kind) share a row.
fn rows(a: &[Moment], b: &[Moment]) -> Vec<Row> {
    let (mut i, mut j) = (0, 0);
    let mut rows = Vec::with_capacity(a.len().max(b.len()));
    while i < a.len() || j < b.len() {
        let row = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.at_ms == y.at_ms && x.what == y.what => {
                (i, j) = (i + 1, j + 1);
                Row { at_ms: x.at_ms, baseline: Some(x.clone()), candidate: Some(y.clone()) }
            }
            (Some(x), Some(y)) if y.at_ms < x.at_ms => {
                j += 1;
                Row { at_ms: y.at_ms, baseline: None, candidate: Some(y.clone()) }
            }
            (Some(x), _) => {
                i += 1;
                Row { at_ms: x.at_ms, baseline: Some(x.clone()), candidate: None }
            }
            (None, Some(y)) => {
                j += 1;
                Row { at_ms: y.at_ms, baseline: None, candidate: Some(y.clone()) }
            }
            (None, None) => break,
        };
        rows.push(row);
    }
    rows
}

/// The row of the divergence: the first row at its time where the sides differ.
fn first_row(rows: &[Row], d: &Divergence) -> usize {
    rows.iter()
        .position(|r| r.at_ms == d.at_ms && (r.baseline.is_none() || r.candidate.is_none()))
        .unwrap_or(usize::MAX)
}

fn cell(m: &Moment) -> String {
    if m.detail.is_empty() { m.what.clone() } else { format!("{} ({})", m.what, m.detail) }
}

fn at_cell(m: &Moment) -> String {
    format!("{} at {}", cell(m), show(m.at_ms))
}

fn clip(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    let mut clipped: String = s.chars().take(width.saturating_sub(1)).collect();
    clipped.push('…');
    clipped
}

fn duration(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(at_ms: i64, what: &str) -> Moment {
        Moment { at_ms, what: what.to_owned(), detail: String::new() }
    }

    #[test]
    fn agreeing_moments_share_a_row_and_the_others_interleave_by_time() {
        let a = [m(1, "closed -> open"), m(5, "restart"), m(9, "half-open -> closed")];
        let b = [m(1, "closed -> open"), m(3, "restart"), m(9, "half-open -> closed")];
        let rows = rows(&a, &b);
        let shape: Vec<(i64, bool, bool)> =
            rows.iter().map(|r| (r.at_ms, r.baseline.is_some(), r.candidate.is_some())).collect();
        assert_eq!(shape, [(1, true, true), (3, false, true), (5, true, false), (9, true, true)]);
    }
}
