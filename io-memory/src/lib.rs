//! # eventcore-memory
//!
//! The in-memory store: a plain synchronous data structure (no locks, no
//! async, no clock) that answers the store contract exactly as the
//! PostgreSQL store does. The tokio driver wraps it in a mutex; the
//! simulator uses it directly behind its fault layer.
//!
//! ```
//! use eventcore::*;
//! use eventcore_memory::MemoryStore;
//! use std::sync::Arc;
//!
//! let mut store = MemoryStore::new();
//! let stream = StreamId::new("account-1")?;
//! let meta = Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [1; 10]), Time::ZERO));
//! let event = NewEvent {
//!     event_id: EventId::v7(Time::ZERO, [2; 10]),
//!     event_type: EventType::new("Opened").expect("valid"),
//!     schema_version: 1,
//!     payload: Payload::from_trusted_json("null"),
//! };
//! let append = AppendRequest {
//!     metadata: meta,
//!     streams: vec![StreamAppend { stream: stream.clone(), expected: ExpectedVersion::NoStream, events: vec![event], tombstone: false }],
//! };
//! let receipt = store.append(&append)?;
//! assert_eq!(receipt.streams[0].last_version, StreamVersion::new(1));
//! assert_eq!(store.stream_version(&stream), StreamVersion::new(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use eventcore::{
    AppendLimits, AppendReceipt, AppendRequest, Codec, CommandId, Conflict, EventMetadata, GlobalPosition,
    InvalidAppend, ReadAllRequest, ReadAllResponse, ReadRequest, ReadResponse, RecordedEvent, RemovedRange,
    RetentionOptions, RetentionPlan, RetentionReport, StoreError, StreamAppend, StreamCommit, StreamDeleted, StreamId,
    StreamRetentionState, StreamSlice, StreamVersion, Time,
};
use std::collections::{btree_map, BTreeMap, BTreeSet};
use std::sync::Arc;

/// The in-memory store. Cloning copies the data (that is how the simulator
/// takes snapshots); every event is reference-counted inside, so a clone is
/// cheap-ish.
///
/// ```
/// use eventcore::*;
/// use eventcore_memory::MemoryStore;
/// let store = MemoryStore::new();
/// let read = ReadRequest::new([StreamId::new("nobody")?]);
/// assert_eq!(store.read(&read)?.streams[0].head, StreamVersion::NONE);
/// assert_eq!(store.last_position(), GlobalPosition::START);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    /// Every event still stored, in global order. Until a retention run
    /// removes events, the event at index `i` has position `i + 1`.
    log: Vec<RecordedEvent>,
    /// The position of the last event ever appended (removed or not).
    last_position: u64,
    /// Per stream, the log indices of its stored events in version order. A
    /// `BTreeMap` so that nothing on the simulated path iterates in hash order.
    streams: BTreeMap<StreamId, Vec<usize>>,
    /// Per stream, the version up to which a retention run removed its
    /// events; a stream's version is this plus its stored events.
    removed_through: BTreeMap<StreamId, StreamVersion>,
    /// Every range retention removed, in order of last position.
    removed: Vec<RemovedRange>,
    /// Removed events a run archived, in the order they were removed.
    archive: Vec<RecordedEvent>,
    /// Streams ended by a tombstone, with the version of their last event.
    deleted: BTreeMap<StreamId, StreamVersion>,
    /// Receipts of committed appends, by command id.
    commands: BTreeMap<CommandId, AppendReceipt>,
    limits: AppendLimits,
    /// The codec payloads are kept in.
    codec: Codec,
}

impl MemoryStore {
    /// An empty store with the default limits.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// An empty store with the given limits.
    pub fn with_limits(limits: AppendLimits) -> Self {
        MemoryStore {
            limits,
            ..MemoryStore::default()
        }
    }

    /// The limits this store enforces.
    pub fn limits(&self) -> &AppendLimits {
        &self.limits
    }

