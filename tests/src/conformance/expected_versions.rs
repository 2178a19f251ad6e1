//! Group 3 of the suite, expected versions, and what a conflict reports.

use super::*;

/// `Any` commits whatever the stream's version, existing or not.
pub async fn expected_any_always_passes<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("any");
    let first = commit(&store, &Append::new().to(&s, ExpectedVersion::Any, 1).build()).await;
    assert_eq!(first.streams[0].first_version, StreamVersion::new(1));
    let second = commit(&store, &Append::new().to(&s, ExpectedVersion::Any, 2).build()).await;
    assert_eq!(second.streams[0].first_version, StreamVersion::new(2));
    assert_eq!(head(&store, &s).await, StreamVersion::new(3));
}

/// `NoStream` commits only to a stream that does not exist yet.
pub async fn expected_no_stream_passes_only_on_a_missing_stream<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("no-stream");
    commit(&store, &Append::new().to(&s, ExpectedVersion::NoStream, 2).build()).await;
    let before = global_log(&store).await;
    assert_conflict(
        store
            .append(&Append::new().to(&s, ExpectedVersion::NoStream, 1).build())
            .await,
        &s,
        ExpectedVersion::NoStream,
        2,
    );
    assert_eq!(global_log(&store).await, before);
}

/// `StreamExists` commits only to a stream that has events.
pub async fn expected_stream_exists_passes_only_on_an_existing_stream<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("exists");
    assert_conflict(
        store
            .append(&Append::new().to(&s, ExpectedVersion::StreamExists, 1).build())
            .await,
        &s,
        ExpectedVersion::StreamExists,
        0,
    );
    assert_eq!(head(&store, &s).await, StreamVersion::NONE);
    assert!(global_log(&store).await.is_empty());
    commit(&store, &Append::new().to(&s, ExpectedVersion::NoStream, 1).build()).await;
    let receipt = commit(&store, &Append::new().to(&s, ExpectedVersion::StreamExists, 1).build()).await;
    assert_eq!(receipt.streams[0].first_version, StreamVersion::new(2));
}

/// `Exact(n)` commits only at version `n`: a stale (lower) or a future
/// (higher) expectation conflicts and reports the actual version.
pub async fn expected_exact_passes_only_at_that_version<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("exact");
    commit(&store, &Append::new().to(&s, ExpectedVersion::NoStream, 3).build()).await;
    let before = global_log(&store).await;
    for wrong in [1u64, 2, 4, 10] {
        let expected = ExpectedVersion::Exact(StreamVersion::new(wrong));
        assert_conflict(
            store.append(&Append::new().to(&s, expected, 1).build()).await,
            &s,
            expected,
            3,
        );
    }
    assert_eq!(global_log(&store).await, before, "no conflicting append wrote anything");
    let receipt = commit(
        &store,
        &Append::new()
            .to(&s, ExpectedVersion::Exact(StreamVersion::new(3)), 1)
            .build(),
    )
    .await;
    assert_eq!(receipt.streams[0].first_version, StreamVersion::new(4));
}

/// `Exact(0)` means the same as `NoStream`.
pub async fn expected_exact_zero_means_no_stream<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("exact-zero");
    let zero = ExpectedVersion::Exact(StreamVersion::NONE);
    let receipt = commit(&store, &Append::new().to(&s, zero, 1).build()).await;
    assert_eq!(receipt.streams[0].first_version, StreamVersion::new(1));
    assert_conflict(store.append(&Append::new().to(&s, zero, 1).build()).await, &s, zero, 1);
    assert_eq!(head(&store, &s).await, StreamVersion::new(1));
}

/// `Exact(n)` against a stream that does not exist conflicts with actual 0.
pub async fn expected_exact_on_a_missing_stream_reports_version_zero<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("exact-missing");
    let expected = ExpectedVersion::Exact(StreamVersion::new(2));
    assert_conflict(
        store.append(&Append::new().to(&s, expected, 1).build()).await,
        &s,
        expected,
        0,
    );
    assert!(global_log(&store).await.is_empty());
}
