//! Responses rendered at most once per [`MAX_AGE`]: `/metrics` and `/api/v1/services`, the two reads whose cost grows
//! with the number of services. However many clients poll and however often, rendering them costs the host a bounded
//! amount of CPU — and the admin thread takes the services' locks a bounded number of times a second. Prometheus
//! scrapes every few seconds at most, so an answer a fraction of a second old is as good as a fresh one; an
//! operator's own change through the API drops the cached answers, so it reads back at once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;

/// How long a rendering is served again.
pub const MAX_AGE: Duration = Duration::from_millis(250);

/// The last rendering of one response and when it was made.
#[derive(Debug, Default)]
pub struct Rendered {
    last: Mutex<Option<(Instant, Bytes)>>,
}

impl Rendered {
    /// The last rendering while it is younger than [`MAX_AGE`], else a new one from `render`. Concurrent requests
    /// for a stale answer render once; the others wait for that rendering.
    pub fn get<E>(&self, render: impl FnOnce() -> Result<Bytes, E>) -> Result<Bytes, E> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, text)) = last.as_ref()
            && at.elapsed() < MAX_AGE
        {
            return Ok(text.clone());
        }
        let text = render()?;
        *last = Some((Instant::now(), text.clone()));
        Ok(text)
    }

    /// Drops the cached answer: the next request renders.
    pub fn clear(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_once_per_max_age_and_again_after_a_clear() {
        let cache = Rendered::default();
        let mut renders = 0;
        let mut get = |cache: &Rendered| {
            cache
                .get(|| {
                    renders += 1;
                    Ok::<_, ()>(Bytes::from(renders.to_string()))
                })
                .expect("renders")
        };
        assert_eq!(get(&cache), "1");
        assert_eq!(get(&cache), "1", "served again while young");
        cache.clear();
        assert_eq!(get(&cache), "2", "rendered after a clear");
        std::thread::sleep(MAX_AGE);
        assert_eq!(get(&cache), "3", "rendered once stale");
        assert!(cache.get(|| Err::<Bytes, _>("broken")).is_ok(), "a fresh answer is served without rendering");
    }
}
