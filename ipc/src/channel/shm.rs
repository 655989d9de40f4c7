//! The `shm` transport: a ring buffer in shared memory, the fastest channel between two
//! processes on one machine.
//!
//! A [`ShmRing`] is a shared-memory segment ([`interproc_sync::shm::Segment`]) holding an
//! [`interproc_sync::ring`]: a single-producer, single-consumer byte ring of
//! variable-size messages. One process attaches the sending end ([`ShmRing::sink`], or a
//! typed [`ShmRing::sender`]), another the receiving end. Sending copies the message into
//! the ring once, with no syscall while both sides are busy. A side that must wait spins
//! briefly, then sleeps on a futex word in the segment; the other side wakes it only if
//! it sleeps.
//!
//! # Reading: a private copy, or in place
//!
//! The channel API ([`FrameSource::recv_frame`], so the typed [`Receiver`] and the
//! [`BytesReceiver`]'s owned `recv`s) copies each message out of the ring into the
//! source's own buffer (reused: no allocation per message) before anyone decodes it: the
//! shared memory is writable by the peer process, and a buggy or malicious peer that
//! rewrote a message while it was being decoded could otherwise make the decoder see two
//! different values for one byte. No `&[u8]` over the shared memory is made on that path.
//!
//! The zero-copy reads, [`ShmSource::recv`], [`BytesReceiver::recv_ref`]
//! ([`FrameSource::recv_frame_in_place`]) and [`ShmSource::consumer`]'s
//! `recv_in_place`/`recv_loan`, lend the message in place instead. The ring's protocol
//! keeps a conforming producer off a message until it is released, so they are for
//! peers you trust; see [`ShmSource::recv`].
//!
//! For zero copies on the sending side too, borrow the ring's producer
//! ([`ShmSink::producer`]): `loan(len)` reserves room, you write in place, `commit()`
//! publishes.
//!
//! # Segments: named or anonymous
//!
//! - [`create`]/[`open`]: a named segment in `/dev/shm` (mode 0600), which the creator
//!   removes when its last handle drops.
//! - [`ShmRing::anonymous`]: a memfd, shared with `fork`ed children, or passed to another
//!   process over a Unix socket (SCM_RIGHTS) or exec (an inherited fd) and mapped there
//!   with [`ShmRing::from_fd`].
//! - [`pair`]: both ends in this process (threads).
//!
//! The capacity is rounded up to a power of two; the largest message is `capacity - 8`
//! bytes, and a larger one is [`Error::MessageTooLarge`].
//!
//! # Back-pressure, `try_`, timeouts
//!
//! A send blocks while the ring is full; `try_send` gives [`Error::Full`] with the value
//! handed back; `send_timeout` gives [`Error::Timeout`]. A receive blocks while it is empty.
//!
//! # A dead peer is `Disconnected`, never a hang
//!
//! Each end records its pid in the segment when it attaches. A clean drop marks the end
//! closed and wakes the other side. A peer killed outright marks nothing, so a waiting side
//! sleeps in slices of at most 50 ms and, after each, checks the peer's pid through a
//! pidfd (`pidfd_open(2)`, opened at the first such check, or taken over from
//! [`ShmSink::expect_peer`]/[`ShmSource::expect_peer`], which open it before the peer can
//! have been reaped: prefer those when you spawn the peer yourself, since a pid recorded by
//! a peer that died and was reaped long before the first check may name another process by
//! then). The receiver first takes
//! every message the peer committed, then gets [`Error::Disconnected`]; a message the peer
//! was writing when it died was never committed, so it is never seen, not even in part.
//! A sender to a dead receiver gets `Disconnected` once the ring is full (until then
//! messages are accepted, as a pipe accepts them into its buffer).
//!
//! A peer that has not attached yet is not "dead": a sender waits for room, a receiver
//! for messages, as on a FIFO. [`ShmSink::wait_peer`]/[`ShmSource::wait_peer`] wait for it;
//! [`ShmSink::expect_peer`]/[`ShmSource::expect_peer`] name the process that will attach
//! (a child you spawned), so that its death before it attaches is `Disconnected` too.
//!
//! Each end belongs to the process that attached it: a copy a `fork`ed child inherits
//! neither closes the ring when dropped nor counts as the peer, and refuses to send or
//! receive ([`Error::ForkedCopy`]), since the parent's end goes on using the same
//! single-producer, single-consumer state. Attach the child's end in the child.
//!
//! # Event loops: the notifier
//!
//! By default a ring has no fd: its waits are futex waits, which no `epoll` can watch.
//! A ring made with [`ShmRing::anonymous_with_notifier`] or
//! [`ShmRing::create_with_notifier`] also has two eventfds ([`RingNotifier`]): `data`,
//! which the producer signals, and `room`, which the consumer signals. Then
//! [`ShmSource::notifier_fd`] (and [`FrameSource::fd`], so `Receiver::fd` and the tokio
//! wrappers) is a fd to register with [`crate::reactor::Poller`] for
//! [`Interest::READABLE`](crate::reactor::Interest::READABLE), and
//! [`ShmSink::notifier_fd`] one for the sender's back-pressure (also *readable*, when
//! room came).
//!
//! - **No lost wake-up.** A side signals the eventfd only when its peer announced, in
//!   the segment, that it is about to block in its event loop: the announcement is a bit
//!   in the same word as the futex sleep, with the same RMW pairing (see
//!   [`interproc_sync::ring`], and its loom models). `try_recv` makes that announcement
//!   itself when it finds the ring empty (after resetting the eventfd, then re-checking),
//!   so the rule is the usual one: **drain to [`Error::Empty`]** after each event. No
//!   syscall is made per message: the producer writes the eventfd at most once per
//!   announcement.
//! - **Level or edge.** Both work, with every backend (the fd is an epoll set, which
//!   poll and select can watch too). Level-triggered: the fd stays readable until a
//!   `try_recv` finds the ring empty, so a reader that takes one message per event is
//!   called again. Edge-triggered: one event per signal; a reader that stops before
//!   `Empty` has not re-armed, and gets no more events (as a socket read short of
//!   `EAGAIN`).
//! - **A killed peer wakes the loop.** The fd is a nested epoll set holding the eventfd
//!   *and* the peer's pidfd (added once the peer attached, or at once for the process
//!   named with `expect_peer`), so a producer killed mid-stream makes it readable, and
//!   `try_recv` then gives what was committed, then [`Error::Disconnected`].
//! - **It starts readable**, so the first event drains whatever was sent before.
//! - **Getting the eventfds to the peer.** An eventfd has no name, so the process that
//!   attaches the other end needs them with the segment. For a memfd ring, pass the
//!   segment's fd and [`RingNotifier::data_fd`]/[`RingNotifier::room_fd`] together (three
//!   fds over SCM_RIGHTS, or inherited) and rebuild with
//!   [`ShmRing::from_fd_with_notifier`]. For a named ring, the opener must receive the
//!   two eventfds the same way ([`ShmRing::open_with_notifier`]): notifier mode needs fd
//!   passing. (`pidfd_getfd(2)` of the creator's fds was rejected: it needs ptrace
//!   permission, which Yama's default `ptrace_scope=1` denies between unrelated
//!   processes. A rendezvous socket per ring would add a named resource and a thread.)
//!   A ring with notifiers opened without them refuses to attach an end
//!   ([`Error::Unsupported`], saying how to get them), since its peer would wait for a
//!   signal that never comes.
//!
//! ```
//! use interproc_ipc::channel::shm::ShmRing;
//! use interproc_ipc::channel::{BytesReceiver, BytesSender};
//! use interproc_ipc::reactor::{Backend, Events, Interest, Mode, Poller, Token};
//! use interproc_ipc::Error;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ring = ShmRing::anonymous_with_notifier(64 << 10)?;
//! let mut rx = BytesReceiver::new(ring.source()?);
//! let mut poller = Poller::new(Backend::Epoll)?;
//! poller.register(rx.fd().unwrap(), Token(0), Interest::READABLE, Mode::EDGE)?;
//! let mut tx = BytesSender::new(ring.sink()?);
//! let t = std::thread::spawn(move || -> interproc_ipc::Result<()> {
//!     for i in 0..100u32 {
//!         tx.send(&i.to_le_bytes())?;
//!     }
//!     Ok(())
//! });
//! let mut events = Events::with_capacity(4);
//! let mut got = 0u32;
//! 'outer: loop {
//!     poller.wait(&mut events, Some(std::time::Duration::from_secs(10)))?;
//!     loop {
//!         match rx.try_recv() {
//!             Ok(m) => {
//!                 assert_eq!(m, got.to_le_bytes());
//!                 got += 1;
//!             }
//!             Err(Error::Empty) => break, // drained: re-armed
//!             Err(Error::Disconnected) => break 'outer,
//!             Err(e) => return Err(e.into()),
//!         }
//!     }
//! }
//! assert_eq!(got, 100);
//! t.join().unwrap()?;
//! # Ok(()) }
//! ```
//!
//! # Example
//!
//! ```
//! use interproc_ipc::channel::shm;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ring = shm::ShmRing::anonymous(64 << 10)?;
//! let mut tx = ring.sender::<String>()?;
//! let mut rx = ring.receiver::<String>()?;
//! tx.send("hello".to_string())?;
//! assert_eq!(rx.recv()?, "hello");
//! drop(tx);
//! assert!(rx.recv().unwrap_err().is_disconnected());
//! # Ok(()) }
//! ```

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use interproc_sync::ring::{
    Consumer, Notifier, Notify, Producer, RingError, RingHeader, MAX_CAPACITY,
};
use interproc_sync::shm::{Segment, SegmentOptions, ShmError};
use interproc_sync::SharedFutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{BytesReceiver, BytesSender, FrameSink, FrameSource, Receiver, Sender};
use crate::error::{Error, Result};
use crate::msgq::PeerWatch;
use crate::reactor::Waker;
use crate::sys::reactor as sys;

