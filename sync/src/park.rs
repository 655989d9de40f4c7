//! How a thread blocks: the [`Park`] trait and its backends.
//!
//! The primitives in this crate are state machines on 32-bit atomic words. When a thread
//! must wait for a word to change it *parks* on that word, and the thread that changes it
//! *wakes* parked threads. That is all the algorithms need from the operating system, so
//! they are generic over [`Park`]:
//!
//! | backend | use | blocks with |
//! |---|---|---|
//! | [`PrivateFutex`] | threads of one process (the default) | `FUTEX_WAIT_BITSET_PRIVATE` / `FUTEX_WAKE_PRIVATE` |
//! | [`SharedFutex`] | words in `MAP_SHARED` memory used by several processes | `FUTEX_WAIT_BITSET` / `FUTEX_WAKE` |
//! | `ModelPark` (only under `--cfg interproc_loom`) | loom models | a modelled futex queue |
//!
//! [`DefaultPark`] is [`PrivateFutex`], or the model under `--cfg interproc_loom`.

use std::time::{Duration, Instant};

/// The word type a [`Park`] backend waits on: std's `AtomicU32` (behind a transparent
/// newtype that derefs to it), or loom's under `--cfg interproc_loom`.
pub use crate::loom::atomic::AtomicU32;

/// How a [`Park::wait`] ended. Callers must treat every result as a hint and re-check
/// their word: a futex may return early for reasons of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParkResult {
    /// A [`Park::wake`] ended the wait, or the wait returned spuriously.
    Woken,
    /// The word did not hold the expected value, so the thread never slept.
    Changed,
    /// The deadline passed before a wake-up reached this thread.
    TimedOut,
}

/// Blocking on a 32-bit atomic word: the futex contract.
///
/// Implementors guarantee the property every futex algorithm relies on: the comparison of
/// the word with `expected` in [`wait`](Park::wait) and the enqueueing of the thread are
/// atomic with respect to [`wake`](Park::wake) on the same word. So a waker that changes
/// the word *before* calling `wake` either finds the waiter enqueued, or the waiter sees
/// the new value and does not sleep. No wake-up is lost.
///
/// A backend is a type, not a value (the futex backends hold no state; the kernel keeps
/// its wait queues keyed by address), so the primitives carry it as a type parameter at no
/// cost in size.
pub trait Park {
    /// Blocks the calling thread while `word` holds `expected`, until a [`wake`](Park::wake)
    /// on the same word reaches it, or until `deadline` (if any) passes. May return early
    /// ([`ParkResult::Woken`] without a wake).
    fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> ParkResult;

    /// Wakes up to `n` threads parked on `word` (`u32::MAX`: all of them); returns how many
    /// it woke.
    ///
    /// `word` is taken as a raw pointer because it is only an identity: implementations
    /// must not dereference it. A primitive calls `wake` *after* the store that lets a
    /// waiter proceed, and that waiter may already have freed or unmapped the word.
    fn wake(word: *const AtomicU32, n: u32) -> usize;
}

/// The identity of a thread or a process as the robust primitives record it in shared
/// memory: the kernel's id (a tid or a pid) and a *stamp*, the low 32 bits of its start
/// time in clock ticks since boot (field 22 of `/proc/<id>/stat`).
///
/// Ids are reused, but never twice within one clock tick, so the pair names one thread or
/// process for the life of the machine: a recycled tid has another stamp. A stamp of 0
/// means "unknown" (no `/proc`); then only the id's existence can be checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TaskId {
    /// The tid or pid.
    pub id: u32,
    /// The low 32 bits of the start time, in clock ticks since boot; 0 if unknown.
    pub stamp: u32,
}

impl TaskId {
    /// The id and stamp in one `u64` (id in the high half), as stored in shared memory.
    #[inline]
    pub fn pack(self) -> u64 {
        (u64::from(self.id) << 32) | u64::from(self.stamp)
    }

