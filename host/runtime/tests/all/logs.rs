//! The log monitor against real files in a temp dir: matching, tailing from the end, rotation, truncation, late
//! files, over-long and invalid lines, globs and service-scoped patterns.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aegis_core::policy::{Contains, Severity};
use aegis_runtime::logs::{self, LogFile, LogMatch, LogMonitor, LogsError, LogsSettings, Pattern, RuleSet};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

/// Bound on any single wait of these tests.
const WAIT: Duration = Duration::from_secs(5);

fn pattern(name: &str, regex: &str, severity: Severity, service: Option<&str>) -> Pattern {
    Pattern {
        name: name.into(),
        regex: regex.into(),
        severity,
        description: Some(format!("{name} detected")),
        service: service.map(Into::into),
    }
}

/// `error` (ERROR, warning) and `primer` (PRIME, info), on every file.
fn default_patterns() -> Vec<Pattern> {
    vec![pattern("error", "ERROR", Severity::Warning, None), pattern("primer", "PRIME", Severity::Info, None)]
}

struct Monitor {
    rx: mpsc::Receiver<LogMatch>,
    stop: watch::Sender<bool>,
    inner: LogMonitor,
}

impl Monitor {
    fn start(files: Vec<LogFile>, patterns: Vec<Pattern>, from_start: bool) -> Monitor {
        let rules = Arc::new(RuleSet::new(&patterns).expect("patterns compile"));
        Self::start_with(files, rules, from_start)
    }

    fn start_with(files: Vec<LogFile>, rules: Arc<RuleSet>, from_start: bool) -> Monitor {
        let settings = LogsSettings {
            files,
            patterns: Vec::new(),
            poll_interval: Duration::from_millis(20),
            from_start,
            ..LogsSettings::default()
        };
        settings.validate().expect("valid settings");
        let (tx, rx) = mpsc::channel(1024);
        let (stop, stop_rx) = watch::channel(false);
        let inner = logs::spawn(settings, rules, tx, stop_rx);
        Monitor { rx, stop, inner }
    }

    async fn next(&mut self) -> LogMatch {
        timeout(WAIT, self.rx.recv()).await.expect("a match in time").expect("monitor running")
    }

    /// The next match of a rule other than `primer`.
    async fn next_finding(&mut self) -> LogMatch {
        loop {
            let m = self.next().await;
            if m.rule != "primer" {
                return m;
            }
        }
    }

    /// Nothing more arrives for a while.
    async fn assert_quiet(&mut self) {
        if let Ok(m) = timeout(Duration::from_millis(200), self.rx.recv()).await {
            panic!("unexpected match {m:?}");
        }
    }

    /// Appends PRIME lines to `path` until one is seen, so the monitor is known to follow the file's end.
    async fn prime(&mut self, path: &Path) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            append(path, b"PRIME\n");
            if let Ok(Some(m)) = timeout(Duration::from_millis(100), self.rx.recv()).await {
                assert_eq!(m.rule, "primer", "{m:?}");
                // Later PRIME lines of this loop may still arrive: drain them.
                while let Ok(Some(m)) = timeout(Duration::from_millis(60), self.rx.recv()).await {
                    assert_eq!(m.rule, "primer", "{m:?}");
                }
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "the monitor never read {}", path.display());
        }
    }

    async fn stop(self) {
        self.stop.send(true).expect("monitor listening");
        timeout(WAIT, self.inner.task).await.expect("stops in time").expect("no panic");
    }
}

fn append(path: &Path, bytes: &[u8]) {
    OpenOptions::new().create(true).append(true).open(path).expect("open for append").write_all(bytes).expect("append");
}

fn file(service: Option<&str>, path: &Path) -> LogFile {
    LogFile { service: service.map(Into::into), path: path.to_str().expect("UTF-8 temp path").to_owned() }
}

