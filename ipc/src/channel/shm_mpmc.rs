//! The `shm-mpmc` transport: a shared-memory ring with any number of producer and
//! consumer processes, robust to the crash of any of them.
//!
//! An [`MpmcRing`] is a shared-memory segment holding an
//! [`interproc_sync::ring::mpmc`] ring: the byte ring of [`shm`](super::shm) (same records,
//! variable-size messages committed whole) with producers taking turns on one robust
//! process-shared lock and consumers on another. Each message goes to exactly one
//! consumer. Up to [`MAX_PEERS`] producers and as many consumers attach at once
//! ([`MpmcRing::sink`], [`MpmcRing::source`], or typed [`MpmcRing::sender`] /
//! [`MpmcRing::receiver`]).
//!
//! # Crashes
//!
//! - A producer killed in the middle of a send holds the producer lock and has not
//!   published its record: the next producer takes the lock over (`OwnerDied`), discards
//!   the unpublished bytes and goes on. No consumer ever sees a partial message, and every
//!   message committed before the kill is delivered.
//! - A consumer killed in the middle of a receive has not released the record: the next
//!   consumer takes the lock over and receives it. (So a message is delivered exactly once
//!   to the *surviving* consumers; the one a consumer was reading when it was killed goes
//!   to another.)
//! - Consumers get [`Error::Disconnected`] once every producer has gone (dropped its end
//!   or died) and they have read everything; producers get it once every consumer has gone
//!   and the ring is full. A side that waits notices a death within about 100 ms (it
//!   checks the processes in the segment's table of attached pids and start times).
//! - Before any producer has attached, consumers wait (as on a FIFO).
//!   [`MpmcRing::expect_producer`] names a process that will attach (a child you spawned),
//!   so that its death before attaching counts as a producer gone.
//!
//! # Costs
//!
//! One copy in and one copy out per message; the receiver copies each message out of the
//! ring (into its own buffer) so that it holds the consumer lock only for that copy. An
//! uncontended send or receive costs a lock and an unlock more than the SPSC ring (a
//! compare-and-swap, a swap and two plain stores) and no syscall. See docs/BENCHMARKS.md
//! for the measured cost of the locks.
//!
//! # Example
//!
//! ```
//! use interproc_ipc::channel::shm_mpmc::MpmcRing;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ring = MpmcRing::anonymous(64 << 10)?; // a memfd: fork()ed children share it
//! let mut tx1 = ring.sender::<u32>()?;
//! let mut tx2 = ring.sender::<u32>()?;
//! let mut rx = ring.receiver::<u32>()?;
//! tx1.send(1)?;
//! tx2.send(2)?;
//! assert_eq!(rx.recv()? + rx.recv()?, 3);
//! drop((tx1, tx2));
//! assert!(rx.recv().unwrap_err().is_disconnected());
//! # Ok(()) }
//! ```

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

pub use interproc_sync::ring::mpmc::MAX_PEERS;
use interproc_sync::ring::mpmc::{MpmcConsumer, MpmcError, MpmcHeader, MpmcProducer};
use interproc_sync::shm::{Segment, SegmentOptions};
use interproc_sync::TaskId;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::shm::round_capacity;
use super::{BytesReceiver, BytesSender, FrameSink, FrameSource, Receiver, Sender};
use crate::error::{Error, Result};

/// The memory an MPMC ring lives in: a shared segment.
pub type MpmcSegment = Arc<Segment<MpmcHeader>>;
/// A producer of a ring in a segment.
pub type SegmentProducer = MpmcProducer<MpmcSegment>;
/// A consumer of a ring in a segment.
pub type SegmentConsumer = MpmcConsumer<MpmcSegment>;

/// A typed sender over an MPMC ring.
pub type MpmcSender<T> = Sender<T, MpmcSink>;
/// A typed receiver over an MPMC ring.
pub type MpmcReceiver<T> = Receiver<T, MpmcSource>;

