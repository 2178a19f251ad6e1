//! PostgreSQL only: what happens to an append when its connection dies, its
//! future is dropped, a twin with the same command id races it, or a pure
//! version check meets a concurrent writer. Each case blocks the append on
//! a row lock held by the test, so the interleaving is forced, not hoped for.

use eventcore::*;
use eventcore_postgres::PostgresStore;
use eventcore_tests::conformance::{fresh_command_id, read, stream, tested_events};
use eventcore_tests::postgres::{fresh_store, fresh_store_with, options};
use eventcore_tokio::EventStore;
use sqlx::{Connection, Row};
use std::sync::Arc;
use std::time::Duration;

fn entry(stream_id: &StreamId, expected: ExpectedVersion, events: usize) -> StreamAppend {
    StreamAppend {
        stream: stream_id.clone(),
        expected,
        events: tested_events(events),
        tombstone: false,
    }
}

fn request(streams: Vec<StreamAppend>) -> AppendRequest {
    AppendRequest {
        metadata: Arc::new(EventMetadata::new(fresh_command_id(), Time::from_unix_millis(1))),
        streams,
    }
}

/// Appends one event to each stream so that they exist at version 1.
async fn seed(store: &PostgresStore, streams: &[&StreamId]) {
    for s in streams {
        store
            .append(&request(vec![entry(s, ExpectedVersion::NoStream, 1)]))
            .await
            .expect("seed append");
    }
}

/// Holds `FOR UPDATE` on a stream head inside an open transaction.
async fn lock_head(store: &PostgresStore, conn: &mut sqlx::PgConnection, stream_id: &StreamId) {
    let sql = format!(
        "SELECT version FROM \"{}\".streams WHERE stream_id = $1 FOR UPDATE",
        store.options().schema
    );
    sqlx::query(&sql)
        .bind(stream_id.as_str())
        .fetch_one(conn)
        .await
        .expect("lock the head row");
}

