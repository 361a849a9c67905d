//! The log-monitor task: polls every configured file on tokio's blocking pool, matches each new line against the
//! [`RuleSet`], sends a [`LogMatch`] per finding and counts lines per service. Owns the polling loop, backpressure
//! (a full channel pauses reading; unread lines wait in the files, not in memory) and stopping.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime};

use aegis_core::policy::Severity;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::lines::{FileSink, Line};
use super::source::Source;
use super::tailer::StartAt;
use super::{LogsSettings, RuleSet};

/// Longest line excerpt carried by a [`LogMatch`], in characters.
pub const MAX_EVENT_LINE_CHARS: usize = 512;

/// Bytes read from one file in one poll, so a large backlog is worked through in steps that keep a blocking thread
/// busy for milliseconds, with the stop signal and the channel checked in between.
const POLL_BUDGET: usize = 1 << 20;

/// Shortest pause between polls, whatever the settings say.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(1);

/// A rule matched a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogMatch {
    pub rule: String,
    pub severity: Severity,
    pub description: Option<String>,
    /// The service of the file the line came from.
    pub service: Option<String>,
    pub path: PathBuf,
    /// The line, decoded lossily, without its newline; cut to [`MAX_EVENT_LINE_CHARS`] characters. A line cut here
    /// or by `max_line_bytes` ends with `…`.
    pub line: String,
    /// When the line was read.
    pub at: SystemTime,
}

/// Lines read per service since the monitor started, for log-throughput anomaly detection. Lock-free to count;
/// the set of services changes only with a reload.
#[derive(Debug, Default)]
pub struct LineCounts {
    by_service: RwLock<BTreeMap<String, AtomicU64>>,
}

impl LineCounts {
    fn new<'a>(services: impl IntoIterator<Item = &'a str>) -> LineCounts {
        let counts = LineCounts::default();
        counts.follow(services);
        counts
    }

    fn map(&self) -> RwLockReadGuard<'_, BTreeMap<String, AtomicU64>> {
        self.by_service.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Lines read from `service`'s files so far; 0 for a service with no log file.
    pub fn lines(&self, service: &str) -> u64 {
        self.get(service).unwrap_or(0)
    }

    /// Lines read from `service`'s files so far; `None` for a service with no log file.
    pub fn get(&self, service: &str) -> Option<u64> {
        self.map().get(service).map(|c| c.load(Ordering::Relaxed))
    }

    /// Every service with a log file and its count.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        self.map().iter().map(|(s, c)| (s.clone(), c.load(Ordering::Relaxed))).collect()
    }

    fn add(&self, service: &str, lines: u64) {
        if let Some(c) = self.map().get(service) {
            c.fetch_add(lines, Ordering::Relaxed);
        }
    }

    /// Counts lines for exactly `services` from now on: a service that keeps a file keeps its count, a new one
    /// starts at 0, one without files any more is forgotten.
    fn follow<'a>(&self, services: impl IntoIterator<Item = &'a str>) {
        let wanted: BTreeSet<&str> = services.into_iter().collect();
        let mut map = self.by_service.write().unwrap_or_else(|p| p.into_inner());
        map.retain(|s, _| wanted.contains(s.as_str()));
        for s in wanted {
            map.entry(s.to_owned()).or_default();
        }
    }
}

/// What the monitor follows and matches; replaced as a whole by [`LogMonitor::reconfigure`].
#[derive(Clone, Debug)]
struct Setup {
    settings: LogsSettings,
    rules: Arc<RuleSet>,
}

/// A running log monitor.
#[derive(Debug)]
pub struct LogMonitor {
    /// Ends when stop is requested (or its sender dropped) or when the match receiver is dropped.
    pub task: JoinHandle<()>,
    pub counts: Arc<LineCounts>,
    setup: watch::Sender<Setup>,
}

impl LogMonitor {
    /// Follows `settings` and matches with `rules` from the next poll on (a reload). A file configured before and
    /// after (same path, same service) keeps its read position, so no line is read twice or skipped; a file added
    /// starts where a file present at start does (its end, or its start with `fromStart`); a file no longer
    /// configured is let go. Line counts of services that keep a file go on.
    pub fn reconfigure(&self, settings: LogsSettings, rules: Arc<RuleSet>) {
        self.counts.follow(settings.files.iter().filter_map(|f| f.service.as_deref()));
        self.setup.send_replace(Setup { settings, rules });
    }
}

