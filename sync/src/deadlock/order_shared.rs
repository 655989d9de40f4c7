//! Lock order of the process-shared locks ([`process::Mutex`](crate::process::Mutex),
//! [`process::Monitor`](crate::process::Monitor)): in this process, through the held
//! stack and lock-order graph of `detector.rs`, and across processes, through a shared
//! edge table.
//!
//! # In this process
//!
//! A blocking acquisition (`lock`, `lock_checked`, `enter`, `enter_checked`, the re-entry
//! after a condition wait) records the edges "each held lock's class → this lock's class",
//! like a thread lock, and every acquisition (also `try_lock`, `lock_timeout`) puts the
//! lock on the thread's held stack, so nesting a thread lock and a process lock either way
//! is checked too. A process lock's class is its label, if
//! [`set_label`](crate::process::Mutex::set_label) was called in this process, or else the
//! (device, inode, offset) of its mapping: the same in every process that maps it. That
//! takes a read of `/proc/self/maps`, so it is done once per lock address, on its first
//! acquisition, and cached (per thread, then per process); the cache of an address is
//! dropped when a [`Segment`] there is unmapped or the lock is labelled. An unlabelled
//! process lock in private memory (the heap, a stack: no inode) is not ordered at all:
//! only its address could name it, and these locks have no `Drop`, so an unrelated lock
//! later put at the same address would inherit its edges (a false inversion). Label it
//! to have its order checked.
//!
//! A condition wait on a process monitor while holding locks of other classes is reported
//! as a [`ReportKind::WaitWhileHolding`] hazard, once per pair of classes, before the
//! thread counts as a waiter.
//!
//! # Across processes
//!
//! An edge between two process locks that is new to this process (an edge-cache miss, so
//! the uncontended path never touches shared memory) is also written to the lock-order
//! table, a named segment beside the wait registry (`<registry name>-order`, see
//! [`shared`](super::shared): `INTERPROC_DEADLOCKS` names both, and `off` switches both
//! off). There a class is the mapping's (device, inode, offset); each edge records the
//! process, thread and call sites that first took it, and the labels that process used.
//! What goes there is what the process's own graph sees as new: two pairs of locks that
//! a process labels alike are one pair of classes to it, and only the first pair's keys
//! are written. An edge that closes a cycle in the table is reported
//! as a [`ReportKind::LockOrderInversion`] by the process that wrote it, naming each edge's
//! process, thread and sites (unless the in-process graph found the cycle already), even
//! if the other edges were taken by processes that have exited since.
//!
//! - **Lifetime.** A process that writes an edge attaches to the table (its pid and start
//!   stamp) and detaches at exit (an `atexit` hook); edges outlive their process for as
//!   long as the table lives. The table is unlinked when no live process is attached: by
//!   the last process to detach, or by whoever opens or reads it and finds only dead ones
//!   (a process killed, or ended by `_exit`, runs no `atexit` hook):
//!   [`shared::wait_graph`](super::shared::wait_graph) (behind `interproc deadlocks`) reads
//!   it too. A process that switches registries ([`shared::use_registry`]) leaves its
//!   old table first.
//! - **Bounded.** [`ORDER_EDGES`] edges and [`ORDER_PROCESSES`] attached processes. A
//!   full table makes room by dropping edges whose writer is no longer attached (it has
//!   exited); when every edge belongs to a live process, or the process table is full,
//!   the process reports [`ReportKind::RegistryFull`] once and records no more edges
//!   there. Never a hang.
//! - **Crashes.** The table's lock is robust: a process killed while writing an edge
//!   leaves the slot unused (the edge counts only once whole).
#![allow(clippy::disallowed_types)] // std's atomics, cells and mutexes: not modelled (see detector.rs)

use std::cell::{Cell, UnsafeCell};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex as StdMutex};

use super::detector::{self, Site};
use super::report::{LockInfo, LockKind, OrderEdge, Report, ReportKind, ThreadInfo};
use super::shared;
use crate::park::{SharedFutex, TaskId};
use crate::robust::{Acquired, RawRobust};
use crate::shm::{Segment, ShmError, ShmSafe};

