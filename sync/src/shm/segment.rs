//! [`Segment<T>`]: a typed value in POSIX shared memory (`/dev/shm`) or in a memfd.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::OFlag;

use super::layout::{self, Layout, INIT_WAIT};
use super::sys;
use super::{Origin, ShmError, ShmSafe};

/// Where named segments live: the tmpfs that `shm_open(3)` uses on Linux.
pub const SHM_DIR: &str = "/dev/shm";

/// The longest segment name: a file name in `/dev/shm` (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// Options for [`Segment::create_with`] and [`Segment::anonymous_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentOptions {
    /// Permission bits of a named segment (the low 9 bits), set exactly whatever the
    /// umask. Default 0600: this user only.
    pub mode: u32,
    /// Bytes of raw storage after the value (see [`Segment::extra_ptr`]), starting on a
    /// cache line. The mapping is rounded up to whole pages. Default 0.
    pub extra: usize,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        SegmentOptions { mode: 0o600, extra: 0 }
    }
}

impl SegmentOptions {
    /// These options with `extra` trailing bytes.
    pub fn with_extra(mut self, extra: usize) -> Self {
        self.extra = extra;
        self
    }

    /// These options with the permission bits `mode`.
    pub fn with_mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }
}

/// The creator's claim on a named segment.
#[derive(Debug, Clone, Copy)]
struct Owner {
    /// The process that created it: a `fork`ed child drops copies of its parent's
    /// segments, and must not unlink them.
    pid: u32,
}

/// A value of type `T` in memory shared between processes.
///
/// Built on nix (`open(O_TMPFILE)`, `fallocate`, `linkat`, `memfd_create`, `mmap`) rather
/// than the `shared_memory` crate, which offers none of the atomic publication, page
/// reservation, memfd or typed header required here.
///
/// A segment is a file in `/dev/shm` (named: [`create`](Segment::create) /
/// [`open`](Segment::open)) or a memfd ([`anonymous`](Segment::anonymous), shared with
/// `fork`ed children or passed over a Unix socket with SCM_RIGHTS and mapped with
/// [`from_fd`](Segment::from_fd)), mapped `MAP_SHARED`. It derefs to `&T`: `T` is
/// [`ShmSafe`], so every mutation goes through atomics or a lock that lives in the segment
/// too. Optional trailing bytes (the *extra* area) are reachable only through a raw
/// pointer: no `&[u8]` is ever handed out over memory that another process may be writing.
///
/// # Layout and validation
///
/// The mapping starts with a `#[repr(C)]` header: a magic number, [`LAYOUT_VERSION`](super::LAYOUT_VERSION), the
/// total size, where the value and the extra area sit, the type's size, alignment and a
/// hash of its name, and an `initialised` flag. [`open`](Segment::open) and
/// [`from_fd`](Segment::from_fd) check every field against `T` and refuse a mismatch with
/// [`ShmError::Invalid`] naming it, so opening a segment as a type of another name, size or
/// alignment is an error. (A type is known by those three: if its fields change but they
/// do not, rename or version the type.)
///
/// # Never half-built
///
/// `create` builds the segment as an unnamed file (`O_TMPFILE` in `/dev/shm`): it sizes
/// it, reserves its pages with `fallocate` (so a full `/dev/shm` is
/// [`ShmError::NoSpace`] now, never a SIGBUS later), maps it, writes header and value,
/// sets `initialised`, and only then gives it its name with `linkat`, which fails with
/// [`ShmError::AlreadyExists`] if the name is taken. So `open` can never find a segment
/// under construction. (Without `O_TMPFILE`, `create` falls back to an exclusive
/// `shm_open`-style create, and `open` waits up to 5 s for the flag.)
///
/// # Where named segments live
///
/// Named segments are files in [`SHM_DIR`](super::SHM_DIR) (`/dev/shm`), which must be a
/// directory on a tmpfs, as systemd and Docker mount it. `create` checks that first: a
/// `/dev/shm` that is missing, not a directory, not a tmpfs, mounted read-only or closed to
/// this user is [`ShmError::ShmDirUnusable`], which says which and gives the command that
/// fixes it. Naming the unnamed file goes through `/proc/self/fd`: with `/proc` not
/// mounted, `create` fails with [`ShmError::ProcNotMounted`]. A full `/dev/shm` is
/// [`ShmError::NoSpace`], naming it and its free space. An anonymous segment
/// ([`anonymous`](Segment::anonymous), a memfd) needs neither mount.
///
/// # Ownership
///
/// The creator owns a named segment: dropping it unlinks the name, if the name still
/// refers to this segment's file (not to a segment someone created since under the same
/// name). Processes that have it mapped keep using it; the memory goes when the last
/// mapping and fd close. An opener's drop only unmaps. [`disown`](Segment::disown) hands
/// the name over to whoever removes it later. The value is never dropped (a [`ShmSafe`]
/// type needs no `Drop`).
///
/// "Still refers to this segment's file" is checked by identity: the drop compares the
/// device and inode of its open fd (`fstat`) with those of the name (`lstat`), and unlinks
/// only if they are equal. While the fd is open the inode cannot be freed, so its number
/// cannot be given to another file: an equal pair means the same file. Linux has no
/// "unlink if it is this inode" call, so one window remains, between that `lstat` and the
/// `unlink`: if in those few instructions another process removes the name *and* creates a
/// new segment under it, the drop removes the newcomer's name (its mappings and fds stay
/// valid; the name is gone early). Only a process that removes a live owner's name can
/// open that window ([`Segment::unlink`] or `rm`; `interproc clean` leaves the segments
/// of live owners alone); owners that each create and drop their own names cannot.
///
/// # Example
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use interproc_sync::shm::Segment;
///
/// #[repr(C)]
/// struct Stats {
///     requests: AtomicU64,
///     errors: AtomicU64,
/// }
/// // SAFETY: `#[repr(C)]`, atomics only, no pointers, no Drop.
/// unsafe impl interproc_sync::shm::ShmSafe for Stats {}
///
/// let name = format!("interproc-doc-stats-{}", std::process::id());
/// let owner = Segment::create(&name, Stats { requests: AtomicU64::new(0), errors: AtomicU64::new(0) })?;
///
/// // Another process (here: a second mapping) opens it by name and sees the same memory.
/// let other = Segment::<Stats>::open(&name)?;
/// other.requests.fetch_add(3, Ordering::Relaxed);
/// assert_eq!(owner.requests.load(Ordering::Relaxed), 3);
///
/// // The wrong type is refused, not reinterpreted.
/// assert!(Segment::<u64>::open(&name).is_err());
///
/// drop(other);
/// drop(owner); // the creator unlinks /dev/shm/<name>
/// assert!(Segment::<Stats>::open(&name).is_err());
/// # Ok::<(), interproc_sync::shm::ShmError>(())
/// ```
pub struct Segment<T: ShmSafe> {
    base: NonNull<u8>,
    layout: Layout,
    fd: OwnedFd,
    name: Option<String>,
    /// Where the creator linked the name (`/dev/shm/<name>`), which its drop unlinks.
    path: Option<String>,
    owner: Option<Owner>,
    _type: PhantomData<T>,
}

