//! One supervised service's state that outlives a single check: its config, breaker, probe, backoff, restart book,
//! recent failures and the checks waiting for anomaly detection.
//!
//! Owns the data and the small operations on it that the admin API needs too (last check, restart status, clearing
//! a give-up, saving the breaker). It must not run checks, decide recoveries or spawn tasks: the supervisor's
//! probe loop, transitions and recovery do that through the crate-visible fields. Every field is either immutable
//! after construction, atomic, or behind its own short mutex, because the service task, recovery tasks and the
//! admin thread read it concurrently.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aegis_core::Backoff;
use aegis_core::Breaker;
use aegis_core::alerting::label_set;
use aegis_core::policy::{Failure, RecoveryStrategy};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::Shared;
use crate::alerts::{Source, service_label};
use crate::anomaly::CheckWindow;
use crate::config::ServiceConfig;
use crate::metrics::ServiceSeries;
use crate::probe::{Probe, ProbeResult};
use crate::process::ManagedProcess;

/// The event kind of a decision where a shadow policy answered otherwise than the live one.
pub const SHADOW_DISAGREED: &str = "shadow-disagreed";

/// Everything about one supervised service that outlives a single check.
#[derive(Debug)]
pub struct ServiceHandle {
    pub config: ServiceConfig,
    pub breaker: Arc<Breaker>,
    /// `built-in` (not allocated: most services) or the trip plugin's name.
    pub trip_policy: Cow<'static, str>,
    pub process: Option<Arc<ManagedProcess>>,
    pub(crate) probe: Probe,
    /// The restart backoff and its jitter's generator, made at the first restart (`config.backoff` set): most
    /// services never restart, and the pair is about 150 bytes.
    pub(crate) backoff: Mutex<Option<Box<(Backoff, SmallRng)>>>,
    pub(crate) recovering: AtomicBool,
    /// The last check was slow: the next one starts in the slow lane.
    pub(crate) slow: AtomicBool,
    pub(crate) last_check: Mutex<Option<ProbeResult>>,
    /// The last checks, for the console.
    pub recent: super::RecentChecks,
    /// Made at the first restart (or when a saved book is restored): most services never restart.
    pub(crate) restarts: Mutex<Option<Box<RestartBook>>>,
    /// A recovery-strategy plugin and its name; `None`: the fixed `onFailure` (most services: boxed, 32 bytes less
    /// for them).
    pub(crate) recovery: Option<Box<(Arc<dyn RecoveryStrategy>, String)>>,
    /// The recovery shadow (`recoveryPolicy.shadow`): asked after each recovery decision, never acted on.
    pub(crate) recovery_shadow: Option<Arc<aegis_plugin::WasmRecoveryStrategy>>,
    /// A strategy decision is under way (or waiting out its `wait`).
    pub(crate) deciding: AtomicBool,
    /// Decisions since the service last recovered (the strategy's `attempt`).
    pub(crate) decisions: AtomicU32,
    /// Recent failed checks, oldest first, for the strategy; made at the first failure.
    #[allow(clippy::box_collection, reason = "a pointer until the first failure instead of an empty deque's 32 bytes")]
    pub(crate) failures: Mutex<Option<Box<VecDeque<Failure>>>>,
    /// Checks since the last anomaly evaluation.
    pub(crate) window: Mutex<CheckWindow>,
    /// The service's Prometheus series.
    pub(crate) series: Arc<ServiceSeries>,
    /// Where its check outcomes are recorded (`storage.history`).
    pub(crate) history: crate::history::ServiceRecorder,
}

/// A service's restart book, locked: an empty one until the first restart makes it.
pub(crate) struct Restarts<'a>(std::sync::MutexGuard<'a, Option<Box<RestartBook>>>);

/// What a service that never restarted reads.
static NO_RESTARTS: RestartBook = RestartBook { total: 0, recent_ms: VecDeque::new(), gave_up: false };

impl std::ops::Deref for Restarts<'_> {
    type Target = RestartBook;

    fn deref(&self) -> &RestartBook {
        self.0.as_deref().unwrap_or(&NO_RESTARTS)
    }
}

impl std::ops::DerefMut for Restarts<'_> {
    fn deref_mut(&mut self) -> &mut RestartBook {
        self.0.get_or_insert_with(Box::default)
    }
}

/// Restart bookkeeping for the restart limit; persisted (and shared in cluster mode).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct RestartBook {
    pub(crate) total: u64,
    /// Unix-epoch milliseconds of restarts still inside the limit's interval, oldest first.
    pub(crate) recent_ms: VecDeque<i64>,
    pub(crate) gave_up: bool,
}

