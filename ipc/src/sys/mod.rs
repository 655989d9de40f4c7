//! The only place in `interproc-ipc` that calls into `nix` or `libc`.
//!
//! # Contract
//!
//! Every function here:
//! - retries `EINTR` itself, recomputing any timeout from an absolute deadline on
//!   `CLOCK_MONOTONIC` (std's [`Instant`]), so callers never see `EINTR`;
//! - returns `nix::Result` (an [`Errno`]) and leaves the mapping to a typed
//!   [`crate::Error`] to the caller, which knows what the object is;
//! - takes `impl AsFd` / returns `OwnedFd`, never a raw fd that the caller must close.
//!
//! Every `unsafe` block carries a `// SAFETY:` comment naming the invariant it relies on.

pub(crate) mod msg;
pub(crate) mod sem;
pub(crate) mod shm;

use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout};

/// Runs `f` until it returns something other than `EINTR`.
pub(crate) fn retry<T>(mut f: impl FnMut() -> nix::Result<T>) -> nix::Result<T> {
    loop {
        match f() {
            Err(Errno::EINTR) => continue,
            r => return r,
        }
    }
}

/// Milliseconds left until `deadline`, rounded up so that a poll never returns
/// early and spins; `None` blocks forever.
pub(crate) fn poll_timeout(deadline: Option<Instant>) -> PollTimeout {
    match deadline {
        None => PollTimeout::NONE,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            let ms = left.as_micros().div_ceil(1000);
            PollTimeout::try_from(ms.min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
        }
    }
}

/// Waits until `fd` reports one of `events` (or an error/hang-up condition), or until
/// `deadline` passes. Returns the revents, or `None` on timeout.
///
/// `POLLHUP`/`POLLERR` are always reported by the kernel (poll(2)); the caller's next
/// read or write then sees EOF or the error, which is how a dead peer surfaces.
pub(crate) fn wait_fd(
    fd: impl AsFd,
    events: PollFlags,
    deadline: Option<Instant>,
) -> nix::Result<Option<PollFlags>> {
    let fd = fd.as_fd();
    loop {
        let mut fds = [PollFd::new(fd, events)];
        match nix::poll::poll(&mut fds, poll_timeout(deadline)) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(0) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(None);
                }
                // Rounding left a sliver of time: poll again.
            }
            Ok(_) => return Ok(fds[0].revents()),
        }
    }
}

/// Sets or clears `O_NONBLOCK` on the open file description behind `fd`.
pub(crate) fn set_nonblocking(fd: impl AsFd, on: bool) -> nix::Result<()> {
    let fd = fd.as_fd();
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    let new = if on { flags | OFlag::O_NONBLOCK } else { flags & !OFlag::O_NONBLOCK };
    if new != flags {
        fcntl(fd, FcntlArg::F_SETFL(new))?;
    }
    Ok(())
}

/// The capacity of the pipe or FIFO `fd`, in bytes (`F_GETPIPE_SZ`).
pub(crate) fn pipe_capacity(fd: impl AsFd) -> nix::Result<usize> {
    fcntl(fd.as_fd(), FcntlArg::F_GETPIPE_SZ).map(|n| n as usize)
}

/// Sets the capacity of the pipe or FIFO `fd` to at least `bytes` (`F_SETPIPE_SZ`; the
/// kernel rounds up to a power-of-two number of pages); returns the new capacity. Fails
/// with `EPERM` above `fs.pipe-max-size` or over the user's pipe page quota (unprivileged),
/// and with `EBUSY` below what the pipe holds now.
pub(crate) fn set_pipe_capacity(fd: impl AsFd, bytes: usize) -> nix::Result<usize> {
    let bytes = libc::c_int::try_from(bytes).map_err(|_| Errno::EINVAL)?;
    fcntl(fd.as_fd(), FcntlArg::F_SETPIPE_SZ(bytes)).map(|n| n as usize)
}

/// Whether `O_NONBLOCK` is set on `fd`'s open file description.
pub(crate) fn is_nonblocking(fd: impl AsFd) -> nix::Result<bool> {
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    Ok(flags.contains(OFlag::O_NONBLOCK))
}

/// `pipe2(O_CLOEXEC | extra)`: (read end, write end).
pub(crate) fn pipe2(extra: OFlag) -> nix::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC | extra)
}

/// `read(2)`, EINTR retried.
pub(crate) fn read(fd: impl AsFd, buf: &mut [u8]) -> nix::Result<usize> {
    let fd = fd.as_fd();
    retry(|| nix::unistd::read(fd, buf))
}

/// `write(2)`, EINTR retried.
pub(crate) fn write(fd: impl AsFd, buf: &[u8]) -> nix::Result<usize> {
    let fd = fd.as_fd();
    retry(|| nix::unistd::write(fd, buf))
}

