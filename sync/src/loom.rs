//! The facade: every atomic, `UnsafeCell`, thread and spin hint used by this crate comes from
//! here.
//!
//! Normally these are std's types. Under `RUSTFLAGS="--cfg interproc_loom"` they are loom's,
//! so the loom models in `tests/loom_*.rs` run the production algorithms. The cfg is
//! crate-specific on purpose: a plain `--cfg loom` would also switch every dependency that
//! has its own loom support.
//!
//! std's [`cell::UnsafeCell`] is wrapped to offer loom's closure API (`with`/`with_mut`), so
//! the algorithms are written once. `clippy.toml` forbids std's atomics and cells outside
//! this module.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[cfg(not(interproc_loom))]
pub(crate) mod atomic {
    //! Newtypes over std's atomics (as in tokio's `loom/std`), so that `clippy.toml` can
    //! forbid std's types everywhere else while the algorithms keep std's method names
    //! (through `Deref`).
    pub use std::sync::atomic::Ordering;

    macro_rules! atomic_newtype {
        ($name:ident, $std:ty, $value:ty) => {
            #[doc = concat!("The facade's `", stringify!($name), "`: std's, or loom's under `--cfg interproc_loom`.")]
            #[derive(Debug, Default)]
            #[repr(transparent)]
            pub struct $name($std);

            impl $name {
                #[doc = concat!("A new `", stringify!($name), "`.")]
                pub const fn new(value: $value) -> Self {
                    Self(<$std>::new(value))
                }
            }

            impl std::ops::Deref for $name {
                type Target = $std;

                #[inline(always)]
                fn deref(&self) -> &$std {
                    &self.0
                }
            }
        };
    }

    atomic_newtype!(AtomicU32, std::sync::atomic::AtomicU32, u32);
    atomic_newtype!(AtomicBool, std::sync::atomic::AtomicBool, bool);
    atomic_newtype!(AtomicU64, std::sync::atomic::AtomicU64, u64);
}

#[cfg(interproc_loom)]
pub(crate) mod atomic {
    pub use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
}

#[cfg(not(interproc_loom))]
pub(crate) mod cell {
    /// std's `UnsafeCell` with loom's access API: the pointer is only handed to a closure,
    /// which lets loom (in the model build) check every access for data races.
    #[derive(Debug, Default)]
    #[repr(transparent)]
    pub(crate) struct UnsafeCell<T: ?Sized>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(crate) const fn new(value: T) -> Self {
            Self(std::cell::UnsafeCell::new(value))
        }

        pub(crate) fn into_inner(self) -> T {
            self.0.into_inner()
        }
    }

    impl<T: ?Sized> UnsafeCell<T> {
        /// Calls `f` with a shared pointer to the value.
        #[inline(always)]
        pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        /// Calls `f` with a unique pointer to the value.
        #[inline(always)]
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }

        /// Direct access through `&mut self`, which already proves exclusivity.
        pub(crate) fn get_mut(&mut self) -> &mut T {
            self.0.get_mut()
        }
    }
}

#[cfg(interproc_loom)]
pub(crate) mod cell {
    /// loom's `UnsafeCell`, plus the `get_mut` that std offers.
    #[derive(Debug)]
    pub(crate) struct UnsafeCell<T>(loom::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(loom::cell::UnsafeCell::new(value))
        }

        pub(crate) fn into_inner(self) -> T {
            self.0.into_inner()
        }

        #[track_caller]
        pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            self.0.with(f)
        }

        #[track_caller]
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            self.0.with_mut(f)
        }

        pub(crate) fn get_mut(&mut self) -> &mut T {
            // SAFETY: `&mut self` proves that no other reference to the cell exists, so the
            // unique pointer loom hands out is the only access for the returned lifetime.
            self.0.with_mut(|p| unsafe { &mut *p })
        }
    }
}

pub(crate) mod hint {
    /// One step of a bounded spin. In the model this is a yield, so that loom explores the
    /// other threads instead of an unbounded busy loop.
    #[inline(always)]
    pub(crate) fn spin_loop() {
        #[cfg(not(interproc_loom))]
        std::hint::spin_loop();
        #[cfg(interproc_loom)]
        loom::hint::spin_loop();
    }

    /// How many times a locker spins before it parks. The model spins once: enough to
    /// cover the spin path, without multiplying the interleavings loom must explore.
    #[cfg(not(interproc_loom))]
    pub(crate) const SPIN_LIMIT: u32 = 100;
    #[cfg(interproc_loom)]
    pub(crate) const SPIN_LIMIT: u32 = 1;
}

pub(crate) mod time {
    //! The clock the algorithms read their deadlines against.
    //!
    //! Normally std's. In the model, time stands still: every deadline lies in the future
    //! (unless it was made with a zero timeout), and a timed wait ends only where the
    //! modelled futex lets it time out. Reading the real clock there made an execution
    //! depend on how long the machine took to run it: on a loaded machine a deadline passed
    //! in the middle of one execution but not in its replay, and loom's exploration never
    //! converged (a CI run sat in one model for over 30 minutes).
    use std::time::Instant;

    /// Now, by the real clock; in the model, a fixed instant.
    #[inline(always)]
    pub(crate) fn now() -> Instant {
        #[cfg(not(interproc_loom))]
        return Instant::now();
        #[cfg(interproc_loom)]
        {
            static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
            *START.get_or_init(Instant::now)
        }
    }

    /// Whether `deadline` (if any) has passed.
    #[inline]
    pub(crate) fn passed(deadline: Option<Instant>) -> bool {
        deadline.is_some_and(|d| now() >= d)
    }
}

pub(crate) mod thread {
    #[cfg(interproc_loom)]
    pub(crate) use loom::thread::panicking;
    #[cfg(not(interproc_loom))]
    pub(crate) use std::thread::panicking;
}

/// A point in a robust primitive's protocol where a process may be killed.
///
/// Nothing in production. In the loom models a thread can be told to "die" at its k-th
/// death point (`interproc_sync::park::model::die_at`): it is then marked dead and unwinds
/// straight out of the primitive, leaving the shared words as a SIGKILL would.
#[inline(always)]
#[track_caller]
pub(crate) fn death_point() {
    #[cfg(interproc_loom)]
    crate::park::model::death_point();
}

/// Whether the calling thread is unwinding out of a model "death" (see [`death_point`]):
/// then guards must not unlock on the way out, since a killed process runs no destructor.
/// Always `false` in production.
#[inline(always)]
pub(crate) fn dying() -> bool {
    #[cfg(interproc_loom)]
    return crate::park::model::dying();
    #[cfg(not(interproc_loom))]
    false
}
