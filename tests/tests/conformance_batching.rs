//! Append batching (`BatchingStore`) keeps the store contract: the whole
//! conformance suite through it, on memory and on PostgreSQL, and concurrent
//! appends where some conflict — each caller gets its own exact outcome.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use eventcore::*;
use eventcore_tests::conformance::append_to;
use eventcore_tokio::{BatchingOptions, BatchingStore, EventStore, MemoryEventStore};
use std::time::Duration;

/// Lingering a little makes concurrent appends share batches even on a fast
/// store, so the tests exercise real groups.
fn options() -> BatchingOptions {
    BatchingOptions::default()
        .linger(Duration::from_millis(2))
        .max_batch(16)
}

mod memory {
    use super::*;

    struct Batching;

    impl eventcore_tests::StoreFactory for Batching {
        type Store = BatchingStore<MemoryEventStore>;

        async fn fresh(&self) -> Self::Store {
            BatchingStore::with_options(MemoryEventStore::new(), options())
        }
    }

    eventcore_tests::conformance_suite!(Batching);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_get_their_own_outcomes() {
        super::contended(BatchingStore::with_options(MemoryEventStore::new(), options())).await;
    }

    /// The same cases on a store keeping payloads in MessagePack, given
    /// them in MessagePack as an executor over it encodes them.
    mod messagepack {
        use super::*;

        struct Batching;

        impl eventcore_tests::StoreFactory for Batching {
            type Store = BatchingStore<MemoryEventStore>;

            async fn fresh(&self) -> Self::Store {
                BatchingStore::with_options(MemoryEventStore::new().with_codec(Codec::MessagePack), options())
            }
        }

        eventcore_tests::conformance_suite!(eventcore_tests::Encoded(Batching));
    }
}

mod postgres {
    use super::*;
    use eventcore_postgres::PostgresStore;
    use eventcore_tests::postgres::PostgresFactory;

    struct Batching(PostgresFactory);

    impl eventcore_tests::StoreFactory for Batching {
        type Store = BatchingStore<PostgresStore>;

        async fn fresh(&self) -> Self::Store {
            BatchingStore::with_options(eventcore_tests::StoreFactory::fresh(&self.0).await, options())
        }
    }

    eventcore_tests::conformance_suite!(Batching(eventcore_tests::postgres_factory!()));

    /// The same cases on a store keeping payloads in MessagePack, given
    /// them in MessagePack: group commit through `append_batch()` with
    /// binary payloads.
    mod messagepack {
        use super::*;

        eventcore_tests::conformance_suite!(eventcore_tests::Encoded(Batching(
            eventcore_tests::postgres_factory!().with_codec(Codec::MessagePack)
        )));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_get_their_own_outcomes() {
        let Some(store) = eventcore_tests::postgres::fresh_store("batching").await else {
            return;
        };
        super::contended(BatchingStore::with_options(store.clone(), options())).await;
        let _ = store.drop_schema().await;
    }

