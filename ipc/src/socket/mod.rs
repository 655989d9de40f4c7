//! Unix domain sockets: stream, seqpacket and datagram; fd passing; peer credentials.
//!
//! | type | kind | what it carries |
//! |---|---|---|
//! | [`UnixListener`] → [`UnixStream`] | `SOCK_STREAM` | bytes; typed channels with length-prefixed frames |
//! | [`SeqpacketListener`] → [`UnixSeqpacket`] | `SOCK_SEQPACKET` | whole messages, boundaries kept; typed channels with one packet per frame |
//! | [`UnixDatagram`] | `SOCK_DGRAM` | whole datagrams, `send_to`/`recv_from` |
//!
//! # Addresses
//!
//! A [`UnixAddr`] is either a filesystem path ([`UnixAddr::path`]) or a name in Linux's
//! abstract namespace ([`UnixAddr::abstract_name`]). Both must fit in
//! `sockaddr_un.sun_path`: at most [`SUN_PATH_MAX`] (107) bytes, 108 with the
//! terminating NUL. A longer one is [`Error::PathTooLong`].
//!
//! - A **filesystem** socket is a file. Its permissions decide who may connect (connect
//!   needs write permission): interproc binds it with mode **0600**. The listener
//!   registers an owner record ([`crate::names`]) and removes the file and the record
//!   when it is dropped. A file left behind by a process that died (nobody accepts on
//!   it: `connect` gets `ECONNREFUSED`) is *stale*: binding the same path reclaims it.
//!   A live listener there gives [`Error::AlreadyExists`]; a path that is not a socket
//!   gives [`Error::WrongType`] and is never deleted.
//! - An **abstract** name lives in the network namespace, not on disk: nothing is left
//!   behind when the last socket closes, but file permissions do not apply, so any
//!   process in the namespace may connect. Check [`PeerCred`] if that matters.
//!
//! Connecting to a path that does not exist is [`Error::NotFound`]; to a stale socket
//! file (or an abstract name nobody listens on) it is [`Error::Refused`]; to a file that
//! is not a socket, [`Error::WrongType`].
//!
//! ## How a stale socket file is told from a live one
//!
//! When `bind` finds the path taken (`EADDRINUSE`): a file that is not a socket is
//! refused. An interproc owner record for the path whose lock is still held means a live
//! owner: `AlreadyExists`, without touching the socket. Otherwise a non-blocking socket
//! of the same type probes it with `connect`: `ECONNREFUSED` means nobody has it bound,
//! so the file is unlinked and bound again; success (or `EAGAIN`, a full backlog) means
//! a live server, which sees the probe as a client that connects and leaves at once.
//! Check, unlink and bind are not atomic, so interproc processes of one user serialize
//! them with an `flock` on their private runtime directory; two of them reclaiming one
//! path get one winner and one `AlreadyExists`. The file is removed on drop only by the
//! process that bound it (a forked child leaves it alone) and only if it is still the
//! same inode.
//!
//! # fd passing
//!
//! `send_with_fds` passes open file descriptors with `SCM_RIGHTS` (up to 253 per
//! message, the kernel's `SCM_MAX_FD`); the receiver gets new fds for the same open
//! files as `Vec<OwnedFd>`, close-on-exec (`MSG_CMSG_CLOEXEC`). If the receiver's
//! `max_fds` is too small the kernel truncates the control data (`MSG_CTRUNC`): the fds
//! that did arrive are closed and the call returns [`Error::ControlTruncated`].
//!
//! # Peer credentials
//!
//! [`UnixStream::peer_cred`] and [`UnixSeqpacket::peer_cred`] return the pid, uid and
//! gid the kernel recorded for the peer at `connect`/`socketpair` time (`SO_PEERCRED`).
//!
//! # Channels
//!
//! A connected stream or seqpacket socket becomes a duplex typed channel with
//! `into_channel`: the socket is duplicated (`F_DUPFD_CLOEXEC`), one fd for each
//! direction. The peer sees `Disconnected` once *both* halves are dropped (or the
//! process exits).
//!
//! ```
//! use interproc_ipc::socket::{UnixAddr, UnixListener, UnixStream};
//! use interproc_ipc::names::unique_name;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let addr = UnixAddr::abstract_name(unique_name("doc"))?;
//! let listener = UnixListener::bind(&addr)?;
//! let client = UnixStream::connect(&addr)?;
//! let server = listener.accept()?;
//! assert_eq!(server.peer_cred()?.pid, std::process::id());
//!
//! let (mut tx, _rx) = client.into_channel::<String, ()>()?;
//! let (_tx, mut rx) = server.into_channel::<(), String>()?;
//! tx.send("hello".to_string())?;
//! assert_eq!(rx.recv()?, "hello");
//! # Ok(()) }
//! ```

