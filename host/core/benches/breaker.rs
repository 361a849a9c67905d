//! Criterion benchmarks of `aegis-core` against the `recloser` and `failsafe` crates on the same workloads, measured
//! in the same run. Each `call_*` group is like for like: every library runs a closure through its `call` API (closure
//! in, result out, no fallback) and reads whatever clock it needs itself — aegis through [`TickedClock`], the clock an
//! embedding application injects, with its ticker thread running for the whole process (one tick a millisecond, as
//! its docs show). Groups: a closed breaker (one thread, and two threads on one breaker), and a call rejected while
//! open; `call_closed` also measures the floor under any thread-safe breaker's closed call (the closure plus one
//! atomic add; not a breaker). The `allow_*` groups measure aegis's lower-level `try_acquire` + `record` with the time
//! passed in (what the runtime uses); they have no counterpart in the other crates. Also a backoff `next_delay`, and
//! the memory footprint of a breaker with a 100-call count window.
//!
//! All three breakers trip on failures with a long open duration, and record into a 100-call window where they have
//! one.

use std::hint::black_box;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use aegis_core::{
    Backoff, BackoffSettings, Breaker, Clock as _, Jitter, MonotonicClock, Settings, TickedClock, WindowKind,
};
use criterion::{Criterion, criterion_group, criterion_main};
use failsafe::CircuitBreaker as _;
use rand::SeedableRng;
use rand::rngs::SmallRng;

const LONG: Duration = Duration::from_secs(3600);

fn aegis() -> Breaker {
    Breaker::new(Settings::new("bench").window(WindowKind::Count(100)).failure_threshold(5).reset_timeout(LONG))
}

fn recloser() -> recloser::Recloser {
    recloser::Recloser::custom().error_rate(0.5).closed_len(100).half_open_len(10).open_wait(LONG).build()
}

fn failsafe() -> impl failsafe::CircuitBreaker + Sync {
    let policy = failsafe::failure_policy::consecutive_failures(5, failsafe::backoff::constant(LONG));
    failsafe::Config::new().failure_policy(policy).build()
}

/// The clock aegis's `call` cases use: a [`TickedClock`] whose ticker thread (started on first use, running until the
/// process exits) ticks every millisecond and promises a lag under 50 ms.
fn clock() -> &'static TickedClock {
    static CLOCK: OnceLock<TickedClock> = OnceLock::new();
    CLOCK.get_or_init(|| {
        let clock = TickedClock::new(Duration::from_millis(50));
        let ticker = clock.clone();
        thread::spawn(move || {
            loop {
                ticker.tick();
                thread::sleep(Duration::from_millis(1));
            }
        });
        clock
    })
}

#[inline]
fn aegis_allow_record(b: &Breaker, now: Instant) {
    if let Ok(p) = b.try_acquire(now) {
        b.record(now, p, black_box(true), Duration::from_micros(50));
    }
}

fn report_sizes() {
    let b = aegis();
    let inline = std::mem::size_of::<Breaker>();
    println!(
        "size: aegis Breaker with a 100-call count window = {inline} B inline + {} B heap = {} B \
         (recloser::Recloser inline = {} B, plus its ring buffer on the heap)",
        b.heap_bytes(),
        inline + b.heap_bytes(),
        std::mem::size_of::<recloser::Recloser>()
    );
}

fn call_closed(c: &mut Criterion) {
    report_sizes();
    let mut g = c.benchmark_group("call_closed");
    let clock = clock();
    let a = aegis();
    g.bench_function("aegis", |b| b.iter(|| black_box(a.call(clock, || Ok::<_, ()>(black_box(1))))));
    let r = recloser();
    g.bench_function("recloser", |b| b.iter(|| black_box(r.call(|| Ok::<_, ()>(black_box(1))))));
    let f = failsafe();
    g.bench_function("failsafe", |b| b.iter(|| black_box(f.call(|| Ok::<_, ()>(black_box(1))))));
    // Not a breaker: the least a thread-safe breaker can spend on a closed call, the closure plus one atomic
    // read-modify-write counting its outcome (every library above pays at least that).
    let outcomes = AtomicU64::new(0);
    g.bench_function("floor_closure_and_one_atomic_add", |b| {
        b.iter(|| {
            let r = Ok::<_, ()>(black_box(1));
            outcomes.fetch_add(1, Ordering::Relaxed);
            black_box(r)
        })
    });
    // With a slow-call threshold aegis must time the call: two precise clock reads.
    let timed = Breaker::new(
        Settings::new("bench")
            .window(WindowKind::Count(100))
            .failure_threshold(5)
            .reset_timeout(LONG)
            .slow_call_duration(Some(Duration::from_secs(1))),
    );
    g.bench_function("aegis_timed_slow_call_threshold", |b| {
        b.iter(|| black_box(timed.call(clock, || Ok::<_, ()>(black_box(1)))))
    });
    g.finish();
}

fn allow_record_closed(c: &mut Criterion) {
    let mut g = c.benchmark_group("allow_record_closed");
    let now = Instant::now();
    let a = aegis();
    g.bench_function("aegis_time_passed_in", |b| b.iter(|| aegis_allow_record(black_box(&a), now)));
    g.finish();
}

/// Both threads run `iters` operations concurrently; the reported time is per operation per thread.
fn two_threads(iters: u64, op: impl Fn() + Sync) -> Duration {
    let start = Instant::now();
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..iters {
                    op();
                }
            });
        }
    });
    start.elapsed()
}

