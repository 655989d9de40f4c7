//! FIFOs: the transport conformance suite across real processes, plus the FIFO
//! specifics: explicit create/open with typed errors, the kernel's open semantics,
//! the mode, removal on drop, and a dead owner's FIFO found and removed.

mod support;

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use interproc::ipc::channel::{BytesReceiver, BytesSender, StreamSink, StreamSource};
use interproc::ipc::fifo::{self, Fifo};
use interproc::ipc::names::{self, Origin, Removal};
use interproc::ipc::{pipe, Error};
use support::conformance::{Setup, Transport};
use support::{TempDir, WATCHDOG};

/// The conformance suite over a FIFO: the parent creates (and owns) the FIFO, the child
/// opens the other end by path; both sides use the `_timeout` opens so that a peer that
/// never comes fails the test instead of hanging it.
struct FifoTransport;

impl Transport for FifoTransport {
    const NAME: &'static str = "fifo";

    fn to_parent() -> Setup<BytesReceiver> {
        let dir = TempDir::new();
        let owner = Fifo::create(dir.join("to-parent")).unwrap();
        Setup {
            fds: Vec::new(),
            arg: owner.path().to_str().unwrap().to_string(),
            finish: Box::new(move |_| {
                let r = owner.open_reader_timeout(WATCHDOG).unwrap();
                // Both ends are open: the name can go. The pipe lives on.
                drop(owner);
                drop(dir);
                BytesReceiver::new(Box::new(StreamSource::new(r).unwrap()))
            }),
        }
    }

    fn to_child() -> Setup<BytesSender> {
        let dir = TempDir::new();
        let owner = Fifo::create(dir.join("to-child")).unwrap();
        Setup {
            fds: Vec::new(),
            arg: owner.path().to_str().unwrap().to_string(),
            finish: Box::new(move |_| {
                let w = owner.open_writer_timeout(WATCHDOG).unwrap();
                drop(owner);
                drop(dir);
                BytesSender::new(Box::new(StreamSink::new(w).unwrap()))
            }),
        }
    }

    fn child_sender(_: Vec<OwnedFd>, path: &str) -> BytesSender {
        let w = fifo::open_writer_timeout(path, WATCHDOG).unwrap();
        BytesSender::new(Box::new(StreamSink::new(w).unwrap()))
    }

    fn child_receiver(_: Vec<OwnedFd>, path: &str) -> BytesReceiver {
        let r = fifo::open_reader_timeout(path, WATCHDOG).unwrap();
        BytesReceiver::new(Box::new(StreamSource::new(r).unwrap()))
    }
}

conformance!(conformance, FifoTransport);

