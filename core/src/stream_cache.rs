//! A bounded cache of recently used streams' events, so that an execution
//! can skip reading streams its driver has seen before; and
//! [`StreamCacheUse`], the steps a driver takes with it around one
//! execution. Both live here, sans IO, so that the tokio executor and the
//! simulator run the same cache code along the same paths.
//!
//! Correctness never depends on the cache: events are immutable once
//! committed, so a cached prefix of a stream is always true, only possibly
//! short. The append pins each stream to the cached version; if the stream
//! moved on, the append conflicts and the machine re-reads just the newer
//! events. What the cache saves is the read round trip in the common case
//! where this process is the stream's only writer.

use crate::store::{AppendReceipt, AppendRequest, ReadRequest, ReadResponse, StoreError};
use crate::{Command, CommandMachine, RecordedEvent, StreamId, StreamVersion};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A stream's events are kept as shared chunks. New events go at the end of
/// the newest chunk in place when no snapshot shares it (the usual case), or
/// into a new chunk; then chunks are merged until each is at least this many
/// times as long as the next (newer) one, moving events out of chunks no
/// snapshot shares and cloning only those still shared. So a stream of `n`
/// events has at most about log2(n) chunks (a snapshot stays a handful of
/// reference-count bumps) and an event is cloned at most O(log n) times,
/// usually never. Merging everything whenever a fixed chunk count was
/// reached instead copied the whole stream every few appends: O(n) per
/// append on a long stream.
const CHUNK_GROWTH: usize = 2;

/// Events of recently used streams, bounded by a total event count (and
/// by as many streams: a stream read empty is cached too, holding no
/// events) and evicted least-recently-used first. Single-owner; a driver
/// that shares it between tasks wraps it in a lock
/// (`eventcore_tokio::StreamCache`).
///
/// ```
/// use eventcore::*;
/// let mut cache = CachedStreams::new(10_000);
/// let stream = StreamId::new("account-1")?;
/// let read = ReadRequest::new([stream.clone()]);
/// let response = ReadResponse { streams: vec![StreamSlice { stream: stream.clone(), head: StreamVersion::NONE, events: vec![], deleted_at: None, removed_through: StreamVersion::NONE }] };
/// cache.record_read(&read, &response);
/// assert_eq!((cache.len(), cache.cached_events()), (1, 0), "known to be empty");
/// assert!(cache.prefix(&stream).is_some());
/// # Ok::<(), InvalidStreamId>(())
/// ```
#[derive(Debug)]
pub struct CachedStreams {
    entries: BTreeMap<StreamId, Entry>,
    total: usize,
    clock: u64,
    max_events: usize,
}

#[derive(Debug)]
struct Entry {
    chunks: Vec<Arc<Vec<RecordedEvent>>>,
    head: StreamVersion,
    last_used: u64,
}

impl CachedStreams {
    /// A cache holding at most `max_events` events in all, of at most
    /// `max_events` streams.
    pub fn new(max_events: usize) -> Self {
        CachedStreams {
            entries: BTreeMap::new(),
            total: 0,
            clock: 0,
            max_events,
        }
    }

    /// Events held in all: never more than [`CachedStreams::capacity`] once
    /// a `record_…` call returns.
    pub fn cached_events(&self) -> usize {
        self.total
    }

    /// Streams held, including streams read empty: never more than
    /// [`CachedStreams::capacity`] once a `record_…` call returns.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no stream is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bound the cache was built with: the most events held in all, and
    /// the most streams.
    pub fn capacity(&self) -> usize {
        self.max_events
    }

    /// The cached prefix of `stream` (from version 1), as shared chunks;
    /// marks the stream as recently used.
    pub fn prefix(&mut self, stream: &StreamId) -> Option<Vec<Arc<Vec<RecordedEvent>>>> {
        self.clock += 1;
        let clock = self.clock;
        let entry = self.entries.get_mut(stream)?;
        entry.last_used = clock;
        Some(entry.chunks.clone())
    }

