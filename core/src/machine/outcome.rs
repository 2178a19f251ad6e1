//! What an execution tells its driver: the next step, counters, and the
//! result.

use crate::codec::{DecodeError, EncodeError};
use crate::store::{AppendReceipt, AppendRequest, ReadRequest, StoreError};
use crate::view::ViewKind;
use crate::{CommandId, RequestId, StreamId, Time};
use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// What the driver should do next.
///
/// ```
/// use eventcore::*;
/// // The shape of every driver loop (the tokio executor and the simulator):
/// fn drive<C: Command>(mut machine: CommandMachine<C>) {
///     loop {
///         match machine.poll() {
///             Step::Read { id: _, deadline: _, request: _ } => {
///                 /* send, give up at the deadline; later machine.on_read(id, answer, now) */ return;
///             }
///             Step::Append { id: _, deadline: _, request: _ } => {
///                 /* send, give up at the deadline; later machine.on_append(id, answer, now) */ return;
///             }
///             Step::Wait { until: _ } => { /* sleep; then machine.on_wake(now) */ return; }
///             Step::Done(_result) => return,
///             Step::Finished => return,
///         }
///     }
/// }
/// ```
#[derive(Debug)]
pub enum Step<E> {
    /// Send this read to the store and report the answer with
    /// [`CommandMachine::on_read`](crate::CommandMachine::on_read) under
    /// `id`; if none came by `deadline`, call
    /// [`CommandMachine::on_wake`](crate::CommandMachine::on_wake) then.
    Read {
        /// Correlates the answer with this request (stores never see it).
        id: RequestId,
        /// When the machine stops waiting for the answer.
        deadline: Time,
        /// What to read.
        request: ReadRequest,
    },
    /// Send this append and report the answer with
    /// [`CommandMachine::on_append`](crate::CommandMachine::on_append). Shared with the machine, which keeps
    /// the append in flight to re-send it unchanged if its outcome turns out
    /// unknown; handing out a reference count instead of a copy keeps every
    /// attempt, re-sends included, free of a clone of every event.
    Append {
        /// Correlates the answer with this request (stores never see it).
        id: RequestId,
        /// When the machine stops waiting and counts the outcome as unknown.
        deadline: Time,
        /// What to append.
        request: Arc<AppendRequest>,
    },
    /// Nothing to send: a request is in flight or a backoff is running. Call
    /// [`CommandMachine::on_wake`](crate::CommandMachine::on_wake) at `until` unless a response arrives first.
    Wait {
        /// When to wake the machine.
        until: Time,
    },
    /// The execution ended. Returned exactly once.
    Done(Result<Executed, CommandError<E>>),
    /// The result was already returned; there is nothing left to do.
    Finished,
}

/// Counters of what happened during one execution.
///
/// ```
/// use eventcore::ExecutionStats;
/// let stats = ExecutionStats { conflicts: 2, ..ExecutionStats::default() };
/// assert_eq!(stats.unknown_outcomes, 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecutionStats {
    /// Read requests emitted.
    pub reads: u32,
    /// Append requests emitted (re-sends included).
    pub appends: u32,
    /// Appends refused with a version conflict.
    pub conflicts: u32,
    /// Transient errors and read timeouts.
    pub transient_errors: u32,
    /// Appends whose outcome was unknown (timeouts, lost acknowledgements).
    pub unknown_outcomes: u32,
    /// Times `decide` asked for more streams.
    pub discovery_rounds: u32,
    /// Responses ignored because they were stale or duplicated.
    pub ignored_responses: u32,
    /// Views a driver started from (cache or snapshot) that proved ahead of
    /// the store and were rebuilt from events.
    pub stale_views: u32,
}

