//! [`Monitor<T, C>`]: the process-shared, robust monitor.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use super::{guard_or, Header, Kind, LockError};
use crate::deadlock::{caller, LazyWait, LockKind, SharedOrder, SharedWait};
use crate::loom::atomic::Ordering;
use crate::loom::cell::UnsafeCell;
use crate::monitor::CondWord;
use crate::park::{DefaultSharedPark, ParkResult, RobustPark};
use crate::robust::{Acquired, RawRobust, POLL_FIRST, POLL_MAX};
use crate::Condition;

/// A monitor (管程) for several processes: a `T` that one thread at a time may touch,
/// plus `C` conditions to wait on, with Mesa semantics, robust to the death of the thread
/// inside.
///
/// It works like the thread [`Monitor`](crate::Monitor), with two differences that come
/// from living in shared memory: the number of conditions is a const parameter (the
/// conditions sit inline, no pointer), and entering (also the re-entry at the end of a
/// wait) can report that the previous holder died inside, so the waits take the guard by
/// value and hand it back in a `Result`.
///
/// If a process dies inside the monitor, the next to enter gets [`LockError::OwnerDied`]:
/// repair the state, call [`make_consistent`](MonitorGuard::make_consistent), and
/// `notify_all` the conditions whose state you changed, since the dead process may have
/// changed the state without notifying. Threads waiting on a condition are woken when the
/// next thread enters after a death (or notice the death at their next liveness poll),
/// and re-check their state; if the monitor was left unrepaired, they get `NotRecoverable`.
///
/// # Example
///
/// A bounded buffer that a producer process fills and a consumer process drains:
///
/// ```
/// use interproc_sync::process::Monitor;
/// use interproc_sync::shm::{Segment, ShmSafe};
/// use interproc_sync::Condition;
///
/// const NOT_EMPTY: Condition = Condition::new(0);
/// const NOT_FULL: Condition = Condition::new(1);
///
/// #[repr(C)]
/// #[derive(Default)]
/// struct Ring { items: [u64; 4], head: u32, len: u32 }
/// // SAFETY: `#[repr(C)]` integers only; changed only inside the monitor.
/// unsafe impl ShmSafe for Ring {}
///
/// let buf = Segment::anonymous(Monitor::<Ring, 2>::new(Ring::default())).unwrap();
/// // (fork here: the child inherits the mapping; see `sync/tests/process.rs`)
/// let put = |v: u64| {
///     let mut g = buf.enter().unwrap().wait_while(NOT_FULL, |r| r.len == 4).unwrap();
///     let tail = (g.head + g.len) as usize % 4;
///     g.items[tail] = v;
///     g.len += 1;
///     g.notify_one(NOT_EMPTY);
/// };
/// put(7);
/// let mut g = buf.enter().unwrap().wait_while(NOT_EMPTY, |r| r.len == 0).unwrap();
/// let v = g.items[g.head as usize];
/// (g.head, g.len) = ((g.head + 1) % 4, g.len - 1);
/// g.notify_one(NOT_FULL);
/// assert_eq!(v, 7);
/// ```
#[repr(C)]
pub struct Monitor<T, const C: usize = 1, P: RobustPark = DefaultSharedPark> {
    header: Header,
    raw: RawRobust<P>,
    conds: [CondWord<P>; C],
    data: UnsafeCell<T>,
}

// SAFETY: the monitor owns its `T`; moving it moves the `T`.
unsafe impl<T: Send, const C: usize, P: RobustPark> Send for Monitor<T, C, P> {}
// SAFETY: `&mut T` is reachable only through a guard, which exists only while its thread
// holds the lock; the lock's Acquire/Release orders the accesses, across processes too.
unsafe impl<T: Send, const C: usize, P: RobustPark> Sync for Monitor<T, C, P> {}

// SAFETY: `#[repr(C)]`: a plain header, atomic words (the condition words inline, no
// pointers; `P` is a zero-sized marker), and `ShmSafe` data.
#[cfg(not(interproc_loom))]
unsafe impl<T: crate::shm::ShmSafe + Send, const C: usize, P: RobustPark> crate::shm::ShmSafe
    for Monitor<T, C, P>
{
}

