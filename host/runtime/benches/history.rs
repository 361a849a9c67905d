//! Recording history (`storage.history`): (a) what recording a check adds on the probe path at N services (default
//! 1000) — the same loop with and without the push, in one run, the writer thread of a real database draining the
//! buffers meanwhile — and (b) the bytes per outcome on disk: N services × M outcomes (default 1000 × 1000, a check
//! per second each, 1% failing with a repeated reason) written through the real writer, one flush per simulated
//! second, into a real SQLite file; after a WAL checkpoint, `page_count × page_size ÷ outcomes`. The baseline of (b)
//! is the same outcomes as one plain row each (service, time, success, slow, latency, detail) in the same kind of
//! file.
//!
//! ```text
//! cargo bench -p aegis-runtime --bench history
//! AEGIS_BENCH_SERVICES=2000 AEGIS_BENCH_OUTCOMES=500 cargo bench -p aegis-runtime --bench history
//! ```

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use aegis_runtime::config::HistoryConfig;
use aegis_runtime::history::{HistoryReader, Recorder, ServiceRecorder};
use prometheus::IntCounter;
use rusqlite::{Connection, params};

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970");
    i64::try_from(since.as_millis()).expect("ms fit i64")
}

fn counter() -> IntCounter {
    IntCounter::new("c", "c").expect("counter")
}

/// A tiny deterministic generator (xorshift): the same outcomes in both variants and every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One simulated check: latency 2–20 ms, 1% failing (one of two reasons, each repeated over an outage).
fn check(rng: &mut Rng) -> (bool, u32, Option<&'static str>) {
    let r = rng.next();
    let success = !r.is_multiple_of(100);
    let latency_us = 2_000 + (r >> 8) as u32 % 18_000;
    let detail = (!success).then_some(if r & 0x100 == 0 { "status 503" } else { "connect refused" });
    (success, latency_us, detail)
}

/// (a): ns per check of the probe-path loop, without and with the push.
fn probe_path(dir: &Path, services: usize) {
    const ROUNDS: usize = 50;
    const BATCHES: usize = 20;
    let dropped = counter();
    let rec = Recorder::start(&dir.join("probe.db"), &HistoryConfig::default(), dropped.clone(), counter());
    let handles: Vec<ServiceRecorder> = (0..services).map(|i| rec.service(&format!("svc-{i:04}").into())).collect();
    let mut times = [Duration::ZERO; 2];
    let t0 = now_ms() - (BATCHES * ROUNDS * 1000) as i64;
    for batch in 0..BATCHES {
        for (variant, time) in times.iter_mut().enumerate() {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 + batch as u64);
            let start = Instant::now();
            for round in 0..ROUNDS {
                let at_ms = t0 + ((batch * ROUNDS + round) * 1000) as i64;
                for h in &handles {
                    let (success, latency_us, detail) = check(&mut rng);
                    if variant == 1 {
                        h.outcome(at_ms, success, latency_us > 15_000, latency_us, detail);
                    } else {
                        black_box((at_ms, success, latency_us > 15_000, latency_us, detail));
                    }
                }
            }
            *time += start.elapsed();
        }
        // Drained here as well as by the writer thread, so no buffer overflows whatever the machine's speed (the
        // probe path would otherwise be measured dropping): a real host pushes once per check interval, not in a
        // tight loop.
        rec.flush();
    }
    rec.stop();
    let checks = (BATCHES * ROUNDS * services) as f64;
    let [without, with] = times.map(|t| t.as_nanos() as f64 / checks);
    println!("(a) probe path at {services} services, {checks} checks per variant:");
    println!("    without recording (baseline): {without:8.1} ns/check");
    println!("    with recording:               {with:8.1} ns/check");
    println!("    added by recording:           {:8.1} ns/check  (target <= 1000 ns)", with - without);
    println!("    dropped: {}", dropped.get());
}

fn file_bytes(path: &Path) -> (u64, u64) {
    let conn = Connection::open(path).expect("open");
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).expect("checkpoint");
    let pages: u64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).expect("page_count");
    let size: u64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).expect("page_size");
    let free: u64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0)).expect("freelist");
    (pages * size, free * size)
}

