//! [`Mutex<T>`]: a futex mutex around a value, with optional poisoning.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use crate::error::{LockError, PoisonError};
use crate::loom::atomic::{AtomicBool, Ordering};
use crate::loom::cell::UnsafeCell;
use crate::park::{DefaultPark, Park};
use crate::raw::RawMutex;

/// A mutual-exclusion lock around a `T`, on one 32-bit futex word.
///
/// Uncontended [`lock`](Mutex::lock) and unlock are one atomic each and no syscall. A
/// contended locker spins briefly, then parks on the word (see [`Park`]); the algorithm is
/// Drepper's three-state futex mutex. There is no fairness guarantee.
///
/// # Poisoning
///
/// A mutex from [`Mutex::new`] is *poisoned* when a thread panics while holding it, as
/// with `std::sync::Mutex`: later lockers get a [`PoisonError`] holding the guard, and can
/// take the data anyway with [`PoisonError::into_inner`] or reset the flag with
/// [`clear_poison`](Mutex::clear_poison). A mutex from [`Mutex::new_unpoisoned`] never
/// poisons, like `parking_lot::Mutex`.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use std::thread;
/// use interproc_sync::Mutex;
///
/// let counter = Arc::new(Mutex::new(0u64));
/// let workers: Vec<_> = (0..4)
///     .map(|_| {
///         let counter = Arc::clone(&counter);
///         thread::spawn(move || {
///             for _ in 0..1000 {
///                 *counter.lock().unwrap() += 1;
///             }
///         })
///     })
///     .collect();
/// for w in workers {
///     w.join().unwrap();
/// }
/// assert_eq!(*counter.lock().unwrap(), 4000);
/// ```
pub struct Mutex<T, P: Park = DefaultPark> {
    raw: RawMutex<P>,
    /// Whether guards set `poisoned` when dropped during a panic.
    poisoning: bool,
    poisoned: AtomicBool,
    data: UnsafeCell<T>,
}

// SAFETY: the mutex owns its `T`; moving the mutex moves the `T`, which needs `T: Send`.
unsafe impl<T: Send, P: Park> Send for Mutex<T, P> {}
// SAFETY: through `&Mutex` a thread gets `&mut T` only while holding the lock, and the
// lock's Acquire/Release orders the accesses, so sharing the mutex only ever moves access to
// the `T` between threads: `T: Send` suffices, as for `std::sync::Mutex`.
unsafe impl<T: Send, P: Park> Sync for Mutex<T, P> {}

impl<T> Mutex<T> {
    /// A new unlocked mutex that poisons if a holder panics.
    pub fn new(value: T) -> Self {
        Self::with_park(value, true)
    }

    /// A new unlocked mutex that never poisons: a panic while holding it just unlocks it.
    pub fn new_unpoisoned(value: T) -> Self {
        Self::with_park(value, false)
    }
}

impl<T, P: Park> Mutex<T, P> {
    /// A new unlocked mutex that parks with the backend `P`, poisoning if `poisoning`.
    pub fn with_park(value: T, poisoning: bool) -> Self {
        Self {
            raw: RawMutex::new(),
            poisoning,
            poisoned: AtomicBool::new(false),
            data: UnsafeCell::new(value),
        }
    }

    /// Locks, blocking until the lock is free.
    ///
    /// # Errors
    ///
    /// [`PoisonError`] (with the guard inside) if the mutex is poisoned.
    pub fn lock(&self) -> Result<MutexGuard<'_, T, P>, PoisonError<MutexGuard<'_, T, P>>> {
        let locked = self.raw.lock_until(None);
        debug_assert!(locked, "a lock without deadline cannot time out");
        self.guard()
    }