fn mpmc_error(e: MpmcError) -> Error {
    match e {
        MpmcError::Timeout => Error::Timeout,
        MpmcError::Disconnected => Error::Disconnected,
        MpmcError::TooLarge { size, max } => Error::MessageTooLarge { size, max },
        MpmcError::ForkedCopy { side, owner, pid } => Error::ForkedCopy {
            what: if side == "producer" {
                "shm-mpmc ring producer"
            } else {
                "shm-mpmc ring consumer"
            },
            owner,
            pid,
        },
        MpmcError::TooManyPeers { side, max } => Error::AlreadyExists {
            what: format!(
                "a {side} in each of the {max} {side} slots of this shm-mpmc ring (live \
                 processes hold them all; drop one first)"
            ),
        },
        e => Error::Malformed { reason: e.to_string() },
    }
}

/// A shared-memory segment holding an MPMC ring: make ends from it, in any process that
/// maps it.
///
/// Clones share the mapping. A named ring's creator removes the name from `/dev/shm` when
/// its last handle (this, or an end made from it) drops.
#[derive(Clone, Debug)]
pub struct MpmcRing {
    seg: MpmcSegment,
}

impl MpmcRing {
    /// Creates a named ring of (at least) `capacity` bytes in `/dev/shm/<name>`, mode
    /// 0600. [`Error::AlreadyExists`] if the name is taken.
    pub fn create(name: &str, capacity: usize) -> Result<MpmcRing> {
        let cap = round_capacity(capacity)?;
        let opts = SegmentOptions::default().with_extra(cap);
        let seg = Segment::create_with(name, MpmcHeader::new(cap), &opts)?;
        Ok(MpmcRing { seg: Arc::new(seg) })
    }

    /// Opens the named ring another process created. A segment of another type is
    /// [`Error::Shm`]; one whose ring header does not match its data area is
    /// [`Error::Malformed`].
    pub fn open(name: &str) -> Result<MpmcRing> {
        Self::checked(Segment::open(name)?)
    }

    /// A new ring of (at least) `capacity` bytes in a memfd: share it with `fork`ed
    /// children, or pass [`as_fd`](AsFd::as_fd) to other processes and map it there with
    /// [`MpmcRing::from_fd`].
    pub fn anonymous(capacity: usize) -> Result<MpmcRing> {
        let cap = round_capacity(capacity)?;
        let opts = SegmentOptions::default().with_extra(cap);
        let seg = Segment::anonymous_with(MpmcHeader::new(cap), &opts)?;
        Ok(MpmcRing { seg: Arc::new(seg) })
    }

    /// Maps the ring behind a received fd (from [`MpmcRing::anonymous`]), validating it.
    pub fn from_fd(fd: OwnedFd) -> Result<MpmcRing> {
        Self::checked(Segment::from_fd(fd)?)
    }

    fn checked(seg: Segment<MpmcHeader>) -> Result<MpmcRing> {
        seg.validate(seg.extra_len()).map_err(mpmc_error)?;
        Ok(MpmcRing { seg: Arc::new(seg) })
    }

    /// The data area's size in bytes.
    pub fn capacity(&self) -> usize {
        self.seg.capacity()
    }

    /// The largest message: `capacity - 8`.
    pub fn max_message(&self) -> usize {
        self.seg.max_message()
    }

    /// The segment.
    pub fn segment(&self) -> &MpmcSegment {
        &self.seg
    }

    /// How many producers are attached (a snapshot; a dead one counts until a waiting
    /// consumer notices).
    pub fn producers(&self) -> usize {
        self.seg.producers()
    }

    /// How many consumers are attached (a snapshot).
    pub fn consumers(&self) -> usize {
        self.seg.consumers()
    }

    /// Names a process that will attach a producer (a child this process spawned and has
    /// not reaped): if it dies before attaching, it still counts as a producer gone, so
    /// consumers get [`Error::Disconnected`] rather than wait for it.
    pub fn expect_producer(&self, pid: u32) -> Result<()> {
        self.seg.expect_producer(TaskId { id: pid, stamp: 0 }).map_err(mpmc_error)
    }

    /// Names a process that will attach a consumer; see [`MpmcRing::expect_producer`].
    pub fn expect_consumer(&self, pid: u32) -> Result<()> {
        self.seg.expect_consumer(TaskId { id: pid, stamp: 0 }).map_err(mpmc_error)
    }

    /// Attaches this process as a producer.
    pub fn sink(&self) -> Result<MpmcSink> {
        let tx = MpmcProducer::attach(self.seg.clone()).map_err(mpmc_error)?;
        let max_frame = tx.max_message();
        Ok(MpmcSink { tx: Some(tx), pid: std::process::id(), max_frame })
    }

