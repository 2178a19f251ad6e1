//! The store contract: the requests a machine emits, the responses a store
//! gives, and the errors it may answer with. Every store (memory, PostgreSQL,
//! any future one) answers exactly this, checked by one conformance suite.
//!
//! Validation that does not depend on stored data lives here, so that every
//! store rejects the same bad input with the same error.

use crate::{
    EventMetadata, EventType, ExpectedVersion, GlobalPosition, NewEvent, RecordedEvent, RequestId, StreamId,
    StreamVersion,
};
use std::collections::BTreeSet;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// Read several streams in one request, each from a version on.
///
/// ```
/// use eventcore::*;
/// let req = ReadRequest::new(RequestId::new(1), [StreamId::new("a")?, StreamId::new("b")?]);
/// assert_eq!(req.streams[1].after, StreamVersion::NONE);
/// # Ok::<(), InvalidStreamId>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRequest {
    /// Correlates the response with the request.
    pub id: RequestId,
    /// The streams to read, in the order the response will list them.
    pub streams: Vec<StreamRead>,
    /// At most this many events per stream; the caller reads again for more.
    pub page_size: Option<NonZeroU32>,
}

impl ReadRequest {
    /// Reads each stream whole.
    pub fn new(id: RequestId, streams: impl IntoIterator<Item = StreamId>) -> Self {
        ReadRequest {
            id,
            streams: streams
                .into_iter()
                .map(|stream| StreamRead {
                    stream,
                    after: StreamVersion::NONE,
                })
                .collect(),
            page_size: None,
        }
    }

    /// Checks the request shape (no duplicate streams).
    pub fn validate(&self) -> Result<(), InvalidRequest> {
        match first_duplicate(self.streams.iter().map(|read| &read.stream)) {
            Some(i) => Err(InvalidRequest::DuplicateStream {
                stream: self.streams[i].stream.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// Requests with at most this many streams are checked for duplicates by
/// comparing every pair, without allocating a set (almost every command
/// touches one or two streams).
const PAIRWISE_MAX: usize = 8;

/// The index of the first stream (in request order) that repeats an
/// earlier one.
fn first_duplicate<'a>(streams: impl ExactSizeIterator<Item = &'a StreamId> + Clone) -> Option<usize> {
    if streams.len() <= PAIRWISE_MAX {
        return streams
            .clone()
            .enumerate()
            .position(|(i, stream)| streams.clone().take(i).any(|earlier| earlier == stream));
    }
    let mut seen = BTreeSet::new();
    streams.into_iter().position(|stream| !seen.insert(stream))
}

/// One stream of a [`ReadRequest`]: its events with version above `after`.
///
/// ```
/// use eventcore::*;
/// let read = StreamRead { stream: StreamId::new("a")?, after: StreamVersion::new(3) };
/// assert_eq!(read.after.next(), StreamVersion::new(4)); // first version returned
/// # Ok::<(), InvalidStreamId>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRead {
    /// The stream.
    pub stream: StreamId,
    /// Return events with a version strictly greater than this.
    pub after: StreamVersion,
}

/// The answer to a [`ReadRequest`]: one slice per requested stream, in
/// request order. A stream that does not exist has head version 0 and no
/// events.
///
/// ```
/// use eventcore::*;
/// let answer = ReadResponse { streams: vec![StreamSlice { stream: StreamId::new("new")?, head: StreamVersion::NONE, events: vec![] }] };
/// assert!(answer.streams[0].head.is_none(), "a missing stream reads as empty at version 0");
/// # Ok::<(), InvalidStreamId>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadResponse {
    /// One slice per requested stream.
    pub streams: Vec<StreamSlice>,
}

/// Events of one stream, plus its version at the time of the read.
///
/// ```
/// use eventcore::*;
/// let slice = StreamSlice { stream: StreamId::new("a")?, head: StreamVersion::new(7), events: vec![] };
/// // Read after version 7: nothing new, and the head says so.
/// assert_eq!(slice.head.get(), 7);
/// # Ok::<(), InvalidStreamId>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSlice {
    /// The stream.
    pub stream: StreamId,
    /// The stream's version when it was read: the version of its last event.
    pub head: StreamVersion,
    /// Events after the requested version, in version order; fewer than
    /// `head - after` only when a page size cut the slice short.
    pub events: Vec<RecordedEvent>,
}

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
///     id: RequestId::new(1),
///     metadata: meta,
///     streams: vec![
///         StreamAppend { stream: order, expected: ExpectedVersion::Exact(StreamVersion::new(2)), events: vec![cancelled] },
///         // Read but not written: still pinned, so the decision is checked whole.
///         StreamAppend { stream: product, expected: ExpectedVersion::Exact(StreamVersion::new(9)), events: vec![] },
///     ],
/// };
/// assert_eq!(append.event_count(), 1);
/// assert!(append.validate(&AppendLimits::default()).is_ok());
/// # Ok::<(), InvalidStreamId>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendRequest {
    /// Correlates the response with the request.
    pub id: RequestId,
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
    /// let empty = AppendRequest { id: RequestId::new(1), metadata: meta, streams: vec![] };
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
}