/// The memory a ring lives in: a shared segment, shared by the ends of this process.
pub type RingSegment = Arc<Segment<RingHeader>>;
/// The producer of a ring in a segment.
pub type RingProducer = Producer<RingSegment, SharedFutex>;
/// The consumer of a ring in a segment.
pub type RingConsumer = Consumer<RingSegment, SharedFutex>;

/// A typed sender over a shared-memory ring.
pub type ShmSender<T> = Sender<T, ShmSink>;
/// A typed receiver over a shared-memory ring.
pub type ShmReceiver<T> = Receiver<T, ShmSource>;
/// A raw-bytes sender over a shared-memory ring.
pub type ShmBytesSender = BytesSender<ShmSink>;
/// A raw-bytes receiver over a shared-memory ring.
pub type ShmBytesReceiver = BytesReceiver<ShmSource>;

/// The longest a waiting side sleeps before it checks that its peer still lives.
const LIVENESS_SLICE: Duration = Duration::from_millis(50);

fn shm_error(e: ShmError) -> Error {
    Error::Shm(e)
}

fn ring_error(e: RingError) -> Error {
    match e {
        RingError::Timeout => Error::Timeout,
        RingError::Disconnected => Error::Disconnected,
        RingError::TooLarge { size, max } => Error::MessageTooLarge { size, max },
        RingError::ForkedCopy { side, owner, pid } => Error::ForkedCopy {
            what: if side == "producer" { "shm ring producer" } else { "shm ring consumer" },
            owner,
            pid,
        },
        RingError::Busy { side, pid } => Error::AlreadyExists {
            what: format!(
                "the {side} of this shm ring (attached by pid {pid}; a ring has one of each)"
            ),
        },
        e => Error::Malformed { reason: e.to_string() },
    }
}

