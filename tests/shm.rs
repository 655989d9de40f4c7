//! Shared-memory segments across real processes: POSIX named segments and memfds
//! (`interproc::sync::shm::Segment`, re-exported as `interproc::ipc::shm`).
//!
//! Every segment has a unique name (`interproc-shm-<pid>-<n>`) and is removed by its
//! owner's drop, so the tests run in parallel and leave nothing in `/dev/shm`.

mod support;

use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use interproc::ipc::names;
use interproc::ipc::shm::{Guarded, Key, SysvSegment};
use interproc::ipc::socket::{UnixAddr, UnixListener, UnixStream};
use interproc::ipc::Error;
use interproc::sync::shm::{Origin, Segment, SegmentOptions, ShmError, ShmSafe};

/// What the tests share: a counter and a word a child writes.
#[repr(C)]
struct Board {
    hits: AtomicU64,
    word: AtomicU32,
}

// SAFETY: `#[repr(C)]`, atomics only, no pointers, no Drop.
unsafe impl ShmSafe for Board {}

impl Board {
    fn new(word: u32) -> Board {
        Board { hits: AtomicU64::new(0), word: AtomicU32::new(word) }
    }
}

/// Same size and alignment as `Board`, another type.
#[repr(C)]
struct Impostor {
    a: AtomicU64,
    b: AtomicU32,
}

// SAFETY: as `Board`.
unsafe impl ShmSafe for Impostor {}

/// Where the creators racing for keys report which one they got, until released.
#[repr(C)]
struct Claims {
    keys: [AtomicU32; CLAIMERS],
    release: AtomicU32,
}

// SAFETY: `#[repr(C)]`, atomics only, no pointers, no Drop.
unsafe impl ShmSafe for Claims {}

/// Releases the claiming children and waits for them when dropped, also when the test
/// fails half-way: a child killed while it holds its segment would leave it in `ipcs`.
struct Release<'a> {
    board: &'a Segment<Claims>,
    children: Vec<support::Child>,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.board.release.store(1, Ordering::Release);
        for child in self.children.drain(..) {
            // The watchdog's panic must not abort a test that is already failing.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child.wait()));
        }
    }
}

/// How many creators race for as many keys in `concurrent_creators_get_distinct_keys`.
const CLAIMERS: usize = 7;

fn name() -> String {
    names::unique_name("shm")
}

fn path(name: &str) -> std::path::PathBuf {
    std::path::Path::new("/dev/shm").join(name)
}

