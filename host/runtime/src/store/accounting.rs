//! Living with a store that stops accepting writes (a full disk, a read-only file): [`Accounted`] wraps any
//! [`StateStore`], counts failed writes in `aegis_storage_errors_total{operation}`, logs the first failure of a streak
//! at error level and the rest at debug (a store failing every write would otherwise flood the log), keeps in memory
//! what could not be written, and when the store accepts writes again writes it and records one `storage-error`
//! event saying what happened. Must not decide anything about supervision: callers still get every error and carry
//! on as before.
//!
//! Two kinds of writes are kept. One that replaces what was there (a breaker snapshot, a restart book, a named
//! state) is kept as its latest value only. One that adds a row (an event, an outbox notification) is kept whole,
//! in order, with the time it happened, and written with that time: a fired alert whose notification could not be
//! queued is still delivered once the store is back, and before any notification queued after it (a receiver sees
//! an alert's firing before its resolution). While added rows wait, new ones wait behind them rather than overtake.
//! At most [`MAX_KEPT`] of each wait; beyond that the oldest is dropped and counted in
//! `aegis_storage_dropped_total{kind}` and in the `storage-error` event. What is kept lives in memory only: a crash
//! during the outage loses it (the alert book, saved after queueing, is then re-read as it was and re-fires).
//!
//! Catching up needs a write to succeed, and a quiet host writes rarely; so while a streak lasts, every write first
//! tries to write what is kept, and every read (the alert outbox reads every second) does so at most every
//! [`RETRY_EVERY`] (with nothing kept, a one-row write to the named state `aegis.storage-probe` asks whether the
//! store is back).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aegis_core::Snapshot;
use prometheus::IntCounterVec;

use super::{Event, NO_SERVICE, Notification, OutboxEntry, ServiceState, StateStore, StoreError};

/// The named state written to learn whether a failing store accepts writes again.
const PROBE_KEY: &str = "aegis.storage-probe";

/// How often kept writes are retried from reads while the store fails.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

/// How many events, and how many outbox notifications, wait in memory for the store at most.
pub const MAX_KEPT: usize = 10_000;

/// A write that replaces what was there: only the latest of each needs writing once the store is back.
#[derive(Clone, Debug, PartialEq)]
enum Kept {
    Breaker(Snapshot),
    Restarts { total: u64, recent_ms: Vec<i64>, gave_up: bool },
    State(String),
}

/// An event that could not be appended.
#[derive(Clone, Debug)]
struct KeptEvent {
    at_ms: i64,
    service: String,
    kind: String,
    message: String,
}

/// A notification that could not be queued.
#[derive(Clone, Debug)]
struct KeptNotice {
    created_ms: i64,
    notification: Notification,
}

/// Rows waiting in order, at most [`MAX_KEPT`]; the oldest are dropped beyond that.
#[derive(Debug)]
struct Queue<T> {
    rows: VecDeque<T>,
    dropped: u64,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue { rows: VecDeque::new(), dropped: 0 }
    }
}

impl<T> Queue<T> {
    /// Keeps `row`; true when the oldest had to be dropped for it.
    fn push(&mut self, row: T) -> bool {
        let full = self.rows.len() >= MAX_KEPT;
        if full {
            self.rows.pop_front();
            self.dropped += 1;
        }
        self.rows.push_back(row);
        full
    }
}

/// The current streak of failed writes.
#[derive(Debug)]
struct Streak {
    first_error: String,
    started_ms: i64,
    failures: u64,
    /// Keyed by (operation, service or state key).
    kept: BTreeMap<(&'static str, String), Kept>,
    events: Queue<KeptEvent>,
    outbox: Queue<KeptNotice>,
    /// Rows written from the queues so far.
    caught_up_events: u64,
    caught_up_outbox: u64,
    last_retry: Instant,
}

/// Why kept writes are tried now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retry {
    /// Before a read: at most every [`RETRY_EVERY`]; with nothing kept, a probe write asks whether the store is back.
    Read,
    /// Before a write: with nothing kept, the write itself tells.
    Write,
    /// After a write succeeded: the store is back; with nothing kept, the streak ends.
    Succeeded,
}

/// A [`StateStore`] whose write failures are counted, logged once per streak, and caught up on.
#[derive(Debug)]
pub struct Accounted {
    inner: Arc<dyn StateStore>,
    errors: IntCounterVec,
    dropped: IntCounterVec,
    streak: Mutex<Option<Streak>>,
    /// Held while kept writes are written, so that two callers never write the same row twice.
    catching_up: Mutex<()>,
}

