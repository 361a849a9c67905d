//! Breaker transitions: the queue the breaker's listener fills (on whatever thread recorded the outcome) and the
//! service task drains, and what a transition means — the state metric, the saved snapshot, the event, the
//! breaker-open alert, the trip counter, notifications, and the start of recovery when the breaker opens. Must not
//! probe, and calls only downward (recovery, notify).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use aegis_core::State;
use aegis_core::alerting::label_set;

use super::notify::notify_if_configured;
use super::recovery::start_recovery;
use super::stop::Stop;
use crate::alerts::{Source, service_label};
use crate::state::{ServiceHandle, Shared};

/// A breaker transition, as the service task sees it.
#[derive(Debug, Clone)]
pub(super) struct Transition {
    pub(super) from: State,
    pub(super) to: State,
    pub(super) reason: String,
}

/// Breaker transitions waiting for the service task: filled by the breaker's listener (on whatever thread recorded
/// the outcome), drained by the task. Lighter than a channel, which allocates a 32-slot block per service.
///
/// Closing it is how the supervisor ends the service task: the task then waits on this one wake-up instead of this
/// and the stop switch's, and a waiting `Notified` is ~90 bytes of every service task (the task's allocation then
/// fits a smaller size class).
#[derive(Debug, Default)]
pub(super) struct Transitions {
    queue: Mutex<VecDeque<Transition>>,
    closed: AtomicBool,
    wake: tokio::sync::Notify,
}

impl Transitions {
    pub(super) fn push(&self, t: Transition) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).push_back(t);
        self.wake.notify_one();
    }

    pub(super) fn try_recv(&self) -> Option<Transition> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front()
    }

    /// The next transition; `None` once closed (transitions still queued then are not handed out).
    pub(super) async fn recv(&self) -> Option<Transition> {
        loop {
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            if let Some(t) = self.try_recv() {
                return Some(t);
            }
            // `notify_one` keeps a permit when nobody waits: a push or close between the checks and here is not lost.
            self.wake.notified().await;
        }
    }

    /// Ends `recv`, now and for good (the service is stopping).
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

pub(super) fn on_transition(handle: &Arc<ServiceHandle>, shared: &Arc<Shared>, t: Transition, stop: &Stop) {
    let name = handle.config.name.as_str();
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
    use std::time::Duration;

    use super::*;

    fn transition(reason: &str) -> Transition {
        Transition { from: State::Closed, to: State::Open, reason: reason.to_owned() }
    }

    #[tokio::test]
    async fn recv_hands_out_transitions_in_order_and_ends_once_closed() {
        let changes = Arc::new(Transitions::default());
        changes.push(transition("a"));
        changes.push(transition("b"));
        assert_eq!(changes.recv().await.map(|t| t.reason), Some("a".to_owned()));
        assert_eq!(changes.recv().await.map(|t| t.reason), Some("b".to_owned()));

        // A waiting receiver is woken by a push, and then by the close.
        let waiting = tokio::spawn({
            let changes = Arc::clone(&changes);
            async move { (changes.recv().await.map(|t| t.reason), changes.recv().await.map(|t| t.reason)) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        changes.push(transition("c"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        changes.close();
        let got = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("woken").expect("task");
        assert_eq!(got, (Some("c".to_owned()), None));

        // Closed for good: later calls return at once, queued transitions are not handed out.
        changes.push(transition("d"));
        assert!(tokio::time::timeout(Duration::from_secs(5), changes.recv()).await.expect("at once").is_none());
    }
}
