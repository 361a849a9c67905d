//! A service's config turned into its [`ServiceHandle`]: the trip predicate and recovery strategy bound (plugin or
//! built-in), the breaker registered and restored from the store, the restart book restored, level alerts brought in
//! line with the restored state, anomaly scorers bound. Runs at start and on reload; must not start tasks or probe.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aegis_core::policy::{FixedAction, RecoveryStrategy};
use aegis_core::{ConsecutiveFailures, Force, Settings, State, StateChange, TripPredicate, WindowKind};
use aegis_plugin::ServiceInfo;

use super::recovery::fixed_action;
use super::shadow;
use super::transitions::{Transition, Transitions};
use crate::anomaly::CheckWindow;
use crate::binding::log_binding;
use crate::config::{BreakerConfig, ServiceConfig};
use crate::error::RuntimeError;
use crate::off_worker::hand_off;
use crate::probe::Probe;
use crate::process::ManagedProcess;
use crate::state::{RestartBook, ServiceHandle, Shared};

/// The policy name reported when the built-in trip predicate decides.
const BUILT_IN: &str = "built-in";

/// The restart book restored from the store, or none for a service that never restarted (most of them).
fn restored_restarts(total: u64, recent_ms: VecDeque<i64>, gave_up: bool) -> Option<Box<RestartBook>> {
    (total > 0 || gave_up || !recent_ms.is_empty()).then(|| Box::new(RestartBook { total, recent_ms, gave_up }))
}

pub(super) fn build_service(
    shared: &Arc<Shared>,
    s: &ServiceConfig,
    process: Option<Arc<ManagedProcess>>,
) -> Result<(Arc<ServiceHandle>, Arc<Transitions>), RuntimeError> {
    let b = &s.breaker;
    let built_in: Arc<dyn TripPredicate> = Arc::new(ConsecutiveFailures(b.failure_threshold));
    let (predicate, trip_policy): (Arc<dyn TripPredicate>, Cow<'static, str>) = match &b.trip_policy {
        None => (Arc::clone(&built_in), Cow::Borrowed(BUILT_IN)),
        Some(policy) => {
            match shared.plugins.trip_predicate(
                &policy.plugin,
                service_info(s),
                policy.config.clone(),
                Arc::clone(&built_in),
            ) {
                Ok(p) => {
                    log_binding(&shared.plugins, "trip predicate", &s.name, &policy.plugin, p.is_loaded());
                    (Arc::new(p.off_worker(hand_off)), Cow::Owned(policy.plugin.clone()))
                }
                Err(e) => {
                    tracing::error!(service = %s.name, "{e}; using the built-in trip predicate");
                    (Arc::clone(&built_in), Cow::Borrowed(BUILT_IN))
                }
            }
        }
    };
    let predicate = shadow::with_trip_shadow(shared, s, predicate, &built_in);
    let recovery = s.recovery_policy.as_ref().and_then(|policy| {
        let fixed: Arc<dyn RecoveryStrategy> = Arc::new(FixedAction(fixed_action(s.on_failure)));
        match shared.plugins.recovery_strategy(&policy.plugin, service_info(s), policy.config.clone(), fixed) {
            Ok(p) => {
                log_binding(&shared.plugins, "recovery strategy", &s.name, &policy.plugin, p.is_loaded());
                Some(Box::new((Arc::new(p) as Arc<dyn RecoveryStrategy>, policy.plugin.clone())))
            }
            Err(e) => {
                tracing::error!(service = %s.name, "{e}; using onFailure `{}`", s.on_failure.as_str());
                None
            }
        }
    });
    let changes = Arc::new(Transitions::default());
    let tx = Arc::clone(&changes);
    let listener = Arc::new(move |change: &StateChange| {
        tx.push(Transition { from: change.from, to: change.to, reason: change.reason.clone() });
    });
    let settings = breaker_settings(&s.name, b, predicate).on_state_change(listener);
    let breaker = shared.breakers.register(settings, Instant::now());
    let saved = shared.store.load(&s.name)?;
    if let Some(snapshot) = &saved.breaker {
        breaker.restore(Instant::now(), snapshot);
        tracing::info!(service = %s.name, state = %snapshot.state, "breaker state restored");
    }
    if !b.enabled {
        breaker.force(Instant::now(), Force::Disabled);
    } else if breaker.state(Instant::now()) == State::Disabled {
        // Disabled in the saved state but enabled in the config now: the config wins.
        breaker.force(Instant::now(), Force::Auto);
    }
    // Transitions caused by restoring are not news: no recovery, no trip count.
    changes.discard();
    let series = shared.metrics.register_service(Arc::clone(&s.name));
    series.set_breaker_state(breaker.state(Instant::now()).metric_value());
    series.set_gave_up(saved.gave_up);
    let handle = ServiceHandle {
        config: s.clone(),
        breaker,
        trip_policy,
        process: process.or_else(|| s.process.clone().map(|p| Arc::new(ManagedProcess::new(s.name.to_string(), *p)))),
        probe: Probe::new(&s.name, &s.probe, &shared.client),
        backoff: Mutex::new(None),
        recovering: AtomicBool::new(false),
        slow: AtomicBool::new(false),
        last_check: Mutex::new(None),
        recent: crate::state::RecentChecks::default(),
        restarts: Mutex::new(restored_restarts(
            saved.restarts_total,
            saved.recent_restarts_ms.into_iter().collect(),
            saved.gave_up,
        )),
        recovery,
        recovery_shadow: shadow::recovery_shadow(shared, s),
        deciding: AtomicBool::new(false),
        decisions: AtomicU32::new(0),
        failures: Mutex::new(None),
        window: Mutex::new(CheckWindow::default()),
        series,
        history: shared.history.service(&s.name),
    };
    // Level alerts restored from the store follow the restored state: still open (or given up) keeps them, anything
    // else clears them.
    handle.sync_level_alerts(shared, "aegis-host started");
    if shared.anomaly_enabled.load(std::sync::atomic::Ordering::Relaxed) {
        shared.anomaly.lock().unwrap_or_else(|p| p.into_inner()).bind(&service_info(s), &shared.plugins);
    }
    Ok((Arc::new(handle), changes))
}

/// The settings of a service's breaker, as the supervisor builds it; `aegis-host plugin test` and `replay` build the
/// same, so a predicate behaves there as it does live.
pub fn breaker_settings(service: &str, b: &BreakerConfig, predicate: Arc<dyn TripPredicate>) -> Settings {
    Settings::new(service)
        .failure_threshold(b.failure_threshold)
        .reset_timeout(b.reset_timeout)
        .interval(b.recovery_time)
        .success_threshold(b.success_threshold)
        .max_requests(1)
        .slow_call_duration(b.slow_call_duration)
        .window(WindowKind::Count(b.window_size))
        .trip_predicate(predicate)
}

/// What plugins are told about a service.
pub(super) fn service_info(s: &ServiceConfig) -> ServiceInfo {
    ServiceInfo { name: s.name.to_string(), kind: s.probe.kind().to_owned(), endpoint: s.endpoint.clone() }
}
