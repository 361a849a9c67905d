//! The recorder, the writer and the reader together, on real SQLite files.

use std::time::Duration;

use prometheus::IntCounter;

use super::*;
use crate::config::HistoryConfig;

fn counter() -> IntCounter {
    IntCounter::new("c", "c").expect("counter")
}

fn recorder(path: &std::path::Path, config: &HistoryConfig) -> (Recorder, IntCounter, IntCounter) {
    let (dropped, errors) = (counter(), counter());
    (Recorder::manual(path, config, dropped.clone(), errors.clone()), dropped, errors)
}

fn now() -> i64 {
    crate::unix_ms_i64()
}

#[test]
fn what_the_probe_path_records_reads_back_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("aegis.db");
    let (rec, dropped, errors) = recorder(&path, &HistoryConfig::default());
    let (a, b) = (rec.service(&"a".into()), rec.service(&"b".into()));
    let start = now() - 10_000;
    // More than a chunk, over several flushes, with a repeated and a changed failure detail.
    for i in 0..(CHUNK as i64 * 2 + 7) {
        let failing = (100..140).contains(&i);
        let detail = failing.then_some(if i < 120 { "status 503" } else { "connect refused" });
        a.outcome(start + i * 10, !failing, i % 50 == 0, 1_000 + i as u32, detail);
        b.outcome(start + i * 10 + 5, true, false, 7, None);
        if i % 150 == 0 {
            rec.flush();
        }
    }
    rec.service(&"a".into()).outcome(start + 9_999, false, false, 0, Some(&"x".repeat(500)));
    rec.flush();
    let reader = HistoryReader::open(&path).expect("open while recording");
    let got = reader.outcomes("a", 0, i64::MAX).expect("read");
    assert_eq!(got.len(), CHUNK as usize * 2 + 8);
    assert!(got.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
    assert_eq!(got[0].at_ms, start);
    assert_eq!((got[50].slow, got[51].slow), (true, false));
    assert_eq!(got[110].detail.as_deref(), Some("status 503"));
    assert_eq!(got[130].detail.as_deref(), Some("connect refused"));
    assert_eq!((got[130].success, got[140].success, got[140].detail.as_deref()), (false, true, None));
    assert_eq!(got.last().and_then(|o| o.detail.as_deref()).map(str::len), Some(MAX_DETAIL));
    assert_eq!(reader.outcomes("b", start, start + 100).expect("read").len(), 10);
    assert_eq!((dropped.get(), errors.get()), (0, 0));
    rec.stop();
}

#[test]
fn samples_and_log_counts_are_recorded_per_series() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("aegis.db");
    let (rec, _, _) = recorder(&path, &HistoryConfig::default());
    let t = now() - 60_000;
    for i in 0..5 {
        rec.sample("a", t + i * 1_000, "latency", 10.5 + i as f64);
        rec.sample("a", t + i * 1_000, "error-rate", 0.0);
    }
    let interval = t - t.rem_euclid(LOG_INTERVAL_MS);
    for _ in 0..3 {
        rec.log_match("a", "panic", interval + 1);
    }
    rec.log_match("a", "oom", interval + 2);
    rec.log_match("a", "panic", interval + LOG_INTERVAL_MS);
    // The interval running now is written at stop only.
    rec.log_match("a", "panic", now());
    rec.flush();
    let reader = HistoryReader::open(&path).expect("open");
    let samples = reader.samples("a", 0, i64::MAX).expect("read");
    assert_eq!(samples.len(), 10);
    assert_eq!(samples.iter().filter(|s| s.metric == "latency").map(|s| s.value).sum::<f64>(), 62.5);
    let counts: Vec<(i64, String, u64)> = reader
        .log_counts("a", 0, i64::MAX)
        .expect("read")
        .into_iter()
        .map(|c| (c.at_ms - interval, c.rule, c.count))
        .collect();
    assert_eq!(
        counts,
        vec![(0, "oom".to_owned(), 1), (0, "panic".to_owned(), 3), (LOG_INTERVAL_MS, "panic".to_owned(), 1)]
    );
    rec.stop();
    let reader = HistoryReader::open(&path).expect("open");
    assert_eq!(reader.log_counts("a", 0, i64::MAX).expect("read").len(), 4);
}

