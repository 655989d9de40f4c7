//! `interproc demo triggers`: level- vs edge-triggered readiness on the same input.
//!
//! For each reader, a forked writer process writes `--records` records of
//! `--record-bytes` bytes into a fresh pipe in one `write` (atomic while it fits in
//! PIPE_BUF), then keeps its end open until the reader is done, so no hang-up event
//! muddies the count. The readers:
//!
//! - **level-triggered, one record per wake-up** (epoll, poll and select): woken once per
//!   record, because the fd stays ready while bytes remain;
//! - **edge-triggered, one record per wake-up** (epoll): woken once, for the one arrival;
//!   the bytes it leaves behind never cause another event, so it **stalls**. The stall
//!   is detected by a wait that times out after `--stall-ms` with records still unread;
//! - **edge-triggered, draining to EAGAIN** (epoll): woken once, reads everything.
//!
//! The demo exits with status 1 if the kernel does not behave as described.

use std::io::{ErrorKind, Read, Write};
use std::time::Duration;

use clap::Args;
use interproc::ipc::pipe::{self, PipeReader};
use interproc::ipc::reactor::{Backend, Events, Interest, Mode, Poller, Token};
use interproc::ipc::Error;
use serde::Serialize;

use crate::procs::Children;

/// Options of `interproc demo triggers`.
#[derive(Args, Debug)]
pub struct TriggersArgs {
    /// Records in the input.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(2..=64))]
    records: u32,
    /// Bytes per record (records × bytes must fit in PIPE_BUF, 4096).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=2048))]
    record_bytes: u32,
    /// How long a wait with nothing reported counts as a stall, in milliseconds.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    stall_ms: u64,
    /// Print a single JSON object as the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize, Debug)]
struct Row {
    reader: &'static str,
    backend: &'static str,
    trigger: &'static str,
    drains: bool,
    wakeups: u32,
    records_read: u32,
    stalled: bool,
    /// What the textbook says should happen, and whether it did.
    expected: &'static str,
    as_expected: bool,
}

#[derive(Serialize)]
struct Summary {
    records: u32,
    record_bytes: u32,
    rows: Vec<Row>,
}

struct Reader {
    name: &'static str,
    backend: Backend,
    mode: Mode,
    drains: bool,
}

const READERS: [Reader; 5] = [
    Reader { name: "lt-one-per-wakeup", backend: Backend::Epoll, mode: Mode::LEVEL, drains: false },
    Reader { name: "lt-one-per-wakeup", backend: Backend::Poll, mode: Mode::LEVEL, drains: false },
    Reader {
        name: "lt-one-per-wakeup",
        backend: Backend::Select,
        mode: Mode::LEVEL,
        drains: false,
    },
    Reader { name: "et-one-per-wakeup", backend: Backend::Epoll, mode: Mode::EDGE, drains: false },
    Reader { name: "et-drain-to-eagain", backend: Backend::Epoll, mode: Mode::EDGE, drains: true },
];

/// How long to wait for the writer's first record before calling the run broken.
const FIRST_EVENT: Duration = Duration::from_secs(30);

/// Reads records from `r` as `reader` does until all arrived or a wait times out.
fn read_as(
    reader: &Reader,
    r: &mut PipeReader,
    records: u32,
    size: usize,
    stall: Duration,
) -> Result<(u32, u32, bool), Error> {
    let mut poller = Poller::new(reader.backend)?;
    poller.register(&*r, Token(0), Interest::READABLE, reader.mode)?;
    let mut events = Events::with_capacity(4);
    let mut rec = vec![0u8; size];
    let (mut wakeups, mut read) = (0, 0);
    while read < records {
        // The first event only says that the writer has written: on a loaded machine that
        // may take a while, and is no stall. The stall timeout applies after it.
        let wait = if wakeups == 0 { FIRST_EVENT } else { stall };
        match poller.wait(&mut events, Some(wait)) {
            Ok(_) => wakeups += 1,
            Err(Error::Timeout) => return Ok((wakeups, read, true)),
            Err(e) => return Err(e),
        }
        loop {
            match r.read_exact(&mut rec) {
                Ok(()) => read += 1,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(Error::Os { op: "read", errno: errno_of(&e) }),
            }
            if !reader.drains || read == records {
                break;
            }
        }
    }
    Ok((wakeups, read, false))
}

fn errno_of(e: &std::io::Error) -> nix::errno::Errno {
    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Runs the demo; returns the exit status.
pub fn run(args: TriggersArgs) -> i32 {
    let size = args.record_bytes as usize;
    let total = args.records as usize * size;
    if total > libc::PIPE_BUF {
        eprintln!(
            "interproc demo triggers: {} records of {size} bytes = {total} bytes exceed PIPE_BUF ({}): \
             the input would not arrive in one write",
            args.records,
            libc::PIPE_BUF
        );
        return 2;
    }
    // Ctrl-C keeps its default action: the writers are in this process group and die
    // with it, and the demo creates no named object that could be left behind.
    let children = Children::default();
    let stall = Duration::from_millis(args.stall_ms);
    let input: Vec<u8> = (0..total).map(|i| (i / size) as u8).collect();
    println!(
        "{} records of {size} bytes written at once by a child process; each reader reads one record per wake-up unless it drains",
        args.records
    );
    let mut rows = Vec::new();
    let mut ok = true;
    for reader in &READERS {
        let (pipe, release) = match (pipe::pipe(), pipe::pipe()) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("interproc demo triggers: pipe: {e}");
                return 2;
            }
        };
        let (mut r, w) = pipe;
        let (release_r, release_w) = release;
        let mut w = Some(w);
        let mut release_r = Some(release_r);
        let mut release_w = Some(release_w);
        // SAFETY: this demo never starts a thread, so the process is single-threaded.
        let pid = unsafe {
            children.spawn(|| {
                // The child's copy of the release write end would keep its own read from
                // ever seeing EOF.
                drop(release_w.take());
                let mut w = w.take().expect("writer end");
                let mut rel = release_r.take().expect("release end");
                if w.write_all(&input).is_err() {
                    return 1;
                }
                // Hold the write end open until the reader is done: EOF on `rel`.
                let mut b = [0u8; 1];
                while matches!(rel.read(&mut b), Ok(n) if n > 0) {}
                0
            })
        };
        drop(w.take());
        drop(release_r.take());
        let result = r
            .set_nonblocking(true)
            .and_then(|()| read_as(reader, &mut r, args.records, size, stall));
        drop(release_w.take());
        let code = children.wait(pid);
        let (wakeups, records_read, stalled) = match result {
            Ok(x) => x,
            Err(e) => {
                eprintln!("interproc demo triggers: {} on {}: {e}", reader.name, reader.backend);
                return 1;
            }
        };
        if code != 0 {
            eprintln!("interproc demo triggers: writer exited with status {code}");
            return 1;
        }
        let (expected, as_expected) = match (reader.mode.trigger, reader.drains) {
            (interproc::ipc::reactor::Trigger::Level, _) => (
                "one wake-up per record, all read",
                wakeups == args.records && records_read == args.records && !stalled,
            ),
            (_, false) => (
                "one wake-up, then a stall with records unread",
                wakeups == 1 && records_read == 1 && stalled,
            ),
            (_, true) => {
                ("one wake-up, all read", wakeups == 1 && records_read == args.records && !stalled)
            }
        };
        ok &= as_expected;
        println!(
            "{:<20} {:<6} {:<5} wake-ups {:>3}  records read {:>3}/{}  {}{}",
            reader.name,
            reader.backend.name(),
            if reader.mode.trigger == interproc::ipc::reactor::Trigger::Level {
                "LT"
            } else {
                "ET"
            },
            wakeups,
            records_read,
            args.records,
            if stalled {
                format!("STALLED (no event for {} ms)", args.stall_ms)
            } else {
                "done".into()
            },
            if as_expected { String::new() } else { format!("  UNEXPECTED: expected {expected}") },
        );
        rows.push(Row {
            reader: reader.name,
            backend: reader.backend.name(),
            trigger: if reader.mode.trigger == interproc::ipc::reactor::Trigger::Level {
                "lt"
            } else {
                "et"
            },
            drains: reader.drains,
            wakeups,
            records_read,
            stalled,
            expected,
            as_expected,
        });
    }
    println!(
        "{}",
        if ok {
            "as the textbook says: an edge-triggered reader must read until EAGAIN"
        } else {
            "some reader did not behave as expected"
        }
    );
    if args.json {
        let s = Summary { records: args.records, record_bytes: args.record_bytes, rows };
        println!("{}", serde_json::to_string(&s).expect("summary serialises"));
    }
    if ok {
        0
    } else {
        1
    }
}
