//! An event loop's core: wait until any of many fds is ready, with three backends
//! behind one interface (epoll, poll(2), select(2)), plus fd-shaped timers, signals and
//! a cross-thread waker.
//!
//! Register any [`AsFd`] with a [`Token`] (your name for it), an [`Interest`] (read,
//! write or both) and a [`Mode`] (level- or edge-triggered, oneshot, exclusive), then
//! call [`Poller::wait`], which fills an [`Events`] buffer with what became ready.
//!
//! ```
//! use std::io::Write;
//! use std::time::Duration;
//! use interproc_ipc::reactor::{Backend, Events, Interest, Mode, Poller, Token, Waker};
//!
//! let (mut reader, mut writer) = interproc_ipc::pipe::pipe()?;
//! let waker = Waker::new()?;
//! let mut poller = Poller::new(Backend::Epoll)?;
//! poller.register(&reader, Token(1), Interest::READABLE, Mode::LEVEL)?;
//! poller.register(&waker, Token(2), Interest::READABLE, Mode::LEVEL)?;
//!
//! writer.write_all(b"ping")?;
//! let mut events = Events::with_capacity(16);
//! poller.wait(&mut events, Some(Duration::from_secs(5)))?;
//! assert_eq!(events.iter().map(|e| e.token()).collect::<Vec<_>>(), [Token(1)]);
//! assert!(events.iter().next().unwrap().is_readable());
//!
//! // Nothing else is ready: a wait with a timeout says so.
//! let mut r = [0u8; 4];
//! std::io::Read::read_exact(&mut reader, &mut r)?;
//! assert!(matches!(
//!     poller.wait(&mut events, Some(Duration::from_millis(10))),
//!     Err(interproc_ipc::Error::Timeout)
//! ));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Backends
//!
//! | | [`Backend::Epoll`] | [`Backend::Poll`] | [`Backend::Select`] |
//! |---|---|---|---|
//! | cost of a wait | the ready fds | every registered fd | every fd up to the highest |
//! | level-triggered | yes | yes | yes |
//! | edge-triggered | yes | `Unsupported` error | `Unsupported` error |
//! | oneshot | yes (`EPOLLONESHOT`) | emulated | emulated |
//! | exclusive wake-up | yes (`EPOLLEXCLUSIVE`) | `Unsupported` error | `Unsupported` error |
//! | fds ≥ 1024 | yes | yes | [`Error::FdTooLarge`] |
//! | hang-up reported as | `is_hangup` | `is_hangup` | `is_readable` (read gives EOF) |
//!
//! A mode a backend cannot honour is refused with [`Error::Unsupported`], never silently
//! downgraded. Edge-triggered mode is not emulated for poll and select: they see only
//! the *state* "bytes are waiting", not the *arrival* of new bytes, so an emulation
//! could either miss edges or invent them. Oneshot is emulated exactly: after one
//! event, the poll and select backends stop watching the fd until [`Poller::modify`]
//! re-arms it, as `EPOLLONESHOT` does.
//!
//! # Edge-triggered readers must drain
//!
//! Under [`Trigger::Edge`] epoll reports a fd once per *change*. A reader must read
//! until `EAGAIN` (for an interproc channel, call `try_recv` until [`Error::Empty`]:
//! a `StreamSource` may hold several frames from one read), or the bytes left behind
//! never cause another event: the reader stalls. `interproc demo triggers` shows it.
//! A plain fd read to `EAGAIN` must then be non-blocking; a channel's `try_recv` never
//! blocks whatever the fd's mode (each of its reads is non-blocking by itself).
//!
//! # Timers, signals and wake-ups
//!
//! [`Timer`] (timerfd), [`Signals`] (signalfd) and [`Waker`] (eventfd) are fds: register
//! them like any other. `Signals::new` blocks its signals in the calling thread; block
//! them before starting any thread, so every thread inherits the mask (see [`Signals`]).
//!
//! # The shared-memory ring
//!
//! A ring of `channel::shm` made with notifiers (`ShmRing::anonymous_with_notifier`)
//! has a fd for each end: `ShmSource::notifier_fd` (readable when messages came, the
//! producer closed or died) and `ShmSink::notifier_fd` (readable when room came).
//! Register them for [`Interest::READABLE`], level- or edge-triggered, and drain to
//! `Empty` (or send until `Full`) after each event: see the `channel::shm` docs.
//!
//! # System V message queues
//!
//! A System V queue has no fd, so no backend can watch it. [`MsgqBridge`] gives it one:
//! a thread receives one message at a time from the queue and holds it, and an eventfd
//! the poller watches is readable while it does, keeping back-pressure. A message the
//! bridge received is handed over, returned by `close`, or put back into the queue: it
//! is never dropped silently. Where a thread per queue is too much, use a transport with
//! an fd (pipe, FIFO, Unix socket) for event-loop traffic.
//!
//! # tokio
//!
//! With the cargo feature `tokio`, the module `reactor::tokio` wraps channel receivers
//! and senders in tokio's `AsyncFd`, so `recv().await` and `send(..).await` work on
//! every transport with an fd (a shm ring: one made with notifiers).
//!
//! # Lifetimes of registered fds
//!
//! Deregister a fd before closing it. epoll forgets a closed fd only when its last
//! duplicate closes; poll then reports it as an error (`POLLNVAL`), and select fails
//! with `EBADF`.

