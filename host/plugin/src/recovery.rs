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

/// Shortest `wait` a strategy may ask for. After a wait the host asks again, recording an event and a log line for
/// each decision, so `wait(0)` would be a busy loop that floods the event store for as long as the breaker is open.
/// A second is shorter than any useful recovery step (a restart, a probe interval at its usual setting).
pub const MIN_WAIT: Duration = Duration::from_secs(1);
/// Longest `wait` a strategy may ask for. A service's recovery waits out the whole of it, so `wait(u64::MAX)` would
/// park recovery for good; a day is longer than any sensible pause, and a strategy that wants to stop deciding says
/// `ignore`.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// A recovery strategy implemented by a plugin; falls back to the built-in on trap, timeout, a `wait` outside
/// [`MIN_WAIT`]..=[`MAX_WAIT`] (an invalid result) or quarantine.
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
    /// The same binding as a service's shadow recovery strategy, asked through [`Self::answer`] only: its calls,
    /// strikes and quarantine are counted on the plugin's shadow record (see [`crate::shadow_name`]).
    pub fn into_shadow(self, host: &PluginHost) -> Self {
        WasmRecoveryStrategy { binding: self.binding.into_shadow(host), ..self }
    }

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
        self.answer(history, attempt).unwrap_or_else(|| self.fallback.decide(history, attempt))
    }
}

impl WasmRecoveryStrategy {
    /// The plugin's own action, `None` when it gave none (quarantined, not loaded, trapped, too slow, an invalid
    /// answer): what a shadow is compared by.
    pub fn answer(&self, history: &[Failure], attempt: u32) -> Option<RecoveryAction> {
        let recent = &history[history.len().saturating_sub(MAX_HISTORY)..];
        let failures: Vec<wit::Failure> =
            recent.iter().map(|f| wit::Failure { at_ms: f.at_ms, detail: f.detail.clone() }).collect();
        self.binding.call(|plugin, store| {
            plugin.aegis_policy_recovery_strategy().call_decide(store, &failures, attempt).map(validate)
        })
    }
}

/// The plugin's action as the host runs it: a notification's message cut and escaped, a wait within
/// [`MIN_WAIT`]..=[`MAX_WAIT`].
pub(crate) fn validate(action: wit::Action) -> Result<RecoveryAction, String> {
    Ok(match action {
        wit::Action::Restart => RecoveryAction::Restart,
        wit::Action::Notify(message) => RecoveryAction::Notify(message.map(clamp_text)),
        wit::Action::Ignore => RecoveryAction::Ignore,
        wit::Action::Wait(ms) => {
            let wait = Duration::from_millis(ms);
            if !(MIN_WAIT..=MAX_WAIT).contains(&wait) {
                return Err(format!("wait of {ms} ms is outside {MIN_WAIT:?}..={MAX_WAIT:?}"));
            }
            RecoveryAction::Wait(wait)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_outside_the_bounds_are_refused() {
        let wait = |ms| validate(wit::Action::Wait(ms));
        assert_eq!(wait(1_000), Ok(RecoveryAction::Wait(Duration::from_secs(1))));
        assert_eq!(wait(300_000), Ok(RecoveryAction::Wait(Duration::from_secs(300))));
        assert_eq!(wait(24 * 3600 * 1000), Ok(RecoveryAction::Wait(MAX_WAIT)));
        for ms in [0, 999, 24 * 3600 * 1000 + 1, u64::MAX] {
            let err = wait(ms).unwrap_err();
            assert!(err.contains(&format!("wait of {ms} ms")), "{err}");
        }
    }

    #[test]
    fn other_actions_pass_with_their_message_cut_and_escaped() {
        assert_eq!(validate(wit::Action::Restart), Ok(RecoveryAction::Restart));
        assert_eq!(validate(wit::Action::Ignore), Ok(RecoveryAction::Ignore));
        assert_eq!(validate(wit::Action::Notify(None)), Ok(RecoveryAction::Notify(None)));
        assert_eq!(
            validate(wit::Action::Notify(Some("down\nERROR forged".into()))),
            Ok(RecoveryAction::Notify(Some(r"down\nERROR forged".into())))
        );
    }
}
