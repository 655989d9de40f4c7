//! [`Monitor<T>`]: a mutex around a `T` plus named conditions, with Mesa semantics.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use crate::deadlock::{self, BlockError, LockKind, LockMeta, Site};
use crate::error::Error;
use crate::loom::atomic::{AtomicU32, Ordering};
use crate::loom::cell::UnsafeCell;
use crate::park::{DefaultPark, Park, ParkResult};
use crate::raw::RawMutex;

/// Names one of a [`Monitor`]'s conditions: its index, from `0` to the count given to
/// [`Monitor::new`]. Declare them as constants, so the names read like the state they stand
/// for:
///
/// ```
/// use interproc_sync::Condition;
///
/// const NOT_EMPTY: Condition = Condition::new(0);
/// const NOT_FULL: Condition = Condition::new(1);
/// # let _ = (NOT_EMPTY, NOT_FULL);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Condition(usize);

impl Condition {
    /// The condition with this index.
    pub const fn new(index: usize) -> Self {
        Self(index)
    }

    /// Its index.
    pub const fn index(self) -> usize {
        self.0
    }
}

/// One condition: a sequence word that every notify bumps (threads park on it), and the
/// number of threads between "about to wait" and "back inside", so that a notify with
/// nobody waiting makes no syscall.
#[repr(C)]
pub(crate) struct CondWord<P> {
    seq: AtomicU32,
    waiters: AtomicU32,
    _park: PhantomData<fn() -> P>,
}

impl<P: Park> CondWord<P> {
    pub(crate) fn new() -> Self {
        CondWord { seq: AtomicU32::new(0), waiters: AtomicU32::new(0), _park: PhantomData }
    }

    /// Wakes up to `n` waiters. Call it after changing the state the waiters wait for.
    pub(crate) fn notify(&self, n: u32) {
        // The bump makes every thread that read the old value and has not parked yet see a
        // change instead of sleeping.
        self.seq.fetch_add(1, Ordering::Relaxed);
        // A waiter registers inside the monitor, before leaving it; the notifier changed
        // the state inside the monitor after that (or the waiter would have seen the
        // change and not waited), so the lock orders the registration before this load.
        if self.waiters.load(Ordering::Relaxed) > 0 {
            P::wake(&self.seq, n);
        }
    }

    /// Registers a waiter; call it inside the monitor, then leave and park on the returned
    /// `(word, value)`.
    pub(crate) fn enqueue(&self) -> (&AtomicU32, u32) {
        self.waiters.fetch_add(1, Ordering::Relaxed);
        (&self.seq, self.seq.load(Ordering::Relaxed))
    }

    /// Unregisters a waiter; call it back inside the monitor.
    pub(crate) fn dequeue(&self) {
        self.waiters.fetch_sub(1, Ordering::Relaxed);
    }

    /// How many waiters are registered (for tests).
    #[cfg(all(test, feature = "deadlock-detection"))]
    pub(crate) fn waiters(&self) -> u32 {
        self.waiters.load(Ordering::Relaxed)
    }
}

