//! The select(2) backend: two master bitmaps (read, write) kept between waits, copied
//! for each call because the kernel overwrites them with the ready subset, and scanned
//! afterwards. A fd at or above `FD_SETSIZE` does not fit in the bitmap and is refused.
//!
//! Oneshot is emulated by clearing a reported fd's bits until it is re-armed.

use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::time::Instant;

use super::{fd_name, Event, Events, Reg};
use crate::error::{Error, Result};
use crate::sys::reactor as sys;

pub(super) struct SelectPoller {
    regs: BTreeMap<RawFd, Reg>,
    read: libc::fd_set,
    write: libc::fd_set,
    out_read: libc::fd_set,
    out_write: libc::fd_set,
}

impl Default for SelectPoller {
    fn default() -> Self {
        SelectPoller {
            regs: BTreeMap::new(),
            read: sys::fd_set_new(),
            write: sys::fd_set_new(),
            out_read: sys::fd_set_new(),
            out_write: sys::fd_set_new(),
        }
    }
}

impl SelectPoller {
    pub(super) fn len(&self) -> usize {
        self.regs.len()
    }

    fn apply(&mut self, fd: RawFd, r: Option<&Reg>) {
        let (rd, wr) = match r {
            Some(r) if r.armed => (r.interest.is_readable(), r.interest.is_writable()),
            _ => (false, false),
        };
        sys::fd_set_put(&mut self.read, fd, rd);
        sys::fd_set_put(&mut self.write, fd, wr);
    }

    pub(super) fn register(&mut self, fd: RawFd, r: Reg) -> Result<()> {
        if fd < 0 || fd as usize >= sys::FD_SETSIZE {
            return Err(Error::FdTooLarge { fd, fd_setsize: sys::FD_SETSIZE });
        }
        if self.regs.contains_key(&fd) {
            return Err(Error::AlreadyExists { what: fd_name(fd) });
        }
        self.apply(fd, Some(&r));
        self.regs.insert(fd, r);
        Ok(())
    }

    pub(super) fn modify(&mut self, fd: RawFd, r: Reg) -> Result<()> {
        if !self.regs.contains_key(&fd) {
            return Err(Error::NotFound { what: fd_name(fd) });
        }
        self.apply(fd, Some(&r));
        self.regs.insert(fd, r);
        Ok(())
    }

    pub(super) fn deregister(&mut self, fd: RawFd) -> Result<()> {
        self.regs.remove(&fd).ok_or_else(|| Error::NotFound { what: fd_name(fd) })?;
        self.apply(fd, None);
        Ok(())
    }

    pub(super) fn wait(&mut self, events: &mut Events, deadline: Option<Instant>) -> Result<()> {
        let nfds = self.regs.keys().next_back().map_or(0, |&fd| fd + 1);
        let n = sys::select_raw(
            nfds,
            (&self.read, &self.write),
            (&mut self.out_read, &mut self.out_write),
            deadline,
        )
        .map_err(|e| Error::os("select", e))?;
        if n == 0 {
            return Ok(());
        }
        let mut disarm = Vec::new();
        for (&fd, reg) in self.regs.iter_mut() {
            if events.is_full() {
                break;
            }
            let readable = sys::fd_set_has(&self.out_read, fd);
            let writable = sys::fd_set_has(&self.out_write, fd);
            if !(readable || writable) {
                continue;
            }
            // select has no hang-up or error bits: both show as readable (the read
            // then returns EOF or the error).
            events.push(Event {
                token: reg.token,
                readable,
                writable,
                error: false,
                hangup: false,
            });
            if reg.oneshot {
                reg.armed = false;
                disarm.push(fd);
            }
        }
        for fd in disarm {
            self.apply(fd, None);
        }
        Ok(())
    }
}
