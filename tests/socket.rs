//! Unix domain sockets: the conformance suite over stream and seqpacket sockets across
//! real processes, plus socket files, abstract names, fd passing and peer credentials.

mod support;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use interproc::ipc::channel::{
    BytesReceiver, BytesSender, FrameSink, FrameSource, StreamSink, StreamSource,
};
use interproc::ipc::names::{self, unique_name};
use interproc::ipc::socket::{
    SeqpacketListener, SeqpacketSink, SeqpacketSource, UnixAddr, UnixDatagram, UnixListener,
    UnixSeqpacket, UnixStream, PACKET_TAG,
};
use interproc::ipc::{pipe, Error};
use serde::{Deserialize, Serialize};
use support::conformance::{Setup, Transport};
use support::{TempDir, WATCHDOG};

/// Unix stream sockets through a listener on a socket file: the child connects to the
/// path, and the parent checks the connection's peer credentials name the child.
struct Stream;

fn stream_path() -> String {
    // The runtime dir is short enough for sun_path and private to this user.
    names::runtime_dir().unwrap().join(unique_name("sock")).to_string_lossy().into_owned()
}

fn accept_child(listener: &UnixListener, pid: u32) -> UnixStream {
    let s = listener.accept_timeout(WATCHDOG).expect("the child did not connect");
    assert_eq!(s.peer_cred().unwrap().pid, pid, "SO_PEERCRED names the child");
    s
}

impl Transport for Stream {
    const NAME: &'static str = "unix";

    fn to_parent() -> Setup<BytesReceiver> {
        let path = stream_path();
        let listener = UnixListener::bind(&UnixAddr::path(&path).unwrap()).unwrap();
        Setup {
            fds: vec![],
            arg: path,
            finish: Box::new(move |pid| {
                let s = accept_child(&listener, pid);
                BytesReceiver::new(Box::new(StreamSource::new(s).unwrap()))
            }),
        }
    }

    fn to_child() -> Setup<BytesSender> {
        let path = stream_path();
        let listener = UnixListener::bind(&UnixAddr::path(&path).unwrap()).unwrap();
        Setup {
            fds: vec![],
            arg: path,
            finish: Box::new(move |pid| {
                let s = accept_child(&listener, pid);
                BytesSender::new(Box::new(StreamSink::new(s).unwrap()))
            }),
        }
    }

    fn child_sender(_: Vec<OwnedFd>, arg: &str) -> BytesSender {
        let s = UnixStream::connect(&UnixAddr::path(arg).unwrap()).unwrap();
        BytesSender::new(Box::new(StreamSink::new(s).unwrap()))
    }

    fn child_receiver(_: Vec<OwnedFd>, arg: &str) -> BytesReceiver {
        let s = UnixStream::connect(&UnixAddr::path(arg).unwrap()).unwrap();
        BytesReceiver::new(Box::new(StreamSource::new(s).unwrap()))
    }
}

/// Unix seqpacket sockets through a listener on an abstract name.
struct Seqpacket;

fn seqpacket_listener() -> (SeqpacketListener, String) {
    let name = unique_name("seqpacket");
    (SeqpacketListener::bind(&UnixAddr::abstract_name(&name).unwrap()).unwrap(), name)
}

fn accept_seqpacket(listener: &SeqpacketListener, pid: u32) -> UnixSeqpacket {
    let s = listener.accept_timeout(WATCHDOG).expect("the child did not connect");
    assert_eq!(s.peer_cred().unwrap().pid, pid, "SO_PEERCRED names the child");
    s
}

impl Transport for Seqpacket {
    const NAME: &'static str = "seqpacket";

    fn to_parent() -> Setup<BytesReceiver> {
        let (listener, name) = seqpacket_listener();
        Setup {
            fds: vec![],
            arg: name,
            finish: Box::new(move |pid| {
                let s = accept_seqpacket(&listener, pid);
                BytesReceiver::new(Box::new(SeqpacketSource::new(s)))
            }),
        }
    }

    fn to_child() -> Setup<BytesSender> {
        let (listener, name) = seqpacket_listener();
        Setup {
            fds: vec![],
            arg: name,
            finish: Box::new(move |pid| {
                let s = accept_seqpacket(&listener, pid);
                BytesSender::new(Box::new(SeqpacketSink::new(s).unwrap()))
            }),
        }
    }

