//! One error type for every command: what kind of failure an execution
//! ended in, and [`AnyCommandError`], the failure with its command type
//! erased, so that a service maps every command's errors in one place.

use super::CommandError;
use crate::store::{StoreError, StoreErrorKind};
use crate::CommandId;
use std::error::Error;
use std::fmt;

/// What kind of failure an execution ended in, for a handler that maps
/// failures to responses (and for metrics and logs). Each kind names the
/// HTTP status a web service would usually answer with; see
/// [`CommandErrorKind::suggested_http_status`].
///
/// | kind | from | suggested status |
/// |---|---|---|
/// | [`Rejected`](CommandErrorKind::Rejected) | [`CommandError::Domain`] | 422, or what the domain error says |
/// | [`Conflict`](CommandErrorKind::Conflict) | [`CommandError::RetriesExhausted`] on version conflicts | 409 |
/// | [`OutcomeUnknown`](CommandErrorKind::OutcomeUnknown) | [`CommandError::OutcomeUnknown`] | 503 with `Retry-After` |
/// | [`Timeout`](CommandErrorKind::Timeout) | [`CommandError::DeadlineExceeded`] | 503 with `Retry-After` |
/// | [`Unavailable`](CommandErrorKind::Unavailable) | retries of other store failures ran out, [`CommandError::Store`] | 503 |
/// | [`StreamDeleted`](CommandErrorKind::StreamDeleted) | [`CommandError::Store`] with [`StoreError::StreamDeleted`] | 410 |
/// | [`Invalid`](CommandErrorKind::Invalid) | a misdeclared command, a malformed request | 500 |
/// | [`Decode`](CommandErrorKind::Decode) | [`CommandError::Decode`] | 500 |
/// | [`Encode`](CommandErrorKind::Encode) | [`CommandError::Encode`] | 500 |
///
/// ```
/// use eventcore::{CommandError, CommandErrorKind};
/// let error: CommandError<std::io::Error> = CommandError::Domain(std::io::Error::other("insufficient funds"));
/// assert_eq!(error.kind(), CommandErrorKind::Rejected);
/// assert_eq!(error.kind().suggested_http_status(), 422);
/// assert_eq!(error.kind().to_string(), "rejected");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CommandErrorKind {
    /// The domain refused the command ([`CommandError::Domain`]); nothing
    /// was written. Show the client the error's text: 422 Unprocessable
    /// Content, or the status the domain error stands for (404 for an
    /// unknown account, 409 for a duplicate).
    Rejected,
    /// Every attempt met a version conflict: others kept writing the same
    /// streams ([`CommandError::RetriesExhausted`] whose last error is a
    /// conflict). Nothing was written; the same request may pass later.
    /// 409 Conflict.
    Conflict,
    /// An append's outcome is unknown: it committed exactly once or not at
    /// all ([`CommandError::OutcomeUnknown`]). Re-executing with the same
    /// command id settles it. 503 Service Unavailable with `Retry-After`
    /// (the client retries with the same idempotency key).
    OutcomeUnknown,
    /// The execution's deadline passed ([`CommandError::DeadlineExceeded`]);
    /// nothing was written. 503 Service Unavailable with `Retry-After` (or
    /// 504 Gateway Timeout).
    Timeout,
    /// The store failed: transient failures outlasted the retries, or a
    /// failure retrying cannot fix (permission denied, missing schema, a
    /// read-only database, a store that broke its contract). Nothing was
    /// written. 503 Service Unavailable.
    Unavailable,
    /// The command wrote a stream a tombstone had ended
    /// ([`CommandError::Store`] with [`StoreError::StreamDeleted`]); nothing
    /// was written and no retry will succeed. 410 Gone.
    StreamDeleted,
    /// A programming error: the command declares no streams, writes a stream
    /// it did not read, lacks a view, addresses an event its stream's view
    /// cannot fold, discovers streams without end, or its append is
    /// malformed (too large, duplicate streams). Nothing was written. 500
    /// Internal Server Error.
    Invalid,
    /// A stored event could not be decoded with this code's event types
    /// ([`CommandError::Decode`]). 500 Internal Server Error.
    Decode,
    /// An emitted event could not be encoded ([`CommandError::Encode`]).
    /// 500 Internal Server Error.
    Encode,
}

