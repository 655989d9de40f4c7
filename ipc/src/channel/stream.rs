//! Length-prefixed frames over a byte stream (pipe, FIFO, Unix stream socket, TCP).
//!
//! Wire format of one frame:
//!
//! | bytes | field                                  |
//! |-------|----------------------------------------|
//! | 0..2  | magic `b"IP"`                          |
//! | 2     | format version, 1                      |
//! | 3     | kind, 0 = data                         |
//! | 4..8  | payload length, `u32` little-endian    |
//! | 8..   | payload                                |
//!
//! # Blocking and deadlines
//!
//! The fd is left in blocking mode (`O_NONBLOCK` cleared). A call without a deadline
//! (`send`, `recv`) makes plain blocking `writev`/`read` calls and sleeps in them, as a
//! raw loop does: one syscall per message when the peer keeps up. A call with a
//! deadline (`try_`, `_timeout`, and the last flush of a dropped sink) never sleeps in
//! a read or write: each one is made non-blocking by itself (`MSG_DONTWAIT` on sockets,
//! `RWF_NOWAIT` through `preadv2`/`pwritev2` on pipes and FIFOs), and waits go through
//! `poll(2)` with the time left. So a deadline holds whatever the fd's `O_NONBLOCK`
//! flag says, even when another process shares the open file description and changes
//! it. On a kernel whose pipes refuse `RWF_NOWAIT` (`EOPNOTSUPP`), the end falls back
//! to `O_NONBLOCK` for good, and every wait goes through `poll(2)`.
//!
//! Before, the fd was always `O_NONBLOCK`: a receiver that found the pipe empty made
//! three syscalls (`read` → `EAGAIN`, `poll`, `read`) where a blocking loop makes one
//! (see docs/BENCHMARKS.md for the measured difference).

use std::io::IoSlice;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::PollFlags;

use nix::sys::socket::MsgFlags;

use super::{FrameSink, FrameSource, DEFAULT_MAX_FRAME};
use crate::error::{Error, Result};
use crate::sys;

/// Bytes of header in front of every frame on a stream.
pub const FRAME_HEADER_LEN: usize = 8;
const MAGIC: [u8; 2] = *b"IP";
const VERSION: u8 = 1;
const KIND_DATA: u8 = 0;
/// The largest length the header can carry.
const MAX_WIRE_FRAME: usize = u32::MAX as usize;
/// The largest capacity a sink grows a pipe or FIFO to (the default `fs.pipe-max-size`).
const MAX_PIPE_GROWTH: usize = 1 << 20;
/// Frames up to this many bytes (header included; `PIPE_BUF`) are copied behind their
/// header into one buffer and sent with `write(2)`/`send(2)`; larger ones go out with
/// `writev(2)`/`sendmsg(2)` of the header and the payload where they are. Copying a
/// small frame costs less than the kernel's iovec handling (`import_iovec`,
/// `copy_iovec_from_user`, a two-segment iterator); from 4 KiB the copy costs as much
/// as it saves (see docs/BENCHMARKS.md, "Pipe channel vs the raw loop").
const COPY_FRAME_MAX: usize = 4096;

/// How a call with a deadline keeps from sleeping in a read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NoWait {
    /// A socket: `MSG_DONTWAIT` on that call.
    Socket,
    /// A pipe or FIFO: `RWF_NOWAIT` on that call (`preadv2`/`pwritev2`).
    Rwf,
    /// The kernel refused `RWF_NOWAIT`: the fd is `O_NONBLOCK` for good, and every call,
    /// with a deadline or not, waits in `poll(2)`.
    NonBlocking,
}

impl NoWait {
    /// Clears `O_NONBLOCK` on `fd` and picks how deadline calls avoid sleeping.
    fn setup(fd: &impl AsFd) -> Result<NoWait> {
        sys::set_nonblocking(fd, false).map_err(|e| Error::os("fcntl(O_NONBLOCK)", e))?;
        let socket = sys::is_socket(fd).map_err(|e| Error::os("fstat", e))?;
        Ok(if socket { NoWait::Socket } else { NoWait::Rwf })
    }