// SAFETY: the mapping is process-wide memory, valid from any thread until `drop` unmaps
// it; moving the handle moves only the pointer and the fd. The value is `T: ShmSafe`,
// which is `Sync` and needs no `Drop`, so which thread ends up dropping the handle does
// not matter.
unsafe impl<T: ShmSafe> Send for Segment<T> {}
// SAFETY: `&Segment<T>` gives only `&T` (and raw pointers); `T: ShmSafe` implies `Sync`.
unsafe impl<T: ShmSafe> Sync for Segment<T> {}

/// The path of segment `name` in `/dev/shm`, after checking the name.
fn shm_path(name: &str) -> Result<String, ShmError> {
    shm_path_in(SHM_DIR, name)
}

/// The path of segment `name` in `dir`, after checking the name.
fn shm_path_in(dir: &str, name: &str) -> Result<String, ShmError> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > NAME_MAX {
        Some("it is longer than 255 bytes")
    } else if name.contains('/') {
        Some("it contains '/'")
    } else if name.contains('\0') {
        Some("it contains a NUL byte")
    } else if name == "." || name == ".." {
        Some("it is a directory name")
    } else {
        None
    };
    match why {
        Some(why) => Err(ShmError::NameInvalid { name: name.to_string(), why }),
        None => Ok(format!("{dir}/{name}")),
    }
}

/// (st_dev, st_ino): a file's identity while it exists.
fn identity(st: &libc::stat) -> (u64, u64) {
    (st.st_dev, st.st_ino)
}

/// Where `linkat` finds the unnamed file it names (see [`sys::link_fd`]).
const PROC_SELF_FD: &str = "/proc/self/fd";

/// The fix for a `dir` with no tmpfs: the mount that systemd and Docker make.
fn mount_fix(dir: &str) -> String {
    format!(
        "mount a tmpfs there (root): mkdir -p {dir} && mount -t tmpfs -o mode=1777,nosuid,nodev \
         tmpfs {dir}"
    )
}