mod datagram;
mod listener;
mod seqpacket;
mod stream;

use std::ffi::OsStr;
use std::fmt;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::socket::MsgFlags;

pub use self::datagram::UnixDatagram;
pub use self::listener::{SeqpacketListener, UnixListener};
pub use self::seqpacket::{
    SeqpacketBytesReceiver, SeqpacketBytesSender, SeqpacketReceiver, SeqpacketSender,
    SeqpacketSink, SeqpacketSource, UnixSeqpacket, PACKET_TAG,
};
pub use self::stream::{UnixBytesReceiver, UnixBytesSender, UnixReceiver, UnixSender, UnixStream};
use crate::error::{Error, Result};
use crate::sys::{self, RawUnixAddr};

/// The longest filesystem path or abstract name a Unix socket address holds, in bytes:
/// `sun_path` is 108 bytes and a path needs its terminating NUL (an abstract name its
/// leading NUL).
pub const SUN_PATH_MAX: usize = 107;

/// The most fds one message may pass (`SCM_MAX_FD`).
pub const MAX_FDS_PER_MESSAGE: usize = sys::SCM_MAX_FD;

/// The address of a Unix domain socket: a filesystem path or an abstract name.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UnixAddr(Kind);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Kind {
    Path(PathBuf),
    Abstract(Vec<u8>),
    Unnamed,
}

impl UnixAddr {
    /// A socket file at `path`. Fails with [`Error::PathTooLong`] if the path does not
    /// fit in `sun_path` (over [`SUN_PATH_MAX`] bytes).
    pub fn path(path: impl AsRef<Path>) -> Result<UnixAddr> {
        let path = path.as_ref();
        let bytes = path.as_os_str().as_bytes();
        if bytes.len() > SUN_PATH_MAX {
            return Err(Error::PathTooLong {
                path: path.display().to_string(),
                len: bytes.len(),
                max: SUN_PATH_MAX,
            });
        }
        if bytes.is_empty() || bytes.contains(&0) {
            return Err(Error::Os {
                op: "socket path (empty or holds a NUL)",
                errno: Errno::EINVAL,
            });
        }
        Ok(UnixAddr(Kind::Path(path.to_path_buf())))
    }

    /// A name in the abstract namespace (Linux): no file is created, and the name
    /// disappears with the last socket bound to it. Any bytes are allowed, at most
    /// [`SUN_PATH_MAX`] of them.
    pub fn abstract_name(name: impl AsRef<[u8]>) -> Result<UnixAddr> {
        let name = name.as_ref();
        if name.len() > SUN_PATH_MAX {
            return Err(Error::PathTooLong {
                path: format!("@{}", name.escape_ascii()),
                len: name.len(),
                max: SUN_PATH_MAX,
            });
        }
        Ok(UnixAddr(Kind::Abstract(name.to_vec())))
    }

    /// The filesystem path, if this is one.
    pub fn as_path(&self) -> Option<&Path> {
        match &self.0 {
            Kind::Path(p) => Some(p),
            _ => None,
        }
    }

    /// The abstract name, if this is one.
    pub fn as_abstract_name(&self) -> Option<&[u8]> {
        match &self.0 {
            Kind::Abstract(n) => Some(n),
            _ => None,
        }
    }

