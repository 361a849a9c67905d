//! Log monitoring: follows service log files like `tail -F` and matches every new line against pattern rules.
//!
//! Owns the domain types of the `logs:` settings (the YAML wire format is parsed and converted by `config`) and the
//! engine: [`RuleSet`] (built-in regex patterns plus plugin [`LogRule`](aegis_core::policy::LogRule)s), [`Tailer`]
//! (one file: rotation, truncation, partial and over-long lines) and [`spawn`] (the task that follows every
//! configured file and sends a [`LogMatch`] per finding). It decides nothing about alerts or restarts: matches go to
//! the caller's channel, and per-service line counts to whoever computes throughput.
//!
//! - `error.rs`: [`LogsError`], invalid patterns and paths.
//! - `rules.rs`: [`RuleSet`], the compiled patterns.
//! - `filter.rs`: the whole-buffer prefilter of the patterns, sound for line-by-line semantics.
//! - `lines.rs`: [`LineSplitter`], splitting bytes into [`Line`]s and runs of lines for a [`LineSink`] (pure).
//! - `tailer.rs`: [`Tailer`], following one path.
//! - `source.rs`: one configured file, a path or a glob, as a set of tailers.
//! - `task.rs`: [`spawn`], [`scan_line`] (one line through the rules), [`LineScan`] (lines of files through the
//!   rules, as the monitor reads them), [`LogMatch`] and [`LineCounts`].

mod error;
mod filter;
mod lines;
mod rules;
mod source;
mod tailer;
mod task;

pub use error::LogsError;
pub use lines::{AtPath, FileSink, Line, LineSink, LineSplitter};
pub use rules::{RuleMatch, RuleSet};
pub use tailer::{FileId, StartAt, Tailer};
pub use task::{LineCounts, LineScan, LogMatch, LogMonitor, MAX_EVENT_LINE_CHARS, count_lines, scan_line, spawn};

use std::time::Duration;

use aegis_core::policy::Severity;

/// How often files are checked for new lines when nothing is given.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// The longest line kept whole when nothing is given; longer lines are cut.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 << 10;

/// The `logs:` section, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogsSettings {
    pub files: Vec<LogFile>,
    pub patterns: Vec<Pattern>,
    /// Pause between two reads of the files.
    pub poll_interval: Duration,
    /// Lines longer than this are cut to this many bytes (and marked); the rest of the line is skipped.
    pub max_line_bytes: usize,
    /// Read files that exist at start from their beginning instead of their end. Files that appear later are always
    /// read from their beginning.
    pub from_start: bool,
}

impl Default for LogsSettings {
    fn default() -> Self {
        LogsSettings {
            files: Vec::new(),
            patterns: Vec::new(),
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            from_start: false,
        }
    }
}

impl LogsSettings {
    /// Checks what [`spawn`] cannot report itself: every file path is non-empty and every glob is well-formed.
    /// Patterns are checked by [`RuleSet::new`].
    pub fn validate(&self) -> Result<(), LogsError> {
        for (index, file) in self.files.iter().enumerate() {
            if file.path.is_empty() {
                return Err(LogsError::EmptyPath { index });
            }
            if source::is_glob(&file.path) {
                glob::Pattern::new(&file.path).map_err(|source| LogsError::Glob {
                    index,
                    path: file.path.clone(),
                    source,
                })?;
            }
        }
        Ok(())
    }
}

/// A log file to follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFile {
    /// The service whose log this is: its lines count towards its throughput and service-scoped patterns apply.
    pub service: Option<String>,
    /// A path, or a glob (`/var/log/app/*.log`) re-expanded at every poll.
    pub path: String,
}

/// A built-in rule: a line matching `regex` is a finding of `severity`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    pub name: String,
    /// Rust `regex` syntax, e.g. `(?i)out of memory`.
    pub regex: String,
    pub severity: Severity,
    pub description: Option<String>,
    /// Only lines of this service's files are matched; `None` matches every file.
    pub service: Option<String>,
}
