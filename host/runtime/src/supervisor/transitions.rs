//! Breaker transitions: the queue the breaker's listener fills (on whatever thread recorded the outcome) and the
//! service's checks and the scheduler's tasks empty, and what a transition means — the state metric, the saved
//! snapshot, the event, the breaker-open alert, the trip counter, notifications, and the start of recovery when the
//! breaker opens. Must not probe, and calls only downward (recovery, notify).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use aegis_core::State;
use aegis_core::alerting::label_set;

use super::notify::notify_if_configured;
use super::recovery::start_recovery;
use super::stop::Stop;
use crate::alerts::{Source, service_label};
use crate::state::{ServiceHandle, Shared};

/// A breaker transition, as the supervisor hands it over.
#[derive(Debug, Clone)]
pub(super) struct Transition {
    pub(super) from: State,
    pub(super) to: State,
    pub(super) reason: String,
}

/// Breaker transitions waiting to be handled: filled by the breaker's listener (on whatever thread recorded the
/// outcome), handled in order by the service's check (before and after probing) or, between checks, by a task the
/// scheduler starts when told through [`Transitions::watch`]. Lighter than a channel, which allocates a 32-slot block
/// per service.
#[derive(Debug, Default)]
pub(super) struct Transitions {
    queue: Mutex<VecDeque<Transition>>,
    /// Held while transitions are taken and handled, so that a check and a task started between checks hand them
    /// over in the order they happened, never two at once.
    handling: Mutex<()>,
    /// Told once per batch of pushes until the next [`Transitions::handle`]: the scheduler then starts a task.
    told: AtomicBool,
    watcher: OnceLock<Weak<dyn Watcher>>,
}

/// Who is told that transitions wait (the scheduler's slot of the service).
pub(super) trait Watcher: Send + Sync + std::fmt::Debug {
    fn transitions_waiting(self: Arc<Self>);
}

impl Transitions {
    pub(super) fn push(&self, t: Transition) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).push_back(t);
        self.tell();
    }

    /// Tells `watcher` about transitions pushed from now on (and about any waiting already).
    pub(super) fn watch(&self, watcher: Weak<dyn Watcher>) {
        let _ = self.watcher.set(watcher);
        self.told.store(false, Ordering::Release);
        if !self.queue.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
            self.tell();
        }
    }

    /// Tells the watcher, unless it was told since the last [`Transitions::handle`].
    fn tell(&self) {
        if !self.told.swap(true, Ordering::AcqRel)
            && let Some(watcher) = self.watcher.get().and_then(Weak::upgrade)
        {
            watcher.transitions_waiting();
        }
    }

    /// Drops what waits (transitions caused by restoring a state, which are not news).
    pub(super) fn discard(&self) {
        let _handling = self.handling.lock().unwrap_or_else(|p| p.into_inner());
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.told.store(false, Ordering::Release);
    }

    /// Hands every waiting transition to `each`, oldest first, one caller at a time.
    pub(super) fn handle(&self, mut each: impl FnMut(Transition)) {
        let _handling = self.handling.lock().unwrap_or_else(|p| p.into_inner());
        // Cleared before taking: a push from here on tells the watcher again.
        self.told.store(false, Ordering::Release);
        loop {
            // The queue's lock is not held while `each` runs: handling a transition may cause another.
            let next = self.queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
            let Some(t) = next else { break };
            each(t);
        }
    }
}

