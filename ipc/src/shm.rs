//! Shared memory, and the classic pattern: shared memory guarded by a semaphore.
//!
//! Shared memory is the fastest way for processes to exchange data: after setup, no
//! system call moves a byte; each process reads and writes the same physical pages. It is
//! also the one mechanism that gives no synchronisation at all. The textbook answer
//! (信号量+共享内存, *semaphore plus shared memory*) pairs the segment with a
//! semaphore that says who may touch it. This module has both halves and the pair:
//!
//! | type | what it is |
//! |---|---|
//! | [`Segment<T>`] | a typed value in a POSIX segment (`/dev/shm/<name>`) or a memfd (from `interproc::sync`) |
//! | [`SysvSegment<T>`] | the same in a System V segment (`shmget`/`shmat`), named by a [`Key`] |
//! | [`Guarded<T>`] | a segment plus a System V semaphore: `lock()` gives `&mut T` |
//! | [`RobustGuarded<T>`] | a segment holding a robust process-shared mutex: `lock()` gives `&mut T`, and a holder's death is reported (`OwnerDied`) so the data can be repaired |
//! | [`crate::sem::SemSet`] | System V semaphore sets on their own |
//!
//! Every segment starts with the same checked header (magic number, layout version, size,
//! the type's size, alignment and name hash, an `initialised` flag), so opening one as
//! another type, or a segment of another interproc layout, is an error
//! ([`ShmError::Invalid`]). The check knows a type by its name, size and alignment: if you
//! change a shared struct's fields without changing those (reorder two fields of the same
//! size), rename or version the type, or old and new programs will read each other's bytes
//! as the wrong fields. What goes in a segment implements [`ShmSafe`]: `#[repr(C)]`, no
//! pointers, no `Drop`.
//!
//! # Tutorial: the semaphore-guarded segment
//!
//! Two processes share a record of plain fields. Without a lock, a reader could see a
//! half-written record. With a [`Guarded`], the creator puts the record in a segment and
//! a System V semaphore (value 1, a binary semaphore) beside it; every access takes the
//! semaphore first:
//!
//! ```
//! use interproc_ipc::shm::{Guarded, ShmSafe};
//!
//! #[repr(C)]
//! struct Account {
//!     balance: i64,
//!     deposits: u32,
//! }
//! // SAFETY: `#[repr(C)]`, plain integers, no pointers, no Drop; every access goes
//! // through the Guarded lock.
//! unsafe impl ShmSafe for Account {}
//!
//! let name = format!("interproc-doc-account-{}", std::process::id());
//! // The creator: a segment `/dev/shm/<name>` holding the account, and its semaphore.
//! let bank = Guarded::create(&name, Account { balance: 0, deposits: 0 })?;
//!
//! // Any other process opens it by name (here, a second handle in this one).
//! let teller = Guarded::<Account>::open(&name)?;
//! {
//!     let mut acct = teller.lock()?; // P(): wait for the semaphore
//!     acct.balance += 100;           // a multi-field update nobody can see half-done
//!     acct.deposits += 1;
//! } // V(): the guard posts the semaphore when dropped
//!
//! assert_eq!(bank.lock()?.balance, 100);
//! # Ok::<(), interproc_ipc::Error>(())
//! ```
//!
//! What happens underneath, step by step:
//!
//! 1. **Create.** [`Guarded::create`] makes a System V semaphore set of one semaphore
//!    with value 1 under a fresh key, then a segment `/dev/shm/<name>` holding the value
//!    *and the semaphore's key*, built invisibly and published whole (see [`Segment`]).
//! 2. **Open.** [`Guarded::open`] maps the segment by name, checks its header against
//!    `T`, reads the key from it and opens the semaphore set: one name finds both.
//! 3. **Lock.** [`Guarded::lock`] is `semop(-1)` with `SEM_UNDO`: it waits while another
//!    process holds the semaphore. The guard dereferences to `&mut T`.
//! 4. **Unlock.** Dropping the guard is `semop(+1)`.
//! 5. **Crash.** If a process dies while holding the lock, `SEM_UNDO` makes the kernel
//!    add the unit back: the others carry on and never hang. The data may be half-updated
//!    by the dead process, though, and nothing tells you so. When that matters, use
//!    [`RobustGuarded`], the robust process-shared `Mutex` of `interproc::sync` in a
//!    segment, which reports `OwnerDied` and lets the next locker repair the data.
//! 6. **Remove.** The creator's drop unlinks the name and removes the semaphore set
//!    (`IPC_RMID`); a process still waiting in `lock()` then gets [`Error::Removed`].
//!
//! For a bounded buffer (producers and consumers), the classic uses three semaphores:
//! `empty` (free slots), `full` (filled slots) and `mutex`. Only `mutex` takes `SEM_UNDO`:
//! `empty` and `full` are given by one process and taken by another, and an undo would
//! take a dead producer's items back out of the count. `interproc demo pc --transport
//! shm-sem` runs exactly that across processes (`demos/src/shm_sem.rs`).
//!
//! # Which segment
//!
//! - [`Segment::create`]/[`Segment::open`]: named by a string, listed in `/dev/shm`, mode
//!   0600, pages reserved up front (`fallocate`), so a full `/dev/shm` is
//!   [`ShmError::NoSpace`] now rather than a SIGBUS later. They need `/dev/shm` to be a
//!   writable tmpfs and `/proc` to be mounted ([`ShmError::ShmDirUnusable`] and
//!   [`ShmError::ProcNotMounted`] say what is missing and how to fix it).
//! - [`Segment::anonymous`]: a memfd, for `fork`ed children or to pass over a Unix socket
//!   (SCM_RIGHTS) and map with [`Segment::from_fd`]. It needs neither `/dev/shm` nor
//!   `/proc`.
//! - [`SysvSegment`]: System V segments, for programs that already speak `shmget` keys;
//!   they work like [`crate::msgq`]'s queues (keys, owner records, `interproc clean`).

