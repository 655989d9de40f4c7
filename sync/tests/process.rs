//! The process-shared primitives across real processes: forked children (and, to open by
//! name, a re-executed copy of this test binary), each under a watchdog that kills a hung
//! child and fails the test. Crashes are real: `SIGKILL`.
//!
//! No test asserts how long anything takes.
#![cfg(not(interproc_loom))] // real processes; the models are in loom_process.rs
#![cfg_attr(miri, allow(unused))]
// Test bookkeeping in shared memory uses std's atomics; the primitives under test take
// theirs from the crate's facade.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use interproc_sync::process::{LockError, Monitor, Mutex, Semaphore};
use interproc_sync::shm::{Segment, ShmSafe};
use interproc_sync::{Condition, Error};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult, Pid};

/// How long any child may take before the watchdog kills it.
const WATCHDOG: Duration = Duration::from_secs(60);

/// Forks a child that runs `f` and exits 0, or 101 if `f` panics.
fn child(f: impl FnOnce()) -> Pid {
    // SAFETY: the test harness runs other tests on other threads; the child only uses
    // memory it inherited, futexes, `/proc` reads and glibc's malloc (which glibc makes
    // safe in a fork child), then `_exit`s without running the parent's handlers.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_ok();
            // SAFETY: `_exit` ends the child at once, skipping the harness's atexit
            // handlers and destructors, which belong to the parent.
            unsafe { libc::_exit(if ok { 0 } else { 101 }) }
        }
        ForkResult::Parent { child } => child,
    }
}

/// Waits up to `limit` for `pid`; `None` (after killing and reaping it) if it is still
/// running then.
fn wait_for(pid: Pid, limit: Duration) -> Option<WaitStatus> {
    let until = Instant::now() + limit;
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)).expect("waitpid") {
            WaitStatus::StillAlive if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(2))
            }
            WaitStatus::StillAlive => {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
                return None;
            }
            s => return Some(s),
        }
    }
}

/// Waits for `pid` under the watchdog; returns how it ended.
fn wait(pid: Pid) -> WaitStatus {
    wait_for(pid, WATCHDOG)
        .unwrap_or_else(|| panic!("watchdog: child {pid} hung for {WATCHDOG:?} and was killed"))
}

/// Waits for every child under the watchdog and checks each exited 0.
fn wait_all(pids: impl IntoIterator<Item = Pid>) {
    for pid in pids {
        assert_eq!(wait(pid), WaitStatus::Exited(pid, 0), "child {pid} failed");
    }
}

/// A one-byte signal from a child to the parent: "I hold it now".
struct Signal1 {
    rx: std::fs::File,
    tx: std::fs::File,
}

impl Signal1 {
    fn new() -> Self {
        let (rx, tx): (OwnedFd, OwnedFd) = pipe().expect("pipe");
        Signal1 { rx: rx.into(), tx: tx.into() }
    }

    fn send(&mut self) {
        self.tx.write_all(b"!").expect("signal the parent");
    }

    /// Waits for the byte under the watchdog: a child that dies or hangs before it
    /// signals fails the test instead of hanging it.
    fn recv(&mut self) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let ms = u16::try_from(WATCHDOG.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.rx.as_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut fds, PollTimeout::from(ms)).expect("poll");
        assert!(ready > 0, "watchdog: no signal from the child within {ms} ms");
        let mut b = [0u8; 1];
        self.rx.read_exact(&mut b).expect("child signal");
    }
}

