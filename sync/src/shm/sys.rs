//! The syscalls behind [`Segment`](super::Segment): the only place in `sync::shm` that
//! calls nix or libc (the futex calls live in `crate::sys`).
//!
//! # Why nix, not the `shared_memory` crate
//!
//! `shared_memory` opens with `shm_open` and maps, but it cannot create a segment
//! invisibly and publish it atomically (`O_TMPFILE` + `linkat`), does not reserve the pages
//! (`fallocate`), has no memfd, and hands out `&[u8]`/`*mut u8` over the whole mapping
//! with no typed header. Each of those is a requirement here, and each is one nix call
//! (`open`, `fallocate`, `linkat`, `memfd_create`, `mmap`), so nix is the smaller and more
//! honest dependency.
//!
//! # Contract
//!
//! - `EINTR` is retried; errors come back as an [`Errno`] for the caller to name.
//! - fds are `OwnedFd` (close-on-exec), and functions take `impl AsFd`.

use std::ffi::CString;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::ptr::NonNull;

use nix::errno::Errno;
use nix::fcntl::{FallocateFlags, OFlag};
use nix::sys::mman::{MapFlags, ProtFlags};
use nix::sys::stat::Mode;

/// Runs `f` until it returns something other than `EINTR`.
fn retry<T>(mut f: impl FnMut() -> nix::Result<T>) -> nix::Result<T> {
    loop {
        match f() {
            Err(Errno::EINTR) => continue,
            r => return r,
        }
    }
}

/// `open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, mode)`: an unnamed regular file in `dir`'s
/// filesystem, which `linkat` can later give a name (open(2), `O_TMPFILE` without
/// `O_EXCL`). `EOPNOTSUPP`/`EISDIR` say the filesystem or kernel lacks it.
pub(crate) fn open_tmpfile(dir: &str, mode: u32) -> nix::Result<OwnedFd> {
    let m = Mode::from_bits_truncate(mode as libc::mode_t);
    retry(|| nix::fcntl::open(dir, OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC, m))
}

/// `open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | extra, mode)`.
pub(crate) fn open(path: &str, extra: OFlag, mode: u32) -> nix::Result<OwnedFd> {
    let m = Mode::from_bits_truncate(mode as libc::mode_t);
    let flags = OFlag::O_RDWR | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | extra;
    retry(|| nix::fcntl::open(path, flags, m))
}

/// `fchmod(2)`: the exact permission bits, whatever the umask did at creation.
pub(crate) fn fchmod(fd: impl AsFd, mode: u32) -> nix::Result<()> {
    nix::sys::stat::fchmod(fd.as_fd(), Mode::from_bits_truncate(mode as libc::mode_t))
}

/// `fstat(2)`.
pub(crate) fn fstat(fd: impl AsFd) -> nix::Result<libc::stat> {
    nix::sys::stat::fstat(fd.as_fd())
}

/// `lstat(2)`: the entry itself, not a symlink's target.
pub(crate) fn lstat(path: &str) -> nix::Result<libc::stat> {
    retry(|| nix::sys::stat::lstat(path))
}

/// `stat(2)`: follows symlinks (`/dev/shm` is a symlink to `/run/shm` on some systems).
pub(crate) fn stat(path: &str) -> nix::Result<libc::stat> {
    retry(|| nix::sys::stat::stat(path))
}

/// `TMPFS_MAGIC`, the `f_type` of a tmpfs (statfs(2)).
pub(crate) const TMPFS_MAGIC: u64 = libc::TMPFS_MAGIC as u64;

/// The filesystem type (`f_type`, a magic number such as [`TMPFS_MAGIC`]) of the
/// filesystem holding `path` (`statfs(2)`).
pub(crate) fn fs_magic(path: &str) -> nix::Result<u64> {
    retry(|| nix::sys::statfs::statfs(path)).map(|st| st.filesystem_type().0 as u64)
}

/// `unlink(2)`.
pub(crate) fn unlink(path: &str) -> nix::Result<()> {
    retry(|| nix::unistd::unlink(path))
}