    /// Sets the codec the store keeps payloads in (the default is
    /// [`Codec::Json`]), which executors over it encode in. A JSON store
    /// converts MessagePack payloads to JSON; a MessagePack store keeps
    /// payloads in the codec they come in ([`AppendRequest::for_store`]).
    /// Events stored before keep their codec and read back as they are, as
    /// on PostgreSQL.
    ///
    /// ```
    /// use eventcore::Codec;
    /// use eventcore_memory::MemoryStore;
    /// let codec = *Codec::ALL.last().unwrap_or(&Codec::Json);
    /// assert_eq!(MemoryStore::new().with_codec(codec).codec(), codec);
    /// ```
    pub fn with_codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// Switches the codec of later appends (see [`MemoryStore::with_codec`]).
    pub fn set_codec(&mut self, codec: Codec) {
        self.codec = codec;
    }

    /// The codec payloads are kept in.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Appends atomically: every expected version is checked before anything
    /// is written, so a conflict on any stream leaves the store untouched.
    /// An append whose command id already committed returns the original
    /// receipt (flagged `deduplicated`) and writes nothing. An entry that
    /// writes a stream a tombstone ended is refused with
    /// [`StoreError::StreamDeleted`] (a pure version check of it still
    /// passes or conflicts as usual).
    pub fn append(&mut self, request: &AppendRequest) -> Result<AppendReceipt, StoreError> {
        request.validate(&self.limits)?;
        // One search of the command map: the vacant slot found here is
        // filled once the append commits (dropping it inserts nothing).
        let slot = match self.commands.entry(request.command_id()) {
            btree_map::Entry::Occupied(committed) => return Ok(committed.get().as_duplicate()),
            btree_map::Entry::Vacant(slot) => slot,
        };
        let converted = request.for_store(self.codec)?;
        let request = &*converted;
        for entry in &request.streams {
            for event in &entry.events {
                event
                    .payload
                    .check_storable()
                    .map_err(|reason| InvalidAppend::Rejected {
                        stream: entry.stream.clone(),
                        reason: format!("{} event: {reason}", event.event_type),
                    })?;
            }
        }
        let mut commits = Vec::new();
        if let [entry] = request.streams.as_slice() {
            // One stream (most appends): one search of the stream map serves
            // both the version check and the write. A vacant entry that is
            // not filled inserts nothing, so a conflict leaves no trace.
            check_open(&self.deleted, entry)?;
            let base = removed_base(&self.removed_through, &entry.stream);
            let stream_slot = self.streams.entry(entry.stream.clone());
            let actual = match &stream_slot {
                btree_map::Entry::Occupied(indices) => StreamVersion::new(base + indices.get().len() as u64),
                btree_map::Entry::Vacant(_) => StreamVersion::NONE,
            };
            if !entry.expected.matches(actual) {
                return Err(Conflict {
                    stream: entry.stream.clone(),
                    expected: entry.expected,
                    actual,
                }
                .into());
            }
            if !entry.events.is_empty() {
                let commit = write_stream(
                    &mut self.log,
                    &mut self.last_position,
                    (base, stream_slot.or_default()),
                    entry,
                    &request.metadata,
                );
                if entry.tombstone {
                    self.deleted.insert(entry.stream.clone(), commit.last_version);
                }
                commits.push(commit);
            }
        } else {
            for entry in &request.streams {
                check_open(&self.deleted, entry)?;
                let stored = self.streams.get(&entry.stream).map_or(0, Vec::len) as u64;
                let actual = StreamVersion::new(removed_base(&self.removed_through, &entry.stream) + stored);
                if !entry.expected.matches(actual) {
                    return Err(Conflict {
                        stream: entry.stream.clone(),
                        expected: entry.expected,
                        actual,
                    }
                    .into());
                }
            }
            for entry in request.streams.iter().filter(|e| !e.events.is_empty()) {
                let base = removed_base(&self.removed_through, &entry.stream);
                let indices = self.streams.entry(entry.stream.clone()).or_default();
                let commit = write_stream(
                    &mut self.log,
                    &mut self.last_position,
                    (base, indices),
                    entry,
                    &request.metadata,
                );
                if entry.tombstone {
                    self.deleted.insert(entry.stream.clone(), commit.last_version);
                }
                commits.push(commit);
            }
        }
        let receipt = AppendReceipt {
            command_id: request.command_id(),
            streams: commits,
            deduplicated: false,
        };
        slot.insert(receipt.clone());
        Ok(receipt)
    }