/// How many lock-order edges the cross-process table holds.
pub const ORDER_EDGES: usize = 256;
/// How many processes can be attached to the cross-process table at once.
pub const ORDER_PROCESSES: usize = 128;
const NAME_LEN: usize = 16;
const LABEL_LEN: usize = 48;
const SITE_LEN: usize = 80;

/// The held-stack id of a process-shared lock: its address with the top bit set (thread
/// locks count their ids up from 1 and never get there).
const PROC_LOCK: u64 = 1 << 63;

/// A lock's (device, inode, offset).
type Key = (u64, u64, u64);

/// The class of an unlabelled process-shared lock in private memory (the heap, a stack: no
/// inode): it is not ordered at all. Its address is all that would name it, and a lock
/// that is freed (these have no `Drop`) can be followed by an unrelated one at the same
/// address, which would inherit its edges: a false inversion. Label it to have its order
/// checked.
const UNORDERED: u32 = u32::MAX - 1;

// ---------------------------------------------------------------------------------------
// Classes, per address.

struct AddrClass {
    class: u32,
    key: Key,
    label: Option<String>,
}

/// Lock classes by address, resolved on first use.
static CLASSES: StdMutex<BTreeMap<usize, AddrClass>> = StdMutex::new(BTreeMap::new());
/// Bumped (under `CLASSES`) whenever cached classes are dropped: a thread's cached entry
/// of an older generation is stale.
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// How many addresses a thread caches (a power of 2).
const RECENT: usize = 16;

thread_local! {
    /// (address, generation, class), direct-mapped by a hash of the address.
    static RECENT_CLASSES: [Cell<(usize, u64, u32)>; RECENT] =
        const { [const { Cell::new((0, 0, 0)) }; RECENT] };
}

fn classes() -> std::sync::MutexGuard<'static, BTreeMap<usize, AddrClass>> {
    CLASSES.lock().unwrap_or_else(|e| e.into_inner())
}

#[inline]
fn class_of(addr: usize) -> u32 {
    let gen = GENERATION.load(Relaxed);
    let i = ((addr as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - RECENT.trailing_zeros()))
        as usize;
    match RECENT_CLASSES.try_with(|r| r[i].get()) {
        Ok((a, g, c)) if a == addr && g == gen => c,
        _ => resolve(addr, gen, i),
    }
}

#[cold]
fn resolve(addr: usize, gen: u64, i: usize) -> u32 {
    let known = classes().get(&addr).map(|c| c.class);
    let class = match known {
        Some(c) => c,
        None => {
            let label = shared::label_of(addr);
            let key = shared::mapping_key(addr);
            let class = match &label {
                None if key.1 == 0 => UNORDERED,
                _ => detector::intern_class(label.clone().unwrap_or_else(|| key_text(key))),
            };
            let mut all = classes();
            if GENERATION.load(Relaxed) != gen {
                return class; // forgotten meanwhile: not cached
            }
            all.entry(addr).or_insert(AddrClass { class, key, label }).class
        }
    };
    if GENERATION.load(Relaxed) == gen {
        let _ = RECENT_CLASSES.try_with(|r| r[i].set((addr, gen, class)));
    }
    class
}

/// How a process lock in shared memory is named when it has no label.
fn key_text((dev, ino, off): Key) -> String {
    format!("shared memory dev {}:{} inode {ino} offset {off}", dev >> 32, dev & 0xFFFF_FFFF)
}

/// Drops the cached classes of the locks in `base..base + len` (relabelled or unmapped).
pub(crate) fn forget(base: usize, len: usize) {
    let mut all = classes();
    all.retain(|&a, _| a < base || a - base >= len);
    GENERATION.fetch_add(1, Relaxed);
}

/// The process-shared locks the calling thread holds: `(their (device, inode, offset),
/// where it took them)`, oldest first. The keys come from the class cache (every held
/// process lock was resolved when taken), read only if it lost one.
pub(super) fn held_by_me() -> Vec<(Key, Site)> {
    let held = detector::held_tagged(PROC_LOCK);
    let all = classes();
    let keys: Vec<Option<Key>> = held
        .iter()
        .map(|&(lock, _)| all.get(&((lock & !PROC_LOCK) as usize)).map(|c| c.key))
        .collect();
    drop(all);
    held.iter()
        .zip(keys)
        .map(|(&(lock, at), key)| {
            (key.unwrap_or_else(|| shared::mapping_key((lock & !PROC_LOCK) as usize)), at)
        })
        .collect()
}

