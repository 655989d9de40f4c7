//! The in-process detector: per-lock state ([`LockMeta`]), per-thread state (thread-locals)
//! and one registry of threads, their waits and the lock-order graph.
//!
//! This code is not part of the modelled algorithms: the primitives call it only through
//! hooks that are no-ops without the feature (`off.rs`), and the feature cannot be combined
//! with `--cfg interproc_loom`. It uses std's atomics and `Mutex` directly.
//!
//! # Consistency
//!
//! Owners are recorded in the lock (`owner`, `owner_at`) with plain atomic stores after the
//! lock is taken and before it is released, with no registry lock: that is the whole cost
//! of an uncontended acquire. A thread that blocks registers its wait and analyses the
//! graph in one critical section of the registry mutex. A blocked thread's holdings are
//! stable (it cannot release while blocked), and everything it did before blocking is
//! visible to the analysing thread through the registry mutex. So a cycle is only reported
//! among threads that are all registered as blocked, each waiting for what the next one
//! holds: the last thread to close a cycle always sees it. A thread that is running, or
//! whose state the detector does not know (an unregistered or exited owner, a lock whose
//! owner is not yet recorded), counts as able to make progress: the detector errs towards
//! silence, never towards a false report.
//!
//! Semaphore permits are recorded the same way, in the taking thread's own memory (its
//! [`PermitBook`], plain stores): claimed before the count changes hands (the take's
//! compare-and-swap is `AcqRel` with the feature), cleared after it changed back, and
//! withdrawn while the thread is parked. A thread about to block reads the word by a
//! read-modify-write first (so every take before it is visible with its claim) and scans
//! the books under the registry lock; a running holder may be listed early or late (it
//! counts as able to release anyway), a blocked one exactly. One theoretical window
//! stays: between that read and the check, a release, a take of the permits by a thread
//! not yet visible, and a third thread's flagging of waiters that restores the very same
//! word; the report is dropped whenever the word moved otherwise.
//!
//! A permit waiter stays registered from its park until it runs `woken`; its record keeps
//! the word and the value it parked on, and once the word moved (a release woke it) it
//! counts as able to go on. A waiter's own permits of the semaphore it waits for count as
//! able to be given back (its `Permit` may have moved to a running thread).
#![allow(clippy::disallowed_types)] // std's atomics: not modelled (see above)

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::panic::Location;
use std::sync::atomic::{
    AtomicPtr, AtomicU32, AtomicU64, AtomicU8,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::{Mutex as StdMutex, MutexGuard as StdGuard};
use std::time::Instant;

use super::report::{
    Holding, LockInfo, LockKind, OrderEdge, Party, Report, ReportKind, ThreadInfo, WaitFor,
};
use super::{Deadlock, Policy};

/// Where a lock was taken or created: a `#[track_caller]` location.
pub(crate) type Site = &'static Location<'static>;

/// The caller's location (through every `#[track_caller]` frame above).
#[track_caller]
#[inline(always)]
pub(crate) fn caller() -> Site {
    Location::caller()
}

/// What a blocking hook fails with under the `Error` policy.
pub(crate) type BlockError = Deadlock;

pub(crate) use super::report::WaitFor as WaitKind;

fn site(s: Site) -> String {
    format!("{}:{}:{}", s.file(), s.line(), s.column())
}

// ---------------------------------------------------------------------------------------
// Global settings and the report log.

static POLICY: AtomicU8 = AtomicU8::new(0);
static LOGGING: AtomicU8 = AtomicU8::new(1);
static REPORTS: StdMutex<Vec<Report>> = StdMutex::new(Vec::new());
/// How many reports [`take_reports`] keeps; older ones are dropped first.
const KEEP_REPORTS: usize = 1024;

fn policy_code(p: Policy) -> u8 {
    match p {
        Policy::Report => 1,
        Policy::Error => 2,
        Policy::Panic => 3,
    }
}

fn policy_from(code: u8) -> Option<Policy> {
    match code {
        1 => Some(Policy::Report),
        2 => Some(Policy::Error),
        3 => Some(Policy::Panic),
        _ => None,
    }
}

pub(super) fn set_policy(p: Policy) {
    POLICY.store(policy_code(p), Relaxed);
}

pub(super) fn policy() -> Policy {
    policy_from(POLICY.load(Relaxed)).unwrap_or(Policy::Report)
}

pub(super) fn set_logging(on: bool) {
    LOGGING.store(u8::from(on), Relaxed);
}

pub(super) fn take_reports() -> Vec<Report> {
    std::mem::take(&mut *REPORTS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Logs and keeps `report`, then applies `policy`: `Err` only under `Error` when the caller
/// can return it (`can_err`); a panic under `Panic`.
fn deliver(report: Report, policy: Policy, can_err: bool) -> Result<(), Deadlock> {
    if LOGGING.load(Relaxed) != 0 && policy != Policy::Panic {
        eprintln!("interproc-sync: {report}");
    }
    {
        let mut kept = REPORTS.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() == KEEP_REPORTS {
            kept.remove(0);
        }
        kept.push(report.clone());
    }
    match policy {
        Policy::Error if can_err => Err(Deadlock::new(report)),
        Policy::Report | Policy::Error => Ok(()),
        Policy::Panic => panic!("interproc-sync: {report}"),
    }
}

/// Delivers a cross-process report (`shared.rs`) under the policy this process gave the
/// lock, or else its global policy.
pub(super) fn deliver_shared(
    report: Report,
    lock_policy: Option<Policy>,
    can_err: bool,
) -> Result<(), Deadlock> {
    deliver(report, lock_policy.unwrap_or_else(policy), can_err)
}

/// The text of a call site, for the cross-process registry.
pub(super) fn site_text(s: Site) -> String {
    site(s)
}

/// The cross-process registry has no free slot: said once per process, as a report that
/// no policy turns into an error or a panic.
#[cold]
pub(super) fn registry_full(slots: usize) {
    static SAID: AtomicU8 = AtomicU8::new(0);
    if SAID.swap(1, Relaxed) == 0 {
        let report = Report {
            kind: ReportKind::RegistryFull,
            parties: Vec::new(),
            edges: Vec::new(),
            held: vec![format!("all {slots} slots of the cross-process registry are taken")],
        };
        let _ = deliver(report, Policy::Report, false);
    }
}

// ---------------------------------------------------------------------------------------
// Threads.

static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);
static NEXT_LOCK: AtomicU64 = AtomicU64::new(1);

/// A lock this thread holds (mutexes and monitors; permits live in the semaphore's ledger).
#[derive(Clone, Copy)]
struct Held {
    lock: u64,
    class: u32,
    at: Site,
}

/// The site of an unused entry of the inline held stack.
const NO_SITE: Site = Location::caller();

/// A spilled held entry that can no longer be read (see `Local::spilled`).
const UNKNOWN_HELD: Held = Held { lock: 0, class: NO_CLASS, at: NO_SITE };

/// How many held locks a thread keeps inline (no allocation); deeper nesting spills into a
/// `Vec`.
const INLINE_HELD: usize = 16;

/// How many lock-order edges a thread remembers in its direct-mapped cache (a power of 2).
const EDGE_CACHE: usize = 64;

/// Removes the thread from the registry when it exits.
struct ExitGuard(Cell<u64>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let id = self.0.get();
        if id != 0 {
            // Permits taken from here on (in a later thread-local destructor) go to the
            // semaphore's slow list, under this id, which is no longer alive.
            let _ = LOCAL.try_with(|l| l.book.set(None));
            let mut reg = registry();
            reg.threads.remove(&id);
            reg.retire_book(id);
        }
    }
}

/// A cheap hasher for the thread-local sets of small integer keys (std's SipHash would
/// cost more than the rest of an acquire).
#[derive(Default, Clone, Copy)]
struct IntHasher(u64);

impl std::hash::Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(29) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IntSet<T> = HashSet<T, std::hash::BuildHasherDefault<IntHasher>>;

thread_local! {
    /// What every acquire and release touches: constant-initialised and without `Drop`,
    /// so an access is a plain thread-pointer-relative load, with no lazy-init or
    /// destructor-state check.
    static LOCAL: Local = const {
        Local {
            me: Cell::new(0),
            depth: Cell::new(0),
            locks: [const { Cell::new(0) }; INLINE_HELD],
            classes: [const { Cell::new(NO_CLASS) }; INLINE_HELD],
            sites: [const { Cell::new(NO_SITE) }; INLINE_HELD],
            edges: [const { Cell::new(0) }; EDGE_CACHE],
            book: Cell::new(None),
        }
    };
    static EXIT: ExitGuard = const { ExitGuard(Cell::new(0)) };
    /// Held locks beyond the first [`INLINE_HELD`], oldest first.
    static SPILL: RefCell<Vec<Held>> = const { RefCell::new(Vec::new()) };
    /// Lock-order edges this thread already reported to the registry (behind the
    /// direct-mapped cache in `Local::edges`).
    static SEEN: RefCell<IntSet<(u32, u32)>> = RefCell::new(IntSet::default());
    /// Monitors and semaphores this thread is attached to.
    static ATTACHED: RefCell<IntSet<u64>> = RefCell::new(IntSet::default());
}

struct Local {
    /// This thread's detector id; 0 until it first touches a lock.
    me: Cell<u64>,
    /// How many mutexes and monitors this thread holds (the first [`INLINE_HELD`] in
    /// `held`, the rest in `SPILL`).
    depth: Cell<usize>,
    /// The mutexes and monitors this thread holds, in acquisition order: their ids,
    /// classes and where they were taken, field by field (each a plain store, with no
    /// copy of a whole `Held` through the stack).
    locks: [Cell<u64>; INLINE_HELD],
    classes: [Cell<u32>; INLINE_HELD],
    sites: [Cell<Site>; INLINE_HELD],
    /// Lock-order edges `(from << 32) | to` this thread has seen, direct-mapped by a hash;
    /// 0 is empty (an edge never joins a class to itself, so no edge is 0).
    edges: [Cell<u64>; EDGE_CACHE],
    /// Where this thread records the semaphore permits it holds (set by `register`).
    book: Cell<Option<&'static PermitBook>>,
}

impl Local {
    #[inline]
    fn id(&self) -> u64 {
        match self.me.get() {
            0 => register(self),
            id => id,
        }
    }

    /// The `i`th held lock, oldest first (`i < depth`).
    #[inline]
    fn get(&self, i: usize) -> Held {
        if i < INLINE_HELD {
            Held {
                lock: self.locks[i].get(),
                class: self.classes[i].get(),
                at: self.sites[i].get(),
            }
        } else {
            Self::spilled(i)
        }
    }

    /// A spilled entry; [`UNKNOWN_HELD`] once the spill is gone (the thread's
    /// thread-locals are being destroyed, and a destructor still holds deep nesting).
    #[cold]
    fn spilled(i: usize) -> Held {
        SPILL
            .try_with(|s| s.borrow().get(i - INLINE_HELD).copied())
            .ok()
            .flatten()
            .unwrap_or(UNKNOWN_HELD)
    }

    /// Sets the `i`th entry; false if it belongs in the spill and the spill is gone.
    #[inline]
    fn set(&self, i: usize, h: Held) -> bool {
        if i < INLINE_HELD {
            self.locks[i].set(h.lock);
            self.classes[i].set(h.class);
            self.sites[i].set(h.at);
            true
        } else {
            Self::spill(i, h)
        }
    }

    /// Spills the `i`th entry. A lock taken in a thread-local destructor after the spill
    /// was destroyed is not recorded (the hooks degrade, never panic: a panic there would
    /// abort the process).
    #[cold]
    fn spill(i: usize, h: Held) -> bool {
        SPILL
            .try_with(|s| {
                let mut s = s.borrow_mut();
                if i - INLINE_HELD < s.len() {
                    s[i - INLINE_HELD] = h;
                } else {
                    s.push(h);
                }
            })
            .is_ok()
    }

    #[inline]
    fn push(&self, h: Held) {
        let d = self.depth.get();
        if self.set(d, h) {
            self.depth.set(d + 1);
        }
    }

    #[inline]
    fn pop(&self, lock: u64) {
        let d = self.depth.get();
        if d > 0 && d <= INLINE_HELD && self.locks[d - 1].get() == lock {
            self.depth.set(d - 1);
        } else {
            self.remove(lock);
        }
    }

    /// Removes the newest entry of `lock` (released out of order, or from the spill).
    #[cold]
    fn remove(&self, lock: u64) {
        let d = self.depth.get();
        let Some(i) = (0..d).rev().find(|&i| self.get(i).lock == lock) else { return };
        for j in i..d - 1 {
            self.set(j, self.get(j + 1));
        }
        if d > INLINE_HELD {
            let _ = SPILL.try_with(|s| s.borrow_mut().pop());
        }
        self.depth.set(d - 1);
    }

    /// The held locks' classes and sites, oldest first.
    fn held(&self) -> Vec<(u32, Site)> {
        (0..self.depth.get())
            .map(|i| self.get(i))
            .filter(|h| h.class != NO_CLASS)
            .map(|h| (h.class, h.at))
            .collect()
    }

    /// Whether the edge `a -> b` is in the cache; puts it there if not.
    #[inline]
    fn edge_cached(&self, a: u32, b: u32) -> bool {
        let key = (u64::from(a) << 32) | u64::from(b);
        let hash = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - EDGE_CACHE.trailing_zeros());
        let slot = &self.edges[hash as usize];
        if slot.get() == key {
            return true;
        }
        slot.set(key);
        false
    }
}

