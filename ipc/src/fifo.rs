//! Named pipes (FIFOs).
//!
//! A FIFO is a pipe with a name in the filesystem: unrelated processes open the same
//! path, one for reading and one for writing, and then talk as over a pipe. The kernel
//! keeps no data in the file; it lives in a pipe buffer while both ends are open.
//!
//! # Creating is not opening
//!
//! [`Fifo::create`] makes the FIFO (`mkfifo(3)`) with mode 0600, applied exactly whatever
//! the umask is, and fails with [`Error::AlreadyExists`] if the path exists. The returned
//! [`Fifo`] *owns* the FIFO: it registers an owner record (see [`crate::names`], so
//! `interproc ls` shows it and `interproc clean` can remove it if this process dies) and
//! unlinks the FIFO when it is dropped. [`Fifo::create_or_open`] reports which of the two
//! happened; [`Fifo::open`] only opens, and fails with [`Error::NotFound`] if there is
//! nothing there. A path that names something other than a FIFO is
//! [`Error::WrongType`].
//!
//! # Opening an end: the kernel's rules (fifo(7), open(2))
//!
//! | call | no peer yet |
//! |---|---|
//! | [`open_reader`] | blocks until a writer opens |
//! | [`open_writer`] | blocks until a reader opens |
//! | [`open_reader_nonblocking`] | succeeds at once; reads see end-of-file until a writer opens |
//! | [`open_writer_nonblocking`] | fails with [`Error::NoReader`] (`ENXIO`) |
//! | [`open_reader_timeout`] / [`open_writer_timeout`] | wait for the peer, at most the timeout: [`Error::Timeout`] |
//!
//! A blocking open has no timeout in the kernel, so a peer that never comes hangs it
//! forever. The `_timeout` forms never block in `open(2)`: they retry non-blocking probes
//! with short sleeps until the peer is there or the deadline passes. Prefer them whenever
//! the peer might not come (a crashed process, a test).
//!
//! Once both ends are open the FIFO behaves as a pipe: when every writer has closed, the
//! reader sees end-of-file (a channel reports [`Error::Disconnected`]); when every reader
//! has closed, a write fails with `EPIPE` (also `Disconnected`). Writes of at most
//! `PIPE_BUF` (4096) bytes are atomic, so several writers may share a FIFO only if each
//! frame fits in `PIPE_BUF`; otherwise give each writer its own FIFO.
//!
//! # Example: a typed channel through a FIFO
//!
//! ```
//! use std::time::Duration;
//! use interproc_ipc::{fifo, names};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let path = std::env::temp_dir().join(names::unique_name("doc-fifo"));
//! let owner = fifo::Fifo::create(&path)?; // mode 0600, removed when `owner` drops
//!
//! // Usually the writer is another process; a thread keeps the example short.
//! let p = path.clone();
//! let writer = std::thread::spawn(move || -> interproc_ipc::Result<()> {
//!     let mut tx = fifo::open_writer_timeout(&p, Duration::from_secs(10))?.into_sender()?;
//!     tx.send(String::from("hello"))?;
//!     Ok(())
//! });
//!
//! let mut rx = owner.open_reader_timeout(Duration::from_secs(10))?.into_receiver::<String>()?;
//! assert_eq!(rx.recv()?, "hello");
//! writer.join().unwrap()?;
//! // The writer has closed its end: the reader sees the disconnect.
//! assert!(rx.recv().unwrap_err().is_disconnected());
//! # Ok(()) }
//! ```

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;

use crate::channel::{BytesReceiver, BytesSender, Receiver, Sender, StreamSink, StreamSource};
use crate::error::{Error, Result};
use crate::names::{Kind, Origin, Registration};
use crate::sys;

/// The mode [`Fifo::create`] gives a new FIFO: read and write for the owner only.
pub const DEFAULT_MODE: u32 = 0o600;

