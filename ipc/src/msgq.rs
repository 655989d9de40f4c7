//! System V message queues.
//!
//! A [`MessageQueue`] is a kernel object named by a numeric [`Key`]. It holds whole
//! messages, each with a positive *type* (`mtype`) chosen by the sender. Unlike a pipe,
//! a queue need not be read in FIFO order: a receiver picks messages by type with
//! [`Select`]: the first of any type, the first of an exact type, the first of the
//! lowest type up to `n` (a priority queue), or the first of any type but one.
//!
//! ```
//! use interproc_ipc::msgq::{MessageQueue, Select};
//!
//! // A private queue (IPC_PRIVATE): removed when `q`, its owner, is dropped.
//! let q = MessageQueue::private()?;
//! q.send(3, b"low priority")?;
//! q.send(2, b"reply for client 2")?;
//! q.send(1, b"urgent")?;
//!
//! let mut buf = [0u8; 64];
//! // Exact type: client 2 takes its reply and leaves the rest queued.
//! let (mtype, n) = q.recv(Select::Exact(2), &mut buf)?;
//! assert_eq!((mtype, &buf[..n]), (2, &b"reply for client 2"[..]));
//! // Lowest type <= 3: the urgent message jumps the queue.
//! let (mtype, n) = q.recv(Select::AtMost(3), &mut buf)?;
//! assert_eq!((mtype, &buf[..n]), (1, &b"urgent"[..]));
//! // Any type: FIFO order among what is left.
//! assert_eq!(q.recv_vec(Select::Any)?, (3, b"low priority".to_vec()));
//! // Nothing left: a non-blocking receive says so instead of waiting.
//! assert!(matches!(q.try_recv(Select::Any, &mut buf), Err(interproc_ipc::Error::Empty)));
//! # Ok::<(), interproc_ipc::Error>(())
//! ```
//!
//! # Creating, opening, removing
//!
//! Creating and opening are explicit: [`MessageQueue::create`] fails with
//! [`Error::AlreadyExists`] if the key is taken, [`MessageQueue::open`] fails with
//! [`Error::NotFound`] if it is not, and [`MessageQueue::create_or_open`] says which
//! happened. The default mode is 0600. The process that created a queue owns it: dropping
//! the owner removes the queue (`IPC_RMID`), which wakes every blocked sender and receiver
//! with [`Error::Disconnected`]. An opener's drop leaves the queue alone.
//!
//! interproc's keys have a fixed high byte ([`Key::INTERPROC_PREFIX`], `0x49`, "I"), so
//! its queues stand out in `ipcs -q`. [`MessageQueue::create_unique`] picks a free one.
//! A queue created with a key also gets an owner record (see [`crate::names`]), so
//! `interproc ls` lists it and `interproc clean` removes it ([`remove_by_key`]) once its
//! owner has died. A private queue has no key and no record: if its owner is killed, it
//! stays until `ipcrm -q <id>`.
//!
//! # Limits
//!
//! The kernel caps one message at `kernel.msgmax` bytes and one queue at
//! `kernel.msgmnb` bytes (often 8 KiB and 16 KiB). [`limits()`] reads them with
//! `msgctl(IPC_INFO)`. A message over msgmax is refused before `msgsnd` with
//! [`Error::LimitExceeded`] naming `kernel.msgmax`, its value, and how to raise it. A
//! receive never truncates: a message larger than the buffer stays queued and the call
//! fails with [`Error::ReceiveBufferTooSmall`] (interproc never passes `MSG_NOERROR`).
//!
//! # Blocking, `try_`, timeouts, and their cost
//!
//! `send`/`recv` without a [`PeerWatch`] block in the kernel (plain `msgsnd`/`msgrcv`)
//! and wake as soon as a message or room arrives. The `try_` forms make one `IPC_NOWAIT`
//! call: [`Error::Full`] / [`Error::Empty`].
//!
//! `msgsnd`/`msgrcv` take no timeout, so the `_timeout` forms, and every operation
//! that watches a peer, poll: an `IPC_NOWAIT` call, then a wait that starts with a few
//! `sched_yield`s and grows from 50 µs to 5 ms. While the queue is busy this costs
//! nothing extra. After it has been idle for a while, a message that arrives is noticed
//! up to 5 ms late, and an idle waiter wakes about 200 times a second. Use plain `recv`
//! when latency matters more than a deadline.
//!
//! # A dead peer is `Disconnected`, never a hang
//!
//! A queue has no notion of its peers: it outlives them, and a receiver whose sender died
//! would block forever. Give the operation a [`PeerWatch`] (a pidfd for the peer process):
//! the wait then sleeps in `ppoll` on the pidfd, so the peer's death ends it at once. A
//! receiver first drains what the dead peer left, then gets [`Error::Disconnected`]; a
//! sender gets `Disconnected` as soon as the peer is gone (checked on every send, one
//! extra `ppoll` syscall). A removed queue is `Disconnected` for everyone, watched or not.
//!
//! # Channels
//!
//! [`MsgqSink`]/[`MsgqSource`] carry one frame per kernel message (no header). A sink
//! sends one message type and a source takes what its [`Select`] picks, so one queue can
//! carry both directions, or many clients. [`sender`]/[`receiver`] wrap them in typed
//! [`Sender`]/[`Receiver`]. System V queues have no file descriptor, so they cannot be
//! registered with epoll: `fd()` returns `None`.
//!
//! ```
//! use interproc_ipc::msgq::{self, MessageQueue, Select};
//! use std::sync::Arc;
//!
//! let q = Arc::new(MessageQueue::private()?);
//! let mut requests = msgq::sender::<(u32, String)>(q.clone(), 1)?;
//! let mut inbox = msgq::receiver::<(u32, String)>(q, Select::Exact(1))?;
//! requests.send((7, "seven".into()))?;
//! assert_eq!(inbox.recv()?, (7, "seven".to_string()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use libc::{c_int, c_long};
use nix::errno::Errno;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::channel::{BytesReceiver, BytesSender, FrameSink, FrameSource, Receiver, Sender};
use crate::error::{Error, Result};
use crate::names::{Kind, Registration};
use crate::sys::msg::{self as sys, MsgBuf};