#[test]
fn logs_rule_set_matches_with_severity_and_extra_rules() {
    let rules = RuleSet::new(&[
        pattern("oom", "(?i)out of memory", Severity::Critical, None),
        pattern("http-5xx", r#"" 5\d\d "#, Severity::Warning, None),
    ])
    .unwrap()
    .with_rule(Arc::new(Contains::new("plugin-fatal", Severity::Info, ["FATAL"])), None);
    assert_eq!(rules.len(), 3);

    let m = rules.matches(Some("api"), "api.log", "kernel: Out Of Memory: Killed process 12");
    assert_eq!(m.len(), 1);
    assert_eq!((m[0].rule.as_str(), m[0].severity), ("oom", Severity::Critical));
    assert_eq!(m[0].description.as_deref(), Some("oom detected"));
    assert_eq!(m[0].service.as_deref(), Some("api"));

    let m = rules.matches(None, "api.log", r#"GET /x HTTP/1.1" 503 12 FATAL out of memory"#);
    let got: Vec<_> = m.iter().map(|m| (m.rule.as_str(), m.severity)).collect();
    assert_eq!(
        got,
        [("oom", Severity::Critical), ("http-5xx", Severity::Warning), ("plugin-fatal", Severity::Info)],
        "built-ins in pattern order, then extra rules"
    );
    assert_eq!(m[2].description.as_deref(), Some(r#"api.log: GET /x HTTP/1.1" 503 12 FATAL out of memory"#));
    assert!(rules.matches(None, "api.log", r#"GET / HTTP/1.1" 200 12"#).is_empty());
}

#[test]
fn logs_invalid_regex_names_the_pattern() {
    let err = RuleSet::new(&[
        pattern("fine", "ok", Severity::Info, None),
        pattern("broken", "(?i)out of (memory", Severity::Critical, None),
    ])
    .unwrap_err();
    assert!(matches!(&err, LogsError::Pattern { index: 1, name, .. } if name == "broken"), "{err:?}");
    assert!(err.to_string().starts_with("patterns[1] (`broken`): invalid regex"), "{err}");

    let settings = LogsSettings {
        files: vec![LogFile { service: None, path: "/var/log/[unclosed*.log".into() }],
        ..LogsSettings::default()
    };
    let err = settings.validate().unwrap_err().to_string();
    assert!(err.starts_with("files[0] (`/var/log/[unclosed*.log`): invalid glob"), "{err}");
}

#[tokio::test]
async fn logs_tail_from_end_ignores_old_content_and_handles_partial_and_crlf_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, b"old ERROR before start\nanother old ERROR\n");
    let mut mon = Monitor::start(vec![file(Some("app"), &path)], default_patterns(), false);
    mon.prime(&path).await;

    append(&path, b"new ERROR one\r\n");
    let m = mon.next_finding().await;
    assert_eq!((m.rule.as_str(), m.severity, m.line.as_str()), ("error", Severity::Warning, "new ERROR one"));
    assert_eq!((m.service.as_deref(), m.path.as_path()), (Some("app"), path.as_path()));

    // Half a line is held back until its newline arrives.
    append(&path, b"partial ERR");
    mon.assert_quiet().await;
    append(&path, b"OR done\n");
    assert_eq!(mon.next_finding().await.line, "partial ERROR done");
    mon.assert_quiet().await;
    assert!(mon.inner.counts.lines("app") >= 3);
    mon.stop().await;
}

#[tokio::test]
async fn logs_from_start_reads_existing_content() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, b"old ERROR before start\n");
    let mut mon = Monitor::start(vec![file(None, &path)], default_patterns(), true);
    assert_eq!(mon.next_finding().await.line, "old ERROR before start");
    mon.stop().await;
}

#[tokio::test]
async fn logs_rotation_loses_and_duplicates_no_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, b"");
    let mut mon = Monitor::start(vec![file(None, &path)], default_patterns(), false);
    mon.prime(&path).await;

    let mut writer = OpenOptions::new().append(true).open(&path).unwrap();
    for i in 0..50 {
        writeln!(writer, "ERROR {i}").unwrap();
    }
    fs::rename(&path, dir.path().join("app.log.1")).unwrap();
    // Still written through the old handle after the rename, as a logger does until it reopens.
    for i in 50..100 {
        writeln!(writer, "ERROR {i}").unwrap();
    }
    // A partial last line in the old file is emitted when the tailer leaves it.
    write!(writer, "ERROR 100").unwrap();
    drop(writer);
    let mut writer = File::create(&path).unwrap();
    for i in 101..150 {
        writeln!(writer, "ERROR {i}").unwrap();
    }

    let mut seen = Vec::new();
    while seen.len() < 150 {
        seen.push(mon.next_finding().await.line);
    }
    let expected: Vec<String> = (0..150).map(|i| format!("ERROR {i}")).collect();
    assert_eq!(seen, expected);
    mon.assert_quiet().await;

    // And the new file goes on being followed.
    writeln!(writer, "ERROR after").unwrap();
    assert_eq!(mon.next_finding().await.line, "ERROR after");
    mon.stop().await;
}