mod bridge;
mod epoll;
mod poll;
mod select;
mod sources;
#[cfg(feature = "tokio")]
pub mod tokio;

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

pub use bridge::MsgqBridge;
pub use sources::{Signal, Signals, Timer, Waker};

/// The caller's name for a registered fd, handed back in each [`Event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub usize);

/// Which readiness to watch for: readable, writable, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest {
    readable: bool,
    writable: bool,
}

impl Interest {
    /// Wake when a read would not block (data, EOF, a pending connection).
    pub const READABLE: Interest = Interest { readable: true, writable: false };
    /// Wake when a write would not block.
    pub const WRITABLE: Interest = Interest { readable: false, writable: true };
    /// Both.
    pub const BOTH: Interest = Interest { readable: true, writable: true };

    /// Whether read readiness is watched.
    pub fn is_readable(self) -> bool {
        self.readable
    }

    /// Whether write readiness is watched.
    pub fn is_writable(self) -> bool {
        self.writable
    }
}

/// Level- or edge-triggered notification.
///
/// With the cargo feature `clap`, a `clap::ValueEnum` spelled `lt` (alias `level`) and
/// `et` (alias `edge`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Trigger {
    /// Report the fd on every wait while it is ready (the poll and select model).
    #[default]
    #[cfg_attr(feature = "clap", value(name = "lt", alias = "level"))]
    Level,
    /// Report the fd when it *becomes* ready (`EPOLLET`); the reader must drain it to
    /// `EAGAIN`. epoll only.
    #[cfg_attr(feature = "clap", value(name = "et", alias = "edge"))]
    Edge,
}

impl Trigger {
    /// "lt" or "et".
    pub fn name(self) -> &'static str {
        match self {
            Trigger::Level => "lt",
            Trigger::Edge => "et",
        }
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Trigger {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Trigger, String> {
        match s {
            "lt" | "level" => Ok(Trigger::Level),
            "et" | "edge" => Ok(Trigger::Edge),
            _ => Err(format!("unknown trigger {s:?}: expected lt (level) or et (edge)")),
        }
    }
}

/// How a registration reports: trigger, oneshot, exclusive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mode {
    /// Level or edge.
    pub trigger: Trigger,
    /// Report one event, then stop watching until [`Poller::modify`] re-arms the fd.
    pub oneshot: bool,
    /// `EPOLLEXCLUSIVE`: when several pollers (in one process or many) watch the same
    /// fd, wake one or more of them, not all (no thundering herd). epoll only; cannot
    /// be combined with oneshot, nor set or changed by [`Poller::modify`] (epoll_ctl(2)).
    pub exclusive: bool,
}

