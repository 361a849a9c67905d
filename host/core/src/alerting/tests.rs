//! Lifecycle tests for [`AlertBook`]: every transition, driven by explicit `now_ms` values.

use std::time::Duration;

use super::*;
use crate::policy::{AlertStatus, Severity};

const S: u64 = 1000;
const MIN: u64 = 60 * S;

fn level(for_s: u64, keep_s: u64) -> AlertSpec {
    AlertSpec {
        severity: Severity::Critical,
        for_: Duration::from_secs(for_s),
        keep_firing_for: Duration::from_secs(keep_s),
        ..AlertSpec::new("BreakerOpen")
    }
}

fn pulse(for_s: u64, keep_s: u64) -> AlertSpec {
    AlertSpec { source: SourceKind::Pulse, ..level(for_s, keep_s) }
}

fn svc(name: &str) -> LabelSet {
    label_set([("service", name)])
}

fn none() -> LabelSet {
    LabelSet::new()
}

fn kinds(notices: &[Notice]) -> Vec<(NoticeKind, AlertStatus, u64, Option<u64>)> {
    notices.iter().map(|n| (n.kind, n.alert.status, n.alert.starts_at_ms, n.alert.ends_at_ms)).collect()
}

#[test]
fn a_single_noisy_sample_stays_pending_and_is_dropped_silently() {
    let spec = level(60, 0);
    let mut book = AlertBook::new();
    let fp = book.assert(&spec, &svc("api"), &none(), 0);
    assert_eq!(book.get(&fp).unwrap().state, AlertState::Pending);
    assert_eq!(book.tick(30 * S), vec![]);
    assert_eq!(book.active(30 * S)[0].state, AlertState::Pending);
    assert!(book.release(&fp, 40 * S));
    assert!(book.is_empty());
    assert_eq!(book.tick(2 * MIN), vec![], "no firing and no resolved notification");
    assert!(!book.release(&fp, 2 * MIN), "already forgotten");
}

#[test]
fn pending_for_the_full_for_duration_fires() {
    let spec = level(60, 0);
    let mut book = AlertBook::new();
    let fp = book.assert(&spec, &svc("api"), &none(), 0);
    book.assert(&spec, &svc("api"), &none(), 30 * S);
    assert_eq!(book.tick(59 * S), vec![]);
    let active = book.active(60 * S);
    assert_eq!((active[0].state, active[0].starts_at_ms), (AlertState::Firing, Some(60 * S)), "view is read-only");
    assert_eq!(book.get(&fp).unwrap().state, AlertState::Pending);
    assert_eq!(kinds(&book.tick(60 * S)), vec![(NoticeKind::Firing, AlertStatus::Firing, 60 * S, None)]);
    let a = book.get(&fp).unwrap();
    assert_eq!((a.state, a.active_at_ms, a.starts_at_ms, a.count), (AlertState::Firing, 0, Some(60 * S), 2));
    assert_eq!(book.tick(61 * S), vec![], "notified once");
}

#[test]
fn a_zero_for_fires_on_the_first_assert() {
    let mut book = AlertBook::new();
    let fp = book.assert(&level(0, 0), &svc("api"), &none(), 5 * S);
    assert_eq!(book.get(&fp).unwrap().state, AlertState::Firing);
    assert_eq!(kinds(&book.tick(6 * S)), vec![(NoticeKind::Firing, AlertStatus::Firing, 5 * S, None)]);
}

#[test]
fn keep_firing_for_holds_a_released_alert_then_resolves_it() {
    let spec = level(0, 120);
    let mut book = AlertBook::new();
    let fp = book.assert(&spec, &svc("api"), &none(), 0);
    assert_eq!(book.tick(0).len(), 1);
    book.release(&fp, 10 * S);
    assert_eq!(book.tick(100 * S), vec![]);
    assert_eq!(book.active(100 * S)[0].state, AlertState::Firing);
    assert!(book.active(120 * S).is_empty(), "due to resolve");
    assert_eq!(kinds(&book.tick(121 * S)), vec![(NoticeKind::Resolved, AlertStatus::Resolved, 0, Some(120 * S))]);
    assert!(book.is_empty(), "resolved alerts are handed out once, then forgotten");
    assert_eq!(book.tick(200 * S), vec![]);
}

