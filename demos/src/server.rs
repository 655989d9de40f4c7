//! `interproc demo server`: one event loop per worker process serving many client
//! processes over Unix sockets, FIFO pairs, pipes and shared-memory rings at once.
//!
//! Client `i` uses transport `i % len(--transports)`:
//! - **unix**: it connects to the demo's listening socket; a worker accepts it;
//! - **fifo**: two FIFOs per client (client-to-server, server-to-client) in a fresh
//!   directory; the client opens both by path;
//! - **pipe**: two anonymous pipes per client, made before the fork;
//! - **shm**: two SPSC rings per client (client-to-server, server-to-client), each in an
//!   anonymous memfd with notifiers, made before the fork. The worker registers the
//!   client-to-server ring's notifier fd (`ShmSource::notifier_fd`) in the same poller
//!   as the sockets and pipes: it turns readable when the client commits a request, and
//!   when the client's process dies (its pidfd is in the notifier's set). The client
//!   side waits on the rings' futexes, as any blocking ring user does.
//!
//! Each client sends `--requests` requests, one at a time, checks every response, sends
//! an empty "bye" frame and closes. A request is `[client u32][seq u64][16 payload
//! bytes]`; the response is `[client u32][seq u64][checksum u64]`.
//!
//! `--workers W` pre-forks W workers. FIFO, pipe and shm clients are dealt round-robin to
//! workers; Unix clients go to whichever worker accepts them: every worker registers the
//! one listening socket with `EPOLLEXCLUSIVE` (epoll backend), so a new connection wakes
//! one worker, not all (Nginx's accept model). Each worker's loop also watches a
//! signalfd: SIGTERM, SIGINT or SIGHUP makes it stop, report and exit cleanly. The parent sends
//! SIGTERM once every client has exited.
//!
//! A frame that is not a valid request makes the worker count an error and drop that
//! connection; the others are not disturbed. A connection that ends without "bye" (a
//! client killed mid-way, or dropped) counts as a disconnected client.
//! `--kill-clients K` and `--malformed-clients M` inject both faults: the first K
//! clients SIGKILL themselves half-way, the next M send garbage half-way.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use interproc::ipc::channel::shm::ShmRing;
use interproc::ipc::channel::{BytesReceiver, BytesSender, StreamSink, StreamSource};
use interproc::ipc::fifo::{self, Fifo};
use interproc::ipc::pipe::{self, PipeReader, PipeWriter};
use interproc::ipc::reactor::{
    self, Backend, Events, Interest, Mode, Poller, Signal, Signals, Token, Trigger,
};
use interproc::ipc::socket::{UnixAddr, UnixListener, UnixStream};
use interproc::ipc::{names, Error};
use nix::sys::signal::kill;
use serde::{Deserialize, Serialize};

use crate::procs::Children;

/// The transports clients use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// A Unix stream connection to the shared listening socket.
    Unix,
    /// A pair of FIFOs, opened by path.
    Fifo,
    /// A pair of anonymous pipes.
    Pipe,
    /// A pair of shared-memory rings (memfd), waited on through their notifier fds.
    Shm,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Unix => "unix",
            Transport::Fifo => "fifo",
            Transport::Pipe => "pipe",
            Transport::Shm => "shm",
        }
    }
}

/// Options of `interproc demo server`.
#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Client processes.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    clients: u32,
    /// Requests per client.
    #[arg(long, default_value_t = 1000)]
    requests: u64,
    /// Transports, dealt to clients round-robin.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "unix,fifo,pipe")]
    transports: Vec<Transport>,
    /// How the workers register connections (et: epoll only; the server drains every
    /// connection to `Empty`).
    #[arg(long, value_enum, default_value_t = Trigger::Level)]
    trigger: Trigger,
    /// Pre-forked worker processes.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    workers: u32,
    /// The workers' readiness backend.
    #[arg(long, value_enum, default_value_t = Backend::Epoll)]
    backend: Backend,
    /// Fault injection: this many clients SIGKILL themselves half-way.
    #[arg(long, default_value_t = 0)]
    kill_clients: u32,
    /// Fault injection: this many clients send a malformed frame half-way.
    #[arg(long, default_value_t = 0)]
    malformed_clients: u32,
    /// Print a single JSON object as the last line.
    #[arg(long)]
    json: bool,
}

