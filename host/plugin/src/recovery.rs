//! The recovery-strategy adapter: a WASM component behind `aegis_core::policy::RecoveryStrategy`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aegis_core::policy::{Failure, RecoveryAction, RecoveryStrategy};

use crate::ServiceInfo;
use crate::binding::{Binding, clamp_text};
use crate::bindings::recovery::RecoveryStrategyPlugin;
use crate::bindings::recovery::exports::aegis::policy::recovery_strategy as wit;
use crate::error::PluginError;
use crate::host::PluginHost;

/// Most failures a strategy is shown; older ones are left out so a long outage cannot blow up a call.
const MAX_HISTORY: usize = 64;

/// A recovery strategy implemented by a plugin; falls back to the built-in on trap, timeout or quarantine.
pub struct WasmRecoveryStrategy {
    binding: Binding<RecoveryStrategyPlugin>,
    fallback: Arc<dyn RecoveryStrategy>,
}

impl fmt::Debug for WasmRecoveryStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmRecoveryStrategy")
            .field("binding", &self.binding)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// Binds the recovery-strategy plugin `name` to a service and runs its `init` with `config` now.
    pub fn recovery_strategy(
        &self,
        name: &str,
        service: ServiceInfo,
        config: Vec<(String, String)>,
        fallback: Arc<dyn RecoveryStrategy>,
    ) -> Result<WasmRecoveryStrategy, PluginError> {
        let binding = Binding::new(self, name, service.name.clone(), Some(service.into()), config)?;
        Ok(WasmRecoveryStrategy { binding, fallback })
    }
}

impl WasmRecoveryStrategy {
    pub fn plugin_name(&self) -> &str {
        self.binding.plugin_name()
    }

    /// Whether the plugin is loaded now. A binding made before its plugin appeared uses the built-in policy and
    /// binds the plugin at the first call after it is loaded.
    pub fn is_loaded(&self) -> bool {
        self.binding.is_loaded()
    }
}

impl RecoveryStrategy for WasmRecoveryStrategy {
    fn decide(&self, history: &[Failure], attempt: u32) -> RecoveryAction {
        let recent = &history[history.len().saturating_sub(MAX_HISTORY)..];
        let failures: Vec<wit::Failure> =
            recent.iter().map(|f| wit::Failure { at_ms: f.at_ms, detail: f.detail.clone() }).collect();
        let action = self.binding.call(|plugin, store| {
            plugin.aegis_policy_recovery_strategy().call_decide(store, &failures, attempt).map(|a| {
                Ok(match a {
                    wit::Action::Restart => RecoveryAction::Restart,
                    wit::Action::Notify(message) => RecoveryAction::Notify(message.map(clamp_text)),
                    wit::Action::Ignore => RecoveryAction::Ignore,
                    wit::Action::Wait(ms) => RecoveryAction::Wait(Duration::from_millis(ms)),
                })
            })
        });
        action.unwrap_or_else(|| self.fallback.decide(history, attempt))
    }
}