/// This thread's id, registering it on first use; 0 while the thread is being torn down
/// (its thread-locals are gone), which the hooks treat as "unknown".
#[inline]
fn me() -> u64 {
    LOCAL.try_with(Local::id).unwrap_or(0)
}

/// Registers the calling thread (its first lock): an id, and its pid, tid and name for
/// reports, and its permit book. `l` is the thread's state.
#[cold]
fn register(l: &Local) -> u64 {
    // The pid in the high half: after a fork, the child's copy of the registry and of the
    // forking thread's cached id still name the parent's threads, which `alive` then
    // treats as unknown (so they can never complete a cycle in the child); and an owner
    // id read from a lock in memory shared with another process never matches a thread
    // of this one.
    let id =
        (u64::from(std::process::id()) << 32) | (NEXT_THREAD.fetch_add(1, Relaxed) & 0xFFFF_FFFF);
    let info = ThreadInfo {
        pid: std::process::id(),
        tid: crate::sys::gettid(),
        name: std::thread::current().name().map(str::to_owned),
    };
    let book = {
        let mut reg = registry();
        reg.threads.insert(id, ThreadEntry { info, wait: None });
        reg.book_for(id)
    };
    if EXIT.try_with(|g| g.0.set(id)).is_err() {
        let mut reg = registry();
        reg.threads.remove(&id);
        reg.retire_book(id);
        return 0;
    }
    l.book.set(Some(book));
    l.me.set(id);
    id
}