#[tokio::test]
async fn logs_truncation_rereads_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, b"");
    let mut mon = Monitor::start(vec![file(None, &path)], default_patterns(), false);
    mon.prime(&path).await;
    append(&path, b"a fairly long line with ERROR in it, long enough to be past what is written next\n");
    assert!(mon.next_finding().await.line.starts_with("a fairly long line"));

    // copytruncate: same file, cut to 0, then written again.
    OpenOptions::new().write(true).open(&path).unwrap().set_len(0).unwrap();
    append(&path, b"ERROR again\n");
    assert_eq!(mon.next_finding().await.line, "ERROR again");
    mon.assert_quiet().await;
    mon.stop().await;
}

#[tokio::test]
async fn logs_missing_file_is_read_from_its_start_once_it_appears() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("later.log");
    let mut mon = Monitor::start(vec![file(None, &path)], default_patterns(), false);
    mon.assert_quiet().await;
    append(&path, b"first ERROR of a new file\n");
    assert_eq!(mon.next_finding().await.line, "first ERROR of a new file");
    mon.stop().await;
}

#[tokio::test]
async fn logs_over_long_line_is_cut_and_the_next_line_still_matches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, b"");
    let mut mon = Monitor::start(vec![file(None, &path)], default_patterns(), false);
    mon.prime(&path).await;

    // 1 MB with the match only beyond the cut: no finding for it.
    let mut huge = vec![b'x'; 1 << 20];
    huge.extend_from_slice(b" ERROR at the end\n");
    append(&path, &huge);
    // 1 MB starting with a match: one finding, marked as cut.
    let mut huge = b"ERROR at the start ".to_vec();
    huge.extend(std::iter::repeat_n(b'y', 1 << 20));
    huge.push(b'\n');
    append(&path, &huge);
    append(&path, b"next ERROR line\n");

    let m = mon.next_finding().await;
    assert!(m.line.starts_with("ERROR at the start yyy") && m.line.ends_with('…'), "{}", &m.line[..40]);
    assert_eq!(m.line.chars().count(), logs::MAX_EVENT_LINE_CHARS + 1);
    assert_eq!(mon.next_finding().await.line, "next ERROR line");
    mon.assert_quiet().await;
    mon.stop().await;
}

#[tokio::test]
async fn logs_invalid_utf8_line_is_still_matched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, b"\xff\xfe ERROR in bad bytes \xc3\n");
    let mut mon = Monitor::start(vec![file(None, &path)], default_patterns(), true);
    assert_eq!(mon.next_finding().await.line, "\u{FFFD}\u{FFFD} ERROR in bad bytes \u{FFFD}");
    mon.stop().await;
}

#[tokio::test]
async fn logs_glob_picks_up_files_created_later() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.log");
    append(&a, b"old ERROR in a\n");
    append(&dir.path().join("ignored.txt"), b"");
    let glob = format!("{}/*.log", dir.path().display());
    let files = vec![LogFile { service: Some("app".into()), path: glob }];
    let mut mon = Monitor::start(files, default_patterns(), false);
    mon.prime(&a).await;

    let b = dir.path().join("b.log");
    append(&b, b"ERROR in b, written before it was found\n");
    let m = mon.next_finding().await;
    assert_eq!((m.line.as_str(), m.path.as_path()), ("ERROR in b, written before it was found", b.as_path()));
    append(&dir.path().join("ignored.txt"), b"ERROR not a log\n");
    append(&a, b"new ERROR in a\n");
    let m = mon.next_finding().await;
    assert_eq!((m.line.as_str(), m.path.as_path()), ("new ERROR in a", a.as_path()));
    mon.assert_quiet().await;
    mon.stop().await;
}

#[tokio::test]
async fn logs_glob_rotation_to_a_matching_name_is_not_read_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, b"");
    let glob = format!("{}/app.log*", dir.path().display());
    let mut mon = Monitor::start(vec![LogFile { service: None, path: glob }], default_patterns(), false);
    mon.prime(&path).await;

    append(&path, b"ERROR 1\n");
    assert_eq!(mon.next_finding().await.line, "ERROR 1");
    fs::rename(&path, dir.path().join("app.log.1")).unwrap();
    append(&dir.path().join("app.log.1"), b"ERROR 2\n");
    append(&path, b"ERROR 3\n");
    let mut seen = vec![mon.next_finding().await.line, mon.next_finding().await.line];
    seen.sort();
    assert_eq!(seen, ["ERROR 2", "ERROR 3"]);
    mon.assert_quiet().await;
    mon.stop().await;
}

