//! [`Mutex<T>`]: a futex mutex around a value, with optional poisoning.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use crate::deadlock::{self, BlockError, LockKind, LockMeta, Site};
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
/// # Deadlock detection
///
/// With the cargo feature `deadlock-detection` (see the `deadlock` module), the
/// mutex records its owner and where it was locked, a blocked locker checks for a wait-for
/// cycle, and nested locking checks the lock order. [`labelled`](Mutex::labelled) names
/// the mutex in reports (without the feature the label is dropped, at no cost).
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
    /// Deadlock detection's state: zero-sized without the feature.
    meta: LockMeta,
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
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn new(value: T) -> Self {
        Self::with_park(value, true)
    }

    /// A new unlocked mutex that never poisons: a panic while holding it just unlocks it.
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn new_unpoisoned(value: T) -> Self {
        Self::with_park(value, false)
    }
}

impl<T, P: Park> Mutex<T, P> {
    /// A new unlocked mutex that parks with the backend `P`, poisoning if `poisoning`.
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn with_park(value: T, poisoning: bool) -> Self {
        Self {
            raw: RawMutex::new(),
            poisoning,
            poisoned: AtomicBool::new(false),
            meta: LockMeta::new(LockKind::Mutex),
            data: UnsafeCell::new(value),
        }
    }

    /// Names the mutex for deadlock reports; the label is also its lock class for
    /// lock-order checks (mutexes with one label share a class). Without the feature
    /// `deadlock-detection` the label is dropped.
    ///
    /// ```
    /// use interproc_sync::Mutex;
    ///
    /// let accounts = Mutex::new(Vec::<u64>::new()).labelled("accounts");
    /// # drop(accounts);
    /// ```
    #[must_use]
    pub fn labelled(mut self, label: impl Into<Cow<'static, str>>) -> Self {
        self.meta.set_label(label.into());
        self
    }

    /// What a deadlock through a thread blocked on this mutex does (instead of the global
    /// [`deadlock::policy`]).
    #[cfg(feature = "deadlock-detection")]
    #[must_use]
    pub fn deadlock_policy(self, policy: deadlock::Policy) -> Self {
        self.meta.set_policy(policy);
        self
    }

    /// Takes the lock with the deadlock hooks (see `RawMutex::lock_tracked`).
    #[inline]
    fn acquire(
        &self,
        deadline: Option<Instant>,
        checked: bool,
        at: Site,
    ) -> Result<bool, BlockError> {
        self.raw.lock_tracked(&self.meta, deadline, checked, at)
    }

    /// Locks, blocking until the lock is free.
    ///
    /// # Errors
    ///
    /// [`PoisonError`] (with the guard inside) if the mutex is poisoned.
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    #[inline]
    pub fn lock(&self) -> Result<MutexGuard<'_, T, P>, PoisonError<MutexGuard<'_, T, P>>> {
        let locked = matches!(self.acquire(None, false, deadlock::caller()), Ok(true));
        debug_assert!(locked, "a lock without deadline or check cannot fail");
        self.guard()
    }

    /// Locks, blocking until the lock is free, unless waiting would never end: under the
    /// [`Error`](deadlock::Policy::Error) policy, the thread that closes a wait-for cycle
    /// gets the report instead of waiting forever. It keeps the locks it already holds.
    ///
    /// # Errors
    ///
    /// [`CheckedLockError::Deadlock`](deadlock::CheckedLockError::Deadlock) as above;
    /// [`CheckedLockError::Poisoned`](deadlock::CheckedLockError::Poisoned) if the mutex is
    /// poisoned (the guard is inside).
    #[cfg(feature = "deadlock-detection")]
    #[track_caller]
    pub fn lock_checked(
        &self,
    ) -> Result<MutexGuard<'_, T, P>, deadlock::CheckedLockError<MutexGuard<'_, T, P>>> {
        match self.acquire(None, true, deadlock::caller()) {
            Ok(locked) => {
                debug_assert!(locked, "a lock without deadline cannot time out");
                Ok(self.guard()?)
            }
            Err(d) => Err(deadlock::CheckedLockError::Deadlock(d)),
        }
    }

    /// Locks if the lock is free, without blocking.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] if another thread holds the lock;
    /// [`LockError::Poisoned`] if the lock was taken but is poisoned.
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T, P>, LockError<MutexGuard<'_, T, P>>> {
        if self.raw.try_lock() {
            // No lock-order edge for a try: it cannot deadlock. The lock is held, though.
            self.meta.acquired(deadlock::caller());
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
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<MutexGuard<'_, T, P>, LockError<MutexGuard<'_, T, P>>> {
        let deadline = crate::loom::time::now().checked_add(timeout);
        if matches!(self.acquire(deadline, false, deadlock::caller()), Ok(true)) {
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
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
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
        self.mutex.meta.released();
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
