//! Alert-formatter scenarios: each `alert:` step renders an alert for a receiver (`target:`, default `webhook`) and
//! `expect:` checks the payload (content type, headers, body text, values inside a JSON body by JSON pointer) or
//! that the formatter refused it (the live host then sends the built-in Alertmanager body).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use aegis_core::policy::{Alert, AlertFormatter, AlertStatus, FormatError, Payload};
use aegis_plugin::PluginHost;
use serde::Deserialize;

use super::file::{BREAKER, Dur, HISTORY, NotFor, Scenario, ScenarioError, Step, epoch_ms, load};
use super::log_rule::SeverityWire;
use super::report::{Report, quoted};
use super::watch::FailedCalls;

const DEFAULT_TARGET: &str = "webhook";
/// The fallback's refusal, to tell "the plugin refused" from a payload.
const REFUSED: &str = "refused by the plugin";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AlertStep {
    alert: AlertWire,
    target: Option<String>,
    expect: Option<PayloadWire>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum StatusWire {
    #[default]
    Firing,
    Resolved,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AlertWire {
    name: String,
    #[serde(default)]
    status: StatusWire,
    severity: Option<SeverityWire>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    starts_at: Option<Dur>,
    ends_at: Option<Dur>,
    #[serde(default)]
    fingerprint: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PayloadWire {
    refused: Option<bool>,
    content_type: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    #[serde(default)]
    body_contains: Vec<String>,
    /// JSON pointer (`/attachments/0/color`) → the value expected there.
    #[serde(default)]
    json: BTreeMap<String, serde_yaml::Value>,
}

impl AlertWire {
    /// The alert as the live host hands it to a formatter: its labels sorted by name, with `alertname` and
    /// `severity` set from the alert (as `aegis_core::AlertSpec::label_set` does).
    fn alert(&self) -> Alert {
        let severity = self.severity.map(SeverityWire::severity).unwrap_or_default();
        let mut labels = self.labels.clone();
        labels.insert("alertname".to_owned(), self.name.clone());
        labels.insert("severity".to_owned(), severity.as_str().to_owned());
        Alert {
            name: self.name.clone(),
            status: match self.status {
                StatusWire::Firing => AlertStatus::Firing,
                StatusWire::Resolved => AlertStatus::Resolved,
            },
            severity,
            labels: labels.into_iter().collect(),
            annotations: self.annotations.clone().into_iter().collect(),
            starts_at_ms: epoch_ms(self.starts_at.map(|d| d.0).unwrap_or_default()),
            ends_at_ms: self.ends_at.map(|d| epoch_ms(d.0)),
            fingerprint: self.fingerprint.clone(),
        }
    }
}

/// Refuses every alert: what the adapter falls back to when the plugin refuses (or fails, which [`FailedCalls`]
/// reports).
#[derive(Debug)]
struct Refuse;

impl AlertFormatter for Refuse {
    fn format(&self, _alert: &Alert, _target: &str) -> Result<Payload, FormatError> {
        Err(FormatError(REFUSED.to_owned()))
    }
}

type AlertScenario = Scenario<AlertStep, NotFor<BREAKER>, NotFor<HISTORY>>;

pub(super) fn run(host: &PluginHost, plugin: &str, file: &Path) -> Result<Report, ScenarioError> {
    let scenario: AlertScenario = load(file)?;
    let mut report = Report::of(&scenario);
    let bound = host.alert_formatter(plugin, "scenario", scenario.config.clone(), Arc::new(Refuse));
    let Some(formatter) = report.bound(scenario.config_line, bound) else { return Ok(report) };
    let mut failed = FailedCalls::new(host, plugin);
    for step in &scenario.steps {
        let s = &step.body;
        let target = s.target.as_deref().unwrap_or(DEFAULT_TARGET);
        let rendered = formatter.format(&s.alert.alert(), target);
        let summary = match &rendered {
            Ok(p) => format!("{} bytes of {}", p.body.len(), p.content_type),
            Err(_) => "refused".to_owned(),
        };
        report.input(None, format!("{} ({target}) → {summary}", s.alert.name));
        if let Some(failure) = failed.take() {
            report.check(step, None, "the plugin's call", false, "an answer", failure);
            continue;
        }
        if let Some(want) = &s.expect {
            check(&mut report, step, want, rendered.ok());
        }
    }
    Ok(report)
}

fn check(report: &mut Report, step: &Step<AlertStep>, want: &PayloadWire, payload: Option<Payload>) {
    let refused = want.refused.unwrap_or(false);
    let Some(p) = payload else {
        report.check(step, None, "payload", refused, "a payload", "refused");
        return;
    };
    if refused {
        report.check(step, None, "payload", false, "refused", format!("{} bytes of {}", p.body.len(), p.content_type));
        return;
    }
    let body = String::from_utf8_lossy(&p.body);
    if let Some(ct) = &want.content_type {
        report.check(step, None, "content type", *ct == p.content_type, quoted(ct), quoted(&p.content_type));
    }
    for (name, value) in &want.headers {
        let got = p.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        let shown = got.map_or_else(|| "not set".to_owned(), quoted);
        report.check(step, None, &format!("header {name}"), got == Some(value), quoted(value), shown);
    }
    if let Some(exact) = &want.body {
        report.check(step, None, "body", *exact == body, quoted(exact), quoted(&body));
    }
    for part in &want.body_contains {
        let holds = body.contains(part.as_str());
        report.check(step, None, "body", holds, format!("containing {}", quoted(part)), quoted(&body));
    }
    if want.json.is_empty() {
        return;
    }
    let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&p.body);
    for (pointer, expected) in &want.json {
        let expected = serde_json::to_value(expected).unwrap_or(serde_json::Value::Null);
        let (holds, actual) = match &parsed {
            Ok(doc) => match doc.pointer(pointer) {
                Some(v) => (*v == expected, v.to_string()),
                None => (false, "nothing there".to_owned()),
            },
            Err(e) => (false, format!("the body is not JSON: {e}")),
        };
        report.check(step, None, &format!("JSON {pointer}"), holds, expected, actual);
    }
}