#![allow(clippy::disallowed_types)] // std's UnsafeCell: ipc has no loom model to facade for.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use libc::c_int;
use nix::errno::Errno;

pub use interproc_sync::shm::{
    layout, list_named, remove_if_owner_dead, NamedSegment, Origin, Segment, SegmentOptions,
    ShmError, ShmSafe, LAYOUT_VERSION, SHM_DIR,
};

use crate::error::{Error, Result};
use crate::names::{Kind, Registration};
use crate::sem::SemSet;
use crate::sys::shm as sys;

pub use crate::msgq::Key;

/// A segment guarded by a robust process-shared mutex: the other way to guard shared
/// memory, for when a crash in the middle of an update must be *noticed*.
///
/// A [`Guarded`] segment's System V semaphore comes back (`SEM_UNDO`) when its holder dies,
/// but silently: the next process may read a half-done update. This one is a
/// [`Segment`] holding an [`interproc_sync::process::Mutex`]: the next locker after a death
/// gets `LockError::OwnerDied` with the guard, repairs the data, and calls
/// `make_consistent()` (skip that, and every later lock gets `NotRecoverable`). It also
/// needs no System V object (nothing for `ipcs` to show) and an uncontended lock makes no
/// syscall, where a semaphore's `semop` always does.
///
/// ```
/// use interproc_ipc::shm::{RobustGuarded, ShmSafe};
/// use interproc_sync::process::{LockError, Mutex};
///
/// #[repr(C)]
/// struct Account { balance: i64, in_transfer: bool }
/// // SAFETY: `#[repr(C)]` plain fields, no pointers; changed only under the mutex.
/// unsafe impl ShmSafe for Account {}
///
/// let name = format!("interproc-doc-robust-{}", std::process::id());
/// let bank = RobustGuarded::create(&name, Mutex::new(Account { balance: 0, in_transfer: false }))?;
/// let teller = RobustGuarded::<Account>::open(&name)?; // any process, by name
/// let mut acct = match teller.lock() {
///     Ok(guard) => guard,
///     Err(LockError::OwnerDied(mut guard)) => {
///         guard.in_transfer = false; // repair what the dead holder left half-done
///         guard.make_consistent();
///         guard
///     }
///     Err(e) => panic!("{e}"),
/// };
/// acct.balance += 100;
/// drop(acct);
/// assert_eq!(bank.lock().unwrap().balance, 100);
/// # Ok::<(), interproc_sync::shm::ShmError>(())
/// ```
pub type RobustGuarded<T> = Segment<interproc_sync::process::Mutex<T>>;

