//! PostgreSQL only: global positions rise along every stream, with its
//! versions, even when the writer's transaction took its id before a younger
//! transaction wrote the same stream.
//!
//! A position is `(xid << 20) | index`, and a transaction takes its id when
//! it first writes, not when it commits. Without the check of migration
//! 0006, an old transaction that reached a stream after a younger one had
//! written it (expecting `Any`, so no version check stops it) wrote events
//! below that stream's last event: a reader in global order then met version
//! n + 1 before version n. Each test builds that interleaving on purpose.
//!
//! These tests hold transactions and row locks open, which holds back the
//! cluster's global readers, so they live in a test binary of their own.

use eventcore::*;
use eventcore_postgres::PostgresStore;
use eventcore_tests::conformance::{fresh_command_id, new_event, stream};
use eventcore_tests::postgres::{fresh_store_with, options};
use eventcore_tokio::EventStore;
use sqlx::Connection;
use std::sync::Arc;
use std::time::Duration;

fn append_any(streams: &[&StreamId]) -> AppendRequest {
    AppendRequest {
        metadata: Arc::new(EventMetadata::new(fresh_command_id(), Time::from_unix_millis(1))),
        streams: streams
            .iter()
            .map(|&s| StreamAppend {
                stream: s.clone(),
                expected: ExpectedVersion::Any,
                events: vec![new_event("Noted", serde_json::json!({}))],
                tombstone: false,
            })
            .collect(),
    }
}

async fn store(label: &str) -> Option<PostgresStore> {
    fresh_store_with(options(label).max_connections(8)).await
}

/// Begins a transaction that takes its id at once, as a caller's
/// transaction that wrote something of its own before appending does.
async fn begin_with_an_id(conn: &mut sqlx::PgConnection) -> sqlx::Transaction<'_, sqlx::Postgres> {
    let mut tx = conn.begin().await.expect("begin");
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *tx)
        .await
        .expect("take a transaction id");
    tx
}

/// Reads `id` whole and asserts that its positions rise with its versions.
async fn assert_positions_rise(store: &PostgresStore, id: &StreamId, expected_events: usize) {
    let read = store
        .read(&ReadRequest::new([id.clone()]))
        .await
        .expect("read the stream back");
    let events = &read.streams[0].events;
    assert_eq!(events.len(), expected_events, "events of `{id}`");
    for pair in events.windows(2) {
        assert!(
            pair[1].position > pair[0].position,
            "stream `{id}`: version {} is at position {}, below version {} at {}",
            pair[1].version,
            pair[1].position,
            pair[0].version,
            pair[0].position
        );
    }
}

fn assert_retryable_fall(result: Result<AppendReceipt, StoreError>, id: &StreamId) {
    match result {
        Err(error @ StoreError::Transient { .. }) => {
            // The whole chain, as `{:#}` in anyhow prints it.
            let mut text = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            assert!(text.contains(id.as_str()), "the error names the stream: {text}");
        }
        other => panic!("expected a transient (retryable) refusal naming `{id}`, got {other:?}"),
    }
}

/// An append in a caller's transaction that wrote something first (the
/// outbox pattern): its transaction is older than an append that committed
/// to the same stream meanwhile.
#[tokio::test]
async fn an_append_in_an_older_transaction_is_refused_rather_than_written_below() {
    let Some(store) = store("rise_append_in").await else {
        return;
    };
    let id = stream("rise-outbox");
    store.append(&append_any(&[&id])).await.expect("first event");

    let mut conn = store.pool().acquire().await.expect("connection");
    let mut older = begin_with_an_id(&mut conn).await;

    store
        .append(&append_any(&[&id]))
        .await
        .expect("a younger append commits");

    let refused = store.append_in(&mut older, &append_any(&[&id])).await;
    assert_retryable_fall(refused, &id);
    older.rollback().await.expect("rollback");

    // In a new transaction the same write passes.
    store.append(&append_any(&[&id])).await.expect("the retry commits");
    assert_positions_rise(&store, &id, 3).await;
}

/// Waits until a statement on the store's schema waits for a lock.
async fn until_an_append_waits_for_a_lock(store: &PostgresStore) {
    let schema = store.options().schema.clone();
    let waiting = async {
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND strpos(query, $1) > 0",
            )
            .bind(format!("\"{schema}\""))
            .fetch_one(store.pool())
            .await
            .expect("pg_stat_activity");
            if waiting > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the append never waited for the held lock");
}