    /// The inverse of [`pack`](TaskId::pack).
    #[inline]
    pub fn unpack(v: u64) -> Self {
        TaskId { id: (v >> 32) as u32, stamp: v as u32 }
    }
}

/// A [`Park`] backend for the robust, process-shared primitives of
/// [`process`](crate::process): besides blocking, it names the calling thread and process,
/// and tells whether a named one has died.
///
/// The kernel's robust-futex list belongs to glibc (one list head per thread), so the
/// primitives cannot ask the kernel to mark a dead owner's futex. Instead the lock word
/// holds the owner's tid, the owner publishes its [`TaskId`] beside it, and a waiter that
/// has waited [`poll`](RobustPark::poll_wait) long checks whether the owner still lives.
pub trait RobustPark: Park {
    /// The calling thread.
    fn current_thread() -> TaskId;
    /// The calling process.
    fn current_process() -> TaskId;
    /// Whether the thread `who` has died, or its id now names another thread.
    fn is_dead(who: TaskId) -> bool;
    /// Whether the process `who` has died, or its id now names another process. (A
    /// process outlives its main thread while another thread runs.)
    fn is_process_dead(who: TaskId) -> bool {
        Self::is_dead(who)
    }
    /// Waits like [`Park::wait`], but for at most `poll` at a time, so that a waiter
    /// returns now and then to check whether the thread it waits for has died.
    ///
    /// `owner` is the robust lock word whose owner the waiter watches (`None`: some other
    /// party, such as the holders of a semaphore's permits). The real backends ignore it;
    /// the loom model uses it to time the poll out only when that owner has died, so that
    /// a wake-up lost while the owner lives still shows as a deadlock.
    fn poll_wait(
        word: &AtomicU32,
        expected: u32,
        deadline: Option<Instant>,
        poll: Duration,
        owner: Option<&AtomicU32>,
    ) -> ParkResult {
        let _ = owner;
        let until = crate::loom::time::now().checked_add(poll);
        let bounded = match (deadline, until) {
            (Some(d), Some(u)) => Some(d.min(u)),
            (d, u) => d.or(u),
        };
        match Self::wait(word, expected, bounded) {
            // Only the caller's own deadline counts as a time-out; the poll is not one.
            ParkResult::TimedOut if deadline.is_some_and(|d| crate::loom::time::now() < d) => {
                ParkResult::Woken
            }
            ParkResult::TimedOut if deadline.is_none() => ParkResult::Woken,
            r => r,
        }
    }
}

/// Private futex (`FUTEX_PRIVATE_FLAG`): for words that only threads of this process use.
///
/// The kernel keys private futexes by (address space, address), which skips the page lookup
/// that shared futexes need.
#[cfg(not(interproc_loom))]
#[derive(Clone, Copy, Debug, Default)]
pub struct PrivateFutex;

#[cfg(not(interproc_loom))]
impl Park for PrivateFutex {
    fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> ParkResult {
        crate::sys::futex_wait(word, expected, deadline, false).into()
    }

    fn wake(word: *const AtomicU32, n: u32) -> usize {
        crate::sys::futex_wake(word, n, false)
    }
}

/// Shared futex (no `FUTEX_PRIVATE_FLAG`): for words in `MAP_SHARED` memory (a memfd or
/// POSIX shared memory mapping) waited on by several processes.
///
/// The kernel keys shared futexes by the backing page and offset, so two processes that map
/// the same object at different addresses still meet on the same queue. It also works for
/// threads, at the cost of that page lookup.
#[cfg(not(interproc_loom))]
#[derive(Clone, Copy, Debug, Default)]
pub struct SharedFutex;

#[cfg(not(interproc_loom))]
impl Park for SharedFutex {
    fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> ParkResult {
        crate::sys::futex_wait(word, expected, deadline, true).into()
    }

    fn wake(word: *const AtomicU32, n: u32) -> usize {
        crate::sys::futex_wake(word, n, true)
    }
}