/// A monitor (管程): shared state that only one thread at a time may touch, and the
/// conditions threads wait for on that state.
///
/// [`enter`](Monitor::enter) locks the monitor and returns a [`MonitorGuard`], which
/// derefs to the `T`. Inside, a thread waits for a condition with
/// [`wait_while`](MonitorGuard::wait_while) (or [`wait`](MonitorGuard::wait),
/// [`wait_timeout`](MonitorGuard::wait_timeout),
/// [`wait_timeout_while`](MonitorGuard::wait_timeout_while)): the monitor is released while
/// it sleeps and taken again before the call returns. A thread that changes the state
/// announces it with [`notify_one`](Monitor::notify_one) or
/// [`notify_all`](Monitor::notify_all) on the condition that may now hold.
///
/// # Mesa semantics
///
/// A notified thread is only *woken*: the notifier keeps the monitor, and other threads may
/// enter and change the state before the woken one gets back in. Waits may also return
/// without any notify. So a waiter must re-check its predicate after every wait, which
/// [`wait_while`](MonitorGuard::wait_while) does for you. Change the state while inside the
/// monitor, then notify (inside or after leaving); a notify not preceded by such a change
/// may be missed by a thread that is about to wait.
///
/// # How it works
///
/// The lock is the same futex mutex as [`Mutex`](crate::Mutex). Each condition is a
/// sequence word: a waiter reads it while inside, leaves the monitor, and parks only while
/// the word still holds what it read; a notify increments it and wakes one (or all) parked
/// threads. The futex compare closes the window between leaving and parking. The word
/// wraps after 2³² notifies, so a waiter that sleeps through exactly that many notifies
/// between reading the word and parking would miss one; the same bound glibc's original
/// condition variable accepted. There is no poisoning: a panic inside the monitor just
/// leaves it.
///
/// # Deadlock detection
///
/// With the cargo feature `deadlock-detection` (see the `deadlock` module),
/// entering is checked like locking a [`Mutex`](crate::Mutex); a wait while holding another
/// lock is reported as a hazard; and a wait when every thread attached to the monitor (its
/// creator and every thread that entered) is blocked is reported: nobody is left to notify.
///
/// # Example: a bounded buffer
///
/// The reference example: producers wait while the buffer is full, consumers while it is
/// empty, each on its own condition.
///
/// ```
/// use std::collections::VecDeque;
/// use std::thread;
/// use interproc_sync::{Condition, Monitor};
///
/// const NOT_EMPTY: Condition = Condition::new(0);
/// const NOT_FULL: Condition = Condition::new(1);
///
/// struct BoundedBuffer<T> {
///     queue: Monitor<VecDeque<T>>,
///     capacity: usize,
/// }
///
/// impl<T> BoundedBuffer<T> {
///     fn new(capacity: usize) -> Self {
///         Self { queue: Monitor::new(VecDeque::with_capacity(capacity), 2), capacity }
///     }
///
///     fn put(&self, item: T) {
///         let mut q = self.queue.enter();
///         q.wait_while(NOT_FULL, |q| q.len() == self.capacity);
///         q.push_back(item);
///         q.notify_one(NOT_EMPTY);
///     }
///
///     fn take(&self) -> T {
///         let mut q = self.queue.enter();
///         q.wait_while(NOT_EMPTY, |q| q.is_empty());
///         let item = q.pop_front().expect("not empty: we waited for it");
///         q.notify_one(NOT_FULL);
///         item
///     }
/// }
///
/// let buffer = BoundedBuffer::new(2);
/// let total: u64 = thread::scope(|s| {
///     for p in 0..2u64 {
///         let buffer = &buffer;
///         s.spawn(move || (0..100).for_each(|i| buffer.put(p * 1000 + i)));
///     }
///     let consumers: Vec<_> = (0..2)
///         .map(|_| s.spawn(|| (0..100).map(|_| buffer.take()).sum::<u64>()))
///         .collect();
///     consumers.into_iter().map(|c| c.join().unwrap()).sum()
/// });
/// assert_eq!(total, (0..100).sum::<u64>() * 2 + 1000 * 100);
/// ```
pub struct Monitor<T, P: Park = DefaultPark> {
    raw: RawMutex<P>,
    conds: Box<[CondWord<P>]>,
    /// Deadlock detection's state: zero-sized without the feature.
    meta: LockMeta,
    data: UnsafeCell<T>,
}

// SAFETY: the monitor owns its `T`; moving the monitor moves the `T`.
unsafe impl<T: Send, P: Park> Send for Monitor<T, P> {}
// SAFETY: `&mut T` is only reachable through a guard, which exists only while its thread
// holds the lock; the lock's Acquire/Release orders the accesses. As for a mutex, sharing
// the monitor moves access to the `T` between threads, which needs `T: Send` only.
unsafe impl<T: Send, P: Park> Sync for Monitor<T, P> {}