    /// True for the address of a socket that was never bound (a `socketpair` end, or
    /// an unbound datagram sender).
    pub fn is_unnamed(&self) -> bool {
        matches!(self.0, Kind::Unnamed)
    }

    pub(crate) fn to_raw(&self) -> Result<RawUnixAddr> {
        let r = match &self.0 {
            Kind::Path(p) => RawUnixAddr::new(p.as_path()),
            Kind::Abstract(n) => RawUnixAddr::new_abstract(n),
            Kind::Unnamed => Ok(RawUnixAddr::new_unnamed()),
        };
        r.map_err(|e| Error::from_errno("sockaddr_un", self, e))
    }

    pub(crate) fn from_raw(raw: &RawUnixAddr) -> UnixAddr {
        if let Some(p) = raw.path() {
            UnixAddr(Kind::Path(p.to_path_buf()))
        } else if let Some(n) = raw.as_abstract() {
            UnixAddr(Kind::Abstract(n.to_vec()))
        } else {
            UnixAddr(Kind::Unnamed)
        }
    }
}

impl fmt::Display for UnixAddr {
    /// A path as itself, an abstract name as `@name` (the `ss`/`netstat` notation),
    /// an unnamed address as `(unnamed)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Path(p) => write!(f, "{}", p.display()),
            Kind::Abstract(n) => write!(f, "@{}", n.escape_ascii()),
            Kind::Unnamed => f.write_str("(unnamed)"),
        }
    }
}

impl fmt::Debug for UnixAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnixAddr({self})")
    }
}

impl TryFrom<&Path> for UnixAddr {
    type Error = Error;
    fn try_from(p: &Path) -> Result<UnixAddr> {
        UnixAddr::path(p)
    }
}

impl TryFrom<&OsStr> for UnixAddr {
    type Error = Error;
    fn try_from(p: &OsStr) -> Result<UnixAddr> {
        UnixAddr::path(p)
    }
}

/// The credentials of the process at the other end of a connected socket, as the
/// kernel recorded them when the connection was made (`SO_PEERCRED`, unix(7)). They
/// cannot be forged by the peer; they do not change if the peer later changes its ids
/// or hands the socket to another process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerCred {
    /// The peer's process id, as seen from this process's pid namespace (0 if the peer
    /// lives in a namespace this one cannot see).
    pub pid: u32,
    /// The peer's effective user id.
    pub uid: u32,
    /// The peer's effective group id.
    pub gid: u32,
}

fn peer_cred(fd: BorrowedFd<'_>) -> Result<PeerCred> {
    let (pid, uid, gid) =
        sys::peer_cred(fd).map_err(|e| Error::os("getsockopt(SO_PEERCRED)", e))?;
    Ok(PeerCred { pid: pid as u32, uid, gid })
}

fn local_addr(fd: BorrowedFd<'_>) -> Result<UnixAddr> {
    let raw = sys::local_unix_addr(fd).map_err(|e| Error::os("getsockname", e))?;
    Ok(UnixAddr::from_raw(&raw))
}

fn peer_addr(fd: BorrowedFd<'_>) -> Result<UnixAddr> {
    let raw = sys::peer_unix_addr(fd).map_err(|e| Error::os("getpeername", e))?;
    Ok(UnixAddr::from_raw(&raw))
}

/// Sends `payload` plus `fds` in one `sendmsg`. A stream needs at least one byte of
/// payload: the kernel attaches passed fds to data.
fn send_with_fds(
    fd: BorrowedFd<'_>,
    payload: &[u8],
    fds: &[BorrowedFd<'_>],
    stream: bool,
) -> Result<usize> {
    if fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(Error::LimitExceeded {
            what: format!("passing {} fds in one message", fds.len()),
            limit: "SCM_MAX_FD",
            value: MAX_FDS_PER_MESSAGE as u64,
            hint: "split them over several messages",
        });
    }
    if stream && payload.is_empty() && !fds.is_empty() {
        return Err(Error::Os {
            op: "sendmsg(SCM_RIGHTS) on a stream needs at least one byte of payload",
            errno: Errno::EINVAL,
        });
    }
    sys::send_with_fds(fd, &[std::io::IoSlice::new(payload)], fds, MsgFlags::empty())
        .map_err(|e| Error::os("sendmsg(SCM_RIGHTS)", e))
}

