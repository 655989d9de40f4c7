//! TCP over loopback: the conformance suite across real processes, plus listener and
//! stream specifics.

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::Duration;

use interproc::ipc::channel::{BytesReceiver, BytesSender, StreamSink, StreamSource};
use interproc::ipc::tcp::{TcpListener, TcpStream};
use interproc::ipc::Error;
use serde::{Deserialize, Serialize};
use support::conformance::{Setup, Transport};
use support::WATCHDOG;

/// TCP on 127.0.0.1 with a kernel-picked port: the child connects to it.
struct Tcp;

fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

fn accept_child(l: &TcpListener) -> TcpStream {
    l.accept_timeout(WATCHDOG).expect("the child did not connect")
}

fn connect(arg: &str) -> TcpStream {
    TcpStream::connect(arg.parse::<SocketAddr>().unwrap()).unwrap()
}

impl Transport for Tcp {
    const NAME: &'static str = "tcp";

    fn to_parent() -> Setup<BytesReceiver> {
        let (l, addr) = listener();
        Setup {
            fds: vec![],
            arg: addr,
            finish: Box::new(move |_| {
                BytesReceiver::new(Box::new(StreamSource::new(accept_child(&l)).unwrap()))
            }),
        }
    }

    fn to_child() -> Setup<BytesSender> {
        let (l, addr) = listener();
        Setup {
            fds: vec![],
            arg: addr,
            finish: Box::new(move |_| {
                BytesSender::new(Box::new(StreamSink::new(accept_child(&l)).unwrap()))
            }),
        }
    }

    fn child_sender(_: Vec<OwnedFd>, arg: &str) -> BytesSender {
        BytesSender::new(Box::new(StreamSink::new(connect(arg)).unwrap()))
    }

    fn child_receiver(_: Vec<OwnedFd>, arg: &str) -> BytesReceiver {
        BytesReceiver::new(Box::new(StreamSource::new(connect(arg)).unwrap()))
    }
}

conformance!(tcp, Tcp);

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Job {
    id: u32,
    words: Vec<String>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Done {
    id: u32,
    total_len: usize,
    pid: u32,
}

#[test]
fn child_entry() {
    support::child_entry(|role, arg| {
        if support::conformance::child_dispatch::<Tcp>(role, arg) {
            return;
        }
        match role {
            "worker" => {
                let (mut tx, mut rx) = connect(arg).into_channel::<Done, Job>().unwrap();
                loop {
                    match rx.recv() {
                        Ok(job) => {
                            let total_len = job.words.iter().map(String::len).sum();
                            tx.send(Done { id: job.id, total_len, pid: std::process::id() })
                                .unwrap();
                        }
                        Err(Error::Disconnected) => return,
                        Err(e) => panic!("worker: {e}"),
                    }
                }
            }
            other => panic!("unknown role {other}"),
        }
    });
}

#[test]
fn typed_duplex_channel_across_a_child() {
    let (l, addr) = listener();
    let child = support::spawn("child_entry", "worker", &addr, &[]);
    let (mut tx, mut rx) = accept_child(&l).into_channel::<Job, Done>().unwrap();
    let pid = child.pid();
    for id in 0..300 {
        let words: Vec<String> = (0..id % 13).map(|i| "w".repeat(i as usize)).collect();
        let total_len = words.iter().map(String::len).sum();
        tx.send(Job { id, words }).unwrap();
        assert_eq!(rx.recv_timeout(WATCHDOG).unwrap(), Done { id, total_len, pid });
    }
    drop(tx);
    drop(rx);
    child.wait_success();
}

#[test]
fn port_zero_picks_a_port_and_streams_have_nodelay() {
    let (l, _) = listener();
    let addr = l.local_addr().unwrap();
    assert!(addr.ip().is_loopback());
    assert_ne!(addr.port(), 0);
    let mut c = TcpStream::connect(addr).unwrap();
    let mut s = l.accept().unwrap();
    assert!(c.nodelay().unwrap());
    assert!(s.nodelay().unwrap());
    assert_eq!(s.peer_addr().unwrap(), c.local_addr().unwrap());
    c.write_all(b"raw bytes").unwrap();
    let mut buf = [0u8; 9];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"raw bytes");
    c.shutdown_write().unwrap();
    assert_eq!(s.read(&mut buf).unwrap(), 0);
}

#[test]
fn a_port_in_use_is_already_exists() {
    let (l, _) = listener();
    let addr = l.local_addr().unwrap();
    match TcpListener::bind(addr) {
        Err(Error::AlreadyExists { what }) => assert!(what.contains(&addr.to_string()), "{what}"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
}

#[test]
fn errors_name_the_address() {
    let (l, _) = listener();
    let port = l.local_addr().unwrap().port();
    match TcpListener::bind(format!("127.0.0.1:{port}")) {
        Err(e @ Error::AlreadyExists { .. }) => {
            assert!(e.to_string().contains(&format!("TCP address 127.0.0.1:{port}")), "{e}")
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    // No port: refused before any name lookup (this test touches only loopback).
    assert!(matches!(TcpStream::connect("127.0.0.1"), Err(Error::NotFound { .. })));
}

#[test]
fn nobody_listening_is_refused() {
    // A port held by a socket that is bound but never listens: nobody else can take it
    // while the test runs, and a connect to it is refused.
    use nix::sys::socket::{
        bind, getsockname, socket, AddressFamily, SockFlag, SockType, SockaddrIn,
    };
    let held = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    bind(std::os::fd::AsRawFd::as_raw_fd(&held), &SockaddrIn::new(127, 0, 0, 1, 0)).unwrap();
    let bound: SockaddrIn = getsockname(std::os::fd::AsRawFd::as_raw_fd(&held)).unwrap();
    let addr = std::net::SocketAddr::from(std::net::SocketAddrV4::from(bound));
    match TcpStream::connect(addr) {
        Err(Error::Refused { what }) => assert!(what.contains(&addr.to_string()), "{what}"),
        other => panic!("expected Refused, got {other:?}"),
    }
    match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Err(Error::Refused { .. }) => {}
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[test]
fn accept_with_a_timeout_and_without_blocking() {
    let (l, _) = listener();
    assert!(matches!(l.try_accept(), Ok(None)));
    assert!(matches!(l.accept_timeout(Duration::from_millis(20)), Err(Error::Timeout)));
    let _c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let s = l.accept_timeout(WATCHDOG).unwrap();
    // The accepted stream is blocking, whatever the listener's mode.
    assert!(!interproc_is_nonblocking(&s));
}

fn interproc_is_nonblocking(s: &TcpStream) -> bool {
    let flags = nix::fcntl::fcntl(s, nix::fcntl::FcntlArg::F_GETFL).unwrap();
    nix::fcntl::OFlag::from_bits_truncate(flags).contains(nix::fcntl::OFlag::O_NONBLOCK)
}
