//! System V message queues: the transport conformance suite across real processes, plus
//! what only queues do (keys, receive by type, kernel limits, peer watches, removal).
//!
//! Every queue here comes from `MessageQueue::create_unique` (a fresh key in interproc's
//! key space) or is private, and is removed by its owner's drop, so tests run in
//! parallel and leave nothing in `ipcs -q`.

mod support;

use std::os::fd::OwnedFd;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use interproc::ipc::channel::{
    BytesReceiver, BytesSender, FrameSink, FrameSource, Receiver, Sender,
};
use interproc::ipc::msgq::{
    self, Key, MessageQueue, MsgqSink, MsgqSource, Outcome, PeerWatch, Select,
};
use interproc::ipc::{names, Error};
use serde::{Deserialize, Serialize};
use support::conformance::{Setup, Transport};

// ---- the conformance suite ----

/// The parent creates a queue under a unique key and passes the key to the child, which
/// opens it. Each side watches the other's pid, so a death is `Disconnected`.
struct Msgq;

fn kernel_msgmax() -> usize {
    std::fs::read_to_string("/proc/sys/kernel/msgmax").unwrap().trim().parse().unwrap()
}

fn kernel_msgmnb() -> usize {
    std::fs::read_to_string("/proc/sys/kernel/msgmnb").unwrap().trim().parse().unwrap()
}

impl Transport for Msgq {
    const NAME: &'static str = "msgq";
    // Read at compile time it cannot be; 8192 is the Linux default and this machine's
    // value. `msgmax_matches_the_suite` checks the assumption.
    const MAX_MESSAGE: usize = 8192;

    fn to_parent() -> Setup<BytesReceiver> {
        let q = MessageQueue::create_unique().unwrap();
        Setup {
            fds: vec![],
            arg: q.key().to_string(),
            finish: Box::new(move |pid| {
                let src = MsgqSource::new(q, Select::Any)
                    .unwrap()
                    .with_peer_watch(PeerWatch::new(pid).unwrap());
                BytesReceiver::new(Box::new(src))
            }),
        }
    }

    fn to_child() -> Setup<BytesSender> {
        let q = MessageQueue::create_unique().unwrap();
        Setup {
            fds: vec![],
            arg: q.key().to_string(),
            finish: Box::new(move |pid| {
                let sink =
                    MsgqSink::new(q, 1).unwrap().with_peer_watch(PeerWatch::new(pid).unwrap());
                BytesSender::new(Box::new(sink))
            }),
        }
    }

    fn child_sender(_: Vec<OwnedFd>, arg: &str) -> BytesSender {
        let q = MessageQueue::open(arg.parse().unwrap()).unwrap();
        let sink = MsgqSink::new(q, 1).unwrap().with_peer_watch(PeerWatch::parent().unwrap());
        BytesSender::new(Box::new(sink))
    }

    fn child_receiver(_: Vec<OwnedFd>, arg: &str) -> BytesReceiver {
        let q = MessageQueue::open(arg.parse().unwrap()).unwrap();
        let src =
            MsgqSource::new(q, Select::Any).unwrap().with_peer_watch(PeerWatch::parent().unwrap());
        BytesReceiver::new(Box::new(src))
    }
}

conformance!(conformance, Msgq);

#[test]
fn msgmax_matches_the_suite() {
    assert!(kernel_msgmax() >= Msgq::MAX_MESSAGE, "the suite assumes kernel.msgmax >= 8192");
}

#[test]
fn child_entry() {
    support::child_entry(|role, arg| {
        if support::conformance::child_dispatch::<Msgq>(role, arg) {
            return;
        }
        match role {
            "squares" => child_squares(arg),
            "ready_then_die" => child_ready_then_die(arg),
            "own_and_wait" => child_own_and_wait(arg),
            "open_as_nobody" => child_open_as_nobody(arg),
            other => panic!("unknown role {other}"),
        }
    });
}

/// Runs `f` on a thread and waits for it under the watchdog: a hang fails the test
/// instead of stalling the suite.
fn within_watchdog<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(support::WATCHDOG).expect("watchdog: the operation hung")
}

// ---- create, open, remove ----