/// Starts following `settings.files` (must be called within a tokio runtime). Matches are sent to `sink`; the task
/// ends when `stop` becomes `true` or its sender is dropped.
pub fn spawn(
    settings: LogsSettings,
    rules: Arc<RuleSet>,
    sink: mpsc::Sender<LogMatch>,
    stop: watch::Receiver<bool>,
) -> LogMonitor {
    let counts = Arc::new(LineCounts::new(settings.files.iter().filter_map(|f| f.service.as_deref())));
    let mut poller = Poller { files: Vec::new(), rules: Arc::clone(&rules), counts: Arc::clone(&counts) };
    poller.follow(&settings, start_at(&settings));
    let interval = settings.poll_interval.max(MIN_POLL_INTERVAL);
    let (setup, changes) = watch::channel(Setup { settings, rules });
    LogMonitor { task: tokio::spawn(run(poller, interval, changes, sink, stop)), counts, setup }
}

/// Where the files found at start (or added by a reload) are first read.
fn start_at(settings: &LogsSettings) -> StartAt {
    if settings.from_start { StartAt::Start } else { StartAt::End }
}

async fn run(
    mut poller: Poller,
    mut interval: Duration,
    mut setup: watch::Receiver<Setup>,
    sink: mpsc::Sender<LogMatch>,
    mut stop: watch::Receiver<bool>,
) {
    // False once the monitor's handle is gone: the setup can no longer change.
    let mut reconfigurable = true;
    // A new setup was announced while waiting (`changed()` marks it seen).
    let mut announced = false;
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if std::mem::take(&mut announced) || matches!(setup.has_changed(), Ok(true)) {
            let new = setup.borrow_and_update().clone();
            poller.rules = new.rules;
            poller.follow(&new.settings, start_at(&new.settings));
            interval = new.settings.poll_interval.max(MIN_POLL_INTERVAL);
        }
        let polled = tokio::task::spawn_blocking(move || {
            let polled = poller.poll();
            (poller, polled)
        })
        .await;
        let (found, pending);
        (poller, (found, pending)) = match polled {
            Ok(polled) => polled,
            Err(e) => {
                tracing::error!("log monitor stopped: {e}");
                return;
            }
        };
        for m in found {
            tokio::select! {
                sent = sink.send(m) => if sent.is_err() { return },
                () = stop_requested(&mut stop) => return,
            }
        }
        if pending {
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            changed = setup.changed(), if reconfigurable => {
                reconfigurable = changed.is_ok();
                announced = reconfigurable;
            }
            () = stop_requested(&mut stop) => return,
        }
    }
}

/// Resolves once stop is requested or can no longer be (its sender is gone).
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// A configured file and its service.
struct File {
    service: Option<String>,
    /// As configured: a path or a glob.
    path: String,
    source: Source,
}

/// Everything one poll needs; moved to a blocking thread for each poll and back.
struct Poller {
    files: Vec<File>,
    rules: Arc<RuleSet>,
    counts: Arc<LineCounts>,
}

impl Poller {
    /// Follows the files of `settings`: those already followed (same path and service) carry on from where they
    /// are, new ones start at `start`, the rest are let go.
    fn follow(&mut self, settings: &LogsSettings, start: StartAt) {
        let mut before = std::mem::take(&mut self.files);
        for f in &settings.files {
            let file = match before.iter().position(|b| b.path == f.path && b.service == f.service) {
                Some(i) => {
                    let mut kept = before.swap_remove(i);
                    kept.source.set_max_line_bytes(settings.max_line_bytes);
                    kept
                }
                None => File {
                    service: f.service.clone(),
                    path: f.path.clone(),
                    source: Source::new(&f.path, start, settings.max_line_bytes),
                },
            };
            self.files.push(file);
        }
        for gone in before {
            tracing::info!(path = %gone.path, "no longer following log file");
        }
    }

    /// Polls every file once: the matches found, and whether some file has more to read right away.
    fn poll(&mut self) -> (Vec<LogMatch>, bool) {
        let at = SystemTime::now();
        let mut found = Vec::new();
        let mut pending = false;
        for file in &mut self.files {
            let service = file.service.as_deref();
            let mut scan = LineScan::new(&self.rules, service, at);
            pending |= file.source.poll(POLL_BUDGET, &mut scan);
            if let Some(service) = service
                && scan.lines > 0
            {
                self.counts.add(service, scan.lines);
            }
            found.append(&mut scan.found);
        }
        (found, pending)
    }
}

