//! Typed and raw channels over every transport.
//!
//! A channel moves *frames*: whole messages, each at most a configurable maximum size.
//! Transports provide the two halves:
//!
//! - a [`FrameSink`] sends one frame, all of it or none of it as far as the peer can tell,
//!   with one exception on byte streams: a sender that dies (or drops its sink) while a
//!   deadline-cut frame is still partly unsent leaves the reader [`Error::Truncated`];
//! - a [`FrameSource`] receives one whole frame.
//!
//! On byte streams (pipe, FIFO, Unix stream, TCP) frames are length-prefixed by
//! [`StreamSink`]/[`StreamSource`]: an 8-byte header (magic `b"IP"`, version, kind, and a
//! little-endian `u32` length) followed by the payload. On message transports (Unix
//! seqpacket, System V queues) one kernel message is one frame. On the shared-memory ring
//! ([`shm`]) one ring record is one frame, and the receiver reads it in place.
//! [`shm_mpmc`] is the same ring shared by many producer and consumer processes.
//!
//! On top sit [`Sender<T>`]/[`Receiver<T>`] for any serde type (encoded with postcard),
//! and [`BytesSender`]/[`BytesReceiver`], the raw-bytes path that skips serde.
//!
//! # Byte payloads: use `serde_bytes`
//!
//! serde sees a plain `Vec<u8>` (or `[u8; N]`, `&[u8]`) as a sequence of `u8`, so postcard
//! encodes and decodes it one element at a time: from 64 KiB up that runs at about a tenth
//! of the raw-bytes path (see `docs/BENCHMARKS.md`). Mark byte buffers as bytes, with
//! [`serde_bytes`](https://docs.rs/serde_bytes)'s `ByteBuf` or
//! `#[serde(with = "serde_bytes")]` on the field; postcard then writes a length and copies
//! the bytes once. The wire format differs from a plain `Vec<u8>`'s only in speed: both
//! are a varint length and the bytes, so either side may switch. For bytes and nothing
//! else, [`BytesSender`]/[`BytesReceiver`] skip serde altogether.
//!
//! ```
//! use interproc_ipc::pipe;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Chunk {
//!     seq: u64,
//!     #[serde(with = "serde_bytes")]
//!     data: Vec<u8>,
//! }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (mut tx, mut rx) = pipe::channel::<Chunk>()?;
//! tx.send(Chunk { seq: 1, data: vec![7; 4096] })?; // in one thread: less than a pipe holds
//! let chunk = rx.recv()?;
//! assert_eq!((chunk.seq, chunk.data.len()), (1, 4096));
//!
//! // A bare buffer: `serde_bytes::ByteBuf`.
//! let (mut tx, mut rx) = pipe::channel::<serde_bytes::ByteBuf>()?;
//! tx.send(serde_bytes::ByteBuf::from(vec![1, 2, 3]))?;
//! assert_eq!(rx.recv()?.into_vec(), [1, 2, 3]);
//! # Ok(()) }
//! ```
//!
//! # Blocking, `try_`, and timeouts
//!
//! Every operation takes a deadline on `CLOCK_MONOTONIC` ([`std::time::Instant`]):
//! `send`/`recv` block, `try_send`/`try_recv` never block (`Full`/`Empty`), and
//! `send_timeout`/`recv_timeout` give up with `Timeout`. `EINTR` is retried.
//!
//! On a byte stream, a deadline can pass after part of a frame went out. The frame is then
//! committed: the call returns `Ok`, and the rest goes out before the next frame (or on
//! [`Sender::flush`]). Dropping a sender never waits; if the rest is still unsent then,
//! the peer sees [`Error::Truncated`].
//!
//! # A dead peer is `Disconnected`, never a hang
//!
//! On streams, the kernel closes a dead process's fds, so the reader sees EOF and the
//! writer `EPIPE`. An EOF in the middle of a frame is [`Error::Truncated`]. The shm ring
//! has no fd for the kernel to close: each end records its pid in the segment, and a
//! waiting side checks the peer's liveness through a pidfd (see [`shm`]).
//!
//! # Example: a typed channel over a pipe
//!
//! ```
//! use interproc_ipc::pipe;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (mut tx, mut rx) = pipe::channel::<String>()?;
//! tx.send("hello".to_string())?;
//! assert_eq!(rx.recv()?, "hello");
//! # Ok(()) }
//! ```

pub mod shm;
pub mod shm_mpmc;
mod stream;

use std::marker::PhantomData;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use self::stream::{StreamSink, StreamSource, FRAME_HEADER_LEN};
use crate::error::{Error, Result, SendError};