#[test]
fn child_entry() {
    support::child_entry(|role, arg| match role {
        "open_and_hit" => {
            let seg = Segment::<Board>::open(arg).unwrap();
            assert_eq!(seg.word.load(Ordering::Acquire), 0xfeed);
            seg.hits.fetch_add(1, Ordering::AcqRel);
            seg.word.store(0xbeef, Ordering::Release);
            // An opener's drop leaves the name.
        }
        "create_or_open" => {
            let (seg, how) = Segment::create_or_open(arg, || Board::new(7)).unwrap();
            // Count what happened in the word (1 per create, 1 << 16 per open), then
            // arrive.
            let bit = if how == Origin::Created { 1 } else { 1 << 16 };
            seg.word.fetch_add(bit, Ordering::AcqRel);
            seg.hits.fetch_add(1, Ordering::AcqRel);
            // Wait for the other process in the same segment (and keep the creator from
            // unlinking before the other opened). Two creates would leave each alone.
            let deadline = Instant::now() + Duration::from_secs(20);
            while seg.hits.load(Ordering::Acquire) < 2 {
                assert!(Instant::now() < deadline, "the other process is not in this segment");
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(seg.word.load(Ordering::Acquire), 7 + 1 + (1 << 16), "one create, one open");
        }
        "from_fd" => {
            let fd = support::inherited_fds().pop().expect("the memfd");
            let seg = Segment::<Board>::from_fd(fd).unwrap();
            seg.hits.fetch_add(arg.parse().unwrap(), Ordering::AcqRel);
            // SAFETY: the parent made an extra area of at least 5 bytes and reads it only
            // after this child exited.
            unsafe { std::ptr::copy_nonoverlapping(b"hello".as_ptr(), seg.extra_ptr(), 5) };
        }
        "open_as_nobody" => {
            nix::unistd::setuid(nix::unistd::Uid::from_raw(65534)).unwrap();
            match Segment::<Board>::open(arg) {
                Err(ShmError::PermissionDenied { name }) => assert_eq!(name, arg),
                other => panic!("expected PermissionDenied, got {other:?}"),
            }
        }
        "memfd_over_scm_rights" => {
            let s = UnixStream::connect(&UnixAddr::path(arg).unwrap()).unwrap();
            let mut buf = [0u8; 16];
            let (n, mut fds) = s.recv_with_fds(&mut buf, 1).unwrap();
            assert_eq!((&buf[..n], fds.len()), (&b"segment"[..], 1));
            let seg = Segment::<Board>::from_fd(fds.remove(0)).unwrap();
            assert_eq!(seg.word.load(Ordering::Acquire), 0xfeed);
            assert!(!seg.is_owner());
            seg.hits.fetch_add(1, Ordering::AcqRel);
            seg.word.store(0xbeef, Ordering::Release);
            // The wrong type is refused for a received fd too.
            let (_, mut fds) = s.recv_with_fds(&mut buf, 1).unwrap();
            assert!(matches!(
                Segment::<Impostor>::from_fd(fds.remove(0)),
                Err(ShmError::Invalid { .. })
            ));
        }
        "sysv_open_and_hit" => {
            let seg = SysvSegment::<Board>::open(arg.parse().unwrap()).unwrap();
            assert_eq!(seg.word.load(Ordering::Acquire), 0xfeed);
            seg.hits.fetch_add(1, Ordering::AcqRel);
            // SAFETY: the parent made an extra area of 64 bytes and reads it only after
            // this child exited.
            unsafe { std::ptr::copy_nonoverlapping(b"sysv".as_ptr(), seg.extra_ptr(), 4) };
        }
        "sysv_own_and_hang" => {
            let seg = SysvSegment::create(arg.parse().unwrap(), Board::new(1)).unwrap();
            assert!(seg.is_owner());
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        "guarded_add" => {
            let g = Guarded::<Ledger>::open(arg).unwrap();
            for _ in 0..ROUNDS {
                let mut l = g.lock().unwrap();
                // Two plain fields, updated with a window between them: without the lock,
                // another process could see (or make) them disagree.
                let n = l.a;
                l.a = n + 1;
                std::hint::black_box(&mut *l);
                l.b += 1;
                assert_eq!(l.a, l.b, "the lock let another process in");
            }
        }
        "guarded_hold_then_hang" => {
            let g = Guarded::<Ledger>::open(arg).unwrap();
            let mut l = g.lock().unwrap();
            l.a = 1000; // a half-done update: b is not touched
            l.ready = 1;
            // Tell the parent the update is written (a file beside nothing shared: the
            // parent cannot look inside while this holds the lock).
            std::fs::write(format!("{}/{arg}.written", std::env::temp_dir().display()), b"")
                .unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        "guarded_wait_removed" => {
            let g = Guarded::<Ledger>::open(arg).unwrap();
            // The parent holds the lock, then drops the pair while this waits.
            let r = g.lock().map(drop);
            assert!(matches!(r, Err(Error::Removed { .. })), "expected Removed, got {r:?}");
        }
        "sysv_claim_first_free" => {
            // arg: "<slot> <key> <key> ...": claim the first free key, report it in the
            // claims board (fd 3), hold it until the parent releases everyone.
            let mut words = arg.split(' ');
            let slot: usize = words.next().unwrap().parse().unwrap();
            let keys: Vec<Key> = words.map(|k| k.parse().unwrap()).collect();
            let board = Segment::<Claims>::from_fd(support::inherited_fds().remove(0)).unwrap();
            let seg = SysvSegment::create_first_free(keys, Board::new(slot as u32)).unwrap();
            assert!(seg.is_owner());
            board.keys[slot].store(seg.key().as_raw() as u32, Ordering::Release);
            let deadline = Instant::now() + support::WATCHDOG;
            while board.release.load(Ordering::Acquire) == 0 {
                assert!(Instant::now() < deadline, "never released");
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(seg);
        }
        other => panic!("unknown role {other}"),
    });
}

const ROUNDS: u64 = 2000;

/// A record of plain (non-atomic) fields: only a lock keeps it consistent.
#[repr(C)]
struct Ledger {
    a: u64,
    b: u64,
    ready: u64,
}

// SAFETY: `#[repr(C)]`, plain integers, no pointers, no Drop; shared only inside a
// `Guarded`, whose lock serialises every access.
unsafe impl ShmSafe for Ledger {}

#[test]
fn a_child_process_opens_the_segment_by_name() {
    let name = name();
    let seg = Segment::create(&name, Board::new(0xfeed)).unwrap();
    assert!(seg.is_owner());
    assert_eq!(seg.name(), Some(name.as_str()));
    support::spawn("child_entry", "open_and_hit", &name, &[]).wait_success();
    assert_eq!(seg.hits.load(Ordering::Acquire), 1);
    assert_eq!(seg.word.load(Ordering::Acquire), 0xbeef);
    assert!(path(&name).exists(), "the opener's drop must not unlink the name");
    drop(seg);
    assert!(!path(&name).exists(), "the owner's drop unlinks the name");
}

#[test]
fn create_or_open_in_two_processes_creates_once() {
    let name = name();
    let a = support::spawn("child_entry", "create_or_open", &name, &[]);
    let b = support::spawn("child_entry", "create_or_open", &name, &[]);
    a.wait_success();
    b.wait_success();
    assert!(!path(&name).exists(), "the creator unlinked it on exit");
}

#[test]
fn create_or_open_reports_what_it_did() {
    let name = name();
    let mut calls = 0;
    let (owner, how) = Segment::create_or_open(&name, || {
        calls += 1;
        Board::new(1)
    })
    .unwrap();
    assert_eq!((how, calls), (Origin::Created, 1));
    assert!(owner.is_owner());
    let (opener, how) = Segment::<Board>::create_or_open(&name, || unreachable!()).unwrap();
    assert_eq!(how, Origin::Opened);
    assert!(!opener.is_owner());
    assert_eq!(opener.word.load(Ordering::Relaxed), 1);
}

#[test]
fn create_of_a_taken_name_is_already_exists_and_open_of_a_missing_one_not_found() {
    let name = name();
    assert!(matches!(Segment::<Board>::open(&name), Err(ShmError::NotFound { .. })));
    let seg = Segment::create(&name, Board::new(3)).unwrap();
    match Segment::create(&name, Board::new(4)) {
        Err(e @ ShmError::AlreadyExists { .. }) => assert!(e.to_string().contains(&name), "{e}"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    // The failed create did not touch the existing segment.
    assert_eq!(Segment::<Board>::open(&name).unwrap().word.load(Ordering::Relaxed), 3);
    drop(seg);
}

#[test]
fn opening_as_another_type_is_refused() {
    let name = name();
    let _seg = Segment::create(&name, Board::new(0)).unwrap();
    match Segment::<u64>::open(&name) {
        Err(ShmError::Invalid { what, .. }) => assert!(what.contains("size"), "{what}"),
        other => panic!("expected Invalid (size), got {other:?}"),
    }
    match Segment::<Impostor>::open(&name) {
        Err(ShmError::Invalid { what, .. }) => assert!(what.contains("type hash"), "{what}"),
        other => panic!("expected Invalid (type hash), got {other:?}"),
    }
}

#[test]
fn a_foreign_file_or_another_layout_version_is_refused() {
    let name = name();
    std::fs::write(path(&name), vec![0x5a; 4096]).unwrap();
    let r = Segment::<Board>::open(&name);
    std::fs::remove_file(path(&name)).unwrap();
    match r {
        Err(ShmError::Invalid { what, .. }) => assert!(what.contains("magic"), "{what}"),
        other => panic!("expected Invalid (magic), got {other:?}"),
    }

    let name = self::name();
    let _seg = Segment::create(&name, Board::new(0)).unwrap();
    // The version is the u32 at byte 8 of the header.
    let f = std::fs::OpenOptions::new().write(true).open(path(&name)).unwrap();
    f.write_all_at(&99u32.to_ne_bytes(), 8).unwrap();
    match Segment::<Board>::open(&name) {
        Err(ShmError::Invalid { what, .. }) => assert!(what.contains("version 99"), "{what}"),
        other => panic!("expected Invalid (version), got {other:?}"),
    }
}

#[test]
fn bad_names_are_refused() {
    for bad in ["", "a/b", "..", &"n".repeat(300)] {
        assert!(
            matches!(Segment::create(bad, Board::new(0)), Err(ShmError::NameInvalid { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn the_mode_is_0600_by_default_and_exact_when_asked() {
    let name = name();
    let seg = Segment::create(&name, Board::new(0)).unwrap();
    assert_eq!(std::fs::metadata(path(&name)).unwrap().mode() & 0o777, 0o600);
    drop(seg);
    // 0666 would lose its write bits to the usual umask 022; the mode is set exactly.
    let name = self::name();
    let _seg =
        Segment::create_with(&name, Board::new(0), &SegmentOptions::default().with_mode(0o666))
            .unwrap();
    assert_eq!(std::fs::metadata(path(&name)).unwrap().mode() & 0o777, 0o666);
}

#[test]
fn another_user_is_refused_by_the_default_mode() {
    if !nix::unistd::geteuid().is_root() {
        return; // Only root can run a child as another user; a user's own 0600 file opens.
    }
    let name = name();
    let _seg = Segment::create(&name, Board::new(0)).unwrap();
    support::spawn("child_entry", "open_as_nobody", &name, &[]).wait_success();
}

#[test]
fn more_than_dev_shm_holds_is_no_space_and_creates_nothing() {
    let st = nix::sys::statvfs::statvfs("/dev/shm").unwrap();
    let total = st.blocks() * st.fragment_size();
    let name = name();
    let opts = SegmentOptions::default().with_extra(total as usize * 2);
    match Segment::create_with(&name, Board::new(0), &opts) {
        Err(e @ ShmError::NoSpace { .. }) => {
            let ShmError::NoSpace { ref path, needed, free } = e else { unreachable!() };
            assert_eq!(path, "/dev/shm");
            assert!(needed > free, "{e}");
            assert!(e.to_string().contains("/dev/shm"), "{e}");
        }
        other => panic!("expected NoSpace, got {other:?}"),
    }
    assert!(!path(&name).exists());
    // An anonymous segment larger than all memory fails the same way.
    let opts = SegmentOptions::default().with_extra(usize::MAX / 4);
    assert!(matches!(Segment::anonymous_with(Board::new(0), &opts), Err(ShmError::NoSpace { .. })));
}

#[test]
fn an_anonymous_segment_is_shared_with_a_forked_child() {
    let seg = Segment::anonymous(Board::new(0)).unwrap();
    assert_eq!(seg.name(), None);
    // SAFETY: the child only does atomic operations on the mapping it inherited and then
    // `_exit`s: no allocation, no locks, safe after fork in a threaded process.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            seg.hits.fetch_add(41, Ordering::AcqRel);
            seg.word.store(0xc0de, Ordering::Release);
            // SAFETY: `_exit` ends the child at once, running no destructors.
            unsafe { libc::_exit(0) };
        }
        nix::unistd::ForkResult::Parent { child } => {
            assert_eq!(support::wait_forked(child), 0);
        }
    }
    assert_eq!(seg.hits.load(Ordering::Acquire), 41);
    assert_eq!(seg.word.load(Ordering::Acquire), 0xc0de);
}

#[test]
fn an_anonymous_segment_passed_as_an_fd_is_mapped_by_another_process() {
    let opts = SegmentOptions::default().with_extra(100);
    let seg = Segment::anonymous_with(Board::new(0), &opts).unwrap();
    assert_eq!(seg.extra_len(), 100);
    assert_eq!(seg.extra_ptr() as usize % 64, 0);
    support::spawn("child_entry", "from_fd", "5", &[seg.as_fd()]).wait_success();
    assert_eq!(seg.hits.load(Ordering::Acquire), 5);
    let mut got = [0u8; 5];
    // SAFETY: the extra area holds at least 5 bytes and the child that wrote them exited.
    unsafe { std::ptr::copy_nonoverlapping(seg.extra_ptr(), got.as_mut_ptr(), 5) };
    assert_eq!(&got, b"hello");
}

#[test]
fn a_forked_child_dropping_the_owner_leaves_the_name() {
    let name = name();
    let seg = Segment::create(&name, Board::new(0)).unwrap();
    // SAFETY: the child only runs Segment's drop (getpid, then munmap: its `is_owner` is
    // false, so it allocates nothing) and `_exit`s.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            drop(seg);
            // SAFETY: as above.
            unsafe { libc::_exit(0) };
        }
        nix::unistd::ForkResult::Parent { child } => assert_eq!(support::wait_forked(child), 0),
    }
    assert!(path(&name).exists(), "the child's drop unlinked its parent's segment");
    drop(seg);
    assert!(!path(&name).exists());
}

#[test]
fn the_owner_leaves_a_name_that_now_belongs_to_another_segment() {
    let name = name();
    let first = Segment::create(&name, Board::new(1)).unwrap();
    Segment::<Board>::unlink(&name).unwrap();
    let second = Segment::create(&name, Board::new(2)).unwrap();
    drop(first);
    assert_eq!(Segment::<Board>::open(&name).unwrap().word.load(Ordering::Relaxed), 2);
    drop(second);
    assert!(!path(&name).exists());
}

#[test]
fn disown_leaves_the_name_for_someone_else_to_remove() {
    let name = name();
    let mut seg = Segment::create(&name, Board::new(0)).unwrap();
    seg.disown();
    assert!(!seg.is_owner());
    drop(seg);
    assert!(path(&name).exists());
    Segment::<Board>::unlink(&name).unwrap();
    assert!(matches!(Segment::<Board>::unlink(&name), Err(ShmError::NotFound { .. })));
}

// ---- System V segments ----

/// Regression: `create_unique` checked that a key was free, then created it; a creator that
/// took the key in between made it fail with `AlreadyExists` instead of trying another
/// key. Here threads and processes race for exactly as many keys as there are of them,
/// all starting with the same key: every one must get a key of its own.
#[test]
fn concurrent_creators_get_distinct_keys() {
    const PROCESSES: usize = 3;
    // Keys of this test alone in interproc's key space, from the pid.
    let base = 0x40_0000 | ((std::process::id() & 0x3_ffff) << 3);
    let keys: Vec<Key> = (0..CLAIMERS as u32).map(|i| Key::interproc(base + i).unwrap()).collect();
    let board = Segment::anonymous(Claims {
        keys: std::array::from_fn(|_| AtomicU32::new(0)),
        release: AtomicU32::new(0),
    })
    .unwrap();
    let list: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    let mut children = Release {
        board: &board,
        children: (0..PROCESSES)
            .map(|slot| {
                let arg = format!("{slot} {}", list.join(" "));
                support::spawn("child_entry", "sysv_claim_first_free", &arg, &[board.as_fd()])
            })
            .collect(),
    };
    let threads: Vec<_> = (PROCESSES..CLAIMERS)
        .map(|slot| {
            let keys = keys.clone();
            std::thread::spawn(move || {
                SysvSegment::create_first_free(keys, Board::new(slot as u32)).unwrap()
            })
        })
        .collect();
    let held: Vec<SysvSegment<Board>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for (slot, seg) in (PROCESSES..).zip(&held) {
        assert!(seg.is_owner());
        board.keys[slot].store(seg.key().as_raw() as u32, Ordering::Release);
    }
    let deadline = Instant::now() + support::WATCHDOG;
    let got: Vec<u32> = loop {
        let got: Vec<u32> = board.keys.iter().map(|k| k.load(Ordering::Acquire)).collect();
        if got.iter().all(|&k| k != 0) {
            break got;
        }
        assert!(Instant::now() < deadline, "a creator never reported its key: {got:x?}");
        std::thread::sleep(Duration::from_millis(1));
    };
    let mut distinct = got.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), CLAIMERS, "two creators got the same key: {got:x?}");
    assert!(got.iter().all(|&k| keys.iter().any(|key| key.as_raw() as u32 == k)), "{got:x?}");
    // Every key is taken now: one more creator is told so, and creates nothing.
    match SysvSegment::create_first_free(keys.clone(), Board::new(0)) {
        Err(e @ Error::AlreadyExists { .. }) => assert!(e.to_string().contains("7 keys"), "{e}"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    board.release.store(1, Ordering::Release);
    for child in children.children.drain(..) {
        child.wait_success();
    }
    drop(held);
    for key in keys {
        assert!(matches!(SysvSegment::<Board>::open(key), Err(Error::NotFound { .. })));
    }
}

#[test]
fn a_child_process_opens_a_sysv_segment_by_key() {
    let seg = SysvSegment::create_unique_with(
        Board::new(0xfeed),
        &SegmentOptions::default().with_extra(64),
    )
    .unwrap();
    assert!(seg.is_owner());
    support::spawn("child_entry", "sysv_open_and_hit", &seg.key().to_string(), &[]).wait_success();
    assert_eq!(seg.hits.load(Ordering::Acquire), 1);
    let mut got = [0u8; 4];
    // SAFETY: the extra area holds 64 bytes; the child that wrote them exited.
    unsafe { std::ptr::copy_nonoverlapping(seg.extra_ptr(), got.as_mut_ptr(), 4) };
    assert_eq!(&got, b"sysv");
    let (key, id) = (seg.key(), seg.id());
    assert_eq!(seg.attached().unwrap(), 1, "the child detached");
    drop(seg);
    assert!(matches!(SysvSegment::<Board>::open(key), Err(Error::NotFound { .. })));
    assert!(matches!(SysvSegment::<Board>::open_id(id), Err(Error::NotFound { .. })));
}

#[test]
fn a_sysv_segment_opened_as_another_type_is_refused() {
    let seg = SysvSegment::create_unique(Board::new(0)).unwrap();
    match SysvSegment::<Impostor>::open(seg.key()) {
        Err(Error::Shm(ShmError::Invalid { what, .. })) => {
            assert!(what.contains("type hash"), "{what}")
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    match SysvSegment::<[u64; 100]>::open(seg.key()) {
        Err(Error::Shm(ShmError::Invalid { what, .. })) => assert!(what.contains("size"), "{what}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(matches!(
        SysvSegment::create(seg.key(), Board::new(0)),
        Err(Error::AlreadyExists { .. })
    ));
    let (opened, how) = SysvSegment::<Board>::create_or_open(seg.key(), || unreachable!()).unwrap();
    assert_eq!(how, Origin::Opened);
    assert!(!opened.is_owner());
}

#[test]
fn a_private_sysv_segment_is_shared_with_a_forked_child_and_outlives_its_drop() {
    let seg = SysvSegment::private(Board::new(0)).unwrap();
    let id = seg.id();
    // SAFETY: the child does atomic operations on the inherited attachment, drops its copy
    // (shmdt, getpid, a forget: no allocation) and `_exit`s.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            seg.hits.fetch_add(2, Ordering::AcqRel);
            drop(seg);
            // SAFETY: `_exit` ends the child at once.
            unsafe { libc::_exit(0) };
        }
        nix::unistd::ForkResult::Parent { child } => assert_eq!(support::wait_forked(child), 0),
    }
    assert_eq!(seg.hits.load(Ordering::Acquire), 2);
    assert_eq!(SysvSegment::<Board>::open_id(id).unwrap().hits.load(Ordering::Acquire), 2);
    drop(seg);
    assert!(matches!(SysvSegment::<Board>::open_id(id), Err(Error::NotFound { .. })));
}

#[test]
fn clean_removes_the_sysv_segment_of_an_owner_killed_with_sigkill() {
    let key = Key::interproc(0x40_0000 | (std::process::id() & 0x3f_ffff)).unwrap();
    let mut child = support::spawn("child_entry", "sysv_own_and_hang", &key.to_string(), &[]);
    let deadline = Instant::now() + support::WATCHDOG;
    let entry = loop {
        let found = names::list().unwrap().into_iter().find(|e| {
            e.record.kind == names::Kind::SysvShm && e.record.name == key.to_string() && e.alive
        });
        if let Some(e) = found {
            break e;
        }
        assert!(Instant::now() < deadline, "the child never created the segment");
        std::thread::sleep(Duration::from_millis(2));
    };
    child.kill();
    assert!(support::was_killed(&child.wait()));
    assert_eq!(names::remove_stale(&entry).unwrap(), names::Removal::Removed);
    assert!(matches!(SysvSegment::<Board>::open(key), Err(Error::NotFound { .. })));
}

// ---- semaphore-guarded segments ----

#[test]
fn guarded_updates_from_several_processes_are_never_interleaved() {
    let name = name();
    let g = Guarded::create(&name, Ledger { a: 0, b: 0, ready: 0 }).unwrap();
    let kids: Vec<_> =
        (0..3).map(|_| support::spawn("child_entry", "guarded_add", &name, &[])).collect();
    for k in kids {
        k.wait_success();
    }
    let l = g.lock().unwrap();
    assert_eq!((l.a, l.b), (3 * ROUNDS, 3 * ROUNDS));
}

#[test]
fn a_guarded_lock_holder_killed_with_sigkill_gives_the_lock_back() {
    let name = name();
    let g = Guarded::create(&name, Ledger { a: 0, b: 0, ready: 0 }).unwrap();
    let written = std::env::temp_dir().join(format!("{name}.written"));
    let child = support::spawn("child_entry", "guarded_hold_then_hang", &name, &[]);
    let deadline = Instant::now() + support::WATCHDOG;
    // The child holds the lock and has written its half-done update once the file exists.
    while !written.exists() {
        if let Some(l) = g.try_lock().unwrap() {
            assert_eq!(l.ready, 0, "the child set ready without holding the lock");
        }
        assert!(Instant::now() < deadline, "the child never took the lock");
        std::thread::sleep(Duration::from_millis(1));
    }
    std::fs::remove_file(&written).unwrap();
    assert_eq!(g.semaphore().last_pid().unwrap(), Some(child.pid()));
    assert!(matches!(g.lock_timeout(Duration::from_millis(5)), Err(Error::Timeout)));
    assert!(support::was_killed(&child.kill_and_wait()));
    let l = g.lock_timeout(support::WATCHDOG).expect("SEM_UNDO gave the lock back");
    // The dead holder's half-done update is visible: SEM_UNDO frees the lock, it cannot
    // repair the data.
    assert_eq!((l.a, l.b, l.ready), (1000, 0, 1));
}

#[test]
fn a_guarded_waiter_gets_removed_when_the_owner_drops_the_pair() {
    let name = name();
    let g = Guarded::create(&name, Ledger { a: 0, b: 0, ready: 0 }).unwrap();
    let held = g.lock().unwrap();
    let child = support::spawn("child_entry", "guarded_wait_removed", &name, &[]);
    let deadline = Instant::now() + support::WATCHDOG;
    while g.semaphore().waiting().unwrap() == 0 {
        assert!(Instant::now() < deadline, "the child never waited");
        std::thread::sleep(Duration::from_millis(1));
    }
    // Remove the pair while still holding the lock (posting first would let the child in).
    std::mem::forget(held);
    drop(g);
    child.wait_success();
    assert!(!path(&name).exists());
}

#[test]
fn an_anonymous_guarded_value_is_shared_with_a_forked_child() {
    let g = Guarded::anonymous(Ledger { a: 0, b: 0, ready: 0 }).unwrap();
    assert!(g.is_owner());
    // SAFETY: the child takes the semaphore (a semop), writes the inherited mapping, posts
    // and `_exit`s: no allocation, no locks of this process.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let code = match g.lock() {
                Ok(mut l) => {
                    l.a = 7;
                    l.b = 7;
                    0
                }
                Err(_) => 1,
            };
            // SAFETY: `_exit` ends the child at once, running no destructors.
            unsafe { libc::_exit(code) };
        }
        nix::unistd::ForkResult::Parent { child } => assert_eq!(support::wait_forked(child), 0),
    }
    let l = g.lock().unwrap();
    assert_eq!((l.a, l.b), (7, 7));
}

/// Regression: a failed `try_lock` built and dropped a guard, posting the semaphore, so
/// the next locker got in beside the holder.
#[test]
fn a_failed_try_lock_leaves_the_lock_held() {
    let g = Guarded::anonymous(Ledger { a: 0, b: 0, ready: 0 }).unwrap();
    let held = g.lock().unwrap();
    assert!(g.try_lock().unwrap().is_none());
    assert_eq!(g.semaphore().value().unwrap(), 0, "the failed try_lock posted the semaphore");
    assert!(g.try_lock().unwrap().is_none());
    drop(held);
    assert!(g.try_lock().unwrap().is_some());
}

#[test]
fn an_anonymous_segment_passed_over_scm_rights_is_mapped_by_another_process() {
    let dir = support::TempDir::new();
    let path = dir.join("segment.sock");
    let listener = UnixListener::bind(&UnixAddr::path(&path).unwrap()).unwrap();
    let child = support::spawn("child_entry", "memfd_over_scm_rights", path.to_str().unwrap(), &[]);
    let conn = listener.accept_timeout(support::WATCHDOG).unwrap();
    // Made after the child started: it can only get the segment through the socket.
    let seg = Segment::anonymous(Board::new(0xfeed)).unwrap();
    conn.send_with_fds(b"segment", &[seg.as_fd()]).unwrap();
    conn.send_with_fds(b"again", &[seg.as_fd()]).unwrap();
    child.wait_success();
    assert_eq!(seg.hits.load(Ordering::Acquire), 1);
    assert_eq!(seg.word.load(Ordering::Acquire), 0xbeef);
}

/// A segment whose creator died after naming it but before initialising it (possible only
/// on the fallback path without `O_TMPFILE`): `open` waits for the flag, then refuses it
/// instead of handing out a half-built value.
#[test]
fn a_never_initialised_segment_is_refused_after_a_bounded_wait() {
    let name = name();
    std::fs::write(path(&name), vec![0u8; 4096]).unwrap();
    let r = Segment::<Board>::open(&name);
    std::fs::remove_file(path(&name)).unwrap();
    match r {
        Err(ShmError::Invalid { what, .. }) => {
            assert!(what.contains("never initialised"), "{what}")
        }
        other => panic!("expected Invalid (never initialised), got {other:?}"),
    }
}

// Regression tests from the review of the segments (each failed before its fix).

/// The guard's semaphore is exposed read-only: safe code cannot post it and so take the
/// lock twice (two live `&mut T`).
#[test]
fn the_guards_semaphore_is_read_only() {
    let g = Guarded::anonymous(Ledger { a: 0, b: 0, ready: 0 }).unwrap();
    let held = g.lock().unwrap();
    assert_eq!(g.semaphore().value().unwrap(), 0);
    assert!(g.try_lock().unwrap().is_none(), "two guards alive at once");
    drop(held);
    assert_eq!(g.semaphore().value().unwrap(), 1);
}

/// A guard copied into a fork child does not post the parent's semaphore when the child
/// drops it.
#[test]
fn a_guard_dropped_in_a_fork_child_keeps_the_parents_lock() {
    let g = Guarded::anonymous(Ledger { a: 0, b: 0, ready: 0 }).unwrap();
    let held = g.lock().unwrap();
    // SAFETY: the child drops the guard (a getpid), tries a semop and `_exit`s.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            drop(held);
            let code = match g.try_lock() {
                Ok(Some(l)) => {
                    std::mem::forget(l);
                    1
                }
                _ => 0,
            };
            // SAFETY: ends the child without the parent's handlers.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            assert_eq!(
                support::wait_forked(child),
                0,
                "another locker got in while the parent held it"
            )
        }
    }
    drop(held);
}

/// An opener's `disown` leaves the owner recorded in the header (only the owner can give
/// up ownership), so `interproc clean` still removes the segment once the owner dies.
#[test]
fn an_openers_disown_keeps_the_owner_record() {
    let name = name();
    let owner = Segment::create(&name, 0u64).unwrap();
    Segment::<u64>::open(&name).unwrap().disown();
    let listed = interproc::ipc::shm::list_named().unwrap().into_iter().find(|s| s.name == name);
    drop(owner);
    let listed = listed.expect("listed");
    assert_eq!(listed.owner.map(|o| o.id), Some(std::process::id()), "{listed:?}");
}

/// A System V segment too large to commit is reported with the right limit, not with a
/// shmmax that the request did not exceed.
#[test]
fn an_oversized_sysv_segment_names_the_limit_it_hit() {
    match SysvSegment::private_with(0u64, &SegmentOptions::default().with_extra(1 << 50)) {
        Err(e @ Error::LimitExceeded { value, .. }) => {
            assert!(value < 1 << 50, "misleading: {e}");
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("bytes"), "{msg}");
        }
        Ok(_) => panic!("a 1 PiB segment was created"),
    }
}
