//! The state store seam: what the runtime keeps beyond its own memory — breaker snapshots, restart books, the event
//! history, the alert outbox and named state (the alert book) — as the [`StateStore`] trait, with the record types
//! it speaks in. [`Store`] (embedded SQLite, `sqlite.rs`) is the local backend; a cluster backend (Redis) implements
//! the same trait.
//!
//! The trait has exactly the operations the runtime uses, with the SQLite store's semantics as the contract: each
//! call is synchronous and short, and callers log failures and carry on (supervision never stops on a store error).
//! None of them is on the per-check path — they run on transitions, restarts, events, operator actions and the
//! alert tasks — so the runtime holds the store as `Arc<dyn StateStore>` and dynamic dispatch costs nothing
//! measurable. This module must not know the runtime's state or tasks: it sits below everything that uses it.

use std::path::PathBuf;

use aegis_core::Snapshot;
use serde::Serialize;

mod accounting;
mod sqlite;

pub use self::accounting::{Accounted, MAX_KEPT};
pub use self::sqlite::{FAULT_ENV, Fault, Store};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("state database {path}: {message}")]
    Query { path: PathBuf, message: String },
    /// The store refuses writes, and rows of this kind already wait in memory: this one waits behind them.
    #[error("the state database refuses writes; kept in memory behind {behind} other(s), written when it accepts them")]
    Kept { behind: usize },
}

/// The `service` of an event that belongs to no service: a plugin quarantine, a log match outside every service's
/// files.
pub const NO_SERVICE: &str = "-";

/// One entry of the event history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    pub id: i64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// RFC 3339, UTC.
    pub at: String,
    pub service: String,
    /// `breaker-opened`, `breaker-closed`, `breaker-half-open`, `breaker-forced`, `breaker-reset`, `restart`,
    /// `restart-failed`, `gave-up`, `recovery-decision`, `notified`, `notify-failed`, `log-match`, `plugin-quarantined` and
    /// `plugin-released`, `storage-error` (the last three, and a log match outside every service's files, with
    /// [`NO_SERVICE`]).
    pub kind: String,
    pub message: String,
}

/// A notification waiting for delivery (the durable outbox): it is written before the first attempt and deleted only
/// after the receiver accepted it, so a receiver that is down, or a restart of aegis-host, delays it but never loses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    pub id: i64,
    /// What is sent (its fields read through the entry: `entry.target`).
    pub notification: Notification,
    pub created_ms: i64,
    pub attempts: u32,
    pub next_attempt_ms: i64,
}

impl std::ops::Deref for OutboxEntry {
    type Target = Notification;

    fn deref(&self) -> &Notification {
        &self.notification
    }
}

/// A notification to queue: one alert notification rendered for one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// The service the alert is about (its `service` label), or the alert's fingerprint for an alert of none. In
    /// cluster mode the replica owning it is the one that may deliver it.
    pub service: String,
    /// `fingerprint@startsAt/status`: the same alert notification sent twice carries the same key.
    pub idempotency_key: String,
    /// The URL to POST to.
    pub target: String,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Notification {
    /// The alert cycle the notification belongs to, from its idempotency key: the fingerprint and `startsAt` (ms;
    /// empty if the key has none).
    pub fn cycle(&self) -> (&str, &str) {
        let (fingerprint, rest) = self.idempotency_key.split_once('@').unwrap_or((&self.idempotency_key, ""));
        (fingerprint, rest.split('/').next().unwrap_or(""))
    }
}

#[cfg(test)]
impl Notification {
    /// A notification about service `a` to an unreachable loopback target, for tests.
    pub(crate) fn test(idempotency_key: &str, body: &[u8]) -> Notification {
        Notification {
            service: "a".to_owned(),
            idempotency_key: idempotency_key.to_owned(),
            target: "http://127.0.0.1:9/".to_owned(),
            content_type: "application/json".to_owned(),
            headers: Vec::new(),
            body: body.to_vec(),
        }
    }
}

/// What is remembered about one service across restarts of the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceState {
    pub breaker: Option<Snapshot>,
    pub restarts_total: u64,
    /// Times (ms since epoch) of recent restarts, for the restart limit.
    pub recent_restarts_ms: Vec<i64>,
    pub gave_up: bool,
}

/// Where the runtime keeps what must outlive the process (and, with a cluster backend, be shared between hosts).
/// Implementations are called from service tasks, the alert tasks and the admin thread at once.
pub trait StateStore: Send + Sync + std::fmt::Debug {
    /// Saves the breaker snapshot of `service`, replacing the previous one.
    fn save_breaker(&self, service: &str, snapshot: &Snapshot) -> Result<(), StoreError>;

    /// Saves the restart book of `service`: the total, the times (ms since epoch) of recent restarts, the give-up.
    fn save_restarts(&self, service: &str, total: u64, recent_ms: &[i64], gave_up: bool) -> Result<(), StoreError>;

    /// What was saved about `service` (defaults when nothing was).
    fn load(&self, service: &str) -> Result<ServiceState, StoreError>;

    /// Queues a notification for delivery now; returns its id.
    fn enqueue(&self, notification: &Notification) -> Result<i64, StoreError> {
        self.enqueue_at(crate::unix_ms_i64(), notification)
    }

    /// Queues a notification created at `created_ms` (ms since epoch), due from then; returns its id.
    fn enqueue_at(&self, created_ms: i64, notification: &Notification) -> Result<i64, StoreError>;