/// A successful execution.
///
/// ```
/// use eventcore::*;
/// let done = Executed { command_id: CommandId::v7(Time::ZERO, [0; 10]), attempts: 1, appended: None, stats: ExecutionStats::default() };
/// assert!(done.appended.is_none(), "decide emitted nothing; nothing was written");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Executed {
    /// The execution's command id.
    pub command_id: CommandId,
    /// Attempts used, the first included.
    pub attempts: u32,
    /// What was committed; `None` when `decide` emitted no events.
    pub appended: Option<AppendReceipt>,
    /// What happened on the way.
    pub stats: ExecutionStats,
}

/// Why an execution failed.
///
/// [`CommandError::kind`] sorts the variants into the few kinds a service
/// maps to responses ([`CommandErrorKind`](crate::CommandErrorKind), with
/// suggested HTTP statuses), and [`AnyCommandError`](crate::AnyCommandError)
/// erases the domain error's type so one function handles every command.
/// No variant's message repeats the text of its `source()`: a variant that
/// displays an inner error (`Domain`, `Store`, `Decode`, and the last store
/// error of `RetriesExhausted`, `OutcomeUnknown`, `DeadlineExceeded`)
/// continues the chain with that error's source; `Encode` and
/// `ViewCannotFold` name what failed and leave the cause to the chain.
///
/// ```
/// use eventcore::*;
/// let unknown: CommandError<std::convert::Infallible> = CommandError::OutcomeUnknown {
///     command_id: CommandId::v7(Time::ZERO, [0; 10]),
///     attempts: 3,
///     last: StoreError::Timeout { operation: Operation::Append, after: std::time::Duration::from_secs(5) },
/// };
/// assert!(unknown.may_have_committed(), "re-execute with the same command id to settle it");
/// assert!(!CommandError::<std::convert::Infallible>::NoStreams.may_have_committed());
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum CommandError<E> {
    /// The command declared no streams to read.
    NoStreams,
    /// The decision wrote to, or set an expectation on, a stream it never read.
    UnreadStream {
        /// The stream concerned.
        stream: StreamId,
    },
    /// The decision ended a stream ([`Decision::end_stream`](crate::Decision::end_stream))
    /// without emitting an event to it. A stream ends with its last event
    /// (say `AccountClosed`), which the tombstone is written with.
    EndWithoutEvent {
        /// The stream the decision ended.
        stream: StreamId,
    },
    /// `decide` kept asking for new streams.
    DiscoveryLimit {
        /// The policy's limit.
        limit: u32,
        /// The streams requested in the round that hit the limit.
        pending: Vec<StreamId>,
    },
    /// The domain refused the command. Never retried. Displays exactly the
    /// domain error's text (what a service shows its client), and its
    /// `source()` is the domain error's own source.
    Domain(E),
    /// A stored event could not be decoded.
    Decode(DecodeError),
    /// An emitted event could not be encoded.
    Encode {
        /// Where the event was addressed.
        stream: StreamId,
        /// Why.
        source: EncodeError,
    },
    /// Every attempt failed with a retryable error; nothing was committed.
    /// Displays the last error; `source()` continues with that error's
    /// source.
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The error of the last attempt.
        last: StoreError,
    },
    /// The execution stopped while an append's outcome was unknown: it may
    /// have committed (exactly once) or not at all. Executing again with the
    /// same command id resolves it. Displays the last error; `source()`
    /// continues with that error's source.
    OutcomeUnknown {
        /// The command id to re-execute with.
        command_id: CommandId,
        /// Attempts made.
        attempts: u32,
        /// The error that left the outcome open.
        last: StoreError,
    },
    /// The overall deadline passed (possibly before the first attempt).
    /// Displays the last error, if any; `source()` continues with that
    /// error's source.
    DeadlineExceeded {
        /// Attempts made.
        attempts: u32,
        /// The last store error, if any.
        last: Option<StoreError>,
    },
    /// The store failed in a way retrying cannot fix, or refused the append.
    /// Displays the store error's text; its `source()` is the store error's
    /// source.
    Store(StoreError),
    /// A view command's state needed the view of a stream that was not read
    /// through it (the command's `streams()` and its state disagree).
    MissingView {
        /// The stream concerned.
        stream: StreamId,
        /// The view the state asked for.
        view: ViewKind,
    },
    /// An event was addressed to a stream whose view cannot fold it (its
    /// type is not the view's event type). Nothing was written.
    ViewCannotFold {
        /// The stream concerned.
        stream: StreamId,
        /// The stream's view.
        view: ViewKind,
        /// Why the view's event type does not decode it.
        source: crate::DecodeErrorKind,
    },
}