    /// After `EOPNOTSUPP` from an `RWF_NOWAIT` call: fall back to `O_NONBLOCK`.
    fn fall_back(&mut self, fd: &impl AsFd) -> nix::Result<()> {
        sys::set_nonblocking(fd, true)?;
        *self = NoWait::NonBlocking;
        Ok(())
    }
}

fn header(len: usize) -> [u8; FRAME_HEADER_LEN] {
    let l = (len as u32).to_le_bytes();
    [MAGIC[0], MAGIC[1], VERSION, KIND_DATA, l[0], l[1], l[2], l[3]]
}

/// Writes frames to a byte stream.
///
/// A frame is never interleaved with another from this sink. If a deadline passes after
/// part of a frame went out, the rest is kept and sent first by the next call (or by
/// [`FrameSink::flush`]), so the stream never carries half a frame followed by another.
/// Dropping the sink does not wait for that rest.
///
/// Several processes must not write frames larger than `PIPE_BUF` (4096 bytes) into one
/// pipe or FIFO: the kernel keeps only writes up to `PIPE_BUF` atomic (pipe(7)). Use one
/// stream per writer.
///
/// On a pipe or FIFO, the first frame larger than the pipe's capacity grows the pipe to
/// fit it (`F_SETPIPE_SZ`, to the next power of two, at most 1 MiB; a refusal leaves the
/// pipe as it is), so that a frame goes into an empty pipe whole: a 64 KiB payload is a
/// 65,544-byte frame, over a default pipe's 65,536 bytes.
#[derive(Debug)]
pub struct StreamSink<F: AsFd> {
    fd: F,
    max: usize,
    nowait: NoWait,
    pending: Vec<u8>,
    pending_off: usize,
    /// A write failed after part of a frame went out: the stream is out of step with
    /// its framing for good, and every later send fails with this.
    failed: Option<Errno>,
    /// A pipe or FIFO's capacity (`None` for a socket): a frame larger than it is grown
    /// into, once.
    pipe_cap: Option<usize>,
    /// A small frame, header and payload, copied together (see [`COPY_FRAME_MAX`]).
    scratch: Vec<u8>,
}

impl<F: AsFd> StreamSink<F> {
    /// Wraps a connected stream fd and switches it to blocking mode (calls with a
    /// deadline still never sleep past it).
    ///
    /// Over a pipe or FIFO, a frame larger than the pipe grows it once to the frame's
    /// power of two (at most 1 MiB; `F_SETPIPE_SZ`), so that the frame goes in whole. The
    /// pages count against the owning user's pipe quota (`fs.pipe-user-pages-soft`, 64 MiB
    /// by default; root is exempt): past it the kernel gives that user's new pipes one
    /// page, whoever makes them. Programs that keep hundreds of pipes carrying frames over
    /// 64 KiB should bound their frame size instead. A refused growth leaves the pipe as
    /// it is; the frame then goes in pieces.
    pub fn new(fd: F) -> Result<Self> {
        let nowait = NoWait::setup(&fd)?;
        let pipe_cap = match nowait {
            NoWait::Socket => None,
            _ => sys::pipe_capacity(&fd).ok(),
        };
        Ok(StreamSink {
            fd,
            max: DEFAULT_MAX_FRAME,
            nowait,
            pending: Vec::new(),
            pending_off: 0,
            failed: None,
            pipe_cap,
            scratch: Vec::new(),
        })
    }

