//! [`AlertBook`]: the lifecycle of active alerts keyed by fingerprint, with Prometheus/Alertmanager semantics —
//! pending for `for_`, firing, `keep_firing_for`, resolved — plus notification scheduling (`repeat_interval`) and a
//! serde [`BookSnapshot`] for persistence. Owns state transitions only: time arrives as `now_ms` (Unix epoch ms),
//! and delivering notifications (with retries) is the caller's outbox.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::fingerprint::{LabelSet, fingerprint};
use super::spec::{AlertSpec, SourceKind, millis};
use crate::policy::{Alert, AlertStatus, Severity};

/// Where an alert is in its lifecycle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition holds but not yet for `for_`; never notified.
    #[default]
    Pending,
    /// Notified, and re-notified every `repeat_interval`.
    Firing,
    /// Over; notified once, then forgotten.
    Resolved,
}

impl AlertState {
    /// `pending`, `firing` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One alert instance: what `GET /api/v1/alerts` lists and what a snapshot stores. All times are Unix epoch ms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackedAlert {
    /// [`fingerprint`] of `labels`; the idempotency key.
    pub fingerprint: String,
    /// The `alertname`.
    pub name: String,
    /// The `severity`.
    #[serde(with = "severity_name")]
    pub severity: Severity,
    /// Level or pulse, from the spec.
    pub source: SourceKind,
    /// Lifecycle state.
    pub state: AlertState,
    /// Full label set, including `alertname` and `severity`.
    pub labels: LabelSet,
    /// Latest annotations.
    pub annotations: LabelSet,
    /// When the condition became true for this cycle.
    pub active_at_ms: u64,
    /// When the alert fired (`None` while pending).
    pub starts_at_ms: Option<u64>,
    /// When the alert resolved (`None` until resolved).
    pub ends_at_ms: Option<u64>,
    /// The last assert.
    pub last_active_ms: u64,
    /// When a level source released a firing alert (`None` while held).
    pub released_at_ms: Option<u64>,
    /// The last firing notification handed out (`None` before the first).
    pub last_notified_ms: Option<u64>,
    /// Asserts merged into this cycle.
    pub count: u64,
    /// The spec's `for_`, in ms.
    pub for_ms: u64,
    /// The spec's `keep_firing_for`, in ms.
    pub keep_firing_for_ms: u64,
    /// The spec's `repeat_interval`, in ms (0 = never repeat).
    pub repeat_interval_ms: u64,
}

/// What the clock does to an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Stay,
    Fire,
    /// Pending and the condition went away: forget it without a notification.
    Drop,
    /// Firing and the condition has been gone for `keep_firing_for`; the value is the resolve instant.
    Resolve(u64),
}

impl TrackedAlert {
    fn new(spec: &AlertSpec, labels: LabelSet, now_ms: u64) -> Self {
        let mut alert = TrackedAlert {
            fingerprint: fingerprint(&labels),
            name: spec.name.clone(),
            severity: spec.severity,
            source: spec.source,
            state: AlertState::Pending,
            labels,
            annotations: LabelSet::new(),
            active_at_ms: now_ms,
            starts_at_ms: None,
            ends_at_ms: None,
            last_active_ms: now_ms,
            released_at_ms: None,
            last_notified_ms: None,
            count: 0,
            for_ms: 0,
            keep_firing_for_ms: 0,
            repeat_interval_ms: 0,
        };
        alert.apply_spec(spec);
        alert
    }

    /// Specs may be reloaded; the newest assert's timings win.
    fn apply_spec(&mut self, spec: &AlertSpec) {
        self.source = spec.source;
        self.for_ms = millis(spec.for_);
        self.keep_firing_for_ms = millis(spec.keep_firing_for);
        self.repeat_interval_ms = millis(spec.repeat_interval);
    }

    fn step(&self, now_ms: u64) -> Step {
        match self.state {
            AlertState::Pending => {
                let (holds, held_long_enough) = match self.source {
                    SourceKind::Level => {
                        (self.released_at_ms.is_none(), now_ms.saturating_sub(self.active_at_ms) >= self.for_ms)
                    }
                    SourceKind::Pulse => (
                        now_ms.saturating_sub(self.last_active_ms) <= self.for_ms,
                        self.last_active_ms.saturating_sub(self.active_at_ms) >= self.for_ms,
                    ),
                };
                match (holds, held_long_enough) {
                    (false, _) => Step::Drop,
                    (true, true) => Step::Fire,
                    (true, false) => Step::Stay,
                }
            }
            AlertState::Firing => {
                let quiet_until = self.last_active_ms.saturating_add(self.keep_firing_for_ms);
                let resolve_at = match self.source {
                    SourceKind::Level => self.released_at_ms.map(|released| released.max(quiet_until)),
                    SourceKind::Pulse => Some(quiet_until),
                };
                match resolve_at {
                    Some(at) if now_ms >= at => Step::Resolve(at),
                    _ => Step::Stay,
                }
            }
            AlertState::Resolved => Step::Stay,
        }
    }

