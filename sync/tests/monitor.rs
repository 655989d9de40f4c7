//! `Monitor` between real threads: the bounded buffer with several producers and
//! consumers, notify_all, timeouts.
//!
//! No test asserts how long anything takes: timeouts are checked by their result only.
#![cfg(not(interproc_loom))] // real threads and futexes; the models are in loom_*.rs
#![allow(clippy::disallowed_methods)] // std::thread: these tests run real threads

use std::collections::VecDeque;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use interproc_sync::{Condition, Error, Monitor};

const NOT_EMPTY: Condition = Condition::new(0);
const NOT_FULL: Condition = Condition::new(1);
const LONG: Duration = Duration::from_secs(60);

struct BoundedBuffer<T> {
    queue: Monitor<VecDeque<T>>,
    capacity: usize,
}

impl<T> BoundedBuffer<T> {
    fn new(capacity: usize) -> Self {
        Self { queue: Monitor::new(VecDeque::new(), 2), capacity }
    }

    fn put(&self, item: T) {
        let mut q = self.queue.enter();
        q.wait_while(NOT_FULL, |q| q.len() == self.capacity);
        assert!(q.len() < self.capacity);
        q.push_back(item);
        q.notify_one(NOT_EMPTY);
    }

    fn take(&self) -> T {
        let mut q = self.queue.enter();
        q.wait_while(NOT_EMPTY, |q| q.is_empty());
        let item = q.pop_front().unwrap();
        q.notify_one(NOT_FULL);
        item
    }
}

/// Three producers and three consumers through a buffer of capacity 2: every item arrives
/// exactly once, and each producer's items arrive in order.
#[test]
fn bounded_buffer_delivers_every_item_once() {
    // Fewer under Miri, which runs the same tests far slower.
    const PER_PRODUCER: u32 = if cfg!(miri) { 20 } else { 5_000 };
    let buffer = Arc::new(BoundedBuffer::new(2));
    let producers: Vec<_> = (0..3u32)
        .map(|p| {
            let buffer = buffer.clone();
            thread::spawn(move || (0..PER_PRODUCER).for_each(|i| buffer.put((p, i))))
        })
        .collect();
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            let buffer = buffer.clone();
            thread::spawn(move || {
                let mut last = [None::<u32>; 3];
                let mut got = Vec::new();
                for _ in 0..PER_PRODUCER {
                    let (p, i) = buffer.take();
                    assert!(last[p as usize] < Some(i), "producer {p}'s items out of order");
                    last[p as usize] = Some(i);
                    got.push((p, i));
                }
                got
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let mut all: Vec<_> = consumers.into_iter().flat_map(|c| c.join().unwrap()).collect();
    all.sort_unstable();
    let expected: Vec<_> = (0..3).flat_map(|p| (0..PER_PRODUCER).map(move |i| (p, i))).collect();
    assert_eq!(all, expected);
    assert!(buffer.queue.enter().is_empty());
}

#[test]
fn notify_all_wakes_every_waiter() {
    let m = Arc::new(Monitor::new((false, 0u32), 1));
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let m = m.clone();
            thread::spawn(move || {
                let mut g = m.enter();
                g.1 += 1;
                g.wait_while(NOT_EMPTY, |(go, _)| !*go);
            })
        })
        .collect();
    // Wait (on the monitor itself, with timeouts as polls) until all four are inside `wait`.
    loop {
        let mut g = m.enter();
        if g.1 == 4 {
            g.0 = true;
            g.notify_all(NOT_EMPTY);
            break;
        }
        let _ = g.wait_timeout(NOT_EMPTY, Duration::from_millis(1));
    }
    for w in waiters {
        w.join().unwrap();
    }
}

#[test]
fn wait_timeout_times_out_and_stays_inside() {
    let m = Monitor::new(0, 1);
    let mut g = m.enter();
    assert_eq!(g.wait_timeout(NOT_EMPTY, Duration::from_millis(20)), Err(Error::Timeout));
    assert_eq!(
        g.wait_timeout_while(NOT_EMPTY, Duration::from_millis(20), |v| *v == 0),
        Err(Error::Timeout)
    );
    assert_eq!(g.wait_timeout_while(NOT_EMPTY, Duration::ZERO, |v| *v != 0), Ok(()));
    *g += 1; // still inside: the guard works
    assert_eq!(m.try_enter().unwrap_err(), Error::WouldBlock);
    drop(g);
    assert_eq!(*m.try_enter().unwrap(), 1);
}

#[test]
fn wait_timeout_while_sees_a_notify_in_time() {
    let m = Arc::new(Monitor::new(false, 1));
    let (inside_tx, inside_rx) = mpsc::channel();
    let waiter = {
        let m = m.clone();
        thread::spawn(move || {
            let mut g = m.enter();
            inside_tx.send(()).unwrap();
            g.wait_timeout_while(NOT_EMPTY, LONG, |ready| !*ready)
        })
    };
    inside_rx.recv().unwrap();
    // Entering waits until the waiter has left the monitor to wait.
    *m.enter() = true;
    m.notify_one(NOT_EMPTY);
    assert_eq!(waiter.join().unwrap(), Ok(()));
}

#[test]
fn enter_timeout_and_try_enter_while_another_is_inside() {
    let m = Arc::new(Monitor::new((), 0));
    let (inside_tx, inside_rx) = mpsc::channel();
    let (leave_tx, leave_rx) = mpsc::channel::<()>();
    let holder = {
        let m = m.clone();
        thread::spawn(move || {
            let _g = m.enter();
            inside_tx.send(()).unwrap();
            leave_rx.recv().unwrap();
        })
    };
    inside_rx.recv().unwrap();
    assert_eq!(m.try_enter().unwrap_err(), Error::WouldBlock);
    assert_eq!(m.enter_timeout(Duration::from_millis(20)).unwrap_err(), Error::Timeout);
    leave_tx.send(()).unwrap();
    holder.join().unwrap();
    assert!(m.enter_timeout(LONG).is_ok());
}

#[test]
fn notify_without_waiters_is_harmless() {
    let mut m = Monitor::new(1, 2);
    m.notify_one(NOT_EMPTY);
    m.notify_all(NOT_FULL);
    *m.get_mut() += 1;
    assert_eq!(m.conditions(), 2);
    assert_eq!(format!("{m:?}"), "Monitor { entered: false, conditions: 2, .. }");
    assert_eq!(m.into_inner(), 2);
}

#[test]
#[should_panic(expected = "condition 2 of a monitor with 2 conditions")]
fn an_unknown_condition_panics() {
    Monitor::new((), 2).notify_one(Condition::new(2));
}
