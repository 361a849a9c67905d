//! The alert-formatter adapter: a WASM component behind `aegis_core::policy::AlertFormatter`.

use std::fmt;
use std::sync::Arc;

use aegis_core::policy::{Alert, AlertFormatter, AlertStatus, FormatError, Payload};

use crate::binding::{Binding, clamp_text};
use crate::bindings::alert::AlertFormatterPlugin;
use crate::bindings::alert::exports::aegis::policy::alert_formatter as wit;
use crate::error::PluginError;
use crate::host::PluginHost;
use crate::severity_to_wit;

/// Largest body a formatter may return; a larger one is refused (a strike) and the built-in renders the alert.
pub const MAX_BODY: usize = 1 << 20;
/// Most headers a formatter may set.
const MAX_HEADERS: usize = 32;
/// Longest header name a formatter may set (far above any real one; with the two below it bounds the request head).
const MAX_HEADER_NAME: usize = 256;
/// Longest header value a formatter may set.
const MAX_HEADER_VALUE: usize = 4096;

/// Headers the host or its HTTP client owns, by lowercase name; a formatter that sets one is refused (a strike).
/// The client adds a formatter's headers beside its own (`append`, not `insert`), so each of these would be a second,
/// conflicting value on the wire:
/// - framing, routing and connection management (RFC 9110 §7.6.1, RFC 9112 §6): `Host`, `Content-Length`,
///   `Transfer-Encoding`, `Connection`, `Keep-Alive`, `TE`, `Trailer`, `Upgrade`, `Expect`, and every `Proxy-*`
///   (see [`HOST_OWNED_PREFIXES`]). Set by a plugin they send the alert to another virtual host or make the receiver
///   frame the body differently: it reads an empty body, answers 200, and the outbox counts a notification whose
///   content was lost as delivered;
/// - `Content-Type`: the payload's own `content_type` sets it; two values are ambiguous;
/// - `Idempotency-Key`: the outbox's key, which receivers deduplicate on; a plugin's own key could make a receiver
///   drop distinct notifications as repeats.
pub const HOST_OWNED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "content-type",
    "idempotency-key",
];
/// Prefixes of header names the host owns (lowercase): `Proxy-Authorization`, `Proxy-Connection`, … are for the
/// proxy the client may be configured with, never for a receiver.
pub const HOST_OWNED_PREFIXES: &[&str] = &["proxy-"];

/// An alert formatter implemented by a plugin. On trap, timeout, invalid output or quarantine the built-in renders
/// the alert; a plugin's own refusal (`err`) also falls back to the built-in, but is no strike.
pub struct WasmAlertFormatter {
    binding: Binding<AlertFormatterPlugin>,
    fallback: Arc<dyn AlertFormatter>,
}

impl fmt::Debug for WasmAlertFormatter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmAlertFormatter").field("binding", &self.binding).field("fallback", &self.fallback).finish()
    }
}

impl PluginHost {
    /// Binds the alert-formatter plugin `name` (for the receiver named by `subject`, used in the host's log) and
    /// runs its `init` with `config` now.
    pub fn alert_formatter(
        &self,
        name: &str,
        subject: &str,
        config: Vec<(String, String)>,
        fallback: Arc<dyn AlertFormatter>,
    ) -> Result<WasmAlertFormatter, PluginError> {
        Ok(WasmAlertFormatter { binding: Binding::new(self, name, subject.to_owned(), None, config)?, fallback })
    }
}

impl WasmAlertFormatter {
    pub fn plugin_name(&self) -> &str {
        self.binding.plugin_name()
    }

    /// Whether the plugin is loaded now. A binding made before its plugin appeared uses the built-in policy and
    /// binds the plugin at the first call after it is loaded.
    pub fn is_loaded(&self) -> bool {
        self.binding.is_loaded()
    }
}