    /// Locks if the lock is free, without blocking.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] if another thread holds the lock;
    /// [`LockError::Poisoned`] if the lock was taken but is poisoned.
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T, P>, LockError<MutexGuard<'_, T, P>>> {
        if self.raw.try_lock() {
            Ok(self.guard()?)
        } else {
            Err(LockError::WouldBlock)
        }
    }

    /// Locks, blocking for at most `timeout` (measured on `CLOCK_MONOTONIC`).
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`] if the lock did not come free in time;
    /// [`LockError::Poisoned`] if the lock was taken but is poisoned.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<MutexGuard<'_, T, P>, LockError<MutexGuard<'_, T, P>>> {
        let deadline = Instant::now().checked_add(timeout);
        if self.raw.lock_until(deadline) {
            Ok(self.guard()?)
        } else {
            Err(LockError::Timeout)
        }
    }

    /// Wraps the lock the caller has just taken in a guard, reporting poisoning.
    fn guard(&self) -> Result<MutexGuard<'_, T, P>, PoisonError<MutexGuard<'_, T, P>>> {
        let guard = MutexGuard {
            mutex: self,
            panicking: crate::loom::thread::panicking(),
            _not_send: PhantomData,
        };
        // Relaxed: the flag is written under the lock, whose Acquire we just performed.
        if self.poisoned.load(Ordering::Relaxed) {
            Err(PoisonError::new(guard))
        } else {
            Ok(guard)
        }
    }

    /// Whether a thread panicked while holding the lock (and the flag was not cleared).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Relaxed)
    }

    /// Clears the poison flag, once the caller has repaired the data.
    pub fn clear_poison(&self) {
        self.poisoned.store(false, Ordering::Relaxed);
    }

    /// Consumes the mutex and returns the value.
    ///
    /// # Errors
    ///
    /// [`PoisonError`] holding the value if the mutex is poisoned.
    pub fn into_inner(self) -> Result<T, PoisonError<T>> {
        let poisoned = self.poisoned.load(Ordering::Relaxed);
        let value = self.data.into_inner();
        if poisoned {
            Err(PoisonError::new(value))
        } else {
            Ok(value)
        }
    }

    /// A mutable reference to the value; `&mut self` proves no one else holds the lock.
    ///
    /// # Errors
    ///
    /// [`PoisonError`] holding the reference if the mutex is poisoned.
    pub fn get_mut(&mut self) -> Result<&mut T, PoisonError<&mut T>> {
        let poisoned = self.poisoned.load(Ordering::Relaxed);
        let value = self.data.get_mut();
        if poisoned {
            Err(PoisonError::new(value))
        } else {
            Ok(value)
        }
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T, P: Park> fmt::Debug for Mutex<T, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutex")
            .field("locked", &self.raw.is_locked())
            .field("poisoned", &self.is_poisoned())
            .finish_non_exhaustive()
    }
}

/// Proof of holding a [`Mutex`]: derefs to the value; unlocks when dropped.
///
/// Not `Send`, like std's guard: the lock is released by the thread that took it.
#[must_use = "the mutex unlocks as soon as the guard is dropped"]
pub struct MutexGuard<'a, T, P: Park = DefaultPark> {
    mutex: &'a Mutex<T, P>,
    /// Whether the thread was already panicking when it locked: only a panic that starts
    /// while the lock is held poisons it.
    panicking: bool,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a `&MutexGuard` only gives `&T`, so sharing the guard between threads is sharing
// `&T`, which needs `T: Sync`.
unsafe impl<T: Sync, P: Park> Sync for MutexGuard<'_, T, P> {}

impl<T, P: Park> Deref for MutexGuard<'_, T, P> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard proves this thread holds the lock, so no `&mut T` exists
        // elsewhere; the reference cannot outlive the guard, which unlocks only on drop.
        self.mutex.data.with(|p| unsafe { &*p })
    }
}

impl<T, P: Park> DerefMut for MutexGuard<'_, T, P> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves this thread holds the lock, and `&mut self` proves this is
        // the only live reference derived from this guard; it cannot outlive the guard.
        self.mutex.data.with_mut(|p| unsafe { &mut *p })
    }
}

impl<T, P: Park> Drop for MutexGuard<'_, T, P> {
    fn drop(&mut self) {
        if self.mutex.poisoning && !self.panicking && crate::loom::thread::panicking() {
            self.mutex.poisoned.store(true, Ordering::Relaxed);
        }
        // SAFETY: a guard exists only while its thread holds the lock, and each guard
        // unlocks exactly once, here.
        unsafe { self.mutex.raw.unlock() };
    }
}

impl<T: fmt::Debug, P: Park> fmt::Debug for MutexGuard<'_, T, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
