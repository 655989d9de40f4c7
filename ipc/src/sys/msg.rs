//! System V message queues (`msgget`, `msgsnd`, `msgrcv`, `msgctl`, `ftok`) and process
//! fds (`pidfd_open`). nix has no System V IPC, so these go through `libc`.
//!
//! Same contract as the rest of [`crate::sys`]: EINTR is retried, errors come back as
//! an [`Errno`] for the caller to name.

use std::ffi::CString;
use std::mem::size_of;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use libc::{c_int, c_long, key_t};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags};
use nix::sys::time::TimeSpec;

use super::retry;

/// Bytes in front of `mtext`: the `long mtype`.
const MTYPE_LEN: usize = size_of::<c_long>();

/// A `struct msgbuf { long mtype; char mtext[]; }`, the layout msgsnd(2) reads and
/// msgrcv(2) writes.
///
/// The storage is a `Vec<c_long>`, so `mtype` is aligned as the kernel expects, and
/// `mtext` starts right after it, at byte offset `size_of::<c_long>()`, as in C.
/// Word 0 always exists.
#[derive(Debug)]
pub(crate) struct MsgBuf {
    words: Vec<c_long>,
}

impl MsgBuf {
    /// A buffer whose `mtext` holds at least `text` bytes.
    pub(crate) fn with_text_capacity(text: usize) -> Self {
        let mut b = MsgBuf { words: vec![0] };
        b.reserve_text(text);
        b
    }

    /// Bytes `mtext` can hold.
    pub(crate) fn text_capacity(&self) -> usize {
        (self.words.len() - 1) * MTYPE_LEN
    }

    /// Grows `mtext` to hold at least `text` bytes.
    pub(crate) fn reserve_text(&mut self, text: usize) {
        let words = 1 + text.div_ceil(MTYPE_LEN);
        if self.words.len() < words {
            self.words.resize(words, 0);
        }
    }

    /// The message type of the last message received into (or filled into) the buffer.
    #[allow(clippy::useless_conversion)] // `c_long` is `i32` on 32-bit targets.
    pub(crate) fn mtype(&self) -> i64 {
        i64::from(self.words[0])
    }

    /// The first `len` bytes of `mtext`. Panics if `len` exceeds the capacity.
    pub(crate) fn text(&self, len: usize) -> &[u8] {
        assert!(len <= self.text_capacity());
        // SAFETY: the Vec's allocation holds `words.len() * MTYPE_LEN` initialised bytes;
        // `MTYPE_LEN + len` is within it (checked above); `c_long` has no padding, so every
        // byte is initialised, and `u8` has alignment 1. The slice borrows `self`.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>().add(MTYPE_LEN), len) }
    }

    /// Sets `mtype` and copies `payload` into `mtext`, growing the buffer if needed.
    pub(crate) fn fill(&mut self, mtype: c_long, payload: &[u8]) {
        self.reserve_text(payload.len());
        self.words[0] = mtype;
        // SAFETY: `reserve_text` made the allocation at least `MTYPE_LEN + payload.len()`
        // bytes; the destination is inside `self.words`, which we borrow mutably, so it
        // cannot overlap `payload`.
        unsafe {
            let dst = self.words.as_mut_ptr().cast::<u8>().add(MTYPE_LEN);
            std::ptr::copy_nonoverlapping(payload.as_ptr(), dst, payload.len());
        }
    }
}

/// `msgget(2)`.
pub(crate) fn msgget(key: key_t, flags: c_int) -> nix::Result<c_int> {
    // SAFETY: msgget takes no pointers.
    retry(|| Errno::result(unsafe { libc::msgget(key, flags) }))
}

/// `msgsnd(2)` of the first `len` bytes of `buf`'s `mtext`, with `buf`'s `mtype`.
/// Panics if `len` exceeds the buffer's capacity. EINTR retried.
pub(crate) fn msgsnd(id: c_int, buf: &MsgBuf, len: usize, flags: c_int) -> nix::Result<()> {
    assert!(len <= buf.text_capacity());
    let p = buf.words.as_ptr().cast::<libc::c_void>();
    // SAFETY: `p` points to a `struct msgbuf` (aligned `long mtype`, then `mtext`) whose
    // `mtext` has at least `len` initialised bytes (asserted above); the kernel only reads
    // `size_of::<c_long>() + len` bytes from it, during the call.
    retry(|| Errno::result(unsafe { libc::msgsnd(id, p, len, flags) }).map(drop))
}

