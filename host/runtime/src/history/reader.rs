//! Reading recorded history back: a read-only connection of its own, so `aegis-host replay` can read the state
//! database while aegis-host writes it (WAL lets a reader see the last committed batch without blocking the
//! writer). Must not write anything.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aegis_core::history::codec::{self, DecodeError};
use aegis_core::history::{LogCount, MetricSample, Outcome};
use rusqlite::{Connection, OpenFlags, params};

use super::schema::{Kind, TABLE};
use crate::store::StoreError;

/// Reads the history recorded in one state database.
#[derive(Debug)]
pub struct HistoryReader {
    path: PathBuf,
    conn: Connection,
}

impl HistoryReader {
    /// Opens the state database at `path` (`storage.path` of the config) read-only. A missing file, a file that is
    /// not an Aegis database, or one without recorded history is an error naming the file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |message: String| StoreError::Open { path: path.to_owned(), message };
        if !path.exists() {
            return Err(open_err("no such file (is storage.path of the config right?)".to_owned()));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| open_err(e.to_string()))?;
        conn.busy_timeout(Duration::from_secs(2)).map_err(|e| open_err(e.to_string()))?;
        let has_table: bool = conn
            .query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)", [TABLE], |r| {
                r.get(0)
            })
            .map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
                    open_err(format!("not an Aegis database, or corrupt ({e})"))
                }
                _ => open_err(e.to_string()),
            })?;
        if !has_table {
            return Err(open_err(
                "no recorded history: aegis-host has not run with storage.history on with this database".to_owned(),
            ));
        }
        Ok(HistoryReader { path: path.to_owned(), conn })
    }

    /// The check outcomes of `service` from `from_ms` to `to_ms` (both inclusive, ms since the Unix epoch),
    /// oldest first.
    pub fn outcomes(&self, service: &str, from_ms: i64, to_ms: i64) -> Result<Vec<Outcome>, StoreError> {
        self.read(
            Kind::Outcome,
            service,
            from_ms,
            to_ms,
            |first_ms, _, data| codec::decode_outcomes(first_ms, data),
            |o| o.at_ms,
        )
    }

    /// The anomaly samples of `service` (every metric) from `from_ms` to `to_ms` (both inclusive), oldest first.
    pub fn samples(&self, service: &str, from_ms: i64, to_ms: i64) -> Result<Vec<MetricSample>, StoreError> {
        self.read(Kind::Sample, service, from_ms, to_ms, codec::decode_samples, |s| s.at_ms)
    }

    /// The log-match counts of `service` (every rule) per interval, of the intervals starting from `from_ms` to
    /// `to_ms` (both inclusive), oldest first.
    pub fn log_counts(&self, service: &str, from_ms: i64, to_ms: i64) -> Result<Vec<LogCount>, StoreError> {
        self.read(Kind::LogCount, service, from_ms, to_ms, codec::decode_counts, |c| c.at_ms)
    }

    fn read<T>(
        &self,
        kind: Kind,
        service: &str,
        from_ms: i64,
        to_ms: i64,
        decode: impl Fn(i64, &str, &[u8]) -> Result<Vec<T>, DecodeError>,
        at_ms: impl Fn(&T) -> i64,
    ) -> Result<Vec<T>, StoreError> {
        let query_err = |message: String| StoreError::Query { path: self.path.clone(), message };
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, name, first_ms, data FROM history
                 WHERE service = ?1 AND kind = ?2 AND last_ms >= ?3 AND first_ms <= ?4 ORDER BY first_ms, id",
            )
            .map_err(|e| query_err(e.to_string()))?;
        let mut rows =
            stmt.query(params![service, kind.code(), from_ms, to_ms]).map_err(|e| query_err(e.to_string()))?;
        let mut all = Vec::new();
        while let Some(row) = rows.next().map_err(|e| query_err(e.to_string()))? {
            let chunk = || -> rusqlite::Result<(i64, String, i64, Vec<u8>)> {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            };
            let (id, name, first_ms, data) = chunk().map_err(|e| query_err(format!("history row: {e}")))?;
            let entries = decode(first_ms, &name, &data)
                .map_err(|e| query_err(format!("history row {id} of service `{service}` cannot be read: {e}")))?;
            all.extend(entries.into_iter().filter(|e| (from_ms..=to_ms).contains(&at_ms(e))));
        }
        // Chunks of several metrics (or rules) interleave; a stable sort keeps each one's recorded order.
        all.sort_by_key(|e| at_ms(e));
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use aegis_core::history::codec::Encoder;

    use super::super::schema::CREATE;
    use super::*;

    fn insert(conn: &Connection, kind: Kind, service: &str, name: &str, first_ms: i64, last_ms: i64, data: &[u8]) {
        conn.execute(
            "INSERT INTO history (kind, service, name, first_ms, last_ms, n, data) VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
            params![kind.code(), service, name, first_ms, last_ms, data],
        )
        .expect("insert");
    }

    fn written(dir: &Path) -> PathBuf {
        let path = dir.join("aegis.db");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch("PRAGMA journal_mode = WAL;").expect("wal");
        conn.execute_batch(CREATE).expect("create");
        for (first, service) in [(2_000, "a"), (1_000, "a"), (1_500, "b")] {
            let mut data = Vec::new();
            let mut enc = Encoder::start(first, &mut data);
            for i in 0..3 {
                let o = Outcome { at_ms: first + i * 100, success: i != 1, slow: false, latency_us: 7, detail: None };
                assert!(enc.push_outcome(&o, &mut data));
            }
            insert(&conn, Kind::Outcome, service, "", first, first + 200, &data);
        }
        for (metric, first) in [("latency_ms", 1_000), ("errors", 1_050)] {
            let mut data = Vec::new();
            let mut enc = Encoder::start(first, &mut data);
            assert!(enc.push_sample(first, 1.5, &mut data) && enc.push_sample(first + 100, 2.0, &mut data));
            insert(&conn, Kind::Sample, "a", metric, first, first + 100, &data);
        }
        insert(&conn, Kind::LogCount, "a", "panic", 0, 0, &[9]);
        path
    }

    #[test]
    fn reads_one_services_entries_in_time_order_within_the_bounds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reader = HistoryReader::open(&written(dir.path())).expect("open");
        let times: Vec<i64> = reader.outcomes("a", 0, i64::MAX).expect("read").iter().map(|o| o.at_ms).collect();
        assert_eq!(times, vec![1_000, 1_100, 1_200, 2_000, 2_100, 2_200]);
        let window: Vec<i64> = reader.outcomes("a", 1_100, 2_000).expect("read").iter().map(|o| o.at_ms).collect();
        assert_eq!(window, vec![1_100, 1_200, 2_000]);
        assert!(reader.outcomes("nobody", 0, i64::MAX).expect("read").is_empty());
        let samples: Vec<(i64, String)> =
            reader.samples("a", 0, i64::MAX).expect("read").into_iter().map(|s| (s.at_ms, s.metric)).collect();
        let names = |v: &[(i64, &str)]| v.iter().map(|(t, m)| (*t, (*m).to_owned())).collect::<Vec<_>>();
        assert_eq!(
            samples,
            names(&[(1_000, "latency_ms"), (1_050, "errors"), (1_100, "latency_ms"), (1_150, "errors")])
        );
    }

    #[test]
    fn a_damaged_chunk_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = written(dir.path());
        let err = HistoryReader::open(&path).expect("open").log_counts("a", 0, 10).expect_err("damaged").to_string();
        assert!(err.contains("history row 6 of service `a`") && err.contains("unknown chunk format 9"), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
    }

    #[test]
    fn a_database_without_history_or_no_file_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.db");
        let err = HistoryReader::open(&missing).expect_err("missing").to_string();
        assert!(err.contains("missing.db") && err.contains("no such file"), "{err}");
        let plain = dir.path().join("plain.db");
        crate::store::Store::open(&plain).expect("store");
        let err = HistoryReader::open(&plain).expect_err("no table").to_string();
        assert!(err.contains("no recorded history"), "{err}");
    }
}
