//! Socket syscalls: Unix domain sockets, fd passing, peer credentials.
//!
//! Same contract as the parent module: `EINTR` retried, `nix::Result` out, fds owned.
//! Every socket is created `SOCK_CLOEXEC`, every accepted one `accept4(SOCK_CLOEXEC)`,
//! and every received fd `MSG_CMSG_CLOEXEC`, so none leaks into a program we `exec`.

use std::io::{IoSlice, IoSliceMut};
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

use nix::errno::Errno;
use nix::sys::socket::{self as so, sockopt, AddressFamily, MsgFlags, SockFlag, SockType};

pub(crate) use nix::sys::socket::UnixAddr as RawUnixAddr;

use super::retry;

/// The most fds one `SCM_RIGHTS` message may carry (`SCM_MAX_FD` in the kernel's
/// `include/net/scm.h`); more gives `EINVAL`.
pub(crate) const SCM_MAX_FD: usize = 253;

/// `socket(AF_UNIX, ty | SOCK_CLOEXEC [| SOCK_NONBLOCK])`.
pub(crate) fn unix_socket(ty: SockType, nonblocking: bool) -> nix::Result<OwnedFd> {
    let mut flags = SockFlag::SOCK_CLOEXEC;
    if nonblocking {
        flags |= SockFlag::SOCK_NONBLOCK;
    }
    so::socket(AddressFamily::Unix, ty, flags, None)
}

/// `socketpair(AF_UNIX, ty | SOCK_CLOEXEC)`.
pub(crate) fn unix_socketpair(ty: SockType) -> nix::Result<(OwnedFd, OwnedFd)> {
    so::socketpair(AddressFamily::Unix, ty, None, SockFlag::SOCK_CLOEXEC)
}

/// `bind(2)`.
pub(crate) fn bind(fd: impl AsFd, addr: &RawUnixAddr) -> nix::Result<()> {
    so::bind(fd.as_fd().as_raw_fd(), addr)
}

/// `listen(2)` with the system's `SOMAXCONN` backlog.
pub(crate) fn listen(fd: impl AsFd) -> nix::Result<()> {
    so::listen(&fd.as_fd(), so::Backlog::MAXCONN)
}

/// `accept4(SOCK_CLOEXEC)`, EINTR retried. Honours the listener's `O_NONBLOCK`.
pub(crate) fn accept(fd: impl AsFd) -> nix::Result<OwnedFd> {
    let raw = fd.as_fd().as_raw_fd();
    let new = retry(|| so::accept4(raw, SockFlag::SOCK_CLOEXEC))?;
    // SAFETY: accept4 just returned `new` as a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// `connect(2)`. A connect interrupted by a signal is retried; for `AF_UNIX` the
/// socket stays unconnected after `EINTR` (unix_stream_connect restarts from scratch),
/// and `EISCONN` on the retry means the first attempt did complete.
pub(crate) fn connect(fd: impl AsFd, addr: &RawUnixAddr) -> nix::Result<()> {
    let raw = fd.as_fd().as_raw_fd();
    let mut interrupted = false;
    loop {
        match so::connect(raw, addr) {
            Err(Errno::EINTR) => interrupted = true,
            Err(Errno::EISCONN) if interrupted => return Ok(()),
            r => return r,
        }
    }
}

/// `getsockname(2)` of a Unix socket.
pub(crate) fn local_unix_addr(fd: impl AsFd) -> nix::Result<RawUnixAddr> {
    so::getsockname(fd.as_fd().as_raw_fd())
}

/// `getpeername(2)` of a Unix socket.
pub(crate) fn peer_unix_addr(fd: impl AsFd) -> nix::Result<RawUnixAddr> {
    so::getpeername(fd.as_fd().as_raw_fd())
}

/// `SO_PEERCRED`: (pid, uid, gid) of the peer as of `connect`/`socketpair`.
pub(crate) fn peer_cred(fd: impl AsFd) -> nix::Result<(i32, u32, u32)> {
    let c = so::getsockopt(&fd.as_fd(), sockopt::PeerCredentials)?;
    Ok((c.pid(), c.uid(), c.gid()))
}

/// `SO_SNDBUF` as the kernel reports it (twice what was set: socket(7)).
pub(crate) fn send_buffer(fd: impl AsFd) -> nix::Result<usize> {
    so::getsockopt(&fd.as_fd(), sockopt::SndBuf)
}

/// Asks for an `SO_SNDBUF` of `bytes`; the kernel doubles it and caps it at
/// `net.core.wmem_max` (socket(7)). Read it back with [`send_buffer`].
pub(crate) fn set_send_buffer(fd: impl AsFd, bytes: usize) -> nix::Result<()> {
    so::setsockopt(&fd.as_fd(), sockopt::SndBuf, &bytes)
}

/// `net.core.wmem_max`: the largest `SO_SNDBUF` an unprivileged process may ask for
/// (the kernel then doubles it). `None` if `/proc/sys` cannot be read.
pub(crate) fn wmem_max() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/net/core/wmem_max").ok()?.trim().parse().ok()
}

