//! Living with a store that stops accepting writes (a full disk, a read-only file): [`Accounted`] wraps any
//! [`StateStore`], counts failed writes in `aegis_storage_errors_total{operation}`, logs the first failure of a streak
//! at error level and the rest at debug (a store failing every write would otherwise flood the log), keeps the latest
//! breaker snapshot, restart book and named state that could not be written, and when the store accepts writes again
//! writes those and records one `storage-error` event saying what happened. Must not decide anything about
//! supervision: callers still get every error and carry on as before.
//!
//! Catching up needs a write to succeed, and a quiet host writes rarely; so while a streak lasts, any call (reads
//! included — the alert outbox reads every second) first retries the kept writes, at most every [`RETRY_EVERY`]
//! (with none kept, a one-row write to the named state `aegis.storage-probe` asks whether the store is back).
//! Events and outbox entries that failed are not kept: an event's time is when it happened, and the `storage-error`
//! event counts them instead.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aegis_core::Snapshot;
use prometheus::IntCounterVec;

use super::{Event, NO_SERVICE, OutboxEntry, ServiceState, StateStore, StoreError};

/// The named state written to learn whether a failing store accepts writes again.
const PROBE_KEY: &str = "aegis.storage-probe";

/// How often kept writes are retried while the store fails.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

/// A write that replaces what was there: only the latest of each needs writing once the store is back.
#[derive(Clone, Debug)]
enum Kept {
    Breaker(Snapshot),
    Restarts { total: u64, recent_ms: Vec<i64>, gave_up: bool },
    State(String),
}

/// The current streak of failed writes.
#[derive(Debug)]
struct Streak {
    first_error: String,
    started: std::time::SystemTime,
    failures: u64,
    /// Keyed by (operation, service or state key).
    kept: BTreeMap<(&'static str, String), Kept>,
    last_retry: Instant,
}

/// A [`StateStore`] whose write failures are counted, logged once per streak, and caught up on.
#[derive(Debug)]
pub struct Accounted {
    inner: Arc<dyn StateStore>,
    errors: IntCounterVec,
    streak: Mutex<Option<Streak>>,
}

impl Accounted {
    /// Wraps `inner`; failed writes count in `errors` (labels: `operation`).
    pub fn new(inner: Arc<dyn StateStore>, errors: IntCounterVec) -> Accounted {
        Accounted { inner, errors, streak: Mutex::new(None) }
    }

    fn streak(&self) -> MutexGuard<'_, Option<Streak>> {
        self.streak.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes the outcome of a write of `operation`; `keep` is what to write again once the store is back.
    fn account<T>(
        &self,
        operation: &'static str,
        result: Result<T, StoreError>,
        keep: impl FnOnce() -> Option<(String, Kept)>,
    ) -> Result<T, StoreError> {
        match &result {
            Ok(_) => {
                let ended = self.streak().take();
                if let Some(streak) = ended {
                    self.recovered(streak);
                }
            }
            Err(e) => {
                self.errors.with_label_values(&[operation]).inc();
                let mut streak = self.streak();
                let streak = streak.get_or_insert_with(|| {
                    tracing::error!(
                        operation,
                        "the state database does not accept writes: {e}; supervision goes on, and what could not \
                         be written is written when it does (further failures are logged at debug level)"
                    );
                    Streak {
                        first_error: e.to_string(),
                        started: std::time::SystemTime::now(),
                        failures: 0,
                        kept: BTreeMap::new(),
                        last_retry: Instant::now(),
                    }
                });
                streak.failures += 1;
                if let Some((key, kept)) = keep() {
                    streak.kept.insert((operation, key), kept);
                }
                tracing::debug!(operation, failures = streak.failures, "state database write failed: {e}");
            }
        }
        result
    }

