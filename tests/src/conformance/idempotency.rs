//! Group 4 of the suite, idempotency by command id: a repeated append
//! returns the original receipt and writes nothing.

use super::*;

/// Re-sending a committed append returns the original receipt, flagged as
/// deduplicated, and writes nothing.
pub async fn a_repeated_append_returns_the_original_receipt<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (a, b) = (stream("idem-a"), stream("idem-b"));
    let request = Append::new()
        .to(&a, ExpectedVersion::NoStream, 2)
        .to(&b, ExpectedVersion::NoStream, 1)
        .build();
    let original = commit(&store, &request).await;
    assert!(!original.deduplicated);
    let log = global_log(&store).await;

    let again = commit(&store, &request).await;
    assert!(again.deduplicated, "the repeat is flagged");
    assert_eq!(again.command_id, original.command_id);
    assert_eq!(again.streams, original.streams, "same streams, versions and positions");
    assert!(again.same_commit(&original));
    assert_eq!(global_log(&store).await, log, "nothing was written again");
}

/// A repeat with the same command id but other events (or other streams)
/// still returns the first receipt and writes none of them.
pub async fn a_repeated_command_id_with_other_events_writes_nothing<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (a, other) = (stream("idem2-a"), stream("idem2-other"));
    let first = Append::new().to(&a, ExpectedVersion::NoStream, 1);
    let command_id = first.command_id();
    let original = commit(&store, &first.build()).await;
    let log = global_log(&store).await;

    let different = Append::new()
        .with_command_id(command_id)
        .to(&a, ExpectedVersion::Any, 3)
        .to(&other, ExpectedVersion::Any, 2)
        .build();
    let again = commit(&store, &different).await;
    assert!(again.deduplicated);
    assert!(again.same_commit(&original));
    assert_eq!(global_log(&store).await, log);
    assert_eq!(head(&store, &other).await, StreamVersion::NONE);
}

/// A repeat whose expected versions are stale by now is deduplicated, not
/// refused as a conflict: the command id is checked first.
pub async fn a_repeated_command_id_with_stale_versions_is_deduplicated<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("idem-stale");
    let request = Append::new().to(&s, ExpectedVersion::NoStream, 1).build();
    let original = commit(&store, &request).await;
    // Other commands move the stream on.
    commit(&store, &Append::new().to(&s, ExpectedVersion::Any, 2).build()).await;
    let log = global_log(&store).await;

    let again = store
        .append(&request)
        .await
        .expect("a repeat is answered with its receipt");
    assert!(again.deduplicated);
    assert!(again.same_commit(&original));
    assert_eq!(global_log(&store).await, log);
    assert_eq!(head(&store, &s).await, StreamVersion::new(3));
}

/// An append refused as invalid does not claim its command id.
pub async fn an_invalid_append_does_not_claim_its_command_id<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("idem-invalid");
    let invalid = Append::new().check(&s, ExpectedVersion::Any);
    let command_id = invalid.command_id();
    let result = store.append(&invalid.build()).await;
    assert!(
        matches!(result, Err(StoreError::InvalidAppend(InvalidAppend::NoEvents))),
        "{result:?}"
    );
    let receipt = commit(
        &store,
        &Append::new()
            .with_command_id(command_id)
            .to(&s, ExpectedVersion::Any, 1)
            .build(),
    )
    .await;
    assert!(!receipt.deduplicated);
    assert_eq!(head(&store, &s).await, StreamVersion::new(1));
}
