//! Trip-predicate scenarios: probe outcomes go through a real [`Breaker`] built with the live host's settings
//! ([`breaker_settings`], from the scenario's `breaker:` over the config defaults), so the plugin sees the counts and
//! window it sees live, and an expectation speaks of the breaker: its state, the reason of its last transition, how
//! often it opened. Outcomes the open breaker rejects are noted as rejected, as a live probe's would not count.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aegis_core::{Breaker, Never, State, StateChange, TripPredicate};
use aegis_plugin::PluginHost;
use aegis_runtime::config::BreakerConfig;
use aegis_runtime::supervisor::breaker_settings;
use serde::Deserialize;

use super::file::{Dur, HISTORY, NotFor, Scenario, ScenarioError, Step, Timeline, load};
use super::report::{Report, quoted};
use super::watch::FailedCalls;
use std::path::Path;

/// A probe's latency when the step gives none.
const DEFAULT_LATENCY: Duration = Duration::from_millis(10);

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Probe {
    Ok,
    Fail,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TripStep {
    at: Option<Dur>,
    outcome: Option<Probe>,
    latency: Option<Dur>,
    repeat: Option<u32>,
    expect: Option<Expect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Expect {
    state: Option<State>,
    reason: Option<String>,
    reason_contains: Option<String>,
    openings: Option<u32>,
}

/// The breaker settings a scenario may set; the rest are the config's defaults, as for a live service.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct BreakerWire {
    window_size: Option<u32>,
    reset_timeout: Option<Dur>,
    success_threshold: Option<u32>,
    slow_call_duration: Option<Dur>,
    recovery_time: Option<Dur>,
}

impl BreakerWire {
    fn config(&self) -> BreakerConfig {
        let mut b = BreakerConfig::default();
        b.window_size = self.window_size.unwrap_or(b.window_size).max(1);
        b.reset_timeout = self.reset_timeout.map_or(b.reset_timeout, |d| d.0);
        b.success_threshold = self.success_threshold.unwrap_or(b.success_threshold).max(1);
        b.slow_call_duration = self.slow_call_duration.map(|d| d.0).or(b.slow_call_duration);
        b.recovery_time = self.recovery_time.map(|d| d.0).or(b.recovery_time);
        b
    }
}

type TripScenario = Scenario<TripStep, BreakerWire, NotFor<HISTORY>>;

pub(super) fn run(host: &PluginHost, plugin: &str, file: &Path) -> Result<Report, ScenarioError> {
    let scenario: TripScenario = load(file)?;
    validate(&scenario)?;
    let mut report = Report::of(&scenario);
    let bound = host.trip_predicate(plugin, scenario.service.clone(), scenario.config.clone(), Arc::new(Never));
    let Some(predicate) = report.bound(scenario.config_line, bound) else { return Ok(report) };
    let changes: Arc<Mutex<Vec<StateChange>>> = Arc::default();
    let sink = Arc::clone(&changes);
    let config = scenario.breaker.as_ref().map_or_else(BreakerConfig::default, BreakerWire::config);
    let predicate: Arc<dyn TripPredicate> = Arc::new(predicate);
    let settings = breaker_settings(&scenario.service.name, &config, predicate).on_state_change(Arc::new(
        move |c: &StateChange| sink.lock().unwrap_or_else(|p| p.into_inner()).push(c.clone()),
    ));
    let breaker = Breaker::new(settings);
    let start = Instant::now();
    let mut failed = FailedCalls::new(host, plugin);
    let mut timeline = Timeline::new(scenario.interval);
    for step in &scenario.steps {
        let s = &step.body;
        let mut at = match s.outcome {
            Some(_) => Duration::ZERO,
            None => timeline.check(s.at).map_err(|e| step.error(file, e))?,
        };
        if let Some(probe) = s.outcome {
            let latency = s.latency.map_or(DEFAULT_LATENCY, |d| d.0);
            for i in 0..s.repeat.unwrap_or(1) {
                at = timeline.input(if i == 0 { s.at } else { None }).map_err(|e| step.error(file, e))?;
                let now = start + at;
                let verdict = match breaker.try_acquire(now) {
                    Ok(permit) => {
                        breaker.record(now, permit, probe == Probe::Ok, latency);
                        breaker.current_state().as_str().to_owned()
                    }
                    Err(_) => format!("{} (rejected, not counted)", breaker.current_state()),
                };
                let shown = match probe {
                    Probe::Ok => format!("ok {}", humantime::format_duration(latency)),
                    Probe::Fail => format!("fail {}", humantime::format_duration(latency)),
                };
                report.input(Some(at), format!("{shown:<14} → {verdict}"));
                if let Some(failure) = failed.take() {
                    report.check(step, Some(at), "the plugin's call", false, "an answer", failure);
                }
            }
        }
        if let Some(expect) = &s.expect {
            let state = breaker.state(start + at);
            let changes = changes.lock().unwrap_or_else(|p| p.into_inner());
            check(&mut report, step, at, expect, state, &changes);
        }
    }
    Ok(report)
}

fn check(report: &mut Report, step: &Step<TripStep>, at: Duration, e: &Expect, state: State, changes: &[StateChange]) {
    let at = Some(at);
    if let Some(want) = e.state {
        let last = changes.last().map(|c| format!(" ({})", quoted(&c.reason))).unwrap_or_default();
        report.check(step, at, "breaker state", want == state, want, format!("{state}{last}"));
    }
    let reason = changes.last().map(|c| c.reason.as_str());
    let shown = reason.map_or_else(|| "no transition yet".to_owned(), quoted);
    if let Some(want) = &e.reason {
        report.check(step, at, "reason of the last transition", reason == Some(want), quoted(want), &shown);
    }
    if let Some(want) = &e.reason_contains {
        let holds = reason.is_some_and(|r| r.contains(want.as_str()));
        report.check(step, at, "reason of the last transition", holds, format!("containing {}", quoted(want)), &shown);
    }
    if let Some(want) = e.openings {
        let opened = changes.iter().filter(|c| c.to == State::Open && c.from == State::Closed).count();
        let holds = usize::try_from(want).is_ok_and(|w| w == opened);
        report.check(step, at, "times the breaker opened (closed → open)", holds, want, opened);
    }
}

fn validate(s: &TripScenario) -> Result<(), ScenarioError> {
    for step in &s.steps {
        let b = &step.body;
        let error = |m: &str| Err(step.error(&s.file, m));
        if b.outcome.is_none() && b.expect.is_none() {
            return error("give an `outcome:` (ok or fail), an `expect:`, or both");
        }
        if b.outcome.is_none() && (b.latency.is_some() || b.repeat.is_some()) {
            return error("`latency:` and `repeat:` go with an `outcome:`");
        }
        if b.repeat == Some(0) {
            return error("`repeat:` must be at least 1");
        }
        if let Some(e) = &b.expect
            && e.state.is_none()
            && e.reason.is_none()
            && e.reason_contains.is_none()
            && e.openings.is_none()
        {
            return error("`expect:` needs one of state, reason, reasonContains, openings");
        }
    }
    Ok(())
}