impl CommandErrorKind {
    /// The HTTP status a web service would usually answer with (see the
    /// table on [`CommandErrorKind`]).
    ///
    /// ```
    /// use eventcore::CommandErrorKind;
    /// assert_eq!(CommandErrorKind::Conflict.suggested_http_status(), 409);
    /// assert_eq!(CommandErrorKind::OutcomeUnknown.suggested_http_status(), 503);
    /// assert_eq!(CommandErrorKind::Invalid.suggested_http_status(), 500);
    /// assert_eq!(CommandErrorKind::StreamDeleted.suggested_http_status(), 410);
    /// ```
    pub fn suggested_http_status(self) -> u16 {
        match self {
            CommandErrorKind::Rejected => 422,
            CommandErrorKind::Conflict => 409,
            CommandErrorKind::StreamDeleted => 410,
            CommandErrorKind::OutcomeUnknown | CommandErrorKind::Timeout | CommandErrorKind::Unavailable => 503,
            CommandErrorKind::Invalid | CommandErrorKind::Decode | CommandErrorKind::Encode => 500,
        }
    }

    /// Whether sending the same request again may succeed without any
    /// change: true for conflicts, unknown outcomes, timeouts and an
    /// unavailable store; false for refusals and programming errors.
    ///
    /// ```
    /// use eventcore::CommandErrorKind;
    /// assert!(CommandErrorKind::OutcomeUnknown.is_retryable());
    /// assert!(!CommandErrorKind::Rejected.is_retryable());
    /// ```
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            CommandErrorKind::Conflict
                | CommandErrorKind::OutcomeUnknown
                | CommandErrorKind::Timeout
                | CommandErrorKind::Unavailable
        )
    }

    /// A short, stable name (`"rejected"`, `"outcome_unknown"`, ...) for
    /// logs and metric labels.
    ///
    /// ```
    /// assert_eq!(eventcore::CommandErrorKind::OutcomeUnknown.as_str(), "outcome_unknown");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            CommandErrorKind::Rejected => "rejected",
            CommandErrorKind::Conflict => "conflict",
            CommandErrorKind::OutcomeUnknown => "outcome_unknown",
            CommandErrorKind::Timeout => "timeout",
            CommandErrorKind::Unavailable => "unavailable",
            CommandErrorKind::StreamDeleted => "stream_deleted",
            CommandErrorKind::Invalid => "invalid",
            CommandErrorKind::Decode => "decode",
            CommandErrorKind::Encode => "encode",
        }
    }
}

impl fmt::Display for CommandErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<E> CommandError<E> {
    /// What kind of failure this is (see [`CommandErrorKind`] for the
    /// mapping and the suggested HTTP statuses).
    ///
    /// ```
    /// use eventcore::*;
    /// let contended: CommandError<std::convert::Infallible> = CommandError::RetriesExhausted {
    ///     attempts: 5,
    ///     last: Conflict { stream: StreamId::new("a")?, expected: ExpectedVersion::Exact(StreamVersion::new(1)), actual: StreamVersion::new(2) }.into(),
    /// };
    /// assert_eq!(contended.kind(), CommandErrorKind::Conflict);
    /// let flaky: CommandError<std::convert::Infallible> = CommandError::RetriesExhausted {
    ///     attempts: 5,
    ///     last: StoreError::transient(Operation::Read, "connection refused"),
    /// };
    /// assert_eq!(flaky.kind(), CommandErrorKind::Unavailable);
    /// # Ok::<(), InvalidStreamId>(())
    /// ```
    pub fn kind(&self) -> CommandErrorKind {
        match self {
            CommandError::Domain(_) => CommandErrorKind::Rejected,
            CommandError::NoStreams
            | CommandError::UnreadStream { .. }
            | CommandError::EndWithoutEvent { .. }
            | CommandError::DiscoveryLimit { .. }
            | CommandError::MissingView { .. }
            | CommandError::ViewCannotFold { .. } => CommandErrorKind::Invalid,
            CommandError::Decode(_) => CommandErrorKind::Decode,
            CommandError::Encode { .. } => CommandErrorKind::Encode,
            CommandError::RetriesExhausted { last, .. } => match last.kind() {
                StoreErrorKind::Conflict => CommandErrorKind::Conflict,
                _ => CommandErrorKind::Unavailable,
            },
            CommandError::OutcomeUnknown { .. } => CommandErrorKind::OutcomeUnknown,
            CommandError::DeadlineExceeded { .. } => CommandErrorKind::Timeout,
            CommandError::Store(error) => store_kind(error),
        }
    }
}

