//! The console's HTML: one function per page, plus the shared layout, badges and SVG charts. Pure rendering from
//! what the handlers read; maud escapes every interpolated string (service names, labels, event messages).

use std::fmt::Write as _;
use std::time::Instant;

use aegis_core::State;
use aegis_core::alerting::TrackedAlert;
use aegis_plugin::shadow_name;
use maud::{DOCTYPE, Markup, html};

use super::super::plugins::QuarantineEnd;
use super::super::{AppState, success_rate};
use super::path_segment;
use crate::state::{Check, ServiceHandle};
use crate::store::Event;

fn layout(title: &str, current: &str, body: Markup) -> Markup {
    let nav = [("/", "Overview"), ("/alerts", "Alerts"), ("/plugins", "Plugins")];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Aegis" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body {
                header {
                    strong { "Aegis" }
                    nav { @for (href, label) in nav {
                        a href=(href) aria-current=[(label == current).then_some("page")] { (label) }
                    } }
                    form #auth {
                        label for="token" { "Admin token" }
                        input #token type="password" autocomplete="off" placeholder="for actions";
                        button #save-token type="submit" { "Use" }
                        button #forget-token type="button" { "Forget" }
                        span #mode { "read-only" }
                    }
                }
                p #msg role="status" {}
                main { (body) }
            }
        }
    }
}

/// A breaker state as a coloured badge that also says it in words.
fn badge(state: State) -> Markup {
    html! { span class={ "badge " (state.as_str()) } data-state=(state.as_str()) { (state.as_str().to_uppercase()) } }
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "–".to_owned(), |r| format!("{:.1} %", r * 100.0))
}

/// A sparkline of `checks`: latency as a line (scaled to the slowest), failures as red ticks.
fn sparkline(checks: &[Check], width: u32, height: u32) -> Markup {
    let max = checks.iter().map(|c| c.latency_us).max().unwrap_or(1).max(1);
    let step = f64::from(width) / crate::state::CAPACITY_F64;
    let mut line = String::new();
    let mut fails = String::new();
    for (i, c) in checks.iter().enumerate() {
        let x = step * i as f64;
        let y = f64::from(height) - f64::from(c.latency_us) / f64::from(max) * f64::from(height - 2) - 1.0;
        let _ = write!(line, "{x:.0},{y:.0} ");
        if !c.success {
            let _ = write!(fails, "M{x:.0} {height}v-{height}");
        }
    }
    let label = format!("last {} checks, max {:.1} ms", checks.len(), f64::from(max) / 1000.0);
    html! {
        svg.spark viewBox={ "0 0 " (width) " " (height) } width=(width) height=(height) role="img" aria-label=(label) {
            polyline points=(line.trim_end()) {}
            path d=(fails) {}
        }
    }
}

fn age(at_ms: Option<u64>) -> Markup {
    let now = crate::unix_ms();
    match at_ms {
        Some(at) => html! { time data-at=(at) { (now.saturating_sub(at) / 1000) " s ago" } },
        None => html! { time { "never" } },
    }
}

pub(super) fn overview(state: &AppState, now: Instant) -> Markup {
    let services = state.all();
    let health = state.shared.breakers.health(now);
    // Cluster mode: which replica probes and acts for each service.
    let cluster = state.shared.cluster.as_deref();
    let status = match health.healthy {
        h if h == health.total => "healthy",
        0 => "unhealthy",
        _ => "degraded",
    };
    let body = html! {
        section #health data-status=(status) {
            h1 { "Overall: " span #status class={ "status " (status) } { (status) } }
            p { span #healthy { (health.healthy) } " of " span #total { (health.total) } " services pass traffic ("
                span #percent { (format!("{:.1}", health.overall_health)) } " % healthy)" }
        }
        div.filters {
            label { "Filter " input #filter type="search" placeholder="name"; }
            label { "State " select #state-filter {
                option value="" { "all" }
                @for s in State::ALL { option value=(s.as_str()) { (s.as_str()) } }
            } }
        }
        div.scroll { table #services {
            thead { tr {
                th data-sort="name" { "Service" } th.wide { "Check" } th data-sort="state" { "Breaker" }
                th data-sort="rate" { "Success" } th.wide { "Recent checks" } th { "Last check" }
                th.wide data-sort="restarts" { "Restarts" } th.wide { "Gave up" }
                @if cluster.is_some() { th data-sort="owner" { "Owner" } }
                th { "Actions" }
            } }
            tbody { @for (name, h) in &services {
                @let st = h.breaker.state(now);
                @let rate = success_rate(&h.breaker.counts());
                @let recent = h.recent.list();
                @let (restarts, gave_up) = h.restart_status();
                @let owner = cluster.map(|c| c.owner(name).unwrap_or_else(|| "unknown".to_owned()));
                tr data-service=(name) data-state=(st.as_str()) data-rate=(rate.unwrap_or(-1.0)) data-restarts=(restarts)
                    data-owner=[owner.as_deref()] {
                    td { a href={ "/services/" (path_segment(name)) } { (name) } }
                    td.wide { (h.config.probe.kind()) }
                    td.st { (badge(st)) }
                    td.rate { (percent(rate)) }
                    td.wide.spark-cell data-lat=(latencies(&recent)) { (sparkline(&recent, 120, 20)) }
                    td.age { (age(recent.last().map(|c| c.at_ms))) }
                    td.wide { (restarts) }
                    td.wide { @if gave_up { strong { "gave up" } } @else { "no" } }
                    @if let Some(o) = &owner { td.owner { (o) } }
                    td { button.act data-act="reset" data-service=(name) { "Reset" } }
                }
            } }
        } }
    };
    layout("Overview", "Overview", body)
}

