//! Replays of hand-made records: the transitions, recovery and comparison a record must produce.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::backoff::{BackoffSettings, Jitter};
use crate::breaker::{ConsecutiveFailures, TripPredicate};
use crate::policy::{Failure, RecoveryAction, RecoveryStrategy};

const T0: i64 = 1_700_000_000_000;

/// One check per second from `T0`: `pattern` is `.` for a success, `x` for a failure, `s` for a slow success.
fn record(pattern: &str) -> Vec<Outcome> {
    pattern
        .chars()
        .enumerate()
        .map(|(i, c)| Outcome {
            at_ms: T0 + 1000 * i as i64,
            success: c != 'x',
            slow: c == 's',
            latency_us: 2_000,
            detail: (c == 'x').then(|| format!("status 503 #{i}").into()),
        })
        .collect()
}

fn settings(trip: Arc<dyn TripPredicate>) -> Settings {
    Settings::new("web").reset_timeout(Duration::from_secs(5)).success_threshold(1).trip_predicate(trip)
}

fn no_recovery() -> RecoveryModel {
    RecoveryModel { strategy: None, on_failure: RecoveryAction::Ignore, backoff: None, restart_limit: None, seed: 7 }
}

fn at(second: i64) -> i64 {
    T0 + 1000 * second
}

fn shape(run: &Run) -> Vec<(i64, State, State)> {
    run.changes.iter().map(|c| (c.at_ms, c.from, c.to)).collect()
}

#[test]
fn an_outage_opens_skips_checks_then_closes_on_the_first_trial_after_the_timeout() {
    // Fails from second 3 to 9; recovered from 10.
    let outcomes = record("...xxxxxxx......");
    let run = replay(&outcomes, settings(Arc::new(ConsecutiveFailures(3))), &no_recovery(), at(15));
    assert_eq!(
        shape(&run),
        [
            (at(5), State::Closed, State::Open),
            // Open for 5 s: the checks ending at 6..=10 are refused (the one ending at 10 started 2 ms before the
            // reset timeout elapsed); the next is the trial.
            (at(11) - 2, State::Open, State::HalfOpen),
            (at(11), State::HalfOpen, State::Closed),
        ]
    );
    assert!(run.changes[0].reason.contains("consecutive failures"), "{}", run.changes[0].reason);
    assert_eq!((run.checked, run.skipped), (11, 5));
    assert_eq!(run.open_ms, 6000);
    assert_eq!(run.end_state, State::Closed);
}

#[test]
fn a_failed_trial_reopens_and_the_open_time_runs_to_the_end() {
    let outcomes = record("xxx......xxx");
    let run = replay(&outcomes, settings(Arc::new(ConsecutiveFailures(3))), &no_recovery(), at(20));
    let to: Vec<State> = run.changes.iter().map(|c| c.to).collect();
    assert_eq!(to, [State::Open, State::HalfOpen, State::Closed, State::Open]);
    assert_eq!(run.openings(), 2);
    // Open 2 → 8 (closed by the trial ending at 8), then from 11 to the end at 20.
    assert_eq!(run.open_ms, 6000 + 9000);
    assert!(run.end_state == State::Open);
}

#[test]
fn the_same_policy_agrees_and_a_stricter_one_diverges_at_its_earlier_opening() {
    let outcomes = record("..x.xxxx.........");
    let baseline = replay(&outcomes, settings(Arc::new(ConsecutiveFailures(3))), &no_recovery(), at(20));
    let same = replay(&outcomes, settings(Arc::new(ConsecutiveFailures(3))), &no_recovery(), at(20));
    assert_eq!(first_divergence(&baseline, &same), None);
    let stricter = replay(&outcomes, settings(Arc::new(ConsecutiveFailures(2))), &no_recovery(), at(20));
    assert_eq!(stricter.changes[0].at_ms, at(5));
    assert_eq!(baseline.changes[0].at_ms, at(6));
    let d = first_divergence(&baseline, &stricter).expect("diverges");
    assert_eq!((d.index, d.at_ms), (0, at(5)));
    assert_eq!(d.candidate.expect("candidate moment").what, "closed -> open");
    assert_eq!(d.baseline.expect("baseline moment").at_ms, at(6));
}

#[test]
fn reasons_alone_are_no_divergence() {
    #[derive(Debug)]
    struct Worded;
    impl TripPredicate for Worded {
        fn should_trip(&self, ctx: &crate::TripContext<'_>) -> Option<String> {
            (ctx.counts().consecutive_failures >= 3).then(|| "three in a row, in other words".to_owned())
        }
    }
    let outcomes = record("..xxx....");
    let baseline = replay(&outcomes, settings(Arc::new(ConsecutiveFailures(3))), &no_recovery(), at(10));
    let worded = replay(&outcomes, settings(Arc::new(Worded)), &no_recovery(), at(10));
    assert_ne!(baseline.changes[0].reason, worded.changes[0].reason);
    assert_eq!(first_divergence(&baseline, &worded), None);
}

