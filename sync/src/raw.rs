//! The lock state machine shared by [`Mutex`](crate::Mutex) and [`Monitor`](crate::Monitor):
//! the three-state futex mutex of Ulrich Drepper, "Futexes Are Tricky" ("Mutex, Take 3"),
//! with a brief spin before parking, and unlocking by exchange (as std's futex mutex does)
//! rather than Drepper's decrement.
//!
//! The word holds:
//! - `0`: unlocked;
//! - `1`: locked, and no thread has parked since it was locked;
//! - `2`: locked, and threads may be parked on the word.
//!
//! A locker that finds the lock taken swaps in `2` before it parks, so the unlocker, which
//! swaps in `0`, knows from the old value whether a `wake` is needed: uncontended lock and
//! unlock make no syscall. A thread that takes the lock through that swap owns it in state
//! `2`, which costs at most one unneeded wake but never loses one.
//!
//! The contended path calls an `on_block` hook right before each park (after the spin
//! phase, with the word already `2`). Deadlock detection registers the wait there and may
//! make the lock give up; without the feature the hook is `|| Ok(())` with an uninhabited
//! error type, which compiles away: the algorithm (and what loom models) is unchanged.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::time::Instant;

use crate::deadlock::{BlockError, LockMeta, Site, WaitKind};
use crate::loom::atomic::{AtomicU32, Ordering};
use crate::loom::hint;
use crate::park::{Park, ParkResult};

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;

pub(crate) struct RawMutex<P> {
    state: AtomicU32,
    _park: PhantomData<fn() -> P>,
}

impl<P: Park> RawMutex<P> {
    pub(crate) fn new() -> Self {
        Self { state: AtomicU32::new(UNLOCKED), _park: PhantomData }
    }

    /// Takes the lock if it is free. Acquire pairs with the Release of `unlock`.
    #[inline]
    pub(crate) fn try_lock(&self) -> bool {
        self.state.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    /// Takes the lock, waiting until `deadline` (forever if `None`). Returns whether it
    /// got the lock.
    #[inline]
    #[allow(dead_code)] // the entry point without hooks, for primitives that need none
    pub(crate) fn lock_until(&self, deadline: Option<Instant>) -> bool {
        match self.lock_until_hooked(deadline, || Ok::<(), Infallible>(())) {
            Ok(locked) => locked,
            Err(never) => match never {},
        }
    }

    /// [`lock_until`](Self::lock_until), calling `on_block` each time before the thread
    /// parks; an `Err` from it makes the lock give up, as a timeout would (the word is `2`
    /// then, so leaving loses nobody's wake-up), and is returned.
    #[inline]
    pub(crate) fn lock_until_hooked<E>(
        &self,
        deadline: Option<Instant>,
        on_block: impl FnMut() -> Result<(), E>,
    ) -> Result<bool, E> {
        if self.try_lock() {
            return Ok(true);
        }
        self.lock_contended(deadline, on_block)
    }

    /// Takes the lock (blocking unless `deadline` passes) with deadlock detection's hooks,
    /// for the primitives built on this lock ([`Mutex`](crate::Mutex),
    /// [`Monitor`](crate::Monitor)): the lock-order check, the wait record and check while
    /// blocked (an `Err` under the `Error` policy when `checked`), and the owner record.
    /// Without the feature the hooks are empty and this is
    /// [`lock_until`](Self::lock_until).
    #[inline]
    pub(crate) fn lock_tracked(
        &self,
        meta: &LockMeta,
        deadline: Option<Instant>,
        checked: bool,
        at: Site,
    ) -> Result<bool, BlockError> {
        meta.before_lock(at);
        let locked = self.try_lock() || self.lock_tracked_contended(meta, deadline, checked, at)?;
        if locked {
            meta.acquired(at);
        }
        Ok(locked)
    }

    /// The blocking part of [`lock_tracked`](Self::lock_tracked), out of line: the
    /// uncontended lock has no wait record or hook closure to set up. The wait record
    /// lives while the thread may block, and goes at the block's end; it is made at the
    /// first park.
    #[cold]
    fn lock_tracked_contended(
        &self,
        meta: &LockMeta,
        deadline: Option<Instant>,
        checked: bool,
        at: Site,
    ) -> Result<bool, BlockError> {
        let mut slot = None;
        self.lock_contended(deadline, || {
            slot.get_or_insert_with(|| meta.wait_slot(WaitKind::Lock, at, checked)).block()
        })
    }

    #[cold]
    fn lock_contended<E>(
        &self,
        deadline: Option<Instant>,
        mut on_block: impl FnMut() -> Result<(), E>,
    ) -> Result<bool, E> {
        // The shape of std's futex mutex (library/std/src/sys/sync/mutex/futex.rs), plus
        // the deadline.
        let mut state = self.spin();
        if state == UNLOCKED {
            match self.state.compare_exchange(
                UNLOCKED,
                LOCKED,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(true),
                Err(now) => state = now,
            }
        }
        loop {
            // Mark the lock contended before parking. If it was free, we own it now, as
            // contended: other threads may still be parked.
            if state != CONTENDED && self.state.swap(CONTENDED, Ordering::Acquire) == UNLOCKED {
                return Ok(true);
            }
            // The futex only times out when it really sleeps: under churn it keeps returning
            // at once, so check the deadline here too. The state is CONTENDED now, so the
            // owner's unlock wakes another waiter: leaving loses nobody's wake-up.
            if crate::loom::time::passed(deadline) {
                return Ok(false);
            }
            // About to park: the same reasoning lets the hook make us leave.
            on_block()?;
            if P::wait(&self.state, CONTENDED, deadline) == ParkResult::TimedOut {
                // The timeout was not a wake-up meant for us (a waiter a `wake` reached
                // reports `Woken`), so giving up loses nobody's wake-up. One last try in
                // case the lock came free meanwhile; taking it as 2 stays conservative
                // about the other parked threads.
                return Ok(self
                    .state
                    .compare_exchange(UNLOCKED, CONTENDED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok());
            }
            state = self.spin();
        }
    }

    /// Spins briefly while the lock is held with no parked waiters (state 1), since the
    /// holder may be about to release it; returns the state last seen. Once the word is 2
    /// others are parked, so queue up behind them rather than spin.
    fn spin(&self) -> u32 {
        let mut left = hint::SPIN_LIMIT;
        loop {
            let state = self.state.load(Ordering::Relaxed);
            if state != LOCKED || left == 0 {
                return state;
            }
            hint::spin_loop();
            left -= 1;
        }
    }

    /// Releases the lock.
    ///
    /// # Safety
    ///
    /// The calling thread must hold the lock (a successful `try_lock`/`lock_until` not yet
    /// matched by an `unlock`).
    #[inline]
    pub(crate) unsafe fn unlock(&self) {
        let word: *const AtomicU32 = &self.state;
        // Release: publishes the critical section to the next locker's Acquire. After this
        // swap the lock may be taken, released and freed by another thread, so only the
        // address is used from here on (`Park::wake` never dereferences it).
        if self.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            P::wake(word, 1);
        }
    }

    /// Whether the lock is held (a racy snapshot, for `Debug` and assertions).
    pub(crate) fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != UNLOCKED
    }
}
