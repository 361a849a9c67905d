//! Replaying recorded check outcomes ([`crate::history::Outcome`]) through a breaker, for the policy lab's
//! `aegis-host replay`: every outcome goes, in recorded order and at its recorded time, through the same
//! [`Breaker`] the supervisor drives live (`try_acquire` at the check's start, `record` at its end with its latency),
//! and the recovery the service's config (or a candidate strategy) would have run is modelled on the transitions
//! ([`recovery`]). [`compare`] lines two runs up and finds their first divergence.
//!
//! Owns the replay of one service's history; must not read the store, load plugins or look at the wall clock: the
//! outcomes, the breaker [`Settings`] (with their [`crate::TripPredicate`]) and the recovery model are given, and
//! time comes only from the record. Recorded outcomes do not change with the replayed decisions: a check the replayed
//! breaker would have refused is counted as skipped, and a restart the replay would have run does not make the
//! recorded failures go away. Checks the live breaker refused were never run, so they are not in the record either.
//!
//! The breaker is not simplified for the replay: a trip predicate that may block (a plugin) is judged as it is live,
//! outside the breaker's locks on its private copy of counts and window. A replay is single-threaded, so judging it in
//! place would give the same verdicts; measured, it would be about 4 % faster (`host/cli/benches/replay.rs`), not
//! worth a second way of driving the breaker.
//!
//! # Time
//! `Instant`s are built from one base (taken once per run) plus the recorded offsets, in microseconds: a check
//! starts at `at_ms - latency` and ends at `at_ms`. The breaker sees nothing else, so a run is deterministic, and a
//! replay of a day takes as long as its outcomes take to count, not a day.

pub mod compare;
pub mod recovery;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use self::compare::{Divergence, Moment, first_divergence, moments};
use self::recovery::Recovery;
pub use self::recovery::{RecoveryEvent, RecoveryModel, RecoveryStep, RestartLimit};
use crate::breaker::{Breaker, Settings, State, StateChange};
use crate::history::Outcome;

/// One breaker transition of a replay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// When (ms since the Unix epoch, from the record).
    pub at_ms: i64,
    pub from: State,
    pub to: State,
    /// The breaker's reason (the trip predicate's for an opening).
    pub reason: String,
}

/// What one replay would have done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Run {
    /// Breaker transitions, oldest first.
    pub changes: Vec<Change>,
    /// Recovery decisions, notifications, restarts and give-ups, oldest first.
    pub recovery: Vec<RecoveryEvent>,
    /// Outcomes the replayed breaker admitted.
    pub checked: u64,
    /// Outcomes the replayed breaker would have refused (it was open, or its trial slot was taken).
    pub skipped: u64,
    /// Time spent open (from each opening to the next closing, or to the end of the replay), in milliseconds.
    pub open_ms: i64,
    /// The state at the end of the replay.
    pub end_state: State,
}

impl Run {
    /// Breaker openings (closed → open and half-open → open).
    pub fn openings(&self) -> usize {
        self.changes.iter().filter(|c| c.to == State::Open).count()
    }

    /// Restarts that would have run.
    pub fn restarts(&self) -> usize {
        self.recovery.iter().filter(|e| matches!(e.step, RecoveryStep::Restart { .. })).count()
    }
}

/// Converts recorded times into the `Instant`s the breaker sees: one base, microsecond offsets.
#[derive(Clone, Copy, Debug)]
struct Timeline {
    base: Instant,
    /// The recorded time (µs since the Unix epoch) that `base` stands for.
    origin_us: i64,
}

impl Timeline {
    fn new(first: Option<&Outcome>, end_ms: i64) -> Self {
        let first_ms = first.map_or(end_ms, |o| o.at_ms.min(end_ms));
        // A check starts at most `u32::MAX` µs (its largest recordable latency) before its end: no offset is negative.
        Timeline { base: Instant::now(), origin_us: first_ms.saturating_mul(1000) - i64::from(u32::MAX) }
    }

    fn at_us(&self, us: i64) -> Instant {
        let offset = u64::try_from(us.saturating_sub(self.origin_us)).unwrap_or(0);
        self.base + Duration::from_micros(offset)
    }

    fn at_ms(&self, ms: i64) -> Instant {
        self.at_us(ms.saturating_mul(1000))
    }

    fn ms_of(&self, at: Instant) -> i64 {
        let us = i64::try_from(at.saturating_duration_since(self.base).as_micros()).unwrap_or(i64::MAX);
        (self.origin_us.saturating_add(us)).div_euclid(1000)
    }
}

/// Transitions reported by the breaker's listener, waiting to be read after each call.
#[derive(Debug, Default)]
struct Inbox {
    any: AtomicBool,
    changes: Mutex<Vec<StateChange>>,
}