    /// Reads several streams at once, each after its requested version.
    pub fn read(&self, request: &ReadRequest) -> Result<ReadResponse, StoreError> {
        request.validate()?;
        let page = request.page_size.map_or(usize::MAX, |p| p.get() as usize);
        let streams = request
            .streams
            .iter()
            .map(|read| {
                let indices = self.streams.get(&read.stream).map(Vec::as_slice).unwrap_or(&[]);
                let base = removed_base(&self.removed_through, &read.stream);
                let skip = usize::try_from(read.after.get().saturating_sub(base))
                    .unwrap_or(usize::MAX)
                    .min(indices.len());
                StreamSlice {
                    stream: read.stream.clone(),
                    head: StreamVersion::new(base + indices.len() as u64),
                    events: indices[skip..]
                        .iter()
                        .take(page)
                        .map(|&i| self.log[i].clone())
                        .collect(),
                    deleted_at: self.deleted.get(&read.stream).copied(),
                    removed_through: StreamVersion::new(base),
                }
            })
            .collect();
        Ok(ReadResponse { streams })
    }

    /// Reads the global log after a position, filtered, at most `limit`
    /// matching events.
    pub fn read_all(&self, request: &ReadAllRequest) -> Result<ReadAllResponse, StoreError> {
        let start = self.log.partition_point(|e| e.position <= request.after);
        let limit = request.limit.get() as usize;
        let mut events = Vec::new();
        let mut complete_through = GlobalPosition::new(self.last_position).max(request.after);
        for event in &self.log[start..] {
            if request.filter.matches(event) {
                events.push(event.clone());
                if events.len() == limit {
                    complete_through = event.position;
                    break;
                }
            }
        }
        let from = self.removed.partition_point(|r| r.last_position <= request.after);
        let removed = self.removed[from..]
            .iter()
            .take_while(|r| r.last_position <= complete_through)
            .filter(|r| request.filter.matches_stream(&r.stream))
            .cloned()
            .collect();
        Ok(ReadAllResponse {
            events,
            complete_through,
            removed,
        })
    }

    /// The current version of a stream (0 if it does not exist).
    pub fn stream_version(&self, stream: &StreamId) -> StreamVersion {
        let stored = self.streams.get(stream).map_or(0, Vec::len) as u64;
        StreamVersion::new(removed_base(&self.removed_through, stream) + stored)
    }

    /// The version up to which a retention run removed `stream`'s events
    /// (`NONE` when it removed none).
    pub fn removed_through(&self, stream: &StreamId) -> StreamVersion {
        StreamVersion::new(removed_base(&self.removed_through, stream))
    }

    /// Every range retention removed, in order of last position.
    pub fn removed_ranges(&self) -> &[RemovedRange] {
        &self.removed
    }

    /// The events retention runs archived before removing them
    /// ([`RetentionOptions::archive`]), in the order they were removed.
    pub fn archived(&self) -> &[RecordedEvent] {
        &self.archive
    }

