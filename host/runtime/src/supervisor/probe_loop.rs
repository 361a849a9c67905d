//! What a service's check and its breaker's transitions do ([`ServiceJob`]): at each check (when [`super::schedule`]
//! says it is due), cluster ownership first, then the check through the breaker in a check lane, its result recorded
//! (last check, anomaly window, failure history), and the breaker's transitions handed to [`super::transitions`] in
//! the order they happened. Decides nothing about timing, and no recoveries beyond calling [`super::recovery`] when a disabled
//! breaker's check fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use aegis_core::policy::Failure;
use aegis_core::{CallError, State};
use tracing::Instrument;

use super::recovery::start_recovery;
use super::schedule::Job;
use super::stop::Stop;
use super::transitions::{Transitions, on_transition};
use crate::state::{ServiceHandle, Shared};
use crate::unix_ms;

/// Failed checks kept for a recovery strategy.
const FAILURE_HISTORY: usize = 32;

/// The span of everything done for one service. It lives only while something is done (a check, a transition, a
/// hand-over), not for the service's whole life: held between checks, the log layer's formatted fields and
/// extensions cost ~0.5 KiB a service. Its name and field are the ones `#[instrument]` gave the service's task
/// before, so log lines read as they did.
fn span(handle: &ServiceHandle) -> tracing::Span {
    tracing::info_span!("run_service", service = %handle.config.name)
}

/// Cluster mode: whether this replica owned the service at its last check (not known before the first). Not owned,
/// it is neither probed nor acted for; its breaker follows the owner's and its alerts are the owner's.
#[derive(Debug, Default)]
pub(super) struct Ownership(AtomicU8);

impl Ownership {
    const OWNED: u8 = 1;
    const NOT_OWNED: u8 = 2;

    fn get(&self) -> Option<bool> {
        match self.0.load(Ordering::Acquire) {
            Self::OWNED => Some(true),
            Self::NOT_OWNED => Some(false),
            _ => None,
        }
    }

    fn set(&self, owned: bool) {
        self.0.store(if owned { Self::OWNED } else { Self::NOT_OWNED }, Ordering::Release);
    }
}

/// A running service as the scheduler runs it.
pub(super) struct ServiceJob {
    pub(super) handle: Arc<ServiceHandle>,
    pub(super) shared: Arc<Shared>,
    pub(super) changes: Arc<Transitions>,
    pub(super) stop: Stop,
    pub(super) owned: Ownership,
}

impl ServiceJob {
    /// Logs that the service is supervised from now on.
    pub(super) fn started(&self) {
        let handle = &self.handle;
        span(handle).in_scope(|| {
            tracing::info!(
                endpoint = %crate::redact::redact_url(&handle.config.endpoint),
                every = %humantime::format_duration(handle.config.interval),
                trip_policy = %handle.trip_policy,
                on_failure = handle.config.on_failure.as_str(),
                "supervising"
            );
        });
    }
}

impl Job for ServiceJob {
    fn interval(&self) -> Duration {
        self.handle.config.interval
    }

    /// The service's check is due: takes it over or hands it over if it moved (cluster mode), then checks it if it
    /// is this replica's.
    async fn check(&self) {
        let ServiceJob { handle, shared, changes, stop, owned } = self;
        let owns = shared.cluster.as_ref().is_none_or(|c| c.owns(&handle.config.name));
        if shared.cluster.is_some() && owned.get() != Some(owns) {
            if owns {
                super::cluster::take_over(handle, shared, changes).instrument(span(handle)).await;
            } else {
                span(handle).in_scope(|| {
                    if owned.get() == Some(true) {
                        let owner = shared.cluster.as_ref().and_then(|c| c.owner(&handle.config.name));
                        let owner = owner.as_deref().unwrap_or("unknown");
                        tracing::info!(owner, "the service moved to another replica");
                    }
                    shared.alerts.hand_over(&handle.config.name);
                });
            }
        }
        owned.set(owns);
        if owns {
            check_once(handle, shared, changes, stop).instrument(span(handle)).await;
        }
    }

