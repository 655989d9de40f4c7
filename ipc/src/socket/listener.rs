//! Binding Unix socket addresses, reclaiming stale socket files, and listening.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sys::socket::SockType;

use super::{file_id, is_same_file, FileId, UnixAddr, UnixSeqpacket, UnixStream};
use crate::error::{Error, Result};
use crate::names::{Kind, Registration};
use crate::sys;

/// The mode of every socket file interproc creates: only the owner may connect.
const SOCKET_FILE_MODE: u32 = 0o600;

/// A socket file this process created: removed, with its owner record, on drop.
#[derive(Debug)]
pub(super) struct BoundFile {
    path: PathBuf,
    id: FileId,
    record: Registration,
}

impl Drop for BoundFile {
    fn drop(&mut self) {
        // Only the process that bound the file removes it: a forked child that drops its
        // copy of the socket must not pull the file from under its parent (the record
        // guards itself the same way).
        if !self.record.in_owner_process() {
            return;
        }
        // Remove the file only if it is still ours: another process may have replaced a
        // path we were told to give up.
        if is_same_file(&self.path, &self.id) {
            let _ = std::fs::remove_file(&self.path);
        }
        // `record` drops after this body: the record outlives the file.
    }
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf())
    }
}

/// Creates a socket of type `ty` bound to `addr`. For a path, reclaims a stale socket
/// file, sets mode 0600 and registers an owner record. With `listen`, also listens
/// (before anyone can connect, the mode is already 0600: connect to a bound socket that
/// does not listen yet is refused).
pub(super) fn bind(
    addr: &UnixAddr,
    ty: SockType,
    listen: bool,
) -> Result<(OwnedFd, Option<BoundFile>)> {
    let raw = addr.to_raw()?;
    let fd = sys::unix_socket(ty, false).map_err(|e| Error::os("socket", e))?;
    let Some(path) = addr.as_path() else {
        sys::bind(&fd, &raw).map_err(|e| match e {
            Errno::EADDRINUSE => Error::AlreadyExists { what: format!("abstract socket {addr}") },
            e => Error::from_errno("bind", format_args!("abstract socket {addr}"), e),
        })?;
        if listen {
            sys::listen(&fd).map_err(|e| Error::os("listen", e))?;
        }
        return Ok((fd, None));
    };
    let what = || format!("socket {}", path.display());

    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let _serialized = bind_lock();
    match sys::bind(&fd, &raw) {
        Ok(()) => {}
        Err(Errno::EADDRINUSE) => {
            reclaim_stale(path, ty)?;
            sys::bind(&fd, &raw).map_err(|e| match e {
                Errno::EADDRINUSE => Error::AlreadyExists { what: what() },
                e => Error::from_errno("bind", what(), e),
            })?;
        }
        Err(Errno::ENOENT) => {
            return Err(Error::NotFound { what: format!("directory {}", parent.display()) })
        }
        Err(e) => return Err(Error::from_errno("bind", what(), e)),
    }
    // From here on the file is ours: remove it if anything below fails.
    let Some(id) = file_id(path) else {
        return Err(Error::NotFound { what: what() });
    };
    let cleanup = |e: Error| {
        if is_same_file(path, &id) {
            let _ = std::fs::remove_file(path);
        }
        e
    };
    // Not following a symlink that may have replaced the socket since the bind.
    sys::chmod_nofollow(path, SOCKET_FILE_MODE)
        .map_err(|e| cleanup(Error::from_errno("chmod", what(), e)))?;
    let record = Registration::register(Kind::SocketFile, &absolute(path).to_string_lossy())
        .map_err(|e| cleanup(Error::from_io_on("owner record", what(), e)))?;
    let bound = BoundFile {
        // Absolute, so a later chdir does not point the drop elsewhere.
        path: absolute(path),
        id,
        record,
    };
    if listen {
        // `bound` drops on error, removing the file and the record.
        sys::listen(&fd).map_err(|e| Error::os("listen", e))?;
    }
    Ok((fd, Some(bound)))
}

