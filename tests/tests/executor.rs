//! The tokio `Executor` against stores that fail on purpose: wrappers around
//! `MemoryEventStore` that lose acknowledgements, hang, fail transiently or
//! let another writer in first. Time is paused, so timeouts and backoff
//! elapse instantly and deterministically.

use eventcore::*;
use eventcore_examples::bank::{account, AccountEvent, BankError, OpenAccount, Transfer};
use eventcore_tokio::{EventStore, Executor, MemoryEventStore};

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the wrapper does to one read.
#[derive(Clone, Copy, Debug)]
enum ReadFault {
    /// Answer `Transient` without reading.
    Transient,
    /// Answer `Permanent` without reading.
    Permanent,
    /// Never answer (the executor's read timeout fires).
    Hang,
}

/// What the wrapper does to one append.
#[derive(Clone, Copy, Debug)]
enum AppendFault {
    /// Answer `Transient` without appending.
    Transient,
    /// Append, then answer `OutcomeUnknown` (the acknowledgement was lost).
    CommitThenUnknown,
    /// Answer `OutcomeUnknown` without appending.
    UnknownWithoutCommit,
    /// Append, then never answer.
    CommitThenHang,
    /// Never answer and never append (the future is dropped while waiting).
    HangWithoutCommit,
    /// Another writer appends to the request's first stream just before.
    ForeignWriteFirst,
}

const HANG: Duration = Duration::from_secs(24 * 3600);

/// A `MemoryEventStore` with a script of faults: each call takes the next
/// fault of its kind, or the standing fault once the script is used up.
#[derive(Default)]
struct Scripted {
    inner: MemoryEventStore,
    reads: Mutex<VecDeque<ReadFault>>,
    appends: Mutex<VecDeque<AppendFault>>,
    every_read: Mutex<Option<ReadFault>>,
    every_append: Mutex<Option<AppendFault>>,
    read_calls: AtomicU32,
    append_calls: AtomicU32,
}

impl Scripted {
    fn new() -> Self {
        Scripted::default()
    }

    fn with_reads(self, faults: impl IntoIterator<Item = ReadFault>) -> Self {
        self.reads.lock().expect("lock").extend(faults);
        self
    }

    fn with_appends(self, faults: impl IntoIterator<Item = AppendFault>) -> Self {
        self.appends.lock().expect("lock").extend(faults);
        self
    }

    fn failing_every_read(self, fault: ReadFault) -> Self {
        *self.every_read.lock().expect("lock") = Some(fault);
        self
    }

    fn failing_every_append(self, fault: AppendFault) -> Self {
        *self.every_append.lock().expect("lock") = Some(fault);
        self
    }

    fn heal(&self) {
        *self.every_read.lock().expect("lock") = None;
        *self.every_append.lock().expect("lock") = None;
        self.reads.lock().expect("lock").clear();
        self.appends.lock().expect("lock").clear();
    }

    fn next_read_fault(&self) -> Option<ReadFault> {
        let scripted = self.reads.lock().expect("lock").pop_front();
        scripted.or(*self.every_read.lock().expect("lock"))
    }

    fn next_append_fault(&self) -> Option<AppendFault> {
        let scripted = self.appends.lock().expect("lock").pop_front();
        scripted.or(*self.every_append.lock().expect("lock"))
    }

    fn reads_made(&self) -> u32 {
        self.read_calls.load(Ordering::SeqCst)
    }

    fn appends_made(&self) -> u32 {
        self.append_calls.load(Ordering::SeqCst)
    }

    /// Events written by one command execution.
    fn events_of(&self, command_id: CommandId) -> Vec<RecordedEvent> {
        self.inner.inspect(|store| {
            store
                .events()
                .iter()
                .filter(|e| e.metadata.command_id == command_id)
                .cloned()
                .collect()
        })
    }

    fn event_count(&self) -> usize {
        self.inner.inspect(|store| store.events().len())
    }
}

impl EventStore for Scripted {
    async fn read(&self, request: &ReadRequest) -> Result<ReadResponse, StoreError> {
        let n = self.read_calls.fetch_add(1, Ordering::SeqCst) + 1;
        match self.next_read_fault() {
            None => self.inner.read(request).await,
            Some(ReadFault::Transient) => Err(StoreError::transient(Operation::Read, format!("read failure #{n}"))),
            Some(ReadFault::Permanent) => Err(StoreError::permanent(Operation::Read, "permission denied")),
            Some(ReadFault::Hang) => {
                tokio::time::sleep(HANG).await;
                self.inner.read(request).await
            }
        }
    }

