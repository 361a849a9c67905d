//! Recovery-strategy scenarios: `failure:` steps build the failure history (the newest 32, as the live host keeps),
//! `attempt:` steps ask the strategy what to do at that attempt and compare the action with `expect:`.

use std::collections::VecDeque;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aegis_core::policy::{Failure, FixedAction, RecoveryAction, RecoveryStrategy};
use aegis_plugin::PluginHost;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use super::file::{BREAKER, Dur, HISTORY, NotFor, Scenario, ScenarioError, Timeline, epoch_ms, load};
use super::report::{Report, quoted};
use super::watch::FailedCalls;

/// Failures the history holds, as the live host's probe loop keeps them.
const FAILURE_HISTORY: usize = 32;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RecoveryStep {
    at: Option<Dur>,
    failure: Option<String>,
    attempt: Option<u32>,
    expect: Option<ActionWire>,
}

/// `restart`, `ignore`, `notify` (any message), `{notify: "message"}` or `{wait: 5m}`.
#[derive(Debug, PartialEq, Eq)]
enum ActionWire {
    Restart,
    Ignore,
    Notify(Option<String>),
    Wait(Duration),
}

impl<'de> Deserialize<'de> for ActionWire {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde_yaml::Value;
        const EXPECTED: &str = "expected restart, ignore, notify, {notify: \"message\"} or {wait: 5m}";
        match Value::deserialize(d)? {
            Value::String(s) => match s.as_str() {
                "restart" => Ok(ActionWire::Restart),
                "ignore" => Ok(ActionWire::Ignore),
                "notify" => Ok(ActionWire::Notify(None)),
                other => Err(D::Error::custom(format!("unknown action {other:?}: {EXPECTED}"))),
            },
            Value::Mapping(m) if m.len() == 1 => match m.into_iter().next() {
                Some((Value::String(k), Value::String(message))) if k == "notify" => {
                    Ok(ActionWire::Notify(Some(message)))
                }
                Some((Value::String(k), v)) if k == "wait" => {
                    serde_yaml::from_value::<Dur>(v).map(|d| ActionWire::Wait(d.0)).map_err(D::Error::custom)
                }
                _ => Err(D::Error::custom(EXPECTED)),
            },
            _ => Err(D::Error::custom(EXPECTED)),
        }
    }
}

impl ActionWire {
    fn matches(&self, actual: &RecoveryAction) -> bool {
        match (self, actual) {
            (ActionWire::Restart, RecoveryAction::Restart) | (ActionWire::Ignore, RecoveryAction::Ignore) => true,
            (ActionWire::Notify(None), RecoveryAction::Notify(_)) => true,
            (ActionWire::Notify(Some(want)), RecoveryAction::Notify(Some(got))) => want == got,
            (ActionWire::Wait(want), RecoveryAction::Wait(got)) => want == got,
            _ => false,
        }
    }
}

impl fmt::Display for ActionWire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActionWire::Restart => f.write_str("restart"),
            ActionWire::Ignore => f.write_str("ignore"),
            ActionWire::Notify(None) => f.write_str("notify (any message)"),
            ActionWire::Notify(Some(m)) => write!(f, "notify {}", quoted(m)),
            ActionWire::Wait(d) => write!(f, "wait {}", humantime::format_duration(*d)),
        }
    }
}

fn shown(a: &RecoveryAction) -> String {
    match a {
        RecoveryAction::Restart => "restart".into(),
        RecoveryAction::Ignore => "ignore".into(),
        RecoveryAction::Notify(None) => "notify (no message)".into(),
        RecoveryAction::Notify(Some(m)) => format!("notify {}", quoted(m)),
        RecoveryAction::Wait(d) => format!("wait {}", humantime::format_duration(*d)),
    }
}

type RecoveryScenario = Scenario<RecoveryStep, NotFor<BREAKER>, NotFor<HISTORY>>;

pub(super) fn run(host: &PluginHost, plugin: &str, file: &Path) -> Result<Report, ScenarioError> {
    let scenario: RecoveryScenario = load(file)?;
    validate(&scenario)?;
    let mut report = Report::of(&scenario);
    let fallback: Arc<dyn RecoveryStrategy> = Arc::new(FixedAction(RecoveryAction::Ignore));
    let bound = host.recovery_strategy(plugin, scenario.service.clone(), scenario.config.clone(), fallback);
    let Some(strategy) = report.bound(scenario.config_line, bound) else { return Ok(report) };
    let mut failed = FailedCalls::new(host, plugin);
    let mut timeline = Timeline::new(scenario.interval);
    let mut history: VecDeque<Failure> = VecDeque::with_capacity(FAILURE_HISTORY);
    for step in &scenario.steps {
        let s = &step.body;
        let at = timeline.input(s.at).map_err(|e| step.error(file, e))?;
        if let Some(detail) = &s.failure {
            if history.len() == FAILURE_HISTORY {
                history.pop_front();
            }
            history.push_back(Failure { at_ms: epoch_ms(at), detail: detail.clone() });
            report.input(Some(at), format!("failure {}", quoted(detail)));
        }
        if let Some(attempt) = s.attempt {
            let action = strategy.decide(history.make_contiguous(), attempt);
            report.input(Some(at), format!("attempt {attempt} → {}", shown(&action)));
            if let Some(failure) = failed.take() {
                report.check(step, Some(at), "the plugin's call", false, "an answer", failure);
            } else if let Some(want) = &s.expect {
                report.check(step, Some(at), "action", want.matches(&action), want, shown(&action));
            }
        }
    }
    Ok(report)
}

fn validate(s: &RecoveryScenario) -> Result<(), ScenarioError> {
    for step in &s.steps {
        let b = &step.body;
        if b.failure.is_some() == b.attempt.is_some() {
            return Err(step.error(&s.file, "give either a `failure:` (its detail) or an `attempt:` (a number)"));
        }
        if b.expect.is_some() && b.attempt.is_none() {
            return Err(step.error(&s.file, "`expect:` goes with an `attempt:`"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(yaml: &str) -> Result<ActionWire, String> {
        serde_yaml::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn actions_read_as_words_or_one_key_maps() {
        assert_eq!(action("restart"), Ok(ActionWire::Restart));
        assert_eq!(action("notify"), Ok(ActionWire::Notify(None)));
        assert_eq!(action("{notify: api is down}"), Ok(ActionWire::Notify(Some("api is down".into()))));
        assert_eq!(action("{wait: 5m}"), Ok(ActionWire::Wait(Duration::from_secs(300))));
        assert!(action("reboot").unwrap_err().contains("unknown action \"reboot\""));
        assert!(action("{wait: 5}").unwrap_err().contains("needs a unit"));
        assert!(action("{wait: 5m, notify: x}").is_err());
    }

    #[test]
    fn notify_without_a_message_matches_any_notification() {
        let any = ActionWire::Notify(None);
        assert!(any.matches(&RecoveryAction::Notify(Some("x".into()))));
        assert!(any.matches(&RecoveryAction::Notify(None)));
        assert!(!ActionWire::Notify(Some("x".into())).matches(&RecoveryAction::Notify(None)));
        assert!(!ActionWire::Wait(Duration::from_secs(1)).matches(&RecoveryAction::Wait(Duration::from_secs(2))));
        assert!(!ActionWire::Restart.matches(&RecoveryAction::Ignore));
    }
}
