//! A service's stop switch: the supervisor flips it once (shutdown, reload, removal) and the service's checks and
//! its pending recoveries see it. Owns the flag and its wake-up, nothing else.
//!
//! Every service has one, so its size counts at thousands of services: a `tokio::sync::watch` channel keeps a value
//! lock, version counters and nine wait lists (344 B a service); a flag that only ever goes from running to stopped
//! needs a boolean and one wait list (64 B). As with a watch channel whose sender is gone, dropping the switch
//! stops whoever listens.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

#[derive(Debug, Default)]
struct Flag {
    stopped: AtomicBool,
    wake: Notify,
}

/// The supervisor's side: stops the listeners when flipped or dropped.
#[derive(Debug, Default)]
pub(super) struct StopSwitch(Arc<Flag>);

/// A listener's side, cloned into each task that must end when the service stops.
#[derive(Clone, Debug)]
pub(super) struct Stop(Arc<Flag>);

impl StopSwitch {
    pub(super) fn listener(&self) -> Stop {
        Stop(Arc::clone(&self.0))
    }

    pub(super) fn stop(&self) {
        self.0.stopped.store(true, Ordering::Release);
        self.0.wake.notify_waiters();
    }
}

impl Drop for StopSwitch {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Stop {
    pub(super) fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::Acquire)
    }

    /// Resolves once the service is stopped (at once if it already is).
    pub(super) async fn stopped(&self) {
        let notified = self.0.wake.notified();
        let mut notified = std::pin::pin!(notified);
        // Registered before the flag is read, so a stop between the read and the wait is not missed.
        notified.as_mut().enable();
        if self.is_stopped() {
            return;
        }
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn listeners_wake_when_stopped_or_dropped_and_a_late_one_returns_at_once() {
        let switch = StopSwitch::default();
        let stop = switch.listener();
        assert!(!stop.is_stopped());
        let waiting = tokio::spawn({
            let stop = stop.clone();
            async move { stop.stopped().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        switch.stop();
        tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("woken").expect("task");
        assert!(stop.is_stopped());
        tokio::time::timeout(Duration::from_secs(5), stop.stopped()).await.expect("already stopped");

        let switch = StopSwitch::default();
        let stop = switch.listener();
        drop(switch);
        assert!(stop.is_stopped());
        tokio::time::timeout(Duration::from_secs(5), stop.stopped()).await.expect("dropped switch stops");
    }

    #[test]
    fn is_smaller_than_a_watch_channel() {
        // Arc counts, the flag and one wait list.
        assert!(std::mem::size_of::<Flag>() + 16 <= 64, "{}", std::mem::size_of::<Flag>());
    }
}