#[test]
fn the_condition_returning_within_keep_firing_for_keeps_the_same_alert() {
    let spec = level(0, 120);
    let mut book = AlertBook::new();
    let fp = book.assert(&spec, &svc("api"), &none(), 0);
    book.tick(0);
    book.release(&fp, 10 * S);
    book.assert(&spec, &svc("api"), &none(), 50 * S);
    assert_eq!(book.tick(150 * S), vec![], "held again: no new firing notice, no resolve");
    book.release(&fp, 160 * S);
    assert_eq!(book.tick(169 * S), vec![]);
    // Resolves keep_firing_for after the last assert (50 s), not after the release.
    assert_eq!(kinds(&book.tick(170 * S)), vec![(NoticeKind::Resolved, AlertStatus::Resolved, 0, Some(170 * S))]);
}

#[test]
fn a_level_alert_without_keep_firing_for_resolves_at_its_release() {
    let mut book = AlertBook::new();
    let spec = level(0, 0);
    book.assert(&spec, &svc("api"), &none(), 0);
    book.tick(0);
    assert!(book.release_labels(&spec, &svc("api"), 30 * S));
    assert!(book.is_empty(), "resolved at once, queued for the next tick");
    assert_eq!(kinds(&book.tick(45 * S)), vec![(NoticeKind::Resolved, AlertStatus::Resolved, 0, Some(30 * S))]);
    assert!(!book.release_labels(&spec, &svc("other"), 30 * S));
}

#[test]
fn a_forgotten_alert_is_dropped_without_a_notification() {
    let spec = AlertSpec { repeat_interval: Duration::from_secs(3600), ..level(0, 0) };
    let mut book = AlertBook::new();
    let fp = book.assert(&spec, &svc("api"), &none(), 0);
    assert_eq!(book.tick(0)[0].kind, NoticeKind::Firing);
    assert!(book.forget(&fp));
    assert!(book.is_empty());
    assert_eq!(book.tick(2 * 60 * MIN), vec![], "neither resolved nor repeated");
    assert!(!book.forget(&fp), "already gone");
}

#[test]
fn an_adopted_alert_keeps_its_start_and_does_not_fire_again() {
    let spec = level(0, 0);
    let mut old_owner = AlertBook::new();
    let fp = old_owner.assert(&spec, &svc("api"), &none(), 5);
    assert_eq!(old_owner.tick(5)[0].kind, NoticeKind::Firing);
    let carried = old_owner.get(&fp).cloned().expect("firing");
    let ended = TrackedAlert { state: AlertState::Resolved, ..carried.clone() };
    assert!(!AlertBook::new().adopt(ended), "a resolved alert is not taken");

    let mut new_owner = AlertBook::new();
    assert!(new_owner.adopt(carried));
    // The new owner's source asserts the condition again: the same alert, not a second firing.
    new_owner.assert(&spec, &svc("api"), &none(), 10 * MIN);
    assert_eq!(new_owner.tick(10 * MIN), vec![]);
    assert_eq!(new_owner.get(&fp).and_then(|a| a.starts_at_ms), Some(5));
    new_owner.release(&fp, 11 * MIN);
    let resolved = new_owner.tick(11 * MIN);
    assert_eq!(kinds(&resolved), vec![(NoticeKind::Resolved, AlertStatus::Resolved, 5, Some(11 * MIN))]);
}

#[test]
fn repeat_interval_re_sends_a_firing_alert() {
    let spec = AlertSpec { repeat_interval: Duration::from_secs(3600), ..level(0, 0) };
    let mut book = AlertBook::new();
    book.assert(&spec, &svc("api"), &none(), 0);
    assert_eq!(book.tick(0)[0].kind, NoticeKind::Firing);
    assert_eq!(book.tick(30 * MIN), vec![]);
    let repeat = book.tick(60 * MIN);
    assert_eq!(kinds(&repeat), vec![(NoticeKind::Repeat, AlertStatus::Firing, 0, None)]);
    assert_eq!(book.tick(90 * MIN), vec![]);
    assert_eq!(book.tick(125 * MIN)[0].kind, NoticeKind::Repeat);
    assert_eq!(book.tick(180 * MIN), vec![], "measured from the last notice (125 min)");

    let never = AlertSpec { repeat_interval: Duration::ZERO, ..level(0, 0) };
    let mut book = AlertBook::new();
    book.assert(&never, &svc("api"), &none(), 0);
    assert_eq!(book.tick(0).len(), 1);
    assert_eq!(book.tick(1000 * MIN), vec![], "zero never repeats");
}