/// A typed sender over a FIFO.
pub type FifoSender<T> = Sender<T, StreamSink<FifoWriter>>;
/// A typed receiver over a FIFO.
pub type FifoReceiver<T> = Receiver<T, StreamSource<FifoReader>>;
/// A raw-bytes sender over a FIFO.
pub type FifoBytesSender = BytesSender<StreamSink<FifoWriter>>;
/// A raw-bytes receiver over a FIFO.
pub type FifoBytesReceiver = BytesReceiver<StreamSource<FifoReader>>;

fn what(path: &Path) -> String {
    format!("FIFO {}", path.display())
}

/// Maps a failed `open(2)`/`stat(2)` of a FIFO path to a typed error.
fn open_error(op: &'static str, path: &Path, errno: Errno) -> Error {
    match errno {
        Errno::ENXIO => Error::NoReader { what: what(path) },
        // A path component that is not a directory: nothing by that name exists.
        Errno::ENOTDIR => Error::NotFound { what: what(path) },
        e => Error::from_errno(op, what(path), e),
    }
}

/// Fails unless `st_mode` says FIFO.
fn expect_fifo(path: &Path, st_mode: libc::mode_t) -> Result<()> {
    if st_mode & libc::S_IFMT == libc::S_IFIFO {
        Ok(())
    } else {
        Err(Error::WrongType {
            what: path.display().to_string(),
            expected: "FIFO",
            found: sys::file_type_name(st_mode),
        })
    }
}

/// Opens `path` with `flags` after checking that it is a FIFO, and checks the opened
/// file again (the path may have been replaced in between).
///
/// The check before `open(2)` keeps us from opening a device or a regular file at all;
/// the check after makes the answer about the file we actually hold.
fn open_fifo(path: &Path, flags: OFlag) -> Result<OwnedFd> {
    let st = sys::stat(path).map_err(|e| open_error("stat", path, e))?;
    expect_fifo(path, st.st_mode)?;
    let fd = sys::open(path, flags).map_err(|e| open_error("open", path, e))?;
    let st = sys::fstat(&fd).map_err(|e| Error::os("fstat", e))?;
    expect_fifo(path, st.st_mode)?;
    Ok(fd)
}

/// Sleeps before the next probe of a `_timeout` open: 1 ms, doubling to 16 ms, never
/// past `deadline`. Returns false if the deadline has passed.
fn backoff(delay: &mut Duration, deadline: Instant) -> bool {
    let now = Instant::now();
    if now >= deadline {
        return false;
    }
    std::thread::sleep((*delay).min(deadline - now));
    *delay = (*delay * 2).min(Duration::from_millis(16));
    true
}

fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

fn set_blocking(fd: &OwnedFd) -> Result<()> {
    sys::set_nonblocking(fd, false).map_err(|e| Error::os("fcntl(O_NONBLOCK)", e))
}

/// Opens the FIFO at `path` for reading, blocking until a writer opens it.
///
/// This waits forever if no writer comes; see [`open_reader_timeout`].
pub fn open_reader(path: impl AsRef<Path>) -> Result<FifoReader> {
    open_fifo(path.as_ref(), OFlag::O_RDONLY).map(FifoReader)
}

/// Opens the FIFO at `path` for reading without waiting for a writer.
///
/// The end is left in non-blocking mode. Until a writer opens the FIFO, a read returns 0
/// (end-of-file), so a channel built on this end before a writer is there reports
/// [`Error::Disconnected`] at once. Use [`open_reader_timeout`] to wait for the writer.
pub fn open_reader_nonblocking(path: impl AsRef<Path>) -> Result<FifoReader> {
    open_fifo(path.as_ref(), OFlag::O_RDONLY | OFlag::O_NONBLOCK).map(FifoReader)
}

