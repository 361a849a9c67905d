//! When each service is checked: one scheduler task keeps every running service's next check time in a heap and, as
//! each comes due, starts a task for that one check (and, between checks, one to hand over breaker transitions). A
//! service costs a heap entry and a small slot between checks, instead of a task and a ticker of its own (~0.5 KiB a
//! service before, most of a service's memory after its handle).
//!
//! The timing is a tokio interval's with [`tokio::time::MissedTickBehavior::Delay`]: the first check comes after a
//! random phase within the interval (thousands of services spread over it instead of all probed at once), the next
//! one an interval after the previous one was due however long the check took, and a check that starts late moves
//! the schedule on (the next comes an interval after it). A service's checks never overlap: the next is scheduled
//! when the previous one ends. What a check and a transition do is [`super::probe_loop`]'s; this file decides only
//! when, and waits for a stopping service's tasks.

use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU32, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::stop::Stop;
use super::transitions::Watcher;

/// A check started later than this after it was due moves the service's schedule on (tokio's interval allows as much).
const LATE: Duration = Duration::from_millis(5);

/// What the scheduler runs for one service (the supervisor's is [`super::probe_loop::ServiceJob`]).
pub(super) trait Job: Send + Sync + 'static {
    fn interval(&self) -> Duration;
    /// One check; the next is scheduled when it ends.
    fn check(&self) -> impl Future<Output = ()> + Send;
    /// Hands over what came between checks (breaker transitions), when the job's watcher was told.
    fn between_checks(&self);
}

/// The scheduler task and its queue.
pub(super) struct Scheduler<J: Job> {
    inner: Arc<Inner<J>>,
    task: JoinHandle<()>,
}

struct Inner<J: Job> {
    queue: Mutex<Queue<J>>,
    wake: Notify,
}

struct Queue<J: Job> {
    due: BinaryHeap<Due<J>>,
    /// Services whose breaker transitions wait for a task.
    waiting: Vec<Arc<Slot<J>>>,
    /// When the scheduler task wakes by itself next; `None` while it waits to be woken.
    sleeping_until: Option<Instant>,
    closed: bool,
}

/// A service's next check; the heap's top is the earliest.
struct Due<J: Job> {
    at: Instant,
    slot: Arc<Slot<J>>,
}

impl<J: Job> PartialEq for Due<J> {
    fn eq(&self, other: &Due<J>) -> bool {
        self.at == other.at
    }
}

impl<J: Job> Eq for Due<J> {}

impl<J: Job> PartialOrd for Due<J> {
    fn partial_cmp(&self, other: &Due<J>) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<J: Job> Ord for Due<J> {
    fn cmp(&self, other: &Due<J>) -> std::cmp::Ordering {
        // Reversed: `BinaryHeap` is a max-heap.
        other.at.cmp(&self.at)
    }
}

/// A running service as the scheduler knows it.
pub(super) struct Slot<J: Job> {
    job: J,
    stop: Stop,
    scheduler: Weak<Inner<J>>,
    /// Tasks of this service running now: its check, a transitions hand-over.
    busy: AtomicU32,
    /// Woken when `busy` drops to zero.
    idle: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<J: Job> Scheduler<J> {
    pub(super) fn start() -> Scheduler<J> {
        let queue = Queue { due: BinaryHeap::new(), waiting: Vec::new(), sleeping_until: None, closed: false };
        let inner = Arc::new(Inner { queue: Mutex::new(queue), wake: Notify::new() });
        let task = tokio::spawn(run(Arc::clone(&inner)));
        Scheduler { inner, task }
    }

    /// Schedules `job`'s checks, the first after a random phase within its interval. Flipping `stop` ends them (see
    /// [`Slot::finished`]). The slot is the [`Watcher`] that starts [`Job::between_checks`].
    pub(super) fn add(&self, job: J, stop: Stop) -> Arc<Slot<J>> {
        let phase = {
            use rand::Rng;
            let nanos = u64::try_from(job.interval().as_nanos()).unwrap_or(u64::MAX);
            Duration::from_nanos(SmallRng::from_os_rng().random_range(0..=nanos))
        };
        self.add_at(job, stop, Instant::now() + phase)
    }

    fn add_at(&self, job: J, stop: Stop, first: Instant) -> Arc<Slot<J>> {
        let slot = Arc::new(Slot {
            job,
            stop,
            scheduler: Arc::downgrade(&self.inner),
            busy: AtomicU32::new(0),
            idle: Notify::new(),
        });
        schedule(&self.inner, first, Arc::clone(&slot));
        slot
    }

    /// Lets go of the stopped services now instead of when each would have been due next (a removed service with an
    /// interval of an hour would otherwise keep its handle for up to an hour).
    pub(super) fn forget_stopped(&self) {
        lock(&self.inner.queue).due.retain(|d| !d.slot.stop.is_stopped());
    }

    /// Ends the scheduler task; no check starts after this returns (checks running go on to their end).
    pub(super) async fn close(self) {
        {
            let mut queue = lock(&self.inner.queue);
            queue.closed = true;
            queue.due.clear();
            queue.waiting.clear();
        }
        self.inner.wake.notify_one();
        let _ = self.task.await;
    }
}

impl<J: Job> Slot<J> {
    pub(super) fn job(&self) -> &J {
        &self.job
    }

