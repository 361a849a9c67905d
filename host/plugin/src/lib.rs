//! The WASM policy host: the only crate of Aegis that touches wasmtime.
//!
//! It owns one [`wasmtime::Engine`] per process, discovers policy components in the plugin directory, checks which
//! world each one implements, and adapts them to the policy traits of `aegis-core`, so the supervisor never knows
//! whether it got a built-in policy or a plugin. Every call runs in a sandbox: an epoch deadline, a memory cap, and
//! no WASI capability (files, environment, sockets) at all. A plugin that traps or misses its deadline is replaced
//! by the built-in policy for that decision and gets a fresh instance next time.

mod bindings;
mod error;
mod host;
mod sandbox;
mod trip;

pub use error::PluginError;
pub use host::{LoadReport, PluginHost, PluginInfo, PluginKind};
pub use sandbox::SandboxLimits;
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