/// Checks a payload before it can reach an HTTP request and the outbox: a bounded, non-empty body (an empty one
/// would deliver a notification without the alert), header names that are RFC 9110 tokens and values of visible
/// ASCII, space and tab (nothing that could split the request or make the client refuse to send it, which would
/// leave the notification retrying forever), at most one header of a name (case-insensitively: receivers disagree on
/// which of two wins), none the host owns ([`HOST_OWNED`]), and a content type.
pub(crate) fn validate(p: wit::Payload) -> Result<Payload, String> {
    if p.body.len() > MAX_BODY {
        return Err(format!("body of {} bytes exceeds {MAX_BODY}", p.body.len()));
    }
    if p.headers.len() > MAX_HEADERS {
        return Err(format!("{} headers exceed {MAX_HEADERS}", p.headers.len()));
    }
    for (i, (name, value)) in p.headers.iter().enumerate() {
        if !is_token(name) {
            return Err(format!("invalid header name {}", preview(name)));
        }
        if !is_field_value(value) {
            return Err(format!("invalid value of header {name}"));
        }
        if is_host_owned(name) {
            return Err(format!("header {name} is set by the host"));
        }
        if p.headers[..i].iter().any(|(earlier, _)| earlier.eq_ignore_ascii_case(name)) {
            return Err(format!("header {name} given twice"));
        }
    }
    if p.content_type.is_empty() || !is_field_value(&p.content_type) {
        return Err(format!("invalid content type {}", preview(&p.content_type)));
    }
    if p.body.is_empty() {
        return Err("empty body".to_owned());
    }
    Ok(Payload { content_type: p.content_type, headers: p.headers, body: p.body })
}

