//! The Aegis supervisor runtime: config, scheduler, probes, recovery actions, metrics and the admin API. The only
//! crate of the host that does network, process or file I/O.

pub mod action;
pub mod admin;
pub mod alerts;
pub mod anomaly;
mod binding;
pub mod config;
pub mod error;
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

/// Milliseconds since the Unix epoch (0 before it): the time base of events, restarts, alerts and the store.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// [`unix_ms`] as SQLite's integer.
pub(crate) fn unix_ms_i64() -> i64 {
    i64::try_from(unix_ms()).unwrap_or(i64::MAX)
}
pub use error::{ConfigError, RuntimeError};
pub use supervisor::Supervisor;
