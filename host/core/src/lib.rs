//! `aegis-core`: the pure resilience logic of the Aegis supervisor — circuit breakers with sliding windows and
//! pluggable trip predicates, a named-breaker manager, and backoff with jitter and retry budgets.
//!
//! This crate owns decisions, never effects: no I/O, no threads, no wall clock. Time arrives as `now: Instant`
//! arguments (or an injected [`Clock`]), randomness as `&mut dyn rand::RngCore`, environment lookups as closures.

// Tests may unwrap: a panic is the failure report there. Library code may not (workspace lint).
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod alerting;
pub mod backoff;
pub mod breaker;
pub mod clock;
pub mod detect;
pub mod error;
pub mod history;
pub mod manager;
pub mod policy;
pub mod replay;

pub use crate::alerting::{
    AlertBook, AlertSpec, AlertState, BookSnapshot, LabelSet, Notice, NoticeKind, SourceKind, TrackedAlert,
    alertmanager_v2_body, fingerprint, label_set,
};
pub use crate::backoff::{Backoff, BackoffSettings, BudgetSettings, Jitter, RetryBudget};
pub use crate::breaker::{
    AnyOf, Breaker, ConsecutiveFailures, Counts, EvaluateOn, FailureRate, Force, Never, Permit, PermitGuard,
    ReadyToTrip, Recent, Sample, Settings, SlowCallRate, Snapshot, State, StateChange, StateListener, TripContext,
    TripPredicate, Window, WindowKind,
};
pub use crate::clock::{Clock, FakeClock, MonotonicClock, TickedClock};
pub use crate::detect::{Direction, Ewma, RobustZ, Threshold};
pub use crate::error::{
    CallError, ConfigError, ManagerError, Rejected, is_circuit_breaker_error, is_circuit_breaker_error_dyn,
};
pub use crate::manager::{
    BreakerConfig, BreakerMetrics, BreakerOverride, Event, EventKind, HealthSummary, Manager, ManagerConfig, Observer,
    ObserverId, RejectedKind, Totals,
};