impl<T, const C: usize> Monitor<T, C> {
    /// A new monitor around `value`, with conditions `Condition::new(0)` to
    /// `Condition::new(C - 1)`. Move it into shared memory before another process can see
    /// it (a [`Segment`](crate::shm::Segment) does).
    pub fn new(value: T) -> Self {
        Self::with_park(value)
    }
}

impl<T, const C: usize, P: RobustPark> Monitor<T, C, P> {
    /// A new monitor that parks with the backend `P`.
    pub fn with_park(value: T) -> Self {
        Self {
            header: Header::new(Kind::Monitor),
            raw: RawRobust::new(),
            conds: std::array::from_fn(|_| CondWord::new()),
            data: UnsafeCell::new(value),
        }
    }

    /// Enters, waiting until no other thread is inside (or the one inside has died).
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] (with the guard) if the previous holder died inside;
    /// [`LockError::NotRecoverable`] if the monitor is lost.
    ///
    /// With the feature `deadlock-detection`, a caller that has to park is registered in
    /// the cross-process registry and a wait-for cycle through it is reported (see
    /// [`enter_checked`](Monitor::enter_checked) for the error).
    #[track_caller]
    #[inline]
    pub fn enter(&self) -> Result<MonitorGuard<'_, T, C, P>, LockError<MonitorGuard<'_, T, C, P>>> {
        self.header.check(Kind::Monitor);
        let at = caller();
        let order = SharedOrder::before_lock(self.addr(), at);
        // The wait record is made at the first park: the uncontended path only tests for it.
        let mut wait = LazyWait::new();
        let got = self.raw.lock_until_with(None, |w| {
            wait.get(self.addr(), LockKind::Monitor, at, false).parked(|| self.raw.owner_of(w))
        });
        wait.done();
        order.acquired(got.holds(), at);
        guard_or(self.entered(got), LockError::Timeout, || self.guard())
    }

    /// Enters like [`enter`](Monitor::enter), but under
    /// [`Policy::Error`](crate::deadlock::Policy::Error) (this lock's own
    /// [`set_deadlock_policy`](Monitor::set_deadlock_policy), or else the global one) a caller
    /// that closes a wait-for cycle across processes gets [`LockError::Deadlock`] instead of
    /// waiting forever.
    ///
    /// # Errors
    ///
    /// [`LockError::Deadlock`] as above; otherwise as [`enter`](Monitor::enter).
    #[cfg(feature = "deadlock-detection")]
    #[track_caller]
    pub fn enter_checked(
        &self,
    ) -> Result<MonitorGuard<'_, T, C, P>, LockError<MonitorGuard<'_, T, C, P>>> {
        self.header.check(Kind::Monitor);
        let at = caller();
        let order = SharedOrder::before_lock(self.addr(), at);
        let mut wait = LazyWait::new();
        let got = self.raw.lock_until_with(None, |w| {
            wait.get(self.addr(), LockKind::Monitor, at, true).parked(|| self.raw.owner_of(w))
        });
        if let Some(d) = wait.take_deadlock() {
            return Err(LockError::Deadlock(d));
        }
        wait.done();
        order.acquired(got.holds(), at);
        guard_or(self.entered(got), LockError::Timeout, || self.guard())
    }

    /// Names this monitor in deadlock reports (feature `deadlock-detection`; otherwise
    /// this does nothing), for this process and children it forks afterwards.
    pub fn set_label(&self, label: &str) {
        crate::deadlock::shared::set_label(self.addr(), label);
    }

    /// What a wait-for cycle found by a thread of this process blocked entering this
    /// monitor does, instead of the global [`deadlock::policy`](crate::deadlock::policy):
    /// under [`Policy::Error`](crate::deadlock::Policy::Error),
    /// [`enter_checked`](Monitor::enter_checked) returns [`LockError::Deadlock`]. As for
    /// [`Mutex::set_deadlock_policy`](super::Mutex::set_deadlock_policy), the policy
    /// belongs to this process, keyed by the monitor's address here.
    #[cfg(feature = "deadlock-detection")]
    pub fn set_deadlock_policy(&self, policy: crate::deadlock::Policy) {
        crate::deadlock::shared::set_policy(self.addr(), policy);
    }

    fn addr(&self) -> usize {
        std::ptr::from_ref(self).addr()
    }

    /// Enters if nobody (alive) is inside, without waiting.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] if a live thread is inside; otherwise as [`enter`](Monitor::enter).
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn try_enter(
        &self,
    ) -> Result<MonitorGuard<'_, T, C, P>, LockError<MonitorGuard<'_, T, C, P>>> {
        self.header.check(Kind::Monitor);
        // No lock-order edge for a try: it cannot deadlock. The monitor is held, though.
        let order = SharedOrder::no_edges(self.addr());
        let got = self.raw.try_lock();
        order.acquired(got.holds(), caller());
        guard_or(self.entered(got), LockError::WouldBlock, || self.guard())
    }

    /// Enters, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`] if another thread stayed inside; otherwise as [`enter`](Monitor::enter).
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn enter_timeout(
        &self,
        timeout: Duration,
    ) -> Result<MonitorGuard<'_, T, C, P>, LockError<MonitorGuard<'_, T, C, P>>> {
        self.header.check(Kind::Monitor);
        // No lock-order edge: a timed wait ends by itself.
        let order = SharedOrder::no_edges(self.addr());
        let deadline = crate::loom::time::now().checked_add(timeout);
        let got = self.raw.lock_until(deadline);
        order.acquired(got.holds(), caller());
        guard_or(self.entered(got), LockError::Timeout, || self.guard())
    }

    /// After an acquisition: if the previous holder died inside, wakes every condition
    /// waiter. The dead thread may have changed the state without notifying, and the
    /// taker may find nothing to repair and leave; each waiter re-checks its own state.
    fn entered(&self, got: Acquired) -> Acquired {
        if got == Acquired::OwnerDied {
            self.wake_all_conditions();
        }
        got
    }

    fn wake_all_conditions(&self) {
        for c in &self.conds {
            c.notify(u32::MAX);
        }
    }

    /// Leaves the monitor. Leaving it inconsistent makes it not recoverable: then every
    /// condition waiter is woken too, to re-enter and get `NotRecoverable`.
    ///
    /// # Safety
    ///
    /// The calling thread must be inside.
    unsafe fn leave(&self) {
        SharedOrder::released(self.addr());
        let lost = self.raw.is_inconsistent();
        // SAFETY: the caller is inside.
        unsafe { self.raw.unlock() };
        if lost {
            self.wake_all_conditions();
        }
    }

    fn guard(&self) -> MonitorGuard<'_, T, C, P> {
        MonitorGuard { monitor: self, _not_send: PhantomData }
    }

    fn cond(&self, cond: Condition) -> &CondWord<P> {
        self.conds.get(cond.index()).unwrap_or_else(|| {
            panic!("condition {} of a monitor with {C} conditions", cond.index())
        })
    }

    /// Wakes one thread waiting on `cond`, in any process.
    ///
    /// # Panics
    ///
    /// If `cond` is not one of this monitor's conditions.
    pub fn notify_one(&self, cond: Condition) {
        self.cond(cond).notify(1);
    }

    /// Wakes every thread waiting on `cond`, in every process.
    ///
    /// # Panics
    ///
    /// If `cond` is not one of this monitor's conditions.
    pub fn notify_all(&self, cond: Condition) {
        self.cond(cond).notify(u32::MAX);
    }

    /// Whether the monitor is lost for good (a snapshot).
    pub fn is_not_recoverable(&self) -> bool {
        self.raw.is_not_recoverable()
    }

    /// A mutable reference to the state; `&mut self` proves no thread is inside.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

