//! Plugin discovery and the process-wide engine: loads every `*.wasm` of a directory, detects the policy world each
//! component implements from its exports, and keeps a pre-linked `InstancePre` per plugin for cheap instantiation.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use crate::binding::error_chain;
use crate::bindings::{alert, anomaly, log_rule, recovery, trip, trip_shared};
use crate::cache::{Cache, CacheOutcome};
use crate::epoch::{Epoch, EpochTicker};
use crate::error::PluginError;
use crate::manifest::{self, Capabilities};
use crate::quarantine::{EventListener, Listeners, PluginHealth, PluginStats, QuarantinePolicy};
use crate::sandbox::{SandboxLimits, StoreData, new_store};
use crate::shared::SharedPool;
use crate::{WIT_PACKAGE, WIT_VERSION};

/// The five decisions a plugin can take over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PluginKind {
    TripPredicate,
    RecoveryStrategy,
    LogRule,
    AnomalyScorer,
    AlertFormatter,
}

impl PluginKind {
    pub const ALL: [PluginKind; 5] = [
        PluginKind::TripPredicate,
        PluginKind::RecoveryStrategy,
        PluginKind::LogRule,
        PluginKind::AnomalyScorer,
        PluginKind::AlertFormatter,
    ];

    /// The WIT interface (and config name) of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::TripPredicate => "trip-predicate",
            PluginKind::RecoveryStrategy => "recovery-strategy",
            PluginKind::LogRule => "log-rule",
            PluginKind::AnomalyScorer => "anomaly-scorer",
            PluginKind::AlertFormatter => "alert-formatter",
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the host knows about a loaded plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginInfo {
    /// The file stem: `plugins/window-trip.wasm` is `window-trip`.
    pub name: String,
    pub kind: PluginKind,
    pub path: PathBuf,
    pub size_bytes: u64,
    /// Whether it came from the precompile cache.
    pub compiled: CacheOutcome,
    /// The version its manifest declares, if it has one.
    pub version: Option<String>,
    /// What its manifest asks for (and the operator granted); empty without a manifest.
    pub capabilities: Capabilities,
}

/// A typed, pre-linked component, ready to instantiate. Loading type-checks every kind against its world.
pub(crate) enum Pre {
    Trip(trip::TripPredicatePluginPre<StoreData>),
    Recovery(recovery::RecoveryStrategyPluginPre<StoreData>),
    LogRule(log_rule::LogRulePluginPre<StoreData>),
    Anomaly(anomaly::AnomalyScorerPluginPre<StoreData>),
    Alert(alert::AlertFormatterPluginPre<StoreData>),
}

pub(crate) struct Compiled {
    pub(crate) info: PluginInfo,
    pub(crate) pre: Pre,
    /// The `trip-predicates` form of a trip predicate that exports it.
    shared: Option<trip_shared::TripPredicatesPluginPre<StoreData>>,
    default_config: Vec<(String, String)>,
    digest: [u8; 32],
}

/// A registered plugin version: its compiled form and the quarantine record shared by all its bindings.
pub(crate) struct Loaded {
    pub(crate) info: PluginInfo,
    pub(crate) pre: Pre,
    /// The shards of a trip predicate that serves many bindings per instance (see [`crate::shared`]); its bindings
    /// then never instantiate `pre`.
    pub(crate) shared: Option<SharedPool>,
    pub(crate) health: Arc<PluginHealth>,
    /// The manifest's config defaults, under each binding's config.
    pub(crate) default_config: Vec<(String, String)>,
    /// sha256 of the `.wasm` and its manifest, to tell a changed plugin from a touched file on reload.
    digest: [u8; 32],
    /// Set once a call of this version, run in place on an async worker, reached a WASI function that blocks on an
    /// async runtime (a write to stdout or stderr such as a panic message, a sleep, a file read): such a function
    /// cannot run on a worker, so every later call of this version goes straight to its hand-off (see
    /// [`crate::binding::Binding::call_off_worker`]).
    pub(crate) blocks_on_wasi: AtomicBool,
}

/// The current version of a named plugin. Bindings hold the slot, so a reload reaches them at their next call; a
/// removed plugin leaves an empty slot (its bindings use their built-in policy).
#[derive(Default)]
pub(crate) struct PluginSlot {
    current: RwLock<Option<Arc<Loaded>>>,
    /// Bumped (under the write lock) whenever `current` changes, so a binding checks for a reload with one load
    /// instead of taking the lock and cloning the `Arc` at every call.
    version: AtomicU64,
}

impl PluginSlot {
    pub(crate) fn current(&self) -> Option<Arc<Loaded>> {
        self.versioned().1
    }