/// The memory `base..base + len` is being unmapped: the locks there are gone.
pub(crate) fn unmapped(base: usize, len: usize) {
    forget(base, len);
    shared::forget_labels(base, len);
}

// ---------------------------------------------------------------------------------------
// The hooks of `process::Mutex` and `process::Monitor`.

/// A process-shared lock about to be taken: its address and class.
#[derive(Clone, Copy)]
pub(crate) struct SharedOrder {
    addr: usize,
    class: u32,
}

impl SharedOrder {
    /// Before a blocking acquisition of the lock at `addr`: records the lock-order edges
    /// from every held lock (those new to this thread; see the module docs).
    #[inline]
    pub(crate) fn before_lock(addr: usize, at: Site) -> Self {
        let b = class_of(addr);
        if b != UNORDERED && detector::holds_any() {
            Self::edges(b, addr, at);
        }
        SharedOrder { addr, class: b }
    }

    /// The edges into class `b` (out of line: the uncontended single lock stays small
    /// enough to inline).
    #[inline(never)]
    fn edges(b: u32, addr: usize, at: Site) {
        detector::held_edges(b, |a, lock, since| edge_missed(a, lock, b, addr, at, since));
    }

    /// Before a `try_lock` or timed acquisition of the lock at `addr`: no edges.
    #[inline]
    pub(crate) fn no_edges(addr: usize) -> Self {
        SharedOrder { addr, class: class_of(addr) }
    }

    /// After the acquisition: if the thread now holds the lock (`held`), it goes on the
    /// thread's held stack.
    #[inline]
    pub(crate) fn acquired(self, held: bool, at: Site) {
        if held && self.class != UNORDERED {
            detector::push_held(PROC_LOCK | self.addr as u64, self.class, at);
        }
    }

    /// The calling thread is about to release the lock at `addr`.
    #[inline]
    pub(crate) fn released(addr: usize) {
        detector::pop_held(PROC_LOCK | addr as u64);
    }

    /// A condition wait (condition `cond`) on the process-shared monitor at `addr`, which
    /// the thread is about to leave: a wait while it holds other locks is reported as a
    /// [`ReportKind::WaitWhileHolding`] hazard, once per pair of classes, as for a thread
    /// monitor (the policy: the one this process gave the monitor, or the global one).
    pub(crate) fn cond_wait(addr: usize, cond: usize, at: Site) {
        // The monitor itself is still held here: only locks of other classes count.
        let class = class_of(addr);
        if class == UNORDERED || !detector::holds_other(class) {
            return;
        }
        let label = shared::label_of(addr);
        let info = LockInfo {
            label: detector::class_label(class),
            labelled: label.is_some(),
            kind: LockKind::Monitor,
            created_at: "unknown (a process-shared lock's creation site is not recorded)".into(),
        };
        let policy = shared::policy_of(addr).unwrap_or_else(detector::policy);
        detector::shared_cond_wait(class, info, policy, cond, at);
    }
}

/// An edge `a -> b` missing from the thread's edge cache, into the process lock at
/// `b_addr` from the held lock `a_lock`.
#[cold]
fn edge_missed(a: u32, a_lock: u64, b: u32, b_addr: usize, at: Site, since: Site) {
    if !detector::first_seen(a, b) {
        return;
    }
    let Some(local) = detector::record_edge(a, b, at, since) else { return };
    let found = local.is_some();
    if let Some(r) = local {
        detector::deliver_inversion(r);
    }
    if a_lock & PROC_LOCK != 0 {
        table_edge((a_lock & !PROC_LOCK) as usize, b_addr, at, since, !found);
    }
}

// ---------------------------------------------------------------------------------------
// The cross-process table.

/// One attached process.
#[repr(C)]
#[derive(Clone, Copy)]
struct Proc {
    pid: u32,
    stamp: u32,
}

