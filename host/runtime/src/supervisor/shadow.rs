//! Shadow policies (issue 17): a second trip predicate or recovery strategy (`tripPolicy.shadow`,
//! `recoveryPolicy.shadow`) asked on exactly the live policy's inputs, whose answer is compared with the live one and
//! never acted on. A disagreement is counted in `aegis_shadow_disagreements_total{service,policy}` (`policy`: `trip`
//! or `recovery`) and recorded as a `shadow-disagreed` event with both answers.
//!
//! Cost: the live policy decides first; the shadow is asked after it, so the live verdict waits only for the shadow's
//! call (a quick plugin answers in about a microsecond; a misbehaving one at most its deadline, until it is
//! quarantined and no longer asked). Recording a disagreement (a database write) happens off the decision path. A
//! shadow that traps, times out or answers nonsense gives no answer (nothing is compared), and is quarantined on the
//! plugin's shadow record, apart from the live bindings of the same plugin (see `aegis_plugin::shadow_name`).
//!
//! Must not change a live decision, transition a breaker or run an action.

use std::fmt;
use std::sync::{Arc, Mutex, Weak};

use aegis_core::policy::{Failure, RecoveryAction, RecoveryStrategy};
use aegis_core::{EvaluateOn, TripContext, TripPredicate};
use aegis_plugin::{WasmRecoveryStrategy, WasmTripPredicate};

use super::build::service_info;
use super::recovery::round_ms;
use crate::binding::log_binding;
use crate::config::ServiceConfig;
use crate::off_worker::hand_off;
use crate::state::{SHADOW_DISAGREED, Shared};

/// `live` with the service's trip shadow (if it has one) asked after every decision of it.
pub(super) fn with_trip_shadow(
    shared: &Arc<Shared>,
    s: &ServiceConfig,
    live: Arc<dyn TripPredicate>,
    built_in: &Arc<dyn TripPredicate>,
) -> Arc<dyn TripPredicate> {
    let Some(policy) = &s.breaker.trip_shadow else { return live };
    let bound =
        shared.plugins.trip_predicate(&policy.plugin, service_info(s), policy.config.clone(), Arc::clone(built_in));
    match bound.map(|p| p.into_shadow(&shared.plugins).off_worker(hand_off)) {
        Ok(shadow) => {
            log_binding(&shared.plugins, "shadow trip predicate", &s.name, &policy.plugin, shadow.is_loaded());
            let report = Report { shared: Arc::downgrade(shared), service: s.name.to_string(), policy: "trip" };
            Arc::new(ShadowedTrip { live, shadow, report, run: Mutex::new(None) })
        }
        Err(e) => {
            tracing::error!(service = %s.name, "{e}; no trip shadow");
            live
        }
    }
}

/// The service's recovery shadow, if it has one and it binds.
pub(super) fn recovery_shadow(shared: &Arc<Shared>, s: &ServiceConfig) -> Option<Arc<WasmRecoveryStrategy>> {
    let policy = s.recovery_shadow.as_ref()?;
    let fixed: Arc<dyn RecoveryStrategy> =
        Arc::new(aegis_core::policy::FixedAction(super::recovery::fixed_action(s.on_failure)));
    let bound = shared.plugins.recovery_strategy(&policy.plugin, service_info(s), policy.config.clone(), fixed);
    match bound.map(|p| p.into_shadow(&shared.plugins)) {
        Ok(p) => {
            log_binding(&shared.plugins, "shadow recovery strategy", &s.name, &policy.plugin, p.is_loaded());
            Some(Arc::new(p))
        }
        Err(e) => {
            tracing::error!(service = %s.name, "{e}; no recovery shadow");
            None
        }
    }
}

