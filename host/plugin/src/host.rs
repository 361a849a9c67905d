//! Plugin discovery and the process-wide engine: loads every `*.wasm` of a directory, detects the policy world each
//! component implements from its exports, and keeps a pre-linked `InstancePre` per plugin for cheap instantiation.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use crate::bindings::{alert, anomaly, log_rule, recovery, trip};
use crate::error::PluginError;
use crate::sandbox::{EPOCH_TICK, SandboxLimits, StoreData};
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
}

/// A typed, pre-linked component, ready to instantiate. Loading type-checks every kind against its world; only the
/// trip predicate has a runtime adapter so far.
#[expect(dead_code, reason = "adapters for the recovery, log-rule, anomaly and alert kinds are not written yet")]
pub(crate) enum Pre {
    Trip(trip::TripPredicatePluginPre<StoreData>),
    Recovery(recovery::RecoveryStrategyPluginPre<StoreData>),
    LogRule(log_rule::LogRulePluginPre<StoreData>),
    Anomaly(anomaly::AnomalyScorerPluginPre<StoreData>),
    Alert(alert::AlertFormatterPluginPre<StoreData>),
}

pub(crate) struct Loaded {
    pub(crate) info: PluginInfo,
    pub(crate) pre: Pre,
}

/// Outcome of scanning a plugin directory: what loaded and what was skipped, with why.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub loaded: Vec<PluginInfo>,
    pub failed: Vec<PluginError>,
}

/// Advances the engine's epoch on its own thread, so every store's deadline counts real time.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("aegis-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .ok();
        EpochTicker { stop, thread }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The process-wide plugin host.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<StoreData>,
    limits: SandboxLimits,
    plugins: RwLock<BTreeMap<String, Arc<Loaded>>>,
    _ticker: EpochTicker,
}

impl fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginHost")
            .field("limits", &self.limits)
            .field("plugins", &self.plugins().iter().map(|p| p.name.clone()).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    pub fn new(limits: SandboxLimits) -> Result<Self, PluginError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        // Component-model async bookkeeping costs ~0.7 µs a call and no policy needs it.
        config.concurrency_support(false);
        let engine = Engine::new(&config).map_err(PluginError::Engine)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(PluginError::Engine)?;
        trip::aegis::policy::host::add_to_linker::<_, HasSelf<StoreData>>(&mut linker, |d| d)
            .map_err(PluginError::Engine)?;
        trip::aegis::policy::types::add_to_linker::<_, HasSelf<StoreData>>(&mut linker, |d| d)
            .map_err(PluginError::Engine)?;

        let ticker = EpochTicker::start(engine.clone());
        Ok(PluginHost { engine, linker, limits, plugins: RwLock::new(BTreeMap::new()), _ticker: ticker })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn limits(&self) -> &SandboxLimits {
        &self.limits
    }

    /// Loads every `*.wasm` file of `dir` (not recursively). A file that fails is reported and skipped; the others
    /// still load. A missing directory loads nothing.
    pub fn load_dir(&self, dir: &Path) -> Result<LoadReport, PluginError> {
        let mut report = LoadReport::default();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
            Err(source) => return Err(PluginError::ReadDir { dir: dir.to_owned(), source }),
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "wasm"))
            .collect();
        paths.sort();
        for path in paths {
            match self.load_file(&path) {
                Ok(info) => report.loaded.push(info),
                Err(e) => report.failed.push(e),
            }
        }
        Ok(report)
    }

    /// Compiles, classifies and pre-links one component, replacing any plugin of the same name.
    pub fn load_file(&self, path: &Path) -> Result<PluginInfo, PluginError> {
        let loaded = self.compile(path)?;
        let info = loaded.info.clone();
        self.plugins
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(info.name.clone(), Arc::new(loaded));
        Ok(info)
    }

    /// Describes a component without registering it (`aegis-host plugin check`).
    pub fn inspect(&self, path: &Path) -> Result<PluginInfo, PluginError> {
        self.compile(path).map(|l| l.info)
    }

    pub fn plugins(&self) -> Vec<PluginInfo> {
        self.read_plugins().values().map(|l| l.info.clone()).collect()
    }

    fn read_plugins(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Loaded>>> {
        self.plugins.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn get(&self, name: &str, wanted: PluginKind) -> Result<Arc<Loaded>, PluginError> {
        let plugins = self.read_plugins();
        let loaded = plugins.get(name).ok_or_else(|| PluginError::NotFound {
            name: name.to_owned(),
            loaded: if plugins.is_empty() {
                "none".to_owned()
            } else {
                plugins.keys().cloned().collect::<Vec<_>>().join(", ")
            },
        })?;
        if loaded.info.kind != wanted {
            return Err(PluginError::WrongKind {
                name: name.to_owned(),
                actual: loaded.info.kind.as_str(),
                wanted: wanted.as_str(),
            });
        }
        Ok(Arc::clone(loaded))
    }

    fn compile(&self, path: &Path) -> Result<Loaded, PluginError> {
        let bytes = std::fs::read(path)
            .map_err(|e| PluginError::Compile { path: path.to_owned(), reason: format!("cannot read: {e}") })?;
        let component = Component::new(&self.engine, &bytes)
            .map_err(|e| PluginError::Compile { path: path.to_owned(), reason: format!("{e:#}") })?;
        let kind = detect_kind(&self.engine, &component, path)?;
        let mismatch = |e: wasmtime::Error| PluginError::WorldMismatch {
            path: path.to_owned(),
            kind: kind.as_str(),
            reason: format!("{e:#}"),
        };
        let instance_pre = self.linker.instantiate_pre(&component).map_err(mismatch)?;
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
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let info = PluginInfo { name, kind, path: path.to_owned(), size_bytes: bytes.len() as u64 };
        Ok(Loaded { info, pre })
    }
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
