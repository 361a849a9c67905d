//! The one table recorded history lives in, shared by the writer and the reader. A row is a chunk: one service's
//! entries of one kind (and one metric or log rule), `n` of them from `first_ms` to `last_ms`, encoded by
//! [`aegis_core::history::codec`]. The writer appends to a row while its chunk is open, so a second's checks cost
//! one small update, and a closed row holds hundreds of checks: the per-row overhead (key, times, B-tree cell)
//! spreads over them.

/// What a chunk holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Outcome = 0,
    Sample = 1,
    LogCount = 2,
}

impl Kind {
    pub fn code(self) -> i64 {
        self as i64
    }
}

pub(super) const TABLE: &str = "history";

/// Creates the table and its index when they are missing.
pub(super) const CREATE: &str = "CREATE TABLE IF NOT EXISTS history (
        id INTEGER PRIMARY KEY,
        kind INTEGER NOT NULL,
        service TEXT NOT NULL,
        name TEXT NOT NULL,
        first_ms INTEGER NOT NULL,
        last_ms INTEGER NOT NULL,
        n INTEGER NOT NULL,
        data BLOB NOT NULL);
    CREATE INDEX IF NOT EXISTS history_by_service ON history (service, kind, last_ms);
    CREATE INDEX IF NOT EXISTS history_by_age ON history (last_ms);";
