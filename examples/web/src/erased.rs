//! TEMPORARY stand-in for `eventcore::{AnyCommandError, CommandErrorKind}`
//! (the same names and methods) until they are committed in core.
#![allow(missing_docs)]

use eventcore::{CommandError, CommandId, StoreError};
use std::error::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandErrorKind {
    Rejected,
    Conflict,
    OutcomeUnknown,
    Timeout,
    Unavailable,
    Invalid,
    Decode,
    Encode,
}

impl CommandErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandErrorKind::Rejected => "rejected",
            CommandErrorKind::Conflict => "conflict",
            CommandErrorKind::OutcomeUnknown => "outcome_unknown",
            CommandErrorKind::Timeout => "timeout",
            CommandErrorKind::Unavailable => "unavailable",
            CommandErrorKind::Invalid => "invalid",
            CommandErrorKind::Decode => "decode",
            CommandErrorKind::Encode => "encode",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{inner}")]
pub struct AnyCommandError {
    kind: CommandErrorKind,
    inner: Box<dyn Error + Send + Sync>,
    command_id: Option<CommandId>,
}

impl AnyCommandError {
    pub fn kind(&self) -> CommandErrorKind {
        self.kind
    }
    pub fn domain_error<D: Error + 'static>(&self) -> Option<&D> {
        match self.kind {
            CommandErrorKind::Rejected => self.inner.downcast_ref::<D>(),
            _ => None,
        }
    }
    pub fn command_id(&self) -> Option<CommandId> {
        self.command_id
    }
}

impl<E: Error + Send + Sync + 'static> From<CommandError<E>> for AnyCommandError {
    fn from(error: CommandError<E>) -> Self {
        let unavailable = |e: &StoreError| {
            if matches!(e, StoreError::Conflict(_)) {
                CommandErrorKind::Conflict
            } else {
                CommandErrorKind::Unavailable
            }
        };
        let (kind, command_id) = match &error {
            CommandError::Domain(_) => (CommandErrorKind::Rejected, None),
            CommandError::RetriesExhausted { last, .. } => (unavailable(last), None),
            CommandError::OutcomeUnknown { command_id, .. } => (CommandErrorKind::OutcomeUnknown, Some(*command_id)),
            CommandError::DeadlineExceeded { .. } => (CommandErrorKind::Timeout, None),
            CommandError::Store(e) => (unavailable(e), None),
            CommandError::Decode(_) => (CommandErrorKind::Decode, None),
            CommandError::Encode { .. } => (CommandErrorKind::Encode, None),
            _ => (CommandErrorKind::Invalid, None),
        };
        let inner: Box<dyn Error + Send + Sync> = match error {
            CommandError::Domain(e) => Box::new(e),
            other => Box::new(other),
        };
        AnyCommandError {
            kind,
            inner,
            command_id,
        }
    }
}
