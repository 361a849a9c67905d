//! `GET /metrics`, rendered at most once per [`MAX_AGE`]: however many scrapers poll and however often, rendering
//! costs the host a bounded amount of CPU. Prometheus scrapes every few seconds at most, so a rendering a fraction
//! of a second old is as good as a fresh one.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;

use crate::error::RuntimeError;
use crate::supervisor::Shared;

/// How long a rendering is served again.
pub const MAX_AGE: Duration = Duration::from_millis(250);

/// The last rendering and when it was made.
#[derive(Debug, Default)]
pub struct ScrapeCache {
    last: Mutex<Option<(Instant, Bytes)>>,
}

impl ScrapeCache {
    /// The exposition text: the last rendering while it is younger than [`MAX_AGE`], else a new one. Concurrent
    /// scrapes of a stale cache render once; the others wait for that rendering.
    pub fn get(&self, shared: &Shared) -> Result<Bytes, RuntimeError> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, text)) = last.as_ref()
            && at.elapsed() < MAX_AGE
        {
            return Ok(text.clone());
        }
        shared.metrics.sync_plugins(&shared.plugins.stats());
        let text = Bytes::from(shared.metrics.render()?);
        *last = Some((Instant::now(), text.clone()));
        Ok(text)
    }
}