/// The default permission bits of a new queue: read and write for the owner only.
pub const DEFAULT_MODE: u32 = 0o600;

/// The access `open` asks for: msgget(2) checks the requested permission bits against
/// the queue's mode (requesting none, it would open any queue and leave the refusal to
/// the first send or receive).
const READ_WRITE: c_int = 0o600;

const MSGMAX_HINT: &str = "raise it with `sysctl -w kernel.msgmax=N` (root)";

/// A System V IPC key: the name of a queue.
///
/// Shown and parsed as `ipcs` shows it: `0x` and 8 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(libc::key_t);

impl Key {
    /// `IPC_PRIVATE`: not a name but a request for a new queue that no key finds.
    pub const PRIVATE: Key = Key(libc::IPC_PRIVATE);

    /// The high byte of every key in interproc's key space: `0x49`, ASCII "I".
    pub const INTERPROC_PREFIX: u8 = 0x49;

    /// The largest `n` that [`Key::interproc`] takes: keys use the low 24 bits.
    pub const INTERPROC_MAX: u32 = 0x00ff_ffff;

    /// Key `n` of interproc's key space, `0x49nnnnnn`; `None` if `n` does not fit in
    /// 24 bits.
    pub const fn interproc(n: u32) -> Option<Key> {
        if n > Self::INTERPROC_MAX {
            return None;
        }
        Some(Key(((Self::INTERPROC_PREFIX as u32) << 24 | n) as libc::key_t))
    }

    /// `ftok(3)`: a key derived from an existing file's inode and device and the low
    /// 8 bits of `proj` (which must not be 0), so unrelated programs that agree on a
    /// path agree on a key.
    ///
    /// Such keys are outside interproc's key space unless `proj` is `b'I'`, and two
    /// paths may give the same key (ftok keeps only 16 bits of the inode).
    pub fn from_path(path: impl AsRef<Path>, proj: u8) -> Result<Key> {
        let path = path.as_ref();
        if proj == 0 {
            return Err(Error::Os { op: "ftok (proj must not be 0)", errno: Errno::EINVAL });
        }
        sys::ftok(path, proj)
            .map(Key)
            .map_err(|e| Error::from_errno("ftok", format_args!("path {}", path.display()), e))
    }

    /// A key as the kernel sees it.
    pub const fn from_raw(key: libc::key_t) -> Key {
        Key(key)
    }

    /// The raw `key_t`.
    pub const fn as_raw(self) -> libc::key_t {
        self.0
    }

    /// Whether the key is in interproc's key space.
    pub const fn is_interproc(self) -> bool {
        (self.0 as u32) >> 24 == Self::INTERPROC_PREFIX as u32
    }

    /// Whether this is [`Key::PRIVATE`].
    pub const fn is_private(self) -> bool {
        self.0 == libc::IPC_PRIVATE
    }

    /// A key in interproc's key space that is probably free, from the pid, a counter and
    /// the clock: `create_unique` of every System V kind (queues, semaphore sets,
    /// segments) tries these until a create succeeds.
    pub(crate) fn unique_candidate() -> Key {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let h = splitmix64(u64::from(std::process::id()) << 32 ^ n ^ nanos.rotate_left(17));
        Key(((u32::from(Key::INTERPROC_PREFIX) << 24) | (h as u32 & Key::INTERPROC_MAX))
            as libc::key_t)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0 as u32)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

impl fmt::LowerHex for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&(self.0 as u32), f)
    }
}

/// The string was not a key in hex (`0x49000001`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseKeyError(String);

impl fmt::Display for ParseKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a System V key in hex (0x49000001)", self.0)
    }
}

impl std::error::Error for ParseKeyError {}

impl FromStr for Key {
    type Err = ParseKeyError;

    /// Parses `0x`-prefixed hex, as [`Key`]'s `Display` and `ipcs` write it.
    fn from_str(s: &str) -> std::result::Result<Key, ParseKeyError> {
        let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"));
        hex.and_then(|h| u32::from_str_radix(h, 16).ok())
            .map(|k| Key(k as libc::key_t))
            .ok_or_else(|| ParseKeyError(s.to_string()))
    }
}

/// The system-wide limits on message queues, from `msgctl(IPC_INFO)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// `kernel.msgmax`: the largest message, in bytes.
    pub msgmax: usize,
    /// `kernel.msgmnb`: the default capacity of a new queue, in bytes.
    pub msgmnb: usize,
    /// `kernel.msgmni`: the most queues the system holds.
    pub msgmni: usize,
}

/// Reads the kernel's message-queue limits with `msgctl(IPC_INFO)`.
pub fn limits() -> Result<Limits> {
    let info = sys::msg_info().map_err(|e| Error::os("msgctl(IPC_INFO)", e))?;
    let n = |v: c_int| usize::try_from(v).unwrap_or(0);
    Ok(Limits { msgmax: n(info.msgmax), msgmnb: n(info.msgmnb), msgmni: n(info.msgmni) })
}

fn over_msgmax(len: usize, msgmax: usize) -> Error {
    Error::LimitExceeded {
        what: format!("message of {len} bytes"),
        limit: "kernel.msgmax",
        value: msgmax as u64,
        hint: MSGMAX_HINT,
    }
}

/// Which message a receive takes (the `msgtyp` argument of msgrcv(2)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Select {
    /// The first message, whatever its type: FIFO order.
    Any,
    /// The first message of exactly this type (> 0).
    Exact(i64),
    /// The first message of the lowest type that is at most `n` (> 0): types work as
    /// priorities, 1 first.
    AtMost(i64),
    /// The first message whose type is not this one (> 0) (Linux's `MSG_EXCEPT`).
    Except(i64),
}