/// Opens the FIFO at `path` for reading and waits, at most `timeout`, until a writer has
/// opened it; then returns the end in blocking mode, like [`open_reader`].
///
/// The FIFO is open for reading from the start, so a writer's open succeeds at once.
/// A writer that opens and closes again without writing, all between two probes (at
/// most 16 ms apart), may be missed. [`Error::Timeout`] if no writer came.
pub fn open_reader_timeout(path: impl AsRef<Path>, timeout: Duration) -> Result<FifoReader> {
    let path = path.as_ref();
    let fd = open_fifo(path, OFlag::O_RDONLY | OFlag::O_NONBLOCK)?;
    let Some(deadline) = deadline_after(timeout) else {
        // A timeout too large to represent: wait forever in the kernel instead.
        drop(fd);
        return open_reader(path);
    };
    // `tee(2)` needs a pipe to copy into; at most one byte lands in it.
    let (_scratch_r, scratch_w) =
        sys::pipe2(OFlag::O_NONBLOCK).map_err(|e| Error::os("pipe2", e))?;
    let mut delay = Duration::from_millis(1);
    loop {
        if sys::fifo_has_writer(&fd, &scratch_w).map_err(|e| Error::os("tee", e))? {
            set_blocking(&fd)?;
            return Ok(FifoReader(fd));
        }
        if !backoff(&mut delay, deadline) {
            return Err(Error::Timeout);
        }
    }
}

/// Opens the FIFO at `path` for writing, blocking until a reader opens it.
///
/// This waits forever if no reader comes; see [`open_writer_timeout`].
pub fn open_writer(path: impl AsRef<Path>) -> Result<FifoWriter> {
    open_fifo(path.as_ref(), OFlag::O_WRONLY).map(FifoWriter)
}

/// Opens the FIFO at `path` for writing if a reader has it open; otherwise fails at once
/// with [`Error::NoReader`] (the kernel's `ENXIO`).
///
/// The end is left in non-blocking mode: a write to a full FIFO returns
/// [`io::ErrorKind::WouldBlock`].
pub fn open_writer_nonblocking(path: impl AsRef<Path>) -> Result<FifoWriter> {
    open_fifo(path.as_ref(), OFlag::O_WRONLY | OFlag::O_NONBLOCK).map(FifoWriter)
}

