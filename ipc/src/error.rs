//! Errors for every `interproc-ipc` operation.
//!
//! One enum with variants a caller can act on. Each converts into [`std::io::Error`]
//! with a matching [`std::io::ErrorKind`], so `?` works in code that speaks `io::Result`.

use std::fmt;
use std::io;

use nix::errno::Errno;

/// What went wrong in an IPC operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer closed its end or died. Nothing more will arrive (or be accepted).
    #[error("peer disconnected: it closed its end or exited")]
    Disconnected,
    /// The deadline passed before the operation could complete.
    #[error("timed out")]
    Timeout,
    /// A `try_send` found no room; nothing was sent.
    #[error("channel full: no room to send without blocking")]
    Full,
    /// A `try_recv` found no complete message.
    #[error("channel empty: no complete message is ready")]
    Empty,
    /// A message is larger than the channel's configured maximum frame size.
    /// Nothing was sent.
    #[error("message of {size} bytes exceeds the maximum frame size of {max} bytes; raise it with `with_max_frame`")]
    MessageTooLarge {
        /// Size of the encoded message.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A shared-memory ring was asked for a capacity over the largest ring (the capacity
    /// is rounded up to a power of two first). Nothing was created.
    #[error("a ring of {capacity} bytes (rounded up to a power of two) is over the largest ring of {max} bytes: the ring's indices are wrapping 32-bit counters; ask for at most {max} bytes")]
    CapacityTooLarge {
        /// The capacity asked for.
        capacity: usize,
        /// The largest capacity.
        max: usize,
    },
    /// A ring end (or another handle tied to the process that attached it) used in
    /// another process: a copy that a `fork`ed child inherited. It refuses, since the
    /// parent's end still uses the same shared state. Nothing was sent or received.
    #[error("this {what} was attached by process {owner}, and this is process {pid}: it is a copy a fork child inherited, which cannot use the parent's end; attach a fresh end in this process (in the child, after the fork), and drop the copy")]
    ForkedCopy {
        /// The kind of end, for example `shm ring producer`.
        what: &'static str,
        /// The process that attached it.
        owner: u32,
        /// The calling process.
        pid: u32,
    },
    /// A kernel limit stops the operation.
    #[error("{what} exceeds the kernel limit {limit} = {value}; {hint}")]
    LimitExceeded {
        /// What hit the limit, for example "message of 9000 bytes".
        what: String,
        /// The sysctl name, for example `kernel.msgmax`.
        limit: &'static str,
        /// The limit's current value.
        value: u64,
        /// How to raise it.
        hint: &'static str,
    },
    /// A Unix socket path does not fit in `sockaddr_un.sun_path`.
    #[error("socket path {path:?} is {len} bytes; sun_path holds at most {max} (108 including the NUL); use a shorter path or the abstract namespace")]
    PathTooLong {
        /// The path that was given.
        path: String,
        /// Its length in bytes.
        len: usize,
        /// The longest path that fits.
        max: usize,
    },
    /// The named object does not exist.
    #[error("{what} does not exist")]
    NotFound {
        /// The object, for example `FIFO /run/user/0/x`.
        what: String,
    },
    /// The path names an object of another type, for example a regular file where a
    /// FIFO was expected.
    #[error("{what} is a {found}, not a {expected}")]
    WrongType {
        /// The object, for example `FIFO /run/user/0/x`.
        what: String,
        /// The type the operation needs, for example `FIFO`.
        expected: &'static str,
        /// The type found there, for example `regular file`.
        found: &'static str,
    },
    /// The named object already exists (an exclusive create failed).
    #[error("{what} already exists; open it instead, or remove it (`interproc clean` removes interproc objects whose owner died)")]
    AlreadyExists {
        /// The object.
        what: String,
    },
    /// Nobody accepts connections at the address (`ECONNREFUSED`). For a Unix socket
    /// file this means a stale file: its listener died or closed without removing it.
    /// A new listener on that path reclaims it.
    #[error("connection refused: nobody listens on {what} (a stale socket file, or the server is not up yet)")]
    Refused {
        /// The address.
        what: String,
    },
    /// The caller lacks permission on the object.
    #[error("permission denied on {what}")]
    PermissionDenied {
        /// The object.
        what: String,
    },
    /// A non-blocking open of a FIFO for writing found no reader (ENXIO).
    #[error("{what} has no reader; open it blocking, or start the reader first")]
    NoReader {
        /// The FIFO.
        what: String,
    },
    /// The peer sent bytes that are not a valid frame (bad magic, impossible length).
    /// The connection cannot be resynchronised: drop it.
    #[error("malformed frame from peer: {reason}")]
    Malformed {
        /// What was wrong.
        reason: String,
    },
    /// The peer closed the stream in the middle of a frame.
    #[error("truncated frame: peer closed after {got} of {expected} bytes")]
    Truncated {
        /// Bytes the frame should have had.
        expected: usize,
        /// Bytes that arrived.
        got: usize,
    },
    /// Ancillary data (passed fds) did not fit and was truncated by the kernel (MSG_CTRUNC).
    /// Any fds that did arrive were closed. The bytes of that message were consumed too:
    /// on a stream socket they are lost, so treat the connection as broken; ask for as
    /// many fds as the peer can send (`recv_with_fds`'s `max_fds`).
    #[error("control data truncated (MSG_CTRUNC): the peer passed more fds than the receive buffer holds")]
    ControlTruncated,
    /// A System V message type that msgsnd(2)/msgrcv(2) cannot use: a message's type
    /// must be positive, and so must the `n` of a receive by type.
    #[error("invalid message type {mtype}: System V message types must be greater than 0")]
    InvalidMessageType {
        /// The type that was given.
        mtype: i64,
    },
    /// The next matching message is larger than the receive buffer. It was left in the
    /// queue, not truncated (interproc never passes `MSG_NOERROR`).
    #[error("the next matching message is larger than the receive buffer of {capacity} bytes; it was left in the queue: receive it with a larger buffer")]
    ReceiveBufferTooSmall {
        /// Bytes the receive buffer holds.
        capacity: usize,
    },
    /// A reactor backend cannot honour the requested mode (for example edge-triggered
    /// mode on poll or select). Nothing was registered or changed.
    #[error("{what} is not supported by the {backend} backend: {hint}")]
    Unsupported {
        /// The mode that was asked for.
        what: &'static str,
        /// The backend that refused it.
        backend: &'static str,
        /// What to do instead.
        hint: &'static str,
    },
    /// select(2) cannot watch a fd at or above `FD_SETSIZE`: its `fd_set` is a fixed
    /// bitmap. Nothing was registered.
    #[error("select cannot watch fd {fd}: an fd_set holds only fds below FD_SETSIZE = {fd_setsize}; use the poll or epoll backend")]
    FdTooLarge {
        /// The fd that was given.
        fd: i32,
        /// `FD_SETSIZE` (1024 on Linux).
        fd_setsize: usize,
    },
    /// The value could not be encoded.
    #[error("encoding the message failed: {0}")]
    Encode(#[source] postcard::Error),
    /// The frame arrived whole but does not decode as the expected type.
    #[error("decoding the message failed: {0}")]
    Decode(#[source] postcard::Error),
    /// A System V object (semaphore set, segment) was removed (`IPC_RMID`) while this
    /// handle used it, possibly while it waited: its owner dropped it, or `ipcrm` removed
    /// it. Nothing more can be done through this handle.
    #[error("{what} was removed (IPC_RMID) while in use: its owner dropped it or `ipcrm` removed it; create or open it again")]
    Removed {
        /// The object, for example `semaphore set 0x49000001`.
        what: String,
    },
    /// A shared-memory segment could not be created, opened or validated.
    #[error(transparent)]
    Shm(#[from] interproc_sync::shm::ShmError),
    /// Any other OS error, with the operation that failed.
    #[error("{op}: {errno}")]
    Os {
        /// The operation, for example `msgsnd`.
        op: &'static str,
        /// The errno.
        errno: Errno,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Maps an errno from `op` on the object `what` to the matching variant.
    pub(crate) fn from_errno(op: &'static str, what: impl fmt::Display, errno: Errno) -> Self {
        match errno {
            Errno::ENOENT => Error::NotFound { what: what.to_string() },
            Errno::EEXIST => Error::AlreadyExists { what: what.to_string() },
            Errno::EACCES | Errno::EPERM => Error::PermissionDenied { what: what.to_string() },
            Errno::ECONNREFUSED => Error::Refused { what: what.to_string() },
            Errno::EPIPE | Errno::ECONNRESET | Errno::ENOTCONN | Errno::EIDRM => {
                Error::Disconnected
            }
            errno => Error::Os { op, errno },
        }
    }

    /// An OS error with no named object.
    pub(crate) fn os(op: &'static str, errno: Errno) -> Self {
        match errno {
            Errno::EPIPE | Errno::ECONNRESET | Errno::ENOTCONN | Errno::EIDRM => {
                Error::Disconnected
            }
            errno => Error::Os { op, errno },
        }
    }

    /// Maps an [`io::Error`] from `op` (a std call: spawning a thread, resolving a path,
    /// writing an owner record) to the matching variant, as [`Error::os`] maps an errno.
    ///
    /// An `io::Error` made from an interproc [`Error`] gives that error back. One without
    /// an errno is mapped by its kind: `TimedOut` is [`Error::Timeout`], `InvalidInput`
    /// is `Os(EINVAL)`, anything else `Os(EIO)`.
    pub(crate) fn from_io(op: &'static str, e: io::Error) -> Self {
        match Self::io_errno(e) {
            Ok(errno) => Error::os(op, errno),
            Err(done) => done,
        }
    }

    /// [`Error::from_io`] for an operation on the named object `what`, mapping the errno
    /// as [`Error::from_errno`] does (`NotFound`, `PermissionDenied`, ...).
    pub(crate) fn from_io_on(op: &'static str, what: impl fmt::Display, e: io::Error) -> Self {
        match Self::io_errno(e) {
            Ok(errno) => Error::from_errno(op, what, errno),
            Err(done) => done,
        }
    }

    /// The errno inside `e`, or the finished error when it carries none.
    fn io_errno(e: io::Error) -> std::result::Result<Errno, Error> {
        if let Some(code) = e.raw_os_error() {
            return Ok(Errno::from_raw(code));
        }
        let kind = e.kind();
        if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            if let Some(Ok(inner)) = e.into_inner().map(|b| b.downcast::<Error>()) {
                return Err(*inner);
            }
        }
        match kind {
            io::ErrorKind::TimedOut => Err(Error::Timeout),
            io::ErrorKind::InvalidInput => Ok(Errno::EINVAL),
            _ => Ok(Errno::EIO),
        }
    }

    /// True for [`Error::Disconnected`].
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Error::Disconnected)
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        use io::ErrorKind as K;
        let kind = match &e {
            Error::Disconnected => K::BrokenPipe,
            Error::InvalidMessageType { .. } | Error::ReceiveBufferTooSmall { .. } => {
                K::InvalidInput
            }
            Error::Timeout => K::TimedOut,
            Error::Full | Error::Empty => K::WouldBlock,
            Error::NotFound { .. } => K::NotFound,
            Error::AlreadyExists { .. } => K::AlreadyExists,
            Error::PermissionDenied { .. } => K::PermissionDenied,
            Error::NoReader { .. } => K::NotConnected,
            Error::Refused { .. } => K::ConnectionRefused,
            Error::Truncated { .. } => K::UnexpectedEof,
            Error::Os { errno, .. } => return io::Error::from_raw_os_error(*errno as i32),
            Error::MessageTooLarge { .. }
            | Error::CapacityTooLarge { .. }
            | Error::ForkedCopy { .. }
            | Error::LimitExceeded { .. }
            | Error::PathTooLong { .. }
            | Error::WrongType { .. }
            | Error::FdTooLarge { .. } => K::InvalidInput,
            Error::Unsupported { .. } => K::Unsupported,
            Error::Removed { .. } => K::NotFound,
            Error::Shm(e) => io::Error::from(e.clone()).kind(),
            Error::Malformed { .. }
            | Error::ControlTruncated
            | Error::Encode(_)
            | Error::Decode(_) => K::InvalidData,
        };
        io::Error::new(kind, e)
    }
}

/// A failed send. It hands the value back, so nothing is lost.
pub struct SendError<T> {
    /// Why the send failed.
    pub error: Error,
    /// The value that was not sent.
    pub value: T,
}

impl<T> SendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendError").field("error", &self.error).finish_non_exhaustive()
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "send failed: {}", self.error)
    }
}