// ---------------------------------------------------------------------------------------
// The registry.

/// A pointer to the `LockMeta` a thread waits on.
#[derive(Clone, Copy)]
struct MetaPtr(*const LockMeta);

// SAFETY: a `MetaPtr` is only stored in the registry while its thread is blocked inside a
// call that borrows the lock (the `WaitSlot` borrows the `LockMeta` and removes the record
// in its `Drop`), and only dereferenced under the registry mutex, so the `LockMeta` (which
// is `Sync`) is alive whenever another thread reads through it.
unsafe impl Send for MetaPtr {}

/// The word a semaphore waiter parked on, and the value it parked on.
#[derive(Clone, Copy)]
struct WordPtr(*const std::sync::atomic::AtomicU32, u32);

// SAFETY: as `MetaPtr`: the word belongs to the semaphore that the blocked thread borrows
// while its record (which holds this pointer) is registered, and it is only read (an atomic
// read-modify-write that changes nothing) under the registry mutex.
unsafe impl Send for WordPtr {}

impl WordPtr {
    /// Whether the word moved since the thread parked: a release woke it (or may have), and
    /// it is about to run `woken` and try again.
    fn moved(self) -> bool {
        // SAFETY: see the `Send` impl: the semaphore is borrowed by the blocked thread while
        // its record is registered, and records are read only under the registry mutex.
        let word = unsafe { &*self.0 };
        // A read-modify-write reads the newest value (a plain load might return one from
        // before the release that woke the thread).
        word.fetch_add(0, std::sync::atomic::Ordering::AcqRel) != self.1
    }
}

struct WaitRecord {
    lock: MetaPtr,
    what: WaitKind,
    since: Instant,
    at: Site,
    /// Semaphores: the word and the value the thread parked on.
    word: Option<WordPtr>,
}

impl WaitRecord {
    fn meta(&self) -> &LockMeta {
        // SAFETY: see `MetaPtr`: the record is read only under the registry mutex, while
        // its thread is still blocked with the lock borrowed.
        unsafe { &*self.lock.0 }
    }
}

struct ThreadEntry {
    info: ThreadInfo,
    wait: Option<WaitRecord>,
}

struct EdgeInfo {
    thread: ThreadInfo,
    at: Site,
    holding_since: Site,
}

struct Registry {
    threads: BTreeMap<u64, ThreadEntry>,
    /// Lock class names by id, and ids by name.
    classes: Vec<String>,
    class_ids: BTreeMap<String, u32>,
    /// The lock-order graph between classes: (from, to) -> first time seen.
    edges: BTreeMap<(u32, u32), EdgeInfo>,
    /// (monitor class, held class) hazards already reported.
    hazards: BTreeSet<(u32, u32)>,
    /// Every thread's permit book (never freed: a book goes to a new thread once its owner
    /// has exited and every permit recorded in it was given back).
    books: Vec<&'static PermitBook>,
}

static REGISTRY: StdMutex<Registry> = StdMutex::new(Registry {
    threads: BTreeMap::new(),
    classes: Vec::new(),
    class_ids: BTreeMap::new(),
    edges: BTreeMap::new(),
    hazards: BTreeSet::new(),
    books: Vec::new(),
});

fn registry() -> StdGuard<'static, Registry> {
    // A panic under the `Panic` policy happens outside the registry lock, but a poisoned
    // registry is still consistent (every update is a single insert or remove).
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Who could end a wait.
enum Releasers {
    /// Someone the detector cannot see as blocked: the wait may end.
    Live,
    /// These threads (possibly none), and whether they hold what is waited for (rather than
    /// being merely attached).
    Threads(Vec<u64>, bool),
}

impl Registry {
    fn intern(&mut self, name: String) -> u32 {
        if let Some(&id) = self.class_ids.get(&name) {
            return id;
        }
        let id = u32::try_from(self.classes.len()).expect("fewer than 2^32 lock classes");
        self.classes.push(name.clone());
        self.class_ids.insert(name, id);
        id
    }

