//! TCP: the same channels as Unix streams, for peers on other machines.
//!
//! [`TcpListener`] and [`TcpStream`] wrap std's types (which are close-on-exec already)
//! and add what the rest of interproc expects: typed errors, accept with a timeout,
//! `TCP_NODELAY` on by default (a channel sends whole messages; Nagle's algorithm would
//! hold small ones back waiting for an ACK), and typed channels with the same
//! length-prefixed frames as [`crate::socket::UnixStream`].
//!
//! ```
//! use interproc_ipc::tcp::{TcpListener, TcpStream};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let client = TcpStream::connect(listener.local_addr()?)?;
//! let server = listener.accept()?;
//!
//! let (mut tx, _) = client.into_channel::<Vec<u32>, ()>()?;
//! let (_, mut rx) = server.into_channel::<(), Vec<u32>>()?;
//! tx.send(vec![1, 2, 3])?;
//! assert_eq!(rx.recv()?, vec![1, 2, 3]);
//! # Ok(()) }
//! ```
//!
//! A peer that closes or dies shows up as `Disconnected`: EOF, or `ECONNRESET` when it
//! died with unread data. A peer on another machine that vanishes without a FIN or RST
//! (a cable pulled) is only noticed by a timeout: use `recv_timeout` there.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::PollFlags;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::channel::{BytesReceiver, BytesSender, Receiver, Sender, StreamSink, StreamSource};
use crate::error::{Error, Result};
use crate::sys;

/// A typed sender over TCP (length-prefixed frames).
pub type TcpSender<T> = Sender<T, StreamSink<TcpStream>>;
/// A typed receiver over TCP (length-prefixed frames).
pub type TcpReceiver<T> = Receiver<T, StreamSource<TcpStream>>;
/// A raw-bytes sender over TCP.
pub type TcpBytesSender = BytesSender<StreamSink<TcpStream>>;
/// A raw-bytes receiver over TCP.
pub type TcpBytesReceiver = BytesReceiver<StreamSource<TcpStream>>;

/// Resolves `addr` up front, so errors can name the addresses tried.
fn resolve(addr: impl ToSocketAddrs) -> Result<(Vec<SocketAddr>, String)> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| Error::NotFound { what: format!("TCP address ({e})") })?
        .collect();
    if addrs.is_empty() {
        return Err(Error::NotFound { what: "TCP address (it resolved to nothing)".into() });
    }
    let shown = addrs.iter().map(SocketAddr::to_string).collect::<Vec<_>>().join(", ");
    Ok((addrs, shown))
}

fn io_error(op: &'static str, what: impl std::fmt::Display, e: io::Error) -> Error {
    match e.raw_os_error().map(Errno::from_raw) {
        Some(Errno::EADDRINUSE) => Error::AlreadyExists { what: format!("TCP address {what}") },
        Some(Errno::ETIMEDOUT) => Error::Timeout,
        // Address resolution failed: std says so without an errno.
        None if e.kind() == io::ErrorKind::InvalidInput => {
            Error::NotFound { what: format!("TCP address {what} ({e})") }
        }
        _ => Error::from_io_on(op, format!("TCP {what}"), e),
    }
}

/// A listening TCP socket.
#[derive(Debug)]
pub struct TcpListener {
    inner: std::net::TcpListener,
}

impl TcpListener {
    /// Binds and listens on `addr` (std sets `SO_REUSEADDR`). Port 0 picks a free port:
    /// read it back with [`TcpListener::local_addr`]. A port in use is
    /// [`Error::AlreadyExists`].
    pub fn bind(addr: impl ToSocketAddrs) -> Result<TcpListener> {
        let (addrs, shown) = resolve(addr)?;
        let inner =
            std::net::TcpListener::bind(&addrs[..]).map_err(|e| io_error("bind", &shown, e))?;
        // Always non-blocking: accept waits in poll(2), so a connection that another
        // process sharing this listener took first cannot block us past a deadline.
        inner.set_nonblocking(true).map_err(|e| io_error("fcntl(O_NONBLOCK)", &shown, e))?;
        Ok(TcpListener { inner })
    }