impl Inbox {
    fn take(&self, into: &mut Vec<StateChange>) {
        if self.any.swap(false, Ordering::Acquire) {
            into.append(&mut self.changes.lock().unwrap_or_else(PoisonError::into_inner));
        }
    }
}

/// Replays `outcomes` (oldest first) through a fresh, closed breaker built from `settings` (its listener is
/// replaced) and the recovery of `model`, up to `end_ms` (timers due by then, such as a pending restart, still fire).
pub fn replay(outcomes: &[Outcome], settings: Settings, model: &RecoveryModel, end_ms: i64) -> Run {
    let end_ms = outcomes.last().map_or(end_ms, |o| end_ms.max(o.at_ms));
    let time = Timeline::new(outcomes.first(), end_ms);
    let inbox = Arc::new(Inbox::default());
    let tx = Arc::clone(&inbox);
    let slow = settings.slow_threshold();
    let breaker = Breaker::new(settings.on_state_change(Arc::new(move |c: &StateChange| {
        tx.changes.lock().unwrap_or_else(PoisonError::into_inner).push(c.clone());
        tx.any.store(true, Ordering::Release);
    })));
    let mut recovery = Recovery::new(model, outcomes, time);
    let mut run =
        Run { changes: Vec::new(), recovery: Vec::new(), checked: 0, skipped: 0, open_ms: 0, end_state: State::Closed };
    let mut seen = Vec::new();
    for (index, o) in outcomes.iter().enumerate() {
        let end_us = o.at_ms.saturating_mul(1000);
        let start_us = end_us - i64::from(o.latency_us);
        fire_due(&mut recovery, &breaker, &time, &inbox, &mut run, &mut seen, o.at_ms);
        match breaker.try_acquire(time.at_us(start_us)) {
            Ok(permit) => {
                breaker.record(time.at_us(end_us), permit, o.success, recorded_duration(o, slow));
                run.checked += 1;
                if !o.success {
                    recovery.failed(index);
                }
            }
            Err(_) => run.skipped += 1,
        }
        handle_changes(&mut recovery, &time, &inbox, &mut run, &mut seen);
    }
    fire_due(&mut recovery, &breaker, &time, &inbox, &mut run, &mut seen, end_ms);
    run.end_state = breaker.current_state();
    run.open_ms = open_ms(&run.changes, end_ms);
    run.recovery = recovery.into_events();
    run
}

/// The duration the breaker is given for `o`: the recorded latency, nudged across the slow-call threshold when the
/// recorded verdict says otherwise (live, the breaker timed the check with its own clock, a hair longer than the
/// probe's latency; the verdict it reached is the one to replay).
fn recorded_duration(o: &Outcome, slow: Option<Duration>) -> Duration {
    let latency = Duration::from_micros(u64::from(o.latency_us));
    match slow {
        Some(threshold) if o.slow && latency < threshold => threshold,
        Some(threshold) if !o.slow && latency >= threshold => threshold.saturating_sub(Duration::from_nanos(1)),
        _ => latency,
    }
}

/// Fires the recovery timers due by `until_ms` (each may ask the breaker for its state, which may move it to
/// half-open), handling the transitions in between.
fn fire_due(
    recovery: &mut Recovery<'_>,
    breaker: &Breaker,
    time: &Timeline,
    inbox: &Inbox,
    run: &mut Run,
    seen: &mut Vec<StateChange>,
    until_ms: i64,
) {
    while let Some(due) = recovery.next_due().filter(|&due| due <= until_ms) {
        recovery.fire(due, |at_ms| breaker.state(time.at_ms(at_ms)));
        handle_changes(recovery, time, inbox, run, seen);
    }
}

fn handle_changes(
    recovery: &mut Recovery<'_>,
    time: &Timeline,
    inbox: &Inbox,
    run: &mut Run,
    seen: &mut Vec<StateChange>,
) {
    inbox.take(seen);
    for c in seen.drain(..) {
        let change = Change { at_ms: time.ms_of(c.at), from: c.from, to: c.to, reason: c.reason };
        recovery.on_change(&change);
        run.changes.push(change);
    }
}

/// Milliseconds from each opening to the closing that ends it (or to `end_ms`).
fn open_ms(changes: &[Change], end_ms: i64) -> i64 {
    let mut total = 0;
    let mut since = None;
    for c in changes {
        match c.to {
            State::Open if since.is_none() => since = Some(c.at_ms),
            State::Closed => {
                if let Some(at) = since.take() {
                    total += c.at_ms - at;
                }
            }
            _ => {}
        }
    }
    total + since.map_or(0, |at| end_ms - at)
}
