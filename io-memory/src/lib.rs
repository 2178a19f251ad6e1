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
    InvalidAppend, ReadAllRequest, ReadAllResponse, ReadRequest, ReadResponse, RecordedEvent, StoreError, StreamAppend,
    StreamCommit, StreamDeleted, StreamId, StreamSlice, StreamVersion,
};
use std::collections::{btree_map, BTreeMap};
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
    /// Every event in global order; the event at index `i` has position `i + 1`.
    log: Vec<RecordedEvent>,
    /// Per stream, the log indices of its events in version order. A
    /// `BTreeMap` so that nothing on the simulated path iterates in hash order.
    streams: BTreeMap<StreamId, Vec<usize>>,
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
            let stream_slot = self.streams.entry(entry.stream.clone());
            let actual = match &stream_slot {
                btree_map::Entry::Occupied(indices) => StreamVersion::new(indices.get().len() as u64),
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
                let commit = write_stream(&mut self.log, stream_slot.or_default(), entry, &request.metadata);
                if entry.tombstone {
                    self.deleted.insert(entry.stream.clone(), commit.last_version);
                }
                commits.push(commit);
            }
        } else {
            for entry in &request.streams {
                check_open(&self.deleted, entry)?;
                let actual = StreamVersion::new(self.streams.get(&entry.stream).map_or(0, Vec::len) as u64);
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
                let indices = self.streams.entry(entry.stream.clone()).or_default();
                let commit = write_stream(&mut self.log, indices, entry, &request.metadata);
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
                let skip = usize::try_from(read.after.get())
                    .unwrap_or(usize::MAX)
                    .min(indices.len());
                StreamSlice {
                    stream: read.stream.clone(),
                    head: StreamVersion::new(indices.len() as u64),
                    events: indices[skip..]
                        .iter()
                        .take(page)
                        .map(|&i| self.log[i].clone())
                        .collect(),
                    deleted_at: self.deleted.get(&read.stream).copied(),
                    removed_through: StreamVersion::NONE,
                }
            })
            .collect();
        Ok(ReadResponse { streams })
    }

    /// Reads the global log after a position, filtered, at most `limit`
    /// matching events.
    pub fn read_all(&self, request: &ReadAllRequest) -> Result<ReadAllResponse, StoreError> {
        let start = usize::try_from(request.after.get())
            .unwrap_or(usize::MAX)
            .min(self.log.len());
        let limit = request.limit.get() as usize;
        let mut events = Vec::new();
        let mut complete_through = GlobalPosition::new(self.log.len() as u64).max(request.after);
        for event in &self.log[start..] {
            if request.filter.matches(event) {
                events.push(event.clone());
                if events.len() == limit {
                    complete_through = event.position;
                    break;
                }
            }
        }
        Ok(ReadAllResponse {
            events,
            complete_through,
            removed: Vec::new(),
        })
    }

    /// The current version of a stream (0 if it does not exist).
    pub fn stream_version(&self, stream: &StreamId) -> StreamVersion {
        StreamVersion::new(self.streams.get(stream).map_or(0, Vec::len) as u64)
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

    /// The position of the last event (0 if the store is empty).
    pub fn last_position(&self) -> GlobalPosition {
        GlobalPosition::new(self.log.len() as u64)
    }

    /// Every event, in global order.
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

/// Writes one stream's events of an append (already checked) to the log and
/// the stream's index, and says where they landed.
fn write_stream(
    log: &mut Vec<RecordedEvent>,
    indices: &mut Vec<usize>,
    entry: &StreamAppend,
    metadata: &Arc<EventMetadata>,
) -> StreamCommit {
    let first_version = StreamVersion::new(indices.len() as u64 + 1);
    let mut positions = Vec::with_capacity(entry.events.len());
    for event in &entry.events {
        let position = GlobalPosition::new(log.len() as u64 + 1);
        let version = StreamVersion::new(indices.len() as u64 + 1);
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
        last_version: StreamVersion::new(indices.len() as u64),
        positions,
    }
}