impl Mode {
    /// Level-triggered, not oneshot, not exclusive.
    pub const LEVEL: Mode = Mode { trigger: Trigger::Level, oneshot: false, exclusive: false };
    /// Edge-triggered (epoll only).
    pub const EDGE: Mode = Mode { trigger: Trigger::Edge, oneshot: false, exclusive: false };

    /// This mode, oneshot.
    pub fn oneshot(self) -> Mode {
        Mode { oneshot: true, ..self }
    }

    /// This mode, exclusive (epoll only).
    pub fn exclusive(self) -> Mode {
        Mode { exclusive: true, ..self }
    }
}

/// One readiness report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    token: Token,
    readable: bool,
    writable: bool,
    error: bool,
    hangup: bool,
}

impl Event {
    /// The token the fd was registered with.
    pub fn token(&self) -> Token {
        self.token
    }

    /// A read would not block (it may return data, EOF or an error).
    pub fn is_readable(&self) -> bool {
        self.readable
    }

    /// A write would not block.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// An error is pending on the fd (`EPOLLERR`/`POLLERR`), or (poll) the fd number is
    /// no longer open (`POLLNVAL`). Reported whatever the interest.
    pub fn is_error(&self) -> bool {
        self.error
    }

    /// The peer hung up (`EPOLLHUP`, `EPOLLRDHUP`, `POLLHUP`): reads drain what is left,
    /// then give EOF. Reported whatever the interest. select cannot tell a hang-up from
    /// readiness: there it shows as [`Event::is_readable`].
    pub fn is_hangup(&self) -> bool {
        self.hangup
    }
}

/// A buffer of events, filled by [`Poller::wait`]; reuse it across waits.
#[derive(Debug)]
pub struct Events {
    list: Vec<Event>,
    cap: usize,
}

impl Events {
    /// Room for `cap` events per wait (at least 1). More ready fds stay ready for the
    /// next wait (level-triggered), or wait in the kernel's ready list (epoll).
    pub fn with_capacity(cap: usize) -> Events {
        let cap = cap.max(1);
        Events { list: Vec::with_capacity(cap), cap }
    }

    /// The events of the last wait.
    pub fn iter(&self) -> impl Iterator<Item = &Event> + '_ {
        self.list.iter()
    }

    /// How many events the last wait reported.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether the last wait reported nothing.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// How many events a wait can report.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    fn clear(&mut self) {
        self.list.clear();
    }

    fn push(&mut self, e: Event) {
        self.list.push(e);
    }

    fn is_full(&self) -> bool {
        self.list.len() >= self.cap
    }
}

impl<'a> IntoIterator for &'a Events {
    type Item = &'a Event;
    type IntoIter = std::slice::Iter<'a, Event>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

/// The readiness mechanism behind a [`Poller`].
///
/// With the cargo feature `clap`, a `clap::ValueEnum` spelled `epoll`, `poll`, `select`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Backend {
    /// epoll(7): the kernel keeps the interest list and a ready list; a wait costs the
    /// ready fds only.
    Epoll,
    /// poll(2): the whole `pollfd` array is passed and scanned on every wait.
    Poll,
    /// select(2): bitmaps up to the highest fd, copied and scanned on every wait; fds
    /// must be below `FD_SETSIZE` (1024).
    Select,
}

impl Backend {
    /// All three, in the order the demos print them.
    pub const ALL: [Backend; 3] = [Backend::Select, Backend::Poll, Backend::Epoll];

