//! The cluster's event history: every replica adds its events (with its node name) to one capped Redis stream, and
//! every replica's `/api/v1/events` reads it, so the history is the same wherever it is asked.

use super::{Cluster, bounded};

/// Events kept in the cluster's history (about: Redis trims whole nodes of the stream).
const EVENTS_KEPT: usize = 10_000;
/// Events read at once when the history is searched.
const EVENT_PAGE: usize = 500;

impl Cluster {
    /// Adds an event of this replica (a JSON object; its `node` is added) to the cluster's event history, which
    /// keeps about [`EVENTS_KEPT`]. Best effort: the replica's own store has it anyway.
    pub async fn record_event(&self, mut event: serde_json::Value) {
        let Some(mut conn) = self.connection().await else { return };
        event["node"] = serde_json::Value::from(self.node());
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.key("events")).arg("MAXLEN").arg("~").arg(EVENTS_KEPT).arg("*").arg("e").arg(event.to_string());
        if let Err(e) = bounded(cmd.query_async::<String>(&mut conn)).await {
            tracing::debug!("cannot share an event: {e}");
        }
    }

    /// The newest `limit` events of every replica (of `service` only, if given), newest first; `None` when Redis
    /// cannot be asked (the caller then answers from its own store).
    pub async fn events(
        &self,
        service: Option<&str>,
        kind: Option<&str>,
        limit: u32,
    ) -> Option<Vec<serde_json::Value>> {
        let mut conn = self.connection().await?;
        let mut found = Vec::new();
        let mut end = "+".to_owned();
        // Pages from the newest back, until enough match or the history ends.
        loop {
            let mut cmd = redis::cmd("XREVRANGE");
            cmd.arg(self.key("events")).arg(&end).arg("-").arg("COUNT").arg(EVENT_PAGE);
            let page: redis::streams::StreamRangeReply = bounded(cmd.query_async(&mut conn)).await.ok()?;
            let last = page.ids.last().map(|e| e.id.clone());
            for entry in &page.ids {
                let Some(text) = entry.get::<String>("e") else { continue };
                let Ok(event) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
                if service.is_none_or(|s| event["service"] == s) && kind.is_none_or(|k| event["kind"] == k) {
                    found.push(event);
                    if found.len() >= limit as usize {
                        return Some(found);
                    }
                }
            }
            match last {
                Some(id) if page.ids.len() == EVENT_PAGE => end = format!("({id}"),
                _ => return Some(found),
            }
        }
    }
}
