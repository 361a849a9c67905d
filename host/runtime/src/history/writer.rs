//! The writer: a thread of its own with a connection of its own to the state database. About every second (sooner
//! when a buffer is half full) it swaps every service's buffer out and appends the entries to each series' open
//! chunk in one transaction — an `UPDATE … SET data = CAST(data || ? AS BLOB)` per series, or an `INSERT` starting a chunk of up
//! to [`CHUNK`] entries — and once a minute enforces retention (`maxAge` over the whole table, `maxRows` per series
//! it writes). It keeps each open chunk's encoder (last time, last failure detail) in memory, so appending needs no
//! read; after a failed transaction it forgets them all and starts new chunks, so nothing it writes refers to an
//! entry that was rolled back. A failed write drops its batch and counts it: the buffers never wait for the store.

use std::collections::HashMap;
use std::num::NonZeroI64;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aegis_core::history::codec::Encoder;
use aegis_core::history::{LogCount, MetricSample, Outcome};
use rusqlite::{Connection, Transaction, params};

use super::recorder::{Buffer, Inner, LOG_INTERVAL_MS};
use super::schema::{CREATE, Kind};
use crate::config::HistoryConfig;
use crate::unix_ms_i64;

/// How often the writer flushes the buffers.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Entries in one chunk. About a kilobyte of outcomes: small enough that rewriting a chunk's page on every flush is
/// cheap and pages stay well filled, large enough that a row's own overhead (its key, times and B-tree cells, some
/// 60 bytes) is a fraction of a byte per entry.
pub const CHUNK: u32 = 200;
/// The writer connection's page cache, in KiB (SQLite's default is 2 000).
const WRITER_CACHE_KIB: u32 = 512;
/// How often retention runs.
const RETAIN_EVERY: Duration = Duration::from_secs(60);

/// A series: one service's outcomes, one of its metrics, or one of its log rules.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
///
/// The writer keeps one open chunk per series, so at thousands of services the size of a series and its chunk is the
/// size of the writer's map entry: boxed names and a niche-packed row id keep it at 88 bytes (112 before).
struct Series {
    kind: Kind,
    service: Arc<str>,
    /// Empty for outcomes: the metric or the log rule.
    name: Box<str>,
}

/// A chunk being appended to.
#[derive(Debug)]
struct Open {
    /// `None` until the chunk's first flush inserts it.
    id: Option<NonZeroI64>,
    first_ms: i64,
    enc: Encoder,
    n: u32,
}

/// The writer's state, behind the recorder's mutex (the thread and [`super::Recorder::flush`] both flush).
#[derive(Debug)]
pub(super) struct Writer {
    path: PathBuf,
    max_age_ms: i64,
    max_rows: u64,
    conn: Option<Connection>,
    open: HashMap<Series, Open>,
    /// The last flush failed: the next failure is logged at debug level only.
    failing: bool,
    last_retention: Option<Instant>,
    outcomes: Vec<Outcome>,
    samples: Vec<MetricSample>,
    counts: Vec<LogCount>,
    bytes: Vec<u8>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Opens the database for writing history and creates the table when missing.
fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(2))?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
    // The writer only appends to each series' newest chunk and deletes old ones: what it reads again is the tree's
    // upper pages, not the chunks it wrote a second ago (at 10 000 series those no longer fit SQLite's default 2 MiB
    // anyway, and the OS page cache holds them). A quarter of the default keeps ~1.5 MiB less resident at scale.
    conn.execute_batch(&format!("PRAGMA cache_size = -{WRITER_CACHE_KIB};"))?;
    conn.execute_batch(CREATE)?;
    Ok(conn)
}

impl Writer {
    pub(super) fn new(path: &Path, config: &HistoryConfig) -> Writer {
        Writer {
            path: path.to_owned(),
            max_age_ms: i64::try_from(config.max_age.as_millis()).unwrap_or(i64::MAX),
            max_rows: config.max_rows,
            conn: None,
            open: HashMap::new(),
            failing: false,
            last_retention: None,
            outcomes: Vec::new(),
            samples: Vec::new(),
            counts: Vec::new(),
            bytes: Vec::new(),
        }
    }

