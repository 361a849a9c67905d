//! The log-rule adapter: a WASM component behind `aegis_core::policy::LogRule`.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use aegis_core::policy::{Finding, LogRule};

use crate::binding::{Binding, clamp_text};
use crate::bindings::log_rule::LogRulePlugin;
use crate::bindings::log_rule::exports::aegis::policy::log_rule as wit;
use crate::error::PluginError;
use crate::host::PluginHost;
use crate::severity_from_wit;

/// Longest line handed to a plugin; the tail of a longer line is dropped (a finding is about the line's start).
const MAX_LINE: usize = 16 << 10;

/// Longest rule name a plugin may report, in bytes. The name is an identifier (`rust-panic`), not a message: it
/// becomes a Prometheus label value, an `alertname` and part of every event of the finding.
pub const MAX_RULE_NAME: usize = 128;

/// Distinct rule names one binding may report. Each new name is a new `aegis_log_matches_total{rule}` series, a new
/// alert and a new event budget in the runtime, none of which is ever dropped, so a plugin that made up a name per
/// line would grow them without bound. The bundled `panic-detector` has three rules; 64 leaves room for a rich rule
/// set and still bounds the series.
pub const MAX_RULE_NAMES: usize = 64;

/// A log rule implemented by a plugin; falls back to the built-in rule on trap, timeout, quarantine or an invalid
/// finding (a rule name that is empty, longer than [`MAX_RULE_NAME`], holds control characters, or is new after
/// [`MAX_RULE_NAMES`] others).
pub struct WasmLogRule {
    binding: Binding<LogRulePlugin>,
    fallback: Arc<dyn LogRule>,
    names: RuleNames,
}

impl fmt::Debug for WasmLogRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmLogRule")
            .field("binding", &self.binding)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

/// The rule names a binding has reported, for the life of the binding (a plugin reload keeps them: the series they
/// created stay too). Its lock is taken for a finding only, never for a line without one: off the hot path.
#[derive(Debug, Default)]
pub struct RuleNames(Mutex<HashSet<String>>);

impl RuleNames {
    /// Accepts a well-formed name already seen, or a new one while fewer than [`MAX_RULE_NAMES`] are known.
    fn admit(&self, name: &str) -> Result<(), String> {
        if name.is_empty() {
            return Err("empty rule name".to_owned());
        }
        if name.len() > MAX_RULE_NAME {
            return Err(format!("rule name of {} bytes exceeds {MAX_RULE_NAME}", name.len()));
        }
        if name.contains(char::is_control) {
            return Err(format!("rule name {name:?} holds control characters"));
        }
        let mut names = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if names.contains(name) {
            return Ok(());
        }
        if names.len() >= MAX_RULE_NAMES {
            return Err(format!("new rule name {name:?}, but a binding may report at most {MAX_RULE_NAMES} names"));
        }
        names.insert(name.to_owned());
        Ok(())
    }
}

impl PluginHost {
    /// Binds the log-rule plugin `name` (for the logs named by `subject`, used in the host's log) and runs its `init`
    /// with `config` now.
    pub fn log_rule(
        &self,
        name: &str,
        subject: &str,
        config: Vec<(String, String)>,
        fallback: Arc<dyn LogRule>,
    ) -> Result<WasmLogRule, PluginError> {
        let binding = Binding::new(self, name, subject.to_owned(), None, config)?;
        Ok(WasmLogRule { binding, fallback, names: RuleNames::default() })
    }
}

impl WasmLogRule {
    pub fn plugin_name(&self) -> &str {
        self.binding.plugin_name()
    }

    /// Whether the plugin is loaded now. A binding made before its plugin appeared uses the built-in policy and
    /// binds the plugin at the first call after it is loaded.
    pub fn is_loaded(&self) -> bool {
        self.binding.is_loaded()
    }
}

impl LogRule for WasmLogRule {
    fn match_line(&self, source: &str, line: &str) -> Option<Finding> {
        let cut = line.floor_char_boundary(MAX_LINE);
        let found = self.binding.call(|plugin, store| {
            plugin
                .aegis_policy_log_rule()
                .call_match_line(store, source, &line[..cut])
                .map(|finding| finding.map(|f| validate(&self.names, f)).transpose())
        });
        match found {
            Some(finding) => finding,
            None => self.fallback.match_line(source, line),
        }
    }
}

/// The plugin's finding as the host passes it on: a rule name [`RuleNames`] admits, the message cut and escaped.
pub(crate) fn validate(names: &RuleNames, f: wit::Finding) -> Result<Finding, String> {
    names.admit(&f.rule)?;
    Ok(Finding { rule: f.rule, severity: severity_from_wit(f.severity), message: clamp_text(f.message) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_names_must_be_short_plain_identifiers() {
        let names = RuleNames::default();
        assert_eq!(names.admit("rust-panic"), Ok(()));
        assert_eq!(names.admit(&"r".repeat(MAX_RULE_NAME)), Ok(()));
        assert_eq!(names.admit(""), Err("empty rule name".to_owned()));
        let long = names.admit(&"r".repeat(MAX_RULE_NAME + 1)).unwrap_err();
        assert!(long.contains("exceeds 128"), "{long}");
        for forged in ["panic\n2026-01-01 ERROR forged", "panic\u{1b}[2J", "tab\there"] {
            assert!(names.admit(forged).unwrap_err().contains("control characters"), "{forged:?}");
        }
    }

    #[test]
    fn new_rule_names_beyond_the_limit_are_refused_and_known_ones_still_pass() {
        let names = RuleNames::default();
        for i in 0..MAX_RULE_NAMES {
            assert_eq!(names.admit(&format!("rule-{i}")), Ok(()));
        }
        let err = names.admit("one-too-many").unwrap_err();
        assert!(err.contains("\"one-too-many\"") && err.contains("at most 64"), "{err}");
        assert_eq!(names.admit("rule-7"), Ok(()), "a known name is no new series");
        assert_eq!(names.admit(&format!("rule-{}", MAX_RULE_NAMES - 1)), Ok(()));
    }
}
