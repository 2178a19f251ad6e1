//! Many tokio tasks moving money between a few accounts through one
//! `Executor`, all at once. Afterwards the whole store is audited: money is
//! conserved, no balance ever went below zero, every stream's versions are
//! contiguous, and every commit the executor reported is in the store
//! exactly once (and nothing else is).

use eventcore::*;
use eventcore_examples::bank::{account, Audit, BankError, OpenAccount, Transfer};
use eventcore_tokio::{EventStore, Executor, MemoryEventStore};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const ACCOUNTS: u32 = 6;
const INITIAL: u64 = 1_000;
const TASKS: u64 = 16;
const TRANSFERS_EACH: usize = 25;

/// `MemoryEventStore` answers without ever yielding, so on its own a task
/// would run a whole command without interruption. This wrapper yields
/// before every operation so that tasks interleave between read and append,
/// and, when `faulty`, fails some operations on a fixed pattern: transient
/// read errors, transient append errors, and appends that commit but lose
/// their acknowledgement.
#[derive(Clone)]
struct Contended {
    inner: MemoryEventStore,
    faulty: bool,
    calls: Arc<AtomicU64>,
}

impl Contended {
    fn new(faulty: bool) -> Self {
        Contended {
            inner: MemoryEventStore::new(),
            faulty,
            calls: Arc::new(AtomicU64::new(0)),
        }
    }

    fn tick(&self) -> u64 {
        self.calls.fetch_add(1, Ordering::Relaxed)
    }
}

impl EventStore for Contended {
    async fn read(&self, request: &ReadRequest) -> Result<ReadResponse, StoreError> {
        tokio::task::yield_now().await;
        if self.faulty && self.tick() % 11 == 0 {
            return Err(StoreError::transient(Operation::Read, "injected read failure"));
        }
        self.inner.read(request).await
    }

    async fn append(&self, request: &AppendRequest) -> Result<AppendReceipt, StoreError> {
        tokio::task::yield_now().await;
        if self.faulty {
            match self.tick() % 7 {
                0 => return Err(StoreError::transient(Operation::Append, "injected append failure")),
                3 => {
                    let _ = self.inner.append(request).await;
                    return Err(StoreError::OutcomeUnknown {
                        operation: Operation::Append,
                        message: "injected lost acknowledgement".into(),
                        source: None,
                    });
                }
                _ => {}
            }
        }
        self.inner.append(request).await
    }

    async fn read_all(&self, request: &ReadAllRequest) -> Result<ReadAllResponse, StoreError> {
        self.inner.read_all(request).await
    }
}

/// The core's seeded generator, so each task's transfers are reproducible
/// from its index.
type Rng = eventcore::Entropy;

#[derive(Debug)]
enum Outcome {
    Committed(AppendReceipt, ExecutionStats),
    Refused(BankError),
    GaveUp(String),
    Unknown,
}

struct Report {
    outcomes: Vec<(CommandId, Outcome)>,
    store: MemoryEventStore,
}

async fn run_transfers(faulty: bool, cached: bool) -> Report {
    let store = Contended::new(faulty);
    let policy = ExecutionPolicy::default().with_retry(RetryPolicy {
        max_attempts: 60,
        initial_backoff: Duration::from_micros(50),
        multiplier: 2,
        max_backoff: Duration::from_millis(2),
    });
    let mut executor = Executor::new(store.clone()).with_policy(policy);
    if cached {
        executor = executor.with_stream_cache(10_000);
    }
    let executor = Arc::new(executor);
    let opener = Executor::new(store.inner.clone());
    for n in 1..=ACCOUNTS {
        opener
            .execute(OpenAccount {
                account: account(n),
                initial: INITIAL,
            })
            .await
            .expect("accounts open");
    }

    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let executor = executor.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(task);
            let mut outcomes = Vec::new();
            for _ in 0..TRANSFERS_EACH {
                let from = account(1 + rng.below(u64::from(ACCOUNTS)) as u32);
                let to = account(1 + rng.below(u64::from(ACCOUNTS)) as u32);
                let amount = 1 + rng.below(INITIAL / 2);
                let command_id = executor.new_command_id();
                let result = executor
                    .execute_with(Transfer { from, to, amount }, ExecutionContext::new(command_id))
                    .await;
                let outcome = match result {
                    Ok(done) => Outcome::Committed(done.appended.expect("a transfer appends"), done.stats),
                    Err(ExecutionError {
                        error: CommandError::Domain(error),
                        ..
                    }) => Outcome::Refused(error),
                    Err(
                        error @ ExecutionError {
                            error: CommandError::RetriesExhausted { .. },
                            ..
                        },
                    ) => Outcome::GaveUp(error.to_string()),
                    Err(ExecutionError {
                        error: CommandError::OutcomeUnknown { .. },
                        ..
                    }) => Outcome::Unknown,
                    Err(other) => panic!("a transfer failed unexpectedly: {other}"),
                };
                outcomes.push((command_id, outcome));
            }
            outcomes
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.extend(task.await.expect("transfer task"));
    }
    Report {
        outcomes,
        store: store.inner,
    }
}