    /// Grows a pipe or FIFO that cannot hold a frame of `total` bytes whole, up to
    /// [`MAX_PIPE_GROWTH`]. A writer whose frame does not fit blocks mid-frame on every
    /// frame until the reader drains the pipe: one more sleep and wake-up per frame than
    /// a plain write of the payload alone (a 64 KiB payload is a 65,544-byte frame, over
    /// a default pipe's 65,536 bytes). Tried once per size class; a refusal (the user's
    /// pipe page quota, `fs.pipe-max-size`) leaves the pipe as it is.
    fn fit_pipe(&mut self, total: usize) {
        let Some(cap) = self.pipe_cap else { return };
        if total <= cap || cap >= MAX_PIPE_GROWTH {
            return;
        }
        // The peer may have grown the pipe since (the capacity is the pipe's, not this
        // end's): never ask for less than it has now.
        let now = sys::pipe_capacity(&self.fd).unwrap_or(cap);
        if total <= now {
            self.pipe_cap = Some(now);
            return;
        }
        let want = total.next_power_of_two().min(MAX_PIPE_GROWTH).max(now);
        // On a refusal, stop trying: remember the wanted size as if it were granted.
        self.pipe_cap = Some(sys::set_pipe_capacity(&self.fd, want).unwrap_or(want));
    }

    /// One write of one buffer; with `block` false it does not sleep (`EAGAIN` instead).
    fn write_buf(&mut self, buf: &[u8], block: bool) -> nix::Result<usize> {
        match (self.nowait, block) {
            (NoWait::Socket, true) => sys::send_buf_nosignal(&self.fd, buf, MsgFlags::empty()),
            (NoWait::Socket, false) => {
                sys::send_buf_nosignal(&self.fd, buf, MsgFlags::MSG_DONTWAIT)
            }
            (NoWait::Rwf, false) => match sys::writev_nowait(&self.fd, &[IoSlice::new(buf)]) {
                Err(Errno::EOPNOTSUPP) => {
                    self.nowait.fall_back(&self.fd)?;
                    sys::write(&self.fd, buf)
                }
                r => r,
            },
            (NoWait::Rwf, true) | (NoWait::NonBlocking, _) => sys::write(&self.fd, buf),
        }
    }