impl<T, const C: usize, P: RobustPark> fmt::Debug for Monitor<T, C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("process::Monitor")
            .field("owner_tid", &self.raw.owner_tid())
            .field("conditions", &C)
            .field("not_recoverable", &self.is_not_recoverable())
            .finish_non_exhaustive()
    }
}

/// Unregisters a condition waiter when dropped: armed while a wait may unwind (a deadlock
/// report under the Panic policy), forgotten once the wait goes on normally.
struct Dequeue<'a, P: RobustPark>(&'a CondWord<P>);

impl<P: RobustPark> Drop for Dequeue<'_, P> {
    fn drop(&mut self) {
        self.0.dequeue();
    }
}

/// Proof of being inside a process-shared [`Monitor`]: derefs to the state; leaves when
/// dropped.
#[must_use = "the monitor is left as soon as the guard is dropped"]
pub struct MonitorGuard<'a, T, const C: usize = 1, P: RobustPark = DefaultSharedPark> {
    monitor: &'a Monitor<T, C, P>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a `&MonitorGuard` only gives `&T` (notifying touches only atomics).
unsafe impl<T: Sync, const C: usize, P: RobustPark> Sync for MonitorGuard<'_, T, C, P> {}

impl<'a, T, const C: usize, P: RobustPark> MonitorGuard<'a, T, C, P> {
    /// Leaves the monitor, sleeps until `cond` is notified (or a spurious wake-up) or the
    /// deadline, and enters again. Returns whether the deadline passed.
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    fn park(
        self,
        cond: Condition,
        deadline: Option<Instant>,
    ) -> Result<(Self, bool), LockError<Self>> {
        let monitor = self.monitor;
        let at = caller();
        // A wait while holding other locks is a hazard (nobody can take those meanwhile).
        // Checked before the thread counts as a waiter: a Panic policy unwinds from here
        // with nothing to undo.
        SharedOrder::cond_wait(monitor.addr(), cond.index(), at);
        let (word, seq) = monitor.cond(cond).enqueue();
        // Undoes the waiter count if the re-entry's lock-order check panics (Panic policy).
        let counted = Dequeue(monitor.cond(cond));
        std::mem::forget(self);
        // SAFETY: the guard (now forgotten) proved this thread holds the lock; it is taken
        // again below before a guard exists again.
        unsafe { monitor.leave() };
        // Parks in polls: a thread that dies inside the monitor may never notify, so
        // when a poll runs out with no notify, a waiter whose monitor is held by a dead
        // owner stops waiting (a spurious wake-up, which Mesa semantics allow) and
        // re-enters, to get `OwnerDied`.
        let mut poll = POLL_FIRST;
        // Deadlock detection: a wait that outlasts its first poll shows in the cross-process
        // registry until the loop ends (zero-sized and empty without the feature).
        let timed_out = {
            let mut wait = SharedWait::new(monitor.addr(), LockKind::Monitor, at, false);
            loop {
                match P::poll_wait(word, seq, deadline, poll, Some(monitor.raw.word())) {
                    ParkResult::TimedOut => break true,
                    ParkResult::Woken if word.load(Ordering::Relaxed) == seq => {
                        if monitor.raw.lost_owner() {
                            break false;
                        }
                        wait.parked_notify(cond.index());
                        poll = (poll * 2).min(POLL_MAX);
                    }
                    _ => break false,
                }
            }
        };
        // Back in: a blocking entry, with its lock-order edges.
        let order = SharedOrder::before_lock(monitor.addr(), at);
        std::mem::forget(counted);
        let got = monitor.entered(monitor.raw.lock_until(None));
        order.acquired(got.holds(), at);
        if got.holds() {
            monitor.cond(cond).dequeue();
        }
        guard_or(got, LockError::Timeout, || monitor.guard()).map(|g| (g, timed_out))
    }

