//! Awaiting interproc receivers from tokio, through [`AsyncFd`] (cargo feature `tokio`).
//!
//! [`AsyncBytesReceiver`] and [`AsyncReceiver`] wrap a channel receiver whose transport
//! has an fd (pipe, FIFO, Unix and TCP streams, seqpacket, and a shared-memory ring made
//! with notifiers: `channel::shm::ShmRing::anonymous_with_notifier`) and offer
//! `recv().await`.
//! The receiver's non-blocking `try_recv` does the reading; tokio's reactor (epoll,
//! edge-triggered) says when to try again. Readiness is cleared only after `try_recv`
//! returned [`Error::Empty`], which it does only once a read hit `EAGAIN`, so no wake-up
//! is lost even when several frames arrive together.
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

use std::os::fd::{AsRawFd, RawFd};

use ::tokio::io::unix::AsyncFd;
use ::tokio::io::Interest;
use serde::de::DeserializeOwned;

use crate::channel::{BytesReceiver, FrameSource, Receiver};
use crate::error::{Error, Result};

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
unsafe fn register(fd: Option<RawFd>) -> Result<AsyncFd<Registered>> {
    let fd = fd.ok_or(Error::Unsupported {
        what: "awaiting a transport without an fd",
        backend: "tokio",
        hint: "System V queues have no fd (bridge one with reactor::MsgqBridge); a shm ring \
               has one only if made with notifiers (ShmRing::anonymous_with_notifier)",
    })?;
    // SAFETY: forwarded from this function's contract, which is AsyncFd::register's.
    unsafe { AsyncFd::register_with_interest(Registered(fd), Interest::READABLE) }
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
                let io = unsafe { register(inner.fd().map(|fd| fd.as_raw_fd()))? };
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
