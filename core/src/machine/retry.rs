//! Retrying: backoff with full jitter after a conflict or a transient
//! error, and what an execution that runs out of time or attempts reports.

use super::CommandError;
use super::{AfterBackoff, CommandMachine, Phase};
use crate::store::{Operation, StoreError};
use crate::Command;

impl<C: Command> CommandMachine<C> {
    pub(super) fn deadline_error(&mut self) -> CommandError<C::Error> {
        match (self.unresolved.is_some(), self.last_error.take()) {
            (true, last) => CommandError::OutcomeUnknown {
                command_id: self.context.command_id,
                attempts: self.attempts,
                last: last.unwrap_or(StoreError::Timeout {
                    operation: Operation::Append,
                    after: self.policy.append_timeout,
                }),
            },
            (false, last) => CommandError::DeadlineExceeded {
                attempts: self.attempts,
                last,
            },
        }
    }

    pub(super) fn retry(&mut self, error: StoreError, then: AfterBackoff) {
        let max_attempts = self.policy.retry.max_attempts.max(1);
        if self.attempts >= max_attempts {
            let outcome = if self.unresolved.is_some() {
                CommandError::OutcomeUnknown {
                    command_id: self.context.command_id,
                    attempts: self.attempts,
                    last: error,
                }
            } else {
                CommandError::RetriesExhausted {
                    attempts: self.attempts,
                    last: error,
                }
            };
            self.finish(Err(outcome));
            return;
        }
        // The first conflict is retried at once: it proves the competing
        // commit has landed, so an immediate re-read sees it. Backoff only
        // pays off once the same command keeps losing (a hot stream).
        let first_conflict = matches!(error, StoreError::Conflict(_)) && self.stats.conflicts == 1;
        let delay = if first_conflict {
            std::time::Duration::ZERO
        } else {
            self.policy.retry.jittered_backoff(self.attempts, &mut self.entropy)
        };
        let until = self.now.saturating_add(delay);
        self.last_error = Some(error);
        if until >= self.deadline {
            let outcome = self.deadline_error();
            self.finish(Err(outcome));
            return;
        }
        self.attempts += 1;
        if then == AfterBackoff::Reread {
            for cursor in &mut self.cursors {
                cursor.pending = true;
            }
        }
        self.phase = if delay.is_zero() {
            match then {
                AfterBackoff::Reread => Phase::ReadDue,
                AfterBackoff::Resend => match self.unresolved.clone() {
                    Some(request) => Phase::AppendDue(request),
                    None => Phase::ReadDue,
                },
            }
        } else {
            Phase::Backoff { until, then }
        };
    }
}
