//! A service's task: the probe loop. Ticks on the service's interval (after a random phase), runs each check through
//! the breaker in a check lane, records the result (last check, anomaly window, failure history) and hands the
//! breaker's transitions to [`super::transitions`] in the order they happened. Owns nothing but the loop; must not
//! decide recoveries itself beyond calling [`super::recovery`] when a disabled breaker's check fails.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aegis_core::policy::Failure;
use aegis_core::{CallError, State};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::time::MissedTickBehavior;
use tracing::Instrument;

use super::recovery::start_recovery;
use super::stop::Stop;
use super::transitions::{Transitions, on_transition};
use crate::state::{ServiceHandle, Shared};
use crate::unix_ms;

/// Failed checks kept for a recovery strategy.
const FAILURE_HISTORY: usize = 32;

/// The service's task, ending when `changes` is closed.
///
/// An `async move` block rather than an `async fn`: an `async fn` keeps its arguments twice in its state (as
/// captured and as locals), and every service has this task.
#[expect(clippy::manual_async_fn, reason = "an async fn's state would hold its arguments twice")]
pub(super) fn run_service(
    handle: Arc<ServiceHandle>,
    shared: Arc<Shared>,
    changes: Arc<Transitions>,
    stop: Stop,
) -> impl Future<Output = ()> + Send + 'static {
    async move {
        // The service's span lives only while something is done for it (a check, a transition, a hand-over), not
        // for the task's whole life: held between ticks, the log layer's formatted fields and extensions cost
        // ~0.5 KiB a service. Its name and field are the ones `#[instrument]` gave it, so log lines read as before.
        let span = || tracing::info_span!("run_service", service = %handle.config.name);
        let interval = handle.config.interval;
        // A random phase spreads thousands of services over the interval instead of probing them all at once; after
        // it the ticks keep a fixed period, however long each check takes (no drift).
        let phase = {
            use rand::Rng;
            let nanos = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
            Duration::from_nanos(SmallRng::from_os_rng().random_range(0..=nanos))
        };
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + phase, interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        span().in_scope(|| {
            tracing::info!(
                endpoint = %crate::redact::redact_url(&handle.config.endpoint),
                every = %humantime::format_duration(interval),
                trip_policy = %handle.trip_policy,
                on_failure = handle.config.on_failure.as_str(),
                "supervising"
            );
        });
        // Cluster mode: whether this replica owned the service at the last tick (`None` before the first). Not owned,
        // it is neither probed nor acted for; its breaker follows the owner's and its alerts are the owner's.
        let mut owned: Option<bool> = None;
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let owns = shared.cluster.as_ref().is_none_or(|c| c.owns(&handle.config.name));
                    if shared.cluster.is_some() && owned != Some(owns) {
                        if owns {
                            // Boxed, as the check below: a rare step whose future need not sit in every task.
                            Box::pin(super::cluster::take_over(&handle, &shared, &changes).instrument(span())).await;
                        } else {
                            span().in_scope(|| {
                                if owned == Some(true) {
                                    let owner = shared.cluster.as_ref().and_then(|c| c.owner(&handle.config.name));
                                    let owner = owner.as_deref().unwrap_or("unknown");
                                    tracing::info!(owner, "the service moved to another replica");
                                }
                                shared.alerts.hand_over(&handle.config.name);
                            });
                        }
                    }
                    owned = Some(owns);
                    if owns {
                        // Boxed: a check's future (the breaker's admission and timing around the probe, an HTTP request
                        // alone is several KiB) then takes memory only while the check is in flight, instead of being
                        // part of every service task's state between checks (4 KiB a service before, most of its task).
                        Box::pin(check_once(&handle, &shared, &changes, &stop).instrument(span())).await;
                    }
                }
                t = changes.recv() => {
                    // Closed: the service is stopping.
                    let Some(t) = t else { break };
                    if owned == Some(true) || shared.cluster.is_none() {
                        span().in_scope(|| on_transition(&handle, &shared, t, &stop));
                    } else {
                        // The owner's transition, mirrored here: only the state metric follows.
                        handle.series.set_breaker_state(t.to.metric_value());
                    }
                }
            }
        }
    }
}

/// Handles the transitions the breaker reported so far, so the log reads in the order things happened.
fn drain(handle: &Arc<ServiceHandle>, shared: &Arc<Shared>, changes: &Transitions, stop: &Stop) {
    while let Some(t) = changes.try_recv() {
        on_transition(handle, shared, t, stop);
    }
}

async fn check_once(handle: &Arc<ServiceHandle>, shared: &Arc<Shared>, changes: &Transitions, stop: &Stop) {
    let name = handle.config.name.as_str();
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
    let detail = (!result.success).then_some(result.detail.as_str());
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
        if failures.len() == FAILURE_HISTORY {
            failures.pop_front();
        }
        failures.push_back(Failure { at_ms: unix_ms(), detail: result.detail.clone() });
    }
    if disabled && !result.success {
        start_recovery(handle, shared, &result.detail, stop);
    }
}