fn passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// The end of the next sleep: the caller's deadline, or sooner, to check the peer.
fn slice(deadline: Option<Instant>) -> Option<Instant> {
    let next = Instant::now() + LIVENESS_SLICE;
    Some(deadline.map_or(next, |d| d.min(next)))
}

/// A shared-memory segment holding a ring, not yet attached: make ends from it.
///
/// Clones share the mapping. A named ring's creator removes the name from `/dev/shm` when
/// its last handle (this, or an end made from it) drops.
#[derive(Clone, Debug)]
pub struct ShmRing {
    seg: RingSegment,
    /// The eventfds, for a ring created with notifiers.
    notifier: Option<RingNotifier>,
}

/// The two eventfds of a ring created with notifiers ([`ShmRing::anonymous_with_notifier`],
/// [`ShmRing::create_with_notifier`]): `data`, which the producer signals for the
/// consumer's event loop, and `room`, which the consumer signals for the producer's.
///
/// Every process that attaches an end needs both (the segment alone is not enough: an
/// eventfd has no name). A `fork`ed child inherits them with the [`ShmRing`]; another
/// process receives them with the segment's fd, over a Unix socket (SCM_RIGHTS) or as
/// inherited fds, and rebuilds the ring with [`ShmRing::from_fd_with_notifier`] or
/// [`ShmRing::open_with_notifier`].
#[derive(Clone, Debug)]
pub struct RingNotifier {
    data: Arc<Waker>,
    room: Arc<Waker>,
}

impl RingNotifier {
    /// Two new eventfds.
    pub fn new() -> Result<RingNotifier> {
        Ok(RingNotifier { data: Arc::new(Waker::new()?), room: Arc::new(Waker::new()?) })
    }

    /// The notifier behind two received eventfds (`data`, then `room`, as
    /// [`data_fd`](RingNotifier::data_fd) and [`room_fd`](RingNotifier::room_fd) gave
    /// them). The fds must be the eventfds of the ring they go with: nothing can check it,
    /// and other fds would leave a waiting end asleep.
    pub fn from_fds(data: OwnedFd, room: OwnedFd) -> RingNotifier {
        RingNotifier {
            data: Arc::new(Waker::from_owned_fd(data)),
            room: Arc::new(Waker::from_owned_fd(room)),
        }
    }

    /// The eventfd the producer signals (pass it on; register
    /// [`ShmSource::notifier_fd`], not this).
    pub fn data_fd(&self) -> BorrowedFd<'_> {
        self.data.as_fd()
    }

    /// The eventfd the consumer signals (pass it on; register [`ShmSink::notifier_fd`]).
    pub fn room_fd(&self) -> BorrowedFd<'_> {
        self.room.as_fd()
    }
}

impl Notify for Waker {
    /// Adds 1 to the eventfd. A failure (the counter at its maximum: it is readable
    /// already) needs no retry.
    fn notify(&self) {
        let _ = self.wake();
    }
}

/// What an event loop watches for one end of a notifier ring: an epoll set holding the
/// end's eventfd and the pidfds of its peer (and of a process named by `expect_peer`),
/// so it turns readable when the peer signals *or dies*. Nested epoll: one fd to register,
/// with any backend, and with tokio.
#[derive(Debug)]
struct EventSet {
    ep: nix::sys::epoll::Epoll,
    efd: Arc<Waker>,
    /// The pids whose pidfds are in the set.
    watched: Vec<u32>,
}

impl EventSet {
    /// A set around `efd`, signalled once so that the first wait returns and the owner
    /// drains what came before it armed.
    fn new(efd: Arc<Waker>) -> Result<EventSet> {
        let ep = sys::epoll_create().map_err(|e| Error::os("epoll_create1", e))?;
        sys::epoll_add(&ep, efd.as_fd(), sys::EpFlags::EPOLLIN, 0)
            .map_err(|e| Error::os("epoll_ctl(ADD eventfd)", e))?;
        efd.wake()?;
        Ok(EventSet { ep, efd, watched: Vec::new() })
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.ep.0.as_fd()
    }

    /// Adds the pidfd of `w` to the set, once per pid.
    fn watch(&mut self, w: Option<&PeerWatch>) -> Result<()> {
        let Some(w) = w else { return Ok(()) };
        if self.watched.contains(&w.pid()) {
            return Ok(());
        }
        match sys::epoll_add(&self.ep, w.as_fd(), sys::EpFlags::EPOLLIN, 1) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(Error::os("epoll_ctl(ADD pidfd)", e)),
        }
        self.watched.push(w.pid());
        Ok(())
    }

    /// Before arming: watch the peer, then reset the eventfd (before, never after, the
    /// announcement: a signal that answers it must stay pending).
    fn prepare(&mut self, peer: &Peer) -> Result<()> {
        self.watch(peer.watch.as_ref())?;
        self.watch(peer.expected.as_ref())?;
        self.efd.reset()?;
        Ok(())
    }

    /// After arming: if `arm` withdrew (work came meanwhile), make the eventfd readable
    /// again. The caller goes on to take that work and may return to its event loop
    /// before it finds the ring empty (one message per level-triggered event): the fd
    /// must then still be readable, as it was before `prepare` reset it. So the fd is
    /// unreadable only between an arm that holds and the signal that answers it.
    fn after_arm(&self, armed: bool) -> Result<()> {
        if !armed {
            self.efd.wake()?;
        }
        Ok(())
    }
}