    /// Leaves the monitor and sleeps until `cond` is notified (or a spurious wake-up), then
    /// enters again and hands the guard back. Re-check the state afterwards (Mesa
    /// semantics), or use [`wait_while`](MonitorGuard::wait_while).
    ///
    /// Call [`make_consistent`](MonitorGuard::make_consistent) before waiting on a guard
    /// that came from [`LockError::OwnerDied`]: leaving an inconsistent monitor makes it
    /// not recoverable.
    ///
    /// # Errors
    ///
    /// As [`Monitor::enter`], for the re-entry.
    ///
    /// # Panics
    ///
    /// If `cond` is not one of the monitor's conditions.
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn wait(self, cond: Condition) -> Result<Self, LockError<Self>> {
        self.park(cond, None).map(|(g, _)| g)
    }

    /// Waits on `cond` for as long as `condition` holds for the state; returns inside the
    /// monitor with `condition` false.
    ///
    /// # Errors
    ///
    /// As [`Monitor::enter`], for a re-entry: on [`LockError::OwnerDied`] the guard inside
    /// is returned without checking `condition` again.
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn wait_while(
        mut self,
        cond: Condition,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> Result<Self, LockError<Self>> {
        while condition(&mut *self) {
            self = self.wait(cond)?;
        }
        Ok(self)
    }

    /// Like [`wait`](MonitorGuard::wait), for at most `timeout`; the `bool` is whether the
    /// timeout passed without a notify reaching this thread.
    ///
    /// # Errors
    ///
    /// As [`Monitor::enter`], for the re-entry.
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn wait_timeout(
        self,
        cond: Condition,
        timeout: Duration,
    ) -> Result<(Self, bool), LockError<Self>> {
        self.park(cond, crate::loom::time::now().checked_add(timeout))
    }

    /// Declares the state repaired after [`LockError::OwnerDied`]. Without it, leaving the
    /// monitor makes it not recoverable.
    pub fn make_consistent(&mut self) {
        self.monitor.raw.make_consistent();
    }

    /// Whether this guard came from [`LockError::OwnerDied`] and has not been made
    /// consistent yet.
    pub fn is_inconsistent(&self) -> bool {
        self.monitor.raw.is_inconsistent()
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

impl<T, const C: usize, P: RobustPark> Deref for MonitorGuard<'_, T, C, P> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard proves this thread is inside, so no `&mut T` exists in any
        // process; the reference cannot outlive the borrow of the guard.
        self.monitor.data.with(|p| unsafe { &*p })
    }
}

impl<T, const C: usize, P: RobustPark> DerefMut for MonitorGuard<'_, T, C, P> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`; `&mut self` makes this the only reference from the guard.
        self.monitor.data.with_mut(|p| unsafe { &mut *p })
    }
}

