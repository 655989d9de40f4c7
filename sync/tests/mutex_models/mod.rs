//! loom models that every mutex must pass, written once and instantiated for each: the
//! thread `Mutex` (`loom_mutex.rs`) and the process-shared robust one (`loom_process.rs`).

/// Defines the shared mutex models as `#[test]`s for `$mutex`, a type in scope with
/// `new(u32)` and `lock() -> Result<guard, _>` (the guard derefs to the `u32`).
macro_rules! mutex_models {
    ($mutex:ident) => {
        /// Two lockers never overlap, and each sees the other's write (the data is a plain
        /// `u32` in loom's `UnsafeCell`, which also reports any unordered access as a data
        /// race; it is read and written as two accesses, so a lost update shows). The
        /// `inside` counter is Relaxed on purpose: it must not add the ordering the lock
        /// provides.
        #[test]
        fn mutual_exclusion() {
            loom::model(|| {
                let m = loom::sync::Arc::new($mutex::new(0u32));
                let inside = loom::sync::Arc::new(loom::sync::atomic::AtomicU32::new(0));
                let workers: Vec<_> = (0..2)
                    .map(|_| {
                        let (m, inside) = (m.clone(), inside.clone());
                        loom::thread::spawn(move || {
                            use loom::sync::atomic::Ordering::Relaxed;
                            let mut g = m.lock().unwrap();
                            assert_eq!(inside.fetch_add(1, Relaxed), 0, "two threads inside");
                            let v = *g;
                            *g = v + 1;
                            inside.fetch_sub(1, Relaxed);
                        })
                    })
                    .collect();
                for w in workers {
                    w.join().unwrap();
                }
                assert_eq!(*m.lock().unwrap(), 2);
            });
        }

        /// Three lockers, so that at least one parks with the word at 2: every unlock that
        /// must wake someone does, or loom reports the parked thread as a deadlock. (Nobody
        /// dies, so a robust mutex's waiters park untimed too: its liveness poll stays
        /// untimed in the model while nobody has died.)
        #[test]
        fn no_lost_wakeup_three_lockers() {
            loom::model(|| {
                let m = loom::sync::Arc::new($mutex::new(0u32));
                let workers: Vec<_> = (0..2)
                    .map(|_| {
                        let m = m.clone();
                        loom::thread::spawn(move || *m.lock().unwrap() += 1)
                    })
                    .collect();
                *m.lock().unwrap() += 1;
                for w in workers {
                    w.join().unwrap();
                }
                assert_eq!(*m.lock().unwrap(), 3);
            });
        }
    };
}
