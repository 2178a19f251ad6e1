//! Every outcome of an execution names the command id it ran under, and a
//! caller's own id (an idempotency key) keeps the caches without ever
//! applying a command twice.

use eventcore::*;
use eventcore_examples::bank::{account, BankError, OpenAccount, Transfer};
use eventcore_tokio::{BlockingExecutor, EventStore, Executor, MemoryEventStore};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A memory store whose appends, while `lose_acks` is set, commit and then
/// answer as if the connection died: the outcome is unknown.
struct LosingAcks {
    inner: MemoryEventStore,
    lose_acks: AtomicBool,
}

impl EventStore for LosingAcks {
    async fn read(&self, request: &ReadRequest) -> Result<ReadResponse, StoreError> {
        self.inner.read(request).await
    }

    async fn append(&self, request: &AppendRequest) -> Result<AppendReceipt, StoreError> {
        let receipt = self.inner.append(request).await?;
        if self.lose_acks.load(Ordering::SeqCst) {
            return Err(StoreError::OutcomeUnknown {
                operation: Operation::Append,
                message: "connection lost after the commit was sent".into(),
                source: None,
            });
        }
        Ok(receipt)
    }

    async fn read_all(&self, request: &ReadAllRequest) -> Result<ReadAllResponse, StoreError> {
        self.inner.read_all(request).await
    }
}

fn events_of(store: &MemoryEventStore, id: CommandId) -> usize {
    store.inspect(|s| s.events().iter().filter(|e| e.metadata.command_id == id).count())
}

fn balance_moves(store: &MemoryEventStore) -> usize {
    store.inspect(|s| s.events().iter().filter(|e| e.event_type.as_str() != "Opened").count())
}

#[tokio::test(start_paused = true)]
async fn an_unknown_outcome_from_execute_names_the_id_that_settles_it() {
    let store = Arc::new(LosingAcks {
        inner: MemoryEventStore::new(),
        lose_acks: AtomicBool::new(true),
    });
    let policy = ExecutionPolicy::default().with_retry(RetryPolicy::default().with_max_attempts(3));
    let executor = Executor::new(store.clone()).with_policy(policy);
    let failed = executor
        .execute(OpenAccount {
            account: account(1),
            initial: 100,
        })
        .await
        .expect_err("every acknowledgement is lost");
    assert_eq!(failed.kind(), CommandErrorKind::OutcomeUnknown, "{failed:?}");
    assert!(failed.may_have_committed());
    let ExecutionError {
        command_id,
        error: CommandError::OutcomeUnknown { command_id: inside, .. },
    } = &failed
    else {
        panic!("expected an unknown outcome, got {failed:?}");
    };
    assert_eq!(command_id, inside, "the id the failure names is the one it ran under");
    assert_eq!(events_of(&store.inner, failed.command_id()), 1, "it committed, once");

    // The service re-executes with the id it was told; the store answers
    // with the original commit.
    store.lose_acks.store(false, Ordering::SeqCst);
    let settled = executor
        .execute_with(
            OpenAccount {
                account: account(1),
                initial: 100,
            },
            ExecutionContext::new(failed.command_id()),
        )
        .await
        .expect("settled");
    assert_eq!(settled.command_id, failed.command_id());
    assert!(settled.appended.expect("the earlier commit").deduplicated);
    assert_eq!(events_of(&store.inner, failed.command_id()), 1, "still once");
}