    /// "epoll", "poll" or "select".
    pub fn name(self) -> &'static str {
        match self {
            Backend::Epoll => "epoll",
            Backend::Poll => "poll",
            Backend::Select => "select",
        }
    }

    /// Whether the backend honours [`Trigger::Edge`].
    pub fn supports_edge(self) -> bool {
        self == Backend::Epoll
    }

    /// Whether the backend honours [`Mode::exclusive`].
    pub fn supports_exclusive(self) -> bool {
        self == Backend::Epoll
    }

    /// The highest fd number the backend can watch, if it has a limit
    /// (select: `FD_SETSIZE - 1`).
    pub fn max_fd(self) -> Option<RawFd> {
        match self {
            Backend::Select => Some(crate::sys::reactor::FD_SETSIZE as RawFd - 1),
            _ => None,
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Backend, String> {
        match s {
            "epoll" => Ok(Backend::Epoll),
            "poll" => Ok(Backend::Poll),
            "select" => Ok(Backend::Select),
            _ => Err(format!("unknown backend {s:?}: expected epoll, poll or select")),
        }
    }
}

/// What one registration asks for; shared by the poll and select backends.
#[derive(Clone, Copy, Debug)]
struct Reg {
    token: Token,
    interest: Interest,
    oneshot: bool,
    /// False once a oneshot registration has reported, until `modify` re-arms it.
    armed: bool,
}

enum Inner {
    Epoll(epoll::EpollPoller),
    Poll(poll::PollPoller),
    // Boxed: four fd_sets are 512 bytes, which the other variants should not carry.
    Select(Box<select::SelectPoller>),
}

/// Waits for readiness on many fds at once, with one of three [`Backend`]s.
///
/// See the [module documentation](self) for what each backend can do.
pub struct Poller {
    inner: Inner,
}

impl Poller {
    /// A poller with no fds registered.
    pub fn new(backend: Backend) -> Result<Poller> {
        let inner = match backend {
            Backend::Epoll => Inner::Epoll(epoll::EpollPoller::new()?),
            Backend::Poll => Inner::Poll(poll::PollPoller::default()),
            Backend::Select => Inner::Select(Box::default()),
        };
        Ok(Poller { inner })
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Epoll(_) => Backend::Epoll,
            Inner::Poll(_) => Backend::Poll,
            Inner::Select(_) => Backend::Select,
        }
    }

    /// How many fd numbers are registered. A fd closed without [`Poller::deregister`]
    /// is still counted (and, on poll and select, still watched) until its number is
    /// deregistered or registered again.
    pub fn len(&self) -> usize {
        match &self.inner {
            Inner::Epoll(p) => p.len(),
            Inner::Poll(p) => p.len(),
            Inner::Select(p) => p.len(),
        }
    }

    /// Whether no fd is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts watching `fd`.
    ///
    /// Errors: [`Error::AlreadyExists`] if `fd` is registered already (use
    /// [`Poller::modify`]); [`Error::Unsupported`] for a mode the backend cannot honour;
    /// [`Error::FdTooLarge`] for a fd select cannot hold.
    pub fn register(
        &mut self,
        fd: impl AsFd,
        token: Token,
        interest: Interest,
        mode: Mode,
    ) -> Result<()> {
        let backend = self.backend();
        check_mode(backend, mode, false)?;
        match &mut self.inner {
            Inner::Epoll(p) => p.register(fd.as_fd(), token, interest, mode),
            Inner::Poll(p) => p.register(fd.as_fd().as_raw_fd(), reg(token, interest, mode)),
            Inner::Select(p) => p.register(fd.as_fd().as_raw_fd(), reg(token, interest, mode)),
        }
    }

    /// Changes the token, interest or mode of a registered fd; re-arms a oneshot one.
    ///
    /// Errors: [`Error::NotFound`] if `fd` is not registered; [`Error::Unsupported`] if
    /// `fd` was registered exclusive, or `mode` is exclusive (epoll cannot modify an
    /// exclusive registration: deregister and register again), or the backend cannot
    /// honour `mode`.
    pub fn modify(
        &mut self,
        fd: impl AsFd,
        token: Token,
        interest: Interest,
        mode: Mode,
    ) -> Result<()> {
        let backend = self.backend();
        check_mode(backend, mode, true)?;
        match &mut self.inner {
            Inner::Epoll(p) => p.modify(fd.as_fd(), token, interest, mode),
            Inner::Poll(p) => p.modify(fd.as_fd().as_raw_fd(), reg(token, interest, mode)),
            Inner::Select(p) => p.modify(fd.as_fd().as_raw_fd(), reg(token, interest, mode)),
        }
    }

    /// Stops watching `fd`. [`Error::NotFound`] if it was not registered.
    pub fn deregister(&mut self, fd: impl AsFd) -> Result<()> {
        match &mut self.inner {
            Inner::Epoll(p) => p.deregister(fd.as_fd()),
            Inner::Poll(p) => p.deregister(fd.as_fd().as_raw_fd()),
            Inner::Select(p) => p.deregister(fd.as_fd().as_raw_fd()),
        }
    }

    /// Waits until at least one registered fd is ready, and fills `events` (cleared
    /// first) with up to `events.capacity()` reports. Returns how many.
    ///
    /// `timeout` `None` waits forever. When it passes with nothing ready, the result is
    /// [`Error::Timeout`] (`Some(Duration::ZERO)` checks without blocking). Signals
    /// (EINTR) are retried with the time left.
    pub fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> Result<usize> {
        // A timeout too large for the clock means forever.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        events.clear();
        match &mut self.inner {
            Inner::Epoll(p) => p.wait(events, deadline)?,
            Inner::Poll(p) => p.wait(events, deadline)?,
            Inner::Select(p) => p.wait(events, deadline)?,
        }
        if events.is_empty() {
            Err(Error::Timeout)
        } else {
            Ok(events.len())
        }
    }
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("backend", &self.backend())
            .field("registered", &self.len())
            .finish()
    }
}

