//! The embedded store: one SQLite file holding breaker snapshots (forced states included), restart counters, the
//! event history, the alert outbox and named state, so all of them survive a restart of aegis-host. The local
//! backend of [`super::StateStore`]; it knows nothing of the runtime that uses it.
//!
//! Writes are small and rare (state changes, restarts, events), so a mutex around one connection in WAL mode is
//! enough; the busy timeout turns a briefly locked file into a short wait and a long lock into a clear error.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, UNIX_EPOCH};

use aegis_core::Snapshot;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Event, Notification, OutboxEntry, ServiceState, StoreError};
use crate::unix_ms_i64;

/// Debug builds only: `full:<duration>` or `read-only:<duration>` makes the store's writes fail for that long after
/// it opens (see [`Store::inject_fault`]). For end-to-end tests; release builds ignore it.
pub const FAULT_ENV: &str = "AEGIS_TEST_STORE_FAULT";

/// A way for writes to fail, injected by tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The disk is full: SQLITE_FULL.
    Full,
    /// The file cannot be written: SQLITE_READONLY.
    ReadOnly,
}

impl Fault {
    #[cfg(debug_assertions)]
    fn from_env() -> Option<(Fault, Duration)> {
        let raw = std::env::var(FAULT_ENV).ok()?;
        let parsed = raw.split_once(':').and_then(|(kind, lasting)| {
            let fault = match kind {
                "full" => Fault::Full,
                "read-only" => Fault::ReadOnly,
                _ => return None,
            };
            Some((fault, humantime::parse_duration(lasting).ok()?))
        });
        if parsed.is_none() {
            tracing::warn!("{FAULT_ENV}={raw:?} ignored: expected full:<duration> or read-only:<duration>");
        }
        parsed
    }
}

/// Events older than the newest this many are pruned.
const MAX_EVENTS: i64 = 10_000;

#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// When an injected [`Fault`] lifts (tests only; see [`Store::inject_fault`]).
    fault_until: Mutex<Option<Instant>>,
}

fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

