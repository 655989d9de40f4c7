//! System V semaphore sets (`semget`, `semtimedop`, `semctl`). nix has none of them, and
//! libc has no `semtimedop` wrapper, so the operation goes through `syscall(2)`.
//!
//! Same contract as the rest of [`crate::sys`]: EINTR is retried (a timed operation
//! against the same absolute deadline), errors come back as an [`Errno`].

use std::time::Instant;

use libc::{c_int, key_t};
use nix::errno::Errno;

/// `semget(2)`.
pub(crate) fn semget(key: key_t, nsems: c_int, flags: c_int) -> nix::Result<c_int> {
    // SAFETY: semget takes no pointers.
    Errno::result(unsafe { libc::semget(key, nsems, flags) })
}

/// `semtimedop(2)`: applies every operation in `ops` atomically, waiting until `deadline`
/// (`None`: forever). `EAGAIN` means the deadline passed, or that an operation with
/// `IPC_NOWAIT` would have blocked. EINTR is retried with the time that is left.
pub(crate) fn semop(
    id: c_int,
    ops: &mut [libc::sembuf],
    deadline: Option<Instant>,
) -> nix::Result<()> {
    loop {
        let ts = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            libc::timespec {
                tv_sec: left.as_secs().try_into().unwrap_or(libc::time_t::MAX),
                tv_nsec: left.subsec_nanos().into(),
            }
        });
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `ops` is a live, writable array of `ops.len()` sembufs (the kernel reads
        // them); `ts_ptr` is null or points at `ts`, which outlives the call.
        let rc =
            unsafe { libc::syscall(libc::SYS_semtimedop, id, ops.as_mut_ptr(), ops.len(), ts_ptr) };
        match Errno::result(rc) {
            Err(Errno::EINTR) => continue,
            r => return r.map(drop),
        }
    }
}

/// `semctl(id, num, cmd)` for the commands that take no argument and return a value
/// (`GETVAL`, `GETNCNT`, `GETZCNT`, `GETPID`).
pub(crate) fn semctl_get(id: c_int, num: c_int, cmd: c_int) -> nix::Result<c_int> {
    // SAFETY: these commands read no argument and write no memory of ours.
    Errno::result(unsafe { libc::semctl(id, num, cmd) })
}

/// `semctl(id, num, SETVAL, val)`.
pub(crate) fn semctl_setval(id: c_int, num: c_int, val: c_int) -> nix::Result<()> {
    // SAFETY: SETVAL reads `union semun.val`, an int: passing an int as the variadic
    // argument is how C callers pass it on Linux (the union is passed like its members).
    Errno::result(unsafe { libc::semctl(id, num, libc::SETVAL, val) }).map(drop)
}

/// `semctl(id, 0, GETALL)` into `out` (one slot per semaphore in the set).
pub(crate) fn semctl_getall(id: c_int, out: &mut [u16]) -> nix::Result<()> {
    // SAFETY: GETALL writes `sem_nsems` unsigned shorts through `union semun.array`; the
    // caller sized `out` from IPC_STAT's `sem_nsems`, and a set never changes its size.
    Errno::result(unsafe { libc::semctl(id, 0, libc::GETALL, out.as_mut_ptr()) }).map(drop)
}

/// `semctl(id, 0, SETALL)` from `values` (one per semaphore in the set).
pub(crate) fn semctl_setall(id: c_int, values: &[u16]) -> nix::Result<()> {
    // SAFETY: SETALL reads `sem_nsems` unsigned shorts through `union semun.array`; the
    // caller passes exactly one per semaphore. The kernel only reads them.
    Errno::result(unsafe { libc::semctl(id, 0, libc::SETALL, values.as_ptr()) }).map(drop)
}

/// `semctl(IPC_STAT)`.
pub(crate) fn semctl_stat(id: c_int) -> nix::Result<libc::semid_ds> {
    let mut ds = std::mem::MaybeUninit::<libc::semid_ds>::zeroed();
    // SAFETY: IPC_STAT writes one `struct semid_ds` through `union semun.buf`, which points
    // to a live, aligned `semid_ds`.
    Errno::result(unsafe { libc::semctl(id, 0, libc::IPC_STAT, ds.as_mut_ptr()) })?;
    // SAFETY: zero is a valid bit pattern for this plain C struct, and the kernel filled it.
    Ok(unsafe { ds.assume_init() })
}

/// `semctl(IPC_RMID)`: removes the set at once, waking every waiter with `EIDRM`.
pub(crate) fn semctl_rmid(id: c_int) -> nix::Result<()> {
    // SAFETY: IPC_RMID reads no argument.
    Errno::result(unsafe { libc::semctl(id, 0, libc::IPC_RMID) }).map(drop)
}
