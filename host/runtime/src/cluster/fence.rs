//! Fencing: before a restart, a restart command or a notification, the replica proves in Redis, atomically, that
//! its membership is live and that it owns the service (the Lua script [`super::scripts::FENCE`]). A proof that
//! cannot be made refuses the action; the caller drops it.

use super::{Cluster, bounded, connect, scripts};

/// Why this replica may not act for a service now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Another live replica owns it (or this one's membership expired).
    NotOwner(String),
    /// Redis cannot be asked: nobody can prove anything.
    Unreachable(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotOwner(why) => f.write_str(why),
            Refusal::Unreachable(why) => write!(f, "Redis cannot confirm the ownership: {why}"),
        }
    }
}

impl Cluster {
    /// A command that proves something failed: Redis counts as down, and nothing may be done.
    pub(super) fn unreachable(&self, e: &redis::RedisError) -> Refusal {
        self.set_up(false, Some(e));
        Refusal::Unreachable(connect::describe(e))
    }

    /// Proves in Redis, atomically, that this replica may act for `service` now: its membership is live (this
    /// incarnation's) and it is the owner among the live members. `Err` says why not (not the owner, or Redis
    /// cannot be asked): then nothing may be done.
    pub async fn fence(&self, service: &str) -> Result<(), Refusal> {
        let mut conn = self.connect().await.map_err(Refusal::Unreachable)?;
        let mut call = scripts::FENCE.prepare_invoke();
        call.key(self.key("members")).key(self.token_key()).arg(self.node()).arg(&self.token).arg(service);
        match bounded(call.invoke_async::<i64>(&mut conn)).await {
            Ok(1) => Ok(()),
            Ok(_) => Err(Refusal::NotOwner(format!(
                "this replica ({}) does not own it (owner: {})",
                self.node(),
                self.owner(service).unwrap_or_else(|| "unknown".into())
            ))),
            Err(e) => Err(self.unreachable(&e)),
        }
    }
}
