//! The view cache: folded stream views kept between executions, shared by
//! every command type that reads a stream through the same view.
//!
//! The rules, in one place for every driver:
//! - **Recorded** after every execution, for each stream it read through a
//!   view: the view at the version it was folded to. An entry is only ever
//!   replaced by one at a higher or equal version, so a slow execution that
//!   finishes late cannot put an older fold back.
//! - **Trusted** only as a starting point: the machine pins the append to
//!   the entry's version, so a stale entry costs a conflict and a read of
//!   the tail, never a wrong decision; a refusal or an empty decision made
//!   on an entry is confirmed by a read first. An entry is trusted to be a
//!   fold of *this* store's history because it was only ever made from this
//!   store's reads and commits (the store contract: acknowledged events are
//!   never lost or changed); a persisted snapshot, which can outlive or come
//!   from elsewhere, is checked against the event it ends on before use.
//! - **Not recorded** when the execution could not confirm it: a view that
//!   conflicted and was not read again, or whose commit showed the store
//!   behind it, comes back in `CommandMachine::stale_views` instead.
//! - **Invalidated** when a read shows the entry ahead of the store (the
//!   machine drops it and reads from the start; see
//!   [`crate::ExecutionStats::stale_views`]), or by hand.
//! - **Evicted** least-recently-used-ish (CLOCK) when the entries' bytes
//!   pass the bound: each eviction step is O(1) amortized.

use crate::view::{AnyView, StreamView, ViewKind};
use crate::{EventId, StreamId, StreamVersion};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

type Key = (StreamId, &'static str, u32);

/// Folded views by (stream, view name, view version), bounded by bytes.
///
/// ```
/// use eventcore::*;
/// # #[derive(serde::Serialize, serde::Deserialize)] enum E { Hit }
/// # impl Event for E {}
/// # #[derive(Clone, Default, Debug, PartialEq, serde::Serialize, serde::Deserialize)] struct Hits(u64);
/// # impl View for Hits { type Event = E; const NAME: &'static str = "hits"; fn apply(&mut self, _: &E) { self.0 += 1; } }
/// let mut cache = ViewCache::new(1 << 20);
/// let stream = StreamId::new("page-1")?;
/// let kind = ViewKind::of::<Hits>();
/// let at = |version| StreamView { stream: stream.clone(), kind, view: kind.empty(), last_event: None,
///     version: StreamVersion::new(version), base_version: StreamVersion::NONE };
/// cache.record(&at(4));
/// assert_eq!(cache.get(&stream, kind).map(|v| v.version.get()), Some(4));
/// cache.record(&at(2)); // older: ignored
/// assert_eq!(cache.get(&stream, kind).map(|v| v.version.get()), Some(4));
/// # Ok::<(), InvalidStreamId>(())
/// ```
#[derive(Debug)]
pub struct ViewCache {
    entries: BTreeMap<Key, Entry>,
    /// Keys in insertion order for the CLOCK hand; a key appears once while
    /// its entry exists (removed entries leave a tombstone that the hand
    /// skips).
    ring: VecDeque<Key>,
    max_bytes: usize,
    bytes: usize,
    stats: ViewCacheStats,
}

#[derive(Debug)]
struct Entry {
    version: StreamVersion,
    last_event: Option<EventId>,
    view: Arc<dyn AnyView>,
    bytes: usize,
    referenced: bool,
}

/// What a [`ViewCache`] did so far.
///
/// ```
/// let stats = eventcore::ViewCacheStats::default();
/// assert_eq!(stats.hits + stats.misses, 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ViewCacheStats {
    /// Lookups answered.
    pub hits: u64,
    /// Lookups not answered.
    pub misses: u64,
    /// Entries written (new or newer).
    pub recorded: u64,
    /// Records refused because the entry held was newer.
    pub older_ignored: u64,
    /// Entries dropped to stay within the bound.
    pub evictions: u64,
    /// Entries dropped because they proved stale or were invalidated.
    pub invalidations: u64,
}