/// One lock-order edge: a thread took `to` while holding `from`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Edge {
    used: u32,
    pid: u32,
    tid: u32,
    _pad: u32,
    from: [u64; 3],
    to: [u64; 3],
    name: [u8; NAME_LEN],
    from_label: [u8; LABEL_LEN],
    to_label: [u8; LABEL_LEN],
    at: [u8; SITE_LEN],
    since: [u8; SITE_LEN],
}

impl Edge {
    /// Whether the slot holds an edge (a lock is never ordered after itself, so an edge
    /// from a key to the same key is a slot written by a process that died mid-write).
    fn live(&self) -> bool {
        self.used != 0 && self.from != self.to
    }
}

const NO_EDGE: Edge = Edge {
    used: 0,
    pid: 0,
    tid: 0,
    _pad: 0,
    from: [0; 3],
    to: [0; 3],
    name: [0; NAME_LEN],
    from_label: [0; LABEL_LEN],
    to_label: [0; LABEL_LEN],
    at: [0; SITE_LEN],
    since: [0; SITE_LEN],
};

struct Tables {
    procs: [Proc; ORDER_PROCESSES],
    edges: [Edge; ORDER_EDGES],
}

/// The table segment's contents.
#[repr(C)]
pub(crate) struct OrderTable {
    lock: RawRobust<SharedFutex>,
    /// Set (under `lock`) just before the name is unlinked: holders of this mapping must
    /// open the table anew.
    removed: AtomicU32,
    _pad: u32,
    procs: UnsafeCell<[Proc; ORDER_PROCESSES]>,
    edges: UnsafeCell<[Edge; ORDER_EDGES]>,
}

// SAFETY: `procs` and `edges` are only read or written by a thread that holds `lock` (see
// `Locked`); the rest is atomics.
unsafe impl Sync for OrderTable {}
// SAFETY: `#[repr(C)]`, no pointers (the robust lock is atomic words, `SharedFutex` a
// zero-sized marker), no `Drop`; every field is an integer or byte array, valid for any
// value. A process killed mid-update leaves at most one garbled entry (its text fields
// are read with lossy UTF-8 and bounded lengths), and the robust lock reports the death
// to the next locker.
unsafe impl ShmSafe for OrderTable {}

impl OrderTable {
    fn new() -> Self {
        OrderTable {
            lock: RawRobust::new(),
            removed: AtomicU32::new(0),
            _pad: 0,
            procs: UnsafeCell::new([Proc { pid: 0, stamp: 0 }; ORDER_PROCESSES]),
            edges: UnsafeCell::new([NO_EDGE; ORDER_EDGES]),
        }
    }

    fn lock(&self) -> Option<Locked<'_>> {
        match self.lock.lock_until(None) {
            Acquired::Locked => {}
            // A process died holding it: its update touched one entry at most.
            Acquired::OwnerDied => self.lock.make_consistent(),
            Acquired::NotRecoverable | Acquired::Busy => return None,
        }
        Some(Locked { t: self })
    }
}

/// The table, locked.
struct Locked<'a> {
    t: &'a OrderTable,
}

impl Locked<'_> {
    fn procs(&mut self) -> &mut [Proc; ORDER_PROCESSES] {
        // SAFETY: this thread holds the table lock (a `Locked` exists only then), and
        // `&mut self` makes this the only reference derived from it.
        unsafe { &mut *self.t.procs.get() }
    }

    fn edges(&mut self) -> &mut [Edge; ORDER_EDGES] {
        // SAFETY: as in `procs`.
        unsafe { &mut *self.t.edges.get() }
    }

    /// Detaches the processes that have died; whether a live one is left attached.
    fn sweep(&mut self) -> bool {
        let mut live = false;
        for p in self.procs().iter_mut().filter(|p| p.pid != 0) {
            if crate::sys::is_process_dead(TaskId { id: p.pid, stamp: p.stamp }) {
                *p = Proc { pid: 0, stamp: 0 };
            } else {
                live = true;
            }
        }
        live
    }

    /// Unlinks the table `name` if no live process is attached.
    fn remove_if_unused(&mut self, name: &str) {
        if !self.sweep() && self.t.removed.load(Relaxed) == 0 {
            self.t.removed.store(1, Relaxed);
            let _ = Segment::<OrderTable>::unlink(name);
        }
    }

    fn snapshot(&mut self) -> Box<Tables> {
        Box::new(Tables { procs: *self.procs(), edges: *self.edges() })
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // SAFETY: a `Locked` exists only while this thread holds the lock; it unlocks once.
        unsafe { self.t.lock.unlock() };
    }
}