/// Creates a named ring of (at least) `capacity` bytes in `/dev/shm/<name>`, mode 0600.
/// [`Error::AlreadyExists`] if the name is taken.
pub fn create(name: &str, capacity: usize) -> Result<ShmRing> {
    ShmRing::create(name, capacity)
}

/// Opens the named ring another process created.
pub fn open(name: &str) -> Result<ShmRing> {
    ShmRing::open(name)
}

/// Both ends of a new anonymous ring, in this process (for threads).
pub fn pair(capacity: usize) -> Result<(ShmSink, ShmSource)> {
    let ring = ShmRing::anonymous(capacity)?;
    Ok((ring.sink()?, ring.source()?))
}

/// A typed channel over a new anonymous ring, both ends in this process.
pub fn channel<T: Serialize + DeserializeOwned>(
    capacity: usize,
) -> Result<(ShmSender<T>, ShmReceiver<T>)> {
    let (tx, rx) = pair(capacity)?;
    Ok((Sender::new(tx), Receiver::new(rx)))
}

/// `capacity` rounded up to a ring capacity (a power of two, at least the smallest ring);
/// [`Error::CapacityTooLarge`] over the largest ring.
pub(super) fn round_capacity(capacity: usize) -> Result<usize> {
    let cap = capacity.max(interproc_sync::ring::MIN_CAPACITY).checked_next_power_of_two();
    match cap {
        Some(c) if c <= MAX_CAPACITY => Ok(c),
        _ => Err(Error::CapacityTooLarge { capacity, max: MAX_CAPACITY }),
    }
}

impl ShmRing {
    /// See [`create`].
    pub fn create(name: &str, capacity: usize) -> Result<ShmRing> {
        let cap = round_capacity(capacity)?;
        let opts = SegmentOptions::default().with_extra(cap);
        let seg = Segment::create_with(name, RingHeader::new(cap), &opts).map_err(shm_error)?;
        Ok(ShmRing { seg: Arc::new(seg), notifier: None })
    }

    /// Like [`create`], for a ring whose ends can wait in an event loop
    /// ([`ShmSource::notifier_fd`], [`ShmSink::notifier_fd`]). A process that opens it by
    /// name needs the notifier's eventfds as well ([`ShmRing::open_with_notifier`]): pass
    /// them over a Unix socket (SCM_RIGHTS) or as inherited fds. A plain [`open`] of it
    /// succeeds, but attaching an end then fails with [`Error::Unsupported`].
    pub fn create_with_notifier(name: &str, capacity: usize) -> Result<ShmRing> {
        let cap = round_capacity(capacity)?;
        let notifier = RingNotifier::new()?;
        let opts = SegmentOptions::default().with_extra(cap);
        let header = RingHeader::new(cap).with_notifier();
        let seg = Segment::create_with(name, header, &opts).map_err(shm_error)?;
        Ok(ShmRing { seg: Arc::new(seg), notifier: Some(notifier) })
    }

    /// Opens a named ring created [`with_notifier`](ShmRing::create_with_notifier), with
    /// its notifier's eventfds (received from the creator).
    pub fn open_with_notifier(name: &str, notifier: RingNotifier) -> Result<ShmRing> {
        let mut ring = Self::open(name)?;
        ring.set_notifier(notifier)?;
        Ok(ring)
    }

    /// A new ring of (at least) `capacity` bytes in a memfd, whose ends can wait in an
    /// event loop ([`ShmSource::notifier_fd`], [`ShmSink::notifier_fd`]). Another process
    /// needs the segment's fd and the notifier's two ([`ShmRing::notifier`]); it rebuilds
    /// the ring with [`ShmRing::from_fd_with_notifier`]. A `fork`ed child inherits all
    /// three.
    pub fn anonymous_with_notifier(capacity: usize) -> Result<ShmRing> {
        let cap = round_capacity(capacity)?;
        let notifier = RingNotifier::new()?;
        let opts = SegmentOptions::default().with_extra(cap);
        let header = RingHeader::new(cap).with_notifier();
        let seg = Segment::anonymous_with(header, &opts).map_err(shm_error)?;
        Ok(ShmRing { seg: Arc::new(seg), notifier: Some(notifier) })
    }

    /// Maps the ring behind a received fd (from [`ShmRing::anonymous_with_notifier`]),
    /// with its notifier's received eventfds.
    pub fn from_fd_with_notifier(fd: OwnedFd, notifier: RingNotifier) -> Result<ShmRing> {
        let mut ring = Self::from_fd(fd)?;
        ring.set_notifier(notifier)?;
        Ok(ring)
    }

    fn set_notifier(&mut self, notifier: RingNotifier) -> Result<()> {
        if !self.seg.has_notifier() {
            return Err(Error::Unsupported {
                what: "a notifier for a ring created without one",
                backend: "shm",
                hint: "create the ring with ShmRing::anonymous_with_notifier or \
                       create_with_notifier",
            });
        }
        self.notifier = Some(notifier);
        Ok(())
    }

    /// The notifier's eventfds, for a ring created with them: pass
    /// [`data_fd`](RingNotifier::data_fd) and [`room_fd`](RingNotifier::room_fd) to the
    /// process that attaches the other end, with the segment.
    pub fn notifier(&self) -> Option<&RingNotifier> {
        self.notifier.as_ref()
    }

