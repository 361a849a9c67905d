//! Recovering a failing service: the recovery-strategy plugin's decision or the fixed `onFailure`, restarts spaced by
//! the backoff (at most one pending per service, cancelled on stop), and the restart limit that gives up after
//! `restartLimit.burst` restarts within `restartLimit.interval`. Owns the restart book's updates and their
//! persistence; must not look at probes or breaker transitions (it is called with a reason, never calls back).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aegis_core::State;
use aegis_core::alerting::label_set;
use aegis_core::policy::{Failure, RecoveryAction, RecoveryStrategy};

use super::notify::notify_if_configured;
use super::shadow;
use super::stop::Stop;
use crate::action::{self, RestartOutcome};
use crate::alerts::{Source, service_label};
use crate::config::OnFailure;
use crate::state::{ServiceHandle, Shared};
use crate::unix_ms_i64;

pub(super) fn fixed_action(on_failure: OnFailure) -> RecoveryAction {
    match on_failure {
        OnFailure::Restart => RecoveryAction::Restart,
        OnFailure::Notify => RecoveryAction::Notify(None),
        OnFailure::Ignore => RecoveryAction::Ignore,
    }
}

/// Recovers a failing service: by its recovery-strategy plugin's decision when it has one, else by `onFailure`.
pub(super) fn start_recovery(handle: &Arc<ServiceHandle>, shared: &Arc<Shared>, reason: &str, stop: &Stop) {
    match handle.recovery.as_deref() {
        None => {
            shadow_the_fixed_action(handle, shared);
            match handle.config.on_failure {
                OnFailure::Ignore => tracing::info!("onFailure is `ignore`: no action ({reason})"),
                // The breaker-opened notification was sent with the transition: that is the whole action.
                OnFailure::Notify => tracing::info!("onFailure is `notify`: no restart ({reason})"),
                OnFailure::Restart => restart_after_backoff(handle, shared, stop),
            }
        }
        Some((strategy, plugin)) => decide_recovery(handle, shared, Arc::clone(strategy), plugin.clone(), stop),
    }
}

/// Compares `onFailure` (the built-in recovery) with the recovery shadow, if the service has one.
fn shadow_the_fixed_action(handle: &ServiceHandle, shared: &Arc<Shared>) {
    let Some(shadow) = &handle.recovery_shadow else { return };
    let attempt = handle.decisions.fetch_add(1, Ordering::AcqRel);
    let history: Vec<Failure> = handle.failures();
    let live = fixed_action(handle.config.on_failure);
    shadow::compare_recovery(shared, &handle.config.name, shadow, history, attempt, live);
}

/// Asks the strategy (on a blocking thread: a plugin call may take up to its deadline) and acts on the answer. One
/// decision at a time per service; `wait` asks again later if the service has not recovered by then.
fn decide_recovery(
    handle: &Arc<ServiceHandle>,
    shared: &Arc<Shared>,
    strategy: Arc<dyn RecoveryStrategy>,
    plugin: String,
    stop: &Stop,
) {
    if handle.deciding.swap(true, Ordering::AcqRel) {
        tracing::debug!("a recovery decision is already under way");
        return;
    }
    let (handle, shared, stop) = (Arc::clone(handle), Arc::clone(shared), stop.clone());
    tokio::spawn(async move {
        let name = handle.config.name.clone();
        let attempt = handle.decisions.fetch_add(1, Ordering::AcqRel);
        let history: Vec<Failure> = handle.failures();
        let asked = handle.recovery_shadow.as_ref().map(|_| history.clone());
        let decided = tokio::task::spawn_blocking(move || strategy.decide(&history, attempt)).await;
        let action = decided.unwrap_or_else(|e| {
            tracing::error!(service = %name, "recovery strategy task failed: {e}; using onFailure");
            fixed_action(handle.config.on_failure)
        });
        if let (Some(shadow), Some(history)) = (&handle.recovery_shadow, asked) {
            shadow::compare_recovery(&shared, &name, shadow, history, attempt, action.clone());
        }
        tracing::info!(service = %name, plugin = %plugin, attempt, ?action, "recovery strategy decided");
        shared.event(&name, "recovery-decision", &format!("{plugin}: {action:?} (attempt {attempt})"));
        let wait = match action {
            RecoveryAction::Restart => {
                restart_after_backoff(&handle, &shared, &stop);
                None
            }
            RecoveryAction::Notify(message) => {
                let message = message.unwrap_or_else(|| format!("{name} is failing"));
                tracing::warn!(service = %name, "recovery strategy asks to notify: {message}");
                let state = handle.breaker.state(Instant::now());
                notify_if_configured(&handle, &shared, "recovery-notify", state, &message);
                None
            }
            RecoveryAction::Ignore => None,
            RecoveryAction::Wait(d) => Some(d),
        };
        let Some(wait) = wait else {
            handle.deciding.store(false, Ordering::Release);
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.stopped() => {
                handle.deciding.store(false, Ordering::Release);
                return;
            }
        }
        handle.deciding.store(false, Ordering::Release);
        if !is_passing(handle.breaker.state(Instant::now())) {
            start_recovery(&handle, &shared, "still failing after the strategy's wait", &stop);
        }
    });
}

