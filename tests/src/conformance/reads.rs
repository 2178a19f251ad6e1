//! Group 1 of the suite, streams and reads: versions, heads, multi-stream
//! reads, `after`, paging.

use super::*;

/// Versions start at 1 and stay contiguous across appends.
pub async fn versions_start_at_one_and_are_contiguous<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("contiguous");
    let first = commit(&store, &Append::new().to(&s, ExpectedVersion::NoStream, 2).build()).await;
    assert_eq!(first.streams[0].first_version, StreamVersion::new(1));
    assert_eq!(first.streams[0].last_version, StreamVersion::new(2));
    let second = commit(
        &store,
        &Append::new()
            .to(&s, ExpectedVersion::Exact(StreamVersion::new(2)), 3)
            .build(),
    )
    .await;
    assert_eq!(second.streams[0].first_version, StreamVersion::new(3));
    assert_eq!(second.streams[0].last_version, StreamVersion::new(5));
    let slice = &read(&store, std::slice::from_ref(&s)).await[0];
    assert_eq!(versions(slice), vec![1, 2, 3, 4, 5]);
    assert_eq!(slice.head, StreamVersion::new(5));
    assert!(slice.events.iter().all(|e| e.stream_id == s));
}

/// A stream that was never written reads as head 0 with no events.
pub async fn reading_a_missing_stream_gives_head_zero_and_no_events<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    commit(
        &store,
        &Append::new().to(&stream("exists"), ExpectedVersion::Any, 1).build(),
    )
    .await;
    let slices = read(&store, &[stream("never-written")]).await;
    assert_eq!(slices.len(), 1);
    assert_eq!(slices[0].stream, stream("never-written"));
    assert_eq!(slices[0].head, StreamVersion::NONE);
    assert!(slices[0].events.is_empty());
}

/// The head is the version of the last event, whatever part was asked for.
pub async fn the_head_is_the_version_of_the_last_event<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("headed");
    for n in 1..=3u64 {
        commit(&store, &Append::new().to(&s, ExpectedVersion::Any, 2).build()).await;
        assert_eq!(head(&store, &s).await, StreamVersion::new(2 * n));
    }
    let request = ReadRequest {
        streams: vec![StreamRead {
            stream: s.clone(),
            after: StreamVersion::new(4),
        }],
        page_size: None,
    };
    let response = store.read(&request).await.expect("read");
    let slice = &response.streams[0];
    assert_eq!(versions(slice), vec![5, 6]);
    assert_eq!(
        slice.head,
        StreamVersion::new(6),
        "reading a suffix still reports the head"
    );
}

/// One request reads many streams; slices come back in request order, a
/// missing stream included, each with only its own events.
pub async fn reading_many_streams_preserves_request_order<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (a, b, c, missing) = (stream("m-a"), stream("m-b"), stream("m-c"), stream("m-missing"));
    commit(&store, &Append::new().to(&a, ExpectedVersion::Any, 1).build()).await;
    commit(&store, &Append::new().to(&b, ExpectedVersion::Any, 2).build()).await;
    commit(&store, &Append::new().to(&c, ExpectedVersion::Any, 3).build()).await;

    let order = [c.clone(), missing.clone(), a.clone(), b.clone()];
    let slices = read(&store, &order).await;
    let names: Vec<&StreamId> = slices.iter().map(|s| &s.stream).collect();
    assert_eq!(
        names,
        order.iter().collect::<Vec<_>>(),
        "slices follow the request order"
    );
    let heads: Vec<u64> = slices.iter().map(|s| s.head.get()).collect();
    assert_eq!(heads, vec![3, 0, 1, 2]);
    for slice in &slices {
        assert_eq!(slice.events.len() as u64, slice.head.get());
        assert!(slice.events.iter().all(|e| e.stream_id == slice.stream));
    }
}

/// `after` returns only the events with a later version; at or beyond the
/// head it returns none, but still the head.
pub async fn reading_after_a_version_returns_only_later_events<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("after");
    commit(&store, &Append::new().to(&s, ExpectedVersion::NoStream, 5).build()).await;
    let read_after = |after: u64| ReadRequest {
        streams: vec![StreamRead {
            stream: s.clone(),
            after: StreamVersion::new(after),
        }],
        page_size: None,
    };
    let cases: [(u64, Vec<u64>); 4] = [(0, vec![1, 2, 3, 4, 5]), (2, vec![3, 4, 5]), (4, vec![5]), (5, vec![])];
    for (after, expected) in cases {
        let response = store.read(&read_after(after)).await.expect("read");
        let slice = &response.streams[0];
        assert_eq!(versions(slice), expected, "events after version {after}");
        assert_eq!(slice.head, StreamVersion::new(5));
    }
    let beyond = store.read(&read_after(9)).await.expect("read beyond the head");
    assert!(beyond.streams[0].events.is_empty());
    assert_eq!(beyond.streams[0].head, StreamVersion::new(5));
}

/// `page_size` caps the events per stream; reading on from the last version
/// received walks every stream to its head without gaps or repeats.
pub async fn page_size_caps_events_per_stream<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (a, b, c) = (stream("page-a"), stream("page-b"), stream("page-c"));
    commit(&store, &Append::new().to(&a, ExpectedVersion::Any, 5).build()).await;
    commit(&store, &Append::new().to(&b, ExpectedVersion::Any, 1).build()).await;

    let page_size = NonZeroU32::new(2);
    let first = store
        .read(&ReadRequest {
            page_size,
            ..ReadRequest::new([a.clone(), b.clone(), c.clone()])
        })
        .await
        .expect("paged read");
    assert_eq!(
        versions(&first.streams[0]),
        vec![1, 2],
        "a long stream is cut at the page size"
    );
    assert_eq!(
        first.streams[0].head,
        StreamVersion::new(5),
        "a cut slice still reports the head"
    );
    assert_eq!(versions(&first.streams[1]), vec![1], "a short stream comes whole");
    assert_eq!(first.streams[2].head, StreamVersion::NONE);

    let mut seen = Vec::new();
    let mut after = StreamVersion::NONE;
    loop {
        let response = store
            .read(&ReadRequest {
                streams: vec![StreamRead {
                    stream: a.clone(),
                    after,
                }],
                page_size,
            })
            .await
            .expect("paged read");
        let slice = &response.streams[0];
        assert!(slice.events.len() <= 2);
        let Some(last) = slice.events.last() else { break };
        seen.extend(versions(slice));
        after = last.version;
    }
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);
}

/// Stream ids are compared exactly: ids that share a prefix, differ in case
/// or contain pattern characters are separate streams.
pub async fn similar_stream_ids_are_separate_streams<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let ids = [
        stream("acct"),
        stream("acct-1"),
        stream("ACCT"),
        stream("acc%"),
        stream("acc_"),
        stream("ac\\ct"),
        stream("akkount ünïcødé ✓"),
    ];
    for (n, id) in ids.iter().enumerate() {
        commit(&store, &Append::new().to(id, ExpectedVersion::NoStream, n + 1).build()).await;
    }
    let slices = read(&store, &ids).await;
    for (n, slice) in slices.iter().enumerate() {
        assert_eq!(slice.stream, ids[n]);
        assert_eq!(slice.head, StreamVersion::new(n as u64 + 1), "stream `{}`", ids[n]);
        assert!(slice.events.iter().all(|e| e.stream_id == ids[n]));
    }
}