/// Waits until an append of this store's schema is blocked on a lock, and
/// returns its backend pid.
async fn blocked_append(store: &PostgresStore) -> i32 {
    // A standalone append is one statement marked `/* eventcore append */`
    // that claims the command id in this schema's `commands`; an append
    // inside a transaction calls `append()`.
    let schema = store.options().schema.clone();
    let (function, statement) = (
        format!("%\"{schema}\".append(%"),
        format!("/* eventcore append */%INTO \"{schema}\".commands (command_id%"),
    );
    for _ in 0..3_000 {
        let row = sqlx::query(
            "SELECT pid FROM pg_stat_activity \
             WHERE wait_event_type = 'Lock' AND (query LIKE $1 OR query LIKE $2) AND pid <> pg_backend_pid()",
        )
        .bind(&function)
        .bind(&statement)
        .fetch_optional(store.pool())
        .await
        .expect("pg_stat_activity");
        if let Some(row) = row {
            return row.get::<i32, _>(0);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the append never blocked on the held lock");
}

async fn versions(store: &PostgresStore, streams: &[StreamId]) -> Vec<u64> {
    read(store, streams).await.iter().map(|s| s.head.get()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_mid_append_leaves_nothing_and_the_resend_commits_once() {
    let Some(store) = fresh_store("kill").await else { return };
    let (a, b) = (stream("kill-a"), stream("kill-b"));
    seed(&store, &[&a, &b]).await;
    let append = request(vec![
        entry(&a, ExpectedVersion::Exact(StreamVersion::new(1)), 2),
        entry(&b, ExpectedVersion::Exact(StreamVersion::new(1)), 1),
    ]);

    let mut blocker = store.pool().acquire().await.expect("connection");
    let mut held = blocker.begin().await.expect("begin");
    lock_head(&store, &mut held, &b).await;
    let task = {
        let (store, append) = (store.clone(), append.clone());
        tokio::spawn(async move { store.append(&append).await })
    };
    let pid = blocked_append(&store).await;
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(store.pool())
        .await
        .expect("terminate");
    assert!(killed);
    let outcome = task.await.expect("append task");
    held.rollback().await.expect("release the lock");
    drop(blocker);

    let error = outcome.expect_err("the killed append fails");
    assert!(
        matches!(
            error,
            StoreError::OutcomeUnknown {
                operation: Operation::Append,
                ..
            }
        ),
        "a session killed after the append was sent has an unknown outcome: {error:?}"
    );
    assert!(
        std::error::Error::source(&error).is_some(),
        "the sqlx error is kept as source"
    );
    assert_eq!(
        versions(&store, &[a.clone(), b.clone()]).await,
        vec![1, 1],
        "nothing partial"
    );

    let resent = store.append(&append).await.expect("resend with the same command id");
    assert!(!resent.deduplicated, "the killed append never committed");
    assert_eq!(versions(&store, &[a, b]).await, vec![3, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_append_future_commits_all_or_nothing_and_the_resend_settles_it() {
    let Some(store) = fresh_store("drop").await else { return };
    let (a, b) = (stream("drop-a"), stream("drop-b"));
    seed(&store, &[&a, &b]).await;
    let append = request(vec![
        entry(&a, ExpectedVersion::Exact(StreamVersion::new(1)), 2),
        entry(&b, ExpectedVersion::Exact(StreamVersion::new(1)), 1),
    ]);

    let mut blocker = store.pool().acquire().await.expect("connection");
    let mut held = blocker.begin().await.expect("begin");
    lock_head(&store, &mut held, &b).await;
    let task = {
        let (store, append) = (store.clone(), append.clone());
        tokio::spawn(async move { store.append(&append).await })
    };
    blocked_append(&store).await;
    task.abort();
    assert!(task.await.expect_err("aborted").is_cancelled());
    held.commit().await.expect("release the lock");
    drop(blocker);

    // The dropped statement may still commit on the server; re-sending the
    // same command id settles it either way, and never writes twice.
    let settled = store.append(&append).await.expect("resend");
    let heads = versions(&store, &[a.clone(), b.clone()]).await;
    assert_eq!(heads, vec![3, 2], "exactly one copy, on both streams");
    assert_eq!(settled.streams[0].last_version, StreamVersion::new(3));
    assert_eq!(settled.streams[1].last_version, StreamVersion::new(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twin_append_racing_with_the_same_command_id_waits_and_returns_the_first_receipt() {
    let Some(store) = fresh_store("twin").await else { return };
    let s = stream("twin");
    let append = request(vec![entry(&s, ExpectedVersion::NoStream, 2)]);

    let mut conn = store.pool().acquire().await.expect("connection");
    let mut first_tx = conn.begin().await.expect("begin");
    let first = store.append_in(&mut first_tx, &append).await.expect("first append");
    let twin = {
        let (store, append) = (store.clone(), append.clone());
        tokio::spawn(async move { store.append(&append).await })
    };
    blocked_append(&store).await;
    first_tx.commit().await.expect("commit the first");
    drop(conn);

    let second = twin.await.expect("twin task").expect("twin append");
    assert!(second.deduplicated, "the twin reports the first commit");
    assert!(second.same_commit(&first), "{second:?} vs {first:?}");
    assert_eq!(versions(&store, &[s]).await, vec![2], "written once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pure_version_check_blocks_writers_of_that_stream_until_commit() {
    let Some(store) = fresh_store("skew").await else { return };
    let (checked, written) = (stream("skew-checked"), stream("skew-written"));
    seed(&store, &[&checked]).await;

    // Decided on `checked` at version 1, writes only `written`.
    let mut conn = store.pool().acquire().await.expect("connection");
    let mut tx = conn.begin().await.expect("begin");
    store
        .append_in(
            &mut tx,
            &request(vec![
                StreamAppend {
                    stream: checked.clone(),
                    expected: ExpectedVersion::Exact(StreamVersion::new(1)),
                    events: vec![],
                    tombstone: false,
                },
                entry(&written, ExpectedVersion::NoStream, 1),
            ]),
        )
        .await
        .expect("check-and-write append");
    let writer = {
        let store = store.clone();
        let append = request(vec![entry(&checked, ExpectedVersion::Exact(StreamVersion::new(1)), 1)]);
        tokio::spawn(async move { store.append(&append).await })
    };
    blocked_append(&store).await;
    assert!(!writer.is_finished(), "the writer waits for the check's transaction");
    tx.commit().await.expect("commit");
    drop(conn);
    writer.await.expect("writer task").expect("writer commits after");
    assert_eq!(versions(&store, &[checked, written]).await, vec![2, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_timeout_is_transient_and_writes_nothing() {
    let Some(store) = fresh_store_with(options("timeout").statement_timeout(Duration::from_millis(300))).await else {
        return;
    };
    let s = stream("slow");
    seed(&store, &[&s]).await;
    let mut conn = store.pool().acquire().await.expect("connection");
    let mut held = conn.begin().await.expect("begin");
    lock_head(&store, &mut held, &s).await;
    let error = store
        .append(&request(vec![entry(&s, ExpectedVersion::Any, 1)]))
        .await
        .expect_err("blocked past the statement timeout");
    held.rollback().await.expect("rollback");
    assert!(
        matches!(
            error,
            StoreError::Transient {
                operation: Operation::Append,
                ..
            }
        ),
        "a cancelled statement committed nothing and may be retried: {error:?}"
    );
    assert_eq!(versions(&store, &[s]).await, vec![1]);
}

/// Heads are locked in one global order — bytewise by stream id — whatever
/// order a request names its streams in; that order is what makes a
/// deadlock between two appends impossible, so the chaos suites treat any
/// deadlock as a bug. Pinned without timing: with `order-b`'s head held
/// elsewhere, an append naming [order-b, order-a] must already hold
/// `order-a` when it blocks (in request order it would hold nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_are_locked_in_stream_id_order_whatever_the_request_order() {
    let Some(store) = fresh_store("lockorder").await else {
        return;
    };
    let (a, b) = (stream("order-a"), stream("order-b"));
    seed(&store, &[&a, &b]).await;
    let mut blocker = store.pool().acquire().await.expect("connection");
    let mut held = blocker.begin().await.expect("begin");
    lock_head(&store, &mut held, &b).await;
    let appending = {
        let (store, a, b) = (store.clone(), a.clone(), b.clone());
        tokio::spawn(async move {
            store
                .append(&request(vec![
                    entry(&b, ExpectedVersion::Any, 1),
                    entry(&a, ExpectedVersion::Any, 1),
                ]))
                .await
        })
    };
    blocked_append(&store).await;
    let probe_sql = format!(
        "SELECT version FROM \"{}\".streams WHERE stream_id = $1 FOR UPDATE NOWAIT",
        store.options().schema
    );
    let mut prober = store.pool().acquire().await.expect("connection");
    let mut probe = prober.begin().await.expect("begin");
    let taken = sqlx::query(&probe_sql)
        .bind(a.as_str())
        .fetch_one(&mut *probe)
        .await
        .expect_err("the blocked append must already hold order-a, the first stream in lock order");
    let code = match &taken {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    };
    assert_eq!(code.as_deref(), Some("55P03"), "lock_not_available, got {taken:?}");
    probe.rollback().await.expect("rollback");
    held.rollback().await.expect("rollback");
    appending
        .await
        .expect("task")
        .expect("the append goes through once order-b is free");
    assert_eq!(versions(&store, &[a, b]).await, vec![2, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_in_opposite_stream_orders_do_not_deadlock() {
    let Some(store) = fresh_store("orders").await else {
        return;
    };
    let (x, y) = (stream("order-x"), stream("order-y"));
    seed(&store, &[&x, &y]).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        let (first, second) = if i % 2 == 0 {
            (x.clone(), y.clone())
        } else {
            (y.clone(), x.clone())
        };
        tasks.push(tokio::spawn(async move {
            store
                .append(&request(vec![
                    entry(&first, ExpectedVersion::Any, 1),
                    entry(&second, ExpectedVersion::Any, 1),
                ]))
                .await
        }));
    }
    for task in tasks {
        task.await
            .expect("task")
            .expect("no deadlock victim: heads are locked in one order");
    }
    assert_eq!(versions(&store, &[x, y]).await, vec![41, 41]);
}