    /// The ring's notifiers for the producer (signals `data`) and consumer (signals
    /// `room`), or an error that says how to get them if the ring has notifiers but this
    /// handle lacks them.
    fn notifiers(&self) -> Result<Option<(Notifier, Notifier, &RingNotifier)>> {
        match (&self.notifier, self.seg.has_notifier()) {
            (Some(n), _) => Ok(Some((n.data.clone(), n.room.clone(), n))),
            (None, false) => Ok(None),
            (None, true) => Err(Error::Unsupported {
                what: "attaching to a notifier ring without its notifier",
                backend: "shm",
                hint: "this ring was created with notifiers: open it with \
                       ShmRing::open_with_notifier or from_fd_with_notifier, passing the \
                       creator's eventfds (ShmRing::notifier)",
            }),
        }
    }

    /// See [`open`]. A segment of another type is refused with [`Error::Shm`]
    /// (`ShmError::Invalid`), one whose ring header does not match its data area with
    /// [`Error::Malformed`].
    pub fn open(name: &str) -> Result<ShmRing> {
        Self::checked(Segment::open(name).map_err(shm_error)?)
    }

    /// A new ring of (at least) `capacity` bytes in a memfd: share it with a `fork`ed
    /// child, or pass [`as_fd`](AsFd::as_fd) to another process and map it there with
    /// [`ShmRing::from_fd`].
    pub fn anonymous(capacity: usize) -> Result<ShmRing> {
        let cap = round_capacity(capacity)?;
        let opts = SegmentOptions::default().with_extra(cap);
        let seg = Segment::anonymous_with(RingHeader::new(cap), &opts).map_err(shm_error)?;
        Ok(ShmRing { seg: Arc::new(seg), notifier: None })
    }

    /// Maps the ring behind a received fd (from [`ShmRing::anonymous`]), validating it.
    pub fn from_fd(fd: OwnedFd) -> Result<ShmRing> {
        Self::checked(Segment::from_fd(fd).map_err(shm_error)?)
    }

    fn checked(seg: Segment<RingHeader>) -> Result<ShmRing> {
        seg.validate(seg.extra_len()).map_err(ring_error)?;
        Ok(ShmRing { seg: Arc::new(seg), notifier: None })
    }

    /// The data area's size in bytes.
    pub fn capacity(&self) -> usize {
        self.seg.capacity()
    }

    /// The largest message: `capacity - 8`.
    pub fn max_message(&self) -> usize {
        self.seg.max_message()
    }

    /// The segment's name, for a named ring.
    pub fn name(&self) -> Option<&str> {
        self.seg.name()
    }

    /// The segment.
    pub fn segment(&self) -> &RingSegment {
        &self.seg
    }

    /// Attaches this process as the ring's producer. [`Error::AlreadyExists`] if a
    /// producer already attached (one per ring).
    ///
    /// For a ring with notifiers, the sink has a [`notifier_fd`](ShmSink::notifier_fd).
    pub fn sink(&self) -> Result<ShmSink> {
        let pid = std::process::id();
        let notifiers = self.notifiers()?;
        let (signal, events) = match notifiers {
            Some((data, _, n)) => (Some(data), Some(EventSet::new(n.room.clone())?)),
            None => (None, None),
        };
        let tx = Producer::attach_with(self.seg.clone(), pid, signal).map_err(ring_error)?;
        let max_frame = tx.max_message();
        Ok(ShmSink {
            tx: Some(tx),
            pid,
            peer: Peer::default(),
            max_frame,
            past: Instant::now(),
            events,
        })
    }

    /// Attaches this process as the ring's consumer. [`Error::AlreadyExists`] if a
    /// consumer already attached (one per ring).
    ///
    /// For a ring with notifiers, the source has a [`notifier_fd`](ShmSource::notifier_fd).
    pub fn source(&self) -> Result<ShmSource> {
        let pid = std::process::id();
        let notifiers = self.notifiers()?;
        let (signal, events) = match notifiers {
            Some((_, room, n)) => (Some(room), Some(EventSet::new(n.data.clone())?)),
            None => (None, None),
        };
        let rx = Consumer::attach_with(self.seg.clone(), pid, signal).map_err(ring_error)?;
        let max_frame = rx.max_message();
        Ok(ShmSource {
            rx: Some(rx),
            pid,
            peer: Peer::default(),
            max_frame,
            past: Instant::now(),
            events,
            buf: Vec::new(),
        })
    }

    /// A typed sender: [`ShmRing::sink`] wrapped.
    pub fn sender<T: Serialize>(&self) -> Result<ShmSender<T>> {
        Ok(Sender::new(self.sink()?))
    }

    /// A typed receiver: [`ShmRing::source`] wrapped. Each message is copied out of the
    /// ring into the source's private buffer (reused) before it is decoded, so a peer
    /// that rewrites the shared memory cannot change it under the decoder.
    pub fn receiver<T: DeserializeOwned>(&self) -> Result<ShmReceiver<T>> {
        Ok(Receiver::new(self.source()?))
    }

    /// A raw-bytes sender.
    pub fn bytes_sender(&self) -> Result<ShmBytesSender> {
        Ok(BytesSender::new(self.sink()?))
    }

    /// A raw-bytes receiver. Its owned `recv`s read a private copy of each message, like
    /// the typed one; its `recv_ref` lends the message in place (see [`ShmSource::recv`]).
    pub fn bytes_receiver(&self) -> Result<ShmBytesReceiver> {
        Ok(BytesReceiver::new(self.source()?))
    }
}

impl AsFd for ShmRing {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.seg.as_fd()
    }
}