/// Forks a victim: it runs `take` (which takes a lock or permits and forgets the guard,
/// as a process killed while holding it would leave it), tells the parent, and hangs
/// until it is killed ([`sigkill`]). Returns once the victim holds what it took.
fn spawn_victim(take: impl FnOnce()) -> Pid {
    let mut held = Signal1::new();
    let pid = child(|| {
        take();
        held.send();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    held.recv();
    pid
}

/// Kills `pid` with SIGKILL and reaps it.
fn sigkill(pid: Pid) {
    kill(pid, Signal::SIGKILL).expect("kill");
    assert_eq!(wait(pid), WaitStatus::Signaled(pid, Signal::SIGKILL, false));
}

/// 4 processes × 10,000 increments under one shared mutex give an exact count.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn mutex_four_processes_count_exactly() {
    const PROCS: u64 = 4;
    const ITERS: u64 = 10_000;
    let m = Segment::anonymous(Mutex::new(0u64)).unwrap();
    let kids: Vec<_> = (0..PROCS)
        .map(|_| {
            child(|| {
                for _ in 0..ITERS {
                    *m.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    wait_all(kids);
    assert_eq!(*m.lock().unwrap(), PROCS * ITERS);
}

/// A SIGKILL of the holder gives `OwnerDied` to the next locker; after `make_consistent`
/// the mutex is back to normal.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn mutex_sigkill_of_holder_gives_owner_died_then_recovers() {
    #[repr(C)]
    struct Account {
        balance: u64,
        in_transfer: bool,
    }
    // SAFETY: `#[repr(C)]`, plain integers; the bool is written with one store.
    unsafe impl ShmSafe for Account {}

    let m = Segment::anonymous(Mutex::new(Account { balance: 100, in_transfer: false })).unwrap();
    let victim = spawn_victim(|| {
        let mut g = m.lock().unwrap();
        g.in_transfer = true;
        g.balance -= 30; // half-way: the other half never happens
        std::mem::forget(g);
    });
    assert_eq!(m.owner_tid(), Some(victim.as_raw() as u32), "the word names the holder");
    sigkill(victim);

    let mut g = match m.lock() {
        Err(LockError::OwnerDied(g)) => g,
        Ok(_) => panic!("expected OwnerDied, got the lock"),
        Err(e) => panic!("expected OwnerDied, got {e}"),
    };
    assert!(g.is_inconsistent());
    assert!(g.in_transfer, "the dead owner's half-done update is visible");
    g.balance += 30; // roll back
    g.in_transfer = false;
    g.make_consistent();
    drop(g);

    let g = m.lock().expect("normal after make_consistent");
    assert_eq!((g.balance, g.in_transfer), (100, false));
    drop(g);
    assert!(m.try_lock().is_ok());
}

/// Threads already waiting when the holder dies wake up: exactly one gets `OwnerDied`,
/// the rest get the lock normally after it; nobody hangs.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn mutex_waiters_blocked_during_the_death_wake_up() {
    #[repr(C)]
    struct State {
        value: u64,
        owner_died_seen: AtomicU32,
    }
    // SAFETY: `#[repr(C)]`, an integer and an atomic.
    unsafe impl ShmSafe for State {}

    let m = Segment::anonymous(Mutex::new(State { value: 0, owner_died_seen: AtomicU32::new(0) }))
        .unwrap();
    let victim = spawn_victim(|| std::mem::forget(m.lock().unwrap()));
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            child(|| {
                let mut g = match m.lock() {
                    Ok(g) => g,
                    Err(LockError::OwnerDied(mut g)) => {
                        g.owner_died_seen.fetch_add(1, SeqCst);
                        g.make_consistent();
                        g
                    }
                    Err(e) => panic!("{e}"),
                };
                g.value += 1;
            })
        })
        .collect();
    // Let the waiters park on the dead-to-be owner's word (not needed for correctness:
    // a waiter that arrives after the death finds it the same way).
    std::thread::sleep(Duration::from_millis(50));
    sigkill(victim);
    wait_all(waiters);
    let g = m.lock().unwrap();
    assert_eq!(g.value, 3);
    assert_eq!(g.owner_died_seen.load(SeqCst), 1, "exactly one waiter saw OwnerDied");
}

/// Dropping an `OwnerDied` guard without `make_consistent` makes the mutex not
/// recoverable, in every process.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn mutex_unrepaired_becomes_not_recoverable_everywhere() {
    let m = Segment::anonymous(Mutex::new(0u32)).unwrap();
    let victim = spawn_victim(|| std::mem::forget(m.lock().unwrap()));
    sigkill(victim);
    match m.lock() {
        Err(LockError::OwnerDied(g)) => drop(g), // no repair
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert!(m.is_not_recoverable());
    let other = child(|| {
        assert!(matches!(m.lock(), Err(LockError::NotRecoverable)));
        assert!(matches!(m.try_lock(), Err(LockError::NotRecoverable)));
        assert!(matches!(m.lock_timeout(Duration::from_millis(1)), Err(LockError::NotRecoverable)));
    });
    wait_all([other]);
    let e = m.lock().unwrap_err();
    assert!(e.to_string().contains("not recoverable"), "{e}");
}

/// A lock held by a live process times out cleanly; `try_lock` says WouldBlock.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn mutex_held_by_a_live_process_times_out() {
    let m = Segment::anonymous(Mutex::new(0u32)).unwrap();
    let mut held = Signal1::new();
    let mut release = Signal1::new();
    let holder = child(|| {
        let g = m.lock().unwrap();
        held.send();
        release.recv();
        drop(g);
    });
    held.recv();
    assert!(matches!(m.try_lock(), Err(LockError::WouldBlock)));
    assert!(matches!(m.lock_timeout(Duration::from_millis(30)), Err(LockError::Timeout)));
    release.send();
    wait_all([holder]);
    assert!(m.lock().is_ok());
}

#[repr(C)]
struct Seats {
    sem: Semaphore,
    inside: AtomicU32,
    most: AtomicU32,
}
// SAFETY: `#[repr(C)]`: a process-shared semaphore and atomics.
unsafe impl ShmSafe for Seats {}

/// The number of processes inside, counted in shared memory, never exceeds the permits.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn semaphore_holders_never_exceed_permits() {
    const PERMITS: u32 = 2;
    let s = Segment::anonymous(Seats {
        sem: Semaphore::new(PERMITS),
        inside: AtomicU32::new(0),
        most: AtomicU32::new(0),
    })
    .unwrap();
    let kids: Vec<_> = (0..5)
        .map(|_| {
            child(|| {
                for _ in 0..2_000 {
                    let p = s.sem.acquire().unwrap();
                    let now = s.inside.fetch_add(1, SeqCst) + 1;
                    s.most.fetch_max(now, SeqCst);
                    std::hint::spin_loop();
                    s.inside.fetch_sub(1, SeqCst);
                    drop(p);
                }
            })
        })
        .collect();
    wait_all(kids);
    let most = s.most.load(SeqCst);
    assert!(most <= PERMITS, "{most} holders at once with {PERMITS} permits");
    assert!(most >= 1);
    assert_eq!(s.sem.available_permits(), PERMITS);
}

