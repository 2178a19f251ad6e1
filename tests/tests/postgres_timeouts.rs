//! PostgreSQL only: the default timeouts fire innermost first. The server's
//! `statement_timeout` (2 s) is shorter than the store's operation timeout
//! (4.5 s), which is shorter than the executor's read and append timeouts
//! (5 s), which are shorter than the execution's deadline (30 s). So an
//! append slower than the statement timeout is cancelled by the server: a
//! known "not committed" (`StoreError::Transient`) that the executor
//! retries, never an unknown outcome that must be re-sent.
//!
//! The slow append is made slow for real: a test transaction holds the
//! stream's head row lock (an append of its own, not committed) while the
//! store's append waits for it.

// Real time: the test measures when the server's timeout fires.
#![allow(clippy::disallowed_methods)]

use eventcore::{ExecutionPolicy, ExpectedVersion, StoreError};
use eventcore_examples::bank::{account, OpenAccount, Transfer};
use eventcore_postgres::{PostgresOptions, PostgresStore};
use eventcore_tests::conformance::{append_to, head};
use eventcore_tests::postgres::{database_url, fresh_store_with, unique_schema};
use eventcore_tokio::{EventStore, Executor};
use std::time::{Duration, Instant};

/// A store with every default but its schema.
async fn store_with_defaults(label: &str) -> Option<PostgresStore> {
    fresh_store_with(PostgresOptions::new(database_url()).schema(unique_schema(label))).await
}

#[test]
fn the_default_timeouts_are_ordered_innermost_first() {
    let store = PostgresOptions::new("postgres://localhost/db");
    let executor = ExecutionPolicy::default();
    assert!(
        store.acquire_timeout + store.statement_timeout < store.operation_timeout,
        "waiting for a connection and then a whole statement fit in one operation"
    );
    assert!(store.operation_timeout < executor.append_timeout);
    assert!(store.operation_timeout < executor.read_timeout);
    let deadline = executor.timeout.expect("a deadline by default");
    assert!(executor.append_timeout < deadline && executor.read_timeout < deadline);
    assert!(
        store.read_all_settle < store.statement_timeout,
        "read_all's settle wait is a statement"
    );
    assert!(
        store.maintenance_timeout > store.statement_timeout,
        "migrations get longer than the store's statements"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_slower_than_the_statement_timeout_is_cancelled_by_the_server_and_not_committed() {
    let Some(store) = store_with_defaults("slow_append").await else {
        return;
    };
    let stream = account(1);
    store
        .append(&append_to(&stream, ExpectedVersion::NoStream, 1, 1))
        .await
        .expect("the stream exists");

    // Hold the stream's head row lock: an append in a transaction that
    // stays open.
    let mut tx = store.pool().begin().await.expect("begin");
    store
        .append_in(&mut tx, &append_to(&stream, ExpectedVersion::Any, 1, 2))
        .await
        .expect("the holder's append");

    let started = Instant::now();
    let result = store.append(&append_to(&stream, ExpectedVersion::Any, 1, 3)).await;
    let took = started.elapsed();
    let options = store.options();
    match &result {
        Err(error @ StoreError::Transient { .. }) => {
            let cause = std::error::Error::source(error)
                .map(ToString::to_string)
                .unwrap_or_default();
            assert!(
                cause.contains("statement timeout"),
                "the server's reason is the source: {cause:?}"
            );
            assert!(error.is_retryable());
            assert!(
                !error.may_have_committed(),
                "the server cancelled it: nothing committed"
            );
        }
        other => panic!("expected the server's statement timeout (Transient), got {other:?}"),
    }
    assert!(
        took >= options.statement_timeout && took < options.operation_timeout,
        "the server fired (after {took:?}), before the store's operation timeout"
    );
    tx.rollback().await.expect("rollback");
    assert_eq!(head(&store, &stream).await.get(), 1, "neither waiting append committed");
    let _ = store.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_executor_retries_a_statement_timeout_and_never_sees_an_unknown_outcome() {
    let Some(store) = store_with_defaults("slow_command").await else {
        return;
    };
    let executor = Executor::new(store.clone());
    for n in [1, 2] {
        executor
            .execute(OpenAccount {
                account: account(n),
                initial: 100,
            })
            .await
            .expect("open");
    }
    // Hold account 1's head for a little longer than one statement timeout.
    let mut tx = store.pool().begin().await.expect("begin");
    store
        .append_in(&mut tx, &append_to(&account(1), ExpectedVersion::Any, 1, 9))
        .await
        .expect("the holder's append");
    let hold = store.options().statement_timeout + Duration::from_millis(500);
    let release = tokio::spawn(async move {
        tokio::time::sleep(hold).await;
        tx.rollback().await.expect("rollback");
    });

    let started = Instant::now();
    let done = executor
        .execute(Transfer {
            from: account(1),
            to: account(2),
            amount: 30,
        })
        .await
        .expect("the transfer commits once the lock is released");
    release.await.expect("released");
    assert!(started.elapsed() >= hold, "it did wait for the lock");
    assert!(
        done.stats.transient_errors >= 1,
        "the server's cancellation reached the executor as a transient error: {:?}",
        done.stats
    );
    assert_eq!(done.stats.unknown_outcomes, 0, "{:?}", done.stats);
    let receipt = done.appended.expect("appended");
    assert!(
        !receipt.deduplicated,
        "a fresh commit, not the discovery of an earlier one"
    );
    assert_eq!(head(&store, &account(1)).await.get(), 2);
    let _ = store.drop_schema().await;
}