/// `msgrcv(2)` into `buf`, accepting a message of at most `max` bytes (never
/// `MSG_NOERROR`: a longer message stays queued and the call fails with `E2BIG`).
/// Returns the `mtext` length; the type is [`MsgBuf::mtype`]. Panics if `max` exceeds the
/// buffer's capacity. EINTR retried.
pub(crate) fn msgrcv(
    id: c_int,
    buf: &mut MsgBuf,
    max: usize,
    msgtyp: c_long,
    flags: c_int,
) -> nix::Result<usize> {
    assert!(max <= buf.text_capacity());
    let p = buf.words.as_mut_ptr().cast::<libc::c_void>();
    retry(|| {
        // SAFETY: `p` points to a writable `struct msgbuf` with room for `long mtype` plus
        // `max` bytes of `mtext` (asserted above); the kernel writes at most that, during
        // the call. Any bytes are valid `c_long`s, so the buffer stays initialised.
        let n = Errno::result(unsafe { libc::msgrcv(id, p, max, msgtyp, flags) })?;
        Ok(n as usize)
    })
}

/// `msgctl(IPC_RMID)`: removes the queue, waking every blocked sender and receiver
/// with `EIDRM`.
pub(crate) fn msgctl_rmid(id: c_int) -> nix::Result<()> {
    // SAFETY: IPC_RMID ignores the buffer argument, so null is allowed.
    Errno::result(unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}

/// `msgctl(IPC_STAT)`.
pub(crate) fn msgctl_stat(id: c_int) -> nix::Result<libc::msqid_ds> {
    let mut ds = std::mem::MaybeUninit::<libc::msqid_ds>::zeroed();
    // SAFETY: IPC_STAT writes one `struct msqid_ds` through the pointer, which points to
    // a live, properly aligned `msqid_ds`.
    Errno::result(unsafe { libc::msgctl(id, libc::IPC_STAT, ds.as_mut_ptr()) })?;
    // SAFETY: zero is a valid bit pattern for every field of this plain C struct, and the
    // kernel filled it in.
    Ok(unsafe { ds.assume_init() })
}

/// `msgctl(IPC_SET)`: sets the owner, mode and `msg_qbytes` from `ds` (the other
/// fields are ignored).
pub(crate) fn msgctl_set(id: c_int, ds: &libc::msqid_ds) -> nix::Result<()> {
    let p = (ds as *const libc::msqid_ds).cast_mut();
    // SAFETY: `p` points to a live, initialised `msqid_ds`; IPC_SET only reads it
    // (msgctl(2)), so casting away `const` lets nothing write through it.
    Errno::result(unsafe { libc::msgctl(id, libc::IPC_SET, p) }).map(drop)
}

/// Room for either struct `msgctl` may write: `IPC_INFO` writes a `struct msginfo`
/// through the `msqid_ds *` argument (msgctl(2)).
#[repr(C)]
union InfoBuf {
    ds: libc::msqid_ds,
    info: libc::msginfo,
}

/// `msgctl(IPC_INFO)`: the system-wide limits (msgmax, msgmnb, msgmni).
pub(crate) fn msg_info() -> nix::Result<libc::msginfo> {
    let mut buf = std::mem::MaybeUninit::<InfoBuf>::zeroed();
    // SAFETY: IPC_INFO writes a `struct msginfo`; the union is large enough and aligned
    // for both it and `msqid_ds` (in case the C library copies a whole `msqid_ds`).
    // The queue id is ignored for IPC_INFO.
    Errno::result(unsafe { libc::msgctl(0, libc::IPC_INFO, buf.as_mut_ptr().cast()) })?;
    // SAFETY: the union was zeroed, a valid bit pattern for both plain C structs, and
    // `info` was then written by the kernel.
    Ok(unsafe { buf.assume_init().info })
}

/// `ftok(3)`: a key from an existing path's inode and device, and the low 8 bits of
/// `proj`.
pub(crate) fn ftok(path: &Path, proj: u8) -> nix::Result<key_t> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call; ftok only stats it.
    let k = unsafe { libc::ftok(c.as_ptr(), c_int::from(proj)) };
    if k == -1 {
        Err(Errno::last())
    } else {
        Ok(k)
    }
}

/// `pidfd_open(2)`: an fd that becomes readable when `pid` exits. The kernel always sets
/// close-on-exec on it (the only flag the call takes is `PIDFD_NONBLOCK`).
pub(crate) fn pidfd_open(pid: libc::pid_t) -> nix::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new fd or -1.
    let fd = Errno::result(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as c_int) })?;
    // SAFETY: on success the syscall returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as c_int) })
}

/// Waits up to `timeout` (microsecond resolution, through `ppoll`) for `fd` to become
/// readable. Returns whether it is. EINTR ends the wait early (the caller loops anyway).
pub(crate) fn wait_readable_for(fd: impl AsFd, timeout: Duration) -> nix::Result<bool> {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    match nix::poll::ppoll(&mut fds, Some(TimeSpec::from_duration(timeout)), None) {
        Ok(0) | Err(Errno::EINTR) => Ok(false),
        Ok(_) => Ok(true),
        Err(e) => Err(e),
    }
}
