//! A type-erased command execution, so one client can run commands of
//! different types side by side. Anything that speaks this interface can be
//! scheduled — the extension point for other sans-IO machines (a
//! subscription consumer adapts its own machine the same way).

use crate::history::ExecutionOutcome;
use eventcore::{
    AppendReceipt, AppendRequest, Command, CommandError, CommandId, CommandMachine, ExecutionStats, ReadRequest,
    ReadResponse, RecordedEvent, RequestId, Step, StoreError, StreamId, StreamVersion, StreamView, Time, ViewKind,
};

/// The next step of an execution, with its result already classified.
#[derive(Debug)]
pub enum SimStep {
    /// Send this read.
    Read(Sent<ReadRequest>),
    /// Send this append.
    Append(Sent<AppendRequest>),
    /// Wake the execution at this time unless a response comes first.
    Wait(Time),
    /// The execution ended.
    Done(Settled),
    /// Nothing left to do.
    Finished,
}

/// A request on the simulated wire: the store contract's request, and the
/// id the machine gave it to match the answer (the store itself never sees
/// it). Dereferences to the request.
///
/// ```
/// use eventcore::{ReadRequest, RequestId, StreamId};
/// use eventcore_sim::exec::Sent;
/// let sent = Sent { id: RequestId::new(3), request: ReadRequest::new([StreamId::new("a").unwrap()]) };
/// assert_eq!((sent.id.get(), sent.streams.len()), (3, 1));
/// ```
#[derive(Clone, Debug)]
pub struct Sent<T> {
    /// Matches the answer to the request.
    pub id: RequestId,
    /// The request itself.
    pub request: T,
}

impl<T> std::ops::Deref for Sent<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.request
    }
}

/// How an execution ended.
#[derive(Debug)]
pub struct Settled {
    /// What the caller was told, as the history records it.
    pub outcome: ExecutionOutcome,
    /// The error variant, for coverage counters (`None` on success).
    pub error_kind: Option<&'static str>,
    /// The execution's counters.
    pub stats: ExecutionStats,
    /// Attempts used.
    pub attempts: u32,
    /// Every stream at the version the last decision rested on
    /// ([`CommandMachine::decided_at`]).
    pub decided_at: Vec<(StreamId, StreamVersion)>,
}

/// One running command execution, whatever its command type.
pub trait Execution {
    /// See [`CommandMachine::poll`].
    fn poll(&mut self) -> SimStep;
    /// See [`CommandMachine::on_read`].
    fn on_read(&mut self, id: RequestId, result: Result<ReadResponse, StoreError>, now: Time);
    /// See [`CommandMachine::on_append`].
    fn on_append(&mut self, id: RequestId, result: Result<AppendReceipt, StoreError>, now: Time);
    /// See [`CommandMachine::on_wake`].
    fn on_wake(&mut self, now: Time);
    /// The execution's counters so far.
    fn stats(&self) -> &ExecutionStats;
    /// The idempotency key.
    fn command_id(&self) -> CommandId;
    /// See [`CommandMachine::prime`]: seeds a declared stream from a cache
    /// (the whole stream from version 1, possibly stale).
    fn prime(&mut self, stream: &StreamId, events: &[RecordedEvent]) -> bool;
    /// See [`CommandMachine::unprimed_views`].
    fn unprimed_views(&self) -> Vec<(StreamId, ViewKind)>;
    /// See [`CommandMachine::prime_view`].
    fn prime_view(&mut self, view: StreamView) -> bool;
    /// See [`CommandMachine::prime_snapshot`].
    fn prime_snapshot(&mut self, view: StreamView) -> bool;
    /// See [`CommandMachine::take_views`].
    fn take_views(&mut self) -> Vec<StreamView>;
    /// See [`CommandMachine::stale_views`].
    fn stale_views(&self) -> Vec<(StreamId, ViewKind)>;
    /// See [`CommandMachine::decided_at`].
    fn decided_at(&self) -> Vec<(StreamId, StreamVersion)>;
    /// See [`CommandMachine::deadline`].
    fn deadline(&self) -> Option<Time>;
    /// See [`CommandMachine::reencode_append`]: the append just handed out
    /// by [`poll`](Execution::poll), encoded again (under the context the
    /// driver installed since, say more keys).
    fn reencode_append(&mut self) -> Option<AppendRequest>;
}

