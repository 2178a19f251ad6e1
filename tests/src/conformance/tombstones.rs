//! Group 9 of the suite, stream tombstones: an append may end a stream
//! (`StreamAppend::tombstone`). Every later append that writes it is refused
//! with [`StoreError::StreamDeleted`] naming the stream, reads report it as
//! deleted with its events intact, and the tombstone is idempotent by
//! command id and atomic with the rest of its append, like any append.

use super::*;

/// Where a tombstone ended `stream`, as a read reports it.
async fn deleted_at<S: EventStore>(store: &S, stream: &StreamId) -> Option<StreamVersion> {
    read(store, std::slice::from_ref(stream)).await[0].deleted_at
}

/// Asserts that `result` is the refusal of a write to `stream`, ended by a
/// tombstone at version `deleted_at`, and that its message names both.
pub fn assert_stream_deleted(result: Result<AppendReceipt, StoreError>, stream: &StreamId, deleted_at: u64) {
    match result {
        Err(StoreError::StreamDeleted(deleted)) => {
            assert_eq!(&deleted.stream, stream, "the refusal names the deleted stream");
            assert_eq!(
                deleted.deleted_at,
                StreamVersion::new(deleted_at),
                "the refusal says where the stream ended"
            );
            let error = StoreError::StreamDeleted(deleted);
            assert!(!error.is_retryable(), "no retry can write a deleted stream");
            assert_eq!(error.kind(), StoreErrorKind::StreamDeleted);
            assert_eq!(
                error.to_string(),
                format!(
                    "stream `{stream}` was deleted by a tombstone at version {deleted_at}; it takes no more events"
                )
            );
        }
        other => panic!("expected `{stream}` refused as deleted at version {deleted_at}, got {other:?}"),
    }
}

/// After a tombstone, appends to the stream are refused whatever they
/// expect, and nothing is written.
pub async fn a_tombstoned_stream_refuses_every_later_write<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("tomb-refuses");
    commit(&store, &Append::new().to(&s, ExpectedVersion::NoStream, 2).build()).await;
    let ending = Append::new()
        .ending(&s, ExpectedVersion::Exact(StreamVersion::new(2)), 1)
        .build();
    let receipt = commit(&store, &ending).await;
    assert_eq!(receipt.streams[0].last_version, StreamVersion::new(3));
    let log = global_log(&store).await;

    for expected in [
        ExpectedVersion::Any,
        ExpectedVersion::StreamExists,
        ExpectedVersion::Exact(StreamVersion::new(3)),
    ] {
        let later = Append::new().to(&s, expected, 1).build();
        assert_stream_deleted(store.append(&later).await, &s, 3);
    }
    assert_eq!(global_log(&store).await, log, "nothing was written");
    assert_eq!(head(&store, &s).await, StreamVersion::new(3));
}

/// A tombstoned stream reads as deleted, at the version of its last event,
/// with every event still there (in stream reads, pages and the global
/// log); an open stream and a missing one read as open.
pub async fn a_tombstoned_stream_reads_as_deleted_with_its_events<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (ended, open, missing) = (stream("tomb-read"), stream("tomb-open"), stream("tomb-missing"));
    commit(&store, &Append::new().to(&ended, ExpectedVersion::NoStream, 2).build()).await;
    commit(&store, &Append::new().to(&open, ExpectedVersion::NoStream, 1).build()).await;
    let log_before = global_log(&store).await;
    commit(&store, &Append::new().ending(&ended, ExpectedVersion::Any, 2).build()).await;

    let slices = read(&store, &[ended.clone(), open.clone(), missing.clone()]).await;
    assert_eq!(
        slices[0].deleted_at,
        Some(StreamVersion::new(4)),
        "the stream reads as deleted"
    );
    assert_eq!(slices[0].head, StreamVersion::new(4));
    assert_eq!(versions(&slices[0]), vec![1, 2, 3, 4], "its events stay readable");
    assert_eq!(slices[1].deleted_at, None, "another stream stays open");
    assert_eq!(slices[2].deleted_at, None, "a missing stream is not deleted");

    let later = ReadRequest {
        streams: vec![StreamRead {
            stream: ended.clone(),
            after: StreamVersion::new(4),
        }],
        page_size: None,
    };
    let tail = store.read(&later).await.expect("reading succeeds");
    assert_eq!(
        tail.streams[0].deleted_at,
        Some(StreamVersion::new(4)),
        "even with no events returned"
    );
    assert!(tail.streams[0].events.is_empty());

    let log = global_log(&store).await;
    assert_eq!(log.len(), log_before.len() + 2, "the global log keeps every event");
    assert_eq!(&log[..log_before.len()], &log_before[..]);
}