/// One stream of an [`AppendRequest`].
///
/// ```
/// use eventcore::*;
/// let check = StreamAppend { stream: StreamId::new("a")?, expected: ExpectedVersion::StreamExists, events: vec![] };
/// assert!(check.events.is_empty(), "a pure version check");
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

/// Read the global log after a position.
///
/// ```
/// use eventcore::*;
/// use std::num::NonZeroU32;
/// let request = ReadAllRequest {
///     after: GlobalPosition::START,
///     limit: NonZeroU32::new(500).expect("non-zero"),
///     filter: EventFilter::all().with_stream_prefix("account-"),
/// };
/// assert_eq!(request.limit.get(), 500);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadAllRequest {
    /// Return events with a position strictly greater than this.
    pub after: GlobalPosition,
    /// At most this many events, counted after the filter is applied.
    pub limit: NonZeroU32,
    /// Which events to return.
    pub filter: EventFilter,
}

/// The answer to a [`ReadAllRequest`].
///
/// ```
/// use eventcore::*;
/// // Nothing matched, yet the reader may move its checkpoint to 42.
/// let answer = ReadAllResponse { events: vec![], complete_through: GlobalPosition::new(42) };
/// assert!(answer.events.is_empty());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadAllResponse {
    /// Matching events in global order.
    pub events: Vec<RecordedEvent>,
    /// Every matching event with a position in `(after, complete_through]`
    /// is in `events`, and none will ever appear later. A subscriber may
    /// checkpoint here even when `events` is empty (all filtered out).
    pub complete_through: GlobalPosition,
}

/// Which events a global read returns. Conditions combine with AND; an empty
/// list means "no condition".
///
/// ```
/// use eventcore::*;
/// let f = EventFilter::all().with_stream_prefix("account-").with_event_types([EventType::new("Deposited")?]);
/// # Ok::<(), InvalidEventType>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only these streams (empty: any stream).
    pub streams: Vec<StreamId>,
    /// Only streams whose id starts with this.
    pub stream_prefix: Option<String>,
    /// Only these event types (empty: any type).
    pub event_types: Vec<EventType>,
}

impl EventFilter {
    /// Matches every event.
    pub fn all() -> Self {
        EventFilter::default()
    }

    /// Restricts to the given streams.
    pub fn with_streams(mut self, streams: impl IntoIterator<Item = StreamId>) -> Self {
        self.streams = streams.into_iter().collect();
        self
    }

    /// Restricts to streams whose id starts with `prefix`.
    pub fn with_stream_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.stream_prefix = Some(prefix.into());
        self
    }

    /// Restricts to the given event types.
    pub fn with_event_types(mut self, types: impl IntoIterator<Item = EventType>) -> Self {
        self.event_types = types.into_iter().collect();
        self
    }

    /// Whether `event` passes the filter.
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        (self.streams.is_empty() || self.streams.contains(&event.stream_id))
            && self
                .stream_prefix
                .as_deref()
                .is_none_or(|p| event.stream_id.as_str().starts_with(p))
            && (self.event_types.is_empty() || self.event_types.contains(&event.event_type))
    }
}

