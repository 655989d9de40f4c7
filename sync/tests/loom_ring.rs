//! loom models of the shared-memory ring (`interproc_sync::ring`): the production
//! producer/consumer over a heap ring whose bytes are loom cells (so every payload access is
//! checked for races) and the modelled futex (`ModelPark`, which wakes spuriously and
//! times out at any point).
//!
//! Run with `.ci/loom`, or:
//! `RUSTFLAGS="--cfg interproc_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p interproc-sync --release --test loom_ring`
#![cfg(interproc_loom)]

use interproc_sync::park::model;
use interproc_sync::ring::{self, HeapMemory, RingError};
use interproc_sync::ModelPark;
use loom::thread;

type Ring = std::sync::Arc<HeapMemory>;
type Producer = ring::Producer<Ring, ModelPark>;
type Consumer = ring::Consumer<Ring, ModelPark>;

fn pair(capacity: usize) -> (Producer, Consumer) {
    ring::pair(HeapMemory::new(capacity), 1).unwrap()
}

fn msg(seq: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| seq.wrapping_mul(31).wrapping_add(i as u8)).collect()
}

/// A consumer that finds the ring empty sleeps, and the producer's commit wakes it (a lost
/// wake-up would leave it asleep: loom reports that as a deadlock). Then the producer's drop
/// wakes it again, for `Disconnected`.
#[test]
fn sleeping_consumer_is_woken() {
    loom::model(|| {
        let (mut tx, mut rx) = pair(32);
        let t = thread::spawn(move || {
            tx.send(&msg(1, 3), None).unwrap();
        });
        let mut buf = Vec::new();
        rx.recv(&mut buf, None).unwrap();
        assert_eq!(buf, msg(1, 3));
        assert_eq!(rx.recv(&mut buf, None), Err(RingError::Disconnected));
        t.join().unwrap();
    });
}

/// A producer that finds the ring full sleeps, and the consumer's release wakes it: two
/// messages that each fill the 16-byte ring.
#[test]
fn sleeping_producer_is_woken() {
    loom::model(|| {
        let (mut tx, mut rx) = pair(16);
        let t = thread::spawn(move || {
            let mut buf = Vec::new();
            for seq in 0..2 {
                rx.recv(&mut buf, None).unwrap();
                assert_eq!(buf, msg(seq, 8));
            }
        });
        for seq in 0..2 {
            tx.send(&msg(seq, 8), None).unwrap();
        }
        t.join().unwrap();
    });
}

/// Messages of 5, 12 and 3 bytes (records of 16, 24 and 16 bytes) through a 32-byte ring:
/// the second does not fit before the end, so it follows a padding record at offset 0.
/// Each arrives whole and in order, and loom checks that no byte is read while written.
#[test]
fn integrity_through_wrap_around() {
    loom::model(|| {
        let (mut tx, mut rx) = pair(32);
        let sizes = [5usize, 12, 3];
        let t = thread::spawn(move || {
            for (seq, &len) in sizes.iter().enumerate() {
                // Zero-copy for one of them: the loan path commits the same way.
                if seq == 1 {
                    let mut loan = tx.loan(len, None).unwrap();
                    loan.write_at(0, &msg(seq as u8, len));
                    loan.commit();
                } else {
                    tx.send(&msg(seq as u8, len), None).unwrap();
                }
            }
        });
        let mut buf = Vec::new();
        for (seq, &len) in sizes.iter().enumerate() {
            let loan = rx.recv_loan(None).unwrap();
            loan.copy_to(&mut buf);
            drop(loan);
            assert_eq!(buf, msg(seq as u8, len), "message {seq}");
        }
        t.join().unwrap();
    });
}

/// `try_send` (a deadline already past) on a full ring is `Timeout` and sends nothing;
/// racing with the consumer, it either fits or not, and the consumer sees exactly what was
/// accepted.
#[test]
fn try_send_on_full_ring() {
    loom::model(|| {
        let (mut tx, mut rx) = pair(16);
        tx.send(&msg(0, 8), None).unwrap();
        let t = thread::spawn(move || {
            let mut buf = Vec::new();
            rx.recv(&mut buf, None).unwrap();
            assert_eq!(buf, msg(0, 8));
            match rx.recv(&mut buf, None) {
                Ok(()) => {
                    assert_eq!(buf, msg(1, 8));
                    1
                }
                Err(RingError::Disconnected) => 0,
                Err(e) => panic!("unexpected {e:?}"),
            }
        });
        let sent = match tx.send(&msg(1, 8), Some(model::now())) {
            Ok(()) => 1,
            Err(RingError::Timeout) => 0,
            Err(e) => panic!("unexpected {e:?}"),
        };
        drop(tx);
        assert_eq!(t.join().unwrap(), sent);
    });
}

