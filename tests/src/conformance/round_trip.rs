//! Group 7 of the suite, the exact round trip of events and their metadata.

use super::*;
use std::collections::BTreeMap;

/// Every field of an event and its metadata reads back exactly as written,
/// through a stream read and through `read_all`.
pub async fn events_and_metadata_round_trip_exactly<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (a, b) = (stream("trip-a"), stream("trip-b"));
    let metadata = EventMetadata {
        command_id: fresh_command_id(),
        correlation_id: CorrelationId::v7(suite_time(), unique_entropy()),
        causation_id: Some(CausationId::v7(suite_time(), unique_entropy())),
        timestamp: suite_time(),
        user: BTreeMap::from([
            ("user".to_owned(), "ada".to_owned()),
            ("tenant ✓".to_owned(), "acme \"quoted\" \\ back".to_owned()),
            ("empty".to_owned(), String::new()),
        ]),
    };
    let payloads = [
        serde_json::json!({ "amount": 5, "note": "café ☕", "nested": { "list": [1, 2.5, -3, null, true] } }),
        serde_json::json!("just a string with \"quotes\" and \\ and \n newline"),
        serde_json::json!([{"b": 1, "a": 2}, u64::MAX, i64::MIN]),
        serde_json::json!(null),
    ];
    let mut sent: Vec<NewEvent> = payloads.iter().map(|p| new_event("RoundTripped", p.clone())).collect();
    sent[1].schema_version = 7;
    sent[2].event_type = event_type("Other.Type-v2");
    let request = Append::new()
        .with_metadata(metadata.clone())
        .with_events(&a, ExpectedVersion::NoStream, sent[..3].to_vec())
        .with_events(&b, ExpectedVersion::NoStream, sent[3..].to_vec())
        .build();
    let receipt = commit(&store, &request).await;

    let slices = read(&store, &[a.clone(), b.clone()]).await;
    let stored: Vec<&RecordedEvent> = slices.iter().flat_map(|s| s.events.iter()).collect();
    assert_eq!(stored.len(), sent.len());
    let places = [(&a, 1u64), (&a, 2), (&a, 3), (&b, 1)];
    let positions: Vec<GlobalPosition> = receipt.streams.iter().flat_map(|s| s.positions.clone()).collect();
    for (i, (got, want)) in stored.iter().zip(&sent).enumerate() {
        assert_eq!(got.event_id, want.event_id, "event {i}: id");
        assert_eq!(got.event_type, want.event_type, "event {i}: type");
        assert_eq!(got.schema_version, want.schema_version, "event {i}: schema version");
        assert_eq!(json_of(&got.payload), json_of(&want.payload), "event {i}: payload");
        assert_eq!(json_of(&got.payload), payloads[i], "event {i}: payload value");
        assert_eq!(&got.stream_id, places[i].0, "event {i}: stream");
        assert_eq!(got.version, StreamVersion::new(places[i].1), "event {i}: version");
        assert_eq!(got.position, positions[i], "event {i}: position");
        assert_eq!(got.metadata.command_id, metadata.command_id, "event {i}: command id");
        assert_eq!(
            got.metadata.correlation_id, metadata.correlation_id,
            "event {i}: correlation id"
        );
        assert_eq!(
            got.metadata.causation_id, metadata.causation_id,
            "event {i}: causation id"
        );
        assert_eq!(
            got.metadata.timestamp, metadata.timestamp,
            "event {i}: the timestamp keeps nanosecond precision"
        );
        assert_eq!(got.metadata.user, metadata.user, "event {i}: user metadata");
        assert_eq!(*got.metadata, metadata, "event {i}: metadata as a whole");
    }
    let global = global_log(&store).await;
    let from_streams: Vec<RecordedEvent> = stored.into_iter().cloned().collect();
    assert_eq!(global, from_streams, "read_all returns the very same events");

    // Without a causation id and without user metadata.
    let plain = EventMetadata::new(fresh_command_id(), Time::from_unix_nanos(1));
    commit(
        &store,
        &Append::new()
            .with_metadata(plain.clone())
            .to(&a, ExpectedVersion::Any, 1)
            .build(),
    )
    .await;
    let last = read(&store, std::slice::from_ref(&a)).await[0].events[3].clone();
    assert_eq!(*last.metadata, plain);
}

/// A payload arrives in either codec and reads back, through a stream read
/// and through `read_all`, as the same JSON value and the same event. A JSON
/// store ([`EventStore::codec`]) holds JSON only; a MessagePack one keeps
/// each payload in its store's codec or the codec it came in
/// ([`AppendRequest::for_store`]).
pub async fn payloads_in_either_codec_read_back_as_the_same_event<F: StoreFactory>(factory: F) {
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Noted {
        Noted { text: String, n: u64, tags: Vec<String> },
    }
    impl Event for Noted {}

    let store = factory.fresh().await;
    let s = stream("codecs");
    let event = Noted::Noted {
        text: "café ☕ \"quoted\"".to_owned(),
        n: u64::MAX,
        tags: vec!["a".to_owned(), String::new()],
    };
    let value = serde_json::json!({ "text": "café ☕ \"quoted\"", "n": u64::MAX, "tags": ["a", ""] });
    let sent: Vec<NewEvent> = Codec::ALL
        .iter()
        .map(|codec| {
            let encoded = event.encode_as(*codec).expect("the event encodes in every codec");
            assert_eq!(encoded.payload.codec(), *codec);
            NewEvent {
                event_id: EventId::v7(suite_time(), unique_entropy()),
                event_type: encoded.event_type,
                schema_version: encoded.schema_version,
                payload: encoded.payload,
            }
        })
        .collect();
    assert!(sent.len() > 1, "the suite runs with the binary codec built in");
    commit(
        &store,
        &Append::new()
            .with_events(&s, ExpectedVersion::NoStream, sent.clone())
            .build(),
    )
    .await;
    let slice = read(&store, std::slice::from_ref(&s)).await.remove(0);
    let sent_ids: Vec<EventId> = sent.iter().map(|e| e.event_id).collect();
    assert_eq!(event_ids(&slice.events), sent_ids);
    for (got, want) in slice.events.iter().zip(&sent) {
        let kept = got.payload.codec();
        match store.codec() {
            Codec::Json => assert_eq!(kept, Codec::Json, "a JSON store holds JSON only"),
            codec => assert!(kept == codec || kept == want.payload.codec(), "kept in {kept}"),
        }
        assert_eq!(json_of(&got.payload), value);
        assert_eq!(decode_recorded::<Noted>(got).expect("decodes"), event);
    }
    assert_eq!(
        global_log(&store).await,
        slice.events,
        "read_all returns the very same events"
    );
}
