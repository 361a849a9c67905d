//! Cluster mode: several aegis-host replicas against one Redis act as one supervisor. Each replica is a member
//! while its heartbeats keep its entry alive (a sorted set scored by expiry in Redis' own clock); each service is
//! owned by one live member, chosen by rendezvous hashing ([`ownership`]), so a member joining or leaving moves only
//! the services that must move. Only the owner probes, decides and acts; before each action (a restart, a restart
//! command, a notification) it proves in Redis, atomically, that its membership is live and that it is still the
//! owner ([`Cluster::fence`]). Breaker snapshots and restart books are published to Redis by their owner on every
//! change, read by a new owner when it takes a service over, and followed by the other replicas through a change
//! stream so every replica's API answers the same. Operator commands sent to a replica that does not own the
//! service are queued in the owner's inbox.
//!
//! Redis unreachable (fail-static): a replica keeps probing what it owned, records locally, and performs no action
//! (the proof cannot be made); it reconciles when Redis answers again. A replica that never reached Redis watches
//! every service and acts on none.
//!
//! Owns the Redis protocol of the cluster; must not touch services itself: what a change means for a service is
//! the supervisor's ([`ClusterHost`]).
//!
//! - `connect.rs`: the client (TLS, timeouts) and errors worded for operators.
//! - `scripts.rs`: the Lua scripts (heartbeat, fence, publish, read).
//! - `ownership.rs`: rendezvous hashing (pure).
//! - `membership.rs`: heartbeats, the member view, joining, the background loop, leaving.
//! - `fence.rs`: the proof before an action.
//! - `sharing.rs`: shared breaker states and restart books, the change stream, the operator inbox.
//! - `events.rs`: the cluster's event history.
//! - `outbox.rs`: the alert outbox (delivered by the owner of each alert's service) and the shared alerts.

mod connect;
mod events;
mod fence;
mod membership;
mod outbox;
pub mod ownership;
mod scripts;
mod sharing;

pub use self::fence::Refusal;
pub use self::outbox::{Forwarded, Queued};
pub use self::sharing::{Command, Shared};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use redis::aio::ConnectionManager;

use crate::config::ClusterConfig;
use crate::error::RuntimeError;
use crate::metrics::Metrics;

/// `command`, bounded by [`COMMAND_TIMEOUT`]: running out of time is an I/O error like any other.
async fn bounded<T>(command: impl Future<Output = redis::RedisResult<T>>) -> redis::RedisResult<T> {
    tokio::time::timeout(COMMAND_TIMEOUT, command)
        .await
        .unwrap_or_else(|_| Err(redis::RedisError::from((redis::ErrorKind::IoError, "timed out"))))
}

