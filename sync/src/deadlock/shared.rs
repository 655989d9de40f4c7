//! Deadlock detection across processes: a registry of the threads blocked on
//! process-shared primitives ([`process::Mutex`](crate::process::Mutex),
//! [`process::Monitor`](crate::process::Monitor) entry and condition waits,
//! [`process::Semaphore`](crate::process::Semaphore) waits for permits), kept in a named
//! shared-memory segment, and the wait-for graph read from it ([`wait_graph`], behind
//! `interproc deadlocks`).
//!
//! # The registry
//!
//! - **Where.** The POSIX segment `/dev/shm/interproc-deadlocks-<uid>`, or the name in the
//!   environment variable `INTERPROC_DEADLOCKS` (`off` switches cross-process detection
//!   off). It is created on first use, by the first thread that blocks on a process-shared
//!   lock, and opened by the others: every process of a user meets in the same one.
//! - **What.** A `#[repr(C)]`, pointer-free table of [`SLOTS`] slots, guarded by a robust
//!   lock of this crate. A thread takes a slot only while it is blocked (after its spin
//!   phase, on the contended path): its pid, tid and start stamp, its name, the lock it
//!   waits on — named by the (device, inode, offset) of its mapping, so that every process
//!   names it alike, whatever the address — with the label this process gave it
//!   ([`process::Mutex::set_label`](crate::process::Mutex::set_label), and likewise on the
//!   semaphore and monitor) and the call site,
//!   the owner's tid read from the lock word, when it started waiting, and the newest
//!   four process-shared mutexes and monitors it holds, with where it took them (every
//!   owner in a cycle is blocked too, so the report can say where it took the lock the
//!   next party waits for; a semaphore's ledger lists holding processes only, so its
//!   holders' sites are unknown). Locks nobody
//!   waits for are not recorded: the uncontended path touches nothing.
//! - **Stale entries.** A slot whose thread has died (its tid is gone, or names a thread
//!   with another start stamp) is freed by whoever next registers, leaves or reads the
//!   registry.
//! - **Bounded.** When all slots are taken, the new waiter reports
//!   [`ReportKind::RegistryFull`] once per process and waits unchecked: never a hang,
//!   never a crash.
//! - **Removed when empty.** The thread that frees the last used slot unlinks the segment
//!   (with a flag in it, so that a process still holding the old mapping opens a new one),
//!   and a reader ([`wait_graph`]) that finds only dead entries does the same. So a test
//!   suite leaves nothing in `/dev/shm` unless it kills a blocked process and never reads
//!   the registry again; the tests point `INTERPROC_DEADLOCKS` at a unique name and unlink
//!   it themselves.
//!
//! # Finding a cycle
//!
//! A thread blocked on a mutex or monitor entry waits for one owner thread; a thread
//! blocked on a semaphore waits for the processes its ledger lists as holding permits (any
//! thread of a holder may release, so a holder counts as stuck only when all its threads
//! are blocked in the registry); a monitor condition wait has no owner (any process may
//! notify): it shows in the graph but never in a cycle. Each time a blocked thread's poll
//! runs out (250 µs, doubling up to 100 ms) it re-reads the lock word or the ledger,
//! refreshes its edges and looks for a cycle through itself among the threads that can
//! never go on. The edges of other processes
//! may be stale (their owner may have just released), so a cycle is reported only when it
//! is seen twice, with every other party having refreshed its edge in between: all of them
//! were blocked throughout (a blocked thread releases nothing), and each edge held at a
//! moment inside that interval, so all of them hold at the end. Of the parties around a
//! cycle, the one that blocked last reports it and applies the [`Policy`]
//! its process gave the lock it waits on
//! ([`process::Mutex::set_deadlock_policy`](crate::process::Mutex::set_deadlock_policy)
//! and the like), or else its process's global one. An owner that has died is "owner
//! died" (the robust lock hands its lock to a waiter), never a deadlock.
//!
//! # Example
//!
//! Reading the graph from outside, as `interproc deadlocks` does (here of a registry of
//! this process's own, which nobody blocked in: an empty graph, and nothing created):
//!
//! ```
//! use std::time::Duration;
//! use interproc_sync::deadlock::shared;
//!
//! shared::use_registry(&format!("doc-deadlocks-{}", std::process::id()));
//! let graph = shared::wait_graph(Duration::from_millis(300)).unwrap();
//! assert!(graph.waits.is_empty() && graph.cycles.is_empty());
//! println!("{graph}"); // text; graph.to_json() for JSON
//! ```
//!
//! A deadlock between two processes, with one of them getting the error, is in
//! `tests/deadlock_process.rs`.
//!
//! # The lock-order table
//!
//! Beside the registry, the segment `<registry name>-order` ([`order_table_name`]) holds
//! the lock-order edges between process-shared mutexes and monitors: "a thread of process
//! P took lock B while it held lock A", with locks named by their (device, inode, offset)
//! and the labels and call sites of the process that first took the edge. A process
//! writes an edge only the first time it takes it (behind each thread's edge cache, so an
//! uncontended acquire touches no shared memory), and reports an edge that closes a cycle
//! there as a lock-order inversion, whichever processes took the other edges, and even if
//! they have exited since. A process attaches (pid and start stamp) when it first writes,
//! and detaches at exit (`atexit`); the table is removed when no live process is attached,
//! by the last to detach, or by whoever opens or reads it afterwards ([`wait_graph`] and
//! [`read_order_table`] do): a process killed or ended by `_exit` runs no `atexit` hook.
//! [`ORDER_EDGES`] edges and [`ORDER_PROCESSES`] processes at most; when full, a process
//! reports [`ReportKind::RegistryFull`] once and records no more edges there.
#![allow(clippy::disallowed_types)] // std's atomics and cell: not modelled (see detector.rs)

use std::cell::UnsafeCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use serde::Serialize;

pub use super::order_shared::{
    order_table_name, read_order_table, OrderGraph, ORDER_EDGES, ORDER_PROCESSES,
};

