//! Recording what every command was told, in the simulator's history
//! format, so that the simulator's invariant checker judges a real run.
//!
//! [`RecordingStore`] wraps the store the executor runs against: it keeps
//! the distinct appends each command id sent (the checker matches committed
//! events against them) and counts the failures PostgreSQL itself caused
//! (lock and statement timeouts, pool exhaustion, terminated sessions).
//! [`Recorder::finish_execution`] files one execution's outcome.

use crate::faults::{FaultCounters, FaultKind};
use eventcore::{
    AppendReceipt, AppendRequest, CommandError, CommandId, Executed, GlobalPosition, ReadAllRequest, ReadAllResponse,
    ReadRequest, ReadResponse, StoreError,
};
use eventcore_sim::history::{Attempt, CommandRecord, ExecutionOutcome, ExecutionRecord, History};
use eventcore_tokio::EventStore;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The four ways a command execution can end, as the chaos report counts
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum OutcomeClass {
    /// Committed, with a receipt (or an empty decision: nothing to write).
    Acknowledged,
    /// The domain refused it.
    DomainRefused,
    /// Failed, and the error guarantees nothing was written.
    FailedNothingWritten,
    /// Failed with an unknown outcome: it may have committed once.
    Unknown,
}

impl OutcomeClass {
    /// Every class, in report order.
    pub const ALL: [OutcomeClass; 4] = [
        OutcomeClass::Acknowledged,
        OutcomeClass::DomainRefused,
        OutcomeClass::FailedNothingWritten,
        OutcomeClass::Unknown,
    ];

    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            OutcomeClass::Acknowledged => "acknowledged",
            OutcomeClass::DomainRefused => "domain-refused",
            OutcomeClass::FailedNothingWritten => "failed-nothing-written",
            OutcomeClass::Unknown => "outcome-unknown",
        }
    }
}

/// Turns an execution result into the history's outcome and its class.
///
/// ```
/// use eventcore::{CommandError, Executed};
/// use eventcore_chaos::record::{classify, OutcomeClass};
/// let refused: Result<Executed, CommandError<std::fmt::Error>> = Err(CommandError::Domain(std::fmt::Error));
/// assert_eq!(classify(&refused).1, OutcomeClass::DomainRefused);
/// ```
pub fn classify<E: std::error::Error>(result: &Result<Executed, CommandError<E>>) -> (ExecutionOutcome, OutcomeClass) {
    match result {
        Ok(done) => match &done.appended {
            Some(receipt) => (
                ExecutionOutcome::Acknowledged(receipt.clone()),
                OutcomeClass::Acknowledged,
            ),
            None => (ExecutionOutcome::NothingToDo, OutcomeClass::Acknowledged),
        },
        Err(CommandError::Domain(e)) => (
            ExecutionOutcome::Refused {
                reason: format!("domain: {e}"),
            },
            OutcomeClass::DomainRefused,
        ),
        Err(e) if e.may_have_committed() => (
            ExecutionOutcome::Unknown { reason: e.to_string() },
            OutcomeClass::Unknown,
        ),
        // As the simulator files them: giving up promises nothing was
        // written by this execution, but is no verdict on the command.
        Err(
            e
            @ (CommandError::RetriesExhausted { .. } | CommandError::DeadlineExceeded { .. } | CommandError::Store(_)),
        ) => (
            ExecutionOutcome::GaveUp { reason: e.to_string() },
            OutcomeClass::FailedNothingWritten,
        ),
        Err(e) => (
            ExecutionOutcome::Refused { reason: e.to_string() },
            OutcomeClass::FailedNothingWritten,
        ),
    }
}

#[derive(Default)]
struct Inner {
    /// Commands in issue order.
    order: Vec<CommandId>,
    commands: BTreeMap<CommandId, CommandRecord>,
    /// Appends sent by executions still running, by command id.
    in_flight: HashMap<CommandId, Vec<Attempt>>,
    classes: BTreeMap<OutcomeClass, u64>,
    deduplicated_acks: u64,
    /// Every store error that was a database deadlock, in words.
    deadlocks: Vec<String>,
}

/// Collects the history of a run.
#[derive(Default)]
pub struct Recorder {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sent(&self, request: &AppendRequest) {
        let attempt = Attempt::of(request);
        let mut inner = self.lock();
        let attempts = inner.in_flight.entry(request.command_id()).or_default();
        if !attempts.contains(&attempt) {
            attempts.push(attempt);
        }
    }

    /// Files one finished execution of `command_id` (labelled `label`,
    /// started when the store's settled position was `started_after`).
    /// Returns its class, and whether the command is now resolved (the
    /// caller knows whether it committed; see
    /// [`CommandRecord::is_resolved`]).
    pub fn finish_execution<E: std::error::Error>(
        &self,
        command_id: CommandId,
        label: &str,
        started_after: GlobalPosition,
        healed: bool,
        result: &Result<Executed, CommandError<E>>,
    ) -> (OutcomeClass, bool) {
        let (outcome, class) = classify(result);
        let mut inner = self.lock();
        if matches!(&outcome, ExecutionOutcome::Acknowledged(receipt) if receipt.deduplicated) {
            inner.deduplicated_acks += 1;
        }
        let attempts = inner.in_flight.remove(&command_id).unwrap_or_default();
        *inner.classes.entry(class).or_default() += 1;
        if !inner.commands.contains_key(&command_id) {
            inner.order.push(command_id);
        }
        let record = inner.commands.entry(command_id).or_insert_with(|| CommandRecord {
            command_id,
            label: label.to_owned(),
            executions: Vec::new(),
        });
        record.executions.push(ExecutionRecord {
            started_after,
            healed,
            attempts,
            outcome,
        });
        (class, record.is_resolved())
    }

