//! `tripPolicy:` and `recoveryPolicy:`: the live plugin of a policy and its optional `shadow:`, a second plugin run
//! on the same inputs whose answer is only compared with the live one (issue 17's shadow mode). Wire struct and its
//! validation into [`PluginRef`]s; the comparing is the supervisor's.
//!
//! ```yaml
//! tripPolicy:
//!   plugin: window-trip            # optional when a shadow is given: the built-in policy stays live
//!   config: {window: 10, failures: 5}
//!   shadow:
//!     plugin: window-trip          # may be the live plugin with another config
//!     config: {window: 10, failures: 3}
//! ```
//!
//! Errors in the block are raised while it is parsed, so they carry the file, line, column and field path like any
//! other parse error.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ConfigError, PluginRef, Validator};

/// A policy block as written, checked as it is parsed (see [`PolicyText::check`]).
#[derive(Clone)]
pub(super) struct PolicyWire {
    plugin: Option<String>,
    config: BTreeMap<String, serde_yaml::Value>,
    shadow: Option<ShadowWire>,
}

/// `tripPolicy:` (the key is named in errors: the parser locates them at it, but names the enclosing field).
#[derive(Deserialize, Clone)]
#[serde(try_from = "PolicyText")]
pub(super) struct TripPolicyWire(pub(super) PolicyWire);

/// `recoveryPolicy:`, as [`TripPolicyWire`].
#[derive(Deserialize, Clone)]
#[serde(try_from = "PolicyText")]
pub(super) struct RecoveryPolicyWire(pub(super) PolicyWire);

impl TryFrom<PolicyText> for TripPolicyWire {
    type Error = String;

    fn try_from(p: PolicyText) -> Result<Self, String> {
        p.check("tripPolicy").map(TripPolicyWire)
    }
}

impl TryFrom<PolicyText> for RecoveryPolicyWire {
    type Error = String;

    fn try_from(p: PolicyText) -> Result<Self, String> {
        p.check("recoveryPolicy").map(RecoveryPolicyWire)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyText {
    #[serde(default)]
    plugin: Option<String>,
    #[serde(default)]
    config: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    shadow: Option<ShadowWire>,
}

/// The shadow plugin: a name and its config; a shadow has no shadow of its own.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct ShadowWire {
    plugin: String,
    #[serde(default)]
    config: BTreeMap<String, serde_yaml::Value>,
}

impl PolicyText {
    /// The block `key` as a [`PolicyWire`], or what is wrong with it.
    fn check(self, key: &str) -> Result<PolicyWire, String> {
        let p = self;
        if p.plugin.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(format!("{key}.plugin: must not be empty"));
        }
        if p.shadow.as_ref().is_some_and(|s| s.plugin.trim().is_empty()) {
            return Err(format!("{key}.shadow.plugin: must not be empty"));
        }
        match (&p.plugin, &p.shadow) {
            (None, None) => Err(format!("{key}: needs `plugin:` (or only `shadow:`, to shadow the built-in policy)")),
            (None, Some(_)) if !p.config.is_empty() => {
                Err(format!("{key}: `config:` without `plugin:`; the built-in policy takes no config"))
            }
            _ => Ok(PolicyWire { plugin: p.plugin, config: p.config, shadow: p.shadow }),
        }
    }
}

/// A validated policy block: the live plugin (`None`: the built-in policy decides) and the shadow, if any.
pub(super) struct Policy {
    pub(super) live: Option<PluginRef>,
    pub(super) shadow: Option<PluginRef>,
}

