//! Connected Unix seqpacket sockets, and the message channel over them.
//!
//! `SOCK_SEQPACKET` keeps message boundaries: one `send` is one `recv`, whole. So a
//! channel needs no length prefix: [`SeqpacketSink`] sends one packet per frame and
//! [`SeqpacketSource`] receives one. Each packet starts with one tag byte
//! ([`PACKET_TAG`]) for a reason: an empty frame (a `()` value, an empty byte message)
//! would otherwise be a zero-length packet, and `recv` returns 0 both for that and for
//! end-of-file. With the tag, 0 always means the peer is gone.
//!
//! The largest packet the kernel takes is bounded by the *sender's* send buffer
//! (`SO_SNDBUF` minus 32 bytes of accounting, `unix_dgram_sendmsg` in
//! `net/unix/af_unix.c`), and `SO_SNDBUF` itself by `2 × net.core.wmem_max` (socket(7)).
//! [`SeqpacketSink`] clamps its maximum to that cap ([`FrameSink::max_frame`] tells the
//! result) and raises `SO_SNDBUF` on demand, when a packet would not fit in it as it is:
//! small-message channels keep the default buffer and its back-pressure.

use std::io::IoSlice;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sys::socket::{MsgFlags, SockType};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{connected_socket, listener, peer_cred_method, UnixAddr};
use crate::channel::{
    BytesReceiver, BytesSender, FrameSink, FrameSource, Receiver, Sender, DEFAULT_MAX_FRAME,
};
use crate::error::{Error, Result};
use crate::sys;

/// The first byte of every packet a [`SeqpacketSink`] sends: format version 1, data.
pub const PACKET_TAG: u8 = 0xD1;

/// Bytes of `SO_SNDBUF` a packet cannot use: the kernel refuses a packet longer than
/// `sk_sndbuf - 32` with `EMSGSIZE`.
const KERNEL_OVERHEAD: usize = 32;

/// The largest maximum a [`SeqpacketSource`] accepts: `sk_sndbuf` is an `int`, so no
/// sender can build a larger packet.
const SOURCE_CEILING: usize = i32::MAX as usize - KERNEL_OVERHEAD - 1;

/// A typed sender over a Unix seqpacket socket (one packet per message).
pub type SeqpacketSender<T> = Sender<T, SeqpacketSink>;
/// A typed receiver over a Unix seqpacket socket (one packet per message).
pub type SeqpacketReceiver<T> = Receiver<T, SeqpacketSource>;
/// A raw-bytes sender over a Unix seqpacket socket.
pub type SeqpacketBytesSender = BytesSender<SeqpacketSink>;
/// A raw-bytes receiver over a Unix seqpacket socket.
pub type SeqpacketBytesReceiver = BytesReceiver<SeqpacketSource>;

/// A connected Unix seqpacket socket: reliable, ordered, and message boundaries kept.
///
/// ```
/// use interproc_ipc::socket::UnixSeqpacket;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (a, b) = UnixSeqpacket::pair()?;
/// a.send(b"one")?;
/// a.send(b"two, longer")?;
/// let mut buf = [0u8; 64];
/// assert_eq!(b.recv(&mut buf)?, 3); // one message per recv, never merged
/// assert_eq!(b.recv(&mut buf)?, 11);
///
/// // As a typed channel: one packet per message.
/// let (a, b) = UnixSeqpacket::pair()?;
/// let (mut tx, _) = a.into_channel::<Vec<()>, ()>()?;
/// let (_, mut rx) = b.into_channel::<(), Vec<()>>()?;
/// tx.send(vec![(); 3])?;
/// assert_eq!(rx.recv()?.len(), 3);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct UnixSeqpacket {
    fd: OwnedFd,
}

impl UnixSeqpacket {
    /// The socket as a plain fd (the fd conversions go through here).
    fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

connected_socket!(UnixSeqpacket, stream = false);
peer_cred_method!(UnixSeqpacket);

impl UnixSeqpacket {
    fn wrap(fd: OwnedFd) -> Self {
        UnixSeqpacket { fd }
    }
}

impl UnixSeqpacket {
    /// Connects to a [`SeqpacketListener`](super::SeqpacketListener).
    ///
    /// Errors: [`Error::NotFound`] if the path does not exist, [`Error::Refused`] if
    /// nobody listens there (a stale socket file).
    pub fn connect(addr: &UnixAddr) -> Result<UnixSeqpacket> {
        listener::connect(addr, SockType::SeqPacket).map(|fd| UnixSeqpacket { fd })
    }

    /// A connected pair (`socketpair(2)`), close-on-exec.
    pub fn pair() -> Result<(UnixSeqpacket, UnixSeqpacket)> {
        let (a, b) =
            sys::unix_socketpair(SockType::SeqPacket).map_err(|e| Error::os("socketpair", e))?;
        Ok((UnixSeqpacket { fd: a }, UnixSeqpacket { fd: b }))
    }