/// An RFC 9110 token (`tchar`s) of at most [`MAX_HEADER_NAME`] bytes: what the HTTP client accepts as a name.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_HEADER_NAME
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value of visible ASCII, space and tab, at most [`MAX_HEADER_VALUE`] bytes: no CR or LF to start another
/// header, nothing the HTTP client would refuse.
fn is_field_value(s: &str) -> bool {
    s.len() <= MAX_HEADER_VALUE && s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

fn is_host_owned(name: &str) -> bool {
    HOST_OWNED.iter().any(|owned| name.eq_ignore_ascii_case(owned))
        || HOST_OWNED_PREFIXES
            .iter()
            .any(|prefix| name.get(..prefix.len()).is_some_and(|h| h.eq_ignore_ascii_case(prefix)))
}

/// The start of text the host refused, quoted with escapes, for the strike's message.
fn preview(s: &str) -> String {
    const SHOWN: usize = 64;
    let cut = s.floor_char_boundary(SHOWN);
    format!("{:?}{}", &s[..cut], if cut < s.len() { "…" } else { "" })
}

impl AlertFormatter for WasmAlertFormatter {
    fn format(&self, alert: &Alert, target: &str) -> Result<Payload, FormatError> {
        let wit_alert = wit::Alert {
            name: alert.name.clone(),
            status: match alert.status {
                AlertStatus::Firing => wit::AlertStatus::Firing,
                AlertStatus::Resolved => wit::AlertStatus::Resolved,
            },
            severity: severity_to_wit(alert.severity),
            labels: alert.labels.clone(),
            annotations: alert.annotations.clone(),
            starts_at_ms: alert.starts_at_ms,
            ends_at_ms: alert.ends_at_ms,
            fingerprint: alert.fingerprint.clone(),
        };
        let rendered = self.binding.call(|plugin, store| {
            plugin.aegis_policy_alert_formatter().call_format(store, &wit_alert, target).map(|r| match r {
                Ok(payload) => validate(payload).map(Ok),
                Err(refusal) => Ok(Err(clamp_text(refusal))),
            })
        });
        match rendered {
            Some(Ok(payload)) => Ok(payload),
            Some(Err(refusal)) => {
                tracing::warn!(plugin = %self.plugin_name(), alert = %alert.name, target,
                    "alert formatter refused the alert, using the built-in: {refusal}");
                self.fallback.format(alert, target)
            }
            None => self.fallback.format(alert, target),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(headers: &[(&str, &str)]) -> wit::Payload {
        wit::Payload {
            content_type: "application/json".into(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: b"{\"text\":\"ServiceDown\"}".to_vec(),
        }
    }

    #[test]
    fn a_good_payload_passes_with_its_own_headers() {
        let p = validate(payload(&[("X-Aegis-Test", "1"), ("Authorization", "Bearer t0k3n"), ("X-Empty", "")]))
            .expect("valid");
        assert_eq!(p.content_type, "application/json");
        assert_eq!(p.headers[0], ("X-Aegis-Test".to_owned(), "1".to_owned()));
        assert_eq!(p.headers.len(), 3);
        assert_eq!(p.body, b"{\"text\":\"ServiceDown\"}");
    }

    #[test]
    fn headers_the_host_owns_are_refused_in_any_case() {
        let owned = [
            "Host",
            "Content-Length",
            "Transfer-Encoding",
            "Connection",
            "Keep-Alive",
            "TE",
            "Trailer",
            "Upgrade",
            "Expect",
            "Content-Type",
            "Idempotency-Key",
            "Proxy-Authorization",
            "Proxy-Connection",
            "Proxy-Anything",
        ];
        for name in owned {
            for spelled in [name.to_owned(), name.to_ascii_lowercase(), name.to_ascii_uppercase()] {
                let err = validate(payload(&[("X-Fine", "1"), (&spelled, "0")])).expect_err(&spelled);
                assert_eq!(err, format!("header {spelled} is set by the host"));
            }
        }
        // Names that only resemble one are the formatter's.
        for name in ["X-Host", "Hosts", "Content-Language", "Proxyish", "X-Idempotency-Key"] {
            assert!(validate(payload(&[(name, "1")])).is_ok(), "{name}");
        }
    }

    #[test]
    fn the_measured_framing_attack_is_refused() {
        let mut p = payload(&[("Host", "evil.example"), ("Content-Length", "0"), ("Transfer-Encoding", "chunked")]);
        p.body.clear();
        assert_eq!(validate(p).unwrap_err(), "header Host is set by the host", "the headers are named first");
    }

    #[test]
    fn a_header_name_given_twice_is_refused_case_insensitively() {
        let err = validate(payload(&[("X-Team", "a"), ("x-team", "b")])).unwrap_err();
        assert_eq!(err, "header x-team given twice");
        assert!(validate(payload(&[("X-Team", "a"), ("X-Team", "a")])).is_err(), "even with the same value");
    }

    #[test]
    fn names_and_values_that_could_split_or_break_the_request_are_refused() {
        for (name, value) in [
            ("X-A", "1\r\nHost: evil.example"),
            ("X-A", "1\n"),
            ("X-A", "caf\u{e9}"),
            ("X-A\r\nHost", "evil.example"),
            ("X A", "1"),
            ("X-A:", "1"),
            ("X(A)", "1"),
            ("", "1"),
        ] {
            assert!(validate(payload(&[(name, value)])).is_err(), "{name:?}: {value:?}");
        }
        let long_name = "X".repeat(MAX_HEADER_NAME + 1);
        let err = validate(payload(&[(&long_name, "1")])).unwrap_err();
        assert!(err.ends_with("…") && err.len() < 100, "the refused name is shown cut: {err}");
        assert!(validate(payload(&[("X-A", &"v".repeat(MAX_HEADER_VALUE + 1))])).is_err());
        assert!(validate(payload(&[("X-A", &"v".repeat(MAX_HEADER_VALUE))])).is_ok());
    }

    #[test]
    fn bodies_header_counts_and_content_types_are_bounded() {
        let mut p = payload(&[]);
        p.body = vec![b'x'; MAX_BODY + 1];
        assert!(validate(p).unwrap_err().contains("exceeds"));
        let mut p = payload(&[]);
        p.body.clear();
        assert_eq!(validate(p).unwrap_err(), "empty body");
        let names: Vec<String> = (0..=MAX_HEADERS).map(|i| format!("X-{i}")).collect();
        let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
        assert!(validate(payload(&many)).unwrap_err().contains("headers exceed"));
        assert!(validate(payload(&many[..MAX_HEADERS])).is_ok());
        for content_type in ["", "text/plain\r\nHost: evil.example"] {
            let p = wit::Payload { content_type: content_type.into(), ..payload(&[]) };
            assert!(validate(p).unwrap_err().starts_with("invalid content type"), "{content_type:?}");
        }
    }
}
