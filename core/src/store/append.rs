//! Appending: the atomic multi-stream append, the limits every store
//! enforces, and the receipt it answers with.

use super::read::first_duplicate;
use super::InvalidAppend;
use crate::{Codec, EventMetadata, ExpectedVersion, GlobalPosition, NewEvent, StreamId, StreamVersion};
use std::borrow::Cow;
use std::sync::Arc;

/// Append events to several streams atomically.
///
/// Every entry carries an expected version. An entry with no events is a pure
/// version check: the append commits only if that stream is still at the
/// version the command's decision was based on.
///
/// ```
/// use eventcore::*;
/// use std::sync::Arc;
/// let order = StreamId::new("order-1")?;
/// let product = StreamId::new("product-7")?;
/// let meta = Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [0; 10]), Time::ZERO));
/// let cancelled = NewEvent {
///     event_id: EventId::v7(Time::ZERO, [1; 10]),
///     event_type: EventType::new("Cancelled").expect("valid"),
///     schema_version: 1,
///     payload: Payload::from_trusted_json("{}"),
/// };
/// let append = AppendRequest {
///     metadata: meta,
///     streams: vec![
///         StreamAppend { stream: order, expected: ExpectedVersion::Exact(StreamVersion::new(2)), events: vec![cancelled], tombstone: false },
///         // Read but not written: still pinned, so the decision is checked whole.
///         StreamAppend { stream: product, expected: ExpectedVersion::Exact(StreamVersion::new(9)), events: vec![], tombstone: false },
///     ],
/// };
/// assert_eq!(append.event_count(), 1);
/// assert!(append.validate(&AppendLimits::default()).is_ok());
/// # Ok::<(), InvalidStreamId>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendRequest {
    /// Shared by every event; `metadata.command_id` is the idempotency key.
    pub metadata: Arc<EventMetadata>,
    /// One entry per stream, each stream at most once.
    pub streams: Vec<StreamAppend>,
}

impl AppendRequest {
    /// The idempotency key.
    pub fn command_id(&self) -> crate::CommandId {
        self.metadata.command_id
    }

    /// Total number of events across all streams.
    pub fn event_count(&self) -> usize {
        self.streams.iter().map(|s| s.events.len()).sum()
    }

    /// Checks everything that can be checked without looking at stored data.
    ///
    /// ```
    /// use eventcore::*;
    /// use std::sync::Arc;
    /// let meta = Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [0; 10]), Time::ZERO));
    /// let empty = AppendRequest { metadata: meta, streams: vec![] };
    /// assert_eq!(empty.validate(&AppendLimits::default()), Err(InvalidAppend::NoStreams));
    /// ```
    pub fn validate(&self, limits: &AppendLimits) -> Result<(), InvalidAppend> {
        if self.streams.is_empty() {
            return Err(InvalidAppend::NoStreams);
        }
        if self.streams.len() > limits.max_streams {
            return Err(InvalidAppend::TooManyStreams {
                count: self.streams.len(),
                max: limits.max_streams,
            });
        }
        let total = self.event_count();
        if total == 0 {
            return Err(InvalidAppend::NoEvents);
        }
        if total > limits.max_events {
            return Err(InvalidAppend::TooManyEvents {
                count: total,
                max: limits.max_events,
            });
        }
        // Entries are checked in order, each for repeating an earlier stream
        // and then for its payload sizes: the first problem is the one
        // reported.
        let duplicate = first_duplicate(self.streams.iter().map(|entry| &entry.stream));
        for (i, entry) in self.streams.iter().enumerate() {
            if duplicate == Some(i) {
                return Err(InvalidAppend::DuplicateStream {
                    stream: entry.stream.clone(),
                });
            }
            if entry.tombstone && entry.events.is_empty() {
                return Err(InvalidAppend::TombstoneWithoutEvents {
                    stream: entry.stream.clone(),
                });
            }
            for event in &entry.events {
                if event.payload.len() > limits.max_payload_bytes {
                    return Err(InvalidAppend::PayloadTooLarge {
                        stream: entry.stream.clone(),
                        event_type: event.event_type.clone(),
                        size: event.payload.len(),
                        max: limits.max_payload_bytes,
                    });
                }
            }
        }
        Ok(())
    }

