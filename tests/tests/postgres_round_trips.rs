//! PostgreSQL only: an atomic append of any number of streams is one
//! statement, hence one round trip once the statement is prepared on the
//! connection; so is a read of many streams. Statements are counted from
//! sqlx's own per-statement log events (target `sqlx::query`).

use eventcore::*;
use eventcore_tests::conformance::{fresh_command_id, stream, tested_events};
use eventcore_tests::postgres::{fresh_store_with, options};
use eventcore_tokio::EventStore;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Counts every statement sqlx executes on this thread.
#[derive(Clone, Default)]
struct StatementCounter(Arc<AtomicUsize>);

impl StatementCounter {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Subscriber for StatementCounter {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "sqlx::query"
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if event.metadata().target() == "sqlx::query" {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn transfer_like(streams: usize) -> AppendRequest {
    AppendRequest {
        metadata: Arc::new(EventMetadata::new(fresh_command_id(), Time::from_unix_millis(1))),
        streams: (0..streams)
            .map(|i| StreamAppend {
                stream: stream(&format!("rt-{i}")),
                expected: ExpectedVersion::Any,
                events: tested_events(1 + i % 2),
                tombstone: false,
            })
            .collect(),
    }
}

// Current-thread runtime: every statement runs on this thread, where the
// counter is installed.
#[tokio::test]
async fn one_statement_per_atomic_append_and_per_multi_stream_read() {
    let counter = StatementCounter::default();
    let _guard = tracing::subscriber::set_default(counter.clone());
    let Some(store) = fresh_store_with(options("round_trips").max_connections(1)).await else {
        return;
    };
    // Warm the connection: the first use of a statement also prepares it.
    store.append(&transfer_like(2)).await.expect("warm-up append");
    let read = ReadRequest::new((0..8).map(|i| stream(&format!("rt-{i}"))));
    store.read(&read).await.expect("warm-up read");

    for streams in [1, 2, 8] {
        let before = counter.count();
        let receipt = store.append(&transfer_like(streams)).await.expect("append");
        assert_eq!(receipt.streams.len(), streams);
        let statements = counter.count() - before;
        println!("append to {streams} stream(s): {statements} statement(s)");
        assert_eq!(statements, 1, "an atomic append of {streams} streams is one statement");
    }

    let before = counter.count();
    let duplicate = transfer_like(2);
    store.append(&duplicate).await.expect("append");
    let again = store.append(&duplicate).await.expect("re-send");
    assert!(again.deduplicated);
    // The append is one statement; the re-send two: the one-statement
    // append's plain claim fails on `commands_pkey`, then `append()` answers
    // with the stored receipt. (It was one while the claim was an
    // `ON CONFLICT DO NOTHING`, whose speculative insertion every fresh
    // append paid for; re-sends only follow an unknown outcome.)
    assert_eq!(
        counter.count() - before,
        3,
        "an append is one statement, its deduplicated re-send two"
    );

    let before = counter.count();
    let answer = store.read(&read).await.expect("read");
    assert_eq!(answer.streams.len(), 8);
    assert_eq!(counter.count() - before, 1, "reading eight streams is one statement");
}