impl<T> Monitor<T> {
    /// A monitor around `value` with `conditions` conditions, named by
    /// `Condition::new(0)` to `Condition::new(conditions - 1)`.
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn new(value: T, conditions: usize) -> Self {
        Self::with_park(value, conditions)
    }
}

impl<T, P: Park> Monitor<T, P> {
    /// A monitor that parks with the backend `P`.
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn with_park(value: T, conditions: usize) -> Self {
        let conds = (0..conditions).map(|_| CondWord::new()).collect();
        Self {
            raw: RawMutex::new(),
            conds,
            meta: LockMeta::new(LockKind::Monitor),
            data: UnsafeCell::new(value),
        }
    }

    /// Names the monitor for deadlock reports (and lock-order checks). Without the feature
    /// `deadlock-detection` the label is dropped.
    #[must_use]
    pub fn labelled(mut self, label: impl Into<Cow<'static, str>>) -> Self {
        self.meta.set_label(label.into());
        self
    }

    /// What a deadlock through a thread blocked on this monitor does (instead of the global
    /// [`deadlock::policy`]).
    #[cfg(feature = "deadlock-detection")]
    #[must_use]
    pub fn deadlock_policy(self, policy: deadlock::Policy) -> Self {
        self.meta.set_policy(policy);
        self
    }

    /// Takes the lock with the deadlock hooks (see `RawMutex::lock_tracked`). The thread is
    /// attached (a party that may notify) before it can get in: attached only once inside,
    /// it was for a moment inside but unknown, and a condition waiter checking then could
    /// be told that nobody was left to signal.
    #[inline]
    fn acquire(
        &self,
        deadline: Option<Instant>,
        checked: bool,
        at: Site,
    ) -> Result<bool, BlockError> {
        self.meta.attach();
        self.raw.lock_tracked(&self.meta, deadline, checked, at)
    }

