//! The proptest strategies of `eventcore::strategies` (feature `proptest`),
//! used as a user would use them: generated histories, appended to the
//! memory store one event at a time, read back exactly; generated appends
//! either commit or are refused with a typed error, never anything else.

use eventcore::strategies::{expected_version, history, new_event, prefixed_stream_id, stream_id};
use eventcore::{AppendRequest, ExpectedVersion, NewEvent, ReadRequest, StoreError, StreamAppend, StreamVersion};
use eventcore_memory::MemoryStore;
use proptest::prelude::*;

proptest! {
    #[test]
    fn a_generated_history_appended_to_the_memory_store_reads_back_exactly(
        events in (prefixed_stream_id("account"), prefixed_stream_id("order"))
            .prop_flat_map(|(account, order)| history(vec![account, order], 0..30)),
    ) {
        let mut store = MemoryStore::new();
        for event in &events {
            let append = AppendRequest {
                metadata: event.metadata.clone(),
                streams: vec![StreamAppend {
                    stream: event.stream_id.clone(),
                    expected: ExpectedVersion::from_read(StreamVersion::new(event.version.get() - 1)),
                    events: vec![NewEvent {
                        event_id: event.event_id,
                        event_type: event.event_type.clone(),
                        schema_version: event.schema_version,
                        payload: event.payload.clone(),
                    }], tombstone: false,
                }],
            };
            let receipt = store.append(&append).expect("a generated history keeps the contract");
            prop_assert_eq!(receipt.streams[0].first_version, event.version);
        }
        let streams: Vec<_> = events.iter().map(|e| e.stream_id.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        let read = store.read(&ReadRequest::new(streams)).expect("reads");
        let mut back: Vec<_> = read.streams.into_iter().flat_map(|s| s.events).collect();
        back.sort_by_key(|e| e.position);
        prop_assert_eq!(back.len(), events.len());
        for (stored, generated) in back.iter().zip(&events) {
            // Positions are the store's own; everything else is kept.
            prop_assert_eq!(&stored.stream_id, &generated.stream_id);
            prop_assert_eq!(stored.version, generated.version);
            prop_assert_eq!(stored.event_id, generated.event_id);
            prop_assert_eq!(&stored.event_type, &generated.event_type);
            prop_assert_eq!(&stored.payload, &generated.payload);
            prop_assert_eq!(&stored.metadata, &generated.metadata);
        }
    }

    #[test]
    fn a_generated_append_commits_or_is_refused_with_a_typed_error(
        stream in stream_id(),
        expected in expected_version(),
        events in prop::collection::vec(new_event(), 1..5),
        history in prop::collection::vec(new_event(), 0..3),
        metadata in eventcore::strategies::event_metadata(),
    ) {
        let mut store = MemoryStore::new();
        if !history.is_empty() {
            let mut earlier = metadata.clone();
            earlier.command_id = eventcore::CommandId::v7(eventcore::Time::ZERO, [7; 10]);
            store
                .append(&AppendRequest {
                    metadata: std::sync::Arc::new(earlier),
                    streams: vec![StreamAppend { stream: stream.clone(), expected: ExpectedVersion::NoStream, events: history.clone(), tombstone: false }],
                })
                .expect("a first append commits");
        }
        let head = StreamVersion::new(history.len() as u64);
        let count = events.len() as u64;
        let result = store.append(&AppendRequest {
            metadata: std::sync::Arc::new(metadata),
            streams: vec![StreamAppend { stream, expected, events, tombstone: false }],
        });
        match result {
            Ok(receipt) => {
                prop_assert!(expected.matches(head));
                prop_assert_eq!(receipt.streams[0].last_version.get(), head.get() + count);
            }
            Err(StoreError::Conflict(conflict)) => {
                prop_assert!(!expected.matches(head));
                prop_assert_eq!(conflict.actual, head);
            }
            Err(other) => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}
