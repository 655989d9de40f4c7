//! The robust lock under [`process::Mutex`](crate::process::Mutex),
//! [`process::Monitor`](crate::process::Monitor) and the ledger of
//! [`process::Semaphore`](crate::process::Semaphore): a futex mutex whose word names its
//! owner, so that a waiter can tell when the owner has died.
//!
//! The word follows the layout of the kernel's robust futexes (futex(2), "Robust
//! futexes"):
//! - bits 0..30: the owner's tid, `0` when unlocked;
//! - bit 31 ([`WAITERS`]): threads may be parked on the word;
//! - the value [`NOT_RECOVERABLE`] (a tid no kernel hands out): the lock is lost for good.
//!
//! The kernel's robust list, which would mark a dead owner's word for us, belongs to glibc
//! (one list head per thread, set by `set_robust_list` at thread start), so this lock does
//! its own clean-up:
//! - the owner publishes its [`TaskId`] (tid and start stamp) in `owner` right after it
//!   takes the word, and clears it before it releases the word;
//! - a waiter parks for a bounded time only ([`POLL_FIRST`], doubling up to [`POLL_MAX`]),
//!   and each time the poll runs out it checks whether the tid in the word still lives
//!   (with the published stamp, if it matches the tid, so a recycled tid is not taken for
//!   the owner);
//! - if the owner is dead, the waiter takes the word over by compare-and-swap, keeping the
//!   [`WAITERS`] bit for the others, marks the lock *inconsistent* and returns
//!   [`Acquired::OwnerDied`]. Releasing an inconsistent lock (no `make_consistent`) makes it
//!   [`NOT_RECOVERABLE`] and wakes everyone.
//!
//! Uncontended lock and unlock make no syscall: one compare-and-swap and two plain stores
//! (publish and clear the owner) beyond a plain futex mutex. The liveness check reads
//! `/proc/<tid>/stat`; it runs after a waiter has been parked for a poll period, and in a
//! `try_lock` that finds the lock held (so that `try_lock` can take over from a dead
//! owner), which makes a failed `try_lock` cost a `/proc` read.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use crate::loom::atomic::{AtomicU32, AtomicU64, Ordering};
use crate::loom::{death_point, hint};
use crate::park::{ParkResult, RobustPark, TaskId};

/// Threads may be parked on the word.
pub(crate) const WAITERS: u32 = 1 << 31;
/// The owner's tid.
pub(crate) const TID: u32 = WAITERS - 1;
/// The lock was left inconsistent by a dead owner and released without repair. No tid can
/// have this value: the kernel's `pid_max` is at most 2²² (`PID_MAX_LIMIT`).
pub(crate) const NOT_RECOVERABLE: u32 = TID;

const CONSISTENT: u32 = 0;
const INCONSISTENT: u32 = 1;

/// The first poll period of a parked waiter; it doubles each time up to [`POLL_MAX`]. So
/// the death of an owner is noticed within about `POLL_MAX` (plus the wait for the lock the
/// owner held before it died, if that was long), and a waiter that waits long checks the
/// owner's liveness about 10 times a second.
pub(crate) const POLL_FIRST: Duration = Duration::from_micros(250);
/// The longest poll period.
pub(crate) const POLL_MAX: Duration = Duration::from_millis(100);

/// How an acquisition ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The caller holds the lock.
    Locked,
    /// The caller holds the lock, taken over from an owner that died holding it: the data
    /// may be half-updated. Releasing without `make_consistent` makes it not recoverable.
    OwnerDied,
    /// The caller does not hold the lock: it is not recoverable.
    NotRecoverable,
    /// The caller does not hold the lock: it is held (try) or the deadline passed.
    Busy,
}

impl Acquired {
    pub(crate) fn holds(self) -> bool {
        matches!(self, Acquired::Locked | Acquired::OwnerDied)
    }
}

/// A robust lock: `#[repr(C)]`, 16 bytes, no pointers.
#[repr(C)]
pub(crate) struct RawRobust<P> {
    word: AtomicU32,
    /// [`CONSISTENT`] or [`INCONSISTENT`]; written by the holder only.
    consistency: AtomicU32,
    /// The holder's packed [`TaskId`], or 0 while not (yet) published.
    owner: AtomicU64,
    _park: PhantomData<fn() -> P>,
}

impl<P: RobustPark> RawRobust<P> {
    pub(crate) fn new() -> Self {
        Self {
            word: AtomicU32::new(0),
            consistency: AtomicU32::new(CONSISTENT),
            owner: AtomicU64::new(0),
            _park: PhantomData,
        }
    }

