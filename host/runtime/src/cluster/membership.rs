//! Membership and ownership: heartbeats keep this replica's entry in the members' sorted set (scored by expiry in
//! Redis' clock); the live members, as last read, decide which services this replica owns ([`super::ownership`]).
//! Back from an outage the view settles for a lease before it changes. The loop of [`Cluster::run`] also reads the
//! inbox and the change stream ([`super::sharing`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{Cluster, ClusterHost, bounded, connect, ownership, scripts};

/// How often the inbox and the change stream are read.
const POLL: Duration = Duration::from_millis(250);

impl Cluster {
    pub(super) fn view(&self) -> Option<Arc<Vec<String>>> {
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

    /// Whether this replica reconnected less than a lease ago (see [`Self::adopt`]).
    pub(super) fn settling(&self) -> bool {
        let since = *self.reconnected.lock().unwrap_or_else(|p| p.into_inner());
        since.is_some_and(|at| at.elapsed() < self.config.lease_ttl)
    }

    /// One heartbeat: renews the membership and reads the live members; `true` beside them if this replica's
    /// membership had expired before (and it was a member before: not at the first beat). `register`: whether an
    /// expired membership is registered again by this beat.
    pub(super) async fn heartbeat(&self, lease: Duration, register: bool) -> Result<(Vec<String>, bool), String> {
        let mut conn = self.connect().await?;
        let mut call = scripts::HEARTBEAT.prepare_invoke();
        call.key(self.key("members"))
            .key(self.token_key())
            .arg(self.node())
            .arg(&self.token)
            .arg(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX))
            .arg(if register { "1" } else { "0" });
        match bounded(call.invoke_async::<Vec<String>>(&mut conn)).await {
            Ok(mut answer) => {
                self.set_up(true, None);
                let lapsed = !answer.is_empty() && answer.remove(0) == "1";
                let was_member = self.joined.swap(true, std::sync::atomic::Ordering::Relaxed);
                Ok((answer, lapsed && was_member))
            }
            Err(e) => {
                self.set_up(false, Some(&e));
                Err(connect::describe(&e))
            }
        }
    }

    /// Adopts a new member list: counts the services that moved to or from this replica.
    pub(super) fn adopt(&self, members: Vec<String>, services: &[String]) {
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
    pub(super) fn lease(&self) -> (Duration, Duration) {
        let period = (self.config.lease_ttl / 4).min(Duration::from_secs(1));
        (period, self.config.lease_ttl.saturating_sub(period))
    }

    /// Joins the cluster and waits at most `wait` for the first answer (so the services start with a known
    /// ownership when Redis is there). A wrong password or a TLS failure is logged as such.
    pub async fn join(&self, host: &dyn ClusterHost, wait: Duration) {
        let (_, lease) = self.lease();
        match tokio::time::timeout(wait, self.heartbeat(lease, true)).await {
            Ok(Ok((members, _))) => self.adopt(members, &host.services()),
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
                _ = beat.tick() => match self.beat(host.as_ref(), lease).await {
                    Ok(()) => last_error = None,
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

    /// One heartbeat of the running replica. A replica whose membership expired (cut off from Redis for longer than
    /// the lease) does not simply register again: other replicas owned its services meanwhile, so it first takes on
    /// what the cluster holds about them ([`ClusterHost::rejoined`]) and registers after that, so that nothing it
    /// decided while cut off (an alert, a notification) can overwrite what the other replicas did.
    async fn beat(&self, host: &dyn ClusterHost, lease: Duration) -> Result<(), String> {
        let register = !self.joined.load(std::sync::atomic::Ordering::Relaxed);
        let (mut members, lapsed) = self.heartbeat(lease, register).await?;
        if lapsed {
            tracing::warn!(
                node = %self.node(),
                "this replica's cluster membership had expired (cut off from Redis for longer than the lease): it \
                 takes on what the cluster holds about its services' alerts before it registers again"
            );
            members.push(self.node().to_owned());
            host.rejoined(&members).await;
            members = self.heartbeat(lease, true).await?.0;
        }
        self.adopt(members, &host.services());
        Ok(())
    }

    /// Removes this replica from the members (a clean stop: its services move now).
    pub(super) async fn leave(&self) {
        let Some(mut conn) = self.connection().await else { return };
        let mut pipe = redis::pipe();
        pipe.zrem(self.key("members"), self.node()).ignore().del(self.token_key()).ignore();
        if bounded(pipe.query_async::<()>(&mut conn)).await.is_ok() {
            tracing::info!(node = %self.node(), "left the cluster");
        }
    }
}
