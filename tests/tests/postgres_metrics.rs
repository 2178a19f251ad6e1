//! PostgreSQL only: every store operation is timed under its `operation`
//! label, a refused append is counted by its error's kind, and the pool's
//! gauges are sampled, as a `DebuggingRecorder` installed for this thread
//! sees them.

use eventcore::*;
use eventcore_postgres::metrics::{POOL_CONNECTIONS, POOL_IDLE, STORE_DURATION, STORE_ERRORS};
use eventcore_postgres::PgCheckpointStore;
use eventcore_tests::conformance::{fresh_command_id, stream, tested_events};
use eventcore_tests::postgres::fresh_store;
use eventcore_tokio::{CheckpointStore, EventStore, FencingToken};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use std::num::NonZeroU32;
use std::sync::Arc;

type Seen = Vec<(metrics::Key, DebugValue)>;

/// Everything recorded since the last look (a look drains the recorder).
fn take(snapshotter: &Snapshotter) -> Seen {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, .., value)| (key.into_parts().1, value))
        .collect()
}

/// The values recorded under `name` whose labels include `labels`.
fn values<'a>(seen: &'a Seen, name: &str, labels: &[(&str, &str)]) -> Vec<&'a DebugValue> {
    seen.iter()
        .filter(|(key, _)| {
            key.name() == name
                && labels
                    .iter()
                    .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
        })
        .map(|(_, value)| value)
        .collect()
}

/// How many positive timings `operation` recorded.
fn timings(seen: &Seen, operation: &str) -> usize {
    values(seen, STORE_DURATION, &[("operation", operation)])
        .into_iter()
        .map(|v| match v {
            DebugValue::Histogram(xs) => xs.iter().filter(|x| x.into_inner() > 0.0).count(),
            other => panic!("{STORE_DURATION} is not a histogram: {other:?}"),
        })
        .sum()
}

fn append_to(s: &StreamId, expected: ExpectedVersion, events: usize) -> AppendRequest {
    AppendRequest {
        metadata: Arc::new(EventMetadata::new(fresh_command_id(), Time::from_unix_millis(1))),
        streams: vec![StreamAppend {
            stream: s.clone(),
            expected,
            events: tested_events(events),
            tombstone: false,
        }],
    }
}

#[test]
fn store_operations_are_timed_errors_counted_and_the_pool_sampled() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // Every task of a current-thread runtime runs on this thread, so the
    // thread's recorder sees everything the store records.
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let Some(store) = fresh_store("metrics").await else {
                return;
            };
            let _ = take(&snapshotter); // what connecting and migrating recorded

            let s = stream("metered");
            store
                .append(&append_to(&s, ExpectedVersion::NoStream, 2))
                .await
                .expect("append");
            store.read(&ReadRequest::new([s.clone()])).await.expect("read");
            let all = ReadAllRequest {
                after: GlobalPosition::START,
                limit: NonZeroU32::new(10).expect("non-zero"),
                filter: EventFilter::all(),
            };
            store.read_all(&all).await.expect("read_all");
            let batch = [
                append_to(&stream("batched-1"), ExpectedVersion::Any, 1),
                append_to(&stream("batched-2"), ExpectedVersion::Any, 1),
            ];
            for outcome in store.append_batch(&batch).await {
                outcome.expect("batched append");
            }
            let checkpoints = PgCheckpointStore::new(&store);
            let token = FencingToken::new(1);
            checkpoints.claim("metered", token).await.expect("claim");
            checkpoints
                .save("metered", token, GlobalPosition::new(1))
                .await
                .expect("save");
            let seen = take(&snapshotter);
            for operation in [
                "read",
                "append",
                "read_all",
                "append_batch",
                "checkpoint_claim",
                "checkpoint_save",
            ] {
                assert_eq!(timings(&seen, operation), 1, "one timing of {operation}");
            }
            assert!(values(&seen, STORE_ERRORS, &[]).is_empty(), "nothing failed");
            let connections = values(&seen, POOL_CONNECTIONS, &[]);
            let idle = values(&seen, POOL_IDLE, &[]);
            let ([DebugValue::Gauge(open)], [DebugValue::Gauge(idle)]) = (&connections[..], &idle[..]) else {
                panic!("one gauge each: {connections:?} {idle:?}");
            };
            assert!(open.into_inner() >= 1.0, "a connection was open: {open}");
            assert!(idle.into_inner() <= open.into_inner(), "idle {idle} of {open}");

            // A stale expected version: refused, and counted by kind.
            let refused = store
                .append(&append_to(&s, ExpectedVersion::Exact(StreamVersion::new(1)), 1))
                .await;
            assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
            let seen = take(&snapshotter);
            let conflicts = values(&seen, STORE_ERRORS, &[("operation", "append"), ("kind", "conflict")]);
            assert_eq!(conflicts, vec![&DebugValue::Counter(1)]);
            let _ = store.drop_schema().await;
        });
    });
}