/// `latency_us:failed` pairs for the script's sparkline redraws.
fn latencies(checks: &[Check]) -> String {
    let mut out = String::with_capacity(checks.len() * 6);
    for c in checks {
        let _ = write!(out, "{}:{} ", c.latency_us, u8::from(!c.success));
    }
    out.trim_end().to_owned()
}

/// The state a transition event moved to (`"closed -> open: reason"`), or `None` for other events.
fn state_after(e: &Event) -> Option<&'static str> {
    if e.kind == "breaker-reset" {
        return Some("closed");
    }
    if !e.kind.starts_with("breaker-") {
        return None;
    }
    let to = e.message.split_once(" -> ")?.1.split(':').next()?.trim();
    State::ALL.iter().map(|s| s.as_str()).find(|s| *s == to)
}

/// State bands over the last hour or day, from the transition events (newest first, as the store lists them).
fn timeline(events: &[Event], current: State, day: bool) -> Markup {
    let span_ms: i64 = if day { 86_400_000 } else { 3_600_000 };
    let end = crate::unix_ms_i64();
    let start = end - span_ms;
    let mut changes: Vec<(i64, &str)> =
        events.iter().rev().filter_map(|e| state_after(e).map(|s| (e.at_ms, s))).collect();
    // Before the first change in the window: the state of the last change before it, or the state it left.
    let initial = changes.iter().rev().find(|(at, _)| *at <= start).map(|c| c.1).unwrap_or_else(|| {
        events
            .iter()
            .rev()
            .find(|e| state_after(e).is_some() && e.kind != "breaker-reset")
            .and_then(|e| e.message.split_once(" -> ").map(|p| p.0))
            .and_then(|from| State::ALL.iter().map(|s| s.as_str()).find(|s| *s == from))
            .unwrap_or(current.as_str())
    });
    changes.retain(|(at, _)| *at > start);
    let mut bands = Vec::new();
    let (mut from, mut st) = (start, initial);
    for (at, next) in changes {
        bands.push((from, at, st));
        (from, st) = (at, next);
    }
    bands.push((from, end, st));
    let x = |t: i64| (t - start) as f64 / span_ms as f64 * 1000.0;
    html! {
        svg.timeline viewBox="0 0 1000 24" preserveAspectRatio="none" role="img"
            aria-label={ "breaker states over the last " (if day { "day" } else { "hour" }) } {
            @for (a, b, s) in &bands {
                rect class={ "band " (s) } x=(format!("{:.1}", x(*a))) width=(format!("{:.1}", (x(*b) - x(*a)).max(0.5))) y="0" height="24" {
                    title { (s) }
                }
            }
        }
        p.legend { @for s in State::ALL { span class={ "badge " (s.as_str()) } { (s.as_str()) } " " } }
    }
}

