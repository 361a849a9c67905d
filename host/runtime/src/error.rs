//! Errors of the runtime. Config errors name the file, the line and column where known, and the field.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read { file: PathBuf, source: std::io::Error },

    /// YAML syntax errors, unknown keys and mistyped values, located by the parser.
    #[error("{file}:{line}:{column}: {message}")]
    Parse { file: PathBuf, line: usize, column: usize, message: String },

    /// A value that parsed but makes no sense (zero thresholds, bad URLs, duplicate names).
    #[error("{file}: {field}: {message}")]
    Invalid { file: PathBuf, field: String, message: String },
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Config(#[from] ConfigError),

    #[error("plugins: {0}")]
    Plugin(#[from] aegis_plugin::PluginError),

    #[error("service `{service}`: {message}")]
    Service { service: String, message: String },

    #[error("admin API: cannot listen on {address}: {source}")]
    Bind { address: String, source: std::io::Error },

    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),

    #[error(transparent)]
    Store(#[from] crate::store::StoreError),

    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
}