/// The command-level kind of a store error that ended an execution.
fn store_kind(error: &StoreError) -> CommandErrorKind {
    match error.kind() {
        StoreErrorKind::Conflict => CommandErrorKind::Conflict,
        StoreErrorKind::StreamDeleted => CommandErrorKind::StreamDeleted,
        StoreErrorKind::InvalidAppend | StoreErrorKind::InvalidRequest => CommandErrorKind::Invalid,
        StoreErrorKind::OutcomeUnknown => CommandErrorKind::OutcomeUnknown,
        StoreErrorKind::Transient
        | StoreErrorKind::Timeout
        | StoreErrorKind::ContractViolation
        | StoreErrorKind::Permanent => CommandErrorKind::Unavailable,
    }
}

/// A [`CommandError`] of any command, with its domain error type erased: one
/// function maps every command's failures (to a response, a log line, a
/// metric).
///
/// It keeps what a handler needs: [`kind`](AnyCommandError::kind), the
/// command id when it is known (always, when it comes from an executor's
/// [`ExecutionError`](crate::ExecutionError)), whether the execution may
/// have committed, and the domain error itself, which
/// [`domain_error`](AnyCommandError::domain_error) downcasts. It displays
/// exactly what the original error displays (for a refusal: the domain
/// error's text), and its `source()` is the original's.
///
/// ```
/// use eventcore::{AnyCommandError, CommandError, CommandErrorKind};
/// #[derive(Debug, thiserror::Error)]
/// #[error("insufficient funds: balance 5, needed 9")]
/// struct InsufficientFunds;
///
/// fn status(error: &AnyCommandError) -> (u16, String) {
///     (error.kind().suggested_http_status(), error.to_string())
/// }
///
/// let refused: AnyCommandError = CommandError::Domain(InsufficientFunds).into();
/// assert_eq!(refused.kind(), CommandErrorKind::Rejected);
/// assert_eq!(status(&refused), (422, "insufficient funds: balance 5, needed 9".to_owned()));
/// assert!(refused.domain_error::<InsufficientFunds>().is_some());
/// assert!(!refused.may_have_committed());
/// ```
#[derive(Debug)]
pub struct AnyCommandError {
    kind: CommandErrorKind,
    command_id: Option<CommandId>,
    may_have_committed: bool,
    /// The store error that ended the execution, if one did.
    store_error: Option<StoreError>,
    /// The domain error for a refusal, else the whole [`CommandError`].
    inner: Box<dyn Error + Send + Sync + 'static>,
}

impl AnyCommandError {
    /// What kind of failure this is.
    ///
    /// ```
    /// use eventcore::{AnyCommandError, CommandError, CommandErrorKind};
    /// let error = AnyCommandError::from(CommandError::<std::io::Error>::NoStreams);
    /// assert_eq!(error.kind(), CommandErrorKind::Invalid);
    /// ```
    pub fn kind(&self) -> CommandErrorKind {
        self.kind
    }

    /// The command id the execution ran under, when known: always for an
    /// error converted from an executor's
    /// [`ExecutionError`](crate::ExecutionError), and for an
    /// [`CommandError::OutcomeUnknown`]. Re-executing with this id settles
    /// an unknown outcome, and returns the original receipt if the command
    /// committed.
    ///
    /// ```
    /// use eventcore::*;
    /// let id = CommandId::v7(Time::ZERO, [7; 10]);
    /// let unknown: CommandError<std::io::Error> = CommandError::OutcomeUnknown {
    ///     command_id: id,
    ///     attempts: 2,
    ///     last: StoreError::Timeout { operation: Operation::Append, after: std::time::Duration::from_secs(5) },
    /// };
    /// assert_eq!(AnyCommandError::from(unknown).command_id(), Some(id));
    /// assert_eq!(AnyCommandError::from(CommandError::<std::io::Error>::NoStreams).command_id(), None);
    /// ```
    pub fn command_id(&self) -> Option<CommandId> {
        self.command_id
    }