impl ServiceHandle {
    pub fn last_check(&self) -> Option<ProbeResult> {
        self.last_check.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn restarts(&self) -> Restarts<'_> {
        Restarts(self.restarts.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The recent failed checks, oldest first.
    pub(crate) fn failures(&self) -> Vec<Failure> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.iter().flat_map(|f| f.iter()).cloned().collect()
    }

    /// Total restarts, and whether Aegis gave up on the service.
    pub fn restart_status(&self) -> (u64, bool) {
        let book = self.restarts();
        (book.total, book.gave_up)
    }

    /// Clears a give-up (an operator reset the service's breaker).
    pub fn clear_give_up(&self, shared: &Shared) {
        let mut book = self.restarts();
        if book.gave_up {
            book.gave_up = false;
            book.recent_ms.clear();
            self.series.set_gave_up(false);
            shared.save_restarts(&self.config.name, &book);
            shared.alerts.clear(Source::GaveUp, &service_label(&self.config.name));
        }
    }

    /// Raises or clears the service's level alerts (breaker open, restart limit reached) to match its breaker and
    /// restart book as they are now: after restoring them from the store (`when`: "aegis-host started"), or after
    /// taking the service over from another replica.
    pub fn sync_level_alerts(&self, shared: &Shared, when: &str) {
        let labels = service_label(&self.config.name);
        // As the transitions do: raised when open, cleared when closed (or forced closed, or disabled); half-open and
        // forced open keep what is there (a half-open breaker may open again: its alert is not resolved meanwhile).
        match self.breaker.state(Instant::now()) {
            aegis_core::State::Open => {
                let summary = format!("open when {when}");
                shared.alerts.raise(Source::BreakerOpen, labels.clone(), label_set([("summary", summary)]));
            }
            aegis_core::State::Closed | aegis_core::State::ForcedClosed | aegis_core::State::Disabled => {
                shared.alerts.clear(Source::BreakerOpen, &labels);
            }
            aegis_core::State::HalfOpen | aegis_core::State::ForcedOpen => {}
        }
        if self.restarts().gave_up {
            shared.alerts.raise(Source::GaveUp, labels, label_set([("summary", "restart limit reached")]));
        } else {
            shared.alerts.clear(Source::GaveUp, &labels);
        }
    }

    /// The plugins shadowing this service's policies (`tripPolicy.shadow`, `recoveryPolicy.shadow`).
    pub fn shadows(&self) -> impl Iterator<Item = &str> {
        let c = &self.config;
        [&c.breaker.trip_shadow, &c.recovery_shadow].into_iter().flatten().map(|p| p.plugin.as_str())
    }

    /// The checks since the last call (for anomaly detection), resetting the count.
    pub fn take_window(&self) -> CheckWindow {
        std::mem::take(&mut *self.window.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Saves the breaker's state (after a transition or an operator action).
    pub fn persist_breaker(&self, shared: &Shared) {
        // A failing store reports itself once (metric, log, event) and keeps the newest snapshot to write later.
        let snapshot = self.breaker.snapshot();
        if let Err(e) = shared.store.save_breaker(&self.config.name, &snapshot) {
            tracing::debug!(service = %self.config.name, "{e}");
        }
        match serde_json::to_string(&snapshot) {
            Ok(json) => shared.share(&self.config.name, crate::cluster::Shared::Breaker, json),
            Err(e) => tracing::error!(service = %self.config.name, "cannot serialise the breaker state: {e}"),
        }
    }

    /// Delay before the next recovery attempt, and the attempt number.
    pub(crate) fn next_delay(&self) -> (Duration, u32) {
        let Some(settings) = self.config.backoff else { return (Duration::ZERO, 0) };
        let mut guard = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        let (backoff, rng) =
            &mut **guard.get_or_insert_with(|| Box::new((Backoff::new(settings), SmallRng::from_os_rng())));
        let delay = backoff.next_delay(Instant::now(), rng);
        (delay, backoff.attempt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service that never restarted keeps no book: reading gives the empty one, and the first write makes it.
    #[test]
    fn a_restart_book_is_made_at_the_first_write() {
        let lock = Mutex::new(None);
        let read = Restarts(lock.lock().unwrap_or_else(|p| p.into_inner()));
        assert_eq!((read.total, read.gave_up, read.recent_ms.len()), (0, false, 0));
        drop(read);
        assert!(lock.lock().unwrap_or_else(|p| p.into_inner()).is_none(), "reading made nothing");
        let mut write = Restarts(lock.lock().unwrap_or_else(|p| p.into_inner()));
        write.total += 1;
        drop(write);
        assert_eq!(lock.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|b| b.total), Some(1));
    }
}