/// The access `open` asks for (shmget(2) checks it against the segment's mode).
const READ_WRITE: c_int = 0o600;

const SHM_HINT: &str =
    "raise kernel.shmmax / kernel.shmall with `sysctl -w` (root), or ask for less";

/// What a failed `shmget(IPC_CREAT)` of `bytes` means, per errno (shmget(2)).
fn shmget_error(e: Errno, bytes: usize, what: &str) -> Error {
    let segment = format!("a System V segment of {bytes} bytes");
    match e {
        // Smaller than SHMMIN or larger than SHMMAX.
        Errno::EINVAL => Error::LimitExceeded {
            what: segment,
            limit: "kernel.shmmax",
            value: read_limit("shmmax"),
            hint: SHM_HINT,
        },
        // All segment ids in use (SHMMNI), or the system-wide total (SHMALL, in pages).
        Errno::ENOSPC => Error::LimitExceeded {
            what: format!("{segment} (with every segment already allocated)"),
            limit: "kernel.shmall (pages) / kernel.shmmni (segments)",
            value: read_limit("shmall"),
            hint: "remove unused segments (`ipcs -m`, `interproc clean`), or raise kernel.shmall / kernel.shmmni with `sysctl -w` (root)",
        },
        // The kernel could not commit the memory.
        Errno::ENOMEM => Error::LimitExceeded {
            what: segment,
            limit: "available memory (MemAvailable + SwapFree)",
            value: available_memory(),
            hint: "ask for less, or free memory",
        },
        e => Error::from_errno("shmget", what, e),
    }
}

/// MemAvailable + SwapFree from `/proc/meminfo`, in bytes (0 if unreadable).
fn available_memory() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = |field: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (kib("MemAvailable:") + kib("SwapFree:")) * 1024
}

/// The creator's claim on a System V segment.
#[derive(Debug)]
struct Owner {
    pid: u32,
    _record: Option<Registration>,
}

/// A value of type `T` in a System V shared-memory segment (`shmget`/`shmat`).
///
/// The System V counterpart of [`Segment`], with the same header and checks: it derefs
/// to `&T`, has an optional extra area reachable by raw pointer only, and its creator
/// removes it on drop (`IPC_RMID`: the key is free at once; the memory goes when the last
/// process detaches). Keys, owner records and `interproc clean` work as for
/// [`crate::msgq`].
///
/// System V segments have no file descriptor, and their pages are allocated on first
/// touch (there is no `fallocate`): a machine out of memory then invokes the OOM killer.
/// Prefer [`Segment`] unless you need System V keys.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use interproc_ipc::shm::SysvSegment;
///
/// let owner = SysvSegment::create_unique(AtomicU32::new(7))?;
/// let other = SysvSegment::<AtomicU32>::open(owner.key())?;
/// other.fetch_add(1, Ordering::Relaxed);
/// assert_eq!(owner.load(Ordering::Relaxed), 8);
/// # Ok::<(), interproc_ipc::Error>(())
/// ```
pub struct SysvSegment<T: ShmSafe> {
    base: NonNull<u8>,
    /// Bytes attached (the segment's size), whatever validation found.
    len: usize,
    layout: layout::Layout,
    id: c_int,
    key: Key,
    owner: Option<Owner>,
    _type: PhantomData<T>,
}

// SAFETY: the attachment is process-wide memory, valid from any thread until `drop`
// detaches it; `T: ShmSafe` is `Sync` and needs no `Drop`.
unsafe impl<T: ShmSafe> Send for SysvSegment<T> {}
// SAFETY: `&SysvSegment<T>` gives only `&T` and raw pointers; `T: ShmSafe` implies `Sync`.
unsafe impl<T: ShmSafe> Sync for SysvSegment<T> {}