    /// The current version and the number that names it ([`Self::version`] returns it until the next change).
    pub(crate) fn versioned(&self) -> (u64, Option<Arc<Loaded>>) {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        (self.version.load(Ordering::Acquire), current.clone())
    }

    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    fn set(&self, loaded: Option<Arc<Loaded>>) {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        *current = loaded;
        self.version.fetch_add(1, Ordering::Release);
    }
}

/// What a [`PluginHost::reload_dir`] changed, by plugin name. Failed files keep their previous version running.
#[derive(Debug, Default)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
    pub failed: Vec<PluginError>,
}

/// Outcome of scanning a plugin directory: what loaded and what was skipped, with why.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub loaded: Vec<PluginInfo>,
    pub failed: Vec<PluginError>,
}

/// The process-wide plugin host.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<StoreData>,
    limits: SandboxLimits,
    quarantine: QuarantinePolicy,
    cache: Option<Cache>,
    grants: RwLock<BTreeMap<String, Capabilities>>,
    plugins: RwLock<BTreeMap<String, Arc<PluginSlot>>>,
    /// Quarantine records by plugin name, and by [`shadow_name`] for the plugin's shadow bindings; they outlive
    /// reloads so the call counters stay monotonic.
    health: Mutex<BTreeMap<String, Arc<PluginHealth>>>,
    listeners: Arc<Listeners>,
    ticker: EpochTicker,
}

