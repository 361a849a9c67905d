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

mod connect;
pub mod ownership;
mod scripts;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::ClusterConfig;
use crate::error::RuntimeError;
use crate::metrics::Metrics;

/// Events kept in the cluster's history (about: Redis trims whole nodes of the stream).
const EVENTS_KEPT: usize = 10_000;
/// Events read at once when the history is searched.
const EVENT_PAGE: usize = 500;
/// How often the inbox and the change stream are read.
const POLL: Duration = Duration::from_millis(250);
/// Longest wait for one Redis command before Redis counts as unreachable.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Commands taken from the inbox, and changes read, per poll.
const BATCH: usize = 256;

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

/// What the cluster asks of the supervisor.
pub trait ClusterHost: Send + Sync {
    /// The names of every configured service.
    fn services(&self) -> Vec<String>;
    /// Another replica changed what it shares about `service` (which this replica does not own): `json` was
    /// written `age` ago by Redis' clock.
    fn follow(&self, service: &str, kind: Shared, json: &str, age: Duration);
    /// An operator command sent to another replica for a service this one owns.
    fn command(&self, command: Command);
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
            reconnected: std::sync::Mutex::new(None),
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

    fn view(&self) -> Option<Arc<Vec<String>>> {
        self.members.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The owner of `service` as this replica sees it; `None` before Redis answered once.
    pub fn owner(&self, service: &str) -> Option<String> {
        let members = self.view()?;
        ownership::owner(service, &members).map(str::to_owned)
    }

    /// Whether this replica probes `service`: it owns it, or it never reached Redis (then it watches every service
    /// and acts on none).
    pub fn owns(&self, service: &str) -> bool {
        match self.view() {
            None => true,
            Some(members) => ownership::owner(service, &members) == Some(self.node()),
        }
    }

    /// Whether the last Redis command succeeded.
    pub fn redis_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Proves in Redis, atomically, that this replica may act for `service` now: its membership is live (this
    /// incarnation's) and it is the owner among the live members. `Err` says why not (not the owner, or Redis
    /// cannot be asked): then nothing may be done.
    pub async fn fence(&self, service: &str) -> Result<(), Refusal> {
        let mut conn = self.connect().await.map_err(Refusal::Unreachable)?;
        let mut call = scripts::FENCE.prepare_invoke();
        call.key(self.key("members")).key(self.token_key()).arg(self.node()).arg(&self.token).arg(service);
        let allowed: Result<i64, _> = tokio::time::timeout(COMMAND_TIMEOUT, call.invoke_async(&mut conn))
            .await
            .unwrap_or_else(|_| Err(redis::RedisError::from((redis::ErrorKind::IoError, "timed out"))));
        match allowed {
            Ok(1) => Ok(()),
            Ok(_) => Err(Refusal::NotOwner(format!(
                "this replica ({}) does not own it (owner: {})",
                self.node(),
                self.owner(service).unwrap_or_else(|| "unknown".into())
            ))),
            Err(e) => {
                self.set_up(false, Some(&e));
                Err(Refusal::Unreachable(connect::describe(&e)))
            }
        }
    }

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
        let r: Result<redis::RedisResult<i64>, _> =
            tokio::time::timeout(COMMAND_TIMEOUT, call.invoke_async(&mut conn)).await;
        match r {
            Ok(Ok(_)) => self.set_up(true, None),
            Ok(Err(e)) => {
                self.set_up(false, Some(&e));
                tracing::debug!(service, "cannot share the {kind:?} state: {e}");
            }
            Err(_) => tracing::debug!(service, "cannot share the {kind:?} state: timed out"),
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
        let r: Option<(String, u64)> = tokio::time::timeout(COMMAND_TIMEOUT, call.invoke_async(&mut conn))
            .await
            .ok()?
            .map_err(|e| tracing::debug!(service, "cannot read the shared {kind:?} state: {e}"))
            .ok()?;
        r.map(|(json, age)| (json, Duration::from_millis(age)))
    }

    /// Adds an event of this replica (a JSON object; its `node` is added) to the cluster's event history, which
    /// keeps about [`EVENTS_KEPT`]. Best effort: the replica's own store has it anyway.
    pub async fn record_event(&self, mut event: serde_json::Value) {
        let Some(mut conn) = self.connection().await else { return };
        event["node"] = serde_json::Value::from(self.node());
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.key("events")).arg("MAXLEN").arg("~").arg(EVENTS_KEPT).arg("*").arg("e").arg(event.to_string());
        let r: Result<redis::RedisResult<String>, _> =
            tokio::time::timeout(COMMAND_TIMEOUT, cmd.query_async(&mut conn)).await;
        if let Ok(Err(e)) = r {
            tracing::debug!("cannot share an event: {e}");
        }
    }

    /// The newest `limit` events of every replica (of `service` only, if given), newest first; `None` when Redis
    /// cannot be asked (the caller then answers from its own store).
    pub async fn events(&self, service: Option<&str>, limit: u32) -> Option<Vec<serde_json::Value>> {
        let mut conn = self.connection().await?;
        let mut found = Vec::new();
        let mut end = "+".to_owned();
        // Pages from the newest back, until enough match or the history ends.
        loop {
            let mut cmd = redis::cmd("XREVRANGE");
            cmd.arg(self.key("events")).arg(&end).arg("-").arg("COUNT").arg(EVENT_PAGE);
            let page: redis::streams::StreamRangeReply =
                tokio::time::timeout(COMMAND_TIMEOUT, cmd.query_async(&mut conn)).await.ok()?.ok()?;
            let last = page.ids.last().map(|e| e.id.clone());
            for entry in &page.ids {
                let Some(text) = entry.get::<String>("e") else { continue };
                let Ok(event) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
                if service.is_none_or(|s| event["service"] == s) {
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

    /// Queues `command` for the owner of its service. `Err`: who owns it is unknown, or Redis is unreachable.
    pub async fn send(&self, command: &Command) -> Result<String, String> {
        let owner = self.owner(&command.service).ok_or("the owner is not known yet (Redis has not answered)")?;
        let mut conn = self.connection().await.ok_or("Redis is unreachable")?;
        let json = serde_json::to_string(command).map_err(|e| e.to_string())?;
        let key = self.inbox_key(&owner);
        let r: Result<redis::RedisResult<()>, _> = tokio::time::timeout(COMMAND_TIMEOUT, async {
            redis::pipe().rpush(&key, json).ignore().expire(&key, 3600).ignore().query_async(&mut conn).await
        })
        .await;
        match r {
            Ok(Ok(())) => Ok(owner),
            Ok(Err(e)) => Err(connect::describe(&e)),
            Err(_) => Err("Redis timed out".to_owned()),
        }
    }

    /// Whether this replica reconnected less than a lease ago (see [`Self::adopt`]).
    fn settling(&self) -> bool {
        let since = *self.reconnected.lock().unwrap_or_else(|p| p.into_inner());
        since.is_some_and(|at| at.elapsed() < self.config.lease_ttl)
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
        match connect::connect(&self.config, COMMAND_TIMEOUT).await {
            Ok(c) => {
                *slot = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                self.metrics.redis_up.set(0);
                self.up.store(false, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// One heartbeat: renews the membership and reads the live members.
    async fn heartbeat(&self, lease: Duration) -> Result<Vec<String>, String> {
        let mut conn = self.connect().await?;
        let mut call = scripts::HEARTBEAT.prepare_invoke();
        call.key(self.key("members"))
            .key(self.token_key())
            .arg(self.node())
            .arg(&self.token)
            .arg(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX));
        match tokio::time::timeout(COMMAND_TIMEOUT, call.invoke_async::<Vec<String>>(&mut conn)).await {
            Ok(Ok(members)) => {
                self.set_up(true, None);
                Ok(members)
            }
            Ok(Err(e)) => {
                self.set_up(false, Some(&e));
                Err(connect::describe(&e))
            }
            Err(_) => {
                self.set_up(false, None);
                Err("timed out".to_owned())
            }
        }
    }

    /// Adopts a new member list: counts the services that moved to or from this replica.
    fn adopt(&self, members: Vec<String>, services: &[String]) {
        let before = self.view();
        let mut members = members;
        members.sort();
        if before.as_deref() == Some(&members) {
            return;
        }
        // Back from an outage, the members re-register one by one (their entries expired meanwhile): the view from
        // before the outage, which every replica shares, stays until all had time to beat again. Otherwise the first
        // replica back would briefly own everything and act for services another replica is recovering.
        if before.is_some() && self.settling() {
            tracing::debug!(members = %members.join(","), "members settling after reconnecting; keeping the view");
            return;
        }
        let node = self.node();
        let owned = |m: Option<&Vec<String>>, s: &str| m.is_none_or(|m| ownership::owner(s, m) == Some(node));
        let moved = services.iter().filter(|s| owned(before.as_deref(), s) != owned(Some(&members), s)).count();
        let mine = services.iter().filter(|s| owned(Some(&members), s)).count();
        tracing::info!(members = %members.join(","), owned = mine, moved, "cluster members changed");
        self.metrics.members.set(i64::try_from(members.len()).unwrap_or(i64::MAX));
        self.metrics.owned.set(i64::try_from(mine).unwrap_or(i64::MAX));
        self.metrics.changes.inc_by(u64::try_from(moved).unwrap_or(0));
        *self.members.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(members));
    }

    /// How often heartbeats go out, and how long an entry lives without one: a member that stops is gone after
    /// `leaseTtl - period` and noticed within one more period, so its services move within `leaseTtl`.
    fn lease(&self) -> (Duration, Duration) {
        let period = (self.config.lease_ttl / 4).min(Duration::from_secs(1));
        (period, self.config.lease_ttl.saturating_sub(period))
    }

    /// Joins the cluster and waits at most `wait` for the first answer (so the services start with a known
    /// ownership when Redis is there). A wrong password or a TLS failure is logged as such.
    pub async fn join(&self, host: &dyn ClusterHost, wait: Duration) {
        let (_, lease) = self.lease();
        match tokio::time::timeout(wait, self.heartbeat(lease)).await {
            Ok(Ok(members)) => self.adopt(members, &host.services()),
            Ok(Err(e)) => tracing::error!(
                redis = %self.config.shown_url(),
                "cannot join the cluster: {e}; watching every service and acting on none, retrying"
            ),
            Err(_) => tracing::error!(
                redis = %self.config.shown_url(),
                "Redis does not answer; watching every service and acting on none, retrying"
            ),
        }
    }

    /// Heartbeats, follows the other replicas' changes and serves the inbox until `stop`; then leaves the cluster
    /// (its services move at once instead of after the lease).
    pub async fn run(self: Arc<Self>, host: Arc<dyn ClusterHost>, mut stop: watch::Receiver<bool>) {
        let (period, lease) = self.lease();
        let mut beat = tokio::time::interval(period);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error: Option<String> = None;
        // The change stream is read from where it is when this replica starts: what came before is read in full
        // when a service is taken over.
        let mut cursor = "$".to_owned();
        loop {
            tokio::select! {
                _ = beat.tick() => match self.heartbeat(lease).await {
                    Ok(members) => {
                        last_error = None;
                        self.adopt(members, &host.services());
                    }
                    Err(e) => {
                        if last_error.as_deref() != Some(&e) {
                            tracing::warn!(redis = %self.config.shown_url(), "cluster heartbeat failed: {e}");
                        }
                        last_error = Some(e);
                    }
                },
                _ = poll.tick() => self.poll(host.as_ref(), &mut cursor).await,
                _ = stop.changed() => break,
            }
        }
        self.leave().await;
    }

    /// Reads the inbox and the change stream once.
    async fn poll(&self, host: &dyn ClusterHost, cursor: &mut String) {
        let Some(mut conn) = self.connection().await else { return };
        if cursor == "$" {
            // The newest entry's id, so that only later changes are read.
            let last: redis::RedisResult<redis::streams::StreamRangeReply> =
                conn.xrevrange_count(self.key("changes"), "+", "-", 1).await;
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
            match tokio::time::timeout(COMMAND_TIMEOUT, pipe.query_async(&mut conn)).await {
                Ok(r) => r,
                Err(_) => return,
            };
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

    /// Removes this replica from the members (a clean stop: its services move now).
    async fn leave(&self) {
        let Some(mut conn) = self.connection().await else { return };
        let r: Result<redis::RedisResult<()>, _> = tokio::time::timeout(COMMAND_TIMEOUT, async {
            redis::pipe()
                .zrem(self.key("members"), self.node())
                .ignore()
                .del(self.token_key())
                .ignore()
                .query_async(&mut conn)
                .await
        })
        .await;
        if let Ok(Ok(())) = r {
            tracing::info!(node = %self.node(), "left the cluster");
        }
    }
}
