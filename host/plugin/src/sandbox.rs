//! Per-call sandbox: the store data every plugin instance runs with, its resource limits and its (empty) WASI
//! context. Nothing here grants a capability: no preopened directory, no environment, no stdio, no sockets, and
//! clocks that stand still.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{FsPerms, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

use crate::binding::plain_text;
use crate::bindings::trip::aegis::policy::host;
use crate::bindings::types::LogLevel;
use crate::epoch::EPOCH_TICK;
use crate::manifest::Capabilities;

/// Longest log line a plugin may write; the rest is cut so a plugin cannot flood the host's log.
const MAX_LOG_LINE: usize = 4096;

/// Log lines a plugin may write per call (and during instantiation); further lines are dropped with one warning.
const MAX_LOG_LINES_PER_CALL: u32 = 64;

/// Fuel a call made in place on an async worker (`Binding::call_off_worker`, see [`crate::binding`]) burns before it
/// is cut off and handed off: two million WebAssembly operations, 0.35 to 0.8 ms of a runaway loop on this machine
/// kind, against the few thousand a policy's decision takes. Fuel, not the epoch, so that deciding in place needs no
/// ticker thread waking a thousand times a second (see [`crate::epoch`]).
pub(crate) const SLICE_FUEL: u64 = 2_000_000;

/// Epoch ticks that also end a call in place, should the ticker be running for another call meanwhile: 1 to 2 ms.
pub(crate) const FIRST_SLICE_TICKS: u64 = 2;

/// Fuel of a store whose calls are bounded by their deadline alone: more than any call could burn in a lifetime.
pub(crate) const UNMETERED: u64 = u64::MAX >> 2;

/// Limits applied to every plugin call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Wall-clock budget of one call (rounded up to whole epoch ticks).
    pub deadline: Duration,
    /// Cap on a plugin instance's linear memory.
    pub memory_bytes: usize,
    /// Cap on instances, tables and memories a plugin may create.
    pub instances: usize,
    pub tables: usize,
    pub table_elements: usize,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            deadline: Duration::from_millis(10),
            memory_bytes: 16 << 20,
            instances: 16,
            tables: 16,
            table_elements: 20_000,
        }
    }
}

impl SandboxLimits {
    pub(crate) fn deadline_ticks(&self) -> u64 {
        let tick = EPOCH_TICK.as_nanos().max(1);
        u64::try_from(self.deadline.as_nanos().div_ceil(tick)).unwrap_or(u64::MAX).max(1)
    }
}

/// What a plugin's store holds.
pub(crate) struct StoreData {
    plugin: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    log_lines: u32,
}

impl StoreData {
    /// Gives the plugin a fresh log budget for the next call.
    pub(crate) fn reset_log_budget(&mut self) {
        self.log_lines = 0;
    }
}

impl std::fmt::Debug for StoreData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreData").field("plugin", &self.plugin).finish_non_exhaustive()
    }
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl host::Host for StoreData {
    fn log(&mut self, level: LogLevel, message: String) {
        self.log_lines = self.log_lines.saturating_add(1);
        if self.log_lines > MAX_LOG_LINES_PER_CALL {
            if self.log_lines == MAX_LOG_LINES_PER_CALL + 1 {
                tracing::warn!(
                    plugin = &*self.plugin,
                    "plugin wrote more than {MAX_LOG_LINES_PER_CALL} log lines in one call; dropping the rest"
                );
            }
            return;
        }
        let message = plain_text(message, MAX_LOG_LINE);
        let plugin = &*self.plugin;
        match level {
            LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            LogLevel::Info => tracing::info!(plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

impl crate::bindings::types::Host for StoreData {}

/// Both clocks of a plugin without the `clocks` capability: they read zero (the Unix epoch) and never move, so a
/// plugin learns the time only from what the host passes in. A plugin that waits on them is stopped by its deadline.
struct StoppedClock;

impl HostWallClock for StoppedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for StoppedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
    }
}

/// A fresh store for one plugin instance, with the limits applied, the granted capabilities (usually none) in its
/// WASI context, the deadline armed for the first call and no fuel meter. Fails only if a granted directory cannot
/// be opened (or the engine does not count fuel, which the plugin host's always does).
pub(crate) fn new_store(
    engine: &Engine,
    plugin: Arc<str>,
    limits: &SandboxLimits,
    capabilities: &Capabilities,
) -> wasmtime::Result<Store<StoreData>> {
    let mut wasi = WasiCtx::builder();
    if capabilities.stderr {
        wasi.inherit_stderr();
    }
    if !capabilities.clocks {
        wasi.wall_clock(StoppedClock).monotonic_clock(StoppedClock);
    }
    for var in &capabilities.env {
        if let Ok(value) = std::env::var(var) {
            wasi.env(var, value);
        }
    }
    for dir in &capabilities.read_dirs {
        let guest = dir.to_string_lossy();
        wasi.preopened_dir(dir, guest.as_ref(), FsPerms::ReadOnly)
            .map_err(|e| e.context(format!("cannot open granted directory {}", dir.display())))?;
    }
    let data = StoreData {
        plugin,
        wasi: wasi.build(),
        table: ResourceTable::new(),
        limits: StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes)
            .instances(limits.instances)
            .tables(limits.tables)
            .table_elements(limits.table_elements)
            .memories(limits.instances)
            .trap_on_grow_failure(true)
            .build(),
        log_lines: 0,
    };
    let mut store = Store::new(engine, data);
    store.limiter(|d| &mut d.limits);
    store.set_epoch_deadline(limits.deadline_ticks());
    // Only a call in place on an async worker is metered (see [`SLICE_FUEL`]); everything else is bounded
    // by its deadline.
    store.set_fuel(UNMETERED)?;
    Ok(store)
}