impl fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginHost")
            .field("limits", &self.limits)
            .field("plugins", &self.plugins().iter().map(|p| p.name.clone()).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Plugin instances alive at once: one per bound policy (a service's recovery strategy, scorer; a log source's rule;
/// the alert formatter; a service's trip predicate unless the plugin shares instances, one per
/// [`crate::shared::SEATS`] services), plus the instance a reload or trap is replacing.
pub const POOLED_INSTANCES: u32 = 2048;

/// Bytes of a freed memory or table slot that are reset in place rather than handed back to the kernel, so the next
/// instance in the slot neither pays for `madvise` (and the TLB shootdown it sends to every core) nor page-faults the
/// pages in again. With Linux's `PAGEMAP_SCAN` (6.7+) only the pages the instance dirtied are reset; elsewhere this
/// much is zeroed with `memset`. It is also the most a warm slot keeps resident while unused.
const KEEP_RESIDENT: usize = 128 << 10;

/// Freed slots kept warm for reuse, which bounds what [`KEEP_RESIDENT`] can hold on to (a few MiB).
const WARM_SLOTS: u32 = 16;

/// The pooling allocator: slots for [`POOLED_INSTANCES`] components, each with a few core instances (a component
/// built by `wasm32-wasip2` has its module, the WASI adapter and shims), memories of at most the sandbox's memory
/// cap, and tables of at most its element cap. Slots are virtual reservations; only touched pages use memory.
fn pooling(limits: &SandboxLimits) -> wasmtime::InstanceAllocationStrategy {
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_component_instances(POOLED_INSTANCES)
        .total_core_instances(POOLED_INSTANCES * 4)
        .total_memories(POOLED_INSTANCES * 2)
        .total_tables(POOLED_INSTANCES * 4)
        .max_memories_per_module(2)
        .max_tables_per_module(4)
        .max_memory_size(limits.memory_bytes)
        .table_elements(limits.table_elements)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        .max_unused_warm_slots(WARM_SLOTS)
        .pagemap_scan(wasmtime::Enabled::Auto);
    wasmtime::InstanceAllocationStrategy::Pooling(pool)
}

impl PluginHost {
    pub fn new(limits: SandboxLimits) -> Result<Self, PluginError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        // A call in place on an async worker is bounded by fuel (`sandbox::SLICE_FUEL`), so that deciding in place
        // needs no epoch ticker; its cost is a counter update per basic block of plugin code.
        config.consume_fuel(true);
        // Component-model async bookkeeping costs ~0.7 µs a call and no policy needs it.
        config.concurrency_support(false);
        // A linear memory never grows past the sandbox cap, so reserve just that (and a small guard) instead of
        // wasmtime's 4 GiB + 32 MiB per memory: it keeps thousands of pooled slots within a sane address range, at
        // the cost of explicit bounds checks.
        config.memory_reservation(u64::try_from(limits.memory_bytes).unwrap_or(u64::MAX));
        config.memory_guard_size(64 << 10);
        config.memory_reservation_for_growth(0);
        // Instances come from a pre-reserved pool (a fresh Store after every trap makes instantiation hot). When
        // the address space cannot be reserved (a tight `ulimit -v`), fall back to allocating on demand.
        let engine = match Engine::new(config.clone().allocation_strategy(pooling(&limits))) {
            Ok(engine) => engine,
            Err(e) => {
                tracing::warn!("pooling instance allocator unavailable ({e}); allocating plugin instances on demand");
                Engine::new(&config).map_err(PluginError::Engine)?
            }
        };

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(PluginError::Engine)?;
        trip::aegis::policy::host::add_to_linker::<_, HasSelf<StoreData>>(&mut linker, |d| d)
            .map_err(PluginError::Engine)?;
        trip::aegis::policy::types::add_to_linker::<_, HasSelf<StoreData>>(&mut linker, |d| d)
            .map_err(PluginError::Engine)?;

        let ticker = EpochTicker::start(engine.clone()).map_err(PluginError::EpochTicker)?;
        Ok(PluginHost {
            engine,
            linker,
            limits,
            quarantine: QuarantinePolicy::default(),
            cache: None,
            grants: RwLock::new(BTreeMap::new()),
            plugins: RwLock::new(BTreeMap::new()),
            health: Mutex::new(BTreeMap::new()),
            listeners: Arc::new(Listeners::default()),
            ticker,
        })
    }

    /// Replaces the quarantine policy; plugins loaded afterwards use it (call it before loading).
    pub fn with_quarantine(mut self, policy: QuarantinePolicy) -> Self {
        self.quarantine = policy;
        self
    }

    /// Keeps compiled plugins in `dir` (created on first use), keyed by sha256 of the `.wasm` and this engine's
    /// compatibility hash. `dir` must not be inside the plugin directory; if it is, plugins there are compiled
    /// without the cache.
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache = Some(Cache::new(dir.into(), &self.engine));
        self
    }

    /// Grants `plugin` the capabilities its manifest may ask for (replacing any earlier grant). Takes effect for
    /// plugins loaded or reloaded afterwards; grant before loading.
    pub fn grant(&self, plugin: &str, capabilities: Capabilities) {
        self.grants.write().unwrap_or_else(|p| p.into_inner()).insert(plugin.to_owned(), capabilities);
    }

    pub fn quarantine_policy(&self) -> &QuarantinePolicy {
        &self.quarantine
    }

    /// Registers a listener for quarantine events (called on the calling thread; keep it quick).
    pub fn on_event(&self, listener: EventListener) {
        self.listeners.add(listener);
    }

    /// The quarantine record of plugin `name`'s shadow bindings (created at the first), apart from the record its
    /// live bindings share: listed by [`Self::stats`] under [`shadow_name`].
    pub(crate) fn shadow_health(&self, name: &str, kind: PluginKind) -> Arc<PluginHealth> {
        let shadow = shadow_name(name);
        let mut all = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let health = all.entry(shadow.clone()).or_insert_with(|| {
            Arc::new(PluginHealth::new(&shadow, kind, self.quarantine, Arc::clone(&self.listeners)))
        });
        Arc::clone(health)
    }

    /// Calls and quarantine state of every plugin seen since the host started, by name (a plugin's shadow bindings
    /// under [`shadow_name`]): the data behind
    /// `aegis_plugin_calls_total{plugin,result}` and `aegis_plugin_quarantined{plugin}`.
    pub fn stats(&self) -> Vec<PluginStats> {
        let now = Instant::now();
        self.health.lock().unwrap_or_else(|p| p.into_inner()).values().map(|h| h.stats(now)).collect()
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn limits(&self) -> &SandboxLimits {
        &self.limits
    }

    /// What every store of this host's engine holds a claim on (see [`crate::epoch`]).
    pub(crate) fn epoch(&self) -> Epoch {
        self.ticker.epoch()
    }

    /// Loads every `*.wasm` file of `dir` (not recursively). A file that fails is reported and skipped; the others
    /// still load. A missing directory loads nothing.
    pub fn load_dir(&self, dir: &Path) -> Result<LoadReport, PluginError> {
        let (paths, broken) = wasm_files(dir)?;
        let mut report = LoadReport { failed: broken, ..LoadReport::default() };
        for path in paths {
            match self.load_file(&path) {
                Ok(info) => report.loaded.push(info),
                Err(e) => report.failed.push(e),
            }
        }
        Ok(report)
    }

    /// Brings the plugins loaded from `dir` in line with its `*.wasm` files, without disturbing bindings: a new file
    /// is loaded, a changed one (by content) replaces its plugin — every binding switches to it at its next call and
    /// runs `init` again — and a deleted one is unloaded (its bindings use their built-in policy). A file that fails
    /// to load, or that changed its policy kind, is reported and the previous version keeps running. Call it on a
    /// file-watch event or SIGHUP; it compiles outside every lock, so decisions continue meanwhile.
    pub fn reload_dir(&self, dir: &Path) -> Result<ReloadReport, PluginError> {
        let (paths, broken) = wasm_files(dir)?;
        let mut report = ReloadReport { failed: broken, ..ReloadReport::default() };
        let mut present = Vec::new();
        for path in &paths {
            let name = plugin_name(path);
            present.push(name.clone());
            let bytes = match std::fs::read(path) {
                Ok(bytes) => bytes,
                Err(e) => {
                    report
                        .failed
                        .push(PluginError::Compile { path: path.clone(), reason: format!("cannot read: {e}") });
                    continue;
                }
            };
            let previous = self.slot(&name).and_then(|s| s.current());
            let wasm_sha256: [u8; 32] = Sha256::digest(&bytes).into();
            let digest = digest(path, &wasm_sha256);
            if previous.as_ref().is_some_and(|p| p.digest == digest && p.info.path == *path) {
                report.unchanged.push(name);
                continue;
            }
            let compiled = match self.compile_bytes(path, &bytes, wasm_sha256, self.cache_for(path), Grants::Enforce) {
                Ok(compiled) => compiled,
                Err(e) => {
                    tracing::warn!(plugin = %name, "reload failed, keeping the running version: {e}");
                    report.failed.push(e);
                    continue;
                }
            };
            if let Some(previous) = &previous
                && previous.info.kind != compiled.info.kind
            {
                report.failed.push(PluginError::KindChanged {
                    path: path.clone(),
                    was: previous.info.kind.as_str(),
                    now: compiled.info.kind.as_str(),
                });
                continue;
            }
            self.install(compiled);
            tracing::info!(plugin = %name, "plugin {}", if previous.is_some() { "reloaded" } else { "added" });
            if previous.is_some() { report.updated.push(name) } else { report.added.push(name) }
        }
        let slots: Vec<(String, Arc<PluginSlot>)> =
            self.read_plugins().iter().map(|(n, s)| (n.clone(), Arc::clone(s))).collect();
        for (name, slot) in slots {
            let gone = slot.current().is_some_and(|l| l.info.path.parent() == Some(dir) && !present.contains(&name));
            if gone {
                slot.set(None);
                tracing::info!(plugin = %name, "plugin file removed; unloaded");
                report.removed.push(name);
            }
        }
        Ok(report)
    }

    fn slot(&self, name: &str) -> Option<Arc<PluginSlot>> {
        self.read_plugins().get(name).cloned()
    }

    /// The slot of plugin `name`, created empty if the plugin was never loaded: a binding waits in it for the
    /// plugin to appear.
    pub(crate) fn slot_for(&self, name: &str) -> Arc<PluginSlot> {
        if let Some(slot) = self.slot(name) {
            return slot;
        }
        Arc::clone(
            self.plugins.write().unwrap_or_else(|poisoned| poisoned.into_inner()).entry(name.to_owned()).or_default(),
        )
    }

    /// Compiles, classifies and pre-links one component, replacing any plugin of the same name.
    pub fn load_file(&self, path: &Path) -> Result<PluginInfo, PluginError> {
        let compiled = self.compile(path, Grants::Enforce)?;
        Ok(self.install(compiled))
    }

    /// Registers a compiled plugin as the current version of its name.
    fn install(&self, compiled: Compiled) -> PluginInfo {
        let Compiled { info, pre, shared, default_config, digest } = compiled;
        let health = {
            let mut all = self.health.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(shadow) = all.get(&shadow_name(&info.name)) {
                shadow.reset(info.kind);
            }
            let health = all.entry(info.name.clone()).or_insert_with(|| {
                Arc::new(PluginHealth::new(&info.name, info.kind, self.quarantine, Arc::clone(&self.listeners)))
            });
            health.reset(info.kind);
            Arc::clone(health)
        };
        let loaded = Arc::new(Loaded {
            info: info.clone(),
            pre,
            shared: shared.map(SharedPool::new),
            health,
            default_config,
            digest,
            blocks_on_wasi: AtomicBool::new(false),
        });
        let slot = Arc::clone(
            self.plugins.write().unwrap_or_else(|poisoned| poisoned.into_inner()).entry(info.name.clone()).or_default(),
        );
        slot.set(Some(loaded));
        info
    }

    /// Describes a component without registering it (`aegis-host plugin check`). Capabilities its manifest asks
    /// for are reported in the info, not checked against grants.
    pub fn inspect(&self, path: &Path) -> Result<PluginInfo, PluginError> {
        self.compile(path, Grants::Ignore).map(|l| l.info)
    }

    /// The cache, unless it lies inside the directory of `plugin` (precompiled code is never taken from there).
    fn cache_for(&self, plugin: &Path) -> Option<&Cache> {
        let cache = self.cache.as_ref()?;
        let dir = plugin.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if cache.usable_for(dir) {
            Some(cache)
        } else {
            tracing::warn!(cache = %cache.dir().display(), plugins = %dir.display(),
                "the precompile cache is inside the plugin directory; compiling without it");
            None
        }
    }

    /// The plugins loaded now (not those removed by a reload).
    pub fn plugins(&self) -> Vec<PluginInfo> {
        self.read_plugins().values().filter_map(|s| s.current()).map(|l| l.info.clone()).collect()
    }

    fn read_plugins(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<PluginSlot>>> {
        self.plugins.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The slot of plugin `name`, its current version (if of kind `wanted`) and that version's number.
    pub(crate) fn get(
        &self,
        name: &str,
        wanted: PluginKind,
    ) -> Result<(Arc<PluginSlot>, u64, Arc<Loaded>), PluginError> {
        let (slot, version, loaded) = self
            .slot(name)
            .and_then(|slot| match slot.versioned() {
                (version, Some(loaded)) => Some((slot, version, loaded)),
                (_, None) => None,
            })
            .ok_or_else(|| PluginError::NotFound { name: name.to_owned(), loaded: self.loaded_names() })?;
        if loaded.info.kind != wanted {
            return Err(PluginError::WrongKind {
                name: name.to_owned(),
                actual: loaded.info.kind.as_str(),
                wanted: wanted.as_str(),
            });
        }
        Ok((slot, version, loaded))
    }

    /// The bindings in each shard of plugin `name`'s shared instances, live or `shadow` (see
    /// [`SHARED_SEATS`](crate::SHARED_SEATS)); `None` if the plugin is not loaded or gives each binding an instance of
    /// its own (it does not export `trip-predicates`).
    pub fn shared_shards(&self, name: &str, shadow: bool) -> Option<Vec<usize>> {
        let plugin = self.slot(name)?.current()?;
        plugin.shared.as_ref().map(|pool| pool.occupancy(shadow))
    }

    /// Instantiates the current version of plugin `name` in a fresh sandbox, without calling into it, and drops the
    /// instance. Loading does this once per plugin; the benchmarks time it.
    pub fn instantiate(&self, name: &str) -> Result<(), PluginError> {
        let slot = self.slot(name).and_then(|s| s.current());
        let plugin =
            slot.ok_or_else(|| PluginError::NotFound { name: name.to_owned(), loaded: self.loaded_names() })?;
        let shared = plugin.shared.as_ref().map(|s| &s.pre);
        self.instantiate_pre(&plugin.pre, shared, name)
            .map_err(|e| PluginError::Instantiate { name: name.to_owned(), reason: error_chain(&e) })
    }

    /// One throwaway instance of `pre`, or of `shared` if the plugin has that form (its world holds `pre`'s too).
    fn instantiate_pre(
        &self,
        pre: &Pre,
        shared: Option<&trip_shared::TripPredicatesPluginPre<StoreData>>,
        name: &str,
    ) -> wasmtime::Result<()> {
        // Capabilities change what the WASI context holds, not what links, so none are needed here.
        let epoch = self.epoch();
        let _claim = epoch.ticking();
        let mut store = new_store(&self.engine, Arc::from(name), &self.limits, &Capabilities::default())?;
        if let Some(shared) = shared {
            return shared.instantiate(&mut store).map(drop);
        }
        match pre {
            Pre::Trip(pre) => pre.instantiate(&mut store).map(drop),
            Pre::Recovery(pre) => pre.instantiate(&mut store).map(drop),
            Pre::LogRule(pre) => pre.instantiate(&mut store).map(drop),
            Pre::Anomaly(pre) => pre.instantiate(&mut store).map(drop),
            Pre::Alert(pre) => pre.instantiate(&mut store).map(drop),
        }
    }

    /// The names of the loaded plugins, for an error message.
    fn loaded_names(&self) -> String {
        let loaded: Vec<String> = self.plugins().into_iter().map(|p| p.name).collect();
        if loaded.is_empty() { "none".to_owned() } else { loaded.join(", ") }
    }

    /// Reads and compiles the component at `path`, through the cache unless it lies in the plugin's directory.
    fn compile(&self, path: &Path, grants: Grants) -> Result<Compiled, PluginError> {
        let bytes = std::fs::read(path)
            .map_err(|e| PluginError::Compile { path: path.to_owned(), reason: format!("cannot read: {e}") })?;
        let wasm_sha256 = Sha256::digest(&bytes).into();
        self.compile_bytes(path, &bytes, wasm_sha256, self.cache_for(path), grants)
    }

    fn compile_bytes(
        &self,
        path: &Path,
        bytes: &[u8],
        wasm_sha256: [u8; 32],
        cache: Option<&Cache>,
        grants: Grants,
    ) -> Result<Compiled, PluginError> {
        if crate::command::is_core_module(bytes) {
            return Err(PluginError::Compile {
                path: path.to_owned(),
                reason: "a core WebAssembly module, not a component: build the plugin for wasm32-wasip2".to_owned(),
            });
        }
        let compiled = match cache {
            Some(cache) => cache.load(&self.engine, bytes, &wasm_sha256),
            None => Component::new(&self.engine, bytes).map(|c| (c, CacheOutcome::Disabled)),
        };
        let (component, compiled) =
            compiled.map_err(|e| PluginError::Compile { path: path.to_owned(), reason: format!("{e:#}") })?;
        let kind = detect_kind(&self.engine, &component, path)?;
        let mismatch = |e: wasmtime::Error| PluginError::WorldMismatch {
            path: path.to_owned(),
            kind: kind.as_str(),
            reason: format!("{e:#}"),
        };
        let instance_pre = self.linker.instantiate_pre(&component).map_err(mismatch)?;
        let shared = match kind == PluginKind::TripPredicate && exports_interface(&self.engine, &component, SHARED_TRIP)
        {
            true => Some(trip_shared::TripPredicatesPluginPre::new(instance_pre.clone()).map_err(mismatch)?),
            false => None,
        };
        let pre = match kind {
            PluginKind::TripPredicate => Pre::Trip(trip::TripPredicatePluginPre::new(instance_pre).map_err(mismatch)?),
            PluginKind::RecoveryStrategy => {
                Pre::Recovery(recovery::RecoveryStrategyPluginPre::new(instance_pre).map_err(mismatch)?)
            }
            PluginKind::LogRule => Pre::LogRule(log_rule::LogRulePluginPre::new(instance_pre).map_err(mismatch)?),
            PluginKind::AnomalyScorer => {
                Pre::Anomaly(anomaly::AnomalyScorerPluginPre::new(instance_pre).map_err(mismatch)?)
            }
            PluginKind::AlertFormatter => {
                Pre::Alert(alert::AlertFormatterPluginPre::new(instance_pre).map_err(mismatch)?)
            }
        };
        let name = plugin_name(path);
        // Linking checks names, not signatures: a component built against another contract (an older SDK) would
        // only fail at its first binding. One throwaway instance finds that now.
        self.instantiate_pre(&pre, shared.as_ref(), &name).map_err(|e| PluginError::WorldMismatch {
            path: path.to_owned(),
            kind: kind.as_str(),
            reason: format!("{} (built against another version of the aegis:policy contract or SDK?)", error_chain(&e)),
        })?;
        let manifest = manifest::read(path, &name, kind)?;
        let granted = self.grants.read().unwrap_or_else(|p| p.into_inner()).get(&name).cloned().unwrap_or_default();
        let missing = manifest.capabilities.not_covered_by(&granted);
        if grants == Grants::Enforce && !missing.is_empty() {
            return Err(PluginError::NotGranted { name, missing: missing.join(", ") });
        }
        let info = PluginInfo {
            name,
            kind,
            path: path.to_owned(),
            size_bytes: bytes.len() as u64,
            compiled,
            version: manifest.version,
            capabilities: manifest.capabilities,
        };
        Ok(Compiled { info, pre, shared, default_config: manifest.config, digest: digest(path, &wasm_sha256) })
    }
}

/// What a plugin's shadow bindings are called in its stats, quarantine events and metrics: `window-trip (shadow)`.
pub fn shadow_name(plugin: &str) -> String {
    format!("{plugin}{SHADOW_SUFFIX}")
}

/// The end of [`shadow_name`].
pub const SHADOW_SUFFIX: &str = " (shadow)";

/// The plugin name of a file: its stem (`plugins/window-trip.wasm` is `window-trip`).
fn plugin_name(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Whether compiling checks the manifest's capabilities against the operator's grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Grants {
    Enforce,
    Ignore,
}

/// sha256 over the sha256 of a plugin's `.wasm` bytes and its manifest (if any).
fn digest(path: &Path, wasm_sha256: &[u8; 32]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(wasm_sha256);
    if let Ok(manifest) = std::fs::read(manifest::manifest_path(path)) {
        hasher.update(manifest);
    }
    hasher.finalize().into()
}

/// The `*.wasm` files directly in `dir`, sorted (none if `dir` does not exist), and an error for each `*.wasm`
/// symlink that leads to no file: a link loop (`a.wasm -> b.wasm -> a.wasm`) or a dangling link is named, once, with
/// the system's reason, rather than skipped in silence. Resolving a loop ends at the kernel's link limit, so it
/// never hangs. A directory named `*.wasm` is still skipped.
fn wasm_files(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PluginError>), PluginError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(source) => return Err(PluginError::ReadDir { dir: dir.to_owned(), source }),
    };
    let mut paths = Vec::new();
    let mut broken = Vec::new();
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if !path.extension().is_some_and(|x| x == "wasm") {
            continue;
        }
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => paths.push(path),
            Ok(_) => {}
            Err(source) if path.is_symlink() => broken.push(PluginError::BrokenLink { path, source }),
            // Gone since the listing: the next look at the directory sees the removal.
            Err(_) => {}
        }
    }
    paths.sort();
    broken.sort_by_key(|e| e.to_string());
    Ok((paths, broken))
}

