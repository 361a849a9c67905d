//! The cluster's alert outbox and shared alerts. A notification is queued in one Redis stream by the replica that
//! owns the alert's service (fenced: a replica that lost the service queues nothing), stays there until the
//! receiver accepted it, and is then deleted; whichever replica owns the service when it is due delivers it, so a
//! notification queued by a replica that died is delivered by the service's next owner. The stream holds only what
//! is not yet delivered, in order, so an alert's resolution is never sent before its firing.
//!
//! The alerts of each service (pending and firing, with their start and notification times) are shared the same
//! way, so the next owner carries them on instead of raising them again.

use redis::streams::StreamRangeReply;

use super::{Cluster, Refusal, bounded, scripts};
use crate::store::{Notification, OutboxEntry};

/// Notifications read from the head of the outbox per look.
const HEAD: usize = 1000;

/// What became of a notification moved to the cluster's outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forwarded {
    Queued,
    /// Another replica owns the service: it raises the alert itself.
    NotOwner,
    /// The cluster carries another cycle of the alert, raised by the owner while this replica was cut off.
    Superseded,
    /// This replica is not a member now (its membership expired and it has not registered again): the entry waits.
    NotMember,
}

/// A notification waiting in the cluster's outbox.
#[derive(Clone, Debug)]
pub struct Queued {
    /// Its id in the stream.
    pub id: String,
    /// The notification, with the stream id's time as its id (the delivery code needs no Redis id).
    pub entry: OutboxEntry,
}

impl Cluster {
    /// Queues `entry` (a notification this replica queued locally) in the cluster's outbox if this replica owns its
    /// service and the cluster carries no other cycle of its alert; says what happened.
    pub async fn forward(&self, entry: &OutboxEntry) -> Result<Forwarded, Refusal> {
        let mut conn = self.connect().await.map_err(Refusal::Unreachable)?;
        let headers = serde_json::to_string(&entry.headers).unwrap_or_else(|_| "[]".to_owned());
        let (fingerprint, starts_at) = entry.cycle();
        let mut call = scripts::FORWARD.prepare_invoke();
        call.key(self.key("members"))
            .key(self.token_key())
            .key(self.key("outbox"))
            .key(self.key("alerts"))
            .arg(self.node())
            .arg(&self.token)
            .arg(&entry.service)
            .arg(&entry.idempotency_key)
            .arg(&entry.target)
            .arg(&entry.content_type)
            .arg(headers)
            .arg(entry.body.as_slice())
            .arg(entry.created_ms)
            .arg(fingerprint)
            .arg(starts_at);
        match bounded(call.invoke_async::<i64>(&mut conn)).await {
            Ok(answer) => {
                self.set_up(true, None);
                Ok(match answer {
                    1 => Forwarded::Queued,
                    2 => Forwarded::Superseded,
                    3 => Forwarded::NotMember,
                    _ => Forwarded::NotOwner,
                })
            }
            Err(e) => Err(self.unreachable(&e)),
        }
    }

    /// The oldest notifications waiting in the cluster's outbox (at most [`HEAD`]), oldest first; `None` when Redis
    /// cannot be asked. Entries that do not parse are logged and skipped.
    pub async fn outbox(&self) -> Option<Vec<Queued>> {
        let mut conn = self.connection().await?;
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(self.key("outbox")).arg("-").arg("+").arg("COUNT").arg(HEAD);
        let reply: StreamRangeReply = match bounded(cmd.query_async(&mut conn)).await {
            Ok(r) => r,
            Err(e) => {
                self.set_up(false, Some(&e));
                return None;
            }
        };
        let mut queued = Vec::with_capacity(reply.ids.len());
        for raw in reply.ids {
            match parse(&raw) {
                Some(entry) => queued.push(Queued { id: raw.id, entry }),
                None => tracing::warn!(id = %raw.id, "ignoring a cluster outbox entry that does not parse"),
            }
        }
        Some(queued)
    }

    /// The receiver accepted the notification `id`: it leaves the outbox. Best effort: if this fails, it is
    /// delivered again (with the same Idempotency-Key).
    pub async fn delivered(&self, id: &str) {
        let Some(mut conn) = self.connection().await else { return };
        let mut cmd = redis::cmd("XDEL");
        cmd.arg(self.key("outbox")).arg(id);
        if let Err(e) = bounded(cmd.query_async::<i64>(&mut conn)).await {
            tracing::debug!(
                id,
                "cannot remove a delivered notification from the cluster outbox (it is sent again): {e}"
            );
        }
    }

    /// Shares the alerts of `service` (a JSON list; `[]` for none), if this replica owns it. `Ok(false)`: another
    /// replica owns it and nothing was written.
    pub async fn share_alerts(&self, service: &str, json: &str) -> Result<bool, Refusal> {
        let mut conn = self.connect().await.map_err(Refusal::Unreachable)?;
        let mut call = scripts::SHARE_ALERTS.prepare_invoke();
        call.key(self.key("members"))
            .key(self.token_key())
            .key(self.key("alerts"))
            .arg(self.node())
            .arg(&self.token)
            .arg(service)
            .arg(json);
        match bounded(call.invoke_async::<i64>(&mut conn)).await {
            Ok(written) => Ok(written == 1),
            Err(e) => Err(self.unreachable(&e)),
        }
    }

    /// The alerts the last owner of `service` shared (a JSON list), if any; `None` also when Redis cannot be asked.
    pub async fn shared_alerts(&self, service: &str) -> Option<String> {
        let mut conn = self.connection().await?;
        let mut cmd = redis::cmd("HGET");
        cmd.arg(self.key("alerts")).arg(service);
        bounded(cmd.query_async::<Option<String>>(&mut conn))
            .await
            .map_err(|e| tracing::debug!(service, "cannot read the shared alerts: {e}"))
            .ok()
            .flatten()
    }
}

/// An outbox entry of the stream, or `None` if a field is missing or malformed.
fn parse(raw: &redis::streams::StreamId) -> Option<OutboxEntry> {
    let text = |field: &str| raw.get::<String>(field);
    let headers: Vec<(String, String)> = serde_json::from_str(&text("h")?).ok()?;
    Some(OutboxEntry {
        id: stream_time(&raw.id),
        notification: Notification {
            service: text("s")?,
            idempotency_key: text("k")?,
            target: text("t")?,
            content_type: text("c")?,
            headers,
            body: raw.get::<Vec<u8>>("b")?,
        },
        created_ms: text("at")?.parse().ok()?,
        attempts: 0,
        next_attempt_ms: 0,
    })
}

/// The millisecond part of a stream id (`1700000000000-3` → 1700000000000).
fn stream_time(id: &str) -> i64 {
    id.split('-').next().and_then(|ms| ms.parse().ok()).unwrap_or(0)
}