    /// Applies a retention plan at `now`: removes, per stream its policy
    /// governs, the prefix [`RetentionPolicy::removable`] allows, records a
    /// [`RemovedRange`] for it and (with [`RetentionOptions::archive`])
    /// keeps the removed events in [`MemoryStore::archived`]. Positions and
    /// versions of the events that stay do not change; a tombstoned stream
    /// removed whole stays tombstoned. A dry run reports and removes
    /// nothing.
    ///
    /// [`RetentionPolicy::removable`]: eventcore::RetentionPolicy::removable
    ///
    /// ```
    /// use eventcore::*;
    /// use eventcore_memory::MemoryStore;
    /// # use std::sync::Arc;
    /// let mut store = MemoryStore::new();
    /// let stream = StreamId::new("log-1")?;
    /// let event = |i: u8| NewEvent {
    ///     event_id: EventId::v7(Time::ZERO, [i; 10]),
    ///     event_type: EventType::new("Line").expect("valid"),
    ///     schema_version: 1,
    ///     payload: Payload::from_trusted_json("null"),
    /// };
    /// let meta = Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [1; 10]), Time::ZERO));
    /// store.append(&AppendRequest {
    ///     metadata: meta,
    ///     streams: vec![StreamAppend { stream: stream.clone(), expected: ExpectedVersion::Any, events: (0..5).map(event).collect(), tombstone: false }],
    /// })?;
    /// let plan = RetentionPlan::new([RetentionPolicy::new("log-").with_max_count(2)]);
    /// let report = store.apply_retention(&plan, Time::ZERO, RetentionOptions::default());
    /// assert_eq!(report.events_removed(), 3);
    /// let slice = &store.read(&ReadRequest::new([stream]))?.streams[0];
    /// assert_eq!((slice.removed_through.get(), slice.head.get(), slice.events.len()), (3, 5, 2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn apply_retention(&mut self, plan: &RetentionPlan, now: Time, options: RetentionOptions) -> RetentionReport {
        let mut ranges = Vec::new();
        for (stream, indices) in &self.streams {
            let Some(policy) = plan.policy_for(stream.as_str()) else {
                continue;
            };
            let state = StreamRetentionState {
                head: self.stream_version(stream),
                removed_through: self.removed_through(stream),
                deleted_at: self.deleted.get(stream).copied(),
            };
            let timestamps: Vec<Time> = indices.iter().map(|&i| self.log[i].metadata.timestamp).collect();
            let Some((through, reason)) = policy.removable(&state, &timestamps, now) else {
                continue;
            };
            let count = (through.get() - state.removed_through.get()) as usize;
            let (Some(&first), Some(&last)) = (indices.first(), indices.get(count.saturating_sub(1))) else {
                continue;
            };
            ranges.push(RemovedRange {
                stream: stream.clone(),
                first_version: state.removed_through.next(),
                last_version: through,
                first_position: self.log[first].position,
                last_position: self.log[last].position,
                reason,
                removed_at: now,
            });
        }
        let mut report = RetentionReport {
            dry_run: options.dry_run,
            batches: u64::from(!options.dry_run && !ranges.is_empty()),
            ..RetentionReport::default()
        };
        if !options.dry_run && !ranges.is_empty() {
            let mut gone = BTreeSet::new();
            for range in &ranges {
                let indices = self.streams.get(&range.stream).map(Vec::as_slice).unwrap_or(&[]);
                gone.extend(indices.iter().take(range.events() as usize).copied());
                self.removed_through.insert(range.stream.clone(), range.last_version);
            }
            let old = std::mem::take(&mut self.log);
            for (i, event) in old.into_iter().enumerate() {
                if !gone.contains(&i) {
                    self.log.push(event);
                } else if options.archive {
                    report.archived += 1;
                    self.archive.push(event);
                }
            }
            // Indices moved down: rebuild every stream's from the log.
            for indices in self.streams.values_mut() {
                indices.clear();
            }
            for (i, event) in self.log.iter().enumerate() {
                if let Some(indices) = self.streams.get_mut(&event.stream_id) {
                    indices.push(i);
                }
            }
            self.removed.extend(ranges.iter().cloned());
            self.removed.sort_by_key(|r| r.last_position);
        }
        report.ranges = ranges;
        report
    }

    /// The version at which a tombstone ended `stream`, if one did.
    ///
    /// ```
    /// use eventcore::StreamId;
    /// use eventcore_memory::MemoryStore;
    /// assert_eq!(MemoryStore::new().deleted_at(&StreamId::new("open")?), None);
    /// # Ok::<(), eventcore::InvalidStreamId>(())
    /// ```
    pub fn deleted_at(&self, stream: &StreamId) -> Option<StreamVersion> {
        self.deleted.get(stream).copied()
    }

    /// The position of the last event appended (0 if the store is empty).
    pub fn last_position(&self) -> GlobalPosition {
        GlobalPosition::new(self.last_position)
    }

    /// Every event still stored, in global order.
    pub fn events(&self) -> &[RecordedEvent] {
        &self.log
    }

    /// The receipt of the append that committed `command_id`, if any.
    pub fn receipt(&self, command_id: &CommandId) -> Option<&AppendReceipt> {
        self.commands.get(command_id)
    }

    /// Every stream id, in order.
    pub fn stream_ids(&self) -> impl Iterator<Item = &StreamId> {
        self.streams.keys()
    }
}