    /// Writes every buffer's entries (log counts of intervals that ended, or all of them with `all`) in one
    /// transaction; on failure drops them and counts them. Returns the entries dropped.
    fn flush(&mut self, buffers: &[Arc<Buffer>], now_ms: i64, all: bool) -> Result<(), (u64, String)> {
        if self.conn.is_none() {
            match connect(&self.path) {
                Ok(c) => self.conn = Some(c),
                Err(e) => return Err((self.discard(buffers, now_ms, all), e.to_string())),
            }
        }
        let Writer { conn: Some(conn), open, outcomes, samples, counts, bytes, .. } = self else {
            return Ok(());
        };
        let mut taken = 0u64;
        let written = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            for b in buffers {
                std::mem::swap(&mut *lock(&b.outcomes), outcomes);
                taken += outcomes.len() as u64;
                let series = Series { kind: Kind::Outcome, service: Arc::clone(&b.service), name: Box::default() };
                append(&tx, open, series, outcomes, |o| o.at_ms, Encoder::push_outcome, bytes)?;
                outcomes.clear();

                std::mem::swap(&mut *lock(&b.samples), samples);
                taken += samples.len() as u64;
                samples.sort_by(|a, b| a.metric.cmp(&b.metric));
                for group in samples.chunk_by(|a, b| a.metric == b.metric) {
                    let series = Series {
                        kind: Kind::Sample,
                        service: Arc::clone(&b.service),
                        name: group[0].metric.as_str().into(),
                    };
                    let push =
                        |e: &mut Encoder, s: &MetricSample, out: &mut Vec<u8>| e.push_sample(s.at_ms, s.value, out);
                    append(&tx, open, series, group, |s| s.at_ms, push, bytes)?;
                }
                samples.clear();

                take_counts(&b.counts, counts, now_ms, all);
                taken += counts.len() as u64;
                counts.sort_by(|a, b| a.rule.cmp(&b.rule).then(a.at_ms.cmp(&b.at_ms)));
                for group in counts.chunk_by(|a, b| a.rule == b.rule) {
                    let series = Series {
                        kind: Kind::LogCount,
                        service: Arc::clone(&b.service),
                        name: group[0].rule.as_str().into(),
                    };
                    let push = |e: &mut Encoder, c: &LogCount, out: &mut Vec<u8>| e.push_count(c.at_ms, c.count, out);
                    append(&tx, open, series, group, |c| c.at_ms, push, bytes)?;
                }
                counts.clear();
            }
            tx.commit()
        })();
        match written {
            Ok(()) => Ok(()),
            Err(e) => {
                // What the encoders remember may belong to the rolled-back batch.
                open.clear();
                outcomes.clear();
                samples.clear();
                counts.clear();
                self.conn = None;
                Err((taken + self.discard(buffers, now_ms, all), e.to_string()))
            }
        }
    }

    /// Empties the buffers without writing them; the entries dropped.
    fn discard(&mut self, buffers: &[Arc<Buffer>], now_ms: i64, all: bool) -> u64 {
        let mut dropped = 0;
        for b in buffers {
            let mut outcomes = lock(&b.outcomes);
            dropped += outcomes.len() as u64;
            outcomes.clear();
            drop(outcomes);
            let mut samples = lock(&b.samples);
            dropped += samples.len() as u64;
            samples.clear();
            drop(samples);
            take_counts(&b.counts, &mut self.counts, now_ms, all);
            dropped += self.counts.len() as u64;
            self.counts.clear();
        }
        dropped
    }

    /// Deletes what is older than `maxAge`, and per series written by this writer what lies beyond `maxRows`.
    fn retain(&mut self, now_ms: i64) -> rusqlite::Result<()> {
        let Some(conn) = &self.conn else { return Ok(()) };
        let cutoff = now_ms.saturating_sub(self.max_age_ms);
        self.open.retain(|_, c| c.enc.last_ms() >= cutoff);
        conn.execute("DELETE FROM history WHERE last_ms < ?1", [cutoff])?;
        let mut newest = conn.prepare_cached(
            "SELECT last_ms, n FROM history WHERE service = ?1 AND kind = ?2 AND name = ?3 ORDER BY last_ms DESC",
        )?;
        let mut delete =
            conn.prepare_cached("DELETE FROM history WHERE service = ?1 AND kind = ?2 AND name = ?3 AND last_ms < ?4")?;
        for s in self.open.keys() {
            let mut rows = newest.query(params![&*s.service, s.kind.code(), &*s.name])?;
            let mut kept = 0u64;
            let mut oldest_kept = None;
            while let Some(row) = rows.next()? {
                let (last_ms, n): (i64, i64) = (row.get(0)?, row.get(1)?);
                if kept >= self.max_rows {
                    break;
                }
                kept += u64::try_from(n).unwrap_or(0);
                oldest_kept = Some(last_ms);
            }
            drop(rows);
            if kept >= self.max_rows
                && let Some(last_ms) = oldest_kept
            {
                delete.execute(params![&*s.service, s.kind.code(), &*s.name, last_ms])?;
            }
        }
        Ok(())
    }
}