/// Serializes this user's interproc socket binds: the check-unlink-bind sequence of
/// [`reclaim_stale`] is not atomic, and two processes reclaiming the same stale path
/// must not unlink each other's fresh socket. The lock is an `flock` on the
/// [`runtime_dir`](crate::names::runtime_dir) itself: private (mode 0700), so other users
/// cannot hold it, and no extra file is left behind. It is held only for the few
/// syscalls of a bind. `None` (proceed unlocked) if the directory cannot be opened.
fn bind_lock() -> Option<nix::fcntl::Flock<std::fs::File>> {
    let dir = std::fs::File::open(crate::names::runtime_dir().ok()?).ok()?;
    sys::lock_exclusive(dir)
}

/// `path` is in use. If it is a socket nobody serves, remove it; otherwise say why not.
fn reclaim_stale(path: &Path, ty: SockType) -> Result<()> {
    let what = || format!("socket {}", path.display());
    let st = sys::lstat(path).map_err(|e| Error::from_errno("lstat", what(), e))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(not_a_socket(path, st.st_mode));
    }
    // An interproc owner that is alive holds its record's lock: no need to probe it
    // (a probe that connects shows the live server a client that comes and goes).
    let name = absolute(path).to_string_lossy().into_owned();
    if let Some(owner) = crate::names::list().ok().and_then(|l| {
        l.into_iter()
            .find(|e| e.alive && e.record.kind == Kind::SocketFile && e.record.name == name)
    }) {
        return Err(Error::AlreadyExists {
            what: format!("{} (a live process, pid {}, owns it)", what(), owner.record.pid),
        });
    }
    // Probe with a non-blocking socket of the same type: a live listener with a full
    // backlog answers EAGAIN instead of blocking us.
    let probe = sys::unix_socket(ty, true).map_err(|e| Error::os("socket", e))?;
    let raw = UnixAddr::path(path)?.to_raw()?;
    match sys::connect(&probe, &raw) {
        // Nobody has it bound and listening: a stale file left by a dead process. (Or,
        // rarely, a process that is not interproc's, or uses another runtime directory,
        // caught between its bind and its listen: the probe cannot tell the two apart.)
        Err(Errno::ECONNREFUSED) => {
            sys::unlink(path).map_err(|e| Error::from_errno("unlink", what(), e))
        }
        Ok(()) | Err(Errno::EAGAIN) | Err(Errno::EINPROGRESS) => Err(Error::AlreadyExists {
            what: format!("{} (a live process is listening on it)", what()),
        }),
        // A socket of another type is bound there (and alive, or connect would be refused).
        Err(Errno::EPROTOTYPE) => Err(Error::AlreadyExists {
            what: format!("{} (a live socket of another type is bound there)", what()),
        }),
        Err(e) => Err(Error::from_errno("connect (stale-socket probe)", what(), e)),
    }
}

/// `path` holds something other than a socket; interproc leaves it untouched.
fn not_a_socket(path: &Path, st_mode: libc::mode_t) -> Error {
    Error::WrongType {
        what: path.display().to_string(),
        expected: "socket",
        found: sys::file_type_name(st_mode),
    }
}

/// Connects a new socket of type `ty` to `addr`, blocking until the listener has room
/// in its backlog. Missing path: `NotFound`; stale file or nobody listening: `Refused`.
pub(super) fn connect(addr: &UnixAddr, ty: SockType) -> Result<OwnedFd> {
    let raw = addr.to_raw()?;
    let fd = sys::unix_socket(ty, false).map_err(|e| Error::os("socket", e))?;
    sys::connect(&fd, &raw).map_err(|e| match (e, addr.as_path()) {
        // Linux refuses a connect to a file that is not a socket with ECONNREFUSED too:
        // say which it is.
        (Errno::ECONNREFUSED, Some(path)) => match sys::lstat(path) {
            Ok(st) if st.st_mode & libc::S_IFMT != libc::S_IFSOCK => not_a_socket(path, st.st_mode),
            _ => Error::Refused { what: format!("socket {addr}") },
        },
        (e, _) => Error::from_errno("connect", format!("socket {addr}"), e),
    })?;
    Ok(fd)
}