    /// One write of several buffers; with `block` false it does not sleep (`EAGAIN`
    /// instead).
    fn write_iov(&mut self, iov: &[IoSlice<'_>], block: bool) -> nix::Result<usize> {
        match (self.nowait, block) {
            (NoWait::Socket, true) => sys::send_nosignal(&self.fd, iov),
            (NoWait::Socket, false) => {
                sys::send_nosignal_flags(&self.fd, iov, MsgFlags::MSG_DONTWAIT)
            }
            (NoWait::Rwf, false) => match sys::writev_nowait(&self.fd, iov) {
                Err(Errno::EOPNOTSUPP) => {
                    self.nowait.fall_back(&self.fd)?;
                    sys::writev(&self.fd, iov)
                }
                r => r,
            },
            (NoWait::Rwf, true) | (NoWait::NonBlocking, _) => sys::writev(&self.fd, iov),
        }
    }

    /// Waits for room; `Ok(false)` when the deadline passed.
    fn wait_writable(&self, deadline: Option<Instant>) -> Result<bool> {
        match sys::wait_fd(&self.fd, PollFlags::POLLOUT, deadline) {
            Ok(r) => Ok(r.is_some()),
            Err(e) => Err(Error::os("poll", e)),
        }
    }

    /// Sends the rest of a frame that an earlier deadline cut short.
    fn flush_pending(&mut self, deadline: Option<Instant>) -> Result<()> {
        if let Some(e) = self.failed {
            return Err(Error::os("write", e));
        }
        while self.pending_off < self.pending.len() {
            let rest = std::mem::take(&mut self.pending);
            let r = self.write_buf(&rest[self.pending_off..], deadline.is_none());
            self.pending = rest;
            match r {
                Ok(n) => self.pending_off += n,
                Err(Errno::EAGAIN) => {
                    if !self.wait_writable(deadline)? {
                        return Err(Error::Timeout);
                    }
                }
                Err(e) => {
                    self.failed = Some(e);
                    return Err(Error::os("write", e));
                }
            }
        }
        self.pending.clear();
        self.pending_off = 0;
        Ok(())
    }

    /// Writes one frame: `copied` is the whole frame in one buffer, or `None` to send
    /// the header and `payload` where they are.
    fn write_frame(
        &mut self,
        payload: &[u8],
        copied: Option<&[u8]>,
        deadline: Option<Instant>,
    ) -> Result<()> {
        let head = header(payload.len());
        let total = FRAME_HEADER_LEN + payload.len();
        let mut written = 0;
        while written < total {
            let block = deadline.is_none();
            let r = match copied {
                Some(frame) => self.write_buf(&frame[written..], block),
                None if written < FRAME_HEADER_LEN => {
                    self.write_iov(&[IoSlice::new(&head[written..]), IoSlice::new(payload)], block)
                }
                None => self.write_buf(&payload[written - FRAME_HEADER_LEN..], block),
            };
            match r {
                Ok(n) => written += n,
                Err(Errno::EAGAIN) => {
                    let room = self.wait_writable(deadline);
                    if let (Err(Error::Os { errno, .. }), true) = (&room, written > 0) {
                        // Like a failed write: part of the frame is out, the rest never
                        // will be, so the stream is out of step for good.
                        self.failed = Some(*errno);
                    }
                    if !room? {
                        if written == 0 {
                            return Err(Error::Timeout);
                        }
                        // Part of the frame is on the wire: the frame is committed.
                        // Keep the rest so the stream stays well-formed.
                        self.pending.clear();
                        self.pending_off = 0;
                        if written < FRAME_HEADER_LEN {
                            self.pending.extend_from_slice(&head[written..]);
                            self.pending.extend_from_slice(payload);
                        } else {
                            self.pending.extend_from_slice(&payload[written - FRAME_HEADER_LEN..]);
                        }
                        return Ok(());
                    }
                }
                Err(e) => {
                    if written > 0 {
                        self.failed = Some(e);
                    }
                    return Err(Error::os("write", e));
                }
            }
        }
        Ok(())
    }

    /// The stream.
    pub fn get_ref(&self) -> &F {
        &self.fd
    }
}

impl<F: AsFd + Send> FrameSink for StreamSink<F> {
    fn send_frame(&mut self, payload: &[u8], deadline: Option<Instant>) -> Result<()> {
        if payload.len() > self.max {
            return Err(Error::MessageTooLarge { size: payload.len(), max: self.max });
        }
        self.flush_pending(deadline)?;
        let total = FRAME_HEADER_LEN + payload.len();
        self.fit_pipe(total);
        let mut frame = std::mem::take(&mut self.scratch);
        frame.clear();
        let copied = total <= COPY_FRAME_MAX;
        if copied {
            frame.extend_from_slice(&header(payload.len()));
            frame.extend_from_slice(payload);
        }
        let r = self.write_frame(payload, copied.then_some(&frame[..]), deadline);
        self.scratch = frame;
        r
    }

    fn flush(&mut self, deadline: Option<Instant>) -> Result<()> {
        self.flush_pending(deadline)
    }

    fn max_frame(&self) -> usize {
        self.max
    }

    fn set_max_frame(&mut self, max: usize) {
        self.max = max.min(MAX_WIRE_FRAME);
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.fd.as_fd())
    }
}

impl<F: AsFd> Drop for StreamSink<F> {
    fn drop(&mut self) {
        // One last try, without waiting: a drop must never block on a peer that is alive
        // but not reading. Callers who need the rest delivered call `flush` first.
        let _ = self.flush_pending(Some(Instant::now()));
    }
}

/// Reads frames from a byte stream.
///
/// Reads go through a buffer (64 KiB to start, grown to the largest frame). Each read asks
/// for about one frame (the rest of the current one, or the last frame's size), as a raw
/// `read` loop does: taking every queued frame at once left the writer an empty pipe on
/// nearly every write, which cost the writer more than the reader saved. A source that once saw a malformed frame stays
/// broken: a byte stream cannot be resynchronised.
#[derive(Debug)]
pub struct StreamSource<F> {
    fd: F,
    max: usize,
    nowait: NoWait,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes of the frame handed out by the last call, consumed on the next.
    last: usize,
    eof: bool,
    broken: Option<String>,
    /// Bytes of the last frame, header included (0 before the first): what a read asks
    /// for when no frame is partly buffered.
    hint: usize,
}

const INITIAL_BUF: usize = 64 << 10;