    /// A permit book for the new thread `id` (or a further one for the thread `id`, whose
    /// books are full): one that an exited thread of this process left empty (at its exit,
    /// or later, when the last permit it took was given back by another thread), or a new
    /// one. Never one of another process's threads (in a forked
    /// child, the forking thread goes on using its copy of its book under its old id).
    fn book_for(&mut self, id: u64) -> &'static PermitBook {
        let reusable = self.books.iter().copied().find(|b| {
            let owner = b.owner.load(Relaxed);
            (owner == 0 || (!self.alive(owner) && owner >> 32 == u64::from(std::process::id())))
                && b.slots.iter().all(|s| s.lock.load(Acquire) == 0)
        });
        let book = reusable.unwrap_or_else(|| {
            let b: &'static PermitBook = Box::leak(Box::default());
            self.books.push(b);
            b
        });
        // A reused book is no longer part of its former owner's chain (see `retire_book`).
        book.next.store(std::ptr::null_mut(), Relaxed);
        book.owner.store(id, Relaxed);
        book
    }

    /// The exited thread `id` no longer records permits in its book. A book that still
    /// records some (permits sent to another thread, not yet given back) keeps the dead id
    /// until they are: their holder counts as unknown, so as able to give them back.
    /// The same for each book chained to its first one (they are unlinked: only the owner
    /// walks its chain, and it is exiting).
    fn retire_book(&mut self, id: u64) {
        for b in self.books.iter().filter(|b| b.owner.load(Relaxed) == id) {
            b.next.store(std::ptr::null_mut(), Relaxed);
            if b.slots.iter().all(|s| s.lock.load(Acquire) == 0) {
                b.owner.store(0, Relaxed);
            }
        }
    }

    /// Who holds permits of the semaphore `meta`, and how many (the books, then the
    /// ledger's list). A book's slot is filled before the count changes hands and emptied
    /// after it changed back, so a holder that is running may be listed early or late (it
    /// counts as able to give them back anyway), and a blocked holder's slots are exact:
    /// it filled them before it registered its wait, under the registry lock that the
    /// reader holds.
    fn holders(&self, meta: &LockMeta) -> Vec<Hold> {
        let mut out: Vec<Hold> = Vec::new();
        for b in &self.books {
            for s in &b.slots {
                if s.lock.load(Acquire) != meta.id {
                    continue;
                }
                let permits = s.permits.load(Relaxed);
                // SAFETY: `at` only ever holds null or pointers made from `&'static Location`.
                let at: Option<Site> = unsafe { s.at.load(Relaxed).as_ref() };
                let thread = b.owner.load(Relaxed);
                match out.iter_mut().find(|h| h.thread == thread) {
                    Some(h) => h.permits += permits,
                    None => out.push(Hold { thread, permits, at }),
                }
            }
        }
        if let Some(ledger) = meta.ledger() {
            out.extend(ledger.slow().holders.iter().copied());
        }
        out.retain(|h| h.permits > 0);
        out
    }

    /// Whether `t` is a live thread of this process (see `register` for the pid check).
    fn alive(&self, t: u64) -> bool {
        (t >> 32) == u64::from(std::process::id()) && self.threads.contains_key(&t)
    }

    /// Who could end `t`'s wait `w`.
    fn releasers(&self, t: u64, w: &WaitRecord) -> Releasers {
        let meta = w.meta();
        match w.what {
            WaitFor::Lock => {
                let owner = meta.owner.load(Relaxed);
                if owner == 0 || !self.alive(owner) {
                    Releasers::Live
                } else {
                    Releasers::Threads(vec![owner], true)
                }
            }
            WaitFor::Permits(_) => {
                let Some(ledger) = meta.ledger() else { return Releasers::Live };
                // Woken by a release, still registered until it runs `woken`.
                if w.word.is_some_and(WordPtr::moved) {
                    return Releasers::Live;
                }
                let holders = self.holders(meta);
                if holders.is_empty() {
                    Releasers::Threads(self.attached(&ledger.slow().attached), false)
                } else if holders.iter().any(|h| h.thread == t || !self.alive(h.thread)) {
                    // A waiter's own permits of this semaphore may have moved to a running
                    // thread (a `Permit` is `Send`): they do not make it stuck.
                    Releasers::Live
                } else {
                    Releasers::Threads(holders.iter().map(|h| h.thread).collect(), true)
                }
            }
            WaitFor::Condition(_) => match meta.ledger() {
                Some(ledger) => Releasers::Threads(self.attached(&ledger.slow().attached), false),
                None => Releasers::Live,
            },
        }
    }

    fn attached(&self, list: &[u64]) -> Vec<u64> {
        list.iter().copied().filter(|&t| self.alive(t)).collect()
    }

    fn wait_of(&self, t: u64) -> Option<&WaitRecord> {
        self.threads.get(&t).and_then(|e| e.wait.as_ref())
    }

    /// The blocked threads that can never go on: the greatest set of blocked threads all
    /// of whose releasers are in the set.
    fn stuck(&self) -> BTreeSet<u64> {
        // Each blocked thread's releasers, found once (a semaphore's holders are a scan of
        // every thread's permit book); `None` for a wait that may end.
        let waits: BTreeMap<u64, Option<Vec<u64>>> = self
            .threads
            .iter()
            .filter_map(|(&t, e)| e.wait.as_ref().map(|w| (t, w)))
            .map(|(t, w)| match self.releasers(t, w) {
                Releasers::Threads(ids, _) => (t, Some(ids)),
                Releasers::Live => (t, None),
            })
            .collect();
        let mut stuck: BTreeSet<u64> = waits.keys().copied().collect();
        loop {
            let before = stuck.clone();
            stuck.retain(|t| match &waits[t] {
                Some(ids) => ids.iter().all(|r| before.contains(r)),
                None => false,
            });
            if stuck.len() == before.len() {
                return stuck;
            }
        }
    }

    /// A path of stuck threads from `me` back to `me`, each waiting for the next.
    fn cycle_through(&self, me: u64, stuck: &BTreeSet<u64>) -> Option<Vec<u64>> {
        fn dfs(
            r: &Registry,
            t: u64,
            me: u64,
            stuck: &BTreeSet<u64>,
            seen: &mut BTreeSet<u64>,
            path: &mut Vec<u64>,
        ) -> bool {
            let Some(Releasers::Threads(ids, _)) = r.wait_of(t).map(|w| r.releasers(t, w)) else {
                return false;
            };
            for n in ids.into_iter().filter(|n| stuck.contains(n)) {
                if n == me {
                    return true;
                }
                if seen.insert(n) {
                    path.push(n);
                    if dfs(r, n, me, stuck, seen, path) {
                        return true;
                    }
                    path.pop();
                }
            }
            false
        }
        let mut path = vec![me];
        let mut seen = BTreeSet::from([me]);
        dfs(self, me, me, stuck, &mut seen, &mut path).then_some(path)
    }

    /// Whether `me`, which has just registered its wait, can never go on; the report if so.
    fn check(&self, me: u64) -> Option<Report> {
        let w = self.wait_of(me)?;
        let quick = self.releasers(me, w);
        let (ids, holders) = match &quick {
            Releasers::Live => return None,
            Releasers::Threads(ids, holders) => (ids, *holders),
        };
        // Fast exit, the common contended case: a releaser is running.
        if ids.iter().any(|&r| r != me && self.wait_of(r).is_none()) {
            return None;
        }
        let stuck = self.stuck();
        if !stuck.contains(&me) {
            return None;
        }
        let now = crate::loom::time::now();
        if !holders {
            // A monitor condition, or permits that nobody holds: only attached parties
            // could signal, and all of them are blocked for good.
            let mut parties = vec![self.party(me, now)];
            parties.extend(ids.iter().filter(|&&t| t != me).map(|&t| self.party(t, now)));
            return Some(Report {
                kind: ReportKind::NobodyLeftToSignal,
                parties,
                edges: Vec::new(),
                held: Vec::new(),
            });
        }
        let cycle = self.cycle_through(me, &stuck)?;
        Some(Report {
            kind: ReportKind::WaitCycle,
            parties: cycle.iter().map(|&t| self.party(t, now)).collect(),
            edges: Vec::new(),
            held: Vec::new(),
        })
    }

    fn thread_info(&self, t: u64) -> ThreadInfo {
        self.threads.get(&t).map_or_else(
            || ThreadInfo { pid: std::process::id(), tid: 0, name: Some("<exited>".into()) },
            |e| e.info.clone(),
        )
    }

    fn party(&self, t: u64, now: Instant) -> Party {
        let e = &self.threads[&t];
        let w = e.wait.as_ref().expect("parties are blocked threads");
        let meta = w.meta();
        let held_by = match w.what {
            WaitFor::Lock => {
                let owner = meta.owner.load(Relaxed);
                let at = meta.owner_at.load(Relaxed);
                if owner == 0 || at.is_null() {
                    Vec::new()
                } else {
                    // SAFETY: `owner_at` only ever holds pointers made from
                    // `&'static Location<'static>`.
                    let at: Site = unsafe { &*at };
                    vec![Holding {
                        thread: self.thread_info(owner),
                        permits: 1,
                        acquired_at: site(at),
                    }]
                }
            }
            WaitFor::Permits(_) | WaitFor::Condition(_) => self
                .holders(meta)
                .iter()
                .map(|h| Holding {
                    thread: self.thread_info(h.thread),
                    permits: h.permits,
                    acquired_at: h.at.map_or_else(|| "unknown".to_owned(), site),
                })
                .collect(),
        };
        Party {
            thread: e.info.clone(),
            waits_for: meta.info(),
            wait: w.what,
            waiting_at: site(w.at),
            waited_us: u64::try_from(now.saturating_duration_since(w.since).as_micros())
                .unwrap_or(u64::MAX),
            held_by,
        }
    }

    /// A path of lock-order edges from class `from` to class `to`, if any (breadth-first).
    fn order_path(&self, from: u32, to: u32) -> Option<Vec<u32>> {
        let mut prev: BTreeMap<u32, u32> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([from]);
        let mut seen = BTreeSet::from([from]);
        while let Some(c) = queue.pop_front() {
            if c == to {
                let mut path = vec![to];
                let mut x = to;
                while let Some(&p) = prev.get(&x) {
                    path.push(p);
                    x = p;
                }
                path.reverse();
                return Some(path);
            }
            for (&(_, n), _) in self.edges.range((c, 0)..=(c, u32::MAX)) {
                if seen.insert(n) {
                    prev.insert(n, c);
                    queue.push_back(n);
                }
            }
        }
        None
    }

    fn order_edge(&self, a: u32, b: u32) -> OrderEdge {
        let e = &self.edges[&(a, b)];
        OrderEdge {
            from: self.classes[a as usize].clone(),
            to: self.classes[b as usize].clone(),
            thread: e.thread.clone(),
            at: site(e.at),
            holding_since: site(e.holding_since),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Per-lock state.

/// How many permit holdings (one per live `Permit`) a thread records in its book; more
/// go to further books chained to it (the semaphore's list only takes the holdings of a
/// thread that has no book: one being torn down).
const PERMIT_SLOTS: usize = 8;

/// One holding of a semaphore's permits: written only by the thread that took them (and
/// emptied by whichever thread gives them back), read by a blocked thread's check.
#[derive(Default)]
struct PermitSlot {
    /// The semaphore's [`LockMeta`] id; 0 when the slot is free.
    lock: AtomicU64,
    permits: AtomicU32,
    at: AtomicPtr<Location<'static>>,
}

/// The permits a thread holds, in plain stores to memory of its own (no compare-and-swap
/// in the semaphore's memory): a semaphore's holders are found by scanning the books.
#[derive(Default)]
struct PermitBook {
    /// The owning thread's id; 0 while the book is unused.
    owner: AtomicU64,
    slots: [PermitSlot; PERMIT_SLOTS],
    /// The owner's next book, once this one was full (null if none). Written and walked
    /// only by the owner (and unlinked under the registry lock when it exits).
    next: AtomicPtr<PermitBook>,
}

/// The ledger of a semaphore or monitor (mutexes have none).
#[derive(Default)]
struct Ledger {
    /// The thread that last attached (a hint: attaching again costs one load).
    attached_hint: AtomicU64,
    slow: StdMutex<SlowLedger>,
}

#[derive(Default)]
struct SlowLedger {
    /// Semaphores: holders without a book (a thread being torn down).
    holders: Vec<Hold>,
    /// Monitors and semaphores: the threads that used it (they may notify or release).
    attached: Vec<u64>,
}

#[derive(Clone, Copy)]
struct Hold {
    thread: u64,
    permits: u32,
    /// Where the permits were taken.
    at: Option<Site>,
}

impl Ledger {
    fn slow(&self) -> StdGuard<'_, SlowLedger> {
        self.slow.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The detector's state in each mutex, monitor and semaphore.
pub(crate) struct LockMeta {
    id: u64,
    kind: LockKind,
    label: Option<Cow<'static, str>>,
    created: Site,
    /// The lock class id, [`NO_CLASS`] until first needed.
    class: AtomicU32,
    policy: AtomicU8,
    /// The owning thread's detector id (mutexes, monitors); 0 when free or not yet known.
    owner: AtomicU64,
    owner_at: AtomicPtr<Location<'static>>,
    /// Semaphores and monitors only.
    ledger: Option<Box<Ledger>>,
}

/// A lock class not yet interned.
const NO_CLASS: u32 = u32::MAX;

impl std::fmt::Debug for LockMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockMeta").field("class", &self.class_name()).finish_non_exhaustive()
    }
}

/// Who holds a semaphore's permits, and where that is recorded: a slot of the taking
/// thread's book, or (no slot) the semaphore's slow list under `thread`.
pub(crate) struct HolderTag {
    slot: Option<&'static PermitSlot>,
    /// The taking thread, for the slow list (when `slot` is `None`).
    thread: u64,
}

impl std::fmt::Debug for HolderTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HolderTag").field("in_book", &self.slot.is_some()).finish()
    }
}