use super::detector::{deliver_shared, Site};
use super::report::{Holding, LockInfo, LockKind, Party, Report, ReportKind, ThreadInfo, WaitFor};
use super::{Deadlock, Policy};
use crate::park::{SharedFutex, TaskId};
use crate::robust::{Acquired, RawRobust};
use crate::shm::{Segment, ShmError, ShmSafe};

/// How many threads can be registered as blocked at once, over all processes.
pub const SLOTS: usize = 128;
const NAME_LEN: usize = 32;
const LABEL_LEN: usize = 64;
const SITE_LEN: usize = 96;
/// How many holders of a semaphore a blocked thread's slot lists.
const SLOT_HOLDERS: usize = 8;
/// How many of the process-shared locks it holds a blocked thread's slot lists (the
/// newest), with where it took them: the sites that reports give for an owner.
const SLOT_HELD: usize = 4;

/// The environment variable naming the registry segment (`off`: no registry).
pub const REGISTRY_ENV: &str = "INTERPROC_DEADLOCKS";

/// The name of the registry segment this process uses: `$INTERPROC_DEADLOCKS`, or
/// `interproc-deadlocks-<uid>`; `None` if the variable says `off`.
pub fn registry_name() -> Option<String> {
    if let Some(name) = OVERRIDE.lock().unwrap_or_else(|e| e.into_inner()).clone() {
        return Some(name);
    }
    match std::env::var(REGISTRY_ENV) {
        Ok(v) if v == "off" => None,
        Ok(v) if !v.is_empty() => Some(v),
        // SAFETY: getuid has no preconditions and cannot fail.
        _ => Some(format!("interproc-deadlocks-{}", unsafe { libc::getuid() })),
    }
}

static OVERRIDE: StdMutex<Option<String>> = StdMutex::new(None);

/// Makes this process (and children it forks afterwards) use the registry segment `name`
/// instead of [`registry_name`]'s default: for tests, which each want their own, and for
/// a group of processes that want theirs apart from the user's.
pub fn use_registry(name: &str) {
    *OVERRIDE.lock().unwrap_or_else(|e| e.into_inner()) = Some(name.to_owned());
    *HANDLE.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// One blocked thread. Written only under the registry lock.
#[repr(C)]
#[derive(Clone, Copy)]
struct Slot {
    used: u32,
    pid: u32,
    tid: u32,
    stamp: u32,
    /// 1 mutex, 2 monitor, 3 semaphore.
    kind: u32,
    /// A monitor condition wait: the condition's index + 1 (0: waiting to enter).
    cond: u32,
    /// A semaphore wait: how many permits it wants, and the holding processes (pids) with
    /// their permits, as the ledger said when the waiter last looked (`nholders` may
    /// exceed [`SLOT_HOLDERS`]: the rest are not listed, and the wait counts as live).
    want: u32,
    nholders: u32,
    holders: [u32; SLOT_HOLDERS],
    holder_permits: [u32; SLOT_HOLDERS],
    /// The owner's tid and stamp, as read from the lock word and its published owner.
    owner: u32,
    owner_stamp: u32,
    labelled: u32,
    /// Registry-wide sequence number of this wait (a new one for every blocking call).
    wait_id: u64,
    /// How many times the thread re-read the lock word and refreshed `owner`.
    refreshed: u64,
    /// When it started waiting, CLOCK_MONOTONIC nanoseconds (system-wide).
    since_ns: u64,
    dev: u64,
    ino: u64,
    off: u64,
    name: [u8; NAME_LEN],
    label: [u8; LABEL_LEN],
    site: [u8; SITE_LEN],
    /// How many entries of `held` are used.
    nheld: u32,
    _pad: u32,
    held: [HeldLock; SLOT_HELD],
}

/// A process-shared lock that a blocked thread holds: its (device, inode, offset), and
/// the call site that took it.
#[repr(C)]
#[derive(Clone, Copy)]
struct HeldLock {
    dev: u64,
    ino: u64,
    off: u64,
    site: [u8; SITE_LEN],
}

const NO_HELD: HeldLock = HeldLock { dev: 0, ino: 0, off: 0, site: [0; SITE_LEN] };

const EMPTY: Slot = Slot {
    used: 0,
    pid: 0,
    tid: 0,
    stamp: 0,
    kind: 0,
    cond: 0,
    want: 0,
    nholders: 0,
    holders: [0; SLOT_HOLDERS],
    holder_permits: [0; SLOT_HOLDERS],
    owner: 0,
    owner_stamp: 0,
    labelled: 0,
    wait_id: 0,
    refreshed: 0,
    since_ns: 0,
    dev: 0,
    ino: 0,
    off: 0,
    name: [0; NAME_LEN],
    label: [0; LABEL_LEN],
    site: [0; SITE_LEN],
    nheld: 0,
    _pad: 0,
    held: [NO_HELD; SLOT_HELD],
};

/// The registry segment's contents.
#[repr(C)]
pub(crate) struct SharedRegistry {
    lock: RawRobust<SharedFutex>,
    /// Set (under `lock`) just before the name is unlinked: holders of this mapping must
    /// open the registry anew.
    removed: AtomicU32,
    _pad: u32,
    next_wait: AtomicU64,
    slots: UnsafeCell<[Slot; SLOTS]>,
}

// SAFETY: `slots` is only read or written by a thread that holds `lock` (see `Locked`);
// the rest is atomics.
unsafe impl Sync for SharedRegistry {}
// SAFETY: `#[repr(C)]`, no pointers (the robust lock is atomic words, `SharedFutex` a
// zero-sized marker), no `Drop`; every field is an integer or byte array, valid for any
// value, and a process killed mid-update leaves at most one garbled slot, whose dead
// thread has it freed (the robust lock reports the death to the next locker).
unsafe impl ShmSafe for SharedRegistry {}

impl SharedRegistry {
    fn new() -> Self {
        SharedRegistry {
            lock: RawRobust::new(),
            removed: AtomicU32::new(0),
            _pad: 0,
            next_wait: AtomicU64::new(1),
            slots: UnsafeCell::new([EMPTY; SLOTS]),
        }
    }

    /// Takes the registry lock; `None` if it is lost (never, unless memory was corrupted).
    fn lock(&self) -> Option<Locked<'_>> {
        match self.lock.lock_until(None) {
            Acquired::Locked => {}
            // A process died holding it: its update touched one slot, which the dead-entry
            // sweep frees.
            Acquired::OwnerDied => self.lock.make_consistent(),
            Acquired::NotRecoverable | Acquired::Busy => return None,
        }
        Some(Locked { reg: self })
    }
}

