//! The "Shadow policies" part of a service page: which shadow plugins run beside the live policies, how often they
//! disagreed (`aegis_shadow_disagreements_total`) and the last `shadow-disagreed` events. Pure rendering from the
//! handle, the metrics and the events the page handler read; nothing for a service without a shadow.

use maud::{Markup, html};

use crate::state::{SHADOW_DISAGREED, ServiceHandle, Shared};
use crate::store::Event;

/// Disagreement events shown at most.
const SHOWN: usize = 20;

pub(super) fn section(shared: &Shared, h: &ServiceHandle, events: &[Event]) -> Markup {
    let c = &h.config;
    let shadows = [("trip", &c.breaker.trip_shadow), ("recovery", &c.recovery_shadow)];
    if shadows.iter().all(|(_, p)| p.is_none()) {
        return html! {};
    }
    let disagreed: Vec<&Event> = events.iter().filter(|e| e.kind == SHADOW_DISAGREED).take(SHOWN).collect();
    html! {
        h2 { "Shadow policies" }
        table.config #shadows { tbody { @for (policy, p) in shadows { @if let Some(p) = p {
            @let count = shared.metrics.shadow_disagreements.with_label_values(&[&*c.name, policy]).get();
            tr {
                th { (policy) }
                td { code { (p.plugin) } @for (k, v) in &p.config { " " code { (k) "=" (v) } } }
                td.disagreements data-policy=(policy) { (count) " disagreement" @if count != 1 { "s" } }
            }
        } } } }
        @if disagreed.is_empty() { p { "No disagreement recorded." } } @else {
            div.scroll { table #shadow-disagreements {
                thead { tr { th { "When (UTC)" } th { "Disagreement" } } }
                tbody { @for e in &disagreed { tr { td { (e.at) } td { (e.message) } } } }
            } }
        }
    }
}