    /// The request as a store whose codec is `codec` keeps it. A JSON store
    /// holds JSON only: a MessagePack payload is replaced by its JSON
    /// rendering, which decodes to the same event. A MessagePack store keeps
    /// every payload in the codec it arrives in, JSON included: converting
    /// JSON to MessagePack would lose what only the JSON decoder knows (a
    /// map's integer keys, which JSON writes as strings, decode back into
    /// integers from JSON text but not from MessagePack). Usually nothing
    /// changes and the request itself is returned: executors encode in their
    /// store's codec ([`crate::CommandMachine::with_codec`]). When a payload
    /// is converted, every payload is first checked with
    /// [`crate::Payload::check_storable`], in request order, so a payload no
    /// store could hold is refused as a store refuses it:
    /// [`InvalidAppend::Rejected`] naming its stream.
    ///
    /// ```
    /// use eventcore::*;
    /// use std::borrow::Cow;
    /// use std::sync::Arc;
    /// let meta = Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [0; 10]), Time::ZERO));
    /// let event = |payload: Payload| NewEvent {
    ///     event_id: EventId::v7(Time::ZERO, [1; 10]),
    ///     event_type: EventType::new("Noted").expect("valid"),
    ///     schema_version: 1,
    ///     payload,
    /// };
    /// let json = Payload::from_trusted_json(r#"{"n":1}"#);
    /// let append = AppendRequest {
    ///     metadata: meta,
    ///     streams: vec![StreamAppend {
    ///         stream: StreamId::new("s")?,
    ///         expected: ExpectedVersion::Any,
    ///         events: Codec::ALL.iter().map(|c| event(json.to_codec(*c).expect("converts"))).collect(),
    ///         tombstone: false,
    ///     }],
    /// };
    /// let stored = append.for_store(Codec::Json)?;
    /// assert!(stored.streams[0].events.iter().all(|e| e.payload == json), "a JSON store holds JSON only");
    /// for codec in Codec::ALL.iter().filter(|c| **c != Codec::Json) {
    ///     assert!(matches!(append.for_store(*codec)?, Cow::Borrowed(_)), "kept as they come");
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn for_store(&self, codec: Codec) -> Result<Cow<'_, AppendRequest>, InvalidAppend> {
        let converts = |event: &NewEvent| codec == Codec::Json && event.payload.codec() != Codec::Json;
        if !self.streams.iter().flat_map(|entry| &entry.events).any(converts) {
            return Ok(Cow::Borrowed(self));
        }
        let mut converted = self.clone();
        for entry in &mut converted.streams {
            for event in &mut entry.events {
                let reject = |reason: String| InvalidAppend::Rejected {
                    stream: entry.stream.clone(),
                    reason: format!("{} event: {reason}", event.event_type),
                };
                event.payload.check_storable().map_err(reject)?;
                if converts(event) {
                    let payload = event.payload.to_codec(codec).map_err(|e| reject(e.to_string()))?;
                    event.payload = payload;
                }
            }
        }
        Ok(Cow::Owned(converted))
    }
}

