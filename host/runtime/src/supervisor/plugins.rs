//! The plugin directory at run time: recording quarantines and releases as events, reloading the directory (on
//! SIGHUP and when the watcher sees a `.wasm` change). Must not bind policies: bindings pick up a reloaded plugin at
//! their next call.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aegis_plugin::{PluginError, PluginEvent, SHADOW_SUFFIX};
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
            PluginEvent::Quarantined { plugin, strikes, cool_down, last_error } => {
                let meanwhile =
                    if plugin.ends_with(SHADOW_SUFFIX) { "it is not asked" } else { "the built-in policy decides" };
                let message = format!(
                    "{plugin}: quarantined after {strikes} strike(s), {meanwhile} for {cool_down:?}; last: {last_error}"
                );
                ("plugin-quarantined", message)
            }
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
                match error {
                    PluginError::BrokenLink { .. } => tracing::error!("plugin skipped: {error}"),
                    _ => tracing::error!("plugin not reloaded, the running version stays: {error}"),
                }
            }
        }
        Ok(Err(e)) => tracing::error!("plugins in {shown} not reloaded: {e}"),
        Err(e) => tracing::error!("plugin reload task failed: {e}"),
    }
}

/// Name, size and modification time of every `.wasm` in `dir` (through symlinks: a re-pointed link is a change): a
/// change means a plugin was added, replaced or removed. An unreadable directory reads as empty, and an entry whose
/// metadata cannot be read (a symlink loop, a dangling link) as size 0 with no time; both are reported by the reload.
fn plugin_dir_signature(dir: &Path) -> Signature {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "wasm"))
        .map(|e| {
            let meta = std::fs::metadata(e.path()).ok();
            (e.path(), meta.as_ref().map_or(0, |m| m.len()), meta.and_then(|m| m.modified().ok()))
        })
        .collect();
    files.sort();
    files
}

type Signature = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// What the watcher does after a look at the plugin directory.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Nothing changed since the last reload.
    Idle,
    /// Something changed since the previous look: wait one more interval. These files are new in the wait (each
    /// is announced once).
    Wait(Vec<PathBuf>),
    /// The directory differs from the last reload and has not changed for a whole interval.
    Reload,
}

/// Reloads only a directory that stopped changing: a `.wasm` being copied in grows and its mtime moves, so a file
/// is loaded once its size and mtime were the same at two consecutive looks. Loading it earlier would compile a
/// torn file — the reload would refuse it and keep the running version, then reload again when the copy ends — and
/// log a compile error for what is only a copy in progress.
#[derive(Debug)]
struct Settle {
    loaded: Signature,
    seen: Signature,
    announced: BTreeSet<PathBuf>,
}

impl Settle {
    fn new(loaded: Signature) -> Settle {
        Settle { seen: loaded.clone(), loaded, announced: BTreeSet::new() }
    }

    fn observe(&mut self, now: Signature) -> Step {
        if now == self.loaded {
            self.seen = now;
            self.announced.clear();
            return Step::Idle;
        }
        if now == self.seen {
            self.loaded = now;
            self.announced.clear();
            return Step::Reload;
        }
        let moving = now
            .iter()
            .filter(|entry| !self.seen.contains(entry))
            .map(|(path, ..)| path.clone())
            .filter(|path| self.announced.insert(path.clone()))
            .collect();
        self.seen = now;
        Step::Wait(moving)
    }
}

/// Polls the plugin directory (portable, and immune to the editors and `cp` variants that defeat inotify) and
/// reloads it when a `.wasm` appeared, changed or disappeared, once the directory stayed the same for one interval
/// (see [`Settle`]). Probes keep running meanwhile: bindings switch to the new version at their next call.
pub(super) async fn watch_plugins(shared: Arc<Shared>, dir: PathBuf, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut settle = Settle::new(plugin_dir_signature(&dir));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => break,
        }
        match settle.observe(plugin_dir_signature(&dir)) {
            Step::Idle => {}
            Step::Wait(moving) => {
                for path in moving {
                    tracing::info!(dir = %dir.display(), "waiting for {} to settle", path.display());
                }
            }
            Step::Reload => {
                tracing::info!(dir = %dir.display(), "plugin directory changed; reloading");
                reload_plugins(&shared, dir.clone()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(entries: &[(&str, u64, u64)]) -> Signature {
        entries
            .iter()
            .map(|&(p, len, t)| (PathBuf::from(p), len, Some(SystemTime::UNIX_EPOCH + Duration::from_secs(t))))
            .collect()
    }

    #[test]
    fn a_growing_file_is_reloaded_only_after_a_look_without_change() {
        let mut s = Settle::new(sig(&[("a.wasm", 10, 1)]));
        assert_eq!(s.observe(sig(&[("a.wasm", 10, 1)])), Step::Idle);
        // A copy in progress: announced once, however long it grows.
        assert_eq!(s.observe(sig(&[("a.wasm", 10, 1), ("b.wasm", 100, 2)])), Step::Wait(vec!["b.wasm".into()]));
        assert_eq!(s.observe(sig(&[("a.wasm", 10, 1), ("b.wasm", 900, 3)])), Step::Wait(vec![]));
        assert_eq!(s.observe(sig(&[("a.wasm", 10, 1), ("b.wasm", 900, 4)])), Step::Wait(vec![]), "mtime moved");
        assert_eq!(s.observe(sig(&[("a.wasm", 10, 1), ("b.wasm", 900, 4)])), Step::Reload);
        assert_eq!(s.observe(sig(&[("a.wasm", 10, 1), ("b.wasm", 900, 4)])), Step::Idle);
        // A later change is announced again; a removal waits one look like any change.
        assert_eq!(s.observe(sig(&[("a.wasm", 10, 1), ("b.wasm", 50, 5)])), Step::Wait(vec!["b.wasm".into()]));
        assert_eq!(s.observe(sig(&[("a.wasm", 10, 1)])), Step::Wait(vec![]));
        assert_eq!(s.observe(sig(&[("a.wasm", 10, 1)])), Step::Reload);
    }

    #[test]
    fn a_change_undone_before_the_next_look_reloads_nothing() {
        let mut s = Settle::new(sig(&[("a.wasm", 10, 1)]));
        assert_eq!(s.observe(sig(&[("a.wasm", 20, 2)])), Step::Wait(vec!["a.wasm".into()]));
        assert_eq!(s.observe(sig(&[("a.wasm", 10, 1)])), Step::Idle);
    }

    #[test]
    fn symlink_loops_and_dangling_links_read_without_hanging() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("good.wasm"), b"\0asm").expect("write");
        std::os::unix::fs::symlink("loop-b.wasm", dir.path().join("loop-a.wasm")).expect("link");
        std::os::unix::fs::symlink("loop-a.wasm", dir.path().join("loop-b.wasm")).expect("link");
        std::os::unix::fs::symlink("missing", dir.path().join("dangling.wasm")).expect("link");
        let s = plugin_dir_signature(dir.path());
        let shown: Vec<(String, u64, bool)> = s
            .iter()
            .map(|(p, len, t)| (p.file_name().expect("name").to_string_lossy().into_owned(), *len, t.is_some()))
            .collect();
        assert_eq!(
            shown,
            [
                ("dangling.wasm".to_owned(), 0, false),
                ("good.wasm".to_owned(), 4, true),
                ("loop-a.wasm".to_owned(), 0, false),
                ("loop-b.wasm".to_owned(), 0, false),
            ]
        );
        assert_eq!(plugin_dir_signature(dir.path()), s, "stable: such entries do not keep the watcher reloading");
    }
}