/// Shortest pause between two connection attempts while Redis cannot be reached.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// Longest wait for one Redis command before Redis counts as unreachable.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// What the cluster asks of the supervisor.
pub trait ClusterHost: Send + Sync {
    /// The names of every configured service.
    fn services(&self) -> Vec<String>;
    /// Another replica changed what it shares about `service` (which this replica does not own): `json` was
    /// written `age` ago by Redis' clock.
    fn follow(&self, service: &str, kind: Shared, json: &str, age: Duration);
    /// An operator command sent to another replica for a service this one owns.
    fn command(&self, command: Command);
    /// This replica's membership had expired (it was cut off from Redis for longer than the lease): other replicas
    /// may have owned its services meanwhile. Called before it registers again, with the members it will be one of;
    /// it registers when the future ends.
    fn rejoined<'a>(&'a self, members: &'a [String]) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// The cluster's metrics.
#[derive(Clone, Debug)]
struct ClusterMetrics {
    members: IntGauge,
    owned: IntGauge,
    changes: IntCounter,
    redis_up: IntGauge,
}

impl ClusterMetrics {
    fn new(metrics: &Metrics) -> Result<ClusterMetrics, RuntimeError> {
        let m = ClusterMetrics {
            members: IntGauge::new("aegis_cluster_members", "Live members of the cluster, as this replica last saw")?,
            owned: IntGauge::new("aegis_cluster_owned_services", "Services this replica owns (probes and acts for)")?,
            changes: IntCounter::new(
                "aegis_cluster_ownership_changes_total",
                "Services that moved to or from this replica",
            )?,
            redis_up: IntGauge::new("aegis_redis_up", "1 while this replica's last Redis command succeeded")?,
        };
        metrics.register(Box::new(m.members.clone()))?;
        metrics.register(Box::new(m.owned.clone()))?;
        metrics.register(Box::new(m.changes.clone()))?;
        metrics.register(Box::new(m.redis_up.clone()))?;
        Ok(m)
    }
}

/// One replica's membership.
pub struct Cluster {
    config: ClusterConfig,
    /// This incarnation's proof of membership: random, new at every start.
    token: String,
    connection: tokio::sync::Mutex<Option<ConnectionManager>>,
    /// The live members as last seen; `None` until Redis answered once.
    members: RwLock<Option<Arc<Vec<String>>>>,
    up: AtomicBool,
    /// Whether a heartbeat succeeded once (a later one finding the membership expired means a rejoin).
    joined: AtomicBool,
    /// The last failed connection attempt and why: others wait [`RECONNECT_EVERY`] before trying again.
    refused: std::sync::Mutex<Option<(std::time::Instant, String)>>,
    /// When Redis answered again after an outage: the member view settles for a lease (see [`Self::adopt`]).
    reconnected: std::sync::Mutex<Option<std::time::Instant>>,
    metrics: ClusterMetrics,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("config", &self.config)
            .field("members", &self.view())
            .field("up", &self.redis_up())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    pub fn new(config: ClusterConfig, metrics: &Metrics) -> Result<Arc<Cluster>, RuntimeError> {
        use rand::{Rng, SeedableRng};
        let token = format!("{:032x}", rand::rngs::StdRng::from_os_rng().random::<u128>());
        Ok(Arc::new(Cluster {
            config,
            token,
            connection: tokio::sync::Mutex::new(None),
            members: RwLock::new(None),
            up: AtomicBool::new(false),
            joined: AtomicBool::new(false),
            reconnected: std::sync::Mutex::new(None),
            refused: std::sync::Mutex::new(None),
            metrics: ClusterMetrics::new(metrics)?,
        }))
    }

    /// This replica's node name.
    pub fn node(&self) -> &str {
        &self.config.node
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.config.key_prefix)
    }

    fn token_key(&self) -> String {
        self.key(&format!("token:{}", self.config.node))
    }

    fn inbox_key(&self, node: &str) -> String {
        self.key(&format!("inbox:{node}"))
    }

    /// Whether the last Redis command succeeded.
    pub fn redis_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn set_up(&self, up: bool, error: Option<&redis::RedisError>) {
        let was = self.up.swap(up, Ordering::Relaxed);
        if up && !was && self.view().is_some() {
            *self.reconnected.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
        }
        self.metrics.redis_up.set(i64::from(up));
        match (was, up) {
            (true, false) => tracing::error!(
                redis = %self.config.shown_url(),
                "Redis unreachable: {}; probing goes on with the last known ownership, no restart or notification \
                 runs until it answers again",
                error.map(connect::describe).unwrap_or_default()
            ),
            (false, true) => {
                tracing::info!(redis = %self.config.shown_url(), node = %self.node(), "connected to Redis")
            }
            _ => {}
        }
    }

    /// The connection, connecting first if there is none (`None`: Redis cannot be reached now).
    async fn connection(&self) -> Option<ConnectionManager> {
        self.connect().await.ok()
    }

    /// The connection, connecting first if there is none; `Err` says why Redis cannot be reached now.
    async fn connect(&self) -> Result<ConnectionManager, String> {
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        // While Redis cannot be reached, callers (thousands of services taking over at start) fail at once
        // instead of each waiting for a connection attempt of its own.
        if let Some((at, why)) = self.refused.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
            && at.elapsed() < RECONNECT_EVERY
        {
            return Err(why.clone());
        }
        match connect::connect(&self.config, COMMAND_TIMEOUT).await {
            Ok(c) => {
                *slot = Some(c.clone());
                *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(c)
            }
            Err(e) => {
                self.metrics.redis_up.set(0);
                self.up.store(false, Ordering::Relaxed);
                *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some((std::time::Instant::now(), e.clone()));
                Err(e)
            }
        }
    }
}