/// How long a client waits for one response, and a worker for a FIFO peer.
const PEER_TIMEOUT: Duration = Duration::from_secs(30);
const REQUEST_LEN: usize = 28;
/// Bytes per shm ring: one request or response in flight needs far less.
const RING_CAPACITY: usize = 4096;

#[derive(Serialize, Deserialize, Debug, Default)]
struct ClientReport {
    sent: u64,
    received: u64,
    errors: Vec<String>,
    latencies_us: Vec<u32>,
    /// A malformed-frame client: whether the server dropped it as it should.
    dropped_by_server: bool,
}

#[derive(Serialize, Deserialize, Debug, Default)]
struct WorkerReport {
    /// Requests served, per client id.
    requests: HashMap<u32, u64>,
    accepted: u64,
    malformed: u64,
    disconnected: u64,
    clean: u64,
    errors: Vec<String>,
}

fn checksum(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| (h ^ x as u64).wrapping_mul(0x100_0000_01b3))
}

/// One client's ends: the server's side and the client's side.
enum Ends {
    Unix,
    Fifo {
        c2s: PathBuf,
        s2c: PathBuf,
        server: Option<(OwnedFd, OwnedFd)>,
    },
    Pipe {
        server: Option<(PipeReader, PipeWriter)>,
        client: Option<(PipeWriter, PipeReader)>,
    },
    /// Client-to-server and server-to-client rings. Each process attaches its own ends
    /// after the fork (an end belongs to the process that attached it).
    Shm {
        rings: Option<(ShmRing, ShmRing)>,
    },
}

/// What a worker is handed for one client before its loop starts.
enum ServerEnds {
    /// A byte stream: (read end, write end).
    Stream(OwnedFd, OwnedFd),
    /// (client-to-server ring, server-to-client ring).
    Shm(ShmRing, ShmRing),
}

impl ServerEnds {
    /// Attaches this worker's ends: (requests in, responses out).
    fn channel(self) -> Result<(BytesReceiver, BytesSender), Error> {
        match self {
            ServerEnds::Stream(rx, tx) => channel(rx, tx),
            ServerEnds::Shm(c2s, s2c) => Ok((
                BytesReceiver::new(Box::new(c2s.source()?) as _),
                BytesSender::new(Box::new(s2c.sink()?) as _),
            )),
        }
    }
}

/// Everything made before the forks. Only the parent drops `owners` (FIFOs, the socket
/// file, the directory); forked children leave through `process::exit`.
struct Setup {
    ends: Vec<Ends>,
    listener: Option<UnixListener>,
    addr: Option<UnixAddr>,
    owners: Vec<Box<dyn std::any::Any>>,
}

struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn setup(args: &ServerArgs) -> Result<Setup, Error> {
    let mut owners: Vec<Box<dyn std::any::Any>> = Vec::new();
    let needs_dir = args.transports.iter().any(|t| matches!(t, Transport::Unix | Transport::Fifo));
    let dir = if needs_dir {
        let rt = names::runtime_dir()
            .map_err(|e| Error::NotFound { what: format!("the runtime directory ({e})") })?;
        let dir = rt.join(names::unique_name("server"));
        std::fs::create_dir(&dir)
            .map_err(|e| Error::PermissionDenied { what: format!("{} ({e})", dir.display()) })?;
        Some(dir)
    } else {
        None
    };
    let (mut listener, mut addr) = (None, None);
    if args.transports.contains(&Transport::Unix) {
        let a = UnixAddr::path(dir.as_ref().expect("dir").join("server.sock"))?;
        listener = Some(UnixListener::bind(&a)?);
        addr = Some(a);
    }
    let mut ends = Vec::new();
    for i in 0..args.clients {
        let t = args.transports[i as usize % args.transports.len()];
        ends.push(match t {
            Transport::Unix => Ends::Unix,
            Transport::Fifo => {
                let d = dir.as_ref().expect("dir");
                let c2s = Fifo::create(d.join(format!("c{i}-to-server")))?;
                let s2c = Fifo::create(d.join(format!("server-to-c{i}")))?;
                // The server's ends are opened here, before any client: the read end
                // without waiting for a writer, and the write end through a reader held
                // only for the open (a non-blocking writer with no reader gets ENXIO).
                // The clients then open their ends by path without waiting.
                let r = c2s.open_reader_nonblocking()?;
                let anchor = s2c.open_reader_nonblocking()?;
                let w = fifo::open_writer_nonblocking(s2c.path())?;
                drop(anchor);
                let e = Ends::Fifo {
                    c2s: c2s.path().to_path_buf(),
                    s2c: s2c.path().to_path_buf(),
                    server: Some((r.into(), w.into())),
                };
                owners.push(Box::new(c2s));
                owners.push(Box::new(s2c));
                e
            }
            Transport::Pipe => {
                let (c2s_r, c2s_w) = pipe::pipe()?;
                let (s2c_r, s2c_w) = pipe::pipe()?;
                Ends::Pipe { server: Some((c2s_r, s2c_w)), client: Some((c2s_w, s2c_r)) }
            }
            Transport::Shm => Ends::Shm {
                rings: Some((
                    ShmRing::anonymous_with_notifier(RING_CAPACITY)?,
                    ShmRing::anonymous_with_notifier(RING_CAPACITY)?,
                )),
            },
        });
    }
    if let Some(d) = dir {
        // Dropped last: after the FIFOs and the listener's socket file.
        owners.push(Box::new(DirGuard(d)));
    }
    Ok(Setup { ends, listener, addr, owners })
}

fn channel(rx: OwnedFd, tx: OwnedFd) -> Result<(BytesReceiver, BytesSender), Error> {
    Ok((
        BytesReceiver::new(Box::new(StreamSource::new(rx)?) as _),
        BytesSender::new(Box::new(StreamSink::new(tx)?) as _),
    ))
}

// ---- the client ----

