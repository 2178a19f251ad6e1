//! Folded command states kept between executions, for commands that opt in
//! with `Command::CACHE_STATE`.
//!
//! An entry is *taken* by the execution that uses it and put back, brought
//! up to date, only when that execution succeeds. So at most one execution
//! works from a given snapshot at a time, a failed execution can never leave
//! a stale entry behind, and the state needs no `Clone`. The append pins every
//! stream to the snapshot's versions, so a snapshot made stale by another
//! writer costs a conflict and an incremental re-read, never a wrong decision.

use crate::sync::{Mutex, MutexGuard};
use eventcore::{Command, StateSnapshot, StreamId};
use std::any::{Any, TypeId};
use std::collections::HashMap;

type Key = (TypeId, Vec<StreamId>);

/// Folded states of recently executed commands, keyed by command type and
/// declared streams, bounded by a number of entries (least recently used
/// first out).
///
/// ```
/// use eventcore_tokio::StateCache;
/// let cache = StateCache::new(1_000);
/// assert_eq!(cache.len(), 0);
/// ```
#[derive(Debug)]
pub struct StateCache {
    inner: Mutex<Inner>,
    max_entries: usize,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    clock: u64,
}

#[derive(Debug)]
struct Entry {
    snapshot: Box<dyn Any + Send>,
    last_used: u64,
}

impl StateCache {
    /// A cache of at most `max_entries` states.
    pub fn new(max_entries: usize) -> Self {
        StateCache {
            inner: Mutex::new(Inner::default()),
            max_entries,
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the snapshot for `C` over `streams`, if one is cached.
    pub fn take<C: Command>(&self, streams: &[StreamId]) -> Option<StateSnapshot<C::State>> {
        let key = (TypeId::of::<C>(), streams.to_vec());
        let entry = self.lock().entries.remove(&key)?;
        entry.snapshot.downcast::<StateSnapshot<C::State>>().ok().map(|b| *b)
    }

    /// Puts back the snapshot an execution of `C` produced.
    pub fn put<C: Command>(&self, snapshot: StateSnapshot<C::State>) {
        let key = (
            TypeId::of::<C>(),
            snapshot.streams.iter().map(|(s, _)| s.clone()).collect(),
        );
        let mut inner = self.lock();
        inner.clock += 1;
        let last_used = inner.clock;
        inner.entries.insert(
            key,
            Entry {
                snapshot: Box::new(snapshot),
                last_used,
            },
        );
        while inner.entries.len() > self.max_entries {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            inner.entries.remove(&oldest);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
    }
}
