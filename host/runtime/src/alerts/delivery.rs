//! Sending notifications: one POST with the notification's headers and `Idempotency-Key`, and the delivery loop of
//! the local outbox. A target's notifications are sent by a lane of its own ([`Lanes`]), one after the other, so a
//! receiver that hangs holds up only what is addressed to it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{AlertContext, BATCH, IDLE_POLL, SEND_TIMEOUT};
use crate::store::OutboxEntry;
use crate::unix_ms;

/// The running lanes, one per target at most.
#[derive(Default)]
pub(super) struct Lanes {
    set: tokio::task::JoinSet<()>,
    /// The target of each running lane.
    busy: HashMap<tokio::task::Id, String>,
}

impl Lanes {
    /// Whether a lane is sending to `target`.
    pub(super) fn is_busy(&self, target: &str) -> bool {
        self.busy.values().any(|t| t == target)
    }

    /// Starts the lane of `target`.
    pub(super) fn spawn(&mut self, target: String, lane: impl Future<Output = ()> + Send + 'static) {
        let handle = self.set.spawn(lane);
        self.busy.insert(handle.id(), target);
    }

    /// Waits for a lane to end (forever if none runs).
    pub(super) async fn next_done(&mut self) {
        match self.set.join_next_with_id().await {
            Some(Ok((id, ()))) => {
                self.busy.remove(&id);
            }
            Some(Err(e)) => {
                tracing::error!("an alert delivery lane failed: {e}");
                self.busy.remove(&e.id());
            }
            None => std::future::pending().await,
        }
    }

    /// Drops the deliveries under way: their notifications stay queued and are sent after the restart.
    pub(super) async fn shutdown(&mut self) {
        self.set.shutdown().await;
    }
}

/// Sends what the local outbox holds until `stop`. Every target has a lane of its own, a task that sends the
/// target's due notifications one after the other, oldest first: a receiver that hangs holds up only what is
/// addressed to it, for at most [`SEND_TIMEOUT`] a notification, and an alert's notifications reach each receiver in
/// order (the store hands out only the oldest waiting one of each alert).
pub async fn run_delivery(shared: Arc<AlertContext>, mut stop: watch::Receiver<bool>) {
    let mut lanes = Lanes::default();
    loop {
        let now = i64::try_from(unix_ms()).unwrap_or(i64::MAX);
        let due = shared.store.due(now, BATCH).unwrap_or_else(|e| {
            tracing::error!("cannot read the alert outbox: {e}");
            Vec::new()
        });
        let mut by_target: BTreeMap<String, Vec<OutboxEntry>> = BTreeMap::new();
        for entry in due {
            if !lanes.is_busy(&entry.target) {
                by_target.entry(entry.target.clone()).or_default().push(entry);
            }
        }
        for (target, entries) in by_target {
            let shared = Arc::clone(&shared);
            lanes.spawn(target, async move {
                for entry in &entries {
                    deliver(&shared, entry).await;
                }
            });
        }
        let (pending, next) = shared.store.outbox_status().unwrap_or((0, None));
        shared.metrics.outbox_pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
        // What is due now is being sent, or waits for its target's lane: the lane's end wakes this loop.
        let now = i64::try_from(unix_ms()).unwrap_or(i64::MAX);
        let wait = next
            .filter(|&at| at > now)
            .map_or(IDLE_POLL, |at| Duration::from_millis(u64::try_from(at - now).unwrap_or(0)))
            .min(IDLE_POLL);
        if !pause(&shared, &mut lanes, &mut stop, wait).await {
            break;
        }
    }
    lanes.shutdown().await;
}

/// Waits `wait`, or less when a notification is queued or a lane ends; `false` once `stop` says so.
pub(super) async fn pause(
    shared: &AlertContext,
    lanes: &mut Lanes,
    stop: &mut watch::Receiver<bool>,
    wait: Duration,
) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = shared.alerts.queued.notified() => true,
        _ = lanes.next_done() => true,
        _ = stop.changed() => false,
    }
}

async fn deliver(shared: &AlertContext, entry: &OutboxEntry) {
    match send(shared, entry).await {
        Ok(()) => {
            if let Err(e) = shared.store.delivered(entry.id) {
                tracing::debug!("cannot mark the alert delivered (it will be sent again): {e}");
            }
        }
        Err((delay, why)) => {
            if let Err(e) = shared.store.retry_later(entry.id, next_attempt_ms(delay), &why) {
                tracing::debug!("cannot reschedule the alert delivery (it is retried at once): {e}");
            }
        }
    }
}

/// When a retry in `delay` is due (ms since the epoch).
pub(super) fn next_attempt_ms(delay: Duration) -> i64 {
    i64::try_from(unix_ms().saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX))).unwrap_or(i64::MAX)
}

/// POSTs `entry` to its target, counts and logs the outcome. `Err` carries the delay before the next attempt and
/// why it failed.
pub(super) async fn send(shared: &AlertContext, entry: &OutboxEntry) -> Result<(), (Duration, String)> {
    let target = if entry.target.ends_with("/api/v2/alerts") { "alertmanager" } else { "webhook" };
    let mut request = shared
        .client
        .post(&entry.target)
        .timeout(SEND_TIMEOUT)
        .header(reqwest::header::CONTENT_TYPE, &entry.content_type)
        .header("Idempotency-Key", &entry.idempotency_key)
        .body(entry.body.clone());
    for (name, value) in &entry.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let result = match request.send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("HTTP {}", r.status())),
        Err(e) => Err(crate::probe::error_chain(&e.without_url())),
    };
    match result {
        Ok(()) => {
            shared.metrics.alert_deliveries.with_label_values(&[target, "success"]).inc();
            tracing::info!(key = %entry.idempotency_key, attempts = entry.attempts + 1, "alert delivered to {}", crate::redact::redact_url(&entry.target));
            Ok(())
        }
        Err(why) => {
            shared.metrics.alert_deliveries.with_label_values(&[target, "failure"]).inc();
            let delay = shared.alerts.retry_delay(entry.attempts);
            tracing::warn!(
                key = %entry.idempotency_key,
                attempts = entry.attempts + 1,
                retry_in = %humantime::format_duration(Duration::from_millis(u64::try_from(delay.as_millis()).unwrap_or(0))),
                "alert delivery to {} failed: {why}",
                crate::redact::redact_url(&entry.target)
            );
            Err((delay, why))
        }
    }
}
