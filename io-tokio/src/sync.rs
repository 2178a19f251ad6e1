//! The synchronisation types the driver's shared state is built from: the
//! standard library's normally, [loom]'s when the crate is compiled with
//! `--cfg eventcore_loom`, so that the loom models in `tests/loom_*.rs`
//! explore every interleaving of the real critical sections.
//!
//! Only the state shared between threads goes through here (the memory
//! store's lock and head notifier, the stream cache); data that is merely
//! reference-counted (events, payloads) keeps `std::sync::Arc`.
//!
//! [loom]: https://docs.rs/loom

use std::fmt;
use std::sync::PoisonError;

#[cfg(eventcore_loom)]
pub(crate) use loom::sync::Arc;
#[cfg(not(eventcore_loom))]
pub(crate) use std::sync::Arc;

#[cfg(eventcore_loom)]
use loom::sync as imp;
#[cfg(not(eventcore_loom))]
use std::sync as imp;

/// A guard of [`Mutex`].
pub(crate) type MutexGuard<'a, T> = imp::MutexGuard<'a, T>;

/// A mutex whose `lock` ignores poisoning. Every critical section in this
/// crate leaves its data consistent before anything in it can panic (the
/// memory store checks everything before it writes; the cache keeps its
/// counters in step with its map), so a poisoned lock is still safe to use
/// and one panicking caller must not take every other caller down with it.
pub(crate) struct Mutex<T> {
    inner: imp::Mutex<T>,
}

impl<T> Mutex<T> {
    /// A mutex holding `value`.
    pub(crate) fn new(value: T) -> Self {
        Mutex {
            inner: imp::Mutex::new(value),
        }
    }

    /// Locks, waiting for the lock if another thread holds it.
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Locking here could deadlock a caller that formats while holding
        // the lock; the contents are available through the owners' methods.
        f.debug_struct("Mutex").finish_non_exhaustive()
    }
}
