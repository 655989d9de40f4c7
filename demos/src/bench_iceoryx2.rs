//! The `iceoryx2` and `iceoryx2-loan` rows of `interproc bench` (feature `bench-iceoryx2`):
//! iceoryx2's publish-subscribe between the two processes, as the strongest
//! shared-memory peer, with the approach of `benches/iceoryx2.rs`.
//!
//! One service per direction, named after the row; each process makes its own node and
//! ports after the fork, as two programs would, and the bench side waits until the
//! peer's ports exist. The publisher never drops a message (`enable_safe_overflow(false)`
//! and a backpressure handler that retries while the peer lives), and a subscriber buffers
//! [`BUFFER`] samples.
//!
//! - `iceoryx2`: the sender copies the message into a loaned sample
//!   (`loan_slice_uninit` + `write_from_slice`); the receiver copies the sample out into
//!   its own buffer and releases it, as with the `shared_memory-spin` row.
//! - `iceoryx2-loan`: iceoryx2's zero-copy mode, as the `shm-zero-copy` row does it: the
//!   sender writes the stamps in place in a loaned sample ([`Sink::send_in_place`]), and
//!   the receiver reads the sample in place, holding it until its next receive.
//!
//! iceoryx2's publish-subscribe has no blocking receive (a user who wants to sleep adds an
//! event service and a WaitSet), so the receiver spins on `receive()`, yielding the CPU
//! every [`YIELD_EVERY`] polls: both rows are mode `spin`. The bench side checks its peer
//! (`waitid` with `WNOWAIT`) while it waits, so a dead peer fails the row, not hangs it;
//! the peer dies with the bench (`PR_SET_PDEATHSIG`).
//!
//! Nodes are made with signal handling off: iceoryx2 would otherwise catch SIGINT and
//! SIGTERM, and Ctrl-C would no longer end the peer. iceoryx2 keeps a machine-wide node
//! counter in `/dev/shm` after its last node is gone, and its directories in `/tmp`;
//! [`Cleanup`] removes those the run made, and the stale resources of a node whose process
//! was killed.

use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::port::{BackpressureAction, BackpressureInfo};
use iceoryx2::prelude::*;
use iceoryx2::sample::Sample;
use iceoryx2::sample_mut_uninit::SampleMutUninit;
use iceoryx2::service::port_factory::publish_subscribe::PortFactory as PubSubFactory;
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Polls between two `sched_yield`s while waiting for a sample or for room.
const YIELD_EVERY: u32 = 1024;
/// Samples a subscriber buffers before the publisher waits.
const BUFFER: usize = 16;
/// How long each side waits for the other's ports.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

type Factory = PubSubFactory<ipc::Service, [u8], ()>;

/// Whether `peer` (a child of this process) is still running; `None` is "no one to check"
/// (the peer side: it dies with the bench).
fn alive(peer: Option<Pid>) -> bool {
    let Some(pid) = peer else { return true };
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    matches!(waitid(Id::Pid(pid), flags), Ok(WaitStatus::StillAlive))
}

fn service_name(base: &str, dir: &str) -> Result<ServiceName, String> {
    format!("{base}/{dir}")
        .as_str()
        .try_into()
        .map_err(|e| format!("iceoryx2 service name {base}/{dir}: {e:?}"))
}

/// One process's node and services. The ports hold the services and the node alive
/// (iceoryx2 reference-counts them), so the sink and source each keep what they need.
struct Side {
    node: Node<ipc::Service>,
    tx: Factory,
    rx: Factory,
}

