//! What an operator can do to a service's breaker (force a state, reset it), in one place for the admin API and
//! for commands another cluster replica forwards to the owner. Owns the effect on the service (breaker, give-up,
//! the saved and shared state, the event); must not parse requests or talk to Redis.

use std::time::Instant;

use aegis_core::{Force, Snapshot, State};

use super::{ServiceHandle, Shared};

/// An operator action on one service's breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperatorAction {
    ForceOpen,
    ForceClosed,
    /// Back to automatic operation.
    Auto,
    /// Automatic half-open: the next probe is a trial.
    HalfOpen,
    Reset,
}

impl OperatorAction {
    /// The action's name, as the force-state body and cluster commands write it.
    pub fn name(self) -> &'static str {
        match self {
            OperatorAction::ForceOpen => "open",
            OperatorAction::ForceClosed => "closed",
            OperatorAction::Auto => "auto",
            OperatorAction::HalfOpen => "half-open",
            OperatorAction::Reset => "reset",
        }
    }

    pub fn from_name(name: &str) -> Option<OperatorAction> {
        [
            OperatorAction::ForceOpen,
            OperatorAction::ForceClosed,
            OperatorAction::Auto,
            OperatorAction::HalfOpen,
            OperatorAction::Reset,
        ]
        .into_iter()
        .find(|a| a.name() == name)
    }

    /// Applies the action to `h` and records it; answers the breaker's new state.
    pub fn apply(self, shared: &Shared, h: &ServiceHandle, now: Instant) -> State {
        match self {
            OperatorAction::ForceOpen => h.breaker.force(now, Force::Open),
            OperatorAction::ForceClosed => h.breaker.force(now, Force::Closed),
            OperatorAction::Auto => h.breaker.force(now, Force::Auto),
            // Half-open is not an operator state: the breaker is put in automatic half-open.
            OperatorAction::HalfOpen => h.breaker.restore(
                now,
                &Snapshot { state: State::HalfOpen, counts: aegis_core::Counts::default(), open_remaining: None },
            ),
            OperatorAction::Reset => {
                h.breaker.reset(now);
                h.clear_give_up(shared);
            }
        }
        h.persist_breaker(shared);
        let state = h.breaker.state(now);
        if self == OperatorAction::Reset {
            shared.event(&h.config.name, "breaker-reset", "operator reset");
        }
        tracing::warn!(service = %h.config.name, state = %state, action = self.name(), "breaker state set by operator");
        state
    }
}