impl<T: ShmSafe> SysvSegment<T> {
    /// Creates a segment for `key` holding `value`, mode 0600; [`Error::AlreadyExists`]
    /// if the key is taken. This process owns it.
    pub fn create(key: Key, value: T) -> Result<Self> {
        Self::create_with(key, value, &SegmentOptions::default())
    }

    /// [`SysvSegment::create`] with a mode and an extra area.
    pub fn create_with(key: Key, value: T, opts: &SegmentOptions) -> Result<Self> {
        Self::try_create(key, value, opts).map_err(|(e, _)| e)
    }

    /// [`SysvSegment::create_with`], handing `value` back if the key is taken (then
    /// nothing was created), so that the caller can try another key or open it.
    #[allow(clippy::result_large_err)]
    fn try_create(
        key: Key,
        value: T,
        opts: &SegmentOptions,
    ) -> std::result::Result<Self, (Error, Option<T>)> {
        let what = seg_name(key, None);
        let layout = match layout::Layout::of::<T>(opts.extra) {
            Ok(l) => l,
            Err(w) => return Err((ShmError::Invalid { name: what, what: w }.into(), None)),
        };
        let flags = libc::IPC_CREAT | libc::IPC_EXCL | (opts.mode & 0o777) as c_int;
        let id = match sys::shmget(key.as_raw(), layout.total(), flags) {
            Ok(id) => id,
            Err(Errno::EEXIST) => {
                return Err((Error::AlreadyExists { what }, Some(value)));
            }
            Err(e) => return Err((shmget_error(e, layout.total(), &what), None)),
        };
        Self::init_created(id, key, layout, value).map_err(|e| (e, None))
    }

    /// Attaches the segment `id` just created for `key`, registers its owner and writes
    /// the header and `value`.
    fn init_created(id: c_int, key: Key, layout: layout::Layout, value: T) -> Result<Self> {
        let what = seg_name(key, None);
        let mut owner = Some(Owner { pid: std::process::id(), _record: None });
        let attached = sys::shmat(id);
        let base = match attached {
            Ok(b) => b,
            Err(e) => {
                let _ = sys::shmctl_rmid(id);
                return Err(Error::from_errno("shmat", &what, e));
            }
        };
        let mut seg = SysvSegment {
            base,
            len: layout.total(),
            layout,
            id,
            key,
            owner: owner.take(),
            _type: PhantomData,
        };
        if !key.is_private() {
            let record =
                Registration::register(Kind::SysvShm, &key.to_string()).map_err(|e| Error::Os {
                    op: "writing the owner record",
                    errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                })?;
            seg.owner = Some(Owner { pid: std::process::id(), _record: Some(record) });
        }
        // SAFETY: a fresh attachment of `layout.total()` page-aligned bytes; openers only
        // read the header's atomics until the flag is set.
        unsafe { layout::init(seg.base, &layout, value) };
        Ok(seg)
    }

    /// Opens the segment for `key`, checking its header against `T` (and waiting up to
    /// 5 s for its creator to finish initialising it). Dropping it only detaches.
    pub fn open(key: Key) -> Result<Self> {
        if key.is_private() {
            return Err(Error::NotFound {
                what: "a System V segment with key IPC_PRIVATE (private segments are opened by \
                       id: `SysvSegment::open_id`)"
                    .into(),
            });
        }
        let id = sys::shmget(key.as_raw(), 0, READ_WRITE)
            .map_err(|e| Error::from_errno("shmget", seg_name(key, None), e))?;
        Self::attach(id, key)
    }

    /// Opens the segment with id `id` (as `ipcs -m` shows it, or [`SysvSegment::id`] in
    /// another process): the way to share a private segment.
    pub fn open_id(id: i32) -> Result<Self> {
        let ds = sys::shmctl_stat(id).map_err(|e| match e {
            Errno::EINVAL | Errno::EIDRM => {
                Error::NotFound { what: format!("System V segment with id {id}") }
            }
            e => Error::from_errno("shmctl(IPC_STAT)", format_args!("System V segment id {id}"), e),
        })?;
        Self::attach(id, Key::from_raw(ds.shm_perm.__key))
    }