/// The lines of one service's files through the rules, as the monitor reads them: counts them and collects a
/// [`LogMatch`] per matching rule ([`scan_line`]); runs of lines are searched at once ([`RuleSet::scan_run`]).
#[derive(Debug)]
pub struct LineScan<'a> {
    rules: &'a RuleSet,
    service: Option<&'a str>,
    at: SystemTime,
    pub lines: u64,
    pub found: Vec<LogMatch>,
}

impl<'a> LineScan<'a> {
    /// Lines read at `at`, of `service`'s files.
    pub fn new(rules: &'a RuleSet, service: Option<&'a str>, at: SystemTime) -> Self {
        LineScan { rules, service, at, lines: 0, found: Vec::new() }
    }
}

impl FileSink for LineScan<'_> {
    fn line(&mut self, path: &Path, line: Line<'_>) {
        self.lines += 1;
        self.found.extend(scan_line(self.rules, self.service, path, line, self.at));
    }

    fn run(&mut self, path: &Path, run: &[u8], max: usize) {
        self.lines += count_lines(run);
        let (rules, service, at, found) = (self.rules, self.service, self.at, &mut self.found);
        rules.scan_run(service, run, max, &mut |line| found.extend(scan_line(rules, service, path, line, at)));
    }
}

/// The `\n`s in `run`, counted in blocks a byte-sized sum vectorizes (several times faster than a plain count).
pub fn count_lines(run: &[u8]) -> u64 {
    run.chunks(255).map(|block| u64::from(block.iter().map(|b| u8::from(*b == b'\n')).sum::<u8>())).sum()
}

/// One line of `service`'s file `path` as the monitor handles it: decoded lossily (invalid UTF-8 becomes U+FFFD),
/// matched against `rules`, one [`LogMatch`] per matching rule carrying the line's excerpt. Allocates nothing for a
/// line that matches nothing.
pub fn scan_line(rules: &RuleSet, service: Option<&str>, path: &Path, line: Line<'_>, at: SystemTime) -> Vec<LogMatch> {
    let text = String::from_utf8_lossy(line.bytes);
    let matches = rules.matches(service, &path.to_string_lossy(), &text);
    if matches.is_empty() {
        return Vec::new();
    }
    let excerpt = excerpt(&text, line.cut);
    matches
        .into_iter()
        .map(|m| LogMatch {
            rule: m.rule,
            severity: m.severity,
            description: m.description,
            service: m.service,
            path: path.to_owned(),
            line: excerpt.clone(),
            at,
        })
        .collect()
}

/// The line as carried by an event: at most [`MAX_EVENT_LINE_CHARS`] characters, `…` marking a cut.
fn excerpt(text: &str, cut: bool) -> String {
    match text.char_indices().nth(MAX_EVENT_LINE_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None if cut => format!("{text}…"),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_cuts_at_a_char_boundary_and_marks_cuts() {
        assert_eq!(excerpt("short", false), "short");
        assert_eq!(excerpt("short", true), "short…");
        let long = "é".repeat(MAX_EVENT_LINE_CHARS + 10);
        let e = excerpt(&long, false);
        assert_eq!(e.chars().count(), MAX_EVENT_LINE_CHARS + 1);
        assert!(e.ends_with('…'));
    }

    #[test]
    fn line_counts_follow_a_new_set_of_services() {
        let counts = LineCounts::new(["api", "db"]);
        counts.add("api", 3);
        counts.add("db", 1);
        counts.follow(["api", "web"]);
        assert_eq!(counts.snapshot(), vec![("api".to_owned(), 3), ("web".to_owned(), 0)]);
        assert_eq!(counts.get("db"), None);
    }

    #[test]
    fn line_counts_ignore_unknown_services() {
        let counts = LineCounts::new(["api"]);
        counts.add("api", 3);
        counts.add("other", 5);
        assert_eq!(counts.lines("api"), 3);
        assert_eq!(counts.lines("other"), 0);
        assert_eq!(counts.snapshot(), vec![("api".to_owned(), 3)]);
    }
}