/// A SIGKILL of a permit holder returns its permits: to a waiter that was already
/// blocked, and in the ledger.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn semaphore_sigkill_of_holder_returns_permits() {
    let sem = Segment::anonymous(Semaphore::new(3)).unwrap();
    let victim = spawn_victim(|| std::mem::forget(sem.acquire_many(2).unwrap()));
    assert_eq!(sem.held_by(victim.as_raw() as u32), 2);
    assert_eq!(sem.available_permits(), 1);
    // Blocked until the victim's permits come back: needs all 3.
    let waiter = child(|| drop(sem.acquire_many(3).unwrap()));
    std::thread::sleep(Duration::from_millis(30));
    sigkill(victim);
    wait_all([waiter]);
    assert_eq!(sem.held_by(victim.as_raw() as u32), 0);
    assert_eq!(sem.available_permits(), 3);
    // try_acquire takes back a dead holder's permits too.
    let victim = child(|| {
        std::mem::forget(sem.acquire_many(3).unwrap());
        // SAFETY: `_exit` ends the child without dropping anything: a crash.
        unsafe { libc::_exit(0) };
    });
    wait_all([victim]);
    assert_eq!(sem.available_permits(), 0);
    assert_eq!(sem.try_acquire_many(3).unwrap().count(), 3);
}

/// `forget` consumes and `release` produces, so a semaphore pair is a cross-process
/// signal, and a timed-out acquire changes nothing.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn semaphore_signal_between_processes() {
    let sem = Segment::anonymous(Semaphore::new(0)).unwrap();
    assert_eq!(sem.acquire_timeout(Duration::from_millis(5)).unwrap_err(), Error::Timeout);
    assert_eq!(sem.try_acquire().unwrap_err(), Error::WouldBlock);
    let consumer = child(|| {
        for _ in 0..1_000 {
            sem.acquire().unwrap().forget();
        }
    });
    for _ in 0..1_000 {
        sem.release(1);
    }
    wait_all([consumer]);
    assert_eq!(sem.available_permits(), 0);
}