/// A readable name for a filesystem magic number (statfs(2)), for the error message.
fn fs_name(magic: u64) -> String {
    let name = match magic {
        0xef53 => "ext2/3/4",
        0x5846_5342 => "xfs",
        0x9123_683e => "btrfs",
        0x794c_7630 => "overlayfs",
        0x8584_58f6 => "ramfs",
        0x9fa0 => "proc",
        0x6265_6572 => "sysfs",
        _ => return format!("type {magic:#x}"),
    };
    name.to_string()
}

/// Checks that `dir` can hold named segments before anything is created: it must be a
/// directory on a tmpfs (as glibc's `shm_open` long required). On any other filesystem a
/// segment would be a file on disk (or, for a `/dev/shm` left unmounted in `/dev`, in
/// whatever `/dev` is): slow, kept across reboots, and not what `shm_open` would find.
fn check_shm_dir(dir: &str) -> Result<(), ShmError> {
    let unusable = |problem: String| ShmError::ShmDirUnusable {
        dir: dir.to_string(),
        problem,
        fix: mount_fix(dir),
    };
    let st = sys::stat(dir)
        .map_err(|e| shm_dir_error(dir, e).unwrap_or(ShmError::Os { op: "stat", errno: e }))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(unusable("it is not a directory".into()));
    }
    let magic = sys::fs_magic(dir).map_err(|e| ShmError::Os { op: "statfs", errno: e })?;
    if magic != sys::TMPFS_MAGIC {
        return Err(unusable(format!(
            "it is on a {} filesystem, not a tmpfs (no tmpfs is mounted there)",
            fs_name(magic)
        )));
    }
    Ok(())
}

/// The typed error for `errno` from creating a file in `dir` (`stat`, `open(O_TMPFILE)`,
/// `open(O_CREAT | O_EXCL)`, `linkat`), if the errno is about the directory rather than the
/// segment; `None` otherwise.
fn shm_dir_error(dir: &str, errno: Errno) -> Option<ShmError> {
    let (problem, fix) = match errno {
        Errno::ENOENT => ("it does not exist".to_string(), mount_fix(dir)),
        Errno::ENOTDIR => {
            ("it (or a directory above it) is not a directory".into(), mount_fix(dir))
        }
        Errno::EACCES | Errno::EPERM => {
            let mode = sys::stat(dir)
                .map(|st| format!(" (mode {:04o}, owner uid {})", st.st_mode & 0o7777, st.st_uid))
                .unwrap_or_default();
            (
                format!(
                    "this user (uid {}) may not create files in it{mode}",
                    nix::unistd::geteuid()
                ),
                format!(
                    "let every user create files there, with the sticky bit, as is usual: chmod \
                     1777 {dir} (root)"
                ),
            )
        }
        Errno::EROFS => (
            "it is mounted read-only".into(),
            format!("remount it read-write (root): mount -o remount,rw {dir}"),
        ),
        _ => return None,
    };
    Some(ShmError::ShmDirUnusable { dir: dir.to_string(), problem, fix })
}

/// What a failed `linkat` of the unnamed file to `name` in `dir` means. `ENOENT` with
/// `proc_fd` (`/proc/self/fd`) missing is an unmounted `/proc`; otherwise the directory
/// errors of [`shm_dir_error`], then the usual mapping.
fn link_error(name: &str, dir: &str, proc_fd: &str, errno: Errno) -> ShmError {
    if errno == Errno::ENOENT && sys::stat(proc_fd).is_err() {
        return ShmError::ProcNotMounted { path: proc_fd.to_string() };
    }
    shm_dir_error(dir, errno).unwrap_or_else(|| ShmError::from_errno("linkat", name, errno))
}

/// Sizes the file behind `fd` to `len` and reserves every page, reporting a lack of
/// space as [`ShmError::NoSpace`] at `path`.
fn reserve(fd: &OwnedFd, len: usize, path: &str) -> Result<(), ShmError> {
    let needed = len as u64;
    let no_space = |free: u64| ShmError::NoSpace { path: path.to_string(), free, needed };
    // The filesystem's free space; for a memfd (no size limit on the kernel's internal
    // tmpfs) the memory the kernel can still give.
    let free = || match sys::fs_space(fd) {
        Ok((free, total)) if total > 0 => Some(free),
        _ => sys::memory_available(),
    };
    // Refuse a request that cannot fit before asking for it: fallocate on tmpfs would
    // otherwise allocate pages up to the limit before it fails.
    if let Some(f) = free() {
        if needed > f {
            return Err(no_space(f));
        }
    }
    sys::ftruncate(fd, needed).map_err(|e| match e {
        Errno::EFBIG | Errno::EINVAL => no_space(free().unwrap_or(0)),
        e => ShmError::Os { op: "ftruncate", errno: e },
    })?;
    sys::fallocate(fd, needed).map_err(|e| match e {
        Errno::ENOSPC | Errno::ENOMEM | Errno::EFBIG => no_space(free().unwrap_or(0)),
        e => ShmError::Os { op: "fallocate", errno: e },
    })
}