    fn child_sender(_: Vec<OwnedFd>, arg: &str) -> BytesSender {
        let s = UnixSeqpacket::connect(&UnixAddr::abstract_name(arg).unwrap()).unwrap();
        BytesSender::new(Box::new(SeqpacketSink::new(s).unwrap()))
    }

    fn child_receiver(_: Vec<OwnedFd>, arg: &str) -> BytesReceiver {
        let s = UnixSeqpacket::connect(&UnixAddr::abstract_name(arg).unwrap()).unwrap();
        BytesReceiver::new(Box::new(SeqpacketSource::new(s)))
    }
}

conformance!(unix_stream, Stream);
conformance!(unix_seqpacket, Seqpacket);

/// A request and its reply, for the duplex typed channel test.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Request {
    Double(u64),
    Greet(String),
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Reply {
    Doubled(u64),
    Greeting(String),
}

#[test]
fn child_entry() {
    support::child_entry(|role, arg| {
        if support::conformance::child_dispatch::<Stream>(role, arg)
            || support::conformance::child_dispatch::<Seqpacket>(role, arg)
        {
            return;
        }
        match role {
            // Binds a datagram socket at `arg` and hands it over as a plain fd.
            "datagram_into_fd" => {
                let d = UnixDatagram::bind(&UnixAddr::path(arg).unwrap()).unwrap();
                let fd = std::os::fd::OwnedFd::from(d);
                assert!(std::path::Path::new(arg).exists(), "into OwnedFd unlinked the file");
                drop(fd);
            }
            "bind_and_wait" => {
                // Bind, tell the parent through fd 3, then wait to be killed.
                let mut ready = File::from(support::inherited_fds().remove(0));
                let _l = UnixListener::bind(&UnixAddr::path(arg).unwrap()).unwrap();
                ready.write_all(b"k").unwrap();
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            "receive_fd_and_write" => {
                let s = UnixStream::connect(&UnixAddr::path(arg).unwrap()).unwrap();
                let mut buf = [0u8; 16];
                let (n, mut fds) = s.recv_with_fds(&mut buf, 4).unwrap();
                assert_eq!(&buf[..n], b"take this fd");
                assert_eq!(fds.len(), 1);
                let fd = fds.remove(0);
                assert_cloexec(&fd);
                let mut f = File::from(fd);
                write!(f, "written by child {}", std::process::id()).unwrap();
            }
            "peer_cred" => {
                let s = UnixStream::connect(&UnixAddr::path(arg).unwrap()).unwrap();
                let cred = s.peer_cred().unwrap();
                assert_eq!(cred.pid, std::os::unix::process::parent_id(), "the listener's pid");
                assert_eq!(cred.uid, nix::unistd::geteuid().as_raw());
                assert_eq!(cred.gid, nix::unistd::getegid().as_raw());
                // Hold the connection until the parent has checked its side.
                let mut b = [0u8; 1];
                let mut s = s;
                assert_eq!(s.read(&mut b).unwrap(), 0);
            }
            "serve_requests" => {
                let s = UnixStream::connect(&UnixAddr::path(arg).unwrap()).unwrap();
                serve(s.into_channel::<Reply, Request>().unwrap());
            }
            "fork_then_drop_in_child" => {
                let path = Path::new(arg);
                let listener = UnixListener::bind(&UnixAddr::path(path).unwrap()).unwrap();
                // This child process runs one test; the only other thread is libtest's main
                // thread, blocked waiting for it. The forked child only drops and `_exit`s.
                // SAFETY: no other thread holds a lock the forked child could need.
                match unsafe { nix::unistd::fork() }.unwrap() {
                    nix::unistd::ForkResult::Child => {
                        drop(listener);
                        // SAFETY: _exit ends the forked child without running the
                        // parent's atexit handlers or flushing its stdio.
                        unsafe { libc::_exit(0) };
                    }
                    nix::unistd::ForkResult::Parent { child } => {
                        assert_eq!(support::wait_forked(child), 0, "the forked child failed");
                    }
                }
                assert!(path.exists(), "a forked child's drop removed the parent's socket file");
                let recs = records_for(path);
                assert!(recs.len() == 1 && recs[0].alive, "the parent's record survives");
                drop(listener);
                assert!(!path.exists());
                assert!(records_for(path).is_empty());
            }
            "socketpair_end" => {
                let s = UnixStream::from_owned_fd(support::inherited_fds().remove(0));
                // socketpair(2) records the creator: the parent made both ends.
                assert_eq!(s.peer_cred().unwrap().pid, std::os::unix::process::parent_id());
                serve(s.into_channel::<Reply, Request>().unwrap());
            }
            "serve_requests_seqpacket" => {
                let s = UnixSeqpacket::connect(&UnixAddr::abstract_name(arg).unwrap()).unwrap();
                serve(s.into_channel::<Reply, Request>().unwrap());
            }
            other => panic!("unknown role {other}"),
        }
    });
}

/// Answers requests until the parent hangs up.
fn serve<S: FrameSink, R: FrameSource>(
    (mut tx, mut rx): (
        interproc::ipc::channel::Sender<Reply, S>,
        interproc::ipc::channel::Receiver<Request, R>,
    ),
) {
    loop {
        let reply = match rx.recv() {
            Ok(Request::Double(n)) => Reply::Doubled(n * 2),
            Ok(Request::Greet(who)) => Reply::Greeting(format!("hello, {who}")),
            Err(Error::Disconnected) => return,
            Err(e) => panic!("child recv: {e}"),
        };
        tx.send(reply).unwrap();
    }
}

fn assert_cloexec(fd: impl AsFd) {
    let flags = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_GETFD).unwrap();
    assert_ne!(flags & libc::FD_CLOEXEC, 0, "fd is not close-on-exec");
}

