//! Group 6 of the suite, bad input, refused with a typed error and without
//! changing anything.

use super::*;

/// Snapshot of everything a bad request might have touched.
async fn contents<S: EventStore>(store: &S, streams: &[StreamId]) -> (Vec<RecordedEvent>, Vec<StreamSlice>) {
    (global_log(store).await, read(store, streams).await)
}

async fn seeded_store<F: StoreFactory>(factory: F) -> (F::Store, Vec<StreamId>) {
    let store = factory.fresh().await;
    let streams = vec![stream("bad-a"), stream("bad-b")];
    commit(
        &store,
        &Append::new()
            .to(&streams[0], ExpectedVersion::NoStream, 2)
            .to(&streams[1], ExpectedVersion::NoStream, 1)
            .build(),
    )
    .await;
    (store, streams)
}

/// An append naming no streams is refused with `NoStreams`.
pub async fn an_append_with_no_streams_is_refused<F: StoreFactory>(factory: F) {
    let (store, streams) = seeded_store(factory).await;
    let before = contents(&store, &streams).await;
    let result = store.append(&Append::new().build()).await;
    assert!(
        matches!(result, Err(StoreError::InvalidAppend(InvalidAppend::NoStreams))),
        "{result:?}"
    );
    assert_eq!(contents(&store, &streams).await, before);
}

/// An append carrying no events (only version checks) is refused with
/// `NoEvents`.
pub async fn an_append_with_no_events_is_refused<F: StoreFactory>(factory: F) {
    let (store, streams) = seeded_store(factory).await;
    let before = contents(&store, &streams).await;
    let result = store
        .append(
            &Append::new()
                .check(&streams[0], ExpectedVersion::Exact(StreamVersion::new(2)))
                .check(&stream("bad-new"), ExpectedVersion::NoStream)
                .build(),
        )
        .await;
    assert!(
        matches!(result, Err(StoreError::InvalidAppend(InvalidAppend::NoEvents))),
        "{result:?}"
    );
    assert_eq!(contents(&store, &streams).await, before);
}

/// A stream named twice in one append is refused with `DuplicateStream`.
pub async fn an_append_naming_a_stream_twice_is_refused<F: StoreFactory>(factory: F) {
    let (store, streams) = seeded_store(factory).await;
    let before = contents(&store, &streams).await;
    let result = store
        .append(
            &Append::new()
                .to(&streams[0], ExpectedVersion::Any, 1)
                .to(&streams[1], ExpectedVersion::Any, 1)
                .to(&streams[0], ExpectedVersion::Any, 1)
                .build(),
        )
        .await;
    match result {
        Err(StoreError::InvalidAppend(InvalidAppend::DuplicateStream { stream })) => assert_eq!(stream, streams[0]),
        other => panic!("expected DuplicateStream, got {other:?}"),
    }
    assert_eq!(contents(&store, &streams).await, before);
}

/// More events than [`AppendLimits::default`] allows in one append are
/// refused with `TooManyEvents`.
pub async fn an_append_with_too_many_events_is_refused<F: StoreFactory>(factory: F) {
    let (store, streams) = seeded_store(factory).await;
    let before = contents(&store, &streams).await;
    let max = AppendLimits::default().max_events;
    let half = max / 2 + 1;
    let result = store
        .append(
            &Append::new()
                .to(&streams[0], ExpectedVersion::Any, half)
                .to(&stream("bad-c"), ExpectedVersion::Any, max + 1 - half)
                .build(),
        )
        .await;
    match result {
        Err(StoreError::InvalidAppend(InvalidAppend::TooManyEvents { count, max: limit })) => {
            assert_eq!((count, limit), (max + 1, max), "counted across all streams");
        }
        other => panic!("expected TooManyEvents, got {other:?}"),
    }
    assert_eq!(contents(&store, &streams).await, before);
    assert_eq!(head(&store, &stream("bad-c")).await, StreamVersion::NONE);
}