/// Refuses an entry that writes a stream a tombstone ended.
fn check_open(deleted: &BTreeMap<StreamId, StreamVersion>, entry: &StreamAppend) -> Result<(), StreamDeleted> {
    match deleted.get(&entry.stream) {
        Some(&deleted_at) if !entry.events.is_empty() => Err(StreamDeleted {
            stream: entry.stream.clone(),
            deleted_at,
        }),
        _ => Ok(()),
    }
}

/// The version up to which `stream`'s events were removed, as a number.
fn removed_base(removed: &BTreeMap<StreamId, StreamVersion>, stream: &StreamId) -> u64 {
    removed.get(stream).map_or(0, |v| v.get())
}

/// Writes one stream's events of an append (already checked) to the log and
/// the stream's index (`base`: its versions removed, `indices`: its stored
/// events), and says where they landed.
fn write_stream(
    log: &mut Vec<RecordedEvent>,
    last_position: &mut u64,
    (base, indices): (u64, &mut Vec<usize>),
    entry: &StreamAppend,
    metadata: &Arc<EventMetadata>,
) -> StreamCommit {
    let first_version = StreamVersion::new(base + indices.len() as u64 + 1);
    let mut positions = Vec::with_capacity(entry.events.len());
    for event in &entry.events {
        *last_position += 1;
        let position = GlobalPosition::new(*last_position);
        let version = StreamVersion::new(base + indices.len() as u64 + 1);
        indices.push(log.len());
        log.push(RecordedEvent {
            event_id: event.event_id,
            stream_id: entry.stream.clone(),
            version,
            position,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            payload: event.payload.clone(),
            metadata: metadata.clone(),
        });
        positions.push(position);
    }
    StreamCommit {
        stream: entry.stream.clone(),
        first_version,
        last_version: StreamVersion::new(base + indices.len() as u64),
        positions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventcore::{EventId, EventType, ExpectedVersion, NewEvent, Payload, RetentionPolicy, StreamRead};

    fn append(store: &mut MemoryStore, stream: &StreamId, count: u8) {
        let metadata = Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [count; 10]), Time::ZERO));
        let events = (0..count)
            .map(|i| NewEvent {
                event_id: EventId::v7(Time::ZERO, [i; 10]),
                event_type: EventType::new("Line").expect("valid"),
                schema_version: 1,
                payload: Payload::from_trusted_json("null"),
            })
            .collect();
        let request = AppendRequest {
            metadata,
            streams: vec![StreamAppend {
                stream: stream.clone(),
                expected: ExpectedVersion::Any,
                events,
                tombstone: false,
            }],
        };
        store.append(&request).expect("append");
    }

    #[test]
    fn the_archive_holds_exactly_the_removed_events_and_a_dry_run_touches_nothing() {
        let mut store = MemoryStore::new();
        let (a, b) = (
            StreamId::new("a-1").expect("valid"),
            StreamId::new("b-1").expect("valid"),
        );
        append(&mut store, &a, 3);
        append(&mut store, &b, 2);
        let before = store.events().to_vec();
        let plan = RetentionPlan::new([RetentionPolicy::new("a-").with_max_count(1)]);

        let dry = store.apply_retention(&plan, Time::ZERO, RetentionOptions::default().dry_run().archived());
        assert_eq!(dry.events_removed(), 2);
        assert_eq!(store.events(), before.as_slice(), "a dry run removes nothing");
        assert!(store.archived().is_empty() && store.removed_ranges().is_empty());

        let report = store.apply_retention(&plan, Time::ZERO, RetentionOptions::default().archived());
        assert_eq!(report.archived, 2);
        assert_eq!(store.archived(), &before[..2], "exactly the removed events, in order");
        assert_eq!(
            store.last_position(),
            GlobalPosition::new(5),
            "positions are not reused"
        );
        append(&mut store, &a, 1);
        let read = ReadRequest {
            streams: vec![StreamRead {
                stream: a.clone(),
                after: StreamVersion::NONE,
            }],
            page_size: None,
        };
        let slice = &store.read(&read).expect("read").streams[0];
        let versions: Vec<u64> = slice.events.iter().map(|e| e.version.get()).collect();
        assert_eq!(versions, vec![3, 4]);
        assert_eq!(slice.events[1].position, GlobalPosition::new(6));
    }
}
