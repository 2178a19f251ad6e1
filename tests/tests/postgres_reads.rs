//! PostgreSQL only: long streams are read page by page (never whole), the
//! health check reports a migrated schema, and migrating is idempotent and
//! safe when several processes start at once; the events of an append are
//! found by its command id.

use eventcore::*;
use eventcore_postgres::PostgresStore;
use eventcore_tests::conformance::{fresh_command_id, stream, tested_events};
use eventcore_tests::postgres::{fresh_store, options};
use eventcore_tokio::EventStore;
use futures_util::TryStreamExt;
use std::num::NonZeroU32;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_stream_is_streamed_page_by_page_in_version_order() {
    let Some(store) = fresh_store("paging").await else {
        return;
    };
    let s = stream("long");
    for _ in 0..5 {
        store
            .append(&AppendRequest {
                metadata: Arc::new(EventMetadata::new(fresh_command_id(), Time::from_unix_millis(1))),
                streams: vec![StreamAppend {
                    stream: s.clone(),
                    expected: ExpectedVersion::Any,
                    events: tested_events(500),
                    tombstone: false,
                }],
            })
            .await
            .expect("append 500");
    }
    let page = NonZeroU32::new(300).expect("non-zero");
    let events: Vec<RecordedEvent> = store
        .stream_events(s.clone(), StreamVersion::new(10), page)
        .try_collect()
        .await
        .expect("stream the events");
    let versions: Vec<u64> = events.iter().map(|e| e.version.get()).collect();
    assert_eq!(
        versions,
        (11..=2_500).collect::<Vec<_>>(),
        "every event after 10, once, in order"
    );

    let first_page = store
        .read(&ReadRequest {
            page_size: Some(page),
            ..ReadRequest::new([s])
        })
        .await
        .expect("read one page");
    assert_eq!(
        first_page.streams[0].events.len(),
        300,
        "a page is at most page_size events"
    );
    assert_eq!(
        first_page.streams[0].head,
        StreamVersion::new(2_500),
        "the head is reported anyway"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_the_server_and_a_migrated_schema() {
    let Some(store) = fresh_store("health").await else {
        return;
    };
    let health = store.health().await.expect("health");
    assert!(health.migrated);
    assert!(!health.server_version.is_empty());
    assert!(health.connections >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_processes_migrating_the_same_schema_at_once_all_succeed() {
    let options = options("migrate_race");
    let mut stores = Vec::new();
    for _ in 0..4 {
        match PostgresStore::connect_with(options.clone()).await {
            Ok(store) => stores.push(store),
            Err(error) if !eventcore_tests::postgres::required() => {
                eprintln!("*** SKIPPED: PostgreSQL unreachable: {error}");
                return;
            }
            Err(error) => panic!("CI=true but PostgreSQL is unreachable: {error}"),
        }
    }
    let racers: Vec<_> = stores
        .iter()
        .cloned()
        .map(|store| tokio::spawn(async move { store.migrate().await.map_err(|e| e.to_string()) }))
        .collect();
    for racer in racers {
        racer.await.expect("task").expect("every concurrent migrate succeeds");
    }
    stores[0].migrate().await.expect("migrating again is a no-op");
    assert!(stores[3].health().await.expect("health").migrated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_of_a_command_are_found_by_its_id_with_their_metadata() {
    let Some(store) = fresh_store("command_events").await else {
        return;
    };
    let (a, b) = (stream("cmd-a"), stream("cmd-b"));
    let append = |id: CommandId, user: &str| AppendRequest {
        metadata: Arc::new(EventMetadata::new(id, Time::from_unix_millis(1)).with_user("request", user)),
        streams: vec![
            StreamAppend {
                stream: a.clone(),
                expected: ExpectedVersion::Any,
                events: tested_events(2),
                tombstone: false,
            },
            StreamAppend {
                stream: b.clone(),
                expected: ExpectedVersion::Any,
                events: tested_events(1),
                tombstone: false,
            },
        ],
    };
    let (before, target, after) = (fresh_command_id(), fresh_command_id(), fresh_command_id());
    store.append(&append(before, "before")).await.expect("append before");
    let receipt = store.append(&append(target, "target")).await.expect("append target");
    store.append(&append(after, "after")).await.expect("append after");

    let found = store.command_events(target).await.expect("look the command up");
    let positions: Vec<GlobalPosition> = found.iter().map(|e| e.position).collect();
    let mut committed: Vec<GlobalPosition> = receipt.streams.iter().flat_map(|s| s.positions.clone()).collect();
    committed.sort();
    assert_eq!(positions, committed, "exactly the receipt's events, in global order");
    assert!(
        found
            .iter()
            .all(|e| e.metadata.command_id == target && e.metadata.user["request"] == "target"),
        "each with the metadata of the append that wrote it"
    );
    let streams: Vec<(&str, u64)> = found.iter().map(|e| (e.stream_id.as_str(), e.version.get())).collect();
    assert_eq!(streams, [("cmd-a", 3), ("cmd-a", 4), ("cmd-b", 2)]);

    let unknown = store
        .command_events(fresh_command_id())
        .await
        .expect("look up an unknown id");
    assert!(unknown.is_empty(), "an id that never committed has no events");
}