    /// This alert in the formatter's model. A pending alert renders as firing since `active_at_ms`; normally only
    /// [`Notice`]s are converted.
    pub fn to_alert(&self) -> Alert {
        Alert {
            name: self.name.clone(),
            status: if self.state == AlertState::Resolved { AlertStatus::Resolved } else { AlertStatus::Firing },
            severity: self.severity,
            labels: self.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            annotations: self.annotations.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            starts_at_ms: self.starts_at_ms.unwrap_or(self.active_at_ms),
            ends_at_ms: self.ends_at_ms,
            fingerprint: self.fingerprint.clone(),
        }
    }
}

/// Why a notification is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// The alert just fired.
    Firing,
    /// Still firing, `repeat_interval` after the last notification.
    Repeat,
    /// The alert is over.
    Resolved,
}

/// A notification to queue for delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// Why it is due.
    pub kind: NoticeKind,
    /// What to render (status firing for [`NoticeKind::Firing`]/[`NoticeKind::Repeat`], resolved otherwise).
    pub alert: Alert,
}

/// The persisted form of an [`AlertBook`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookSnapshot {
    /// Pending and firing alerts.
    pub alerts: Vec<TrackedAlert>,
    /// Resolved alerts whose notification is not yet handed out.
    pub resolved: Vec<TrackedAlert>,
}

/// Active alerts keyed by fingerprint.
///
/// Feed it [`assert`](AlertBook::assert) while a condition is true and [`release`](AlertBook::release) when a
/// level condition clears; call [`tick`](AlertBook::tick) periodically to advance time and collect notifications.
/// Every alert that fires yields exactly one [`NoticeKind::Firing`] and one [`NoticeKind::Resolved`], with
/// [`NoticeKind::Repeat`]s in between; a pending alert whose condition goes away yields nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertBook {
    alerts: BTreeMap<String, TrackedAlert>,
    resolved: Vec<TrackedAlert>,
}

impl AlertBook {
    /// An empty book.
    pub fn new() -> Self {
        AlertBook::default()
    }

    /// The condition of `spec` for the instance with `labels` is true at `now_ms`. Creates a pending alert or
    /// merges into the existing one (latest annotations, `count + 1`); with a zero `for_` it fires at once. An
    /// alert that resolved before `now_ms` is queued as resolved and a new cycle starts. Returns the fingerprint.
    pub fn assert(&mut self, spec: &AlertSpec, labels: &LabelSet, annotations: &LabelSet, now_ms: u64) -> String {
        let labels = spec.label_set(labels);
        let fp = fingerprint(&labels);
        self.advance(&fp, now_ms);
        let annotations = spec.annotation_set(annotations);
        let alert = self.alerts.entry(fp.clone()).or_insert_with(|| TrackedAlert::new(spec, labels, now_ms));
        alert.apply_spec(spec);
        alert.annotations = annotations;
        alert.last_active_ms = alert.last_active_ms.max(now_ms);
        alert.released_at_ms = None;
        alert.count += 1;
        self.advance(&fp, now_ms);
        fp
    }

    /// The condition of the alert with this fingerprint is false at `now_ms`. A pending alert is dropped without
    /// a notification; a firing one resolves once `keep_firing_for` has passed since its last assert. Returns
    /// whether the alert was known.
    pub fn release(&mut self, fingerprint: &str, now_ms: u64) -> bool {
        let Some(alert) = self.alerts.get_mut(fingerprint) else {
            return false;
        };
        if alert.state == AlertState::Pending {
            self.alerts.remove(fingerprint);
        } else {
            alert.released_at_ms.get_or_insert(now_ms);
            self.advance(fingerprint, now_ms);
        }
        true
    }

    /// Drops the alert with this fingerprint without any notification: another party carries it on from now on (in
    /// a cluster, the replica a service moved to raises it again). Returns whether the alert was known.
    pub fn forget(&mut self, fingerprint: &str) -> bool {
        self.alerts.remove(fingerprint).is_some()
    }

    /// Takes over an alert another party tracked until now (in a cluster, the replica a service moved from), with its
    /// times and notification history, so that it neither fires again nor gets a new `startsAt`; it replaces what
    /// this book held under its fingerprint. A resolved alert is ignored (its party announced it). Returns whether
    /// the alert was taken.
    pub fn adopt(&mut self, alert: TrackedAlert) -> bool {
        if alert.state == AlertState::Resolved {
            return false;
        }
        self.alerts.insert(alert.fingerprint.clone(), alert);
        true
    }

    /// [`release`](AlertBook::release) by spec and labels instead of fingerprint.
    pub fn release_labels(&mut self, spec: &AlertSpec, labels: &LabelSet, now_ms: u64) -> bool {
        self.release(&spec.fingerprint(labels), now_ms)
    }