pub(super) fn service(state: &AppState, h: &ServiceHandle, events: &[Event], day: bool, now: Instant) -> Markup {
    let name = &h.config.name;
    let st = h.breaker.state(now);
    let recent = h.recent.list();
    let (restarts, gave_up) = h.restart_status();
    let c = &h.config;
    let config_rows: Vec<(&str, String)> = vec![
        ("endpoint", crate::redact::redact_url(&c.endpoint).into_owned()),
        ("check", c.probe.kind().to_owned()),
        ("interval", humantime::format_duration(c.interval).to_string()),
        ("timeout", humantime::format_duration(c.timeout).to_string()),
        ("retries", c.retries.to_string()),
        ("on failure", c.on_failure.as_str().to_owned()),
        ("trip policy", h.trip_policy.to_string()),
        ("recovery policy", h.recovery.as_deref().map_or_else(|| "built-in".to_owned(), |(_, n)| n.clone())),
        ("circuit breaker", format!("{:?}", c.breaker)),
        ("backoff", c.backoff.as_ref().map_or_else(|| "disabled".to_owned(), |b| format!("{b:?}"))),
        ("restart limit", c.restart_limit.as_ref().map_or_else(|| "none".to_owned(), |l| format!("{l:?}"))),
        ("managed process", c.process.as_ref().map_or_else(|| "no".to_owned(), |p| p.program.clone())),
    ];
    let body = html! {
        h1 { (name) " " span #svc-state data-service=(name) { (badge(st)) } }
        p { "Success " span.rate { (percent(success_rate(&h.breaker.counts()))) } " · restarts " (restarts)
            @if gave_up { " · " strong { "gave up" } } " · last check " (age(recent.last().map(|c| c.at_ms))) }
        p.actions {
            button.act data-act="open" data-service=(name) { "Force open" }
            button.act data-act="closed" data-service=(name) { "Force closed" }
            button.act data-act="auto" data-service=(name) { "Automatic" }
            button.act data-act="reset" data-service=(name) { "Reset" }
        }
        h2 { "Breaker timeline" }
        p { a href="?range=hour" aria-current=[(!day).then_some("true")] { "last hour" } " · "
            a href="?range=day" aria-current=[day.then_some("true")] { "last day" } }
        (timeline(events, st, day))
        h2 { "Latency of the last " (recent.len()) " checks" }
        div.spark-cell.big data-service=(name) data-lat=(latencies(&recent)) { (sparkline(&recent, 600, 80)) }
        h2 { "Last events" }
        div.scroll { table {
            thead { tr { th { "When (UTC)" } th { "Event" } th { "Reason" } } }
            tbody { @for e in events.iter().take(50) { tr { td { (e.at) } td { (e.kind) } td { (e.message) } } } }
        } }
        (super::shadow::section(&state.shared, h, events))
        h2 { "Configuration" }
        table.config { tbody { @for (k, v) in &config_rows { tr { th { (k) } td { code { (v) } } } } } }
    };
    layout(name, "", body)
}

pub(super) fn alerts(active: &[TrackedAlert]) -> Markup {
    let body = html! {
        h1 { "Alerts" }
        @if active.is_empty() { p { "No pending or firing alerts." } }
        div.scroll { table #alerts {
            thead { tr { th { "Alert" } th { "State" } th { "Labels" } th { "Since" } } }
            tbody { @for a in active {
                tr {
                    td { (a.name) }
                    td { span class={ "badge " (a.state.as_str()) } { (a.state.as_str()) } }
                    td { @for (k, v) in &a.labels { code { (k) "=" (v) } " " } }
                    td { (age(Some(a.starts_at_ms.unwrap_or(a.active_at_ms)))) }
                }
            } }
        } }
    };
    layout("Alerts", "Alerts", body)
}

pub(super) fn plugins(state: &AppState) -> Markup {
    let stats = state.shared.plugins.stats();
    let services = state.all();
    let now_ms = crate::unix_ms();
    let body = html! {
        h1 { "Plugins" }
        @if stats.is_empty() { p { "No plugins loaded." } }
        div.scroll { table #plugins {
            thead { tr { th { "Plugin" } th { "Kind" } th { "Calls by result" } th { "Quarantined" } th { "Bound by" } } }
            tbody { @for p in &stats {
                @let bound: Vec<&std::sync::Arc<str>> = services.iter()
                    .filter(|(_, h)| h.trip_policy == p.plugin
                        || h.recovery.as_deref().is_some_and(|(_, n)| *n == p.plugin)
                        || h.shadows().any(|n| shadow_name(n) == p.plugin))
                    .map(|(n, _)| n).collect();
                tr {
                    td { (p.plugin) }
                    td { (p.kind.as_str()) }
                    td { @for (r, n) in &p.calls { code { (r.as_str()) " " (n) } " " } }
                    td.quarantine {
                        @if let Some(end) = p.quarantined_for.map(|left| QuarantineEnd::after(left, now_ms)) {
                            strong { "until " time datetime=(end.rfc3339) { (end.rfc3339) } } " (" (end.human) ")"
                        } @else { "no" }
                        " · " (p.quarantines_total) " so far"
                    }
                    td { @for n in bound { a href={ "/services/" (path_segment(n)) } { (n) } " " } }
                }
            } }
        } }
    };
    layout("Plugins", "Plugins", body)
}