/// `recv(2)` with `flags`, EINTR retried. With `MSG_TRUNC` in `flags`, a datagram or
/// packet socket returns the full length of the message even when it exceeds `buf`
/// (recv(2), unix(7)): that is how a cut message is detected.
pub(crate) fn recv(fd: impl AsFd, buf: &mut [u8], flags: MsgFlags) -> nix::Result<usize> {
    let raw = fd.as_fd().as_raw_fd();
    retry(|| so::recv(raw, buf, flags))
}

/// Takes an exclusive `flock(2)` on `file`, waiting for it; `None` if the lock cannot be
/// taken (the caller proceeds unlocked).
pub(crate) fn lock_exclusive(file: std::fs::File) -> Option<nix::fcntl::Flock<std::fs::File>> {
    use nix::fcntl::{Flock, FlockArg};
    let mut f = file;
    loop {
        match Flock::lock(f, FlockArg::LockExclusive) {
            Ok(lock) => return Some(lock),
            Err((back, Errno::EINTR)) => f = back,
            Err(_) => return None,
        }
    }
}

/// `shutdown(2)` of the writing side: the peer reads EOF once it has read the rest.
pub(crate) fn shutdown_write(fd: impl AsFd) -> nix::Result<()> {
    so::shutdown(fd.as_fd().as_raw_fd(), so::Shutdown::Write)
}

/// `fcntl(F_DUPFD_CLOEXEC)`: a second fd for the same open file description.
pub(crate) fn dup_cloexec(fd: impl AsFd) -> nix::Result<OwnedFd> {
    fd.as_fd().try_clone_to_owned().map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))
}

