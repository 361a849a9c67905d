//! The WASM policy host: the only crate of Aegis that touches wasmtime.
//!
//! It owns one [`wasmtime::Engine`] per process, discovers policy components in the plugin directory, checks which
//! world each one implements, and adapts them to the policy traits of `aegis-core`, so the supervisor never knows
//! whether it got a built-in policy or a plugin. Every call runs in a sandbox: an epoch deadline, a memory cap, and
//! no WASI capability (files, environment, sockets) at all. A plugin that traps or misses its deadline is replaced
//! by the built-in policy for that decision and gets a fresh instance next time; a plugin that keeps failing is
//! quarantined (see [`QuarantinePolicy`]) and its call counters are available from [`PluginHost::stats`].

mod alert;
mod anomaly;
mod binding;
mod bindings;
pub mod boundary;
mod cache;
mod command;
mod epoch;
mod error;
mod host;
mod log_rule;
mod manifest;
mod quarantine;
mod recovery;
mod sandbox;
mod shared;
mod trip;

pub use alert::{MAX_BODY, WasmAlertFormatter};
pub use anomaly::WasmAnomalyScorer;
pub use binding::HandOff;
pub use cache::CacheOutcome;
pub use command::{CommandError, run_command};
pub use error::PluginError;
pub use host::{LoadReport, PluginHost, PluginInfo, PluginKind, ReloadReport, SHADOW_SUFFIX, shadow_name};
pub use log_rule::{MAX_RULE_NAME, MAX_RULE_NAMES, WasmLogRule};
pub use manifest::Capabilities;
pub use quarantine::{CallResult, EventListener, PluginEvent, PluginStats, QuarantinePolicy};
pub use recovery::{MAX_WAIT, MIN_WAIT, WasmRecoveryStrategy};
pub use sandbox::SandboxLimits;
pub use shared::SEATS as SHARED_SEATS;
pub use trip::WasmTripPredicate;

/// The WIT package version this host implements.
pub const WIT_PACKAGE: &str = "aegis:policy";
pub const WIT_VERSION: &str = "0.1.0";

/// The service a policy decision is about, as plugins see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceInfo {
    pub name: String,
    /// Probe kind: "http", "tcp", "grpc" or "script".
    pub kind: String,
    pub endpoint: String,
}

impl From<ServiceInfo> for bindings::types::ServiceInfo {
    fn from(s: ServiceInfo) -> Self {
        bindings::types::ServiceInfo { name: s.name, kind: s.kind, endpoint: s.endpoint }
    }
}

fn severity_to_wit(s: aegis_core::policy::Severity) -> bindings::types::Severity {
    use aegis_core::policy::Severity;
    match s {
        Severity::Info => bindings::types::Severity::Info,
        Severity::Warning => bindings::types::Severity::Warning,
        Severity::Critical => bindings::types::Severity::Critical,
    }
}

fn severity_from_wit(s: bindings::types::Severity) -> aegis_core::policy::Severity {
    use aegis_core::policy::Severity;
    match s {
        bindings::types::Severity::Info => Severity::Info,
        bindings::types::Severity::Warning => Severity::Warning,
        bindings::types::Severity::Critical => Severity::Critical,
    }
}