#[test]
fn retention_drops_what_is_too_old_and_beyond_max_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("aegis.db");
    let config = HistoryConfig { enabled: true, max_age: Duration::from_secs(3600), max_rows: 1_000 };
    let (rec, _, _) = recorder(&path, &config);
    let (stale, fresh, many) =
        (rec.service(&"stale".into()), rec.service(&"fresh".into()), rec.service(&"many".into()));
    let recent = now() - 60_000;
    for i in 0..10 {
        stale.outcome(recent - 2 * 3_600_000 + i, true, false, 1, None);
        fresh.outcome(recent + i, true, false, 1, None);
    }
    for i in 0..3_000 {
        many.outcome(recent + i, true, false, 1, None);
    }
    rec.flush();
    let reader = HistoryReader::open(&path).expect("open");
    assert!(reader.outcomes("stale", 0, i64::MAX).expect("read").is_empty());
    let kept = reader.outcomes("fresh", 0, i64::MAX).expect("read");
    assert_eq!(kept.iter().map(|o| o.at_ms - recent).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    let many = reader.outcomes("many", 0, i64::MAX).expect("read");
    // Kept a chunk at a time: the newest chunks holding at least maxRows.
    assert_eq!(many.len(), 1_000);
    assert_eq!(many.last().map(|o| o.at_ms - recent), Some(2_999));
    rec.stop();
}

#[test]
fn a_store_that_cannot_be_written_drops_and_counts_and_recording_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("missing-dir/aegis.db");
    let (rec, dropped, errors) = recorder(&path, &HistoryConfig::default());
    let a = rec.service(&"a".into());
    let t = now();
    for i in 0..5 {
        a.outcome(t + i, true, false, 1, None);
    }
    rec.flush();
    assert_eq!((dropped.get(), errors.get()), (5, 1));
    std::fs::create_dir(dir.path().join("missing-dir")).expect("mkdir");
    a.outcome(t + 10, false, false, 2, Some("timeout"));
    rec.flush();
    // Zero bytes (no delta, no flags, no latency) appended to a chunk survive SQLite's concatenation.
    a.outcome(t + 10, false, false, 0, None);
    rec.flush();
    let got = HistoryReader::open(&path).expect("open").outcomes("a", 0, i64::MAX).expect("read");
    assert_eq!(got.iter().map(|o| o.at_ms - t).collect::<Vec<_>>(), vec![10, 10]);
    assert_eq!((got[1].latency_us, got[1].detail.as_deref()), (0, None));
    assert_eq!(got[0].detail.as_deref(), Some("timeout"));
    assert_eq!(errors.get(), 1);
    rec.stop();
}

#[test]
fn a_full_buffer_drops_and_counts_without_waiting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("missing-dir/aegis.db");
    let (rec, dropped, _) = recorder(&path, &HistoryConfig::default());
    // Stopped: nothing drains the buffer any more.
    rec.stop();
    let a = rec.service(&"a".into());
    for i in 0..(BUFFER as i64 + 3) {
        a.outcome(i, true, false, 1, None);
    }
    assert_eq!(dropped.get(), 3);
}

#[test]
fn off_records_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("aegis.db");
    let config = HistoryConfig { enabled: false, ..HistoryConfig::default() };
    let (rec, _, _) = recorder(&path, &config);
    assert!(!rec.enabled());
    rec.service(&"a".into()).outcome(1, true, false, 1, None);
    rec.flush();
    assert!(!path.exists());
}

#[test]
fn the_writer_thread_flushes_on_its_own_and_at_stop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("aegis.db");
    let rec = Recorder::start(&path, &HistoryConfig::default(), counter(), counter());
    let a = rec.service(&"a".into());
    let t = now();
    a.outcome(t, true, false, 1, None);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let read = || HistoryReader::open(&path).and_then(|r| r.outcomes("a", 0, i64::MAX)).unwrap_or_default();
    while read().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(read().len(), 1, "not flushed within 10 s");
    a.outcome(t + 1, true, false, 1, None);
    rec.log_match("a", "panic", t);
    rec.stop();
    let reader = HistoryReader::open(&path).expect("open");
    assert_eq!(reader.outcomes("a", 0, i64::MAX).expect("read").len(), 2);
    assert_eq!(reader.log_counts("a", 0, i64::MAX).expect("read").len(), 1);
}
