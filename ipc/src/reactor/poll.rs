//! The poll(2) backend: a `pollfd` array kept between waits and handed whole to the
//! kernel on each one, which scans it all (the cost `demo multiplex` measures).
//!
//! Oneshot is emulated by setting a reported entry's fd to -1, which poll(2) skips
//! ("the field fd ... if negative, events is ignored and revents returns zero") —
//! `events = 0` would not do, since POLLHUP and POLLERR are reported regardless.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::time::Instant;

use super::{fd_name, Event, Events, Reg};
use crate::error::{Error, Result};
use crate::sys::reactor as sys;

#[derive(Default)]
pub(super) struct PollPoller {
    fds: Vec<libc::pollfd>,
    regs: Vec<(RawFd, Reg)>,
    index: HashMap<RawFd, usize>,
}

fn pollfd(fd: RawFd, r: &Reg) -> libc::pollfd {
    let mut events = 0;
    if r.interest.is_readable() {
        events |= libc::POLLIN | libc::POLLPRI | libc::POLLRDHUP;
    }
    if r.interest.is_writable() {
        events |= libc::POLLOUT;
    }
    libc::pollfd { fd: if r.armed { fd } else { -1 }, events, revents: 0 }
}

impl PollPoller {
    pub(super) fn len(&self) -> usize {
        self.regs.len()
    }

    pub(super) fn register(&mut self, fd: RawFd, r: Reg) -> Result<()> {
        if self.index.contains_key(&fd) {
            return Err(Error::AlreadyExists { what: fd_name(fd) });
        }
        self.index.insert(fd, self.fds.len());
        self.fds.push(pollfd(fd, &r));
        self.regs.push((fd, r));
        Ok(())
    }

    pub(super) fn modify(&mut self, fd: RawFd, r: Reg) -> Result<()> {
        let &i = self.index.get(&fd).ok_or_else(|| Error::NotFound { what: fd_name(fd) })?;
        self.fds[i] = pollfd(fd, &r);
        self.regs[i] = (fd, r);
        Ok(())
    }

    pub(super) fn deregister(&mut self, fd: RawFd) -> Result<()> {
        let i = self.index.remove(&fd).ok_or_else(|| Error::NotFound { what: fd_name(fd) })?;
        self.fds.swap_remove(i);
        self.regs.swap_remove(i);
        if let Some(&(moved, _)) = self.regs.get(i) {
            self.index.insert(moved, i);
        }
        Ok(())
    }

    pub(super) fn wait(&mut self, events: &mut Events, deadline: Option<Instant>) -> Result<()> {
        let n = sys::poll_raw(&mut self.fds, deadline).map_err(|e| Error::os("poll", e))?;
        if n == 0 {
            return Ok(());
        }
        // The kernel returns a count, not a list: finding the ready entries is a scan of
        // the whole array.
        for (pfd, (_, reg)) in self.fds.iter_mut().zip(self.regs.iter_mut()) {
            let re = pfd.revents;
            if re == 0 || events.is_full() {
                continue;
            }
            events.push(Event {
                token: reg.token,
                readable: re & (libc::POLLIN | libc::POLLPRI) != 0,
                writable: re & libc::POLLOUT != 0,
                error: re & (libc::POLLERR | libc::POLLNVAL) != 0,
                hangup: re & (libc::POLLHUP | libc::POLLRDHUP) != 0,
            });
            if reg.oneshot {
                reg.armed = false;
                pfd.fd = -1;
            }
        }
        Ok(())
    }
}
