//! System V shared memory (`shmget`, `shmat`, `shmdt`, `shmctl`). nix has no System V
//! IPC, so these go through `libc`.
//!
//! Same contract as the rest of [`crate::sys`]: errors come back as an [`Errno`] for the
//! caller to name.

use std::ptr::NonNull;

use libc::{c_int, key_t};
use nix::errno::Errno;

/// `shmget(2)`.
pub(crate) fn shmget(key: key_t, size: usize, flags: c_int) -> nix::Result<c_int> {
    // SAFETY: shmget takes no pointers.
    Errno::result(unsafe { libc::shmget(key, size, flags) })
}

/// `shmat(id, NULL, 0)`: maps the segment read-write at an address the kernel picks
/// (page-aligned, SHMLBA on x86).
pub(crate) fn shmat(id: c_int) -> nix::Result<NonNull<u8>> {
    // SAFETY: a null `shmaddr` lets the kernel choose a free range, so the new mapping
    // cannot overlap any Rust object.
    let p = unsafe { libc::shmat(id, std::ptr::null(), 0) };
    if p as isize == -1 {
        return Err(Errno::last());
    }
    NonNull::new(p.cast::<u8>()).ok_or(Errno::EINVAL)
}

/// `shmdt(2)`.
///
/// # Safety
///
/// `addr` must be an address returned by [`shmat`] whose mapping nothing references any
/// more.
pub(crate) unsafe fn shmdt(addr: NonNull<u8>) {
    // SAFETY: the caller guarantees an attached segment that is no longer used.
    let _ = unsafe { libc::shmdt(addr.as_ptr().cast()) };
}

/// `shmctl(IPC_STAT)`.
pub(crate) fn shmctl_stat(id: c_int) -> nix::Result<libc::shmid_ds> {
    let mut ds = std::mem::MaybeUninit::<libc::shmid_ds>::zeroed();
    // SAFETY: IPC_STAT writes one `struct shmid_ds` through the pointer, which points to a
    // live, aligned `shmid_ds`.
    Errno::result(unsafe { libc::shmctl(id, libc::IPC_STAT, ds.as_mut_ptr()) })?;
    // SAFETY: zero is a valid bit pattern for this plain C struct, and the kernel filled it.
    Ok(unsafe { ds.assume_init() })
}

/// `shmctl(IPC_RMID)`: the segment goes once the last process detaches; its key is free
/// at once.
pub(crate) fn shmctl_rmid(id: c_int) -> nix::Result<()> {
    // SAFETY: IPC_RMID ignores the buffer argument, so null is allowed.
    Errno::result(unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}
