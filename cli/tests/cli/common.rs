//! Test support: a fresh schema, the binary pointed at it, seeding.

use assert_cmd::Command;
use eventcore::*;
use eventcore_postgres::PostgresStore;
use eventcore_store::EventStore;
use eventcore_tests::conformance::{fresh_command_id, new_event, stream};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

pub use eventcore_tests::postgres::{database_url, fresh_store};

/// The binary, pointed at the test database and `schema`.
pub fn eventcore(schema: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eventcore"));
    command
        .env("DATABASE_URL", database_url())
        .env_remove("EVENTCORE_SCHEMA")
        .args(["--schema", schema])
        .timeout(Duration::from_secs(60));
    command
}

/// The binary for `store`'s schema.
pub fn eventcore_for(store: &PostgresStore) -> Command {
    eventcore(&store.options().schema)
}

/// Stdout as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

/// Stdout as one JSON document.
pub fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", stdout(output)))
}

/// Appends `events` (type, payload) to `stream_id` in one append.
pub async fn append(store: &PostgresStore, stream_id: &str, events: &[(&str, serde_json::Value)]) -> AppendReceipt {
    append_with(
        store,
        stream_id,
        events,
        EventMetadata::new(fresh_command_id(), suite_time()),
    )
    .await
}

/// [`append`] with metadata of the caller's.
pub async fn append_with(
    store: &PostgresStore,
    stream_id: &str,
    events: &[(&str, serde_json::Value)],
    metadata: EventMetadata,
) -> AppendReceipt {
    store
        .append(&AppendRequest {
            metadata: Arc::new(metadata),
            streams: vec![StreamAppend {
                stream: stream(stream_id),
                expected: ExpectedVersion::Any,
                events: events.iter().map(|(t, p)| new_event(t, p.clone())).collect(),
                tombstone: false,
            }],
        })
        .await
        .expect("append")
}

/// The time the seeded metadata carries (2023-11-14T22:13:20.123456789Z).
pub fn suite_time() -> Time {
    eventcore_tests::conformance::suite_time()
}

/// Every event of `stream_id`, read back through the library.
pub async fn read_back(store: &PostgresStore, stream_id: &str) -> Vec<RecordedEvent> {
    let mut response = store.read(&ReadRequest::new([stream(stream_id)])).await.expect("read");
    response.streams.pop().expect("one slice").events
}