impl Select {
    /// The `(msgtyp, flags)` pair for msgrcv(2).
    fn raw(self) -> Result<(c_long, c_int)> {
        Ok(match self {
            Select::Any => (0, 0),
            Select::Exact(t) => (valid_mtype(t)?, 0),
            Select::AtMost(n) => (-valid_mtype(n)?, 0),
            Select::Except(t) => (valid_mtype(t)?, libc::MSG_EXCEPT),
        })
    }
}

/// Checks a message type: positive and representable as a C `long`.
fn valid_mtype(t: i64) -> Result<c_long> {
    match c_long::try_from(t) {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(Error::InvalidMessageType { mtype: t }),
    }
}

/// Whether [`MessageQueue::create_or_open`] created the queue or opened an existing one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The queue did not exist; this process created it and owns it.
    Created,
    /// The queue existed; this process opened it.
    Opened,
}

/// What `msgctl(IPC_STAT)` says about a queue.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStat {
    /// Messages in the queue.
    pub messages: u64,
    /// Bytes of message text in the queue.
    pub bytes: u64,
    /// The most bytes the queue holds (`msg_qbytes`, `kernel.msgmnb` when created).
    pub capacity: u64,
    /// The process that sent last, if any did.
    pub last_send_pid: Option<u32>,
    /// The process that received last, if any did.
    pub last_recv_pid: Option<u32>,
    /// When the last message was sent.
    pub last_send: Option<SystemTime>,
    /// When the last message was received.
    pub last_recv: Option<SystemTime>,
    /// Permission bits.
    pub mode: u32,
    /// The owner's uid.
    pub uid: u32,
    /// The creator's uid.
    pub creator_uid: u32,
}

/// The creator's claim on a queue: it removes the queue when dropped, in the process
/// that created it.
#[derive(Debug)]
struct Owner {
    pid: u32,
    _record: Option<Registration>,
}

/// A System V message queue.
///
/// `MessageQueue` is `Send + Sync`: every operation takes `&self`, so one queue can be
/// shared by threads (wrap it in an [`Arc`]).
#[derive(Debug)]
pub struct MessageQueue {
    id: c_int,
    key: Key,
    owner: Option<Owner>,
    /// `kernel.msgmax` and `kernel.msgmnb` when last read; re-read before refusing a
    /// message, since root may have raised them.
    msgmax: AtomicUsize,
    msgmnb: AtomicUsize,
    /// The queue's `msg_qbytes` as this handle last saw it (another process may have
    /// changed it since): a message larger than it is checked against `IPC_STAT`.
    capacity: AtomicUsize,
}

impl MessageQueue {
    /// Creates a queue for `key` with mode 0600; [`Error::AlreadyExists`] if one exists.
    /// This process owns it: dropping the queue removes it.
    pub fn create(key: Key) -> Result<MessageQueue> {
        Self::create_with_mode(key, DEFAULT_MODE)
    }

    /// Creates a queue for `key` with the permission bits `mode` (the low 9 bits are
    /// used; the umask does not apply to System V objects).
    pub fn create_with_mode(key: Key, mode: u32) -> Result<MessageQueue> {
        // Everything that can fail before the queue exists comes first, so a failure
        // never leaves a queue behind.
        let limits = limits()?;
        let flags = libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as c_int;
        let id = sys::msgget(key.0, flags).map_err(|e| create_error(key, e))?;
        // Owned from here on: an early return drops `q`, which removes the queue.
        let mut q = Self::with_limits(id, key, limits);
        q.owner = Some(Owner { pid: std::process::id(), _record: None });
        if !key.is_private() {
            // Without a record, a crash would leak the queue unseen: fail instead.
            let record = Registration::register(Kind::MsgQueue, &key.to_string()).map_err(|e| {
                let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
                Error::Os { op: "writing the owner record", errno }
            })?;
            q.owner = Some(Owner { pid: std::process::id(), _record: Some(record) });
        }
        Ok(q)
    }

    /// Opens the existing queue for `key`; [`Error::NotFound`] if there is none, and
    /// [`Error::PermissionDenied`] if this process may not both read and write it.
    /// Dropping an opened queue leaves it in place.
    pub fn open(key: Key) -> Result<MessageQueue> {
        if key.is_private() {
            // msgget(IPC_PRIVATE, 0) would create a queue, not find one.
            return Err(Error::NotFound {
                what: "a message queue with key IPC_PRIVATE (private queues are opened by id: \
                       `MessageQueue::open_id`)"
                    .into(),
            });
        }
        let id = sys::msgget(key.0, READ_WRITE)
            .map_err(|e| Error::from_errno("msgget", queue_name(key, None), e))?;
        Ok(Self::with_limits(id, key, limits()?))
    }

    /// Opens the queue with id `id` (as `ipcs -q` shows it, or as [`MessageQueue::id`]
    /// returned in another process): the way to share a private queue.
    /// [`Error::NotFound`] if no such queue exists.
    pub fn open_id(id: i32) -> Result<MessageQueue> {
        let ds = sys::msgctl_stat(id).map_err(|e| match e {
            Errno::EINVAL | Errno::EIDRM => {
                Error::NotFound { what: format!("message queue with id {id}") }
            }
            e => Error::from_errno("msgctl(IPC_STAT)", format_args!("message queue id {id}"), e),
        })?;
        Ok(Self::with_limits(id, Key(ds.msg_perm.__key), limits()?))
    }

    /// Creates the queue for `key` (mode 0600) or, if it exists, opens it; says which.
    pub fn create_or_open(key: Key) -> Result<(MessageQueue, Outcome)> {
        Self::create_or_open_with_mode(key, DEFAULT_MODE)
    }