/// The registry, locked.
struct Locked<'a> {
    reg: &'a SharedRegistry,
}

impl Locked<'_> {
    fn slots(&mut self) -> &mut [Slot; SLOTS] {
        // SAFETY: this thread holds the registry lock (a `Locked` exists only then, and
        // `&mut self` makes this the only reference derived from it).
        unsafe { &mut *self.reg.slots.get() }
    }

    /// Frees the slots of dead threads.
    fn sweep(&mut self) {
        for s in self.slots().iter_mut() {
            if s.used != 0 && crate::sys::is_dead(TaskId { id: s.tid, stamp: s.stamp }) {
                *s = EMPTY;
            }
        }
    }

    fn in_use(&mut self) -> usize {
        self.slots().iter().filter(|s| s.used != 0).count()
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // SAFETY: a `Locked` exists only while this thread holds the lock; it unlocks once.
        unsafe { self.reg.lock.unlock() };
    }
}

type Handle = Arc<(Segment<SharedRegistry>, String)>;

/// This process's handle on the registry (none until the first block).
static HANDLE: StdMutex<Option<Handle>> = StdMutex::new(None);

/// Opens (or creates) the registry; `None` if detection is off or the
/// registry cannot be had (said once on stderr).
fn open_registry(create: bool) -> Option<Handle> {
    for _ in 0..8 {
        let cached = HANDLE.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let h = match cached {
            Some(h) => h,
            None => {
                let name = registry_name()?;
                let seg = if create {
                    Segment::create_or_open(&name, SharedRegistry::new).map(|(s, _)| s)
                } else {
                    Segment::open(&name)
                };
                let mut seg = match seg {
                    Ok(s) => s,
                    Err(ShmError::NotFound { .. }) if !create => return None,
                    Err(e) => {
                        warn_once(&format!("cannot open the deadlock registry {name}: {e}"));
                        return None;
                    }
                };
                seg.disown(); // removed only when empty, by `leave` or a reader
                let h = Arc::new((seg, name));
                *HANDLE.lock().unwrap_or_else(|e| e.into_inner()) = Some(h.clone());
                h
            }
        };
        if h.0.removed.load(Relaxed) == 0 {
            return Some(h);
        }
        // Unlinked since: forget this mapping and open the current one.
        forget(&h);
    }
    None
}

fn warn_once(msg: &str) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Relaxed) {
        eprintln!("interproc-sync: {msg}; waits on process-shared locks go unchecked");
    }
}