    fn attach(id: c_int, key: Key) -> Result<Self> {
        let what = seg_name(key, Some(id));
        let ds = sys::shmctl_stat(id).map_err(|e| match e {
            Errno::EINVAL | Errno::EIDRM => Error::NotFound { what: what.clone() },
            e => Error::from_errno("shmctl(IPC_STAT)", &what, e),
        })?;
        let base = sys::shmat(id).map_err(|e| match e {
            Errno::EINVAL | Errno::EIDRM => Error::NotFound { what: what.clone() },
            e => Error::from_errno("shmat", &what, e),
        })?;
        let len = ds.shm_segsz;
        let mut seg = SysvSegment {
            base,
            len,
            layout: layout::Layout::unchecked(len),
            id,
            key,
            owner: None,
            _type: PhantomData,
        };
        let deadline = Instant::now() + layout::INIT_WAIT;
        // SAFETY: `base` is a page-aligned attachment of `len` bytes that lives as long as
        // `seg`.
        seg.layout = unsafe { layout::validate::<T>(seg.base, len, &what, deadline) }?;
        Ok(seg)
    }

    /// Creates the segment for `key` with `value()` or, if it exists, opens it; says
    /// which. `value` runs only if this call creates.
    pub fn create_or_open(key: Key, value: impl FnOnce() -> T) -> Result<(Self, Origin)> {
        let mut make = Some(value);
        // Made once, and handed back by a create that found the key taken.
        let mut ready: Option<T> = None;
        let mut last = None;
        for _ in 0..64 {
            match Self::open(key) {
                Ok(s) => return Ok((s, Origin::Opened)),
                Err(e @ Error::NotFound { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
            let v = match (ready.take(), make.take()) {
                (Some(v), _) => v,
                (None, Some(make)) => make(),
                (None, None) => break,
            };
            // Someone may create it between our open and our create, and remove it again
            // before our next open: then try both again.
            match Self::try_create(key, v, &SegmentOptions::default()) {
                Ok(s) => return Ok((s, Origin::Created)),
                Err((Error::AlreadyExists { .. }, back)) => ready = back,
                Err((e, _)) => return Err(e),
            }
        }
        Err(last.unwrap_or(Error::NotFound { what: seg_name(key, None) }))
    }

    /// A private segment (`IPC_PRIVATE`): share it with a `fork`ed child, or pass
    /// [`SysvSegment::id`] to another process ([`SysvSegment::open_id`]). It has no owner
    /// record: if its owner is killed it stays until `ipcrm -m <id>`.
    pub fn private(value: T) -> Result<Self> {
        Self::create_with(Key::PRIVATE, value, &SegmentOptions::default())
    }

    /// [`SysvSegment::private`] with a mode and an extra area.
    pub fn private_with(value: T, opts: &SegmentOptions) -> Result<Self> {
        Self::create_with(Key::PRIVATE, value, opts)
    }

    /// Creates a segment (mode 0600) under a free key in interproc's key space, chosen from
    /// the pid, a counter and the clock ([`SysvSegment::create_first_free`] over up to 64
    /// of them, so a key taken meanwhile by another process costs a retry, not an error).
    pub fn create_unique(value: T) -> Result<Self> {
        Self::create_unique_with(value, &SegmentOptions::default())
    }

    /// [`SysvSegment::create_unique`] with a mode and an extra area.
    pub fn create_unique_with(value: T, opts: &SegmentOptions) -> Result<Self> {
        Self::create_first_free_with(
            std::iter::repeat_with(Key::unique_candidate).take(64),
            value,
            opts,
        )
    }

    /// Creates the segment under the first key of `keys` that is free, holding `value`
    /// (mode 0600): each key is tried with an exclusive create, so creators that race for
    /// the same keys (a pool of well-known slots, say) each get a key of their own.
    /// [`Error::AlreadyExists`] if every key is taken; nothing is created then.
    pub fn create_first_free(keys: impl IntoIterator<Item = Key>, value: T) -> Result<Self> {
        Self::create_first_free_with(keys, value, &SegmentOptions::default())
    }

    /// [`SysvSegment::create_first_free`] with a mode and an extra area.
    pub fn create_first_free_with(
        keys: impl IntoIterator<Item = Key>,
        value: T,
        opts: &SegmentOptions,
    ) -> Result<Self> {
        // No "is it free?" check before creating: another process could take the key in
        // between. The create itself is the check (IPC_EXCL), and hands the value back
        // when the key is taken, for the next key.
        let mut value = value;
        let mut tried = 0usize;
        for key in keys {
            tried += 1;
            match Self::try_create(key, value, opts) {
                Ok(seg) => return Ok(seg),
                Err((Error::AlreadyExists { .. }, Some(back))) => value = back,
                Err((e, _)) => return Err(e),
            }
        }
        Err(Error::AlreadyExists {
            what: format!("every one of the {tried} keys tried for a new System V segment"),
        })
    }

    /// The segment's id (`shmid`), as `ipcs -m` shows it.
    pub fn id(&self) -> i32 {
        self.id
    }

    /// The segment's key ([`Key::PRIVATE`] for a private one).
    pub fn key(&self) -> Key {
        self.key
    }

    /// Whether this handle created the segment and removes it on drop.
    pub fn is_owner(&self) -> bool {
        self.owner.as_ref().is_some_and(|o| o.pid == std::process::id())
    }

    /// A pointer to the extra area (64-byte aligned); see [`Segment::extra_ptr`].
    pub fn extra_ptr(&self) -> *mut u8 {
        // SAFETY: `extra_offset <= total <= len` (validated), so the result is within or
        // one past the end of the attachment.
        unsafe { self.base.as_ptr().add(self.layout.extra_offset()) }
    }

    /// The length of the extra area in bytes.
    pub fn extra_len(&self) -> usize {
        self.layout.extra()
    }

    /// How many processes have it attached (`shm_nattch`).
    pub fn attached(&self) -> Result<u64> {
        let ds = sys::shmctl_stat(self.id).map_err(|e| match e {
            Errno::EINVAL | Errno::EIDRM => {
                Error::Removed { what: seg_name(self.key, Some(self.id)) }
            }
            e => Error::from_errno("shmctl(IPC_STAT)", seg_name(self.key, Some(self.id)), e),
        })?;
        Ok(ds.shm_nattch as u64)
    }

    /// Removes the segment now (`IPC_RMID`), whoever created it; this and every other
    /// attachment stay valid until detached.
    pub fn remove(mut self) -> Result<()> {
        let _owner = self.owner.take();
        sys::shmctl_rmid(self.id).map_err(|e| match e {
            Errno::EINVAL | Errno::EIDRM => {
                Error::NotFound { what: seg_name(self.key, Some(self.id)) }
            }
            e => Error::from_errno("shmctl(IPC_RMID)", seg_name(self.key, Some(self.id)), e),
        })
    }
}

impl<T: ShmSafe> Deref for SysvSegment<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the layout was computed for `T` (create) or validated against it (open),
        // so the value is in bounds and aligned, and it was written before the flag was
        // published; the attachment lives as long as `self`; `T: ShmSafe`.
        unsafe { &*self.base.as_ptr().add(self.layout.value_offset()).cast::<T>() }
    }
}

impl<T: ShmSafe> fmt::Debug for SysvSegment<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SysvSegment")
            .field("type", &std::any::type_name::<T>())
            .field("key", &self.key)
            .field("id", &self.id)
            .field("owner", &self.is_owner())
            .field("len", &self.len)
            .finish()
    }
}