const NOT_EMPTY: Condition = Condition::new(0);
const NOT_FULL: Condition = Condition::new(1);
const SLOTS: usize = 8;

#[repr(C)]
struct Buffer {
    items: [u64; SLOTS],
    head: u32,
    len: u32,
    taken: u64,
    sum: u64,
}
// SAFETY: `#[repr(C)]` integers, changed only inside the monitor.
unsafe impl ShmSafe for Buffer {}

/// A bounded buffer on a shared monitor: 2 producer and 2 consumer processes, every item
/// delivered exactly once (count and sum checked).
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn monitor_bounded_buffer_across_processes() {
    const PER_PRODUCER: u64 = 5_000;
    const PRODUCERS: u64 = 2;
    const TOTAL: u64 = PER_PRODUCER * PRODUCERS;
    let buf = Segment::anonymous(Monitor::<Buffer, 2>::new(Buffer {
        items: [0; SLOTS],
        head: 0,
        len: 0,
        taken: 0,
        sum: 0,
    }))
    .unwrap();
    let mut kids = Vec::new();
    for p in 0..PRODUCERS {
        kids.push(child(|| {
            for i in 0..PER_PRODUCER {
                let v = p * PER_PRODUCER + i + 1;
                let mut g =
                    buf.enter().unwrap().wait_while(NOT_FULL, |b| b.len as usize == SLOTS).unwrap();
                let tail = (g.head as usize + g.len as usize) % SLOTS;
                g.items[tail] = v;
                g.len += 1;
                g.notify_one(NOT_EMPTY);
            }
        }));
    }
    for _ in 0..2 {
        kids.push(child(|| loop {
            let mut g = buf
                .enter()
                .unwrap()
                .wait_while(NOT_EMPTY, |b| b.len == 0 && b.taken < TOTAL)
                .unwrap();
            if g.taken == TOTAL {
                g.notify_all(NOT_EMPTY); // let the other consumer see the end too
                return;
            }
            let v = g.items[g.head as usize];
            g.head = (g.head + 1) % SLOTS as u32;
            g.len -= 1;
            g.taken += 1;
            g.sum += v;
            g.notify_one(NOT_FULL);
            if g.taken == TOTAL {
                g.notify_all(NOT_EMPTY);
            }
        }));
    }
    wait_all(kids);
    let g = buf.enter().unwrap();
    assert_eq!(g.taken, TOTAL);
    assert_eq!(g.sum, TOTAL * (TOTAL + 1) / 2, "an item was lost or delivered twice");
}

/// A process killed inside the monitor while another waits on a condition: the waiter
/// wakes at its liveness poll and re-enters with `OwnerDied`.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn monitor_sigkill_inside_wakes_condition_waiter() {
    #[repr(C)]
    struct Flag {
        set: u32,
        outcome: AtomicU32,
    }
    // SAFETY: `#[repr(C)]`: an integer and an atomic.
    unsafe impl ShmSafe for Flag {}

    let mon =
        Segment::anonymous(Monitor::<Flag, 1>::new(Flag { set: 0, outcome: AtomicU32::new(0) }))
            .unwrap();
    let mut waiting = Signal1::new();
    let waiter = child(|| {
        let g = mon.enter().unwrap();
        waiting.send(); // sent from inside; the parent's victim can enter once we wait
        match g.wait_while(NOT_EMPTY, |f| f.set == 0) {
            Err(LockError::OwnerDied(mut g)) => {
                g.outcome.store(1, SeqCst);
                g.make_consistent();
            }
            Ok(_) => panic!("nobody set the flag"),
            Err(e) => panic!("{e}"),
        }
    });
    waiting.recv();
    let victim = spawn_victim(|| std::mem::forget(mon.enter().unwrap()));
    sigkill(victim);
    wait_all([waiter]);
    assert_eq!(mon.enter().unwrap().outcome.load(SeqCst), 1);
}

#[repr(C)]
struct Named {
    lock: Mutex<u64>,
    opened: AtomicU64,
}
// SAFETY: `#[repr(C)]`: a process-shared mutex and an atomic.
unsafe impl ShmSafe for Named {}

