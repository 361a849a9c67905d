//! Alerts in cluster mode. Notifications are first queued in the local outbox (durable while Redis is away), then
//! moved to the cluster's outbox in Redis by the replica that owns the alert's service — a replica that lost the
//! service in the meantime drops them, the owner raised the alert itself. Every replica delivers the notifications
//! of the services it owns, proving the ownership in Redis right before each send; a delivered notification leaves
//! the outbox, a failed one waits for its retry, and one queued by a replica that died is delivered by the
//! service's next owner. The alerts of each service are shared with the cluster after their notifications were
//! queued, so a replica taking the service over carries them on (see [`super::Alerting::adopt`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::delivery::{Lanes, next_attempt_ms, pause, send};
use super::{AlertContext, BATCH, IDLE_POLL};
use crate::cluster::{Cluster, Forwarded, Queued, Refusal};
use crate::unix_ms_i64;

/// A notification of the cluster's outbox that failed here: when to try again.
#[derive(Clone, Copy, Debug)]
struct Retry {
    attempts: u32,
    next_ms: i64,
}

/// Retries by stream id; forgotten when the notification leaves the outbox or another replica takes it on.
type Retries = Arc<Mutex<HashMap<String, Retry>>>;

/// Delivers the notifications of the services this replica owns from the cluster's outbox until `stop`, moving
/// this replica's locally queued ones there first and sharing its changed alerts.
pub async fn run_cluster_delivery(shared: Arc<AlertContext>, cluster: Arc<Cluster>, mut stop: watch::Receiver<bool>) {
    let mut lanes = Lanes::default();
    let retries: Retries = Arc::default();
    loop {
        forward(&shared, &cluster).await;
        share(&shared, &cluster).await;
        let mut wait = IDLE_POLL;
        if let Some(queued) = cluster.outbox().await {
            let (due, mine, next) = pick(&cluster, &lanes, &retries, queued);
            if let Some(next) = next {
                wait = wait.min(Duration::from_millis(u64::try_from(next - unix_ms_i64()).unwrap_or(0)));
            }
            let staged = shared.store.outbox_status().map_or(0, |(n, _)| n);
            shared.metrics.outbox_pending.set(i64::try_from(staged.saturating_add(mine)).unwrap_or(i64::MAX));
            for (target, entries) in due {
                let (shared, cluster, retries) = (Arc::clone(&shared), Arc::clone(&cluster), Arc::clone(&retries));
                lanes.spawn(target, async move {
                    for queued in entries {
                        deliver(&shared, &cluster, &retries, queued).await;
                    }
                });
            }
        }
        if !pause(&shared, &mut lanes, &mut stop, wait).await {
            break;
        }
    }
    lanes.shutdown().await;
}

/// What to send now, by target: the oldest waiting notification of each alert and target (a receiver hears an
/// alert's firing before its resolution), of the services this replica owns, whose retry is due and whose target's
/// lane is idle. Also how many notifications of its services wait, and the earliest retry not yet due.
fn pick(
    cluster: &Cluster,
    lanes: &Lanes,
    retries: &Retries,
    queued: Vec<Queued>,
) -> (BTreeMap<String, Vec<Queued>>, u64, Option<i64>) {
    let now = unix_ms_i64();
    let mut retries = retries.lock().unwrap_or_else(|p| p.into_inner());
    let waiting: HashSet<&str> = queued.iter().map(|q| q.id.as_str()).collect();
    retries.retain(|id, _| waiting.contains(id.as_str()));
    let mut heads = HashSet::new();
    let (mut due, mut mine, mut next): (BTreeMap<String, Vec<Queued>>, u64, Option<i64>) = Default::default();
    for mut q in queued {
        let (fingerprint, starts_at) = q.entry.cycle();
        let head = heads.insert((fingerprint.to_owned(), starts_at.to_owned(), q.entry.target.clone()));
        if !cluster.owns(&q.entry.service) {
            continue;
        }
        mine += 1;
        if !head || lanes.is_busy(&q.entry.target) {
            continue;
        }
        if let Some(r) = retries.get(&q.id) {
            if r.next_ms > now {
                next = Some(next.map_or(r.next_ms, |n: i64| n.min(r.next_ms)));
                continue;
            }
            q.entry.attempts = r.attempts;
        }
        due.entry(q.entry.target.clone()).or_default().push(q);
    }
    (due, mine, next)
}

/// Sends one notification of the cluster's outbox if this replica still owns its service.
async fn deliver(shared: &AlertContext, cluster: &Cluster, retries: &Retries, queued: Queued) {
    match cluster.fence(&queued.entry.service).await {
        Ok(()) => {}
        Err(Refusal::NotOwner(why)) => {
            tracing::debug!(key = %queued.entry.idempotency_key, "not delivered here: {why}");
            return;
        }
        Err(Refusal::Unreachable(why)) => {
            tracing::debug!(key = %queued.entry.idempotency_key, "not delivered now: {why}");
            return;
        }
    }
    let result = send(shared, &queued.entry).await;
    let retries_now = || retries.lock().unwrap_or_else(|p| p.into_inner());
    match result {
        Ok(()) => {
            retries_now().remove(&queued.id);
            cluster.delivered(&queued.id).await;
        }
        Err((delay, _)) => {
            let retry = Retry { attempts: queued.entry.attempts.saturating_add(1), next_ms: next_attempt_ms(delay) };
            retries_now().insert(queued.id, retry);
        }
    }
}

/// Moves the locally queued notifications to the cluster's outbox, oldest first, each alert's in order. Stops at
/// the first that cannot be moved now (Redis unreachable): they wait, in order, for the next look.
async fn forward(shared: &AlertContext, cluster: &Cluster) {
    loop {
        let staged = match shared.store.due(i64::MAX, BATCH) {
            Ok(s) if !s.is_empty() => s,
            Ok(_) => return,
            Err(e) => {
                tracing::debug!("cannot read the local alert outbox: {e}");
                return;
            }
        };
        for entry in &staged {
            let dropped = if shared.alerts.superseded(entry) {
                Some(Forwarded::Superseded)
            } else {
                match cluster.forward(entry).await {
                    Ok(Forwarded::Queued) => None,
                    Ok(Forwarded::NotMember) | Err(_) => return,
                    Ok(other) => Some(other),
                }
            };
            if let Some(why) = dropped {
                tracing::info!(
                    service = %entry.service,
                    key = %entry.idempotency_key,
                    "notification dropped: {}",
                    if why == Forwarded::NotOwner {
                        "another replica owns the service now and raises its alerts"
                    } else {
                        "the cluster carries another cycle of this alert (raised by the replica that owned the \
                         service while this one was cut off)"
                    }
                );
            }
            if let Err(e) = shared.store.delivered(entry.id) {
                tracing::debug!("cannot remove a forwarded notification from the local outbox (sent twice): {e}");
                return;
            }
        }
    }
}

/// Shares the alerts that changed, for the services this replica owns.
async fn share(shared: &AlertContext, cluster: &Cluster) {
    let mut changed = shared.alerts.take_changed().into_iter();
    while let Some((service, json)) = changed.next() {
        match cluster.share_alerts(&service, &json).await {
            Ok(_) => shared.alerts.was_shared(&service, json),
            Err(_) => {
                shared.alerts.share_later(service, json);
                for (service, json) in changed.by_ref() {
                    shared.alerts.share_later(service, json);
                }
            }
        }
    }
}
