//! The probe path's side of recording: [`Recorder`] hands each service a [`ServiceRecorder`] whose buffer only that
//! service's task pushes to, so recording a check is an uncontended lock and a push into memory that is already
//! there — no store, no shared counter, no allocation for a healthy check. The writer ([`super::writer`]) swaps each
//! buffer out about every second. A full buffer (the writer is stuck behind a store that hangs) drops the entry and
//! counts it: probing never waits for the store.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;

use aegis_core::history::{LogCount, MetricSample, Outcome};
use prometheus::IntCounter;

use super::writer::Writer;
use crate::config::HistoryConfig;

/// Entries of each kind one service's buffer holds between two flushes; beyond them new ones are dropped.
pub const BUFFER: usize = 4096;
/// A buffer this full wakes the writer before its second is up.
const WAKE_AT: usize = BUFFER / 2;
/// Log matches are counted per interval of this many milliseconds (aligned on the epoch).
pub const LOG_INTERVAL_MS: i64 = 10_000;
/// Failure details are cut to this many bytes (at a character boundary): a reason, not a response body.
pub const MAX_DETAIL: usize = 120;

/// One service's entries waiting for the writer.
#[derive(Debug)]
pub(super) struct Buffer {
    pub(super) service: Arc<str>,
    pub(super) outcomes: Mutex<Vec<Outcome>>,
    pub(super) samples: Mutex<Vec<MetricSample>>,
    /// Matches per rule and interval; an interval still running stays here until it ends.
    pub(super) counts: Mutex<Vec<LogCount>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Buffer {
    fn new(service: Arc<str>) -> Buffer {
        Buffer {
            service,
            outcomes: Mutex::new(Vec::new()),
            samples: Mutex::new(Vec::new()),
            counts: Mutex::new(Vec::new()),
        }
    }
}

/// What the writer thread and the handles share.
#[derive(Debug)]
pub(super) struct Inner {
    pub(super) buffers: RwLock<HashMap<Arc<str>, Arc<Buffer>>>,
    /// Entries dropped (a full buffer, a failed write): `aegis_storage_dropped_total{kind="history"}`.
    pub(super) dropped: IntCounter,
    /// Failed flushes: `aegis_storage_errors_total{operation="history"}`.
    pub(super) errors: IntCounter,
    pub(super) stop: AtomicBool,
    /// The writer's thread, to wake it early.
    pub(super) wake: Mutex<Option<std::thread::Thread>>,
    pub(super) writer: Mutex<Writer>,
}

impl Inner {
    fn wake(&self) {
        if let Some(t) = lock(&self.wake).as_ref() {
            t.unpark();
        }
    }