impl Side {
    fn new(base: &str, bench: bool) -> Result<Side, String> {
        let node = NodeBuilder::new()
            .signal_handling_mode(SignalHandlingMode::Disabled)
            .create::<ipc::Service>()
            .map_err(|e| format!("iceoryx2 node: {e:?}"))?;
        let open = |dir: &str| -> Result<Factory, String> {
            let name = service_name(base, dir)?;
            node.service_builder(&name)
                .publish_subscribe::<[u8]>()
                .enable_safe_overflow(false)
                .subscriber_max_buffer_size(BUFFER)
                .history_size(0)
                .max_publishers(1)
                .max_subscribers(1)
                .open_or_create()
                .map_err(|e| format!("iceoryx2 service {base}/{dir}: {e:?}"))
        };
        let (to_peer, to_bench) = (open("to-peer")?, open("to-bench")?);
        let (tx, rx) = if bench { (to_peer, to_bench) } else { (to_bench, to_peer) };
        Ok(Side { node, tx, rx })
    }
}

/// The sending side: a publisher of `[u8]` samples of one size.
pub struct Sink {
    publisher: Publisher<ipc::Service, [u8], ()>,
    service: Factory,
    size: usize,
    peer: Option<Pid>,
}

/// The receiving side: a subscriber, and the sample or copy handed out last.
pub struct Source {
    subscriber: Subscriber<ipc::Service, [u8], ()>,
    service: Factory,
    /// Loan mode: the sample handed out last, released at the next receive.
    held: Option<Sample<ipc::Service, [u8], ()>>,
    /// Copy mode: the copy handed out last (`None` in loan mode).
    buf: Option<Vec<u8>>,
    peer: Option<Pid>,
    _node: Node<ipc::Service>,
}