/// Unlinks the registry if no slot is in use. The caller holds the lock.
fn remove_if_empty(h: &Handle, l: &mut Locked<'_>) {
    if l.in_use() == 0 && h.0.removed.load(Relaxed) == 0 {
        h.0.removed.store(1, Relaxed);
        let _ = Segment::<SharedRegistry>::unlink(&h.1);
    }
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

pub(super) fn put(dst: &mut [u8], s: &str) {
    dst.fill(0);
    let mut n = s.len().min(dst.len());
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
}

pub(super) fn get(src: &[u8]) -> String {
    let n = src.iter().position(|&b| b == 0).unwrap_or(src.len());
    String::from_utf8_lossy(&src[..n]).into_owned()
}

/// The (device, inode, offset) of the mapping that holds `addr`, from `/proc/self/maps`.
pub(super) fn mapping_key(addr: usize) -> (u64, u64, u64) {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return (0, 0, addr as u64);
    };
    for line in maps.lines() {
        let mut f = line.split_ascii_whitespace();
        let (Some(range), Some(_perms), Some(off), Some(dev), Some(ino)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let Some((lo, hi)) = range.split_once('-') else { continue };
        let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
        else {
            continue;
        };
        if addr < lo || addr >= hi {
            continue;
        }
        let off = u64::from_str_radix(off, 16).unwrap_or(0);
        let dev = dev
            .split_once(':')
            .and_then(|(a, b)| {
                Some((u64::from_str_radix(a, 16).ok()? << 32) | u64::from_str_radix(b, 16).ok()?)
            })
            .unwrap_or(0);
        let ino = ino.parse().unwrap_or(0);
        return (dev, ino, off + (addr - lo) as u64);
    }
    (0, 0, addr as u64)
}

pub(super) fn thread_name() -> String {
    std::fs::read_to_string("/proc/thread-self/comm")
        .map(|s| s.trim_end().to_owned())
        .unwrap_or_default()
}

/// Labels given to process-shared locks in this process, by address.
static LABELS: StdMutex<BTreeMap<usize, String>> = StdMutex::new(BTreeMap::new());

pub(crate) fn set_label(addr: usize, label: &str) {
    LABELS.lock().unwrap_or_else(|e| e.into_inner()).insert(addr, label.to_owned());
    super::order_shared::forget(addr, 1);
}

/// Forgets the labels and policies of locks in `base..base + len` (the memory is being
/// unmapped: a lock mapped there later starts afresh).
pub(super) fn forget_labels(base: usize, len: usize) {
    let outside = |&a: &usize| a < base || a - base >= len;
    LABELS.lock().unwrap_or_else(|e| e.into_inner()).retain(|a, _| outside(a));
    POLICIES.lock().unwrap_or_else(|e| e.into_inner()).retain(|a, _| outside(a));
}

pub(super) fn label_of(addr: usize) -> Option<String> {
    LABELS.lock().unwrap_or_else(|e| e.into_inner()).get(&addr).cloned()
}

/// Policies given to process-shared locks in this process, by address (as the labels:
/// the lock lives in shared memory, whose layout the feature must not change).
static POLICIES: StdMutex<BTreeMap<usize, Policy>> = StdMutex::new(BTreeMap::new());

pub(crate) fn set_policy(addr: usize, policy: Policy) {
    POLICIES.lock().unwrap_or_else(|e| e.into_inner()).insert(addr, policy);
}

/// The policy this process gave the lock at `addr`; `None`: the global one applies.
pub(super) fn policy_of(addr: usize) -> Option<Policy> {
    POLICIES.lock().unwrap_or_else(|e| e.into_inner()).get(&addr).copied()
}

fn key_text(s: &Slot) -> String {
    format!(
        "shared memory dev {}:{} inode {} offset {}",
        s.dev >> 32,
        s.dev & 0xFFFF_FFFF,
        s.ino,
        s.off
    )
}

fn lock_info(s: &Slot) -> LockInfo {
    let kind = match s.kind {
        2 => LockKind::Monitor,
        3 => LockKind::Semaphore,
        _ => LockKind::Mutex,
    };
    let key = key_text(s);
    LockInfo {
        label: if s.labelled != 0 { get(&s.label) } else { key.clone() },
        labelled: s.labelled != 0,
        kind,
        created_at: key,
    }
}

fn thread_info(s: &Slot) -> ThreadInfo {
    let name = get(&s.name);
    ThreadInfo { pid: s.pid, tid: s.tid as i32, name: (!name.is_empty()).then_some(name) }
}

/// What slot `s` waits for.
fn wait_for(s: &Slot) -> WaitFor {
    if s.cond != 0 {
        WaitFor::Condition(s.cond as usize - 1)
    } else if s.kind == 3 {
        WaitFor::Permits(s.want)
    } else {
        WaitFor::Lock
    }
}

/// The slots that could end slot `i`'s wait, among the used ones; `None` if someone the
/// registry does not list could (a condition wait: any process may notify; a semaphore
/// with no listed holder, or more than it can list).
fn releasers(slots: &[Slot; SLOTS], i: usize) -> Option<Vec<usize>> {
    let s = &slots[i];
    if s.cond != 0 {
        return None;
    }
    let used = slots.iter().enumerate().filter(|(_, t)| t.used != 0);
    if s.kind == 3 {
        let n = s.nholders as usize;
        if n == 0 || n > SLOT_HOLDERS {
            return None;
        }
        let pids = &s.holders[..n];
        Some(used.filter(|(_, t)| pids.contains(&t.pid)).map(|(j, _)| j).collect())
    } else {
        Some(used.filter(|(_, t)| t.tid == s.owner).map(|(j, _)| j).collect())
    }
}

/// How many threads process `pid` has now; `None` if it is gone.
fn threads_of(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/task")).ok().map(Iterator::count)
}

/// The slots whose threads can never go on: the greatest set of used slots each of
/// whose waits only slots of the set could end. A mutex or monitor waiter needs its
/// owner's thread in the set; a semaphore waiter needs every thread of every holding
/// process in it (any thread of a holder may release).
fn stuck(slots: &[Slot; SLOTS]) -> [bool; SLOTS] {
    let mut set = [false; SLOTS];
    for (i, s) in slots.iter().enumerate() {
        set[i] = s.used != 0;
    }
    let mut threads: BTreeMap<u32, Option<usize>> = BTreeMap::new();
    loop {
        let mut changed = false;
        for i in 0..SLOTS {
            if !set[i] {
                continue;
            }
            let keep = match releasers(slots, i) {
                None => false,
                Some(r) if r.is_empty() => false,
                Some(r) if slots[i].kind == 3 => {
                    let s = &slots[i];
                    s.holders[..s.nholders as usize].iter().all(|&pid| {
                        let blocked = r.iter().filter(|&&j| set[j] && slots[j].pid == pid).count();
                        let all = *threads.entry(pid).or_insert_with(|| threads_of(pid));
                        all.is_some_and(|all| blocked >= all && blocked > 0)
                    })
                }
                Some(r) => r.iter().any(|&j| set[j]),
            };
            if !keep {
                set[i] = false;
                changed = true;
            }
        }
        if !changed {
            return set;
        }
    }
}

/// A cycle through slot `me` (slot indices, starting with `me`) among the stuck slots,
/// each waiting for the next; `None` if `me` is not stuck, or only waits behind a cycle.
fn cycle_from(slots: &[Slot; SLOTS], me: usize) -> Option<Vec<usize>> {
    let set = stuck(slots);
    if !set[me] {
        return None;
    }
    cycle_through(me, SLOTS, |i| {
        releasers(slots, i).unwrap_or_default().into_iter().filter(|&j| set[j]).collect()
    })
}

/// A path `me → … → me` in the graph whose edges out of node `i` are `next(i)` (nodes
/// `0..n`), starting with `me`; `None` if there is none. Each node is explored once: a
/// node whose exploration did not lead back to `me` never will (walking every simple path
/// instead took time exponential in the size of a cluster of threads that all wait on
/// each other, while the registry's lock was held).
fn cycle_through(me: usize, n: usize, next: impl Fn(usize) -> Vec<usize>) -> Option<Vec<usize>> {
    fn dfs(
        i: usize,
        me: usize,
        next: &impl Fn(usize) -> Vec<usize>,
        seen: &mut [bool],
        path: &mut Vec<usize>,
    ) -> bool {
        for j in next(i) {
            if j == me {
                return true;
            }
            if !seen[j] {
                seen[j] = true;
                path.push(j);
                if dfs(j, me, next, seen, path) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut seen = vec![false; n];
    seen[me] = true;
    let mut path = vec![me];
    dfs(me, me, &next, &mut seen, &mut path).then_some(path)
}

/// Who holds what slot `s` waits for, as the report names them.
fn holdings(slots: &[Slot; SLOTS], s: &Slot, next: Option<&Slot>) -> Vec<Holding> {
    if s.kind == 3 {
        let unknown =
            "unknown (a process-shared semaphore's ledger records processes, not call sites)";
        (0..(s.nholders as usize).min(SLOT_HOLDERS))
            .map(|k| {
                let pid = s.holders[k];
                let thread = slots
                    .iter()
                    .find(|t| t.used != 0 && t.pid == pid)
                    .map_or(ThreadInfo { pid, tid: pid as i32, name: None }, thread_info);
                Holding { thread, permits: s.holder_permits[k], acquired_at: unknown.into() }
            })
            .collect()
    } else {
        next.map(|o| Holding {
            thread: thread_info(o),
            permits: 1,
            // The owner is blocked too (a party of the cycle): its slot lists the
            // process-shared locks it holds, with where it took them.
            acquired_at: taken_at(o, s).unwrap_or_else(|| {
                format!("unknown (not among the {SLOT_HELD} newest process-shared locks its owner lists)")
            }),
        })
        .into_iter()
        .collect()
    }
}

/// Where the blocked thread of slot `owner` took the lock that slot `waiter` waits for,
/// if its slot lists it.
fn taken_at(owner: &Slot, waiter: &Slot) -> Option<String> {
    owner.held[..(owner.nheld as usize).min(SLOT_HELD)]
        .iter()
        .find(|h| (h.dev, h.ino, h.off) == (waiter.dev, waiter.ino, waiter.off))
        .map(|h| get(&h.site))
}

fn cycle_report(slots: &[Slot; SLOTS], cycle: &[usize], now: u64) -> Report {
    let parties = cycle
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let s = &slots[i];
            let owner = &slots[cycle[(k + 1) % cycle.len()]];
            Party {
                thread: thread_info(s),
                waits_for: lock_info(s),
                wait: wait_for(s),
                waiting_at: get(&s.site),
                waited_us: now.saturating_sub(s.since_ns) / 1000,
                held_by: holdings(slots, s, Some(owner)),
            }
        })
        .collect();
    Report { kind: ReportKind::WaitCycle, parties, edges: Vec::new(), held: Vec::new() }
}

/// A cycle seen once: its slots with their wait ids and refresh counts.
type Seen = Vec<(usize, u64, u64)>;

fn seen(slots: &[Slot; SLOTS], cycle: &[usize]) -> Seen {
    cycle.iter().map(|&i| (i, slots[i].wait_id, slots[i].refreshed)).collect()
}

/// Whether `now` is the cycle `before`, seen again after every party but `skip` (the
/// observer) refreshed its edge.
fn confirmed(before: &Seen, now: &Seen, skip: Option<usize>) -> bool {
    before.len() == now.len()
        && before
            .iter()
            .zip(now)
            .all(|(b, n)| b.0 == n.0 && b.1 == n.1 && (Some(b.0) == skip || n.2 > b.2))
}

/// What a blocked thread waits for, as it last looked.
enum Awaited {
    /// The owner of a mutex or monitor.
    Owner(TaskId),
    /// Permits of a semaphore: how many, and the holding processes as (pid, permits).
    Permits { want: u32, holders: Vec<(u32, u32)> },
    /// A notify on a monitor condition.
    Notify(usize),
}

impl Awaited {
    /// Writes this into slot `s`; whether it changed what the slot said.
    fn store(&self, s: &mut Slot) -> bool {
        let before = (s.owner, s.owner_stamp, s.cond, s.want, s.nholders, s.holders);
        match self {
            Awaited::Owner(o) => {
                s.owner = o.id;
                s.owner_stamp = o.stamp;
            }
            Awaited::Permits { want, holders } => {
                s.want = *want;
                s.nholders = u32::try_from(holders.len()).unwrap_or(u32::MAX);
                s.holders = [0; SLOT_HOLDERS];
                s.holder_permits = [0; SLOT_HOLDERS];
                for (k, &(pid, n)) in holders.iter().take(SLOT_HOLDERS).enumerate() {
                    s.holders[k] = pid;
                    s.holder_permits[k] = n;
                }
            }
            Awaited::Notify(c) => s.cond = u32::try_from(*c).map_or(u32::MAX, |c| c + 1),
        }
        before != (s.owner, s.owner_stamp, s.cond, s.want, s.nholders, s.holders)
    }
}

/// The [`SharedWait`] of a blocking lock or entry, made (boxed) at its first park: the
/// uncontended path only holds and drops an empty pointer, inline.
pub(crate) struct LazyWait(Option<Box<SharedWait>>);

impl LazyWait {
    #[inline]
    pub(crate) fn new() -> Self {
        LazyWait(None)
    }

    /// The wait record, made on the first call.
    #[inline]
    pub(crate) fn get(
        &mut self,
        addr: usize,
        kind: LockKind,
        at: Site,
        checked: bool,
    ) -> &mut SharedWait {
        self.0.get_or_insert_with(|| Self::make(addr, kind, at, checked))
    }

    #[cold]
    #[inline(never)]
    fn make(addr: usize, kind: LockKind, at: Site, checked: bool) -> Box<SharedWait> {
        Box::new(SharedWait::new(addr, kind, at, checked))
    }

    /// The deadlock that made the wait give up (under the `Error` policy).
    pub(crate) fn take_deadlock(&mut self) -> Option<Deadlock> {
        self.0.as_deref_mut().and_then(SharedWait::take_deadlock)
    }

    /// Ends the wait: the record, if one was made, leaves the registry. Inline, so the
    /// uncontended lock, which made none, calls no drop glue.
    #[inline]
    pub(crate) fn done(self) {
        if self.0.is_some() {
            drop(self);
        } else {
            std::mem::forget(self);
        }
    }
}

/// One blocking call on a process-shared lock: registers the thread on its first park,
/// refreshes its edge and looks for a cycle on each; frees the slot when dropped.
pub(crate) struct SharedWait {
    addr: usize,
    kind: LockKind,
    at: Site,
    checked: bool,
    joined: Option<(Handle, usize, u64)>,
    candidate: Option<Seen>,
    done: bool,
    deadlock: Option<Deadlock>,
}

impl SharedWait {
    #[inline]
    pub(crate) fn new(addr: usize, kind: LockKind, at: Site, checked: bool) -> Self {
        SharedWait {
            addr,
            kind,
            at,
            checked,
            joined: None,
            candidate: None,
            done: false,
            deadlock: None,
        }
    }

    /// The deadlock that made the wait give up (under the `Error` policy).
    pub(crate) fn take_deadlock(&mut self) -> Option<Deadlock> {
        self.deadlock.take()
    }

    /// The thread is about to park, waiting for `owner()` (read only when needed).
    /// `false`: give up (a deadlock under the `Error` policy, kept for
    /// [`take_deadlock`](Self::take_deadlock)).
    #[cold]
    pub(crate) fn parked(&mut self, owner: impl FnOnce() -> TaskId) -> bool {
        self.parked_on(|| Awaited::Owner(owner()))
    }

    /// A semaphore waiter is about to park, wanting `want` permits held by the processes
    /// `holders()` lists as (pid, permits). As [`parked`](Self::parked).
    #[cold]
    pub(crate) fn parked_permits(
        &mut self,
        want: u32,
        holders: impl FnOnce() -> Vec<(u32, u32)>,
    ) -> bool {
        self.parked_on(|| Awaited::Permits { want, holders: holders() })
    }

    /// A monitor condition waiter (condition `cond`) is about to park: registered, so that
    /// it shows in the graph; never part of a cycle (any process may notify).
    #[cold]
    pub(crate) fn parked_notify(&mut self, cond: usize) {
        self.parked_on(|| Awaited::Notify(cond));
    }

    fn parked_on(&mut self, awaited: impl FnOnce() -> Awaited) -> bool {
        if self.done && self.joined.is_none() {
            return true;
        }
        let awaited = awaited();
        if self.joined.is_none() {
            if !self.done {
                self.join(&awaited);
            }
            return true; // the first look comes with the next park
        }
        let Some((h, me, wait_id)) = self.joined.clone() else { return true };
        let report = {
            let Some(mut l) = h.0.lock() else { return true };
            let slots = l.slots();
            let s = &mut slots[me];
            if s.used == 0 || s.wait_id != wait_id {
                return true; // swept (should not happen while alive)
            }
            if awaited.store(s) {
                self.candidate = None;
            }
            // Refreshed even after the report: readers (`wait_graph`) confirm with it.
            s.refreshed += 1;
            if self.done || s.cond != 0 {
                return true;
            }
            let Some(cycle) = cycle_from(slots, me) else {
                self.candidate = None;
                return true;
            };
            // The party that blocked last reports.
            if cycle.iter().any(|&i| slots[i].wait_id > wait_id) {
                self.candidate = None;
                return true;
            }
            let now = seen(slots, &cycle);
            match &self.candidate {
                Some(before) if confirmed(before, &now, Some(me)) => {
                    self.done = true;
                    Some(cycle_report(slots, &cycle, monotonic_ns()))
                }
                Some(before)
                    if before.iter().map(|b| (b.0, b.1)).eq(now.iter().map(|n| (n.0, n.1))) =>
                {
                    None
                }
                _ => {
                    self.candidate = Some(now);
                    None
                }
            }
        };
        match report.map(|r| deliver_shared(r, policy_of(self.addr), self.checked)) {
            Some(Err(d)) => {
                self.deadlock = Some(d);
                false
            }
            _ => true,
        }
    }

    #[cold]
    fn join(&mut self, awaited: &Awaited) {
        let me = crate::sys::current_thread();
        let label = label_of(self.addr);
        let (dev, ino, off) = mapping_key(self.addr);
        let name = thread_name();
        // The process-shared locks this thread holds (it holds them while it waits), so
        // that a report naming it as an owner can say where it took the lock.
        let mine = super::order_shared::held_by_me();
        let held: Vec<HeldLock> = mine[mine.len().saturating_sub(SLOT_HELD)..]
            .iter()
            .map(|&((dev, ino, off), at)| {
                let mut h = HeldLock { dev, ino, off, ..NO_HELD };
                put(&mut h.site, &super::detector::site_text(at));
                h
            })
            .collect();
        for _ in 0..8 {
            let Some(h) = open_registry(true) else { break };
            let Some(l) = h.0.lock() else { break };
            if h.0.removed.load(Relaxed) != 0 {
                // Unlinked between our open and our lock: open the current one.
                drop(l);
                forget(&h);
                continue;
            }
            let slot = Joining {
                awaited,
                me,
                label: label.as_deref(),
                key: (dev, ino, off),
                name: &name,
                held: &held,
            };
            self.fill(&h, l, &slot);
            return;
        }
        self.done = true;
    }

    fn fill(&mut self, h: &Handle, mut l: Locked<'_>, j: &Joining<'_>) {
        let (me, label, (dev, ino, off), name) = (j.me, j.label, j.key, j.name);
        l.sweep();
        let wait_id = h.0.next_wait.fetch_add(1, Relaxed);
        let slots = l.slots();
        let Some(i) = slots.iter().position(|s| s.used == 0) else {
            drop(l);
            self.done = true;
            super::detector::registry_full(SLOTS);
            return;
        };
        let s = &mut slots[i];
        *s = EMPTY;
        s.pid = std::process::id();
        s.tid = me.id;
        s.stamp = me.stamp;
        s.kind = match self.kind {
            LockKind::Mutex => 1,
            LockKind::Monitor => 2,
            LockKind::Semaphore => 3,
        };
        j.awaited.store(s);
        s.labelled = u32::from(label.is_some());
        s.wait_id = wait_id;
        s.since_ns = monotonic_ns();
        s.dev = dev;
        s.ino = ino;
        s.off = off;
        put(&mut s.name, name);
        put(&mut s.label, label.unwrap_or(""));
        put(&mut s.site, &super::detector::site_text(self.at));
        s.nheld = j.held.len() as u32;
        s.held[..j.held.len()].copy_from_slice(j.held);
        s.used = 1;
        drop(l);
        self.joined = Some((h.clone(), i, wait_id));
    }
}

/// What a joining thread writes into its slot.
struct Joining<'a> {
    awaited: &'a Awaited,
    me: TaskId,
    label: Option<&'a str>,
    key: (u64, u64, u64),
    name: &'a str,
    held: &'a [HeldLock],
}

/// Drops this process's cached handle if it is `h`.
fn forget(h: &Handle) {
    let mut cur = HANDLE.lock().unwrap_or_else(|e| e.into_inner());
    if cur.as_ref().is_some_and(|c| Arc::ptr_eq(c, h)) {
        *cur = None;
    }
}

impl Drop for SharedWait {
    fn drop(&mut self) {
        if let Some((h, me, wait_id)) = self.joined.take() {
            leave(&h, me, wait_id);
        }
    }
}

#[cold]
fn leave(h: &Handle, me: usize, wait_id: u64) {
    let Some(mut l) = h.0.lock() else { return };
    let s = &mut l.slots()[me];
    if s.used != 0 && s.wait_id == wait_id {
        *s = EMPTY;
    }
    // Entries of threads killed while blocked go too, so that the last live waiter to
    // leave removes the registry even if nobody reads it afterwards.
    l.sweep();
    remove_if_empty(h, &mut l);
}

/// Who holds the lock a registered thread waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerState {
    /// The owner is itself blocked on a process-shared lock (it has an entry).
    Blocked,
    /// The owner lives and is not blocked on a process-shared lock: the wait may end.
    Running,
    /// The owner has died holding the lock: the waiter will take it over and get
    /// `LockError::OwnerDied`. Not a deadlock. (A semaphore: a holder died; its permits
    /// come back to the waiters.)
    Died,
    /// No single owner: a monitor condition wait (any process may notify), or a
    /// semaphore with no holder the registry lists (any process may release).
    Anyone,
}