impl<C: Command> Execution for CommandMachine<C> {
    fn poll(&mut self) -> SimStep {
        match CommandMachine::poll(self) {
            Step::Read { id, request, .. } => SimStep::Read(Sent { id, request }),
            // The simulator's network owns what it carries; a copy per send
            // is no cost worth avoiding here.
            Step::Append { id, request, .. } => SimStep::Append(Sent {
                id,
                request: std::sync::Arc::unwrap_or_clone(request),
            }),
            Step::Wait { until } => SimStep::Wait(until),
            Step::Done(result) => {
                let attempts = self.attempts();
                let stats = self.stats().clone();
                let decided_at = CommandMachine::decided_at(self);
                let (outcome, error_kind) = match result {
                    Ok(executed) => match executed.appended {
                        Some(receipt) => (ExecutionOutcome::Acknowledged(receipt), None),
                        None => (ExecutionOutcome::NothingToDo, None),
                    },
                    Err(error) => {
                        let kind = error_kind(&error);
                        let reason = error.to_string();
                        let outcome = if error.may_have_committed() {
                            ExecutionOutcome::Unknown { reason }
                        } else if matches!(error, CommandError::Store(StoreError::StreamDeleted(_))) {
                            // A verdict: the store checks the command id
                            // before the tombstone, so this command id never
                            // committed, and the stream takes no more events.
                            ExecutionOutcome::Refused { reason }
                        } else if matches!(
                            error,
                            CommandError::RetriesExhausted { .. }
                                | CommandError::DeadlineExceeded { .. }
                                | CommandError::Store(_)
                        ) {
                            ExecutionOutcome::GaveUp { reason }
                        } else {
                            ExecutionOutcome::Refused { reason }
                        };
                        (outcome, Some(kind))
                    }
                };
                SimStep::Done(Settled {
                    outcome,
                    error_kind,
                    stats,
                    attempts,
                    decided_at,
                })
            }
            Step::Finished => SimStep::Finished,
        }
    }

    fn on_read(&mut self, id: RequestId, result: Result<ReadResponse, StoreError>, now: Time) {
        CommandMachine::on_read(self, id, result, now);
    }

    fn on_append(&mut self, id: RequestId, result: Result<AppendReceipt, StoreError>, now: Time) {
        CommandMachine::on_append(self, id, result, now);
    }

    fn on_wake(&mut self, now: Time) {
        CommandMachine::on_wake(self, now);
    }

    fn stats(&self) -> &ExecutionStats {
        CommandMachine::stats(self)
    }

    fn command_id(&self) -> CommandId {
        CommandMachine::command_id(self)
    }

    fn prime(&mut self, stream: &StreamId, events: &[RecordedEvent]) -> bool {
        CommandMachine::prime(self, stream, events)
    }

    fn unprimed_views(&self) -> Vec<(StreamId, ViewKind)> {
        CommandMachine::unprimed_views(self)
    }

    fn prime_view(&mut self, view: StreamView) -> bool {
        CommandMachine::prime_view(self, view)
    }

    fn prime_snapshot(&mut self, view: StreamView) -> bool {
        CommandMachine::prime_snapshot(self, view)
    }

    fn take_views(&mut self) -> Vec<StreamView> {
        CommandMachine::take_views(self)
    }

    fn stale_views(&self) -> Vec<(StreamId, ViewKind)> {
        CommandMachine::stale_views(self)
    }

    fn decided_at(&self) -> Vec<(StreamId, StreamVersion)> {
        CommandMachine::decided_at(self)
    }

    fn deadline(&self) -> Option<Time> {
        CommandMachine::deadline(self)
    }

    fn reencode_append(&mut self) -> Option<AppendRequest> {
        CommandMachine::reencode_append(self).map(std::sync::Arc::unwrap_or_clone)
    }
}

fn error_kind<E>(error: &CommandError<E>) -> &'static str {
    match error {
        CommandError::NoStreams => "no_streams",
        CommandError::UnreadStream { .. } => "unread_stream",
        CommandError::EndWithoutEvent { .. } => "end_without_event",
        CommandError::DiscoveryLimit { .. } => "discovery_limit",
        CommandError::Domain(_) => "domain",
        CommandError::Decode(_) => "decode",
        CommandError::Store(StoreError::ContractViolation { .. }) => "contract_violation",
        CommandError::Store(StoreError::StreamDeleted(_)) => "stream_deleted",
        CommandError::MissingView { .. } => "missing_view",
        CommandError::Encode { .. } => "encode",
        CommandError::RetriesExhausted { .. } => "retries_exhausted",
        CommandError::OutcomeUnknown { .. } => "outcome_unknown",
        CommandError::DeadlineExceeded { .. } => "deadline_exceeded",
        CommandError::Store(_) => "store",
        _ => "other",
    }
}