    /// Takes the lock if it is free or its owner has died; never waits.
    pub(crate) fn try_lock(&self) -> Acquired {
        let me = P::current_thread();
        // Acquire: pairs with the Release of `unlock`.
        match self.word.compare_exchange(0, me.id, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => self.locked(me),
            Err(NOT_RECOVERABLE) => Acquired::NotRecoverable,
            Err(w) => self.take_over_if_dead(w, me).unwrap_or(Acquired::Busy),
        }
    }

    /// Takes the lock, waiting until `deadline` (forever if `None`).
    #[inline]
    pub(crate) fn lock_until(&self, deadline: Option<Instant>) -> Acquired {
        self.lock_until_with(deadline, |_| true)
    }

    /// [`lock_until`](RawRobust::lock_until) with a hook for the deadlock detector:
    /// `on_park(w)` runs each time the caller is about to park on the word `w` (after its
    /// spin phase; never on the uncontended path). If it returns `false` the caller gives
    /// up and gets [`Acquired::Busy`], as when a deadline passes (leaving loses no wake-up:
    /// see `lock_contended`). Without the feature the hook is a constant `true`.
    #[inline]
    pub(crate) fn lock_until_with(
        &self,
        deadline: Option<Instant>,
        on_park: impl FnMut(u32) -> bool,
    ) -> Acquired {
        let me = P::current_thread();
        match self.word.compare_exchange(0, me.id, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => self.locked(me),
            Err(w) => self.lock_contended(w, me, deadline, on_park),
        }
    }