#[test]
fn open_of_a_missing_key_is_not_found() {
    let q = MessageQueue::create_unique().unwrap();
    let key = q.key();
    q.remove().unwrap();
    match MessageQueue::open(key) {
        Err(Error::NotFound { what }) => assert!(what.contains(&key.to_string()), "{what}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[test]
fn open_of_the_private_key_is_not_found_and_creates_nothing() {
    assert!(matches!(MessageQueue::open(Key::PRIVATE), Err(Error::NotFound { .. })));
}

#[test]
fn create_of_an_existing_key_is_already_exists() {
    let q = MessageQueue::create_unique().unwrap();
    match MessageQueue::create(q.key()) {
        Err(Error::AlreadyExists { what }) => assert!(what.contains(&q.key().to_string())),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    // The failed create did not disturb the existing queue.
    q.try_send(1, b"still here").unwrap();
    assert_eq!(q.try_recv_vec(Select::Any).unwrap(), (1, b"still here".to_vec()));
}

#[test]
fn create_or_open_says_which_happened() {
    let first = MessageQueue::create_unique().unwrap();
    let key = first.key();
    first.remove().unwrap();

    let (owner, how) = MessageQueue::create_or_open(key).unwrap();
    assert_eq!(how, Outcome::Created);
    assert!(owner.is_owner());
    let (opener, how) = MessageQueue::create_or_open(key).unwrap();
    assert_eq!(how, Outcome::Opened);
    assert!(!opener.is_owner());
    assert_eq!(opener.id(), owner.id());
}

#[test]
fn owner_drop_removes_the_queue_and_its_record() {
    let q = MessageQueue::create_unique().unwrap();
    let (key, id) = (q.key(), q.id());
    let recorded = |key: Key| {
        names::list()
            .unwrap()
            .into_iter()
            .any(|e| e.record.kind == names::Kind::MsgQueue && e.record.name == key.to_string())
    };
    assert!(recorded(key), "the owner record names the queue");
    drop(q);
    assert!(matches!(MessageQueue::open(key), Err(Error::NotFound { .. })));
    assert!(matches!(MessageQueue::open_id(id), Err(Error::NotFound { .. })));
    assert!(!recorded(key), "the owner record went with the queue");
}

#[test]
fn opener_drop_leaves_the_queue() {
    let owner = MessageQueue::create_unique().unwrap();
    let opener = MessageQueue::open(owner.key()).unwrap();
    opener.send(5, b"x").unwrap();
    drop(opener);
    assert_eq!(owner.stat().unwrap().messages, 1);
    assert_eq!(MessageQueue::open(owner.key()).unwrap().id(), owner.id());
}

#[test]
fn default_mode_is_0600_and_create_with_mode_sets_it() {
    let q = MessageQueue::create_unique().unwrap();
    assert_eq!(q.stat().unwrap().mode, 0o600);
    let q = MessageQueue::create_unique_with_mode(0o640).unwrap();
    assert_eq!(q.stat().unwrap().mode, 0o640);
    let p = MessageQueue::private().unwrap();
    assert_eq!(p.stat().unwrap().mode, 0o600);
}

#[test]
fn private_queue_is_shared_by_id() {
    let p = MessageQueue::private().unwrap();
    assert!(p.key().is_private());
    let other = MessageQueue::open_id(p.id()).unwrap();
    assert!(!other.is_owner());
    other.send(9, b"by id").unwrap();
    assert_eq!(p.recv_vec(Select::Exact(9)).unwrap(), (9, b"by id".to_vec()));
    let id = p.id();
    drop(p);
    assert!(matches!(MessageQueue::open_id(id), Err(Error::NotFound { .. })));
}

#[test]
fn remove_by_key_removes_a_dead_owners_queue() {
    // A free key: make a queue and remove it again.
    let probe = MessageQueue::create_unique().unwrap();
    let key = probe.key();
    probe.remove().unwrap();

    // The child creates the queue under that key, says so, and is then SIGKILLed: its
    // drop never runs, so the queue and its owner record stay, owned by a dead process.
    let child = support::spawn("child_entry", "own_and_wait", &key.to_string(), &[]);
    let q = within_watchdog(move || loop {
        match MessageQueue::open(key) {
            Ok(q) => break q,
            Err(Error::NotFound { .. }) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => panic!("open: {e}"),
        }
    });
    let watch = PeerWatch::new(child.pid()).unwrap();
    assert_eq!(q.recv_vec_deadline(Select::Any, None, Some(&watch)).unwrap().1, b"created");
    let st = child.kill_and_wait();
    assert!(support::was_killed(&st), "{st:?}");

    let entry = names::list()
        .unwrap()
        .into_iter()
        .find(|e| e.record.kind == names::Kind::MsgQueue && e.record.name == key.to_string())
        .expect("the dead owner's record is still there");
    assert!(!entry.alive, "the owner is dead");
    let parsed: Key = entry.record.name.parse().unwrap();
    assert_eq!(parsed, key);

    msgq::remove_by_key(parsed).unwrap();
    std::fs::remove_file(&entry.path).unwrap();
    assert!(matches!(MessageQueue::open(key), Err(Error::NotFound { .. })));
    assert!(matches!(q.try_recv_vec(Select::Any), Err(Error::Disconnected)));
    assert!(matches!(msgq::remove_by_key(key), Err(Error::NotFound { .. })));
}

fn child_own_and_wait(arg: &str) {
    let q = MessageQueue::create(arg.parse().unwrap()).unwrap();
    q.send(1, b"created").unwrap();
    // Wait to be killed (the parent's watchdog kills us if the parent fails first).
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn a_forked_child_dropping_the_owner_leaves_the_queue() {
    let q = MessageQueue::private().unwrap();
    let id = q.id();
    // SAFETY: the child only runs MessageQueue's drop (a getpid and a forget, no
    // allocation or locks) and then `_exit`s, all safe after fork in a threaded process.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            drop(q);
            // SAFETY: `_exit` ends the child at once, without running the parent's atexit
            // handlers or destructors.
            unsafe { libc::_exit(0) };
        }
        nix::unistd::ForkResult::Parent { child } => {
            assert_eq!(support::wait_forked(child), 0, "the forked child failed");
        }
    }
    assert_eq!(MessageQueue::open_id(id).unwrap().id(), id, "the child's drop removed it");
    drop(q);
    assert!(matches!(MessageQueue::open_id(id), Err(Error::NotFound { .. })));
}

#[test]
fn open_without_permission_is_permission_denied() {
    if nix::unistd::geteuid().is_root() {
        // Root bypasses IPC permission checks: ask a child running as nobody.
        let q = MessageQueue::create_unique().unwrap();
        support::spawn("child_entry", "open_as_nobody", &q.key().to_string(), &[]).wait_success();
    } else {
        // Without CAP_IPC_OWNER even the creator is held to the mode bits.
        let q = MessageQueue::create_unique_with_mode(0o000).unwrap();
        assert!(matches!(MessageQueue::open(q.key()), Err(Error::PermissionDenied { .. })));
    }
}

fn child_open_as_nobody(arg: &str) {
    nix::unistd::setuid(nix::unistd::Uid::from_raw(65534)).unwrap();
    match MessageQueue::open(arg.parse().unwrap()) {
        Err(Error::PermissionDenied { what }) => assert!(what.contains(arg), "{what}"),
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
}

#[test]
fn list_interproc_shows_keyed_queues_only() {
    let q = MessageQueue::create_unique().unwrap();
    q.send(1, b"four").unwrap();
    let p = MessageQueue::private().unwrap();
    let all = msgq::list_interproc().unwrap();
    let e = all.iter().find(|e| e.key == q.key()).expect("the keyed queue is listed");
    assert_eq!((e.id, e.messages, e.bytes), (q.id(), 1, 4));
    assert!(all.iter().all(|e| e.key.is_interproc()));
    assert!(!all.iter().any(|e| e.id == p.id()), "a private queue has no interproc key");
}

// ---- keys ----

#[test]
fn interproc_keys_have_the_prefix_and_round_trip() {
    let k = Key::interproc(0x12_3456).unwrap();
    assert_eq!(k.as_raw() as u32, 0x4912_3456);
    assert!(k.is_interproc());
    assert_eq!(k.to_string(), "0x49123456");
    assert_eq!(format!("{k:#x}"), "0x49123456");
    assert_eq!(format!("{k:?}"), "Key(0x49123456)");
    assert_eq!("0x49123456".parse::<Key>().unwrap(), k);
    assert!(Key::interproc(Key::INTERPROC_MAX + 1).is_none());
    assert!(!Key::from_raw(0x1234).is_interproc());
    assert!("49123456".parse::<Key>().is_err());
    assert!("0xzz".parse::<Key>().is_err());
    let q = MessageQueue::create_unique().unwrap();
    assert!(q.key().is_interproc());
}

#[test]
fn ftok_keys_follow_the_path() {
    let dir = support::TempDir::new();
    let path = dir.join("anchor");
    std::fs::write(&path, b"").unwrap();
    let a = Key::from_path(&path, b'x').unwrap();
    assert_eq!(a, Key::from_path(&path, b'x').unwrap(), "ftok is a pure function of path+proj");
    assert_ne!(a, Key::from_path(&path, b'y').unwrap());
    assert_eq!(a.as_raw() as u32 >> 24, u32::from(b'x'), "ftok puts proj in the high byte");
    assert!(matches!(Key::from_path(dir.join("missing"), b'x'), Err(Error::NotFound { .. })));
    assert!(Key::from_path(&path, 0).is_err());
}

// ---- sending and receiving ----

#[test]
fn receive_by_exact_type_and_by_at_most_n_out_of_fifo_order() {
    let q = MessageQueue::private().unwrap();
    for (t, m) in [(5, "five"), (3, "three-a"), (7, "seven"), (1, "one"), (3, "three-b")] {
        q.send(t, m.as_bytes()).unwrap();
    }
    let mut buf = [0u8; 32];
    let mut take = |sel| {
        let (t, n) = q.try_recv(sel, &mut buf).unwrap();
        (t, String::from_utf8(buf[..n].to_vec()).unwrap())
    };
    // Exact: the first of that type, skipping older messages of other types.
    assert_eq!(take(Select::Exact(3)), (3, "three-a".into()));
    assert_eq!(take(Select::Exact(7)), (7, "seven".into()));
    // At most n: the lowest type <= n, not the oldest.
    assert_eq!(take(Select::AtMost(6)), (1, "one".into()));
    assert_eq!(take(Select::AtMost(6)), (3, "three-b".into()));
    // Except: the first whose type differs.
    q.send(2, b"two").unwrap();
    assert_eq!(take(Select::Except(5)), (2, "two".into()));
    assert_eq!(take(Select::Any), (5, "five".into()));
    assert!(matches!(q.try_recv(Select::Any, &mut buf), Err(Error::Empty)));
}

#[test]
fn at_most_n_leaves_higher_types() {
    let q = MessageQueue::private().unwrap();
    q.send(10, b"ten").unwrap();
    assert!(matches!(q.try_recv_vec(Select::AtMost(9)), Err(Error::Empty)));
    assert!(matches!(q.try_recv_vec(Select::Exact(11)), Err(Error::Empty)));
    assert_eq!(q.try_recv_vec(Select::AtMost(10)).unwrap(), (10, b"ten".to_vec()));
}

#[test]
fn message_types_must_be_positive() {
    let q = MessageQueue::private().unwrap();
    for t in [0, -1, i64::MIN] {
        match q.send(t, b"x") {
            Err(Error::InvalidMessageType { mtype }) => assert_eq!(mtype, t),
            other => panic!("send type {t}: expected InvalidMessageType, got {other:?}"),
        }
    }
    for sel in [Select::Exact(0), Select::AtMost(0), Select::AtMost(-4), Select::Except(-1)] {
        assert!(
            matches!(q.try_recv_vec(sel), Err(Error::InvalidMessageType { .. })),
            "{sel:?} must be refused"
        );
    }
    assert!(matches!(
        MsgqSink::new(MessageQueue::private().unwrap(), 0),
        Err(Error::InvalidMessageType { mtype: 0 })
    ));
    assert_eq!(q.stat().unwrap().messages, 0, "nothing was sent");
}

#[test]
fn try_recv_on_an_empty_queue_is_empty() {
    let q = MessageQueue::private().unwrap();
    let mut buf = [0u8; 8];
    assert!(matches!(q.try_recv(Select::Any, &mut buf), Err(Error::Empty)));
    assert!(matches!(q.try_recv_vec(Select::Exact(3)), Err(Error::Empty)));
    let mut rx = msgq::receiver::<u32>(q, Select::Any).unwrap();
    assert!(matches!(rx.try_recv(), Err(Error::Empty)));
}

#[test]
fn recv_timeout_on_an_empty_queue_times_out() {
    let q = MessageQueue::private().unwrap();
    let mut buf = [0u8; 8];
    let start = Instant::now();
    let wait = Duration::from_millis(30);
    assert!(matches!(q.recv_timeout(Select::Any, &mut buf, wait), Err(Error::Timeout)));
    assert!(start.elapsed() >= wait, "gave up before the deadline");
    assert!(matches!(q.recv_vec_timeout(Select::Any, wait), Err(Error::Timeout)));
}

#[test]
fn recv_timeout_returns_a_message_that_arrives_in_time() {
    let q = Arc::new(MessageQueue::private().unwrap());
    let q2 = q.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        q2.send(4, b"late").unwrap();
    });
    let got = q.recv_vec_timeout(Select::Exact(4), support::WATCHDOG).unwrap();
    assert_eq!(got, (4, b"late".to_vec()));
    t.join().unwrap();
}

#[test]
fn try_send_on_a_full_queue_is_full() {
    let q = MessageQueue::private().unwrap();
    let msgmax = kernel_msgmax();
    let big = vec![0xa5; msgmax];
    let mut sent = 0;
    loop {
        match q.try_send(1, &big) {
            Ok(()) => sent += 1,
            Err(Error::Full) => break,
            Err(e) => panic!("expected Full, got {e}"),
        }
        assert!(sent * msgmax <= kernel_msgmnb(), "the queue took more than msgmnb bytes");
    }
    assert_eq!(sent, kernel_msgmnb() / msgmax);
    let st = q.stat().unwrap();
    assert_eq!((st.messages, st.bytes), (sent as u64, (sent * msgmax) as u64));
    assert!(matches!(q.send_timeout(1, &big, Duration::from_millis(20)), Err(Error::Timeout)));
    // A receive makes room again.
    q.try_recv_vec(Select::Any).unwrap();
    q.try_send(1, &big).unwrap();
}

/// Whether this process may raise a queue above kernel.msgmnb (even root may not,
/// in a container that drops the capability).
fn has_cap_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap().trim();
    const CAP_SYS_RESOURCE: u32 = 24; // linux/capability.h
    u64::from_str_radix(eff, 16).unwrap() & (1 << CAP_SYS_RESOURCE) != 0
}

#[test]
fn set_capacity_changes_how_much_the_queue_holds() {
    let q = MessageQueue::private().unwrap();
    let msgmax = kernel_msgmax();
    let msg = vec![1u8; msgmax];
    q.set_capacity(msgmax).unwrap();
    assert_eq!(q.stat().unwrap().capacity, msgmax as u64);
    q.try_send(1, &msg).unwrap();
    assert!(matches!(q.try_send(1, &msg), Err(Error::Full)), "one message fills it now");
    // A message larger than the whole queue could never be sent: refused, not a hang.
    q.set_capacity(100).unwrap();
    match q.send(1, &[0; 101]) {
        Err(Error::LimitExceeded { limit: "kernel.msgmnb", value: 100, .. }) => {}
        other => panic!("expected LimitExceeded for a message over the capacity, got {other:?}"),
    }
    q.set_capacity(msgmax).unwrap();
    assert_eq!(q.stat().unwrap().messages, 1, "the queued message stays through resizes");
    let bigger = 4 * kernel_msgmnb();
    match q.set_capacity(bigger) {
        Ok(()) => {
            // With CAP_SYS_RESOURCE, above kernel.msgmnb is allowed.
            assert!(has_cap_sys_resource());
            assert_eq!(q.stat().unwrap().capacity, bigger as u64);
            let more = (bigger / msgmax) - 1;
            for _ in 0..more {
                q.try_send(1, &msg).unwrap();
            }
            assert!(matches!(q.try_send(1, &msg), Err(Error::Full)));
        }
        Err(Error::LimitExceeded { limit, .. }) => {
            assert!(!has_cap_sys_resource());
            assert_eq!(limit, "kernel.msgmnb");
        }
        Err(e) => panic!("set_capacity: {e}"),
    }
}

#[test]
fn a_message_over_msgmax_names_the_limit_and_sends_nothing() {
    let q = MessageQueue::private().unwrap();
    let msgmax = kernel_msgmax();
    assert_eq!(q.max_message(), msgmax);
    let e = q.send(1, &vec![0; msgmax + 1]).unwrap_err();
    match &e {
        Error::LimitExceeded { what, limit, value, hint } => {
            assert_eq!(*limit, "kernel.msgmax");
            assert_eq!(*value, msgmax as u64);
            assert!(what.contains(&(msgmax + 1).to_string()), "{what}");
            assert!(hint.contains("sysctl -w kernel.msgmax="), "{hint}");
        }
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
    let text = e.to_string();
    assert!(text.contains("kernel.msgmax") && text.contains(&msgmax.to_string()), "{text}");
    assert_eq!(q.stat().unwrap().messages, 0, "nothing was sent");
    // Exactly msgmax goes through.
    q.send(1, &vec![7; msgmax]).unwrap();
    assert_eq!(q.recv_vec(Select::Any).unwrap().1.len(), msgmax);
}

#[test]
fn channel_max_frame_is_clamped_to_msgmax() {
    let q = Arc::new(MessageQueue::private().unwrap());
    let msgmax = kernel_msgmax();
    let mut tx = msgq::bytes_sender(q.clone(), 1).unwrap().with_max_frame(1 << 20);
    assert_eq!(FrameSink::max_frame(tx.get_ref()), msgmax);
    match tx.send(&vec![0; msgmax + 1]) {
        Err(Error::LimitExceeded { limit: "kernel.msgmax", value, .. }) => {
            assert_eq!(value, msgmax as u64)
        }
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
    let mut tx = msgq::bytes_sender(q.clone(), 1).unwrap().with_max_frame(100);
    assert!(matches!(tx.send(&[0; 101]), Err(Error::MessageTooLarge { size: 101, max: 100 })));
    assert_eq!(q.stat().unwrap().messages, 0);
    assert!(tx.fd().is_none(), "System V queues have no fd");
}

#[test]
fn a_message_larger_than_the_buffer_is_left_queued_not_truncated() {
    let q = MessageQueue::private().unwrap();
    q.send(2, b"0123456789").unwrap();
    let mut small = [0u8; 4];
    assert!(matches!(
        q.recv(Select::Any, &mut small),
        Err(Error::ReceiveBufferTooSmall { capacity: 4 })
    ));
    assert!(matches!(
        q.try_recv(Select::Any, &mut small),
        Err(Error::ReceiveBufferTooSmall { .. })
    ));
    let mut buf = [0u8; 10];
    assert_eq!(q.recv(Select::Any, &mut buf).unwrap(), (2, 10));
    assert_eq!(&buf, b"0123456789");
}

#[test]
fn a_frame_over_the_sources_maximum_is_malformed_and_stays_queued() {
    let q = Arc::new(MessageQueue::private().unwrap());
    q.send(1, &[1; 50]).unwrap();
    let mut rx = msgq::bytes_receiver(q.clone(), Select::Any).unwrap().with_max_frame(10);
    assert!(matches!(rx.try_recv(), Err(Error::Malformed { .. })));
    assert_eq!(q.stat().unwrap().messages, 1, "the message was not dropped");
    let mut rx = msgq::bytes_receiver(q, Select::Any).unwrap();
    assert_eq!(rx.try_recv().unwrap(), vec![1; 50]);
}

#[test]
fn empty_messages_are_messages() {
    let (mut tx, mut rx) = msgq::channel::<()>().unwrap();
    tx.send(()).unwrap();
    tx.send(()).unwrap();
    rx.recv().unwrap();
    rx.try_recv().unwrap();
    assert!(matches!(rx.try_recv(), Err(Error::Empty)));
}

#[test]
fn limits_match_the_sysctls_and_stat_names_the_sender() {
    let l = msgq::limits().unwrap();
    assert_eq!(l.msgmax, kernel_msgmax());
    assert_eq!(l.msgmnb, kernel_msgmnb());
    let msgmni: usize =
        std::fs::read_to_string("/proc/sys/kernel/msgmni").unwrap().trim().parse().unwrap();
    assert_eq!(l.msgmni, msgmni);

    let q = MessageQueue::private().unwrap();
    let st = q.stat().unwrap();
    assert_eq!((st.messages, st.bytes, st.last_send_pid, st.last_send), (0, 0, None, None));
    assert_eq!(st.capacity, l.msgmnb as u64);
    q.send(3, b"abc").unwrap();
    q.send(3, b"de").unwrap();
    let st = q.stat().unwrap();
    assert_eq!((st.messages, st.bytes), (2, 5));
    assert_eq!(st.last_send_pid, Some(std::process::id()));
    assert!(st.last_send.is_some());
    assert_eq!(st.last_recv_pid, None);
    q.recv_vec(Select::Any).unwrap();
    assert_eq!(q.stat().unwrap().last_recv_pid, Some(std::process::id()));
}

// ---- disconnects ----

#[test]
fn queue_removed_under_a_blocked_receiver_is_disconnected() {
    let owner = MessageQueue::create_unique().unwrap();
    let opener = MessageQueue::open(owner.key()).unwrap();
    let (tid_tx, tid_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        tid_tx.send(unsafe { libc::gettid() }).unwrap();
        let mut buf = [0u8; 16];
        let _ = done_tx.send(opener.recv(Select::Any, &mut buf));
    });
    // Wait until the receiver sleeps in msgrcv (state S), so the removal finds it
    // blocked; if it has not got there yet, the removal still ends its receive.
    let tid = tid_rx.recv().unwrap();
    let stat = format!("/proc/self/task/{tid}/stat");
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let s = std::fs::read_to_string(&stat).unwrap_or_default();
        if s.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('S')) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    owner.remove().unwrap();
    let r = done_rx.recv_timeout(support::WATCHDOG).expect("watchdog: the receiver hung");
    assert!(matches!(r, Err(Error::Disconnected)), "expected Disconnected, got {r:?}");
}

#[test]
fn operations_on_a_removed_queue_are_disconnected() {
    let owner = MessageQueue::create_unique().unwrap();
    let opener = MessageQueue::open(owner.key()).unwrap();
    owner.remove().unwrap();
    let mut buf = [0u8; 4];
    assert!(matches!(opener.send(1, b"x"), Err(Error::Disconnected)));
    assert!(matches!(opener.try_send(1, b"x"), Err(Error::Disconnected)));
    assert!(matches!(opener.recv(Select::Any, &mut buf), Err(Error::Disconnected)));
    assert!(matches!(opener.try_recv(Select::Any, &mut buf), Err(Error::Disconnected)));
    assert!(matches!(
        opener.recv_timeout(Select::Any, &mut buf, Duration::from_secs(60)),
        Err(Error::Disconnected)
    ));
    assert!(matches!(opener.stat(), Err(Error::NotFound { .. })));
    assert!(matches!(opener.remove(), Err(Error::NotFound { .. })));
}

/// A typed request/response exchange with a real child over ONE queue: requests go as
/// type 1, replies as type 2, so neither side ever takes its own messages.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Request {
    Square(u64),
    Stop,
}