    fn guard(&self) -> MonitorGuard<'_, T, P> {
        MonitorGuard { monitor: self, _not_send: PhantomData }
    }

    /// Enters the monitor, waiting until no other thread is inside, unless waiting would
    /// never end: under the [`Error`](deadlock::Policy::Error) policy the thread that closes
    /// a wait-for cycle gets the report instead.
    ///
    /// # Errors
    ///
    /// [`deadlock::Deadlock`] as above.
    #[cfg(feature = "deadlock-detection")]
    #[track_caller]
    pub fn enter_checked(&self) -> Result<MonitorGuard<'_, T, P>, deadlock::Deadlock> {
        let entered = self.acquire(None, true, deadlock::caller())?;
        debug_assert!(entered, "a lock without deadline cannot time out");
        Ok(self.guard())
    }

    /// How many conditions the monitor has.
    pub fn conditions(&self) -> usize {
        self.conds.len()
    }

    /// Enters the monitor, waiting until no other thread is inside.
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn enter(&self) -> MonitorGuard<'_, T, P> {
        let entered = matches!(self.acquire(None, false, deadlock::caller()), Ok(true));
        debug_assert!(entered, "a lock without deadline or check cannot fail");
        self.guard()
    }

    /// Enters the monitor if no other thread is inside, without waiting.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] if another thread is inside.
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn try_enter(&self) -> Result<MonitorGuard<'_, T, P>, Error> {
        self.meta.attach(); // before it can get in, as in `acquire`
        if self.raw.try_lock() {
            self.meta.acquired(deadlock::caller());
            Ok(self.guard())
        } else {
            Err(Error::WouldBlock)
        }
    }

    /// Enters the monitor, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if another thread stayed inside until the timeout passed.
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn enter_timeout(&self, timeout: Duration) -> Result<MonitorGuard<'_, T, P>, Error> {
        let deadline = crate::loom::time::now().checked_add(timeout);
        if matches!(self.acquire(deadline, false, deadlock::caller()), Ok(true)) {
            Ok(self.guard())
        } else {
            Err(Error::Timeout)
        }
    }

    /// Wakes one thread waiting on `cond`, if any.
    ///
    /// # Panics
    ///
    /// If `cond` is not one of this monitor's conditions.
    pub fn notify_one(&self, cond: Condition) {
        self.notify(cond, 1);
    }

    /// Wakes every thread waiting on `cond`.
    ///
    /// # Panics
    ///
    /// If `cond` is not one of this monitor's conditions.
    pub fn notify_all(&self, cond: Condition) {
        self.notify(cond, u32::MAX);
    }

    fn cond(&self, cond: Condition) -> &CondWord<P> {
        let n = self.conds.len();
        self.conds
            .get(cond.0)
            .unwrap_or_else(|| panic!("condition {} of a monitor with {n} conditions", cond.0))
    }

    fn notify(&self, cond: Condition, n: u32) {
        self.cond(cond).notify(n);
    }

    /// Leaves the monitor, parks on `cond` until notified, the deadline or a spurious
    /// return, and enters again. The caller must be inside (hold the lock).
    ///
    /// With deadlock detection, the wait is registered (and checked) before the monitor is
    /// left; an `Err` (the `Error` policy, `checked` calls only) returns at once, still
    /// inside, without having waited.
    fn wait_inside(
        &self,
        cond: Condition,
        deadline: Option<Instant>,
        checked: bool,
        at: Site,
    ) -> Result<ParkResult, BlockError> {
        let c = self.cond(cond);
        // Not the owner while waiting: nobody should count on this thread to leave.
        self.meta.released();
        let slot = match self.meta.cond_wait(cond.0, at, checked) {
            Ok(slot) => slot,
            Err(e) => {
                self.meta.acquired(at);
                return Err(e);
            }
        };
        let r = {
            let _waiting = slot; // the wait record goes when the park ends
            let (word, seq) = c.enqueue();
            // SAFETY: only called through a `MonitorGuard`, whose existence proves this
            // thread holds the lock; it is taken again below before the guard can be used.
            unsafe { self.raw.unlock() };
            P::wait(word, seq, deadline)
        };
        // Back in: a deadlock here can only be reported (the guard must come back inside).
        let entered = matches!(self.acquire(None, false, at), Ok(true));
        debug_assert!(entered, "a lock without deadline or check cannot fail");
        c.dequeue();
        Ok(r)
    }

    /// Consumes the monitor and returns the value.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }

    /// A mutable reference to the value; `&mut self` proves no thread is inside.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

impl<T, P: Park> fmt::Debug for Monitor<T, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitor")
            .field("entered", &self.raw.is_locked())
            .field("conditions", &self.conds.len())
            .finish_non_exhaustive()
    }
}

/// Proof of being inside a [`Monitor`]: derefs to the state; leaves when dropped.
#[must_use = "the monitor is left as soon as the guard is dropped"]
pub struct MonitorGuard<'a, T, P: Park = DefaultPark> {
    monitor: &'a Monitor<T, P>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a `&MonitorGuard` only gives `&T` (waiting and notifying need `&mut self` or
// touch only atomics), so sharing it between threads shares `&T`, which needs `T: Sync`.
unsafe impl<T: Sync, P: Park> Sync for MonitorGuard<'_, T, P> {}

