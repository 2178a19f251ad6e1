//! loom model of the executor's stream cache under concurrent record and
//! snapshot calls (a reader, two committers, and the executor's snapshots;
//! the bound forces evictions): the event bound holds after every call, every snapshot
//! is a contiguous prefix of its stream from version 1, and the cache's
//! event count matches what it holds.
#![cfg(eventcore_loom)]

use eventcore::{
    AppendReceipt, AppendRequest, CommandId, EventId, EventMetadata, EventType, ExpectedVersion, NewEvent, Payload,
    ReadRequest, ReadResponse, RecordedEvent, StreamAppend, StreamId, StreamRead, StreamVersion, Time,
};
use eventcore_memory::MemoryStore;
use eventcore_tokio::StreamCache;
use std::sync::Arc;

const MAX_EVENTS: usize = 4;

fn stream(name: &str) -> StreamId {
    StreamId::new(name).expect("valid stream id")
}

fn append(tag: u8, name: &str, count: u8) -> AppendRequest {
    AppendRequest {
        metadata: Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [tag; 10]), Time::ZERO)),
        streams: vec![StreamAppend {
            stream: stream(name),
            expected: ExpectedVersion::Any,
            events: (0..count)
                .map(|n| NewEvent {
                    event_id: EventId::v7(Time::ZERO, [tag, n, 0, 0, 0, 0, 0, 0, 0, 0]),
                    event_type: EventType::new("Happened").expect("valid event type"),
                    schema_version: 1,
                    payload: Payload::from_trusted_json(format!("{n}")),
                })
                .collect(),
            tombstone: false,
        }],
    }
}

fn read(store: &MemoryStore, name: &str, after: u64) -> (ReadRequest, ReadResponse) {
    let request = ReadRequest {
        streams: vec![StreamRead {
            stream: stream(name),
            after: StreamVersion::new(after),
        }],
        page_size: None,
    };
    let response = store.read(&request).expect("read");
    (request, response)
}

/// What the threads feed the cache, computed once per iteration on a plain
/// store: `s1` has 3 events and then a fourth by an append, `s2` has 2 and
/// then a third by an append.
struct Script {
    s1_full: (ReadRequest, ReadResponse),
    s1_tail: (ReadRequest, ReadResponse),
    s1_append: (AppendRequest, AppendReceipt),
    s2_full: (ReadRequest, ReadResponse),
    s2_append: (AppendRequest, AppendReceipt),
    truth: MemoryStore,
}

fn script() -> Script {
    let mut store = MemoryStore::new();
    store.append(&append(1, "s1", 3)).expect("s1");
    store.append(&append(2, "s2", 2)).expect("s2");
    let s1_full = read(&store, "s1", 0);
    let s1_tail = read(&store, "s1", 1);
    let s2_full = read(&store, "s2", 0);
    let request = append(3, "s2", 1);
    let receipt = store.append(&request).expect("s2 again");
    let s1_request = append(4, "s1", 1);
    let s1_receipt = store.append(&s1_request).expect("s1 again");
    Script {
        s1_full,
        s1_tail,
        s1_append: (s1_request, s1_receipt),
        s2_full,
        s2_append: (request, receipt),
        truth: store,
    }
}

/// A snapshot must be the stream's events from version 1 on, exactly as
/// stored, with no gap.
fn check_snapshot(cache: &StreamCache, truth: &MemoryStore, name: &str) -> usize {
    let Some(chunks) = cache.snapshot(&stream(name)) else {
        return 0;
    };
    let events: Vec<&RecordedEvent> = chunks.iter().flat_map(|c| c.iter()).collect();
    let stored = truth.read(&ReadRequest::new([stream(name)])).expect("read");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e.version,
            StreamVersion::new(i as u64 + 1),
            "cached `{name}` is not a prefix from 1"
        );
        assert_eq!(
            **e, stored.streams[0].events[i],
            "cached `{name}` differs from the store"
        );
    }
    events.len()
}

#[test]
fn cache_stays_bounded_and_prefixes_stay_contiguous() {
    loom::model(|| {
        let script = Arc::new(script());
        let cache = loom::sync::Arc::new(StreamCache::new(MAX_EVENTS));

        let reader = {
            let (cache, script) = (cache.clone(), script.clone());
            loom::thread::spawn(move || {
                cache.record_read(&script.s1_full.0, &script.s1_full.1);
                assert!(cache.cached_events() <= MAX_EVENTS);
                // A tail read continues the prefix only if it is still there.
                cache.record_read(&script.s1_tail.0, &script.s1_tail.1);
                assert!(cache.cached_events() <= MAX_EVENTS);
            })
        };
        let writer = {
            let (cache, script) = (cache.clone(), script.clone());
            loom::thread::spawn(move || {
                cache.record_read(&script.s2_full.0, &script.s2_full.1);
                assert!(cache.cached_events() <= MAX_EVENTS);
                cache.record_append(&script.s2_append.0, &script.s2_append.1);
                assert!(cache.cached_events() <= MAX_EVENTS);
            })
        };
        // A second executor committing to `s1` while the first reads it.
        let other = {
            let (cache, script) = (cache.clone(), script.clone());
            loom::thread::spawn(move || {
                cache.record_append(&script.s1_append.0, &script.s1_append.1);
                assert!(cache.cached_events() <= MAX_EVENTS);
                check_snapshot(&cache, &script.truth, "s1");
            })
        };
        // The executor's side: snapshots taken while the others record.
        check_snapshot(&cache, &script.truth, "s1");
        check_snapshot(&cache, &script.truth, "s2");

        reader.join().expect("reader");
        writer.join().expect("writer");
        other.join().expect("other writer");
        let held = check_snapshot(&cache, &script.truth, "s1") + check_snapshot(&cache, &script.truth, "s2");
        assert_eq!(held, cache.cached_events(), "the event count drifted from the entries");
        assert!(held <= MAX_EVENTS);
    });
}