fn client(
    i: u32,
    ends: Ends,
    addr: Option<&UnixAddr>,
    args: &ServerArgs,
    report: PipeWriter,
) -> i32 {
    let mut rep = ClientReport::default();
    let run = |rep: &mut ClientReport| -> Result<(), Error> {
        let (mut rx, mut tx, raw) = match ends {
            Ends::Unix => {
                let s = UnixStream::connect(addr.expect("listener address"))?;
                let fd: OwnedFd = s.into();
                let dup = fd.as_fd().try_clone_to_owned().map_err(|e| Error::Os {
                    op: "dup",
                    errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)),
                })?;
                let raw = fd.as_fd().try_clone_to_owned().ok();
                let (rx, tx) = channel(fd, dup)?;
                (rx, tx, raw)
            }
            Ends::Fifo { c2s, s2c, .. } => {
                let w: OwnedFd = fifo::open_writer_timeout(&c2s, PEER_TIMEOUT)?.into();
                let r: OwnedFd = fifo::open_reader_timeout(&s2c, PEER_TIMEOUT)?.into();
                let raw = w.as_fd().try_clone_to_owned().ok();
                let (rx, tx) = channel(r, w)?;
                (rx, tx, raw)
            }
            Ends::Pipe { client, .. } => {
                let (w, r) = client.expect("client ends");
                let (w, r): (OwnedFd, OwnedFd) = (w.into(), r.into());
                let raw = w.as_fd().try_clone_to_owned().ok();
                let (rx, tx) = channel(r, w)?;
                (rx, tx, raw)
            }
            Ends::Shm { rings } => {
                let (c2s, s2c) = rings.expect("client rings");
                let tx = BytesSender::new(Box::new(c2s.sink()?) as _);
                let rx = BytesReceiver::new(Box::new(s2c.source()?) as _);
                // A ring has no raw byte stream: a malformed request is a record that
                // is not a request.
                (rx, tx, None)
            }
        };
        let killed = i < args.kill_clients;
        let malformed = !killed && i < args.kill_clients + args.malformed_clients;
        let mut req = [0u8; REQUEST_LEN];
        for seq in 0..args.requests {
            if seq == args.requests / 2 {
                if killed {
                    let _ = nix::sys::signal::raise(Signal::SIGKILL);
                }
                if malformed {
                    // Bytes that are no frame at all (on a ring, a record that is no
                    // request): the server must drop us.
                    const GARBAGE: &[u8] = b"this is not an interproc frame!!";
                    match raw {
                        Some(raw) => {
                            std::fs::File::from(raw).write_all(GARBAGE).map_err(|e| Error::Os {
                                op: "write",
                                errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)),
                            })?
                        }
                        None => tx.send_timeout(GARBAGE, PEER_TIMEOUT)?,
                    }
                    match rx.recv_timeout(PEER_TIMEOUT) {
                        Err(Error::Disconnected) | Err(Error::Truncated { .. }) => {
                            rep.dropped_by_server = true;
                        }
                        Ok(_) => rep.errors.push("server answered after a malformed frame".into()),
                        Err(e) => rep.errors.push(format!("after the malformed frame: {e}")),
                    }
                    return Ok(());
                }
            }
            req[..4].copy_from_slice(&i.to_le_bytes());
            req[4..12].copy_from_slice(&seq.to_le_bytes());
            for (k, b) in req[12..].iter_mut().enumerate() {
                *b = (seq as u8).wrapping_mul(31).wrapping_add(k as u8);
            }
            let t0 = Instant::now();
            tx.send_timeout(&req, PEER_TIMEOUT)?;
            rep.sent += 1;
            let resp = rx.recv_timeout(PEER_TIMEOUT)?;
            rep.latencies_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
            let mut want = Vec::with_capacity(20);
            want.extend_from_slice(&req[..12]);
            want.extend_from_slice(&checksum(&req[12..]).to_le_bytes());
            if resp != want {
                rep.errors.push(format!("request {seq}: wrong response"));
            } else {
                rep.received += 1;
            }
        }
        tx.send_timeout(&[], PEER_TIMEOUT)?;
        Ok(())
    };
    if let Err(e) = run(&mut rep) {
        rep.errors.push(e.to_string());
    }
    match report.into_sender::<ClientReport>() {
        Ok(mut s) => match s.send(rep) {
            Ok(()) => 0,
            Err(_) => 1,
        },
        Err(_) => 1,
    }
}

// ---- the worker ----

struct Conn {
    rx: BytesReceiver,
    tx: BytesSender,
    bye: bool,
}

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);

fn worker(
    listener: Option<&UnixListener>,
    mine: Vec<ServerEnds>,
    backend: Backend,
    trigger: Trigger,
    report: PipeWriter,
) -> i32 {
    let mut rep = WorkerReport::default();
    if let Err(e) = serve(listener, mine, backend, trigger, &mut rep) {
        rep.errors.push(e.to_string());
    }
    match report.into_sender::<WorkerReport>() {
        Ok(mut s) => match s.send(rep) {
            Ok(()) => 0,
            Err(_) => 1,
        },
        Err(_) => 1,
    }
}

