//! Lining up two replays of the same record (the config's own policies, a candidate's) as one timeline each of the
//! moments an operator cares about — breaker transitions, restarts, give-ups, notifications — and finding the first
//! where they differ. Owns the comparison only: two moments agree when they happen at the same millisecond and are
//! the same kind of thing; the reasons may differ (a plugin words its trip differently from the built-in) without
//! that being a divergence.

use serde::Serialize;

use super::Run;
use super::recovery::RecoveryStep;

/// One thing that happened in a replay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Moment {
    pub at_ms: i64,
    /// What, compared between runs: `closed -> open`, `restart`, `gave up`, `notify`.
    pub what: String,
    /// Why (a transition's reason, a restart's attempt), shown but not compared.
    pub detail: String,
}

/// Where two replays part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Divergence {
    /// Position in both timelines.
    pub index: usize,
    /// The earlier of the two differing moments.
    pub at_ms: i64,
    /// The baseline's moment there (`None`: the baseline had nothing more).
    pub baseline: Option<Moment>,
    pub candidate: Option<Moment>,
}

/// The run's moments in time order (at the same millisecond, transitions before what recovery did about them).
pub fn moments(run: &Run) -> Vec<Moment> {
    let transitions = run.changes.iter().map(|c| Moment {
        at_ms: c.at_ms,
        what: format!("{} -> {}", c.from, c.to),
        detail: c.reason.clone(),
    });
    let recovery = run.recovery.iter().filter_map(|e| {
        let (what, detail) = match &e.step {
            RecoveryStep::Decided { .. } => return None,
            RecoveryStep::Restart { attempt } => ("restart", format!("attempt {attempt}")),
            RecoveryStep::GaveUp { restarts } => ("gave up", format!("{restarts} restarts within the limit")),
            RecoveryStep::Notify { message } => ("notify", message.clone().unwrap_or_default()),
        };
        Some(Moment { at_ms: e.at_ms, what: what.to_owned(), detail })
    });
    let mut all: Vec<Moment> = transitions.chain(recovery).collect();
    all.sort_by_key(|m| m.at_ms);
    all
}

/// The first moment at which `candidate` does something else than `baseline`, or at another time; `None` when
/// they agree throughout.
pub fn first_divergence(baseline: &Run, candidate: &Run) -> Option<Divergence> {
    let (a, b) = (moments(baseline), moments(candidate));
    let index = (0..a.len().max(b.len())).find(|&i| match (a.get(i), b.get(i)) {
        (Some(x), Some(y)) => x.at_ms != y.at_ms || x.what != y.what,
        _ => true,
    })?;
    let (baseline, candidate) = (a.get(index).cloned(), b.get(index).cloned());
    let at_ms = [&baseline, &candidate].into_iter().flatten().map(|m| m.at_ms).min().unwrap_or(0);
    Some(Divergence { index, at_ms, baseline, candidate })
}