/// This process's attachment to the table.
struct Attached {
    seg: Segment<OrderTable>,
    name: String,
    pid: u32,
}

static TABLE: StdMutex<Option<Arc<Attached>>> = StdMutex::new(None);
static AT_EXIT: AtomicBool = AtomicBool::new(false);

/// The name of the lock-order table beside the registry `registry`.
pub fn order_table_name(registry: &str) -> String {
    format!("{registry}-order")
}

/// The table, attached (opened or created, and this process listed in it); `None` if
/// detection across processes is off, or the table cannot be had or is full (said once).
fn attach() -> Option<Arc<Attached>> {
    let pid = std::process::id();
    let name = order_table_name(&shared::registry_name()?);
    for _ in 0..8 {
        {
            let mut cur = TABLE.lock().unwrap_or_else(|e| e.into_inner());
            match cur.as_ref() {
                Some(t) if t.pid == pid && t.name == name && t.seg.removed.load(Relaxed) == 0 => {
                    return Some(t.clone());
                }
                // Another table (the registry was switched): this process leaves it.
                Some(t) if t.pid == pid => {
                    detach(t);
                    *cur = None;
                }
                // The parent's attachment in a fork child: not this process's to leave, and
                // not unmapped here (that would take locks another parent thread may have
                // held at the fork).
                Some(_) => std::mem::forget(cur.take()),
                None => {}
            }
        }
        let mut seg = match Segment::create_or_open(&name, OrderTable::new) {
            Ok((s, _)) => s,
            Err(e) => {
                once(&format!("cannot open the lock-order table {name}: {e}"));
                return None;
            }
        };
        seg.disown(); // removed only when no live process is attached
        let t = Arc::new(Attached { seg, name: name.clone(), pid });
        {
            let mut l = t.seg.lock()?;
            if t.seg.removed.load(Relaxed) != 0 {
                continue; // unlinked between our open and our lock
            }
            l.sweep();
            let me = crate::sys::current_process();
            let procs = l.procs();
            if !procs.iter().any(|p| p.pid == me.id) {
                let Some(free) = procs.iter_mut().find(|p| p.pid == 0) else {
                    drop(l);
                    full(&format!("all {ORDER_PROCESSES} process entries"));
                    return None;
                };
                *free = Proc { pid: me.id, stamp: me.stamp };
            }
        }
        if !AT_EXIT.swap(true, Relaxed) {
            // SAFETY: `detach_at_exit` is a plain `extern "C" fn()` that never unwinds.
            unsafe { libc::atexit(detach_at_exit) };
        }
        *TABLE.lock().unwrap_or_else(|e| e.into_inner()) = Some(t.clone());
        return Some(t);
    }
    None
}

/// At exit: this process leaves the table, which goes if no live process is left.
extern "C" fn detach_at_exit() {
    let _ = std::panic::catch_unwind(|| {
        // `try_lock`: a thread still running at exit may hold it; then leave it be.
        let t = match TABLE.try_lock() {
            Ok(mut g) => g.take(),
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner().take(),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        let Some(t) = t else { return };
        // A fork child that never attached itself leaves the parent's entry alone.
        if t.pid == std::process::id() {
            detach(&t);
        }
        // Not unmapped: dropping the segment takes this process's class and label locks,
        // which a thread still running at exit may hold.
        std::mem::forget(t);
    });
}

/// This process leaves the table `t`, which is unlinked if no live process is left.
fn detach(t: &Attached) {
    let Some(mut l) = t.seg.lock() else { return };
    for p in l.procs().iter_mut().filter(|p| p.pid == t.pid) {
        *p = Proc { pid: 0, stamp: 0 };
    }
    l.remove_if_unused(&t.name);
}

fn once(msg: &str) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Relaxed) {
        eprintln!("interproc-sync: {msg}; lock order across processes goes unchecked");
    }
}