pub(super) fn on_transition(handle: &Arc<ServiceHandle>, shared: &Arc<Shared>, t: Transition, stop: &Stop) {
    let name = &*handle.config.name;
    handle.series.set_breaker_state(t.to.metric_value());
    handle.persist_breaker(shared);
    let kind = match t.to {
        State::Open => "breaker-opened",
        State::Closed => "breaker-closed",
        State::HalfOpen => "breaker-half-open",
        State::ForcedOpen | State::ForcedClosed | State::Disabled => "breaker-forced",
    };
    shared.event(name, kind, &format!("{} -> {}: {}", t.from, t.to, t.reason));
    shared.stream.publish("transition", || {
        serde_json::json!({ "service": name, "from": t.from, "to": t.to, "reason": t.reason, "at_ms": crate::unix_ms() })
    });
    match t.to {
        State::Open => shared.alerts.raise(
            Source::BreakerOpen,
            service_label(name),
            label_set([
                ("summary", format!("circuit breaker of {name} opened")),
                ("description", t.reason.clone()),
                ("endpoint", crate::redact::redact_url(&handle.config.endpoint).into_owned()),
            ]),
        ),
        State::Closed | State::ForcedClosed | State::Disabled => {
            shared.alerts.clear(Source::BreakerOpen, &service_label(name));
        }
        State::HalfOpen | State::ForcedOpen => {}
    }
    match t.to {
        State::Open => {
            tracing::warn!(from = %t.from, "circuit breaker OPEN: {}", t.reason);
            if t.from == State::Closed {
                shared.metrics.breaker_trips.with_label_values(&[name, &handle.trip_policy]).inc();
            }
            notify_if_configured(handle, shared, "breaker-opened", t.to, &t.reason);
            start_recovery(handle, shared, &t.reason, stop);
        }
        State::Closed if t.from == State::HalfOpen => {
            handle.decisions.store(0, Ordering::Release);
            tracing::info!("circuit breaker CLOSED: service recovered ({})", t.reason);
            notify_if_configured(handle, shared, "breaker-closed", t.to, &t.reason);
        }
        _ => tracing::info!(from = %t.from, "circuit breaker {}: {}", t.to.as_str().to_uppercase(), t.reason),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn transition(reason: &str) -> Transition {
        Transition { from: State::Closed, to: State::Open, reason: reason.to_owned() }
    }

    #[derive(Debug, Default)]
    struct Counting(AtomicUsize);

    impl Watcher for Counting {
        fn transitions_waiting(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn reasons(changes: &Transitions) -> Vec<String> {
        let mut got = Vec::new();
        changes.handle(|t| got.push(t.reason));
        got
    }

    #[test]
    fn hands_over_in_order_and_tells_the_watcher_once_per_batch() {
        let changes = Transitions::default();
        // Pushed before anyone watches (restoring a state): discarded, nobody told.
        changes.push(transition("restored"));
        changes.discard();
        let watcher = Arc::new(Counting::default());
        let weak: Weak<dyn Watcher> = Arc::downgrade(&(Arc::clone(&watcher) as Arc<dyn Watcher>));
        changes.watch(weak);
        assert_eq!(watcher.0.load(Ordering::Relaxed), 0, "nothing waits yet");

        changes.push(transition("a"));
        changes.push(transition("b"));
        assert_eq!(watcher.0.load(Ordering::Relaxed), 1, "told once for the batch");
        assert_eq!(reasons(&changes), ["a", "b"]);
        assert!(reasons(&changes).is_empty());

        // Handled: the next push tells again; one caused while handling is handed over in the same call.
        changes.push(transition("c"));
        assert_eq!(watcher.0.load(Ordering::Relaxed), 2);
        let mut got = Vec::new();
        changes.handle(|t| {
            if t.reason == "c" {
                changes.push(transition("caused by c"));
            }
            got.push(t.reason);
        });
        assert_eq!(got, ["c", "caused by c"]);

        // A discard does not leave the watcher deaf.
        changes.push(transition("d"));
        changes.discard();
        let told = watcher.0.load(Ordering::Relaxed);
        changes.push(transition("e"));
        assert_eq!(watcher.0.load(Ordering::Relaxed), told + 1);
        assert_eq!(reasons(&changes), ["e"]);
    }

    #[test]
    fn transitions_waiting_before_the_watch_are_told_at_once() {
        let changes = Transitions::default();
        changes.push(transition("early"));
        let watcher = Arc::new(Counting::default());
        changes.watch(Arc::downgrade(&(Arc::clone(&watcher) as Arc<dyn Watcher>)));
        assert_eq!(watcher.0.load(Ordering::Relaxed), 1);
        assert_eq!(reasons(&changes), ["early"]);
    }
}
