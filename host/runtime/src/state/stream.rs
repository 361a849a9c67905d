//! The live stream behind `GET /api/v1/stream`: an in-process broadcast of small, already-serialised events
//! (breaker transitions from the service tasks, and the summaries the admin side makes once a second).
//!
//! Owns the channel only. Publishing must never slow the probe path: with nobody listening it is one atomic load
//! and nothing is formatted; with listeners it serialises once and the send never waits — the channel is bounded,
//! so a slow console lags, skips what it missed and reloads what it needs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::broadcast;

/// Events buffered for the slowest listener before it starts skipping.
const CAPACITY: usize = 512;

/// One event of the stream: its SSE `event:` name and its JSON `data:`.
#[derive(Debug)]
pub struct StreamEvent {
    pub kind: &'static str,
    pub data: String,
}

/// The broadcast every console listens to.
#[derive(Debug)]
pub struct Stream {
    tx: broadcast::Sender<Arc<StreamEvent>>,
    /// The admin side's summariser runs (one for all listeners).
    summarising: AtomicBool,
}

impl Default for Stream {
    fn default() -> Self {
        Stream { tx: broadcast::channel(CAPACITY).0, summarising: AtomicBool::new(false) }
    }
}

impl Stream {
    /// Sends an event to every listener; `data` is only built when someone listens.
    pub fn publish(&self, kind: &'static str, data: impl FnOnce() -> serde_json::Value) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let _ = self.tx.send(Arc::new(StreamEvent { kind, data: data().to_string() }));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StreamEvent>> {
        self.tx.subscribe()
    }

    /// Open listeners.
    pub fn listeners(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Takes the summariser's place; `false` when one runs already.
    pub fn claim_summary(&self) -> bool {
        !self.summarising.swap(true, Ordering::AcqRel)
    }

    pub fn release_summary(&self) {
        self.summarising.store(false, Ordering::Release);
    }
}