    /// Hands over the transitions that came between checks (an operator's command, the owner's state mirrored).
    fn between_checks(&self) {
        let ServiceJob { handle, shared, changes, stop, owned } = self;
        if shared.cluster.is_none() || owned.get() == Some(true) {
            span(handle).in_scope(|| drain(handle, shared, changes, stop));
        } else {
            // The owner's transitions, mirrored here: only the state metric follows.
            changes.handle(|t| handle.series.set_breaker_state(t.to.metric_value()));
        }
    }
}

/// Handles the transitions the breaker reported so far, so the log reads in the order things happened.
fn drain(handle: &Arc<ServiceHandle>, shared: &Arc<Shared>, changes: &Transitions, stop: &Stop) {
    changes.handle(|t| on_transition(handle, shared, t, stop));
}

async fn check_once(handle: &Arc<ServiceHandle>, shared: &Arc<Shared>, changes: &Transitions, stop: &Stop) {
    let name = &*handle.config.name;
    // The check runs through the manager's breaker: admission, the outcome and its duration, the lifetime counters.
    // The trip predicate runs inside the recording; a plugin call is bounded by its epoch deadline. The slot is taken
    // before the breaker times the check, so waiting for it is not counted as the check's latency.
    let slot = shared.lanes.admit(handle.slow.load(Ordering::Relaxed)).await;
    let mut trial = false;
    let checked = shared
        .breakers
        .execute_async(name, &Instant::now, || async {
            // Admitted: report a half-open transition before the check's own log lines.
            drain(handle, shared, changes, stop);
            trial = handle.breaker.state(Instant::now()) == State::HalfOpen;
            let check = handle.probe.check_with(handle.config.timeout, handle.config.retries, Some(&shared.retry));
            let (result, slow) = shared.lanes.run(slot, check).await;
            handle.slow.store(slow, Ordering::Relaxed);
            if result.success { Ok(result) } else { Err(result) }
        })
        .await;
    let result = match checked {
        Ok(result) | Err(CallError::Inner(result)) => result,
        Err(rejected) => {
            drain(handle, shared, changes, stop);
            handle.series.rejected();
            let why = if matches!(rejected, CallError::TooManyRequests) { "a trial is running" } else { "open" };
            tracing::debug!("check skipped: the breaker is {why}");
            return;
        }
    };
    handle.series.checked(result.success, result.latency);
    let latency_ms = result.latency.as_secs_f64() * 1000.0;
    if result.success && trial {
        tracing::info!(latency_ms = format_args!("{latency_ms:.1}"), "probe ok (half-open trial): {}", result.detail);
    } else if result.success {
        // Debug: with thousands of services a line per healthy check would drown everything else.
        tracing::debug!(latency_ms = format_args!("{latency_ms:.1}"), "probe ok: {}", result.detail);
    } else {
        tracing::warn!(
            latency_ms = format_args!("{latency_ms:.1}"),
            attempts = result.attempts,
            "probe failed: {}",
            result.detail
        );
    }
    drain(handle, shared, changes, stop);
    let disabled = handle.breaker.state(Instant::now()) == State::Disabled;
    *handle.last_check.lock().unwrap_or_else(|p| p.into_inner()) = Some(result.clone());
    let latency_us = u64::try_from(result.latency.as_micros()).unwrap_or(u64::MAX);
    let now_ms = unix_ms();
    handle.recent.record(now_ms, result.success, latency_us);
    let slow = handle.breaker.settings().is_slow(result.latency);
    let detail = (!result.success).then_some(&*result.detail);
    handle.history.outcome(
        i64::try_from(now_ms).unwrap_or(i64::MAX),
        result.success,
        slow,
        u32::try_from(latency_us).unwrap_or(u32::MAX),
        detail,
    );
    handle.window.lock().unwrap_or_else(|p| p.into_inner()).record(result.success, latency_ms);
    if !result.success {
        let mut failures = handle.failures.lock().unwrap_or_else(|p| p.into_inner());
        let failures = failures.get_or_insert_with(Box::default);
        if failures.len() == FAILURE_HISTORY {
            failures.pop_front();
        }
        failures.push_back(Failure { at_ms: unix_ms(), detail: result.detail.to_string() });
    }
    if disabled && !result.success {
        start_recovery(handle, shared, &result.detail, stop);
    }
}