impl<T: ShmSafe> Drop for SysvSegment<T> {
    fn drop(&mut self) {
        // SAFETY: `base` is this handle's attachment; `&mut self` proves that no reference
        // into it remains.
        unsafe { sys::shmdt(self.base) };
        let Some(owner) = self.owner.take() else { return };
        if owner.pid == std::process::id() {
            let _ = sys::shmctl_rmid(self.id);
            drop(owner);
        } else {
            // A `fork`ed child's copy: the segment and its record are the parent's.
            std::mem::forget(owner);
        }
    }
}

fn seg_name(key: Key, id: Option<c_int>) -> String {
    match (key.is_private(), id) {
        (true, Some(id)) => format!("private System V segment (id {id})"),
        (true, None) => "private System V segment".to_string(),
        (false, _) => format!("System V segment {key}"),
    }
}

fn read_limit(name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Removes the System V segment with `key`, whoever created it: `interproc clean` calls
/// this for a segment whose owner record says the owner died. [`Error::NotFound`] if
/// there is none.
pub fn remove_by_key(key: Key) -> Result<()> {
    if key.is_private() {
        return Err(Error::NotFound { what: seg_name(key, None) });
    }
    let id = sys::shmget(key.as_raw(), 0, 0)
        .map_err(|e| Error::from_errno("shmget", seg_name(key, None), e))?;
    sys::shmctl_rmid(id).map_err(|e| match e {
        Errno::EINVAL | Errno::EIDRM => Error::NotFound { what: seg_name(key, Some(id)) },
        e => Error::from_errno("shmctl(IPC_RMID)", seg_name(key, Some(id)), e),
    })
}

// ---- the semaphore-guarded segment ----

/// What a [`Guarded`] segment holds: its guard's identity, then the value.
#[repr(C)]
struct GuardedCell<T> {
    /// The key and id of the semaphore set that guards `value` (written before the
    /// segment is published, never changed).
    sem_key: i32,
    sem_id: i32,
    value: UnsafeCell<T>,
}

// SAFETY: `value` is only reached through a `GuardedLock`, which holds the set's
// semaphore: one process and thread at a time, so sharing the cell moves access to the
// `T` between threads, which needs `T: Send` (as for `std::sync::Mutex`). The keys are
// never written after creation.
unsafe impl<T: ShmSafe + Send> Sync for GuardedCell<T> {}
// SAFETY: `#[repr(C)]`, two integers and a `T: ShmSafe` (UnsafeCell is
// `#[repr(transparent)]`): no pointers, no Drop, valid for every pattern `T` allows.
unsafe impl<T: ShmSafe + Send> ShmSafe for GuardedCell<T> {}

/// A value in shared memory guarded by a System V semaphore: the classic
/// semaphore-plus-shared-memory pattern. See the [module docs](self) for the tutorial.
///
/// The creator owns both halves: dropping it unlinks the segment's name and removes the
/// semaphore set. A process that dies while holding [`Guarded::lock`] gives the lock back
/// (`SEM_UNDO`), though the value may be half-updated.
pub struct Guarded<T: ShmSafe + Send> {
    segment: Segment<GuardedCell<T>>,
    sem: SemSet,
}

impl<T: ShmSafe + Send> Guarded<T> {
    /// Creates the segment `name` holding `value`, and its semaphore (a set of one,
    /// value 1, under a fresh key with an owner record). [`Error::Shm`] with
    /// [`ShmError::AlreadyExists`] if the name is taken.
    pub fn create(name: &str, value: T) -> Result<Self> {
        let sem = SemSet::create_unique(&[1])?;
        let cell = GuardedCell {
            sem_key: sem.key().as_raw(),
            sem_id: sem.id(),
            value: UnsafeCell::new(value),
        };
        // If this fails, `sem` is dropped, which removes the set.
        let segment = Segment::create(name, cell)?;
        Ok(Guarded { segment, sem })
    }

    /// Opens the segment `name` and the semaphore set named inside it.
    pub fn open(name: &str) -> Result<Self> {
        let segment = Segment::<GuardedCell<T>>::open(name)?;
        let sem = SemSet::open(Key::from_raw(segment.sem_key)).map_err(|e| match e {
            Error::NotFound { .. } => {
                Error::Removed { what: format!("the semaphore guarding {name:?}") }
            }
            e => e,
        })?;
        if sem.id() != segment.sem_id {
            return Err(Error::Removed {
                what: format!(
                    "the semaphore set guarding {name:?} (its key now names another set)"
                ),
            });
        }
        Ok(Guarded { segment, sem })
    }

    /// An anonymous guarded value: a memfd segment and a private semaphore set, shared
    /// with `fork`ed children (who inherit this handle; only the creator removes them).
    pub fn anonymous(value: T) -> Result<Self> {
        let sem = SemSet::private(&[1])?;
        let cell = GuardedCell {
            sem_key: sem.key().as_raw(),
            sem_id: sem.id(),
            value: UnsafeCell::new(value),
        };
        let segment = Segment::anonymous(cell)?;
        Ok(Guarded { segment, sem })
    }

    /// Waits for the semaphore and returns a guard that dereferences to the value.
    /// [`Error::Removed`] if the owner removed the set, even while this waited.
    pub fn lock(&self) -> Result<GuardedLock<'_, T>> {
        self.sem.wait(0)?;
        Ok(GuardedLock { guarded: self, pid: std::process::id() })
    }

    /// Takes the lock if it is free now; `Ok(None)` if another holds it.
    pub fn try_lock(&self) -> Result<Option<GuardedLock<'_, T>>> {
        // Not `then_some`: it would build (and drop, posting the semaphore) a guard even
        // when the wait failed.
        if self.sem.try_wait(0)? {
            Ok(Some(GuardedLock { guarded: self, pid: std::process::id() }))
        } else {
            Ok(None)
        }
    }

    /// Waits at most `timeout` for the lock; [`Error::Timeout`] if it stayed taken.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<GuardedLock<'_, T>> {
        self.sem.wait_timeout(0, timeout)?;
        Ok(GuardedLock { guarded: self, pid: std::process::id() })
    }

    /// The segment's name (`None` for an anonymous one).
    pub fn name(&self) -> Option<&str> {
        self.segment.name()
    }

    /// Whether this handle created the pair and removes both on drop.
    pub fn is_owner(&self) -> bool {
        self.segment.is_owner()
    }

    /// A read-only view of the semaphore that guards the value, for diagnostics.
    ///
    /// Only reads: posting the guard's semaphore by hand would let two guards (two
    /// `&mut T`) live at once. (Another process could still do that through
    /// `SemSet::open` with the set's key, as it could write the memory: the guard's
    /// exclusivity rests on every process using the pair only through `Guarded`.)
    pub fn semaphore(&self) -> GuardSemaphore<'_> {
        GuardSemaphore { sem: &self.sem }
    }
}

