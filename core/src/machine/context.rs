//! Who is executing and why.

use crate::{CausationId, CommandId, CorrelationId, Time};
use std::collections::BTreeMap;

/// Who is executing and why: the identity and metadata of one execution.
///
/// ```
/// use eventcore::{CommandId, ExecutionContext, Time};
/// let ctx = ExecutionContext::new(CommandId::v7(Time::ZERO, [0; 10])).with_user("user", "ada");
/// assert_eq!(ctx.user["user"], "ada");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutionContext {
    /// Shared by every attempt; the store's idempotency key.
    pub command_id: CommandId,
    /// Defaults to the command id.
    pub correlation_id: CorrelationId,
    /// What caused this command, if anything.
    pub causation_id: Option<CausationId>,
    /// Copied into every event's metadata.
    pub user: BTreeMap<String, String>,
    /// An absolute deadline, in addition to the policy's relative timeout.
    pub deadline: Option<Time>,
}

impl ExecutionContext {
    /// A context for `command_id` with default metadata.
    pub fn new(command_id: CommandId) -> Self {
        ExecutionContext {
            command_id,
            correlation_id: CorrelationId::from_uuid(command_id.as_uuid()),
            causation_id: None,
            user: BTreeMap::new(),
            deadline: None,
        }
    }

    /// Sets the correlation id.
    pub fn with_correlation(mut self, id: CorrelationId) -> Self {
        self.correlation_id = id;
        self
    }

    /// Sets the causation id.
    pub fn with_causation(mut self, id: CausationId) -> Self {
        self.causation_id = Some(id);
        self
    }

    /// Adds a user metadata key/value.
    pub fn with_user(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.user.insert(key.into(), value.into());
        self
    }

    /// Sets an absolute deadline.
    pub fn with_deadline(mut self, deadline: Time) -> Self {
        self.deadline = Some(deadline);
        self
    }
}
