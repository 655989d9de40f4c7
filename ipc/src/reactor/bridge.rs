//! A bridge from a System V message queue, which has no fd, to a pipe, which has one.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::msgq::{MessageQueue, Select};
use crate::pipe::{self, PipeBytesReceiver};

/// How often the forwarding thread, blocked on an empty queue, checks whether the bridge
/// was dropped. Dropping the bridge waits at most this long.
const TICK: Duration = Duration::from_millis(20);

/// Makes a System V message queue pollable: a thread receives the messages `select`
/// picks and forwards each, with its type, into a pipe whose read end
/// [`MsgqBridge::fd`] a [`Poller`](super::Poller) can watch.
///
/// System V queues have no fd (msgrcv(2) is the only way to learn that a message is
/// there), so no backend can watch one directly. The thread costs a thread and one
/// copy per message. Back-pressure is kept: when the event loop does not read, the pipe
/// fills, the thread blocks, and the queue fills up for its senders as it would without
/// the bridge. Messages are received by the thread as they come: once forwarded, a
/// message is no longer in the queue for other readers.
///
/// After a readiness event, call [`MsgqBridge::try_recv`] until [`Error::Empty`].
/// When the queue is removed, the bridge reports [`Error::Disconnected`] after the
/// messages already forwarded.
///
/// ```
/// use std::sync::Arc;
/// use interproc_ipc::msgq::{MessageQueue, Select};
/// use interproc_ipc::reactor::{Backend, Events, Interest, Mode, MsgqBridge, Poller, Token};
///
/// let queue = Arc::new(MessageQueue::private()?);
/// let mut bridge = MsgqBridge::new(queue.clone(), Select::Any)?;
/// let mut poller = Poller::new(Backend::Epoll)?;
/// poller.register(bridge.fd(), Token(0), Interest::READABLE, Mode::LEVEL)?;
/// queue.send(7, b"hello")?;
/// let mut events = Events::with_capacity(4);
/// poller.wait(&mut events, None)?;
/// assert_eq!(bridge.try_recv()?, (7, b"hello".to_vec()));
/// # Ok::<(), interproc_ipc::Error>(())
/// ```
pub struct MsgqBridge {
    rx: Option<PipeBytesReceiver>,
    stop: Arc<AtomicBool>,
    failure: Arc<Mutex<Option<Error>>>,
    thread: Option<JoinHandle<()>>,
}

impl MsgqBridge {
    /// Starts forwarding the messages of `queue` that `select` picks.
    pub fn new(queue: Arc<MessageQueue>, select: Select) -> Result<MsgqBridge> {
        let (mut tx, rx) = pipe::bytes_channel()?;
        let stop = Arc::new(AtomicBool::new(false));
        let failure = Arc::new(Mutex::new(None));
        let (stop2, failure2) = (stop.clone(), failure.clone());
        let thread = std::thread::Builder::new()
            .name("interproc-msgq-bridge".into())
            .spawn(move || {
                let mut frame = Vec::new();
                while !stop2.load(Ordering::Relaxed) {
                    let (mtype, data) = match queue.recv_vec_timeout(select, TICK) {
                        Ok(m) => m,
                        Err(Error::Timeout) => continue,
                        Err(e) => {
                            // The queue was removed (Disconnected) or failed: record why;
                            // dropping `tx` ends the stream for the reader.
                            *failure2.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            return;
                        }
                    };
                    frame.clear();
                    frame.extend_from_slice(&mtype.to_le_bytes());
                    frame.extend_from_slice(&data);
                    // Blocks while the pipe is full: back-pressure. Fails once the
                    // bridge (the read end) is gone.
                    if let Err(e) = tx.send(&frame) {
                        if !e.is_disconnected() {
                            *failure2.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        }
                        return;
                    }
                }
            })
            .map_err(|e| Error::Os {
                op: "spawning the msgq bridge thread",
                errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EAGAIN)),
            })?;
        Ok(MsgqBridge { rx: Some(rx), stop, failure, thread: Some(thread) })
    }

    /// The fd to register for [`Interest::READABLE`](super::Interest::READABLE).
    pub fn fd(&self) -> BorrowedFd<'_> {
        let rx = self.rx.as_ref().expect("receiver lives until drop");
        rx.fd().expect("a pipe has an fd")
    }

    /// The next forwarded message as (type, data), without blocking: [`Error::Empty`] if
    /// none is ready; [`Error::Disconnected`] once the queue was removed and everything
    /// forwarded has been read; the queue's error if receiving from it failed.
    pub fn try_recv(&mut self) -> Result<(i64, Vec<u8>)> {
        let rx = self.rx.as_mut().expect("receiver lives until drop");
        match rx.try_recv() {
            Ok(f) if f.len() >= 8 => {
                let mtype = i64::from_le_bytes(f[..8].try_into().expect("8 bytes"));
                Ok((mtype, f[8..].to_vec()))
            }
            Ok(f) => Err(Error::Malformed { reason: format!("bridge frame of {} bytes", f.len()) }),
            Err(Error::Disconnected) => {
                match self.failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    Some(Error::Disconnected) | None => Err(Error::Disconnected),
                    Some(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }
}

impl Drop for MsgqBridge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Closing the read end unblocks a thread waiting for room in the pipe (EPIPE);
        // a thread waiting on the queue sees `stop` within one TICK.
        drop(self.rx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for MsgqBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MsgqBridge").finish_non_exhaustive()
    }
}