    /// Learns from a read the driver passed through.
    pub fn record_read(&mut self, request: &ReadRequest, response: &ReadResponse) {
        for (asked, slice) in request.streams.iter().zip(&response.streams) {
            if asked.stream == slice.stream {
                self.extend(&slice.stream, asked.after, &slice.events);
            }
        }
        self.evict();
    }

    /// Learns from an append that committed. A deduplicated receipt answers
    /// an earlier request whose events may differ from this one's, so it
    /// only invalidates.
    pub fn record_append(&mut self, request: &AppendRequest, receipt: &AppendReceipt) {
        for entry in request.streams.iter().filter(|e| !e.events.is_empty()) {
            let commit = receipt.streams.iter().find(|c| c.stream == entry.stream);
            let usable = commit.filter(|c| {
                !receipt.deduplicated && c.positions.len() == entry.events.len() && c.first_version.get() >= 1
            });
            let Some(commit) = usable else {
                self.remove(&entry.stream);
                continue;
            };
            let recorded: Vec<RecordedEvent> = entry
                .events
                .iter()
                .zip(&commit.positions)
                .enumerate()
                .map(|(i, (event, position))| RecordedEvent {
                    event_id: event.event_id,
                    stream_id: entry.stream.clone(),
                    version: StreamVersion::new(commit.first_version.get() + i as u64),
                    position: *position,
                    event_type: event.event_type.clone(),
                    schema_version: event.schema_version,
                    payload: event.payload.clone(),
                    metadata: request.metadata.clone(),
                })
                .collect();
            let after = StreamVersion::new(commit.first_version.get() - 1);
            self.extend_owned(&entry.stream, after, recorded);
        }
        self.evict();
    }

    /// Forgets `stream`, so the next execution reads it whole.
    pub fn invalidate(&mut self, stream: &StreamId) {
        self.remove(stream);
    }

    /// Adds `events` (the stream's events after version `after`) to the
    /// cached prefix when they continue it; anything that would leave a gap
    /// drops the entry instead.
    fn extend(&mut self, stream: &StreamId, after: StreamVersion, events: &[RecordedEvent]) {
        let Some(head) = self.continued_head(stream, after) else {
            return;
        };
        // Only what is new is cloned: a read usually returns events the
        // cache already holds.
        let fresh: Vec<RecordedEvent> = events.iter().filter(|e| e.version > head).cloned().collect();
        self.push(stream, head, fresh);
    }

    /// [`CachedStreams::extend`] with events the caller built for the cache (an
    /// append's), taken as they are instead of cloned once more.
    fn extend_owned(&mut self, stream: &StreamId, after: StreamVersion, mut events: Vec<RecordedEvent>) {
        let Some(head) = self.continued_head(stream, after) else {
            return;
        };
        events.retain(|e| e.version > head);
        self.push(stream, head, events);
    }

    /// The cached head of `stream` when events after `after` can continue
    /// it (`NONE` for a stream not cached yet, read from the start); `None`
    /// when they cannot, dropping an entry they would leave a gap in.
    fn continued_head(&mut self, stream: &StreamId, after: StreamVersion) -> Option<StreamVersion> {
        self.clock += 1;
        let head = match self.entries.get(stream) {
            Some(entry) => entry.head,
            None if after.is_none() => StreamVersion::NONE,
            None => return None,
        };
        if after > head {
            self.remove(stream);
            return None;
        }
        Some(head)
    }

