//! The recovery seam: [`RecoveryStrategy`] chooses what to do about a service whose breaker opened; [`FixedAction`]
//! is the built-in (the service's configured `onFailure`). Owns the choice only; running a restart or sending a
//! notification is the runtime's job, and spacing attempts is [`crate::Backoff`]'s.

use std::fmt;
use std::time::Duration;

/// One failure of the service, as the strategy sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failure {
    /// When it happened, in Unix epoch milliseconds.
    pub at_ms: u64,
    pub detail: String,
}

/// What to do about a failing service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoveryAction {
    Restart,
    /// Notify, with an optional message for the receiver.
    Notify(Option<String>),
    Ignore,
    /// Do nothing now and ask again after this long.
    Wait(Duration),
}

/// Chooses what to do about a service whose breaker opened.
pub trait RecoveryStrategy: Send + Sync + fmt::Debug {
    /// `history` holds the recent failures, oldest first; `attempt` counts recovery attempts since the service last
    /// recovered (0 for the first).
    fn decide(&self, history: &[Failure], attempt: u32) -> RecoveryAction;
}

/// The built-in strategy: always the same action (the service's `onFailure`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixedAction(pub RecoveryAction);

impl RecoveryStrategy for FixedAction {
    fn decide(&self, _history: &[Failure], _attempt: u32) -> RecoveryAction {
        self.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_action_ignores_history_and_attempts() {
        let s = FixedAction(RecoveryAction::Restart);
        assert_eq!(s.decide(&[], 0), RecoveryAction::Restart);
        assert_eq!(s.decide(&[Failure { at_ms: 1, detail: "x".into() }], 9), RecoveryAction::Restart);
    }
}
