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
    use nix::sys::socket::{sendmsg, MsgFlags, UnixAddr};
    use std::os::fd::AsRawFd;
    let fd = fd.as_fd().as_raw_fd();
    retry(|| sendmsg::<UnixAddr>(fd, iov, &[], MsgFlags::MSG_NOSIGNAL, None))
}

/// Whether `fd` is a socket (fstat S_IFSOCK).
pub(crate) fn is_socket(fd: impl AsFd) -> nix::Result<bool> {
    let st = nix::sys::stat::fstat(fd.as_fd())?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFSOCK)
}

mod socket;
pub(crate) use socket::*;
