//! The two sets of policies a replay compares: the baseline (the service's own trip policy and recovery, bound as the
//! supervisor binds them: the config's plugin directory, sandbox limits, quarantine and grants, the built-in policy
//! when a plugin cannot be bound) and the candidate (the same, with the `--trip-plugin` / `--recovery-plugin`
//! components in their place). Each side gets a plugin host of its own, so a candidate named like one of the config's
//! plugins replaces nothing on the baseline side.

use std::path::Path;
use std::sync::Arc;

use aegis_core::policy::{FixedAction, RecoveryAction, RecoveryStrategy};
use aegis_core::replay::{RecoveryModel, RestartLimit};
use aegis_core::{ConsecutiveFailures, TripPredicate};
use aegis_plugin::{PluginHost, ServiceInfo};
use aegis_runtime::Config;
use aegis_runtime::config::{OnFailure, PluginRef, ServiceConfig};
use anyhow::Context;

/// The seed of the backoff jitter, the same for both sides so equal decisions draw equal delays.
const JITTER_SEED: u64 = 17;

/// One side of the comparison.
pub struct Side {
    /// What decides trips (`built-in`, a plugin name, a file).
    pub trip_label: String,
    /// What decides recovery (`onFailure: restart`, a plugin name, a file).
    pub recovery_label: String,
    pub predicate: Arc<dyn TripPredicate>,
    pub recovery: RecoveryModel,
    /// The host the plugins were bound in, kept while they are called (its epoch ticker bounds every call).
    _plugins: PluginHost,
}

/// A plugin host set up as the supervisor sets up its own from `config` (nothing loaded yet).
pub fn plugin_host(config: &Config) -> anyhow::Result<PluginHost> {
    let cache_dir = config
        .plugins
        .cache_dir
        .clone()
        .unwrap_or_else(|| config.storage_path.parent().unwrap_or(Path::new("")).join("aegis-plugin-cache"));
    let host = PluginHost::new(config.plugins.limits)
        .context("cannot start the plugin engine")?
        .with_quarantine(config.plugins.quarantine)
        .with_cache_dir(cache_dir);
    for (name, capabilities) in &config.plugins.grants {
        host.grant(name, capabilities.clone());
    }
    Ok(host)
}

fn service_info(s: &ServiceConfig) -> ServiceInfo {
    ServiceInfo { name: s.name.to_string(), kind: s.probe.kind().to_owned(), endpoint: s.endpoint.clone() }
}

fn on_failure(s: &ServiceConfig) -> RecoveryAction {
    match s.on_failure {
        OnFailure::Restart => RecoveryAction::Restart,
        OnFailure::Notify => RecoveryAction::Notify(None),
        OnFailure::Ignore => RecoveryAction::Ignore,
    }
}

fn built_in(s: &ServiceConfig) -> Arc<dyn TripPredicate> {
    Arc::new(ConsecutiveFailures(s.breaker.failure_threshold))
}

/// The service's own policies, bound as the supervisor binds them; a plugin that cannot be bound is replaced by the
/// built-in policy, as live, with a warning.
pub fn baseline(config: &Config, s: &ServiceConfig) -> anyhow::Result<Side> {
    let host = plugin_host(config)?;
    let dir = &config.plugins.dir;
    // A missing directory only matters if the service names a plugin; binding then says which one is missing.
    if dir.is_dir() {
        let report =
            host.load_dir(dir).with_context(|| format!("cannot read the plugin directory {}", dir.display()))?;
        for error in &report.failed {
            eprintln!("warning: plugin skipped: {error}");
        }
    }
    let (predicate, trip_label) = match &s.breaker.trip_policy {
        None => (built_in(s), "built-in".to_owned()),
        Some(p) => match host.trip_predicate(&p.plugin, service_info(s), p.config.clone(), built_in(s)) {
            Ok(bound) => (Arc::new(bound) as Arc<dyn TripPredicate>, p.plugin.clone()),
            Err(e) => {
                eprintln!("warning: {e}; the baseline uses the built-in trip predicate, as aegis-host would");
                (built_in(s), "built-in".to_owned())
            }
        },
    };
    let (strategy, recovery_label) = match &s.recovery_policy {
        None => (None, format!("onFailure: {}", s.on_failure.as_str())),
        Some(p) => match bind_recovery(&host, s, p) {
            Ok(strategy) => (Some(strategy), p.plugin.clone()),
            Err(e) => {
                eprintln!("warning: {e:#}; the baseline uses onFailure, as aegis-host would");
                (None, format!("onFailure: {}", s.on_failure.as_str()))
            }
        },
    };
    Ok(Side { trip_label, recovery_label, predicate, recovery: recovery_model(s, strategy), _plugins: host })
}