fn serve(
    listener: Option<&UnixListener>,
    mine: Vec<ServerEnds>,
    backend: Backend,
    trigger: Trigger,
    rep: &mut WorkerReport,
) -> Result<(), Error> {
    // This process has one thread: blocking the signals here blocks them process-wide.
    let signals = Signals::new(&[Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP])?;
    let mode = Mode { trigger, ..Mode::LEVEL };
    let mut poller = Poller::new(backend)?;
    poller.register(&signals, SIGNALS, Interest::READABLE, Mode::LEVEL)?;
    if let Some(l) = listener {
        let m = if backend.supports_exclusive() { mode.exclusive() } else { mode };
        poller.register(l, LISTENER, Interest::READABLE, m)?;
    }
    let mut conns: Vec<Option<Conn>> = Vec::new();
    // A stream's fd, or a ring's notifier fd: both are readable when a request came or
    // the client went, so one loop serves them all.
    let add = |conns: &mut Vec<Option<Conn>>, poller: &mut Poller, ends: ServerEnds| {
        let (rx, tx) = ends.channel()?;
        let slot = conns.iter().position(Option::is_none).unwrap_or(conns.len());
        poller.register(rx.fd().expect("an fd"), Token(slot + 2), Interest::READABLE, mode)?;
        let c = Some(Conn { rx, tx, bye: false });
        if slot == conns.len() {
            conns.push(c);
        } else {
            conns[slot] = c;
        }
        Ok::<(), Error>(())
    };
    // A connection that cannot be adopted (out of fds, an fd select cannot hold) is that
    // connection's problem: count it and drop it, and serve the others.
    for ends in mine {
        if let Err(e) = add(&mut conns, &mut poller, ends) {
            rep.errors.push(format!("connection dropped: {e}"));
        }
    }
    let mut events = Events::with_capacity(64);
    loop {
        match poller.wait(&mut events, None) {
            Ok(_) => {}
            Err(Error::Timeout) => continue,
            Err(e) => return Err(e),
        }
        for ev in &events {
            match ev.token() {
                SIGNALS => {
                    if signals.next_signal()?.is_some() {
                        return Ok(());
                    }
                }
                LISTENER => {
                    // Accept until none is pending: required under edge triggering, and
                    // another worker may have taken the connection (Ok(None)).
                    let l = listener.expect("listener");
                    loop {
                        let s = match l.try_accept() {
                            Ok(Some(s)) => s,
                            Ok(None) => break,
                            Err(e) => {
                                // Out of fds, most likely: the listener would stay ready and
                                // spin. This worker stops accepting; the others go on.
                                rep.errors
                                    .push(format!("accept: {e}; this worker stops accepting"));
                                let _ = poller.deregister(l);
                                break;
                            }
                        };
                        rep.accepted += 1;
                        let fd: OwnedFd = s.into();
                        let adopted = fd
                            .as_fd()
                            .try_clone_to_owned()
                            .map_err(|e| Error::Os {
                                op: "dup",
                                errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)),
                            })
                            .and_then(|dup| {
                                add(&mut conns, &mut poller, ServerEnds::Stream(fd, dup))
                            });
                        if let Err(e) = adopted {
                            rep.errors.push(format!("connection dropped: {e}"));
                        }
                    }
                }
                Token(t) => {
                    let slot = t - 2;
                    let Some(c) = conns[slot].as_mut() else { continue };
                    if let Some(end) = drain(c, rep) {
                        let c = conns[slot].take().expect("conn");
                        poller.deregister(c.rx.fd().expect("an fd"))?;
                        match end {
                            End::Malformed => {
                                rep.malformed += 1;
                                rep.disconnected += 1;
                            }
                            End::Closed if c.bye => rep.clean += 1,
                            End::Closed => rep.disconnected += 1,
                        }
                    }
                }
            }
        }
    }
}

enum End {
    Closed,
    Malformed,
}

/// Serves every request buffered on `c` until `Empty`; `Some` when the connection ends.
fn drain(c: &mut Conn, rep: &mut WorkerReport) -> Option<End> {
    loop {
        match c.rx.try_recv() {
            Ok(m) if m.is_empty() => c.bye = true,
            Ok(m) if m.len() == REQUEST_LEN && !c.bye => {
                let id = u32::from_le_bytes(m[..4].try_into().unwrap());
                let mut resp = Vec::with_capacity(20);
                resp.extend_from_slice(&m[..12]);
                resp.extend_from_slice(&checksum(&m[12..]).to_le_bytes());
                // One request in flight per client: there is always room for the answer.
                // A peer that does not read is dropped rather than waited for.
                match c.tx.try_send(&resp) {
                    Ok(()) => *rep.requests.entry(id).or_default() += 1,
                    Err(Error::Disconnected) => return Some(End::Closed),
                    Err(_) => return Some(End::Malformed),
                }
            }
            Ok(_) => return Some(End::Malformed),
            Err(Error::Empty) => return None,
            Err(Error::Malformed { .. }) => return Some(End::Malformed),
            // EOF, a frame cut by a dying peer, or a reset: the client is gone.
            Err(_) => return Some(End::Closed),
        }
    }
}