/// The store operation an error came from.
///
/// ```
/// use eventcore::{Operation, StoreError};
/// let error = StoreError::transient(Operation::Read, "connection refused");
/// assert_eq!(error.to_string(), "transient failure during read: connection refused");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Reading streams.
    Read,
    /// Appending.
    Append,
    /// Reading the global log.
    ReadAll,
    /// Anything else (connecting, migrating, health checks).
    Other,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Read => "read",
            Operation::Append => "append",
            Operation::ReadAll => "read-all",
            Operation::Other => "store operation",
        })
    }
}

/// A stream was not at the version the append expected.
///
/// ```
/// use eventcore::*;
/// let c = Conflict { stream: StreamId::new("a")?, expected: ExpectedVersion::Exact(StreamVersion::new(2)), actual: StreamVersion::new(3) };
/// assert_eq!(c.to_string(), "version conflict on stream `a`: expected version 2, found version 3");
/// # Ok::<(), InvalidStreamId>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("version conflict on stream `{stream}`: expected {expected}, found version {actual}")]
pub struct Conflict {
    /// The stream whose version did not match.
    pub stream: StreamId,
    /// What the append expected.
    pub expected: ExpectedVersion,
    /// The stream's actual version (0: it does not exist).
    pub actual: StreamVersion,
}