    /// Executions per outcome class.
    pub fn classes(&self) -> BTreeMap<OutcomeClass, u64> {
        self.lock().classes.clone()
    }

    /// Files an execution of `command_id` that was abandoned mid-flight (a
    /// client crash): its outcome is unknown.
    pub fn crashed(&self, command_id: CommandId, label: &str, started_after: GlobalPosition, healed: bool) {
        let mut inner = self.lock();
        let attempts = inner.in_flight.remove(&command_id).unwrap_or_default();
        *inner.classes.entry(OutcomeClass::Unknown).or_default() += 1;
        if !inner.commands.contains_key(&command_id) {
            inner.order.push(command_id);
        }
        let record = inner.commands.entry(command_id).or_insert_with(|| CommandRecord {
            command_id,
            label: label.to_owned(),
            executions: Vec::new(),
        });
        record.executions.push(ExecutionRecord {
            started_after,
            healed,
            attempts,
            outcome: ExecutionOutcome::Crashed,
        });
    }

    /// Acknowledgements that carried a deduplicated receipt (the command
    /// had committed on an earlier send whose answer was lost).
    pub fn deduplicated_acks(&self) -> u64 {
        self.lock().deduplicated_acks
    }

    /// Every store error the executors met that was a database deadlock
    /// (SQLSTATE 40P01). Heads are locked in one global order, so each one
    /// is a bug, not a transient error to retry.
    pub fn deadlocks(&self) -> Vec<String> {
        self.lock().deadlocks.clone()
    }

    /// Commands not resolved yet.
    pub fn unresolved(&self) -> Vec<CommandId> {
        let inner = self.lock();
        inner
            .order
            .iter()
            .filter(|id| !inner.commands[*id].is_resolved())
            .copied()
            .collect()
    }

    /// The history: `events` (every committed event in global order, read
    /// back by the caller) plus every command recorded, in issue order.
    pub fn history(&self, events: Vec<eventcore::RecordedEvent>) -> History {
        let inner = self.lock();
        History {
            events,
            commands: inner.order.iter().map(|id| inner.commands[id].clone()).collect(),
        }
    }
}

/// An [`EventStore`] that records appends into a [`Recorder`] and counts
/// the database-side faults its errors reveal.
#[derive(Clone, Debug)]
pub struct RecordingStore<S> {
    inner: S,
    recorder: Arc<Recorder>,
    counters: Arc<FaultCounters>,
}

impl<S> RecordingStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, recorder: Arc<Recorder>, counters: Arc<FaultCounters>) -> Self {
        RecordingStore {
            inner,
            recorder,
            counters,
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn observe<T>(&self, result: &Result<T, StoreError>) {
        if let Err(error) = result {
            if let Some(kind) = database_fault(error) {
                self.counters.injected(kind);
            }
            if is_deadlock(error) {
                self.recorder.lock().deadlocks.push(error.to_string());
            }
        }
    }
}

/// Whether the error, or any error in its chain, is PostgreSQL's
/// `deadlock_detected` (SQLSTATE 40P01).
///
/// ```
/// use eventcore::{Operation, StoreError};
/// let error = StoreError::Transient { operation: Operation::Append, message: "timed out".into(), source: None };
/// assert!(!eventcore_chaos::record::is_deadlock(&error));
/// ```
pub fn is_deadlock(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = next {
        if let Some(sqlx::Error::Database(db)) = current.downcast_ref::<sqlx::Error>() {
            if db.code().as_deref() == Some("40P01") {
                return true;
            }
        }
        next = current.source();
    }
    false
}

/// Which database-side fault an error shows, judged by the whole error
/// chain's text (SQLSTATE messages and sqlx's pool error).
pub fn database_fault(error: &(dyn std::error::Error + 'static)) -> Option<FaultKind> {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(" | ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    if text.contains("lock timeout") {
        Some(FaultKind::LockTimeout)
    } else if text.contains("statement timeout") {
        Some(FaultKind::StatementTimeout)
    } else if text.contains("pool timed out") {
        Some(FaultKind::PoolTimeout)
    } else {
        None
    }
}

impl<S: EventStore> EventStore for RecordingStore<S> {
    async fn read(&self, request: &ReadRequest) -> Result<ReadResponse, StoreError> {
        let result = self.inner.read(request).await;
        self.observe(&result);
        result
    }

    async fn append(&self, request: &AppendRequest) -> Result<AppendReceipt, StoreError> {
        self.recorder.sent(request);
        let result = self.inner.append(request).await;
        self.observe(&result);
        result
    }

    async fn read_all(&self, request: &ReadAllRequest) -> Result<ReadAllResponse, StoreError> {
        let result = self.inner.read_all(request).await;
        self.observe(&result);
        result
    }
}