/// (b): bytes per outcome on disk, recorded and as plain rows.
fn on_disk(dir: &Path, services: usize, outcomes: usize) {
    let path = dir.join("aegis.db");
    // The state database as aegis-host creates it (its own tables too), then the history.
    drop(aegis_runtime::store::Store::open(&path).expect("store"));
    let empty = file_bytes(&path).0;
    let dropped = counter();
    let rec = Recorder::manual(&path, &HistoryConfig::default(), dropped.clone(), counter());
    let handles: Vec<ServiceRecorder> = (0..services).map(|i| rec.service(&format!("svc-{i:04}").into())).collect();
    let mut rng = Rng(42);
    // Ending now: older outcomes would fall to the default retention (a week).
    let t0 = now_ms() - (outcomes as i64) * 1000;
    let start = Instant::now();
    for second in 0..outcomes {
        for (i, h) in handles.iter().enumerate() {
            let (success, latency_us, detail) = check(&mut rng);
            // Each service on its own phase, a few ms of jitter per check.
            let at_ms = t0 + second as i64 * 1000 + i as i64 % 1000 + (rng.next() % 5) as i64;
            h.outcome(at_ms, success, latency_us > 15_000, latency_us, detail);
        }
        rec.flush();
    }
    rec.stop();
    let took = start.elapsed();
    let total = (services * outcomes) as f64;
    let (bytes, free) = file_bytes(&path);
    let conn = Connection::open(&path).expect("open");
    let (rows, payload): (i64, i64) = conn
        .query_row("SELECT COUNT(*), SUM(length(data)) FROM history", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows");
    let read = HistoryReader::open(&path).expect("reader").outcomes("svc-0000", 0, i64::MAX).expect("read").len();
    assert_eq!(read, outcomes, "svc-0000 reads back whole");

    let plain_path = dir.join("plain.db");
    let plain = Connection::open(&plain_path).expect("open");
    plain
        .execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE checks (service TEXT NOT NULL, at_ms INTEGER NOT NULL, success INTEGER NOT NULL,
                 slow INTEGER NOT NULL, latency_us INTEGER NOT NULL, detail TEXT);
             CREATE INDEX checks_by_service ON checks (service, at_ms);",
        )
        .expect("plain schema");
    let mut rng = Rng(42);
    for second in 0..outcomes {
        let tx = plain.unchecked_transaction().expect("tx");
        {
            let mut insert = tx.prepare_cached("INSERT INTO checks VALUES (?1, ?2, ?3, ?4, ?5, ?6)").expect("prepare");
            for i in 0..services {
                let (success, latency_us, detail) = check(&mut rng);
                let at_ms = t0 + second as i64 * 1000 + i as i64 % 1000 + (rng.next() % 5) as i64;
                let service = format!("svc-{i:04}");
                insert
                    .execute(params![service, at_ms, success, latency_us > 15_000, latency_us, detail])
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    drop(plain);
    let (plain_bytes, _) = file_bytes(&plain_path);

    println!("(b) on disk, {services} services x {outcomes} outcomes = {total} outcomes, one flush per second:");
    println!(
        "    recorded: {:.1} bytes/outcome  (file {bytes} B, of which {free} B free pages, {empty} B the empty \
         store; {rows} chunks, {:.2} B/outcome of chunk data; written in {:.1} s; dropped {})  (target <= 32)",
        bytes as f64 / total,
        payload as f64 / total,
        took.as_secs_f64(),
        dropped.get()
    );
    println!("    without the empty store's pages: {:.1} bytes/outcome", bytes.saturating_sub(empty) as f64 / total);
    println!("    baseline, one plain row per outcome: {:.1} bytes/outcome", plain_bytes as f64 / total);
}

fn main() {
    let services = env_or("AEGIS_BENCH_SERVICES", 1000) as usize;
    let outcomes = env_or("AEGIS_BENCH_OUTCOMES", 1000) as usize;
    let dir = tempfile::tempdir().expect("tempdir");
    probe_path(dir.path(), services);
    on_disk(dir.path(), services, outcomes);
}
