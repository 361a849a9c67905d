//! Rendering the admin API's JSON for people: aligned columns, human durations (`3s ago`), state names as the API
//! spells them. Pure: takes the JSON and `now`, returns text.

use serde_json::Value;

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                out.push_str(&cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

/// `3s`, `4m`, `2h`, `5d`.
pub fn human(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn ago(at_ms: Option<u64>, now_ms: u64) -> String {
    at_ms.map_or_else(|| "-".to_owned(), |at| format!("{} ago", human(now_ms.saturating_sub(at))))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// The `status` table: one row per service, then the overall line.
pub fn status(health: &Value, services: &[Value], last_check_ms: &[Option<u64>], now_ms: u64) -> String {
    let rows: Vec<Vec<String>> = services
        .iter()
        .zip(last_check_ms.iter().chain(std::iter::repeat(&None)))
        .map(|(s, at)| {
            let rate = s["success_rate"].as_f64().map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0));
            let check = &s["last_check"];
            let last = if check.is_null() {
                "-".to_owned()
            } else {
                let outcome = if check["success"].as_bool() == Some(true) { "ok" } else { "failed" };
                let latency = check["latency_ms"].as_f64().unwrap_or(0.0);
                let when = at.map(|_| format!("{} ", ago(*at, now_ms))).unwrap_or_default();
                format!("{when}{outcome} {latency:.0}ms {}", text(&check["detail"]))
            };
            let mut state = text(&s["state"]);
            if let Some(ms) = s["open_remaining_ms"].as_u64() {
                state.push_str(&format!(" ({} to half-open)", human(ms)));
            }
            let mut restarts = s["restarts"].as_u64().unwrap_or(0).to_string();
            if s["gave_up"].as_bool() == Some(true) {
                restarts.push_str(" (gave up)");
            }
            vec![text(&s["name"]), state, rate, restarts, last]
        })
        .collect();
    let mut out = render(&["SERVICE", "STATE", "SUCCESS", "RESTARTS", "LAST CHECK"], &rows);
    out.push_str(&format!(
        "\n{}: {:.0}% of {} services healthy\n",
        text(&health["status"]),
        health["healthy_percent"].as_f64().unwrap_or(0.0),
        health["total"].as_u64().unwrap_or(0)
    ));
    out
}

pub fn events(events: &[Value], now_ms: u64) -> String {
    if events.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let at = e["at_ms"].as_u64();
            vec![ago(at, now_ms), text(&e["service"]), text(&e["kind"]), text(&e["message"])]
        })
        .collect();
    render(&["WHEN", "SERVICE", "KIND", "MESSAGE"], &rows)
}

pub fn alerts(alerts: &[Value], now_ms: u64) -> String {
    if alerts.is_empty() {
        return "no pending or firing alerts\n".to_owned();
    }
    let rows: Vec<Vec<String>> = alerts
        .iter()
        .map(|a| {
            let since = a["starts_at_ms"].as_u64().or_else(|| a["active_at_ms"].as_u64());
            vec![
                text(&a["name"]),
                text(&a["state"]),
                text(&a["severity"]),
                text(&a["labels"]["service"]),
                ago(since, now_ms),
                text(&a["annotations"]["summary"]),
            ]
        })
        .collect();
    render(&["ALERT", "STATE", "SEVERITY", "SERVICE", "SINCE", "SUMMARY"], &rows)
}

pub fn plugins(plugins: &[Value]) -> String {
    if plugins.is_empty() {
        return "no plugins loaded\n".to_owned();
    }
    let rows: Vec<Vec<String>> = plugins
        .iter()
        .map(|p| {
            let calls = p["calls"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "-".to_owned());
            let bound = p["bound_by"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|b| format!("{} ({})", text(&b["service"]), text(&b["as"])))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "-".to_owned());
            let quarantined = match (p["quarantined"].as_bool(), p["quarantined_until"].as_str()) {
                (Some(true), Some(until)) => format!("until {until} ({})", text(&p["quarantined_until_human"])),
                (Some(true), None) => "yes".to_owned(),
                _ => "no".to_owned(),
            };
            vec![text(&p["name"]), text(&p["kind"]), text(&p["version"]), calls, quarantined, bound]
        })
        .collect();
    render(&["PLUGIN", "KIND", "VERSION", "CALLS", "QUARANTINED", "BOUND BY"], &rows)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn durations_read_like_people_say_them() {
        assert_eq!(human(3_400), "3s");
        assert_eq!(human(125_000), "2m");
        assert_eq!(human(7_200_000), "2h");
        assert_eq!(ago(Some(1_000), 4_000), "3s ago");
        assert_eq!(ago(None, 4_000), "-");
    }

    #[test]
    fn the_status_table_is_aligned() {
        let health = json!({"status": "degraded", "healthy_percent": 50.0, "total": 2});
        let services = [
            json!({"name": "web", "state": "closed", "success_rate": 1.0, "restarts": 0,
                   "last_check": {"success": true, "latency_ms": 2.4, "detail": "HTTP 200"}}),
            json!({"name": "database", "state": "open", "success_rate": 0.25, "restarts": 3, "gave_up": true,
                   "open_remaining_ms": 4000, "last_check": null}),
        ];
        let out = status(&health, &services, &[Some(7_000), None], 10_000);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "SERVICE   STATE                   SUCCESS  RESTARTS     LAST CHECK");
        assert_eq!(lines[1], "web       closed                  100.0%   0            3s ago ok 2ms HTTP 200");
        assert_eq!(lines[2], "database  open (4s to half-open)  25.0%    3 (gave up)  -");
        assert_eq!(lines[4], "degraded: 50% of 2 services healthy");
    }

    #[test]
    fn the_plugins_table_says_until_when_a_plugin_is_quarantined() {
        let listed = [
            json!({"name": "bad", "kind": "trip-predicate", "version": "0.1.0", "calls": {"trap": 3},
                   "quarantined": true, "quarantined_until": "2026-11-30T16:40:10Z",
                   "quarantined_until_human": "in 4m 10s", "bound_by": [{"service": "web", "as": "trip-predicate"}]}),
            json!({"name": "good", "kind": "recovery-strategy", "version": null, "calls": {},
                   "quarantined": false, "quarantined_until": null, "bound_by": []}),
        ];
        let out = plugins(&listed);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].contains("until 2026-11-30T16:40:10Z (in 4m 10s)"), "{out}");
        assert!(lines[2].contains(" no "), "{out}");
    }
}