/// Moves the log counts of intervals that ended by `now_ms` (all of them with `all`) from `buffer` to `into`.
fn take_counts(buffer: &Mutex<Vec<LogCount>>, into: &mut Vec<LogCount>, now_ms: i64, all: bool) {
    let mut counts = lock(buffer);
    into.extend(counts.extract_if(.., |c| all || c.at_ms.saturating_add(LOG_INTERVAL_MS) <= now_ms));
}

/// Appends `entries` of `series` to its open chunk, starting chunks as needed (the first write, a full chunk, an
/// entry older than the last).
fn append<E>(
    tx: &Transaction<'_>,
    open: &mut HashMap<Series, Open>,
    series: Series,
    entries: &[E],
    at_ms: impl Fn(&E) -> i64,
    push: impl Fn(&mut Encoder, &E, &mut Vec<u8>) -> bool,
    bytes: &mut Vec<u8>,
) -> rusqlite::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut chunk = open.remove(&series);
    bytes.clear();
    for e in entries {
        if let Some(c) = chunk.as_mut().filter(|c| c.n < CHUNK)
            && push(&mut c.enc, e, bytes)
        {
            c.n += 1;
            continue;
        }
        if let Some(mut c) = chunk.take() {
            save(tx, &series, &mut c, bytes)?;
        }
        bytes.clear();
        let first_ms = at_ms(e);
        let mut enc = Encoder::start(first_ms, bytes);
        // The first entry of a chunk is at its own start: a delta of zero, always accepted.
        push(&mut enc, e, bytes);
        chunk = Some(Open { id: None, first_ms, enc, n: 1 });
    }
    if let Some(mut c) = chunk {
        save(tx, &series, &mut c, bytes)?;
        open.insert(series, c);
    }
    bytes.clear();
    Ok(())
}

/// Writes the bytes appended to `c` since its last save.
fn save(tx: &Transaction<'_>, series: &Series, c: &mut Open, bytes: &[u8]) -> rusqlite::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let n = i64::from(c.n);
    match c.id {
        Some(id) => {
            let mut stmt = tx.prepare_cached(
                "UPDATE history SET data = CAST(data || ?1 AS BLOB), last_ms = ?2, n = ?3 WHERE id = ?4",
            )?;
            stmt.execute(params![bytes, c.enc.last_ms(), n, id.get()])?;
        }
        None => {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO history (kind, service, name, first_ms, last_ms, n, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            stmt.execute(params![
                series.kind.code(),
                &*series.service,
                &*series.name,
                c.first_ms,
                c.enc.last_ms(),
                n,
                bytes
            ])?;
            // A row id of 0 (never assigned by SQLite itself) would start a new chunk at the next flush.
            c.id = NonZeroI64::new(tx.last_insert_rowid());
        }
    }
    Ok(())
}

/// One flush of every buffer (`all`: the last one, log counts of the running interval included), and retention
/// when it is due.
pub(super) fn flush(inner: &Inner, all: bool) {
    let buffers: Vec<Arc<Buffer>> = inner.buffers.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
    let mut w = lock(&inner.writer);
    let now_ms = unix_ms_i64();
    match w.flush(&buffers, now_ms, all) {
        Ok(()) => {
            if w.failing {
                tracing::info!("recording history again");
            }
            w.failing = false;
        }
        Err((dropped, e)) => {
            inner.errors.inc();
            inner.dropped.inc_by(dropped);
            if w.failing {
                tracing::debug!(dropped, "history not recorded: {e}");
            } else {
                tracing::error!(dropped, "history not recorded (dropped until the state database accepts it): {e}");
            }
            w.failing = true;
            return;
        }
    }
    if w.last_retention.is_none_or(|t| t.elapsed() >= RETAIN_EVERY) {
        w.last_retention = Some(Instant::now());
        if let Err(e) = w.retain(now_ms) {
            inner.errors.inc();
            tracing::warn!("history retention failed (tried again in a minute): {e}");
        }
    }
}

/// The writer thread: flushes every [`FLUSH_EVERY`] (or when woken) until stopped, then once more with everything.
pub(super) fn run(inner: &Inner) {
    loop {
        let stopping = inner.stop.load(Ordering::Acquire);
        flush(inner, stopping);
        if stopping {
            return;
        }
        std::thread::park_timeout(FLUSH_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_and_its_open_chunk_stay_small() {
        // One of each per series the writer appends to: at 10 000 services the map of them is megabytes.
        assert!(size_of::<Series>() + size_of::<Open>() <= 88, "{} + {}", size_of::<Series>(), size_of::<Open>());
    }

    #[test]
    fn the_writer_connection_keeps_a_smaller_page_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = connect(&dir.path().join("h.db")).expect("connect");
        let kib: i64 = conn.query_row("PRAGMA cache_size", [], |r| r.get(0)).expect("cache_size");
        assert_eq!(kib, -i64::from(WRITER_CACHE_KIB));
    }
}