#[test]
fn typed_channel_across_a_child_process() {
    let q = Arc::new(MessageQueue::create_unique().unwrap());
    let child = support::spawn("child_entry", "squares", &q.key().to_string(), &[]);
    let watch = || PeerWatch::new(child.pid()).unwrap();
    let mut requests: Sender<Request, MsgqSink> =
        Sender::new(MsgqSink::new(q.clone(), 1).unwrap().with_peer_watch(watch()));
    let mut replies: Receiver<(u64, u64), MsgqSource> = Receiver::new(
        MsgqSource::new(q.clone(), Select::Exact(2)).unwrap().with_peer_watch(watch()),
    );
    for i in 0..500u64 {
        requests.send(Request::Square(i)).unwrap();
        assert_eq!(replies.recv().unwrap(), (i, i * i));
    }
    requests.send(Request::Stop).unwrap();
    // The child exits after Stop: with the queue empty, the watch reports it.
    assert!(matches!(replies.recv(), Err(Error::Disconnected)));
    child.wait_success();
    assert_eq!(q.stat().unwrap().messages, 0);
}

fn child_squares(arg: &str) {
    let q = Arc::new(MessageQueue::open(arg.parse().unwrap()).unwrap());
    let parent = || PeerWatch::parent().unwrap();
    let mut rx: Receiver<Request, MsgqSource> = Receiver::new(
        MsgqSource::new(q.clone(), Select::Exact(1)).unwrap().with_peer_watch(parent()),
    );
    let mut tx: Sender<(u64, u64), MsgqSink> =
        Sender::new(MsgqSink::new(q, 2).unwrap().with_peer_watch(parent()));
    loop {
        match rx.recv().unwrap() {
            Request::Square(i) => tx.send((i, i * i)).unwrap(),
            Request::Stop => return,
        }
    }
}

