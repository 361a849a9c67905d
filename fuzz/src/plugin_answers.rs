//! The host side of the plugin boundary: every answer a guest can give (as wasmtime lifts it: any string, any
//! number, any variant, in any context) through the adapters' checks. Never a panic; what passes is what the WIT
//! contract promises the rest of the host (bounded, escaped text; waits within bounds; positive finite scores;
//! headers the HTTP client accepts, none the host owns).

use std::collections::HashSet;

use aegis_core::policy::RecoveryAction;
use aegis_plugin::boundary::{
    self, GuestAction, GuestAnomaly, GuestFinding, GuestPayload, GuestSeverity, GuestVerdict,
    HOST_OWNED_HEADER_PREFIXES, HOST_OWNED_HEADERS, MAX_TEXT, RuleNames,
};
use aegis_plugin::{MAX_BODY, MAX_RULE_NAME, MAX_RULE_NAMES, MAX_WAIT, MIN_WAIT};
use axum::http::{HeaderName, HeaderValue};

use crate::input::Input;

pub fn plugin_answers(data: &[u8]) {
    let mut input = Input::new(data);
    match input.byte() % 5 {
        0 => payload(&mut input),
        1 => action(&mut input),
        2 => anomaly(&mut input),
        3 => findings(&mut input),
        _ => verdict(&mut input),
    }
}

/// Text from a plugin as the host passes it on: no control character, at most [`MAX_TEXT`] bytes and a `…`, and
/// unchanged when it was short plain text already.
fn check_plain(given: &str, passed: &str) {
    assert!(!passed.contains(char::is_control), "control characters passed: {passed:?}");
    assert!(passed.len() <= MAX_TEXT + '…'.len_utf8(), "{} bytes passed", passed.len());
    if given.len() <= MAX_TEXT && !given.contains(char::is_control) {
        assert_eq!(given, passed);
    }
}

/// A number near an interesting bound now and then, any number otherwise.
fn number(input: &mut Input<'_>, bounds: &[u64]) -> u64 {
    let pick = input.byte();
    let raw = input.u64();
    match bounds.get(usize::from(pick >> 4)) {
        Some(b) => b.wrapping_add(u64::from(pick & 3)).wrapping_sub(1),
        None => raw,
    }
}

fn payload(input: &mut Input<'_>) {
    let content_type = input.string();
    let headers: Vec<(String, String)> = (0..input.byte() % 40).map(|_| (input.string(), input.string())).collect();
    let mut body = input.bytes().to_vec();
    if input.bool() {
        body = body.repeat(MAX_BODY / body.len().max(1) + usize::from(input.bool()));
    }
    let answer = GuestPayload { content_type, headers, body };
    let Ok(p) = boundary::alert_payload(answer) else { return };
    assert!(!p.body.is_empty() && p.body.len() <= MAX_BODY, "body of {} bytes passed", p.body.len());
    assert!(HeaderValue::from_str(&p.content_type).is_ok() && !p.content_type.is_empty(), "{:?}", p.content_type);
    let mut seen = HashSet::new();
    for (name, value) in &p.headers {
        let parsed = HeaderName::from_bytes(name.as_bytes());
        let Ok(parsed) = parsed else { panic!("the HTTP client refuses the header name {name:?}") };
        assert!(HeaderValue::from_str(value).is_ok(), "the HTTP client refuses the value {value:?}");
        assert!(seen.insert(parsed.as_str().to_owned()), "header {name} twice");
        // `HeaderName` lowercases.
        let lower = parsed.as_str();
        let owned =
            HOST_OWNED_HEADERS.contains(&lower) || HOST_OWNED_HEADER_PREFIXES.iter().any(|p| lower.starts_with(p));
        assert!(!owned, "the host's header {name} passed");
    }
}

fn action(input: &mut Input<'_>) {
    let variant = input.byte() % 4;
    let message = input.bool().then(|| input.string());
    let ms_bounds = [MIN_WAIT.as_millis() as u64, MAX_WAIT.as_millis() as u64, 0, u64::MAX];
    let ms = number(input, &ms_bounds);
    let answer = match variant {
        0 => GuestAction::Restart,
        1 => GuestAction::Notify(message.clone()),
        2 => GuestAction::Ignore,
        _ => GuestAction::Wait(ms),
    };
    match boundary::recovery_action(answer) {
        Ok(RecoveryAction::Wait(wait)) => assert!((MIN_WAIT..=MAX_WAIT).contains(&wait), "wait of {wait:?} passed"),
        Ok(RecoveryAction::Notify(passed)) => match (message, passed) {
            (Some(given), Some(passed)) => check_plain(&given, &passed),
            (None, None) => {}
            (given, passed) => panic!("notify({given:?}) passed as notify({passed:?})"),
        },
        Ok(_) => {}
        Err(e) => assert!(variant == 3 && e.contains(&format!("wait of {ms} ms")), "{e}"),
    }
}

fn anomaly(input: &mut Input<'_>) {
    let score = f64::from_bits(number(input, &[0, 0x7ff0_0000_0000_0000, 0x8000_0000_0000_0000, 1]));
    let reason = input.string();
    if let Ok(a) = boundary::anomaly(GuestAnomaly { score, reason: reason.clone() }) {
        assert!(a.score.is_finite() && a.score > 0.0, "score {} passed", a.score);
        check_plain(&reason, &a.reason);
    }
}

fn severity(input: &mut Input<'_>) -> GuestSeverity {
    match input.byte() % 3 {
        0 => GuestSeverity::Info,
        1 => GuestSeverity::Warning,
        _ => GuestSeverity::Critical,
    }
}

/// A binding's findings one after another: every name that passes is well-formed, and a binding never reports more
/// than [`MAX_RULE_NAMES`] distinct names.
fn findings(input: &mut Input<'_>) {
    let names = RuleNames::default();
    let mut passed_names = HashSet::new();
    let mut made = Vec::<String>::new();
    while !input.is_empty() {
        // An earlier name again, a fresh well-formed one (to reach the limit on distinct names) or any string.
        let rule = match input.byte() {
            b @ 0..=127 => made.get(usize::from(b)).cloned().unwrap_or_default(),
            128..=191 => format!("rule-{}", made.len()),
            _ => input.string(),
        };
        made.push(rule.clone());
        let message = input.string();
        let answer = GuestFinding { rule: rule.clone(), severity: severity(input), message: message.clone() };
        let Ok(f) = boundary::finding(&names, answer) else { continue };
        assert_eq!(f.rule, rule, "a rule name is passed as given or refused");
        assert!(!rule.is_empty() && rule.len() <= MAX_RULE_NAME && !rule.contains(char::is_control), "{rule:?}");
        check_plain(&message, &f.message);
        passed_names.insert(rule);
        assert!(passed_names.len() <= MAX_RULE_NAMES, "{} distinct names passed", passed_names.len());
    }
}

fn verdict(input: &mut Input<'_>) {
    let verdict = match input.byte() % 3 {
        0 => GuestVerdict::StayClosed,
        1 => GuestVerdict::Trip,
        _ => GuestVerdict::NeedWindow,
    };
    let reason = input.string();
    match (verdict, boundary::trip_decision(verdict, reason.clone())) {
        (GuestVerdict::StayClosed, Ok(None)) | (GuestVerdict::NeedWindow, Err(_)) => {}
        (GuestVerdict::Trip, Ok(Some(passed))) => check_plain(&reason, &passed),
        (verdict, decision) => panic!("{verdict:?} decided as {decision:?}"),
    }
}