/// The default maximum frame size: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// The sending half of a frame transport.
pub trait FrameSink: Send {
    /// Sends `payload` as one frame, waiting until `deadline` (`None`: forever; a
    /// deadline already past: do not block).
    ///
    /// On `Err(Full)`/`Err(Timeout)` nothing of the frame was sent. Implementations must
    /// check `payload.len()` against [`FrameSink::max_frame`] before writing anything.
    fn send_frame(&mut self, payload: &[u8], deadline: Option<Instant>) -> Result<()>;

    /// Finishes sending what an earlier call accepted but could not send whole before its
    /// deadline (only byte streams ever hold such a rest), waiting until `deadline`.
    /// Message transports send all or nothing, so for them this does nothing.
    fn flush(&mut self, deadline: Option<Instant>) -> Result<()> {
        let _ = deadline;
        Ok(())
    }

    /// The largest payload this sink accepts.
    fn max_frame(&self) -> usize;

    /// Sets the largest payload this sink accepts. A transport may refuse a value above
    /// its own hard limit by clamping; [`FrameSink::max_frame`] tells the result.
    fn set_max_frame(&mut self, max: usize);

    /// The fd to wait on for writability, if the transport has one.
    fn fd(&self) -> Option<BorrowedFd<'_>>;
}

/// The receiving half of a frame transport.
pub trait FrameSource: Send {
    /// Receives one whole frame, waiting until `deadline` (`None`: forever; a deadline
    /// already past: do not block). The slice is valid until the next call.
    fn recv_frame(&mut self, deadline: Option<Instant>) -> Result<&[u8]>;

    /// Receives one whole frame like [`recv_frame`](FrameSource::recv_frame), but a
    /// transport may lend it in place from memory the peer process can also write (the
    /// shm ring lends its shared memory; `recv_frame` there copies the frame out first).
    /// For callers that only look at the bytes and trust the peer: never decode such a
    /// frame with checks that assume it does not change. The default is `recv_frame`.
    fn recv_frame_in_place(&mut self, deadline: Option<Instant>) -> Result<&[u8]> {
        self.recv_frame(deadline)
    }

    /// The largest payload this source accepts; a larger announced frame is
    /// [`Error::Malformed`].
    fn max_frame(&self) -> usize;

    /// Sets the largest payload this source accepts.
    fn set_max_frame(&mut self, max: usize);

    /// The fd to wait on for readability, if the transport has one.
    ///
    /// A source may hold complete frames in its buffer while the fd is not readable:
    /// after a readiness event, call `try_recv` until it returns [`Error::Empty`].
    fn fd(&self) -> Option<BorrowedFd<'_>>;
}

impl<S: FrameSink + ?Sized> FrameSink for Box<S> {
    fn send_frame(&mut self, payload: &[u8], deadline: Option<Instant>) -> Result<()> {
        (**self).send_frame(payload, deadline)
    }
    fn flush(&mut self, deadline: Option<Instant>) -> Result<()> {
        (**self).flush(deadline)
    }
    fn max_frame(&self) -> usize {
        (**self).max_frame()
    }
    fn set_max_frame(&mut self, max: usize) {
        (**self).set_max_frame(max)
    }
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        (**self).fd()
    }
}

impl<S: FrameSource + ?Sized> FrameSource for Box<S> {
    fn recv_frame(&mut self, deadline: Option<Instant>) -> Result<&[u8]> {
        (**self).recv_frame(deadline)
    }
    fn recv_frame_in_place(&mut self, deadline: Option<Instant>) -> Result<&[u8]> {
        (**self).recv_frame_in_place(deadline)
    }
    fn max_frame(&self) -> usize {
        (**self).max_frame()
    }
    fn set_max_frame(&mut self, max: usize) {
        (**self).set_max_frame(max)
    }
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        (**self).fd()
    }
}

fn after(timeout: Duration) -> Option<Instant> {
    // A timeout too large to represent means "forever".
    Instant::now().checked_add(timeout)
}

fn now() -> Option<Instant> {
    Some(Instant::now())
}

/// Sends values of type `T`, encoded with postcard, over a [`FrameSink`].
///
/// The default `S` is a boxed sink, so senders over different transports have one type.
pub struct Sender<T, S = Box<dyn FrameSink>> {
    sink: S,
    buf: Vec<u8>,
    _t: PhantomData<fn(T)>,
}

impl<T: Serialize, S: FrameSink> Sender<T, S> {
    /// Wraps a sink.
    pub fn new(sink: S) -> Self {
        Sender { sink, buf: Vec::new(), _t: PhantomData }
    }