/// A bound, listening socket: the part both listener types share.
#[derive(Debug)]
struct Listening {
    // Field order: the fd closes before the file is removed.
    fd: OwnedFd,
    addr: UnixAddr,
    _file: Option<BoundFile>,
}

impl Listening {
    fn bind(addr: &UnixAddr, ty: SockType) -> Result<Listening> {
        let (fd, file) = bind(addr, ty, true)?;
        // Always non-blocking: `accept` waits in poll(2), so a connection another
        // process (sharing this listener) took first cannot block us past a deadline.
        sys::set_nonblocking(&fd, true).map_err(|e| Error::os("fcntl(O_NONBLOCK)", e))?;
        Ok(Listening { fd, addr: addr.clone(), _file: file })
    }

    fn accept(&self, deadline: Option<Instant>) -> Result<OwnedFd> {
        loop {
            match sys::accept(&self.fd) {
                Ok(fd) => return Ok(fd),
                // The connecting peer gave up before we accepted: wait for the next.
                Err(Errno::EAGAIN) | Err(Errno::ECONNABORTED) => {}
                Err(e) => return Err(Error::os("accept4", e)),
            }
            match sys::wait_fd(&self.fd, PollFlags::POLLIN, deadline) {
                Ok(Some(_)) => {}
                Ok(None) => return Err(Error::Timeout),
                Err(e) => return Err(Error::os("poll", e)),
            }
        }
    }
}

macro_rules! listener {
    ($(#[$doc:meta])* $name:ident, $conn:ident, $ty:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name {
            inner: Listening,
        }

        impl $name {
            /// Binds `addr` and listens. A filesystem path gets mode 0600 and an owner
            /// record; a stale socket file there (its listener died) is reclaimed.
            ///
            /// Errors: [`Error::AlreadyExists`] if a live process listens on the
            /// address, [`Error::WrongType`] if the path is some other kind of file (left
            /// untouched), [`Error::NotFound`] if the directory does not exist.
            pub fn bind(addr: &UnixAddr) -> Result<Self> {
                Ok($name { inner: Listening::bind(addr, $ty)? })
            }

            /// Accepts the next connection, waiting as long as it takes.
            pub fn accept(&self) -> Result<$conn> {
                self.inner.accept(None).map($conn::from_owned_fd)
            }

            /// Accepts the next connection, waiting at most `timeout`; then `Timeout`.
            pub fn accept_timeout(&self, timeout: Duration) -> Result<$conn> {
                let deadline = Instant::now().checked_add(timeout);
                self.inner.accept(deadline).map($conn::from_owned_fd)
            }

            /// Accepts a connection if one is pending; `Ok(None)` if not.
            pub fn try_accept(&self) -> Result<Option<$conn>> {
                match self.inner.accept(Some(Instant::now())) {
                    Ok(fd) => Ok(Some($conn::from_owned_fd(fd))),
                    Err(Error::Timeout) => Ok(None),
                    Err(e) => Err(e),
                }
            }

            /// The address this listener is bound to.
            pub fn local_addr(&self) -> &UnixAddr {
                &self.inner.addr
            }
        }

        impl AsFd for $name {
            /// The listening socket, always non-blocking: register it with an event loop
            /// for readability, then call [`Self::try_accept`].
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.inner.fd.as_fd()
            }
        }

        impl std::os::fd::AsRawFd for $name {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                std::os::fd::AsRawFd::as_raw_fd(&self.inner.fd)
            }
        }
    };
}

listener!(
    /// A listening Unix stream socket; [`UnixListener::accept`] yields [`UnixStream`]s.
    ///
    /// Dropping it closes the socket, then removes the socket file and its owner record
    /// (only in the process that bound it, and only if the file is still the one it
    /// bound).
    UnixListener,
    UnixStream,
    SockType::Stream
);

listener!(
    /// A listening Unix seqpacket socket; [`SeqpacketListener::accept`] yields
    /// [`UnixSeqpacket`]s. Dropping it removes the socket file, as for [`UnixListener`].
    SeqpacketListener,
    UnixSeqpacket,
    SockType::SeqPacket
);