/// The interface of trip predicates that many bindings share an instance of (see [`crate::shared`]).
const SHARED_TRIP: &str = "trip-predicates";

/// Whether a component exports `aegis:policy/<interface>` of this host's contract version.
fn exports_interface(engine: &Engine, component: &Component, interface: &str) -> bool {
    let wanted = format!("{WIT_PACKAGE}/{interface}@{WIT_VERSION}");
    component.component_type().exports(engine).any(|(name, _)| name == wanted)
}

/// The policy kind a component implements, from the `aegis:policy/<kind>@<version>` interfaces it exports.
fn detect_kind(engine: &Engine, component: &Component, path: &Path) -> Result<PluginKind, PluginError> {
    let ty = component.component_type();
    let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    let mut kinds = Vec::new();
    for export in &exports {
        let Some(rest) = export.strip_prefix(WIT_PACKAGE).and_then(|r| r.strip_prefix('/')) else {
            continue;
        };
        let (interface, version) = rest.split_once('@').unwrap_or((rest, ""));
        let Some(kind) = PluginKind::ALL.into_iter().find(|k| k.as_str() == interface) else {
            continue;
        };
        if version != WIT_VERSION {
            return Err(PluginError::WitVersion {
                path: path.to_owned(),
                found: format!("{WIT_PACKAGE}@{}", if version.is_empty() { "(unversioned)" } else { version }),
                expected: WIT_VERSION,
            });
        }
        kinds.push(kind);
    }
    match kinds.as_slice() {
        [kind] => Ok(*kind),
        [] => Err(PluginError::UnknownWorld {
            path: path.to_owned(),
            exports: if exports.is_empty() { "nothing".to_owned() } else { exports.join(", ") },
        }),
        many => Err(PluginError::AmbiguousWorld {
            path: path.to_owned(),
            kinds: many.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "),
        }),
    }
}
