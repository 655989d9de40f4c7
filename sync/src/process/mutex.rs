//! [`Mutex<T>`]: the process-shared, robust mutex.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use super::{guard_or, Header, Kind, LockError};
use crate::deadlock::{caller, LazyWait, LockKind, SharedOrder};
use crate::loom::cell::UnsafeCell;
use crate::park::{DefaultSharedPark, RobustPark};
use crate::robust::RawRobust;

/// A mutual-exclusion lock around a `T`, for threads of several processes that map the same
/// memory, robust to the death of its owner.
///
/// Uncontended, [`lock`](Mutex::lock) and unlock are one compare-and-swap, one swap and
/// two plain stores, and make no syscall. See the [module docs](crate::process) for what
/// happens when an owner dies, and why.
///
/// # Example
///
/// A counter in shared memory (`fork()`ed children inherit the mapping), and the lock that
/// every process takes, with the repair a locker does when the previous holder was killed
/// half-way through an update (`sync/tests/process.rs` runs this across real processes):
///
/// ```
/// use interproc_sync::process::{LockError, Mutex};
/// use interproc_sync::shm::Segment;
///
/// #[repr(C)]
/// struct Counter { value: u64, busy: bool }
/// // SAFETY: `#[repr(C)]`, plain integers, no pointers.
/// unsafe impl interproc_sync::shm::ShmSafe for Counter {}
///
/// let shared = Segment::anonymous(Mutex::new(Counter { value: 0, busy: false })).unwrap();
/// let mut guard = match shared.lock() {
///     Ok(guard) => guard,
///     Err(LockError::OwnerDied(mut guard)) => {
///         if guard.busy { /* undo the half-done update */ guard.busy = false; }
///         guard.make_consistent();
///         guard
///     }
///     Err(e) => panic!("{e}"),
/// };
/// guard.value += 1;
/// ```
#[repr(C)]
pub struct Mutex<T, P: RobustPark = DefaultSharedPark> {
    header: Header,
    raw: RawRobust<P>,
    data: UnsafeCell<T>,
}

// SAFETY: the mutex owns its `T`; moving it moves the `T`.
unsafe impl<T: Send, P: RobustPark> Send for Mutex<T, P> {}
// SAFETY: `&mut T` is reachable only through a guard, which exists only while its thread
// holds the lock, and the lock's Acquire/Release orders the accesses (the futex words are
// shared, so this holds across processes too).
unsafe impl<T: Send, P: RobustPark> Sync for Mutex<T, P> {}

// SAFETY: `#[repr(C)]`; the header is plain integers, the lock is atomic words (no
// pointers: `P` is a zero-sized marker), and the data is `ShmSafe`. A process killed
// mid-update leaves the data as the user's `ShmSafe` promise allows, and the lock marks
// it inconsistent.
#[cfg(not(interproc_loom))]
unsafe impl<T: crate::shm::ShmSafe + Send, P: RobustPark> crate::shm::ShmSafe for Mutex<T, P> {}

impl<T> Mutex<T> {
    /// A new unlocked mutex around `value`. Move it into shared memory before another
    /// process can see it (a [`Segment`](crate::shm::Segment) does).
    pub fn new(value: T) -> Self {
        Self::with_park(value)
    }
}