fn reg(token: Token, interest: Interest, mode: Mode) -> Reg {
    Reg { token, interest, oneshot: mode.oneshot, armed: true }
}

/// Refuses a mode the backend cannot honour, before any syscall.
fn check_mode(backend: Backend, mode: Mode, modifying: bool) -> Result<()> {
    if mode.trigger == Trigger::Edge && !backend.supports_edge() {
        return Err(Error::Unsupported {
            what: "edge-triggered mode",
            backend: backend.name(),
            hint: "poll and select report state, not changes; use the epoll backend",
        });
    }
    if mode.exclusive {
        if !backend.supports_exclusive() {
            return Err(Error::Unsupported {
                what: "exclusive wake-up",
                backend: backend.name(),
                hint: "EPOLLEXCLUSIVE exists only in epoll; use the epoll backend",
            });
        }
        if modifying {
            return Err(epoll::exclusive_modify());
        }
        if mode.oneshot {
            return Err(Error::Unsupported {
                what: "exclusive oneshot",
                backend: backend.name(),
                hint: "epoll_ctl(2) refuses EPOLLEXCLUSIVE with EPOLLONESHOT; choose one",
            });
        }
    }
    Ok(())
}

fn fd_name(fd: RawFd) -> String {
    format!("fd {fd} in this poller")
}

/// Raises this process's soft `RLIMIT_NOFILE` (the most fds it may hold open) to at
/// least `wanted`, but never past the hard limit, which only a privileged process may
/// raise. Returns the (soft, hard) limits in force afterwards: compare the soft one
/// with `wanted` to see whether the request was met.
///
/// Watching ten thousand fds needs ten thousand fds: the usual default soft limit is
/// 1024, often with a much higher hard limit.
pub fn raise_fd_limit(wanted: u64) -> Result<(u64, u64)> {
    use crate::sys::reactor as sys;
    let (soft, hard) = sys::nofile_limit().map_err(|e| Error::os("getrlimit", e))?;
    if soft >= wanted {
        return Ok((soft, hard));
    }
    let new = wanted.min(hard);
    sys::set_nofile_soft(new).map_err(|e| Error::os("setrlimit", e))?;
    Ok((new, hard))
}