    /// Sends `packet` as one message (raw: no tag byte). Honours `O_NONBLOCK`.
    /// A packet over the send buffer's limit is `LimitExceeded`.
    pub fn send(&self, packet: &[u8]) -> Result<()> {
        match sys::send_with_fds(&self.fd, &[IoSlice::new(packet)], &[], MsgFlags::empty()) {
            Ok(_) => Ok(()),
            Err(Errno::EMSGSIZE) => Err(self.too_large_for_kernel(packet.len())),
            Err(e) => Err(Error::os("sendmsg", e)),
        }
    }

    /// Receives one message into `buf` (raw: any tag byte is returned as data). A
    /// message larger than `buf` is [`Error::MessageTooLarge`] and is discarded, never
    /// cut silently. `Ok(0)` is an empty packet or end-of-file: use
    /// [`UnixSeqpacket::into_channel`] for a protocol that tells them apart.
    pub fn recv(&self, buf: &mut [u8]) -> Result<usize> {
        let n = sys::recv(&self.fd, buf, MsgFlags::MSG_TRUNC).map_err(|e| Error::os("recv", e))?;
        if n > buf.len() {
            return Err(Error::MessageTooLarge { size: n, max: buf.len() });
        }
        Ok(n)
    }

    /// The largest packet the kernel accepts from this socket now (`SO_SNDBUF - 32`).
    pub fn max_packet(&self) -> Result<usize> {
        let sndbuf =
            sys::send_buffer(&self.fd).map_err(|e| Error::os("getsockopt(SO_SNDBUF)", e))?;
        Ok(sndbuf.saturating_sub(KERNEL_OVERHEAD))
    }

    fn too_large_for_kernel(&self, len: usize) -> Error {
        Error::LimitExceeded {
            what: format!("a seqpacket message of {len} bytes"),
            limit: "SO_SNDBUF - 32",
            value: self.max_packet().unwrap_or(0) as u64,
            hint: "a packet must fit in the sender's socket buffer, which is capped at \
                   2 x net.core.wmem_max: raise that with `sysctl -w net.core.wmem_max=BYTES` \
                   and set a larger max frame, or send smaller messages",
        }
    }

    /// A duplex typed channel: sends `Tx`, receives `Rx`, one packet per message. The
    /// socket is duplicated, one fd per direction; the peer sees `Disconnected` when
    /// both halves are dropped.
    pub fn into_channel<Tx: Serialize, Rx: DeserializeOwned>(
        self,
    ) -> Result<(SeqpacketSender<Tx>, SeqpacketReceiver<Rx>)> {
        let read = self.try_clone()?;
        Ok((self.into_sender()?, read.into_receiver()?))
    }

    /// A duplex raw-bytes channel, as [`UnixSeqpacket::into_channel`] without serde.
    pub fn into_bytes_channel(self) -> Result<(SeqpacketBytesSender, SeqpacketBytesReceiver)> {
        let read = self.try_clone()?;
        Ok((
            BytesSender::new(SeqpacketSink::new(self)?),
            BytesReceiver::new(SeqpacketSource::new(read)),
        ))
    }

    /// Only the sending half of a channel.
    pub fn into_sender<T: Serialize>(self) -> Result<SeqpacketSender<T>> {
        Ok(Sender::new(SeqpacketSink::new(self)?))
    }

    /// Only the receiving half of a channel.
    pub fn into_receiver<T: DeserializeOwned>(self) -> Result<SeqpacketReceiver<T>> {
        Ok(Receiver::new(SeqpacketSource::new(self)))
    }
}

/// Sends frames over a seqpacket socket, one packet each.
///
/// It does not touch the socket's `O_NONBLOCK` flag: every call uses `MSG_DONTWAIT` and
/// waits in poll(2) with the caller's deadline.
#[derive(Debug)]
pub struct SeqpacketSink {
    sock: UnixSeqpacket,
    /// The effective maximum: `requested`, clamped to the largest payload the send
    /// buffer can ever carry.
    max: usize,
    requested: usize,
}

impl SeqpacketSink {
    /// Wraps a connected seqpacket socket. The maximum frame starts at
    /// [`DEFAULT_MAX_FRAME`], clamped to what the largest send buffer carries.
    pub fn new(sock: UnixSeqpacket) -> Result<Self> {
        let mut sink = SeqpacketSink { sock, max: 0, requested: 0 };
        sink.set_max_frame(DEFAULT_MAX_FRAME);
        Ok(sink)
    }

    /// The largest payload any send buffer this socket may get can carry: from
    /// `2 × net.core.wmem_max`, or the current buffer if that sysctl cannot be read
    /// (or the buffer was forced larger).
    fn kernel_cap(&self) -> usize {
        let current = self.sock.max_packet().unwrap_or(0);
        let cap = sys::wmem_max().map_or(0, |w| (2 * w).saturating_sub(KERNEL_OVERHEAD));
        cap.max(current).saturating_sub(1)
    }

    /// Makes the send buffer big enough for a payload of `len` bytes, if it is not.
    fn fit(&self, len: usize) {
        let needed = len.saturating_add(1 + KERNEL_OVERHEAD);
        if self.sock.max_packet().unwrap_or(0) < len + 1 {
            // The kernel doubles the value it is given and caps it (socket(7)); the send
            // reports what still does not fit.
            let _ = sys::set_send_buffer(&self.sock.fd, needed.div_ceil(2).min(i32::MAX as usize));
        }
    }