impl<T, P: RobustPark> Mutex<T, P> {
    /// A new unlocked mutex that parks with the backend `P`.
    pub fn with_park(value: T) -> Self {
        Self {
            header: Header::new(Kind::Mutex),
            raw: RawRobust::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// Locks, blocking until the lock is free or its owner has died.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] (with the guard) if the previous owner died holding it;
    /// [`LockError::NotRecoverable`] if the lock is lost.
    ///
    /// With the feature `deadlock-detection`, a caller that has to park is registered in
    /// the cross-process registry ([`deadlock::shared`](crate::deadlock)) and a wait-for
    /// cycle through it is reported (it keeps waiting; see
    /// [`lock_checked`](Mutex::lock_checked) for the error).
    #[track_caller]
    #[inline]
    pub fn lock(&self) -> Result<MutexGuard<'_, T, P>, LockError<MutexGuard<'_, T, P>>> {
        self.header.check(Kind::Mutex);
        let at = caller();
        let order = SharedOrder::before_lock(self.addr(), at);
        // The wait record is made at the first park: the uncontended path only tests for it.
        let mut wait = LazyWait::new();
        let got = self.raw.lock_until_with(None, |w| {
            wait.get(self.addr(), LockKind::Mutex, at, false).parked(|| self.raw.owner_of(w))
        });
        wait.done();
        order.acquired(got.holds(), at);
        guard_or(got, LockError::Timeout, || self.guard())
    }

    /// Locks like [`lock`](Mutex::lock), but under
    /// [`Policy::Error`](crate::deadlock::Policy::Error) (this lock's own
    /// [`set_deadlock_policy`](Mutex::set_deadlock_policy), or else the global one) a caller
    /// that closes a wait-for cycle across processes gets [`LockError::Deadlock`] instead of
    /// waiting forever. It
    /// holds no new lock; dropping the guards it holds lets the others go on.
    ///
    /// # Errors
    ///
    /// [`LockError::Deadlock`] as above; otherwise as [`lock`](Mutex::lock).
    #[cfg(feature = "deadlock-detection")]
    #[track_caller]
    pub fn lock_checked(&self) -> Result<MutexGuard<'_, T, P>, LockError<MutexGuard<'_, T, P>>> {
        self.header.check(Kind::Mutex);
        let at = caller();
        let order = SharedOrder::before_lock(self.addr(), at);
        let mut wait = LazyWait::new();
        let got = self.raw.lock_until_with(None, |w| {
            wait.get(self.addr(), LockKind::Mutex, at, true).parked(|| self.raw.owner_of(w))
        });
        if let Some(d) = wait.take_deadlock() {
            return Err(LockError::Deadlock(d));
        }
        wait.done();
        order.acquired(got.holds(), at);
        guard_or(got, LockError::Timeout, || self.guard())
    }

    /// Names this lock in deadlock reports and in `interproc deadlocks` (feature
    /// `deadlock-detection`; otherwise this does nothing). The label belongs to this
    /// process (and to children it forks afterwards): each process that maps the lock
    /// labels its own view of it.
    pub fn set_label(&self, label: &str) {
        crate::deadlock::shared::set_label(self.addr(), label);
    }

    /// What a wait-for cycle found by a thread of this process blocked on this lock does,
    /// instead of the global [`deadlock::policy`](crate::deadlock::policy): under
    /// [`Policy::Error`](crate::deadlock::Policy::Error),
    /// [`lock_checked`](Mutex::lock_checked) returns [`LockError::Deadlock`]. Like the
    /// label, the policy belongs to this process (and to children it forks afterwards),
    /// keyed by the lock's address here; it is not stored in the shared lock.
    #[cfg(feature = "deadlock-detection")]
    pub fn set_deadlock_policy(&self, policy: crate::deadlock::Policy) {
        crate::deadlock::shared::set_policy(self.addr(), policy);
    }

    fn addr(&self) -> usize {
        std::ptr::from_ref(self).addr()
    }

    /// Locks if the lock is free or its owner has died, without blocking.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] if a live thread holds it; otherwise as [`lock`](Mutex::lock).
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T, P>, LockError<MutexGuard<'_, T, P>>> {
        self.header.check(Kind::Mutex);
        // No lock-order edge for a try: it cannot deadlock. The lock is held, though.
        let order = SharedOrder::no_edges(self.addr());
        let got = self.raw.try_lock();
        order.acquired(got.holds(), caller());
        guard_or(got, LockError::WouldBlock, || self.guard())
    }

    /// Locks, blocking for at most `timeout` (on `CLOCK_MONOTONIC`).
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`] if it stayed held; otherwise as [`lock`](Mutex::lock).
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<MutexGuard<'_, T, P>, LockError<MutexGuard<'_, T, P>>> {
        self.header.check(Kind::Mutex);
        // No lock-order edge: a timed wait ends by itself.
        let order = SharedOrder::no_edges(self.addr());
        let deadline = crate::loom::time::now().checked_add(timeout);
        let got = self.raw.lock_until(deadline);
        order.acquired(got.holds(), caller());
        guard_or(got, LockError::Timeout, || self.guard())
    }

    fn guard(&self) -> MutexGuard<'_, T, P> {
        MutexGuard { mutex: self, _not_send: PhantomData }
    }

    /// Whether the lock is lost for good (a snapshot).
    pub fn is_not_recoverable(&self) -> bool {
        self.raw.is_not_recoverable()
    }

    /// The tid of the thread holding the lock, if any (a snapshot, for diagnostics).
    pub fn owner_tid(&self) -> Option<u32> {
        self.raw.owner_tid()
    }

    /// A mutable reference to the value; `&mut self` proves no one else holds the lock.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

impl<T, P: RobustPark> fmt::Debug for Mutex<T, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("process::Mutex")
            .field("owner_tid", &self.owner_tid())
            .field("not_recoverable", &self.is_not_recoverable())
            .finish_non_exhaustive()
    }
}

/// Proof of holding a process-shared [`Mutex`]: derefs to the value; unlocks when dropped.
#[must_use = "the mutex unlocks as soon as the guard is dropped"]
pub struct MutexGuard<'a, T, P: RobustPark = DefaultSharedPark> {
    mutex: &'a Mutex<T, P>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a `&MutexGuard` only gives `&T`.
unsafe impl<T: Sync, P: RobustPark> Sync for MutexGuard<'_, T, P> {}

impl<T, P: RobustPark> MutexGuard<'_, T, P> {
    /// Declares the data repaired after [`LockError::OwnerDied`]: the lock is normal again
    /// once this guard is dropped. Without it, dropping the guard makes the lock not
    /// recoverable.
    pub fn make_consistent(&mut self) {
        self.mutex.raw.make_consistent();
    }

    /// Whether this guard came from [`LockError::OwnerDied`] and
    /// [`make_consistent`](MutexGuard::make_consistent) has not been called yet.
    pub fn is_inconsistent(&self) -> bool {
        self.mutex.raw.is_inconsistent()
    }
}

impl<T, P: RobustPark> Deref for MutexGuard<'_, T, P> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard proves this thread holds the lock, so no `&mut T` exists in any
        // process; the reference cannot outlive the guard.
        self.mutex.data.with(|p| unsafe { &*p })
    }
}

impl<T, P: RobustPark> DerefMut for MutexGuard<'_, T, P> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`; `&mut self` makes this the only reference derived from
        // the guard while it lives.
        self.mutex.data.with_mut(|p| unsafe { &mut *p })
    }
}

impl<T, P: RobustPark> Drop for MutexGuard<'_, T, P> {
    fn drop(&mut self) {
        SharedOrder::released(self.mutex.addr());
        // SAFETY: a guard exists only while its thread holds the lock, and unlocks once.
        unsafe { self.mutex.raw.unlock() };
    }
}

impl<T: fmt::Debug, P: RobustPark> fmt::Debug for MutexGuard<'_, T, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
