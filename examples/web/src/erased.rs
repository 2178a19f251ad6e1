//! TEMPORARY stand-in for `eventcore::{AnyCommandError, CommandErrorKind}`
//! until they land in core.

use eventcore::{CommandError, CommandId, StoreError};

/// What kind of failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandErrorKind {
    /// Refused.
    Domain,
    /// Retries exhausted.
    RetriesExhausted,
    /// Unknown outcome.
    OutcomeUnknown,
    /// Deadline.
    DeadlineExceeded,
    /// Store.
    Store,
    /// Other.
    Other,
}

/// Erased.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AnyCommandError {
    kind: CommandErrorKind,
    message: String,
    domain: Option<Box<dyn std::error::Error + Send + Sync>>,
    store: Option<StoreError>,
    command_id: Option<CommandId>,
}

impl AnyCommandError {
    /// Kind.
    pub fn kind(&self) -> CommandErrorKind {
        self.kind
    }
    /// Domain.
    pub fn domain(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.domain.as_deref()
    }
    /// Store.
    pub fn store_error(&self) -> Option<&StoreError> {
        self.store.as_ref()
    }
    /// Id.
    pub fn command_id(&self) -> Option<CommandId> {
        self.command_id
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<CommandError<E>> for AnyCommandError {
    fn from(error: CommandError<E>) -> Self {
        let message = error.to_string();
        let (kind, domain, store, command_id) = match error {
            CommandError::Domain(e) => (CommandErrorKind::Domain, Some(Box::new(e) as Box<_>), None, None),
            CommandError::RetriesExhausted { last, .. } => (CommandErrorKind::RetriesExhausted, None, Some(last), None),
            CommandError::OutcomeUnknown { command_id, last, .. } => {
                (CommandErrorKind::OutcomeUnknown, None, Some(last), Some(command_id))
            }
            CommandError::DeadlineExceeded { last, .. } => (CommandErrorKind::DeadlineExceeded, None, last, None),
            CommandError::Store(e) => (CommandErrorKind::Store, None, Some(e), None),
            _ => (CommandErrorKind::Other, None, None, None),
        };
        AnyCommandError {
            kind,
            message,
            domain,
            store,
            command_id,
        }
    }
}