    fn buffer(&self, service: &str) -> Option<Arc<Buffer>> {
        self.buffers.read().unwrap_or_else(|p| p.into_inner()).get(service).cloned()
    }
}

/// Stops the writer thread (after a last flush) when the last [`Recorder`] goes.
#[derive(Debug)]
struct Running {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Running {
    fn stop(&self) {
        if self.inner.stop.swap(true, Ordering::AcqRel) {
            return;
        }
        self.inner.wake();
        match lock(&self.thread).take() {
            Some(thread) => {
                if thread.join().is_err() {
                    tracing::error!("the history writer panicked");
                }
            }
            None => super::writer::flush(&self.inner, true),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Records history for every service, or nothing (`storage.history.enabled: false`, [`Recorder::off`]). Cheap to
/// clone; the writer thread stops, after writing what waits, when the last clone is dropped or [`Recorder::stop`].
#[derive(Clone, Debug, Default)]
pub struct Recorder(Option<Arc<Running>>);

impl Recorder {
    /// Records nothing.
    pub fn off() -> Recorder {
        Recorder(None)
    }

    /// Starts the writer thread on the state database at `path` (its connection of its own) as `config` says.
    /// `dropped` and `errors` count what could not be kept. A database that cannot be opened now is not an error:
    /// the writer tries again at every flush, and drops (and counts) what it cannot write meanwhile.
    pub fn start(path: &Path, config: &HistoryConfig, dropped: IntCounter, errors: IntCounter) -> Recorder {
        Recorder::build(path, config, dropped, errors, true)
    }

    /// As [`Recorder::start`] without the thread: writes only at [`Recorder::flush`] and [`Recorder::stop`], so
    /// tests and benches decide when.
    pub fn manual(path: &Path, config: &HistoryConfig, dropped: IntCounter, errors: IntCounter) -> Recorder {
        Recorder::build(path, config, dropped, errors, false)
    }

    fn build(path: &Path, config: &HistoryConfig, dropped: IntCounter, errors: IntCounter, thread: bool) -> Recorder {
        if !config.enabled {
            return Recorder::off();
        }
        let inner = Arc::new(Inner {
            buffers: RwLock::default(),
            dropped,
            errors,
            stop: AtomicBool::new(false),
            wake: Mutex::new(None),
            writer: Mutex::new(Writer::new(path, config)),
        });
        let thread = if thread {
            let for_thread = Arc::clone(&inner);
            let spawned = std::thread::Builder::new().name("aegis-history".to_owned()).spawn(move || {
                *lock(&for_thread.wake) = Some(std::thread::current());
                super::writer::run(&for_thread);
            });
            match spawned {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::error!("history not recorded: cannot start its writer thread: {e}");
                    return Recorder::off();
                }
            }
        } else {
            None
        };
        Recorder(Some(Arc::new(Running { inner, thread: Mutex::new(thread) })))
    }

    /// Whether anything is recorded.
    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// The handle a service's checks are recorded with (the same buffer for the same name, across reloads). The
    /// buffer keeps `service` itself, not a copy.
    pub fn service(&self, service: &Arc<str>) -> ServiceRecorder {
        self.recorder(service, || Arc::clone(service))
    }

    /// [`Recorder::service`] for a name that may not have a buffer yet; `name` makes the one kept.
    fn recorder(&self, service: &str, name: impl FnOnce() -> Arc<str>) -> ServiceRecorder {
        let Some(running) = &self.0 else { return ServiceRecorder(None) };
        if let Some(b) = running.inner.buffer(service) {
            return ServiceRecorder(Some((b, Arc::clone(&running.inner))));
        }
        let mut buffers = running.inner.buffers.write().unwrap_or_else(|p| p.into_inner());
        // Looked up again under the write lock: another thread may have made it meanwhile.
        let b = match buffers.get(service) {
            Some(b) => Arc::clone(b),
            None => {
                let b = Arc::new(Buffer::new(name()));
                buffers.insert(Arc::clone(&b.service), Arc::clone(&b));
                b
            }
        };
        ServiceRecorder(Some((b, Arc::clone(&running.inner))))
    }

    /// Records the value of one anomaly metric of `service` at `at_ms`.
    pub fn sample(&self, service: &str, at_ms: i64, metric: &str, value: f64) {
        let Some((buffer, inner)) = self.recorder(service, || Arc::from(service)).0 else { return };
        push(&inner, &buffer.samples, MetricSample { at_ms, metric: metric.to_owned(), value });
    }

    /// Counts one line of `service` (or [`crate::store::NO_SERVICE`]) that matched `rule` at `at_ms`.
    pub fn log_match(&self, service: &str, rule: &str, at_ms: i64) {
        let Some((buffer, inner)) = self.recorder(service, || Arc::from(service)).0 else { return };
        let start = at_ms - at_ms.rem_euclid(LOG_INTERVAL_MS);
        let mut counts = lock(&buffer.counts);
        if let Some(c) = counts.iter_mut().rev().find(|c| c.at_ms == start && c.rule == rule) {
            c.count += 1;
        } else if counts.len() < BUFFER {
            counts.push(LogCount { at_ms: start, rule: rule.to_owned(), count: 1 });
        } else {
            inner.dropped.inc();
        }
    }

    /// Writes what waits now (the writer thread does it every second; tests and benches call this to know).
    pub fn flush(&self) {
        if let Some(running) = &self.0 {
            super::writer::flush(&running.inner, false);
        }
    }

    /// Stops the writer after writing everything waiting, log counts of the running interval included. Recording
    /// through this recorder and its clones stops too.
    pub fn stop(&self) {
        if let Some(running) = &self.0 {
            running.stop();
        }
    }
}

fn push<T>(inner: &Inner, buffer: &Mutex<Vec<T>>, entry: T) {
    let mut entries = lock(buffer);
    if entries.len() >= BUFFER {
        drop(entries);
        inner.dropped.inc();
        return;
    }
    // A first entry gets room for one, not the four `Vec` starts with: most services are checked about once between
    // two flushes, and the writer hands each buffer back with the room it had, so this is the memory a service keeps
    // for its waiting outcomes (32 bytes instead of 128). A buffer that needs more grows once and keeps it.
    if entries.capacity() == 0 {
        entries.reserve_exact(1);
    }
    entries.push(entry);
    let len = entries.len();
    drop(entries);
    if len == WAKE_AT {
        inner.wake();
    }
}

/// Records one service's checks; a no-op when history is off.
#[derive(Clone, Debug, Default)]
pub struct ServiceRecorder(Option<(Arc<Buffer>, Arc<Inner>)>);

impl ServiceRecorder {
    /// Records a check that ended at `at_ms`. `detail` (a failure's reason) is cut to [`MAX_DETAIL`] bytes.
    pub fn outcome(&self, at_ms: i64, success: bool, slow: bool, latency_us: u32, detail: Option<&str>) {
        let Some((buffer, inner)) = &self.0 else { return };
        let detail = detail.map(|d| Box::from(&d[..d.floor_char_boundary(MAX_DETAIL)]));
        push(inner, &buffer.outcomes, Outcome { at_ms, success, slow, latency_us, detail });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HistoryConfig;

    /// A service checked once between flushes keeps room for one waiting outcome, not `Vec`'s first four; one checked
    /// more often grows its buffer and then keeps that room. The writer hands buffers back in turn, so rooms move
    /// between services, but none grows past what the busiest one needed.
    #[test]
    fn a_buffer_keeps_room_for_what_it_needs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let counter = || IntCounter::new("c", "c").expect("counter");
        let rec = Recorder::manual(&dir.path().join("aegis.db"), &HistoryConfig::default(), counter(), counter());
        let (slow, fast) = (rec.service(&"slow".into()), rec.service(&"fast".into()));
        let room = |r: &ServiceRecorder| r.0.as_ref().map_or(0, |(b, _)| lock(&b.outcomes).capacity());
        slow.outcome(0, true, false, 1, None);
        for i in 0..5 {
            fast.outcome(i, true, false, 1, None);
        }
        assert_eq!((room(&slow), room(&fast)), (1, 8));
        for round in 1..4 {
            rec.flush();
            slow.outcome(round, true, false, 1, None);
            for i in 0..5 {
                fast.outcome(round * 10 + i, true, false, 1, None);
            }
            assert!(room(&slow) <= 8 && room(&fast) <= 8, "round {round}: {} and {}", room(&slow), room(&fast));
        }
    }
}