    /// Counts a task of this service in; `false` (and not counted) once the service is stopping.
    fn enter(&self) -> bool {
        self.busy.fetch_add(1, Ordering::SeqCst);
        // Pairs with the fence in `finished`: either this sees the stop, or `finished` sees this task.
        fence(Ordering::SeqCst);
        if self.stop.is_stopped() {
            self.leave();
            return false;
        }
        true
    }

    fn leave(&self) {
        if self.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Resolves when the service's tasks have ended, once its stop switch is flipped: a check in flight runs to its
    /// end, none starts after.
    pub(super) async fn finished(&self) {
        fence(Ordering::SeqCst);
        loop {
            let idle = self.idle.notified();
            let mut idle = std::pin::pin!(idle);
            // Registered before `busy` is read, so a task ending in between is not missed.
            idle.as_mut().enable();
            if self.busy.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl<J: Job> std::fmt::Debug for Slot<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").field("busy", &self.busy).finish_non_exhaustive()
    }
}

impl<J: Job> Watcher for Slot<J> {
    fn transitions_waiting(self: Arc<Self>) {
        let Some(inner) = self.scheduler.upgrade() else { return };
        let mut queue = lock(&inner.queue);
        if queue.closed {
            return;
        }
        queue.waiting.push(self);
        drop(queue);
        inner.wake.notify_one();
    }
}

/// Puts `slot`'s next check at `at`, waking the scheduler task if that is sooner than it would wake.
fn schedule<J: Job>(inner: &Inner<J>, at: Instant, slot: Arc<Slot<J>>) {
    let mut queue = lock(&inner.queue);
    if queue.closed {
        return;
    }
    queue.due.push(Due { at, slot });
    let sooner = queue.sleeping_until.is_none_or(|until| at < until);
    if sooner {
        queue.sleeping_until = Some(at);
    }
    drop(queue);
    if sooner {
        inner.wake.notify_one();
    }
}

/// The scheduler task: starts what is due, then sleeps until the next is due or it is woken.
async fn run<J: Job>(inner: Arc<Inner<J>>) {
    let sleep = tokio::time::sleep_until(Instant::now());
    let mut sleep = std::pin::pin!(sleep);
    let mut ready = Vec::new();
    loop {
        let woken = inner.wake.notified();
        let mut woken = std::pin::pin!(woken);
        // Registered before the queue is read: a wake-up meanwhile is kept for the wait below.
        woken.as_mut().enable();
        let now = Instant::now();
        let (waiting, next) = {
            let mut queue = lock(&inner.queue);
            if queue.closed {
                return;
            }
            while let Some(due) = queue.due.peek_mut() {
                if due.at > now {
                    break;
                }
                ready.push(std::collections::binary_heap::PeekMut::pop(due));
            }
            let next = queue.due.peek().map(|d| d.at);
            queue.sleeping_until = next;
            (std::mem::take(&mut queue.waiting), next)
        };
        for Due { at, slot } in ready.drain(..) {
            start_check(&inner, slot, at, now);
        }
        for slot in waiting {
            start_hand_over(slot);
        }
        match next {
            Some(at) => {
                sleep.as_mut().reset(at);
                tokio::select! {
                    () = &mut woken => {}
                    () = &mut sleep => {}
                }
            }
            None => woken.await,
        }
    }
}

/// When the check after one due at `due` and started at `now` is due.
fn next_due(due: Instant, now: Instant, interval: Duration) -> Instant {
    if now.saturating_duration_since(due) > LATE { now + interval } else { due + interval }
}

/// Starts `slot`'s check that was due at `due`; when it ends, the next one is scheduled.
fn start_check<J: Job>(inner: &Arc<Inner<J>>, slot: Arc<Slot<J>>, due: Instant, now: Instant) {
    if !slot.enter() {
        // Stopped: it leaves the schedule.
        return;
    }
    let next = next_due(due, now, slot.job.interval());
    let inner = Arc::clone(inner);
    tokio::spawn(async move {
        // Boxed here, where it starts, rather than moved into the task: a check's future is several KiB (an HTTP
        // request), and a spawn copies its future once more than a box does.
        Box::pin(slot.job.check()).await;
        slot.leave();
        if !slot.stop.is_stopped() {
            schedule(&inner, next, slot);
        }
    });
}

/// Starts a task handing over `slot`'s waiting transitions (they came between its checks).
fn start_hand_over<J: Job>(slot: Arc<Slot<J>>) {
    if !slot.enter() {
        return;
    }
    tokio::spawn(async move {
        slot.job.between_checks();
        slot.leave();
    });
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use tokio::sync::{Semaphore, mpsc};

    use super::*;
    use crate::supervisor::stop::StopSwitch;

    /// Records when its checks start and end; a check waits for a permit of `gate` when there is one.
    struct Recording {
        interval: Duration,
        check_takes: Duration,
        starts: mpsc::UnboundedSender<(Instant, Instant)>,
        gate: Option<Arc<Semaphore>>,
        running: AtomicBool,
        between: AtomicU32,
    }

    impl Recording {
        fn new(interval_ms: u64, check_ms: u64) -> (Recording, mpsc::UnboundedReceiver<(Instant, Instant)>) {
            let (starts, rx) = mpsc::unbounded_channel();
            let job = Recording {
                interval: Duration::from_millis(interval_ms),
                check_takes: Duration::from_millis(check_ms),
                starts,
                gate: None,
                running: AtomicBool::new(false),
                between: AtomicU32::new(0),
            };
            (job, rx)
        }
    }

    impl Job for Recording {
        fn interval(&self) -> Duration {
            self.interval
        }

        async fn check(&self) {
            assert!(!self.running.swap(true, Ordering::SeqCst), "two checks of one service at once");
            let start = Instant::now();
            if let Some(gate) = &self.gate {
                gate.acquire().await.expect("gate").forget();
            }
            tokio::time::sleep(self.check_takes).await;
            self.running.store(false, Ordering::SeqCst);
            let _ = self.starts.send((start, Instant::now()));
        }

        fn between_checks(&self) {
            self.between.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<(Instant, Instant)>) -> Vec<(Instant, Instant)> {
        let mut got = Vec::new();
        while let Ok(c) = rx.try_recv() {
            got.push(c);
        }
        got
    }

    #[test]
    fn a_late_check_moves_the_schedule_on_as_a_delaying_interval_does() {
        let due = Instant::now();
        let every = Duration::from_secs(1);
        assert_eq!(next_due(due, due, every), due + every);
        assert_eq!(next_due(due, due + LATE, every), due + every, "within the allowance: on the grid");
        let late = due + Duration::from_millis(300);
        assert_eq!(next_due(due, late, every), late + every);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checks_come_an_interval_apart_and_never_overlap_even_when_one_is_slow() {
        let scheduler = Scheduler::start();
        let switch = StopSwitch::default();
        let (job, mut starts) = Recording::new(40, 2);
        let start = Instant::now();
        let slot = scheduler.add_at(job, switch.listener(), start);
        tokio::time::sleep(Duration::from_millis(400)).await;
        switch.stop();
        slot.finished().await;
        let checks = drain(&mut starts);
        assert!(checks.len() >= 4, "{} checks in 400 ms at 40 ms", checks.len());
        assert!(checks.len() <= 11, "{} checks in 400 ms at 40 ms", checks.len());
        for pair in checks.windows(2) {
            assert!(pair[1].0 >= pair[0].1, "a check started before the previous one ended");
            // On the grid: never sooner than an interval after the previous one was due (its start, at the earliest).
            assert!(pair[1].0 - pair[0].0 >= Duration::from_millis(39), "{:?}", pair[1].0 - pair[0].0);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(drain(&mut starts).is_empty(), "checked after its stop");

        // A check slower than the interval: the next one follows it, never beside it.
        let switch = StopSwitch::default();
        let (job, mut starts) = Recording::new(20, 70);
        let slot = scheduler.add_at(job, switch.listener(), Instant::now());
        tokio::time::sleep(Duration::from_millis(400)).await;
        switch.stop();
        slot.finished().await;
        let checks = drain(&mut starts);
        assert!(checks.len() >= 2, "{} slow checks", checks.len());
        for pair in checks.windows(2) {
            assert!(pair[1].0 >= pair[0].1, "a check started before the previous one ended");
        }
        scheduler.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stop_waits_for_the_check_in_flight_and_none_starts_after() {
        let scheduler = Scheduler::start();
        let switch = StopSwitch::default();
        let (mut job, mut ends) = Recording::new(10, 0);
        let gate = Arc::new(Semaphore::new(0));
        job.gate = Some(Arc::clone(&gate));
        let slot = scheduler.add_at(job, switch.listener(), Instant::now());
        // The first check is held at the gate.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !slot.job().running.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the first check never started");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        switch.stop();
        let finished = tokio::spawn({
            let slot = Arc::clone(&slot);
            async move { slot.finished().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!finished.is_finished(), "the stop did not wait for the check in flight");
        gate.add_permits(100);
        tokio::time::timeout(Duration::from_secs(5), finished).await.expect("stopped").expect("task");
        assert_eq!(drain(&mut ends).len(), 1, "the check in flight ended");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(drain(&mut ends).is_empty(), "checked after its stop");
        // Transitions told after the stop are not handed over.
        Arc::clone(&slot).transitions_waiting();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(slot.job().between.load(Ordering::SeqCst), 0);
        scheduler.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_told_watcher_hands_over_between_checks_and_many_services_share_one_task() {
        let scheduler = Scheduler::start();
        let switch = StopSwitch::default();
        let mut services = Vec::new();
        for _ in 0..500 {
            let (job, rx) = Recording::new(25, 0);
            services.push((scheduler.add(job, switch.listener()), rx));
        }
        let (slot, _) = &services[0];
        Arc::clone(slot).transitions_waiting();
        let deadline = Instant::now() + Duration::from_secs(5);
        while slot.job().between.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "the hand-over never ran");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        scheduler.close().await;
        switch.stop();
        for (slot, rx) in &mut services {
            slot.finished().await;
            let checks = drain(rx);
            assert!(checks.len() >= 3, "{} checks in 300 ms at 25 ms", checks.len());
        }
        // Closed: nothing is checked any more.
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(services.iter_mut().all(|(_, rx)| drain(rx).is_empty()));
    }
}
