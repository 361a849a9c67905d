//! The Aegis supervisor runtime: config, scheduler, probes, recovery actions, metrics and the admin API. The only
//! crate of the host that does network, process or file I/O.

pub mod action;
pub mod admin;
pub mod alerts;
pub mod anomaly;
mod binding;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod error;
pub mod history;
pub mod lanes;
pub mod logs;
pub mod metrics;
mod off_worker;
pub mod probe;
pub mod process;
pub mod redact;
pub mod reload;
pub mod state;
pub mod store;
pub mod supervisor;
pub mod systemd;

pub use config::Config;

pub(crate) use clock::unix_ms;

/// [`unix_ms`] as SQLite's integer.
pub(crate) fn unix_ms_i64() -> i64 {
    i64::try_from(unix_ms()).unwrap_or(i64::MAX)
}
pub use error::{ConfigError, RuntimeError};
pub use supervisor::Supervisor;