impl HolderTag {
    /// The thread is about to park for the permits it claimed: until it wakes, it holds
    /// none (a blocked thread's book must be exact).
    #[inline]
    pub(crate) fn parked(&self) {
        if let Some(s) = self.slot {
            s.lock.store(0, Release);
        }
    }

    /// The thread woke and is about to try again for the permits of `meta`: the claim is
    /// back before the count can change hands.
    #[inline]
    pub(crate) fn unparked(&self, meta: &LockMeta) {
        if let Some(s) = self.slot {
            s.lock.store(meta.id, Release);
        }
    }

    /// The permits were given back (after the count changed back) or forgotten: the slot
    /// is free. Touches only the book, never the semaphore, which may be gone by now.
    #[inline]
    pub(crate) fn clear(&self) {
        if let Some(s) = self.slot {
            s.lock.store(0, Release);
        }
    }
}

impl Drop for HolderTag {
    #[inline]
    fn drop(&mut self) {
        self.clear();
    }
}

impl LockMeta {
    /// State for a new lock of `kind`, created at the caller's location. A semaphore or
    /// monitor is attached to the thread that creates it.
    #[track_caller]
    pub(crate) fn new(kind: LockKind) -> Self {
        let meta = LockMeta {
            id: NEXT_LOCK.fetch_add(1, Relaxed),
            kind,
            label: None,
            created: Location::caller(),
            class: AtomicU32::new(NO_CLASS),
            policy: AtomicU8::new(0),
            owner: AtomicU64::new(0),
            owner_at: AtomicPtr::new(std::ptr::null_mut()),
            ledger: (kind != LockKind::Mutex).then(Box::default),
        };
        meta.attach();
        meta
    }