#[tokio::test]
async fn logs_service_scoped_pattern_and_line_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (api, db) = (dir.path().join("api.log"), dir.path().join("db.log"));
    append(&api, b"");
    append(&db, b"");
    let mut patterns = default_patterns();
    patterns.push(pattern("api-slow", "slow request", Severity::Critical, Some("api")));
    let rules = Arc::new(
        RuleSet::new(&patterns)
            .unwrap()
            .with_rule(Arc::new(Contains::new("db-only", Severity::Info, ["checkpoint"])), Some("db".into())),
    );
    let mut mon = Monitor::start_with(vec![file(Some("api"), &api), file(Some("db"), &db)], rules, false);
    mon.prime(&api).await;
    mon.prime(&db).await;
    let (api_before, db_before) = (mon.inner.counts.lines("api"), mon.inner.counts.lines("db"));

    append(&db, b"slow request to db, checkpoint\n");
    let m = mon.next_finding().await;
    assert_eq!((m.rule.as_str(), m.service.as_deref()), ("db-only", Some("db")));
    append(&api, b"slow request to api, checkpoint\nfine\n");
    let m = mon.next_finding().await;
    assert_eq!((m.rule.as_str(), m.severity, m.service.as_deref()), ("api-slow", Severity::Critical, Some("api")));
    mon.assert_quiet().await;

    assert_eq!(mon.inner.counts.lines("api") - api_before, 2);
    assert_eq!(mon.inner.counts.lines("db") - db_before, 1);
    assert_eq!(mon.inner.counts.lines("nope"), 0);
    mon.stop().await;
}

#[tokio::test]
async fn logs_monitor_stops_when_the_receiver_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let mut mon = Monitor::start(vec![file(None, &path)], default_patterns(), true);
    append(&path, b"ERROR\n");
    mon.next_finding().await;
    let Monitor { rx, stop: _stop, inner } = mon;
    drop(rx);
    append(&path, b"ERROR\n");
    timeout(WAIT, inner.task).await.expect("ends once it has a match to send").unwrap();
}

/// A reload reconfigures the running monitor: a file kept goes on from where it was (nothing read twice, nothing
/// skipped, a half line kept), a new pattern applies, an added file starts at its end, a dropped file is let go,
/// and line counts of a kept service go on.
#[tokio::test]
async fn logs_reconfigure_keeps_positions_and_applies_new_rules_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let (kept, added, dropped) =
        (dir.path().join("kept.log"), dir.path().join("added.log"), dir.path().join("gone.log"));
    append(&added, b"old ERROR in the added file, before it was added\n");
    let mut mon =
        Monitor::start(vec![file(Some("app"), &kept), file(Some("old"), &dropped)], default_patterns(), false);
    mon.prime(&kept).await;
    mon.prime(&dropped).await;
    append(&kept, b"first ERROR\nhalf a WARN");
    assert_eq!(mon.next_finding().await.line, "first ERROR");
    mon.assert_quiet().await;
    let counted = mon.inner.counts.lines("app");

    let mut patterns = default_patterns();
    patterns.push(pattern("warn", "WARN", Severity::Info, None));
    let settings = LogsSettings {
        files: vec![file(Some("app"), &kept), file(Some("new"), &added)],
        poll_interval: Duration::from_millis(20),
        ..LogsSettings::default()
    };
    mon.inner.reconfigure(settings, Arc::new(RuleSet::new(&patterns).expect("patterns compile")));
    mon.prime(&added).await;

    // The kept file: the half line ends and is matched by the new rule; the earlier line is not read again.
    append(&kept, b"ING after the reload\n");
    let m = mon.next_finding().await;
    assert_eq!((m.rule.as_str(), m.line.as_str()), ("warn", "half a WARNING after the reload"));
    mon.assert_quiet().await;
    // The dropped file is no longer read; the added one is, from where it was when added.
    append(&dropped, b"ERROR nobody reads\n");
    append(&added, b"fresh ERROR\n");
    let m = mon.next_finding().await;
    assert_eq!((m.path.as_path(), m.line.as_str()), (added.as_path(), "fresh ERROR"));
    mon.assert_quiet().await;
    assert!(mon.inner.counts.lines("app") > counted, "the kept service's count goes on");
    assert!(mon.inner.counts.get("new").is_some_and(|n| n >= 2));
    assert_eq!(mon.inner.counts.get("old"), None, "a service without files is forgotten");
    mon.stop().await;
}