/// One edge of the cross-process wait-for graph: a blocked thread and what it waits for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WaitEdge {
    /// The blocked thread.
    pub thread: ThreadInfo,
    /// The lock it waits on (its label, or its shared-memory key).
    pub lock: LockInfo,
    /// Where it called `lock`/`enter`.
    pub waiting_at: String,
    /// How long it has waited, in microseconds.
    pub waited_us: u64,
    /// What it waits for: the lock, permits or a condition.
    pub wait: WaitFor,
    /// The owner's tid, as the lock word said when the waiter last looked (0 for a
    /// semaphore or condition wait).
    pub owner_tid: u32,
    /// A semaphore wait: the pids of the processes holding permits, as the ledger said
    /// when the waiter last looked.
    pub holders: Vec<u32>,
    /// The owner's state.
    pub owner: OwnerState,
}

/// The cross-process wait-for graph, read from the registry by [`wait_graph`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WaitGraph {
    /// The registry segment's name.
    pub registry: String,
    /// Every registered wait.
    pub waits: Vec<WaitEdge>,
    /// The wait-for cycles (confirmed, as described in the module docs), one report each.
    pub cycles: Vec<Report>,
    /// The cross-process lock-order table beside the registry: its edges and inversions.
    pub order: OrderGraph,
}