#[test]
fn a_blocked_receiver_sees_a_sigkilled_peer_as_disconnected() {
    let q = Arc::new(MessageQueue::create_unique().unwrap());
    let child = support::spawn("child_entry", "ready_then_die", &q.key().to_string(), &[]);
    let watch = PeerWatch::new(child.pid()).unwrap();
    let q2 = q.clone();
    // The child says "ready", then SIGKILLs itself a little later, most likely while
    // this receive is blocked; either way the receive must end with Disconnected.
    let (first, second) = within_watchdog(move || {
        let first = q2.recv_vec_deadline(Select::Any, None, Some(&watch));
        let second = q2.recv_vec_deadline(Select::Any, None, Some(&watch));
        (first, second)
    });
    assert_eq!(first.unwrap(), (1, b"ready".to_vec()));
    assert!(matches!(second, Err(Error::Disconnected)), "expected Disconnected, got {second:?}");
    let st = child.wait();
    assert!(support::was_killed(&st), "{st:?}");
}

fn child_ready_then_die(arg: &str) {
    let q = MessageQueue::open(arg.parse().unwrap()).unwrap();
    q.send(1, b"ready").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL).unwrap();
}

#[test]
fn a_dead_peers_messages_are_drained_before_disconnected() {
    let q = Arc::new(MessageQueue::create_unique().unwrap());
    let child = support::spawn("child_entry", "msgq:three", &q.key().to_string(), &[]);
    let watch = PeerWatch::new(child.pid()).unwrap();
    child.wait_success();
    // The child sent three messages and exited before we read any.
    assert!(watch.has_exited().unwrap());
    let mut src = MsgqSource::new(q, Select::Any).unwrap().with_peer_watch(watch);
    for want in 0..3 {
        let m = src_recv(&mut src);
        assert_eq!(support::conformance::check_msg(&m.unwrap()), want);
    }
    assert!(matches!(src_recv(&mut src), Err(Error::Disconnected)));
}

fn src_recv(src: &mut MsgqSource) -> Result<Vec<u8>, Error> {
    src.recv_frame(Some(Instant::now())).map(<[u8]>::to_vec)
}

#[test]
fn parent_is_checks_the_parent() {
    let ppid = std::os::unix::process::parent_id();
    assert_eq!(PeerWatch::parent_is(ppid).unwrap().pid(), ppid);
    assert!(!PeerWatch::parent().unwrap().has_exited().unwrap());
    // This process is alive, but it is not our parent.
    assert!(matches!(PeerWatch::parent_is(std::process::id()), Err(Error::Disconnected)));
}

#[test]
fn a_watch_on_a_missing_process_is_disconnected() {
    // A child that has exited and been reaped: its pid names nobody (pids are handed
    // out in increasing order up to pid_max, so it is not reused within this test).
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    assert!(matches!(PeerWatch::new(pid), Err(Error::Disconnected)));
}
