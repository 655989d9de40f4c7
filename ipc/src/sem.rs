//! System V semaphore sets.
//!
//! A [`SemSet`] is a kernel object holding one or more counters (semaphores), named by a
//! [`Key`] like a [message queue](crate::msgq). An operation ([`SemOp`]) adds to or
//! subtracts from a counter; one that would take a counter below zero waits until it
//! can. Several operations on one set apply atomically, all or none ([`SemSet::op`]).
//!
//! ```
//! use std::time::Duration;
//! use interproc_ipc::sem::{SemOp, SemSet};
//!
//! // A private set of two semaphores: a lock (1) and a count of ready items (0).
//! let set = SemSet::private(&[1, 0])?;
//! set.wait(0)?; // take the lock (SEM_UNDO: given back if this process dies)
//! set.post(0)?; // give it back
//! // Nothing is ready: a non-blocking wait says so, a timed one times out.
//! assert!(!set.try_wait(1)?);
//! assert!(matches!(set.wait_timeout(1, Duration::from_millis(1)), Err(interproc_ipc::Error::Timeout)));
//! // Producer side: announce an item without SEM_UNDO (it must outlive this process).
//! set.op(&[SemOp::post(1).without_undo()])?;
//! assert_eq!(set.get(1)?, 1);
//! # Ok::<(), interproc_ipc::Error>(())
//! ```
//!
//! # SEM_UNDO: when to use it, when not
//!
//! With `SEM_UNDO` the kernel remembers, per process, how much each operation changed the
//! counter, and reverses it when the process exits, however it exits. That is what a
//! *lock* needs: a process killed between [`SemSet::wait`] and [`SemSet::post`] gives the
//! unit back, and nobody waits forever. [`SemSet::wait`], [`SemSet::post`] and the
//! [`SemOp`] constructors use it by default.
//!
//! It is wrong for a *signal* between processes, where one process takes and another
//! gives: a producer that posts "item ready" with `SEM_UNDO` would take its posts back
//! when it exits, and the items would vanish from the count. Use
//! [`SemOp::without_undo`] for such counters (the `empty`/`full` counts of a bounded
//! buffer); see [`crate::shm`] for the whole pattern. The per-process record is also
//! bounded (`-32768..=32767` per semaphore): a process that only ever takes with
//! `SEM_UNDO` fails with [`Error::LimitExceeded`] after 32767 units.
//!
//! # Creating, opening, removing
//!
//! As for message queues: [`SemSet::create`] fails with [`Error::AlreadyExists`] if the key
//! is taken, [`SemSet::open`] with [`Error::NotFound`] if it is not, and
//! [`SemSet::create_or_open`] says which happened. The default mode is 0600. The creator
//! owns the set: dropping it removes the set (`IPC_RMID`), which wakes every waiter with
//! [`Error::Removed`]. A keyed set gets an owner record ([`crate::names`]), so
//! `interproc ls` lists it and `interproc clean` removes it if its owner died.
//!
//! A new System V set starts at zero, and `semget` makes it visible before its creator
//! can set the initial values: [`SemSet::open`] waits (up to 5 s) until the creator has
//! set them and marked the set ready (with one operation, which sets `sem_otime`, the
//! classic protocol from Stevens' *UNIX Network Programming*), so an opener never sees
//! the zeros.

use std::io;
use std::time::{Duration, Instant};

use libc::c_int;
use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::names::{Kind, Origin, Registration};
use crate::sys::sem as sys;

pub use crate::msgq::Key;

/// The default permission bits of a new set: read and write for the owner only.
pub const DEFAULT_MODE: u32 = 0o600;

/// The largest value a semaphore holds (`SEMVMX`, fixed in the kernel).
pub const SEMVMX: u16 = 32767;

/// How long [`SemSet::open`] waits for a creator to initialise the set.
const INIT_WAIT: Duration = Duration::from_secs(5);

/// The access `open` asks for (semget(2) checks it against the set's mode).
const READ_WRITE: c_int = 0o600;

const SEM_HINT: &str =
    "raise it with `sysctl -w kernel.sem=\"SEMMSL SEMMNS SEMOPM SEMMNI\"` (root)";

