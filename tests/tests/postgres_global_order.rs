//! PostgreSQL only: the global order is gap-safe. A reader that has seen
//! position `p` never later sees a newly committed event below `p`, even when
//! transactions commit out of position order or roll back.
//!
//! These tests hold transactions open on purpose; that holds back every
//! reader of the cluster (see ARCHITECTURE.md), which is why they live in a
//! test binary of their own.

use eventcore::*;
use eventcore_postgres::PostgresStore;
use eventcore_tests::conformance::{fresh_command_id, new_event, read_all_request, stream, tested_events};
use eventcore_tests::postgres::{fresh_store_with, options};
use eventcore_tokio::EventStore;
use sqlx::Connection;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

fn append(stream_id: &StreamId, events: Vec<NewEvent>) -> AppendRequest {
    AppendRequest {
        metadata: Arc::new(EventMetadata::new(fresh_command_id(), Time::from_unix_millis(1))),
        streams: vec![StreamAppend {
            stream: stream_id.clone(),
            expected: ExpectedVersion::Any,
            events,
            tombstone: false,
        }],
    }
}

/// A store whose readers wait only briefly for held-back events: these tests
/// hold transactions open on purpose, and the readers must then answer with
/// what is final rather than wait.
async fn held_back_store(label: &str) -> Option<PostgresStore> {
    let options = options(label)
        .read_all_settle(Duration::from_millis(50))
        .max_connections(10);
    fresh_store_with(options).await
}

/// A subscriber's view: reads from its checkpoint, remembers everything it
/// was given, and checks it never goes backwards.
struct Reader {
    checkpoint: GlobalPosition,
    seen: Vec<RecordedEvent>,
}

impl Reader {
    fn new() -> Self {
        Reader {
            checkpoint: GlobalPosition::START,
            seen: Vec::new(),
        }
    }

    async fn poll(&mut self, store: &PostgresStore) -> Vec<RecordedEvent> {
        let page = store
            .read_all(&read_all_request(self.checkpoint, 1_000, EventFilter::all()))
            .await
            .expect("read_all");
        for event in &page.events {
            assert!(
                event.position > self.checkpoint,
                "event at {} arrived after the reader had checkpointed {}",
                event.position,
                self.checkpoint
            );
            if let Some(last) = self.seen.last() {
                assert!(event.position > last.position, "positions must strictly increase");
            }
        }
        assert!(
            page.complete_through >= self.checkpoint,
            "complete_through went backwards"
        );
        self.checkpoint = page.complete_through;
        self.seen.extend(page.events.iter().cloned());
        page.events
    }

