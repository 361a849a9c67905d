//! Multi-threaded stress: no lost updates in counts or manager counters, and the half-open permit limit holds under
//! contention.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use aegis_core::{Breaker, Force, Manager, ManagerConfig, Never, Rejected, Settings, State};

const THREADS: usize = 4;
const OPS: usize = 20_000;

#[test]
fn concurrent_records_are_not_lost() {
    let b = Arc::new(Breaker::new(
        Settings::new("stress").trip_predicate(Arc::new(Never)).window(aegis_core::WindowKind::Count(100)),
    ));
    let t0 = Instant::now();
    thread::scope(|s| {
        for t in 0..THREADS {
            let b = &b;
            s.spawn(move || {
                for i in 0..OPS {
                    let p = b.try_acquire(t0).expect("closed breaker admits");
                    // Every third call fails, every fifth is slow: the totals below must come out exact.
                    b.record(t0, p, (i + t) % 3 != 0, Duration::from_millis(1));
                }
            });
        }
    });
    let c = b.counts();
    let total = (THREADS * OPS) as u32;
    let failures: u32 = (0..THREADS).map(|t| (0..OPS).filter(|i| (i + t) % 3 == 0).count() as u32).sum();
    assert_eq!(c.requests, total);
    assert_eq!(c.total_failures, failures);
    assert_eq!(c.total_successes, total - failures);
}

#[test]
fn half_open_limit_holds_under_contention() {
    let max = 3;
    let b = Arc::new(Breaker::new(
        Settings::new("ho")
            .failure_threshold(1)
            .max_requests(max)
            .success_threshold(1_000_000)
            .reset_timeout(Duration::ZERO),
    ));
    let t0 = Instant::now();
    let p = b.try_acquire(t0).unwrap();
    b.record(t0, p, false, Duration::ZERO);
    assert_eq!(b.state(t0), State::HalfOpen);
    let in_use = AtomicU32::new(0);
    let peak = AtomicU32::new(0);
    let admitted = AtomicUsize::new(0);
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..OPS {
                    match b.try_acquire(t0) {
                        Ok(p) => {
                            let now = in_use.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            admitted.fetch_add(1, Ordering::Relaxed);
                            thread::yield_now();
                            in_use.fetch_sub(1, Ordering::SeqCst);
                            b.record(t0, p, true, Duration::ZERO);
                        }
                        Err(r) => assert_eq!(r, Rejected::TooManyRequests),
                    }
                }
            });
        }
    });
    assert!(peak.load(Ordering::SeqCst) <= max, "peak {}", peak.load(Ordering::SeqCst));
    assert_eq!(b.current_state(), State::HalfOpen);
    assert_eq!(b.counts().total_successes as usize, admitted.load(Ordering::Relaxed));
    assert_eq!(b.half_open_in_flight(), 0);
}

#[test]
fn trip_and_recovery_race_stays_consistent() {
    let b = Arc::new(Breaker::new(
        Settings::new("race").failure_threshold(2).max_requests(2).reset_timeout(Duration::from_micros(50)),
    ));
    let start = Instant::now();
    thread::scope(|s| {
        for t in 0..THREADS {
            let b = &b;
            s.spawn(move || {
                for i in 0..OPS {
                    let now = Instant::now().max(start);
                    if let Ok(p) = b.try_acquire(now) {
                        b.record(now, p, (i * 7 + t) % 4 != 0, Duration::ZERO);
                    }
                    let c = b.counts();
                    // Counts are read under the same lock they are written under, so they are always consistent.
                    assert_eq!(c.requests, c.total_successes + c.total_failures);
                    assert!(b.half_open_in_flight() <= 2);
                }
            });
        }
    });
}

#[test]
fn manager_counters_are_not_lost() {
    let m = Arc::new(Manager::new(ManagerConfig::from_yaml("defaults:\n  failure_threshold: 1000000\n").unwrap()));
    let t0 = Instant::now();
    let names = ["a", "b", "c"];
    thread::scope(|s| {
        for t in 0..THREADS {
            let m = &m;
            s.spawn(move || {
                for i in 0..OPS / 4 {
                    let name = names[(i + t) % names.len()];
                    if let Ok(p) = m.try_acquire(name, t0) {
                        m.record(name, t0, p, i % 2 == 0, Duration::ZERO);
                    }
                }
            });
        }
    });
    let total: u64 = m.all_metrics(t0).values().map(|x| x.totals.total).sum();
    let outcomes: u64 = m.all_metrics(t0).values().map(|x| x.totals.success + x.totals.failed).sum();
    assert_eq!(total, (THREADS * (OPS / 4)) as u64);
    assert_eq!(outcomes, total);
    assert_eq!(m.names().len(), 3, "racing creation yields one breaker per name");
}

#[test]
fn manual_control_races_with_the_fast_paths() {
    // Recorders and rejecters on the lock-free paths while another thread keeps forcing and resetting: no deadlock,
    // no panic, and every snapshot of the counts stays internally consistent.
    let b = Breaker::new(Settings::new("control").failure_threshold(3).reset_timeout(Duration::from_secs(3600)));
    let t0 = Instant::now();
    let stop = std::sync::atomic::AtomicBool::new(false);
    thread::scope(|s| {
        for t in 0..THREADS - 1 {
            let (b, stop) = (&b, &stop);
            s.spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(p) = b.try_acquire(t0) {
                        b.record(t0, p, !(i + t).is_multiple_of(4), Duration::from_micros(10));
                    }
                    let c = b.counts();
                    assert_eq!(c.requests, c.total_successes + c.total_failures);
                    assert!(c.consecutive_successes == 0 || c.consecutive_failures == 0);
                    i += 1;
                }
            });
        }
        let (b, stop) = (&b, &stop);
        s.spawn(move || {
            for i in 0..2_000 {
                match i % 4 {
                    0 => b.force(t0, Force::Open),
                    1 => b.reset(t0),
                    2 => b.force(t0, Force::Closed),
                    _ => b.force(t0, Force::Auto),
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
    });
    b.reset(t0);
    assert_eq!(b.counts(), aegis_core::Counts::default());
    assert_eq!(b.try_acquire(t0).map(|p| p.generation()), Ok(b.generation()));
}