/// Checks everything the run must satisfy; returns (committed, conflicts).
fn audit(report: &Report) -> (usize, u32) {
    let (events, receipts) = report.store.inspect(|s| {
        let receipts: BTreeMap<CommandId, AppendReceipt> = report
            .outcomes
            .iter()
            .filter_map(|(id, _)| s.receipt(id).map(|r| (*id, r.clone())))
            .collect();
        (s.events().to_vec(), receipts)
    });
    let audit = Audit::of(&events);
    assert!(
        audit.violations.is_empty(),
        "invariants broken: {:#?}",
        audit.violations
    );
    assert_eq!(audit.opened_total, u64::from(ACCOUNTS) * INITIAL);
    assert_eq!(audit.final_total, audit.opened_total, "money is conserved");

    let mut by_command: BTreeMap<CommandId, Vec<&RecordedEvent>> = BTreeMap::new();
    for event in &events {
        by_command.entry(event.metadata.command_id).or_default().push(event);
    }
    let mut committed = 0;
    let mut conflicts = 0;
    for (id, outcome) in &report.outcomes {
        let written = by_command.get(id).map_or(0, Vec::len);
        match outcome {
            Outcome::Committed(receipt, stats) => {
                committed += 1;
                conflicts += stats.conflicts;
                assert_eq!(
                    written, 2,
                    "transfer {id} is stored exactly once (one withdrawal, one deposit)"
                );
                let stored = receipts.get(id).expect("the store recorded the commit");
                assert!(receipt.same_commit(stored), "the reported receipt is the stored one");
                let positions: Vec<GlobalPosition> = by_command[id].iter().map(|e| e.position).collect();
                let promised: Vec<GlobalPosition> = receipt.streams.iter().flat_map(|s| s.positions.clone()).collect();
                assert_eq!(positions, promised);
            }
            Outcome::Refused(error) => {
                assert!(
                    matches!(error, BankError::InsufficientFunds { .. } | BankError::SameAccount(_)),
                    "every account is open, so only these refusals are possible: {error}"
                );
                assert_eq!(written, 0, "a refused transfer {id} ({error}) wrote nothing");
            }
            Outcome::GaveUp(error) => {
                assert_eq!(written, 0, "a transfer that gave up ({error}) wrote nothing");
            }
            Outcome::Unknown => {
                assert!(
                    written == 0 || written == 2,
                    "an unknown outcome committed at most once"
                );
            }
        }
    }
    let accounted: usize = report
        .outcomes
        .iter()
        .filter(|(id, _)| by_command.contains_key(id))
        .count();
    assert_eq!(
        events.len(),
        ACCOUNTS as usize + 2 * accounted,
        "the store holds the openings and the transfers reported, nothing else"
    );
    (committed, conflicts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transfers_conserve_money_and_commit_exactly_once() {
    let report = run_transfers(false, false).await;
    assert_eq!(report.outcomes.len(), TASKS as usize * TRANSFERS_EACH);
    assert!(
        !report.outcomes.iter().any(|(_, o)| matches!(o, Outcome::Unknown)),
        "a healthy store leaves no outcome unknown"
    );
    let (committed, conflicts) = audit(&report);
    assert!(committed > 0, "some transfers went through");
    assert!(
        conflicts > 0,
        "the run must produce contention to test anything; no transfer ever conflicted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transfers_through_a_faulty_store_still_commit_at_most_once() {
    let report = run_transfers(true, false).await;
    let (committed, _) = audit(&report);
    assert!(committed > 0, "some transfers went through despite the faults");
    let resent = report
        .outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Committed(r, _) if r.deduplicated))
        .count();
    assert!(resent > 0, "some commits were found again after a lost acknowledgement");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transfers_with_a_stream_cache_keep_every_invariant() {
    // The cache lets commands skip reads; a stale entry must only ever cost
    // a conflict, never a wrong decision.
    let report = run_transfers(false, true).await;
    let (committed, _) = audit(&report);
    assert!(committed > 0);
    let faulty = run_transfers(true, true).await;
    let (committed, _) = audit(&faulty);
    assert!(committed > 0);
}