    /// The address it listens on, with the port the kernel picked for port 0.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.inner.local_addr().map_err(|e| io_error("getsockname", "listener", e))
    }

    fn accept_deadline(&self, deadline: Option<Instant>) -> Result<TcpStream> {
        loop {
            match self.inner.accept() {
                Ok((s, _)) => return TcpStream::from_std(s),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.raw_os_error() == Some(Errno::ECONNABORTED as i32) => {}
                Err(e) => return Err(io_error("accept4", "listener", e)),
            }
            match sys::wait_fd(&self.inner, PollFlags::POLLIN, deadline) {
                Ok(Some(_)) => {}
                Ok(None) => return Err(Error::Timeout),
                Err(e) => return Err(Error::os("poll", e)),
            }
        }
    }

    /// Accepts the next connection, waiting as long as it takes. The stream is
    /// blocking, with `TCP_NODELAY` on.
    pub fn accept(&self) -> Result<TcpStream> {
        self.accept_deadline(None)
    }

    /// Accepts the next connection, waiting at most `timeout`; then `Timeout`.
    pub fn accept_timeout(&self, timeout: Duration) -> Result<TcpStream> {
        self.accept_deadline(Instant::now().checked_add(timeout))
    }

    /// Accepts a connection if one is pending; `Ok(None)` if not.
    pub fn try_accept(&self) -> Result<Option<TcpStream>> {
        match self.accept_deadline(Some(Instant::now())) {
            Ok(s) => Ok(Some(s)),
            Err(Error::Timeout) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The std listener (non-blocking).
    pub fn into_std(self) -> std::net::TcpListener {
        self.inner
    }
}

impl AsFd for TcpListener {
    /// The listening socket, always non-blocking.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

/// A connected TCP stream, `TCP_NODELAY` on.
#[derive(Debug)]
pub struct TcpStream {
    inner: std::net::TcpStream,
}

impl TcpStream {
    /// Wraps a std stream, turning `TCP_NODELAY` on and `O_NONBLOCK` off.
    pub fn from_std(inner: std::net::TcpStream) -> Result<TcpStream> {
        inner.set_nodelay(true).map_err(|e| io_error("setsockopt(TCP_NODELAY)", "stream", e))?;
        inner.set_nonblocking(false).map_err(|e| io_error("fcntl(O_NONBLOCK)", "stream", e))?;
        Ok(TcpStream { inner })
    }

    /// Connects to `addr`, trying each address it resolves to.
    /// Nobody listening is [`Error::Refused`].
    pub fn connect(addr: impl ToSocketAddrs) -> Result<TcpStream> {
        let (addrs, shown) = resolve(addr)?;
        let s =
            std::net::TcpStream::connect(&addrs[..]).map_err(|e| io_error("connect", &shown, e))?;
        TcpStream::from_std(s)
    }

    /// Connects to `addr`, giving up with `Timeout` after `timeout`.
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> Result<TcpStream> {
        let s = std::net::TcpStream::connect_timeout(addr, timeout)
            .map_err(|e| io_error("connect", addr, e))?;
        TcpStream::from_std(s)
    }

    /// The local address.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.inner.local_addr().map_err(|e| io_error("getsockname", "stream", e))
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Result<SocketAddr> {
        self.inner.peer_addr().map_err(|e| io_error("getpeername", "stream", e))
    }

    /// Turns `TCP_NODELAY` on or off.
    pub fn set_nodelay(&self, on: bool) -> Result<()> {
        self.inner.set_nodelay(on).map_err(|e| io_error("setsockopt(TCP_NODELAY)", "stream", e))
    }

    /// Whether `TCP_NODELAY` is on.
    pub fn nodelay(&self) -> Result<bool> {
        self.inner.nodelay().map_err(|e| io_error("getsockopt(TCP_NODELAY)", "stream", e))
    }

    /// Switches `O_NONBLOCK` on or off (shared by every handle on the socket).
    pub fn set_nonblocking(&self, on: bool) -> Result<()> {
        self.inner.set_nonblocking(on).map_err(|e| io_error("fcntl(O_NONBLOCK)", "stream", e))
    }

    /// A second handle on the same socket (`F_DUPFD_CLOEXEC`).
    pub fn try_clone(&self) -> Result<TcpStream> {
        let inner =
            self.inner.try_clone().map_err(|e| io_error("fcntl(F_DUPFD_CLOEXEC)", "stream", e))?;
        Ok(TcpStream { inner })
    }

    /// Shuts down the sending direction: the peer reads the rest, then EOF.
    pub fn shutdown_write(&self) -> Result<()> {
        self.inner
            .shutdown(std::net::Shutdown::Write)
            .map_err(|e| io_error("shutdown", "stream", e))
    }

    /// A duplex typed channel: sends `Tx`, receives `Rx`. The socket is duplicated, one
    /// fd per direction, and switched to non-blocking mode. The peer sees
    /// `Disconnected` when both halves are dropped.
    pub fn into_channel<Tx: Serialize, Rx: DeserializeOwned>(
        self,
    ) -> Result<(TcpSender<Tx>, TcpReceiver<Rx>)> {
        let read = self.try_clone()?;
        Ok((self.into_sender()?, read.into_receiver()?))
    }

    /// A duplex raw-bytes channel, as [`TcpStream::into_channel`] without serde.
    pub fn into_bytes_channel(self) -> Result<(TcpBytesSender, TcpBytesReceiver)> {
        let read = self.try_clone()?;
        Ok((BytesSender::new(StreamSink::new(self)?), BytesReceiver::new(StreamSource::new(read)?)))
    }

    /// Only the sending half of a channel (switches to non-blocking mode).
    pub fn into_sender<T: Serialize>(self) -> Result<TcpSender<T>> {
        Ok(Sender::new(StreamSink::new(self)?))
    }

    /// Only the receiving half of a channel (switches to non-blocking mode).
    pub fn into_receiver<T: DeserializeOwned>(self) -> Result<TcpReceiver<T>> {
        Ok(Receiver::new(StreamSource::new(self)?))
    }

    /// The std stream.
    pub fn into_std(self) -> std::net::TcpStream {
        self.inner
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Write for TcpStream {
    /// std sends with `MSG_NOSIGNAL`: a dead peer is `EPIPE`, not SIGPIPE.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for TcpStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl From<TcpStream> for OwnedFd {
    fn from(s: TcpStream) -> OwnedFd {
        s.inner.into()
    }
}