    /// While a streak lasts, retries the kept writes (at most every [`RETRY_EVERY`]); the streak ends when they
    /// all succeed.
    fn retry_kept(&self) {
        let kept = {
            let mut streak = self.streak();
            let Some(s) = streak.as_mut() else { return };
            if s.last_retry.elapsed() < RETRY_EVERY {
                return;
            }
            s.last_retry = Instant::now();
            s.kept.clone()
        };
        if kept.is_empty() {
            // Nothing to write: a harmless write of its own tells whether the store is back.
            let probe = self.inner.put_state(PROBE_KEY, "{}");
            if probe.is_ok()
                && let Some(streak) = self.streak().take()
            {
                self.recovered(streak);
            }
            return;
        }
        for ((operation, key), value) in kept {
            if self.write_kept(operation, &key, &value).is_err() {
                return;
            }
            if let Some(s) = self.streak().as_mut() {
                s.kept.remove(&(operation, key));
            }
        }
        let ended = self.streak().take();
        if let Some(streak) = ended {
            self.recovered(streak);
        }
    }

    fn write_kept(&self, operation: &'static str, key: &str, value: &Kept) -> Result<(), StoreError> {
        match value {
            Kept::Breaker(snapshot) => self.inner.save_breaker(key, snapshot),
            Kept::Restarts { total, recent_ms, gave_up } => self.inner.save_restarts(key, *total, recent_ms, *gave_up),
            Kept::State(json) => self.inner.put_state(key, json),
        }
        .inspect_err(|e| tracing::debug!(operation, "state database still refuses writes: {e}"))
    }

    /// The store accepts writes again: write what was kept, and tell.
    fn recovered(&self, streak: Streak) {
        let mut caught_up = 0;
        for ((operation, key), value) in &streak.kept {
            if self.write_kept(operation, key, value).is_ok() {
                caught_up += 1;
            }
        }
        let since = humantime::format_rfc3339_seconds(streak.started);
        let message = format!(
            "the state database refused {} write(s) from {since} (first: {}); it accepts writes again, and {caught_up} \
             saved state(s) were written; events from that time are only in the log",
            streak.failures, streak.first_error
        );
        tracing::warn!("{message}");
        if let Err(e) = self.inner.append_event(NO_SERVICE, "storage-error", &message) {
            tracing::error!("cannot record the storage-error event: {e}");
        }
    }
}

impl StateStore for Accounted {
    fn save_breaker(&self, service: &str, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.retry_kept();
        let result = self.inner.save_breaker(service, snapshot);
        self.account("save_breaker", result, || Some((service.to_owned(), Kept::Breaker(snapshot.clone()))))
    }

    fn save_restarts(&self, service: &str, total: u64, recent_ms: &[i64], gave_up: bool) -> Result<(), StoreError> {
        self.retry_kept();
        let result = self.inner.save_restarts(service, total, recent_ms, gave_up);
        self.account("save_restarts", result, || {
            Some((service.to_owned(), Kept::Restarts { total, recent_ms: recent_ms.to_vec(), gave_up }))
        })
    }

    fn load(&self, service: &str) -> Result<ServiceState, StoreError> {
        self.retry_kept();
        self.inner.load(service)
    }

    fn enqueue(
        &self,
        idempotency_key: &str,
        target: &str,
        content_type: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<i64, StoreError> {
        self.retry_kept();
        let result = self.inner.enqueue(idempotency_key, target, content_type, headers, body);
        self.account("enqueue", result, || None)
    }

    fn due(&self, now_ms: i64, per_target: u32) -> Result<Vec<OutboxEntry>, StoreError> {
        self.retry_kept();
        self.inner.due(now_ms, per_target)
    }

    fn delivered(&self, id: i64) -> Result<(), StoreError> {
        self.retry_kept();
        let result = self.inner.delivered(id);
        self.account("delivered", result, || None)
    }

    fn retry_later(&self, id: i64, next_attempt_ms: i64, error: &str) -> Result<(), StoreError> {
        self.retry_kept();
        let result = self.inner.retry_later(id, next_attempt_ms, error);
        self.account("retry_later", result, || None)
    }

    fn outbox_status(&self) -> Result<(u64, Option<i64>), StoreError> {
        self.retry_kept();
        self.inner.outbox_status()
    }

    fn put_state(&self, key: &str, json: &str) -> Result<(), StoreError> {
        self.retry_kept();
        let result = self.inner.put_state(key, json);
        self.account("put_state", result, || Some((key.to_owned(), Kept::State(json.to_owned()))))
    }

    fn get_state(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.retry_kept();
        self.inner.get_state(key)
    }

    fn append_event(&self, service: &str, kind: &str, message: &str) -> Result<Event, StoreError> {
        self.retry_kept();
        let result = self.inner.append_event(service, kind, message);
        self.account("append_event", result, || None)
    }

    fn events(&self, service: Option<&str>, limit: u32) -> Result<Vec<Event>, StoreError> {
        self.retry_kept();
        self.inner.events(service, limit)
    }
}

#[cfg(test)]
mod tests {
    use aegis_core::{Counts, State};
    use prometheus::Opts;

