//! Anonymous pipes.
//!
//! [`pipe()`] calls `pipe2(O_CLOEXEC)`: the ends are not leaked into programs this
//! process `exec`s, but a `fork`ed child inherits them. Close the end a process does not
//! use, or the reader never sees EOF (pipe(7)).
//!
//! Both ends implement [`Read`]/[`Write`] and [`AsFd`]. For messages, wrap them in a
//! channel with [`channel()`] or [`PipeWriter::into_sender`]/[`PipeReader::into_receiver`].
//!
//! [`Read`]: std::io::Read
//! [`Write`]: std::io::Write
//! [`AsFd`]: std::os::fd::AsFd
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

use std::os::fd::OwnedFd;

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
    Ok((w.into_bytes_sender()?, r.into_bytes_receiver()?))
}

crate::stream_end::stream_end!(reader PipeReader, "pipe", PipeReceiver, PipeBytesReceiver);
crate::stream_end::stream_end!(writer PipeWriter, "pipe", PipeSender, PipeBytesSender);