    /// Appends `fresh` (the events after `head`) as a new chunk, merging
    /// chunks as [`CHUNK_GROWTH`] says.
    fn push(&mut self, stream: &StreamId, head: StreamVersion, fresh: Vec<RecordedEvent>) {
        let clock = self.clock;
        let contiguous = fresh
            .iter()
            .enumerate()
            .all(|(i, e)| e.version.get() == head.get() + 1 + i as u64);
        if !contiguous {
            self.remove(stream);
            return;
        }
        let added = fresh.len();
        let entry = self.entries.entry(stream.clone()).or_insert_with(|| Entry {
            chunks: Vec::new(),
            head: StreamVersion::NONE,
            last_used: clock,
        });
        entry.last_used = clock;
        if let Some(last) = fresh.last() {
            entry.head = last.version;
            match entry.chunks.last_mut().and_then(Arc::get_mut) {
                // No snapshot shares the newest chunk: it can grow in place.
                Some(newest) => newest.extend(fresh),
                None => entry.chunks.push(Arc::new(fresh)),
            }
        }
        loop {
            let n = entry.chunks.len();
            if n < 2 || entry.chunks[n - 2].len() >= CHUNK_GROWTH * entry.chunks[n - 1].len() {
                break;
            }
            let newer = entry.chunks.remove(n - 1);
            let older = entry.chunks.remove(n - 2);
            let mut merged = Arc::try_unwrap(older).unwrap_or_else(|shared| shared.as_ref().clone());
            match Arc::try_unwrap(newer) {
                Ok(newer) => merged.extend(newer),
                Err(shared) => merged.extend(shared.iter().cloned()),
            }
            entry.chunks.push(Arc::new(merged));
        }
        self.total += added;
    }

    fn remove(&mut self, stream: &StreamId) {
        if let Some(entry) = self.entries.remove(stream) {
            self.total -= entry.head.get() as usize;
        }
    }

    /// Evicts the least recently used streams until at most `max_events`
    /// events and at most `max_events` streams are held. Bounding the
    /// streams too matters for streams read empty, which hold no events: a
    /// bound on events alone let them pile up without limit while the
    /// events stayed below it.
    fn evict(&mut self) {
        let max_events = self.max_events;
        while self.total > max_events || self.entries.len() > max_events {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(s, _)| s.clone())
            else {
                return;
            };
            self.remove(&oldest);
        }
    }
}

/// What a driver does with a [`CachedStreams`] around one execution, as the
/// tokio executor does it — so that the simulator, running the same steps,
/// explores every path the executor takes (fresh command ids and
/// re-executions with a known id alike).
///
/// Prime the declared streams before the first poll, learn from every read
/// and every committed append, and when the execution fails, forget the
/// streams that conflicted: a retry would have re-read (and so refreshed)
/// them, an execution that gave up did not, and the next one must not be
/// primed with the same stale version again.
///
/// ```
/// use eventcore::*;
/// let mut cache = CachedStreams::new(1_000);
/// let mut using = StreamCacheUse::default();
/// // … around the machine's steps: using.read(&mut cache, &request, &result), using.append(…) …
/// using.finish(&mut cache, false);
/// assert!(cache.is_empty());
/// ```
#[derive(Debug, Default)]
pub struct StreamCacheUse {
    conflicted: Vec<StreamId>,
}

impl StreamCacheUse {
    /// Primes every stream `machine` declares from `cache`; returns how many
    /// streams were primed. A driver that holds the cache behind a lock may
    /// take [`CachedStreams::prefix`] under the lock and prime outside it.
    pub fn prime<C: Command>(cache: &mut CachedStreams, machine: &mut CommandMachine<C>) -> usize {
        let declared: Vec<StreamId> = machine.streams().cloned().collect();
        let mut primed = 0;
        for stream in declared {
            if let Some(chunks) = cache.prefix(&stream) {
                if machine.prime(&stream, chunks.iter().flat_map(|chunk| chunk.iter())) {
                    primed += 1;
                }
            }
        }
        primed
    }

    /// After a read's answer, before the machine sees it.
    pub fn read(
        &mut self,
        cache: &mut CachedStreams,
        request: &ReadRequest,
        result: &Result<ReadResponse, StoreError>,
    ) {
        if let Ok(response) = result {
            cache.record_read(request, response);
        }
    }

    /// After an append's answer, before the machine sees it.
    pub fn append(
        &mut self,
        cache: &mut CachedStreams,
        request: &AppendRequest,
        result: &Result<AppendReceipt, StoreError>,
    ) {
        match result {
            Ok(receipt) => cache.record_append(request, receipt),
            Err(StoreError::Conflict(conflict)) => self.conflicted.push(conflict.stream.clone()),
            Err(_) => {}
        }
    }