impl WaitGraph {
    /// The graph as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a wait graph always serialises")
    }
}

impl std::fmt::Display for WaitGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "registry /dev/shm/{}: {} blocked thread(s)", self.registry, self.waits.len())?;
        for w in &self.waits {
            let owner = match w.owner {
                OwnerState::Blocked => "blocked itself",
                OwnerState::Running => "running",
                OwnerState::Died => "DIED holding it (owner died, not a deadlock)",
                OwnerState::Anyone => "no single owner: any process may end the wait",
            };
            let held_by = if w.holders.is_empty() {
                format!("tid {}", w.owner_tid)
            } else {
                format!("pids {:?}", w.holders)
            };
            writeln!(
                f,
                "  {} waits {:?} at {} for {} ({:?}), held by {held_by} ({owner})",
                w.thread,
                Duration::from_micros(w.waited_us),
                w.waiting_at,
                w.lock,
                w.wait,
            )?;
        }
        if self.cycles.is_empty() {
            writeln!(f, "no wait-for cycle")?;
        } else {
            for c in &self.cycles {
                writeln!(f, "{c}")?;
            }
        }
        let o = &self.order;
        write!(
            f,
            "lock-order table: {} edge(s) between process-shared locks, {} inversion(s)",
            o.edges.len(),
            o.inversions.len()
        )?;
        for e in &o.edges {
            write!(f, "\n  \"{}\" -> \"{}\": {} at {}", e.from, e.to, e.thread, e.at)?;
        }
        for r in &o.inversions {
            write!(f, "\n{r}")?;
        }
        Ok(())
    }
}

