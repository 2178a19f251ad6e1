//! A recorded history: what the store holds and what every execution was
//! told. The invariant checker works on this alone, never on simulator
//! internals, so a chaos suite can check a history read back from a real
//! database with the same code.

use eventcore::{
    AppendReceipt, AppendRequest, CommandId, EventId, ExpectedVersion, GlobalPosition, RecordedEvent, StreamId,
};

/// One stream of one attempted append: what the client sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptStream {
    /// The stream.
    pub stream: StreamId,
    /// The expected version sent.
    pub expected: ExpectedVersion,
    /// The ids of the events sent, in order (empty: a pure version check).
    pub events: Vec<EventId>,
    /// The append ends the stream: a tombstone written with its last event.
    pub tombstone: bool,
}

/// One append an execution sent (re-sends of the same request count once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// Per stream, in request order.
    pub streams: Vec<AttemptStream>,
}

impl Attempt {
    /// The shape of `request`.
    pub fn of(request: &AppendRequest) -> Self {
        Attempt {
            streams: request
                .streams
                .iter()
                .map(|s| AttemptStream {
                    stream: s.stream.clone(),
                    expected: s.expected,
                    events: s.events.iter().map(|e| e.event_id).collect(),
                    tombstone: s.tombstone,
                })
                .collect(),
        }
    }

    /// Every event id of the attempt.
    pub fn event_ids(&self) -> impl Iterator<Item = &EventId> {
        self.streams.iter().flat_map(|s| s.events.iter())
    }
}

/// What one execution was finally told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecutionOutcome {
    /// Committed (or deduplicated) with this receipt.
    Acknowledged(AppendReceipt),
    /// Succeeded without writing anything (an empty decision).
    NothingToDo,
    /// The command refused (a domain error, a discovery limit, bad input):
    /// a verdict on the state it read; nothing written.
    Refused {
        /// The error, in words.
        reason: String,
    },
    /// Stopped trying (attempts or deadline used up, a permanent store
    /// error) with a guarantee that this execution wrote nothing — but no
    /// verdict: an earlier execution of the same command may have committed.
    GaveUp {
        /// The error, in words.
        reason: String,
    },
    /// Failed with an unknown outcome: it may have committed once.
    Unknown {
        /// The error, in words.
        reason: String,
    },
    /// The client crashed before an answer: the outcome is unknown.
    Crashed,
    /// Still running when the history was taken.
    Running,
}

impl ExecutionOutcome {
    /// True when the execution claims that it wrote nothing.
    pub fn claims_nothing_written(&self) -> bool {
        matches!(
            self,
            ExecutionOutcome::Refused { .. } | ExecutionOutcome::GaveUp { .. } | ExecutionOutcome::NothingToDo
        )
    }

    /// True when the execution decided on the state it read (committed,
    /// nothing to do, or refused): a verdict about the command itself.
    pub fn is_verdict(&self) -> bool {
        matches!(
            self,
            ExecutionOutcome::Acknowledged(_) | ExecutionOutcome::Refused { .. } | ExecutionOutcome::NothingToDo
        )
    }

    /// True when the outcome leaves open whether the command committed.
    pub fn is_ambiguous(&self) -> bool {
        matches!(
            self,
            ExecutionOutcome::Unknown { .. } | ExecutionOutcome::Crashed | ExecutionOutcome::Running
        )
    }
}

/// One execution of a command (a command re-executed after a crash or an
/// unknown outcome has several, all with the same command id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutionRecord {
    /// The store's last position when the execution started: any commit at
    /// or below it was visible to it.
    pub started_after: GlobalPosition,
    /// True when it started in the liveness phase (no faults).
    pub healed: bool,
    /// The distinct appends it sent.
    pub attempts: Vec<Attempt>,
    /// What it was told.
    pub outcome: ExecutionOutcome,
}

/// Everything known about one command id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandRecord {
    /// The idempotency key shared by all its executions.
    pub command_id: CommandId,
    /// A human description (`transfer acct-1 -> acct-4: 17`).
    pub label: String,
    /// Its executions, in start order.
    pub executions: Vec<ExecutionRecord>,
}

impl CommandRecord {
    /// Whether the caller knows, from what it was told, whether the command
    /// committed: the last execution gave a verdict, or gave up with no
    /// ambiguous execution before it.
    pub fn is_resolved(&self) -> bool {
        resolved(&self.executions)
    }
}

/// [`CommandRecord::is_resolved`] over a list of executions.
pub fn resolved(executions: &[ExecutionRecord]) -> bool {
    match executions.split_last() {
        Some((last, _)) if last.outcome.is_verdict() => true,
        Some((last, earlier)) => {
            matches!(last.outcome, ExecutionOutcome::GaveUp { .. }) && !earlier.iter().any(|e| e.outcome.is_ambiguous())
        }
        None => false,
    }
}

/// A history: the store's events in global order plus every command's
/// executions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// Every committed event, in global order.
    pub events: Vec<RecordedEvent>,
    /// Every command issued.
    pub commands: Vec<CommandRecord>,
}