    pub(crate) fn set_label(&mut self, label: Cow<'static, str>) {
        self.label = Some(label);
        self.class = AtomicU32::new(NO_CLASS);
    }

    pub(crate) fn set_policy(&self, p: Policy) {
        self.policy.store(policy_code(p), Relaxed);
    }

    fn policy(&self) -> Policy {
        policy_from(self.policy.load(Relaxed)).unwrap_or_else(policy)
    }

    fn ledger(&self) -> Option<&Ledger> {
        self.ledger.as_deref()
    }

    fn class_name(&self) -> String {
        self.label.as_deref().map_or_else(|| site(self.created), str::to_owned)
    }

    /// The lock class id. Takes the registry lock the first time: never call it while
    /// holding the registry.
    #[inline]
    fn class(&self) -> u32 {
        match self.class.load(Relaxed) {
            NO_CLASS => self.intern_class(),
            c => c,
        }
    }

    #[cold]
    fn intern_class(&self) -> u32 {
        let c = registry().intern(self.class_name());
        self.class.store(c, Relaxed);
        c
    }

    fn info(&self) -> LockInfo {
        LockInfo {
            label: self.class_name(),
            labelled: self.label.is_some(),
            kind: self.kind,
            created_at: site(self.created),
        }
    }

    /// Lock order: before a blocking acquisition (not `try_lock`), records "class of each
    /// held lock -> this class", and reports an edge that closes a cycle. An edge this
    /// thread has seen before costs a lookup in its cache, no lock.
    #[inline]
    pub(crate) fn before_lock(&self, at: Site) {
        let _ = LOCAL.try_with(|l| {
            let d = l.depth.get();
            if d == 0 {
                return;
            }
            let b = self.class();
            for i in 0..d {
                // Only the class on this path: the held lock's site is read if the edge is new.
                let a = if i < INLINE_HELD { l.classes[i].get() } else { Local::spilled(i).class };
                if a == b || l.edge_cached(a, b) {
                    continue; // nesting within one class is not ordered (see the module docs)
                }
                self.edge_seen(a, b, at, l.get(i).at);
            }
        });
    }

    /// An edge missing from the thread's cache: new to the thread, or pushed out of the
    /// cache by another.
    #[cold]
    fn edge_seen(&self, a: u32, b: u32, at: Site, holding_since: Site) {
        // A held lock that can no longer be read (`UNKNOWN_HELD`) orders nothing.
        if a != NO_CLASS && first_seen(a, b) {
            self.new_edge(a, b, at, holding_since);
        }
    }

    #[cold]
    fn new_edge(&self, a: u32, b: u32, at: Site, holding_since: Site) {
        if let Some(Some(r)) = record_edge(a, b, at, holding_since) {
            let _ = deliver(r, self.policy(), false);
        }
    }

