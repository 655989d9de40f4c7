//! Readiness syscalls for the reactor: epoll, poll(2), select(2), timerfd, signalfd,
//! eventfd. Same contract as the rest of `sys`: EINTR is retried with the timeout
//! recomputed from an absolute deadline, errors are `Errno`s, fds come in as `AsFd`
//! and go out as `OwnedFd`.
//!
//! poll and select work on raw fd numbers that the reactor keeps between calls: they
//! read no memory through the fd, and a number that was closed behind the caller's back
//! gives `POLLNVAL` (poll) or `EBADF` (select), never undefined behaviour.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

pub(crate) use nix::sys::epoll::{EpollEvent as RawEpollEvent, EpollFlags as EpFlags};

/// `FD_SETSIZE`: select(2) cannot watch an fd at or above it (glibc's `fd_set` is a
/// fixed 1024-bit array; writing past it corrupts the stack).
pub(crate) const FD_SETSIZE: usize = libc::FD_SETSIZE;

/// Milliseconds left until `deadline` for epoll_wait/poll, rounded up so a wait never
/// returns early and spins; -1 blocks forever.
fn timeout_ms(deadline: Option<Instant>) -> i32 {
    match deadline {
        None => -1,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
        }
    }
}

/// Runs a readiness wait until it reports something, fails with an error other than
/// EINTR, or `deadline` passes (then `Ok(0)`).
fn wait_loop(
    deadline: Option<Instant>,
    mut f: impl FnMut(Option<Instant>) -> nix::Result<usize>,
) -> nix::Result<usize> {
    loop {
        match f(deadline) {
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
            Ok(0) => {
                if deadline.is_none_or(|d| Instant::now() >= d) {
                    return Ok(0);
                }
                // Rounding left a sliver of time: wait again.
            }
            Ok(n) => return Ok(n),
        }
    }
}

/// `epoll_create1(EPOLL_CLOEXEC)`.
pub(crate) fn epoll_create() -> nix::Result<Epoll> {
    Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
}

/// `epoll_ctl(EPOLL_CTL_ADD)`.
pub(crate) fn epoll_add(
    ep: &Epoll,
    fd: impl AsFd,
    flags: EpollFlags,
    data: u64,
) -> nix::Result<()> {
    ep.add(fd, EpollEvent::new(flags, data))
}

/// `epoll_ctl(EPOLL_CTL_MOD)`.
pub(crate) fn epoll_modify(
    ep: &Epoll,
    fd: impl AsFd,
    flags: EpollFlags,
    data: u64,
) -> nix::Result<()> {
    ep.modify(fd, &mut EpollEvent::new(flags, data))
}

/// `epoll_ctl(EPOLL_CTL_DEL)`.
pub(crate) fn epoll_delete(ep: &Epoll, fd: impl AsFd) -> nix::Result<()> {
    ep.delete(fd)
}

/// `epoll_wait` until an event or `deadline`; 0 means the deadline passed.
pub(crate) fn epoll_wait(
    ep: &Epoll,
    buf: &mut [EpollEvent],
    deadline: Option<Instant>,
) -> nix::Result<usize> {
    wait_loop(deadline, |d| {
        let ms = timeout_ms(d);
        let t = if ms < 0 {
            EpollTimeout::NONE
        } else {
            EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::MAX)
        };
        ep.wait(buf, t)
    })
}

/// poll(2) over a caller-kept `pollfd` array until an event or `deadline`.
pub(crate) fn poll_raw(fds: &mut [libc::pollfd], deadline: Option<Instant>) -> nix::Result<usize> {
    wait_loop(deadline, |d| {
        // SAFETY: `fds` is a live, exclusively borrowed slice of `pollfd`s and we pass
        // its exact length, so the kernel writes `revents` only inside it.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms(d)) };
        Errno::result(n).map(|n| n as usize)
    })
}

/// An empty `fd_set`.
pub(crate) fn fd_set_new() -> libc::fd_set {
    let mut set = std::mem::MaybeUninit::<libc::fd_set>::uninit();
    // SAFETY: FD_ZERO writes every byte of the set it is given, so the value is
    // initialised afterwards.
    unsafe {
        libc::FD_ZERO(set.as_mut_ptr());
        set.assume_init()
    }
}

/// `FD_SET` or `FD_CLR`. The caller has checked `fd < FD_SETSIZE`.
pub(crate) fn fd_set_put(set: &mut libc::fd_set, fd: RawFd, on: bool) {
    assert!((0..FD_SETSIZE as RawFd).contains(&fd), "fd {fd} outside fd_set");
    // SAFETY: `fd` is within 0..FD_SETSIZE (asserted), so the bit lies inside the set.
    unsafe {
        if on {
            libc::FD_SET(fd, set)
        } else {
            libc::FD_CLR(fd, set)
        }
    }
}

/// `FD_ISSET`. The caller has checked `fd < FD_SETSIZE`.
pub(crate) fn fd_set_has(set: &libc::fd_set, fd: RawFd) -> bool {
    assert!((0..FD_SETSIZE as RawFd).contains(&fd), "fd {fd} outside fd_set");
    // SAFETY: `fd` is within 0..FD_SETSIZE (asserted), so the bit lies inside the set.
    unsafe { libc::FD_ISSET(fd, set) }
}