    use super::*;
    use crate::store::{Fault, Store};

    fn accounted(fault: Fault) -> (tempfile::TempDir, Arc<Store>, Accounted, IntCounterVec) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&dir.path().join("aegis.db")).expect("open"));
        store.append_event("a", "restart", "before").expect("writable at first");
        store.inject_fault(fault, Duration::from_secs(3600)).expect("fault");
        let errors = IntCounterVec::new(Opts::new("e", "e"), &["operation"]).expect("metric");
        let a = Accounted::new(Arc::clone(&store) as Arc<dyn StateStore>, errors.clone());
        (dir, store, a, errors)
    }

    fn open(state: State) -> Snapshot {
        Snapshot { state, counts: Counts::default(), open_remaining: None }
    }

    /// Lifts the injected fault: a zero-length fault replaces it and lifts at the next call.
    fn lift(store: &Store) {
        store.inject_fault(Fault::ReadOnly, Duration::ZERO).expect("lift");
    }

    #[test]
    fn a_read_only_store_counts_failures_keeps_the_latest_state_and_catches_up() {
        let (_dir, store, a, errors) = accounted(Fault::ReadOnly);
        assert!(a.save_breaker("a", &open(State::Open)).is_err());
        assert!(a.save_breaker("a", &open(State::ForcedOpen)).is_err());
        assert!(a.append_event("a", "breaker-opened", "x").expect_err("read-only").to_string().contains("readonly"));
        assert!(a.put_state("book", "{\"n\":1}").is_err());
        assert_eq!(errors.with_label_values(&["save_breaker"]).get(), 2);
        assert_eq!(errors.with_label_values(&["append_event"]).get(), 1);
        assert_eq!(a.load("a").expect("reads work").breaker, None, "nothing was written");

        lift(&store);
        // The next write succeeds; the kept ones are written, and the streak is told once.
        a.save_restarts("b", 1, &[], false).expect("writable again");
        assert_eq!(a.load("a").expect("load").breaker.map(|s| s.state), Some(State::ForcedOpen), "the latest kept");
        assert_eq!(a.get_state("book").expect("get").as_deref(), Some("{\"n\":1}"));
        let events = a.events(None, 10).expect("events");
        let storage: Vec<&Event> = events.iter().filter(|e| e.kind == "storage-error").collect();
        assert_eq!(storage.len(), 1, "{events:?}");
        assert_eq!(storage[0].service, NO_SERVICE);
        assert!(
            storage[0].message.contains("refused 4 write(s)") && storage[0].message.contains("2 saved"),
            "{storage:?}"
        );
        a.append_event("a", "restart", "after").expect("writable");
        assert_eq!(a.events(None, 10).expect("events").iter().filter(|e| e.kind == "storage-error").count(), 1);
    }

    #[test]
    fn a_full_store_fails_with_sqlite_full_and_recovers_through_reads() {
        let (_dir, store, a, errors) = accounted(Fault::Full);
        // The pages in use may still have room for a few rows: write until the store is full.
        let mut refused = None;
        for i in 0..10_000 {
            if let Err(e) = a.append_event("a", "log-match", &format!("{i}: {}", "x".repeat(200))) {
                refused = Some(e.to_string());
                break;
            }
        }
        let refused = refused.expect("the store fills up");
        assert!(refused.contains("full"), "{refused}");
        assert_eq!(errors.with_label_values(&["append_event"]).get(), 1);
        lift(&store);
        // A quiet host only reads: the retry on a read catches up once RETRY_EVERY has passed.
        a.streak().as_mut().expect("streak").last_retry -= RETRY_EVERY;
        a.events(None, 1).expect("read");
        assert!(a.streak().is_none(), "caught up");
        assert_eq!(a.events(None, 1).expect("events")[0].kind, "storage-error");
    }
}
