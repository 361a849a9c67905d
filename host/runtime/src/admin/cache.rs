//! Responses rendered at most once per [`MAX_AGE`]: `/metrics` and `/api/v1/services`, the two reads whose cost grows
//! with the number of services. However many clients poll and however often, rendering them costs the host a bounded
//! amount of CPU — and the admin thread takes the services' locks a bounded number of times a second. Prometheus
//! scrapes every few seconds at most, so an answer a fraction of a second old is as good as a fresh one; an
//! operator's own change through the API drops the cached answers, so it reads back at once. A rendering's gzip
//! form is made at most once too, when the first client that accepts it asks.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;

use super::encoding::{Coding, gzip};

/// How long a rendering is served again.
pub const MAX_AGE: Duration = Duration::from_millis(250);

/// The last rendering of one response and when it was made.
#[derive(Debug, Default)]
pub struct Rendered {
    last: Mutex<Option<Rendering>>,
}

#[derive(Debug)]
struct Rendering {
    at: Instant,
    plain: Bytes,
    gzip: Option<Bytes>,
}

impl Rendered {
    /// The last rendering while it is younger than [`MAX_AGE`], else a new one from `render`, in `coding`. Concurrent
    /// requests for a stale answer render once; the others wait for that rendering.
    pub fn get<E>(&self, coding: Coding, render: impl FnOnce() -> Result<Bytes, E>) -> Result<Bytes, E> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let rendering = match last.take() {
            Some(r) if r.at.elapsed() < MAX_AGE => last.insert(r),
            _ => last.insert(Rendering { plain: render()?, at: Instant::now(), gzip: None }),
        };
        Ok(match coding {
            Coding::Identity => rendering.plain.clone(),
            Coding::Gzip => rendering.gzip.get_or_insert_with(|| gzip(&rendering.plain)).clone(),
        })
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
                .get(Coding::Identity, || {
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
        assert!(
            cache.get(Coding::Identity, || Err::<Bytes, _>("broken")).is_ok(),
            "a fresh answer is served without rendering"
        );
        let packed = cache.get(Coding::Gzip, || Err::<Bytes, _>("broken")).expect("compressed from the cache");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&packed[..]), &mut text).expect("gunzip");
        assert_eq!(text, "3", "the gzip form is the cached rendering's");
    }
}