/// `sendmsg(2)` of `iov` plus `fds` as one `SCM_RIGHTS` message, `MSG_NOSIGNAL` and
/// `extra` flags. EINTR retried.
pub(crate) fn send_with_fds(
    fd: impl AsFd,
    iov: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
    extra: MsgFlags,
) -> nix::Result<usize> {
    let raw = fd.as_fd().as_raw_fd();
    let raw_fds: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg = [so::ControlMessage::ScmRights(&raw_fds)];
    let cmsgs: &[so::ControlMessage<'_>] = if raw_fds.is_empty() { &[] } else { &cmsg };
    retry(|| so::sendmsg::<RawUnixAddr>(raw, iov, cmsgs, MsgFlags::MSG_NOSIGNAL | extra, None))
}

/// `sendto(2)` to a Unix address, `MSG_NOSIGNAL` and `extra` flags. EINTR retried.
pub(crate) fn send_to(
    fd: impl AsFd,
    buf: &[u8],
    addr: &RawUnixAddr,
    extra: MsgFlags,
) -> nix::Result<usize> {
    let raw = fd.as_fd().as_raw_fd();
    retry(|| so::sendto(raw, buf, addr, MsgFlags::MSG_NOSIGNAL | extra))
}

/// What one `recvmsg(2)` delivered.
pub(crate) struct Received {
    /// Bytes of payload; with `MSG_TRUNC` in the flags passed in, the full length of the
    /// datagram or packet, which may exceed the buffer (unix(7), recv(2)).
    pub(crate) len: usize,
    /// The fds that arrived, already owned: dropping them closes them.
    pub(crate) fds: Vec<OwnedFd>,
    /// `msg_flags`: `MSG_TRUNC` and `MSG_CTRUNC` tell what the kernel cut.
    pub(crate) flags: MsgFlags,
    /// The sender's address, for an unconnected datagram socket.
    pub(crate) addr: Option<RawUnixAddr>,
}

/// `recvmsg(2)` with `MSG_CMSG_CLOEXEC | flags`, room for up to `max_fds` passed fds.
/// EINTR retried.
///
/// The control buffer is walked with `CMSG_FIRSTHDR`/`CMSG_NXTHDR` even when the kernel
/// set `MSG_CTRUNC`: the fds that did fit were installed in this process, and the
/// caller must be able to close them (nix's iterator refuses a truncated buffer).
pub(crate) fn recv_with_fds(
    fd: impl AsFd,
    buf: &mut [u8],
    max_fds: usize,
    flags: MsgFlags,
) -> nix::Result<Received> {
    let raw = fd.as_fd().as_raw_fd();
    let max_fds = max_fds.min(SCM_MAX_FD);
    // u64 storage keeps the buffer aligned for `cmsghdr` (alignment 8 on Linux).
    let space = if max_fds == 0 {
        0
    } else {
        // SAFETY: CMSG_SPACE is a pure size computation on its argument.
        unsafe { libc::CMSG_SPACE((max_fds * mem::size_of::<RawFd>()) as u32) as usize }
    };
    let mut cmsg_buf = vec![0u64; space.div_ceil(8)];
    let mut iov = [IoSliceMut::new(buf)];
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid (unnamed) value.
    let mut addr: libc::sockaddr_un = unsafe { mem::zeroed() };
    loop {
        // SAFETY: msghdr is plain old data; all-zero is valid and fields are set below.
        let mut mhdr: libc::msghdr = unsafe { mem::zeroed() };
        mhdr.msg_name = ptr::addr_of_mut!(addr).cast();
        mhdr.msg_namelen = mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        // IoSliceMut is ABI-compatible with `struct iovec` on Unix (std guarantees it).
        mhdr.msg_iov = iov.as_mut_ptr().cast();
        mhdr.msg_iovlen = iov.len() as _;
        mhdr.msg_control = if space == 0 { ptr::null_mut() } else { cmsg_buf.as_mut_ptr().cast() };
        mhdr.msg_controllen = space as _;
        let call_flags = (flags | MsgFlags::MSG_CMSG_CLOEXEC).bits();
        // SAFETY: every pointer in `mhdr` (name, iov, control) points to live, writable
        // buffers of the lengths given, which outlive the call; `raw` is a valid fd
        // borrowed for the duration.
        let ret = unsafe { libc::recvmsg(raw, &mut mhdr, call_flags) };
        let len = match Errno::result(ret) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(n) => n as usize,
        };
        let mut fds = Vec::new();
        // SAFETY: `mhdr` was filled by a successful recvmsg; msg_controllen tells how
        // much of the control buffer the kernel wrote, and the CMSG_* macros stay
        // within it.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&mhdr) };
        while !cmsg.is_null() {
            // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR return either null or a pointer to a
            // complete cmsghdr inside the written part of the control buffer.
            let hdr = unsafe { &*cmsg };
            if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_RIGHTS {
                // SAFETY: CMSG_DATA of a valid header points inside the same buffer.
                let data = unsafe { libc::CMSG_DATA(cmsg) };
                // SAFETY: CMSG_LEN is a pure size computation.
                let head = unsafe { libc::CMSG_LEN(0) } as usize;
                let n = (hdr.cmsg_len as usize).saturating_sub(head) / mem::size_of::<RawFd>();
                for i in 0..n {
                    // SAFETY: the kernel wrote `n` ints after the header (cmsg_len says
                    // so); the data may be unaligned, hence read_unaligned.
                    let fd = unsafe { ptr::read_unaligned(data.cast::<RawFd>().add(i)) };
                    // SAFETY: SCM_RIGHTS installed `fd` in this process as a new
                    // descriptor that nothing else owns.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
            // SAFETY: `mhdr` and `cmsg` describe the buffer the kernel filled.
            cmsg = unsafe { libc::CMSG_NXTHDR(&mhdr, cmsg) };
        }
        let peer = if mhdr.msg_namelen as usize > mem::size_of::<libc::sa_family_t>() {
            // SAFETY: `addr` was written by the kernel with `msg_namelen` valid bytes.
            unsafe {
                <RawUnixAddr as so::SockaddrLike>::from_raw(
                    ptr::addr_of!(addr).cast(),
                    Some(mhdr.msg_namelen),
                )
            }
        } else {
            None
        };
        return Ok(Received {
            len,
            fds,
            flags: MsgFlags::from_bits_truncate(mhdr.msg_flags),
            addr: peer,
        });
    }
}
