//! A model that *must fail*: it checks that the modelled futex is sharp enough to report a
//! real lost wake-up as a loom deadlock, so the passing models mean something.
//!
//! loom aborts the process when a model fails (a panic during its clean-up), so this cannot
//! be a `#[should_panic]` test. It is ignored in normal runs; `.ci/loom` runs it alone and
//! fails unless it fails.
#![cfg(interproc_loom)]

use interproc_sync::{Condition, Monitor};
use loom::sync::Arc;
use loom::thread;

const GO: Condition = Condition::new(0);

/// Two waiters on one flag and a single `notify_one`: one waiter stays asleep for ever.
#[test]
#[ignore = "must fail; run alone by .ci/loom, which expects the failure"]
fn notify_one_for_two_waiters_on_one_flag_deadlocks() {
    loom::model(|| {
        let m = Arc::new(Monitor::new(false, 1));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                thread::spawn(move || m.enter().wait_while(GO, |go| !*go))
            })
            .collect();
        *m.enter() = true;
        m.notify_one(GO);
        for w in waiters {
            w.join().unwrap();
        }
    });
}