/// One stream of an [`AppendRequest`].
///
/// ```
/// use eventcore::*;
/// let check = StreamAppend { stream: StreamId::new("a")?, expected: ExpectedVersion::StreamExists, events: vec![], tombstone: false };
/// assert!(check.events.is_empty(), "a pure version check");
/// let closed = NewEvent {
///     event_id: EventId::v7(Time::ZERO, [1; 10]),
///     event_type: EventType::new("Closed").expect("valid"),
///     schema_version: 1,
///     payload: Payload::from_trusted_json("{}"),
/// };
/// // The stream's last event: the append ends the stream.
/// let last = StreamAppend { stream: StreamId::new("b")?, expected: ExpectedVersion::StreamExists, events: vec![closed], tombstone: true };
/// assert!(last.tombstone);
/// # Ok::<(), InvalidStreamId>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamAppend {
    /// The stream.
    pub stream: StreamId,
    /// What the stream's version must be for the append to commit.
    pub expected: ExpectedVersion,
    /// Events to add, in order; empty for a pure version check.
    pub events: Vec<NewEvent>,
    /// Whether this append ends the stream (a tombstone): once it commits,
    /// every later append that writes the stream is refused with
    /// [`StoreError::StreamDeleted`](crate::StoreError::StreamDeleted), and
    /// reads report the stream as deleted
    /// ([`StreamSlice::deleted_at`](crate::StreamSlice::deleted_at)), its
    /// events still readable. A tombstoning entry carries at least one event
    /// (the stream's last, such as `AccountClosed`), so the tombstone is
    /// atomic with it and with the rest of the append, and a re-send with the
    /// same command id answers with the original receipt like any append.
    pub tombstone: bool,
}

/// Size limits every store enforces on an append.
///
/// ```
/// use eventcore::AppendLimits;
/// assert!(AppendLimits::default().max_payload_bytes >= 1 << 20);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendLimits {
    /// Most streams in one append.
    pub max_streams: usize,
    /// Most events in one append, across all streams.
    pub max_events: usize,
    /// Largest payload of one event, in bytes of JSON text.
    pub max_payload_bytes: usize,
}

impl Default for AppendLimits {
    fn default() -> Self {
        AppendLimits {
            max_streams: 1_000,
            max_events: 10_000,
            max_payload_bytes: 1 << 20,
        }
    }
}

/// What an append committed. Re-sending an append with the same command id
/// returns the same receipt with `deduplicated` set.
///
/// ```
/// use eventcore::*;
/// let receipt = AppendReceipt {
///     command_id: CommandId::v7(Time::ZERO, [0; 10]),
///     streams: vec![StreamCommit {
///         stream: StreamId::new("a")?,
///         first_version: StreamVersion::new(1),
///         last_version: StreamVersion::new(2),
///         positions: vec![GlobalPosition::new(10), GlobalPosition::new(11)],
///     }],
///     deduplicated: false,
/// };
/// assert_eq!(receipt.last_position(), GlobalPosition::new(11));
/// assert!(receipt.as_duplicate().same_commit(&receipt));
/// # Ok::<(), InvalidStreamId>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendReceipt {
    /// The idempotency key of the append.
    pub command_id: crate::CommandId,
    /// One entry per stream that received events, in request order.
    pub streams: Vec<StreamCommit>,
    /// True when this append had already committed and nothing was written.
    pub deduplicated: bool,
}

impl AppendReceipt {
    /// The highest global position written.
    pub fn last_position(&self) -> GlobalPosition {
        self.streams
            .iter()
            .filter_map(|s| s.positions.last().copied())
            .max()
            .unwrap_or(GlobalPosition::START)
    }

    /// The same receipt, flagged as the answer to a repeated append.
    pub fn as_duplicate(&self) -> Self {
        AppendReceipt {
            deduplicated: true,
            ..self.clone()
        }
    }

    /// Whether two receipts describe the same commit (ignoring the flag).
    pub fn same_commit(&self, other: &AppendReceipt) -> bool {
        self.command_id == other.command_id && self.streams == other.streams
    }
}

/// Where one stream's events of an append landed.
///
/// ```
/// use eventcore::*;
/// let commit = StreamCommit {
///     stream: StreamId::new("a")?,
///     first_version: StreamVersion::new(4),
///     last_version: StreamVersion::new(4),
///     positions: vec![GlobalPosition::new(77)],
/// };
/// assert_eq!(commit.positions.len() as u64, commit.last_version.get() - commit.first_version.get() + 1);
/// # Ok::<(), InvalidStreamId>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamCommit {
    /// The stream.
    pub stream: StreamId,
    /// Version of the first event written.
    pub first_version: StreamVersion,
    /// Version of the last event written: the stream's new head.
    pub last_version: StreamVersion,
    /// Global position of each event written, in version order.
    pub positions: Vec<GlobalPosition>,
}