fn records_for(path: &Path) -> Vec<names::Entry> {
    let name = path.to_string_lossy();
    names::list().unwrap().into_iter().filter(|e| e.record.name == name).collect()
}

#[test]
fn a_socket_file_left_by_a_killed_listener_is_reclaimed() {
    let dir = TempDir::new();
    let path = dir.join("server.sock");
    let addr = UnixAddr::path(&path).unwrap();
    let (mut ready_r, ready_w) = pipe::pipe().unwrap();
    let child =
        support::spawn("child_entry", "bind_and_wait", path.to_str().unwrap(), &[ready_w.as_fd()]);
    drop(ready_w);
    let mut b = [0u8; 1];
    assert_eq!(ready_r.read(&mut b).unwrap(), 1, "the child bound the socket");

    // A live listener in another process: the path is taken.
    match UnixListener::bind(&addr) {
        Err(Error::AlreadyExists { what }) => {
            assert!(what.contains(&format!("pid {}", child.pid())), "names the owner: {what}")
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let recs = records_for(&path);
    assert_eq!(recs.len(), 1, "one owner record");
    assert!(recs[0].alive);
    assert_eq!(recs[0].record.pid, child.pid());

    let st = child.kill_and_wait();
    assert!(support::was_killed(&st));
    // SIGKILL left the file behind: stale, and connecting to it is refused.
    assert!(std::fs::symlink_metadata(&path).unwrap().file_type().is_socket());
    assert!(!records_for(&path)[0].alive, "the record's lock died with its owner");
    match UnixStream::connect(&addr) {
        Err(Error::Refused { what }) => assert!(what.contains("server.sock"), "{what}"),
        other => panic!("expected Refused, got {other:?}"),
    }

    // Binding reclaims it.
    let listener = UnixListener::bind(&addr).unwrap();
    let recs = records_for(&path);
    assert_eq!(recs.len(), 1);
    assert!(recs[0].alive);
    assert_eq!(recs[0].record.pid, std::process::id());
    let mut c = UnixStream::connect(&addr).unwrap();
    let mut s = listener.accept().unwrap();
    c.write_all(b"hi").unwrap();
    let mut buf = [0u8; 2];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hi");
    drop(listener);
    assert!(!path.exists());
}

#[test]
fn clean_removes_the_socket_file_of_a_killed_listener() {
    let dir = TempDir::new();
    let path = dir.join("crashed.sock");
    let (mut ready_r, ready_w) = pipe::pipe().unwrap();
    let child =
        support::spawn("child_entry", "bind_and_wait", path.to_str().unwrap(), &[ready_w.as_fd()]);
    drop(ready_w);
    assert_eq!(ready_r.read(&mut [0u8; 1]).unwrap(), 1, "the child bound the socket");
    assert_eq!(names::remove_stale(&records_for(&path)[0]).unwrap(), names::Removal::OwnerAlive);
    assert!(path.exists());
    assert!(support::was_killed(&child.kill_and_wait()));
    assert_eq!(names::remove_stale(&records_for(&path)[0]).unwrap(), names::Removal::Removed);
    assert!(!path.exists());
    assert!(records_for(&path).is_empty());
}

#[test]
fn sockets_of_other_programs_are_probed_live_or_stale() {
    // std's listener keeps no owner record and leaves its file behind when dropped.
    let dir = TempDir::new();
    let path = dir.join("foreign.sock");
    let addr = UnixAddr::path(&path).unwrap();
    let foreign = std::os::unix::net::UnixListener::bind(&path).unwrap();
    match UnixListener::bind(&addr) {
        Err(Error::AlreadyExists { what }) => assert!(what.contains("listening"), "{what}"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    // A datagram socket bound there is alive too, though it never listens.
    drop(foreign);
    let foreign = std::os::unix::net::UnixDatagram::bind(dir.join("foreign.dgram")).unwrap();
    let daddr = UnixAddr::path(dir.join("foreign.dgram")).unwrap();
    assert!(matches!(UnixDatagram::bind(&daddr), Err(Error::AlreadyExists { .. })));
    assert!(matches!(UnixListener::bind(&daddr), Err(Error::AlreadyExists { .. })));
    drop(foreign);
    // Both files are stale now: reclaimed.
    assert!(path.exists());
    let l = UnixListener::bind(&addr).unwrap();
    let _c = UnixStream::connect(&addr).unwrap();
    l.accept_timeout(WATCHDOG).unwrap();
    let d = UnixDatagram::bind(&daddr).unwrap();
    UnixDatagram::unbound().unwrap().send_to(b"x", &daddr).unwrap();
    assert_eq!(d.recv(&mut [0u8; 4]).unwrap(), 1);
}

#[test]
fn concurrent_reclaims_of_one_stale_path_have_one_winner() {
    let dir = TempDir::new();
    let path = dir.join("contested.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap()); // leaves a stale file
    let addr = UnixAddr::path(&path).unwrap();
    let barrier = std::sync::Barrier::new(8);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    UnixListener::bind(&addr)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut winners = Vec::new();
    for r in results {
        match r {
            Ok(l) => winners.push(l),
            Err(Error::AlreadyExists { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one reclaim wins");
    // The path leads to the winner, not to a socket someone unlinked.
    let _c = UnixStream::connect(&addr).unwrap();
    winners[0].accept_timeout(WATCHDOG).unwrap();
}

#[test]
fn a_live_listener_in_this_process_keeps_its_path() {
    let dir = TempDir::new();
    let addr = UnixAddr::path(dir.join("s")).unwrap();
    let _first = UnixListener::bind(&addr).unwrap();
    assert!(matches!(UnixListener::bind(&addr), Err(Error::AlreadyExists { .. })));
    assert!(matches!(SeqpacketListener::bind(&addr), Err(Error::AlreadyExists { .. })));
    assert!(matches!(UnixDatagram::bind(&addr), Err(Error::AlreadyExists { .. })));
}

#[test]
fn a_path_that_is_not_a_socket_is_never_deleted() {
    let dir = TempDir::new();
    let path = dir.join("precious.txt");
    std::fs::write(&path, "keep me").unwrap();
    match UnixListener::bind(&UnixAddr::path(&path).unwrap()) {
        Err(e @ Error::WrongType { expected: "socket", found: "regular file", .. }) => {
            assert!(e.to_string().contains("precious.txt"), "{e}")
        }
        other => panic!("expected WrongType, got {other:?}"),
    }
    match UnixStream::connect(&UnixAddr::path(&path).unwrap()) {
        Err(Error::WrongType { found: "regular file", .. }) => {}
        other => panic!("expected WrongType on connect, got {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
}

#[test]
fn a_malformed_client_is_dropped_and_the_server_carries_on() {
    let addr = UnixAddr::abstract_name(unique_name("server")).unwrap();
    let listener = UnixListener::bind(&addr).unwrap();
    let mut rogue = UnixStream::connect(&addr).unwrap();
    rogue.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let good = UnixStream::connect(&addr).unwrap();
    let (mut tx, _) = good.into_channel::<Request, ()>().unwrap();
    tx.send(Request::Greet("server".into())).unwrap();

    let mut served = Vec::new();
    let mut dropped = 0;
    for _ in 0..2 {
        let conn = listener.accept_timeout(WATCHDOG).unwrap();
        let mut rx = conn.into_receiver::<Request>().unwrap();
        match rx.recv_timeout(WATCHDOG) {
            Ok(req) => served.push(req),
            // Drop this connection; the listener and the other clients carry on.
            Err(Error::Malformed { .. }) => dropped += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(dropped, 1);
    assert_eq!(served, vec![Request::Greet("server".into())]);
}

#[test]
fn a_path_longer_than_sun_path_is_refused_with_the_limit() {
    let dir = TempDir::new();
    let long = dir.join(&"x".repeat(120));
    let err = UnixAddr::path(&long).unwrap_err();
    assert!(matches!(err, Error::PathTooLong { max: 107, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("108"), "the message names the 108-byte sun_path: {msg}");
    assert!(!long.exists());
}

#[test]
fn connecting_to_a_missing_path_is_not_found() {
    let dir = TempDir::new();
    let addr = UnixAddr::path(dir.join("nobody")).unwrap();
    assert!(matches!(UnixStream::connect(&addr), Err(Error::NotFound { .. })));
    assert!(matches!(UnixSeqpacket::connect(&addr), Err(Error::NotFound { .. })));
    let nodir = UnixAddr::path(dir.join("no/such/dir/s")).unwrap();
    assert!(matches!(UnixListener::bind(&nodir), Err(Error::NotFound { .. })));
}

#[test]
fn abstract_names_work_and_leave_nothing_behind() {
    let name = unique_name("abstract");
    let addr = UnixAddr::abstract_name(&name).unwrap();
    {
        let listener = UnixListener::bind(&addr).unwrap();
        assert!(matches!(UnixListener::bind(&addr), Err(Error::AlreadyExists { .. })));
        let mut c = UnixStream::connect(&addr).unwrap();
        let mut s = listener.accept().unwrap();
        assert_eq!(s.local_addr().unwrap(), addr);
        assert!(c.local_addr().unwrap().is_unnamed());
        c.write_all(b"abc").unwrap();
        let mut buf = [0u8; 3];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"abc");
        assert!(names::list().unwrap().iter().all(|e| !e.record.name.contains(&name)));
    }
    // Gone with the last socket: connecting is refused and the name can be bound again.
    assert!(matches!(UnixStream::connect(&addr), Err(Error::Refused { .. })));
    drop(UnixListener::bind(&addr).unwrap());
    // No file by that name anywhere a path-bound socket could have gone.
    for dir in
        [std::env::current_dir().unwrap(), names::runtime_dir().unwrap(), std::env::temp_dir()]
    {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            assert!(!p.to_string_lossy().contains(&name), "{} exists", p.display());
        }
    }
}

#[test]
fn dropping_a_listener_removes_its_file_and_record() {
    let dir = TempDir::new();
    let path = dir.join("l.sock");
    let listener = UnixListener::bind(&UnixAddr::path(&path).unwrap()).unwrap();
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "socket files are 0600");
    assert_eq!(records_for(&path).len(), 1);
    drop(listener);
    assert!(!path.exists(), "socket file removed");
    assert!(records_for(&path).is_empty(), "owner record removed");

    // A datagram socket bound to a path owns its file the same way.
    let dpath = dir.join("d.sock");
    let d = UnixDatagram::bind(&UnixAddr::path(&dpath).unwrap()).unwrap();
    assert_eq!(records_for(&dpath).len(), 1);
    drop(d);
    assert!(!dpath.exists());
    assert!(records_for(&dpath).is_empty());
}

#[test]
fn scm_rights_passes_a_pipe_to_a_child_that_writes_through_it() {
    let dir = TempDir::new();
    let path = dir.join("fdpass.sock");
    let listener = UnixListener::bind(&UnixAddr::path(&path).unwrap()).unwrap();
    let child = support::spawn("child_entry", "receive_fd_and_write", path.to_str().unwrap(), &[]);
    let conn = listener.accept_timeout(WATCHDOG).unwrap();
    let (mut r, w) = pipe::pipe().unwrap();
    assert_eq!(conn.send_with_fds(b"take this fd", &[w.as_fd()]).unwrap(), 12);
    // Our copy goes; the child's copy is then the only writer.
    drop(w);
    let pid = child.pid();
    let mut got = String::new();
    r.read_to_string(&mut got).unwrap();
    assert_eq!(got, format!("written by child {pid}"));
    child.wait_success();
}

#[test]
fn too_many_fds_for_the_receiver_is_control_truncated_and_closes_what_arrived() {
    let (a, b) = UnixSeqpacket::pair().unwrap();
    let (r, w) = pipe::pipe().unwrap();
    a.send_with_fds(b"three", &[w.as_fd(), w.as_fd(), w.as_fd()]).unwrap();
    drop(w);
    let mut buf = [0u8; 16];
    match b.recv_with_fds(&mut buf, 1) {
        Err(Error::ControlTruncated) => {}
        other => panic!("expected ControlTruncated, got {other:?}"),
    }
    // Every copy of the write end is closed (the one that arrived too), so the read end
    // sees EOF. A leaked copy would leave it waiting: wait a bounded time, then look.
    let mut fds = [nix::poll::PollFd::new(r.as_fd(), nix::poll::PollFlags::POLLIN)];
    nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(10_000u16)).unwrap();
    r.set_nonblocking(true).unwrap();
    let mut r = r;
    assert_eq!(r.read(&mut buf).unwrap(), 0, "a passed fd leaked");

    // The socket is still usable.
    a.send_with_fds(b"again", &[]).unwrap();
    let (n, fds) = b.recv_with_fds(&mut buf, 1).unwrap();
    assert_eq!((&buf[..n], fds.len()), (&b"again"[..], 0));
}

#[test]
fn passed_fds_arrive_close_on_exec() {
    let (a, b) = UnixStream::pair().unwrap();
    let f = File::open("/proc/self/stat").unwrap();
    a.send_with_fds(b"x", &[f.as_fd(), f.as_fd()]).unwrap();
    let mut buf = [0u8; 1];
    let (n, fds) = b.recv_with_fds(&mut buf, 8).unwrap();
    assert_eq!((n, fds.len()), (1, 2));
    for fd in &fds {
        assert_cloexec(fd);
    }
    assert_cloexec(&a);
    // A stream needs a byte to carry fds.
    assert!(a.send_with_fds(b"", &[f.as_fd()]).is_err());
}

#[test]
fn peer_credentials_across_a_child() {
    let dir = TempDir::new();
    let path = dir.join("cred.sock");
    let listener = UnixListener::bind(&UnixAddr::path(&path).unwrap()).unwrap();
    let child = support::spawn("child_entry", "peer_cred", path.to_str().unwrap(), &[]);
    let conn = listener.accept_timeout(WATCHDOG).unwrap();
    let cred = conn.peer_cred().unwrap();
    assert_eq!(cred.pid, child.pid());
    assert_eq!(cred.uid, nix::unistd::geteuid().as_raw());
    drop(conn);
    child.wait_success();
}

#[test]
fn seqpacket_keeps_message_boundaries_and_refuses_to_cut() {
    let (a, b) = UnixSeqpacket::pair().unwrap();
    a.send(b"one").unwrap();
    a.send(b"").unwrap();
    a.send(&[7u8; 5000]).unwrap();
    a.send(&[9u8; 100]).unwrap();
    a.send(b"after").unwrap();
    let mut buf = [0u8; 8192];
    assert_eq!(b.recv(&mut buf).unwrap(), 3);
    assert_eq!(&buf[..3], b"one");
    assert_eq!(b.recv(&mut buf).unwrap(), 0);
    assert_eq!(b.recv(&mut buf).unwrap(), 5000);
    assert!(buf[..5000].iter().all(|&x| x == 7));
    match b.recv(&mut buf[..50]) {
        Err(Error::MessageTooLarge { size: 100, max: 50 }) => {}
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    // The oversized packet was discarded whole; the next one is intact.
    assert_eq!(b.recv(&mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"after");
}

#[test]
fn seqpacket_max_packet_is_the_kernel_boundary() {
    let (a, b) = UnixSeqpacket::pair().unwrap();
    let max = a.max_packet().unwrap();
    match a.send(&vec![3u8; max + 1]) {
        Err(e @ Error::LimitExceeded { .. }) => assert!(e.to_string().contains("SO_SNDBUF"), "{e}"),
        other => panic!("expected LimitExceeded one byte over max_packet, got {other:?}"),
    }
    a.send(&vec![3u8; max]).unwrap();
    let mut buf = vec![0u8; max];
    assert_eq!(b.recv(&mut buf).unwrap(), max);
}

#[test]
fn seqpacket_channel_frames_are_packets() {
    let (a, b) = UnixSeqpacket::pair().unwrap();
    let raw = a.try_clone().unwrap();
    let (mut tx, _rx_a) = a.into_bytes_channel().unwrap();
    let (_tx_b, mut rx) = b.into_bytes_channel().unwrap();
    // Empty frames are frames, not end-of-file: the tag byte tells them apart.
    tx.send(b"").unwrap();
    tx.send(b"x").unwrap();
    assert_eq!(rx.recv().unwrap(), b"");
    assert_eq!(rx.recv().unwrap(), b"x");

    // A frame over the receiver's maximum is Malformed, and the next one still arrives.
    let mut rx = rx.with_max_frame(10);
    tx.send(&[1u8; 11]).unwrap();
    tx.send(&[2u8; 10]).unwrap();
    match rx.recv() {
        Err(Error::Malformed { reason }) => assert!(reason.contains("11 bytes"), "{reason}"),
        other => panic!("expected Malformed, got {other:?}"),
    }
    assert_eq!(rx.recv().unwrap(), vec![2u8; 10]);

    // A packet without the tag is a foreign protocol.
    raw.send(b"\x00hello").unwrap();
    assert!(matches!(rx.recv(), Err(Error::Malformed { .. })));

    drop(tx);
    drop(raw);
    drop(_rx_a);
    assert!(matches!(rx.recv(), Err(Error::Disconnected)));
}

#[test]
fn seqpacket_send_buffer_grows_on_demand_and_the_cap_is_explained() {
    let (a, b) = UnixSeqpacket::pair().unwrap();
    let initial = a.max_packet().unwrap();
    let mut sink = SeqpacketSink::new(a).unwrap();
    let mut source = SeqpacketSource::new(b);
    // Small packets leave the default send buffer alone.
    sink.send_frame(b"small", None).unwrap();
    assert_eq!(source.recv_frame(None).unwrap(), b"small");
    assert_eq!(sink.get_ref().max_packet().unwrap(), initial);

    // A packet over the default buffer (wmem_default) grows it, if the cap allows.
    let len = initial + 1000;
    if len <= sink.max_frame() {
        let msg = support::conformance::make_msg(1, len);
        sink.send_frame(&msg, None).unwrap();
        assert_eq!(source.recv_frame(None).unwrap(), &msg[..]);
        assert!(sink.get_ref().max_packet().unwrap() > len);
    }

    // A maximum over any send buffer is clamped, and a send over the clamp names the limit.
    sink.set_max_frame(1 << 40);
    let max = sink.max_frame();
    assert!(max < 1 << 40);
    match sink.send_frame(&vec![0u8; max + 1], None) {
        Err(e @ Error::LimitExceeded { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("SO_SNDBUF") && msg.contains("wmem_max"), "{msg}");
        }
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
    // Under the caller's own maximum: MessageTooLarge, as on every transport.
    sink.set_max_frame(64);
    assert!(matches!(
        sink.send_frame(&[0u8; 65], None),
        Err(Error::MessageTooLarge { size: 65, max: 64 })
    ));
    sink.send_frame(&[PACKET_TAG; 64], None).unwrap();
    assert_eq!(source.recv_frame(None).unwrap(), &[PACKET_TAG; 64][..]);
}

#[test]
fn typed_duplex_channel_over_a_unix_stream_across_a_child() {
    let path = stream_path();
    let listener = UnixListener::bind(&UnixAddr::path(&path).unwrap()).unwrap();
    let child = support::spawn("child_entry", "serve_requests", &path, &[]);
    let conn = listener.accept_timeout(WATCHDOG).unwrap();
    drop(listener);
    assert!(!Path::new(&path).exists());
    request_replies(conn.into_channel::<Request, Reply>().unwrap());
    child.wait_success();
}

#[test]
fn a_forked_child_dropping_the_listener_leaves_the_file_to_the_parent() {
    // Forking needs a process running one test: do it in a child.
    let dir = TempDir::new();
    let path = dir.join("forked.sock");
    support::spawn("child_entry", "fork_then_drop_in_child", path.to_str().unwrap(), &[])
        .wait_success();
}

#[test]
fn a_socketpair_end_handed_to_a_spawned_child() {
    let (mine, theirs) = UnixStream::pair().unwrap();
    let child = support::spawn("child_entry", "socketpair_end", "", &[theirs.as_fd()]);
    drop(theirs);
    // Our end's peer credentials name us, the pair's creator, not the child.
    assert_eq!(mine.peer_cred().unwrap().pid, std::process::id());
    request_replies(mine.into_channel::<Request, Reply>().unwrap());
    child.wait_success();
}

#[test]
fn typed_duplex_channel_over_seqpacket_across_a_child() {
    let (listener, name) = seqpacket_listener();
    let child = support::spawn("child_entry", "serve_requests_seqpacket", &name, &[]);
    let conn = listener.accept_timeout(WATCHDOG).unwrap();
    request_replies(conn.into_channel::<Request, Reply>().unwrap());
    child.wait_success();
}

fn request_replies<S: FrameSink, R: FrameSource>(
    (mut tx, mut rx): (
        interproc::ipc::channel::Sender<Request, S>,
        interproc::ipc::channel::Receiver<Reply, R>,
    ),
) {
    for n in 0..200u64 {
        tx.send(Request::Double(n)).unwrap();
        assert_eq!(rx.recv_timeout(WATCHDOG).unwrap(), Reply::Doubled(2 * n));
    }
    tx.send(Request::Greet("parent".into())).unwrap();
    assert_eq!(rx.recv_timeout(WATCHDOG).unwrap(), Reply::Greeting("hello, parent".into()));
    // Hanging up (both halves) lets the child see Disconnected and exit 0.
}

#[test]
fn datagrams_between_bound_sockets_with_replies() {
    let dir = TempDir::new();
    let server_addr = UnixAddr::path(dir.join("srv.sock")).unwrap();
    let client_addr = UnixAddr::path(dir.join("cli.sock")).unwrap();
    let server = UnixDatagram::bind(&server_addr).unwrap();
    let client = UnixDatagram::bind(&client_addr).unwrap();
    client.send_to(b"ping", &server_addr).unwrap();
    client.send_to(&[5u8; 300], &server_addr).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = server.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], &from), (&b"ping"[..], &client_addr));
    server.send_to(b"pong", &from).unwrap();
    assert_eq!(client.recv(&mut buf).unwrap(), 4);
    assert_eq!(&buf[..4], b"pong");
    match server.recv_from(&mut buf) {
        Err(Error::MessageTooLarge { size: 300, max: 64 }) => {}
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    let nobody = UnixAddr::path(dir.join("nobody.sock")).unwrap();
    assert!(matches!(client.send_to(b"x", &nobody), Err(Error::NotFound { .. })));

    // Connected pair, and fd passing on datagrams.
    let (a, b) = UnixDatagram::pair().unwrap();
    let f = File::open("/proc/self/stat").unwrap();
    a.send_with_fds(b"fd", &[f.as_fd()]).unwrap();
    let (n, fds) = b.recv_with_fds(&mut buf, 1).unwrap();
    assert_eq!((&buf[..n], fds.len()), (&b"fd"[..], 1));
}

/// Regression: turning a bound datagram socket into a plain fd hands the socket file over
/// with it: the file is not unlinked under the live socket. Its owner record stays, so
/// once the process is gone `clean` removes the file.
#[test]
fn a_bound_datagram_into_an_fd_keeps_its_file_until_clean() {
    let dir = TempDir::new();
    let path = dir.join("dgram.sock");
    let p = path.to_str().unwrap();
    support::spawn("child_entry", "datagram_into_fd", p, &[]).wait_success();
    assert!(path.exists());
    let entry = interproc::ipc::names::list()
        .unwrap()
        .into_iter()
        .find(|e| e.record.name == p)
        .expect("the owner record stays");
    assert!(!entry.alive);
    assert_eq!(
        interproc::ipc::names::remove_stale(&entry).unwrap(),
        interproc::ipc::names::Removal::Removed
    );
    assert!(!path.exists());
}