impl<T, P: Park> MonitorGuard<'_, T, P> {
    /// Leaves the monitor and sleeps until `cond` is notified (or a spurious wake-up), then
    /// enters again. Re-check the state afterwards: see [Mesa semantics](Monitor#mesa-semantics).
    ///
    /// # Panics
    ///
    /// If `cond` is not one of the monitor's conditions.
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn wait(&mut self, cond: Condition) {
        let _ = self.monitor.wait_inside(cond, None, false, deadlock::caller());
    }

    /// Like [`wait`](MonitorGuard::wait), unless nobody could ever notify: under the
    /// [`Error`](deadlock::Policy::Error) policy, when every thread attached to the monitor
    /// is blocked (or the wait closes a wait-for cycle), the report comes back instead and
    /// the thread stays inside without waiting.
    ///
    /// # Errors
    ///
    /// [`deadlock::Deadlock`] as above.
    ///
    /// # Panics
    ///
    /// If `cond` is not one of the monitor's conditions.
    #[cfg(feature = "deadlock-detection")]
    #[track_caller]
    pub fn wait_checked(&mut self, cond: Condition) -> Result<(), deadlock::Deadlock> {
        self.monitor.wait_inside(cond, None, true, deadlock::caller()).map(drop)
    }

    /// Waits on `cond` for as long as `condition` returns `true` for the state; returns
    /// inside the monitor with `condition` false.
    ///
    /// # Panics
    ///
    /// If `cond` is not one of the monitor's conditions.
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn wait_while(&mut self, cond: Condition, mut condition: impl FnMut(&mut T) -> bool) {
        let at = deadlock::caller();
        while condition(&mut **self) {
            let _ = self.monitor.wait_inside(cond, None, false, at);
        }
    }

    /// Like [`wait`](MonitorGuard::wait), for at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if the timeout passed without a wake-up reaching this thread. The
    /// thread is back inside the monitor either way.
    ///
    /// # Panics
    ///
    /// If `cond` is not one of the monitor's conditions.
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn wait_timeout(&mut self, cond: Condition, timeout: Duration) -> Result<(), Error> {
        let deadline = crate::loom::time::now().checked_add(timeout);
        match self.monitor.wait_inside(cond, deadline, false, deadlock::caller()) {
            Ok(ParkResult::TimedOut) => Err(Error::Timeout),
            _ => Ok(()),
        }
    }

    /// Like [`wait_while`](MonitorGuard::wait_while), for at most `timeout` in total.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if `condition` was still true when the timeout passed. The
    /// predicate is checked once more after the timeout, so a wake-up that raced with it is
    /// never lost. The thread is back inside the monitor either way.
    ///
    /// # Panics
    ///
    /// If `cond` is not one of the monitor's conditions.
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn wait_timeout_while(
        &mut self,
        cond: Condition,
        timeout: Duration,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> Result<(), Error> {
        let deadline = crate::loom::time::now().checked_add(timeout);
        let at = deadlock::caller();
        while condition(&mut **self) {
            if matches!(
                self.monitor.wait_inside(cond, deadline, false, at),
                Ok(ParkResult::TimedOut)
            ) {
                return if condition(&mut **self) { Err(Error::Timeout) } else { Ok(()) };
            }
        }
        Ok(())
    }

    /// Wakes one thread waiting on `cond`: [`Monitor::notify_one`] from inside.
    pub fn notify_one(&self, cond: Condition) {
        self.monitor.notify_one(cond);
    }

    /// Wakes every thread waiting on `cond`: [`Monitor::notify_all`] from inside.
    pub fn notify_all(&self, cond: Condition) {
        self.monitor.notify_all(cond);
    }
}

impl<T, P: Park> Deref for MonitorGuard<'_, T, P> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard proves this thread is inside (holds the lock), so no `&mut T`
        // exists elsewhere; the reference cannot outlive the borrow of the guard, and the
        // guard only leaves the monitor (in `wait*`) through `&mut self`.
        self.monitor.data.with(|p| unsafe { &*p })
    }
}

impl<T, P: Park> DerefMut for MonitorGuard<'_, T, P> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`, and `&mut self` makes this the only reference derived from
        // the guard while it lives.
        self.monitor.data.with_mut(|p| unsafe { &mut *p })
    }
}

impl<T, P: Park> Drop for MonitorGuard<'_, T, P> {
    fn drop(&mut self) {
        self.monitor.meta.released();
        // SAFETY: a guard exists only while its thread is inside; each guard leaves exactly
        // once, here (`wait*` leave and re-enter before returning).
        unsafe { self.monitor.raw.unlock() };
    }
}

impl<T: fmt::Debug, P: Park> fmt::Debug for MonitorGuard<'_, T, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
