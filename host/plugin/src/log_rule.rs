//! The log-rule adapter: a WASM component behind `aegis_core::policy::LogRule`.

use std::fmt;
use std::sync::Arc;

use aegis_core::policy::{Finding, LogRule};

use crate::binding::{Binding, clamp_text};
use crate::bindings::log_rule::LogRulePlugin;
use crate::error::PluginError;
use crate::host::PluginHost;
use crate::severity_from_wit;

/// Longest line handed to a plugin; the tail of a longer line is dropped (a finding is about the line's start).
const MAX_LINE: usize = 16 << 10;

/// A log rule implemented by a plugin; falls back to the built-in rule on trap, timeout or quarantine.
pub struct WasmLogRule {
    binding: Binding<LogRulePlugin>,
    fallback: Arc<dyn LogRule>,
}

impl fmt::Debug for WasmLogRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmLogRule").field("binding", &self.binding).field("fallback", &self.fallback).finish()
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
        Ok(WasmLogRule { binding: Binding::new(self, name, subject.to_owned(), None, config)?, fallback })
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
        let mut cut = line.len().min(MAX_LINE);
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        let found = self.binding.call(|plugin, store| {
            plugin.aegis_policy_log_rule().call_match_line(store, source, &line[..cut]).map(|finding| {
                Ok(finding.map(|f| Finding {
                    rule: clamp_text(f.rule),
                    severity: severity_from_wit(f.severity),
                    message: clamp_text(f.message),
                }))
            })
        });
        match found {
            Some(finding) => finding,
            None => self.fallback.match_line(source, line),
        }
    }
}