/// Reads the cross-process wait-for graph from the registry ([`registry_name`]): every
/// registered wait and every cycle. A cycle is confirmed by looking twice, `settle` apart
/// (at least the longest poll period, 100 ms, for every party to refresh its edge; 300 ms
/// is safe). Reading also frees the entries of dead threads, and removes the registry if
/// nothing is left in it. A missing registry is an empty graph.
///
/// # Errors
///
/// [`ShmError`] if the registry exists but cannot be opened (another user's, or not a
/// registry of this version).
pub fn wait_graph(settle: Duration) -> Result<WaitGraph, ShmError> {
    match registry_name() {
        Some(name) => read_wait_graph(&name, settle),
        None => Ok(WaitGraph {
            registry: "off".into(),
            waits: Vec::new(),
            cycles: Vec::new(),
            order: OrderGraph::default(),
        }),
    }
}

/// [`wait_graph`] of the registry segment `name`.
///
/// # Errors
///
/// As [`wait_graph`].
pub fn read_wait_graph(name: &str, settle: Duration) -> Result<WaitGraph, ShmError> {
    let mut graph = read_waits(name, settle)?;
    // Read last: a thread writes its lock-order edges before it blocks, so the edges of
    // every party to a cycle found above are in the table by now.
    graph.order = read_order_table(name)?;
    Ok(graph)
}