/// Opens the FIFO at `path` for writing, waiting at most `timeout` for a reader; then
/// returns the end in blocking mode, like [`open_writer`]. [`Error::Timeout`] if no
/// reader came.
pub fn open_writer_timeout(path: impl AsRef<Path>, timeout: Duration) -> Result<FifoWriter> {
    let path = path.as_ref();
    let Some(deadline) = deadline_after(timeout) else {
        return open_writer(path);
    };
    let mut delay = Duration::from_millis(1);
    loop {
        match open_writer_nonblocking(path) {
            Ok(w) => {
                set_blocking(&w.0)?;
                return Ok(w);
            }
            Err(Error::NoReader { .. }) => {
                if !backoff(&mut delay, deadline) {
                    return Err(Error::Timeout);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// The owner of a FIFO's name in the filesystem, or a handle on a FIFO someone else owns.
///
/// A `Fifo` made by [`Fifo::create`] (or by [`Fifo::create_or_open`] when it reports
/// [`Origin::Created`]) owns the FIFO: dropping it unlinks the path, if it still names
/// the FIFO this created, and then removes the owner record. Ends opened from it stay
/// usable after the drop: the pipe lives on until its last end closes, it just has no
/// name any more.
///
/// A `Fifo` made by [`Fifo::open`] only remembers the path.
#[derive(Debug)]
pub struct Fifo {
    path: PathBuf,
    owner: Option<Owner>,
}

#[derive(Debug)]
struct Owner {
    /// (st_dev, st_ino) of the FIFO we created, so that drop never unlinks a replacement.
    id: InodeId,
    /// An `O_PATH` fd on the FIFO: keeps its inode number from being reused.
    _anchor: OwnedFd,
    /// Dropped after the FIFO is unlinked (field drop order follows `Drop::drop`).
    record: Registration,
}

impl Fifo {
    /// Creates a FIFO at `path` with mode 0600 ([`DEFAULT_MODE`]).
    ///
    /// Fails with [`Error::AlreadyExists`] if anything exists at `path`, and
    /// [`Error::NotFound`] if its directory does not exist.
    pub fn create(path: impl AsRef<Path>) -> Result<Fifo> {
        Fifo::create_with_mode(path, DEFAULT_MODE)
    }

    /// Creates a FIFO at `path` with exactly the permission bits `mode` (for example
    /// `0o660`): the umask does not apply. Bits outside `0o777` are refused.
    pub fn create_with_mode(path: impl AsRef<Path>, mode: u32) -> Result<Fifo> {
        let path = absolute(path.as_ref())?;
        let record_name = record_name(&path)?;
        if mode & !0o777 != 0 {
            return Err(Error::Os {
                op: "mkfifo: mode may hold only permission bits (0o777)",
                errno: Errno::EINVAL,
            });
        }
        sys::mkfifo(&path, mode).map_err(|e| open_error("mkfifo", &path, e))?;
        // O_PATH pins the inode without opening the FIFO (no reader or writer is counted,
        // nothing blocks). While it is held, no other file can get the same (st_dev,
        // st_ino), which makes that pair a sound identity for every unlink below and in
        // drop. If the path was swapped between mkfifo and here, what we hold is not ours
        // and we fail without unlinking anything.
        let anchor = match sys::open(&path, OFlag::O_PATH | OFlag::O_NOFOLLOW) {
            Ok(fd) => fd,
            Err(e) => {
                // No anchor (say, EMFILE): the inode cannot be pinned, so fall back on the
                // next best identity, a FIFO at the path that belongs to us, and remove it.
                // It was ours a moment ago; a swap in between would have to plant a FIFO
                // of our own user.
                if sys::lstat(&path).is_ok_and(|st| {
                    st.st_mode & libc::S_IFMT == libc::S_IFIFO
                        && st.st_uid == nix::unistd::geteuid().as_raw()
                }) {
                    let _ = sys::unlink(&path);
                }
                return Err(open_error("open(O_PATH)", &path, e));
            }
        };
        let st = sys::fstat(&anchor).map_err(|e| Error::os("fstat", e))?;
        expect_fifo(&path, st.st_mode)?;
        let id = (st.st_dev, st.st_ino);
        let set_up = || {
            // mkfifo applied the umask; the result is never more permissive than `mode`,
            // so there is no window in which others have more access than asked for.
            sys::chmod_nofollow(&path, mode).map_err(|e| Error::os("fchmodat", e))?;
            if !names_same_inode(&path, id) {
                return Err(Error::Os {
                    op: "mkfifo: the new FIFO was replaced while it was being set up",
                    errno: Errno::EEXIST,
                });
            }
            Registration::register(Kind::Fifo, record_name).map_err(record_error)
        };
        match set_up() {
            Ok(record) => Ok(Fifo { path, owner: Some(Owner { id, _anchor: anchor, record }) }),
            Err(e) => {
                unlink_if_same_inode(&path, id);
                Err(e)
            }
        }
    }

    /// Creates a FIFO at `path` with mode 0600, or opens the FIFO already there, and says
    /// which happened. Only an [`Origin::Created`] FIFO is owned (removed on drop).
    pub fn create_or_open(path: impl AsRef<Path>) -> Result<(Fifo, Origin)> {
        Fifo::create_or_open_with_mode(path, DEFAULT_MODE)
    }

    /// Like [`Fifo::create_or_open`], creating with exactly the permission bits `mode`.
    /// An existing FIFO keeps its mode.
    pub fn create_or_open_with_mode(path: impl AsRef<Path>, mode: u32) -> Result<(Fifo, Origin)> {
        let path = path.as_ref();
        loop {
            match Fifo::create_with_mode(path, mode) {
                Ok(f) => return Ok((f, Origin::Created)),
                Err(Error::AlreadyExists { .. }) => match Fifo::open(path) {
                    Ok(f) => return Ok((f, Origin::Opened)),
                    // Removed between our mkfifo and stat: try creating again.
                    Err(Error::NotFound { .. }) => continue,
                    Err(e) => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }

    /// A handle on the existing FIFO at `path`, which someone else owns.
    ///
    /// [`Error::NotFound`] if nothing is there, [`Error::WrongType`] if it is not a FIFO.
    /// Nothing is opened yet: call [`Fifo::open_reader`] or [`Fifo::open_writer`].
    pub fn open(path: impl AsRef<Path>) -> Result<Fifo> {
        let path = absolute(path.as_ref())?;
        let st = sys::stat(&path).map_err(|e| open_error("stat", &path, e))?;
        expect_fifo(&path, st.st_mode)?;
        Ok(Fifo { path, owner: None })
    }

    /// The FIFO's path (made absolute when the `Fifo` was made).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this handle owns the FIFO, that is, removes it on drop.
    pub fn is_owner(&self) -> bool {
        self.owner.is_some()
    }

    /// [`open_reader`] on this FIFO: blocks until a writer opens.
    pub fn open_reader(&self) -> Result<FifoReader> {
        open_reader(&self.path)
    }

    /// [`open_reader_nonblocking`] on this FIFO.
    pub fn open_reader_nonblocking(&self) -> Result<FifoReader> {
        open_reader_nonblocking(&self.path)
    }

    /// [`open_reader_timeout`] on this FIFO.
    pub fn open_reader_timeout(&self, timeout: Duration) -> Result<FifoReader> {
        open_reader_timeout(&self.path, timeout)
    }

    /// [`open_writer`] on this FIFO: blocks until a reader opens.
    pub fn open_writer(&self) -> Result<FifoWriter> {
        open_writer(&self.path)
    }

    /// [`open_writer_nonblocking`] on this FIFO: [`Error::NoReader`] without a reader.
    pub fn open_writer_nonblocking(&self) -> Result<FifoWriter> {
        open_writer_nonblocking(&self.path)
    }

    /// [`open_writer_timeout`] on this FIFO.
    pub fn open_writer_timeout(&self, timeout: Duration) -> Result<FifoWriter> {
        open_writer_timeout(&self.path, timeout)
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.as_ref().filter(|o| o.record.in_owner_process()) {
            // A forked child's copy leaves the FIFO to the parent. Unlink only the FIFO we made: if someone removed it and put something else
            // at the path, that is not ours to delete.
            unlink_if_same_inode(&self.path, owner.id);
        }
        // `owner.record` drops after this, removing the owner record.
    }
}

/// A file's identity on this machine while it exists: (st_dev, st_ino).
type InodeId = (libc::dev_t, libc::ino_t);

/// Whether `path` itself (not a symlink's target) is the inode `id`.
fn names_same_inode(path: &Path, id: InodeId) -> bool {
    sys::lstat(path).is_ok_and(|st| (st.st_dev, st.st_ino) == id)
}

/// Unlinks `path` if it is still the inode `id`. The check and the unlink are two
/// calls; the window between them is as small as the filesystem API allows.
fn unlink_if_same_inode(path: &Path, id: InodeId) {
    if names_same_inode(path, id) {
        let _ = sys::unlink(path);
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Error::from_io("making the FIFO path absolute", e))
}

/// The owner record stores the path as one line of UTF-8, and `interproc clean` uses it
/// to find the FIFO again: refuse paths it could not store faithfully.
fn record_name(path: &Path) -> Result<&str> {
    match path.to_str() {
        Some(s) if !s.contains('\n') => Ok(s),
        _ => Err(Error::Os {
            op: "mkfifo: the path must be UTF-8 without newlines (it is kept in an owner record)",
            errno: Errno::EINVAL,
        }),
    }
}

fn record_error(e: io::Error) -> Error {
    Error::from_io("registering the owner record", e)
}

/// The read end of a FIFO.
#[derive(Debug)]
pub struct FifoReader(OwnedFd);

/// The write end of a FIFO.
#[derive(Debug)]
pub struct FifoWriter(OwnedFd);

crate::stream_end::stream_end!(reader FifoReader, "FIFO", FifoReceiver, FifoBytesReceiver);
crate::stream_end::stream_end!(writer FifoWriter, "FIFO", FifoSender, FifoBytesSender);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names;
    use std::io::{Read, Write};

    fn temp_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(names::unique_name(tag))
    }

    #[test]
    fn nonblocking_reader_then_writer_round_trip() {
        let path = temp_path("fifo-unit");
        let fifo = Fifo::create(&path).unwrap();
        let mut r = fifo.open_reader_nonblocking().unwrap();
        assert!(r.is_nonblocking().unwrap());
        let mut w = fifo.open_writer_nonblocking().unwrap();
        w.write_all(b"abc").unwrap();
        let mut buf = [0u8; 3];
        r.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"abc");
        drop(w);
        // Every writer gone: end-of-file.
        assert_eq!(r.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn writer_timeout_without_reader_times_out() {
        let path = temp_path("fifo-unit");
        let fifo = Fifo::create(&path).unwrap();
        let e = fifo.open_writer_timeout(Duration::from_millis(30)).unwrap_err();
        assert!(matches!(e, Error::Timeout), "{e:?}");
    }

    #[test]
    fn reader_timeout_without_writer_times_out() {
        let path = temp_path("fifo-unit");
        let fifo = Fifo::create(&path).unwrap();
        let e = fifo.open_reader_timeout(Duration::from_millis(30)).unwrap_err();
        assert!(matches!(e, Error::Timeout), "{e:?}");
    }

    #[test]
    fn reader_timeout_sees_writer_and_keeps_its_data() {
        let path = temp_path("fifo-unit");
        let fifo = Fifo::create(&path).unwrap();
        // A reader must exist for the non-blocking writer open to succeed; it also
        // keeps the FIFO's buffer alive while the probing reader opens.
        let _early = fifo.open_reader_nonblocking().unwrap();
        let mut w = fifo.open_writer_nonblocking().unwrap();
        w.write_all(b"xy").unwrap();
        let mut r = fifo.open_reader_timeout(Duration::from_secs(10)).unwrap();
        assert!(!r.is_nonblocking().unwrap());
        // The probe duplicated, not consumed, the data.
        let mut buf = [0u8; 2];
        r.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"xy");
    }

    #[test]
    fn writer_timeout_returns_blocking_end() {
        let path = temp_path("fifo-unit");
        let fifo = Fifo::create(&path).unwrap();
        let _r = fifo.open_reader_nonblocking().unwrap();
        let w = fifo.open_writer_timeout(Duration::from_secs(10)).unwrap();
        assert!(!w.is_nonblocking().unwrap());
    }

    #[test]
    fn create_or_open_reports_which() {
        let path = temp_path("fifo-unit");
        let (first, o1) = Fifo::create_or_open(&path).unwrap();
        assert_eq!(o1, Origin::Created);
        assert!(first.is_owner());
        let (second, o2) = Fifo::create_or_open(&path).unwrap();
        assert_eq!(o2, Origin::Opened);
        assert!(!second.is_owner());
        drop(second);
        assert!(path.exists(), "a non-owner must not remove the FIFO");
        drop(first);
        assert!(!path.exists());
    }

    #[test]
    fn mode_outside_permission_bits_is_refused() {
        let path = temp_path("fifo-unit");
        let e = Fifo::create_with_mode(&path, 0o4600).unwrap_err();
        assert!(matches!(e, Error::Os { errno: Errno::EINVAL, .. }), "{e:?}");
        assert!(!path.exists());
    }

    #[test]
    fn drop_leaves_a_replacement_alone() {
        let path = temp_path("fifo-unit");
        let fifo = Fifo::create(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"not ours").unwrap();
        drop(fifo);
        assert_eq!(std::fs::read(&path).unwrap(), b"not ours");
        std::fs::remove_file(&path).unwrap();
    }
}
