//! # interproc
//!
//! Linux IPC and concurrency primitives that work across real OS processes.
//!
//! This facade re-exports the workspace crates:
//!
//! - [`ipc`] ([`interproc-ipc`](interproc_ipc)): pipes, FIFOs, Unix domain sockets, TCP,
//!   System V message queues, and typed channels over all of them.
//! - [`sync`] ([`interproc-sync`](interproc_sync)): futex-based `Mutex`, `Semaphore` and
//!   `Monitor`, model-checked with loom.
//!
//! See the README for a tour with copy-paste examples.

pub use interproc_ipc as ipc;
pub use interproc_sync as sync;