/// Receives into `buf` with room for `max_fds` fds. On a message socket (`stream ==
/// false`) a message larger than `buf` is an error, not a silent cut.
fn recv_with_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
    stream: bool,
) -> Result<(usize, Vec<OwnedFd>)> {
    // MSG_TRUNC on a stream socket means "discard" for TCP; only ask for the real length
    // on message sockets, where it is what unix(7) documents.
    let flags = if stream { MsgFlags::empty() } else { MsgFlags::MSG_TRUNC };
    let got = sys::recv_with_fds(fd, buf, max_fds, flags)
        .map_err(|e| Error::os("recvmsg(SCM_RIGHTS)", e))?;
    if got.flags.contains(MsgFlags::MSG_CTRUNC) {
        // `got.fds` are closed as it drops.
        return Err(Error::ControlTruncated);
    }
    if !stream && (got.len > buf.len() || got.flags.contains(MsgFlags::MSG_TRUNC)) {
        return Err(Error::MessageTooLarge { size: got.len, max: buf.len() });
    }
    Ok((got.len, got.fds))
}

/// The fd plumbing every socket type shares.
macro_rules! socket_fd {
    ($ty:ident) => {
        impl std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                std::os::fd::AsFd::as_fd(&self.fd)
            }
        }

        impl std::os::fd::AsRawFd for $ty {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                std::os::fd::AsRawFd::as_raw_fd(&self.fd)
            }
        }

        impl From<$ty> for std::os::fd::OwnedFd {
            fn from(s: $ty) -> std::os::fd::OwnedFd {
                s.into_fd()
            }
        }

        impl std::os::fd::IntoRawFd for $ty {
            fn into_raw_fd(self) -> std::os::fd::RawFd {
                std::os::fd::IntoRawFd::into_raw_fd(self.into_fd())
            }
        }
    };
}

