//! A fixed loop of uncontended acquires, for counting the instructions that deadlock
//! detection adds to them (a noise-free A/B on a busy machine, where the criterion bench
//! `benches/sync_deadlock.rs` is not):
//!
//! ```sh
//! cargo build --release -p interproc-sync --example deadlock_cost                               # off
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/deadlock_cost semaphore 200000
//! cargo build --release -p interproc-sync --example deadlock_cost --features deadlock-detection # on
//! ```
//!
//! Run it twice with different counts (e.g. 200,000 and 400,000): the difference in total
//! instructions, divided by the difference in iterations, is the cost of one iteration
//! without the start-up. `perf stat -e cycles,instructions` over 20,000,000 iterations
//! gives cycles too (see `docs/BENCHMARKS.md`). The rows: `mutex` (lock + increment + unlock),
//! `nested` (lock A, lock B, increment both, unlock both), `semaphore` (acquire one
//! permit, release it), `process_mutex` (a `process::Mutex` in an anonymous segment: lock
//! + increment + unlock).

use std::hint::black_box;

use interproc_sync::process::Mutex as ProcessMutex;
use interproc_sync::shm::Segment;
use interproc_sync::{Mutex, Semaphore};

fn main() {
    let mut args = std::env::args().skip(1);
    let row = args.next().unwrap_or_else(|| "mutex".into());
    let n: u64 = args.next().map_or(1_000_000, |s| s.parse().expect("a count of iterations"));
    match row.as_str() {
        "mutex" => {
            let m = Mutex::new_unpoisoned(0u64).labelled("bench");
            for _ in 0..n {
                *black_box(&m).lock().unwrap() += 1;
            }
            assert_eq!(*m.lock().unwrap(), n);
        }
        "nested" => {
            let a = Mutex::new_unpoisoned(0u64).labelled("A");
            let b = Mutex::new_unpoisoned(0u64).labelled("B");
            for _ in 0..n {
                let mut x = black_box(&a).lock().unwrap();
                let mut y = black_box(&b).lock().unwrap();
                *x += 1;
                *y += 1;
            }
            assert_eq!(*b.lock().unwrap(), n);
        }
        "semaphore" => {
            let s = Semaphore::new(1);
            for _ in 0..n {
                drop(black_box(&s).acquire());
            }
            assert_eq!(s.available_permits(), 1);
        }
        "process_mutex" => {
            let m = Segment::anonymous(ProcessMutex::new(0u64)).expect("an anonymous segment");
            for _ in 0..n {
                *black_box(&*m).lock().unwrap() += 1;
            }
            assert_eq!(*m.lock().unwrap(), n);
        }
        other => {
            eprintln!("unknown row {other:?}: mutex, nested, semaphore or process_mutex");
            std::process::exit(2);
        }
    }
}
