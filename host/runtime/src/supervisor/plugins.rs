//! The plugin directory at run time: recording quarantines and releases as events, reloading the directory (on
//! SIGHUP and when the watcher sees a `.wasm` change). Must not bind policies: bindings pick up a reloaded plugin at
//! their next call.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aegis_plugin::PluginEvent;
use tokio::sync::{mpsc, watch};

use crate::state::Shared;
use crate::store::NO_SERVICE;

/// Records plugin quarantines and releases in the event history (with [`NO_SERVICE`]: a plugin may decide for many
/// services, or for none, like an alert formatter), until `stop`; events queued by then are recorded too.
pub(super) async fn record_plugin_events(
    shared: Arc<Shared>,
    mut events: mpsc::Receiver<PluginEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let record = |event: PluginEvent| {
        let (kind, message) = match event {
            PluginEvent::Quarantined { plugin, strikes, cool_down, last_error } => (
                "plugin-quarantined",
                format!(
                    "{plugin}: quarantined after {strikes} strike(s), the built-in policy decides for {cool_down:?}; \
                     last: {last_error}"
                ),
            ),
            PluginEvent::Released { plugin } => {
                ("plugin-released", format!("{plugin}: answered well after its quarantine; released"))
            }
        };
        shared.event(NO_SERVICE, kind, &message);
    };
    loop {
        tokio::select! {
            Some(event) = events.recv() => record(event),
            _ = stop.changed() => break,
        }
    }
    while let Ok(event) = events.try_recv() {
        record(event);
    }
}

/// Reloads the plugin directory on a blocking thread (compiling a plugin takes milliseconds to seconds). Changed
/// plugins are swapped in at their bindings' next call; a broken replacement keeps the old version running.
pub(super) async fn reload_plugins(shared: &Arc<Shared>, dir: PathBuf) {
    let s = Arc::clone(shared);
    let shown = dir.display().to_string();
    match tokio::task::spawn_blocking(move || s.plugins.reload_dir(&dir)).await {
        Ok(Ok(report)) => {
            if !(report.added.is_empty() && report.updated.is_empty() && report.removed.is_empty()) {
                tracing::info!(
                    added = ?report.added,
                    updated = ?report.updated,
                    removed = ?report.removed,
                    "plugins reloaded"
                );
            }
            for error in &report.failed {
                tracing::error!("plugin not reloaded, the running version stays: {error}");
            }
        }
        Ok(Err(e)) => tracing::error!("plugins in {shown} not reloaded: {e}"),
        Err(e) => tracing::error!("plugin reload task failed: {e}"),
    }
}

/// Name, size and modification time of every `.wasm` in `dir`: a change means a plugin was added, replaced or
/// removed. An unreadable directory reads as empty (and is reported by the reload it triggers).
fn plugin_dir_signature(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "wasm"))
        .map(|e| {
            let meta = e.metadata().ok();
            (e.path(), meta.as_ref().map_or(0, |m| m.len()), meta.and_then(|m| m.modified().ok()))
        })
        .collect();
    files.sort();
    files
}

/// Polls the plugin directory (portable, and immune to the editors and `cp` variants that defeat inotify) and
/// reloads it when a `.wasm` appeared, changed or disappeared. Probes keep running meanwhile: bindings switch to the
/// new version at their next call.
pub(super) async fn watch_plugins(shared: Arc<Shared>, dir: PathBuf, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut last = plugin_dir_signature(&dir);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => break,
        }
        let now = plugin_dir_signature(&dir);
        if now != last {
            tracing::info!(dir = %dir.display(), "plugin directory changed; reloading");
            reload_plugins(&shared, dir.clone()).await;
            last = now;
        }
    }
}