/// More streams than [`AppendLimits::default`] allows in one append are
/// refused with `TooManyStreams`.
pub async fn an_append_to_too_many_streams_is_refused<F: StoreFactory>(factory: F) {
    let (store, streams) = seeded_store(factory).await;
    let before = contents(&store, &streams).await;
    let max = AppendLimits::default().max_streams;
    let mut append = Append::new().to(&streams[0], ExpectedVersion::Any, 1);
    for i in 0..max {
        append = append.to(&stream(&format!("bad-many-{i}")), ExpectedVersion::Any, 1);
    }
    match store.append(&append.build()).await {
        Err(StoreError::InvalidAppend(InvalidAppend::TooManyStreams { count, max: limit })) => {
            assert_eq!((count, limit), (max + 1, max));
        }
        other => panic!("expected TooManyStreams, got {other:?}"),
    }
    assert_eq!(contents(&store, &streams).await, before);
}

/// A payload that is not storable JSON (malformed, or holding `\u0000`,
/// which PostgreSQL's JSONB refuses) is refused naming its stream, and
/// nothing is written.
pub async fn a_payload_that_is_not_storable_json_is_refused<F: StoreFactory>(factory: F) {
    let (store, streams) = seeded_store(factory).await;
    let before = contents(&store, &streams).await;
    for text in ["{not json", "\"nul \\u0000 inside\""] {
        let bad = NewEvent {
            payload: Payload::from_trusted_json(text),
            ..new_event("Bad", serde_json::Value::Null)
        };
        let result = store
            .append(
                &Append::new()
                    .to(&streams[0], ExpectedVersion::Any, 1)
                    .with_events(&streams[1], ExpectedVersion::Any, vec![bad])
                    .build(),
            )
            .await;
        match result {
            Err(StoreError::InvalidAppend(InvalidAppend::Rejected { stream, .. })) => {
                assert_eq!(
                    stream, streams[1],
                    "the error names the stream of the bad payload ({text})"
                );
            }
            other => panic!("expected InvalidAppend::Rejected for {text:?}, got {other:?}"),
        }
        assert_eq!(contents(&store, &streams).await, before, "nothing was written");
    }
}

/// A payload above [`AppendLimits::default`]'s maximum is refused with
/// `PayloadTooLarge`, naming the stream, type and sizes; one of exactly the
/// maximum is accepted.
pub async fn an_oversized_payload_is_refused<F: StoreFactory>(factory: F) {
    let (store, streams) = seeded_store(factory).await;
    let before = contents(&store, &streams).await;
    let max = AppendLimits::default().max_payload_bytes;
    // A JSON string of `len` bytes: two quotes around `len - 2` letters.
    let payload_of = |len: usize| Payload::from_json(format!("\"{}\"", "x".repeat(len - 2))).expect("valid JSON");
    let event_of = |len: usize| NewEvent {
        payload: payload_of(len),
        ..new_event("Big", serde_json::Value::Null)
    };
    let result = store
        .append(
            &Append::new()
                .to(&streams[1], ExpectedVersion::Any, 1)
                .with_events(&streams[0], ExpectedVersion::Any, vec![event_of(max + 1)])
                .build(),
        )
        .await;
    match result {
        Err(StoreError::InvalidAppend(InvalidAppend::PayloadTooLarge {
            stream,
            event_type,
            size,
            max: limit,
        })) => {
            assert_eq!(stream, streams[0]);
            assert_eq!(event_type.as_str(), "Big");
            assert_eq!((size, limit), (max + 1, max));
        }
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    assert_eq!(contents(&store, &streams).await, before);

    let at_limit = commit(
        &store,
        &Append::new()
            .with_events(&streams[0], ExpectedVersion::Any, vec![event_of(max)])
            .build(),
    )
    .await;
    assert_eq!(at_limit.streams[0].first_version, StreamVersion::new(3));
    let stored = &read(&store, &streams[..1]).await[0].events[2];
    assert_eq!(json_of(&stored.payload), json_of(&payload_of(max)));
}

/// A stream named twice in one read is refused with `DuplicateStream`.
pub async fn a_read_naming_a_stream_twice_is_refused<F: StoreFactory>(factory: F) {
    let (store, streams) = seeded_store(factory).await;
    let before = contents(&store, &streams).await;
    let request = ReadRequest::new([streams[0].clone(), streams[1].clone(), streams[0].clone()]);
    match store.read(&request).await {
        Err(StoreError::InvalidRequest(InvalidRequest::DuplicateStream { stream })) => assert_eq!(stream, streams[0]),
        other => panic!("expected DuplicateStream, got {other:?}"),
    }
    assert_eq!(contents(&store, &streams).await, before);
}