impl<T: ShmSafe + Send> fmt::Debug for Guarded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guarded").field("segment", &self.segment).field("sem", &self.sem).finish()
    }
}

/// A read-only view of a [`Guarded`] segment's semaphore (number 0 of its set).
#[derive(Debug)]
pub struct GuardSemaphore<'a> {
    sem: &'a SemSet,
}

impl GuardSemaphore<'_> {
    /// The semaphore's value: 1 if the lock is free, 0 if held.
    pub fn value(&self) -> Result<u16> {
        self.sem.get(0)
    }

    /// How many processes wait for the lock.
    pub fn waiting(&self) -> Result<usize> {
        self.sem.waiting(0)
    }

    /// The pid of the last process that took or gave back the lock.
    pub fn last_pid(&self) -> Result<Option<u32>> {
        self.sem.last_pid(0)
    }

    /// The set's key.
    pub fn key(&self) -> Key {
        self.sem.key()
    }

    /// The set's id (for `ipcs -s`).
    pub fn id(&self) -> i32 {
        self.sem.id()
    }
}

/// Exclusive access to a [`Guarded`] value; dropping it posts the semaphore.
pub struct GuardedLock<'a, T: ShmSafe + Send> {
    guarded: &'a Guarded<T>,
    /// The process that took the lock: a copy of the guard in a `fork()`ed child must not
    /// give back the parent's lock.
    pid: u32,
}

impl<T: ShmSafe + Send> Deref for GuardedLock<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this guard holds the semaphore (value 1, taken by this guard's wait), so
        // no other guard in any process accesses the value until it is dropped.
        unsafe { &*self.guarded.segment.value.get() }
    }
}

impl<T: ShmSafe + Send> DerefMut for GuardedLock<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference through
        // this guard.
        unsafe { &mut *self.guarded.segment.value.get() }
    }
}

impl<T: ShmSafe + Send> Drop for GuardedLock<'_, T> {
    fn drop(&mut self) {
        if self.pid != std::process::id() {
            return; // a copy inherited through fork(): the parent gives its lock back
        }
        // If the set was removed meanwhile there is nothing to give back.
        let _ = self.guarded.sem.post(0);
    }
}