impl<E: fmt::Display> fmt::Display for CommandError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::NoStreams => f.write_str("command declares no streams to read"),
            CommandError::UnreadStream { stream } => write!(
                f,
                "command wrote to stream `{stream}` without reading it; add it to streams() or request it with \
                 Decision::read"
            ),
            CommandError::EndWithoutEvent { stream } => write!(
                f,
                "command ended stream `{stream}` without emitting an event to it; a stream ends with its last event"
            ),
            CommandError::DiscoveryLimit { limit, pending } => write!(
                f,
                "stream discovery did not settle within {limit} rounds; still requesting {pending:?}"
            ),
            CommandError::Domain(error) => fmt::Display::fmt(error, f),
            CommandError::Decode(error) => fmt::Display::fmt(error, f),
            CommandError::Encode { stream, .. } => write!(f, "event for stream `{stream}` could not be encoded"),
            CommandError::RetriesExhausted { attempts, last } => {
                write!(f, "gave up after {attempts} attempts; last error: {last}")
            }
            CommandError::OutcomeUnknown {
                command_id,
                attempts,
                last,
            } => write!(
                f,
                "outcome unknown for command {command_id} after {attempts} attempts: {last}"
            ),
            CommandError::DeadlineExceeded { attempts, last } => {
                write!(f, "deadline exceeded after {attempts} attempts")?;
                match last {
                    Some(last) => write!(f, "; last error: {last}"),
                    None => Ok(()),
                }
            }
            CommandError::Store(error) => fmt::Display::fmt(error, f),
            CommandError::MissingView { stream, view } => write!(
                f,
                "stream `{stream}` was not read through view {view}; declare it with #[stream] or Emit::read"
            ),
            CommandError::ViewCannotFold { stream, view, .. } => {
                write!(f, "event for stream `{stream}` cannot be folded by its view {view}")
            }
        }
    }
}

/// Written out rather than derived: a variant that displays an inner error
/// (a domain refusal, a store error, the last store error of a failed
/// execution) continues the chain with that error's source, so a `{:#}`
/// chain prints every cause once and none is lost.
impl<E: Error + 'static> Error for CommandError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            CommandError::Domain(error) => error.source(),
            CommandError::Decode(error) => error.source(),
            CommandError::Encode { source, .. } => Some(source),
            CommandError::ViewCannotFold { source, .. } => Some(source),
            CommandError::Store(last)
            | CommandError::RetriesExhausted { last, .. }
            | CommandError::OutcomeUnknown { last, .. } => last.source(),
            CommandError::DeadlineExceeded { last, .. } => last.as_ref().and_then(|last| last.source()),
            CommandError::NoStreams
            | CommandError::UnreadStream { .. }
            | CommandError::EndWithoutEvent { .. }
            | CommandError::DiscoveryLimit { .. }
            | CommandError::MissingView { .. } => None,
        }
    }
}

impl<E> From<DecodeError> for CommandError<E> {
    fn from(error: DecodeError) -> Self {
        CommandError::Decode(error)
    }
}

impl<E> CommandError<E> {
    /// True only for [`CommandError::OutcomeUnknown`]: every other error
    /// guarantees that this execution wrote nothing. (An earlier execution
    /// with the same command id may have committed; re-executing with that id
    /// until it succeeds or is refused by the domain settles it.)
    pub fn may_have_committed(&self) -> bool {
        matches!(self, CommandError::OutcomeUnknown { .. })
    }
}
