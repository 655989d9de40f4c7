//! The epoll backend: the kernel keeps the interest list, so a registration is one
//! `epoll_ctl` and a wait returns only ready fds.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::epoll::Epoll;

use super::{fd_name, Event, Events, Interest, Mode, Token, Trigger};
use crate::error::{Error, Result};
use crate::sys::reactor::{self as sys, EpFlags, RawEpollEvent};

pub(super) struct EpollPoller {
    ep: Epoll,
    buf: Vec<RawEpollEvent>,
    /// The fd numbers registered, and whether each is exclusive. A map, not a count:
    /// epoll forgets a fd by itself when its file closes, and the same number may then
    /// be registered again for another file; a count would grow with each such reuse.
    registered: HashMap<RawFd, bool>,
}

fn flags(interest: Interest, mode: Mode) -> EpFlags {
    let mut f = EpFlags::empty();
    if interest.is_readable() {
        f |= EpFlags::EPOLLIN;
        // RDHUP: a stream peer's shutdown is reported as a hang-up, not only as
        // "readable", so the owner can tell EOF from data without a read. epoll_ctl(2)
        // allows only IN, OUT, WAKEUP and ET beside EXCLUSIVE, so an exclusive
        // registration learns of a half-close by reading EOF.
        if !mode.exclusive {
            f |= EpFlags::EPOLLRDHUP;
        }
    }
    if interest.is_writable() {
        f |= EpFlags::EPOLLOUT;
    }
    if mode.trigger == Trigger::Edge {
        f |= EpFlags::EPOLLET;
    }
    if mode.oneshot {
        f |= EpFlags::EPOLLONESHOT;
    }
    if mode.exclusive {
        f |= EpFlags::EPOLLEXCLUSIVE;
    }
    f
}

impl EpollPoller {
    pub(super) fn new() -> Result<EpollPoller> {
        let ep = sys::epoll_create().map_err(|e| Error::os("epoll_create1", e))?;
        Ok(EpollPoller { ep, buf: Vec::new(), registered: HashMap::new() })
    }

    pub(super) fn len(&self) -> usize {
        self.registered.len()
    }

    pub(super) fn register(
        &mut self,
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
        mode: Mode,
    ) -> Result<()> {
        sys::epoll_add(&self.ep, fd, flags(interest, mode), token.0 as u64)
            .map_err(|e| map(e, "epoll_ctl(ADD)", fd))?;
        self.registered.insert(fd.as_raw_fd(), mode.exclusive);
        Ok(())
    }

    pub(super) fn modify(
        &mut self,
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
        mode: Mode,
    ) -> Result<()> {
        if self.registered.get(&fd.as_raw_fd()) == Some(&true) {
            // epoll_ctl(2): EPOLL_CTL_MOD of an EPOLLEXCLUSIVE registration is EINVAL,
            // whatever the new flags.
            return Err(exclusive_modify());
        }
        sys::epoll_modify(&self.ep, fd, flags(interest, mode), token.0 as u64).map_err(|e| {
            if e == Errno::ENOENT {
                self.registered.remove(&fd.as_raw_fd());
            }
            map(e, "epoll_ctl(MOD)", fd)
        })
    }

    pub(super) fn deregister(&mut self, fd: BorrowedFd<'_>) -> Result<()> {
        let r = sys::epoll_delete(&self.ep, fd);
        // ENOENT: epoll had forgotten it (its file closed); forget it here too.
        if matches!(r, Ok(()) | Err(Errno::ENOENT)) {
            self.registered.remove(&fd.as_raw_fd());
        }
        r.map_err(|e| map(e, "epoll_ctl(DEL)", fd))
    }

    pub(super) fn wait(&mut self, events: &mut Events, deadline: Option<Instant>) -> Result<()> {
        if self.buf.len() != events.capacity() {
            self.buf.resize(events.capacity(), RawEpollEvent::empty());
        }
        let n = sys::epoll_wait(&self.ep, &mut self.buf, deadline)
            .map_err(|e| Error::os("epoll_wait", e))?;
        for ev in &self.buf[..n] {
            let f = ev.events();
            events.push(Event {
                token: Token(ev.data() as usize),
                readable: f.intersects(EpFlags::EPOLLIN | EpFlags::EPOLLPRI),
                writable: f.contains(EpFlags::EPOLLOUT),
                error: f.contains(EpFlags::EPOLLERR),
                hangup: f.intersects(EpFlags::EPOLLHUP | EpFlags::EPOLLRDHUP),
            });
        }
        Ok(())
    }
}

/// The refusal of `modify` on an exclusive registration.
pub(super) fn exclusive_modify() -> Error {
    Error::Unsupported {
        what: "modifying an exclusive registration",
        backend: "epoll",
        hint: "exclusive interest cannot be modified (epoll_ctl(2) refuses EPOLL_CTL_MOD on an EPOLLEXCLUSIVE registration); deregister and register again",
    }
}

fn map(e: Errno, op: &'static str, fd: BorrowedFd<'_>) -> Error {
    match e {
        Errno::EEXIST => Error::AlreadyExists { what: fd_name(fd.as_raw_fd()) },
        Errno::ENOENT => Error::NotFound { what: fd_name(fd.as_raw_fd()) },
        e => Error::os(op, e),
    }
}
