#![doc = include_str!("../README.md")]
//!
//! # This facade
//!
//! It re-exports the workspace crates: [`ipc`] ([`interproc-ipc`](interproc_ipc)):
//! pipes, FIFOs, Unix domain sockets, TCP, System V message queues, and typed channels
//! over all of them. The README above is this page: its examples run as doctests.

pub use interproc_ipc as ipc;
