//! The Aegis supervisor runtime: config, scheduler, probes, recovery actions, metrics and the admin API. The only
//! crate of the host that does network, process or file I/O.

pub mod action;
pub mod admin;
pub mod alerts;
pub mod anomaly;
pub mod config;
pub mod error;
pub mod logs;
pub mod metrics;
pub mod probe;
pub mod process;
pub mod store;
pub mod supervisor;

pub use config::Config;
pub use error::{ConfigError, RuntimeError};
pub use supervisor::Supervisor;