    /// True only when the execution may have committed (an unknown
    /// outcome); see [`CommandError::may_have_committed`].
    ///
    /// ```
    /// use eventcore::{AnyCommandError, CommandError};
    /// assert!(!AnyCommandError::from(CommandError::<std::io::Error>::NoStreams).may_have_committed());
    /// ```
    pub fn may_have_committed(&self) -> bool {
        self.may_have_committed
    }

    /// The domain error of a refusal, if this is one and its type is `D`.
    ///
    /// ```
    /// use eventcore::{AnyCommandError, CommandError};
    /// #[derive(Debug, thiserror::Error)]
    /// #[error("account closed")]
    /// struct Closed;
    /// let error = AnyCommandError::from(CommandError::Domain(Closed));
    /// assert!(error.domain_error::<Closed>().is_some());
    /// assert!(error.domain_error::<std::io::Error>().is_none(), "another type");
    /// ```
    pub fn domain_error<D: Error + 'static>(&self) -> Option<&D> {
        match self.kind {
            CommandErrorKind::Rejected => self.inner.downcast_ref::<D>(),
            _ => None,
        }
    }

    /// The domain error of a refusal, whatever its type.
    ///
    /// ```
    /// use eventcore::{AnyCommandError, CommandError};
    /// let error = AnyCommandError::from(CommandError::Domain(std::io::Error::other("account closed")));
    /// assert_eq!(error.domain().map(|e| e.to_string()).as_deref(), Some("account closed"));
    /// assert!(AnyCommandError::from(CommandError::<std::io::Error>::NoStreams).domain().is_none());
    /// ```
    pub fn domain(&self) -> Option<&(dyn Error + Send + Sync + 'static)> {
        match self.kind {
            CommandErrorKind::Rejected => Some(&*self.inner),
            _ => None,
        }
    }

    /// The store error that ended the execution: the last one of
    /// [`CommandError::RetriesExhausted`], [`CommandError::OutcomeUnknown`]
    /// and [`CommandError::DeadlineExceeded`], or that of
    /// [`CommandError::Store`].
    ///
    /// ```
    /// use eventcore::*;
    /// let error = AnyCommandError::from(CommandError::<std::io::Error>::RetriesExhausted {
    ///     attempts: 3,
    ///     last: StoreError::transient(Operation::Read, "connection refused"),
    /// });
    /// assert_eq!(error.store_error().map(StoreError::kind), Some(StoreErrorKind::Transient));
    /// ```
    pub fn store_error(&self) -> Option<&StoreError> {
        self.store_error.as_ref()
    }

    /// The original error: the domain error for a refusal, otherwise the
    /// [`CommandError`] (downcast it with the command's error type,
    /// `downcast_ref::<CommandError<E>>()`, to match on its variant).
    ///
    /// ```
    /// use eventcore::{AnyCommandError, CommandError};
    /// let error = AnyCommandError::from(CommandError::<std::io::Error>::NoStreams);
    /// let original = error.get_ref().downcast_ref::<CommandError<std::io::Error>>();
    /// assert!(matches!(original, Some(CommandError::NoStreams)));
    /// ```
    pub fn get_ref(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.inner
    }

    /// The original error, owned (see [`AnyCommandError::get_ref`]).
    ///
    /// ```
    /// use eventcore::{AnyCommandError, CommandError};
    /// let error = AnyCommandError::from(CommandError::<std::io::Error>::NoStreams);
    /// assert!(error.into_inner().is::<CommandError<std::io::Error>>());
    /// ```
    pub fn into_inner(self) -> Box<dyn Error + Send + Sync + 'static> {
        self.inner
    }

    /// The same error, with the command id it ran under.
    pub(crate) fn with_command_id(mut self, command_id: CommandId) -> Self {
        self.command_id = Some(command_id);
        self
    }
}

impl fmt::Display for AnyCommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl Error for AnyCommandError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.inner.source()
    }
}

