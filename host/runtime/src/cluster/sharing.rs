//! What replicas share about services: the owner publishes breaker snapshots and restart books (a hash per kind,
//! the time of each write by Redis' clock, and a capped change stream), the others follow the change stream and read
//! what changed; operator commands for a service go to its owner's inbox (a list).

use std::time::Duration;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::{Cluster, ClusterHost, bounded, connect, scripts};

/// Commands taken from the inbox, and changes read, per poll.
const BATCH: usize = 256;

/// What a replica shares about a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shared {
    /// The breaker snapshot (JSON of [`aegis_core::Snapshot`]).
    Breaker,
    /// The restart book.
    Restarts,
}

impl Shared {
    fn hash(self) -> &'static str {
        match self {
            Shared::Breaker => "breakers",
            Shared::Restarts => "restarts",
        }
    }
}

/// An operator command for the owner of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub service: String,
    /// `open`, `closed`, `half-open`, `auto` (force-state) or `reset`.
    pub action: String,
}

impl Cluster {
    /// Shares `json` about `service` with the other replicas (best effort: a failure is logged; the next change
    /// is shared again).
    pub async fn publish(&self, service: &str, kind: Shared, json: &str) {
        let Some(mut conn) = self.connection().await else { return };
        let mut call = scripts::PUBLISH.prepare_invoke();
        call.key(self.key(kind.hash()))
            .key(self.key(&format!("{}-at", kind.hash())))
            .key(self.key("changes"))
            .arg(service)
            .arg(json);
        match bounded(call.invoke_async::<i64>(&mut conn)).await {
            Ok(_) => self.set_up(true, None),
            Err(e) => {
                self.set_up(false, Some(&e));
                tracing::debug!(service, "cannot share the {kind:?} state: {e}");
            }
        }
    }

    /// What the owner shared about `service`, and how long ago (Redis' clock); `None` if nothing or unreachable.
    pub async fn read(&self, service: &str, kind: Shared) -> Option<(String, Duration)> {
        let mut conn = self.connection().await?;
        let mut call = scripts::READ.prepare_invoke();
        call.key(self.key(kind.hash()))
            .key(self.key(&format!("{}-at", kind.hash())))
            .key(self.key("changes"))
            .arg(service);
        let r: Option<(String, u64)> = bounded(call.invoke_async(&mut conn))
            .await
            .map_err(|e| tracing::debug!(service, "cannot read the shared {kind:?} state: {e}"))
            .ok()?;
        r.map(|(json, age)| (json, Duration::from_millis(age)))
    }

    /// Queues `command` for the owner of its service. `Err`: who owns it is unknown, or Redis is unreachable.
    pub async fn send(&self, command: &Command) -> Result<String, String> {
        let owner = self.owner(&command.service).ok_or("the owner is not known yet (Redis has not answered)")?;
        let mut conn = self.connection().await.ok_or("Redis is unreachable")?;
        let json = serde_json::to_string(command).map_err(|e| e.to_string())?;
        let key = self.inbox_key(&owner);
        let mut pipe = redis::pipe();
        pipe.rpush(&key, json).ignore().expire(&key, 3600).ignore();
        bounded(pipe.query_async::<()>(&mut conn)).await.map(|()| owner).map_err(|e| connect::describe(&e))
    }

    /// Reads the inbox and the change stream once.
    pub(super) async fn poll(&self, host: &dyn ClusterHost, cursor: &mut String) {
        let Some(mut conn) = self.connection().await else { return };
        if cursor == "$" {
            // The newest entry's id, so that only later changes are read.
            let last: redis::RedisResult<redis::streams::StreamRangeReply> =
                bounded(conn.xrevrange_count(self.key("changes"), "+", "-", 1)).await;
            match last {
                Ok(r) => *cursor = r.ids.first().map_or_else(|| "0".to_owned(), |e| e.id.clone()),
                Err(_) => return,
            }
        }
        let inbox = self.inbox_key(self.node());
        let mut pipe = redis::pipe();
        pipe.cmd("LPOP")
            .arg(&inbox)
            .arg(BATCH)
            .cmd("XRANGE")
            .arg(self.key("changes"))
            .arg(format!("({cursor}"))
            .arg("+")
            .arg("COUNT")
            .arg(BATCH);
        let reply: redis::RedisResult<(Option<Vec<String>>, redis::streams::StreamRangeReply)> =
            bounded(pipe.query_async(&mut conn)).await;
        let (commands, changes) = match reply {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("cannot read the cluster inbox and changes: {e}");
                return;
            }
        };
        for raw in commands.unwrap_or_default() {
            match serde_json::from_str::<Command>(&raw) {
                Ok(c) if self.owns(&c.service) => host.command(c),
                // The service moved since the command was sent: pass it on.
                Ok(c) => {
                    if let Err(e) = self.send(&c).await {
                        tracing::warn!(service = %c.service, "operator command dropped: {e}");
                    }
                }
                Err(e) => tracing::warn!("ignoring a malformed cluster command ({e}): {raw:.200}"),
            }
        }
        let mut changed = std::collections::BTreeSet::new();
        for entry in &changes.ids {
            *cursor = entry.id.clone();
            if let Some(service) = entry.get::<String>("s") {
                changed.insert(service);
            }
        }
        for service in changed {
            if self.owns(&service) {
                continue;
            }
            for kind in [Shared::Breaker, Shared::Restarts] {
                if let Some((json, age)) = self.read(&service, kind).await {
                    host.follow(&service, kind, &json, age);
                }
            }
        }
    }
}
