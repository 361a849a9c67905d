//! Webhook notifications of a service's openings, restarts, recoveries and give-ups, sent on a task of their own
//! and recorded as events and metrics. Must not decide anything: callers say what happened.

use std::sync::Arc;

use aegis_core::State;

use crate::action::notify;
use crate::state::{ServiceHandle, Shared};

/// Sends a webhook notification when the service has a webhook (its own or the top-level one), whatever its
/// `onFailure`: operators want to hear about openings, restarts and recoveries of restarted services too.
pub(super) fn notify_if_configured(
    handle: &Arc<ServiceHandle>,
    shared: &Arc<Shared>,
    event: &str,
    state: State,
    reason: &str,
) {
    let Some(url) = handle.config.notify_webhook.clone() else {
        return;
    };
    let endpoint = crate::redact::redact_url(&handle.config.endpoint);
    let body = notify::Notification::new(&handle.config.name, &endpoint, event, state.as_str(), reason);
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        // Cluster mode: only the proven owner notifies (a notification that cannot be proven is dropped).
        if let Some(cluster) = &shared.cluster
            && let Err(why) = cluster.fence(&body.service).await
        {
            tracing::warn!(service = %body.service, event = %body.event, "notification not sent: {why}");
            return;
        }
        let result = notify::send(&shared.client, &url, &body).await;
        let label = if result.is_ok() { "success" } else { "failure" };
        shared.metrics.notifications.with_label_values(&[&body.service, label]).inc();
        let (kind, message) = match &result {
            Ok(()) => ("notified", format!("{} to {}", body.event, crate::redact::redact_url(&url))),
            Err(e) => ("notify-failed", format!("{}: {e}", body.event)),
        };
        shared.event(&body.service, kind, &message);
        match result {
            Ok(()) => {
                tracing::info!(service = %body.service, event = %body.event, "notified {}", crate::redact::redact_url(&url))
            }
            Err(e) => tracing::error!(service = %body.service, event = %body.event, "notification failed: {e}"),
        }
    });
}
