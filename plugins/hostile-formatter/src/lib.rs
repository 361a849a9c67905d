//! `hostile-formatter` — TEST ONLY. An alert formatter whose answers try to take over what the host owns, one way per
//! `mode`, so the host's tests can check that each is refused (a strike) and the built-in formatter renders the
//! alert instead. `make plugins` never installs it.
//!
//! Config:
//! - `mode` — `framing` (headers `Host: evil.example`, `Content-Length: 0`, `Transfer-Encoding: chunked` and an
//!   empty body: the receiver would read no alert), `idempotency` (its own `Idempotency-Key`), `crlf` (a header value
//!   that would add a `Host` header), `refuse-init` (refuse the config with long text that would forge a log line),
//!   `ok` (behave: a JSON body and the custom header `X-Aegis-Test: 1`)

use aegis_plugin_sdk::{Alert, AlertFormatter, AlertStatus, Config, Payload, Policy, json_escape};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostileFormatter {
    mode: String,
}

const MODES: &[&str] = &["framing", "idempotency", "crlf", "refuse-init", "ok"];

/// A refusal that, written as is, would add a fake error line to the host's log, clear the operator's terminal, and
/// run on for 8 KiB.
fn forged_refusal() -> String {
    format!("no\n2026-01-01T00:00:00Z ERROR aegis: forged by a plugin\u{1b}[2J{}", "x".repeat(8 << 10))
}

impl Policy for HostileFormatter {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["mode"])?;
        let mode = config.get("mode").unwrap_or("ok").to_owned();
        if !MODES.contains(&mode.as_str()) {
            return Err(format!("unknown mode `{mode}`"));
        }
        if mode == "refuse-init" {
            return Err(forged_refusal());
        }
        Ok(HostileFormatter { mode })
    }
}

/// A small JSON body naming the alert, so a test can tell this plugin's rendering from the built-in one.
fn body(alert: &Alert) -> String {
    let status = match alert.status {
        AlertStatus::Firing => "firing",
        AlertStatus::Resolved => "resolved",
    };
    format!(
        "{{\"formatter\":\"hostile-formatter\",\"alert\":\"{}\",\"status\":\"{status}\"}}",
        json_escape(&alert.name)
    )
}

fn with_header(mut payload: Payload, name: &str, value: &str) -> Payload {
    payload.headers.push((name.to_owned(), value.to_owned()));
    payload
}

impl AlertFormatter for HostileFormatter {
    fn format(&self, alert: &Alert, _target: &str) -> Result<Payload, String> {
        let json = Payload::json(body(alert));
        Ok(match self.mode.as_str() {
            "framing" => Payload {
                content_type: "application/json".into(),
                headers: vec![
                    ("Host".into(), "evil.example".into()),
                    ("Content-Length".into(), "0".into()),
                    ("Transfer-Encoding".into(), "chunked".into()),
                ],
                body: Vec::new(),
            },
            "idempotency" => with_header(json, "Idempotency-Key", "hostile-formatter"),
            "crlf" => with_header(json, "X-Aegis-Test", "1\r\nHost: evil.example"),
            _ => with_header(json, "X-Aegis-Test", "1"),
        })
    }
}

aegis_plugin_sdk::export_alert_formatter!(HostileFormatter);

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: &str) -> Result<HostileFormatter, String> {
        HostileFormatter::init(&Config::from(vec![("mode".to_string(), mode.to_string())]))
    }

    fn alert() -> Alert {
        Alert { name: "CircuitBreakerOpen".into(), fingerprint: "abc".into(), ..Alert::default() }
    }

    fn header<'a>(p: &'a Payload, name: &str) -> Option<&'a str> {
        p.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn modes_are_checked_and_refuse_init_refuses_with_forged_text() {
        assert!(policy("nuke").unwrap_err().contains("`nuke`"));
        assert!(HostileFormatter::init(&Config::from(vec![("mod".to_string(), "ok".to_string())])).is_err());
        let refusal = policy("refuse-init").unwrap_err();
        assert!(refusal.contains('\n') && refusal.contains('\u{1b}') && refusal.len() > 8 << 10);
    }

    #[test]
    fn framing_sets_the_framing_headers_and_sends_nothing() {
        let p = policy("framing").unwrap().format(&alert(), "webhook").unwrap();
        assert_eq!(header(&p, "Host"), Some("evil.example"));
        assert_eq!(header(&p, "Content-Length"), Some("0"));
        assert_eq!(header(&p, "Transfer-Encoding"), Some("chunked"));
        assert!(p.body.is_empty());
    }

    #[test]
    fn idempotency_and_crlf_set_their_header_on_a_proper_body() {
        let p = policy("idempotency").unwrap().format(&alert(), "webhook").unwrap();
        assert_eq!(header(&p, "Idempotency-Key"), Some("hostile-formatter"));
        let p = policy("crlf").unwrap().format(&alert(), "webhook").unwrap();
        assert_eq!(header(&p, "X-Aegis-Test"), Some("1\r\nHost: evil.example"));
        assert!(!p.body.is_empty());
    }

    #[test]
    fn ok_renders_json_with_the_custom_header() {
        let p = policy("ok").unwrap().format(&alert(), "webhook").unwrap();
        assert_eq!(p.content_type, "application/json");
        assert_eq!(p.headers, [("X-Aegis-Test".to_owned(), "1".to_owned())]);
        assert_eq!(
            String::from_utf8(p.body).unwrap(),
            r#"{"formatter":"hostile-formatter","alert":"CircuitBreakerOpen","status":"firing"}"#
        );
        assert_eq!(policy("ok"), HostileFormatter::init(&Config::default()), "ok is the default");
    }
}
