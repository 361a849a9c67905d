//! The log-monitor task: polls every configured file on tokio's blocking pool, matches each new line against the
//! [`RuleSet`], sends a [`LogMatch`] per finding and counts lines per service. Owns the polling loop, backpressure
//! (a full channel pauses reading; unread lines wait in the files, not in memory) and stopping.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use aegis_core::policy::Severity;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::lines::Line;
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

/// Lines read per service since the monitor started, for log-throughput anomaly detection. Lock-free to read.
#[derive(Debug, Default)]
pub struct LineCounts {
    by_service: BTreeMap<String, AtomicU64>,
}

impl LineCounts {
    fn new<'a>(services: impl IntoIterator<Item = &'a str>) -> LineCounts {
        LineCounts { by_service: services.into_iter().map(|s| (s.to_owned(), AtomicU64::new(0))).collect() }
    }

    /// Lines read from `service`'s files so far; 0 for a service with no log file.
    pub fn lines(&self, service: &str) -> u64 {
        self.by_service.get(service).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Every service with a log file and its count.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        self.by_service.iter().map(|(s, c)| (s.clone(), c.load(Ordering::Relaxed))).collect()
    }

    fn add(&self, service: &str, lines: u64) {
        if let Some(c) = self.by_service.get(service) {
            c.fetch_add(lines, Ordering::Relaxed);
        }
    }
}

/// A running log monitor.
#[derive(Debug)]
pub struct LogMonitor {
    /// Ends when stop is requested (or its sender dropped) or when the match receiver is dropped.
    pub task: JoinHandle<()>,
    pub counts: Arc<LineCounts>,
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
    let start = if settings.from_start { StartAt::Start } else { StartAt::End };
    let files = settings
        .files
        .iter()
        .map(|f| File { service: f.service.clone(), source: Source::new(&f.path, start, settings.max_line_bytes) })
        .collect();
    let poller = Poller { files, rules, counts: Arc::clone(&counts) };
    let interval = settings.poll_interval.max(MIN_POLL_INTERVAL);
    LogMonitor { task: tokio::spawn(run(poller, interval, sink, stop)), counts }
}

async fn run(mut poller: Poller, interval: Duration, sink: mpsc::Sender<LogMatch>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
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
    source: Source,
}

/// Everything one poll needs; moved to a blocking thread for each poll and back.
struct Poller {
    files: Vec<File>,
    rules: Arc<RuleSet>,
    counts: Arc<LineCounts>,
}

impl Poller {
    /// Polls every file once: the matches found, and whether some file has more to read right away.
    fn poll(&mut self) -> (Vec<LogMatch>, bool) {
        let at = SystemTime::now();
        let mut found = Vec::new();
        let mut pending = false;
        for file in &mut self.files {
            let service = file.service.as_deref();
            let mut lines = 0;
            let rules = &self.rules;
            pending |= file.source.poll(POLL_BUDGET, &mut |path: &Path, line: Line<'_>| {
                lines += 1;
                let text = String::from_utf8_lossy(line.bytes);
                let matches = rules.matches(service, &path.to_string_lossy(), &text);
                if matches.is_empty() {
                    return;
                }
                let excerpt = excerpt(&text, line.cut);
                found.extend(matches.into_iter().map(|m| LogMatch {
                    rule: m.rule,
                    severity: m.severity,
                    description: m.description,
                    service: m.service,
                    path: path.to_owned(),
                    line: excerpt.clone(),
                    at,
                }));
            });
            if let Some(service) = service
                && lines > 0
            {
                self.counts.add(service, lines);
            }
        }
        (found, pending)
    }
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
    fn line_counts_ignore_unknown_services() {
        let counts = LineCounts::new(["api"]);
        counts.add("api", 3);
        counts.add("other", 5);
        assert_eq!(counts.lines("api"), 3);
        assert_eq!(counts.lines("other"), 0);
        assert_eq!(counts.snapshot(), vec![("api".to_owned(), 3)]);
    }
}