/// An unrelated process (this test binary, executed again) opens the mutex by name, and
/// both count under it.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot exec")]
fn mutex_opened_by_name_from_another_program() {
    const ROLE: &str = "INTERPROC_SYNC_TEST_OPEN_BY_NAME";
    if let Ok(name) = std::env::var(ROLE) {
        let seg = Segment::<Named>::open(&name).expect("open by name");
        seg.opened.fetch_add(1, SeqCst);
        for _ in 0..5_000 {
            *seg.lock.lock().unwrap() += 1;
        }
        return;
    }
    let name = format!("interproc-sync-test-{}", std::process::id());
    let seg = Segment::create(&name, Named { lock: Mutex::new(0), opened: AtomicU64::new(0) })
        .expect("create");
    let mut other = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "mutex_opened_by_name_from_another_program",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(ROLE, &name)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..5_000 {
        *seg.lock.lock().unwrap() += 1;
    }
    let give_up = Instant::now() + WATCHDOG;
    let status = loop {
        if let Some(s) = other.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > give_up {
            let _ = other.kill();
            let _ = other.wait();
            panic!("watchdog: the other program hung and was killed");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    assert!(status.success(), "the other program failed: {status}");
    assert_eq!(seg.opened.load(SeqCst), 1);
    assert_eq!(*seg.lock.lock().unwrap(), 10_000);
}

/// Memory that was never initialised as a primitive is refused with a clear panic, not
/// used as a lock.
#[test]
fn uninitialised_memory_is_refused() {
    #[repr(C, align(8))]
    struct Raw([u8; std::mem::size_of::<Mutex<u32>>()]);
    let raw = Raw([0; std::mem::size_of::<Mutex<u32>>()]);
    // SAFETY: the bytes are all zero, which is a valid bit pattern for every field of the
    // mutex (integers, atomics, a `u32`): only the header's magic is wrong, and that is
    // what is under test.
    let m: &Mutex<u32> = unsafe { &*(&raw as *const Raw).cast::<Mutex<u32>>() };
    let e = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(m.lock()))).unwrap_err();
    let msg = e.downcast_ref::<String>().unwrap();
    assert!(msg.contains("not an initialised interproc process::Mutex"), "{msg}");
}

// Regression tests from the review of the robust primitives (each failed before its fix).

const READY: Condition = Condition::new(0);

/// A: the monitor becomes NOT_RECOVERABLE while a thread waits on a condition; nobody can
/// enter to notify, and the waiter's poll only checks `held_by_dead`, which is false for
/// NOT_RECOVERABLE: it never returns.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn a_not_recoverable_strands_condition_waiter() {
    let mon = std::sync::Arc::new(Segment::anonymous(Monitor::<u32, 1>::new(0)).unwrap());
    let (tx, rx) = mpsc::channel();
    {
        let mon = mon.clone();
        std::thread::spawn(move || {
            let r = mon.enter().unwrap().wait(READY);
            let _ = tx.send(match r {
                Ok(_) => "Ok",
                Err(LockError::OwnerDied(_)) => "OwnerDied",
                Err(LockError::NotRecoverable) => "NotRecoverable",
                Err(_) => "other",
            });
        });
    }
    std::thread::sleep(Duration::from_millis(500)); // waiter parked, poll at 100 ms
                                                    // A thread enters and "dies" inside (exits with its guard forgotten).
    let m2 = mon.clone();
    std::thread::spawn(move || std::mem::forget(m2.enter().unwrap())).join().unwrap();
    // Take over at once and leave without repair: NOT_RECOVERABLE.
    loop {
        match mon.try_enter() {
            Err(LockError::OwnerDied(g)) => break drop(g),
            Err(LockError::WouldBlock) => std::thread::yield_now(),
            // The waiter noticed the death first (its poll): it returns either way.
            _ => break,
        }
    }
    let got = rx.recv_timeout(Duration::from_secs(5));
    assert!(got.is_ok(), "condition waiter stranded on a not-recoverable monitor");
}