    /// Sets the maximum encoded message size (default [`DEFAULT_MAX_FRAME`]).
    pub fn with_max_frame(mut self, max: usize) -> Self {
        self.sink.set_max_frame(max);
        self
    }

    /// The maximum encoded message size.
    pub fn max_frame(&self) -> usize {
        self.sink.max_frame()
    }

    /// Sends `value`, blocking while the transport is full.
    pub fn send(&mut self, value: T) -> Result<(), SendError<T>> {
        self.send_deadline(value, None)
    }

    /// Sends `value` if it can be done without blocking; otherwise `Full`.
    pub fn try_send(&mut self, value: T) -> Result<(), SendError<T>> {
        match self.send_deadline(value, now()) {
            Err(SendError { error: Error::Timeout, value }) => {
                Err(SendError { error: Error::Full, value })
            }
            r => r,
        }
    }

    /// Sends `value`, waiting at most `timeout` for room.
    pub fn send_timeout(&mut self, value: T, timeout: Duration) -> Result<(), SendError<T>> {
        self.send_deadline(value, after(timeout))
    }

    /// Sends `value`, waiting until `deadline` (`None`: forever).
    pub fn send_deadline(
        &mut self,
        value: T,
        deadline: Option<Instant>,
    ) -> Result<(), SendError<T>> {
        self.buf.clear();
        let buf = std::mem::take(&mut self.buf);
        let buf = match postcard::to_extend(&value, buf) {
            Ok(b) => b,
            Err(e) => return Err(SendError { error: Error::Encode(e), value }),
        };
        let r = self.sink.send_frame(&buf, deadline);
        self.buf = buf;
        r.map_err(|error| SendError { error, value })
    }

    /// Waits until `deadline` (`None`: forever) for the rest of a message that a deadline
    /// cut short to go out. Dropping a sender never waits: on a byte stream, call this
    /// first if the last `try_send`/`send_timeout` may have left part of a message
    /// unsent, or the peer may see it [`Error::Truncated`].
    pub fn flush(&mut self, deadline: Option<Instant>) -> Result<()> {
        self.sink.flush(deadline)
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.sink
    }

    /// The transport, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// Gives back the transport.
    pub fn into_inner(self) -> S {
        self.sink
    }

    /// Boxes the transport, so that senders over different transports have one type.
    pub fn boxed(self) -> Sender<T>
    where
        S: 'static,
    {
        Sender { sink: Box::new(self.sink), buf: self.buf, _t: PhantomData }
    }
}

/// Receives values of type `T` from a [`FrameSource`].
pub struct Receiver<T, R = Box<dyn FrameSource>> {
    source: R,
    _t: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned, R: FrameSource> Receiver<T, R> {
    /// Wraps a source.
    pub fn new(source: R) -> Self {
        Receiver { source, _t: PhantomData }
    }

    /// Sets the maximum encoded message size (default [`DEFAULT_MAX_FRAME`]); a peer that
    /// announces a larger frame gets the connection treated as malformed.
    pub fn with_max_frame(mut self, max: usize) -> Self {
        self.source.set_max_frame(max);
        self
    }

    /// Receives the next value, blocking until one arrives or the peer disconnects.
    pub fn recv(&mut self) -> Result<T> {
        self.recv_deadline(None)
    }

    /// Receives a value if a whole one is ready now; otherwise `Empty`.
    pub fn try_recv(&mut self) -> Result<T> {
        match self.recv_deadline(now()) {
            Err(Error::Timeout) => Err(Error::Empty),
            r => r,
        }
    }

    /// Receives the next value, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T> {
        self.recv_deadline(after(timeout))
    }

    /// Receives the next value, waiting until `deadline` (`None`: forever).
    pub fn recv_deadline(&mut self, deadline: Option<Instant>) -> Result<T> {
        let frame = self.source.recv_frame(deadline)?;
        postcard::from_bytes(frame).map_err(Error::Decode)
    }

    /// The transport.
    pub fn get_ref(&self) -> &R {
        &self.source
    }

    /// The transport, mutably.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.source
    }

    /// Gives back the transport.
    pub fn into_inner(self) -> R {
        self.source
    }

    /// Boxes the transport, so that receivers over different transports have one type.
    pub fn boxed(self) -> Receiver<T>
    where
        R: 'static,
    {
        Receiver { source: Box::new(self.source), _t: PhantomData }
    }
}

/// Sends raw byte messages, skipping serde.
pub struct BytesSender<S = Box<dyn FrameSink>> {
    sink: S,
}