#[test]
fn duplicates_merge_into_one_alert() {
    let spec = pulse(0, 300);
    let mut book = AlertBook::new();
    let a = book.assert(&spec, &label_set([("service", "api"), ("file", "x.log")]), &label_set([("line", "1")]), 0);
    let b = book.assert(&spec, &label_set([("file", "x.log"), ("service", "api")]), &label_set([("line", "2")]), S);
    let c = book.assert(&spec, &label_set([("service", "api"), ("file", "x.log")]), &label_set([("line", "3")]), 2 * S);
    assert_eq!((a == b, b == c, book.len()), (true, true, 1));
    let alert = book.get(&a).unwrap();
    assert_eq!((alert.count, alert.last_active_ms, alert.active_at_ms), (3, 2 * S, 0));
    assert_eq!(alert.annotations, label_set([("line", "3")]));
    assert_eq!(book.tick(2 * S).len(), 1, "one notification for three matches");
    let other = book.assert(&spec, &svc("web"), &none(), 3 * S);
    assert_ne!(other, a);
    assert_eq!(book.len(), 2);
}

#[test]
fn pulse_sources_resolve_keep_firing_for_after_the_last_match() {
    let spec = pulse(0, 300);
    let mut book = AlertBook::new();
    let fp = book.assert(&spec, &svc("api"), &none(), 0);
    book.assert(&spec, &svc("api"), &none(), MIN);
    book.assert(&spec, &svc("api"), &none(), 3 * MIN);
    assert_eq!(kinds(&book.tick(3 * MIN)), vec![(NoticeKind::Firing, AlertStatus::Firing, 0, None)]);
    assert_eq!(book.tick(7 * MIN), vec![]);
    assert_eq!(kinds(&book.tick(9 * MIN)), vec![(NoticeKind::Resolved, AlertStatus::Resolved, 0, Some(8 * MIN))]);
    // A later match is a new incident with a new start.
    book.assert(&spec, &svc("api"), &none(), 10 * MIN);
    let alert = book.get(&fp).unwrap();
    assert_eq!((alert.starts_at_ms, alert.count), (Some(10 * MIN), 1));
    assert_eq!(kinds(&book.tick(10 * MIN)), vec![(NoticeKind::Firing, AlertStatus::Firing, 10 * MIN, None)]);
}

#[test]
fn pulse_sources_with_for_need_matches_to_keep_coming() {
    let spec = pulse(60, 300);
    let mut book = AlertBook::new();
    let fp = book.assert(&spec, &svc("api"), &none(), 0);
    assert_eq!(book.tick(30 * S), vec![]);
    book.assert(&spec, &svc("api"), &none(), 40 * S);
    assert_eq!(book.get(&fp).unwrap().state, AlertState::Pending);
    book.assert(&spec, &svc("api"), &none(), 60 * S);
    assert_eq!(book.get(&fp).unwrap().state, AlertState::Firing, "a match for_ after the first fires");

    let mut book = AlertBook::new();
    book.assert(&spec, &svc("api"), &none(), 0);
    assert_eq!(book.tick(61 * S), vec![], "quiet for longer than for_: dropped");
    assert!(book.is_empty());
    book.assert(&spec, &svc("api"), &none(), 2 * MIN);
    assert_eq!(book.get(&fp).unwrap().active_at_ms, 2 * MIN, "a new pending cycle");
    book.assert(&spec, &svc("api"), &none(), 4 * MIN);
    assert_eq!(book.get(&fp).unwrap().active_at_ms, 4 * MIN, "a two-minute gap also restarts it");
}

#[test]
fn a_condition_that_returns_after_resolving_starts_a_new_cycle_and_keeps_the_resolve() {
    let spec = level(0, 0);
    let mut book = AlertBook::new();
    let fp = book.assert(&spec, &svc("api"), &none(), 0);
    book.tick(0);
    book.release(&fp, 10 * S);
    book.assert(&spec, &svc("api"), &none(), 20 * S);
    let notices = book.tick(20 * S);
    assert_eq!(
        kinds(&notices),
        vec![
            (NoticeKind::Firing, AlertStatus::Firing, 20 * S, None),
            (NoticeKind::Resolved, AlertStatus::Resolved, 0, Some(10 * S)),
        ]
    );
    assert!(notices.iter().all(|n| n.alert.fingerprint == fp));
}

#[test]
fn an_alert_that_fires_and_resolves_between_ticks_is_still_announced() {
    let mut book = AlertBook::new();
    let fp = book.assert(&level(0, 0), &svc("api"), &none(), 0);
    book.release(&fp, 5 * S);
    assert_eq!(
        kinds(&book.tick(10 * S)),
        vec![
            (NoticeKind::Firing, AlertStatus::Firing, 0, None),
            (NoticeKind::Resolved, AlertStatus::Resolved, 0, Some(5 * S)),
        ]
    );
}