/// `ftruncate(2)`.
pub(crate) fn ftruncate(fd: impl AsFd, len: u64) -> nix::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| Errno::EFBIG)?;
    retry(|| nix::unistd::ftruncate(fd.as_fd(), len))
}

/// `fallocate(fd, 0, 0, len)`: reserves every page now, so that touching the mapping later
/// cannot fail with SIGBUS for want of space (tmpfs allocates lazily otherwise).
pub(crate) fn fallocate(fd: impl AsFd, len: u64) -> nix::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| Errno::EFBIG)?;
    retry(|| nix::fcntl::fallocate(fd.as_fd(), FallocateFlags::empty(), 0, len))
}

/// Free bytes for an unprivileged user, and total bytes, of the filesystem holding `fd`
/// (`fstatvfs(2)`). A total of 0 means "no limit" (the kernel's internal tmpfs for memfd).
pub(crate) fn fs_space(fd: impl AsFd) -> nix::Result<(u64, u64)> {
    let st = nix::sys::statvfs::fstatvfs(fd.as_fd())?;
    let frsize = st.fragment_size() as u64;
    Ok((
        (st.blocks_available() as u64).saturating_mul(frsize),
        (st.blocks() as u64).saturating_mul(frsize),
    ))
}

/// `MemAvailable + SwapFree` from `/proc/meminfo`, in bytes: what a memfd can still get.
pub(crate) fn memory_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb.saturating_mul(1024))
    };
    Some(field("MemAvailable:")?.saturating_add(field("SwapFree:").unwrap_or(0)))
}

/// `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)`.
pub(crate) fn memfd(name: &str) -> nix::Result<OwnedFd> {
    use nix::sys::memfd::MFdFlags;
    let c = CString::new(name).map_err(|_| Errno::EINVAL)?;
    nix::sys::memfd::memfd_create(c.as_c_str(), MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
}

/// Seals a memfd against shrinking and growing (`F_SEAL_SHRINK | F_SEAL_GROW |
/// F_SEAL_SEAL`): a process that receives it can map it without fearing that another
/// truncates it under the mapping (which would turn its accesses into SIGBUS).
pub(crate) fn seal_size(fd: impl AsFd) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, SealFlag};
    let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
    fcntl(fd.as_fd(), FcntlArg::F_ADD_SEALS(seals)).map(drop)
}

/// `linkat(AT_FDCWD, "/proc/self/fd/N", AT_FDCWD, path, AT_SYMLINK_FOLLOW)`: gives the
/// `O_TMPFILE` file `fd` the name `path`, failing with `EEXIST` if the name is taken. This
/// is the form open(2) documents for unprivileged callers (`AT_EMPTY_PATH` would need
/// `CAP_DAC_READ_SEARCH`).
pub(crate) fn link_fd(fd: impl AsFd, path: &str) -> nix::Result<()> {
    let proc_path = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
    let cwd = nix::fcntl::AT_FDCWD;
    retry(|| {
        nix::unistd::linkat(
            cwd,
            proc_path.as_str(),
            cwd,
            path,
            nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
        )
    })
}

/// `mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)`.
pub(crate) fn map_shared(fd: impl AsFd, len: usize) -> nix::Result<NonNull<u8>> {
    let len = NonZeroUsize::new(len).ok_or(Errno::EINVAL)?;
    // SAFETY: a fresh mapping chosen by the kernel (addr = None) cannot overlap any Rust
    // object; the fd is borrowed and live for the call, and the mapping outlives its close.
    let p = unsafe {
        nix::sys::mman::mmap(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
            fd.as_fd(),
            0,
        )
    }?;
    Ok(p.cast())
}

/// `munmap(2)`.
///
/// # Safety
///
/// `(ptr, len)` must be a whole mapping returned by [`map_shared`], no longer referenced.
pub(crate) unsafe fn unmap(ptr: NonNull<u8>, len: usize) {
    // SAFETY: the caller guarantees that this is a live mapping nobody uses any more.
    let _ = unsafe { nix::sys::mman::munmap(ptr.cast(), len) };
}

/// The page size (`sysconf(_SC_PAGESIZE)`).
pub(crate) fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|v| usize::try_from(v).ok())
        .unwrap_or(4096)
}
