//! A child process and tokio tasks exchanging typed messages both ways over one Unix
//! socket: one task sends requests through an `AsyncSender` (waiting whenever the socket's
//! buffer is full), another awaits the child's answers through an `AsyncReceiver`. The
//! child is this program, re-executed; it answers with plain blocking calls.
//!
//! Run it with `cargo run -p interproc-ipc --example tokio_duplex --features tokio`;
//! `cargo test -p interproc-ipc --features tokio --example tokio_duplex` runs it as a test.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use interproc_ipc::reactor::tokio::{AsyncReceiver, AsyncSender};
use interproc_ipc::socket::{UnixAddr, UnixListener, UnixStream};
use interproc_ipc::{names, Error};
use serde::{Deserialize, Serialize};

/// Set in the child: the abstract socket name to connect to.
const CHILD_ENV: &str = "INTERPROC_TOKIO_DUPLEX_CHILD";
/// Requests the parent sends: together far more than a socket buffer holds.
const REQUESTS: u32 = 2000;
/// How long the parent lets the child run before it kills it.
const WATCHDOG: Duration = Duration::from_secs(60);

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Request {
    id: u32,
    /// A few hundred bytes, so the requests fill the socket and the sender must wait.
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Answer {
    id: u32,
    sum: u64,
    pid: u32,
}

/// The child: answer every request, with blocking calls, until the parent hangs up.
fn child(name: &str) -> Result<(), Error> {
    let sock = UnixStream::connect(&UnixAddr::abstract_name(name)?)?;
    let (mut tx, mut rx) = sock.into_channel::<Answer, Request>()?;
    loop {
        match rx.recv() {
            Ok(r) => {
                let sum = r.body.iter().map(|&b| b as u64).sum();
                tx.send(Answer { id: r.id, sum, pid: std::process::id() }).map_err(|e| e.error)?;
            }
            Err(Error::Disconnected) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Kills `child` if it runs past the watchdog; returns whether it exited with status 0.
fn reap(mut child: std::process::Child) -> bool {
    let deadline = Instant::now() + WATCHDOG;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return st.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// The parent: spawn the child, then send and receive concurrently from two tasks.
fn run(child_args: &[&str]) -> Result<(Vec<Answer>, u32), Box<dyn std::error::Error>> {
    let name = names::unique_name("tokio-duplex");
    let listener = UnixListener::bind(&UnixAddr::abstract_name(&name)?)?;
    let child = Command::new(std::env::current_exe()?)
        .args(child_args)
        .env(CHILD_ENV, &name)
        .stdout(Stdio::null())
        .spawn()?;
    let child_pid = child.id();
    // The watchdog thread reaps the child; if it hangs, killing it ends our socket too,
    // so the tasks below see Disconnected rather than wait for ever.
    let watchdog = std::thread::spawn(move || reap(child));
    let sock = listener.accept_timeout(WATCHDOG)?;
    let (tx, rx) = sock.into_channel::<Request, Answer>()?;

    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    let answers = rt.block_on(async move {
        let mut tx = AsyncSender::new(tx)?;
        let mut rx = AsyncReceiver::new(rx)?;
        let sender = tokio::spawn(async move {
            for id in 0..REQUESTS {
                let body = (0..512).map(|k| (id + k) as u8).collect();
                tx.send(Request { id, body }).await.map_err(|e| e.error)?;
            }
            // Dropping the sender half: the child reads to the end, then sees
            // Disconnected once the receiver half goes too.
            Ok::<_, Error>(())
        });
        let mut answers = Vec::new();
        while answers.len() < REQUESTS as usize {
            answers.push(rx.recv().await?);
        }
        sender.await.expect("sender task")?;
        Ok::<_, Error>(answers)
    })?;
    if !watchdog.join().expect("watchdog thread") {
        return Err("the child failed or was killed by the watchdog".into());
    }
    Ok((answers, child_pid))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(name) = std::env::var(CHILD_ENV) {
        return Ok(child(&name)?);
    }
    let (answers, pid) = run(&[])?;
    println!("{} answers from child {pid}; the last: {:?}", answers.len(), answers.last());
    Ok(())
}

#[test]
fn main_runs() {
    if let Ok(name) = std::env::var(CHILD_ENV) {
        // Re-executed as the child: answer, then exit before libtest goes on.
        std::process::exit(if child(&name).is_ok() { 0 } else { 1 });
    }
    let (answers, pid) = run(&["main_runs", "--exact", "--nocapture"]).unwrap();
    assert_eq!(answers.len(), REQUESTS as usize);
    for (i, a) in answers.iter().enumerate() {
        let want: u64 = (0..512u32).map(|k| (i as u32 + k) as u8 as u64).sum();
        assert_eq!(*a, Answer { id: i as u32, sum: want, pid });
    }
}
