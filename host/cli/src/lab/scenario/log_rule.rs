//! Log-rule scenarios: each `line:` step is matched as the live tailer matches a line of a log file (`source:`, by
//! default `app.log`), and `expect:` says which finding it gives, or `none`.

use std::path::Path;
use std::sync::Arc;

use aegis_core::policy::{Finding, LogRule, Severity};
use aegis_plugin::PluginHost;
use serde::Deserialize;

use super::file::{BREAKER, HISTORY, NoneOr, NotFor, Scenario, ScenarioError, load};
use super::report::{Report, quoted};
use super::watch::FailedCalls;

const DEFAULT_SOURCE: &str = "app.log";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LineStep {
    line: String,
    source: Option<String>,
    expect: Option<NoneOr<FindingWire>>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(super) enum SeverityWire {
    Info,
    Warning,
    Critical,
}

impl SeverityWire {
    pub(super) fn severity(self) -> Severity {
        match self {
            SeverityWire::Info => Severity::Info,
            SeverityWire::Warning => Severity::Warning,
            SeverityWire::Critical => Severity::Critical,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FindingWire {
    rule: Option<String>,
    severity: Option<SeverityWire>,
    message: Option<String>,
    message_contains: Option<String>,
}

/// Never finds anything: what the adapter answers with when the plugin fails (which [`FailedCalls`] reports).
#[derive(Debug)]
struct NoRule;

impl LogRule for NoRule {
    fn match_line(&self, _source: &str, _line: &str) -> Option<Finding> {
        None
    }
}

fn shown(f: &Finding) -> String {
    format!("{} ({}): {}", f.rule, f.severity, quoted(&f.message))
}

type LogScenario = Scenario<LineStep, NotFor<BREAKER>, NotFor<HISTORY>>;

pub(super) fn run(host: &PluginHost, plugin: &str, file: &Path) -> Result<Report, ScenarioError> {
    let scenario: LogScenario = load(file)?;
    let mut report = Report::of(&scenario);
    let bound = host.log_rule(plugin, "scenario", scenario.config.clone(), Arc::new(NoRule));
    let Some(rule) = report.bound(scenario.config_line, bound) else { return Ok(report) };
    let mut failed = FailedCalls::new(host, plugin);
    for step in &scenario.steps {
        let s = &step.body;
        let source = s.source.as_deref().unwrap_or(DEFAULT_SOURCE);
        let found = rule.match_line(source, &s.line);
        let actual = found.as_ref().map_or_else(|| "none".to_owned(), shown);
        report.input(None, format!("{source}: {} → {actual}", quoted(&s.line)));
        if let Some(failure) = failed.take() {
            report.check(step, None, "the plugin's call", false, "an answer", failure);
            continue;
        }
        match (&s.expect, &found) {
            (None, _) => {}
            (Some(NoneOr::Nothing), _) => report.check(step, None, "finding", found.is_none(), "none", &actual),
            (Some(NoneOr::Some(_)), None) => report.check(step, None, "finding", false, "a finding", &actual),
            (Some(NoneOr::Some(want)), Some(f)) => {
                if let Some(rule) = &want.rule {
                    report.check(step, None, "finding's rule", *rule == f.rule, rule, &f.rule);
                }
                if let Some(severity) = want.severity {
                    let want = severity.severity();
                    report.check(step, None, "finding's severity", want == f.severity, want, f.severity);
                }
                if let Some(message) = &want.message {
                    let holds = *message == f.message;
                    report.check(step, None, "finding's message", holds, quoted(message), quoted(&f.message));
                }
                if let Some(part) = &want.message_contains {
                    let holds = f.message.contains(part.as_str());
                    let want = format!("containing {}", quoted(part));
                    report.check(step, None, "finding's message", holds, want, quoted(&f.message));
                }
            }
        }
    }
    Ok(report)
}