    fn positions(&self) -> Vec<GlobalPosition> {
        self.seen.iter().map(|e| e.position).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_holds_readers_back_until_it_commits_and_none_skips_its_event() {
    let Some(store) = held_back_store("order_open").await else {
        return;
    };
    let s = stream("ordered");
    let first = store.append(&append(&s, tested_events(1))).await.expect("first append");

    // Hold an append open: its transaction id, hence its position, is lower
    // than those of the appends that commit after it.
    let mut conn = store.pool().acquire().await.expect("connection");
    let mut held = conn.begin().await.expect("begin");
    let held_receipt = store
        .append_in(&mut held, &append(&s, vec![new_event("Held", serde_json::json!({}))]))
        .await
        .expect("held append");
    // Another stream: the held append keeps `ordered`'s head locked.
    let later = store
        .append(&append(&stream("other"), tested_events(2)))
        .await
        .expect("later append commits while the held one is open");
    let held_position = held_receipt.last_position();
    assert!(first.last_position() < held_position);
    assert!(
        held_position < later.streams[0].positions[0],
        "the held append has the lower position but commits last: the out-of-order case"
    );

    let mut reader = Reader::new();
    let before_commit = reader.poll(&store).await;
    assert!(
        before_commit.iter().all(|e| e.position < held_position),
        "while a lower position may still commit, nothing above it is delivered: {:?}",
        before_commit.iter().map(|e| e.position).collect::<Vec<_>>()
    );
    assert!(
        reader.checkpoint < held_position,
        "the checkpoint stays below the open transaction's position"
    );

    held.commit().await.expect("commit the held append");
    drop(conn);
    while reader.seen.len() < 4 {
        reader.poll(&store).await;
    }

    let expected: Vec<GlobalPosition> = [first.last_position(), held_position]
        .into_iter()
        .chain(later.streams[0].positions.iter().copied())
        .collect();
    assert_eq!(reader.positions(), expected, "every event, once, in position order");
    let versions: Vec<(String, u64)> = reader
        .seen
        .iter()
        .map(|e| (e.stream_id.to_string(), e.version.get()))
        .collect();
    let expected_versions = [("ordered", 1), ("ordered", 2), ("other", 1), ("other", 2)];
    assert_eq!(versions, expected_versions.map(|(s, v)| (s.to_owned(), v)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_transaction_leaves_no_event_and_blocks_no_one_after_it_ends() {
    let Some(store) = held_back_store("order_rollback").await else {
        return;
    };
    let s = stream("rolled");
    let mut conn = store.pool().acquire().await.expect("connection");
    let mut doomed = conn.begin().await.expect("begin");
    store
        .append_in(&mut doomed, &append(&s, tested_events(3)))
        .await
        .expect("append inside the doomed transaction");
    let committed = store
        .append(&append(&stream("beside"), tested_events(1)))
        .await
        .expect("append beside it");
    doomed.rollback().await.expect("rollback");
    drop(conn);
    let after_rollback = store
        .append(&append(&s, tested_events(1)))
        .await
        .expect("append to the stream the rollback touched");

    let mut reader = Reader::new();
    while reader.seen.len() < 2 {
        reader.poll(&store).await;
    }
    let expected = vec![committed.last_position(), after_rollback.last_position()];
    assert_eq!(reader.positions(), expected, "only committed events, in order");
    assert_eq!(
        after_rollback.streams[0].first_version,
        StreamVersion::new(1),
        "the rolled-back versions were never used"
    );
}

/// Many writers commit and roll back concurrently while a reader follows
/// the log; at the end the reader has seen exactly the committed events,
/// each once, in increasing position order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_following_concurrent_commits_and_rollbacks_sees_every_committed_event_once() {
    let Some(store) = held_back_store("order_race").await else {
        return;
    };
    let writers = 6;
    let rounds = 25;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let s = stream(&format!("writer-{w}"));
            let mut committed = BTreeSet::new();
            for round in 0..rounds {
                let mut conn = store.pool().acquire().await.expect("connection");
                let mut tx = conn.begin().await.expect("begin");
                let receipt = store
                    .append_in(&mut tx, &append(&s, tested_events(1 + round % 3)))
                    .await
                    .expect("append");
                if (w + round) % 4 == 0 {
                    tx.rollback().await.expect("rollback");
                } else {
                    tx.commit().await.expect("commit");
                    committed.extend(receipt.streams[0].positions.iter().copied());
                }
            }
            committed
        }));
    }
    let mut reader = Reader::new();
    let mut all_committed = BTreeSet::new();
    let mut pending = tasks;
    while !pending.is_empty() {
        reader.poll(&store).await;
        let (done, running): (Vec<_>, Vec<_>) = pending.into_iter().partition(|t| t.is_finished());
        for task in done {
            all_committed.extend(task.await.expect("writer task"));
        }
        pending = running;
    }
    while reader.seen.len() < all_committed.len() {
        reader.poll(&store).await;
    }
    reader.poll(&store).await;
    let seen: Vec<GlobalPosition> = reader.positions();
    let seen_set: BTreeSet<GlobalPosition> = seen.iter().copied().collect();
    assert_eq!(seen.len(), seen_set.len(), "no event delivered twice");
    assert_eq!(seen_set, all_committed, "exactly the committed events, none skipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_appends_in_one_transaction_take_distinct_increasing_positions() {
    let Some(store) = held_back_store("order_same_tx").await else {
        return;
    };
    let mut conn = store.pool().acquire().await.expect("connection");
    let mut tx = conn.begin().await.expect("begin");
    let first = store
        .append_in(&mut tx, &append(&stream("one"), tested_events(2)))
        .await
        .expect("first append");
    // A conflicting append inside a savepoint rolls back alone; the positions
    // it would have taken may be reused, and nothing of it remains.
    let mut savepoint = tx.begin().await.expect("savepoint");
    let mut conflicting = append(&stream("one"), tested_events(1));
    conflicting.streams[0].expected = ExpectedVersion::NoStream;
    let refused = store.append_in(&mut savepoint, &conflicting).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "expected a conflict, got {refused:?}"
    );
    savepoint.rollback().await.expect("rollback to savepoint");
    let second = store
        .append_in(&mut tx, &append(&stream("two"), tested_events(3)))
        .await
        .expect("second append");
    let third = store
        .append_in(&mut tx, &append(&stream("one"), tested_events(1)))
        .await
        .expect("third append");
    tx.commit().await.expect("commit");
    drop(conn);

    let receipts: Vec<GlobalPosition> = [&first, &second, &third]
        .iter()
        .flat_map(|r| r.streams.iter().flat_map(|c| c.positions.iter().copied()))
        .collect();
    assert!(
        receipts.windows(2).all(|w| w[0] < w[1]),
        "positions in one transaction follow the order of its appends: {receipts:?}"
    );
    let mut reader = Reader::new();
    while reader.seen.len() < 6 {
        reader.poll(&store).await;
    }
    assert_eq!(reader.positions(), receipts, "the receipts name the stored positions");
    assert_eq!(third.streams[0].first_version, StreamVersion::new(3));
}