/// The interleaving inside the store's own appends: an append claims its
/// command id (taking its transaction id), waits for the head lock of its
/// first stream, and meanwhile a younger append commits to its second.
async fn older_append_waits_while_a_younger_one_writes(label: &str, batched: bool) {
    let Some(store) = store(label).await else { return };
    // Heads are locked in stream-id order: `a-…` before `b-…`.
    let first = stream("a-held");
    let second = stream("b-raced");
    store
        .append(&append_any(&[&first, &second]))
        .await
        .expect("both streams exist");

    let mut conn = store.pool().acquire().await.expect("connection");
    let mut holder = conn.begin().await.expect("begin");
    sqlx::query(&format!(
        "SELECT version FROM \"{}\".streams WHERE stream_id = $1 FOR UPDATE",
        store.options().schema
    ))
    .bind(first.as_str())
    .execute(&mut *holder)
    .await
    .expect("hold the first stream's head lock");

    let older = {
        let store = store.clone();
        let request = append_any(&[&first, &second]);
        let bystander = append_any(&[&stream("c-bystander")]);
        tokio::spawn(async move {
            if batched {
                // A group of one is sent alone: the group has a bystander.
                let outcomes = store.append_batch(&[request, bystander]).await;
                let mut outcomes = outcomes.into_iter();
                let outcome = outcomes.next().expect("the request's outcome");
                outcomes
                    .next()
                    .expect("the bystander's outcome")
                    .expect("the bystander commits");
                outcome
            } else {
                store.append(&request).await
            }
        })
    };
    until_an_append_waits_for_a_lock(&store).await;
    let younger = append_any(&[&second]);
    if batched {
        store.append(&younger).await
    } else {
        // The single-statement append holds an advisory lock on each of its
        // streams from before it takes its transaction id, so another
        // single-statement append to `second` would queue behind it; the
        // `append()` function (what `append_in` runs) takes none.
        let mut conn = store.pool().acquire().await.expect("connection");
        let mut tx = conn.begin().await.expect("begin");
        let receipt = store.append_in(&mut tx, &younger).await;
        tx.commit().await.expect("commit");
        receipt
    }
    .expect("a younger append to the second stream commits");
    holder.rollback().await.expect("release the lock");
    let outcome = older.await.expect("the older append's task");

    if batched {
        // Group commit sends a group refused this way again request by
        // request, each in a new transaction: the request commits.
        outcome.expect("the group's request commits on its own");
        assert_positions_rise(&store, &second, 3).await;
    } else {
        assert_retryable_fall(outcome, &second);
        assert_positions_rise(&store, &second, 2).await;
    }
    assert_positions_rise(&store, &first, if batched { 2 } else { 1 }).await;
}

#[tokio::test]
async fn a_single_statement_append_older_than_the_streams_last_writer_is_refused() {
    older_append_waits_while_a_younger_one_writes("rise_alone", false).await;
}

#[tokio::test]
async fn a_group_commit_older_than_a_streams_last_writer_retries_its_requests_alone() {
    older_append_waits_while_a_younger_one_writes("rise_batch", true).await;
}

/// A stream an old transaction only checks (no events for it) gets nothing
/// below its events, so the check is not refused.
#[tokio::test]
async fn pure_version_checks_of_an_older_transaction_are_not_refused() {
    let Some(store) = store("rise_checks").await else {
        return;
    };
    let checked = stream("rise-checked");
    let written = stream("rise-written");
    store.append(&append_any(&[&checked])).await.expect("first event");

    let mut conn = store.pool().acquire().await.expect("connection");
    let mut older = begin_with_an_id(&mut conn).await;
    store
        .append(&append_any(&[&checked]))
        .await
        .expect("a younger append commits");

    // Only checks `checked` (no events for it): nothing lands below its
    // events, so nothing is refused.
    let request = AppendRequest {
        metadata: Arc::new(EventMetadata::new(fresh_command_id(), Time::from_unix_millis(1))),
        streams: vec![
            StreamAppend {
                stream: checked.clone(),
                expected: ExpectedVersion::Exact(StreamVersion::new(2)),
                events: vec![],
                tombstone: false,
            },
            StreamAppend {
                stream: written.clone(),
                expected: ExpectedVersion::Any,
                events: vec![new_event("Noted", serde_json::json!({}))],
                tombstone: false,
            },
        ],
    };
    store
        .append_in(&mut older, &request)
        .await
        .expect("a version check in an older transaction passes");
    older.commit().await.expect("commit");
    assert_positions_rise(&store, &checked, 2).await;
    assert_positions_rise(&store, &written, 1).await;
}

/// Single-statement appends to one stream take their transaction ids in the
/// order they write it (each holds the stream's advisory lock before it
/// claims its command id), so concurrent appends expecting `Any` are never
/// refused by the check above: they queue and all commit, in rising order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_single_statement_appends_to_one_stream_all_commit_first_time() {
    let Some(store) = store("rise_queue").await else { return };
    let shared = stream("rise-shared-log");
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let store = store.clone();
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move { store.append(&append_any(&[&shared])).await }));
    }
    for task in tasks {
        task.await
            .expect("task")
            .expect("every append commits on its first try");
    }
    assert_positions_rise(&store, &shared, 40).await;
}