    /// The socket.
    pub fn get_ref(&self) -> &UnixSeqpacket {
        &self.sock
    }

    fn wait_writable(&self, deadline: Option<Instant>) -> Result<()> {
        match sys::wait_fd(&self.sock.fd, PollFlags::POLLOUT, deadline) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(Error::Timeout),
            Err(e) => Err(Error::os("poll", e)),
        }
    }
}

impl FrameSink for SeqpacketSink {
    fn send_frame(&mut self, payload: &[u8], deadline: Option<Instant>) -> Result<()> {
        if payload.len() > self.max {
            return Err(if payload.len() <= self.requested {
                // The caller allowed it; the kernel does not.
                self.sock.too_large_for_kernel(payload.len() + 1)
            } else {
                Error::MessageTooLarge { size: payload.len(), max: self.max }
            });
        }
        self.fit(payload.len());
        let iov = [IoSlice::new(&[PACKET_TAG]), IoSlice::new(payload)];
        loop {
            match sys::send_with_fds(&self.sock.fd, &iov, &[], MsgFlags::MSG_DONTWAIT) {
                // A packet is sent whole or not at all.
                Ok(_) => return Ok(()),
                Err(Errno::EAGAIN) => self.wait_writable(deadline)?,
                Err(Errno::EMSGSIZE) => {
                    return Err(self.sock.too_large_for_kernel(payload.len() + 1))
                }
                Err(e) => return Err(Error::os("sendmsg", e)),
            }
        }
    }

    fn max_frame(&self) -> usize {
        self.max
    }

    /// Sets the maximum, clamped to what the largest send buffer carries
    /// (`2 × net.core.wmem_max - 33`). The buffer itself grows when a packet needs it.
    fn set_max_frame(&mut self, max: usize) {
        self.requested = max;
        self.max = max.min(self.kernel_cap());
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        Some(std::os::fd::AsFd::as_fd(&self.sock))
    }
}

/// Receives frames from a seqpacket socket, one packet each.
///
/// Its buffer holds the largest allowed packet; it is allocated zeroed on first use,
/// which the allocator serves from fresh zero pages (calloc/mmap), so only the pages
/// that large messages touch take memory. A packet over the maximum is
/// [`Error::Malformed`], as on every transport, never a silently cut message; unlike a
/// byte stream, the socket stays usable: the kernel discarded that packet (`MSG_TRUNC`)
/// and the next one is received whole.
#[derive(Debug)]
pub struct SeqpacketSource {
    sock: UnixSeqpacket,
    max: usize,
    buf: Vec<u8>,
}

impl SeqpacketSource {
    /// Wraps a connected seqpacket socket, with a maximum of [`DEFAULT_MAX_FRAME`].
    pub fn new(sock: UnixSeqpacket) -> Self {
        SeqpacketSource { sock, max: DEFAULT_MAX_FRAME, buf: Vec::new() }
    }

    /// The socket.
    pub fn get_ref(&self) -> &UnixSeqpacket {
        &self.sock
    }
}

impl FrameSource for SeqpacketSource {
    fn recv_frame(&mut self, deadline: Option<Instant>) -> Result<&[u8]> {
        if self.buf.len() != self.max + 1 {
            self.buf = vec![0; self.max + 1];
        }
        let n = loop {
            match sys::recv(
                &self.sock.fd,
                &mut self.buf,
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC,
            ) {
                // Every frame carries a tag byte, so only end-of-file reads as 0.
                Ok(0) => return Err(Error::Disconnected),
                Ok(n) => break n,
                Err(Errno::EAGAIN) => {
                    match sys::wait_fd(&self.sock.fd, PollFlags::POLLIN, deadline) {
                        Ok(Some(_)) => {}
                        Ok(None) => return Err(Error::Timeout),
                        Err(e) => return Err(Error::os("poll", e)),
                    }
                }
                Err(Errno::ECONNRESET) => return Err(Error::Disconnected),
                Err(e) => return Err(Error::os("recv", e)),
            }
        };
        if n > self.buf.len() {
            return Err(Error::Malformed {
                reason: format!(
                    "seqpacket message of {} bytes is over the maximum of {}; it was discarded \
                     (the next message can still be received)",
                    n - 1,
                    self.max
                ),
            });
        }
        if self.buf[0] != PACKET_TAG {
            return Err(Error::Malformed {
                reason: format!(
                    "seqpacket message starts with {:#04x}, not the tag {PACKET_TAG:#04x}",
                    self.buf[0]
                ),
            });
        }
        Ok(&self.buf[1..n])
    }

    fn max_frame(&self) -> usize {
        self.max
    }

    fn set_max_frame(&mut self, max: usize) {
        self.max = max.min(SOURCE_CEILING);
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        Some(std::os::fd::AsFd::as_fd(&self.sock))
    }
}

impl std::os::fd::AsFd for SeqpacketSink {
    fn as_fd(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.sock)
    }
}

impl std::os::fd::AsFd for SeqpacketSource {
    fn as_fd(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.sock)
    }
}