/// select(2) until an event or `deadline`. The sets are copied from the masters on every
/// attempt, because the kernel overwrites them with the ready subset.
pub(crate) fn select_raw(
    nfds: i32,
    masters: (&libc::fd_set, &libc::fd_set),
    out: (&mut libc::fd_set, &mut libc::fd_set),
    deadline: Option<Instant>,
) -> nix::Result<usize> {
    let (rd, wr) = out;
    wait_loop(deadline, |d| {
        *rd = *masters.0;
        *wr = *masters.1;
        let mut tv = d.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            libc::timeval {
                tv_sec: left.as_secs() as libc::time_t,
                tv_usec: left.subsec_micros() as libc::suseconds_t,
            }
        });
        let tvp = tv.as_mut().map_or(std::ptr::null_mut(), |t| t as *mut libc::timeval);
        // SAFETY: `rd` and `wr` are exclusively borrowed `fd_set`s, and `nfds` is at
        // most FD_SETSIZE (every fd put in the masters was checked), so the kernel reads
        // and writes only inside them; `tvp` is null or points at a live timeval.
        let n = unsafe { libc::select(nfds, rd, wr, std::ptr::null_mut(), tvp) };
        Errno::result(n).map(|n| n as usize)
    })
}

/// `eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)`.
pub(crate) fn eventfd() -> nix::Result<OwnedFd> {
    use nix::sys::eventfd::{EfdFlags, EventFd};
    let fd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
    Ok(OwnedFd::from(fd))
}

/// Adds 1 to an eventfd counter. A full counter (`EAGAIN`, after 2^64-2 unread wakes)
/// is already readable, so it counts as success.
pub(crate) fn eventfd_add(fd: impl AsFd) -> nix::Result<()> {
    match super::write(fd, &1u64.to_ne_bytes()) {
        Ok(_) | Err(Errno::EAGAIN) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Reads and clears a non-blocking eventfd or timerfd counter: `Ok(None)` if it was 0.
pub(crate) fn counter_take(fd: impl AsFd) -> nix::Result<Option<u64>> {
    let mut b = [0u8; 8];
    match super::read(fd, &mut b) {
        Ok(8) => Ok(Some(u64::from_ne_bytes(b))),
        Ok(_) => Err(Errno::EIO),
        Err(Errno::EAGAIN) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK)`.
pub(crate) fn timerfd() -> nix::Result<OwnedFd> {
    use nix::sys::timerfd::{ClockId, TimerFd, TimerFlags};
    let t =
        TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_CLOEXEC | TimerFlags::TFD_NONBLOCK)?;
    Ok(OwnedFd::from(t))
}

/// `timerfd_settime` (relative): first expiry after `first`, then every `interval`
/// (zero: once). A zero `first` disarms the timer (timerfd_create(2)).
pub(crate) fn timerfd_set(fd: impl AsFd, first: Duration, interval: Duration) -> nix::Result<()> {
    let ts = |d: Duration| libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as _,
    };
    let spec = libc::itimerspec { it_interval: ts(interval), it_value: ts(first) };
    let fd = fd.as_fd().as_raw_fd();
    // SAFETY: `fd` is borrowed from a live `AsFd`; `spec` is a valid itimerspec that
    // lives across the call, and the old-value pointer is null (not wanted).
    Errno::result(unsafe { libc::timerfd_settime(fd, 0, &spec, std::ptr::null_mut()) }).map(drop)
}

/// The signal set `sigs`, blocked in the calling thread (`pthread_sigmask`), and a
/// `signalfd(SFD_CLOEXEC | SFD_NONBLOCK)` for it. If the signalfd cannot be made, the
/// thread's mask is put back as it was: nothing changed.
pub(crate) fn signalfd(sigs: &[nix::sys::signal::Signal]) -> nix::Result<OwnedFd> {
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
    use nix::sys::signalfd::SfdFlags;
    let mut set = SigSet::empty();
    for &s in sigs {
        set.add(s);
    }
    let mut old = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))?;
    match nix::sys::signalfd::SignalFd::with_flags(
        &set,
        SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
    ) {
        Ok(fd) => Ok(OwnedFd::from(fd)),
        Err(e) => {
            // Cannot fail: SIG_SETMASK with a set that came from the kernel.
            let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
            Err(e)
        }
    }
}

/// Reads one `signalfd_siginfo`: the signal number, or `None` if none is pending.
pub(crate) fn signalfd_take(fd: impl AsFd) -> nix::Result<Option<i32>> {
    let mut b = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
    match super::read(fd, &mut b) {
        // ssi_signo is the first field, a u32 (signalfd(2)).
        Ok(n) if n == b.len() => Ok(Some(u32::from_ne_bytes(b[..4].try_into().unwrap()) as i32)),
        Ok(_) => Err(Errno::EIO),
        Err(Errno::EAGAIN) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `getrlimit(RLIMIT_NOFILE)`: (soft, hard).
pub(crate) fn nofile_limit() -> nix::Result<(u64, u64)> {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
}

/// `setrlimit(RLIMIT_NOFILE)` with a new soft limit (the hard one unchanged).
pub(crate) fn set_nofile_soft(soft: u64) -> nix::Result<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard)
}