impl Accounted {
    /// Wraps `inner`; failed writes count in `errors` (labels: `operation`), kept rows dropped for room in
    /// `dropped` (labels: `kind`, `event` or `notification`).
    pub fn new(inner: Arc<dyn StateStore>, errors: IntCounterVec, dropped: IntCounterVec) -> Accounted {
        Accounted { inner, errors, dropped, streak: Mutex::new(None), catching_up: Mutex::new(()) }
    }

    fn streak(&self) -> MutexGuard<'_, Option<Streak>> {
        self.streak.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a failed write of `operation` and opens a streak if none is open; returns the streak to keep in.
    fn failed<'a>(
        &self,
        streak: &'a mut MutexGuard<'_, Option<Streak>>,
        operation: &'static str,
        e: &StoreError,
    ) -> &'a mut Streak {
        self.errors.with_label_values(&[operation]).inc();
        let streak = streak.get_or_insert_with(|| {
            tracing::error!(
                operation,
                "the state database does not accept writes: {e}; supervision goes on, and what could not be \
                 written is written when it does (further failures are logged at debug level)"
            );
            Streak {
                first_error: e.to_string(),
                started_ms: crate::unix_ms_i64(),
                failures: 0,
                kept: BTreeMap::new(),
                events: Queue::default(),
                outbox: Queue::default(),
                caught_up_events: 0,
                caught_up_outbox: 0,
                last_retry: Instant::now(),
            }
        });
        streak.failures += 1;
        tracing::debug!(operation, failures = streak.failures, "state database write failed: {e}");
        streak
    }

    /// Notes the outcome of a write of `operation`; `keep` is what to write again once the store is back.
    fn account<T>(
        &self,
        operation: &'static str,
        result: Result<T, StoreError>,
        keep: impl FnOnce() -> (String, Kept),
    ) -> Result<T, StoreError> {
        match &result {
            Ok(_) => self.catch_up(),
            Err(e) => {
                let (key, kept) = keep();
                self.failed(&mut self.streak(), operation, e).kept.insert((operation, key), kept);
            }
        }
        result
    }

    /// Writes a row through `write` unless rows of its kind wait (then it waits behind them); a failed row is kept
    /// by `keep`. `waiting` says how many rows of the kind wait in a streak.
    fn add_row<T>(
        &self,
        operation: &'static str,
        waiting: impl Fn(&Streak) -> usize,
        write: impl FnOnce() -> Result<T, StoreError>,
        keep: impl FnOnce(&mut Streak) -> bool,
    ) -> Result<T, StoreError> {
        self.retry_kept(Retry::Write);
        {
            let mut streak = self.streak();
            if let Some(s) = streak.as_mut().filter(|s| waiting(s) > 0) {
                let behind = waiting(s);
                let e = StoreError::Kept { behind };
                s.failures += 1;
                self.errors.with_label_values(&[operation]).inc();
                if keep(s) {
                    self.dropped.with_label_values(&[kind_of(operation)]).inc();
                }
                return Err(e);
            }
        }
        let result = write();
        match &result {
            Ok(_) => self.catch_up(),
            Err(e) => {
                let mut streak = self.streak();
                if keep(self.failed(&mut streak, operation, e)) {
                    self.dropped.with_label_values(&[kind_of(operation)]).inc();
                }
            }
        }
        result
    }

    /// A write succeeded: if a streak is open, write what is kept now (a write was accepted, the rest may be).
    fn catch_up(&self) {
        if self.streak().is_some() {
            self.retry_kept(Retry::Succeeded);
        }
    }

    /// While a streak lasts, writes what is kept (see [`Retry`]); the streak ends when all of it is written.
    fn retry_kept(&self, why: Retry) {
        {
            let mut streak = self.streak();
            let Some(s) = streak.as_mut() else { return };
            if why == Retry::Read && s.last_retry.elapsed() < RETRY_EVERY {
                return;
            }
            s.last_retry = Instant::now();
        }
        // Another caller is writing the kept rows: it ends the streak, or this caller's own write is kept behind.
        let Ok(_writing) = self.catching_up.try_lock() else { return };
        let nothing_kept = self
            .streak()
            .as_ref()
            .is_none_or(|s| s.kept.is_empty() && s.events.rows.is_empty() && s.outbox.rows.is_empty());
        if nothing_kept {
            match why {
                Retry::Write => return,
                // Nothing to write: a harmless write of its own tells whether the store is back.
                Retry::Read if self.inner.put_state(PROBE_KEY, "{}").is_err() => return,
                Retry::Read | Retry::Succeeded => {}
            }
        } else if self.write_kept().is_err() {
            return;
        }
        let ended = self.streak().take();
        if let Some(streak) = ended {
            self.recovered(streak);
        }
    }

    /// Writes the kept values, then the kept notifications and events in order, each removed once written; stops
    /// at the first failure.
    fn write_kept(&self) -> Result<(), StoreError> {
        let kept = self.streak().as_ref().map(|s| s.kept.clone()).unwrap_or_default();
        for ((operation, key), value) in kept {
            match &value {
                Kept::Breaker(snapshot) => self.inner.save_breaker(&key, snapshot),
                Kept::Restarts { total, recent_ms, gave_up } => {
                    self.inner.save_restarts(&key, *total, recent_ms, *gave_up)
                }
                Kept::State(json) => self.inner.put_state(&key, json),
            }
            .inspect_err(|e| tracing::debug!(operation, "state database still refuses writes: {e}"))?;
            if let Some(s) = self.streak().as_mut() {
                // A newer value kept meanwhile stays, to be written next.
                if s.kept.get(&(operation, key.clone())).is_some_and(|now| *now == value) {
                    s.kept.remove(&(operation, key));
                }
            }
        }
        loop {
            // Taken in a statement of its own: the guard must not live through the write.
            let front = self.streak().as_ref().and_then(|s| s.outbox.rows.front().cloned());
            let Some(n) = front else { break };
            self.inner
                .enqueue_at(n.created_ms, &n.notification)
                .inspect_err(|e| tracing::debug!("state database still refuses notifications: {e}"))?;
            if let Some(s) = self.streak().as_mut() {
                s.outbox.rows.pop_front();
                s.caught_up_outbox += 1;
            }
        }
        loop {
            let front = self.streak().as_ref().and_then(|s| s.events.rows.front().cloned());
            let Some(e) = front else { break };
            self.inner
                .append_event_at(e.at_ms, &e.service, &e.kind, &e.message)
                .inspect_err(|e| tracing::debug!("state database still refuses events: {e}"))?;
            if let Some(s) = self.streak().as_mut() {
                s.events.rows.pop_front();
                s.caught_up_events += 1;
            }
        }
        Ok(())
    }

    /// The store accepts writes again and what was kept is written: tell.
    fn recovered(&self, streak: Streak) {
        let since = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(streak.started_ms).unwrap_or(0)),
        );
        let mut message = format!(
            "the state database refused {} write(s) from {since} (first: {}); it accepts writes again, and the \
             saved states, {} event(s) and {} notification(s) kept meanwhile were written with their own times",
            streak.failures, streak.first_error, streak.caught_up_events, streak.caught_up_outbox
        );
        if streak.events.dropped + streak.outbox.dropped > 0 {
            message.push_str(&format!(
                "; {} event(s) and {} notification(s) were dropped (more than {MAX_KEPT} waited; they are only in \
                 the log)",
                streak.events.dropped, streak.outbox.dropped
            ));
        }
        tracing::warn!("{message}");
        if let Err(e) = self.inner.append_event(NO_SERVICE, "storage-error", &message) {
            tracing::error!("cannot record the storage-error event: {e}");
        }
    }
}