impl<F: AsFd> StreamSource<F> {
    /// Wraps a connected stream fd and switches it to blocking mode (calls with a
    /// deadline still never sleep past it).
    ///
    /// Over a pipe or FIFO, a frame larger than the pipe grows it once to the frame's
    /// power of two (at most 1 MiB; `F_SETPIPE_SZ`), so that the frame goes in whole. The
    /// pages count against the owning user's pipe quota (`fs.pipe-user-pages-soft`, 64 MiB
    /// by default; root is exempt): past it the kernel gives that user's new pipes one
    /// page, whoever makes them. Programs that keep hundreds of pipes carrying frames over
    /// 64 KiB should bound their frame size instead. A refused growth leaves the pipe as
    /// it is; the frame then goes in pieces.
    pub fn new(fd: F) -> Result<Self> {
        let nowait = NoWait::setup(&fd)?;
        Ok(StreamSource {
            fd,
            max: DEFAULT_MAX_FRAME,
            nowait,
            buf: vec![0; INITIAL_BUF],
            start: 0,
            end: 0,
            last: 0,
            eof: false,
            broken: None,
            hint: 0,
        })
    }

    /// The stream.
    pub fn get_ref(&self) -> &F {
        &self.fd
    }

    /// Bytes received but not yet handed out.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// One read into the free end of the buffer; with `block` false it does not sleep
    /// (`EAGAIN` instead).
    ///
    /// A read asks for about one frame, as a raw loop does: the rest of the frame whose
    /// header is buffered, or else as many bytes as the last frame had (or the whole free
    /// buffer before the first frame). Asking for everything the buffer holds made the
    /// receiver take every queued frame at once, drain the pipe and leave the writer an
    /// empty pipe on nearly every write: a fresh pipe page for each frame instead of
    /// appending to the last, a wake-up of the reader, and the pipe mutex fought over on
    /// every call. Throughput at 64 B went from about 0.75x to about 0.95x the raw
    /// `write`/`read` loop (docs/BENCHMARKS.md, "Pipe channel vs the raw loop").
    fn read_some(&mut self, block: bool) -> nix::Result<usize> {
        let free = self.buf.len() - self.end;
        let want = if self.hint == 0 {
            free
        } else {
            let avail = self.end - self.start;
            let rest = if avail >= FRAME_HEADER_LEN {
                let h = &self.buf[self.start + 4..self.start + 8];
                (FRAME_HEADER_LEN + u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize)
                    .saturating_sub(avail)
            } else {
                0
            };
            rest.max(self.hint).min(free)
        };
        let buf = &mut self.buf[self.end..self.end + want];
        match (self.nowait, block) {
            (NoWait::Socket, false) => sys::recv(&self.fd, buf, MsgFlags::MSG_DONTWAIT),
            (NoWait::Rwf, false) => match sys::read_nowait(&self.fd, buf) {
                Err(Errno::EOPNOTSUPP) => {
                    self.nowait.fall_back(&self.fd)?;
                    sys::read(&self.fd, &mut self.buf[self.end..])
                }
                r => r,
            },
            _ => sys::read(&self.fd, buf),
        }
    }

    /// If a whole frame is buffered, its payload length. Checks the header.
    fn complete(&mut self) -> Result<Option<usize>> {
        let avail = self.end - self.start;
        if avail < FRAME_HEADER_LEN {
            return Ok(None);
        }
        let h = &self.buf[self.start..self.start + FRAME_HEADER_LEN];
        let reason = if h[0..2] != MAGIC {
            Some(format!("bad magic {:02x}{:02x} (expected \"IP\")", h[0], h[1]))
        } else if h[2] != VERSION {
            Some(format!("unsupported frame version {}", h[2]))
        } else if h[3] != KIND_DATA {
            Some(format!("unknown frame kind {}", h[3]))
        } else {
            None
        };
        let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
        let reason = reason.or_else(|| {
            (len > self.max)
                .then(|| format!("frame announces {len} bytes, over the maximum of {}", self.max))
        });
        if let Some(reason) = reason {
            self.broken = Some(reason.clone());
            return Err(Error::Malformed { reason });
        }
        Ok((avail >= FRAME_HEADER_LEN + len).then_some(len))
    }