/// Connected-socket methods shared by stream, seqpacket and datagram sockets.
macro_rules! connected_socket {
    ($ty:ident, stream = $stream:expr) => {
        impl $ty {
            /// Adopts an fd that is a Unix socket of this type, for example one passed
            /// to a spawned child or received with `recv_with_fds`.
            pub fn from_owned_fd(fd: std::os::fd::OwnedFd) -> Self {
                Self::wrap(fd)
            }

            /// A second handle on the same socket (`F_DUPFD_CLOEXEC`). Both share the
            /// socket's state, including `O_NONBLOCK`.
            pub fn try_clone(&self) -> $crate::Result<Self> {
                let fd = $crate::sys::dup_cloexec(&self.fd)
                    .map_err(|e| $crate::Error::os("fcntl(F_DUPFD_CLOEXEC)", e))?;
                Ok(Self::wrap(fd))
            }

            /// Switches `O_NONBLOCK` on or off: reads, writes and fd passing then return
            /// `EAGAIN` ([`std::io::ErrorKind::WouldBlock`]) instead of waiting.
            pub fn set_nonblocking(&self, on: bool) -> $crate::Result<()> {
                $crate::sys::set_nonblocking(&self.fd, on)
                    .map_err(|e| $crate::Error::os("fcntl(O_NONBLOCK)", e))
            }

            /// Whether `O_NONBLOCK` is set.
            pub fn is_nonblocking(&self) -> $crate::Result<bool> {
                $crate::sys::is_nonblocking(&self.fd)
                    .map_err(|e| $crate::Error::os("fcntl(F_GETFL)", e))
            }

            /// The address this socket is bound to ([`UnixAddr::is_unnamed`] if none).
            pub fn local_addr(&self) -> $crate::Result<$crate::socket::UnixAddr> {
                $crate::socket::local_addr(std::os::fd::AsFd::as_fd(&self.fd))
            }

            /// The address of the connected peer.
            pub fn peer_addr(&self) -> $crate::Result<$crate::socket::UnixAddr> {
                $crate::socket::peer_addr(std::os::fd::AsFd::as_fd(&self.fd))
            }

            /// Sends `payload` and passes `fds` (`SCM_RIGHTS`) in one `sendmsg`; returns
            /// the payload bytes sent. The fds stay open here: the peer gets its own
            /// copies. At most [`MAX_FDS_PER_MESSAGE`](crate::socket::MAX_FDS_PER_MESSAGE).
            pub fn send_with_fds(
                &self,
                payload: &[u8],
                fds: &[std::os::fd::BorrowedFd<'_>],
            ) -> $crate::Result<usize> {
                $crate::socket::send_with_fds(
                    std::os::fd::AsFd::as_fd(&self.fd),
                    payload,
                    fds,
                    $stream,
                )
            }

            /// Receives into `buf`, accepting up to `max_fds` passed fds, which arrive
            /// close-on-exec. Returns the payload length and the fds.
            ///
            /// If the peer passed more than `max_fds` fds, the ones that arrived are
            /// closed and the result is [`Error::ControlTruncated`](crate::Error::ControlTruncated).
            /// On a message socket (seqpacket, datagram) a message larger than `buf` is
            /// [`Error::MessageTooLarge`](crate::Error::MessageTooLarge) (its fds are closed);
            /// it is never cut silently.
            pub fn recv_with_fds(
                &self,
                buf: &mut [u8],
                max_fds: usize,
            ) -> $crate::Result<(usize, Vec<std::os::fd::OwnedFd>)> {
                $crate::socket::recv_with_fds(
                    std::os::fd::AsFd::as_fd(&self.fd),
                    buf,
                    max_fds,
                    $stream,
                )
            }
        }

        $crate::socket::socket_fd!($ty);
    };
}

/// Connected stream and seqpacket sockets also know their peer's credentials.
macro_rules! peer_cred_method {
    ($ty:ident) => {
        impl $ty {
            /// The pid, uid and gid of the peer process, as of when the connection was
            /// made (`SO_PEERCRED`). For a `pair()`, the process that created it.
            pub fn peer_cred(&self) -> $crate::Result<$crate::socket::PeerCred> {
                $crate::socket::peer_cred(std::os::fd::AsFd::as_fd(&self.fd))
            }

            /// Shuts down the sending direction: the peer reads the rest, then EOF
            /// (`Disconnected`). Affects every handle on the socket, in every process.
            pub fn shutdown_write(&self) -> $crate::Result<()> {
                $crate::sys::shutdown_write(&self.fd).map_err(|e| $crate::Error::os("shutdown", e))
            }
        }
    };
}

use {connected_socket, peer_cred_method, socket_fd};

/// What the kernel says about a socket file on disk.
#[derive(Debug)]
struct FileId {
    dev: u64,
    ino: u64,
}

fn file_id(path: &Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).ok()?;
    Some(FileId { dev: m.dev(), ino: m.ino() })
}

fn is_same_file(path: &Path, id: &FileId) -> bool {
    file_id(path).is_some_and(|now| now.dev == id.dev && now.ino == id.ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_length_limit_is_107_bytes() {
        let ok = "/".repeat(SUN_PATH_MAX);
        assert!(UnixAddr::path(&ok).is_ok());
        let long = "x".repeat(SUN_PATH_MAX + 1);
        let err = UnixAddr::path(&long).unwrap_err();
        assert!(matches!(err, Error::PathTooLong { len: 108, max: 107, .. }), "{err:?}");
        assert!(err.to_string().contains("108"), "{err}");
        assert!(UnixAddr::abstract_name(vec![b'a'; 108]).is_err());
        assert!(UnixAddr::abstract_name(vec![0u8; 107]).is_ok());
    }

    #[test]
    fn display_marks_abstract_names() {
        assert_eq!(UnixAddr::abstract_name("a\0b").unwrap().to_string(), "@a\\x00b");
        assert_eq!(UnixAddr::path("/x/y").unwrap().to_string(), "/x/y");
    }
}