#[cfg(not(interproc_loom))]
impl RobustPark for SharedFutex {
    fn current_thread() -> TaskId {
        crate::sys::current_thread()
    }

    fn current_process() -> TaskId {
        crate::sys::current_process()
    }

    fn is_dead(who: TaskId) -> bool {
        crate::sys::is_dead(who)
    }

    fn is_process_dead(who: TaskId) -> bool {
        crate::sys::is_process_dead(who)
    }
}

#[cfg(not(interproc_loom))]
impl From<crate::sys::Wait> for ParkResult {
    fn from(w: crate::sys::Wait) -> Self {
        match w {
            crate::sys::Wait::Woken => ParkResult::Woken,
            crate::sys::Wait::Changed => ParkResult::Changed,
            crate::sys::Wait::TimedOut => ParkResult::TimedOut,
        }
    }
}

/// The backend the primitives use unless told otherwise: [`PrivateFutex`], or the loom
/// model under `--cfg interproc_loom`.
#[cfg(not(interproc_loom))]
pub type DefaultPark = PrivateFutex;

/// The backend of the process-shared primitives ([`process`](crate::process)):
/// [`SharedFutex`], or the loom model under `--cfg interproc_loom`.
#[cfg(not(interproc_loom))]
pub type DefaultSharedPark = SharedFutex;

/// The backend of the process-shared primitives: the loom model.
#[cfg(interproc_loom)]
pub type DefaultSharedPark = model::ModelPark;

/// The backend the primitives use unless told otherwise: the loom model.
#[cfg(interproc_loom)]
pub type DefaultPark = model::ModelPark;

#[cfg(interproc_loom)]
pub use model::ModelPark;

#[cfg(interproc_loom)]
pub mod model {
    //! A futex for loom.
    //!
    //! Like the kernel, the model keeps one wait queue per word address (its "futex hash
    //! table" is reset for every loom execution). Each queue sits behind a loom mutex, which
    //! makes "compare the word, then enqueue" atomic with respect to wakers, as in the
    //! kernel.
    //!
    //! Each (thread, word) pair sleeps on its own `loom::sync::Notify`, which loom lets
    //! return once spuriously, so every untimed wait is explored both ways: woken by a
    //! `wake`, and returning early with nobody having woken it.
    //!
    //! A timed wait does not sleep on the `Notify`: after enqueueing it yields, which lets
    //! loom run any other threads for as long as it likes, then it times out unless a
    //! `wake` dequeued it in the meantime. So the timeout fires at every point loom
    //! explores, and a timed waiter can never look like a deadlock. As in the kernel, a
    //! waiter that a `wake` has dequeued reports [`ParkResult::Woken`] even if its timeout
    //! fired too; one that timed out first is no longer queued, so the `wake` goes to
    //! another waiter.
    #![allow(clippy::disallowed_types)]

    use std::collections::HashMap;
    use std::sync::Mutex as StdMutex;
    use std::time::Instant;

    use loom::sync::{Arc, Mutex, Notify};
    use loom::thread::ThreadId;

    use super::{Park, ParkResult};
    use crate::loom::atomic::{AtomicU32, Ordering};

    /// The loom model of a futex; see the module documentation of `park`.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct ModelPark;

    #[derive(Default)]
    struct Queue {
        /// Threads enqueued on this word, in arrival order, with their `Notify`.
        waiting: Vec<(ThreadId, Arc<Notify>)>,
        /// One `Notify` per thread that ever waited here (reused, so that loom explores
        /// one spurious wake-up per thread and word, not an unbounded number).
        notifies: Vec<(ThreadId, Arc<Notify>)>,
    }

    type Table = StdMutex<HashMap<usize, Arc<Mutex<Queue>>>>;

    loom::lazy_static! {
        // Keyed by address, like the kernel's futex hash. The std mutex only guards the
        // bookkeeping of this map (loom runs one thread at a time and no loom operation
        // happens while it is held); the modelled lock is the per-word loom mutex.
        static ref TABLE: Table = StdMutex::new(HashMap::new());
    }

