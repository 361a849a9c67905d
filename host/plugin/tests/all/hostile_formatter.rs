//! The hostile alert formatter, one misbehaviour at a time: a payload that sets what the host owns (framing headers,
//! the idempotency key) or splits a header is refused as an invalid result, and the built-in formatter renders the
//! alert; a well-behaved payload keeps its own headers.

use std::sync::Arc;

use aegis_core::policy::{Alert, AlertFormatter, AlertStatus, AlertmanagerJson, Severity};
use aegis_plugin::{CallResult, PluginError, PluginHost};

use crate::support::{capture_log, config, host};

const PLUGIN: &str = "hostile-formatter";

fn alert() -> Alert {
    Alert {
        name: "CircuitBreakerOpen".into(),
        status: AlertStatus::Firing,
        severity: Severity::Critical,
        labels: vec![("service".into(), "api".into())],
        annotations: vec![("summary".into(), "the breaker of api opened".into())],
        starts_at_ms: 1_700_000_000_000,
        ends_at_ms: None,
        fingerprint: "abc".into(),
    }
}

fn calls(host: &PluginHost, result: CallResult) -> u64 {
    host.stats().iter().find(|s| s.plugin == PLUGIN).map_or(0, |s| s.calls(result))
}

#[test]
fn answers_that_take_over_host_headers_are_invalid_and_the_built_in_renders() {
    let built_in = AlertmanagerJson.format(&alert(), "webhook").unwrap();
    for (mode, why) in [
        ("framing", "header Host is set by the host"),
        ("idempotency", "header Idempotency-Key is set by the host"),
        ("crlf", "invalid value of header X-Aegis-Test"),
    ] {
        let (host, _dir) = host(&[PLUGIN]);
        let f = host.alert_formatter(PLUGIN, "webhook", config(&[("mode", mode)]), Arc::new(AlertmanagerJson)).unwrap();
        let (payload, log) = capture_log(|| f.format(&alert(), "webhook"));
        assert_eq!(payload.unwrap(), built_in, "{mode}: the built-in's payload, untouched");
        assert_eq!((calls(&host, CallResult::Invalid), calls(&host, CallResult::Ok)), (1, 0), "{mode}");
        assert!(log.contains("returned an invalid result") && log.contains(why), "{mode}: {log}");
    }
}

#[test]
fn a_well_behaved_payload_keeps_its_custom_header() {
    let (host, _dir) = host(&[PLUGIN]);
    let f = host.alert_formatter(PLUGIN, "webhook", config(&[("mode", "ok")]), Arc::new(AlertmanagerJson)).unwrap();
    let p = f.format(&alert(), "webhook").unwrap();
    assert_eq!(p.content_type, "application/json");
    assert_eq!(p.headers, [("X-Aegis-Test".to_owned(), "1".to_owned())]);
    assert_eq!(
        String::from_utf8(p.body).unwrap(),
        r#"{"formatter":"hostile-formatter","alert":"CircuitBreakerOpen","status":"firing"}"#
    );
    assert_eq!((calls(&host, CallResult::Ok), calls(&host, CallResult::Invalid)), (1, 0));
}

#[test]
fn a_refused_config_is_reported_escaped_and_cut() {
    let (host, _dir) = host(&[PLUGIN]);
    let refused =
        host.alert_formatter(PLUGIN, "webhook", config(&[("mode", "refuse-init")]), Arc::new(AlertmanagerJson));
    let err = refused.unwrap_err();
    assert!(matches!(err, PluginError::InitRefused { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(r"no\n2026-01-01T00:00:00Z ERROR aegis: forged by a plugin\u{1b}[2J"), "{text}");
    assert!(!text.contains('\n') && !text.contains('\u{1b}'), "{text:?}");
    assert!(text.len() < 1200 && text.ends_with('…'), "cut to about 1 KiB: {} bytes", text.len());
}