#[cold]
fn full(what: &str) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Relaxed) {
        detector::deliver_note(Report {
            kind: ReportKind::RegistryFull,
            parties: Vec::new(),
            edges: Vec::new(),
            held: vec![format!(
                "{what} of the cross-process lock-order table are taken: this process records \
                 no more edges there"
            )],
        });
    }
}

/// Writes the edge between the process locks at `a_addr` and `b_addr` to the table, and
/// reports it (if `report`) when it closes a cycle there.
#[cold]
fn table_edge(a_addr: usize, b_addr: usize, at: Site, since: Site, report: bool) {
    let (a, b) = {
        let all = classes();
        match (all.get(&a_addr), all.get(&b_addr)) {
            (Some(a), Some(b)) => ((a.key, a.label.clone()), (b.key, b.label.clone())),
            _ => return, // forgotten meanwhile (unmapped)
        }
    };
    // Private memory, or one lock mapped twice: nothing to share.
    if a.0 .1 == 0 || b.0 .1 == 0 || a.0 == b.0 {
        return;
    }
    let Some(t) = attach() else { return };
    let me = crate::sys::current_thread();
    let name = shared::thread_name();
    let new = {
        let Some(mut l) = t.seg.lock() else { return };
        let attached: Vec<u32> = l.procs().iter().map(|p| p.pid).filter(|&p| p != 0).collect();
        let edges = l.edges();
        let (from, to) = (key_array(a.0), key_array(b.0));
        if edges.iter().any(|e| e.used != 0 && e.from == from && e.to == to) {
            return;
        }
        let path: Option<Vec<OrderEdge>> = if report {
            path(edges, to, from).map(|p| p.iter().map(|&i| order_edge(&edges[i])).collect())
        } else {
            None
        };
        // A free slot, or else one whose writer has left (exited or detached): the live
        // processes' order goes first.
        let free = edges.iter().position(|e| e.used == 0);
        let Some(free) = free.or_else(|| edges.iter().position(|e| !attached.contains(&e.pid)))
        else {
            drop(l);
            full(&format!("all {ORDER_EDGES} edges, all written by live processes"));
            return;
        };
        let e = &mut edges[free];
        *e = NO_EDGE;
        e.pid = std::process::id();
        e.tid = me.id;
        e.from = from;
        e.to = to;
        shared::put(&mut e.name, &name);
        shared::put(&mut e.from_label, a.1.as_deref().unwrap_or(""));
        shared::put(&mut e.to_label, b.1.as_deref().unwrap_or(""));
        shared::put(&mut e.at, &detector::site_text(at));
        shared::put(&mut e.since, &detector::site_text(since));
        // The edge is whole before it counts: a process killed while writing it (the next
        // locker gets the table with `OwnerDied`) leaves an unused slot, not a garbled edge.
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::Release);
        e.used = 1;
        path.map(|mut p| {
            p.push(order_edge(&edges[free]));
            p
        })
    };
    if let Some(edges) = new {
        let r = Report {
            kind: ReportKind::LockOrderInversion,
            parties: Vec::new(),
            edges,
            held: Vec::new(),
        };
        detector::deliver_inversion(r);
    }
}

fn key_array((dev, ino, off): Key) -> [u64; 3] {
    [dev, ino, off]
}

/// The edges (indices) of a path from `from` to `to` among the used ones, breadth-first.
fn path(edges: &[Edge], from: [u64; 3], to: [u64; 3]) -> Option<Vec<usize>> {
    let mut via: BTreeMap<[u64; 3], usize> = BTreeMap::new();
    let mut queue = VecDeque::from([from]);
    while let Some(k) = queue.pop_front() {
        if k == to {
            let mut out = Vec::new();
            let mut x = to;
            while x != from {
                let i = via[&x];
                out.push(i);
                x = edges[i].from;
            }
            out.reverse();
            return Some(out);
        }
        for (i, e) in edges.iter().enumerate() {
            if e.live() && e.from == k && e.to != from && !via.contains_key(&e.to) {
                via.insert(e.to, i);
                queue.push_back(e.to);
            }
        }
    }
    None
}