    fn queue(word: *const AtomicU32) -> Arc<Mutex<Queue>> {
        let mut table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
        table.entry(word as usize).or_insert_with(|| Arc::new(Mutex::new(Queue::default()))).clone()
    }

    /// What a liveness poll watches: a robust lock word's owner, or (`None`) anyone.
    type Watch<'a> = Option<&'a AtomicU32>;

    /// The modelled futex wait. With `poll`, an untimed wait is a liveness poll: it is
    /// timed if the watched owner (or, watching anyone, some model thread) has died,
    /// checked under the queue lock, so a death either comes first and is seen, or comes
    /// later and ends the wait through `poll_timeouts`.
    fn wait(
        word: &AtomicU32,
        expected: u32,
        deadline: Option<Instant>,
        poll: Option<Watch<'_>>,
    ) -> ParkResult {
        let me = loom::thread::current().id();
        let q = queue(word);
        let (notify, timed) = {
            let mut g = q.lock().unwrap();
            // SeqCst: the kernel's futex_wait implies a full barrier before the compare.
            if word.load(Ordering::SeqCst) != expected {
                return ParkResult::Changed;
            }
            let notify = match g.notifies.iter().find(|(t, _)| *t == me) {
                Some((_, n)) => n.clone(),
                None => {
                    let n = Arc::new(Notify::new());
                    g.notifies.push((me, n.clone()));
                    n
                }
            };
            g.waiting.push((me, notify.clone()));
            let timed = deadline.is_some()
                || match poll {
                    None => false,
                    Some(None) => !tasks().dead.is_empty(),
                    Some(Some(owner)) => {
                        let tid = owner.load(Ordering::SeqCst) & crate::robust::TID;
                        tid != 0 && tasks().dead.contains(&tid)
                    }
                };
            (notify, timed)
        };
        if timed {
            loom::thread::yield_now();
        } else {
            notify.wait();
        }
        let mut g = q.lock().unwrap();
        match g.waiting.iter().position(|(t, _)| *t == me) {
            // Dequeued by a `wake`: woken, whatever else happened.
            None => ParkResult::Woken,
            Some(i) => {
                g.waiting.remove(i);
                if timed {
                    ParkResult::TimedOut
                } else {
                    ParkResult::Woken // spurious
                }
            }
        }
    }

    impl Park for ModelPark {
        fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> ParkResult {
            wait(word, expected, deadline, None)
        }

        fn wake(word: *const AtomicU32, n: u32) -> usize {
            let q = queue(word);
            let mut g = q.lock().unwrap();
            let k = (n as usize).min(g.waiting.len());
            for (_, notify) in g.waiting.drain(..k) {
                notify.notify();
            }
            k
        }
    }

    /// Model-wide bookkeeping for the robust primitives: identities and deaths.
    #[derive(Default)]
    struct Tasks {
        /// Model threads in order of first use; a thread's id is its index + 1.
        ids: Vec<ThreadId>,
        /// Ids of threads that have "died".
        dead: Vec<u32>,
        /// Per thread id: the death point at which it dies (counting down), if told to.
        die_at: Vec<(u32, usize)>,
    }

    loom::lazy_static! {
        static ref TASKS: StdMutex<Tasks> = StdMutex::new(Tasks::default());
        /// Bumped (Release) by each death and read (Acquire) by each liveness check: what a
        /// thread wrote before it died happens-before the check that finds it dead, as
        /// exit(2) and a read of `/proc` order them for real processes.
        static ref DEATHS: loom::sync::atomic::AtomicUsize = loom::sync::atomic::AtomicUsize::new(0);
    }

    fn record_death(me: u32) {
        tasks().dead.push(me);
        DEATHS.fetch_add(1, Ordering::Release);
    }

