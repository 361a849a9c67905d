//! The recovery a replay would have run, modelled on the supervisor's (`host/runtime/src/supervisor/recovery.rs`):
//! at every opening, the recovery strategy's decision (a plugin's, asked with the recent failures and the attempt
//! number, which resets when the breaker closes again) or else the fixed `onFailure`; a restart waits for its backoff
//! delay (one pending at a time) and is refused by the restart limit, which then gives up for good; a `wait` asks again
//! when it ends if the breaker is not closed by then. Owns this bookkeeping and its timers only; time is the record's,
//! randomness (backoff jitter) comes from a seeded generator, so the baseline and the candidate draw the same delays.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::Serialize;

use super::{Change, Timeline};
use crate::backoff::{Backoff, BackoffSettings};
use crate::breaker::State;
use crate::history::Outcome;
use crate::policy::{Failure, RecoveryAction, RecoveryStrategy};

/// Failed checks shown to a recovery strategy (the supervisor keeps as many).
const FAILURE_HISTORY: usize = 32;

/// `restartLimit`: at most `burst` restarts within `interval`, then give up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartLimit {
    pub burst: u32,
    pub interval: Duration,
}

/// How a service recovers, as its config (or a candidate) says.
#[derive(Clone)]
pub struct RecoveryModel {
    /// A recovery strategy (`recoveryPolicy` plugin); `None` uses [`Self::on_failure`] without asking.
    pub strategy: Option<Arc<dyn RecoveryStrategy>>,
    /// `onFailure` as an action: only `Restart` does anything without a strategy (a notification goes out with the
    /// opening itself, which the transitions already show).
    pub on_failure: RecoveryAction,
    pub backoff: Option<BackoffSettings>,
    pub restart_limit: Option<RestartLimit>,
    /// Seed of the backoff jitter.
    pub seed: u64,
}

impl fmt::Debug for RecoveryModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoveryModel")
            .field("strategy", &self.strategy)
            .field("on_failure", &self.on_failure)
            .field("backoff", &self.backoff)
            .field("restart_limit", &self.restart_limit)
            .finish_non_exhaustive()
    }
}

/// One step of the recovery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RecoveryStep {
    /// The strategy's answer (`restart`, `notify`, `ignore`, `wait 30s`) to attempt `attempt`.
    Decided { attempt: u32, action: String },
    /// The strategy asked to notify.
    Notify { message: Option<String> },
    /// A restart ran (after its backoff delay); `attempt` is the backoff's attempt number.
    Restart { attempt: u32 },
    /// The restart limit refused a restart: no more until an operator resets the service.
    GaveUp { restarts: usize },
}

/// A recovery step and when it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecoveryEvent {
    pub at_ms: i64,
    #[serde(flatten)]
    pub step: RecoveryStep,
}

/// The running state of one replay's recovery.
pub(super) struct Recovery<'a> {
    model: &'a RecoveryModel,
    outcomes: &'a [Outcome],
    time: Timeline,
    /// Indexes (into `outcomes`) of the latest failed checks, oldest first.
    failures: VecDeque<usize>,
    /// Strategy decisions since the breaker last closed after a trial.
    decisions: u32,
    /// A strategy's `wait` ends then (no other decision meanwhile).
    wait_until: Option<i64>,
    /// A restart is pending: when it runs, and its backoff attempt.
    restart_at: Option<(i64, u32)>,
    /// When recent restarts ran, for the restart limit.
    recent: VecDeque<i64>,
    gave_up: bool,
    backoff: Option<Backoff>,
    rng: SmallRng,
    events: Vec<RecoveryEvent>,
}

impl<'a> Recovery<'a> {
    pub(super) fn new(model: &'a RecoveryModel, outcomes: &'a [Outcome], time: Timeline) -> Self {
        Recovery {
            model,
            outcomes,
            time,
            failures: VecDeque::with_capacity(FAILURE_HISTORY),
            decisions: 0,
            wait_until: None,
            restart_at: None,
            recent: VecDeque::new(),
            gave_up: false,
            backoff: model.backoff.map(Backoff::new),
            rng: SmallRng::seed_from_u64(model.seed),
            events: Vec::new(),
        }
    }

    pub(super) fn into_events(self) -> Vec<RecoveryEvent> {
        self.events
    }

