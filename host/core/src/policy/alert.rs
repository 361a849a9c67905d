//! The alert-rendering seam: [`AlertFormatter`] turns an [`Alert`] into a notification [`Payload`];
//! [`AlertmanagerJson`] is the built-in (the Alertmanager webhook body, version 4, one alert per message). Owns
//! rendering only; delivering the payload is the runtime's job.

use std::fmt;
use std::fmt::Write as _;

use super::Severity;

/// Whether an alert is active or over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AlertStatus {
    #[default]
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// An alert to render, in the Alertmanager model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Alert {
    pub name: String,
    pub status: AlertStatus,
    pub severity: Severity,
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
    /// Unix epoch milliseconds.
    pub starts_at_ms: u64,
    pub ends_at_ms: Option<u64>,
    pub fingerprint: String,
}

/// A rendered notification.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Payload {
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a formatter could not render an alert.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot format alert: {0}")]
pub struct FormatError(pub String);

/// Renders an alert into a notification body.
pub trait AlertFormatter: Send + Sync + fmt::Debug {
    /// `target` names the receiver (e.g. "webhook", "slack").
    fn format(&self, alert: &Alert, target: &str) -> Result<Payload, FormatError>;
}

/// The built-in formatter: the Alertmanager webhook JSON (`version` "4"), so any Alertmanager receiver accepts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlertmanagerJson;

impl AlertFormatter for AlertmanagerJson {
    fn format(&self, alert: &Alert, target: &str) -> Result<Payload, FormatError> {
        if alert.name.is_empty() {
            return Err(FormatError("the alert has no name".into()));
        }
        let mut labels = vec![("alertname".to_owned(), alert.name.clone())];
        labels.push(("severity".to_owned(), alert.severity.as_str().to_owned()));
        labels.extend(alert.labels.iter().filter(|(k, _)| k != "alertname" && k != "severity").cloned());
        let labels = json_object(&labels);
        let annotations = json_object(&alert.annotations);
        let ends_at = alert.ends_at_ms.map_or_else(|| "0001-01-01T00:00:00Z".to_owned(), rfc3339);
        let status = alert.status.as_str();
        let mut body = String::new();
        // `write!` into a String cannot fail.
        let _ = write!(
            body,
            concat!(
                "{{\"version\":\"4\",\"groupKey\":{group_key},\"truncatedAlerts\":0,\"status\":\"{status}\",",
                "\"receiver\":{receiver},\"groupLabels\":{group_labels},\"commonLabels\":{labels},",
                "\"commonAnnotations\":{annotations},\"externalURL\":\"\",\"alerts\":[{{\"status\":\"{status}\",",
                "\"labels\":{labels},\"annotations\":{annotations},\"startsAt\":\"{starts_at}\",",
                "\"endsAt\":\"{ends_at}\",\"generatorURL\":\"\",\"fingerprint\":{fingerprint}}}]}}"
            ),
            group_key = json_string(&format!("{{}}:{{alertname=\"{}\"}}", alert.name)),
            status = status,
            receiver = json_string(target),
            group_labels = json_object(&[("alertname".to_owned(), alert.name.clone())]),
            labels = labels,
            annotations = annotations,
            starts_at = rfc3339(alert.starts_at_ms),
            ends_at = ends_at,
            fingerprint = json_string(&alert.fingerprint),
        );
        Ok(Payload { content_type: "application/json".into(), headers: Vec::new(), body: body.into_bytes() })
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_object(pairs: &[(String, String)]) -> String {
    let fields: Vec<String> = pairs.iter().map(|(k, v)| format!("{}:{}", json_string(k), json_string(v))).collect();
    format!("{{{}}}", fields.join(","))
}

/// Unix epoch milliseconds as RFC 3339 UTC with millisecond precision (civil-from-days, H. Hinnant).
fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn alertmanager_body_has_the_v4_shape() {
        let alert = Alert {
            name: "ServiceDown".into(),
            status: AlertStatus::Firing,
            severity: Severity::Critical,
            labels: vec![("service".into(), "a\"b".into())],
            annotations: vec![("summary".into(), "down".into())],
            starts_at_ms: 0,
            ends_at_ms: None,
            fingerprint: "f1".into(),
        };
        let p = AlertmanagerJson.format(&alert, "ops").unwrap();
        let body = String::from_utf8(p.body).unwrap();
        assert_eq!(p.content_type, "application/json");
        assert!(body.starts_with("{\"version\":\"4\",\"groupKey\":\"{}:{alertname=\\\"ServiceDown\\\"}\""), "{body}");
        assert!(body.contains("\"receiver\":\"ops\""), "{body}");
        assert!(
            body.contains(
                "\"labels\":{\"alertname\":\"ServiceDown\",\"severity\":\"critical\",\"service\":\"a\\\"b\"}"
            ),
            "{body}"
        );
        assert!(
            body.contains("\"startsAt\":\"1970-01-01T00:00:00.000Z\",\"endsAt\":\"0001-01-01T00:00:00Z\""),
            "{body}"
        );
        assert!(body.ends_with("\"fingerprint\":\"f1\"}]}"), "{body}");
        assert!(AlertmanagerJson.format(&Alert::default(), "ops").is_err());
    }
}