    /// The record of this thread blocking on this lock; registered by its first `block`.
    pub(crate) fn wait_slot(&self, what: WaitKind, at: Site, checked: bool) -> WaitSlot<'_> {
        WaitSlot { meta: self, what, at, checked, registered: 0, word: None }
    }

    /// The calling thread now holds this mutex or monitor.
    #[inline]
    pub(crate) fn acquired(&self, at: Site) {
        let class = self.class();
        self.owner_at.store(std::ptr::from_ref(at).cast_mut(), Relaxed);
        let _ = LOCAL.try_with(|l| {
            self.owner.store(l.id(), Relaxed);
            l.push(Held { lock: self.id, class, at });
        });
    }

    /// The calling thread is about to release this mutex or monitor.
    #[inline]
    pub(crate) fn released(&self) {
        let _ = LOCAL.try_with(|l| l.pop(self.id));
        self.owner.store(0, Relaxed);
    }

    /// The calling thread uses this monitor or semaphore (so it may notify or release).
    #[inline]
    pub(crate) fn attach(&self) {
        if let Some(ledger) = self.ledger() {
            let me = me();
            if me != 0 && ledger.attached_hint.load(Relaxed) != me {
                self.attach_slow(ledger, me);
            }
        }
    }

    #[cold]
    fn attach_slow(&self, ledger: &Ledger, me: u64) {
        if ATTACHED.try_with(|a| a.borrow_mut().insert(self.id)).unwrap_or(false) {
            ledger.slow().attached.push(me);
        }
        ledger.attached_hint.store(me, Relaxed);
    }

    /// The calling thread is about to try to take `n` permits of this semaphore: it
    /// attaches, and records the holding in a free slot of its book (plain stores, before
    /// the count can change hands: a semaphore's take is an `AcqRel` compare-and-swap with
    /// the feature, so a thread that sees the count taken sees the slot). Until the take
    /// succeeds the claim stands for a thread that is running, which only ever makes a
    /// check err towards silence; [`HolderTag::parked`] withdraws it while the thread
    /// waits. With the book full, a free slot of a further book chained to it, claimed the
    /// same way; with no book at all (a thread being torn down), [`took`](Self::took)
    /// records the permits in the semaphore's list instead.
    #[inline]
    pub(crate) fn claim(&self, n: u32, at: Site) -> HolderTag {
        // One thread-local access for the attach and the book.
        let (me, book) = LOCAL.try_with(|l| (l.id(), l.book.get())).unwrap_or((0, None));
        if let Some(ledger) = self.ledger() {
            if me != 0 && ledger.attached_hint.load(Relaxed) != me {
                self.attach_slow(ledger, me);
            }
        }
        if let Some(s) = book.and_then(|b| b.slots.iter().find(|s| s.lock.load(Relaxed) == 0)) {
            s.permits.store(n, Relaxed);
            s.at.store(std::ptr::from_ref(at).cast_mut(), Relaxed);
            s.lock.store(self.id, Release);
            return HolderTag { slot: Some(s), thread: 0 };
        }
        self.claim_beyond(book, me, n, at)
    }

    /// [`claim`](Self::claim) with the thread's first book full: a free slot of a book
    /// chained to it, chaining a new one (registered under the registry lock, so a check
    /// scans it) if all are full. Still before the count can change hands: a spilled
    /// holding is recorded as exactly as one in the first book.
    #[cold]
    fn claim_beyond(
        &self,
        book: Option<&'static PermitBook>,
        me: u64,
        n: u32,
        at: Site,
    ) -> HolderTag {
        let Some(mut b) = book else { return HolderTag { slot: None, thread: me } };
        let slot = loop {
            let next = b.next.load(Relaxed);
            if next.is_null() {
                let more = registry().book_for(me);
                b.next.store(std::ptr::from_ref(more).cast_mut(), Relaxed);
                break &more.slots[0]; // a new or reused book is empty
            }
            // SAFETY: books are leaked (`&'static`), never freed.
            b = unsafe { &*next };
            if let Some(s) = b.slots.iter().find(|s| s.lock.load(Relaxed) == 0) {
                break s;
            }
        };
        slot.permits.store(n, Relaxed);
        slot.at.store(std::ptr::from_ref(at).cast_mut(), Relaxed);
        slot.lock.store(self.id, Release);
        HolderTag { slot: Some(slot), thread: 0 }
    }

    /// The permits claimed in `tag` were taken: recorded in the semaphore's list if the
    /// thread had no book (a book's slot needs nothing more).
    #[inline]
    pub(crate) fn took(&self, tag: &HolderTag, n: u32, at: Site) {
        if tag.slot.is_none() && n > 0 {
            if let Some(ledger) = self.ledger() {
                Self::took_slow(ledger, tag.thread, n, at);
            }
        }
    }

    #[cold]
    fn took_slow(ledger: &Ledger, me: u64, n: u32, at: Site) {
        let mut l = ledger.slow();
        match l.holders.iter_mut().find(|h| h.thread == me) {
            Some(h) => {
                h.permits += n;
                h.at = Some(at);
            }
            None => l.holders.push(Hold { thread: me, permits: n, at: Some(at) }),
        }
    }

    /// Permits taken by `tag` are about to go back (or are forgotten): out of the
    /// semaphore's list if they were there (before the count changes: the semaphore may
    /// be gone after). A book's slot is emptied after the count changed, by
    /// [`HolderTag::clear`].
    #[inline]
    pub(crate) fn gave_back(&self, tag: &HolderTag, n: u32) {
        if tag.slot.is_none() {
            if let Some(ledger) = self.ledger() {
                Self::gave_back_slow(ledger, tag.thread, n);
            }
        }
    }

    #[cold]
    fn gave_back_slow(ledger: &Ledger, thread: u64, n: u32) {
        let mut l = ledger.slow();
        if let Some(i) = l.holders.iter().position(|h| h.thread == thread) {
            let h = &mut l.holders[i];
            h.permits = h.permits.saturating_sub(n);
            if h.permits == 0 {
                l.holders.remove(i);
            }
        }
    }

    /// Before a monitor wait (the caller is inside and has called `released`): reports a
    /// wait while holding other locks as a hazard, then registers the wait on `cond` and
    /// checks that someone is left to notify.
    pub(crate) fn cond_wait(
        &self,
        cond: usize,
        at: Site,
        checked: bool,
    ) -> Result<WaitSlot<'_>, Deadlock> {
        self.attach();
        let held: Vec<(u32, Site)> = LOCAL.try_with(Local::held).unwrap_or_default();
        if !held.is_empty() {
            self.hazard(cond, at, &held);
        }
        let mut slot = self.wait_slot(WaitFor::Condition(cond), at, checked);
        slot.block()?;
        Ok(slot)
    }

    #[cold]
    fn hazard(&self, cond: usize, at: Site, held: &[(u32, Site)]) {
        wait_while_holding(self.class(), self.info(), self.policy(), cond, at, held);
    }
}

/// Reports a wait on condition `cond` of the monitor of class `class` (`info`) while
/// holding the locks `held` (their classes and sites), once per (monitor class, held
/// class) pair, under `policy`.
#[cold]
fn wait_while_holding(
    class: u32,
    info: LockInfo,
    policy: Policy,
    cond: usize,
    at: Site,
    held: &[(u32, Site)],
) {
    let me = me();
    let report = {
        let mut reg = registry();
        let new: Vec<&(u32, Site)> =
            held.iter().filter(|(c, _)| reg.hazards.insert((class, *c))).collect();
        if new.is_empty() {
            return;
        }
        let thread = reg.thread_info(me);
        Report {
            kind: ReportKind::WaitWhileHolding,
            parties: vec![Party {
                thread,
                waits_for: info,
                wait: WaitFor::Condition(cond),
                waiting_at: site(at),
                waited_us: 0,
                held_by: Vec::new(),
            }],
            edges: Vec::new(),
            held: held
                .iter()
                .map(|(c, s)| format!("\"{}\" (taken at {})", reg.classes[*c as usize], site(s)))
                .collect(),
        }
    };
    let _ = deliver(report, policy, false);
}

/// Before a condition wait on a process-shared monitor of class `class` (`info`), still
/// inside it: reports the wait as a hazard if the thread holds locks of other classes
/// (once per pair of classes), under `policy`.
pub(super) fn shared_cond_wait(class: u32, info: LockInfo, policy: Policy, cond: usize, at: Site) {
    let mut held: Vec<(u32, Site)> = LOCAL.try_with(Local::held).unwrap_or_default();
    held.retain(|&(c, _)| c != class);
    if !held.is_empty() {
        wait_while_holding(class, info, policy, cond, at, &held);
    }
}

/// Whether the calling thread holds a lock of a class other than `class`.
pub(super) fn holds_other(class: u32) -> bool {
    LOCAL
        .try_with(|l| {
            (0..l.depth.get()).any(|i| {
                let c = l.get(i).class;
                c != class && c != NO_CLASS
            })
        })
        .unwrap_or(false)
}

/// A thread about to block on a lock: registers the wait (once) and checks for a deadlock
/// through this thread; removes the record when dropped.
pub(crate) struct WaitSlot<'a> {
    meta: &'a LockMeta,
    what: WaitKind,
    at: Site,
    checked: bool,
    /// The registered thread's id, or 0.
    registered: u64,
    /// Semaphores: the word the thread is about to park on, and the value it parks on.
    word: Option<WordPtr>,
}