/// One operation on one semaphore of a set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SemOp {
    /// Which semaphore (0-based).
    pub num: u16,
    /// What to add: negative takes (waiting while the counter is too low), positive
    /// gives, zero waits until the counter is zero.
    pub delta: i16,
    /// Whether the kernel reverses this operation when the process exits (`SEM_UNDO`).
    pub undo: bool,
}

impl SemOp {
    /// Take one unit of semaphore `num` (-1), with `SEM_UNDO`.
    pub const fn wait(num: u16) -> SemOp {
        SemOp { num, delta: -1, undo: true }
    }

    /// Give one unit to semaphore `num` (+1), with `SEM_UNDO`.
    pub const fn post(num: u16) -> SemOp {
        SemOp { num, delta: 1, undo: true }
    }

    /// Add `delta` to semaphore `num`, with `SEM_UNDO`.
    pub const fn add(num: u16, delta: i16) -> SemOp {
        SemOp { num, delta, undo: true }
    }

    /// Wait until semaphore `num` is zero.
    pub const fn wait_zero(num: u16) -> SemOp {
        SemOp { num, delta: 0, undo: false }
    }

    /// This operation without `SEM_UNDO`: it stays when the process exits. Use it for
    /// counters that one process gives and another takes (see the module docs).
    pub const fn without_undo(self) -> SemOp {
        SemOp { undo: false, ..self }
    }

    fn raw(self, nowait: bool) -> libc::sembuf {
        let mut flags = 0;
        if self.undo {
            flags |= libc::SEM_UNDO;
        }
        if nowait {
            flags |= libc::IPC_NOWAIT;
        }
        libc::sembuf { sem_num: self.num, sem_op: self.delta, sem_flg: flags as libc::c_short }
    }
}

/// The system-wide limits on semaphores, from `/proc/sys/kernel/sem`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// `SEMMSL`: the most semaphores in one set.
    pub semmsl: usize,
    /// `SEMMNS`: the most semaphores on the system.
    pub semmns: usize,
    /// `SEMOPM`: the most operations in one call.
    pub semopm: usize,
    /// `SEMMNI`: the most sets on the system.
    pub semmni: usize,
}

/// Reads the kernel's semaphore limits (`kernel.sem`: SEMMSL SEMMNS SEMOPM SEMMNI).
pub fn limits() -> Result<Limits> {
    let text = std::fs::read_to_string("/proc/sys/kernel/sem")
        .map_err(|e| Error::os("reading /proc/sys/kernel/sem", io_errno(&e)))?;
    let v: Vec<usize> = text.split_whitespace().filter_map(|s| s.parse().ok()).collect();
    match v[..] {
        [semmsl, semmns, semopm, semmni, ..] => Ok(Limits { semmsl, semmns, semopm, semmni }),
        _ => Err(Error::Malformed { reason: format!("unparsable /proc/sys/kernel/sem: {text:?}") }),
    }
}

