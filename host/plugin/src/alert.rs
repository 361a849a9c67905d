//! The alert-formatter adapter: a WASM component behind `aegis_core::policy::AlertFormatter`.

use std::fmt;
use std::sync::Arc;

use aegis_core::policy::{Alert, AlertFormatter, AlertStatus, FormatError, Payload};

use crate::binding::{Binding, clamp_text};
use crate::bindings::alert::AlertFormatterPlugin;
use crate::bindings::alert::exports::aegis::policy::alert_formatter as wit;
use crate::error::PluginError;
use crate::host::PluginHost;
use crate::severity_to_wit;

/// Largest body a formatter may return; a larger one is refused (a strike) and the built-in renders the alert.
pub const MAX_BODY: usize = 1 << 20;
/// Most headers a formatter may set.
const MAX_HEADERS: usize = 32;

/// An alert formatter implemented by a plugin. On trap, timeout, invalid output or quarantine the built-in renders
/// the alert; a plugin's own refusal (`err`) also falls back to the built-in, but is no strike.
pub struct WasmAlertFormatter {
    binding: Binding<AlertFormatterPlugin>,
    fallback: Arc<dyn AlertFormatter>,
}

impl fmt::Debug for WasmAlertFormatter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmAlertFormatter").field("binding", &self.binding).field("fallback", &self.fallback).finish()
    }
}

impl PluginHost {
    /// Binds the alert-formatter plugin `name` (for the receiver named by `subject`, used in the host's log) and
    /// runs its `init` with `config` now.
    pub fn alert_formatter(
        &self,
        name: &str,
        subject: &str,
        config: Vec<(String, String)>,
        fallback: Arc<dyn AlertFormatter>,
    ) -> Result<WasmAlertFormatter, PluginError> {
        Ok(WasmAlertFormatter { binding: Binding::new(self, name, subject.to_owned(), None, config)?, fallback })
    }
}

impl WasmAlertFormatter {
    pub fn plugin_name(&self) -> &str {
        self.binding.plugin_name()
    }

    /// Whether the plugin is loaded now. A binding made before its plugin appeared uses the built-in policy and
    /// binds the plugin at the first call after it is loaded.
    pub fn is_loaded(&self) -> bool {
        self.binding.is_loaded()
    }
}

/// Checks a payload before it can reach an HTTP request: bounded size, header names and values that cannot split
/// the request.
fn validate(p: wit::Payload) -> Result<Payload, String> {
    if p.body.len() > MAX_BODY {
        return Err(format!("body of {} bytes exceeds {MAX_BODY}", p.body.len()));
    }
    if p.headers.len() > MAX_HEADERS {
        return Err(format!("{} headers exceed {MAX_HEADERS}", p.headers.len()));
    }
    let token = |s: &str| !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    let value = |s: &str| s.len() <= 4096 && s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
    if let Some((k, _)) = p.headers.iter().find(|(k, v)| !token(k) || !value(v)) {
        return Err(format!("invalid header {k:?}"));
    }
    if !value(&p.content_type) || p.content_type.is_empty() {
        return Err(format!("invalid content type {:?}", p.content_type));
    }
    Ok(Payload { content_type: p.content_type, headers: p.headers, body: p.body })
}

impl AlertFormatter for WasmAlertFormatter {
    fn format(&self, alert: &Alert, target: &str) -> Result<Payload, FormatError> {
        let wit_alert = wit::Alert {
            name: alert.name.clone(),
            status: match alert.status {
                AlertStatus::Firing => wit::AlertStatus::Firing,
                AlertStatus::Resolved => wit::AlertStatus::Resolved,
            },
            severity: severity_to_wit(alert.severity),
            labels: alert.labels.clone(),
            annotations: alert.annotations.clone(),
            starts_at_ms: alert.starts_at_ms,
            ends_at_ms: alert.ends_at_ms,
            fingerprint: alert.fingerprint.clone(),
        };
        let rendered = self.binding.call(|plugin, store| {
            plugin.aegis_policy_alert_formatter().call_format(store, &wit_alert, target).map(|r| match r {
                Ok(payload) => validate(payload).map(Ok),
                Err(refusal) => Ok(Err(clamp_text(refusal))),
            })
        });
        match rendered {
            Some(Ok(payload)) => Ok(payload),
            Some(Err(refusal)) => {
                tracing::warn!(plugin = %self.plugin_name(), alert = %alert.name, target,
                    "alert formatter refused the alert, using the built-in: {refusal}");
                self.fallback.format(alert, target)
            }
            None => self.fallback.format(alert, target),
        }
    }
}
