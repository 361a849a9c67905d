//! Errors of the log settings, each naming the entry (index and name or path) at fault; the config layer prefixes
//! the file. Runtime I/O problems (a missing or unreadable log) are never errors: the tailer logs them and retries.

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("patterns[{index}] (`{name}`): invalid regex: {source}")]
    Pattern { index: usize, name: String, source: regex::Error },

    /// Each pattern compiles on its own, but all of them together exceed the regex size limit.
    #[error("patterns: the {count} patterns together are too large to compile: {source}")]
    PatternsTooLarge { count: usize, source: regex::Error },

    #[error("files[{index}]: empty path")]
    EmptyPath { index: usize },

    #[error("files[{index}] (`{path}`): invalid glob: {source}")]
    Glob { index: usize, path: String, source: glob::PatternError },
}
