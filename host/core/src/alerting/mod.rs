//! Alert lifecycle with Prometheus/Alertmanager semantics: rules ([`AlertSpec`]), identity ([`fingerprint`]),
//! the [`AlertBook`] of pending/firing alerts with its notification schedule and snapshot, and the Alertmanager
//! v2 API body. Owns state and wire shapes only: no I/O, no clock (`now_ms` is Unix epoch ms), no delivery.

mod book;
mod fingerprint;
mod spec;
#[cfg(test)]
mod tests;

pub use book::{AlertBook, AlertState, BookSnapshot, Notice, NoticeKind, TrackedAlert};
pub use fingerprint::{LabelSet, fingerprint, label_set};
pub use spec::{AlertSpec, SourceKind};

use crate::policy::{Alert, AlertmanagerJson};

/// The body for `POST /api/v2/alerts` of an Alertmanager: a JSON array of `{labels, annotations, startsAt,
/// endsAt, generatorURL}`, `endsAt` only for resolved alerts (see [`AlertmanagerJson::v2_body`]).
pub fn alertmanager_v2_body(alerts: &[Alert]) -> Vec<u8> {
    AlertmanagerJson::v2_body(alerts)
}