impl<T: ShmSafe> Segment<T> {
    /// Creates the segment `name` (`/dev/shm/<name>`) holding `value`, with mode 0600
    /// whatever the umask. [`ShmError::AlreadyExists`] if the name is taken. This handle
    /// owns it: dropping it unlinks the name.
    pub fn create(name: &str, value: T) -> Result<Self, ShmError> {
        Self::create_with(name, value, &SegmentOptions::default())
    }

    /// [`Segment::create`] with a mode and an extra area.
    pub fn create_with(name: &str, value: T, opts: &SegmentOptions) -> Result<Self, ShmError> {
        Self::create_in(SHM_DIR, name, value, opts)
    }

    /// [`Segment::create_with`] in the directory `dir` (`/dev/shm`; others in tests).
    fn create_in(dir: &str, name: &str, value: T, opts: &SegmentOptions) -> Result<Self, ShmError> {
        let path = shm_path_in(dir, name)?;
        let layout = Self::layout_for(name, opts.extra)?;
        check_shm_dir(dir)?;
        match Self::build_unnamed(dir, layout, opts.mode, value) {
            Ok(seg) => seg.link(name, dir, &path),
            Err(Unnamed::Unsupported(value)) => {
                Self::create_fallback(name, dir, &path, layout, opts.mode, || value)
            }
            Err(Unnamed::Failed(e)) => Err(e),
        }
    }

    /// Opens the existing segment `name`, checking that it holds a `T` (magic number,
    /// layout version, size, type) and is initialised. Dropping it only unmaps.
    pub fn open(name: &str) -> Result<Self, ShmError> {
        let path = shm_path(name)?;
        let fd = sys::open(&path, OFlag::empty(), 0)
            .map_err(|e| ShmError::from_errno("open", name, e))?;
        Self::map_existing(fd, Some(name.to_string()))
    }