/// The other end's process, as far as this end knows it.
#[derive(Debug, Default)]
struct Peer {
    watch: Option<PeerWatch>,
    /// The process expected to attach the other end (`expect_peer`), watched until it does.
    expected: Option<PeerWatch>,
}

impl Peer {
    /// Whether the peer (the process that recorded `pid`, 0 for none yet) has died.
    fn dead(&mut self, pid: u32, me: u32) -> Result<bool> {
        if pid == 0 {
            return self.expected.as_ref().map_or(Ok(false), PeerWatch::has_exited);
        }
        if pid == me {
            return Ok(false);
        }
        if self.watch.as_ref().is_none_or(|w| w.pid() != pid) {
            // The pidfd taken by `expect_peer` was opened before that process could have
            // been reaped, so its pid cannot have been reused since: use it. (A pidfd
            // opened only now, perhaps long after the peer died and was reaped, could
            // name another process that got the same pid.)
            if self.expected.as_ref().is_some_and(|w| w.pid() == pid) {
                self.watch = self.expected.take();
                return self.watch.as_ref().map_or(Ok(false), PeerWatch::has_exited);
            }
            match PeerWatch::new(pid) {
                Ok(w) => self.watch = Some(w),
                Err(Error::Disconnected) => return Ok(true),
                Err(e) => return Err(e),
            }
        }
        self.watch.as_ref().map_or(Ok(false), PeerWatch::has_exited)
    }
}

fn expect(peer: &mut Peer, pid: u32) -> Result<()> {
    peer.expected = Some(PeerWatch::new(pid)?);
    Ok(())
}

fn wait_peer(
    peer: &mut Peer,
    pid_of_peer: impl Fn() -> u32,
    me: u32,
    deadline: Option<Instant>,
) -> Result<u32> {
    loop {
        let pid = pid_of_peer();
        if pid != 0 {
            return if peer.dead(pid, me)? { Err(Error::Disconnected) } else { Ok(pid) };
        }
        if passed(deadline) {
            return Err(Error::Timeout);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The sending end of a ring: a [`FrameSink`] (one message per frame, no header).
#[derive(Debug)]
pub struct ShmSink {
    /// `None` only during drop.
    tx: Option<RingProducer>,
    /// The process that attached this end.
    pid: u32,
    peer: Peer,
    max_frame: usize,
    /// A fixed instant in the past: the deadline of a first attempt that must not wait,
    /// without reading the clock.
    past: Instant,
    /// The event-loop notifier, for a ring with notifiers.
    events: Option<EventSet>,
}

impl ShmSink {
    fn tx(&mut self) -> &mut RingProducer {
        self.tx.as_mut().expect("the producer lives until drop")
    }

    /// The ring's producer, for the zero-copy path: `loan(len, deadline)`, write in place,
    /// `commit()`. It does not check the peer's liveness: give it a deadline, and on
    /// `Timeout` call [`ShmSink::peer_alive`].
    pub fn producer(&mut self) -> &mut RingProducer {
        self.tx()
    }

    /// Whether the consumer is still there: `false` once it closed its end or its process
    /// died; `true` while it lives or has not attached yet.
    pub fn peer_alive(&mut self) -> Result<bool> {
        let h = self.tx().header();
        let (closed, pid) = (h.consumer_closed(), h.consumer_pid());
        Ok(!closed && !self.peer.dead(pid, self.pid)?)
    }

    /// Waits until a consumer attaches; returns its pid. [`Error::Disconnected`] if it
    /// attached and died already, [`Error::Timeout`] at the deadline.
    pub fn wait_peer(&mut self, deadline: Option<Instant>) -> Result<u32> {
        let seg = self.tx().memory().clone();
        wait_peer(&mut self.peer, || seg.consumer_pid(), self.pid, deadline)
    }

    /// Names the process that will attach the consumer (a child this process spawned and
    /// has not reaped, so its pid cannot be reused): if it dies before it attaches, this end
    /// sees [`Error::Disconnected`] instead of waiting for a consumer that never comes.
    /// [`Error::Disconnected`] at once if it is already gone.
    pub fn expect_peer(&mut self, pid: u32) -> Result<()> {
        expect(&mut self.peer, pid)
    }

    /// For a ring with notifiers: the fd to watch, **readable** (not writable) when the
    /// consumer made room or went away since this sink last found the ring full. Register
    /// it with [`Interest::READABLE`](crate::reactor::Interest::READABLE), level- or
    /// edge-triggered; after an event, `try_send` until it succeeds or gives `Full` (each
    /// `Full` re-arms the notifier). It is readable once at the start.
    pub fn notifier_fd(&self) -> Option<BorrowedFd<'_>> {
        self.events.as_ref().map(EventSet::fd)
    }

    /// Reset the eventfd, announce, re-check: `true` if the caller may block.
    fn arm(&mut self, len: usize) -> Result<bool> {
        let h = self.tx().header();
        let (pid, me) = (h.consumer_pid(), self.pid);
        // Opens the watch on the peer's pidfd; a peer already gone: do not block.
        if self.peer.dead(pid, me)? {
            return Ok(false);
        }
        let events = self.events.as_mut().expect("arm only with a notifier");
        events.prepare(&self.peer)?;
        let tx = self.tx.as_mut().expect("the producer lives until drop");
        let armed = tx.arm(len, pid).map_err(ring_error)?;
        events.after_arm(armed)?;
        Ok(armed)
    }

    /// How many times a full ring is re-checked before the sender sleeps (default 100).
    /// A large value makes a busy-waiting sender: lower latency, one core kept busy.
    pub fn set_spin(&mut self, spins: u32) {
        self.tx().set_spin(spins);
    }

    /// Sends one message; see [`FrameSink::send_frame`].
    #[inline]
    pub fn send(&mut self, payload: &[u8], deadline: Option<Instant>) -> Result<()> {
        if payload.len() > self.max_frame {
            return Err(self.too_large(payload.len()));
        }
        // The first attempt does not wait (nor read the clock).
        let past = Some(self.past);
        match self.tx().send(payload, past) {
            Ok(()) => Ok(()),
            Err(e) => self.send_wait(payload, deadline, e),
        }
    }

    #[cold]
    #[inline(never)]
    fn too_large(&self, size: usize) -> Error {
        Error::MessageTooLarge { size, max: self.max_frame }
    }

    /// [`send`](ShmSink::send) after its first attempt failed with `first`: waits for room
    /// (`Timeout`), or reports the error.
    #[inline(never)]
    fn send_wait(
        &mut self,
        payload: &[u8],
        deadline: Option<Instant>,
        first: RingError,
    ) -> Result<()> {
        if first != RingError::Timeout {
            return Err(ring_error(first));
        }
        let past = Some(self.past);
        // Full. The peer's liveness is checked after each slice of waiting, not before:
        // a producer that keeps the ring full would otherwise pay a syscall per message.
        loop {
            if passed(deadline) {
                if !self.peer_alive()? {
                    return Err(Error::Disconnected);
                }
                if self.events.is_some() && !self.arm(payload.len())? {
                    // Room (or the close) came while arming: try again, without waiting.
                    match self.tx().send(payload, past) {
                        Ok(()) => return Ok(()),
                        Err(RingError::Timeout) => continue,
                        Err(e) => return Err(ring_error(e)),
                    }
                }
                return Err(Error::Timeout);
            }
            match self.tx().send(payload, slice(deadline)) {
                Ok(()) => return Ok(()),
                Err(RingError::Timeout) => {}
                Err(e) => return Err(ring_error(e)),
            }
            if !self.peer_alive()? {
                return Err(Error::Disconnected);
            }
        }
    }
}

impl FrameSink for ShmSink {
    fn send_frame(&mut self, payload: &[u8], deadline: Option<Instant>) -> Result<()> {
        self.send(payload, deadline)
    }

    fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Clamped to the ring's largest message (`capacity - 8`).
    fn set_max_frame(&mut self, max: usize) {
        self.max_frame = max.min(self.tx.as_ref().map_or(0, |t| t.max_message()));
    }

    /// The [`notifier_fd`](ShmSink::notifier_fd), for a ring with notifiers; otherwise
    /// none: the waits are futex waits in the segment.
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.notifier_fd()
    }
}

impl Drop for ShmSink {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            if std::process::id() != self.pid {
                // A fork's copy: the end still belongs to the parent.
                drop(tx.leave_open());
            }
        }
    }
}