impl<S: FrameSink> BytesSender<S> {
    /// Wraps a sink.
    pub fn new(sink: S) -> Self {
        BytesSender { sink }
    }

    /// Sets the maximum message size (default [`DEFAULT_MAX_FRAME`]).
    pub fn with_max_frame(mut self, max: usize) -> Self {
        self.sink.set_max_frame(max);
        self
    }

    /// Sends `msg` as one message, blocking while the transport is full.
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.sink.send_frame(msg, None)
    }

    /// Sends `msg` if it can be done without blocking; otherwise `Full`.
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        match self.sink.send_frame(msg, now()) {
            Err(Error::Timeout) => Err(Error::Full),
            r => r,
        }
    }

    /// Sends `msg`, waiting at most `timeout` for room.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.sink.send_frame(msg, after(timeout))
    }

    /// Waits until `deadline` for the rest of a message that a deadline cut short; see
    /// [`Sender::flush`].
    pub fn flush(&mut self, deadline: Option<Instant>) -> Result<()> {
        self.sink.flush(deadline)
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.sink
    }

    /// Gives back the transport.
    pub fn into_inner(self) -> S {
        self.sink
    }
}

/// Receives raw byte messages, skipping serde.
pub struct BytesReceiver<R = Box<dyn FrameSource>> {
    source: R,
}

impl<R: FrameSource> BytesReceiver<R> {
    /// Wraps a source.
    pub fn new(source: R) -> Self {
        BytesReceiver { source }
    }

    /// Sets the maximum message size (default [`DEFAULT_MAX_FRAME`]).
    pub fn with_max_frame(mut self, max: usize) -> Self {
        self.source.set_max_frame(max);
        self
    }

    /// Receives the next message as a new `Vec`.
    pub fn recv(&mut self) -> Result<Vec<u8>> {
        self.source.recv_frame(None).map(<[u8]>::to_vec)
    }

    /// Receives the next message in place: the slice is valid until the next call.
    /// This is the copy-free path ([`FrameSource::recv_frame_in_place`]): over the shm
    /// ring the slice is the shared memory itself, which the peer process can write, so
    /// use it with a peer you trust (the owned `recv`s read a private copy).
    pub fn recv_ref(&mut self, deadline: Option<Instant>) -> Result<&[u8]> {
        self.source.recv_frame_in_place(deadline)
    }

    /// Receives a message if a whole one is ready now; otherwise `Empty`.
    pub fn try_recv(&mut self) -> Result<Vec<u8>> {
        match self.source.recv_frame(now()) {
            Err(Error::Timeout) => Err(Error::Empty),
            r => r.map(<[u8]>::to_vec),
        }
    }

    /// Receives the next message, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        self.source.recv_frame(after(timeout)).map(<[u8]>::to_vec)
    }

    /// The transport.
    pub fn get_ref(&self) -> &R {
        &self.source
    }

    /// Gives back the transport.
    pub fn into_inner(self) -> R {
        self.source
    }
}

impl<T, S: FrameSink> Sender<T, S> {
    /// The fd to register with an event loop for writability, if the transport has one
    /// (System V message queues have none).
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.sink.fd()
    }
}

impl<T, R: FrameSource> Receiver<T, R> {
    /// The fd to register with an event loop for readability, if the transport has one
    /// (System V message queues have none). After a readiness event, call `try_recv`
    /// until it returns [`Error::Empty`]: several frames may be buffered.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.source.fd()
    }
}

impl<S: FrameSink> BytesSender<S> {
    /// The fd to register with an event loop for writability, if the transport has one.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.sink.fd()
    }
}

impl<R: FrameSource> BytesReceiver<R> {
    /// The fd to register with an event loop for readability, if the transport has one.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.source.fd()
    }
}

#[cfg(test)]
mod tests {
    use serde_bytes::ByteBuf;

    /// The docs promise that `serde_bytes` changes only the speed: a `ByteBuf` and a
    /// plain `Vec<u8>` are the same bytes on the wire, so either side may switch.
    #[test]
    fn byte_buf_and_vec_encode_the_same() {
        for len in [0usize, 1, 127, 128, 300, 70_000] {
            let v: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let plain = postcard::to_stdvec(&v).unwrap();
            let bytes = postcard::to_stdvec(&ByteBuf::from(v.clone())).unwrap();
            assert_eq!(plain, bytes, "len {len}");
            let back: Vec<u8> = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(back, v);
            let back: ByteBuf = postcard::from_bytes(&plain).unwrap();
            assert_eq!(back.into_vec(), v);
        }
    }
}