fn io_errno(e: &io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// The creator's claim on a set: it removes the set when dropped, in the process that
/// created it.
#[derive(Debug)]
struct Owner {
    pid: u32,
    _record: Option<Registration>,
}

/// A System V semaphore set.
///
/// `SemSet` is `Send + Sync`: every operation takes `&self`, so threads can share one.
/// See the [module docs](self) for `SEM_UNDO`, creation and removal.
#[derive(Debug)]
pub struct SemSet {
    id: c_int,
    key: Key,
    len: usize,
    owner: Option<Owner>,
}

impl SemSet {
    /// Creates a set for `key` with one semaphore per value in `initial`, mode 0600;
    /// [`Error::AlreadyExists`] if the key is taken. This process owns it.
    pub fn create(key: Key, initial: &[u16]) -> Result<SemSet> {
        Self::create_with_mode(key, initial, DEFAULT_MODE)
    }

    /// [`SemSet::create`] with the permission bits `mode` (the umask does not apply).
    pub fn create_with_mode(key: Key, initial: &[u16], mode: u32) -> Result<SemSet> {
        let what = set_name(key, None);
        let limits = limits()?;
        if initial.is_empty() {
            return Err(Error::LimitExceeded {
                what: format!("{what} with no semaphores"),
                limit: "the minimum set size",
                value: 1,
                hint: "give at least one initial value",
            });
        }
        if initial.len() > limits.semmsl {
            return Err(Error::LimitExceeded {
                what: format!("a set of {} semaphores", initial.len()),
                limit: "kernel.sem SEMMSL",
                value: limits.semmsl as u64,
                hint: SEM_HINT,
            });
        }
        if let Some(&v) = initial.iter().find(|&&v| v > SEMVMX) {
            return Err(semvmx_error(format!("initial value {v}")));
        }
        let flags = libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as c_int;
        let id = sys::semget(key.as_raw(), initial.len() as c_int, flags).map_err(|e| match e {
            Errno::ENOSPC => Error::LimitExceeded {
                what: "another semaphore set".into(),
                limit: "kernel.sem SEMMNI/SEMMNS",
                value: limits.semmni as u64,
                hint: "remove unused sets (`ipcs -s`, `interproc clean`), or raise it with \
                       `sysctl -w kernel.sem=...` (root)",
            },
            e => Error::from_errno("semget", &what, e),
        })?;
        // Owned from here on: an early return drops `set`, which removes it.
        let mut set = SemSet { id, key, len: initial.len(), owner: None };
        set.owner = Some(Owner { pid: std::process::id(), _record: None });
        if !key.is_private() {
            // Without a record, a crash would leak the set unseen: fail instead.
            let record = Registration::register(Kind::SemSet, &key.to_string())
                .map_err(|e| Error::Os { op: "writing the owner record", errno: io_errno(&e) })?;
            set.owner = Some(Owner { pid: std::process::id(), _record: Some(record) });
        }
        sys::semctl_setall(id, initial).map_err(|e| set.op_error("semctl(SETALL)", e))?;
        // Mark it ready: one operation sets sem_otime, which `open` waits for. +1 -1 (or
        // -1 +1 at SEMVMX) leaves the value as it is, never blocks, and records no undo.
        let mut mark = if initial[0] < SEMVMX {
            [SemOp::add(0, 1).without_undo().raw(true), SemOp::add(0, -1).without_undo().raw(true)]
        } else {
            [SemOp::add(0, -1).without_undo().raw(true), SemOp::add(0, 1).without_undo().raw(true)]
        };
        sys::semop(id, &mut mark, None).map_err(|e| set.op_error("semop", e))?;
        Ok(set)
    }

    /// Opens the existing set for `key`, waiting (up to 5 s) for its creator to set its
    /// initial values. [`Error::NotFound`] if there is none, [`Error::PermissionDenied`]
    /// if this process may not both read and alter it, [`Error::Malformed`] if its creator
    /// never initialised it (it died in between: remove it with `interproc clean`).
    pub fn open(key: Key) -> Result<SemSet> {
        if key.is_private() {
            return Err(Error::NotFound {
                what: "a semaphore set with key IPC_PRIVATE (private sets are opened by id: \
                       `SemSet::open_id`)"
                    .into(),
            });
        }
        let id = sys::semget(key.as_raw(), 0, READ_WRITE)
            .map_err(|e| Error::from_errno("semget", set_name(key, None), e))?;
        Self::adopt(id, key)
    }

    /// Opens the set with id `id` (as `ipcs -s` shows it, or [`SemSet::id`] in another
    /// process): the way to share a private set. [`Error::NotFound`] if there is none.
    pub fn open_id(id: i32) -> Result<SemSet> {
        let ds = sys::semctl_stat(id).map_err(|e| match e {
            Errno::EINVAL | Errno::EIDRM => {
                Error::NotFound { what: format!("semaphore set with id {id}") }
            }
            e => Error::from_errno("semctl(IPC_STAT)", format_args!("semaphore set id {id}"), e),
        })?;
        Self::adopt(id, Key::from_raw(ds.sem_perm.__key))
    }

    /// Waits until the set `id` is initialised (`sem_otime` set), then wraps it.
    fn adopt(id: c_int, key: Key) -> Result<SemSet> {
        let deadline = Instant::now() + INIT_WAIT;
        loop {
            let ds = sys::semctl_stat(id).map_err(|e| match e {
                Errno::EINVAL | Errno::EIDRM => Error::NotFound { what: set_name(key, Some(id)) },
                e => Error::from_errno("semctl(IPC_STAT)", set_name(key, Some(id)), e),
            })?;
            if ds.sem_otime != 0 {
                return Ok(SemSet { id, key, len: ds.sem_nsems as usize, owner: None });
            }
            if Instant::now() >= deadline {
                // Created but never given its initial values: its creator died between
                // semget and the first semop, or it was not made by interproc.
                return Err(Error::Malformed {
                    reason: format!(
                        "{} was never initialised (no semop in {INIT_WAIT:?}): its creator died \
                         while building it; remove it with `ipcrm -s {id}` or `interproc clean`",
                        set_name(key, Some(id))
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Creates the set for `key` (mode 0600) or, if it exists, opens it; says which. An
    /// opened set keeps its own size and values (`initial` is not applied).
    pub fn create_or_open(key: Key, initial: &[u16]) -> Result<(SemSet, Origin)> {
        let mut last = None;
        for _ in 0..64 {
            match Self::create(key, initial) {
                Ok(s) => return Ok((s, Origin::Created)),
                Err(Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
            match Self::open(key) {
                Ok(s) => return Ok((s, Origin::Opened)),
                Err(e @ Error::NotFound { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(Error::NotFound { what: set_name(key, None) }))
    }

    /// Creates a private set (`IPC_PRIVATE`, mode 0600): share it with a `fork`ed child,
    /// or pass [`SemSet::id`] to another process ([`SemSet::open_id`]). It has no owner
    /// record: if its owner is killed it stays until `ipcrm -s <id>`.
    pub fn private(initial: &[u16]) -> Result<SemSet> {
        Self::create_with_mode(Key::PRIVATE, initial, DEFAULT_MODE)
    }

    /// Creates a set (mode 0600) under a free key in interproc's key space; read it back
    /// with [`SemSet::key`] and pass it to the processes that should [`SemSet::open`] it.
    pub fn create_unique(initial: &[u16]) -> Result<SemSet> {
        Self::create_unique_with_mode(initial, DEFAULT_MODE)
    }

    /// [`SemSet::create_unique`] with the given permission bits.
    pub fn create_unique_with_mode(initial: &[u16], mode: u32) -> Result<SemSet> {
        const ATTEMPTS: u32 = 64;
        for _ in 0..ATTEMPTS {
            match Self::create_with_mode(Key::unique_candidate(), initial, mode) {
                Err(Error::AlreadyExists { .. }) => continue,
                r => return r,
            }
        }
        Err(Error::AlreadyExists {
            what: format!("every one of {ATTEMPTS} interproc keys tried for a new semaphore set"),
        })
    }

    /// The set's id (`semid`), as `ipcs -s` shows it.
    pub fn id(&self) -> i32 {
        self.id
    }

    /// The set's key ([`Key::PRIVATE`] for a private set).
    pub fn key(&self) -> Key {
        self.key
    }

    /// How many semaphores the set holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set holds no semaphores (never true: a set has at least one).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether this handle created the set and removes it on drop.
    pub fn is_owner(&self) -> bool {
        self.owner.as_ref().is_some_and(|o| o.pid == std::process::id())
    }

    // ---- operations ----

    /// Takes one unit of semaphore `num`, waiting while it is 0. With `SEM_UNDO`: if this
    /// process dies before it posts, the kernel gives the unit back.
    /// [`Error::Removed`] if the set is removed, even while this waits.
    pub fn wait(&self, num: u16) -> Result<()> {
        self.op(&[SemOp::wait(num)])
    }

    /// Takes one unit if one is free now: `Ok(true)` if taken, `Ok(false)` if not.
    pub fn try_wait(&self, num: u16) -> Result<bool> {
        self.try_op(&[SemOp::wait(num)])
    }

    /// Takes one unit, waiting at most `timeout` (semtimedop); [`Error::Timeout`] if none
    /// came free.
    pub fn wait_timeout(&self, num: u16, timeout: Duration) -> Result<()> {
        self.op_timeout(&[SemOp::wait(num)], timeout)
    }

    /// Gives one unit to semaphore `num` (with `SEM_UNDO`, balancing a [`SemSet::wait`]).
    pub fn post(&self, num: u16) -> Result<()> {
        self.op(&[SemOp::post(num)])
    }

    /// Applies `ops` atomically (all or none), waiting as long as any of them would take
    /// a counter below zero.
    pub fn op(&self, ops: &[SemOp]) -> Result<()> {
        self.op_deadline(ops, None)
    }

    /// Applies `ops` if that can be done now: `Ok(true)` if done, `Ok(false)` if one of
    /// them would have to wait (nothing was applied).
    pub fn try_op(&self, ops: &[SemOp]) -> Result<bool> {
        match self.apply(ops, None, true) {
            Ok(()) => Ok(true),
            Err(Error::Timeout) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Applies `ops`, waiting at most `timeout`; [`Error::Timeout`] if they could not be
    /// (nothing was applied).
    pub fn op_timeout(&self, ops: &[SemOp], timeout: Duration) -> Result<()> {
        // A timeout too large for an Instant waits forever.
        self.op_deadline(ops, Instant::now().checked_add(timeout))
    }

    /// Applies `ops`, waiting until `deadline` (`None`: forever; a past deadline: do not
    /// wait, [`Error::Timeout`] if they cannot be applied now).
    pub fn op_deadline(&self, ops: &[SemOp], deadline: Option<Instant>) -> Result<()> {
        self.apply(ops, deadline, false)
    }

    fn apply(&self, ops: &[SemOp], deadline: Option<Instant>, nowait: bool) -> Result<()> {
        if let Some(op) = ops.iter().find(|o| usize::from(o.num) >= self.len) {
            return Err(Error::LimitExceeded {
                what: format!("semaphore number {}", op.num),
                limit: "the set's size",
                value: self.len as u64,
                hint: "semaphores are numbered from 0 to the set's size - 1",
            });
        }
        // Up to 8 operations on the stack: the common cases never allocate.
        let mut small = [SemOp::wait_zero(0).raw(false); 8];
        let mut large = Vec::new();
        let raw: &mut [libc::sembuf] = if ops.len() <= small.len() {
            for (r, o) in small.iter_mut().zip(ops) {
                *r = o.raw(nowait);
            }
            &mut small[..ops.len()]
        } else {
            large.extend(ops.iter().map(|o| o.raw(nowait)));
            &mut large
        };
        if raw.is_empty() {
            return Ok(());
        }
        sys::semop(self.id, raw, deadline).map_err(|e| match e {
            Errno::EAGAIN => Error::Timeout,
            Errno::E2BIG => Error::LimitExceeded {
                what: format!("{} operations in one call", ops.len()),
                limit: "kernel.sem SEMOPM",
                value: limits().map(|l| l.semopm as u64).unwrap_or(0),
                hint: SEM_HINT,
            },
            Errno::ERANGE => semvmx_error(
                "an operation that takes a semaphore above SEMVMX, or a SEM_UNDO record beyond \
                 -32768..=32767"
                    .into(),
            ),
            e => self.op_error("semop", e),
        })
    }

    // ---- values ----

    /// The value of semaphore `num` (`GETVAL`).
    pub fn get(&self, num: u16) -> Result<u16> {
        let v = sys::semctl_get(self.id, c_int::from(num), libc::GETVAL)
            .map_err(|e| self.op_error("semctl(GETVAL)", e))?;
        Ok(v as u16)
    }

    /// Sets semaphore `num` to `value` (`SETVAL`), waking waiters that can now proceed.
    /// The kernel clears every process's `SEM_UNDO` record for it.
    pub fn set(&self, num: u16, value: u16) -> Result<()> {
        if value > SEMVMX {
            return Err(semvmx_error(format!("value {value}")));
        }
        sys::semctl_setval(self.id, c_int::from(num), c_int::from(value))
            .map_err(|e| self.op_error("semctl(SETVAL)", e))
    }

    /// Every semaphore's value (`GETALL`).
    pub fn get_all(&self) -> Result<Vec<u16>> {
        let mut out = vec![0u16; self.len];
        sys::semctl_getall(self.id, &mut out).map_err(|e| self.op_error("semctl(GETALL)", e))?;
        Ok(out)
    }

    /// Sets every semaphore (`SETALL`); `values` must hold one value per semaphore.
    pub fn set_all(&self, values: &[u16]) -> Result<()> {
        if values.len() != self.len {
            return Err(Error::LimitExceeded {
                what: format!("{} values", values.len()),
                limit: "the set's size",
                value: self.len as u64,
                hint: "give exactly one value per semaphore",
            });
        }
        if let Some(&v) = values.iter().find(|&&v| v > SEMVMX) {
            return Err(semvmx_error(format!("value {v}")));
        }
        sys::semctl_setall(self.id, values).map_err(|e| self.op_error("semctl(SETALL)", e))
    }

    /// How many processes wait for semaphore `num` to grow (`GETNCNT`).
    pub fn waiting(&self, num: u16) -> Result<usize> {
        let n = sys::semctl_get(self.id, c_int::from(num), libc::GETNCNT)
            .map_err(|e| self.op_error("semctl(GETNCNT)", e))?;
        Ok(n as usize)
    }

    /// The pid of the last process that operated on semaphore `num` (`GETPID`), if any.
    pub fn last_pid(&self, num: u16) -> Result<Option<u32>> {
        let p = sys::semctl_get(self.id, c_int::from(num), libc::GETPID)
            .map_err(|e| self.op_error("semctl(GETPID)", e))?;
        Ok(u32::try_from(p).ok().filter(|&p| p != 0))
    }

    /// Removes the set now (`IPC_RMID`), whether or not this handle created it. Waiters
    /// wake with [`Error::Removed`]. [`Error::NotFound`] if it was already removed.
    pub fn remove(mut self) -> Result<()> {
        let _owner = self.owner.take();
        sys::semctl_rmid(self.id).map_err(|e| match e {
            Errno::EINVAL | Errno::EIDRM => Error::NotFound { what: self.name() },
            e => Error::from_errno("semctl(IPC_RMID)", self.name(), e),
        })
    }

    fn name(&self) -> String {
        set_name(self.key, Some(self.id))
    }

    fn op_error(&self, op: &'static str, e: Errno) -> Error {
        match e {
            // EIDRM: removed while we waited; EINVAL: the id names no set any more.
            Errno::EIDRM | Errno::EINVAL => Error::Removed { what: self.name() },
            e => Error::from_errno(op, self.name(), e),
        }
    }
}

impl Drop for SemSet {
    fn drop(&mut self) {
        let Some(owner) = self.owner.take() else { return };
        if owner.pid == std::process::id() {
            let _ = sys::semctl_rmid(self.id);
            drop(owner);
        } else {
            // A `fork`ed child dropping its copy: the set and its record are the parent's.
            std::mem::forget(owner);
        }
    }
}

fn set_name(key: Key, id: Option<c_int>) -> String {
    match (key.is_private(), id) {
        (true, Some(id)) => format!("private semaphore set (id {id})"),
        (true, None) => "private semaphore set".to_string(),
        (false, _) => format!("semaphore set {key}"),
    }
}

fn semvmx_error(what: String) -> Error {
    Error::LimitExceeded {
        what,
        limit: "SEMVMX",
        value: u64::from(SEMVMX),
        hint: "a System V semaphore holds 0..=32767; the limit is fixed in the kernel",
    }
}

/// Removes the set with `key`, whoever created it: `interproc clean` calls this for a set
/// whose owner record says the owner died. [`Error::NotFound`] if there is none.
pub fn remove_by_key(key: Key) -> Result<()> {
    if key.is_private() {
        return Err(Error::NotFound { what: set_name(key, None) });
    }
    let id = sys::semget(key.as_raw(), 0, 0)
        .map_err(|e| Error::from_errno("semget", set_name(key, None), e))?;
    sys::semctl_rmid(id).map_err(|e| match e {
        Errno::EINVAL | Errno::EIDRM => Error::NotFound { what: set_name(key, Some(id)) },
        e => Error::from_errno("semctl(IPC_RMID)", set_name(key, Some(id)), e),
    })
}