impl<T> std::error::Error for SendError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl<T> From<SendError<T>> for Error {
    fn from(e: SendError<T>) -> Self {
        e.error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `from_io` maps an errno as `os` does, unwraps an interproc error carried inside
    /// an `io::Error`, and maps an errno-less error by its kind.
    #[test]
    fn from_io_maps_errno_inner_error_and_kind() {
        let e = Error::from_io("write", io::Error::from_raw_os_error(libc::EPIPE));
        assert!(e.is_disconnected());
        let e = Error::from_io("x", io::Error::from_raw_os_error(libc::EMFILE));
        assert!(matches!(e, Error::Os { op: "x", errno: Errno::EMFILE }));
        let e = Error::from_io("x", io::Error::from(Error::Full));
        assert!(matches!(e, Error::Full));
        let e = Error::from_io("x", io::Error::new(io::ErrorKind::TimedOut, "slow"));
        assert!(matches!(e, Error::Timeout));
        let e = Error::from_io("x", io::Error::new(io::ErrorKind::InvalidInput, "bad"));
        assert!(matches!(e, Error::Os { errno: Errno::EINVAL, .. }));
        let e = Error::from_io_on("open", "FIFO /x", io::Error::from_raw_os_error(libc::ENOENT));
        assert!(matches!(e, Error::NotFound { what } if what == "FIFO /x"));
    }
}