    /// One `append_batch` call (one statement, one transaction) holding a
    /// commit, a conflict with that commit, bad input and a repeat of the
    /// commit's command id: each gets its own exact outcome.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_group_mixes_commits_conflicts_bad_input_and_repeats() {
        let Some(store) = eventcore_tests::postgres::fresh_store("batchmix").await else {
            return;
        };
        let a = StreamId::new("mix-a").expect("valid");
        let b = StreamId::new("mix-b").expect("valid");
        let good = append_to(&a, ExpectedVersion::NoStream, 2, 1);
        let late = append_to(&a, ExpectedVersion::NoStream, 1, 2);
        let mut bad = append_to(&b, ExpectedVersion::NoStream, 1, 3);
        bad.streams[0].events[0].schema_version = u32::MAX;
        let empty = append_to(&b, ExpectedVersion::Any, 0, 4);
        let outcomes = store
            .append_batch(&[good.clone(), late, bad, empty, good.clone()])
            .await;
        assert_eq!(outcomes.len(), 5);
        let first = outcomes[0].as_ref().expect("the first append commits");
        assert!(!first.deduplicated);
        assert_eq!(first.streams[0].last_version, StreamVersion::new(2));
        match &outcomes[1] {
            Err(StoreError::Conflict(c)) => {
                assert_eq!(c.stream, a);
                assert_eq!(c.expected, ExpectedVersion::NoStream);
                assert_eq!(c.actual, StreamVersion::new(2));
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert!(
            matches!(&outcomes[2], Err(StoreError::InvalidAppend(InvalidAppend::Rejected { stream, .. })) if *stream == b),
            "{:?}",
            outcomes[2]
        );
        assert!(matches!(
            &outcomes[3],
            Err(StoreError::InvalidAppend(InvalidAppend::NoEvents))
        ));
        let repeat = outcomes[4].as_ref().expect("the repeat answers with the receipt");
        assert!(repeat.deduplicated && repeat.same_commit(first));
        let read = store
            .read(&ReadRequest::new([a.clone(), b.clone()]))
            .await
            .expect("read");
        assert_eq!(read.streams[0].head, StreamVersion::new(2));
        assert_eq!(
            read.streams[1].head,
            StreamVersion::NONE,
            "nothing of the refused appends was written"
        );
        let _ = store.drop_schema().await;
    }
}

/// 8 streams with 4 contenders each (all expecting no stream: one wins per
/// stream, three conflict), 8 appends sent twice at once (one commit, one
/// deduplicated answer), and 8 appends with bad input, all at the same time.
async fn contended<S: EventStore>(store: BatchingStore<S>) {
    let streams: Vec<StreamId> = (0..8)
        .map(|i| StreamId::new(format!("contended-{i}")).expect("valid"))
        .collect();
    let mut tasks = Vec::new();
    let mut seed = 1u8;
    for stream in &streams {
        for _ in 0..4 {
            let request = append_to(stream, ExpectedVersion::NoStream, 1, seed);
            seed += 1;
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let outcome = store.append(&request).await;
                ("contender", request, outcome)
            }));
        }
    }
    for i in 0..8 {
        let stream = StreamId::new(format!("twice-{i}")).expect("valid");
        let request = append_to(&stream, ExpectedVersion::NoStream, 2, seed);
        seed += 1;
        for _ in 0..2 {
            let (store, request) = (store.clone(), request.clone());
            tasks.push(tokio::spawn(async move {
                let outcome = store.append(&request).await;
                ("twice", request, outcome)
            }));
        }
    }
    for i in 0..8 {
        let stream = StreamId::new(format!("empty-{i}")).expect("valid");
        let request = append_to(&stream, ExpectedVersion::Any, 0, seed);
        seed += 1;
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let outcome = store.append(&request).await;
            ("invalid", request, outcome)
        }));
    }
    let mut winners = std::collections::BTreeMap::new();
    let mut twice = std::collections::BTreeMap::<CommandId, Vec<AppendReceipt>>::new();
    for task in tasks {
        let (kind, request, outcome) = task.await.expect("task");
        let stream = request.streams[0].stream.clone();
        match (kind, outcome) {
            ("contender", Ok(receipt)) => {
                assert!(!receipt.deduplicated);
                assert_eq!(receipt.command_id, request.command_id());
                assert_eq!(receipt.streams[0].first_version, StreamVersion::new(1));
                assert!(winners.insert(stream, request.command_id()).is_none(), "two winners");
            }
            ("contender", Err(StoreError::Conflict(conflict))) => {
                assert_eq!(conflict.stream, stream);
                assert_eq!(conflict.expected, ExpectedVersion::NoStream);
                assert_eq!(conflict.actual, StreamVersion::new(1));
            }
            ("twice", Ok(receipt)) => {
                assert_eq!(receipt.command_id, request.command_id());
                twice.entry(receipt.command_id).or_default().push(receipt);
            }
            ("invalid", Err(StoreError::InvalidAppend(InvalidAppend::NoEvents))) => {}
            (kind, outcome) => panic!("{kind} append to {stream}: unexpected {outcome:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        streams.len(),
        "every contended stream has exactly one winner"
    );
    assert_eq!(twice.len(), 8);
    for receipts in twice.values() {
        assert_eq!(receipts.len(), 2);
        assert!(
            receipts[0].same_commit(&receipts[1]),
            "both answers describe one commit"
        );
        assert_eq!(receipts.iter().filter(|r| r.deduplicated).count(), 1);
    }
    let mut read_streams = streams.clone();
    read_streams.extend((0..8).map(|i| StreamId::new(format!("twice-{i}")).expect("valid")));
    let read = store.read(&ReadRequest::new(read_streams)).await.expect("read");
    for slice in &read.streams {
        match winners.get(&slice.stream) {
            Some(winner) => {
                assert_eq!(slice.head, StreamVersion::new(1));
                assert_eq!(slice.events[0].metadata.command_id, *winner);
            }
            None => assert_eq!(slice.head, StreamVersion::new(2), "written once, not twice"),
        }
    }
    let stats = store.stats();
    assert_eq!(stats.appends, 56);
    assert!(
        stats.batches < stats.appends,
        "appends arriving together share batches: {stats:?}"
    );
}
