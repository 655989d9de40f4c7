#![doc = include_str!("../README.md")]
//!
//! # This facade
//!
//! It re-exports the workspace crates: [`ipc`] ([`interproc-ipc`](interproc_ipc)):
//! pipes, FIFOs, Unix domain sockets, TCP, System V message queues, shared memory and
//! System V semaphores, and typed channels
//! over all of them; [`sync`] ([`interproc-sync`](interproc_sync)): futex-based `Mutex`,
//! `Semaphore` and `Monitor`, model-checked with loom. The README above is this page: its
//! examples run as doctests.

pub use interproc_ipc as ipc;
pub use interproc_sync as sync;