fn class_text(key: [u64; 3], label: &[u8]) -> String {
    let label = shared::get(label);
    if label.is_empty() {
        key_text((key[0], key[1], key[2]))
    } else {
        label
    }
}

fn order_edge(e: &Edge) -> OrderEdge {
    let name = shared::get(&e.name);
    OrderEdge {
        from: class_text(e.from, &e.from_label),
        to: class_text(e.to, &e.to_label),
        thread: ThreadInfo {
            pid: e.pid,
            tid: e.tid as i32,
            name: (!name.is_empty()).then_some(name),
        },
        at: shared::get(&e.at),
        holding_since: shared::get(&e.since),
    }
}

// ---------------------------------------------------------------------------------------
// Reading the table from outside.

/// The cross-process lock-order table, read by [`read_order_table`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct OrderGraph {
    /// Every edge in the table (each with the process, thread and sites that first took it).
    pub edges: Vec<OrderEdge>,
    /// The cycles among them, one [`ReportKind::LockOrderInversion`] report each.
    pub inversions: Vec<Report>,
    /// The live processes attached to the table.
    pub processes: Vec<u32>,
}

/// Reads the lock-order table beside the registry `registry`
/// ([`order_table_name`]): its edges and the cycles among them. Reading detaches dead
/// processes, and removes the table if no live process is attached. A missing table is an
/// empty graph.
///
/// # Errors
///
/// [`ShmError`] if the table exists but cannot be opened (another user's, or not a table of
/// this version).
pub fn read_order_table(registry: &str) -> Result<OrderGraph, ShmError> {
    let name = order_table_name(registry);
    let mut seg = match Segment::<OrderTable>::open(&name) {
        Ok(s) => s,
        Err(ShmError::NotFound { .. }) => return Ok(OrderGraph::default()),
        Err(e) => return Err(e),
    };
    seg.disown();
    let snap = {
        let Some(mut l) = seg.lock() else { return Ok(OrderGraph::default()) };
        l.remove_if_unused(&name);
        l.snapshot()
    };
    let used: Vec<usize> = (0..ORDER_EDGES).filter(|&i| snap.edges[i].live()).collect();
    let mut inversions = Vec::new();
    let mut cycles: Vec<Vec<usize>> = Vec::new();
    for &i in &used {
        let e = &snap.edges[i];
        let others: Vec<Edge> =
            snap.edges.iter().enumerate().map(|(j, x)| if j == i { NO_EDGE } else { *x }).collect();
        let Some(mut cycle) = path(&others, e.to, e.from) else { continue };
        cycle.push(i);
        let mut key = cycle.clone();
        key.sort_unstable();
        if cycles.contains(&key) {
            continue;
        }
        cycles.push(key);
        inversions.push(Report {
            kind: ReportKind::LockOrderInversion,
            parties: Vec::new(),
            edges: cycle.iter().map(|&j| order_edge(&snap.edges[j])).collect(),
            held: Vec::new(),
        });
    }
    Ok(OrderGraph {
        edges: used.iter().map(|&i| order_edge(&snap.edges[i])).collect(),
        inversions,
        processes: snap.procs.iter().filter(|p| p.pid != 0).map(|p| p.pid).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::{path, Edge, NO_EDGE};

    fn edge(from: u64, to: u64) -> Edge {
        Edge { used: 1, from: [0, 1, from], to: [0, 1, to], ..NO_EDGE }
    }

    /// A path through the table's edges is found breadth-first, and only along used ones.
    #[test]
    fn paths_follow_used_edges() {
        let mut edges = [edge(1, 2), edge(2, 3), edge(3, 4), NO_EDGE];
        assert_eq!(path(&edges, [0, 1, 1], [0, 1, 4]), Some(vec![0, 1, 2]));
        assert_eq!(path(&edges, [0, 1, 4], [0, 1, 1]), None);
        edges[1].used = 0;
        assert_eq!(path(&edges, [0, 1, 1], [0, 1, 4]), None);
    }
}