// ---- the parent ----

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[derive(Serialize)]
struct Summary {
    clients: u32,
    workers: u32,
    transports: Vec<&'static str>,
    trigger: &'static str,
    backend: &'static str,
    requests_sent: u64,
    responses_received: u64,
    errors: u64,
    disconnected_clients: u64,
    completed_clients: u64,
    p50_us: u32,
    p99_us: u32,
    seconds: f64,
}

/// Runs the demo; returns the exit status.
pub fn run(args: ServerArgs) -> i32 {
    // The parent holds a few fds per FIFO or pipe client: allow as many as the hard limit.
    let _ = reactor::raise_fd_limit(u64::MAX);
    let backend = args.backend;
    if args.trigger == Trigger::Edge && !backend.supports_edge() {
        eprintln!("interproc demo server: --trigger et needs --backend epoll: {backend} reports state, not changes");
        return 2;
    }
    if args.kill_clients + args.malformed_clients > args.clients {
        eprintln!("interproc demo server: more faulty clients than clients");
        return 2;
    }
    let children = Children::new();
    let mut s = match setup(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("interproc demo server: setting up: {e}");
            return 2;
        }
    };
    let start = Instant::now();
    let w = args.workers as usize;
    // Workers first: the FIFO and pipe clients are dealt round-robin among them.
    let mut worker_reports = Vec::new();
    let mut workers = Vec::new();
    for k in 0..w {
        let (r, wr) = match pipe::pipe() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("interproc demo server: report pipe: {e}");
                return 2;
            }
        };
        let mut wr = Some(wr);
        let ends = &mut s.ends;
        let listener = s.listener.as_ref();
        // SAFETY: no thread runs yet: the signal thread starts after the last fork.
        let pid = unsafe {
            children.spawn(|| {
                worker_reports.clear();
                let mut mine = Vec::new();
                for (i, e) in std::mem::take(ends).into_iter().enumerate() {
                    match e {
                        Ends::Fifo { server: Some((r, pw)), .. } if i % w == k => {
                            mine.push(ServerEnds::Stream(r, pw))
                        }
                        Ends::Pipe { server: Some((r, pw)), .. } if i % w == k => {
                            mine.push(ServerEnds::Stream(r.into(), pw.into()))
                        }
                        Ends::Shm { rings: Some((c2s, s2c)) } if i % w == k => {
                            mine.push(ServerEnds::Shm(c2s, s2c))
                        }
                        _ => {}
                    }
                }
                worker(listener, mine, backend, args.trigger, wr.take().expect("report end"))
            })
        };
        drop(wr);
        workers.push(pid);
        worker_reports.push(r);
    }
    // The server's ends now live in the workers only.
    for e in &mut s.ends {
        match e {
            Ends::Fifo { server, .. } => drop(server.take()),
            Ends::Pipe { server, .. } => drop(server.take()),
            // The rings are shared by both sides: the parent keeps them until the
            // clients are forked.
            Ends::Shm { .. } | Ends::Unix => {}
        }
    }
    let mut client_reports = Vec::new();
    let mut clients = Vec::new();
    for i in 0..args.clients {
        let (r, wr) = match pipe::pipe() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("interproc demo server: report pipe: {e}");
                return 2;
            }
        };
        let mut wr = Some(wr);
        let ends = &mut s.ends;
        let addr = s.addr.as_ref();
        let args = &args;
        // SAFETY: as above, still a single thread.
        let pid = unsafe {
            children.spawn(|| {
                client_reports.clear();
                worker_reports.clear();
                let mine = std::mem::replace(&mut ends[i as usize], Ends::Unix);
                // Close every other client's ends, so each stream sees EOF when its own
                // client goes.
                ends.clear();
                client(i, mine, addr, args, wr.take().expect("report end"))
            })
        };
        drop(wr);
        clients.push(pid);
        client_reports.push(r);
        // The parent keeps no client ends.
        match &mut s.ends[i as usize] {
            Ends::Pipe { client, .. } => drop(client.take()),
            Ends::Shm { rings } => drop(rings.take()),
            _ => {}
        }
    }
    children.watch_signals();

    let (mut sent, mut received, mut errors, mut completed) = (0u64, 0u64, 0u64, 0u64);
    let mut lat = Vec::new();
    let mut reported = vec![false; args.clients as usize];
    let mut client_sent = vec![0u64; args.clients as usize];
    let mut problems = Vec::new();
    for (i, r) in client_reports.into_iter().enumerate() {
        // A killed client reports nothing: its pipe just ends.
        if let Ok(rep) = r.into_receiver::<ClientReport>().and_then(|mut rx| rx.recv()) {
            reported[i] = true;
            client_sent[i] = rep.sent;
            received += rep.received;
            errors += rep.errors.len() as u64;
            for e in &rep.errors {
                problems.push(format!("client {i}: {e}"));
            }
            if rep.received == args.requests {
                completed += 1;
            }
            let malformed = i as u32 >= args.kill_clients
                && (i as u32) < args.kill_clients + args.malformed_clients;
            if malformed && !rep.dropped_by_server {
                problems.push(format!(
                    "client {i}: the server did not drop it after a malformed frame"
                ));
            }
            lat.extend(rep.latencies_us);
        }
    }
    for pid in clients {
        children.wait(pid);
    }
    for &pid in &workers {
        let _ = kill(pid, Signal::SIGTERM);
    }
    let mut served: HashMap<u32, u64> = HashMap::new();
    let (mut disconnected, mut malformed) = (0u64, 0u64);
    for r in worker_reports {
        match r.into_receiver::<WorkerReport>().and_then(|mut rx| rx.recv()) {
            Ok(rep) => {
                for (id, n) in rep.requests {
                    *served.entry(id).or_default() += n;
                }
                disconnected += rep.disconnected;
                malformed += rep.malformed;
                for e in rep.errors {
                    problems.push(format!("worker: {e}"));
                }
            }
            Err(e) => problems.push(format!("a worker did not report: {e}")),
        }
    }
    for pid in workers {
        let code = children.wait(pid);
        if code != 0 {
            problems.push(format!("a worker exited with status {code}"));
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    // Requests a killed client sent are known only to the server.
    for i in 0..args.clients as usize {
        sent += if reported[i] {
            client_sent[i]
        } else {
            served.get(&(i as u32)).copied().unwrap_or(0)
        };
    }
    errors += malformed;
    lat.sort_unstable();
    let interrupted = crate::procs::interrupted();
    // The socket file and the FIFOs go before their directory.
    drop(s.listener.take());
    drop(s.owners);

    let healthy = (args.clients - args.kill_clients - args.malformed_clients) as u64;
    let ok = !interrupted
        && problems.is_empty()
        && completed == healthy
        && malformed == args.malformed_clients as u64
        && disconnected == (args.kill_clients + args.malformed_clients) as u64;
    let summary = Summary {
        clients: args.clients,
        workers: args.workers,
        transports: args.transports.iter().map(|t| t.name()).collect(),
        trigger: args.trigger.name(),
        backend: backend.name(),
        requests_sent: sent,
        responses_received: received,
        errors,
        disconnected_clients: disconnected,
        completed_clients: completed,
        p50_us: percentile(&lat, 0.50),
        p99_us: percentile(&lat, 0.99),
        seconds,
    };
    println!(
        "{} clients x {} requests over {} with {} worker(s) ({}, {}): {} sent, {} responses, {} errors, {} disconnected, p50 {} us, p99 {} us, {:.3} s",
        summary.clients,
        args.requests,
        summary.transports.join(","),
        args.workers,
        summary.backend,
        summary.trigger,
        sent,
        received,
        errors,
        disconnected,
        summary.p50_us,
        summary.p99_us,
        seconds
    );
    for p in problems.iter().take(10) {
        println!("problem: {p}");
    }
    if interrupted {
        println!("interrupted: children killed, every named object removed");
    }
    println!("{}", if ok { "every healthy client got every response: OK" } else { "FAILED" });
    if args.json {
        println!("{}", serde_json::to_string(&summary).expect("summary serialises"));
    }
    if ok {
        0
    } else {
        1
    }
}