/// The receiving end of a ring: a [`FrameSource`] that lends each message in place.
#[derive(Debug)]
pub struct ShmSource {
    /// `None` only during drop.
    rx: Option<RingConsumer>,
    pid: u32,
    peer: Peer,
    max_frame: usize,
    past: Instant,
    /// The event-loop notifier, for a ring with notifiers.
    events: Option<EventSet>,
    /// The private copy of the last message [`recv_copy`](ShmSource::recv_copy) took.
    buf: Vec<u8>,
}

impl ShmSource {
    fn rx(&mut self) -> &mut RingConsumer {
        self.rx.as_mut().expect("the consumer lives until drop")
    }

    /// The ring's consumer, for `recv_in_place`/`recv_loan`. It does not check the peer's
    /// liveness: give it a deadline, and on `Timeout` call [`ShmSource::peer_alive`].
    pub fn consumer(&mut self) -> &mut RingConsumer {
        self.rx()
    }

    /// Whether the producer is still there: `false` once it closed its end or its process
    /// died; `true` while it lives or has not attached yet. Messages it committed may still
    /// be waiting in the ring either way.
    pub fn peer_alive(&mut self) -> Result<bool> {
        let h = self.rx().header();
        let (closed, pid) = (h.producer_closed(), h.producer_pid());
        Ok(!closed && !self.peer.dead(pid, self.pid)?)
    }

    /// Waits until a producer attaches; returns its pid.
    pub fn wait_peer(&mut self, deadline: Option<Instant>) -> Result<u32> {
        let seg = self.rx().memory().clone();
        wait_peer(&mut self.peer, || seg.producer_pid(), self.pid, deadline)
    }

    /// Names the process that will attach the producer; see [`ShmSink::expect_peer`].
    pub fn expect_peer(&mut self, pid: u32) -> Result<()> {
        expect(&mut self.peer, pid)
    }

