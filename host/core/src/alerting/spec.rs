//! [`AlertSpec`]: the per-rule settings of an alert source (name, severity, timings, static labels) and how a
//! source reports its condition ([`SourceKind`]). Owns the rule's shape, not its state.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::fingerprint::{LabelSet, fingerprint};
use crate::policy::Severity;

/// How a source reports its condition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A state ("breaker open", "anomalous"): asserted while true, released when it clears. The condition holds
    /// from an assert until the matching release.
    #[default]
    Level,
    /// Events (log matches): asserted once per event, never released. The condition is true at each assert; a
    /// firing alert resolves `keep_firing_for` after the last one, so give pulse specs a non-zero
    /// `keep_firing_for`. With a non-zero `for_`, events must keep arriving at most `for_` apart, and one must
    /// arrive at least `for_` after the first, for the alert to fire.
    Pulse,
}

/// The settings of one alert rule. Build with [`AlertSpec::new`] and struct update syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertSpec {
    /// The `alertname` label.
    pub name: String,
    /// The `severity` label.
    pub severity: Severity,
    /// Level or pulse.
    pub source: SourceKind,
    /// How long the condition must hold before the alert fires; zero fires on the first assert.
    pub for_: Duration,
    /// How long a firing alert stays firing after the condition was last true.
    pub keep_firing_for: Duration,
    /// How often a still-firing alert is notified again; zero never repeats.
    pub repeat_interval: Duration,
    /// Static labels, added to every instance; they win over the labels of an assert.
    pub labels: LabelSet,
    /// Static annotations; the annotations of an assert win over them.
    pub annotations: LabelSet,
}

impl AlertSpec {
    /// A level-held warning that fires at once, resolves at once and repeats every 4 h (Alertmanager's default).
    pub fn new(name: impl Into<String>) -> Self {
        AlertSpec {
            name: name.into(),
            severity: Severity::Warning,
            source: SourceKind::Level,
            for_: Duration::ZERO,
            keep_firing_for: Duration::ZERO,
            repeat_interval: Duration::from_secs(4 * 3600),
            labels: LabelSet::new(),
            annotations: LabelSet::new(),
        }
    }

    /// The full label set of an instance: `labels`, overlaid by the static labels, then `alertname` and
    /// `severity` from this spec (which always win).
    pub fn label_set(&self, labels: &LabelSet) -> LabelSet {
        let mut out = labels.clone();
        out.extend(self.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        out.insert("alertname".to_owned(), self.name.clone());
        out.insert("severity".to_owned(), self.severity.as_str().to_owned());
        out
    }

    /// The annotations of an instance: the static annotations overlaid by `annotations`.
    pub fn annotation_set(&self, annotations: &LabelSet) -> LabelSet {
        let mut out = self.annotations.clone();
        out.extend(annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
        out
    }

    /// The fingerprint of the instance with these labels (see [`AlertSpec::label_set`]).
    pub fn fingerprint(&self, labels: &LabelSet) -> String {
        fingerprint(&self.label_set(labels))
    }
}

/// Whole milliseconds, saturating.
pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::super::fingerprint::label_set;
    use super::*;

    #[test]
    fn spec_labels_override_and_identity_labels_always_win() {
        let spec = AlertSpec {
            severity: Severity::Critical,
            labels: label_set([("team", "core"), ("severity", "info")]),
            annotations: label_set([("runbook", "r"), ("summary", "static")]),
            ..AlertSpec::new("Down")
        };
        let labels = spec.label_set(&label_set([("service", "api"), ("team", "x"), ("alertname", "y")]));
        assert_eq!(
            labels,
            label_set([("alertname", "Down"), ("service", "api"), ("severity", "critical"), ("team", "core")])
        );
        let ann = spec.annotation_set(&label_set([("summary", "dynamic")]));
        assert_eq!(ann, label_set([("runbook", "r"), ("summary", "dynamic")]));
        assert_eq!(spec.fingerprint(&label_set([("service", "api")])), fingerprint(&labels));
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }
}
