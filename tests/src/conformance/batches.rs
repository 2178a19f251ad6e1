//! Group 4 of the suite, continued: batches of appends, each request with
//! its own outcome, decided in order, a command id repeated in a batch
//! committed once.

use super::*;

/// `append_batch` answers each request on its own, in request order: a
/// conflict or invalid request fails only itself, a repeated command id is
/// deduplicated, and each request stays atomic across its streams.
pub async fn a_batch_gives_each_request_its_own_outcome<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (a, b, c, d) = (
        stream("batch-a"),
        stream("batch-b"),
        stream("batch-c"),
        stream("batch-d"),
    );
    let earlier = Append::new().to(&b, ExpectedVersion::NoStream, 1).build();
    let earlier_receipt = commit(&store, &earlier).await;
    assert!(
        store.append_batch(&[]).await.is_empty(),
        "an empty batch has no outcomes"
    );

    let batch = [
        Append::new().to(&a, ExpectedVersion::NoStream, 2).build(),
        // Writes to `d`, but conflicts on `b`: nothing of it may land.
        Append::new()
            .to(&d, ExpectedVersion::NoStream, 1)
            .to(&b, ExpectedVersion::NoStream, 1)
            .build(),
        Append::new().check(&c, ExpectedVersion::Any).build(),
        earlier.clone(),
        Append::new().to(&c, ExpectedVersion::NoStream, 1).build(),
    ];
    let outcomes = store.append_batch(&batch).await;
    assert_eq!(outcomes.len(), batch.len(), "one outcome per request");
    let first = outcomes[0].as_ref().expect("an independent request commits");
    assert!(!first.deduplicated);
    assert_eq!(first.streams[0].stream, a);
    assert_conflict(outcomes[1].clone(), &b, ExpectedVersion::NoStream, 1);
    assert!(
        matches!(outcomes[2], Err(StoreError::InvalidAppend(InvalidAppend::NoEvents))),
        "{:?}",
        outcomes[2]
    );
    let repeat = outcomes[3]
        .as_ref()
        .expect("a repeated command id is answered with its receipt");
    assert!(repeat.deduplicated && repeat.same_commit(&earlier_receipt));
    let last = outcomes[4]
        .as_ref()
        .expect("a request after failed neighbours still commits");
    assert_eq!(last.streams[0].stream, c);

    let slices = read(&store, &[a.clone(), b.clone(), c.clone(), d.clone()]).await;
    let heads: Vec<u64> = slices.iter().map(|s| s.head.get()).collect();
    assert_eq!(
        heads,
        vec![2, 1, 1, 0],
        "a, b (untouched), c, d (the conflicting request left nothing)"
    );
    for (outcome, request) in outcomes.iter().zip(&batch) {
        if let Ok(receipt) = outcome {
            assert_eq!(
                receipt.command_id,
                request.command_id(),
                "outcomes are in request order"
            );
        }
    }
}

/// Requests of one batch are decided in request order: each sees what the
/// requests before it in the batch wrote, as if they had been sent one after
/// another.
pub async fn a_batch_decides_its_requests_in_order<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (a, b) = (stream("ordered-a"), stream("ordered-b"));
    let batch = [
        Append::new().to(&a, ExpectedVersion::NoStream, 2).build(),
        // Sees the first request's two events.
        Append::new()
            .to(&a, ExpectedVersion::Exact(StreamVersion::new(2)), 1)
            .to(&b, ExpectedVersion::NoStream, 1)
            .build(),
        // Expects what `a` was before the batch: refused, with the head the
        // batch had reached by then.
        Append::new().to(&a, ExpectedVersion::NoStream, 1).build(),
        Append::new().to(&b, ExpectedVersion::StreamExists, 1).build(),
        Append::new()
            .check(&a, ExpectedVersion::Exact(StreamVersion::new(3)))
            .to(&b, ExpectedVersion::Any, 1)
            .build(),
    ];
    let outcomes = store.append_batch(&batch).await;
    assert_eq!(outcomes.len(), batch.len());
    let second = outcomes[1].as_ref().expect("the second request sees the first");
    assert_eq!(second.streams[0].first_version, StreamVersion::new(3));
    assert_eq!(second.streams[1].first_version, StreamVersion::new(1));
    assert_conflict(outcomes[2].clone(), &a, ExpectedVersion::NoStream, 3);
    let fourth = outcomes[3].as_ref().expect("b exists by then");
    assert_eq!(fourth.streams[0].first_version, StreamVersion::new(2));
    let fifth = outcomes[4].as_ref().expect("a is at 3 by then");
    assert_eq!(fifth.streams[0].stream, b);
    assert_eq!(fifth.streams.len(), 1, "a pure check writes nothing");
    assert_eq!(fifth.streams[0].first_version, StreamVersion::new(3));

    let slices = read(&store, &[a.clone(), b.clone()]).await;
    assert_eq!(slices[0].head, StreamVersion::new(3));
    assert_eq!(slices[1].head, StreamVersion::new(3));
    let mut positions: Vec<GlobalPosition> = outcomes
        .iter()
        .flatten()
        .flat_map(|r| r.streams.iter().flat_map(|c| c.positions.iter().copied()))
        .collect();
    let stored: Vec<GlobalPosition> = slices
        .iter()
        .flat_map(|s| s.events.iter().map(|e| e.position))
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "receipts follow request order"
    );
    positions.sort();
    let mut stored_sorted = stored.clone();
    stored_sorted.sort();
    assert_eq!(positions, stored_sorted, "the receipts name exactly the stored events");
}

/// A command id repeated within one batch commits at most once: a repeat of
/// a request that committed gets its receipt; a repeat of one that was
/// refused is decided on its own.
pub async fn a_command_id_repeated_in_a_batch_commits_once<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (a, b) = (stream("repeat-a"), stream("repeat-b"));
    let first = Append::new().to(&a, ExpectedVersion::NoStream, 1).build();
    let refused = Append::new().to(&b, ExpectedVersion::StreamExists, 1);
    let retried = Append::new()
        .with_command_id(refused.command_id())
        .to(&b, ExpectedVersion::NoStream, 2)
        .build();
    let refused = refused.build();
    let batch = [first.clone(), refused, first.clone(), retried.clone(), retried.clone()];
    let outcomes = store.append_batch(&batch).await;
    assert_eq!(outcomes.len(), batch.len());
    let original = outcomes[0].as_ref().expect("the first request commits");
    assert!(!original.deduplicated);
    assert_conflict(outcomes[1].clone(), &b, ExpectedVersion::StreamExists, 0);
    let repeat = outcomes[2].as_ref().expect("the repeat is answered");
    assert!(repeat.deduplicated && repeat.same_commit(original), "{repeat:?}");
    let committed = outcomes[3].as_ref().expect("same id, refused before: decided anew");
    assert!(!committed.deduplicated);
    assert_eq!(committed.streams[0].first_version, StreamVersion::new(1));
    let again = outcomes[4].as_ref().expect("its repeat is answered");
    assert!(again.deduplicated && again.same_commit(committed), "{again:?}");

    let slices = read(&store, &[a.clone(), b.clone()]).await;
    assert_eq!(slices[0].head, StreamVersion::new(1), "a written once");
    assert_eq!(slices[1].head, StreamVersion::new(2), "b written once");
    // Sent again later, alone: the stored receipt, for both ids.
    let resent = store.append(&retried).await.expect("a re-send is answered");
    assert!(resent.deduplicated && resent.same_commit(committed), "{resent:?}");
    let resent = store.append(&first).await.expect("a re-send is answered");
    assert!(resent.deduplicated && resent.same_commit(original), "{resent:?}");
}