/// Asks the recovery shadow about the decision the live policy took (`live`) on `history` and `attempt`, on a
/// blocking thread, without waiting for it: the live action goes ahead meanwhile.
pub(super) fn compare_recovery(
    shared: &Arc<Shared>,
    service: &str,
    shadow: &Arc<WasmRecoveryStrategy>,
    history: Vec<Failure>,
    attempt: u32,
    live: RecoveryAction,
) {
    let report = Report { shared: Arc::downgrade(shared), service: service.to_owned(), policy: "recovery" };
    let shadow = Arc::clone(shadow);
    let compare = move || {
        let Some(answer) = shadow.answer(&history, attempt) else { return };
        if !same_action(&live, &answer) {
            report.disagreed(format!(
                "recovery: live={} shadow={} (attempt {attempt}, shadow {})",
                action_text(&live),
                action_text(&answer),
                shadow.plugin_name()
            ));
        }
    };
    off_path(compare);
}

/// Runs `f` on the runtime's blocking pool without waiting for it (in place outside a runtime: unit tests).
fn off_path(f: impl FnOnce() + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(f)),
        Err(_) => f(),
    }
}

/// Whether two recovery answers are the same decision: a notification's text does not count, a wait's length does.
fn same_action(a: &RecoveryAction, b: &RecoveryAction) -> bool {
    match (a, b) {
        (RecoveryAction::Wait(x), RecoveryAction::Wait(y)) => x == y,
        _ => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}

/// An action as the disagreement message writes it: `restart`, `notify`, `ignore`, `wait(30s)`.
fn action_text(a: &RecoveryAction) -> String {
    match a {
        RecoveryAction::Restart => "restart".to_owned(),
        RecoveryAction::Notify(_) => "notify".to_owned(),
        RecoveryAction::Ignore => "ignore".to_owned(),
        RecoveryAction::Wait(d) => format!("wait({})", humantime::format_duration(round_ms(*d))),
    }
}

/// Where disagreements go. Holds the shared state weakly: it lives inside the breaker, which the shared state owns.
struct Report {
    shared: Weak<Shared>,
    service: String,
    policy: &'static str,
}

impl Report {
    /// Counts a disagreement and records its event off the caller's thread (a database write).
    fn disagreed(&self, message: String) {
        let Some(shared) = self.shared.upgrade() else { return };
        shared.metrics.shadow_disagreements.with_label_values(&[self.service.as_str(), self.policy]).inc();
        tracing::info!(service = %self.service, policy = self.policy, "shadow disagreed: {message}");
        let service = self.service.clone();
        off_path(move || drop(shared.event(&service, SHADOW_DISAGREED, &message)));
    }

    fn counted(&self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.metrics.shadow_disagreements.with_label_values(&[self.service.as_str(), self.policy]).inc();
        }
    }
}

/// The disagreement of the last decision: a run of equal disagreements in one breaker generation is one event.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Run {
    generation: Option<u32>,
    live: bool,
    shadow: bool,
}

/// A live trip predicate with its shadow. Answers exactly as `live` does.
struct ShadowedTrip {
    live: Arc<dyn TripPredicate>,
    shadow: WasmTripPredicate,
    report: Report,
    /// The disagreement of the previous decision, if it disagreed.
    run: Mutex<Option<Run>>,
}

impl fmt::Debug for ShadowedTrip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShadowedTrip").field("live", &self.live).field("shadow", &self.shadow).finish_non_exhaustive()
    }
}

impl TripPredicate for ShadowedTrip {
    fn should_trip(&self, ctx: &TripContext<'_>) -> Option<String> {
        let live = self.live.should_trip(ctx);
        if let Some(shadow) = self.shadow.answer(ctx) {
            self.compare(ctx.generation(), live.as_deref(), shadow.as_deref());
        }
        live
    }

    /// The shadow sees every outcome the live predicate would have seen, and more if it asks for more (a built-in
    /// live predicate that skips plain successes is still right when asked about them).
    fn evaluate_on(&self) -> EvaluateOn {
        match (self.live.evaluate_on(), self.shadow.evaluate_on()) {
            (EvaluateOn::FailureOrSlow, EvaluateOn::FailureOrSlow) => EvaluateOn::FailureOrSlow,
            _ => EvaluateOn::EveryOutcome,
        }
    }