/// Re-sending the tombstoning append with its command id returns the
/// original receipt and writes nothing; the stream stays deleted at the
/// same version.
pub async fn a_repeated_tombstone_returns_the_original_receipt<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("tomb-idem");
    commit(&store, &Append::new().to(&s, ExpectedVersion::NoStream, 1).build()).await;
    let ending = Append::new().ending(&s, ExpectedVersion::Any, 1).build();
    let original = commit(&store, &ending).await;
    let log = global_log(&store).await;

    let again = store
        .append(&ending)
        .await
        .expect("a re-sent tombstone is answered with its receipt");
    assert!(again.deduplicated, "the repeat is flagged");
    assert!(again.same_commit(&original));
    assert_eq!(global_log(&store).await, log, "nothing was written again");
    assert_eq!(deleted_at(&store, &s).await, Some(StreamVersion::new(2)));
}

/// A second tombstone (another command) is a write like any other:
/// refused, and the first tombstone's version stands.
pub async fn tombstoning_a_tombstoned_stream_is_refused<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("tomb-twice");
    commit(&store, &Append::new().ending(&s, ExpectedVersion::NoStream, 1).build()).await;
    let log = global_log(&store).await;

    let second = Append::new().ending(&s, ExpectedVersion::Any, 1).build();
    assert_stream_deleted(store.append(&second).await, &s, 1);
    assert_eq!(global_log(&store).await, log);
    assert_eq!(deleted_at(&store, &s).await, Some(StreamVersion::new(1)));
}

/// A tombstone commits with the rest of its append or not at all: a
/// conflict on another stream leaves the stream open (and writable); a
/// passing multi-stream append ends only the tombstoned stream. A write to
/// a deleted stream fails its whole append.
pub async fn a_tombstone_is_atomic_with_a_multi_stream_append<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (a, b) = (stream("tomb-atomic-a"), stream("tomb-atomic-b"));
    commit(&store, &Append::new().to(&b, ExpectedVersion::NoStream, 1).build()).await;
    let log = global_log(&store).await;

    let failing = Append::new()
        .ending(&a, ExpectedVersion::NoStream, 1)
        .to(&b, ExpectedVersion::NoStream, 1)
        .build();
    assert_conflict(store.append(&failing).await, &b, ExpectedVersion::NoStream, 1);
    assert_eq!(global_log(&store).await, log, "nothing was written");
    let slices = read(&store, &[a.clone(), b.clone()]).await;
    assert_eq!(slices[0].deleted_at, None, "the stream stays open");
    assert_eq!(slices[0].head, StreamVersion::NONE);

    let passing = Append::new()
        .ending(&a, ExpectedVersion::NoStream, 1)
        .to(&b, ExpectedVersion::Exact(StreamVersion::new(1)), 1)
        .build();
    commit(&store, &passing).await;
    let slices = read(&store, &[a.clone(), b.clone()]).await;
    assert_eq!(slices[0].deleted_at, Some(StreamVersion::new(1)));
    assert_eq!(slices[1].deleted_at, None, "only the tombstoned stream ends");
    let log = global_log(&store).await;

    let mixed = Append::new()
        .to(&b, ExpectedVersion::Any, 1)
        .to(&a, ExpectedVersion::Any, 1)
        .build();
    assert_stream_deleted(store.append(&mixed).await, &a, 1);
    assert_eq!(global_log(&store).await, log, "the open stream was not written either");
    commit(&store, &Append::new().to(&b, ExpectedVersion::Any, 1).build()).await;
}