    /// [`MessageQueue::create_or_open`] with the permission bits for a new queue.
    pub fn create_or_open_with_mode(key: Key, mode: u32) -> Result<(MessageQueue, Outcome)> {
        // Another process may remove the queue between our failed create and our open:
        // then create again. A bound keeps a pathological peer from spinning us forever.
        let mut last = None;
        for _ in 0..64 {
            match Self::create_with_mode(key, mode) {
                Ok(q) => return Ok((q, Outcome::Created)),
                Err(Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
            match Self::open(key) {
                Ok(q) => return Ok((q, Outcome::Opened)),
                Err(e @ Error::NotFound { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(Error::NotFound { what: queue_name(key, None) }))
    }

    /// Creates a private queue (`IPC_PRIVATE`, mode 0600): no key finds it; share it
    /// with a `fork`ed child, or pass [`MessageQueue::id`] to another process
    /// ([`MessageQueue::open_id`]). This process owns it.
    pub fn private() -> Result<MessageQueue> {
        Self::create_with_mode(Key::PRIVATE, DEFAULT_MODE)
    }

    /// [`MessageQueue::private`] with the given permission bits.
    pub fn private_with_mode(mode: u32) -> Result<MessageQueue> {
        Self::create_with_mode(Key::PRIVATE, mode)
    }

    /// Creates a queue (mode 0600) under a free key in interproc's key space, chosen
    /// from the pid, a counter and the clock; read it back with [`MessageQueue::key`] and
    /// pass it to the processes that should [`MessageQueue::open`] it.
    pub fn create_unique() -> Result<MessageQueue> {
        Self::create_unique_with_mode(DEFAULT_MODE)
    }

    /// [`MessageQueue::create_unique`] with the given permission bits.
    pub fn create_unique_with_mode(mode: u32) -> Result<MessageQueue> {
        const ATTEMPTS: u32 = 64;
        for _ in 0..ATTEMPTS {
            let key = Key::unique_candidate();
            match Self::create_with_mode(key, mode) {
                Err(Error::AlreadyExists { .. }) => continue,
                r => return r,
            }
        }
        Err(Error::AlreadyExists {
            what: format!("every one of {ATTEMPTS} interproc keys tried for a new message queue"),
        })
    }

    fn with_limits(id: c_int, key: Key, l: Limits) -> MessageQueue {
        MessageQueue {
            id,
            key,
            owner: None,
            msgmax: AtomicUsize::new(l.msgmax),
            msgmnb: AtomicUsize::new(l.msgmnb),
            capacity: AtomicUsize::new(l.msgmnb),
        }
    }

    /// The queue's id (`msqid`), as `ipcs -q` shows it.
    pub fn id(&self) -> i32 {
        self.id
    }

    /// The queue's key ([`Key::PRIVATE`] for a private queue).
    pub fn key(&self) -> Key {
        self.key
    }

    /// Whether this handle created the queue and removes it on drop.
    pub fn is_owner(&self) -> bool {
        self.owner.is_some()
    }

    /// The largest message this queue accepts: `kernel.msgmax` as last read.
    pub fn max_message(&self) -> usize {
        self.msgmax.load(Ordering::Relaxed)
    }

    /// The kernel's limits, read again now.
    pub fn limits(&self) -> Result<Limits> {
        let l = limits()?;
        self.msgmax.store(l.msgmax, Ordering::Relaxed);
        self.msgmnb.store(l.msgmnb, Ordering::Relaxed);
        Ok(l)
    }

    /// `msgctl(IPC_STAT)`: what is in the queue and who used it last.
    /// [`Error::NotFound`] if the queue was removed.
    pub fn stat(&self) -> Result<QueueStat> {
        let ds = sys::msgctl_stat(self.id).map_err(|e| match e {
            Errno::EINVAL | Errno::EIDRM => Error::NotFound { what: self.name() },
            e => Error::from_errno("msgctl(IPC_STAT)", self.name(), e),
        })?;
        let pid = |p: libc::pid_t| u32::try_from(p).ok().filter(|&p| p != 0);
        let time = |t: libc::time_t| {
            u64::try_from(t)
                .ok()
                .filter(|&t| t != 0)
                .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(t))
        };
        Ok(QueueStat {
            messages: ds.msg_qnum as u64,
            bytes: ds.__msg_cbytes as u64,
            capacity: ds.msg_qbytes as u64,
            last_send_pid: pid(ds.msg_lspid),
            last_recv_pid: pid(ds.msg_lrpid),
            last_send: time(ds.msg_stime),
            last_recv: time(ds.msg_rtime),
            mode: u32::from(ds.msg_perm.mode) & 0o777,
            uid: ds.msg_perm.uid,
            creator_uid: ds.msg_perm.cuid,
        })
    }

    /// Sets the queue's capacity in bytes (`msg_qbytes`, through `IPC_SET`). Anyone who
    /// owns or created the queue may lower it; raising it above `kernel.msgmnb` needs
    /// root (`CAP_SYS_RESOURCE`), else [`Error::LimitExceeded`] naming `kernel.msgmnb`.
    /// A bigger queue lets a fast sender run further ahead of its receivers.
    pub fn set_capacity(&self, bytes: usize) -> Result<()> {
        let mut ds = sys::msgctl_stat(self.id).map_err(|e| self.op_error("msgctl(IPC_STAT)", e))?;
        ds.msg_qbytes = bytes.try_into().unwrap_or(libc::msglen_t::MAX);
        sys::msgctl_set(self.id, &ds).map_err(|e| match e {
            Errno::EPERM if bytes > self.msgmnb.load(Ordering::Relaxed) => Error::LimitExceeded {
                what: format!("a queue capacity of {bytes} bytes"),
                limit: "kernel.msgmnb",
                value: self.msgmnb.load(Ordering::Relaxed) as u64,
                hint: "only root may raise a queue above it; raise it with \
                       `sysctl -w kernel.msgmnb=N` (root)",
            },
            Errno::EINVAL => Error::Disconnected,
            e => self.op_error("msgctl(IPC_SET)", e),
        })?;
        self.capacity.store(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Removes the queue now (`IPC_RMID`), whether or not this handle created it.
    /// Blocked senders and receivers wake with [`Error::Disconnected`]; messages still
    /// queued are discarded. [`Error::NotFound`] if it was already removed.
    pub fn remove(mut self) -> Result<()> {
        // The owner record (if any) goes when `owner` is dropped, after the queue.
        let _owner = self.owner.take();
        sys::msgctl_rmid(self.id).map_err(|e| match e {
            Errno::EINVAL | Errno::EIDRM => Error::NotFound { what: self.name() },
            e => Error::from_errno("msgctl(IPC_RMID)", self.name(), e),
        })
    }

    fn name(&self) -> String {
        queue_name(self.key, Some(self.id))
    }

    // ---- sending ----

    /// Sends `data` as one message of type `mtype` (> 0), blocking while the queue is
    /// full.
    pub fn send(&self, mtype: i64, data: &[u8]) -> Result<()> {
        self.send_deadline(mtype, data, None, None)
    }

    /// Sends without blocking; [`Error::Full`] if the queue has no room.
    pub fn try_send(&self, mtype: i64, data: &[u8]) -> Result<()> {
        match self.send_deadline(mtype, data, Some(Instant::now()), None) {
            Err(Error::Timeout) => Err(Error::Full),
            r => r,
        }
    }

    /// Sends, waiting at most `timeout` for room; [`Error::Timeout`] if none came.
    pub fn send_timeout(&self, mtype: i64, data: &[u8], timeout: Duration) -> Result<()> {
        self.send_deadline(mtype, data, Instant::now().checked_add(timeout), None)
    }

    /// Sends, waiting until `deadline` (`None`: forever; a past deadline: do not block).
    /// With a `watch`, a dead peer ends the send with [`Error::Disconnected`].
    pub fn send_deadline(
        &self,
        mtype: i64,
        data: &[u8],
        deadline: Option<Instant>,
        watch: Option<&PeerWatch>,
    ) -> Result<()> {
        let mut buf = MsgBuf::with_text_capacity(data.len());
        self.send_with(&mut buf, mtype, data, deadline, watch)
    }

    /// Checks `len` against the kernel's limits, re-reading them before refusing.
    fn check_len(&self, len: usize) -> Result<()> {
        if len > self.msgmax.load(Ordering::Relaxed) {
            let l = self.limits()?;
            if len > l.msgmax {
                return Err(over_msgmax(len, l.msgmax));
            }
        }
        if len > self.capacity.load(Ordering::Relaxed) {
            // msgsnd(2) waits for room forever if the message is larger than the queue.
            let cap = match self.stat() {
                Ok(st) => st.capacity,
                Err(Error::NotFound { .. }) => return Err(Error::Disconnected),
                Err(e) => return Err(e),
            };
            self.capacity.store(usize::try_from(cap).unwrap_or(usize::MAX), Ordering::Relaxed);
            if len as u64 > cap {
                return Err(Error::LimitExceeded {
                    what: format!("message of {len} bytes"),
                    limit: "kernel.msgmnb",
                    value: cap,
                    hint: "a queue holds at most msg_qbytes bytes (kernel.msgmnb when it was \
                           created): raise it with `MessageQueue::set_capacity`, or raise \
                           kernel.msgmnb with `sysctl -w kernel.msgmnb=N` (root) and create the \
                           queue again",
                });
            }
        }
        Ok(())
    }

    fn send_with(
        &self,
        buf: &mut MsgBuf,
        mtype: i64,
        data: &[u8],
        deadline: Option<Instant>,
        watch: Option<&PeerWatch>,
    ) -> Result<()> {
        let mtype = valid_mtype(mtype)?;
        self.check_len(data.len())?;
        buf.fill(mtype, data);
        let len = data.len();
        let fail = |e: Errno| match e {
            // EINVAL: msgsz over msgmax (lowered since we checked), or the id no longer
            // names a queue (removed before the call).
            Errno::EINVAL => match self.limits() {
                Ok(l) if len > l.msgmax => over_msgmax(len, l.msgmax),
                _ => Error::Disconnected,
            },
            e => self.op_error("msgsnd", e),
        };
        if let Some(w) = watch {
            if w.has_exited()? {
                return Err(Error::Disconnected);
            }
        }
        if deadline.is_none() && watch.is_none() {
            return sys::msgsnd(self.id, buf, len, 0).map_err(fail);
        }
        nowait_loop(deadline, watch, false, || {
            match sys::msgsnd(self.id, buf, len, libc::IPC_NOWAIT) {
                Ok(()) => Ok(Some(())),
                Err(Errno::EAGAIN) => Ok(None),
                Err(e) => Err(fail(e)),
            }
        })
    }

    // ---- receiving ----

    /// Receives the message `select` picks into `buf`, blocking until there is one.
    /// Returns its type and length. A message longer than `buf` stays queued:
    /// [`Error::ReceiveBufferTooSmall`].
    pub fn recv(&self, select: Select, buf: &mut [u8]) -> Result<(i64, usize)> {
        self.recv_deadline(select, buf, None, None)
    }

    /// Receives without blocking; [`Error::Empty`] if no message matches.
    pub fn try_recv(&self, select: Select, buf: &mut [u8]) -> Result<(i64, usize)> {
        match self.recv_deadline(select, buf, Some(Instant::now()), None) {
            Err(Error::Timeout) => Err(Error::Empty),
            r => r,
        }
    }

    /// Receives, waiting at most `timeout`; [`Error::Timeout`] if nothing matched.
    pub fn recv_timeout(
        &self,
        select: Select,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<(i64, usize)> {
        self.recv_deadline(select, buf, Instant::now().checked_add(timeout), None)
    }

    /// Receives, waiting until `deadline` (`None`: forever; a past deadline: do not
    /// block). With a `watch`, once the peer is dead and no matching message is left:
    /// [`Error::Disconnected`].
    pub fn recv_deadline(
        &self,
        select: Select,
        buf: &mut [u8],
        deadline: Option<Instant>,
        watch: Option<&PeerWatch>,
    ) -> Result<(i64, usize)> {
        let mut scratch = MsgBuf::with_text_capacity(buf.len());
        let (t, n) = self.recv_with(&mut scratch, buf.len(), select, deadline, watch)?;
        buf[..n].copy_from_slice(scratch.text(n));
        Ok((t, n))
    }

    /// Receives the message `select` picks as a new `Vec`, blocking until there is one.
    pub fn recv_vec(&self, select: Select) -> Result<(i64, Vec<u8>)> {
        self.recv_vec_deadline(select, None, None)
    }

    /// [`MessageQueue::recv_vec`] without blocking; [`Error::Empty`] if nothing matches.
    pub fn try_recv_vec(&self, select: Select) -> Result<(i64, Vec<u8>)> {
        match self.recv_vec_deadline(select, Some(Instant::now()), None) {
            Err(Error::Timeout) => Err(Error::Empty),
            r => r,
        }
    }

    /// [`MessageQueue::recv_vec`], waiting at most `timeout`.
    pub fn recv_vec_timeout(&self, select: Select, timeout: Duration) -> Result<(i64, Vec<u8>)> {
        self.recv_vec_deadline(select, Instant::now().checked_add(timeout), None)
    }

    /// [`MessageQueue::recv_vec`] with a deadline and an optional peer watch, as
    /// [`MessageQueue::recv_deadline`].
    pub fn recv_vec_deadline(
        &self,
        select: Select,
        deadline: Option<Instant>,
        watch: Option<&PeerWatch>,
    ) -> Result<(i64, Vec<u8>)> {
        let mut size = self.max_message();
        loop {
            let mut scratch = MsgBuf::with_text_capacity(size);
            match self.recv_with(&mut scratch, size, select, deadline, watch) {
                Ok((t, n)) => return Ok((t, scratch.text(n).to_vec())),
                // The message is larger than msgmax was when we read it (root raised
                // the limit since): it is still queued, so try again with more room.
                Err(Error::ReceiveBufferTooSmall { .. }) if size < (1 << 30) => {
                    size = self.limits()?.msgmax.max(size * 2);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Receives into `scratch`, accepting at most `max` bytes: (mtype, length).
    fn recv_with(
        &self,
        scratch: &mut MsgBuf,
        max: usize,
        select: Select,
        deadline: Option<Instant>,
        watch: Option<&PeerWatch>,
    ) -> Result<(i64, usize)> {
        let (msgtyp, flags) = select.raw()?;
        let fail = |e: Errno| match e {
            Errno::E2BIG => Error::ReceiveBufferTooSmall { capacity: max },
            // The id no longer names a queue: it was removed before the call.
            Errno::EINVAL => Error::Disconnected,
            e => self.op_error("msgrcv", e),
        };
        let n = if deadline.is_none() && watch.is_none() {
            sys::msgrcv(self.id, scratch, max, msgtyp, flags).map_err(fail)?
        } else {
            nowait_loop(deadline, watch, true, || {
                match sys::msgrcv(self.id, scratch, max, msgtyp, flags | libc::IPC_NOWAIT) {
                    Ok(n) => Ok(Some(n)),
                    Err(Errno::ENOMSG) => Ok(None),
                    Err(e) => Err(fail(e)),
                }
            })?
        };
        Ok((scratch.mtype(), n))
    }

    fn op_error(&self, op: &'static str, e: Errno) -> Error {
        match e {
            // EIDRM: removed while we waited.
            Errno::EIDRM => Error::Disconnected,
            e => Error::from_errno(op, self.name(), e),
        }
    }
}

impl Drop for MessageQueue {
    fn drop(&mut self) {
        let Some(owner) = self.owner.take() else { return };
        if owner.pid == std::process::id() {
            let _ = sys::msgctl_rmid(self.id);
            drop(owner);
        } else {
            // A `fork`ed child dropping its copy: the queue and its owner record belong
            // to the parent. Forgetting only leaks this process's copy of the record fd,
            // which closes when it exits or execs (O_CLOEXEC).
            std::mem::forget(owner);
        }
    }
}

fn queue_name(key: Key, id: Option<c_int>) -> String {
    match (key.is_private(), id) {
        (true, Some(id)) => format!("private message queue (id {id})"),
        (true, None) => "private message queue".to_string(),
        (false, _) => format!("message queue {key}"),
    }
}

fn create_error(key: Key, e: Errno) -> Error {
    match e {
        Errno::ENOSPC => Error::LimitExceeded {
            what: "another message queue".into(),
            limit: "kernel.msgmni",
            value: limits().map(|l| l.msgmni as u64).unwrap_or(0),
            hint: "remove unused queues (`ipcs -q`, `interproc clean`) or raise it with \
                   `sysctl -w kernel.msgmni=N` (root)",
        },
        e => Error::from_errno("msgget", queue_name(key, None), e),
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Removes the queue with `key` (`msgget(key, 0)` then `IPC_RMID`), whoever created it:
/// `interproc clean` calls this for a queue whose owner record says the owner died.
/// [`Error::NotFound`] if there is no such queue.
pub fn remove_by_key(key: Key) -> Result<()> {
    MessageQueue::open(key)?.remove()
}

/// A queue on the machine, as `/proc/sysvipc/msg` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueEntry {
    /// The key ([`Key::PRIVATE`] for a private queue).
    pub key: Key,
    /// The id.
    pub id: i32,
    /// Messages in the queue.
    pub messages: u64,
    /// Bytes of message text in the queue.
    pub bytes: u64,
}

/// The queues in interproc's key space ([`Key::is_interproc`]) that exist now, whoever
/// created them. `interproc ls` can set them against the owner records to spot a queue
/// that has none (its creator died between `msgget` and writing the record, or wrote the
/// record in another runtime directory).
pub fn list_interproc() -> io::Result<Vec<QueueEntry>> {
    let text = std::fs::read_to_string("/proc/sysvipc/msg")?;
    let mut out = Vec::new();
    // Columns: key msqid perms cbytes qnum ..., the key in signed decimal.
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let parsed = (|| {
            Some(QueueEntry {
                key: Key(f.first()?.parse().ok()?),
                id: f.get(1)?.parse().ok()?,
                bytes: f.get(3)?.parse().ok()?,
                messages: f.get(4)?.parse().ok()?,
            })
        })();
        let Some(e) = parsed else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unparsable line in /proc/sysvipc/msg: {line:?}"),
            ));
        };
        if e.key.is_interproc() {
            out.push(e);
        }
    }
    Ok(out)
}

// ---- waiting without a kernel timeout ----

/// `sched_yield`s before the first sleep: a peer that is running often answers within
/// a few microseconds, far less than the shortest sleep costs.
const YIELDS: u32 = 8;
const FIRST_SLEEP: Duration = Duration::from_micros(50);
const LONGEST_SLEEP: Duration = Duration::from_millis(5);

/// Runs `attempt`, an `IPC_NOWAIT` call where `Ok(None)` means "would block", until it
/// succeeds or fails, the deadline passes ([`Error::Timeout`]), or the watched peer has
/// exited ([`Error::Disconnected`]; after one more attempt if `drain`, because what the
/// peer sent before dying is already queued).
fn nowait_loop<T>(
    deadline: Option<Instant>,
    watch: Option<&PeerWatch>,
    drain: bool,
    mut attempt: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let mut round = 0u32;
    loop {
        if let Some(v) = attempt()? {
            return Ok(v);
        }
        if let Some(w) = watch {
            if w.has_exited()? {
                if drain {
                    if let Some(v) = attempt()? {
                        return Ok(v);
                    }
                }
                return Err(Error::Disconnected);
            }
        }
        let left = match deadline {
            None => LONGEST_SLEEP,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left,
                _ => return Err(Error::Timeout),
            },
        };
        if round < YIELDS {
            std::thread::yield_now();
        } else {
            let exp = (round - YIELDS).min(10);
            let nap = (FIRST_SLEEP * (1 << exp)).min(LONGEST_SLEEP).min(left);
            match watch {
                // Sleeps on the pidfd: the peer's death cuts the nap short.
                Some(w) => {
                    sys::wait_readable_for(w, nap).map_err(|e| Error::os("ppoll(pidfd)", e))?;
                }
                None => std::thread::sleep(nap),
            }
        }
        round = round.saturating_add(1);
    }
}

/// Watches a peer process through a pidfd, so that waits on a queue end with
/// [`Error::Disconnected`] when it exits (see the [module docs](self)).
///
/// A pidfd refers to one process, never to a later one that reuses its pid. But the
/// pid must still name the intended process when the watch is built: that holds for a
/// child not yet reaped ([`PeerWatch::child`]) and for the parent checked right after
/// opening ([`PeerWatch::parent`]); for any other pid it is the caller's judgement.
#[derive(Debug)]
pub struct PeerWatch {
    fd: OwnedFd,
    pid: u32,
}

impl PeerWatch {
    /// Watches process `pid` (`pidfd_open(2)`). [`Error::Disconnected`] if no such
    /// process exists any more.
    pub fn new(pid: u32) -> Result<PeerWatch> {
        let raw = libc::pid_t::try_from(pid).map_err(|_| Error::os("pidfd_open", Errno::EINVAL))?;
        let fd = sys::pidfd_open(raw).map_err(|e| match e {
            Errno::ESRCH => Error::Disconnected,
            e => Error::os("pidfd_open", e),
        })?;
        Ok(PeerWatch { fd, pid })
    }

    /// Watches a child process. Call it before the child is waited for: until then its
    /// pid cannot be reused.
    pub fn child(child: &std::process::Child) -> Result<PeerWatch> {
        Self::new(child.id())
    }

    /// Watches this process's parent. If the parent dies while the watch is being
    /// opened (the process is re-parented), [`Error::Disconnected`].
    ///
    /// If the parent had died even before this call, `getppid` already names the
    /// process that adopted this one, and the watch would wait for that one instead:
    /// when the parent's pid is known (the parent can pass it down), prefer
    /// [`PeerWatch::parent_is`].
    pub fn parent() -> Result<PeerWatch> {
        Self::parent_is(std::os::unix::process::parent_id())
    }

    /// Watches this process's parent, which must be `pid`: [`Error::Disconnected`] if
    /// the parent is not (or no longer) `pid`, because it died and this process was
    /// re-parented.
    pub fn parent_is(pid: u32) -> Result<PeerWatch> {
        let w = Self::new(pid)?;
        // Re-parenting changes getppid(): if it answers `pid` after the pidfd is open,
        // the pidfd was opened while the parent was alive, so it names the parent.
        if std::os::unix::process::parent_id() != pid {
            return Err(Error::Disconnected);
        }
        Ok(w)
    }

    /// The watched pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the watched process has exited (its pidfd is readable).
    pub fn has_exited(&self) -> Result<bool> {
        sys::wait_readable_for(&self.fd, Duration::ZERO).map_err(|e| Error::os("ppoll(pidfd)", e))
    }

    /// A second watch on the same process (the pidfd `dup`ed).
    pub fn try_clone(&self) -> io::Result<PeerWatch> {
        Ok(PeerWatch { fd: self.fd.try_clone()?, pid: self.pid })
    }
}

impl AsFd for PeerWatch {
    /// The pidfd: readable once the process has exited, so it can join an event loop.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

// ---- channels ----

/// The sending half of a channel over a queue: every frame is one message of type
/// [`MsgqSink::mtype`].
///
/// The maximum frame starts at, and cannot exceed, `kernel.msgmax`; a larger payload gets
/// [`Error::LimitExceeded`] naming `kernel.msgmax`.
#[derive(Debug)]
pub struct MsgqSink {
    queue: Arc<MessageQueue>,
    mtype: i64,
    watch: Option<PeerWatch>,
    max: usize,
    buf: MsgBuf,
}

impl MsgqSink {
    /// A sink that sends messages of type `mtype` (> 0) to `queue`.
    pub fn new(queue: impl Into<Arc<MessageQueue>>, mtype: i64) -> Result<MsgqSink> {
        valid_mtype(mtype)?;
        let queue = queue.into();
        let max = queue.max_message();
        Ok(MsgqSink { queue, mtype, watch: None, max, buf: MsgBuf::with_text_capacity(0) })
    }

    /// Sends end with [`Error::Disconnected`] once the watched process has died.
    pub fn with_peer_watch(mut self, watch: PeerWatch) -> MsgqSink {
        self.watch = Some(watch);
        self
    }

    /// The queue.
    pub fn queue(&self) -> &Arc<MessageQueue> {
        &self.queue
    }

    /// The type of every message this sink sends.
    pub fn mtype(&self) -> i64 {
        self.mtype
    }

    /// The peer watch, if any.
    pub fn peer_watch(&self) -> Option<&PeerWatch> {
        self.watch.as_ref()
    }
}

impl FrameSink for MsgqSink {
    fn send_frame(&mut self, payload: &[u8], deadline: Option<Instant>) -> Result<()> {
        // The kernel's limit first, so a payload over msgmax names it.
        self.queue.check_len(payload.len())?;
        if payload.len() > self.max {
            return Err(Error::MessageTooLarge { size: payload.len(), max: self.max });
        }
        self.queue.send_with(&mut self.buf, self.mtype, payload, deadline, self.watch.as_ref())
    }

    fn max_frame(&self) -> usize {
        self.max
    }

    fn set_max_frame(&mut self, max: usize) {
        self.max = max.min(self.queue.max_message());
    }

    /// Always `None`: System V queues have no file descriptor.
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

/// The receiving half of a channel over a queue: every message that `select` picks is
/// one frame.
///
/// A message larger than [`FrameSource::max_frame`] is not truncated: it stays queued
/// and every receive fails with [`Error::Malformed`] until the maximum is raised (as a
/// stream source stays broken after a frame over its maximum).
#[derive(Debug)]
pub struct MsgqSource {
    queue: Arc<MessageQueue>,
    select: Select,
    watch: Option<PeerWatch>,
    max: usize,
    buf: MsgBuf,
    last_mtype: Option<i64>,
}

impl MsgqSource {
    /// A source that receives the messages `select` picks from `queue`.
    pub fn new(queue: impl Into<Arc<MessageQueue>>, select: Select) -> Result<MsgqSource> {
        select.raw()?;
        let queue = queue.into();
        let max = queue.max_message();
        Ok(MsgqSource {
            queue,
            select,
            watch: None,
            max,
            buf: MsgBuf::with_text_capacity(max),
            last_mtype: None,
        })
    }

    /// Receives end with [`Error::Disconnected`] once the watched process has died and
    /// no matching message is left.
    pub fn with_peer_watch(mut self, watch: PeerWatch) -> MsgqSource {
        self.watch = Some(watch);
        self
    }

    /// The queue.
    pub fn queue(&self) -> &Arc<MessageQueue> {
        &self.queue
    }

    /// Which messages this source takes.
    pub fn select(&self) -> Select {
        self.select
    }

    /// The type of the last message received, if any (useful with
    /// [`Select::AtMost`] and [`Select::Any`]).
    pub fn last_mtype(&self) -> Option<i64> {
        self.last_mtype
    }

    /// The peer watch, if any.
    pub fn peer_watch(&self) -> Option<&PeerWatch> {
        self.watch.as_ref()
    }
}

impl FrameSource for MsgqSource {
    fn recv_frame(&mut self, deadline: Option<Instant>) -> Result<&[u8]> {
        let r = self.queue.recv_with(
            &mut self.buf,
            self.max,
            self.select,
            deadline,
            self.watch.as_ref(),
        );
        let (t, n) = r.map_err(|e| match e {
            Error::ReceiveBufferTooSmall { capacity } => Error::Malformed {
                reason: format!(
                    "a message over the maximum frame of {capacity} bytes is next in the queue; \
                     it was left there, not truncated: raise the maximum to receive it"
                ),
            },
            e => e,
        })?;
        self.last_mtype = Some(t);
        Ok(self.buf.text(n))
    }

    fn max_frame(&self) -> usize {
        self.max
    }

    fn set_max_frame(&mut self, max: usize) {
        self.max = max.min(self.queue.max_message());
        self.buf.reserve_text(self.max);
    }

    /// Always `None`: System V queues have no file descriptor.
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

/// A typed sender of messages of type `mtype` (> 0) to `queue`.
pub fn sender<T: Serialize>(
    queue: impl Into<Arc<MessageQueue>>,
    mtype: i64,
) -> Result<Sender<T, MsgqSink>> {
    Ok(Sender::new(MsgqSink::new(queue, mtype)?))
}

/// A typed receiver of the messages `select` picks from `queue`.
pub fn receiver<T: DeserializeOwned>(
    queue: impl Into<Arc<MessageQueue>>,
    select: Select,
) -> Result<Receiver<T, MsgqSource>> {
    Ok(Receiver::new(MsgqSource::new(queue, select)?))
}

/// A raw-bytes sender of messages of type `mtype` (> 0) to `queue`.
pub fn bytes_sender(
    queue: impl Into<Arc<MessageQueue>>,
    mtype: i64,
) -> Result<BytesSender<MsgqSink>> {
    Ok(BytesSender::new(MsgqSink::new(queue, mtype)?))
}

/// A raw-bytes receiver of the messages `select` picks from `queue`.
pub fn bytes_receiver(
    queue: impl Into<Arc<MessageQueue>>,
    select: Select,
) -> Result<BytesReceiver<MsgqSource>> {
    Ok(BytesReceiver::new(MsgqSource::new(queue, select)?))
}

/// A typed channel over a new private queue, with messages of type 1: (sender,
/// receiver). The queue goes when both halves are dropped (in the creating process; a
/// `fork`ed child's copies leave it alone).
pub fn channel<T: Serialize + DeserializeOwned>(
) -> Result<(Sender<T, MsgqSink>, Receiver<T, MsgqSource>)> {
    let q = Arc::new(MessageQueue::private()?);
    Ok((sender(q.clone(), 1)?, receiver(q, Select::Exact(1))?))
}