    /// Notifications due at `now_ms`, oldest first, at most `per_target` for each target, and only the oldest
    /// waiting one of each alert and target (an alert's notifications reach a receiver in order).
    fn due(&self, now_ms: i64, per_target: u32) -> Result<Vec<OutboxEntry>, StoreError>;

    /// The receiver accepted outbox entry `id`.
    fn delivered(&self, id: i64) -> Result<(), StoreError>;

    /// Delivery of `id` failed; try again at `next_attempt_ms`.
    fn retry_later(&self, id: i64, next_attempt_ms: i64, error: &str) -> Result<(), StoreError>;

    /// Outbox entries waiting (due or not), and the earliest next attempt.
    fn outbox_status(&self) -> Result<(u64, Option<i64>), StoreError>;

    /// Saves a named piece of state (JSON), e.g. the active alerts.
    fn put_state(&self, key: &str, json: &str) -> Result<(), StoreError>;

    /// A named piece of state saved with [`Self::put_state`].
    fn get_state(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Appends an event happening now and returns it with its id and time.
    fn append_event(&self, service: &str, kind: &str, message: &str) -> Result<Event, StoreError> {
        self.append_event_at(crate::unix_ms_i64(), service, kind, message)
    }

    /// Appends an event that happened at `at_ms` (ms since epoch) and returns it with its id.
    fn append_event_at(&self, at_ms: i64, service: &str, kind: &str, message: &str) -> Result<Event, StoreError>;

    /// The newest `limit` events, newest first, optionally of one service.
    fn events(&self, service: Option<&str>, limit: u32) -> Result<Vec<Event>, StoreError>;

    /// The newest `limit` events of kind `kind` (`shadow-disagreed`), newest first, optionally of one service.
    fn events_of_kind(&self, service: Option<&str>, kind: &str, limit: u32) -> Result<Vec<Event>, StoreError>;
}

/// The SQLite store's own methods, as the trait's (inherent methods take precedence, so these do not recurse).
impl StateStore for Store {
    fn save_breaker(&self, service: &str, snapshot: &Snapshot) -> Result<(), StoreError> {
        Store::save_breaker(self, service, snapshot)
    }

    fn save_restarts(&self, service: &str, total: u64, recent_ms: &[i64], gave_up: bool) -> Result<(), StoreError> {
        Store::save_restarts(self, service, total, recent_ms, gave_up)
    }

    fn load(&self, service: &str) -> Result<ServiceState, StoreError> {
        Store::load(self, service)
    }

    fn enqueue_at(&self, created_ms: i64, notification: &Notification) -> Result<i64, StoreError> {
        Store::enqueue_at(self, created_ms, notification)
    }

    fn due(&self, now_ms: i64, per_target: u32) -> Result<Vec<OutboxEntry>, StoreError> {
        Store::due(self, now_ms, per_target)
    }

    fn delivered(&self, id: i64) -> Result<(), StoreError> {
        Store::delivered(self, id)
    }

    fn retry_later(&self, id: i64, next_attempt_ms: i64, error: &str) -> Result<(), StoreError> {
        Store::retry_later(self, id, next_attempt_ms, error)
    }

    fn outbox_status(&self) -> Result<(u64, Option<i64>), StoreError> {
        Store::outbox_status(self)
    }

    fn put_state(&self, key: &str, json: &str) -> Result<(), StoreError> {
        Store::put_state(self, key, json)
    }

    fn get_state(&self, key: &str) -> Result<Option<String>, StoreError> {
        Store::get_state(self, key)
    }

    fn append_event_at(&self, at_ms: i64, service: &str, kind: &str, message: &str) -> Result<Event, StoreError> {
        Store::append_event_at(self, at_ms, service, kind, message)
    }

    fn events(&self, service: Option<&str>, limit: u32) -> Result<Vec<Event>, StoreError> {
        Store::events(self, service, limit)
    }

    fn events_of_kind(&self, service: Option<&str>, kind: &str, limit: u32) -> Result<Vec<Event>, StoreError> {
        Store::events_of_kind(self, service, kind, limit)
    }
}

#[cfg(test)]
mod tests {
    use aegis_core::{Counts, State};

    use super::*;

    #[test]
    fn the_sqlite_store_answers_through_the_trait() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Box<dyn StateStore> = Box::new(Store::open(&dir.path().join("aegis.db")).expect("open"));
        let snap = Snapshot { state: State::ForcedOpen, counts: Counts::default(), open_remaining: None };
        store.save_breaker("a", &snap).expect("save");
        store.save_restarts("a", 3, &[5], true).expect("save");
        let a = store.load("a").expect("load");
        assert_eq!(a.breaker.map(|s| s.state), Some(State::ForcedOpen));
        assert_eq!((a.restarts_total, a.recent_restarts_ms, a.gave_up), (3, vec![5], true));
        store.put_state("k", "{}").expect("put");
        assert_eq!(store.get_state("k").expect("get").as_deref(), Some("{}"));
        let id = store.enqueue(&Notification::test("f@1/firing", b"{}")).expect("enqueue");
        assert_eq!(store.due(i64::MAX, 8).expect("due").iter().map(|e| e.id).collect::<Vec<_>>(), vec![id]);
        store.retry_later(id, 42, "down").expect("retry");
        assert_eq!(store.outbox_status().expect("status"), (1, Some(42)));
        store.delivered(id).expect("delivered");
        assert_eq!(store.outbox_status().expect("status"), (0, None));
        let e = store.append_event("a", "restart", "pid 1").expect("event");
        assert_eq!(store.events(Some("a"), 10).expect("events"), vec![e]);
    }
}