#[tokio::test]
async fn a_refusal_names_its_command_id_and_wrote_nothing_under_it() {
    let store = MemoryEventStore::new();
    let executor = Executor::new(store.clone());
    let open = || OpenAccount {
        account: account(1),
        initial: 100,
    };
    let first = executor.execute(open()).await.expect("opens");
    let refused = executor.execute(open()).await.expect_err("already open");
    assert!(matches!(
        &refused,
        ExecutionError {
            error: CommandError::Domain(BankError::AlreadyOpen(_)),
            ..
        }
    ));
    assert_ne!(refused.command_id(), first.command_id, "each execute has its own id");
    assert_eq!(events_of(&store, refused.command_id()), 0);
    assert_eq!(events_of(&store, first.command_id), 1);
    // The same id survives type erasure, for a handler's log line.
    let any = AnyCommandError::from(refused);
    assert_eq!(any.kind(), CommandErrorKind::Rejected);
    assert!(any.command_id().is_some());
    assert!(any.domain_error::<BankError>().is_some());
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_original_result_although_the_views_are_cached() {
    let store = MemoryEventStore::new();
    let executor = Executor::new(store.clone());
    let key = executor.new_command_id();
    let open = || OpenAccount {
        account: account(1),
        initial: 100,
    };
    let first = executor
        .execute_as(open(), ExecutionContext::new(key))
        .await
        .expect("opens");
    // The view cache now holds the open account. Decided on it, the repeated
    // request would be refused (AlreadyOpen); it must get its original
    // result instead.
    let again = executor
        .execute_as(open(), ExecutionContext::new(key))
        .await
        .expect("the original result, not a refusal");
    assert_eq!(again.command_id, key);
    let (first_receipt, again_receipt) = (first.appended.expect("opened"), again.appended.expect("opened"));
    assert!(
        first_receipt.same_commit(&again_receipt),
        "{first_receipt:?} vs {again_receipt:?}"
    );
    assert_eq!(events_of(&store, key), 1, "opened once");

    // A new key that the domain refuses is refused (after confirming on a
    // fresh read), and names its id.
    let other = executor.new_command_id();
    let refused = executor
        .execute_as(open(), ExecutionContext::new(other))
        .await
        .expect_err("already open");
    assert_eq!(refused.command_id(), other);
    assert!(matches!(refused.error, CommandError::Domain(BankError::AlreadyOpen(_))));
}

#[tokio::test]
async fn a_repeated_transfer_key_moves_the_money_once_and_a_new_key_uses_the_view_cache() {
    let store = MemoryEventStore::new();
    let executor = Executor::new(store.clone());
    for (n, initial) in [(1, 100), (2, 0)] {
        executor
            .execute(OpenAccount {
                account: account(n),
                initial,
            })
            .await
            .expect("opens");
    }
    let transfer = || Transfer {
        from: account(1),
        to: account(2),
        amount: 30,
    };
    let (_, _, before) = executor.view_cache_stats().expect("the view cache is on");
    let key = executor.new_command_id();
    let first = executor
        .execute_as(transfer(), ExecutionContext::new(key))
        .await
        .expect("moves");
    let (_, _, after) = executor.view_cache_stats().expect("on");
    assert!(
        after.hits >= before.hits + 2,
        "a new key starts from the cached views: {before:?} -> {after:?}"
    );
    let again = executor
        .execute_as(transfer(), ExecutionContext::new(key))
        .await
        .expect("the original result");
    assert!(first
        .appended
        .expect("moved")
        .same_commit(&again.appended.expect("moved")));
    assert_eq!(
        balance_moves(&store),
        2,
        "one withdrawal and one deposit, not two of each"
    );
}

#[test]
fn the_blocking_executor_names_ids_and_honours_a_repeated_key() {
    let store = MemoryEventStore::new();
    let executor = BlockingExecutor::new(store.clone()).with_stream_cache(1_000);
    let open = || OpenAccount {
        account: account(1),
        initial: 100,
    };
    let key = executor.new_command_id();
    let first = executor.execute_as(open(), ExecutionContext::new(key)).expect("opens");
    let again = executor
        .execute_as(open(), ExecutionContext::new(key))
        .expect("the original result");
    assert!(first
        .appended
        .expect("opened")
        .same_commit(&again.appended.expect("opened")));
    assert_eq!(events_of(&store, key), 1);
    let refused = executor.execute(open()).expect_err("already open");
    assert_ne!(refused.command_id(), key);
    assert_eq!(refused.kind(), CommandErrorKind::Rejected);
    assert_eq!(events_of(&store, refused.command_id()), 0);
}
