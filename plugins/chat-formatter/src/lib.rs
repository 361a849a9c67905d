//! `chat-formatter`: renders an alert as a Slack-style incoming-webhook message — a one-line `text` (what chat
//! notifications and clients without attachments show) and an attachment coloured by severity with the labels as
//! fields. Mattermost and Rocket.Chat accept the same shape.
//!
//! Config (all optional):
//! - `channel`, `username`, `icon_emoji` — passed through to the message when set
//! - `link`   — a URL template for the title link; `{fingerprint}` and `{name}` are replaced

use aegis_plugin_sdk::{Alert, AlertFormatter, AlertStatus, Config, Payload, Policy, Severity, json_escape};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChatFormatter {
    channel: Option<String>,
    username: Option<String>,
    icon_emoji: Option<String>,
    link: Option<String>,
}

impl Policy for ChatFormatter {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["channel", "username", "icon_emoji", "link"])?;
        let get = |k: &str| config.get(k).filter(|v| !v.is_empty()).map(str::to_owned);
        Ok(ChatFormatter {
            channel: get("channel"),
            username: get("username"),
            icon_emoji: get("icon_emoji"),
            link: get("link"),
        })
    }
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", json_escape(s))
}

impl AlertFormatter for ChatFormatter {
    fn format(&self, alert: &Alert, _target: &str) -> Result<Payload, String> {
        if alert.name.is_empty() {
            return Err("the alert has no name".into());
        }
        let (emoji, color) = match (alert.status, alert.severity) {
            (AlertStatus::Resolved, _) => (":white_check_mark:", "#2eb886"),
            (AlertStatus::Firing, Severity::Critical) => (":red_circle:", "#d00000"),
            (AlertStatus::Firing, Severity::Warning) => (":warning:", "#daa038"),
            (AlertStatus::Firing, Severity::Info) => (":information_source:", "#439fe0"),
        };
        let status = match alert.status {
            AlertStatus::Firing => "FIRING",
            AlertStatus::Resolved => "RESOLVED",
        };
        let severity = match alert.severity {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        };
        let service = alert.label("service").map(|s| format!(" on {s}")).unwrap_or_default();
        let summary = alert.annotation("summary").or(alert.annotation("description"));
        let title = format!("[{status}] {}{service}", alert.name);
        let text = match summary {
            Some(s) => format!("{emoji} {title}: {s}"),
            None => format!("{emoji} {title}"),
        };

        let mut fields = vec![format!("{{\"title\":\"severity\",\"value\":{},\"short\":true}}", quoted(severity))];
        fields.extend(
            alert
                .labels
                .iter()
                .filter(|(k, _)| k != "alertname")
                .map(|(k, v)| format!("{{\"title\":{},\"value\":{},\"short\":true}}", quoted(k), quoted(v))),
        );

        let mut attachment = vec![
            format!("\"color\":{}", quoted(color)),
            format!("\"fallback\":{}", quoted(&text)),
            format!("\"title\":{}", quoted(&title)),
        ];
        if let Some(link) = &self.link {
            let link = link.replace("{fingerprint}", &alert.fingerprint).replace("{name}", &alert.name);
            attachment.push(format!("\"title_link\":{}", quoted(&link)));
        }
        if let Some(s) = summary {
            attachment.push(format!("\"text\":{}", quoted(s)));
        }
        attachment.push(format!("\"fields\":[{}]", fields.join(",")));
        attachment.push(format!("\"footer\":{}", quoted(&format!("aegis · {}", alert.fingerprint))));
        attachment.push(format!("\"ts\":{}", alert.ends_at_ms.unwrap_or(alert.starts_at_ms) / 1000));

        let mut message = Vec::new();
        for (key, value) in [("channel", &self.channel), ("username", &self.username), ("icon_emoji", &self.icon_emoji)]
        {
            if let Some(v) = value {
                message.push(format!("\"{key}\":{}", quoted(v)));
            }
        }
        message.push(format!("\"text\":{}", quoted(&text)));
        message.push(format!("\"attachments\":[{{{}}}]", attachment.join(",")));
        Ok(Payload::json(format!("{{{}}}", message.join(","))))
    }
}

aegis_plugin_sdk::export_alert_formatter!(ChatFormatter);

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(pairs: &[(&str, &str)]) -> Result<ChatFormatter, String> {
        ChatFormatter::init(&Config::from(
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>(),
        ))
    }

    fn alert() -> Alert {
        Alert {
            name: "ServiceDown".into(),
            status: AlertStatus::Firing,
            severity: Severity::Critical,
            labels: vec![("service".into(), "api".into()), ("env".into(), "prod \"eu\"".into())],
            annotations: vec![("summary".into(), "3 of the last 5 probes failed".into())],
            starts_at_ms: 1_700_000_000_123,
            ends_at_ms: None,
            fingerprint: "abc123".into(),
        }
    }

    fn body(p: &Payload) -> String {
        String::from_utf8(p.body.clone()).unwrap()
    }

    #[test]
    fn firing_alert_renders_text_and_a_red_attachment() {
        let p = policy(&[("channel", "#ops"), ("link", "https://aegis.example/alerts/{fingerprint}")]).unwrap();
        let out = p.format(&alert(), "slack").unwrap();
        assert_eq!(out.content_type, "application/json");
        let b = body(&out);
        assert!(b.starts_with("{\"channel\":\"#ops\",\"text\":\":red_circle: [FIRING] ServiceDown on api: 3 of the last 5 probes failed\""), "{b}");
        assert!(b.contains("\"color\":\"#d00000\""), "{b}");
        assert!(b.contains("\"title_link\":\"https://aegis.example/alerts/abc123\""), "{b}");
        assert!(b.contains("{\"title\":\"env\",\"value\":\"prod \\\"eu\\\"\",\"short\":true}"), "{b}");
        assert!(b.contains("\"ts\":1700000000"), "{b}");
        assert!(b.ends_with("}]}"), "{b}");
    }

    #[test]
    fn resolved_alert_is_green_and_uses_the_end_time() {
        let mut a = alert();
        a.status = AlertStatus::Resolved;
        a.ends_at_ms = Some(1_700_000_600_000);
        let b = body(&policy(&[]).unwrap().format(&a, "webhook").unwrap());
        assert!(b.starts_with("{\"text\":\":white_check_mark: [RESOLVED] ServiceDown on api"), "{b}");
        assert!(b.contains("\"color\":\"#2eb886\"") && b.contains("\"ts\":1700000600"), "{b}");
    }

    #[test]
    fn alerts_without_name_are_refused() {
        let a = Alert { name: String::new(), ..alert() };
        assert!(policy(&[]).unwrap().format(&a, "slack").is_err());
        assert!(policy(&[("colour", "red")]).unwrap_err().contains("`colour`"));
    }
}