    /// Outcome `index` was an admitted failed check.
    #[inline]
    pub(super) fn failed(&mut self, index: usize) {
        if self.failures.len() == FAILURE_HISTORY {
            self.failures.pop_front();
        }
        self.failures.push_back(index);
    }

    /// Reacts to a breaker transition, as the supervisor's transition handler does.
    pub(super) fn on_change(&mut self, change: &Change) {
        match (change.from, change.to) {
            (_, State::Open) => self.start(change.at_ms),
            (State::HalfOpen, State::Closed) => self.decisions = 0,
            _ => {}
        }
    }

    /// When the next timer (a pending restart, the end of a wait) fires.
    pub(super) fn next_due(&self) -> Option<i64> {
        match (self.restart_at.map(|(at, _)| at), self.wait_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires the timer due at `due`; `state_at` tells the breaker's state then.
    pub(super) fn fire(&mut self, due: i64, state_at: impl FnOnce(i64) -> State) {
        if let Some((at, attempt)) = self.restart_at.filter(|&(at, _)| at == due) {
            self.restart_at = None;
            self.recent.push_back(at);
            self.events.push(RecoveryEvent { at_ms: at, step: RecoveryStep::Restart { attempt } });
        } else if self.wait_until == Some(due) {
            self.wait_until = None;
            if !matches!(state_at(due), State::Closed | State::ForcedClosed) {
                self.start(due);
            }
        }
    }

    /// The supervisor's `start_recovery`.
    fn start(&mut self, at_ms: i64) {
        let Some(strategy) = &self.model.strategy else {
            if self.model.on_failure == RecoveryAction::Restart {
                self.restart(at_ms);
            }
            return;
        };
        if self.wait_until.is_some() {
            return;
        }
        let attempt = self.decisions;
        self.decisions += 1;
        let history: Vec<Failure> = self
            .failures
            .iter()
            .map(|&i| {
                let o = &self.outcomes[i];
                Failure {
                    at_ms: u64::try_from(o.at_ms).unwrap_or(0),
                    detail: o.detail.as_deref().unwrap_or_default().to_owned(),
                }
            })
            .collect();
        let action = strategy.decide(&history, attempt);
        self.events.push(RecoveryEvent { at_ms, step: RecoveryStep::Decided { attempt, action: describe(&action) } });
        match action {
            RecoveryAction::Restart => self.restart(at_ms),
            RecoveryAction::Notify(message) => {
                self.events.push(RecoveryEvent { at_ms, step: RecoveryStep::Notify { message } });
            }
            RecoveryAction::Ignore => {}
            RecoveryAction::Wait(d) => self.wait_until = Some(at_ms.saturating_add(ceil_ms(d))),
        }
    }

    /// The supervisor's `restart_after_backoff`.
    fn restart(&mut self, at_ms: i64) {
        if self.gave_up || self.restart_at.is_some() {
            return;
        }
        if let Some(limit) = self.model.restart_limit {
            let horizon = at_ms.saturating_sub(i64::try_from(limit.interval.as_millis()).unwrap_or(i64::MAX));
            while self.recent.front().is_some_and(|&t| t < horizon) {
                self.recent.pop_front();
            }
            if self.recent.len() >= limit.burst as usize {
                self.gave_up = true;
                self.events.push(RecoveryEvent { at_ms, step: RecoveryStep::GaveUp { restarts: self.recent.len() } });
                return;
            }
        }
        let (delay, attempt) = match &mut self.backoff {
            Some(b) => (b.next_delay(self.time.at_ms(at_ms), &mut self.rng), b.attempt()),
            None => (Duration::ZERO, 0),
        };
        self.restart_at = Some((at_ms.saturating_add(ceil_ms(delay)), attempt));
    }
}

/// A decision as the operator reads it.
fn describe(action: &RecoveryAction) -> String {
    match action {
        RecoveryAction::Restart => "restart".to_owned(),
        RecoveryAction::Notify(_) => "notify".to_owned(),
        RecoveryAction::Ignore => "ignore".to_owned(),
        RecoveryAction::Wait(d) => format!("wait {} ms", ceil_ms(*d)),
    }
}

fn ceil_ms(d: Duration) -> i64 {
    i64::try_from(d.as_micros().div_ceil(1000)).unwrap_or(i64::MAX)
}