/// C: a process whose main thread has exited (other threads still run) shows state Z in
/// /proc/<pid>/stat; the semaphore reclaims its permits although a live thread holds them.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn c_zombie_leader_permits_reclaimed_while_held() {
    let sem = Segment::anonymous(Semaphore::new(1)).unwrap();
    let holder = child(|| {
        let p = sem.acquire().unwrap();
        std::thread::scope(|s| {
            s.spawn(move || {
                std::thread::sleep(Duration::from_secs(3)); // still using the resource
                drop(p);
                // SAFETY: ends the process.
                unsafe { libc::_exit(0) }
            });
            // SAFETY: exits only the calling (main) thread; no unwinding, no destructors.
            unsafe { libc::syscall(libc::SYS_exit, 0) };
        });
    });
    std::thread::sleep(Duration::from_millis(500));
    let stat = std::fs::read_to_string(format!("/proc/{holder}/stat")).unwrap();
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    assert_eq!((f[0], f[17]), ("Z", "2"), "the leader is a zombie, one thread still runs");
    assert_eq!(sem.held_by(holder.as_raw() as u32), 1);
    let dup = sem.try_acquire();
    let live = wait_for(holder, Duration::from_millis(1)).is_none(); // still running? (killed)
    assert!(live, "holder exited early; inconclusive");
    assert!(dup.is_err(), "a second holder got the only permit while a live process holds it");
}

/// D: a MutexGuard inherited through fork and dropped in the child unlocks the parent's lock.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn d_guard_dropped_in_fork_child_unlocks_parent() {
    let m = Segment::anonymous(Mutex::new(0u32)).unwrap();
    let g = m.lock().unwrap();
    // SAFETY: scratch test.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop(g); // e.g. the child returns through the scope that holds the guard
                     // SAFETY: ends the child.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => assert_eq!(wait(child), WaitStatus::Exited(child, 0)),
    }
    let other = std::thread::scope(|s| s.spawn(|| m.try_lock().is_ok()).join().unwrap());
    drop(g);
    assert!(!other, "another thread locked the mutex while this thread holds its guard");
}

/// E: a Permit dropped on a thread whose first identity lookup failed (EMFILE) is skipped
/// as "inherited through fork": the permit is lost while the process lives.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn e_permit_dropped_on_thread_with_failed_identity_is_lost() {
    let sem = Segment::anonymous(Semaphore::new(1)).unwrap();
    let pid = child(|| {
        let p = sem.acquire().unwrap();
        // Use up the fds, then drop the permit on a fresh thread.
        let mut fds = Vec::new();
        // SAFETY: dup of stdin; closed below.
        while let Ok(fd) = nix::unistd::dup(unsafe { std::os::fd::BorrowedFd::borrow_raw(0) }) {
            fds.push(fd);
        }
        std::thread::scope(|s| s.spawn(move || drop(p)).join().unwrap());
        let n = fds.len();
        drop(fds);
        assert!(n > 0);
        assert_eq!(sem.available_permits(), 1, "permit not given back");
    });
    assert_eq!(wait_for(pid, Duration::from_secs(10)), Some(WaitStatus::Exited(pid, 0)));
}

/// H: the thread inside sets the state and dies before notifying; the next to enter
/// repairs nothing (the state is already right), calls make_consistent and leaves, as the
/// docs say. A condition waiter that did not poll while the dead owner still held the word
/// is never woken.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn h_repaired_monitor_strands_condition_waiter() {
    let mon = std::sync::Arc::new(Segment::anonymous(Monitor::<u32, 1>::new(0)).unwrap());
    let (tx, rx) = mpsc::channel();
    {
        let mon = mon.clone();
        std::thread::spawn(move || {
            let r = mon.enter().unwrap().wait_while(READY, |v| *v == 0);
            let _ = tx.send(r.is_ok() || matches!(r, Err(LockError::OwnerDied(_))));
        });
    }
    std::thread::sleep(Duration::from_millis(500)); // waiter parked, poll at 100 ms
    let m2 = mon.clone();
    std::thread::spawn(move || {
        let mut g = m2.enter().unwrap();
        *g = 1; // the update is complete...
        std::mem::forget(g); // ...but the thread dies before notify_one
    })
    .join()
    .unwrap();
    loop {
        match mon.try_enter() {
            Err(LockError::OwnerDied(mut g)) => {
                g.make_consistent(); // nothing to repair: *g == 1 already
                break drop(g);
            }
            Err(LockError::WouldBlock) => std::thread::yield_now(),
            // The waiter noticed the death first (its poll): it returns either way.
            _ => break,
        }
    }
    assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok(), "waiter stranded");
}