    async fn append(&self, request: &AppendRequest) -> Result<AppendReceipt, StoreError> {
        let n = self.append_calls.fetch_add(1, Ordering::SeqCst) + 1;
        let unknown = || StoreError::OutcomeUnknown {
            operation: Operation::Append,
            message: format!("connection lost after append #{n}"),
            source: None,
        };
        match self.next_append_fault() {
            None => self.inner.append(request).await,
            Some(AppendFault::Transient) => {
                Err(StoreError::transient(Operation::Append, format!("append failure #{n}")))
            }
            Some(AppendFault::CommitThenUnknown) => {
                let _ = self.inner.append(request).await;
                Err(unknown())
            }
            Some(AppendFault::UnknownWithoutCommit) => Err(unknown()),
            Some(AppendFault::CommitThenHang) => {
                let result = self.inner.append(request).await;
                tokio::time::sleep(HANG).await;
                result
            }
            Some(AppendFault::HangWithoutCommit) => {
                tokio::time::sleep(HANG).await;
                self.inner.append(request).await
            }
            Some(AppendFault::ForeignWriteFirst) => {
                let stream = request.streams[0].stream.clone();
                let foreign = foreign_deposit(&stream, n);
                self.inner.append(&foreign).await.expect("the foreign write commits");
                self.inner.append(request).await
            }
        }
    }

    async fn read_all(&self, request: &ReadAllRequest) -> Result<ReadAllResponse, StoreError> {
        self.inner.read_all(request).await
    }
}

/// Another process writes to `stream` (a zero deposit, so that money stays
/// conserved).
fn foreign_deposit(stream: &StreamId, n: u32) -> AppendRequest {
    let encoded = AccountEvent::Deposited { amount: 0 }.encode().expect("encodes");
    let mut entropy = [0xF0; 10];
    entropy[6..].copy_from_slice(&n.to_le_bytes());
    AppendRequest {
        metadata: Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, entropy), Time::ZERO)),
        streams: vec![StreamAppend {
            stream: stream.clone(),
            expected: ExpectedVersion::Any,
            events: vec![NewEvent {
                event_id: EventId::v7(Time::ZERO, entropy),
                event_type: encoded.event_type,
                schema_version: encoded.schema_version,
                payload: encoded.payload,
            }],
            tombstone: false,
        }],
    }
}

fn policy_with_attempts(max_attempts: u32) -> ExecutionPolicy {
    ExecutionPolicy::default().with_retry(RetryPolicy {
        max_attempts,
        ..RetryPolicy::default()
    })
}

fn open(n: u32, initial: u64) -> OpenAccount {
    OpenAccount {
        account: account(n),
        initial,
    }
}

/// Asserts that `receipt` is the store's record of `command_id` and that
/// the store holds its events exactly once.
fn assert_committed_once(store: &Scripted, command_id: CommandId, receipt: &AppendReceipt, events: usize) {
    let stored = store.events_of(command_id);
    assert_eq!(stored.len(), events, "the command's events are stored exactly once");
    let record = store
        .inner
        .inspect(|s| s.receipt(&command_id).cloned())
        .expect("the store recorded the command");
    assert!(
        receipt.same_commit(&record),
        "the executor reports the commit the store holds"
    );
    let positions: Vec<GlobalPosition> = receipt.streams.iter().flat_map(|s| s.positions.clone()).collect();
    let stored_positions: Vec<GlobalPosition> = stored.iter().map(|e| e.position).collect();
    assert_eq!(positions, stored_positions);
}

async fn run<C: Command>(
    executor: &Executor<Arc<Scripted>>,
    command: C,
) -> (CommandId, Result<Executed, CommandError<C::Error>>) {
    let command_id = executor.new_command_id();
    let result = executor
        .execute_with(command, ExecutionContext::new(command_id))
        .await
        .map_err(|failed| {
            assert_eq!(failed.command_id(), command_id, "a failure names the id it ran under");
            failed.into_error()
        });
    (command_id, result)
}