impl Store {
    /// Opens (creating if needed) the database at `path`. A file that is not an Aegis database, is corrupt or stays
    /// locked is an error naming the file.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |message: String| StoreError::Open { path: path.to_owned(), message };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(format!("cannot create {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path).map_err(|e| open_err(e.to_string()))?;
        conn.busy_timeout(Duration::from_secs(2)).map_err(|e| open_err(e.to_string()))?;
        let setup = "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS breakers (
                 service TEXT PRIMARY KEY,
                 snapshot TEXT NOT NULL,
                 updated_ms INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS restarts (
                 service TEXT PRIMARY KEY,
                 total INTEGER NOT NULL,
                 recent TEXT NOT NULL,
                 gave_up INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS events (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 at_ms INTEGER NOT NULL,
                 service TEXT NOT NULL,
                 kind TEXT NOT NULL,
                 message TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS events_by_service ON events (service, id);
             CREATE TABLE IF NOT EXISTS outbox (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 idempotency_key TEXT NOT NULL,
                 target TEXT NOT NULL,
                 content_type TEXT NOT NULL,
                 headers TEXT NOT NULL,
                 body BLOB NOT NULL,
                 created_ms INTEGER NOT NULL,
                 attempts INTEGER NOT NULL DEFAULT 0,
                 next_attempt_ms INTEGER NOT NULL,
                 last_error TEXT,
                 service TEXT NOT NULL DEFAULT '');
             CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_attempt_ms);
             CREATE INDEX IF NOT EXISTS outbox_by_target ON outbox (target, id);
             CREATE TABLE IF NOT EXISTS state (
                 key TEXT PRIMARY KEY,
                 value TEXT NOT NULL);";
        conn.execute_batch(setup).map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
                open_err(format!("not an Aegis database, or corrupt ({e}); move it away to start with a fresh one"))
            }
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                open_err(format!("locked by another process ({e}); is another aegis-host using it?"))
            }
            _ => open_err(e.to_string()),
        })?;
        // Databases written before notifications carried their service (cluster mode delivers by it).
        let has_service: bool = conn
            .query_row("SELECT COUNT(*) > 0 FROM pragma_table_info('outbox') WHERE name = 'service'", [], |r| r.get(0))
            .map_err(|e| open_err(e.to_string()))?;
        if !has_service {
            conn.execute_batch("ALTER TABLE outbox ADD COLUMN service TEXT NOT NULL DEFAULT ''")
                .map_err(|e| open_err(format!("cannot add the outbox's service column: {e}")))?;
        }
        let integrity: String = conn
            .query_row("PRAGMA quick_check", [], |row| row.get(0))
            .map_err(|e| open_err(format!("integrity check failed: {e}")))?;
        if integrity != "ok" {
            return Err(open_err(format!("corrupt: {integrity}")));
        }
        let store = Store { path: path.to_owned(), conn: Mutex::new(conn), fault_until: Mutex::new(None) };
        #[cfg(debug_assertions)]
        if let Some((fault, lasting)) = Fault::from_env() {
            store.inject_fault(fault, lasting).map_err(|e| open_err(format!("{FAULT_ENV}: {e}")))?;
        }
        Ok(store)
    }

    /// Makes writes fail as they do on a full disk or a read-only file, for `lasting`; then they work again. For
    /// tests of how the runtime lives with an unwritable database: nothing else calls it, and the
    /// [`FAULT_ENV`] variable that reaches it from outside is read by debug builds only.
    #[doc(hidden)]
    pub fn inject_fault(&self, fault: Fault, lasting: Duration) -> Result<(), StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        match fault {
            // SQLite's own limit on the file's pages: once the pages in use are full, writes fail with
            // SQLITE_FULL ("database or disk is full"), exactly as on a full disk.
            Fault::Full => {
                let pages: i64 =
                    conn.query_row("PRAGMA page_count", [], |r| r.get(0)).map_err(|e| self.query_err(e))?;
                conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
                    .map_err(|e| self.query_err(e))?;
            }
            Fault::ReadOnly => conn.execute_batch("PRAGMA query_only = ON").map_err(|e| self.query_err(e))?,
        }
        *self.fault_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + lasting);
        Ok(())
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut fault = self.fault_until.lock().unwrap_or_else(|p| p.into_inner());
        if fault.is_some_and(|until| Instant::now() >= until) {
            *fault = None;
            // SQLite's default page limit; both pragmas are per connection and this is the only one.
            let lifted = conn.query_row("PRAGMA max_page_count = 4294967294", [], |_| Ok(()));
            if let Err(e) = lifted.and_then(|()| conn.execute_batch("PRAGMA query_only = OFF")) {
                tracing::warn!("cannot lift the injected store fault: {e}");
            }
        }
        conn
    }

    fn query_err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Query { path: self.path.clone(), message: e.to_string() }
    }

    pub fn save_breaker(&self, service: &str, snapshot: &Snapshot) -> Result<(), StoreError> {
        let json = serde_json::to_string(snapshot).map_err(|e| self.query_err(e))?;
        self.conn()
            .execute(
                "INSERT INTO breakers (service, snapshot, updated_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(service) DO UPDATE SET snapshot = excluded.snapshot, updated_ms = excluded.updated_ms",
                params![service, json, unix_ms_i64()],
            )
            .map_err(|e| self.query_err(e))?;
        Ok(())
    }

    pub fn save_restarts(&self, service: &str, total: u64, recent_ms: &[i64], gave_up: bool) -> Result<(), StoreError> {
        let recent = serde_json::to_string(recent_ms).map_err(|e| self.query_err(e))?;
        self.conn()
            .execute(
                "INSERT INTO restarts (service, total, recent, gave_up) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(service) DO UPDATE SET total = excluded.total, recent = excluded.recent,
                     gave_up = excluded.gave_up",
                params![service, i64::try_from(total).unwrap_or(i64::MAX), recent, gave_up],
            )
            .map_err(|e| self.query_err(e))?;
        Ok(())
    }

    /// What was saved about `service`; a snapshot that no longer parses is dropped (and logged) rather than fatal.
    pub fn load(&self, service: &str) -> Result<ServiceState, StoreError> {
        let conn = self.conn();
        let snapshot: Option<String> = conn
            .query_row("SELECT snapshot FROM breakers WHERE service = ?1", [service], |r| r.get(0))
            .optional()
            .map_err(|e| self.query_err(e))?;
        let breaker = snapshot.and_then(|json| match serde_json::from_str(&json) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(service, "ignoring unreadable saved breaker state: {e}");
                None
            }
        });
        let restarts: Option<(i64, String, bool)> = conn
            .query_row("SELECT total, recent, gave_up FROM restarts WHERE service = ?1", [service], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
            .map_err(|e| self.query_err(e))?;
        let (total, recent, gave_up) = restarts.unwrap_or((0, "[]".to_owned(), false));
        Ok(ServiceState {
            breaker,
            restarts_total: u64::try_from(total).unwrap_or(0),
            recent_restarts_ms: serde_json::from_str(&recent).unwrap_or_default(),
            gave_up,
        })
    }

    /// Queues a notification for delivery now.
    pub fn enqueue(&self, n: &Notification) -> Result<i64, StoreError> {
        self.enqueue_at(unix_ms_i64(), n)
    }

    /// Queues a notification created at `created_ms`, due from then.
    pub fn enqueue_at(&self, created_ms: i64, n: &Notification) -> Result<i64, StoreError> {
        let headers = serde_json::to_string(&n.headers).map_err(|e| self.query_err(e))?;
        let conn = self.conn();
        conn.execute(
            "INSERT INTO outbox (service, idempotency_key, target, content_type, headers, body, created_ms,
                                 next_attempt_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
            params![n.service, n.idempotency_key, n.target, n.content_type, headers, n.body, created_ms],
        )
        .map_err(|e| self.query_err(e))?;
        Ok(conn.last_insert_rowid())
    }

    /// Notifications due at `now_ms`, oldest first, at most `per_target` for each target. Only the oldest waiting
    /// notification of each alert and target is ever due: a receiver sees an alert's firing before its resolution,
    /// even while the firing one is waiting for a retry. (An alert is its idempotency key up to the `/` that
    /// precedes the status; a key without one is an alert of its own.)
    pub fn due(&self, now_ms: i64, per_target: u32) -> Result<Vec<OutboxEntry>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "WITH heads AS (
                     SELECT MIN(id) AS id FROM outbox
                     GROUP BY target, CASE WHEN instr(idempotency_key, '/') > 0
                         THEN substr(idempotency_key, 1, instr(idempotency_key, '/')) ELSE idempotency_key END),
                 due AS (
                     SELECT o.*, ROW_NUMBER() OVER (PARTITION BY o.target ORDER BY o.id) AS n
                     FROM outbox o JOIN heads USING (id) WHERE o.next_attempt_ms <= ?1)
                 SELECT id, idempotency_key, target, content_type, headers, body, created_ms, attempts, next_attempt_ms,
                        service
                 FROM due WHERE n <= ?2 ORDER BY id",
            )
            .map_err(|e| self.query_err(e))?;
        let rows = stmt
            .query_map(params![now_ms, per_target], |r| {
                let headers: String = r.get(4)?;
                Ok(OutboxEntry {
                    id: r.get(0)?,
                    notification: Notification {
                        service: r.get(9)?,
                        idempotency_key: r.get(1)?,
                        target: r.get(2)?,
                        content_type: r.get(3)?,
                        headers: serde_json::from_str(&headers).unwrap_or_default(),
                        body: r.get(5)?,
                    },
                    created_ms: r.get(6)?,
                    attempts: r.get(7)?,
                    next_attempt_ms: r.get(8)?,
                })
            })
            .map_err(|e| self.query_err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.query_err(e))
    }

    /// The receiver accepted entry `id`.
    pub fn delivered(&self, id: i64) -> Result<(), StoreError> {
        self.conn().execute("DELETE FROM outbox WHERE id = ?1", [id]).map_err(|e| self.query_err(e))?;
        Ok(())
    }

    /// Delivery of `id` failed; try again at `next_attempt_ms`.
    pub fn retry_later(&self, id: i64, next_attempt_ms: i64, error: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3 WHERE id = ?1",
                params![id, next_attempt_ms, error],
            )
            .map_err(|e| self.query_err(e))?;
        Ok(())
    }

    /// Entries waiting (due or not), and the earliest next attempt.
    pub fn outbox_status(&self) -> Result<(u64, Option<i64>), StoreError> {
        self.conn()
            .query_row("SELECT COUNT(*), MIN(next_attempt_ms) FROM outbox", [], |r| {
                Ok((u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0), r.get(1)?))
            })
            .map_err(|e| self.query_err(e))
    }

    /// Saves a named piece of state (JSON), e.g. the active alerts.
    pub fn put_state(&self, key: &str, json: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO state (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, json],
            )
            .map_err(|e| self.query_err(e))?;
        Ok(())
    }

    /// A named piece of state saved with [`Self::put_state`].
    pub fn get_state(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn()
            .query_row("SELECT value FROM state WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.query_err(e))
    }

    /// Appends an event happening now and returns it with its id and time.
    pub fn append_event(&self, service: &str, kind: &str, message: &str) -> Result<Event, StoreError> {
        self.append_event_at(unix_ms_i64(), service, kind, message)
    }

    /// Appends an event that happened at `at_ms` and returns it with its id.
    pub fn append_event_at(&self, at_ms: i64, service: &str, kind: &str, message: &str) -> Result<Event, StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO events (at_ms, service, kind, message) VALUES (?1, ?2, ?3, ?4)",
            params![at_ms, service, kind, message],
        )
        .map_err(|e| self.query_err(e))?;
        let id = conn.last_insert_rowid();
        if id % 1000 == 0 {
            conn.execute("DELETE FROM events WHERE id <= ?1", [id - MAX_EVENTS]).map_err(|e| self.query_err(e))?;
        }
        Ok(Event {
            id,
            at_ms,
            at: rfc3339(at_ms),
            service: service.to_owned(),
            kind: kind.to_owned(),
            message: message.to_owned(),
        })
    }

    /// The newest `limit` events, newest first, optionally of one service.
    pub fn events(&self, service: Option<&str>, limit: u32) -> Result<Vec<Event>, StoreError> {
        self.select_events(service, None, limit)
    }

    /// The newest `limit` events of kind `kind`, newest first, optionally of one service.
    pub fn events_of_kind(&self, service: Option<&str>, kind: &str, limit: u32) -> Result<Vec<Event>, StoreError> {
        self.select_events(service, Some(kind), limit)
    }

    fn select_events(&self, service: Option<&str>, kind: Option<&str>, limit: u32) -> Result<Vec<Event>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, at_ms, service, kind, message FROM events
                 WHERE (?1 IS NULL OR service = ?1) AND (?2 IS NULL OR kind = ?2) ORDER BY id DESC LIMIT ?3",
            )
            .map_err(|e| self.query_err(e))?;
        let rows = stmt
            .query_map(params![service, kind, limit], |r| {
                let at_ms: i64 = r.get(1)?;
                Ok(Event {
                    id: r.get(0)?,
                    at_ms,
                    at: rfc3339(at_ms),
                    service: r.get(2)?,
                    kind: r.get(3)?,
                    message: r.get(4)?,
                })
            })
            .map_err(|e| self.query_err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.query_err(e))
    }
}