#[test]
fn child_entry() {
    support::child_entry(|role, arg| match role {
        // Creates a FIFO at `arg`, reports its pid on fd 3, and waits to be killed.
        "own_fifo" => {
            let _owner = Fifo::create(arg).unwrap();
            let ready = pipe::PipeWriter::from(support::inherited_fds().remove(0));
            let mut ready = ready.into_sender::<u32>().unwrap();
            ready.send(std::process::id()).unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        // Opens `arg` for reading with a plain blocking open, then echoes strings back
        // through fd 3 until the writer closes.
        "blocking_reader" => {
            let mut rx = fifo::open_reader(arg).unwrap().into_receiver::<String>().unwrap();
            let back = pipe::PipeWriter::from(support::inherited_fds().remove(0));
            let mut back = back.into_sender::<String>().unwrap();
            loop {
                match rx.recv() {
                    Ok(s) => back.send(s).unwrap(),
                    Err(e) if e.is_disconnected() => break,
                    Err(e) => panic!("child recv: {e}"),
                }
            }
        }
        // With no fd left to open, creates a FIFO at `arg`: the create must fail, and
        // must not leave the FIFO behind.
        "create_without_fds" => {
            use nix::sys::resource::{setrlimit, Resource};
            let lowest_free = std::fs::File::open("/dev/null").map(|f| {
                use std::os::fd::AsRawFd;
                f.as_raw_fd() as u64
            });
            let n = lowest_free.unwrap();
            setrlimit(Resource::RLIMIT_NOFILE, n, n).unwrap();
            let r = Fifo::create(arg);
            assert!(r.is_err(), "create succeeded with no fd to spare");
            assert!(
                std::fs::symlink_metadata(arg).is_err(),
                "a failed create left its FIFO behind ({:?})",
                r.err()
            );
        }
        _ => {
            let ran = support::conformance::child_dispatch::<FifoTransport>(role, arg);
            assert!(ran, "unknown role {role}");
        }
    });
}

fn record_for(path: &Path) -> Option<names::Entry> {
    let name = path.to_str().unwrap();
    names::list()
        .unwrap()
        .into_iter()
        .find(|e| e.record.kind == names::Kind::Fifo && e.record.name == name)
}

#[test]
fn opening_a_missing_fifo_is_not_found() {
    let dir = TempDir::new();
    let path = dir.join("missing");
    for r in [
        fifo::open_reader_nonblocking(&path).map(drop),
        fifo::open_writer_nonblocking(&path).map(drop),
        fifo::open_reader_timeout(&path, Duration::from_secs(1)).map(drop),
        fifo::open_writer_timeout(&path, Duration::from_secs(1)).map(drop),
        // Blocking opens check the path first, so they fail instead of waiting.
        fifo::open_reader(&path).map(drop),
        fifo::open_writer(&path).map(drop),
        Fifo::open(&path).map(drop),
    ] {
        match r {
            Err(Error::NotFound { what }) => assert!(what.contains("missing"), "{what}"),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
    // A missing directory on the way is NotFound too, for create as for open.
    let deeper = dir.join("no-such-dir/f");
    assert!(matches!(Fifo::create(&deeper), Err(Error::NotFound { .. })));
    assert!(matches!(Fifo::open(&deeper), Err(Error::NotFound { .. })));
}

#[test]
fn creating_over_an_existing_path_is_already_exists() {
    let dir = TempDir::new();
    let path = dir.join("taken");
    let owner = Fifo::create(&path).unwrap();
    assert!(matches!(Fifo::create(&path), Err(Error::AlreadyExists { .. })));
    drop(owner);

    std::fs::write(&path, b"a regular file").unwrap();
    assert!(matches!(Fifo::create(&path), Err(Error::AlreadyExists { .. })));
    // A failed create leaves what was there alone.
    assert_eq!(std::fs::read(&path).unwrap(), b"a regular file");
}

#[test]
fn a_path_that_is_not_a_fifo_is_wrong_type() {
    let dir = TempDir::new();
    let file = dir.join("regular");
    std::fs::write(&file, b"x").unwrap();
    for (path, found) in [(&file, "regular file"), (&dir.0, "directory")] {
        for r in [
            fifo::open_reader(path).map(drop),
            fifo::open_writer_nonblocking(path).map(drop),
            Fifo::open(path).map(drop),
            Fifo::create_or_open(path).map(drop),
        ] {
            match r {
                Err(Error::WrongType { expected: "FIFO", found: f, .. }) => assert_eq!(f, found),
                other => panic!("expected WrongType for {path:?}, got {other:?}"),
            }
        }
    }
}

#[test]
fn nonblocking_writer_without_reader_is_no_reader() {
    let dir = TempDir::new();
    let owner = Fifo::create(dir.join("lonely")).unwrap();
    match owner.open_writer_nonblocking() {
        Err(Error::NoReader { what }) => assert!(what.contains("lonely"), "{what}"),
        other => panic!("expected NoReader, got {other:?}"),
    }
    // With a reader present, the same open succeeds.
    let _r = owner.open_reader_nonblocking().unwrap();
    let w = owner.open_writer_nonblocking().unwrap();
    assert!(w.is_nonblocking().unwrap());
}

#[test]
fn default_mode_is_0600_and_a_given_mode_ignores_the_umask() {
    let dir = TempDir::new();
    let owner = Fifo::create(dir.join("default")).unwrap();
    let meta = std::fs::metadata(owner.path()).unwrap();
    assert!(meta.file_type().is_fifo());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);

    // 0o666 passes through a typical umask (022) only if the mode is set after mkfifo.
    let wide = Fifo::create_with_mode(dir.join("wide"), 0o666).unwrap();
    assert_eq!(std::fs::metadata(wide.path()).unwrap().permissions().mode() & 0o7777, 0o666);
    let narrow = Fifo::create_with_mode(dir.join("narrow"), 0o400).unwrap();
    assert_eq!(std::fs::metadata(narrow.path()).unwrap().permissions().mode() & 0o7777, 0o400);
}

#[test]
fn drop_unlinks_the_fifo_and_removes_the_owner_record() {
    let dir = TempDir::new();
    let owner = Fifo::create(dir.join("owned")).unwrap();
    let path = owner.path().to_path_buf();
    let entry = record_for(&path).expect("an owner record while the owner lives");
    assert!(entry.alive);
    assert_eq!(entry.record.pid, std::process::id());
    assert!(entry.path.exists());

    // An open end outlives the name.
    let mut r = owner.open_reader_nonblocking().unwrap();
    let mut w = owner.open_writer_nonblocking().unwrap();
    drop(owner);
    assert!(!path.exists(), "the FIFO is unlinked on drop");
    assert!(record_for(&path).is_none(), "the owner record is removed on drop");
    assert!(!entry.path.exists());
    w.write_all(b"still works").unwrap();
    let mut buf = [0u8; 11];
    r.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"still works");
}

#[test]
fn create_or_open_says_which_and_only_the_creator_owns() {
    let dir = TempDir::new();
    let path = dir.join("shared");
    let (creator, o) = Fifo::create_or_open(&path).unwrap();
    assert_eq!(o, Origin::Created);
    let (opener, o) = Fifo::create_or_open_with_mode(&path, 0o644).unwrap();
    assert_eq!(o, Origin::Opened);
    assert!(creator.is_owner() && !opener.is_owner());
    // Opening an existing FIFO does not change its mode.
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    drop(opener);
    assert!(path.exists());
    drop(creator);
    assert!(!path.exists());
}

#[test]
fn blocking_opens_wait_for_the_peer() {
    let dir = TempDir::new();
    let owner = Fifo::create(dir.join("rendezvous")).unwrap();

    // A blocking writer open cannot finish while there is no reader.
    let p = owner.path().to_path_buf();
    let writer = std::thread::spawn(move || fifo::open_writer(&p));
    std::thread::sleep(Duration::from_millis(50));
    assert!(!writer.is_finished(), "a blocking writer open returned with no reader");
    let mut r = owner.open_reader_nonblocking().unwrap();
    let mut w = writer.join().unwrap().unwrap();
    assert!(!w.is_nonblocking().unwrap());
    w.write_all(b"1").unwrap();
    let mut b = [0u8; 1];
    r.read_exact(&mut b).unwrap();
    drop((r, w));

    // A blocking reader open cannot finish while there is no writer.
    let p = owner.path().to_path_buf();
    let reader = std::thread::spawn(move || fifo::open_reader(&p));
    std::thread::sleep(Duration::from_millis(50));
    assert!(!reader.is_finished(), "a blocking reader open returned with no writer");
    // The reader waiting in open(2) already counts as a reader (fifo(7)).
    let _w = owner.open_writer_timeout(WATCHDOG).unwrap();
    let r = reader.join().unwrap().unwrap();
    assert!(!r.is_nonblocking().unwrap());
}

#[test]
fn typed_channel_to_a_child_that_opens_with_a_blocking_open() {
    let dir = TempDir::new();
    let owner = Fifo::create(dir.join("to-blocking-child")).unwrap();
    let (back_r, back_w) = pipe::pipe().unwrap();
    let child = support::spawn(
        "child_entry",
        "blocking_reader",
        owner.path().to_str().unwrap(),
        &[back_w.as_fd()],
    );
    drop(back_w);
    let mut back = back_r.into_receiver::<String>().unwrap();
    // The child's blocking open finishes when ours does; ours gives up at the watchdog.
    let mut tx = owner.open_writer_timeout(WATCHDOG).unwrap().into_sender::<String>().unwrap();
    for i in 0..100 {
        tx.send(format!("message {i}")).unwrap();
        assert_eq!(back.recv_timeout(WATCHDOG).unwrap(), format!("message {i}"));
    }
    drop(tx);
    child.wait_success();
    assert!(back.recv_timeout(WATCHDOG).unwrap_err().is_disconnected());
}

/// Spawns a child that creates and owns a FIFO at `path`; returns once it does.
fn spawn_owner(path: &Path) -> support::Child {
    let (ready_r, ready_w) = pipe::pipe().unwrap();
    let child =
        support::spawn("child_entry", "own_fifo", path.to_str().unwrap(), &[ready_w.as_fd()]);
    drop(ready_w);
    let mut ready = ready_r.into_receiver::<u32>().unwrap();
    let pid = ready.recv_timeout(WATCHDOG).unwrap();
    assert_eq!(pid, child.pid());
    child
}

#[test]
fn a_dead_owners_fifo_is_listed_dead_and_removed() {
    let dir = TempDir::new();
    let path = dir.join("orphan");
    let child = spawn_owner(&path);

    let entry = record_for(&path).expect("the child's owner record");
    assert!(entry.alive);
    assert_eq!(entry.record.pid, child.pid());
    // A live owner's FIFO is not removed.
    assert_eq!(names::remove_stale(&entry).unwrap(), Removal::OwnerAlive);
    assert!(path.exists());

    let st = child.kill_and_wait();
    assert!(support::was_killed(&st), "{st:?}");
    // SIGKILL runs no destructor: the FIFO and its record are left behind...
    assert!(std::fs::symlink_metadata(&path).unwrap().file_type().is_fifo());
    let entry = record_for(&path).expect("the dead owner's record is still there");
    // ...and the record says its owner is dead.
    assert!(!entry.alive);

    assert_eq!(names::remove_stale(&entry).unwrap(), Removal::Removed);
    assert!(std::fs::symlink_metadata(&path).is_err(), "the FIFO is removed");
    assert!(record_for(&path).is_none(), "the record is removed");
    assert!(!entry.path.exists());
    // A second clean finds nothing to do.
    assert_eq!(names::remove_stale(&entry).unwrap(), Removal::AlreadyGone);
}

#[test]
fn clean_leaves_a_file_that_replaced_a_dead_owners_fifo() {
    let dir = TempDir::new();
    let path = dir.join("reused");
    let child = spawn_owner(&path);
    child.kill_and_wait();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"someone else's file").unwrap();

    let entry = record_for(&path).expect("the dead owner's record");
    assert!(!entry.alive);
    assert_eq!(names::remove_stale(&entry).unwrap(), Removal::Replaced);
    assert_eq!(std::fs::read(&path).unwrap(), b"someone else's file");
    assert!(record_for(&path).is_none(), "the stale record is removed");
}