#[tokio::test(start_paused = true)]
async fn an_append_that_commits_but_loses_its_acknowledgement_succeeds_exactly_once() {
    let store = Arc::new(Scripted::new().with_appends([AppendFault::CommitThenUnknown]));
    let executor = Executor::new(store.clone());
    let (id, result) = run(&executor, open(1, 100)).await;
    let done = result.expect("the resend finds the commit");
    assert_eq!(done.attempts, 2, "one attempt, one resend");
    assert_eq!(done.stats.unknown_outcomes, 1);
    assert_eq!(store.appends_made(), 2);
    assert_eq!(store.reads_made(), 1, "a resend does not re-read");
    let receipt = done.appended.expect("events were appended");
    assert!(receipt.deduplicated, "the resend was answered with the first commit");
    assert_committed_once(&store, id, &receipt, 1);
    assert_eq!(store.event_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_append_that_hangs_after_committing_is_resent_and_deduplicated() {
    let store = Arc::new(Scripted::new().with_appends([AppendFault::CommitThenHang]));
    let executor = Executor::new(store.clone());
    let (id, result) = run(&executor, open(1, 100)).await;
    let done = result.expect("the resend after the timeout finds the commit");
    assert_eq!(done.attempts, 2);
    assert_eq!(
        done.stats.unknown_outcomes, 1,
        "the timeout counts as an unknown outcome"
    );
    let receipt = done.appended.expect("events were appended");
    assert!(receipt.deduplicated);
    assert_committed_once(&store, id, &receipt, 1);
}

#[tokio::test(start_paused = true)]
async fn an_append_that_hangs_before_committing_is_resent_and_commits_once() {
    let store = Arc::new(Scripted::new().with_appends([AppendFault::HangWithoutCommit]));
    let executor = Executor::new(store.clone());
    let (id, result) = run(&executor, open(1, 100)).await;
    let done = result.expect("the resend commits");
    assert_eq!(done.attempts, 2);
    let receipt = done.appended.expect("events were appended");
    assert!(!receipt.deduplicated, "the hung append never committed; the resend did");
    assert_committed_once(&store, id, &receipt, 1);
    assert_eq!(store.event_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn transient_read_errors_are_retried() {
    let store = Arc::new(Scripted::new().with_reads([ReadFault::Transient, ReadFault::Transient]));
    let executor = Executor::new(store.clone());
    let (id, result) = run(&executor, open(1, 100)).await;
    let done = result.expect("the third read succeeds");
    assert_eq!(done.attempts, 3);
    assert_eq!(done.stats.transient_errors, 2);
    assert_eq!(store.reads_made(), 3);
    assert_committed_once(&store, id, &done.appended.expect("appended"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_read_that_hangs_past_the_read_timeout_is_retried() {
    let store = Arc::new(Scripted::new().with_reads([ReadFault::Hang]));
    let executor = Executor::new(store.clone());
    let (id, result) = run(&executor, open(1, 100)).await;
    let done = result.expect("the second read succeeds");
    assert_eq!(done.attempts, 2);
    assert_eq!(done.stats.transient_errors, 1, "a read timeout is a transient error");
    assert_committed_once(&store, id, &done.appended.expect("appended"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_transient_append_error_is_retried_after_a_fresh_read() {
    let store = Arc::new(Scripted::new().with_appends([AppendFault::Transient]));
    let executor = Executor::new(store.clone());
    let (id, result) = run(&executor, open(1, 100)).await;
    let done = result.expect("the second attempt commits");
    assert_eq!(done.attempts, 2);
    assert_eq!(
        store.reads_made(),
        2,
        "a transient append failure re-reads and decides again"
    );
    let receipt = done.appended.expect("appended");
    assert!(!receipt.deduplicated);
    assert_committed_once(&store, id, &receipt, 1);
}

#[tokio::test(start_paused = true)]
async fn retries_exhausted_reports_the_attempts_and_the_last_error() {
    let store = Arc::new(Scripted::new().failing_every_read(ReadFault::Transient));
    let executor = Executor::new(store.clone()).with_policy(policy_with_attempts(3));
    let (id, result) = run(&executor, open(1, 100)).await;
    match result {
        Err(CommandError::RetriesExhausted {
            attempts,
            last: StoreError::Transient { operation, message, .. },
        }) => {
            assert_eq!(attempts, 3);
            assert_eq!(operation, Operation::Read);
            assert_eq!(
                message, "read failure #3",
                "the error of the last attempt, not an earlier one"
            );
        }
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
    assert_eq!(store.reads_made(), 3, "never more attempts than the policy allows");
    assert_eq!(store.appends_made(), 0);
    assert!(store.events_of(id).is_empty());
    assert_eq!(store.event_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn conflicts_until_attempts_run_out_report_the_last_conflict() {
    let store = Arc::new(Scripted::new().failing_every_append(AppendFault::ForeignWriteFirst));
    let executor = Executor::new(store.clone()).with_policy(policy_with_attempts(3));
    let (id, result) = run(&executor, open(1, 100)).await;
    match result {
        Err(CommandError::RetriesExhausted {
            attempts,
            last: StoreError::Conflict(conflict),
        }) => {
            assert_eq!(attempts, 3);
            assert_eq!(conflict.stream, account(1));
            // Attempt 3 read version 2, then a foreign write moved it to 3.
            assert_eq!(conflict.expected, ExpectedVersion::Exact(StreamVersion::new(2)));
            assert_eq!(conflict.actual, StreamVersion::new(3));
        }
        other => panic!("expected RetriesExhausted with a conflict, got {other:?}"),
    }
    assert!(store.events_of(id).is_empty(), "nothing of the command was written");
    assert_eq!(store.event_count(), 3, "only the three foreign deposits");
}

#[tokio::test(start_paused = true)]
async fn an_outcome_that_stays_unknown_is_reported_and_settled_by_re_executing() {
    let store = Arc::new(Scripted::new().failing_every_append(AppendFault::UnknownWithoutCommit));
    let executor = Executor::new(store.clone()).with_policy(policy_with_attempts(3));
    let (id, result) = run(&executor, open(1, 100)).await;
    match &result {
        Err(
            error @ CommandError::OutcomeUnknown {
                command_id,
                attempts,
                last: StoreError::OutcomeUnknown { message, .. },
            },
        ) => {
            assert_eq!(*command_id, id);
            assert_eq!(*attempts, 3);
            assert_eq!(message, "connection lost after append #3");
            assert!(error.may_have_committed());
        }
        other => panic!("expected OutcomeUnknown, got {other:?}"),
    }
    assert_eq!(store.appends_made(), 3, "the same append, sent three times");
    assert!(store.events_of(id).is_empty());

    store.heal();
    let done = executor
        .execute_with(open(1, 100), ExecutionContext::new(id))
        .await
        .expect("re-executing with the same command id settles it");
    let receipt = done.appended.expect("appended");
    assert!(!receipt.deduplicated, "it had never committed");
    assert_committed_once(&store, id, &receipt, 1);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_outcome_that_did_commit_is_committed_once_and_found_again() {
    let store = Arc::new(Scripted::new().failing_every_append(AppendFault::CommitThenUnknown));
    let executor = Executor::new(store.clone()).with_policy(policy_with_attempts(4));
    let (id, result) = run(&executor, open(1, 100)).await;
    assert!(
        matches!(&result, Err(CommandError::OutcomeUnknown { attempts: 4, .. })),
        "{result:?}"
    );
    assert_eq!(store.appends_made(), 4);
    assert_eq!(store.events_of(id).len(), 1, "four sends, one commit");

    store.heal();
    let done = executor
        .execute_with(open(1, 100), ExecutionContext::new(id))
        .await
        .expect("re-executing finds the commit");
    let receipt = done.appended.expect("appended");
    assert!(receipt.deduplicated, "the store answered with the earlier commit");
    assert_committed_once(&store, id, &receipt, 1);
    assert_eq!(store.event_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_append_hanging_until_the_overall_deadline_ends_with_outcome_unknown() {
    let store = Arc::new(Scripted::new().failing_every_append(AppendFault::HangWithoutCommit));
    let policy = policy_with_attempts(1_000).with_timeout(Duration::from_secs(20));
    let executor = Executor::new(store.clone()).with_policy(policy);
    let (id, result) = run(&executor, open(1, 100)).await;
    match &result {
        Err(CommandError::OutcomeUnknown { command_id, .. }) => assert_eq!(*command_id, id),
        other => panic!("expected OutcomeUnknown at the deadline, got {other:?}"),
    }
    // Each send hangs for the 5 s append timeout, so a 20 s budget fits at
    // most four.
    assert!(
        (1..=4).contains(&store.appends_made()),
        "{} sends",
        store.appends_made()
    );
    assert!(store.events_of(id).is_empty());
}

#[tokio::test(start_paused = true)]
async fn reads_hanging_until_the_overall_deadline_end_with_deadline_exceeded() {
    let store = Arc::new(Scripted::new().failing_every_read(ReadFault::Hang));
    let policy = policy_with_attempts(1_000).with_timeout(Duration::from_secs(12));
    let executor = Executor::new(store.clone()).with_policy(policy);
    let (id, result) = run(&executor, open(1, 100)).await;
    match &result {
        Err(CommandError::DeadlineExceeded { attempts, last }) => {
            assert!(*attempts >= 1);
            assert!(
                matches!(
                    last,
                    Some(StoreError::Timeout {
                        operation: Operation::Read,
                        ..
                    })
                ),
                "{last:?}"
            );
            assert!(!result.as_ref().err().is_some_and(|e| e.may_have_committed()));
        }
        other => panic!("expected DeadlineExceeded, got {other:?}"),
    }
    assert_eq!(store.appends_made(), 0);
    assert!(store.events_of(id).is_empty());
}

#[tokio::test(start_paused = true)]
async fn domain_errors_are_not_retried() {
    let store = Arc::new(Scripted::new());
    let executor = Executor::new(store.clone());
    executor.execute(open(1, 10)).await.expect("opens");
    executor.execute(open(2, 0)).await.expect("opens");
    let reads_before = store.reads_made();
    let (id, result) = run(
        &executor,
        Transfer {
            from: account(1),
            to: account(2),
            amount: 11,
        },
    )
    .await;
    match result {
        Err(CommandError::Domain(BankError::InsufficientFunds {
            account: from,
            balance,
            amount,
        })) => {
            assert_eq!((from, balance, amount), (account(1), 10, 11));
        }
        other => panic!("expected a domain error, got {other:?}"),
    }
    assert_eq!(store.reads_made() - reads_before, 1, "decided once, never retried");
    assert!(store.events_of(id).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_permanent_store_error_is_not_retried() {
    let store = Arc::new(Scripted::new().failing_every_read(ReadFault::Permanent));
    let executor = Executor::new(store.clone());
    let (id, result) = run(&executor, open(1, 100)).await;
    assert!(
        matches!(&result, Err(CommandError::Store(StoreError::Permanent { .. }))),
        "{result:?}"
    );
    assert_eq!(store.reads_made(), 1);
    assert!(store.events_of(id).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_transfer_survives_every_kind_of_fault_in_a_row() {
    let store = Arc::new(
        Scripted::new()
            .with_reads([ReadFault::Transient, ReadFault::Hang])
            .with_appends([
                AppendFault::ForeignWriteFirst,
                AppendFault::Transient,
                AppendFault::HangWithoutCommit,
                AppendFault::CommitThenHang,
                AppendFault::UnknownWithoutCommit,
            ]),
    );
    // Open both accounts directly on the inner store so the script applies
    // to the transfer alone.
    let opener = Executor::new(store.inner.clone());
    opener.execute(open(1, 100)).await.expect("opens");
    opener.execute(open(2, 0)).await.expect("opens");

    let executor = Executor::new(store.clone());
    let (id, result) = run(
        &executor,
        Transfer {
            from: account(1),
            to: account(2),
            amount: 30,
        },
    )
    .await;
    let done = result.expect("the transfer gets through");
    let receipt = done.appended.expect("appended");
    assert!(
        receipt.deduplicated,
        "the commit behind the hang was found by the resend"
    );
    assert_committed_once(&store, id, &receipt, 2);
    let audit = store.inner.inspect(|s| eventcore_examples::bank::Audit::of(s.events()));
    assert!(audit.violations.is_empty(), "{:?}", audit.violations);
    assert_eq!(audit.balances[&account(1)], 70);
    assert_eq!(audit.balances[&account(2)], 30);
}
