//! The host side of the plugin boundary as plain functions: what each adapter does with a guest's answer once
//! wasmtime has lifted it (checks, bounds, escaping), and how a trip decision's window is packed for the guest.
//! For the fuzzer and for tests that need no component; the adapters call the same functions. Owns nothing of its
//! own: every function here is a re-export or a one-line delegation.
//!
//! Wasmtime's canonical ABI refuses out-of-range discriminants and invalid UTF-8 before an adapter sees a value, so
//! the guest answers here are every value the WIT types can hold, in every context.

use aegis_core::TripContext;
use aegis_core::policy::{Anomaly, Finding, Payload, RecoveryAction};

pub use crate::bindings::alert::exports::aegis::policy::alert_formatter::Payload as GuestPayload;
pub use crate::bindings::anomaly::exports::aegis::policy::anomaly_scorer::Anomaly as GuestAnomaly;
pub use crate::bindings::log_rule::exports::aegis::policy::log_rule::Finding as GuestFinding;
pub use crate::bindings::recovery::exports::aegis::policy::recovery_strategy::Action as GuestAction;
pub use crate::bindings::trip::exports::aegis::policy::trip_predicate::Verdict as GuestVerdict;
pub use crate::bindings::types::{Severity as GuestSeverity, WindowSummary};
pub use crate::log_rule::RuleNames;

/// Header names (lowercase) and name prefixes a formatter may not set: the host or its HTTP client owns them.
pub use crate::alert::{HOST_OWNED as HOST_OWNED_HEADERS, HOST_OWNED_PREFIXES as HOST_OWNED_HEADER_PREFIXES};

/// Longest text (a reason, a message) the host passes on from a plugin, before the `…` that marks a cut.
pub const MAX_TEXT: usize = crate::binding::MAX_TEXT;

/// An alert formatter's payload, checked as [`crate::WasmAlertFormatter`] does before it reaches a request.
pub fn alert_payload(answer: GuestPayload) -> Result<Payload, String> {
    crate::alert::validate(answer)
}

/// A recovery strategy's action, as [`crate::WasmRecoveryStrategy`] runs it.
pub fn recovery_action(answer: GuestAction) -> Result<RecoveryAction, String> {
    crate::recovery::validate(answer)
}

/// An anomaly scorer's anomaly, as [`crate::WasmAnomalyScorer`] passes it on.
pub fn anomaly(answer: GuestAnomaly) -> Result<Anomaly, String> {
    crate::anomaly::validate(answer)
}

/// A log rule's finding, as [`crate::WasmLogRule`] passes it on; `names` are the binding's rule names so far.
pub fn finding(names: &RuleNames, answer: GuestFinding) -> Result<Finding, String> {
    crate::log_rule::validate(names, answer)
}

/// A trip predicate's final verdict and its reason, as [`crate::WasmTripPredicate`] decides.
pub fn trip_decision(verdict: GuestVerdict, reason: String) -> Result<Option<String>, String> {
    crate::trip::settle(verdict, || Ok::<_, std::convert::Infallible>(reason)).unwrap_or_else(|never| match never {})
}

/// The window of a trip decision as it crosses to the guest: the summary, and the packed outcomes oldest first (sent
/// when the guest's copy is out of step).
pub fn trip_window(ctx: &TripContext<'_>) -> (WindowSummary, Vec<u64>) {
    let mut outcomes = Vec::new();
    crate::trip::pack_window(ctx, &mut outcomes);
    (crate::trip::window_summary(ctx), outcomes)
}
