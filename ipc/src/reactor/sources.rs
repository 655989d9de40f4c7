//! Fd-shaped event sources: timers (timerfd), signals (signalfd) and a cross-thread
//! waker (eventfd). Each is non-blocking and close-on-exec, and is registered with a
//! [`Poller`](super::Poller) like any other fd.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::sys::reactor as sys;

pub use nix::sys::signal::Signal;

/// A timer on `CLOCK_MONOTONIC` that becomes readable when it expires (timerfd).
///
/// ```
/// use std::time::Duration;
/// use interproc_ipc::reactor::{Backend, Events, Interest, Mode, Poller, Timer, Token};
///
/// let timer = Timer::new()?;
/// timer.set_after(Duration::from_millis(5))?;
/// let mut poller = Poller::new(Backend::Poll)?;
/// poller.register(&timer, Token(7), Interest::READABLE, Mode::LEVEL)?;
/// let mut events = Events::with_capacity(4);
/// poller.wait(&mut events, None)?;
/// assert_eq!(timer.expirations()?, 1);
/// # Ok::<(), interproc_ipc::Error>(())
/// ```
#[derive(Debug)]
pub struct Timer(OwnedFd);

impl Timer {
    /// A disarmed timer.
    pub fn new() -> Result<Timer> {
        Ok(Timer(sys::timerfd().map_err(|e| Error::os("timerfd_create", e))?))
    }

    /// Expires once, `after` from now (a zero duration is rounded up to 1 ns, since
    /// zero would disarm the timer). Replaces any earlier setting.
    pub fn set_after(&self, after: Duration) -> Result<()> {
        self.set(after.max(Duration::from_nanos(1)), Duration::ZERO)
    }

    /// Expires every `every`, the first time `every` from now. Replaces any earlier
    /// setting. A zero period is refused as `Os(EINVAL)`.
    pub fn set_interval(&self, every: Duration) -> Result<()> {
        if every.is_zero() {
            return Err(Error::Os { op: "timerfd_settime", errno: nix::errno::Errno::EINVAL });
        }
        self.set(every, every)
    }

    /// Disarms the timer; expirations already counted stay until read.
    pub fn cancel(&self) -> Result<()> {
        self.set(Duration::ZERO, Duration::ZERO)
    }

    fn set(&self, first: Duration, every: Duration) -> Result<()> {
        sys::timerfd_set(&self.0, first, every).map_err(|e| Error::os("timerfd_settime", e))
    }

    /// How many times the timer expired since the last call (which makes it unreadable
    /// again); 0 if it has not expired. Never blocks.
    pub fn expirations(&self) -> Result<u64> {
        Ok(sys::counter_take(&self.0).map_err(|e| Error::os("read(timerfd)", e))?.unwrap_or(0))
    }
}

/// Wakes a [`Poller`](super::Poller) from another thread (eventfd).
///
/// Register it for [`Interest::READABLE`](super::Interest::READABLE); [`Waker::wake`]
/// makes it readable, [`Waker::reset`] clears it. Share it between threads with an
/// `Arc`: both methods take `&self`. Wake-ups before a reset coalesce into one event.
///
/// ```
/// use std::sync::Arc;
/// use interproc_ipc::reactor::{Backend, Events, Interest, Mode, Poller, Token, Waker};
///
/// let waker = Arc::new(Waker::new()?);
/// let mut poller = Poller::new(Backend::Epoll)?;
/// poller.register(&*waker, Token(0), Interest::READABLE, Mode::LEVEL)?;
/// let w = waker.clone();
/// let t = std::thread::spawn(move || w.wake());
/// let mut events = Events::with_capacity(4);
/// poller.wait(&mut events, None)?;
/// assert!(waker.reset()?);
/// t.join().unwrap()?;
/// # Ok::<(), interproc_ipc::Error>(())
/// ```
#[derive(Debug)]
pub struct Waker(OwnedFd);

impl Waker {
    /// A waker that is not signalled.
    pub fn new() -> Result<Waker> {
        Ok(Waker(sys::eventfd().map_err(|e| Error::os("eventfd", e))?))
    }

    /// A waker over an eventfd received from another process (over a Unix socket, or
    /// inherited). The fd must be an eventfd (not checked): [`wake`](Waker::wake) writes
    /// an 8-byte count to it, [`reset`](Waker::reset) reads one.
    pub fn from_owned_fd(fd: OwnedFd) -> Waker {
        Waker(fd)
    }

    /// Makes the waker readable, waking a poller that watches it.
    pub fn wake(&self) -> Result<()> {
        sys::eventfd_add(&self.0).map_err(|e| Error::os("write(eventfd)", e))
    }

    /// Clears the waker; returns whether it had been woken.
    pub fn reset(&self) -> Result<bool> {
        Ok(sys::counter_take(&self.0).map_err(|e| Error::os("read(eventfd)", e))?.is_some())
    }
}

/// Signals delivered as readable events instead of to a handler (signalfd).
///
/// [`Signals::new`] blocks the signals in the **calling thread** (`pthread_sigmask`)
/// and opens a signalfd for them. A signal sent to the process is delivered to any one
/// thread that does not block it, so for process-directed signals (`kill`, Ctrl-C)
/// create `Signals` in the main thread *before* starting any thread: threads inherit the
/// mask. A thread started earlier that does not block the signal would take it with its
/// default action (for SIGINT/SIGTERM: the process dies). A signal directed at one
/// thread (`raise`, `pthread_kill`) is read from a `Signals` in that thread.
///
/// The mask is inherited across `fork` and `exec`; a child that wants the default
/// actions must unblock them. Dropping `Signals` closes the fd but leaves the signals
/// blocked.
#[derive(Debug)]
pub struct Signals(OwnedFd);

impl Signals {
    /// Blocks `signals` in this thread and opens a signalfd for them. On error the
    /// thread's signal mask is left as it was.
    pub fn new(signals: &[Signal]) -> Result<Signals> {
        Ok(Signals(sys::signalfd(signals).map_err(|e| Error::os("signalfd", e))?))
    }

    /// The next pending signal, or `None` if none is pending. Never blocks.
    pub fn next_signal(&self) -> Result<Option<Signal>> {
        let n = sys::signalfd_take(&self.0).map_err(|e| Error::os("read(signalfd)", e))?;
        Ok(n.and_then(|n| Signal::try_from(n).ok()))
    }
}

macro_rules! fd_impls {
    ($($t:ty),*) => {$(
        impl AsFd for $t {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.0.as_fd()
            }
        }
        impl AsRawFd for $t {
            fn as_raw_fd(&self) -> RawFd {
                self.0.as_raw_fd()
            }
        }
    )*};
}

fd_impls!(Timer, Waker, Signals);
