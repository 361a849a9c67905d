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
        let labels = json_object(&alertmanager_labels(alert));
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
            group_key = json_string(&format!("{{}}:{{alertname={}}}", go_quote(&alert.name))),
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

impl AlertmanagerJson {
    /// The body for `POST /api/v2/alerts` of an Alertmanager: a JSON array with one postable alert per entry —
    /// `labels` (with `alertname` and `severity`), `annotations`, `startsAt`, `endsAt` and `generatorURL`.
    /// `endsAt` is left out for firing alerts, so Alertmanager applies its `resolve_timeout`; a resolved alert
    /// without `ends_at_ms` ends at its start.
    pub fn v2_body(alerts: &[Alert]) -> Vec<u8> {
        let items: Vec<String> = alerts
            .iter()
            .map(|alert| {
                let mut item = format!(
                    "{{\"labels\":{},\"annotations\":{},\"startsAt\":\"{}\"",
                    json_object(&alertmanager_labels(alert)),
                    json_object(&alert.annotations),
                    rfc3339(alert.starts_at_ms),
                );
                if alert.status == AlertStatus::Resolved {
                    let ends_at = alert.ends_at_ms.unwrap_or(alert.starts_at_ms);
                    let _ = write!(item, ",\"endsAt\":\"{}\"", rfc3339(ends_at));
                }
                item.push_str(",\"generatorURL\":\"\"}");
                item
            })
            .collect();
        format!("[{}]", items.join(",")).into_bytes()
    }
}

/// The label set Alertmanager sees: `alertname` and `severity` from the alert's fields, then its other labels.
fn alertmanager_labels(alert: &Alert) -> Vec<(String, String)> {
    let mut labels = vec![("alertname".to_owned(), alert.name.clone())];
    labels.push(("severity".to_owned(), alert.severity.as_str().to_owned()));
    labels.extend(alert.labels.iter().filter(|(k, _)| k != "alertname" && k != "severity").cloned());
    labels
}

/// A label value quoted as Go's `%q` does, which is how Alertmanager writes label values into a `groupKey`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() && u32::from(c) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
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

    #[test]
    fn rfc3339_handles_leap_and_century_rules() {
        assert_eq!(rfc3339(946_684_799_999), "1999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(951_868_800_000), "2000-03-01T00:00:00.000Z");
        assert_eq!(rfc3339(78_796_799_000), "1972-06-30T23:59:59.000Z");
        assert_eq!(rfc3339(2_147_483_647_000), "2038-01-19T03:14:07.000Z");
        assert_eq!(rfc3339(4_107_542_399_000), "2100-02-28T23:59:59.000Z", "2100 is not a leap year");
        assert_eq!(rfc3339(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
        assert_eq!(rfc3339(13_574_606_400_000), "2400-02-29T12:00:00.000Z", "2400 is");
    }

    fn tricky_alert(status: AlertStatus) -> Alert {
        Alert {
            name: "Disk \"full\"".into(),
            status,
            severity: Severity::Warning,
            labels: vec![("service".into(), "api".into()), ("severity".into(), "ignored".into())],
            annotations: vec![("summary".into(), "line1\nline2\t\"q\" \\ \u{1} \u{7f} naïve ✓ 🚀".into())],
            starts_at_ms: 1_700_000_000_123,
            ends_at_ms: (status == AlertStatus::Resolved).then_some(1_700_000_060_000),
            fingerprint: "507a62d79ee76c9a".into(),
        }
    }

    #[test]
    fn json_strings_escape_controls_quotes_and_backslashes_only() {
        let raw = "a\"b\\c\n\r\t\u{0}\u{1f} é ✓ 🚀";
        let escaped = json_string(raw);
        assert!(escaped.contains("é ✓"), "non-ASCII passes through: {escaped}");
        assert!(escaped.contains("\\u0000") && escaped.contains("\\u001f") && escaped.contains('🚀'), "{escaped}");
        assert_eq!(serde_json::from_str::<String>(&escaped).unwrap(), raw);
        assert_eq!(go_quote("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\x01é\"");
    }

    #[test]
    fn webhook_body_parses_with_every_alertmanager_field() {
        let alert = tricky_alert(AlertStatus::Resolved);
        let p = AlertmanagerJson.format(&alert, "ops \"team\"").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&p.body).unwrap();
        assert_eq!(v["version"], "4");
        assert_eq!(v["groupKey"], "{}:{alertname=\"Disk \\\"full\\\"\"}");
        assert_eq!(v["truncatedAlerts"], 0);
        assert_eq!(v["status"], "resolved");
        assert_eq!(v["receiver"], "ops \"team\"");
        assert_eq!(v["groupLabels"], serde_json::json!({"alertname": "Disk \"full\""}));
        let labels = serde_json::json!({"alertname": "Disk \"full\"", "severity": "warning", "service": "api"});
        assert_eq!(v["commonLabels"], labels);
        assert_eq!(v["commonAnnotations"]["summary"], alert.annotations[0].1.as_str());
        assert_eq!(v["externalURL"], "");
        let a = &v["alerts"][0];
        assert_eq!(v["alerts"].as_array().unwrap().len(), 1);
        assert_eq!(a["status"], "resolved");
        assert_eq!(a["labels"], labels);
        assert_eq!(a["annotations"]["summary"], alert.annotations[0].1.as_str());
        assert_eq!(a["startsAt"], "2023-11-14T22:13:20.123Z");
        assert_eq!(a["endsAt"], "2023-11-14T22:14:20.000Z");
        assert_eq!(a["generatorURL"], "");
        assert_eq!(a["fingerprint"], "507a62d79ee76c9a");

        let firing = AlertmanagerJson.format(&tricky_alert(AlertStatus::Firing), "ops").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&firing.body).unwrap();
        assert_eq!(
            (v["status"].as_str(), v["alerts"][0]["endsAt"].as_str()),
            (Some("firing"), Some("0001-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn v2_body_is_an_array_of_postable_alerts() {
        let alerts = [tricky_alert(AlertStatus::Firing), tricky_alert(AlertStatus::Resolved)];
        let v: serde_json::Value = serde_json::from_slice(&AlertmanagerJson::v2_body(&alerts)).unwrap();
        let items = v.as_array().unwrap();
        assert_eq!(items.len(), 2);
        for item in items {
            assert_eq!(item["labels"]["alertname"], "Disk \"full\"");
            assert_eq!(item["labels"]["severity"], "warning");
            assert_eq!(item["labels"]["service"], "api");
            assert_eq!(item["annotations"]["summary"], alerts[0].annotations[0].1.as_str());
            assert_eq!(item["startsAt"], "2023-11-14T22:13:20.123Z");
            assert_eq!(item["generatorURL"], "");
        }
        assert!(items[0].get("endsAt").is_none(), "firing alerts leave endsAt to Alertmanager");
        assert_eq!(items[1]["endsAt"], "2023-11-14T22:14:20.000Z");
        let keys: Vec<&str> = items[1].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 5, "{keys:?}");
        assert_eq!(AlertmanagerJson::v2_body(&[]), b"[]");
    }
}