/// The `kind` label of `aegis_storage_dropped_total` for a row-adding operation.
fn kind_of(operation: &str) -> &'static str {
    if operation == "enqueue" { "notification" } else { "event" }
}

impl StateStore for Accounted {
    fn save_breaker(&self, service: &str, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.retry_kept(Retry::Write);
        let result = self.inner.save_breaker(service, snapshot);
        self.account("save_breaker", result, || (service.to_owned(), Kept::Breaker(snapshot.clone())))
    }

    fn save_restarts(&self, service: &str, total: u64, recent_ms: &[i64], gave_up: bool) -> Result<(), StoreError> {
        self.retry_kept(Retry::Write);
        let result = self.inner.save_restarts(service, total, recent_ms, gave_up);
        self.account("save_restarts", result, || {
            (service.to_owned(), Kept::Restarts { total, recent_ms: recent_ms.to_vec(), gave_up })
        })
    }

    fn load(&self, service: &str) -> Result<ServiceState, StoreError> {
        self.retry_kept(Retry::Read);
        self.inner.load(service)
    }

    fn enqueue_at(&self, created_ms: i64, notification: &Notification) -> Result<i64, StoreError> {
        self.add_row(
            "enqueue",
            |s| s.outbox.rows.len(),
            || self.inner.enqueue_at(created_ms, notification),
            |s| s.outbox.push(KeptNotice { created_ms, notification: notification.clone() }),
        )
    }