    /// Advances every alert to `now_ms` and returns the notifications due: newly firing, repeats of firing alerts
    /// last notified at least `repeat_interval` ago, and newly resolved (then forgotten). Handing a notice out
    /// counts as notifying — the caller queues it durably and retries delivery itself.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Notice> {
        let fingerprints: Vec<String> = self.alerts.keys().cloned().collect();
        for fp in &fingerprints {
            self.advance(fp, now_ms);
        }
        let mut notices = Vec::new();
        for alert in self.alerts.values_mut().filter(|a| a.state == AlertState::Firing) {
            let kind = match alert.last_notified_ms {
                None => NoticeKind::Firing,
                Some(at) if alert.repeat_interval_ms > 0 && now_ms.saturating_sub(at) >= alert.repeat_interval_ms => {
                    NoticeKind::Repeat
                }
                Some(_) => continue,
            };
            alert.last_notified_ms = Some(now_ms);
            notices.push(Notice { kind, alert: alert.to_alert() });
        }
        for alert in self.resolved.drain(..) {
            if alert.last_notified_ms.is_none() {
                // Fired and resolved between two ticks: still announce the firing, so receivers that ignore
                // resolved notifications hear of it.
                let firing = TrackedAlert { state: AlertState::Firing, ends_at_ms: None, ..alert.clone() };
                notices.push(Notice { kind: NoticeKind::Firing, alert: firing.to_alert() });
            }
            notices.push(Notice { kind: NoticeKind::Resolved, alert: alert.to_alert() });
        }
        notices
    }

    /// Pending and firing alerts as of `now_ms`, by fingerprint, for the admin API. Read-only: transitions that
    /// are due but not yet ticked are shown as they will be (due to fire → firing since `now_ms`; dropped or
    /// resolved → left out).
    pub fn active(&self, now_ms: u64) -> Vec<TrackedAlert> {
        self.alerts
            .values()
            .filter_map(|alert| match alert.step(now_ms) {
                Step::Stay => Some(alert.clone()),
                Step::Fire => {
                    Some(TrackedAlert { state: AlertState::Firing, starts_at_ms: Some(now_ms), ..alert.clone() })
                }
                Step::Drop | Step::Resolve(_) => None,
            })
            .collect()
    }

    /// The tracked alert with this fingerprint, if pending or firing.
    pub fn get(&self, fingerprint: &str) -> Option<&TrackedAlert> {
        self.alerts.get(fingerprint)
    }

    /// Pending and firing alerts held.
    pub fn len(&self) -> usize {
        self.alerts.len()
    }

    /// Whether no alert is pending or firing.
    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty()
    }

    /// The whole book as plain data, for persisting.
    pub fn snapshot(&self) -> BookSnapshot {
        BookSnapshot { alerts: self.alerts.values().cloned().collect(), resolved: self.resolved.clone() }
    }

    /// A book from a [`snapshot`](AlertBook::snapshot). Level alerts come back held, so after a restart their
    /// sources should assert or release again; time that passed meanwhile is applied by the next
    /// [`tick`](AlertBook::tick).
    pub fn restore(snapshot: BookSnapshot) -> Self {
        let mut book = AlertBook { alerts: BTreeMap::new(), resolved: snapshot.resolved };
        for alert in snapshot.alerts {
            if alert.state == AlertState::Resolved {
                book.resolved.push(alert);
            } else {
                book.alerts.insert(alert.fingerprint.clone(), alert);
            }
        }
        book
    }

    /// Applies the transition due for one alert at `now_ms`.
    fn advance(&mut self, fingerprint: &str, now_ms: u64) {
        let Some(alert) = self.alerts.get_mut(fingerprint) else {
            return;
        };
        match alert.step(now_ms) {
            Step::Stay => {}
            Step::Fire => {
                alert.state = AlertState::Firing;
                alert.starts_at_ms = Some(now_ms);
            }
            Step::Drop => {
                self.alerts.remove(fingerprint);
            }
            Step::Resolve(at) => {
                if let Some(mut alert) = self.alerts.remove(fingerprint) {
                    alert.state = AlertState::Resolved;
                    alert.ends_at_ms = Some(at);
                    self.resolved.push(alert);
                }
            }
        }
    }
}

/// [`Severity`] as its lowercase name, since the policy type carries no serde derive.
mod severity_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::policy::Severity;

    pub(super) fn serialize<S: Serializer>(severity: &Severity, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(severity.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Severity, D::Error> {
        let name = String::deserialize(d)?;
        match name.as_str() {
            "info" => Ok(Severity::Info),
            "warning" => Ok(Severity::Warning),
            "critical" => Ok(Severity::Critical),
            other => Err(serde::de::Error::unknown_variant(other, &["info", "warning", "critical"])),
        }
    }
}