    /// Makes room after `end` for at least one more read, keeping unread bytes.
    ///
    /// The buffer grows only when it is full and the frame in it is still incomplete,
    /// at most doubling each time: memory follows the bytes that arrive, not the length
    /// a header announces, so a peer cannot make us allocate 16 MiB with 8 bytes.
    fn make_room(&mut self) {
        if self.start > 0 && self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            // Full, and (`complete` said so) the frame is not: its header is in, since the
            // buffer is never smaller than a header, and it announces more than fits.
            let h = &self.buf[4..8];
            let need = FRAME_HEADER_LEN + u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
            let grown = need.min(self.buf.len().saturating_mul(2));
            self.buf.resize(grown, 0);
        }
    }
}

impl<F: AsFd + Send> FrameSource for StreamSource<F> {
    fn recv_frame(&mut self, deadline: Option<Instant>) -> Result<&[u8]> {
        if let Some(reason) = &self.broken {
            return Err(Error::Malformed { reason: reason.clone() });
        }
        self.start += self.last;
        self.last = 0;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        loop {
            if let Some(len) = self.complete()? {
                let from = self.start + FRAME_HEADER_LEN;
                self.last = FRAME_HEADER_LEN + len;
                self.hint = self.last;
                return Ok(&self.buf[from..from + len]);
            }
            let avail = self.end - self.start;
            if self.eof {
                if avail == 0 {
                    return Err(Error::Disconnected);
                }
                let expected = if avail >= FRAME_HEADER_LEN {
                    let h = &self.buf[self.start + 4..self.start + 8];
                    FRAME_HEADER_LEN + u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize
                } else {
                    FRAME_HEADER_LEN
                };
                return Err(Error::Truncated { expected, got: avail });
            }
            self.make_room();
            match self.read_some(deadline.is_none()) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                // A TCP peer that died with unread data resets the connection.
                Err(Errno::ECONNRESET) => self.eof = true,
                Err(Errno::EAGAIN) => match sys::wait_fd(&self.fd, PollFlags::POLLIN, deadline) {
                    Ok(Some(_)) => {}
                    Ok(None) => return Err(Error::Timeout),
                    Err(e) => return Err(Error::os("poll", e)),
                },
                Err(e) => return Err(Error::os("read", e)),
            }
        }
    }

    fn max_frame(&self) -> usize {
        self.max
    }

    fn set_max_frame(&mut self, max: usize) {
        self.max = max.min(MAX_WIRE_FRAME);
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.fd.as_fd())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Instant;

    use super::*;

    /// Regression: a header alone must not make the receiver allocate the frame it
    /// announces; memory follows the bytes that actually arrive.
    #[test]
    fn a_header_alone_does_not_allocate_the_announced_frame() {
        let (r, mut w) = crate::pipe::pipe().unwrap();
        let mut src = StreamSource::new(r).unwrap();
        w.write_all(&header(15 << 20)).unwrap();
        w.write_all(&[0; 10]).unwrap();
        assert!(matches!(src.recv_frame(Some(Instant::now())), Err(Error::Timeout)));
        assert!(src.buf.len() <= 2 * INITIAL_BUF, "buffer grew to {} bytes", src.buf.len());
    }

    /// A pipe the reader grew after the sink was made is never shrunk back by the sink's
    /// own growth (it asked for the frame's size class from the capacity it read at
    /// creation; found in review).
    #[test]
    fn the_sink_never_shrinks_a_pipe_the_peer_grew() {
        let (r, w) = crate::pipe::pipe().unwrap();
        let before = sys::pipe_capacity(&w).unwrap();
        let mut sink = StreamSink::new(w).unwrap();
        let grown = sys::set_pipe_capacity(&r, 1 << 20).unwrap();
        assert!(grown >= 1 << 20);
        sink.send_frame(&vec![7u8; before + 4096], Some(Instant::now())).unwrap();
        assert_eq!(sys::pipe_capacity(sink.get_ref()).unwrap(), grown);
    }

    /// Regression: a 64 KiB payload makes a frame 8 bytes over a default pipe's 64 KiB,
    /// so the writer blocked mid-frame on every frame; the sink grows the pipe to fit
    /// it, and the frame goes into an empty pipe whole, without a reader.
    #[test]
    fn a_frame_over_the_pipe_capacity_grows_the_pipe() {
        let (_r, w) = crate::pipe::pipe().unwrap();
        let before = sys::pipe_capacity(&w).unwrap();
        let mut sink = StreamSink::new(w).unwrap();
        let payload = vec![7u8; before];
        sink.send_frame(&payload, Some(Instant::now())).unwrap();
        assert!(sink.pending.is_empty(), "{} bytes of the frame left over", sink.pending.len());
        assert!(sys::pipe_capacity(sink.get_ref()).unwrap() >= FRAME_HEADER_LEN + before);
        // Frames that fit leave the pipe as it is.
        let (_r2, w2) = crate::pipe::pipe().unwrap();
        let mut small = StreamSink::new(w2).unwrap();
        small.send_frame(&[1; 100], None).unwrap();
        assert_eq!(sys::pipe_capacity(small.get_ref()).unwrap(), before);
    }

    /// Regression (throughput): a read asks for about one frame, not for every queued
    /// frame. Draining the pipe on every read left the writer an empty pipe on nearly
    /// every write (a fresh page and a wake-up per frame): 0.6x the raw loop at 64 B.
    #[test]
    fn a_read_takes_about_one_frame() {
        let (r, w) = crate::pipe::pipe().unwrap();
        let mut src = StreamSource::new(r).unwrap();
        let mut sink = StreamSink::new(w).unwrap();
        let frame = FRAME_HEADER_LEN + 64;
        sink.send_frame(&[1; 64], None).unwrap();
        assert_eq!(src.recv_frame(None).unwrap(), &[1; 64][..]);
        for i in 0..10 {
            sink.send_frame(&[i; 64], None).unwrap();
        }
        assert_eq!(src.recv_frame(None).unwrap(), &[0; 64][..]);
        assert_eq!(src.buffered(), frame, "one read took {} bytes", src.buffered());
        for i in 1..10 {
            assert_eq!(src.recv_frame(None).unwrap(), &[i; 64][..]);
        }
    }

    /// Frames of mixed sizes arrive whole whatever the last frame's size was: the read
    /// size follows the last frame, and a frame larger than it takes more reads.
    #[test]
    fn mixed_sizes_arrive_whole() {
        let (r, w) = crate::pipe::pipe().unwrap();
        let mut src = StreamSource::new(r).unwrap();
        let sizes = [1usize, 5000, 3, 0, 70_000, 64, 4088, 4089, 200_000, 7];
        let writer = std::thread::spawn(move || {
            let mut sink = StreamSink::new(w).unwrap();
            for (i, &n) in sizes.iter().enumerate() {
                sink.send_frame(&vec![i as u8; n], None).unwrap();
            }
        });
        for (i, &n) in sizes.iter().enumerate() {
            assert_eq!(src.recv_frame(None).unwrap(), &vec![i as u8; n][..], "frame {i}");
        }
        writer.join().unwrap();
        assert!(matches!(src.recv_frame(None), Err(Error::Disconnected)));
    }

    /// Large frames still arrive whole, the buffer growing as their bytes come in.
    #[test]
    fn a_large_frame_arrives_whole() {
        let (r, w) = crate::pipe::pipe().unwrap();
        let mut src = StreamSource::new(r).unwrap();
        let payload: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
        let expect = payload.clone();
        let writer = std::thread::spawn(move || {
            let mut sink = StreamSink::new(w).unwrap();
            sink.send_frame(&payload, None).unwrap();
            sink.send_frame(b"next", None).unwrap();
        });
        assert_eq!(src.recv_frame(None).unwrap(), &expect[..]);
        assert_eq!(src.recv_frame(None).unwrap(), b"next");
        writer.join().unwrap();
        assert!(matches!(src.recv_frame(None), Err(Error::Disconnected)));
    }
}