#[test]
fn notices_convert_to_the_formatter_model() {
    let spec = AlertSpec {
        labels: label_set([("team", "core")]),
        annotations: label_set([("runbook", "https://r")]),
        ..level(0, 0)
    };
    let mut book = AlertBook::new();
    let fp = book.assert(&spec, &svc("api"), &label_set([("summary", "open")]), 7);
    let alert = &book.tick(7)[0].alert;
    assert_eq!(alert.name, "BreakerOpen");
    assert_eq!(
        (alert.status, alert.severity, alert.starts_at_ms, alert.ends_at_ms),
        (AlertStatus::Firing, Severity::Critical, 7, None)
    );
    assert_eq!(alert.fingerprint, fp);
    assert_eq!(alert.fingerprint, fingerprint(&spec.label_set(&svc("api"))));
    let pairs = |v: &[(&str, &str)]| v.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<Vec<_>>();
    assert_eq!(
        alert.labels,
        pairs(&[("alertname", "BreakerOpen"), ("service", "api"), ("severity", "critical"), ("team", "core")])
    );
    assert_eq!(alert.annotations, pairs(&[("runbook", "https://r"), ("summary", "open")]));
    let body: serde_json::Value = serde_json::from_slice(&alertmanager_v2_body(std::slice::from_ref(alert))).unwrap();
    assert_eq!(body[0]["labels"]["team"], "core");
}

#[test]
fn snapshot_round_trips_through_json_and_behaves_the_same() {
    let mut book = AlertBook::new();
    let slow = level(60, 0);
    let flappy = AlertSpec { repeat_interval: Duration::from_secs(600), ..level(0, 120) };
    let logs = pulse(0, 300);
    book.assert(&slow, &svc("pending"), &label_set([("summary", "é \"q\"\n")]), 0);
    let firing = book.assert(&flappy, &svc("firing"), &none(), 0);
    let gone = book.assert(&level(0, 0), &svc("gone"), &none(), 0);
    book.assert(&logs, &svc("logs"), &none(), 0);
    book.tick(0);
    book.release(&firing, 10 * S);
    book.release(&gone, 20 * S);

    let snapshot = book.snapshot();
    assert_eq!((snapshot.alerts.len(), snapshot.resolved.len()), (3, 1));
    let json = serde_json::to_string(&snapshot).unwrap();
    assert!(json.contains("\"severity\":\"critical\"") && json.contains("\"state\":\"firing\""), "{json}");
    let restored = AlertBook::restore(serde_json::from_str(&json).unwrap());
    assert_eq!(restored, book);

    let (mut a, mut b) = (book, restored);
    for now in [30 * S, 60 * S, 130 * S, 5 * MIN, 10 * MIN, 11 * MIN] {
        assert_eq!(a.tick(now), b.tick(now), "at {now}");
        assert_eq!(a.active(now), b.active(now));
    }
    assert_eq!(b.len(), 1, "only the level-held pending→firing alert remains");
}

/// The runtime feeds the book a time base that never steps (see the runtime's `clock` module), but a book restored
/// from another process, or a caller whose clock did step, must not turn a step into notifications: a step back
/// re-sends nothing and resolves nothing, and the step forward again repeats only once `repeat_interval` has passed
/// since the last notice.
#[test]
fn a_wall_clock_step_back_and_forth_neither_re_sends_nor_resolves() {
    let spec = AlertSpec { repeat_interval: Duration::from_secs(2 * 3600), ..level(0, 60) };
    let mut book = AlertBook::new();
    let t = 24 * 60 * MIN;
    let fp = book.assert(&spec, &svc("api"), &none(), t);
    assert_eq!(book.tick(t)[0].kind, NoticeKind::Firing);
    for now in [t - 60 * MIN, t - 59 * MIN, t + S, t + 60 * MIN, t + 61 * MIN] {
        book.assert(&spec, &svc("api"), &none(), now);
        assert_eq!(book.tick(now), vec![], "at {now}");
        assert_eq!(book.get(&fp).map(|a| a.state), Some(AlertState::Firing), "at {now}");
    }
    assert_eq!(book.tick(t + 121 * MIN)[0].kind, NoticeKind::Repeat, "two hours after the firing notice");
}
