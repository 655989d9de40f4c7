//! Anonymous pipes.
//!
//! [`pipe()`] calls `pipe2(O_CLOEXEC)`: the ends are not leaked into programs this
//! process `exec`s, but a `fork`ed child inherits them. Close the end a process does not
//! use, or the reader never sees EOF (pipe(7)).
//!
//! Both ends implement [`Read`]/[`Write`] and [`AsFd`]. For messages, wrap them in a
//! channel with [`channel()`] or [`PipeWriter::into_sender`]/[`PipeReader::into_receiver`].
//!
//! ```
//! use std::io::{Read, Write};
//! let (mut r, mut w) = interproc_ipc::pipe::pipe()?;
//! w.write_all(b"ping")?;
//! let mut buf = [0u8; 4];
//! r.read_exact(&mut buf)?;
//! assert_eq!(&buf, b"ping");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use nix::fcntl::OFlag;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::channel::{BytesReceiver, BytesSender, Receiver, Sender, StreamSink, StreamSource};
use crate::error::{Error, Result};
use crate::sys;

/// The read end of a pipe.
#[derive(Debug)]
pub struct PipeReader(OwnedFd);

/// The write end of a pipe.
#[derive(Debug)]
pub struct PipeWriter(OwnedFd);

/// Creates a pipe: (read end, write end), both `O_CLOEXEC`.
pub fn pipe() -> Result<(PipeReader, PipeWriter)> {
    let (r, w) = sys::pipe2(OFlag::empty()).map_err(|e| Error::os("pipe2", e))?;
    Ok((PipeReader(r), PipeWriter(w)))
}

/// A typed sender over a pipe.
pub type PipeSender<T> = Sender<T, StreamSink<PipeWriter>>;
/// A typed receiver over a pipe.
pub type PipeReceiver<T> = Receiver<T, StreamSource<PipeReader>>;
/// A raw-bytes sender over a pipe.
pub type PipeBytesSender = BytesSender<StreamSink<PipeWriter>>;
/// A raw-bytes receiver over a pipe.
pub type PipeBytesReceiver = BytesReceiver<StreamSource<PipeReader>>;

/// A typed channel over a new pipe: (sender, receiver).
pub fn channel<T: Serialize + DeserializeOwned>() -> Result<(PipeSender<T>, PipeReceiver<T>)> {
    let (r, w) = pipe()?;
    Ok((w.into_sender()?, r.into_receiver()?))
}

/// A raw-bytes channel over a new pipe: (sender, receiver).
pub fn bytes_channel() -> Result<(PipeBytesSender, PipeBytesReceiver)> {
    let (r, w) = pipe()?;
    Ok((BytesSender::new(StreamSink::new(w)?), BytesReceiver::new(StreamSource::new(r)?)))
}

macro_rules! pipe_end {
    ($ty:ident) => {
        impl $ty {
            /// Switches `O_NONBLOCK` on or off. A non-blocking end returns
            /// [`io::ErrorKind::WouldBlock`] instead of waiting.
            pub fn set_nonblocking(&self, on: bool) -> Result<()> {
                sys::set_nonblocking(&self.0, on).map_err(|e| Error::os("fcntl(O_NONBLOCK)", e))
            }

            /// Whether `O_NONBLOCK` is set.
            pub fn is_nonblocking(&self) -> Result<bool> {
                sys::is_nonblocking(&self.0).map_err(|e| Error::os("fcntl(F_GETFL)", e))
            }
        }

        impl AsFd for $ty {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.0.as_fd()
            }
        }

        impl AsRawFd for $ty {
            fn as_raw_fd(&self) -> RawFd {
                self.0.as_raw_fd()
            }
        }

        impl From<OwnedFd> for $ty {
            /// Adopts an fd, for example one a parent passed to a spawned child.
            fn from(fd: OwnedFd) -> Self {
                $ty(fd)
            }
        }

        impl From<$ty> for OwnedFd {
            fn from(p: $ty) -> OwnedFd {
                p.0
            }
        }

        impl IntoRawFd for $ty {
            fn into_raw_fd(self) -> RawFd {
                self.0.into_raw_fd()
            }
        }

        impl FromRawFd for $ty {
            /// # Safety
            /// `fd` must be an open pipe end that nothing else owns.
            unsafe fn from_raw_fd(fd: RawFd) -> Self {
                // SAFETY: the caller guarantees `fd` is open and owned by nobody else.
                $ty(unsafe { OwnedFd::from_raw_fd(fd) })
            }
        }
    };
}

pipe_end!(PipeReader);
pipe_end!(PipeWriter);

impl PipeReader {
    /// Wraps this end in a typed receiver (switches it to non-blocking mode).
    pub fn into_receiver<T: DeserializeOwned>(self) -> Result<Receiver<T, StreamSource<Self>>> {
        Ok(Receiver::new(StreamSource::new(self)?))
    }
}

impl PipeWriter {
    /// Wraps this end in a typed sender (switches it to non-blocking mode).
    pub fn into_sender<T: Serialize>(self) -> Result<Sender<T, StreamSink<Self>>> {
        Ok(Sender::new(StreamSink::new(self)?))
    }
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sys::read(&self.0, buf).map_err(io::Error::from)
    }
}

impl Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sys::write(&self.0, buf).map_err(io::Error::from)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
