//! Running a plugin's decision on an async worker thread without holding up the worker's other tasks.
//!
//! A trip decision runs inside the breaker's recording of a probe outcome, on the tokio worker that ran the probe. A
//! plugin answers in well under a microsecond, but one that misbehaves keeps the thread until its deadline (10 ms by
//! default, as long as an operator configures): without a hand-off, every task queued on that worker, other services'
//! probes among them, would wait that long too. Handing off costs a thread wake-up or two (tens of microseconds of
//! CPU), so it is not done for every decision: the plugin host runs each decision in place for its first slice and
//! hands off only one that runs longer ([`aegis_plugin::WasmTripPredicate::off_worker`] with [`hand_off`]).

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `f`, which may block, from async code. On a worker of a multi-thread runtime the worker's queue moves to
/// another thread for the duration (`block_in_place`, about 10 µs when it does move); anywhere else (a
/// current-thread runtime, a blocking-pool thread, no runtime) `f` just runs.
pub(crate) fn run_blocking<R>(f: impl FnOnce() -> R) -> R {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// [`run_blocking`] as the plugin host's [`aegis_plugin::HandOff`].
pub(crate) fn hand_off(f: &mut dyn FnMut()) {
    run_blocking(f);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    use super::*;

    /// Holds its thread for `hold` through [`hand_off`], like a plugin running into its deadline.
    fn stuck(hold: Duration) -> Option<&'static str> {
        let mut verdict = None;
        hand_off(&mut || {
            std::thread::sleep(hold);
            verdict = Some("stuck");
        });
        verdict
    }

    /// On a one-worker runtime, a task spawned before a long decision still runs on time while the decision holds
    /// the worker's thread; without the hand-off it would wait for the whole decision.
    #[test]
    fn a_long_decision_does_not_hold_up_the_workers_other_tasks() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_time().build().unwrap();
        let ticks = Arc::new(AtomicU32::new(0));
        let (verdict, ticked_meanwhile, took) = runtime.block_on(async {
            let t = Arc::clone(&ticks);
            let ticker = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    t.fetch_add(1, Ordering::Relaxed);
                }
            });
            // Let the ticker start on the worker.
            tokio::time::sleep(Duration::from_millis(30)).await;
            let decision = tokio::spawn(async {
                let started = Instant::now();
                let verdict = stuck(Duration::from_millis(500));
                (verdict, started.elapsed())
            });
            let before = ticks.load(Ordering::Relaxed);
            let (verdict, took) = decision.await.unwrap();
            let meanwhile = ticks.load(Ordering::Relaxed) - before;
            ticker.abort();
            (verdict, meanwhile, took)
        });
        assert_eq!(verdict, Some("stuck"));
        assert!(took >= Duration::from_millis(500));
        // 500 ms at a 10 ms period is about 50 ticks; held up, there would be none at all.
        assert!(ticked_meanwhile >= 10, "the ticker ran {ticked_meanwhile} times during the decision");
    }

    #[test]
    fn runs_in_place_without_a_multi_thread_worker() {
        assert_eq!(stuck(Duration::ZERO), Some("stuck"), "no runtime");
        let current = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_eq!(current.block_on(async { stuck(Duration::ZERO) }), Some("stuck"), "current-thread runtime");
        let multi = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        let on_pool = multi.block_on(multi.spawn_blocking(|| stuck(Duration::ZERO))).unwrap();
        assert_eq!(on_pool, Some("stuck"), "blocking-pool thread");
    }
}
