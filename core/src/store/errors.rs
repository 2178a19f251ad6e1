//! What a store may answer instead of a result, and how each kind is
//! treated.

use crate::{EventType, ExpectedVersion, StreamId, StreamVersion};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

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

/// An append wrote a stream that a tombstone had ended; nothing was written.
///
/// ```
/// use eventcore::*;
/// let deleted = StreamDeleted { stream: StreamId::new("account-1")?, deleted_at: StreamVersion::new(4) };
/// assert_eq!(deleted.to_string(), "stream `account-1` was deleted by a tombstone at version 4; it takes no more events");
/// let error = StoreError::from(deleted);
/// assert!(!error.is_retryable());
/// assert_eq!(error.kind(), StoreErrorKind::StreamDeleted);
/// # Ok::<(), InvalidStreamId>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("stream `{stream}` was deleted by a tombstone at version {}; it takes no more events", deleted_at.get())]
pub struct StreamDeleted {
    /// The deleted stream.
    pub stream: StreamId,
    /// The version of the stream's last event, the one its tombstone was
    /// written with.
    pub deleted_at: StreamVersion,
}

/// An append the store refuses before looking at stored data.
///
/// ```
/// use eventcore::*;
/// let error = StoreError::from(InvalidAppend::DuplicateStream { stream: StreamId::new("a")? });
/// assert_eq!(error.to_string(), "stream `a` appears more than once in one append");
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
    /// A tombstoning entry carried no events: a tombstone is written with
    /// the stream's last event.
    #[error(
        "the tombstone of stream `{stream}` carries no events; a tombstone is written with the stream's last event"
    )]
    TombstoneWithoutEvents {
        /// The stream the tombstone was for.
        stream: StreamId,
    },
    /// The store cannot hold a value in this append (for example a payload
    /// the database rejects as JSON).
    #[error("the store cannot hold a value of stream `{stream}`: {reason}")]
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
/// let mut read = ReadRequest::new([s.clone(), s]);
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
/// everything else ends the command. [`StoreError::kind`] names the kind
/// without the details, for metrics, logs and status codes.
///
/// No message repeats the text of its [`source`](std::error::Error::source):
/// print the whole chain (`{:#}` with anyhow or eyre) to see every cause.
///
/// ```
/// use eventcore::*;
/// let timeout = StoreError::Timeout { operation: Operation::Append, after: std::time::Duration::from_secs(5) };
/// assert!(timeout.is_retryable() && timeout.may_have_committed());
/// let denied = StoreError::permanent(Operation::Append, "permission denied for table events");
/// assert!(!denied.is_retryable());
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// An expected version did not hold; nothing was written.
    Conflict(Conflict),
    /// The append wrote a stream a tombstone had ended; nothing was written,
    /// and no retry will succeed. Displays the [`StreamDeleted`]'s text.
    StreamDeleted(StreamDeleted),
    /// The append is malformed; nothing was written. Displays the
    /// [`InvalidAppend`]'s text.
    InvalidAppend(InvalidAppend),
    /// The read is malformed. Displays the [`InvalidRequest`]'s text.
    InvalidRequest(InvalidRequest),
    /// A passing failure (connection refused, serialization failure,
    /// deadlock victim, pool exhausted); the request was certainly not
    /// applied and may be retried.
    Transient {
        /// The operation that failed.
        operation: Operation,
        /// What happened, without the text of `source` (a `{:#}` chain
        /// prints both).
        message: String,
        /// The underlying error, if any.
        source: Option<ErrorSource>,
    },
    /// The request may or may not have been applied (a connection lost after
    /// the commit was sent, a timeout). Only an append can be in this state.
    OutcomeUnknown {
        /// The operation whose outcome is unknown.
        operation: Operation,
        /// What happened, without the text of `source` (a `{:#}` chain
        /// prints both).
        message: String,
        /// The underlying error, if any.
        source: Option<ErrorSource>,
    },
    /// The operation did not answer in time. For an append this means the
    /// outcome is unknown.
    Timeout {
        /// The operation that timed out.
        operation: Operation,
        /// How long it was given.
        after: Duration,
    },
    /// The store answered something that breaks the contract (a gap in a
    /// stream, a response for other streams). Never retried: it points at a
    /// bug or corruption.
    ContractViolation {
        /// The operation concerned.
        operation: Operation,
        /// What was wrong.
        message: String,
    },
    /// A failure that retrying will not fix (permission denied, missing
    /// schema, read-only database).
    Permanent {
        /// The operation that failed.
        operation: Operation,
        /// What happened, without the text of `source` (a `{:#}` chain
        /// prints both).
        message: String,
        /// The underlying error, if any.
        source: Option<ErrorSource>,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Conflict(conflict) => fmt::Display::fmt(conflict, f),
            StoreError::StreamDeleted(deleted) => fmt::Display::fmt(deleted, f),
            StoreError::InvalidAppend(invalid) => fmt::Display::fmt(invalid, f),
            StoreError::InvalidRequest(invalid) => fmt::Display::fmt(invalid, f),
            StoreError::Transient { operation, message, .. } => {
                write!(f, "transient failure during {operation}: {message}")
            }
            StoreError::OutcomeUnknown { operation, message, .. } => {
                write!(f, "outcome of {operation} unknown: {message}")
            }
            StoreError::Timeout { operation, after } => write!(f, "{operation} timed out after {after:?}"),
            StoreError::ContractViolation { operation, message } => {
                write!(f, "store broke its contract during {operation}: {message}")
            }
            StoreError::Permanent { operation, message, .. } => {
                write!(f, "permanent failure during {operation}: {message}")
            }
        }
    }
}