fn call_2_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("call_2_threads");
    let clock = clock();
    let a = aegis();
    g.bench_function("aegis", |b| {
        b.iter_custom(|n| two_threads(n, || drop(black_box(a.call(clock, || Ok::<_, ()>(black_box(1)))))))
    });
    let r = recloser();
    g.bench_function("recloser", |b| {
        b.iter_custom(|n| two_threads(n, || drop(black_box(r.call(|| Ok::<_, ()>(black_box(1)))))))
    });
    let f = failsafe();
    g.bench_function("failsafe", |b| {
        b.iter_custom(|n| two_threads(n, || drop(black_box(f.call(|| Ok::<_, ()>(black_box(1)))))))
    });
    g.finish();
    let mut g = c.benchmark_group("allow_record_2_threads");
    let now = Instant::now();
    let a = aegis();
    g.bench_function("aegis_time_passed_in", |b| b.iter_custom(|n| two_threads(n, || aegis_allow_record(&a, now))));
    g.finish();
}

fn open_aegis() -> Breaker {
    let now = Instant::now();
    let a = aegis();
    for _ in 0..5 {
        if let Ok(p) = a.try_acquire(now) {
            a.record(now, p, false, Duration::ZERO);
        }
    }
    assert!(a.try_acquire(now).is_err(), "aegis breaker must be open");
    a
}

fn call_open_rejected(c: &mut Criterion) {
    let mut g = c.benchmark_group("call_open_rejected");
    let clock = clock();
    let a = open_aegis();
    g.bench_function("aegis", |b| b.iter(|| black_box(a.call(clock, || Ok::<_, ()>(black_box(1))))));
    // The same through the other system clocks: the kernel's coarse clock, and a plain `Instant::now`.
    let coarse = MonotonicClock::new();
    g.bench_function("aegis_monotonic_clock", |b| b.iter(|| black_box(a.call(&coarse, || Ok::<_, ()>(black_box(1))))));
    let precise = Instant::now;
    g.bench_function("aegis_instant_now_clock", |b| {
        b.iter(|| black_box(a.call(&precise, || Ok::<_, ()>(black_box(1)))))
    });
    let r = recloser();
    // recloser computes a rate only once its ring has wrapped, so fill it more than once.
    for _ in 0..250 {
        let _ = r.call(|| Err::<(), _>(()));
    }
    assert!(matches!(r.call(|| Ok::<_, ()>(())), Err(recloser::Error::Rejected)), "recloser must be open");
    g.bench_function("recloser", |b| b.iter(|| black_box(r.call(|| Ok::<_, ()>(black_box(1))))));
    let f = failsafe();
    for _ in 0..5 {
        let _ = f.call(|| Err::<(), _>(()));
    }
    assert!(!f.is_call_permitted(), "failsafe must be open");
    g.bench_function("failsafe", |b| b.iter(|| black_box(f.call(|| Ok::<_, ()>(black_box(1))))));
    g.finish();
    let mut g = c.benchmark_group("allow_open_rejected");
    let now = Instant::now();
    g.bench_function("aegis_time_passed_in", |b| b.iter(|| black_box(a.try_acquire(black_box(now)))));
    g.finish();
    // The floor under a rejection's time check: each clock's cheap bounds from a kept origin (as an open breaker reads
    // them), and a precise read. The bounds are summed before `black_box`: a pair written as two words and read back as
    // one stalls store forwarding, which cost more than the read itself.
    let mut g = c.benchmark_group("clock_read");
    let origin = coarse.coarse_origin_ns(now).unwrap_or(1);
    let sum = |(at_least, slack): (u64, u64)| at_least.wrapping_add(slack);
    g.bench_function("ticked_clock_bounds", |b| {
        b.iter(|| black_box(sum(clock.coarse_elapsed_ns_bounds(black_box(origin)))))
    });
    g.bench_function("monotonic_clock_bounds", |b| {
        b.iter(|| black_box(sum(coarse.coarse_elapsed_ns_bounds(black_box(origin)))))
    });
    g.bench_function("instant_now", |b| b.iter(|| black_box(Instant::now())));
    g.finish();
}

fn backoff_next_delay(c: &mut Criterion) {
    let mut g = c.benchmark_group("backoff_next_delay");
    let now = Instant::now();
    // failsafe's jittered backoffs insist on a start of at least one second.
    let (initial, max) = (Duration::from_secs(1), Duration::from_secs(60));
    for jitter in [Jitter::None, Jitter::Equal, Jitter::Full, Jitter::Decorrelated] {
        let mut backoff = Backoff::new(BackoffSettings { initial, max, multiplier: 2.0, jitter, reset_after: None });
        let mut rng = SmallRng::seed_from_u64(1);
        g.bench_function(format!("aegis_{jitter}"), |b| {
            b.iter(|| {
                // Keep the attempt counter in the growing part, as a real retry loop would be.
                if backoff.attempt() >= 12 {
                    backoff.reset();
                }
                black_box(backoff.next_delay(now, &mut rng))
            })
        });
    }
    let mut fs = failsafe::backoff::equal_jittered(initial, max);
    let mut attempt = 0;
    g.bench_function("failsafe_equal", |b| {
        b.iter(|| {
            // Same restart cadence as the aegis loop above.
            attempt += 1;
            if attempt >= 12 {
                attempt = 0;
                fs = failsafe::backoff::equal_jittered(initial, max);
            }
            black_box(fs.next())
        })
    });
    // recloser has no backoff API, so there is no recloser baseline for this workload.
    g.finish();
}

criterion_group!(benches, call_closed, allow_record_closed, call_2_threads, call_open_rejected, backoff_next_delay);
criterion_main!(benches);