/// An append the store refuses before looking at stored data.
///
/// ```
/// use eventcore::*;
/// let error = StoreError::from(InvalidAppend::DuplicateStream { stream: StreamId::new("a")? });
/// assert_eq!(error.to_string(), "invalid append: stream `a` appears more than once in one append");
/// assert!(!error.is_retryable());
/// # Ok::<(), InvalidStreamId>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidAppend {
    /// The request named no streams.
    #[error("append names no streams")]
    NoStreams,
    /// The request carried no events at all.
    #[error("append carries no events")]
    NoEvents,
    /// A stream appeared twice in one request.
    #[error("stream `{stream}` appears more than once in one append")]
    DuplicateStream {
        /// The repeated stream.
        stream: StreamId,
    },
    /// Too many streams in one request.
    #[error("append names {count} streams; the maximum is {max}")]
    TooManyStreams {
        /// Streams in the request.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Too many events in one request.
    #[error("append carries {count} events; the maximum is {max}")]
    TooManyEvents {
        /// Events in the request.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// One payload was too large.
    #[error("payload of {event_type} for stream `{stream}` is {size} bytes; the maximum is {max}")]
    PayloadTooLarge {
        /// The stream it was addressed to.
        stream: StreamId,
        /// Its type.
        event_type: EventType,
        /// Its size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The store cannot hold a value in this append (for example a payload
    /// the database rejects as JSON).
    #[error("stream `{stream}`: {reason}")]
    Rejected {
        /// The stream concerned.
        stream: StreamId,
        /// What the store objected to.
        reason: String,
    },
}

/// A read the store refuses.
///
/// ```
/// use eventcore::*;
/// let s = StreamId::new("a")?;
/// let mut read = ReadRequest::new(RequestId::new(1), [s.clone(), s]);
/// assert!(matches!(read.validate(), Err(InvalidRequest::DuplicateStream { .. })));
/// # Ok::<(), InvalidStreamId>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidRequest {
    /// A stream appeared twice in one read.
    #[error("stream `{stream}` appears more than once in one read")]
    DuplicateStream {
        /// The repeated stream.
        stream: StreamId,
    },
}

/// A shareable error source (cloneable so that simulators can duplicate
/// responses).
///
/// ```
/// use eventcore::{ErrorSource, Operation, StoreError};
/// use std::sync::Arc;
/// let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
/// let source: ErrorSource = Arc::new(io);
/// let error = StoreError::OutcomeUnknown { operation: Operation::Append, message: "connection lost".into(), source: Some(source) };
/// let copy = error.clone(); // simulators duplicate responses
/// assert!(std::error::Error::source(&copy).is_some());
/// ```
pub type ErrorSource = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Everything a store may answer instead of a result.
///
/// How the command machine treats each kind is the point of the split:
/// conflicts re-read and re-decide, transient errors retry, an unknown
/// outcome re-sends the same append (the command id makes that safe), and
/// everything else ends the command.
///
/// ```
/// use eventcore::*;
/// let timeout = StoreError::Timeout { operation: Operation::Append, after: std::time::Duration::from_secs(5) };
/// assert!(timeout.is_retryable() && timeout.may_have_committed());
/// let denied = StoreError::permanent(Operation::Append, "permission denied for table events");
/// assert!(!denied.is_retryable());
/// ```
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An expected version did not hold; nothing was written.
    #[error(transparent)]
    Conflict(#[from] Conflict),
    /// The append is malformed; nothing was written.
    #[error("invalid append: {0}")]
    InvalidAppend(#[from] InvalidAppend),
    /// The read is malformed.
    #[error("invalid read: {0}")]
    InvalidRequest(#[from] InvalidRequest),
    /// A passing failure (connection refused, serialization failure,
    /// deadlock victim, pool exhausted); the request was certainly not
    /// applied and may be retried.
    #[error("transient failure during {operation}: {message}")]
    Transient {
        /// The operation that failed.
        operation: Operation,
        /// What happened.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<ErrorSource>,
    },
    /// The request may or may not have been applied (a connection lost after
    /// the commit was sent, a timeout). Only an append can be in this state.
    #[error("outcome of {operation} unknown: {message}")]
    OutcomeUnknown {
        /// The operation whose outcome is unknown.
        operation: Operation,
        /// What happened.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<ErrorSource>,
    },
    /// The operation did not answer in time. For an append this means the
    /// outcome is unknown.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// The operation that timed out.
        operation: Operation,
        /// How long it was given.
        after: Duration,
    },
    /// The store answered something that breaks the contract (a gap in a
    /// stream, a response for other streams). Never retried: it points at a
    /// bug or corruption.
    #[error("store broke its contract during {operation}: {message}")]
    ContractViolation {
        /// The operation concerned.
        operation: Operation,
        /// What was wrong.
        message: String,
    },
    /// A failure that retrying will not fix (permission denied, missing
    /// schema, read-only database).
    #[error("permanent failure during {operation}: {message}")]
    Permanent {
        /// The operation that failed.
        operation: Operation,
        /// What happened.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<ErrorSource>,
    },
}

impl StoreError {
    /// A transient error with a message.
    pub fn transient(operation: Operation, message: impl Into<String>) -> Self {
        StoreError::Transient {
            operation,
            message: message.into(),
            source: None,
        }
    }

    /// A permanent error with a message.
    pub fn permanent(operation: Operation, message: impl Into<String>) -> Self {
        StoreError::Permanent {
            operation,
            message: message.into(),
            source: None,
        }
    }

    /// Whether a later attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Conflict(_)
                | StoreError::Transient { .. }
                | StoreError::OutcomeUnknown { .. }
                | StoreError::Timeout { .. }
        )
    }

    /// Whether an append answered with this error may nevertheless have
    /// committed.
    pub fn may_have_committed(&self) -> bool {
        matches!(
            self,
            StoreError::OutcomeUnknown { .. }
                | StoreError::Timeout {
                    operation: Operation::Append,
                    ..
                }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pairwise_and_the_set_duplicate_checks_agree() {
        let ids: Vec<StreamId> = (0..20)
            .map(|i| StreamId::new(format!("s-{}", i % 13)).expect("valid"))
            .collect();
        for len in 0..=ids.len() {
            let slice = &ids[..len];
            let mut seen = BTreeSet::new();
            let expected = slice.iter().position(|s| !seen.insert(s));
            assert_eq!(first_duplicate(slice.iter()), expected, "{len} streams");
        }
        let tail = [ids[0].clone(), ids[1].clone(), ids[1].clone(), ids[0].clone()];
        assert_eq!(
            first_duplicate(tail.iter()),
            Some(2),
            "the first repeat in request order"
        );
    }
}