impl<E: Error + Send + Sync + 'static> From<CommandError<E>> for AnyCommandError {
    fn from(error: CommandError<E>) -> Self {
        let kind = error.kind();
        let may_have_committed = error.may_have_committed();
        let command_id = match &error {
            CommandError::OutcomeUnknown { command_id, .. } => Some(*command_id),
            _ => None,
        };
        let store_error = match &error {
            CommandError::RetriesExhausted { last, .. } | CommandError::OutcomeUnknown { last, .. } => {
                Some(last.clone())
            }
            CommandError::DeadlineExceeded { last, .. } => last.clone(),
            CommandError::Store(store) => Some(store.clone()),
            _ => None,
        };
        let inner: Box<dyn Error + Send + Sync + 'static> = match error {
            CommandError::Domain(domain) => Box::new(domain),
            other => Box::new(other),
        };
        AnyCommandError {
            kind,
            command_id,
            may_have_committed,
            store_error,
            inner,
        }
    }
}

/// A failed execution and the command id it ran under: what the executors
/// (`eventcore_tokio::Executor`, `BlockingExecutor`) return, so that every
/// outcome, failures included, names its command id ([`Executed`]
/// does on success). Log it, and re-execute with it
/// (`Executor::execute_with`) to settle an unknown outcome.
///
/// Match on the failure through the public field:
/// `Err(ExecutionError { error: CommandError::Domain(refusal), .. })`. It
/// displays exactly what [`CommandError`] displays, and its `source()` is
/// the [`CommandError`]'s.
///
/// [`Executed`]: crate::Executed
///
/// ```
/// use eventcore::*;
/// #[derive(Debug, thiserror::Error)]
/// #[error("account closed")]
/// struct Closed;
/// let id = CommandId::v7(Time::ZERO, [3; 10]);
/// let failed = ExecutionError { command_id: id, error: CommandError::Domain(Closed) };
/// assert!(matches!(&failed, ExecutionError { error: CommandError::Domain(Closed), .. }));
/// assert_eq!((failed.command_id(), failed.kind()), (id, CommandErrorKind::Rejected));
/// assert_eq!(failed.to_string(), "account closed");
/// let any = AnyCommandError::from(failed);
/// assert_eq!(any.command_id(), Some(id));
/// ```
#[derive(Debug)]
pub struct ExecutionError<E> {
    /// The command id the execution ran under.
    pub command_id: CommandId,
    /// Why it failed.
    pub error: CommandError<E>,
}

impl<E> ExecutionError<E> {
    /// The command id the execution ran under.
    ///
    /// ```
    /// use eventcore::*;
    /// let id = CommandId::v7(Time::ZERO, [3; 10]);
    /// let failed = ExecutionError { command_id: id, error: CommandError::<std::io::Error>::NoStreams };
    /// assert_eq!(failed.command_id(), id);
    /// ```
    pub fn command_id(&self) -> CommandId {
        self.command_id
    }

    /// What kind of failure this is ([`CommandError::kind`]).
    ///
    /// ```
    /// use eventcore::*;
    /// let failed = ExecutionError { command_id: CommandId::v7(Time::ZERO, [3; 10]), error: CommandError::<std::io::Error>::NoStreams };
    /// assert_eq!(failed.kind(), CommandErrorKind::Invalid);
    /// ```
    pub fn kind(&self) -> CommandErrorKind {
        self.error.kind()
    }

    /// [`CommandError::may_have_committed`].
    ///
    /// ```
    /// use eventcore::*;
    /// let failed = ExecutionError { command_id: CommandId::v7(Time::ZERO, [3; 10]), error: CommandError::<std::io::Error>::NoStreams };
    /// assert!(!failed.may_have_committed());
    /// ```
    pub fn may_have_committed(&self) -> bool {
        self.error.may_have_committed()
    }

    /// The failure, without the command id.
    ///
    /// ```
    /// use eventcore::*;
    /// let failed = ExecutionError { command_id: CommandId::v7(Time::ZERO, [3; 10]), error: CommandError::<std::io::Error>::NoStreams };
    /// assert!(matches!(failed.into_error(), CommandError::NoStreams));
    /// ```
    pub fn into_error(self) -> CommandError<E> {
        self.error
    }
}

impl<E: Error + 'static> fmt::Display for ExecutionError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl<E: Error + 'static> Error for ExecutionError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.error.source()
    }
}

impl<E> From<ExecutionError<E>> for CommandError<E> {
    fn from(failed: ExecutionError<E>) -> Self {
        failed.error
    }
}

impl<E: Error + Send + Sync + 'static> From<ExecutionError<E>> for AnyCommandError {
    fn from(failed: ExecutionError<E>) -> Self {
        AnyCommandError::from(failed.error).with_command_id(failed.command_id)
    }
}
