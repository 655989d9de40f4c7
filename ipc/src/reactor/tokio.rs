//! Awaiting interproc channels from tokio, through [`AsyncFd`] (cargo feature `tokio`).
//!
//! **Receiving.** [`AsyncBytesReceiver`] and [`AsyncReceiver`] wrap a channel receiver
//! whose transport has an fd (pipe, FIFO, Unix and TCP streams, seqpacket, and a
//! shared-memory ring made with notifiers: `channel::shm::ShmRing::anonymous_with_notifier`)
//! and offer `recv().await`.
//! The receiver's non-blocking `try_recv` does the reading; tokio's reactor (epoll,
//! edge-triggered) says when to try again. Readiness is cleared only after `try_recv`
//! returned [`Error::Empty`], which it does only once a read hit `EAGAIN`, so no wake-up
//! is lost even when several frames arrive together.
//!
//! **Sending.** [`AsyncBytesSender`] and [`AsyncSender`] wrap a channel sender and offer
//! `send(..).await`, which waits while the transport is full instead of blocking the
//! thread. Each attempt is a non-blocking one (the stream fds stay in blocking mode: a
//! write is made non-blocking by itself with `MSG_DONTWAIT` or `RWF_NOWAIT`, as the
//! channel's `try_send` does). What the wrapper waits on depends on the transport:
//!
//! - a pipe, FIFO, Unix or TCP stream: the fd turning **writable**;
//! - a shared-memory ring with notifiers: the ring's room notifier
//!   (`ShmSink::notifier_fd`) turning **readable**, which the consumer signals when it
//!   frees room after the sender found the ring full, or which the consumer's death
//!   makes readable (its pidfd is in the set).
//!
//! Readiness is cleared only after an attempt found the transport full (`EAGAIN`, or a
//! full ring that re-armed its notifier), so no wake-up is lost. A frame that only part
//! of fits is finished before `send` returns: on a byte stream a frame is never left half
//! written by a completed `send`. A receiver that is gone gives [`Error::Disconnected`]
//! (`EPIPE` on a stream; on a ring, the consumer's closed mark or its pidfd).
//!
//! Needs a tokio runtime with I/O enabled (`enable_io`) when the wrapper is built.
//! System V queues have no fd: bridge them first with [`super::MsgqBridge`].
//!
//! ```
//! use interproc_ipc::pipe;
//! use interproc_ipc::reactor::tokio::AsyncBytesReceiver;
//!
//! let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
//! let (mut tx, rx) = pipe::bytes_channel()?;
//! let writer = std::thread::spawn(move || tx.send(b"hello from a thread"));
//! let got = rt.block_on(async move {
//!     let mut rx = AsyncBytesReceiver::new(rx)?;
//!     rx.recv().await
//! })?;
//! assert_eq!(got, b"hello from a thread");
//! writer.join().unwrap()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Sending more than a pipe holds, from a task, while a thread reads slowly:
//!
//! ```
//! use interproc_ipc::pipe;
//! use interproc_ipc::reactor::tokio::AsyncSender;
//!
//! let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
//! let (tx, mut rx) = pipe::channel::<Vec<u32>>()?;
//! let reader = std::thread::spawn(move || -> interproc_ipc::Result<usize> {
//!     let mut n = 0;
//!     while let Ok(v) = rx.recv() {
//!         n += v.len();
//!     }
//!     Ok(n)
//! });
//! rt.block_on(async move {
//!     let mut tx = AsyncSender::new(tx)?;
//!     for _ in 0..64 {
//!         // 64 x ~4 KiB: several times a pipe's 64 KiB, so some sends must wait.
//!         tx.send(vec![7u32; 1000]).await?;
//!     }
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?; // the sender drops here: the reader sees Disconnected
//! assert_eq!(reader.join().unwrap()?, 64_000);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Instant;

use ::tokio::io::unix::AsyncFd;
use ::tokio::io::Interest;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::channel::{BytesReceiver, BytesSender, FrameSink, FrameSource, Receiver, Sender};
use crate::error::{Error, Result, SendError};
use crate::sys;

/// The receiver's fd number, registered with tokio. It owns nothing: the receiver next
/// to it in the wrapper owns the fd, and is dropped after the registration.
struct Registered(RawFd);