/// [`read_wait_graph`] without the lock-order table.
fn read_waits(name: &str, settle: Duration) -> Result<WaitGraph, ShmError> {
    let name = name.to_owned();
    let empty = || WaitGraph {
        registry: name.clone(),
        waits: Vec::new(),
        cycles: Vec::new(),
        order: OrderGraph::default(),
    };
    let mut seg = match Segment::<SharedRegistry>::open(&name) {
        Ok(s) => s,
        Err(ShmError::NotFound { .. }) => return Ok(empty()),
        Err(e) => return Err(e),
    };
    seg.disown();
    let h: Handle = Arc::new((seg, name.clone()));
    let snap = |sweep: bool| -> Option<[Slot; SLOTS]> {
        let mut l = h.0.lock()?;
        if sweep {
            l.sweep();
            remove_if_empty(&h, &mut l);
        }
        Some(*l.slots())
    };
    let Some(first) = snap(true) else { return Ok(empty()) };
    let cycles_of = |slots: &[Slot; SLOTS]| -> Vec<Vec<usize>> {
        let mut out: Vec<Vec<usize>> = Vec::new();
        for i in (0..SLOTS).filter(|&i| slots[i].used != 0) {
            if let Some(c) = cycle_from(slots, i) {
                let mut key = c.clone();
                key.sort_unstable();
                if !out.iter().any(|o| {
                    let mut k = o.clone();
                    k.sort_unstable();
                    k == key
                }) {
                    out.push(c);
                }
            }
        }
        out
    };
    let before = cycles_of(&first);
    let (last, cycles) = if before.is_empty() {
        (first, Vec::new())
    } else {
        std::thread::sleep(settle);
        let Some(second) = snap(false) else { return Ok(empty()) };
        let confirmed: Vec<Vec<usize>> = cycles_of(&second)
            .into_iter()
            .filter(|c| before.iter().any(|b| confirmed(&seen(&first, b), &seen(&second, c), None)))
            .collect();
        (second, confirmed)
    };
    let now = monotonic_ns();
    let tids: BTreeMap<u32, usize> =
        last.iter().enumerate().filter(|(_, s)| s.used != 0).map(|(i, s)| (s.tid, i)).collect();
    let stuck_now = stuck(&last);
    let waits = last
        .iter()
        .enumerate()
        .filter(|(_, s)| s.used != 0)
        .map(|(i, s)| {
            let listed = (s.nholders as usize).min(SLOT_HOLDERS);
            let owner = if s.cond != 0 || (s.kind == 3 && releasers(&last, i).is_none()) {
                OwnerState::Anyone
            } else if s.kind == 3 {
                if s.holders[..listed].iter().any(|&p| threads_of(p).is_none()) {
                    OwnerState::Died
                } else if stuck_now[i] {
                    OwnerState::Blocked
                } else {
                    OwnerState::Running
                }
            } else if tids.contains_key(&s.owner) {
                OwnerState::Blocked
            } else if crate::sys::is_dead(TaskId { id: s.owner, stamp: s.owner_stamp }) {
                OwnerState::Died
            } else {
                OwnerState::Running
            };
            WaitEdge {
                thread: thread_info(s),
                lock: lock_info(s),
                waiting_at: get(&s.site),
                waited_us: now.saturating_sub(s.since_ns) / 1000,
                wait: wait_for(s),
                owner_tid: if s.kind == 3 || s.cond != 0 { 0 } else { s.owner },
                holders: if s.kind == 3 { s.holders[..listed].to_vec() } else { Vec::new() },
                owner,
            }
        })
        .collect();
    let cycles = cycles.iter().map(|c| cycle_report(&last, c, now)).collect();
    Ok(WaitGraph { registry: name, waits, cycles, order: OrderGraph::default() })
}

#[cfg(test)]
mod tests {
    use super::cycle_through;
    use std::cell::Cell;

    /// A waiter outside a cluster of 40 threads that all wait on each other (a real
    /// deadlock it only waits behind): no cycle through it, found with each node explored
    /// once. Walking every simple path took about 10× longer per extra thread (9 s at 9
    /// threads; found in review), under the registry's lock.
    #[test]
    fn a_waiter_behind_a_dense_cluster_is_searched_once_per_node() {
        const N: usize = 41;
        let calls = Cell::new(0);
        let next = |i: usize| {
            calls.set(calls.get() + 1);
            // Node 0 waits on the cluster 1..N; each cluster node on every other one.
            (1..N).filter(|&j| j != i).collect::<Vec<_>>()
        };
        assert_eq!(cycle_through(0, N, next), None);
        assert!(calls.get() <= N, "{} expansions for {N} nodes", calls.get());
    }

    /// A cycle through the waiter is found, as a path of distinct nodes back to it.
    #[test]
    fn a_cycle_through_the_waiter_is_found() {
        // 0 → 1 → 2 → 3 → 0, with a dead end 1 → 4.
        let edges = |i: usize| match i {
            0 => vec![1],
            1 => vec![4, 2],
            2 => vec![3],
            3 => vec![0],
            _ => vec![],
        };
        assert_eq!(cycle_through(0, 5, edges), Some(vec![0, 1, 2, 3]));
        assert_eq!(cycle_through(4, 5, edges), None);
    }
}
