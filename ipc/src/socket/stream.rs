//! Connected Unix stream sockets.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::OwnedFd;

use nix::sys::socket::SockType;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{connected_socket, listener, peer_cred_method, UnixAddr};
use crate::channel::{BytesReceiver, BytesSender, Receiver, Sender, StreamSink, StreamSource};
use crate::error::{Error, Result};
use crate::sys;

/// A typed sender over a Unix stream socket (length-prefixed frames).
pub type UnixSender<T> = Sender<T, StreamSink<UnixStream>>;
/// A typed receiver over a Unix stream socket (length-prefixed frames).
pub type UnixReceiver<T> = Receiver<T, StreamSource<UnixStream>>;
/// A raw-bytes sender over a Unix stream socket.
pub type UnixBytesSender = BytesSender<StreamSink<UnixStream>>;
/// A raw-bytes receiver over a Unix stream socket.
pub type UnixBytesReceiver = BytesReceiver<StreamSource<UnixStream>>;

/// A connected Unix stream socket: a reliable, ordered byte stream, both ways.
///
/// It implements [`Read`]/[`Write`] (writes use `MSG_NOSIGNAL`: a dead peer is an
/// `EPIPE` error, not a SIGPIPE), passes fds, reports its peer's credentials, and turns
/// into a typed channel with [`UnixStream::into_channel`].
#[derive(Debug)]
pub struct UnixStream {
    fd: OwnedFd,
}

impl UnixStream {
    /// The socket as a plain fd (the fd conversions go through here).
    fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

connected_socket!(UnixStream, stream = true);
peer_cred_method!(UnixStream);

impl UnixStream {
    fn wrap(fd: OwnedFd) -> Self {
        UnixStream { fd }
    }
}

impl UnixStream {
    /// Connects to a listening stream socket, blocking while its backlog is full.
    ///
    /// Errors: [`Error::NotFound`] if the path does not exist, [`Error::Refused`] if
    /// nobody listens there (a stale socket file), [`Error::PermissionDenied`] if the
    /// socket file's mode forbids it.
    pub fn connect(addr: &UnixAddr) -> Result<UnixStream> {
        listener::connect(addr, SockType::Stream).map(|fd| UnixStream { fd })
    }

    /// A connected pair (`socketpair(2)`), close-on-exec. To hand one end to a child,
    /// `fork` (the child inherits it) or pass it over another socket.
    pub fn pair() -> Result<(UnixStream, UnixStream)> {
        let (a, b) =
            sys::unix_socketpair(SockType::Stream).map_err(|e| Error::os("socketpair", e))?;
        Ok((UnixStream { fd: a }, UnixStream { fd: b }))
    }

    /// A duplex typed channel: sends `Tx`, receives `Rx`. The socket is duplicated, one
    /// fd per direction, and switched to non-blocking mode (the channel waits in
    /// poll(2) with its deadlines). The peer sees `Disconnected` when both halves are
    /// dropped.
    pub fn into_channel<Tx: Serialize, Rx: DeserializeOwned>(
        self,
    ) -> Result<(UnixSender<Tx>, UnixReceiver<Rx>)> {
        let read = self.try_clone()?;
        Ok((self.into_sender()?, read.into_receiver()?))
    }

    /// A duplex raw-bytes channel, as [`UnixStream::into_channel`] without serde.
    pub fn into_bytes_channel(self) -> Result<(UnixBytesSender, UnixBytesReceiver)> {
        let read = self.try_clone()?;
        Ok((BytesSender::new(StreamSink::new(self)?), BytesReceiver::new(StreamSource::new(read)?)))
    }

    /// Only the sending half of a channel (switches to non-blocking mode).
    pub fn into_sender<T: Serialize>(self) -> Result<UnixSender<T>> {
        Ok(Sender::new(StreamSink::new(self)?))
    }

    /// Only the receiving half of a channel (switches to non-blocking mode).
    pub fn into_receiver<T: DeserializeOwned>(self) -> Result<UnixReceiver<T>> {
        Ok(Receiver::new(StreamSource::new(self)?))
    }
}

impl Read for UnixStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sys::read(&self.fd, buf).map_err(io::Error::from)
    }
}

impl Write for UnixStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sys::send_nosignal(&self.fd, &[IoSlice::new(buf)]).map_err(io::Error::from)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        sys::send_nosignal(&self.fd, bufs).map_err(io::Error::from)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl From<UnixStream> for std::os::unix::net::UnixStream {
    fn from(s: UnixStream) -> Self {
        std::os::unix::net::UnixStream::from(s.fd)
    }
}

impl From<std::os::unix::net::UnixStream> for UnixStream {
    fn from(s: std::os::unix::net::UnixStream) -> Self {
        UnixStream { fd: s.into() }
    }
}