    /// Creates the segment `name` with the value `value()` or, if it exists, opens it;
    /// says which. `value` is called at most once, and only when this call may create.
    pub fn create_or_open(
        name: &str,
        value: impl FnOnce() -> T,
    ) -> Result<(Self, Origin), ShmError> {
        let path = shm_path(name)?;
        match Self::open(name) {
            Ok(seg) => return Ok((seg, Origin::Opened)),
            Err(ShmError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let layout = Self::layout_for(name, 0)?;
        check_shm_dir(SHM_DIR)?;
        let mode = SegmentOptions::default().mode;
        let mut make = Some(value);
        // A value made but not placed yet, and an unnamed segment waiting for its name:
        // kept across attempts, so `value` runs at most once.
        let mut ready: Option<T> = None;
        let mut built: Option<Self> = None;
        let mut tmpfile = true;
        // Another process may remove the segment between our failed create and our open:
        // then create again. A bound keeps a pathological peer from spinning us forever.
        for _ in 0..64 {
            if tmpfile && built.is_none() {
                let v = match ready.take() {
                    Some(v) => v,
                    None => (make.take().expect("the value is made once"))(),
                };
                match Self::build_unnamed(SHM_DIR, layout, mode, v) {
                    Ok(seg) => built = Some(seg),
                    Err(Unnamed::Unsupported(v)) => {
                        ready = Some(v);
                        tmpfile = false;
                    }
                    Err(Unnamed::Failed(e)) => return Err(e),
                }
            }
            let created = match built.take() {
                Some(seg) => seg.link_or_return(name, SHM_DIR, &path).map_err(|(e, back)| {
                    built = back;
                    e
                }),
                None => Self::create_fallback(name, SHM_DIR, &path, layout, mode, || {
                    match ready.take() {
                        Some(v) => v,
                        None => (make.take().expect("the value is made once"))(),
                    }
                }),
            };
            match created {
                Ok(seg) => return Ok((seg, Origin::Created)),
                Err(ShmError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
            match Self::open(name) {
                Ok(seg) => return Ok((seg, Origin::Opened)),
                Err(ShmError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ShmError::NotFound { name: name.to_string() })
    }

    /// An anonymous segment holding `value`: a memfd (`MFD_CLOEXEC`), sealed against
    /// resizing and mapped `MAP_SHARED`. A `fork`ed child shares it; another process gets
    /// it by receiving [`as_fd`](AsFd::as_fd) over a Unix socket (SCM_RIGHTS) and calling
    /// [`Segment::from_fd`].
    pub fn anonymous(value: T) -> Result<Self, ShmError> {
        Self::anonymous_with(value, &SegmentOptions::default())
    }

    /// [`Segment::anonymous`] with an extra area (the mode does not apply to a memfd,
    /// which has no name to open).
    pub fn anonymous_with(value: T, opts: &SegmentOptions) -> Result<Self, ShmError> {
        let layout = Self::layout_for("(anonymous)", opts.extra)?;
        let fd = sys::memfd("interproc-segment")
            .map_err(|e| ShmError::Os { op: "memfd_create", errno: e })?;
        reserve(&fd, layout.total(), "memfd (RAM)")?;
        sys::seal_size(&fd).map_err(|e| ShmError::Os { op: "fcntl(F_ADD_SEALS)", errno: e })?;
        let mut seg = Self::map_new(fd, layout, value)?;
        seg.owner = Some(Owner { pid: std::process::id() });
        Ok(seg)
    }

    /// Maps the segment behind a received fd (a memfd from [`Segment::anonymous`], or an
    /// open `/dev/shm` file), validating it as [`Segment::open`] does.
    ///
    /// A process that can `ftruncate` the file could shrink it under the mapping, which
    /// turns accesses beyond the new end into SIGBUS: anonymous segments are sealed against
    /// that; accept fds of named segments only from processes you trust.
    pub fn from_fd(fd: OwnedFd) -> Result<Self, ShmError> {
        Self::map_existing(fd, None)
    }

    /// A pointer to the first byte of the extra area ([`SegmentOptions::extra`]), aligned
    /// to 64 bytes. Other processes may write it at any time: access it through atomics
    /// or raw copies under a lock, never through a `&[u8]`.
    #[inline]
    pub fn extra_ptr(&self) -> *mut u8 {
        // SAFETY: `extra_offset <= total` (checked by `Layout::of` and on open), so the
        // result is within (or one past the end of) the mapping.
        unsafe { self.base.as_ptr().add(self.layout.extra_offset()) }
    }

    /// The length of the extra area in bytes, as requested at creation.
    #[inline]
    pub fn extra_len(&self) -> usize {
        self.layout.extra()
    }

    /// The size of the whole mapping in bytes (header, value and extra area, rounded up
    /// to pages).
    pub fn mapped_len(&self) -> usize {
        self.layout.total()
    }

    /// The segment's name, for a named segment.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Whether this handle created the segment (and, if it is named, unlinks it on
    /// drop). A `fork`ed child's copy of its parent's owner answers `false`.
    pub fn is_owner(&self) -> bool {
        self.owner.is_some_and(|o| o.pid == std::process::id())
    }

    /// Gives up ownership: dropping this handle will no longer unlink the name, which
    /// then stays until someone unlinks it (`rm /dev/shm/<name>`, or
    /// [`Segment::unlink`]).
    pub fn disown(&mut self) {
        if self.is_owner() {
            // Only the owner gives up the header's owner record (an opener's `disown` is
            // a no-op there, or `interproc clean` would never remove the segment).
            // SAFETY: `base` is this segment's initialised mapping, mapped while `self`
            // lives.
            unsafe { layout::set_owner(self.base, 0) };
        }
        self.owner = None;
    }

    /// Removes the name `name` from `/dev/shm` now, whoever created it. Mappings stay
    /// valid. [`ShmError::NotFound`] if there is no such segment.
    pub fn unlink(name: &str) -> Result<(), ShmError> {
        let path = shm_path(name)?;
        sys::unlink(&path).map_err(|e| ShmError::from_errno("unlink", name, e))
    }

    fn layout_for(name: &str, extra: usize) -> Result<Layout, ShmError> {
        Layout::of::<T>(extra).map_err(|what| ShmError::Invalid { name: name.to_string(), what })
    }

    /// Builds a complete segment as an unnamed `O_TMPFILE` file in `dir`.
    fn build_unnamed(dir: &str, layout: Layout, mode: u32, value: T) -> Result<Self, Unnamed<T>> {
        let fd =
            match sys::open_tmpfile(dir, 0o600) {
                Ok(fd) => fd,
                Err(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL) => {
                    return Err(Unnamed::Unsupported(value))
                }
                Err(e) => {
                    return Err(Unnamed::Failed(shm_dir_error(dir, e).unwrap_or_else(|| {
                        ShmError::from_errno("open(/dev/shm, O_TMPFILE)", dir, e)
                    })))
                }
            };
        let build = || {
            sys::fchmod(&fd, mode & 0o777).map_err(|e| ShmError::Os { op: "fchmod", errno: e })?;
            reserve(&fd, layout.total(), dir)
        };
        build().map_err(Unnamed::Failed)?;
        Self::map_new(fd, layout, value).map_err(Unnamed::Failed)
    }

    /// Gives the unnamed segment its name `path` (`name` in `dir`); the caller then owns
    /// it.
    fn link(self, name: &str, dir: &str, path: &str) -> Result<Self, ShmError> {
        self.link_or_return(name, dir, path).map_err(|(e, _)| e)
    }

    /// [`Self::link`], handing the segment back if the name is taken.
    #[allow(clippy::result_large_err)]
    fn link_or_return(
        mut self,
        name: &str,
        dir: &str,
        path: &str,
    ) -> Result<Self, (ShmError, Option<Self>)> {
        match sys::link_fd(&self.fd, path) {
            Ok(()) => {
                self.name = Some(name.to_string());
                self.path = Some(path.to_string());
                self.owner = Some(Owner { pid: std::process::id() });
                Ok(self)
            }
            Err(Errno::EEXIST) => {
                Err((ShmError::AlreadyExists { name: name.to_string() }, Some(self)))
            }
            Err(e) => Err((link_error(name, dir, PROC_SELF_FD, e), None)),
        }
    }

    /// The fallback without `O_TMPFILE`: an exclusive create under the final name, then
    /// the same steps; openers wait for the `initialised` flag.
    fn create_fallback(
        name: &str,
        dir: &str,
        path: &str,
        layout: Layout,
        mode: u32,
        value: impl FnOnce() -> T,
    ) -> Result<Self, ShmError> {
        let fd = sys::open(path, OFlag::O_CREAT | OFlag::O_EXCL, 0o600).map_err(|e| match e {
            Errno::EEXIST => ShmError::AlreadyExists { name: name.to_string() },
            e => shm_dir_error(dir, e)
                .unwrap_or_else(|| ShmError::from_errno("open(O_CREAT | O_EXCL)", name, e)),
        })?;
        let id = sys::fstat(&fd).map(|st| identity(&st)).ok();
        let built = (|| {
            sys::fchmod(&fd, mode & 0o777).map_err(|e| ShmError::Os { op: "fchmod", errno: e })?;
            reserve(&fd, layout.total(), dir)?;
            Ok(())
        })();
        let built = built.and_then(|()| Self::map_new(fd, layout, value()));
        match built {
            Ok(mut seg) => {
                seg.name = Some(name.to_string());
                seg.path = Some(path.to_string());
                seg.owner = Some(Owner { pid: std::process::id() });
                Ok(seg)
            }
            Err(e) => {
                // Remove the half-built file, if the name is still ours.
                if id.is_some() && sys::lstat(path).ok().map(|st| identity(&st)) == id {
                    let _ = sys::unlink(path);
                }
                Err(e)
            }
        }
    }

    /// Maps the sized file `fd` and writes header and value, then publishes the flag.
    fn map_new(fd: OwnedFd, layout: Layout, value: T) -> Result<Self, ShmError> {
        let base = sys::map_shared(&fd, layout.total())
            .map_err(|e| ShmError::Os { op: "mmap", errno: e })?;
        let seg: Self =
            Segment { base, layout, fd, name: None, path: None, owner: None, _type: PhantomData };
        // SAFETY: a fresh mapping of `layout.total` bytes, page-aligned, that no other
        // process reads yet (the file has no name, or openers wait for the flag).
        unsafe { layout::init(seg.base, &layout, value) };
        // The creator owns a named segment (the anonymous ones have no name to remove):
        // recorded before the name is published, for `interproc ls`/`clean`.
        // SAFETY: just initialised; mapped while `seg` lives.
        unsafe { layout::set_owner(seg.base, crate::sys::current_process().pack()) };
        Ok(seg)
    }

    /// Maps an existing segment file and checks it holds an initialised `T`.
    fn map_existing(fd: OwnedFd, name: Option<String>) -> Result<Self, ShmError> {
        let label = name.clone().unwrap_or_else(|| format!("fd {}", fd.as_raw_fd()));
        let invalid = |what: String| ShmError::Invalid { name: label.clone(), what };
        let deadline = crate::loom::time::now() + INIT_WAIT;
        let header_len = layout::header_len();
        let size = loop {
            let st = sys::fstat(&fd).map_err(|e| ShmError::Os { op: "fstat", errno: e })?;
            if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                return Err(invalid("it is not a regular file".into()));
            }
            let size = usize::try_from(st.st_size).unwrap_or(0);
            if size >= header_len {
                break size;
            }
            // A fallback creator may not have sized it yet.
            if crate::loom::time::now() >= deadline {
                return Err(invalid(format!(
                    "it is {size} bytes, smaller than the {header_len}-byte header (not an \
                     interproc segment, or its creator died before sizing it)"
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let base = sys::map_shared(&fd, size).map_err(|e| ShmError::Os { op: "mmap", errno: e })?;
        // Until validated, the layout covers exactly the mapping, so `drop` unmaps it all.
        let layout = Layout::unchecked(size);
        let mut seg: Self =
            Segment { base, layout, fd, name, path: None, owner: None, _type: PhantomData };
        // SAFETY: the mapping is `size` bytes, page-aligned, and lives as long as `seg`.
        let expect = unsafe { layout::validate::<T>(seg.base, size, &label, deadline) }?;
        seg.layout = expect;
        Ok(seg)
    }
}

/// Why the `O_TMPFILE` build did not produce a segment.
enum Unnamed<T> {
    /// The kernel or filesystem has no `O_TMPFILE`: the value comes back for the fallback.
    Unsupported(T),
    /// A real error.
    Failed(ShmError),
}

impl<T: ShmSafe> Deref for Segment<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // The layout was computed for `T` (creation) or validated against it (open: size,
        // alignment, type hash, offsets), and the value was written before `initialised`
        // was published.
        // SAFETY: `value_offset` is in bounds and aligned for an initialised `T` in a
        // mapping that lives as long as `self`; `T: ShmSafe` makes shared access sound.
        unsafe { &*self.base.as_ptr().add(self.layout.value_offset()).cast::<T>() }
    }
}

impl<T: ShmSafe> AsFd for Segment<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl<T: ShmSafe> fmt::Debug for Segment<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("type", &std::any::type_name::<T>())
            .field("name", &self.name)
            .field("owner", &self.is_owner())
            .field("mapped_len", &self.layout.total())
            .field("extra_len", &self.layout.extra())
            .finish()
    }
}

impl<T: ShmSafe> Drop for Segment<T> {
    fn drop(&mut self) {
        if let (true, Some(path)) = (self.is_owner(), self.path.as_deref()) {
            // Only while the name still refers to our file: someone may have unlinked it
            // and created a new segment under the same name since. (Our open fd keeps our
            // inode alive, so its number cannot be reused by that new file.) What is left
            // is the window between this `lstat` and the `unlink`: see "Ownership" above.
            let ours = sys::fstat(&self.fd).ok().map(|st| identity(&st));
            if ours.is_some() && sys::lstat(path).ok().map(|st| identity(&st)) == ours {
                let _ = sys::unlink(path);
            }
        }
        // The deadlock detector forgets what it knew of locks there (nothing without it).
        crate::deadlock::unmapped(self.base.as_ptr().addr(), self.layout.total());
        // SAFETY: `base`/`total` is the whole mapping made by `map_shared` in the
        // constructor; `&mut self` proves no reference into it remains.
        unsafe { sys::unmap(self.base, self.layout.total()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for bad in ["", "a/b", "..", ".", "x\0y"] {
            assert!(matches!(shm_path(bad), Err(ShmError::NameInvalid { .. })), "{bad:?}");
        }
        assert!(matches!(shm_path(&"x".repeat(256)), Err(ShmError::NameInvalid { .. })));
        assert_eq!(shm_path("interproc-x").unwrap(), "/dev/shm/interproc-x");
    }

    #[test]
    fn fallback_create_then_open() {
        let name = format!("interproc-unit-fallback-{}", std::process::id());
        let path = shm_path(&name).unwrap();
        let layout = Layout::of::<u64>(0).unwrap();
        let seg =
            Segment::<u64>::create_fallback(&name, SHM_DIR, &path, layout, 0o600, || 42).unwrap();
        assert!(seg.is_owner());
        let other = Segment::<u64>::open(&name).unwrap();
        assert_eq!(*other, 42);
        assert!(matches!(
            Segment::<u64>::create_fallback(&name, SHM_DIR, &path, layout, 0o600, || 1),
            Err(ShmError::AlreadyExists { .. })
        ));
        drop(seg);
        assert!(matches!(Segment::<u64>::open(&name), Err(ShmError::NotFound { .. })));
    }

    /// The error a create got in `dir`, which must be `ShmDirUnusable` naming `dir`,
    /// saying `problem` and the way out (`fix`), and pointing at the memfd that needs no
    /// mount.
    fn assert_unusable(dir: &str, problem: &str, fix: &str) {
        let name = format!("interproc-unit-dir-{}", std::process::id());
        let e = Segment::<u64>::create_in(dir, &name, 1, &SegmentOptions::default())
            .expect_err("a segment was created in an unusable directory");
        let ShmError::ShmDirUnusable { dir: d, problem: p, .. } = &e else {
            panic!("expected ShmDirUnusable for {dir}, got {e:?}: {e}")
        };
        assert_eq!(d, dir);
        assert!(p.contains(problem), "{p}");
        let msg = e.to_string();
        for part in [dir, fix, "Segment::anonymous"] {
            assert!(msg.contains(part), "{part:?} not in {msg}");
        }
        assert_eq!(std::io::Error::from(e).kind(), std::io::ErrorKind::Unsupported);
    }

    /// Regression: with no `/dev/shm`, create failed with "segment \"/dev/shm\" does not
    /// exist; create it first".
    #[test]
    fn a_missing_shm_dir_is_named_with_the_mount_that_fixes_it() {
        let dir = format!("/nonexistent-interproc-unit-{}", std::process::id());
        assert_unusable(&dir, "does not exist", "mount -t tmpfs");
    }

    #[test]
    fn an_shm_dir_that_is_a_file_is_refused() {
        assert_unusable(
            concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
            "not a directory",
            "mount -t tmpfs",
        );
    }

    /// Regression: a `/dev/shm` with no tmpfs mounted on it (a plain directory) silently
    /// held segments as files on that filesystem. `/proc` is never a tmpfs.
    #[test]
    fn an_shm_dir_that_is_not_a_tmpfs_is_refused() {
        assert_unusable("/proc", "not a tmpfs", "mount -t tmpfs");
    }

    #[test]
    fn the_real_shm_dir_is_accepted() {
        check_shm_dir(SHM_DIR).expect("/dev/shm is a tmpfs on the test machines");
    }

    /// A directory this user may not write, or a read-only mount: the errno mapping (the
    /// tests run as root, which no mode keeps out, and must not remount anything).
    #[test]
    fn an_unwritable_or_read_only_shm_dir_says_what_to_do() {
        for (errno, problem, fix) in [
            (Errno::EACCES, "may not create files in it (mode 1777", "chmod 1777 /dev/shm"),
            (Errno::EPERM, "may not create files in it", "chmod 1777 /dev/shm"),
            (Errno::EROFS, "mounted read-only", "mount -o remount,rw /dev/shm"),
            (Errno::ENOENT, "does not exist", "mount -t tmpfs"),
        ] {
            let e = shm_dir_error(SHM_DIR, errno).expect("a directory error");
            let ShmError::ShmDirUnusable { problem: p, fix: f, .. } = &e else { panic!("{e:?}") };
            assert!(p.contains(problem), "{errno}: {p}");
            assert!(f.contains(fix), "{errno}: {f}");
            assert!(e.to_string().contains("/dev/shm"), "{e}");
        }
        assert_eq!(shm_dir_error(SHM_DIR, Errno::EIO), None);
    }

    /// Regression: with `/proc` unmounted, `linkat` through `/proc/self/fd/N` failed with
    /// ENOENT, reported as "segment <name> does not exist; create it first".
    #[test]
    fn an_unmounted_proc_is_named_by_the_link_error() {
        let missing = format!("/nonexistent-interproc-unit-{}/self/fd", std::process::id());
        let e = link_error("interproc-x", SHM_DIR, &missing, Errno::ENOENT);
        assert_eq!(e, ShmError::ProcNotMounted { path: missing.clone() });
        let msg = e.to_string();
        for part in [missing.as_str(), "mount -t proc proc /proc", "Segment::anonymous"] {
            assert!(msg.contains(part), "{part:?} not in {msg}");
        }
        // With /proc mounted, an ENOENT is about /dev/shm (removed under us).
        assert!(matches!(
            link_error("interproc-x", SHM_DIR, PROC_SELF_FD, Errno::ENOENT),
            ShmError::ShmDirUnusable { .. }
        ));
        assert!(matches!(
            link_error("interproc-x", SHM_DIR, PROC_SELF_FD, Errno::EROFS),
            ShmError::ShmDirUnusable { .. }
        ));
    }
}