    #[cold]
    fn lock_contended(
        &self,
        mut w: u32,
        me: TaskId,
        deadline: Option<Instant>,
        mut on_park: impl FnMut(u32) -> bool,
    ) -> Acquired {
        let mut poll = POLL_FIRST;
        let mut spins = hint::SPIN_LIMIT;
        loop {
            if w == NOT_RECOVERABLE {
                return Acquired::NotRecoverable;
            }
            if w & TID == 0 {
                // Free. Take it with the waiters bit set: others may be parked (it is only
                // cleared by the unlock that wakes one of them).
                match self.word.compare_exchange(
                    w,
                    me.id | WAITERS,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return self.locked(me),
                    Err(now) => {
                        w = now;
                        continue;
                    }
                }
            }
            if w & WAITERS == 0 && spins > 0 {
                // Held, nobody parked: the owner may be about to release it.
                spins -= 1;
                hint::spin_loop();
                w = self.word.load(Ordering::Relaxed);
                continue;
            }
            if w & WAITERS == 0 {
                if let Err(now) =
                    self.word.compare_exchange(w, w | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                {
                    w = now;
                    continue;
                }
                w |= WAITERS;
            }
            // The futex only times out when it really sleeps, so check the deadline here
            // too. Leaving loses nobody's wake-up: the word keeps its waiters bit, so the
            // owner's unlock still wakes one of the others.
            if crate::loom::time::passed(deadline) {
                return Acquired::Busy;
            }
            if !on_park(w) {
                return Acquired::Busy;
            }
            match P::poll_wait(&self.word, w, deadline, poll, Some(&self.word)) {
                ParkResult::TimedOut => {
                    // The caller's deadline: one last try, as in the private mutex.
                    return match self.word.load(Ordering::Acquire) {
                        NOT_RECOVERABLE => Acquired::NotRecoverable,
                        now if now & TID == 0 => {
                            match self.word.compare_exchange(
                                now,
                                me.id | WAITERS,
                                Ordering::Acquire,
                                Ordering::Relaxed,
                            ) {
                                Ok(_) => self.locked(me),
                                Err(_) => Acquired::Busy,
                            }
                        }
                        now => self.take_over_if_dead(now, me).unwrap_or(Acquired::Busy),
                    };
                }
                ParkResult::Changed => {}
                ParkResult::Woken => {
                    // A wake-up, a spurious return, or the poll ran out: if the word still
                    // names the same owner, check that it lives.
                    let now = self.word.load(Ordering::Acquire);
                    if now == w {
                        if let Some(got) = self.take_over_if_dead(now, me) {
                            return got;
                        }
                        poll = (poll * 2).min(POLL_MAX);
                    }
                }
            }
            w = self.word.load(Ordering::Relaxed);
        }
    }

    /// The word was just taken by `me` the normal way: publish the owner.
    fn locked(&self, me: TaskId) -> Acquired {
        death_point();
        // Relaxed: read by waiters after an Acquire load of the word that names `me`, and
        // only compared with that word's tid (see `owner_of`).
        self.owner.store(me.pack(), Ordering::Relaxed);
        death_point();
        Acquired::Locked
    }

    /// If the owner named by `w` (a word seen held) has died, takes the lock over from it
    /// and returns `Some(OwnerDied)`; `None` if the owner lives or another thread changed
    /// the word first.
    fn take_over_if_dead(&self, w: u32, me: TaskId) -> Option<Acquired> {
        let record = self.owner.load(Ordering::Relaxed);
        if !P::is_dead(self.owner_of(w)) {
            return None;
        }
        // The check took a while (a read of `/proc`): take over only if nothing changed
        // meanwhile. Otherwise another waiter took over, and the lock may since have gone
        // to a new thread that recycled the dead tid (tid ABA), or the current taker has not
        // published itself yet; either way the next poll decides afresh. A tid recycled in
        // the few instructions between this re-check and the swap below is not excluded,
        // but needs `pid_max` ids spent in that window.
        if self.word.load(Ordering::Acquire) != w || self.owner.load(Ordering::Relaxed) != record {
            return None;
        }
        // Keep the waiters bit: others may be parked on the dead owner's word.
        self.word
            .compare_exchange(w, me.id | (w & WAITERS), Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        death_point();
        self.consistency.store(INCONSISTENT, Ordering::Relaxed);
        death_point();
        self.owner.store(me.pack(), Ordering::Relaxed);
        death_point();
        Some(Acquired::OwnerDied)
    }

    /// Who owns the lock whose word is `w`: the published identity if it belongs to the
    /// tid in `w`, otherwise (not yet published, or the owner died before publishing) the
    /// bare tid, whose liveness can then only be checked by existence.
    ///
    /// The caller loaded `w` with Acquire. That load synchronises with the Release of the
    /// unlock before the current owner took the word (the owner's compare-and-swap
    /// continues that release sequence), and that unlock cleared `owner` before
    /// releasing. So the value read here is 0, the current owner's, or a later one: never
    /// an old owner's record with a recycled tid.
    pub(crate) fn owner_of(&self, w: u32) -> TaskId {
        let tid = w & TID;
        let published = TaskId::unpack(self.owner.load(Ordering::Relaxed));
        if published.id == tid {
            published
        } else {
            TaskId { id: tid, stamp: 0 }
        }
    }

    /// The lock word, for a liveness poll that watches this lock's owner.
    pub(crate) fn word(&self) -> &AtomicU32 {
        &self.word
    }

    /// Whether the word names an owner that has died, or the lock is not recoverable (a
    /// waiter on something else, such as a monitor's condition, checks this when its poll
    /// runs out: either way, nobody may be left to wake it).
    pub(crate) fn lost_owner(&self) -> bool {
        self.is_not_recoverable() || self.held_by_dead()
    }

    /// Whether the word names an owner that has died.
    pub(crate) fn held_by_dead(&self) -> bool {
        let w = self.word.load(Ordering::Acquire);
        w & TID != 0 && w != NOT_RECOVERABLE && P::is_dead(self.owner_of(w))
    }

    /// Marks the data repaired after `OwnerDied`.
    pub(crate) fn make_consistent(&self) {
        self.consistency.store(CONSISTENT, Ordering::Relaxed);
    }

    /// Whether the holder took the lock over from a dead owner and has not called
    /// `make_consistent` yet. Meaningful only to the holder.
    pub(crate) fn is_inconsistent(&self) -> bool {
        self.consistency.load(Ordering::Relaxed) == INCONSISTENT
    }

    /// Releases the lock. If it is still inconsistent, it becomes not recoverable.
    ///
    /// # Safety
    ///
    /// The calling thread must hold the lock.
    pub(crate) unsafe fn unlock(&self) {
        if crate::loom::dying() {
            return; // a model thread unwinding out of its "death" runs no destructor
        }
        // A guard copied into a fork child (whose thread has another tid) must not unlock
        // the parent's lock: only the thread named in the word releases it.
        if self.word.load(Ordering::Relaxed) & TID != P::current_thread().id {
            return;
        }
        let word: *const AtomicU32 = &self.word;
        let (next, wake) =
            if self.is_inconsistent() { (NOT_RECOVERABLE, u32::MAX) } else { (0, 1) };
        self.owner.store(0, Ordering::Relaxed);
        death_point();
        // Release: publishes the critical section (and the cleared owner) to the next
        // locker. After this swap the memory may be unmapped by another thread of this
        // process, so only the address is used from here on.
        let old = self.word.swap(next, Ordering::Release);
        if old & WAITERS != 0 || next == NOT_RECOVERABLE {
            death_point();
            P::wake(word, wake);
        }
    }

    /// The tid in the word, 0 if unlocked (a racy snapshot, for `Debug`).
    pub(crate) fn owner_tid(&self) -> Option<u32> {
        match self.word.load(Ordering::Relaxed) & TID {
            0 | NOT_RECOVERABLE => None,
            tid => Some(tid),
        }
    }

    /// Whether the lock is not recoverable (a racy snapshot).
    pub(crate) fn is_not_recoverable(&self) -> bool {
        self.word.load(Ordering::Relaxed) == NOT_RECOVERABLE
    }
}