/// Whether the breaker lets checks through as healthy.
fn is_passing(state: State) -> bool {
    matches!(state, State::Closed | State::ForcedClosed)
}

/// Runs the restart once, after its backoff delay. At most one restart is pending per service.
fn restart_after_backoff(handle: &Arc<ServiceHandle>, shared: &Arc<Shared>, stop: &Stop) {
    if handle.restarts().gave_up {
        tracing::debug!("gave up restarting; waiting for an operator reset");
        return;
    }
    if handle.recovering.swap(true, Ordering::AcqRel) {
        tracing::debug!("restart already pending");
        return;
    }
    if let Some(message) = restart_limit_reached(handle, shared) {
        handle.recovering.store(false, Ordering::Release);
        tracing::error!("{message}");
        shared.event(&handle.config.name, "gave-up", &message);
        shared.alerts.raise(
            Source::GaveUp,
            service_label(&handle.config.name),
            label_set([
                ("summary", format!("gave up restarting {}", handle.config.name)),
                ("description", message.clone()),
            ]),
        );
        notify_if_configured(handle, shared, "gave-up", State::Open, &message);
        return;
    }
    let (delay, attempt) = handle.next_delay();
    tracing::warn!(attempt, "restarting in {}", humantime::format_duration(round_ms(delay)));
    let handle = Arc::clone(handle);
    let shared = Arc::clone(shared);
    let stop = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.stopped() => {}
        }
        // Stopping (shutdown, reload or removal): a pending restart is cancelled. One already running when the stop
        // comes finishes, but its process is closed by then and starts nothing new.
        if stop.is_stopped() {
            handle.recovering.store(false, Ordering::Release);
            return;
        }
        let name = &*handle.config.name;
        // Cluster mode: only a replica that proves in Redis, now, that it owns the service restarts it. A restart
        // that cannot be proven (Redis unreachable, or the service moved) is dropped, not postponed: by the time
        // Redis answers it may be stale (another replica may have restarted the service meanwhile); the breaker's
        // next opening asks again.
        if let Some(cluster) = &shared.cluster
            && let Err(why) = cluster.fence(name).await
        {
            handle.recovering.store(false, Ordering::Release);
            shared.metrics.restarts.with_label_values(&[name, "skipped"]).inc();
            tracing::warn!(service = name, attempt, "restart not run: {why}");
            return;
        }
        let result = action::restart(&handle.config, handle.process.as_ref()).await;
        let label = match &result {
            Ok(RestartOutcome::Respawned { pid }) => {
                tracing::warn!(service = name, pid, attempt, "restarted: process respawned");
                "success"
            }
            Ok(RestartOutcome::CommandSucceeded { output }) => {
                tracing::warn!(service = name, attempt, "restarted: restart command succeeded: {output}");
                "success"
            }
            Ok(RestartOutcome::NothingToRestart) => {
                tracing::error!(service = name, "restart requested, but the service has no process or restart command");
                "skipped"
            }
            Err(e) => {
                tracing::error!(service = name, attempt, "restart failed: {e}");
                "failure"
            }
        };
        shared.metrics.restarts.with_label_values(&[name, label]).inc();
        match &result {
            Ok(RestartOutcome::NothingToRestart) => {}
            Ok(outcome) => {
                let message = format!("attempt {attempt}: {outcome}");
                shared.event(name, "restart", &message);
                notify_if_configured(&handle, &shared, "restarted", handle.breaker.state(Instant::now()), &message);
            }
            Err(e) => {
                shared.event(name, "restart-failed", &format!("attempt {attempt}: {e}"));
            }
        }
        if !matches!(result, Ok(RestartOutcome::NothingToRestart)) {
            let mut book = handle.restarts();
            book.total += 1;
            book.recent_ms.push_back(unix_ms_i64());
            shared.save_restarts(name, &book);
        }
        handle.recovering.store(false, Ordering::Release);
    });
}

/// `Some(message)` (and the give-up recorded) when the restart limit forbids another restart.
fn restart_limit_reached(handle: &ServiceHandle, shared: &Shared) -> Option<String> {
    let limit = handle.config.restart_limit?;
    let mut book = handle.restarts();
    let horizon = unix_ms_i64() - i64::try_from(limit.interval.as_millis()).unwrap_or(i64::MAX);
    while book.recent_ms.front().is_some_and(|&t| t < horizon) {
        book.recent_ms.pop_front();
    }
    if book.recent_ms.len() < limit.burst as usize {
        return None;
    }
    book.gave_up = true;
    shared.save_restarts(&handle.config.name, &book);
    handle.series.set_gave_up(true);
    Some(format!(
        "gave up: {} restarts within {}; reset the breaker to resume",
        book.recent_ms.len(),
        humantime::format_duration(limit.interval)
    ))
}

pub(super) fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