#[test]
fn restarts_follow_the_backoff_and_the_restart_limit_gives_up() {
    let model = RecoveryModel {
        on_failure: RecoveryAction::Restart,
        backoff: Some(BackoffSettings {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: Jitter::None,
            reset_after: None,
        }),
        restart_limit: Some(RestartLimit { burst: 2, interval: Duration::from_secs(3600) }),
        ..no_recovery()
    };
    // Opens at 2 (restart 2 s later); its trial at 8 fails: opens again (restart 4 s later); the trial at 13 closes;
    // the third opening, at 18, is refused a third restart within the hour.
    let outcomes = record("xxx.....xxx.....xxx.....");
    let run = replay(&outcomes, settings(Arc::new(ConsecutiveFailures(3))), &model, at(30));
    let steps: Vec<(i64, RecoveryStep)> = run.recovery.iter().map(|e| (e.at_ms, e.step.clone())).collect();
    assert_eq!(
        steps,
        [
            (at(2) + 2000, RecoveryStep::Restart { attempt: 1 }),
            (at(8) + 4000, RecoveryStep::Restart { attempt: 2 }),
            (at(18), RecoveryStep::GaveUp { restarts: 2 }),
        ]
    );
    assert_eq!(run.restarts(), 2);
    let without_limit = replay(
        &outcomes,
        settings(Arc::new(ConsecutiveFailures(3))),
        &RecoveryModel { restart_limit: None, ..model },
        at(30),
    );
    let d = first_divergence(&run, &without_limit).expect("the limit makes a difference");
    assert_eq!(d.at_ms, at(18));
    assert_eq!(d.baseline.expect("gave up").what, "gave up");
}

/// Waits 3 s at the first attempt, restarts at the next; records what it was shown.
#[derive(Debug, Default)]
struct WaitThenRestart {
    seen: Mutex<Vec<(usize, u32, String)>>,
}

impl RecoveryStrategy for WaitThenRestart {
    fn decide(&self, history: &[Failure], attempt: u32) -> RecoveryAction {
        let last = history.last().map(|f| f.detail.clone()).unwrap_or_default();
        self.seen.lock().unwrap().push((history.len(), attempt, last));
        if attempt == 0 { RecoveryAction::Wait(Duration::from_secs(3)) } else { RecoveryAction::Restart }
    }
}

#[test]
fn a_strategy_waits_then_is_asked_again_while_the_breaker_is_still_open() {
    let strategy = Arc::new(WaitThenRestart::default());
    let model = RecoveryModel { strategy: Some(strategy.clone()), ..no_recovery() };
    let outcomes = record("xxx..........");
    let run = replay(&outcomes, settings(Arc::new(ConsecutiveFailures(3))), &model, at(15));
    let steps: Vec<(i64, RecoveryStep)> = run.recovery.iter().map(|e| (e.at_ms, e.step.clone())).collect();
    assert_eq!(
        steps,
        [
            (at(2), RecoveryStep::Decided { attempt: 0, action: "wait 3000 ms".into() }),
            (at(5), RecoveryStep::Decided { attempt: 1, action: "restart".into() }),
            (at(5), RecoveryStep::Restart { attempt: 0 }),
        ]
    );
    let seen = strategy.seen.lock().unwrap().clone();
    assert_eq!(seen, [(3, 0, "status 503 #2".to_owned()), (3, 1, "status 503 #2".to_owned())]);
}

#[test]
fn the_recorded_slow_verdict_is_replayed_whatever_the_latency() {
    #[derive(Debug)]
    struct SlowTwice;
    impl TripPredicate for SlowTwice {
        fn should_trip(&self, ctx: &crate::TripContext<'_>) -> Option<String> {
            (ctx.counts().slow_calls >= 2).then(|| "two slow".to_owned())
        }
    }
    // Latency 2 ms, under the 1 s threshold, but recorded slow: the live breaker timed them over it.
    let outcomes = record(".ss..");
    let s = settings(Arc::new(SlowTwice)).slow_call_duration(Some(Duration::from_secs(1)));
    let run = replay(&outcomes, s, &no_recovery(), at(5));
    assert_eq!(shape(&run), [(at(2), State::Closed, State::Open)]);
}

#[test]
fn an_empty_record_replays_to_nothing() {
    let run = replay(&[], settings(Arc::new(ConsecutiveFailures(3))), &no_recovery(), T0);
    assert_eq!((run.checked, run.skipped, run.open_ms, run.changes.len()), (0, 0, 0, 0));
}
