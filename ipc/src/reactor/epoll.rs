//! The epoll backend: the kernel keeps the interest list, so a registration is one
//! `epoll_ctl` and a wait returns only ready fds.

use std::os::fd::AsRawFd;
use std::os::fd::BorrowedFd;
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::epoll::Epoll;

use super::{fd_name, Event, Events, Interest, Mode, Token, Trigger};
use crate::error::{Error, Result};
use crate::sys::reactor::{self as sys, EpFlags, RawEpollEvent};

pub(super) struct EpollPoller {
    ep: Epoll,
    buf: Vec<RawEpollEvent>,
    registered: usize,
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
        Ok(EpollPoller { ep, buf: Vec::new(), registered: 0 })
    }

    pub(super) fn len(&self) -> usize {
        self.registered
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
        self.registered += 1;
        Ok(())
    }

    pub(super) fn modify(
        &mut self,
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
        mode: Mode,
    ) -> Result<()> {
        sys::epoll_modify(&self.ep, fd, flags(interest, mode), token.0 as u64)
            .map_err(|e| map(e, "epoll_ctl(MOD)", fd))
    }

    pub(super) fn deregister(&mut self, fd: BorrowedFd<'_>) -> Result<()> {
        sys::epoll_delete(&self.ep, fd).map_err(|e| map(e, "epoll_ctl(DEL)", fd))?;
        self.registered -= 1;
        Ok(())
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

fn map(e: Errno, op: &'static str, fd: BorrowedFd<'_>) -> Error {
    match e {
        Errno::EEXIST => Error::AlreadyExists { what: fd_name(fd.as_raw_fd()) },
        Errno::ENOENT => Error::NotFound { what: fd_name(fd.as_raw_fd()) },
        e => Error::os(op, e),
    }
}