    fn may_block(&self) -> bool {
        true
    }

    fn reads_durations(&self) -> bool {
        self.live.reads_durations() || self.shadow.reads_durations()
    }
}

impl ShadowedTrip {
    fn compare(&self, generation: Option<u32>, live: Option<&str>, shadow: Option<&str>) {
        let mut run = self.run.lock().unwrap_or_else(|p| p.into_inner());
        let judged = judge(&mut run, generation, [live, shadow], self.shadow.plugin_name());
        drop(run);
        match judged {
            Judged::Agreed => {}
            Judged::Again => self.report.counted(),
            Judged::Disagreed(message) => self.report.disagreed(message),
        }
    }
}

/// What one decision of a live predicate and its shadow comes to.
#[derive(Debug, PartialEq, Eq)]
enum Judged {
    Agreed,
    /// The same disagreement as the decision before, in the same generation: counted, not recorded again.
    Again,
    /// A new disagreement: the event's message, with both answers.
    Disagreed(String),
}

/// Compares the answers (`[live, shadow]`) of one decision by the shadow plugin `plugin`, given the disagreement of
/// the decision before (`run`, updated).
fn judge(run: &mut Option<Run>, generation: Option<u32>, [live, shadow]: [Option<&str>; 2], plugin: &str) -> Judged {
    if live.is_some() == shadow.is_some() {
        *run = None;
        return Judged::Agreed;
    }
    let now = Run { generation, live: live.is_some(), shadow: shadow.is_some() };
    if run.replace(now) == Some(now) {
        return Judged::Again;
    }
    let reasons = [("live", live), ("shadow", shadow)]
        .iter()
        .filter_map(|(who, reason)| reason.map(|r| format!("{who}: {r}")))
        .collect::<Vec<_>>()
        .join("; ");
    Judged::Disagreed(format!("trip: live={} shadow={} ({reasons}; shadow {plugin})", now.live, now.shadow))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_run_of_equal_disagreements_is_one_event_per_generation() {
        let mut run = None;
        let mut judge = |generation, live, shadow| judge(&mut run, Some(generation), [live, shadow], "p");
        let new = |m: &str| Judged::Disagreed(format!("{m}; shadow p)"));
        assert_eq!(judge(1, None, None), Judged::Agreed);
        assert_eq!(judge(1, None, Some("2 of 6")), new("trip: live=false shadow=true (shadow: 2 of 6"));
        assert_eq!(judge(1, None, Some("3 of 6")), Judged::Again);
        assert_eq!(judge(2, None, Some("2 of 6")), new("trip: live=false shadow=true (shadow: 2 of 6"));
        assert_eq!(judge(2, Some("5 of 6"), Some("5 of 6")), Judged::Agreed);
        assert_eq!(judge(2, Some("5 of 6"), None), new("trip: live=true shadow=false (live: 5 of 6"));
        assert_eq!(judge(2, None, Some("1 of 6")), new("trip: live=false shadow=true (shadow: 1 of 6"));
    }

    #[test]
    fn recovery_answers_compare_by_decision_not_by_text() {
        let wait = |s| RecoveryAction::Wait(Duration::from_secs(s));
        assert!(same_action(&RecoveryAction::Notify(Some("a".into())), &RecoveryAction::Notify(None)));
        assert!(same_action(&wait(30), &wait(30)));
        assert!(!same_action(&wait(30), &wait(60)));
        assert!(!same_action(&RecoveryAction::Restart, &RecoveryAction::Ignore));
        assert_eq!(action_text(&wait(90)), "wait(1m 30s)");
        assert_eq!(action_text(&RecoveryAction::Notify(Some("x".into()))), "notify");
    }
}