/// The modelled futex, counting the wake-ups the ring pays for (a `FUTEX_WAKE` syscall
/// each, in production) in `WAKES[N]`: one counter per test, since tests run in parallel.
struct CountingPark<const N: usize>;

/// Wake-ups made through [`CountingPark`] in the current model execution of each test.
/// Not modelled atomics: plain counters of calls, reset at the start of each execution
/// (loom runs a test's executions one after another).
#[allow(clippy::disallowed_types)]
static WAKES: [std::sync::atomic::AtomicUsize; 2] =
    [std::sync::atomic::AtomicUsize::new(0), std::sync::atomic::AtomicUsize::new(0)];

impl<const N: usize> interproc_sync::Park for CountingPark<N> {
    fn wait(
        word: &interproc_sync::park::AtomicU32,
        expected: u32,
        deadline: Option<std::time::Instant>,
    ) -> interproc_sync::ParkResult {
        ModelPark::wait(word, expected, deadline)
    }

    fn wake(word: *const interproc_sync::park::AtomicU32, n: u32) -> usize {
        WAKES[N].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ModelPark::wake(word, n)
    }
}

/// A `try_recv` (a deadline already past) on an empty ring, racing with a commit and the
/// producer's close: whatever the interleaving, it never announces itself asleep, so the
/// producer never pays a futex wake-up for it (it did: the try set the "asleep" word
/// before it looked at the deadline). The message is then received whole.
#[test]
fn try_recv_never_announces_a_sleeper() {
    loom::model(|| {
        WAKES[0].store(0, std::sync::atomic::Ordering::Relaxed);
        let (mut tx, mut rx) = ring::pair::<_, CountingPark<0>>(HeapMemory::new(32), 1).unwrap();
        let t = thread::spawn(move || {
            tx.send(&msg(2, 5), None).unwrap();
            drop(tx);
        });
        let mut buf = Vec::new();
        let first = rx.recv(&mut buf, Some(model::now()));
        t.join().unwrap();
        assert_eq!(WAKES[0].load(std::sync::atomic::Ordering::Relaxed), 0, "a wake-up for a try");
        match first {
            Ok(()) => {}
            Err(RingError::Timeout) => rx.recv(&mut buf, Some(model::now())).unwrap(),
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert_eq!(buf, msg(2, 5));
    });
}

/// The same for `try_send` on a full ring, racing with the consumer's release: the
/// consumer never pays a wake-up for the try.
#[test]
fn try_send_never_announces_a_sleeper() {
    loom::model(|| {
        WAKES[1].store(0, std::sync::atomic::Ordering::Relaxed);
        let (mut tx, mut rx) = ring::pair::<_, CountingPark<1>>(HeapMemory::new(16), 1).unwrap();
        tx.send(&msg(0, 8), None).unwrap();
        let t = thread::spawn(move || {
            let mut buf = Vec::new();
            rx.recv(&mut buf, None).unwrap();
            assert_eq!(buf, msg(0, 8));
            rx
        });
        let sent = tx.send(&msg(1, 8), Some(model::now()));
        let rx = t.join().unwrap();
        assert_eq!(WAKES[1].load(std::sync::atomic::Ordering::Relaxed), 0, "a wake-up for a try");
        assert!(matches!(sent, Ok(()) | Err(RingError::Timeout)), "{sent:?}");
        drop((tx, rx));
    });
}

/// A consumer that drops its end wakes a producer sleeping on a full ring, which then gets
/// `Disconnected`.
#[test]
fn consumer_close_disconnects_sleeping_producer() {
    loom::model(|| {
        let (mut tx, rx) = pair(16);
        tx.send(&msg(0, 8), None).unwrap();
        let t = thread::spawn(move || drop(rx));
        assert_eq!(tx.send(&msg(1, 8), None), Err(RingError::Disconnected));
        t.join().unwrap();
    });
}

/// A timed receive racing with a commit (the modelled futex times out at any point): it
/// either gets the message or times out, and then the message is still there for the next
/// receive. A timeout never swallows a message or a wake-up.
#[test]
fn timed_receive_never_loses_a_message() {
    loom::model(|| {
        let (mut tx, mut rx) = pair(32);
        let t = thread::spawn(move || {
            tx.send(&msg(4, 6), None).unwrap();
            tx
        });
        let mut buf = Vec::new();
        let deadline = Some(model::now() + std::time::Duration::from_secs(3600));
        match rx.recv(&mut buf, deadline) {
            Ok(()) => {}
            Err(RingError::Timeout) => rx.recv(&mut buf, None).unwrap(),
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert_eq!(buf, msg(4, 6));
        drop(t.join().unwrap());
        assert_eq!(rx.recv(&mut buf, None), Err(RingError::Disconnected));
    });
}

/// An eventfd, modelled: a counter that `notify` bumps (then wakes waiters on it, as the
/// kernel wakes an epoll that watches the eventfd), `wait` blocks while it is 0 (an
/// `epoll_wait` on a level-triggered eventfd) and `reset` takes to 0 (a read). The kernel
/// serialises these under the eventfd's lock: `SeqCst` RMWs model that.
#[derive(Default)]
struct ModelEventFd {
    count: loom::sync::atomic::AtomicU32,
}

impl ring::Notify for ModelEventFd {
    fn notify(&self) {
        use interproc_sync::Park;
        self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ModelPark::wake(&self.count, u32::MAX);
    }
}

impl ModelEventFd {
    fn wait(&self) {
        use interproc_sync::Park;
        while self.count.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            ModelPark::wait(&self.count, 0, None);
        }
    }

    fn reset(&self) {
        self.count.swap(0, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Both ends of a ring created with notifiers: `(producer, consumer, the consumer's
/// eventfd, the producer's eventfd)`.
fn notified_pair(
    capacity: usize,
) -> (Producer, Consumer, std::sync::Arc<ModelEventFd>, std::sync::Arc<ModelEventFd>) {
    let mem = HeapMemory::with_header(ring::RingHeader::new(capacity).with_notifier());
    let to_consumer = std::sync::Arc::new(ModelEventFd::default());
    let to_producer = std::sync::Arc::new(ModelEventFd::default());
    let tx = Producer::attach_with(mem.clone(), 1, Some(to_consumer.clone())).unwrap();
    let rx = Consumer::attach_with(mem, 1, Some(to_producer.clone())).unwrap();
    (tx, rx, to_consumer, to_producer)
}

/// The event-loop consumer of `interproc_ipc::channel::shm`: try to receive; on empty,
/// reset the eventfd, arm, and block on the eventfd only if `arm` says so. A lost
/// notification leaves it blocked: loom reports that as a deadlock.
fn event_loop_recv(
    rx: &mut Consumer,
    efd: &ModelEventFd,
    buf: &mut Vec<u8>,
) -> Result<(), RingError> {
    loop {
        match rx.recv(buf, Some(model::now())) {
            Err(RingError::Timeout) => {}
            r => return r,
        }
        efd.reset();
        if rx.arm(1).unwrap() {
            efd.wait();
        }
    }
}

/// A consumer that waits in its "event loop" (the modelled eventfd, not the futex) gets
/// every message and then `Disconnected`: the producer's commit and its close signal the
/// eventfd whenever the consumer armed it, and the consumer's re-check after arming sees
/// whatever came before. The loop also takes the spurious signals an early arm can leave.
#[test]
fn event_loop_consumer_is_notified() {
    loom::model(|| {
        let (mut tx, mut rx, efd, _) = notified_pair(32);
        let t = thread::spawn(move || {
            tx.send(&msg(1, 3), None).unwrap();
            tx.send(&msg(2, 5), None).unwrap();
        });
        let mut buf = Vec::new();
        event_loop_recv(&mut rx, &efd, &mut buf).unwrap();
        assert_eq!(buf, msg(1, 3));
        event_loop_recv(&mut rx, &efd, &mut buf).unwrap();
        assert_eq!(buf, msg(2, 5));
        assert_eq!(event_loop_recv(&mut rx, &efd, &mut buf), Err(RingError::Disconnected));
        t.join().unwrap();
    });
}

/// Back-pressure in an event loop: a producer that finds the 16-byte ring full arms its
/// own eventfd and blocks on it; the consumer's release signals it.
#[test]
fn event_loop_producer_is_notified_of_room() {
    loom::model(|| {
        let (mut tx, mut rx, _, efd) = notified_pair(16);
        let t = thread::spawn(move || {
            let mut buf = Vec::new();
            for seq in 0..2 {
                rx.recv(&mut buf, None).unwrap();
                assert_eq!(buf, msg(seq, 8));
            }
        });
        for seq in 0..2 {
            loop {
                match tx.send(&msg(seq, 8), Some(model::now())) {
                    Ok(()) => break,
                    Err(RingError::Timeout) => {}
                    Err(e) => panic!("unexpected {e:?}"),
                }
                efd.reset();
                if tx.arm(8, 1).unwrap() {
                    efd.wait();
                }
            }
        }
        t.join().unwrap();
    });
}

/// The two waits mixed: the consumer arms the eventfd, takes one message through it, then
/// sleeps on the futex for the next (its futex announcement must neither lose the notifier
/// bit's meaning nor a wake-up), then drains to `Disconnected` in the event loop again.
#[test]
fn futex_and_event_loop_waits_mixed() {
    loom::model(|| {
        let (mut tx, mut rx, efd, _) = notified_pair(32);
        let t = thread::spawn(move || {
            tx.send(&msg(1, 3), None).unwrap();
            tx.send(&msg(2, 3), None).unwrap();
        });
        let mut buf = Vec::new();
        event_loop_recv(&mut rx, &efd, &mut buf).unwrap();
        assert_eq!(buf, msg(1, 3));
        rx.recv(&mut buf, None).unwrap();
        assert_eq!(buf, msg(2, 3));
        assert_eq!(event_loop_recv(&mut rx, &efd, &mut buf), Err(RingError::Disconnected));
        t.join().unwrap();
    });
}

/// A ring created without notifiers refuses to arm and refuses a notifier at attach; one
/// created with them refuses an end without one.
#[test]
fn notifier_mismatch_is_an_error() {
    loom::model(|| {
        let (_tx, mut rx) = pair(32);
        assert!(matches!(rx.arm(1), Err(RingError::Invalid { .. })));
        let efd: ring::Notifier = std::sync::Arc::new(ModelEventFd::default());
        let plain = HeapMemory::new(32);
        assert!(matches!(
            Producer::attach_with(plain, 1, Some(efd)),
            Err(RingError::Invalid { .. })
        ));
        let notified = HeapMemory::with_header(ring::RingHeader::new(32).with_notifier());
        assert!(matches!(Consumer::attach(notified, 1), Err(RingError::Invalid { .. })));
    });
}

/// A consumer that armed before any producer attached learns the producer's pid (to watch
/// its liveness) even if the producer then does nothing more (as if killed right after
/// attaching): the attach wakes an armed consumer, or the consumer's re-check sees the
/// new pid and does not block. A consumer left blocked would be a deadlock.
#[test]
fn an_attach_wakes_an_armed_consumer() {
    loom::model(|| {
        let mem = HeapMemory::with_header(ring::RingHeader::new(32).with_notifier());
        let to_consumer = std::sync::Arc::new(ModelEventFd::default());
        let to_producer: ring::Notifier = std::sync::Arc::new(ModelEventFd::default());
        let mut rx = Consumer::attach_with(mem.clone(), 1, Some(to_producer)).unwrap();
        let signal: ring::Notifier = to_consumer.clone();
        let t = thread::spawn(move || {
            // Attaches, then neither sends nor closes.
            drop(Producer::attach_with(mem, 7, Some(signal)).unwrap().leave_open());
        });
        let mut known = 0;
        while known == 0 {
            to_consumer.reset();
            if rx.arm(known).unwrap() {
                to_consumer.wait();
            }
            known = rx.header().producer_pid();
        }
        assert_eq!(known, 7);
        t.join().unwrap();
    });
}

/// A level-triggered reader that takes one message per event (the shape of
/// `interproc_ipc`'s notifier with `Mode::LEVEL`): it waits while the eventfd is 0, then
/// makes one non-blocking receive; on empty it resets, arms, and, if `arm` withdrew
/// because a message came meanwhile, makes the eventfd readable again (it reset it, and
/// will return to the wait before it finds the ring empty). Without that restore the
/// reader waits for ever with a message in the ring (loom reports a deadlock).
#[test]
fn level_triggered_reader_one_message_per_event() {
    loom::model(|| {
        let (mut tx, mut rx, efd, _) = notified_pair(32);
        efd.count.store(1, std::sync::atomic::Ordering::SeqCst); // starts readable
        let t = thread::spawn(move || {
            tx.send(&msg(1, 3), None).unwrap();
            tx.send(&msg(2, 3), None).unwrap();
        });
        let mut buf = Vec::new();
        let mut got = 0u8;
        loop {
            efd.wait();
            match rx.recv(&mut buf, Some(model::now())) {
                Ok(()) => {
                    got += 1;
                    assert_eq!(buf, msg(got, 3));
                }
                Err(RingError::Timeout) => {
                    efd.reset();
                    if !rx.arm(1).unwrap() {
                        ring::Notify::notify(&*efd);
                    }
                }
                Err(RingError::Disconnected) => break,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(got, 2);
        t.join().unwrap();
    });
}
