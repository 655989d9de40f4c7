//! # interproc-ipc
//!
//! Transports between Linux processes, and typed channels over all of them.
//!
//! | module | mechanism |
//! |---|---|
//! | [`pipe`] | anonymous pipes (`pipe2`, `O_CLOEXEC`) |
//! | [`fifo`] | named pipes (`mkfifo`), with the kernel's open semantics and owner-removed names |
//! | [`msgq`] | System V message queues: typed messages, receive by type, kernel limits, peer watch |
//! | [`shm`] | shared memory: typed POSIX, memfd and System V segments; semaphore-guarded segments |
//! | [`sem`] | System V semaphore sets: `SEM_UNDO`, timeouts, owner-removed |
//! | [`socket`] | Unix domain sockets: stream, seqpacket, datagram; abstract names; fd passing; peer credentials |
//! | [`tcp`] | TCP streams (loopback or any address) with the same framing as Unix streams |
//! | [`channel`] | typed [`channel::Sender`]/[`channel::Receiver`] and raw-bytes channels over any transport |
//! | [`reactor`] | readiness for many fds at once: epoll, poll and select backends; timers, signals, waker |
//! | [`names`] | the lifecycle of named resources: owner records, `interproc ls`/`clean` |
//!
//! Errors are one enum, [`Error`], whose variants a caller can act on; sending hands the
//! value back in [`SendError`].

pub mod channel;
mod error;
pub mod fifo;
pub mod msgq;
pub mod names;
pub mod pipe;
pub mod reactor;
pub mod sem;
pub mod shm;
pub mod socket;
mod stream_end;
mod sys;
pub mod tcp;

pub use error::{Error, Result, SendError};