/// Makes one process's ends for messages of exactly `size` bytes on the services named
/// after `base`. `bench` says which side this is; `peer` is the process to watch while
/// waiting (the bench side's child), and `loan` picks the zero-copy receiver.
pub fn ends(
    base: &str,
    bench: bool,
    size: usize,
    loan: bool,
    peer: Option<Pid>,
) -> Result<(Sink, Source), String> {
    let Side { node, tx, rx } = Side::new(base, bench)?;
    let publisher = tx
        .publisher_builder()
        .initial_max_slice_len(size)
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .set_backpressure_handler(move |info: &BackpressureInfo| {
            // Retry while the peer lives; a dead one fails the send instead of a hang.
            if info.retries % 64 == 0 && !alive(peer) {
                BackpressureAction::DiscardDataAndFail
            } else {
                BackpressureAction::Retry
            }
        })
        .create()
        .map_err(|e| format!("iceoryx2 publisher: {e:?}"))?;
    let subscriber = rx
        .subscriber_builder()
        .buffer_size(BUFFER)
        .create()
        .map_err(|e| format!("iceoryx2 subscriber: {e:?}"))?;
    let sink = Sink { publisher, service: tx, size, peer };
    let source = Source {
        subscriber,
        service: rx,
        held: None,
        buf: (!loan).then(|| vec![0; size]),
        peer,
        _node: node,
    };
    // Wait until the other side's subscriber and publisher exist: a sample sent before
    // its subscriber connects would be lost.
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    while sink.service.dynamic_config().number_of_subscribers() < 1
        || source.service.dynamic_config().number_of_publishers() < 1
    {
        if !alive(peer) {
            return Err("the iceoryx2 peer died before it connected".into());
        }
        if Instant::now() >= deadline {
            return Err(format!("the iceoryx2 peer did not connect within {CONNECT_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok((sink, source))
}

impl Sink {
    /// Copies `msg` into a loaned sample and sends it.
    pub fn send(&mut self, msg: &[u8]) -> Result<(), String> {
        if msg.len() != self.size {
            // The samples are sized for the row's one message size.
            return Err(format!("iceoryx2: {} bytes, the row sends {}", msg.len(), self.size));
        }
        let sample = self.loan()?.write_from_slice(msg);
        sample.send().map(drop).map_err(|e| self.failed("send", e))
    }

    /// Loans a sample, lets `fill` write into it in place, and sends it.
    ///
    /// `fill` need not write every byte: the rest keeps what the sample's memory held, as
    /// with the interproc ring's loans (see the SAFETY comment).
    pub fn send_in_place(
        &mut self,
        fill: impl FnOnce(&mut [MaybeUninit<u8>]),
    ) -> Result<(), String> {
        let mut sample = self.loan()?;
        fill(sample.payload_mut());
        // The payload lies in iceoryx2's data segment, a mapping the kernel zero-filled
        // and into which publishers only write whole bytes. (`MaybeUninit` is iceoryx2's
        // caution for arbitrary payload types; for `u8` any byte value is valid.)
        // SAFETY: every payload byte already holds a valid `u8`, written by `fill` or not.
        let sample = unsafe { sample.assume_init() };
        sample.send().map(drop).map_err(|e| self.failed("send", e))
    }

    fn loan(&mut self) -> Result<SampleMutUninit<ipc::Service, [MaybeUninit<u8>], ()>, String> {
        self.publisher.loan_slice_uninit(self.size).map_err(|e| self.failed("loan", e))
    }

    fn failed(&self, what: &str, e: impl std::fmt::Debug) -> String {
        if alive(self.peer) {
            format!("iceoryx2 {what}: {e:?}")
        } else {
            format!("iceoryx2 {what}: the peer is gone ({e:?})")
        }
    }
}

impl Source {
    /// Receives the next sample: in copy mode a copy in this side's buffer, in loan mode
    /// the sample itself, held until the next call.
    pub fn recv(&mut self) -> Result<&[u8], String> {
        // Release the sample handed out last before taking the next.
        self.held = None;
        let mut polls = 0u32;
        let sample = loop {
            match self.subscriber.receive() {
                Ok(Some(s)) => break s,
                Ok(None) => {}
                Err(e) => return Err(format!("iceoryx2 receive: {e:?}")),
            }
            std::hint::spin_loop();
            polls += 1;
            if polls == YIELD_EVERY {
                polls = 0;
                std::thread::yield_now();
                if !alive(self.peer) {
                    return Err("iceoryx2: the peer is gone".into());
                }
            }
        };
        match &mut self.buf {
            Some(buf) => {
                // A sample longer than a message shows as a wrong size to the check.
                buf.clear();
                buf.extend_from_slice(sample.payload());
                Ok(buf)
            }
            None => Ok(self.held.insert(sample).payload()),
        }
    }
}

/// iceoryx2's machine-wide node counters in `/dev/shm`.
fn global_mgmt_segments() -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else { return Vec::new() };
    dir.filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("iox2_") && name.ends_with(".global_mgmt")
        })
        .collect()
}

/// What a run that used iceoryx2 leaves to clean: made before the first iceoryx2 row,
/// dropped after the last one (every peer reaped).
pub struct Cleanup {
    before: Vec<PathBuf>,
    /// iceoryx2's directories (services, nodes, then their root) that the run makes.
    new_dirs: Vec<PathBuf>,
}

/// iceoryx2's directories, the root last: where it keeps its node and service records.
fn iceoryx2_dirs() -> Vec<PathBuf> {
    let global = &Config::global_config().global;
    let path = |p: &Path| PathBuf::from(String::from_utf8_lossy(p.as_bytes()).into_owned());
    vec![path(&global.service_dir()), path(&global.node_dir()), path(global.root_path())]
}

impl Cleanup {
    /// Notes the node counters and directories that exist before the run, and keeps
    /// iceoryx2 quiet.
    pub fn new() -> Cleanup {
        set_log_level(LogLevel::Error);
        let new_dirs = iceoryx2_dirs().into_iter().filter(|d| !d.exists()).collect();
        Cleanup { before: global_mgmt_segments(), new_dirs }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // A peer killed mid-row (Ctrl-C, a failure) leaves its node's resources behind.
        let _ = Node::<ipc::Service>::try_cleanup_dead_nodes(Config::global_config());
        for seg in global_mgmt_segments() {
            if !self.before.contains(&seg) {
                let _ = std::fs::remove_file(seg);
            }
        }
        // Empty by now; a directory something else still uses is not empty, and stays.
        for dir in &self.new_dirs {
            let _ = std::fs::remove_dir(dir);
        }
    }
}
