//! A bridge from a System V message queue, which has no fd, to an eventfd, which has one.

use std::os::fd::BorrowedFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use super::Waker;
use crate::error::{Error, Result};
use crate::msgq::{MessageQueue, Select};

/// How long the forwarding thread waits on an empty queue before it checks whether the
/// bridge is being dropped. msgrcv(2) cannot be woken by an fd, and a wake-up message
/// of a reserved type could be taken by another reader of the queue (or match the
/// bridge's own [`Select`]), so the thread polls: dropping the bridge waits at most
/// about this long for it.
const TICK: Duration = Duration::from_millis(20);

/// How long a drop waits for room to put back the message the bridge held.
const PUT_BACK_WAIT: Duration = Duration::from_millis(100);

/// A message received from the queue: (type, data).
type Message = (i64, Vec<u8>);

/// Makes a System V message queue pollable: a thread receives the next message `select`
/// picks, holds it, and makes [`MsgqBridge::fd`] (an eventfd) readable until
/// [`MsgqBridge::try_recv`] takes it. A [`Poller`](super::Poller) watches that fd.
///
/// System V queues have no fd (msgrcv(2) is the only way to learn that a message is
/// there), so no backend can watch one directly. The thread costs a thread and a
/// hand-off per message. Back-pressure is kept: the thread holds at most one message
/// and receives the next only once that one was taken, so when the event loop does not
/// read, the queue fills up for its senders as it would without the bridge.
///
/// # No message is lost
///
/// A message the thread received is no longer in the queue for other readers, so the
/// bridge answers for it:
/// - while the bridge lives, [`try_recv`](MsgqBridge::try_recv) hands over every
///   message the thread received, in the order the queue gave them;
/// - [`close`](MsgqBridge::close) stops the thread and returns the message it held,
///   if any;
/// - a plain drop puts that message back into the queue, with its type (behind the
///   messages sent since, so the order changes). If the queue stays full for 100 ms, or
///   has been removed, it cannot be put back and is lost: call `close` where that
///   matters.
///
/// # Dropping is bounded
///
/// msgrcv(2) cannot be interrupted through an fd, so the thread waits on the queue in
/// slices of 20 ms (an `IPC_NOWAIT` poll loop, see [`MessageQueue::recv_vec_timeout`])
/// and checks for shutdown between them. A drop or `close` returns after at most about
/// 20 ms, plus up to 100 ms to put a held message back; it never waits for the event
/// loop, and an fd of the bridge left open elsewhere (a `dup`, a forked child's copy)
/// does not keep it waiting.
///
/// After a readiness event, call [`MsgqBridge::try_recv`] until [`Error::Empty`].
/// When the queue is removed, the bridge reports [`Error::Disconnected`] after the
/// message it already held.
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
/// queue.send(8, b"kept")?;
/// poller.wait(&mut events, None)?;
/// // The bridge holds the second message: closing it hands that message back.
/// assert_eq!(bridge.close()?, Some((8, b"kept".to_vec())));
/// # Ok::<(), interproc_ipc::Error>(())
/// ```
pub struct MsgqBridge {
    queue: Arc<MessageQueue>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when the slot empties or `stop` is set.
    changed: Condvar,
    /// Readable exactly while `slot` or `end` is set: both change only under the lock,
    /// together with the waker.
    ready: Waker,
}

#[derive(Default)]
struct State {
    /// The message received and not yet handed over.
    slot: Option<Message>,
    /// Why the thread stopped receiving (`Disconnected` when the queue was removed).
    end: Option<Error>,
    /// Set by `close`/drop: the thread must stop.
    stop: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl MsgqBridge {
    /// Starts forwarding the messages of `queue` that `select` picks.
    pub fn new(queue: Arc<MessageQueue>, select: Select) -> Result<MsgqBridge> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            ready: Waker::new()?,
        });
        let (q, sh) = (queue.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name("interproc-msgq-bridge".into())
            .spawn(move || forward(&q, select, &sh))
            .map_err(|e| Error::from_io("spawning the msgq bridge thread", e))?;
        Ok(MsgqBridge { queue, shared, thread: Some(thread) })
    }

    /// The fd to register for [`Interest::READABLE`](super::Interest::READABLE).
    pub fn fd(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.shared.ready)
    }

    /// The next message as (type, data), without blocking: [`Error::Empty`] if none is
    /// ready; [`Error::Disconnected`] once the queue was removed and the message held
    /// has been taken; the queue's error, once, if receiving from it failed.
    pub fn try_recv(&mut self) -> Result<(i64, Vec<u8>)> {
        let mut s = self.shared.lock();
        if let Some(m) = s.slot.take() {
            if s.end.is_none() {
                self.shared.ready.reset()?;
            }
            self.shared.changed.notify_all();
            return Ok(m);
        }
        match s.end.take() {
            None => {
                self.shared.ready.reset()?;
                Err(Error::Empty)
            }
            // Reported once; later calls say Disconnected, and the fd stays readable.
            Some(e) => {
                s.end = Some(Error::Disconnected);
                Err(e)
            }
        }
    }

    /// Stops the thread and returns the message it had received and not yet handed
    /// over, if any. Nothing is lost: what is not returned is still in the queue.
    pub fn close(mut self) -> Result<Option<(i64, Vec<u8>)>> {
        Ok(self.stop())
    }

    /// Stops and joins the thread (bounded, see the type's docs); takes the held message.
    fn stop(&mut self) -> Option<Message> {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.shared.lock().slot.take()
    }
}

/// The forwarding thread: receive one message, hold it until taken, repeat.
fn forward(queue: &MessageQueue, select: Select, shared: &Shared) {
    loop {
        {
            let mut s = shared.lock();
            while s.slot.is_some() && !s.stop {
                s = shared.changed.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            if s.stop {
                return;
            }
        }
        let got = queue.recv_vec_timeout(select, TICK);
        let mut s = shared.lock();
        match got {
            Ok(m) => s.slot = Some(m),
            Err(Error::Timeout) => continue,
            // The queue was removed (Disconnected) or failed: record why and stop.
            Err(e) => s.end = Some(e),
        }
        // A failed wake leaves the fd unreadable: the message stays in the slot for
        // `try_recv` or `close`, so it is late, never lost.
        let _ = shared.ready.wake();
        if s.end.is_some() {
            return;
        }
    }
}

impl Drop for MsgqBridge {
    fn drop(&mut self) {
        if let Some((mtype, data)) = self.stop() {
            // Keep it for the next receiver. Taking it freed room a moment ago, so this
            // normally succeeds at once.
            let _ = self.queue.send_timeout(mtype, &data, PUT_BACK_WAIT);
        }
    }
}

impl std::fmt::Debug for MsgqBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MsgqBridge").finish_non_exhaustive()
    }
}