impl WaitSlot<'_> {
    /// A semaphore waiter is about to park on `word` while it holds `value`: until the word
    /// moves, the thread counts as blocked; once it moved (a release woke the thread, which
    /// has not yet run [`woken`](Self::woken)), as able to go on. `word` must belong to the
    /// semaphore whose [`LockMeta`] this slot borrows (it lives as long).
    pub(crate) fn parks_on(&mut self, word: &crate::loom::atomic::AtomicU32, value: u32) {
        self.word = Some(WordPtr(std::ptr::from_ref::<std::sync::atomic::AtomicU32>(word), value));
    }

    /// Called each time the thread is about to park (after its spin phase). The first call
    /// registers the wait and analyses the graph; the policy decides what a deadlock does.
    pub(crate) fn block(&mut self) -> Result<(), Deadlock> {
        self.block_unless(|| false)
    }

    /// [`block`](Self::block), unless `ready()` says that the wait is over after all:
    /// asked before the wait is registered (then nothing is registered: the thread will
    /// not sleep) and again after the check (then a report is dropped). A semaphore asks
    /// whether its word moved or the permits came back, with a read-modify-write, which
    /// reads the newest count and makes every take before it visible, with its claim in
    /// the taker's book (a holder that gave its permits back and exited is gone from the
    /// registry, but its release came before).
    pub(crate) fn block_unless(&mut self, ready: impl Fn() -> bool) -> Result<(), Deadlock> {
        if self.registered != 0 {
            return Ok(());
        }
        let me = me();
        if me == 0 || ready() {
            return Ok(());
        }
        self.registered = me;
        let report = {
            let mut reg = registry();
            if let Some(e) = reg.threads.get_mut(&me) {
                e.wait = Some(WaitRecord {
                    lock: MetaPtr(self.meta),
                    what: self.what,
                    // Timed from the first park: reading the clock on every acquire would
                    // cost the uncontended path more than all the rest of the hooks.
                    since: crate::loom::time::now(),
                    at: self.at,
                    word: self.word,
                });
            }
            reg.check(me)
        };
        match report {
            Some(r) if !ready() => deliver(r, self.meta.policy(), self.checked),
            _ => Ok(()),
        }
    }
}

impl WaitSlot<'_> {
    /// The thread woke from a park and is about to try again: it is no longer blocked (it
    /// may take what it waited for before the next `block`, which registers it anew). A
    /// thread still recorded as waiting while it already took the permits, but had not yet
    /// entered them in the ledger, made another thread's check see a semaphore held by
    /// nobody with every party blocked: a false "nobody left to signal".
    pub(crate) fn woken(&mut self) {
        if self.registered != 0 {
            unregister(self.registered);
            self.registered = 0;
        }
    }
}

impl Drop for WaitSlot<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.registered != 0 {
            unregister(self.registered);
        }
    }
}

#[cold]
fn unregister(thread: u64) {
    if let Some(e) = registry().threads.get_mut(&thread) {
        e.wait = None;
    }
}

// ---------------------------------------------------------------------------------------
// Hooks for the process-shared locks (`order_shared.rs`), which have no `LockMeta`: they
// go on the same held stack and into the same lock-order graph as the thread locks.

/// The class id of the class named `name` (takes the registry lock).
pub(super) fn intern_class(name: String) -> u32 {
    registry().intern(name)
}

/// The name of the interned class `class`.
pub(super) fn class_label(class: u32) -> String {
    registry().classes[class as usize].clone()
}

/// The lock-order check of [`LockMeta::before_lock`] for a lock of class `b`: calls
/// `missed(a, lock, holding_since)` for each held lock (its id, class `a != b`, and where it
/// was taken) whose edge `a -> b` is not in the thread's edge cache (and puts it there).
#[inline]
pub(super) fn held_edges(b: u32, mut missed: impl FnMut(u32, u64, Site)) {
    let _ = LOCAL.try_with(|l| {
        for i in 0..l.depth.get() {
            let h = l.get(i);
            if h.class != b && !l.edge_cached(h.class, b) {
                missed(h.class, h.lock, h.at);
            }
        }
    });
}

/// The held-stack entries of the calling thread whose lock id has `tag` set (the
/// process-shared locks, see `order_shared`): `(lock id, where it was taken)`, oldest first.
pub(super) fn held_tagged(tag: u64) -> Vec<(u64, Site)> {
    LOCAL
        .try_with(|l| {
            (0..l.depth.get())
                .map(|i| l.get(i))
                .filter(|h| h.lock & tag != 0)
                .map(|h| (h.lock, h.at))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the calling thread holds a mutex or monitor (of either kind).
#[inline]
pub(super) fn holds_any() -> bool {
    LOCAL.try_with(|l| l.depth.get() != 0).unwrap_or(false)
}

/// Whether this thread sees the edge `a -> b` for the first time (behind its edge cache).
pub(super) fn first_seen(a: u32, b: u32) -> bool {
    SEEN.try_with(|s| s.borrow_mut().insert((a, b))).unwrap_or(false)
}

/// Adds the edge `a -> b` to the lock-order graph and returns the report of the cycle it
/// closes, undelivered: `None` if the graph had the edge already, `Some(None)` if it is new
/// and closes no cycle.
pub(super) fn record_edge(a: u32, b: u32, at: Site, holding_since: Site) -> Option<Option<Report>> {
    let me = me();
    let mut reg = registry();
    if reg.edges.contains_key(&(a, b)) {
        return None;
    }
    let thread = reg.thread_info(me);
    reg.edges.insert((a, b), EdgeInfo { thread, at, holding_since });
    Some(reg.order_path(b, a).map(|path| {
        let mut edges: Vec<OrderEdge> =
            path.windows(2).map(|p| reg.order_edge(p[0], p[1])).collect();
        edges.push(reg.order_edge(a, b));
        Report {
            kind: ReportKind::LockOrderInversion,
            parties: Vec::new(),
            edges,
            held: Vec::new(),
        }
    }))
}

/// The calling thread now holds the lock `lock` of class `class`, taken at `at`.
#[inline]
pub(super) fn push_held(lock: u64, class: u32, at: Site) {
    let _ = LOCAL.try_with(|l| l.push(Held { lock, class, at }));
}

/// The calling thread is about to release the lock `lock`.
#[inline]
pub(super) fn pop_held(lock: u64) {
    let _ = LOCAL.try_with(|l| l.pop(lock));
}

/// Delivers a lock-order inversion found for a process-shared lock, under the global
/// policy (never an error: nothing is blocked).
pub(super) fn deliver_inversion(report: Report) {
    let _ = deliver(report, policy(), false);
}

/// Logs and keeps a report that no policy turns into an error or a panic.
pub(super) fn deliver_note(report: Report) {
    let _ = deliver(report, Policy::Report, false);
}
