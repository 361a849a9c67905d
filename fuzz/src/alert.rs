//! The alert payload builders: any alert (arbitrary name, labels, annotations, times, receiver) renders as JSON
//! that parses back to the same values, its `groupKey` carries the name Go-quoted so that Go's `strconv.Unquote`
//! gives the name back, and its times are RFC 3339 that read back to the same millisecond.

use aegis_core::policy::{Alert, AlertFormatter, AlertStatus, AlertmanagerJson, Severity, go_quote};
use serde_json::{Map, Value};

use crate::input::Input;

/// 9999-12-31T23:59:59.999Z: RFC 3339 has four-digit years.
const MAX_RFC3339_MS: u64 = 253_402_300_799_999;

pub fn alert(data: &[u8]) {
    let mut input = Input::new(data);
    let target = input.string();
    let count = usize::from(input.byte() % 4);
    let alerts: Vec<Alert> = (0..count.max(1)).map(|_| read_alert(&mut input)).collect();
    for a in &alerts {
        let quoted = go_quote(&a.name);
        assert_eq!(go_unquote(&quoted).as_deref(), Some(a.name.as_bytes()), "go_quote is not Go-quoted: {quoted}");
        check_webhook(a, &target);
    }
    check_v2(&alerts);
}

fn read_alert(input: &mut Input<'_>) -> Alert {
    let flags = input.byte();
    let pairs = |input: &mut Input<'_>| (0..input.byte() % 6).map(|_| (input.string(), input.string())).collect();
    Alert {
        name: input.string(),
        status: if flags & 1 == 0 { AlertStatus::Firing } else { AlertStatus::Resolved },
        severity: match flags >> 1 & 3 {
            0 => Severity::Info,
            1 => Severity::Warning,
            _ => Severity::Critical,
        },
        labels: pairs(input),
        annotations: pairs(input),
        starts_at_ms: input.u64() >> ((flags >> 3 & 7) * 8),
        ends_at_ms: (flags & 0x80 != 0).then(|| input.u64() >> 20),
        fingerprint: input.string(),
    }
}

/// The labels Alertmanager must see: `alertname` and `severity` from the alert, then its other labels (a repeated
/// name keeps its last value, as any JSON reader does).
fn expected_labels(a: &Alert) -> Value {
    let mut labels = Map::new();
    labels.insert("alertname".into(), a.name.clone().into());
    labels.insert("severity".into(), a.severity.as_str().into());
    for (k, v) in a.labels.iter().filter(|(k, _)| k != "alertname" && k != "severity") {
        labels.insert(k.clone(), v.clone().into());
    }
    Value::Object(labels)
}

fn object(pairs: &[(String, String)]) -> Value {
    Value::Object(pairs.iter().map(|(k, v)| (k.clone(), Value::from(v.clone()))).collect())
}

fn parse(body: &[u8]) -> Value {
    match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)),
    }
}

fn check_webhook(a: &Alert, target: &str) {
    let payload = match AlertmanagerJson.format(a, target) {
        Ok(p) => p,
        Err(e) => {
            assert!(a.name.is_empty(), "refused a named alert: {e}");
            return;
        }
    };
    let v = parse(&payload.body);
    let labels = expected_labels(a);
    let group_key = v["groupKey"].as_str().unwrap_or_default();
    let quoted_name = group_key.strip_prefix("{}:{alertname=").and_then(|k| k.strip_suffix('}'));
    assert_eq!(quoted_name.and_then(go_unquote).as_deref(), Some(a.name.as_bytes()), "groupKey {group_key:?}");
    assert_eq!(v["receiver"], target);
    assert_eq!(v["status"], a.status.as_str());
    assert_eq!(v["commonLabels"], labels);
    assert_eq!(v["commonAnnotations"], object(&a.annotations));
    let item = &v["alerts"][0];
    assert_eq!(item["labels"], labels);
    assert_eq!(item["annotations"], object(&a.annotations));
    assert_eq!(item["fingerprint"], a.fingerprint.as_str());
    check_time(&item["startsAt"], a.starts_at_ms);
    match a.ends_at_ms {
        Some(ms) => check_time(&item["endsAt"], ms),
        None => assert_eq!(item["endsAt"], "0001-01-01T00:00:00Z"),
    }
}

fn check_v2(alerts: &[Alert]) {
    let v = parse(&AlertmanagerJson::v2_body(alerts));
    let items = v.as_array().map_or(&[][..], Vec::as_slice);
    assert_eq!(items.len(), alerts.len());
    for (item, a) in items.iter().zip(alerts) {
        assert_eq!(item["labels"], expected_labels(a));
        assert_eq!(item["annotations"], object(&a.annotations));
        check_time(&item["startsAt"], a.starts_at_ms);
        match a.status {
            AlertStatus::Firing => assert!(item.get("endsAt").is_none()),
            AlertStatus::Resolved => check_time(&item["endsAt"], a.ends_at_ms.unwrap_or(a.starts_at_ms)),
        }
    }
}

/// `value` is `ms` as RFC 3339 (`YYYY-MM-DDTHH:MM:SS.mmmZ`), for every instant RFC 3339 can write.
fn check_time(value: &Value, ms: u64) {
    let Some(text) = value.as_str() else { panic!("time {value} is not a string") };
    if ms > MAX_RFC3339_MS {
        return;
    }
    assert_eq!(read_rfc3339(text), Some(ms), "{ms} ms written as {text:?}");
}

fn read_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let shape = b"0000-00-00T00:00:00.000Z";
    let fits = b.len() == shape.len()
        && b.iter().zip(shape).all(|(c, s)| if *s == b'0' { c.is_ascii_digit() } else { c == s });
    if !fits {
        return None;
    }
    let num = |from: usize, to: usize| text[from..to].parse::<i64>().ok();
    let (y, m, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hh, mm, ss, milli) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 23)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    // Days from civil (H. Hinnant), written independently of the code under test.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + milli).ok()
}

/// Go's `strconv.Unquote` of a double-quoted string literal: the bytes it stands for, `None` if Go refuses it.
fn go_unquote(quoted: &str) -> Option<Vec<u8>> {
    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = Vec::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\n' => return None,
            '\\' => {
                let escaped = chars.next()?;
                let simple = match escaped {
                    'a' => Some(7),
                    'b' => Some(8),
                    'f' => Some(12),
                    'n' => Some(b'\n'),
                    'r' => Some(b'\r'),
                    't' => Some(b'\t'),
                    'v' => Some(11),
                    '\\' => Some(b'\\'),
                    '"' => Some(b'"'),
                    _ => None,
                };
                if let Some(b) = simple {
                    out.push(b);
                    continue;
                }
                let mut digits = |n: usize, radix: u32| -> Option<u32> {
                    (0..n).try_fold(0u32, |acc, _| Some(acc * radix + chars.next()?.to_digit(radix)?))
                };
                match escaped {
                    'x' => out.push(u8::try_from(digits(2, 16)?).ok()?),
                    '0'..='7' => {
                        let rest = digits(2, 8)?;
                        out.push(u8::try_from(escaped.to_digit(8)? * 64 + rest).ok()?);
                    }
                    'u' => push_char(&mut out, digits(4, 16)?)?,
                    'U' => push_char(&mut out, digits(8, 16)?)?,
                    _ => return None,
                }
            }
            c => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    Some(out)
}

fn push_char(out: &mut Vec<u8>, code: u32) -> Option<()> {
    let c = char::from_u32(code)?;
    let mut buf = [0; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    Some(())
}