fn bind_recovery(host: &PluginHost, s: &ServiceConfig, p: &PluginRef) -> anyhow::Result<Arc<dyn RecoveryStrategy>> {
    let fixed: Arc<dyn RecoveryStrategy> = Arc::new(FixedAction(on_failure(s)));
    Ok(Arc::new(host.recovery_strategy(&p.plugin, service_info(s), p.config.clone(), fixed)?))
}

fn recovery_model(s: &ServiceConfig, strategy: Option<Arc<dyn RecoveryStrategy>>) -> RecoveryModel {
    RecoveryModel {
        strategy,
        on_failure: on_failure(s),
        backoff: s.backoff,
        restart_limit: s.restart_limit.map(|l| RestartLimit { burst: l.burst, interval: l.interval }),
        seed: JITTER_SEED,
    }
}

/// A candidate plugin file and the config map its `init` gets.
pub struct Candidate<'a> {
    pub file: &'a Path,
    pub config: Vec<(String, String)>,
}

/// The candidate side: the baseline with the given plugins in place of the service's own. A candidate that cannot
/// be loaded or refuses its config is an error (the replay would only show the built-in policy).
pub fn candidate(
    config: &Config,
    s: &ServiceConfig,
    baseline: &Side,
    trip: Option<Candidate<'_>>,
    recovery: Option<Candidate<'_>>,
) -> anyhow::Result<Side> {
    let host = plugin_host(config)?;
    let (predicate, trip_label) = match trip {
        None => (Arc::clone(&baseline.predicate), baseline.trip_label.clone()),
        Some(c) => {
            let name = load(&host, c.file)?;
            let bound = host
                .trip_predicate(&name, service_info(s), c.config, built_in(s))
                .with_context(|| format!("{}: the trip predicate refused its config", c.file.display()))?;
            (Arc::new(bound) as Arc<dyn TripPredicate>, c.file.display().to_string())
        }
    };
    let (strategy, recovery_label) = match recovery {
        None => (baseline.recovery.strategy.clone(), baseline.recovery_label.clone()),
        Some(c) => {
            let name = load(&host, c.file)?;
            let p = PluginRef { plugin: name, config: c.config };
            let strategy = bind_recovery(&host, s, &p)
                .with_context(|| format!("{}: the recovery strategy refused its config", c.file.display()))?;
            (Some(strategy), c.file.display().to_string())
        }
    };
    Ok(Side { trip_label, recovery_label, predicate, recovery: recovery_model(s, strategy), _plugins: host })
}

/// Loads one component; its name is the file stem.
fn load(host: &PluginHost, file: &Path) -> anyhow::Result<String> {
    let info = host.load_file(file).with_context(|| format!("cannot load {}", file.display()))?;
    Ok(info.name)
}

/// `k=v` pairs of `--plugin-config`, in order.
pub fn parse_pairs(option: &str, pairs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
            _ => anyhow::bail!("{option} {pair}: expected key=value"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_config_pairs_keep_their_order_and_name_the_bad_one() {
        let pairs = parse_pairs("--plugin-config", &["window=6".into(), "note=a=b".into()]).expect("valid");
        assert_eq!(pairs, [("window".into(), "6".into()), ("note".into(), "a=b".into())]);
        let e = parse_pairs("--plugin-config", &["window".into()]).expect_err("no `=`").to_string();
        assert!(e.contains("--plugin-config window") && e.contains("key=value"), "{e}");
        assert!(parse_pairs("--plugin-config", &["=6".into()]).is_err(), "an empty key");
    }
}