    /// For a ring with notifiers: the fd to watch, readable when the producer committed a
    /// message, closed its end or died since this source last found the ring empty.
    /// Register it with [`Interest::READABLE`](crate::reactor::Interest::READABLE), level-
    /// or edge-triggered; after an event, `try_recv` until [`Error::Empty`] (or
    /// `Disconnected`): finding the ring empty is what re-arms the notifier, so a reader
    /// that stops earlier gets no further event under edge-triggering (under level it is
    /// reported again). It is readable once at the start.
    pub fn notifier_fd(&self) -> Option<BorrowedFd<'_>> {
        self.events.as_ref().map(EventSet::fd)
    }

    /// Reset the eventfd, announce, re-check: `true` if the caller may block.
    fn arm(&mut self) -> Result<bool> {
        let h = self.rx().header();
        let (pid, me) = (h.producer_pid(), self.pid);
        // Opens the watch on the peer's pidfd; a peer already gone: do not block.
        if self.peer.dead(pid, me)? {
            return Ok(false);
        }
        let events = self.events.as_mut().expect("arm only with a notifier");
        events.prepare(&self.peer)?;
        let rx = self.rx.as_mut().expect("the consumer lives until drop");
        let armed = rx.arm(pid).map_err(ring_error)?;
        events.after_arm(armed)?;
        Ok(armed)
    }

    /// How many times an empty ring is re-checked before the receiver sleeps (default 100).
    pub fn set_spin(&mut self, spins: u32) {
        self.rx().set_spin(spins);
    }

    /// Receives one message **in place** (zero-copy): the slice is the ring's shared
    /// memory, valid (and unreleased) until the next call.
    ///
    /// A producer that follows the ring's protocol never writes a committed message
    /// before it is released, but the memory is writable by the peer process, so a buggy
    /// or malicious producer could change the bytes while you read them. Use this with a
    /// peer you trust (your own code, in a process you spawned); with one you do not, use
    /// [`recv_copy`](ShmSource::recv_copy) (what [`FrameSource::recv_frame`], and so the
    /// typed [`Receiver`] and [`BytesReceiver`]'s owned `recv`s, use), which copies the
    /// message into memory private to this process before anything reads it.
    #[inline]
    pub fn recv(&mut self, deadline: Option<Instant>) -> Result<&[u8]> {
        self.wait_message(deadline)?;
        let rx = self.rx.as_mut().expect("the consumer lives until drop");
        Ok(rx.held().expect("a message is held"))
    }

    /// Receives one message into this source's private buffer and releases it from the
    /// ring at once: the slice is process memory, valid until the next call. The copy is
    /// made through a raw pointer, never a `&[u8]` over the shared memory, so a peer that
    /// rewrites the ring cannot change a message while it is decoded. The buffer is reused
    /// (no allocation once it has grown to the largest message seen).
    pub fn recv_copy(&mut self, deadline: Option<Instant>) -> Result<&[u8]> {
        self.wait_message(deadline)?;
        let rx = self.rx.as_mut().expect("the consumer lives until drop");
        rx.copy_held(&mut self.buf);
        rx.release_held();
        Ok(&self.buf)
    }

    /// Waits for the next message and leaves it held in the ring (within the maximum).
    #[inline(always)]
    fn wait_message(&mut self, deadline: Option<Instant>) -> Result<()> {
        // The first attempt does not wait (nor read the clock when a message is there).
        let past = Some(self.past);
        let first = self.rx().hold(past).map(<[u8]>::len);
        match first {
            Ok(len) if len <= self.max_frame => Ok(()),
            first => self.wait_message_slow(deadline, first),
        }
    }

    /// [`wait_message`](ShmSource::wait_message) after its first attempt gave `first`
    /// (the length of the message held, or why none is).
    #[inline(never)]
    fn wait_message_slow(
        &mut self,
        deadline: Option<Instant>,
        first: std::result::Result<usize, RingError>,
    ) -> Result<()> {
        let past = Some(self.past);
        let mut wait = past;
        let mut attempt = Some(first);
        loop {
            let r = match attempt.take() {
                Some(r) => r.map(|_| ()),
                None => self.rx().hold(wait).map(|_| ()),
            };
            match r {
                Ok(_) => break,
                Err(RingError::Timeout) => {}
                Err(e) => return Err(ring_error(e)),
            }
            // Empty. The first attempt did not wait; later ones waited a slice.
            let expired = passed(deadline);
            if wait != past || expired {
                if !self.peer_alive()? {
                    // Everything the peer committed before it died is in the ring: take it.
                    match self.rx().hold(past) {
                        Ok(_) => break,
                        Err(RingError::Timeout | RingError::Disconnected) => {
                            return Err(Error::Disconnected)
                        }
                        Err(e) => return Err(ring_error(e)),
                    }
                }
                if expired {
                    if self.events.is_some() && !self.arm()? {
                        // A message (or the close) came while arming: take it.
                        wait = past;
                        continue;
                    }
                    return Err(Error::Timeout);
                }
            }
            wait = slice(deadline);
        }
        let max = self.max_frame;
        let rx = self.rx.as_mut().expect("the consumer lives until drop");
        let len = rx.held_len().unwrap_or(0);
        if len > max {
            rx.release_held();
            return Err(Error::Malformed {
                reason: format!("a {len}-byte message over this receiver's maximum of {max}"),
            });
        }
        Ok(())
    }
}

impl FrameSource for ShmSource {
    /// [`recv_copy`](ShmSource::recv_copy): the frame is copied out of the shared memory
    /// into this source's private buffer before the caller decodes it (the in-place,
    /// zero-copy read is [`ShmSource::recv`]).
    fn recv_frame(&mut self, deadline: Option<Instant>) -> Result<&[u8]> {
        self.recv_copy(deadline)
    }

    /// [`recv`](ShmSource::recv): lent in place from the shared memory (see there).
    fn recv_frame_in_place(&mut self, deadline: Option<Instant>) -> Result<&[u8]> {
        self.recv(deadline)
    }

    fn max_frame(&self) -> usize {
        self.max_frame
    }

    fn set_max_frame(&mut self, max: usize) {
        self.max_frame = max;
    }

    /// The [`notifier_fd`](ShmSource::notifier_fd), for a ring with notifiers; otherwise
    /// none.
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.notifier_fd()
    }
}

impl Drop for ShmSource {
    fn drop(&mut self) {
        if let Some(rx) = self.rx.take() {
            if std::process::id() != self.pid {
                drop(rx.leave_open());
            }
        }
    }
}