#[cfg(test)]
mod tests {
    use aegis_core::{Counts, State};

    use super::*;

    #[test]
    fn state_and_events_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/aegis.db");
        {
            let store = Store::open(&path).expect("open");
            let snap = Snapshot { state: State::ForcedOpen, counts: Counts::default(), open_remaining: None };
            store.save_breaker("a", &snap).expect("save");
            store.save_restarts("a", 7, &[1, 2], true).expect("save");
            store.append_event("a", "breaker-opened", "3 consecutive failures").expect("event");
            store.append_event("b", "restart", "pid 42").expect("event");
        }
        let store = Store::open(&path).expect("reopen");
        let a = store.load("a").expect("load");
        assert_eq!(a.breaker.map(|s| s.state), Some(State::ForcedOpen));
        assert_eq!((a.restarts_total, a.recent_restarts_ms, a.gave_up), (7, vec![1, 2], true));
        assert_eq!(store.load("unknown").expect("load").restarts_total, 0);
        let all = store.events(None, 10).expect("events");
        assert_eq!(all.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), vec!["restart", "breaker-opened"]);
        let only_a = store.events(Some("a"), 10).expect("events");
        assert_eq!(only_a.len(), 1);
        assert!(only_a[0].at.ends_with('Z'));
        let restarts = store.events_of_kind(None, "restart", 10).expect("events");
        assert_eq!(restarts.iter().map(|e| e.service.as_str()).collect::<Vec<_>>(), vec!["b"]);
        assert!(store.events_of_kind(Some("a"), "restart", 10).expect("events").is_empty());
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("aegis.db");
        std::fs::write(&path, vec![0x42u8; 8192]).expect("write junk");
        let err = Store::open(&path).expect_err("junk refused").to_string();
        assert!(err.contains(&path.display().to_string()) && err.contains("not an Aegis database"), "{err}");
    }
}