impl AsRawFd for Registered {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// # Safety
///
/// `fd` must stay open, and name the same open file description, until the returned
/// `AsyncFd` is dropped.
unsafe fn register(fd: Option<RawFd>, interest: Interest) -> Result<AsyncFd<Registered>> {
    let fd = fd.ok_or(Error::Unsupported {
        what: "awaiting a transport without an fd",
        backend: "tokio",
        hint: "System V queues have no fd (bridge one with reactor::MsgqBridge); a shm ring \
               has one only if made with notifiers (ShmRing::anonymous_with_notifier)",
    })?;
    // SAFETY: forwarded from this function's contract, which is AsyncFd::register's.
    unsafe { AsyncFd::register_with_interest(Registered(fd), interest) }
        .map_err(|e| Error::from_io("tokio AsyncFd::register", e.into()))
}

fn io_error(e: std::io::Error) -> Error {
    Error::from_io("tokio readiness", e)
}

macro_rules! async_receiver {
    ($(#[$doc:meta])* $name:ident<$($g:ident),*> wraps $inner:ty, gives $out:ty, where $($bound:tt)*) => {
        $(#[$doc])*
        pub struct $name<$($g),*> {
            // Field order is drop order: deregister from tokio before the fd closes.
            io: AsyncFd<Registered>,
            inner: $inner,
        }

        impl<$($g),*> $name<$($g),*> where $($bound)* {
            /// Registers the receiver's fd with the current tokio runtime.
            ///
            /// [`Error::Unsupported`] if the transport has no fd (System V queues).
            /// Call it inside a runtime built with `enable_io`: tokio panics otherwise.
            pub fn new(inner: $inner) -> Result<Self> {
                // SAFETY: the fd belongs to `inner`, which this wrapper owns and drops
                // after `io` (field order), and which no method lets the caller replace
                // or close (only `&` access is handed out; `into_inner` drops `io` first).
                let io = unsafe {
                    register(inner.fd().map(|fd| fd.as_raw_fd()), Interest::READABLE)?
                };
                Ok(Self { io, inner })
            }

            /// Waits for the next message. Ends with [`Error::Disconnected`] when the
            /// peer is gone, as the blocking `recv` does.
            pub async fn recv(&mut self) -> Result<$out> {
                loop {
                    match self.inner.try_recv() {
                        Err(Error::Empty) => {}
                        r => return r,
                    }
                    let mut guard = self.io.readable().await.map_err(io_error)?;
                    match self.inner.try_recv() {
                        // The read hit EAGAIN: only now may the readiness be cleared.
                        Err(Error::Empty) => guard.clear_ready(),
                        r => return r,
                    }
                }
            }

            /// The wrapped receiver. Only shared access is given: replacing it would close
            /// the fd tokio watches.
            pub fn get_ref(&self) -> &$inner {
                &self.inner
            }

            /// Unregisters from tokio and gives the receiver back.
            pub fn into_inner(self) -> $inner {
                drop(self.io);
                self.inner
            }
        }
    };
}

async_receiver!(
    /// A raw-bytes receiver that can be awaited.
    AsyncBytesReceiver<R> wraps BytesReceiver<R>, gives Vec<u8>, where R: FrameSource
);

async_receiver!(
    /// A typed receiver that can be awaited.
    AsyncReceiver<T, R> wraps Receiver<T, R>, gives T, where T: DeserializeOwned, R: FrameSource
);

/// What a sink's fd does when room comes: a byte stream (socket, pipe, FIFO) turns
/// writable; the shm ring's room notifier (an epoll set) turns readable.
fn room_interest(fd: Option<BorrowedFd<'_>>) -> Result<Interest> {
    let Some(fd) = fd else { return Ok(Interest::WRITABLE) };
    let stream = sys::is_socket_or_pipe(fd).map_err(|e| Error::os("fstat", e))?;
    Ok(if stream { Interest::WRITABLE } else { Interest::READABLE })
}

/// # Safety
///
/// As [`register`]: `sink`'s fd must stay open until the returned `AsyncFd` is dropped.
unsafe fn register_sink(sink: &impl FrameSink) -> Result<(AsyncFd<Registered>, Interest)> {
    let interest = room_interest(sink.fd())?;
    // SAFETY: forwarded from this function's contract.
    let io = unsafe { register(sink.fd().map(|fd| fd.as_raw_fd()), interest)? };
    Ok((io, interest))
}

/// One non-blocking attempt: send `frame` if not yet `committed`, then finish any rest
/// of it. `Ok(true)` when all of it is out; `Ok(false)` when the transport is full.
fn attempt(sink: &mut impl FrameSink, frame: &[u8], committed: &mut bool) -> Result<bool> {
    let now = Some(Instant::now());
    if !*committed {
        match sink.send_frame(frame, now) {
            Ok(()) => *committed = true,
            Err(Error::Timeout) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    match sink.flush(now) {
        Ok(()) => Ok(true),
        Err(Error::Timeout) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sends `frame` (or, with `frame` `None`, only finishes an earlier one's rest), waiting
/// on `io` for room.
async fn send_frame(
    io: &AsyncFd<Registered>,
    interest: Interest,
    sink: &mut impl FrameSink,
    frame: Option<&[u8]>,
) -> Result<()> {
    let mut committed = frame.is_none();
    let frame = frame.unwrap_or_default();
    loop {
        if attempt(sink, frame, &mut committed)? {
            return Ok(());
        }
        let mut guard = io.ready(interest).await.map_err(io_error)?;
        if attempt(sink, frame, &mut committed)? {
            return Ok(());
        }
        // The attempt found the transport full (EAGAIN, or a full ring that re-armed
        // its notifier): only now may the readiness be cleared.
        guard.clear_ready();
    }
}

/// A raw-bytes sender that can be awaited.
pub struct AsyncBytesSender<S = Box<dyn FrameSink>> {
    // Field order is drop order: deregister from tokio before the fd closes.
    io: AsyncFd<Registered>,
    interest: Interest,
    sink: S,
}

impl<S: FrameSink> AsyncBytesSender<S> {
    /// Registers the sender's fd with the current tokio runtime: a stream's fd for
    /// writability, a shm ring's room notifier for readability.
    ///
    /// [`Error::Unsupported`] if the transport has no fd (System V queues, a shm ring made
    /// without notifiers). Call it inside a runtime built with `enable_io`: tokio panics
    /// otherwise.
    pub fn new(inner: BytesSender<S>) -> Result<Self> {
        let sink = inner.into_inner();
        // SAFETY: the fd belongs to `sink`, which this wrapper owns and drops after `io`
        // (field order), and which no method lets the caller replace or close (only `&`
        // access is handed out; `into_inner` drops `io` first).
        let (io, interest) = unsafe { register_sink(&sink)? };
        Ok(Self { io, interest, sink })
    }

    /// Sends `msg` as one message, waiting while the transport is full. Returns once all
    /// of it went out. [`Error::Disconnected`] when the receiver is gone;
    /// [`Error::MessageTooLarge`] before anything is sent.
    ///
    /// Cancelling (dropping) the future leaves either nothing of `msg` sent, or, on a
    /// byte stream, `msg` committed with part of it still unsent: [`flush`] (or the next
    /// `send`) sends that rest first.
    ///
    /// [`flush`]: AsyncBytesSender::flush
    pub async fn send(&mut self, msg: &[u8]) -> Result<()> {
        send_frame(&self.io, self.interest, &mut self.sink, Some(msg)).await
    }

    /// Sends `msg` if it can be done without waiting; otherwise [`Error::Full`].
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        match self.sink.send_frame(msg, Some(Instant::now())) {
            Err(Error::Timeout) => Err(Error::Full),
            r => r,
        }
    }

    /// Waits until the rest of a message whose `send` was cancelled (or whose `try_send`
    /// was cut short on a byte stream) went out.
    pub async fn flush(&mut self) -> Result<()> {
        send_frame(&self.io, self.interest, &mut self.sink, None).await
    }

    /// The transport. Only shared access is given: replacing it would close the fd
    /// tokio watches.
    pub fn get_ref(&self) -> &S {
        &self.sink
    }

    /// Unregisters from tokio and gives the sender back.
    pub fn into_inner(self) -> BytesSender<S> {
        drop(self.io);
        BytesSender::new(self.sink)
    }
}

/// A typed sender that can be awaited.
pub struct AsyncSender<T, S = Box<dyn FrameSink>> {
    // Field order is drop order: deregister from tokio before the fd closes.
    io: AsyncFd<Registered>,
    interest: Interest,
    inner: Sender<T, S>,
    buf: Vec<u8>,
}

impl<T: Serialize, S: FrameSink> AsyncSender<T, S> {
    /// Registers the sender's fd with the current tokio runtime; see
    /// [`AsyncBytesSender::new`].
    pub fn new(inner: Sender<T, S>) -> Result<Self> {
        // SAFETY: the fd belongs to `inner`'s sink, which this wrapper owns and drops
        // after `io` (field order), and which no method lets the caller replace or close
        // (only `&` access is handed out; `into_inner` drops `io` first).
        let (io, interest) = unsafe { register_sink(inner.get_ref())? };
        Ok(Self { io, interest, inner, buf: Vec::new() })
    }

    /// Sends `value`, waiting while the transport is full; see
    /// [`AsyncBytesSender::send`]. On an error the value comes back in the
    /// [`SendError`].
    pub async fn send(&mut self, value: T) -> Result<(), SendError<T>> {
        self.buf.clear();
        let buf = std::mem::take(&mut self.buf);
        let buf = match postcard::to_extend(&value, buf) {
            Ok(b) => b,
            Err(e) => return Err(SendError { error: Error::Encode(e), value }),
        };
        let r = send_frame(&self.io, self.interest, self.inner.get_mut(), Some(&buf)).await;
        self.buf = buf;
        r.map_err(|error| SendError { error, value })
    }

    /// Sends `value` if it can be done without waiting; otherwise [`Error::Full`].
    pub fn try_send(&mut self, value: T) -> Result<(), SendError<T>> {
        self.inner.try_send(value)
    }

    /// Waits until the rest of a message whose `send` was cancelled went out; see
    /// [`AsyncBytesSender::flush`].
    pub async fn flush(&mut self) -> Result<()> {
        send_frame(&self.io, self.interest, self.inner.get_mut(), None).await
    }

    /// The wrapped sender. Only shared access is given: replacing it would close the fd
    /// tokio watches.
    pub fn get_ref(&self) -> &Sender<T, S> {
        &self.inner
    }

    /// Unregisters from tokio and gives the sender back.
    pub fn into_inner(self) -> Sender<T, S> {
        drop(self.io);
        self.inner
    }
}