    fn due(&self, now_ms: i64, per_target: u32) -> Result<Vec<OutboxEntry>, StoreError> {
        self.retry_kept(Retry::Read);
        self.inner.due(now_ms, per_target)
    }

    // A delivery that cannot be recorded is sent again later (at-least-once): nothing to keep.
    fn delivered(&self, id: i64) -> Result<(), StoreError> {
        self.retry_kept(Retry::Write);
        let result = self.inner.delivered(id);
        if let Err(e) = &result {
            self.failed(&mut self.streak(), "delivered", e);
        } else {
            self.catch_up();
        }
        result
    }

    fn retry_later(&self, id: i64, next_attempt_ms: i64, error: &str) -> Result<(), StoreError> {
        self.retry_kept(Retry::Write);
        let result = self.inner.retry_later(id, next_attempt_ms, error);
        if let Err(e) = &result {
            self.failed(&mut self.streak(), "retry_later", e);
        } else {
            self.catch_up();
        }
        result
    }

    fn outbox_status(&self) -> Result<(u64, Option<i64>), StoreError> {
        self.retry_kept(Retry::Read);
        self.inner.outbox_status()
    }

    fn put_state(&self, key: &str, json: &str) -> Result<(), StoreError> {
        self.retry_kept(Retry::Write);
        let result = self.inner.put_state(key, json);
        self.account("put_state", result, || (key.to_owned(), Kept::State(json.to_owned())))
    }

    fn get_state(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.retry_kept(Retry::Read);
        self.inner.get_state(key)
    }

    fn append_event_at(&self, at_ms: i64, service: &str, kind: &str, message: &str) -> Result<Event, StoreError> {
        self.add_row(
            "append_event",
            |s| s.events.rows.len(),
            || self.inner.append_event_at(at_ms, service, kind, message),
            |s| {
                s.events.push(KeptEvent {
                    at_ms,
                    service: service.to_owned(),
                    kind: kind.to_owned(),
                    message: message.to_owned(),
                })
            },
        )
    }

    fn events(&self, service: Option<&str>, limit: u32) -> Result<Vec<Event>, StoreError> {
        self.retry_kept(Retry::Read);
        self.inner.events(service, limit)
    }

    fn events_of_kind(&self, service: Option<&str>, kind: &str, limit: u32) -> Result<Vec<Event>, StoreError> {
        self.retry_kept(Retry::Read);
        self.inner.events_of_kind(service, kind, limit)
    }
}

#[cfg(test)]
mod tests {
    use aegis_core::{Counts, State};
    use prometheus::Opts;

    use super::*;
    use crate::store::{Fault, Store};

    fn accounted(fault: Fault) -> (tempfile::TempDir, Arc<Store>, Accounted, IntCounterVec) {
        let (dir, store, a, errors, _) = accounted_dropping(fault);
        (dir, store, a, errors)
    }

