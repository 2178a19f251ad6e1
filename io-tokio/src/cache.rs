//! The executor's stream cache: [`eventcore::CachedStreams`] behind a lock,
//! so that concurrent executions share it. The cache's logic (what a read
//! or an append teaches it, eviction) and the steps an execution takes with
//! it ([`eventcore::StreamCacheUse`]) live in the sans-IO core, where the
//! simulator runs the same code.

use crate::sync::{Mutex, MutexGuard};
use eventcore::{AppendReceipt, AppendRequest, CachedStreams, ReadRequest, ReadResponse, RecordedEvent, StreamId};
use std::sync::Arc;

/// Events of recently used streams, bounded by a total event count (and
/// by as many streams: a stream read empty is cached too, holding no
/// events) and evicted least-recently-used first. Shared by every
/// execution of one executor.
///
/// ```
/// use eventcore_tokio::StreamCache;
/// let cache = StreamCache::new(10_000);
/// assert_eq!(cache.cached_events(), 0);
/// assert_eq!(cache.capacity(), 10_000);
/// ```
#[derive(Debug)]
pub struct StreamCache {
    inner: Mutex<CachedStreams>,
    max_events: usize,
}

impl StreamCache {
    /// A cache holding at most `max_events` events in all, of at most
    /// `max_events` streams.
    pub fn new(max_events: usize) -> Self {
        StreamCache {
            inner: Mutex::new(CachedStreams::new(max_events)),
            max_events,
        }
    }

    /// Events held in all: never more than [`StreamCache::capacity`] once a
    /// `record_…` call returns.
    pub fn cached_events(&self) -> usize {
        self.lock().cached_events()
    }

    /// Streams held, including streams read empty: never more than
    /// [`StreamCache::capacity`] once a `record_…` call returns.
    ///
    /// ```
    /// use eventcore_tokio::StreamCache;
    /// let cache = StreamCache::new(100);
    /// assert_eq!(cache.len(), 0);
    /// assert!(cache.len() <= cache.capacity());
    /// ```
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no stream is held.
    ///
    /// ```
    /// assert!(eventcore_tokio::StreamCache::new(100).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The bound the cache was built with: the most events held in all, and
    /// the most streams.
    ///
    /// ```
    /// assert_eq!(eventcore_tokio::StreamCache::new(2_000).capacity(), 2_000);
    /// ```
    pub fn capacity(&self) -> usize {
        self.max_events
    }

    /// The cached prefix of `stream` (from version 1), as shared chunks.
    /// Each call counts as a hit or a miss
    /// (`eventcore_stream_cache_{hits,misses}_total`).
    pub fn snapshot(&self, stream: &StreamId) -> Option<Vec<Arc<Vec<RecordedEvent>>>> {
        let prefix = self.lock().prefix(stream);
        crate::metrics::stream_cache(prefix.is_some());
        prefix
    }

    /// Learns from a read the executor passed through.
    pub fn record_read(&self, request: &ReadRequest, response: &ReadResponse) {
        self.lock().record_read(request, response);
    }

    /// Learns from an append that committed. A deduplicated receipt answers
    /// an earlier request whose events may differ from this one's, so it
    /// only invalidates.
    pub fn record_append(&self, request: &AppendRequest, receipt: &AppendReceipt) {
        self.lock().record_append(request, receipt);
    }

    /// Forgets `stream`, so the next command reads it whole.
    pub fn invalidate(&self, stream: &StreamId) {
        self.lock().invalidate(stream);
    }

    /// The cache itself, for one of [`eventcore::StreamCacheUse`]'s steps.
    pub(crate) fn lock(&self) -> MutexGuard<'_, CachedStreams> {
        // Every mutation leaves the map consistent before it can panic, so
        // the shim's lock ignores poisoning.
        self.inner.lock()
    }
}