impl ViewCache {
    /// A cache holding views of at most `max_bytes` (by
    /// [`crate::View::approximate_bytes`] plus the key).
    pub fn new(max_bytes: usize) -> Self {
        ViewCache {
            entries: BTreeMap::new(),
            ring: VecDeque::new(),
            max_bytes,
            bytes: 0,
            stats: ViewCacheStats::default(),
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Approximate bytes held: never more than [`ViewCache::capacity`]
    /// once a record returns.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The bound on [`ViewCache::bytes`] the cache was built with.
    ///
    /// ```
    /// let cache = eventcore::ViewCache::new(64 << 10);
    /// assert_eq!(cache.capacity(), 64 << 10);
    /// assert!(cache.bytes() <= cache.capacity());
    /// ```
    pub fn capacity(&self) -> usize {
        self.max_bytes
    }

    /// Counters so far.
    pub fn stats(&self) -> &ViewCacheStats {
        &self.stats
    }

    /// The cached view of `stream`, with the version it is folded to (its
    /// `base_version` is that version too: it is where an execution starts).
    pub fn get(&mut self, stream: &StreamId, kind: ViewKind) -> Option<StreamView> {
        let key = (stream.clone(), kind.name(), kind.version());
        match self.entries.get_mut(&key) {
            Some(entry) => {
                entry.referenced = true;
                self.stats.hits += 1;
                Some(StreamView {
                    stream: stream.clone(),
                    kind,
                    version: entry.version,
                    base_version: entry.version,
                    last_event: entry.last_event,
                    view: Arc::clone(&entry.view),
                })
            }
            None => {
                self.stats.misses += 1;
                None
            }
        }
    }

    /// The version cached for `stream`, without counting a lookup.
    pub fn version(&self, stream: &StreamId, kind: ViewKind) -> Option<StreamVersion> {
        self.entries
            .get(&(stream.clone(), kind.name(), kind.version()))
            .map(|e| e.version)
    }

    /// Keeps `view` as the fold of its stream up to its version, unless a
    /// newer fold is already held.
    pub fn record(&mut self, view: &StreamView) {
        let key = (view.stream.clone(), view.kind.name(), view.kind.version());
        let bytes = view.view.approximate_bytes() + view.stream.as_str().len() + std::mem::size_of::<Entry>();
        if let Some(entry) = self.entries.get_mut(&key) {
            if entry.version > view.version {
                self.stats.older_ignored += 1;
                return;
            }
            self.bytes = self.bytes - entry.bytes + bytes;
            entry.version = view.version;
            entry.last_event = view.last_event;
            entry.view = Arc::clone(&view.view);
            entry.bytes = bytes;
            entry.referenced = true;
        } else {
            self.bytes += bytes;
            self.entries.insert(
                key.clone(),
                Entry {
                    version: view.version,
                    last_event: view.last_event,
                    view: Arc::clone(&view.view),
                    bytes,
                    referenced: false,
                },
            );
            self.ring.push_back(key);
        }
        self.stats.recorded += 1;
        self.evict();
    }

    /// Records every view a finished execution hands back.
    pub fn record_all(&mut self, views: &[StreamView]) {
        for view in views {
            self.record(view);
        }
    }

    /// Drops the entry for `stream`, if any.
    pub fn invalidate(&mut self, stream: &StreamId, kind: ViewKind) {
        let key = (stream.clone(), kind.name(), kind.version());
        if let Some(entry) = self.entries.remove(&key) {
            self.bytes -= entry.bytes;
            self.stats.invalidations += 1;
        }
        self.compact_ring();
    }

    /// Drops every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.ring.clear();
        self.bytes = 0;
    }

    fn evict(&mut self) {
        // Each pass over a referenced entry clears its bit, so the hand
        // evicts within two sweeps; tombstones are skipped and dropped.
        while self.bytes > self.max_bytes {
            let Some(key) = self.ring.pop_front() else { break };
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            if entry.referenced {
                entry.referenced = false;
                self.ring.push_back(key);
                continue;
            }
            if let Some(entry) = self.entries.remove(&key) {
                self.bytes -= entry.bytes;
                self.stats.evictions += 1;
            }
        }
    }

    /// Keeps tombstones from piling up when entries are invalidated far more
    /// often than evicted: rebuild the ring once it is twice the entries.
    fn compact_ring(&mut self) {
        if self.ring.len() > 2 * self.entries.len() + 16 {
            let entries = &self.entries;
            self.ring.retain(|k| entries.contains_key(k));
        }
    }
}
