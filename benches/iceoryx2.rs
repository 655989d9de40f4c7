//! iceoryx2 between two processes, as the strongest shared-memory peer to compare
//! interproc with: publish-subscribe of `[u8]` slices, one service per direction, in the
//! shared groups `latency/<size>` and `throughput/<size>` (see `common`).
//!
//! Two rows:
//! - `iceoryx2/copy-spin`: the sender copies the message into a loaned sample
//!   (`loan_slice_uninit` + `write_from_slice`), the receiver copies the sample out into
//!   its own buffer, like every other row.
//! - `iceoryx2/loan-spin`: iceoryx2's zero-copy mode. The sender writes the payload in
//!   place in the loaned sample (every byte: a fill and the flag byte), the receiver reads
//!   it in place (one word from every cache line) and releases it, copying nothing.
//!
//! Both rows spin: iceoryx2's publish-subscribe has no blocking receive (a user who
//! wants to sleep adds an event service and a WaitSet), so the receiver polls
//! `receive()`, yielding the CPU every [`YIELD_EVERY`] polls so that a peer sharing the
//! core still runs. The publisher blocks on a full subscriber buffer
//! (`enable_safe_overflow(false)`, `RetryUntilDelivered`), so no message is dropped.
//!
//! Each process creates its own node and ports after the fork, as two programs would; the
//! bench waits until the peer's ports exist before it measures.
//!
//! Built only with `--features bench-iceoryx2` (iceoryx2 adds about 50 crates to the
//! build): `cargo bench --features bench-iceoryx2 --bench iceoryx2`.
//!
//! iceoryx2 keeps one segment on purpose after its last node is gone, a machine-wide node
//! counter (`/dev/shm/iox2_*_node.<version>.global_mgmt`); the bench removes it at the end
//! if it was not there before the run, so a run leaves nothing in `/dev/shm`.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{Link, Peer};
use criterion::Criterion;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;

/// Polls between two `sched_yield`s while waiting for a sample.
const YIELD_EVERY: u32 = 1024;
/// Samples a subscriber buffers before the publisher waits.
const BUFFER: usize = 16;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Copy in, copy out.
    Copy,
    /// Write and read in place.
    Loan,
}

/// One process's ends: it publishes on one service and subscribes to the other.
struct Ports {
    // Fields drop in order: ports before their services, services before the node.
    publisher: Publisher<ipc::Service, [u8], ()>,
    subscriber: Subscriber<ipc::Service, [u8], ()>,
    tx_service:
        iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, [u8], ()>,
    rx_service:
        iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, [u8], ()>,
    _node: Node<ipc::Service>,
    mode: Mode,
    size: usize,
    buf: Vec<u8>,
}

fn service_name(base: &str, dir: &str) -> ServiceName {
    format!("{base}/{dir}").as_str().try_into().expect("a valid service name")
}

impl Ports {
    /// Opens (or creates) both services and this process's ports on them.
    fn new(base: &str, bench: bool, mode: Mode, size: usize) -> Ports {
        let node = NodeBuilder::new().create::<ipc::Service>().expect("create a node");
        let open = |dir: &str| {
            node.service_builder(&service_name(base, dir))
                .publish_subscribe::<[u8]>()
                .enable_safe_overflow(false)
                .subscriber_max_buffer_size(BUFFER)
                .history_size(0)
                .max_publishers(1)
                .max_subscribers(1)
                .open_or_create()
                .expect("open or create the service")
        };
        let (to_peer, to_bench) = (open("to-peer"), open("to-bench"));
        let (tx_service, rx_service) =
            if bench { (to_peer, to_bench) } else { (to_bench, to_peer) };
        let publisher = tx_service
            .publisher_builder()
            .initial_max_slice_len(size)
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .create()
            .expect("create a publisher");
        let subscriber =
            rx_service.subscriber_builder().buffer_size(BUFFER).create().expect("subscriber");
        Ports {
            publisher,
            subscriber,
            tx_service,
            rx_service,
            _node: node,
            mode,
            size,
            buf: vec![0; size],
        }
    }

    /// Waits until the other process's publisher and subscriber exist.
    fn wait_for_peer(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.tx_service.dynamic_config().number_of_subscribers() < 1
            || self.rx_service.dynamic_config().number_of_publishers() < 1
        {
            assert!(Instant::now() < deadline, "the iceoryx2 peer did not connect");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Link for Ports {
    fn send(&mut self, msg: &[u8]) {
        let sample = self.publisher.loan_slice_uninit(msg.len()).expect("loan a sample");
        let sample = match self.mode {
            Mode::Copy => sample.write_from_slice(msg),
            Mode::Loan => {
                let mut sample = sample;
                let payload = sample.payload_mut();
                let p = payload.as_mut_ptr().cast::<u8>();
                // SAFETY: `payload` is the loaned slice of `msg.len()` bytes; filling all
                // of it (then setting the flag byte) initialises every element.
                unsafe {
                    std::ptr::write_bytes(p, 0xa5, payload.len());
                    p.write(msg[0]);
                    sample.assume_init()
                }
            }
        };
        sample.send().expect("send");
    }

    fn recv(&mut self) -> Option<u8> {
        let mut polls = 0u32;
        let sample = loop {
            match self.subscriber.receive() {
                Ok(Some(s)) => break s,
                Ok(None) => {}
                Err(_) => return None,
            }
            std::hint::spin_loop();
            polls += 1;
            if polls == YIELD_EVERY {
                polls = 0;
                std::thread::yield_now();
            }
        };
        let payload = sample.payload();
        assert_eq!(payload.len(), self.size, "whole message");
        Some(match self.mode {
            Mode::Copy => {
                self.buf.copy_from_slice(payload);
                black_box(&self.buf)[0]
            }
            Mode::Loan => {
                let mut x = 0u8;
                for line in payload.chunks(64) {
                    x ^= black_box(line[line.len() - 1]);
                }
                black_box(x);
                payload[0]
            }
        })
    }
}

fn peer(mode: Mode, size: usize) -> Peer {
    let tag = if mode == Mode::Copy { "copy" } else { "loan" };
    let base = format!("interproc-bench/{}/{tag}/{size}", std::process::id());
    let theirs = base.clone();
    Peer::fork(
        size,
        move || Box::new(Ports::new(&theirs, false, mode, size)),
        move || {
            let ports = Ports::new(&base, true, mode, size);
            ports.wait_for_peer();
            Box::new(ports)
        },
    )
}

fn bench(c: &mut Criterion) {
    for size in common::SIZES {
        common::row_with(c, "iceoryx2/copy-spin", size, peer(Mode::Copy, size));
        common::row_with(c, "iceoryx2/loan-spin", size, peer(Mode::Loan, size));
    }
}

/// iceoryx2's persistent node counters in `/dev/shm`.
fn global_mgmt_segments() -> Vec<std::path::PathBuf> {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else { return Vec::new() };
    dir.filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("iox2_") && name.ends_with(".global_mgmt")
        })
        .collect()
}

fn main() {
    set_log_level(LogLevel::Error);
    let before = global_mgmt_segments();
    let mut c = common::criterion();
    bench(&mut c);
    c.final_summary();
    for seg in global_mgmt_segments() {
        if !before.contains(&seg) {
            let _ = std::fs::remove_file(seg);
        }
    }
}