/// `writev(2)` for fds that are not sockets, EINTR retried.
pub(crate) fn writev(fd: impl AsFd, iov: &[std::io::IoSlice<'_>]) -> nix::Result<usize> {
    let fd = fd.as_fd();
    retry(|| nix::sys::uio::writev(fd, iov))
}

/// `sendmsg(2)` with `MSG_NOSIGNAL` for stream sockets: a dead peer gives `EPIPE`
/// rather than killing the process with SIGPIPE. EINTR retried.
pub(crate) fn send_nosignal(fd: impl AsFd, iov: &[std::io::IoSlice<'_>]) -> nix::Result<usize> {
    send_nosignal_flags(fd, iov, nix::sys::socket::MsgFlags::empty())
}

/// [`send_nosignal`] with more flags, for example `MSG_DONTWAIT` (this call does not
/// sleep, whatever the socket's `O_NONBLOCK`). EINTR retried.
pub(crate) fn send_nosignal_flags(
    fd: impl AsFd,
    iov: &[std::io::IoSlice<'_>],
    flags: nix::sys::socket::MsgFlags,
) -> nix::Result<usize> {
    use nix::sys::socket::{sendmsg, MsgFlags, UnixAddr};
    use std::os::fd::AsRawFd;
    let fd = fd.as_fd().as_raw_fd();
    retry(|| sendmsg::<UnixAddr>(fd, iov, &[], MsgFlags::MSG_NOSIGNAL | flags, None))
}

/// `send(2)` of one buffer with `MSG_NOSIGNAL` and `flags`, for stream sockets: cheaper
/// in the kernel than [`send_nosignal_flags`]'s `sendmsg` (no `msghdr` or iovec array
/// to copy in). EINTR retried.
pub(crate) fn send_buf_nosignal(
    fd: impl AsFd,
    buf: &[u8],
    flags: nix::sys::socket::MsgFlags,
) -> nix::Result<usize> {
    use nix::sys::socket::{send, MsgFlags};
    use std::os::fd::AsRawFd;
    let fd = fd.as_fd().as_raw_fd();
    retry(|| send(fd, buf, MsgFlags::MSG_NOSIGNAL | flags))
}

/// `preadv2(fd, [buf], -1, RWF_NOWAIT)`: a read at the current position that does not
/// sleep, whatever the fd's `O_NONBLOCK` (`EAGAIN` when nothing is there). Pipes and
/// FIFOs honour it on current kernels; where a file does not, the call fails with
/// `EOPNOTSUPP` (preadv2(2)). EINTR retried.
pub(crate) fn read_nowait(fd: impl AsFd, buf: &mut [u8]) -> nix::Result<usize> {
    use std::os::fd::AsRawFd;
    let fd = fd.as_fd().as_raw_fd();
    let iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    retry(|| {
        // SAFETY: `iov` describes `buf`, which is exclusively borrowed for the call, so
        // the kernel writes only inside it; offset -1 means the current position.
        let n = unsafe { libc::preadv2(fd, &iov, 1, -1, libc::RWF_NOWAIT) };
        Errno::result(n).map(|n| n as usize)
    })
}

/// `pwritev2(fd, iov, -1, RWF_NOWAIT)`: [`writev`] that does not sleep, whatever the
/// fd's `O_NONBLOCK`; `EOPNOTSUPP` where the file does not honour it. EINTR retried.
pub(crate) fn writev_nowait(fd: impl AsFd, iov: &[std::io::IoSlice<'_>]) -> nix::Result<usize> {
    use std::os::fd::AsRawFd;
    let fd = fd.as_fd().as_raw_fd();
    let cnt = iov.len().min(libc::c_int::MAX as usize) as libc::c_int;
    retry(|| {
        // SAFETY: `IoSlice` is ABI-compatible with `struct iovec` on Unix (std's
        // guarantee), and the slices it points to are borrowed for the call; the kernel
        // only reads them. Offset -1 means the current position.
        let n = unsafe { libc::pwritev2(fd, iov.as_ptr().cast(), cnt, -1, libc::RWF_NOWAIT) };
        Errno::result(n).map(|n| n as usize)
    })
}

/// Whether `fd` is a socket (fstat S_IFSOCK).
pub(crate) fn is_socket(fd: impl AsFd) -> nix::Result<bool> {
    let st = nix::sys::stat::fstat(fd.as_fd())?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFSOCK)
}

/// Whether `fd` is a socket, a pipe or a FIFO (fstat S_IFSOCK or S_IFIFO): a byte stream
/// that turns writable when room comes.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) fn is_socket_or_pipe(fd: impl AsFd) -> nix::Result<bool> {
    let st = nix::sys::stat::fstat(fd.as_fd())?;
    Ok(matches!(st.st_mode & libc::S_IFMT, libc::S_IFSOCK | libc::S_IFIFO))
}

// ---- filesystem objects (FIFOs, socket files) ----

/// `mkfifo(2)` with `mode`. The kernel applies the umask: call [`chmod_nofollow`]
/// afterwards for the exact mode.
pub(crate) fn mkfifo(path: &std::path::Path, mode: u32) -> nix::Result<()> {
    let mode = nix::sys::stat::Mode::from_bits_truncate(mode as libc::mode_t);
    retry(|| nix::unistd::mkfifo(path, mode))
}

/// `fchmodat(AT_FDCWD, path, mode, AT_SYMLINK_NOFOLLOW)`: sets the exact permission bits,
/// whatever the umask was, and refuses to follow a symlink that may have replaced the
/// object since it was created.
pub(crate) fn chmod_nofollow(path: &std::path::Path, mode: u32) -> nix::Result<()> {
    use nix::sys::stat::{fchmodat, FchmodatFlags, Mode};
    let mode = Mode::from_bits_truncate(mode as libc::mode_t);
    retry(|| fchmodat(nix::fcntl::AT_FDCWD, path, mode, FchmodatFlags::NoFollowSymlink))
}

/// `open(2)` with `O_CLOEXEC` added, EINTR retried. A blocking open of a FIFO sleeps
/// until the peer opens (fifo(7)); a signal interrupts it with EINTR and it starts over.
pub(crate) fn open(path: &std::path::Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let mode = nix::sys::stat::Mode::empty();
    retry(|| nix::fcntl::open(path, flags | OFlag::O_CLOEXEC, mode))
}

/// `fstat(2)`.
pub(crate) fn fstat(fd: impl AsFd) -> nix::Result<nix::sys::stat::FileStat> {
    nix::sys::stat::fstat(fd.as_fd())
}

/// `lstat(2)`: the directory entry itself, not a symlink's target.
pub(crate) fn lstat(path: &std::path::Path) -> nix::Result<nix::sys::stat::FileStat> {
    retry(|| nix::sys::stat::lstat(path))
}

/// `stat(2)`: follows symlinks.
pub(crate) fn stat(path: &std::path::Path) -> nix::Result<nix::sys::stat::FileStat> {
    retry(|| nix::sys::stat::stat(path))
}

/// `unlink(2)`.
pub(crate) fn unlink(path: &std::path::Path) -> nix::Result<()> {
    retry(|| nix::unistd::unlink(path))
}

/// Whether the FIFO (or pipe) read end `fd` has a writer, without consuming data.
///
/// `read(2)` cannot ask this: an empty FIFO reads as EOF when it has no writer and as
/// `EAGAIN` when it has one, but a non-empty FIFO would lose the bytes read. `tee(2)`
/// with `SPLICE_F_NONBLOCK` answers the same way and only *duplicates* the data into
/// `scratch` (the write end of a private pipe with room): 0 means empty with no writer,
/// `EAGAIN` means empty with a writer, more than 0 means data is waiting (a writer
/// opened, even if it has gone since).
pub(crate) fn fifo_has_writer(fd: impl AsFd, scratch: impl AsFd) -> nix::Result<bool> {
    use nix::fcntl::SpliceFFlags;
    match retry(|| nix::fcntl::tee(fd.as_fd(), scratch.as_fd(), 1, SpliceFFlags::SPLICE_F_NONBLOCK))
    {
        Ok(0) => Ok(false),
        Ok(_) => Ok(true),
        Err(Errno::EAGAIN) => Ok(true),
        Err(e) => Err(e),
    }
}

/// The file type bits of `st_mode` as a word for error messages.
pub(crate) fn file_type_name(st_mode: libc::mode_t) -> &'static str {
    match st_mode & libc::S_IFMT {
        libc::S_IFIFO => "FIFO",
        libc::S_IFSOCK => "socket",
        libc::S_IFREG => "regular file",
        libc::S_IFDIR => "directory",
        libc::S_IFLNK => "symbolic link",
        libc::S_IFCHR => "character device",
        libc::S_IFBLK => "block device",
        _ => "file of unknown type",
    }
}

/// `flock(fd, LOCK_EX or LOCK_SH | LOCK_NB)`: `Ok(true)` if taken, `Ok(false)` if
/// another open file description holds a conflicting lock.
///
/// There is deliberately no unlock: the lock belongs to the open file description and
/// goes when its last fd closes (flock(2)). An explicit `LOCK_UN` from a `fork`ed child
/// would release its parent's lock through the shared description.
pub(crate) fn flock_try(fd: impl AsFd, exclusive: bool) -> nix::Result<bool> {
    use std::os::fd::AsRawFd;
    let op = if exclusive { libc::LOCK_EX } else { libc::LOCK_SH } | libc::LOCK_NB;
    let fd = fd.as_fd().as_raw_fd();
    // SAFETY: `fd` is borrowed from a live `AsFd`, so it is open for the whole call;
    // flock reads no memory of ours.
    match retry(|| Errno::result(unsafe { libc::flock(fd, op) })) {
        Ok(_) => Ok(true),
        Err(Errno::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
}

mod socket;
pub(crate) use socket::*;

pub(crate) mod reactor;