    fn tasks() -> std::sync::MutexGuard<'static, Tasks> {
        TASKS.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn my_id() -> u32 {
        let me = loom::thread::current().id();
        let mut t = tasks();
        let i = match t.ids.iter().position(|x| *x == me) {
            Some(i) => i,
            None => {
                t.ids.push(me);
                t.ids.len() - 1
            }
        };
        u32::try_from(i + 1).expect("few model threads")
    }

    /// The payload a model thread unwinds with when it "dies" at a death point. Catch it
    /// with `std::panic::catch_unwind` in the model thread.
    #[derive(Debug)]
    pub struct Died;

    /// The model's clock, which stands still: what the algorithms compare deadlines
    /// against. A model makes a deadline that has already passed (a "try") with
    /// `Some(model::now())`, and one that lies ahead with `model::now() + d` (which the
    /// modelled futex may still let time out at any point). The wall clock does not count
    /// in the model: a deadline made from `Instant::now()` has not passed.
    pub fn now() -> std::time::Instant {
        crate::loom::time::now()
    }

    /// Tells the calling model thread to die at its `k`-th death point from now (1: the
    /// next one). Death points sit between the steps of the robust primitives' protocols.
    pub fn die_at(k: usize) {
        let me = my_id();
        let mut t = tasks();
        t.die_at.retain(|(id, _)| *id != me);
        t.die_at.push((me, k));
    }

    /// Marks the calling model thread dead without unwinding (as if killed while inside a
    /// critical section, after `mem::forget` of its guard).
    pub fn mark_dead() {
        record_death(my_id());
        poll_timeouts();
    }

    /// A death is noticed by waiters whose bounded poll times out. Their untimed model
    /// waits (see `poll_wait`) are ended here instead, as spurious wake-ups: each waiter
    /// stays queued, finds itself so and reports `Woken`, then polls with timed waits.
    fn poll_timeouts() {
        let queues: Vec<_> =
            TABLE.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        for q in queues {
            let g = q.lock().unwrap();
            for (_, notify) in &g.waiting {
                notify.notify();
            }
        }
    }

    /// Whether the calling thread died at a death point since it was told to.
    pub fn died(err: &(dyn std::any::Any + Send)) -> bool {
        err.is::<Died>()
    }

    pub(crate) fn dying() -> bool {
        if !std::thread::panicking() {
            return false;
        }
        let me = my_id();
        tasks().dead.contains(&me)
    }

    #[track_caller]
    pub(crate) fn death_point() {
        let me = my_id();
        let die = {
            let mut t = tasks();
            match t.die_at.iter_mut().find(|(id, _)| *id == me) {
                Some((_, k)) if *k <= 1 => {
                    t.die_at.retain(|(id, _)| *id != me);
                    true
                }
                Some((_, k)) => {
                    *k -= 1;
                    false
                }
                None => false,
            }
        };
        if die {
            if std::env::var_os("INTERPROC_LOOM_TRACE").is_some() {
                eprintln!("model thread {me} dies at {}", std::panic::Location::caller());
            }
            record_death(me);
            poll_timeouts();
            std::panic::resume_unwind(Box::new(Died));
        }
    }

    impl super::RobustPark for ModelPark {
        fn current_thread() -> super::TaskId {
            super::TaskId { id: my_id(), stamp: 1 }
        }

        fn current_process() -> super::TaskId {
            Self::current_thread()
        }

        fn is_dead(who: super::TaskId) -> bool {
            DEATHS.load(Ordering::Acquire);
            tasks().dead.contains(&who.id)
        }

        /// While the watched owner lives, an untimed wait stays untimed, so that loom still
        /// reports a lost wake-up as a deadlock; once it has died, the poll is a timed
        /// wait, which loom lets time out at any point.
        fn poll_wait(
            word: &AtomicU32,
            expected: u32,
            deadline: Option<Instant>,
            _poll: std::time::Duration,
            owner: Option<&AtomicU32>,
        ) -> ParkResult {
            match wait(word, expected, deadline, Some(owner)) {
                ParkResult::TimedOut if deadline.is_none() => ParkResult::Woken,
                r => r,
            }
        }
    }
}