/// A pure version check of a deleted stream writes nothing to it, so it
/// passes (the stream's version never moves again) or conflicts as usual.
pub async fn a_pure_version_check_of_a_tombstoned_stream_still_passes<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (ended, other) = (stream("tomb-check"), stream("tomb-check-other"));
    commit(
        &store,
        &Append::new().ending(&ended, ExpectedVersion::NoStream, 2).build(),
    )
    .await;

    let checked = Append::new()
        .check(&ended, ExpectedVersion::Exact(StreamVersion::new(2)))
        .to(&other, ExpectedVersion::NoStream, 1)
        .build();
    commit(&store, &checked).await;
    let stale = Append::new()
        .check(&ended, ExpectedVersion::Exact(StreamVersion::new(1)))
        .to(&other, ExpectedVersion::Any, 1)
        .build();
    assert_conflict(
        store.append(&stale).await,
        &ended,
        ExpectedVersion::Exact(StreamVersion::new(1)),
        2,
    );
}

/// A tombstone is written with the stream's last event: an entry ending a
/// stream without events is refused as invalid, and nothing changes.
pub async fn a_tombstone_without_events_is_refused<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (s, other) = (stream("tomb-empty"), stream("tomb-empty-other"));
    let mut request = Append::new()
        .check(&s, ExpectedVersion::Any)
        .to(&other, ExpectedVersion::Any, 1)
        .build();
    request.streams[0].tombstone = true;
    match store.append(&request).await {
        Err(StoreError::InvalidAppend(InvalidAppend::TombstoneWithoutEvents { stream })) => assert_eq!(stream, s),
        other => panic!("expected a tombstone without events refused, got {other:?}"),
    }
    assert!(global_log(&store).await.is_empty());
    assert_eq!(deleted_at(&store, &s).await, None);
}

/// In a batch, requests are decided in order: one after a tombstone is
/// refused, one before it commits, and an unrelated one is unaffected; in a
/// later batch, a write to the deleted stream fails alone.
pub async fn a_batch_sees_a_tombstone_of_an_earlier_request<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (s, other) = (stream("tomb-batch"), stream("tomb-batch-other"));
    let requests = [
        Append::new().to(&s, ExpectedVersion::NoStream, 1).build(),
        Append::new()
            .ending(&s, ExpectedVersion::Exact(StreamVersion::new(1)), 1)
            .build(),
        Append::new().to(&s, ExpectedVersion::Any, 1).build(),
        Append::new().to(&other, ExpectedVersion::NoStream, 1).build(),
    ];
    let mut outcomes = store.append_batch(&requests).await.into_iter();
    let mut next = || outcomes.next().expect("one outcome per request");
    assert_eq!(
        next().expect("the first commits").streams[0].last_version,
        StreamVersion::new(1)
    );
    assert_eq!(
        next().expect("the tombstone commits").streams[0].last_version,
        StreamVersion::new(2)
    );
    assert_stream_deleted(next(), &s, 2);
    next().expect("an unrelated request commits");
    assert_eq!(deleted_at(&store, &s).await, Some(StreamVersion::new(2)));

    // A later batch without a tombstone: only the write to the deleted
    // stream fails (a store writing the group at once must not fail the
    // others with it).
    let (x, y) = (stream("tomb-batch-x"), stream("tomb-batch-y"));
    let requests = [
        Append::new().to(&x, ExpectedVersion::NoStream, 1).build(),
        Append::new().to(&s, ExpectedVersion::Any, 1).build(),
        Append::new().to(&y, ExpectedVersion::NoStream, 1).build(),
    ];
    let mut outcomes = store.append_batch(&requests).await.into_iter();
    let mut next = || outcomes.next().expect("one outcome per request");
    next().expect("a request before the refused one commits");
    assert_stream_deleted(next(), &s, 2);
    next().expect("a request after the refused one commits");
    assert_eq!(head(&store, &s).await, StreamVersion::new(2));
}
