//! With the feature `deadlock-detection` off, no detector code is compiled in; with it on,
//! it is (which keeps the check honest). Checked on this very test binary: its symbol table
//! names every function linked in, and the detector's all live in
//! `interproc_sync::deadlock::detector`. Also, without the feature the hooks' state is
//! zero-sized: the primitives are exactly as big as their words.
#![cfg(not(interproc_loom))]

use interproc_sync::{Monitor, Mutex, Semaphore};

/// Whether the binary at `path` contains `needle`.
fn binary_contains(path: &std::path::Path, needle: &[u8]) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn detector_code_is_compiled_in_only_with_the_feature() {
    // Use every primitive, so their hooks are instantiated and linked here.
    let m = Mutex::new(1u64).labelled("m");
    *m.lock().unwrap() += 1;
    *m.try_lock().unwrap() += 1;
    let s = Semaphore::new(1).labelled("s");
    drop(s.acquire());
    let mon = Monitor::new(0u32, 1).labelled("mon");
    *mon.enter() += 1;

    let exe = std::env::current_exe().unwrap();
    // The mangled path segment `8deadlock8detector` (legacy and v0 schemes alike), built
    // backwards so that this test's own string constant does not match.
    let needle: Vec<u8> = "rotceted8kcoldaed8".bytes().rev().collect();
    let present = binary_contains(&exe, &needle);
    assert_eq!(
        present,
        cfg!(feature = "deadlock-detection"),
        "detector symbols in {} (feature on: {})",
        exe.display(),
        cfg!(feature = "deadlock-detection")
    );
}

#[test]
#[cfg(not(feature = "deadlock-detection"))]
fn hooks_are_zero_sized_without_the_feature() {
    use std::mem::size_of;
    // One futex word, the poison flags, the value (padded to its alignment).
    assert_eq!(size_of::<Mutex<u64>>(), 16);
    // One futex word.
    assert_eq!(size_of::<Semaphore>(), 4);
    // The semaphore reference and the count.
    assert_eq!(size_of::<interproc_sync::Permit<'_>>(), 16);
    // The lock word, the boxed conditions, the value.
    assert_eq!(size_of::<Monitor<u64>>(), 8 + 16 + 8);
}