impl<T, const C: usize, P: RobustPark> Drop for MonitorGuard<'_, T, C, P> {
    fn drop(&mut self) {
        // SAFETY: a guard exists only while its thread is inside, and leaves once (`park`
        // forgets the guard before it leaves).
        unsafe { self.monitor.leave() };
    }
}

impl<T: fmt::Debug, const C: usize, P: RobustPark> fmt::Debug for MonitorGuard<'_, T, C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(all(test, feature = "deadlock-detection", not(interproc_loom)))]
mod tests {
    use std::time::Duration;

    use super::Monitor;
    use crate::deadlock::{self, Policy};
    use crate::process::Mutex;
    use crate::shm::{Segment, ShmSafe};
    use crate::Condition;

    #[repr(C)]
    struct Pair {
        mon: Monitor<u32>,
        m: Mutex<u32>,
    }

    // SAFETY: `#[repr(C)]`; process-shared primitives, no pointers.
    unsafe impl ShmSafe for Pair {}

    /// Regression: under the Panic policy, a condition wait reported as a hazard (it holds
    /// another lock) unwound after the thread had counted itself as a waiter, so the
    /// condition's count in shared memory stayed one too high (every later notify paid a
    /// futex wake for nobody).
    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot map shared memory")]
    fn a_panicking_hazard_report_leaves_no_waiter_counted() {
        deadlock::set_logging(false);
        let p = Segment::anonymous(Pair { mon: Monitor::new(0), m: Mutex::new(0) }).unwrap();
        p.mon.set_label("hazard-mon");
        p.m.set_label("hazard-m");
        p.mon.set_deadlock_policy(Policy::Panic);
        let held = p.m.lock().unwrap();
        let g = p.mon.enter().unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            g.wait_timeout(Condition::new(0), Duration::from_millis(1)).map(|_| ())
        }));
        drop(held);
        assert!(r.is_err(), "the Panic policy panics on the hazard");
        assert_eq!(p.mon.conds[0].waiters(), 0, "the waiter count is back to 0");
        // The monitor was left by the unwinding guard: it can be entered again.
        drop(p.mon.try_enter().unwrap());
    }
}
