//! Awaiting interproc channels from tokio: a sender thread writes typed messages into a
//! pipe and a Unix socket pair; two tokio tasks await the receivers concurrently.
//!
//! Run it with `cargo run -p interproc-ipc --example tokio_recv --features tokio`;
//! `cargo test -p interproc-ipc --features tokio --example tokio_recv` runs it as a test.

use interproc_ipc::pipe;
use interproc_ipc::reactor::tokio::AsyncReceiver;
use interproc_ipc::socket::UnixStream;
use interproc_ipc::Error;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Reading {
    sensor: u32,
    value: f64,
}

fn run() -> Result<(Vec<Reading>, Vec<Reading>), Box<dyn std::error::Error>> {
    let (mut pipe_tx, pipe_rx) = pipe::channel::<Reading>()?;
    let (sock_a, sock_b) = UnixStream::pair()?;
    let mut sock_tx = sock_a.into_sender::<Reading>()?;
    let sock_rx = sock_b.into_receiver::<Reading>()?;
    let sender = std::thread::spawn(move || -> Result<(), Error> {
        for i in 0..3 {
            pipe_tx.send(Reading { sensor: 1, value: i as f64 })?;
            sock_tx.send(Reading { sensor: 2, value: i as f64 * 10.0 })?;
        }
        // Dropping the senders ends both streams: the receivers see Disconnected.
        Ok(())
    });

    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    let (from_pipe, from_socket) = rt.block_on(async move {
        let mut a = AsyncReceiver::new(pipe_rx)?;
        let mut b = AsyncReceiver::new(sock_rx)?;
        let ta = tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                match a.recv().await {
                    Ok(m) => got.push(m),
                    Err(Error::Disconnected) => return Ok(got),
                    Err(e) => return Err(e),
                }
            }
        });
        let tb = tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                match b.recv().await {
                    Ok(m) => got.push(m),
                    Err(Error::Disconnected) => return Ok(got),
                    Err(e) => return Err(e),
                }
            }
        });
        let a = ta.await.expect("pipe task")?;
        let b = tb.await.expect("socket task")?;
        Ok::<_, Error>((a, b))
    })?;
    sender.join().expect("sender thread")?;
    Ok((from_pipe, from_socket))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (a, b) = run()?;
    println!("from the pipe:   {a:?}");
    println!("from the socket: {b:?}");
    Ok(())
}

#[test]
fn main_runs() {
    let (a, b) = run().unwrap();
    assert_eq!(a, (0..3).map(|i| Reading { sensor: 1, value: i as f64 }).collect::<Vec<_>>());
    assert_eq!(
        b,
        (0..3).map(|i| Reading { sensor: 2, value: i as f64 * 10.0 }).collect::<Vec<_>>()
    );
}
