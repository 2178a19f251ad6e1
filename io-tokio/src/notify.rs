//! Wake-ups for subscribers of the in-memory store: the position of the last
//! committed event, and a future that waits until it moves past a position.
//!
//! The protocol a subscriber follows, and which the loom model
//! `tests/loom_notify.rs` checks has no lost wake-up, is:
//!
//! 1. read the global log after its checkpoint; the read says how far it is
//!    complete (`complete_through`);
//! 2. if it wants more, wait with [`HeadWatch::wait_past`]`(complete_through)`.
//!
//! The wait compares against the position the *read* saw, never against a
//! value fetched after it, so an append that commits between the read and
//! the wait has already moved the head past it and the wait returns at once.
//! The head only grows, and the check and the registration of the waker
//! happen under the same lock as the publication, so no publication can fall
//! between them.

use crate::sync::{Arc, Mutex};
use eventcore::GlobalPosition;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// The position of the last committed event of a store, shared by the store
/// (which publishes it after every commit) and its subscribers (which wait
/// for it to move).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use eventcore_tokio::MemoryEventStore;
/// let store = MemoryEventStore::new();
/// let head = store.head();
/// assert_eq!(head.position(), eventcore::GlobalPosition::START);
/// # });
/// ```
#[derive(Clone)]
pub struct HeadWatch {
    shared: Arc<Mutex<State>>,
}

struct State {
    head: GlobalPosition,
    next_waiter: u64,
    waiters: Vec<(u64, Waker)>,
}

impl State {
    fn forget(&mut self, id: u64) {
        self.waiters.retain(|(waiter, _)| *waiter != id);
    }
}

impl HeadWatch {
    /// A watch starting at `head`.
    #[cfg_attr(not(feature = "memory"), allow(dead_code))] // the memory store's
    pub(crate) fn new(head: GlobalPosition) -> Self {
        HeadWatch {
            shared: Arc::new(Mutex::new(State {
                head,
                next_waiter: 0,
                waiters: Vec::new(),
            })),
        }
    }

    /// The position of the last committed event published so far.
    pub fn position(&self) -> GlobalPosition {
        self.shared.lock().head
    }

    /// Raises the head to `head` (it never goes down) and wakes every waiter
    /// if it moved. Returns whether it moved.
    #[cfg_attr(not(feature = "memory"), allow(dead_code))] // the memory store's
    pub(crate) fn publish(&self, head: GlobalPosition) -> bool {
        let woken = {
            let mut state = self.shared.lock();
            if head <= state.head {
                return false;
            }
            state.head = head;
            std::mem::take(&mut state.waiters)
        };
        // Wake outside the lock: a woken task that polls at once must not
        // find the lock held by its waker.
        for (_, waker) in woken {
            waker.wake();
        }
        true
    }

    /// A future that completes with the head once it is past `seen`: at once
    /// if it already is. Pass the position your last read was complete
    /// through, not a fresh [`position`](HeadWatch::position), or an append
    /// between the read and the wait goes unnoticed.
    pub fn wait_past(&self, seen: GlobalPosition) -> WaitPast {
        WaitPast {
            shared: self.shared.clone(),
            seen,
            registered: None,
        }
    }

    /// How many waiters are registered (for tests: a dropped wait must not
    /// leave its waker behind).
    pub fn waiters(&self) -> usize {
        self.shared.lock().waiters.len()
    }
}

impl fmt::Debug for HeadWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadWatch").finish_non_exhaustive()
    }
}

/// The future of [`HeadWatch::wait_past`]. Dropping it unregisters its waker.
#[must_use = "a wait does nothing unless awaited"]
pub struct WaitPast {
    shared: Arc<Mutex<State>>,
    seen: GlobalPosition,
    registered: Option<u64>,
}

impl Future for WaitPast {
    type Output = GlobalPosition;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<GlobalPosition> {
        let this = self.get_mut();
        let mut state = this.shared.lock();
        if state.head > this.seen {
            if let Some(id) = this.registered.take() {
                state.forget(id);
            }
            return Poll::Ready(state.head);
        }
        // Still at or below `seen`: (re-)register under the same lock that
        // publication takes, so a publication cannot slip in between the
        // check above and the registration.
        let existing = this
            .registered
            .and_then(|id| state.waiters.iter_mut().find(|(waiter, _)| *waiter == id));
        match existing {
            Some((_, waker)) => {
                if !waker.will_wake(cx.waker()) {
                    *waker = cx.waker().clone();
                }
            }
            None => {
                // First poll, or a publication took our waker but the head
                // is still not past `seen` (a lagging publication).
                let id = state.next_waiter;
                state.next_waiter += 1;
                state.waiters.push((id, cx.waker().clone()));
                this.registered = Some(id);
            }
        }
        Poll::Pending
    }
}

impl Drop for WaitPast {
    fn drop(&mut self) {
        if let Some(id) = self.registered.take() {
            self.shared.lock().forget(id);
        }
    }
}

impl fmt::Debug for WaitPast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitPast")
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}
