//! Unix datagram sockets.

use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, SockType};

use super::listener::{self, BoundFile};
use super::{connected_socket, UnixAddr};
use crate::error::{Error, Result};
use crate::sys;

/// A Unix datagram socket: reliable and ordered on one machine, message boundaries
/// kept, no connection needed.
///
/// A socket bound to a path owns its socket file like a listener does: mode 0600, an
/// owner record, a stale file reclaimed on bind, the file removed on drop. To get
/// replies, the sender must be bound too ([`UnixDatagram::bind`]); an unbound sender's
/// address is unnamed. Converting a bound socket into an `OwnedFd` gives up the file:
/// it is removed then, and the fd lives on unbound by name.
///
/// ```
/// use interproc_ipc::socket::{UnixAddr, UnixDatagram};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server_addr = UnixAddr::abstract_name(interproc_ipc::names::unique_name("dgram"))?;
/// let server = UnixDatagram::bind(&server_addr)?;
/// let client = UnixDatagram::unbound()?;
/// client.send_to(b"ping", &server_addr)?;
/// let mut buf = [0u8; 16];
/// let (n, from) = server.recv_from(&mut buf)?;
/// assert_eq!(&buf[..n], b"ping");
/// assert!(from.is_unnamed());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct UnixDatagram {
    // Field order: the fd closes before the file is removed.
    fd: OwnedFd,
    _file: Option<BoundFile>,
}

connected_socket!(UnixDatagram, stream = false);

impl UnixDatagram {
    /// The socket as a plain fd (`OwnedFd::from`, `into_raw_fd` go through here). A
    /// socket file it is bound to goes with it: interproc no longer removes the file when
    /// the fd closes, since the socket lives on in whoever holds the fd. The owner record
    /// stays, locked while this process lives, so `interproc clean` removes the file once
    /// this process has exited.
    fn into_fd(self) -> OwnedFd {
        if let Some(file) = self._file {
            // Dropping it would unlink the file under the live socket.
            std::mem::forget(file);
        }
        self.fd
    }

    fn wrap(fd: OwnedFd) -> Self {
        UnixDatagram { fd, _file: None }
    }

    /// A datagram socket bound to `addr` (see the type's docs for socket files).
    /// Errors as for [`UnixListener::bind`](super::UnixListener::bind).
    pub fn bind(addr: &UnixAddr) -> Result<UnixDatagram> {
        let (fd, file) = listener::bind(addr, SockType::Datagram, false)?;
        Ok(UnixDatagram { fd, _file: file })
    }

    /// An unbound datagram socket, for sending with [`UnixDatagram::send_to`].
    pub fn unbound() -> Result<UnixDatagram> {
        let fd = sys::unix_socket(SockType::Datagram, false).map_err(|e| Error::os("socket", e))?;
        Ok(Self::wrap(fd))
    }

    /// A connected pair (`socketpair(2)`), close-on-exec.
    pub fn pair() -> Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) =
            sys::unix_socketpair(SockType::Datagram).map_err(|e| Error::os("socketpair", e))?;
        Ok((Self::wrap(a), Self::wrap(b)))
    }

    /// Sets the default destination for [`UnixDatagram::send`], and receives only from it.
    pub fn connect(&self, addr: &UnixAddr) -> Result<()> {
        sys::connect(&self.fd, &addr.to_raw()?)
            .map_err(|e| Error::from_errno("connect", format!("socket {addr}"), e))
    }

    /// Sends one datagram to `addr`. `NotFound` if no socket file is there, `Refused`
    /// if nobody has it bound.
    pub fn send_to(&self, buf: &[u8], addr: &UnixAddr) -> Result<usize> {
        sys::send_to(&self.fd, buf, &addr.to_raw()?, MsgFlags::empty())
            .map_err(|e| self.send_error(e, addr))
    }

    /// Sends one datagram to the connected peer.
    pub fn send(&self, buf: &[u8]) -> Result<usize> {
        sys::send_with_fds(&self.fd, &[std::io::IoSlice::new(buf)], &[], MsgFlags::empty())
            .map_err(|e| self.send_error(e, &UnixAddr(super::Kind::Unnamed)))
    }

    fn send_error(&self, e: Errno, addr: &UnixAddr) -> Error {
        match e {
            Errno::EMSGSIZE => Error::LimitExceeded {
                what: "a datagram".to_string(),
                limit: "SO_SNDBUF - 32",
                value: sys::send_buffer(&self.fd).unwrap_or(0).saturating_sub(32) as u64,
                hint: "a datagram must fit in the sender's socket buffer; send smaller ones",
            },
            e if addr.is_unnamed() => Error::os("send", e),
            e => Error::from_errno("sendto", format!("socket {addr}"), e),
        }
    }

    /// Receives one datagram into `buf`: its length and the sender's address. A
    /// datagram larger than `buf` is [`Error::MessageTooLarge`] (and discarded), never
    /// cut silently.
    pub fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, UnixAddr)> {
        let got = sys::recv_with_fds(&self.fd, buf, 0, MsgFlags::MSG_TRUNC)
            .map_err(|e| Error::os("recvmsg", e))?;
        if got.len > buf.len() || got.flags.contains(MsgFlags::MSG_TRUNC) {
            return Err(Error::MessageTooLarge { size: got.len, max: buf.len() });
        }
        let from =
            got.addr.as_ref().map(UnixAddr::from_raw).unwrap_or(UnixAddr(super::Kind::Unnamed));
        Ok((got.len, from))
    }

    /// Receives one datagram into `buf`, as [`UnixDatagram::recv_from`] without the address.
    pub fn recv(&self, buf: &mut [u8]) -> Result<usize> {
        self.recv_from(buf).map(|(n, _)| n)
    }
}