    fn accounted_dropping(fault: Fault) -> (tempfile::TempDir, Arc<Store>, Accounted, IntCounterVec, IntCounterVec) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&dir.path().join("aegis.db")).expect("open"));
        store.append_event("a", "restart", "before").expect("writable at first");
        store.inject_fault(fault, Duration::from_secs(3600)).expect("fault");
        let errors = IntCounterVec::new(Opts::new("e", "e"), &["operation"]).expect("metric");
        let dropped = IntCounterVec::new(Opts::new("d", "d"), &["kind"]).expect("metric");
        let a = Accounted::new(Arc::clone(&store) as Arc<dyn StateStore>, errors.clone(), dropped.clone());
        (dir, store, a, errors, dropped)
    }

    fn storage_events(a: &Accounted) -> Vec<Event> {
        a.events(None, 100).expect("events").into_iter().filter(|e| e.kind == "storage-error").collect()
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
            storage[0].message.contains("refused 4 write(s)") && storage[0].message.contains("1 event(s)"),
            "{storage:?}"
        );
        assert_eq!(events.iter().filter(|e| e.kind == "breaker-opened").count(), 1, "the kept event: {events:?}");
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

    #[test]
    fn refused_events_and_notifications_are_written_in_order_with_their_own_times() {
        let (_dir, store, a, errors) = accounted(Fault::ReadOnly);
        let t0 = crate::unix_ms_i64() - 60_000;
        let firing = a.enqueue_at(t0, &Notification::test("f@1/firing", b"1"));
        assert!(firing.expect_err("read-only").to_string().contains("readonly"));
        a.append_event_at(t0 + 1, "a", "breaker-opened", "one").expect_err("read-only");
        lift(&store);
        // The store is back, but a notification queued now must not overtake the kept one: it is written behind it.
        a.enqueue_at(t0 + 2, &Notification::test("f@1/resolved", b"2")).expect("written, after the kept one");
        assert_eq!(errors.with_label_values(&["enqueue"]).get(), 1);
        let due = a.due(i64::MAX, 8).expect("due");
        assert_eq!(due.len(), 1, "one alert's head at a time: {due:?}");
        assert_eq!((due[0].idempotency_key.as_str(), due[0].created_ms), ("f@1/firing", t0));
        a.delivered(due[0].id).expect("delivered");
        let due = a.due(i64::MAX, 8).expect("due");
        assert_eq!((due[0].idempotency_key.as_str(), due[0].created_ms), ("f@1/resolved", t0 + 2));
        let events = a.events(Some("a"), 10).expect("events");
        let kept = events.iter().find(|e| e.message == "one").expect("the kept event");
        assert_eq!(kept.at_ms, t0 + 1, "written with the time it happened");
        let storage = storage_events(&a);
        assert!(storage[0].message.contains("1 event(s) and 1 notification(s) kept"), "{storage:?}");
    }

    #[test]
    fn rows_refused_while_others_wait_are_kept_behind_them() {
        let (_dir, store, a, errors) = accounted(Fault::ReadOnly);
        a.enqueue(&Notification::test("k@1/firing", b"1")).expect_err("read-only");
        let behind = a.enqueue(&Notification::test("k@1/resolved", b"2"));
        assert!(matches!(behind, Err(StoreError::Kept { behind: 1 })), "{behind:?}");
        assert_eq!(errors.with_label_values(&["enqueue"]).get(), 2);
        lift(&store);
        a.streak().as_mut().expect("streak").last_retry -= RETRY_EVERY;
        assert_eq!(a.outbox_status().expect("status").0, 2, "both written by the retry of a read");
        let mut keys = Vec::new();
        while let Some(head) = a.due(i64::MAX, 8).expect("due").pop() {
            a.delivered(head.id).expect("delivered");
            keys.push(head.notification.idempotency_key);
        }
        assert_eq!(keys, ["k@1/firing", "k@1/resolved"]);
    }

    #[test]
    fn beyond_the_bound_the_oldest_rows_are_dropped_and_counted() {
        let (_dir, store, a, _errors, dropped) = accounted_dropping(Fault::ReadOnly);
        for i in 0..MAX_KEPT + 3 {
            a.append_event("a", "log-match", &format!("line {i}")).expect_err("read-only");
        }
        for i in 0..MAX_KEPT + 2 {
            a.enqueue(&Notification::test(&format!("n{i}@1/firing"), b"x")).expect_err("kept");
        }
        assert_eq!(dropped.with_label_values(&["event"]).get(), 3);
        assert_eq!(dropped.with_label_values(&["notification"]).get(), 2);
        lift(&store);
        a.put_state("x", "{}").expect("writable again");
        let newest = a.events(Some("a"), u32::try_from(MAX_KEPT).expect("fits")).expect("events");
        assert_eq!(newest.first().map(|e| e.message.as_str()), Some(format!("line {}", MAX_KEPT + 2).as_str()));
        assert_eq!(newest.last().map(|e| e.message.as_str()), Some("line 3"), "the three oldest were dropped");
        assert_eq!(a.outbox_status().expect("status").0, MAX_KEPT as u64);
        let storage = storage_events(&a);
        assert!(storage[0].message.contains("3 event(s) and 2 notification(s) were dropped"), "{storage:?}");
    }
}