    /// When the execution ended; `failed`: it ended in an error. Returns
    /// how many streams it forgot.
    pub fn finish(self, cache: &mut CachedStreams, failed: bool) -> usize {
        if !failed {
            return 0;
        }
        for stream in &self.conflicted {
            cache.invalidate(stream);
        }
        self.conflicted.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CommandId, EventId, EventMetadata, EventType, GlobalPosition, Payload, Time};

    fn event(stream: &StreamId, version: u64) -> RecordedEvent {
        RecordedEvent {
            event_id: EventId::v7(Time::ZERO, [0; 10]),
            stream_id: stream.clone(),
            version: StreamVersion::new(version),
            position: GlobalPosition::new(version),
            event_type: EventType::new("E").expect("valid"),
            schema_version: 1,
            payload: Payload::from_trusted_json("null"),
            metadata: Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [1; 10]), Time::ZERO)),
        }
    }

    fn empty_read(stream: &StreamId) -> (ReadRequest, ReadResponse) {
        let request = ReadRequest::new([stream.clone()]);
        let response = ReadResponse {
            streams: vec![crate::StreamSlice {
                stream: stream.clone(),
                head: StreamVersion::NONE,
                events: Vec::new(),
                deleted_at: None,
                removed_through: StreamVersion::NONE,
            }],
        };
        (request, response)
    }

    #[test]
    fn streams_read_empty_are_bounded_too() {
        let mut cache = CachedStreams::new(10);
        for n in 0..1_000 {
            let stream = StreamId::new(format!("empty-{n}")).expect("valid");
            let (request, response) = empty_read(&stream);
            cache.record_read(&request, &response);
            assert!(
                cache.len() <= 10,
                "{} streams held after {} empty reads",
                cache.len(),
                n + 1
            );
        }
        assert_eq!(cache.cached_events(), 0);
        let newest = StreamId::new("empty-999").expect("valid");
        assert_eq!(
            cache.prefix(&newest).map(|chunks| chunks.len()),
            Some(0),
            "the most recent empty read is still cached, as empty"
        );
        let oldest = StreamId::new("empty-0").expect("valid");
        assert!(cache.prefix(&oldest).is_none(), "the oldest was evicted");
    }

    #[test]
    fn a_long_stream_stays_in_a_few_chunks_in_order() {
        let stream = StreamId::new("s").expect("valid");
        let mut inner = CachedStreams::new(usize::MAX);
        for version in 1..=1_000 {
            let after = StreamVersion::new(version - 1);
            inner.extend_owned(&stream, after, vec![event(&stream, version)]);
        }
        let chunks = &inner.entries[&stream].chunks;
        assert_eq!(chunks.len(), 1, "nothing shared the chunks: one grows in place");
        let versions: Vec<u64> = chunks.iter().flat_map(|c| c.iter()).map(|e| e.version.get()).collect();
        assert_eq!(versions, (1..=1_000).collect::<Vec<_>>());
        assert_eq!(inner.total, 1_000);
    }

    #[test]
    fn a_snapshot_never_changes_and_shared_chunks_stay_few() {
        let stream = StreamId::new("s").expect("valid");
        let mut inner = CachedStreams::new(usize::MAX);
        let mut held = Vec::new();
        for version in 1..=1_000 {
            let after = StreamVersion::new(version - 1);
            inner.extend_owned(&stream, after, vec![event(&stream, version)]);
            // A snapshot taken after every append, all kept alive.
            let snapshot = inner.entries[&stream].chunks.clone();
            held.push((version, snapshot));
        }
        let chunks = &inner.entries[&stream].chunks;
        assert!(chunks.len() <= 11, "{} chunks for 1,000 events", chunks.len());
        for (len, snapshot) in held {
            let versions: Vec<u64> = snapshot
                .iter()
                .flat_map(|c| c.iter())
                .map(|e| e.version.get())
                .collect();
            assert_eq!(
                versions,
                (1..=len).collect::<Vec<_>>(),
                "a snapshot is what it was when taken"
            );
        }
    }
}
