//! The epoch ticker: advances the engine's epoch every [`EPOCH_TICK`] on a thread of its own, so that a call's
//! deadline counts real time, but only while some plugin code runs under a deadline: an instantiation, an `init`, a
//! call made off the async runtime or handed off by it. Each holds a [`Ticking`] claim for as long as it runs. The
//! trip decisions of the probe loop run in place, bounded by fuel instead (see `crate::sandbox::SLICE_FUEL`), and
//! claim nothing: a host whose plugins only decide in place, or that has no plugin bound, has a ticker that sleeps
//! instead of waking a thousand times a second.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use wasmtime::Engine;

/// How often the epoch ticker advances the engine's epoch; deadlines are counted in these ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// What the ticker and the stores share.
#[derive(Debug, Default)]
struct Shared {
    /// Claims held now.
    claims: AtomicUsize,
    /// The ticker is parked, or about to: the claim that ends a time without claims wakes it.
    parked: AtomicBool,
    stop: AtomicBool,
    /// The ticker's thread, to wake for a claim; set before any claim can be made.
    thread: OnceLock<Thread>,
}

/// The ticker thread; stopped when dropped.
pub(crate) struct EpochTicker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// What a binding keeps to make stores: see [`Epoch::ticking`].
#[derive(Clone, Debug)]
pub(crate) struct Epoch(Arc<Shared>);

/// Keeps the ticker running while it lives: one per call (or instantiation) under a deadline.
#[derive(Debug)]
pub(crate) struct Ticking<'a>(&'a Shared);

impl EpochTicker {
    /// Starts the thread. Without it no deadline would ever end a plugin call, so failing to start it is an error.
    pub(crate) fn start(engine: Engine) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let state = Arc::clone(&shared);
        let thread = std::thread::Builder::new().name("aegis-epoch".into()).spawn(move || {
            while !state.stop.load(Ordering::Relaxed) {
                if state.claims.load(Ordering::SeqCst) == 0 {
                    // Said before the claims are looked at again, so a claim made meanwhile either is seen here or
                    // sees `parked` and wakes the thread (a wake-up that came first makes `park` return at once).
                    state.parked.store(true, Ordering::SeqCst);
                    if state.claims.load(Ordering::SeqCst) == 0 && !state.stop.load(Ordering::Relaxed) {
                        std::thread::park();
                    }
                    state.parked.store(false, Ordering::SeqCst);
                    continue;
                }
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })?;
        let _ = shared.thread.set(thread.thread().clone());
        Ok(EpochTicker { shared, thread: Some(thread) })
    }

    pub(crate) fn epoch(&self) -> Epoch {
        Epoch(Arc::clone(&self.shared))
    }
}

impl Epoch {
    /// A claim on the ticker for plugin code about to run under a deadline: the ticker runs (and wakes now if it
    /// slept) until every claim is dropped. A claim costs two atomic operations while the ticker is awake.
    pub(crate) fn ticking(&self) -> Ticking<'_> {
        if self.0.claims.fetch_add(1, Ordering::SeqCst) == 0
            && self.0.parked.load(Ordering::SeqCst)
            && let Some(t) = self.0.thread.get()
        {
            t.unpark();
        }
        Ticking(&self.0)
    }
}

impl Drop for Ticking<'_> {
    fn drop(&mut self) {
        self.0.claims.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{Receiver, channel};

    use super::*;

    /// `(module (func (export "spin") (loop (br 0))))`: runs until its deadline stops it.
    const SPIN: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
        0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type 0: [] -> []
        0x03, 0x02, 0x01, 0x00, // one function of type 0
        0x07, 0x08, 0x01, 0x04, b's', b'p', b'i', b'n', 0x00, 0x00, // export "spin"
        0x0a, 0x09, 0x01, 0x07, 0x00, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b, // loop { br 0 }
    ];

    /// Starts SPIN with a deadline of one tick on a thread of its own; the receiver hears when it was stopped.
    fn spin(engine: &Engine) -> Receiver<bool> {
        let mut store = wasmtime::Store::new(engine, ());
        let module = wasmtime::Module::new(engine, SPIN).unwrap();
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let spin = instance.get_typed_func::<(), ()>(&mut store, "spin").unwrap();
        store.set_epoch_deadline(1);
        let (tx, rx) = channel();
        std::thread::spawn(move || tx.send(spin.call(&mut store, ()).is_err()));
        rx
    }

    #[test]
    fn ticks_only_while_a_store_holds_a_claim() {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).unwrap();
        let ticker = EpochTicker::start(engine.clone()).unwrap();
        let (quick, long) = (Duration::from_millis(50), Duration::from_secs(5));
        let spinning = spin(&engine);
        assert!(spinning.recv_timeout(quick).is_err(), "no claim, no tick: the spin runs on");
        let epoch = ticker.epoch();
        let claim = epoch.ticking();
        assert_eq!(spinning.recv_timeout(long), Ok(true), "a claim wakes the ticker and the deadline stops the spin");
        drop(claim);
        // The ticker sees the last claim gone at its next tick and sleeps.
        std::thread::sleep(Duration::from_millis(20));
        let spinning = spin(&engine);
        assert!(spinning.recv_timeout(quick).is_err(), "asleep again once the last claim is gone");
        let _claim = epoch.ticking();
        assert_eq!(spinning.recv_timeout(long), Ok(true), "and woken again by the next");
    }
}