impl Validator<'_> {
    /// `field` is the block's path (`services[0] (web).actions.circuitBreaker.tripPolicy`), for config errors.
    pub(super) fn policy(&self, field: &str, wire: PolicyWire) -> Result<Policy, ConfigError> {
        let live = match wire.plugin {
            None => None,
            Some(plugin) => {
                Some(PluginRef { plugin, config: self.plugin_config(&format!("{field}.config"), wire.config)? })
            }
        };
        let shadow = match wire.shadow {
            None => None,
            Some(s) => Some(PluginRef {
                plugin: s.plugin,
                config: self.plugin_config(&format!("{field}.shadow.config"), s.config)?,
            }),
        };
        Ok(Policy { live, shadow })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn parse(actions: &str) -> Result<Config, String> {
        let text = format!(
            "services:\n  - name: web\n    type: http\n    endpoint: http://x/\n    actions:\n      onFailure: ignore\n{actions}"
        );
        Config::from_yaml(Path::new("test.yaml"), &text).map_err(|e| e.to_string())
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_trip_shadow_runs_beside_the_live_plugin_or_the_built_in() {
        let c = parse(
            "      circuitBreaker:\n        tripPolicy:\n          plugin: window-trip\n          config: {failures: 5}\n          shadow:\n            plugin: window-trip\n            config: {failures: 3, window: 5}\n",
        )
        .expect("parses");
        let b = &c.services[0].breaker;
        assert_eq!(
            b.trip_policy.as_ref().map(|p| (p.plugin.as_str(), p.config.clone())),
            Some(("window-trip", pairs(&[("failures", "5")])))
        );
        let shadow = b.trip_shadow.as_ref().expect("shadow");
        assert_eq!(
            (shadow.plugin.as_str(), shadow.config.clone()),
            ("window-trip", pairs(&[("failures", "3"), ("window", "5")]))
        );
        let c = parse("      circuitBreaker:\n        tripPolicy:\n          shadow: {plugin: window-trip}\n")
            .expect("parses");
        let b = &c.services[0].breaker;
        assert!(b.trip_policy.is_none(), "the built-in stays live");
        assert_eq!(b.trip_shadow.as_ref().map(|p| p.plugin.as_str()), Some("window-trip"));
    }

    #[test]
    fn a_recovery_shadow_is_read_like_a_trip_shadow() {
        let c = parse("      recoveryPolicy:\n        shadow:\n          plugin: escalating-restart\n          config: {notify_after: 2}\n")
            .expect("parses");
        let s = &c.services[0];
        assert!(s.recovery_policy.is_none());
        let shadow = s.recovery_shadow.as_ref().expect("shadow");
        assert_eq!(
            (shadow.plugin.as_str(), shadow.config.clone()),
            ("escalating-restart", pairs(&[("notify_after", "2")]))
        );
    }

    #[test]
    fn mistakes_in_a_policy_block_are_located_and_name_the_field() {
        let cases = [
            // (the block under `circuitBreaker:`, line:col, field, message)
            (
                "        tripPolicy:\n          plugin: a\n          shadow:\n            plugin: b\n            shadow: {plugin: c}\n",
                "test.yaml:12:13: ",
                "tripPolicy.shadow",
                "unknown field `shadow`",
            ),
            (
                "        tripPolicy:\n          plugin: a\n          shadow:\n            config: {x: 1}\n",
                "test.yaml:11:13: ",
                "tripPolicy.shadow",
                "missing field `plugin`",
            ),
            ("        tripPolicy:\n          config: {x: 1}\n", "test.yaml:8:9: ", "tripPolicy", "needs `plugin:`"),
            (
                "        tripPolicy:\n          config: {x: 1}\n          shadow: {plugin: b}\n",
                "test.yaml:8:9: ",
                "tripPolicy",
                "the built-in policy takes no config",
            ),
            (
                "        tripPolicy:\n          plugin: a\n          shadow: {plugin: ' '}\n",
                "test.yaml:8:9: ",
                "tripPolicy.shadow.plugin",
                "must not be empty",
            ),
        ];
        for (block, at, field, message) in cases {
            let err = parse(&format!("      circuitBreaker:\n{block}")).expect_err(block);
            assert!(err.starts_with(at), "{err}");
            assert!(err.contains(field) && err.contains(message), "{err}");
        }
        let err = parse("      recoveryPolicy:\n        plugin: a\n        shadow:\n          plugin: b\n          config: {x: [1]}\n")
            .expect_err("a list is no config value");
        assert!(err.contains("actions.recoveryPolicy.shadow.config.x"), "{err}");
    }
}