/// Regression: a `fork`ed child that drops its copy of the parent's `Fifo` must not
/// unlink the FIFO or remove the owner record: both belong to the parent.
#[test]
fn a_forked_child_dropping_its_copy_leaves_the_fifo_and_record() {
    let dir = TempDir::new();
    let path = dir.join("forked");
    let fifo = Fifo::create(&path).unwrap();
    assert!(record_for(&path).is_some());
    // SAFETY: the child only drops the copied owner and calls _exit; glibc's fork keeps
    // the allocator usable in the child of a multi-threaded parent.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            drop(fifo);
            // SAFETY: _exit ends the child at once, running nothing of the parent's.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            let deadline = std::time::Instant::now() + WATCHDOG;
            loop {
                match nix::sys::wait::waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                    Ok(nix::sys::wait::WaitStatus::StillAlive) => {
                        if std::time::Instant::now() > deadline {
                            let _ = nix::sys::signal::kill(child, nix::sys::signal::SIGKILL);
                            let _ = nix::sys::wait::waitpid(child, None);
                            panic!("watchdog: forked child did not exit");
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Ok(st) => {
                        assert_eq!(st, nix::sys::wait::WaitStatus::Exited(child, 0));
                        break;
                    }
                    Err(e) => panic!("waitpid: {e}"),
                }
            }
        }
    }
    assert!(path.exists(), "the child's drop unlinked the parent's FIFO");
    let rec = record_for(&path).expect("the child's drop removed the parent's owner record");
    assert!(rec.alive);
    drop(fifo);
    assert!(!path.exists());
    assert!(record_for(&path).is_none());
}

/// Regression: a create that fails after `mkfifo` (here: no fd left for the O_PATH
/// anchor) removes the FIFO it made.
#[test]
fn a_failed_create_leaves_no_fifo() {
    let dir = TempDir::new();
    let path = dir.join("no-fds");
    support::spawn("child_entry", "create_without_fds", path.to_str().unwrap(), &[]).wait_success();
}