    /// Attaches this process as a consumer.
    pub fn source(&self) -> Result<MpmcSource> {
        let rx = MpmcConsumer::attach(self.seg.clone()).map_err(mpmc_error)?;
        let max_frame = rx.max_message();
        Ok(MpmcSource { rx: Some(rx), pid: std::process::id(), max_frame, buf: Vec::new() })
    }

    /// A typed sender: [`MpmcRing::sink`] wrapped.
    pub fn sender<T: Serialize>(&self) -> Result<MpmcSender<T>> {
        Ok(Sender::new(self.sink()?))
    }

    /// A typed receiver: [`MpmcRing::source`] wrapped.
    pub fn receiver<T: DeserializeOwned>(&self) -> Result<MpmcReceiver<T>> {
        Ok(Receiver::new(self.source()?))
    }

    /// A raw-bytes sender.
    pub fn bytes_sender(&self) -> Result<BytesSender<MpmcSink>> {
        Ok(BytesSender::new(self.sink()?))
    }

    /// A raw-bytes receiver.
    pub fn bytes_receiver(&self) -> Result<BytesReceiver<MpmcSource>> {
        Ok(BytesReceiver::new(self.source()?))
    }
}

impl AsFd for MpmcRing {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.seg.as_fd()
    }
}

/// A sending end of an MPMC ring: a [`FrameSink`] (one message per frame).
#[derive(Debug)]
pub struct MpmcSink {
    /// `None` only during drop.
    tx: Option<SegmentProducer>,
    pid: u32,
    max_frame: usize,
}

impl MpmcSink {
    /// The ring's producer, for the zero-copy path: `loan(len, deadline)` (which holds
    /// the producer lock), write in place, `commit()`.
    pub fn producer(&mut self) -> &mut SegmentProducer {
        self.tx.as_mut().expect("the producer lives until drop")
    }

    /// Sends one message; see [`FrameSink::send_frame`].
    pub fn send(&mut self, payload: &[u8], deadline: Option<Instant>) -> Result<()> {
        if payload.len() > self.max_frame {
            return Err(Error::MessageTooLarge { size: payload.len(), max: self.max_frame });
        }
        self.producer().send(payload, deadline).map_err(mpmc_error)
    }
}

impl FrameSink for MpmcSink {
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

    /// A ring has no fd.
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

impl Drop for MpmcSink {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            if std::process::id() != self.pid {
                drop(tx.leave_open()); // a fork's copy: the slot is the parent's
            }
        }
    }
}

/// A receiving end of an MPMC ring: a [`FrameSource`]. Each message is copied out of the
/// ring into this end's buffer, so the consumer lock is held only for the copy.
#[derive(Debug)]
pub struct MpmcSource {
    rx: Option<SegmentConsumer>,
    pid: u32,
    max_frame: usize,
    buf: Vec<u8>,
}

impl MpmcSource {
    /// The ring's consumer, for `recv_loan` (which holds the consumer lock while the loan
    /// lives).
    pub fn consumer(&mut self) -> &mut SegmentConsumer {
        self.rx.as_mut().expect("the consumer lives until drop")
    }

    /// Receives one message; see [`FrameSource::recv_frame`].
    pub fn recv(&mut self, deadline: Option<Instant>) -> Result<&[u8]> {
        let rx = self.rx.as_mut().expect("the consumer lives until drop");
        rx.recv(&mut self.buf, deadline).map_err(mpmc_error)?;
        if self.buf.len() > self.max_frame {
            return Err(Error::Malformed {
                reason: format!(
                    "a {}-byte message over this receiver's maximum of {}",
                    self.buf.len(),
                    self.max_frame
                ),
            });
        }
        Ok(&self.buf)
    }
}

impl FrameSource for MpmcSource {
    fn recv_frame(&mut self, deadline: Option<Instant>) -> Result<&[u8]> {
        self.recv(deadline)
    }

    fn max_frame(&self) -> usize {
        self.max_frame
    }

    fn set_max_frame(&mut self, max: usize) {
        self.max_frame = max;
    }

    /// A ring has no fd.
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

impl Drop for MpmcSource {
    fn drop(&mut self) {
        if let Some(rx) = self.rx.take() {
            if std::process::id() != self.pid {
                drop(rx.leave_open());
            }
        }
    }
}