/// Written out rather than derived so that `source()` is the underlying
/// error itself, not the [`Arc`] around it: downcasting along the chain
/// (`source.downcast_ref::<sqlx::Error>()`) finds it.
impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Pure wrappers: their Display is the inner error's, so the
            // chain continues with the inner error's source.
            StoreError::Conflict(conflict) => conflict.source(),
            StoreError::StreamDeleted(deleted) => deleted.source(),
            StoreError::InvalidAppend(invalid) => invalid.source(),
            StoreError::InvalidRequest(invalid) => invalid.source(),
            StoreError::Transient { source, .. }
            | StoreError::OutcomeUnknown { source, .. }
            | StoreError::Permanent { source, .. } => source
                .as_deref()
                .map(|error| error as &(dyn std::error::Error + 'static)),
            StoreError::Timeout { .. } | StoreError::ContractViolation { .. } => None,
        }
    }
}

impl From<Conflict> for StoreError {
    fn from(conflict: Conflict) -> Self {
        StoreError::Conflict(conflict)
    }
}

impl From<StreamDeleted> for StoreError {
    fn from(deleted: StreamDeleted) -> Self {
        StoreError::StreamDeleted(deleted)
    }
}

impl From<InvalidAppend> for StoreError {
    fn from(invalid: InvalidAppend) -> Self {
        StoreError::InvalidAppend(invalid)
    }
}

impl From<InvalidRequest> for StoreError {
    fn from(invalid: InvalidRequest) -> Self {
        StoreError::InvalidRequest(invalid)
    }
}

/// What kind of [`StoreError`] an error is, without its details: a label
/// for metrics and logs, and what a service maps to a status code. One kind
/// per variant.
///
/// ```
/// use eventcore::{Operation, StoreError, StoreErrorKind};
/// let error = StoreError::transient(Operation::Append, "connection refused");
/// assert_eq!(error.kind(), StoreErrorKind::Transient);
/// assert_eq!(error.kind().as_str(), "transient");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// [`StoreError::Conflict`]: an expected version did not hold.
    Conflict,
    /// [`StoreError::StreamDeleted`]: the append wrote a stream a tombstone
    /// had ended.
    StreamDeleted,
    /// [`StoreError::InvalidAppend`]: a malformed append.
    InvalidAppend,
    /// [`StoreError::InvalidRequest`]: a malformed read.
    InvalidRequest,
    /// [`StoreError::Transient`]: a passing failure; nothing was applied.
    Transient,
    /// [`StoreError::OutcomeUnknown`]: an append may or may not have
    /// committed.
    OutcomeUnknown,
    /// [`StoreError::Timeout`]: no answer in time.
    Timeout,
    /// [`StoreError::ContractViolation`]: the store answered something it
    /// must not.
    ContractViolation,
    /// [`StoreError::Permanent`]: a failure retrying will not fix.
    Permanent,
}

impl StoreErrorKind {
    /// A short, stable name (`"conflict"`, `"outcome_unknown"`, ...) for
    /// logs and metric labels.
    ///
    /// ```
    /// assert_eq!(eventcore::StoreErrorKind::ContractViolation.as_str(), "contract_violation");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            StoreErrorKind::Conflict => "conflict",
            StoreErrorKind::StreamDeleted => "stream_deleted",
            StoreErrorKind::InvalidAppend => "invalid_append",
            StoreErrorKind::InvalidRequest => "invalid_request",
            StoreErrorKind::Transient => "transient",
            StoreErrorKind::OutcomeUnknown => "outcome_unknown",
            StoreErrorKind::Timeout => "timeout",
            StoreErrorKind::ContractViolation => "contract_violation",
            StoreErrorKind::Permanent => "permanent",
        }
    }
}

impl fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl StoreError {
    /// What kind of error this is, without its details.
    ///
    /// ```
    /// use eventcore::{Operation, StoreError, StoreErrorKind};
    /// let timeout = StoreError::Timeout { operation: Operation::Append, after: std::time::Duration::from_secs(5) };
    /// assert_eq!(timeout.kind(), StoreErrorKind::Timeout);
    /// ```
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::Conflict(_) => StoreErrorKind::Conflict,
            StoreError::StreamDeleted(_) => StoreErrorKind::StreamDeleted,
            StoreError::InvalidAppend(_) => StoreErrorKind::InvalidAppend,
            StoreError::InvalidRequest(_) => StoreErrorKind::InvalidRequest,
            StoreError::Transient { .. } => StoreErrorKind::Transient,
            StoreError::OutcomeUnknown { .. } => StoreErrorKind::OutcomeUnknown,
            StoreError::Timeout { .. } => StoreErrorKind::Timeout,
            StoreError::ContractViolation { .. } => StoreErrorKind::ContractViolation,
            StoreError::Permanent { .. } => StoreErrorKind::Permanent,
        }
    }

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
