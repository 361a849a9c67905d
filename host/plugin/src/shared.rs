//! Instances that many bindings share: the WIT `trip-predicates` resource. A trip-predicate plugin that exports it
//! (every plugin built with the SDK does) is bound with a `predicate` per service in an instance of a shard of at
//! most [`SEATS`] services, instead of an instance per service. A bound service then costs its predicate's state in
//! the shard's linear memory (hundreds of bytes for `window-trip`) instead of an instance (~45 KiB: linear memory,
//! store, WASI context and VM contexts), and the shards' few instances stay warm in the caches.
//!
//! Owns the shards and the seats bindings hold in them; [`crate::binding`] decides when to call. A shard's instance
//! is replaced after a trap or a missed deadline like a binding's own instance, and every predicate in it goes with
//! it: each binding opens its predicate again at its next call (the new predicate's window copy is empty, so the
//! plugin asks for the whole window once). A predicate whose binding went away is dropped in the guest at the
//! shard's next call.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use wasmtime::Store;
use wasmtime::component::ResourceAny;

use crate::bindings::trip_shared;
use crate::bindings::trip_shared::TripPredicatesPluginPre;
use crate::sandbox::{FIRST_SLICE_TICKS, SLICE_FUEL, StoreData};

/// Services that share one instance. The sandbox's memory cap (16 MiB by default) holds for the whole shard, so this
/// leaves each service a quarter of a MiB of plugin state; a trap resets at most this many services' predicates;
/// and two bindings contend for an instance only when they are in the same shard.
pub const SEATS: usize = 64;

/// Tries at the shard's lock before a call made in place on an async worker gives up and is handed off instead of
/// waiting: a decision holds the lock for about a microsecond, a runaway one for its whole slice.
const LOCK_SPINS: u32 = 64;

/// The shared form of one loaded plugin version: its pre-linked component and its shards, live bindings apart from
/// shadow ones (a failing shadow never resets the live predicates).
pub(crate) struct SharedPool {
    pub(crate) pre: TripPredicatesPluginPre<StoreData>,
    live: Mutex<Vec<Arc<Shard>>>,
    shadow: Mutex<Vec<Arc<Shard>>>,
}

impl SharedPool {
    pub(crate) fn new(pre: TripPredicatesPluginPre<StoreData>) -> Self {
        SharedPool { pre, live: Mutex::default(), shadow: Mutex::default() }
    }

    /// A seat in the first shard with room (a new shard if none has), for a live or a shadow binding.
    pub(crate) fn take_seat(&self, shadow: bool) -> Seat {
        let mut shards = if shadow { &self.shadow } else { &self.live }.lock().unwrap_or_else(|p| p.into_inner());
        let shard = match shards.iter().find(|s| s.seats.load(Ordering::Relaxed) < SEATS) {
            Some(shard) => Arc::clone(shard),
            None => {
                let shard = Arc::new(Shard::default());
                shards.push(Arc::clone(&shard));
                shard
            }
        };
        // Under the pool's lock, so two bindings cannot both take a shard's last seat.
        shard.seats.fetch_add(1, Ordering::Relaxed);
        Seat { shard, predicate: Cell::new(None) }
    }

    /// The seats taken in each live (or shadow) shard made so far.
    pub(crate) fn occupancy(&self, shadow: bool) -> Vec<usize> {
        let shards = if shadow { &self.shadow } else { &self.live }.lock().unwrap_or_else(|p| p.into_inner());
        shards.iter().map(|s| s.seats.load(Ordering::Relaxed)).collect()
    }
}

/// Up to [`SEATS`] bindings and the instance they share.
#[derive(Default)]
pub(crate) struct Shard {
    seats: AtomicUsize,
    state: Mutex<ShardState>,
    /// Predicates whose bindings went away, with the generation they were opened in: dropped in the guest at the
    /// shard's next call. Never held during a call, so a binding that goes away does not wait for one.
    orphans: Mutex<Vec<(u64, ResourceAny)>>,
}

/// The shard's instance, if it has one now, and which one it is.
#[derive(Default)]
pub(crate) struct ShardState {
    pub(crate) instance: Option<SharedInstance>,
    /// Bumped whenever the instance is replaced: a predicate opened in another generation no longer exists.
    generation: u64,
}

pub(crate) struct SharedInstance {
    pub(crate) store: Store<StoreData>,
    pub(crate) world: trip_shared::TripPredicatesPlugin,
}

impl ShardState {
    /// Drops the instance, and with it every predicate in it (after a trap, a missed deadline or a refusal).
    pub(crate) fn discard(&mut self) {
        self.instance = None;
        self.generation += 1;
    }
}

/// A binding's place in a shard, and its predicate there once opened.
pub(crate) struct Seat {
    shard: Arc<Shard>,
    /// The predicate and the shard generation it was opened in (a `Cell`: set while the shard's lock, borrowed
    /// from the seat, is held).
    predicate: Cell<Option<(u64, ResourceAny)>>,
}

impl Seat {
    /// The shard's lock, waiting for it.
    pub(crate) fn lock(&self) -> MutexGuard<'_, ShardState> {
        self.shard.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The shard's lock if it comes within a short spin; `None` when the shard stays busy.
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, ShardState>> {
        for _ in 0..LOCK_SPINS {
            match self.shard.state.try_lock() {
                Ok(guard) => return Some(guard),
                Err(TryLockError::Poisoned(p)) => return Some(p.into_inner()),
                Err(TryLockError::WouldBlock) => std::hint::spin_loop(),
            }
        }
        None
    }

    /// The binding's predicate in `state`'s instance, if it opened one there.
    pub(crate) fn predicate(&self, state: &ShardState) -> Option<ResourceAny> {
        self.predicate.get().filter(|(generation, _)| *generation == state.generation).map(|(_, p)| p)
    }

    pub(crate) fn set_predicate(&self, state: &ShardState, predicate: ResourceAny) {
        self.predicate.set(Some((state.generation, predicate)));
    }

    /// Drops in the guest the predicates of bindings that went away, if they are still in `state`'s instance, each
    /// destructor bounded like a decision in place. A destructor that traps or runs on takes the instance with it.
    pub(crate) fn drop_orphans(&self, state: &mut ShardState) {
        let orphans = std::mem::take(&mut *self.shard.orphans.lock().unwrap_or_else(|p| p.into_inner()));
        let generation = state.generation;
        let Some(instance) = state.instance.as_mut() else { return };
        for (_, predicate) in orphans.into_iter().filter(|(g, _)| *g == generation) {
            instance.store.set_epoch_deadline(FIRST_SLICE_TICKS);
            if instance.store.set_fuel(SLICE_FUEL).is_err() {
                state.discard();
                return;
            }
            if predicate.resource_drop(&mut instance.store).is_err() {
                state.discard();
                return;
            }
        }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        if let Some(predicate) = self.predicate.take() {
            self.shard.orphans.lock().unwrap_or_else(|p| p.into_inner()).push(predicate);
        }
        // The last binding of a shard takes the instance with it, unless a call holds it (the next one then finds
        // the shard empty of bindings but still warm, and reuses it).
        if self.shard.seats.fetch_sub(1, Ordering::Relaxed) == 1
            && let Ok(mut state) = self.shard.state.try_lock()
            && self.shard.seats.load(Ordering::Relaxed) == 0
        {
            state.discard();
            self.shard.orphans.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }
}
