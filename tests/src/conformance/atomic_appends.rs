//! Group 2 of the suite, atomic multi-stream appends, including pure
//! version checks: all or nothing, and which stream a conflict names.

use super::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// One append to several streams writes all of them; the receipt lists each
/// stream in request order with its versions and positions, which match what
/// is stored.
pub async fn a_multi_stream_append_writes_every_stream<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (a, b, c) = (stream("multi-a"), stream("multi-b"), stream("multi-c"));
    commit(&store, &Append::new().to(&b, ExpectedVersion::NoStream, 2).build()).await;

    let request = Append::new()
        .to(&c, ExpectedVersion::NoStream, 1)
        .to(&a, ExpectedVersion::Any, 3)
        .to(&b, ExpectedVersion::Exact(StreamVersion::new(2)), 2)
        .build();
    let receipt = commit(&store, &request).await;
    assert_eq!(receipt.command_id, request.command_id());
    assert!(!receipt.deduplicated);
    let order: Vec<&StreamId> = receipt.streams.iter().map(|s| &s.stream).collect();
    assert_eq!(order, vec![&c, &a, &b], "the receipt follows the request order");
    let ranges: Vec<(u64, u64)> = receipt
        .streams
        .iter()
        .map(|s| (s.first_version.get(), s.last_version.get()))
        .collect();
    assert_eq!(ranges, vec![(1, 1), (1, 3), (3, 4)]);

    let slices = read(&store, &[c.clone(), a.clone(), b.clone()]).await;
    for (commit, slice) in receipt.streams.iter().zip(&slices) {
        let written: Vec<&RecordedEvent> = slice
            .events
            .iter()
            .filter(|e| e.metadata.command_id == request.command_id())
            .collect();
        assert_eq!(written.len(), commit.positions.len());
        let stored_positions: Vec<GlobalPosition> = written.iter().map(|e| e.position).collect();
        assert_eq!(
            stored_positions, commit.positions,
            "receipt positions match the stored events"
        );
        assert_eq!(written[0].version, commit.first_version);
        assert_eq!(written[written.len() - 1].version, commit.last_version);
    }
    for (entry, slice) in request.streams.iter().zip(&slices) {
        let stored: Vec<EventId> = slice
            .events
            .iter()
            .filter(|e| e.metadata.command_id == request.command_id())
            .map(|e| e.event_id)
            .collect();
        let sent: Vec<EventId> = entry.events.iter().map(|e| e.event_id).collect();
        assert_eq!(
            stored, sent,
            "each stream holds exactly the events addressed to it, in order"
        );
    }
    assert_eq!(
        receipt.last_position(),
        *receipt.streams[2].positions.last().expect("b got events")
    );
}

async fn conflict_leaves_every_stream_untouched<F: StoreFactory>(factory: F, conflicting: usize) {
    let store = factory.fresh().await;
    let streams = [stream("atomic-a"), stream("atomic-b"), stream("atomic-c")];
    for s in &streams {
        commit(&store, &Append::new().to(s, ExpectedVersion::NoStream, 2).build()).await;
    }
    let before = global_log(&store).await;
    let mut append = Append::new();
    for (i, s) in streams.iter().enumerate() {
        let expected = if i == conflicting {
            ExpectedVersion::Exact(StreamVersion::new(1))
        } else {
            ExpectedVersion::Exact(StreamVersion::new(2))
        };
        append = append.to(s, expected, 2);
    }
    let request = append.build();
    assert_conflict(
        store.append(&request).await,
        &streams[conflicting],
        ExpectedVersion::Exact(StreamVersion::new(1)),
        2,
    );
    let slices = read(&store, &streams).await;
    assert!(
        slices.iter().all(|s| s.head == StreamVersion::new(2)),
        "no stream moved: {slices:?}"
    );
    assert_eq!(global_log(&store).await, before, "nothing was written anywhere");

    // The refused command id was not recorded: the same id commits later.
    let retry = Append::new()
        .with_command_id(request.command_id())
        .to(&streams[conflicting], ExpectedVersion::Exact(StreamVersion::new(2)), 1)
        .build();
    let receipt = commit(&store, &retry).await;
    assert!(
        !receipt.deduplicated,
        "a conflicting append does not claim its command id"
    );
}

/// A conflict on the first stream of an append writes nothing to any stream.
pub async fn a_conflict_on_the_first_stream_writes_nothing<F: StoreFactory>(factory: F) {
    conflict_leaves_every_stream_untouched(factory, 0).await;
}

/// A conflict on a middle stream of an append writes nothing to any stream.
pub async fn a_conflict_on_a_middle_stream_writes_nothing<F: StoreFactory>(factory: F) {
    conflict_leaves_every_stream_untouched(factory, 1).await;
}

/// A conflict on the last stream of an append writes nothing to any stream.
pub async fn a_conflict_on_the_last_stream_writes_nothing<F: StoreFactory>(factory: F) {
    conflict_leaves_every_stream_untouched(factory, 2).await;
}

/// When several expectations of one append fail, the conflict names the
/// first failing stream in request order (not in the store's lock order).
pub async fn a_conflict_names_the_first_failing_stream_in_request_order<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    // Request order z, m, a: the reverse of byte order.
    let (z, m, a) = (stream("order-z"), stream("order-m"), stream("order-a"));
    for s in [&z, &m, &a] {
        commit(&store, &Append::new().to(s, ExpectedVersion::NoStream, 1).build()).await;
    }
    let request = Append::new()
        .to(&z, ExpectedVersion::Exact(StreamVersion::new(1)), 1)
        .to(&m, ExpectedVersion::Exact(StreamVersion::new(7)), 1)
        .check(&a, ExpectedVersion::NoStream)
        .build();
    assert_conflict(
        store.append(&request).await,
        &m,
        ExpectedVersion::Exact(StreamVersion::new(7)),
        1,
    );
    let request = Append::new()
        .check(&z, ExpectedVersion::Exact(StreamVersion::new(1)))
        .to(&m, ExpectedVersion::Exact(StreamVersion::new(1)), 1)
        .to(&a, ExpectedVersion::StreamExists, 1)
        .to(&stream("order-b"), ExpectedVersion::StreamExists, 1)
        .build();
    assert_conflict(
        store.append(&request).await,
        &stream("order-b"),
        ExpectedVersion::StreamExists,
        0,
    );
    let heads: Vec<u64> = read(&store, &[z, m, a]).await.iter().map(|s| s.head.get()).collect();
    assert_eq!(heads, vec![1, 1, 1], "nothing was written");
}

/// An entry without events is a pure version check: when the stream is
/// still at the expected version the append commits, the checked stream is
/// not written, and the receipt lists only streams that received events.
pub async fn a_passing_version_check_writes_nothing_to_its_stream<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (written, checked, absent) = (stream("vc-written"), stream("vc-checked"), stream("vc-absent"));
    commit(
        &store,
        &Append::new().to(&checked, ExpectedVersion::NoStream, 3).build(),
    )
    .await;
    let before = read(&store, std::slice::from_ref(&checked)).await;

    let receipt = commit(
        &store,
        &Append::new()
            .check(&checked, ExpectedVersion::Exact(StreamVersion::new(3)))
            .to(&written, ExpectedVersion::NoStream, 1)
            .check(&absent, ExpectedVersion::NoStream)
            .build(),
    )
    .await;
    let receipt_streams: Vec<&StreamId> = receipt.streams.iter().map(|s| &s.stream).collect();
    assert_eq!(
        receipt_streams,
        vec![&written],
        "only streams that received events are in the receipt"
    );
    assert_eq!(
        read(&store, std::slice::from_ref(&checked)).await,
        before,
        "the checked stream is untouched"
    );
    assert_eq!(
        head(&store, &absent).await,
        StreamVersion::NONE,
        "a checked missing stream is not created"
    );
    assert_eq!(head(&store, &written).await, StreamVersion::new(1));
    let log = global_log(&store).await;
    assert!(log.iter().all(|e| e.stream_id != absent));
}

/// A version check on a stream that moved fails the whole append.
pub async fn a_failing_version_check_fails_the_whole_append<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (written, checked) = (stream("vcf-written"), stream("vcf-checked"));
    commit(
        &store,
        &Append::new().to(&checked, ExpectedVersion::NoStream, 1).build(),
    )
    .await;
    let decided_at = head(&store, &checked).await;
    commit(&store, &Append::new().to(&checked, ExpectedVersion::Any, 1).build()).await;
    let before = global_log(&store).await;

    let result = store
        .append(
            &Append::new()
                .to(&written, ExpectedVersion::NoStream, 2)
                .check(&checked, ExpectedVersion::Exact(decided_at))
                .build(),
        )
        .await;
    assert_conflict(result, &checked, ExpectedVersion::Exact(StreamVersion::new(1)), 2);
    assert_eq!(head(&store, &written).await, StreamVersion::NONE);
    assert_eq!(global_log(&store).await, before);
}

/// While appends to several streams commit, a single read of those streams
/// never sees part of an append: every append here adds one event to two of
/// three streams, so the heads read together always sum to an even number.
pub async fn a_multi_stream_read_never_sees_half_an_append<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let streams = [stream("vis-x"), stream("vis-y"), stream("vis-z")];
    let done = Arc::new(AtomicBool::new(false));

    let reader = {
        let (store, streams, done) = (store.clone(), streams.clone(), done.clone());
        tokio::spawn(async move {
            let mut reads = 0u32;
            while !done.load(Ordering::Acquire) || reads == 0 {
                let response = store
                    .read(&ReadRequest::new(streams.iter().cloned()))
                    .await
                    .expect("read");
                let sum: u64 = response.streams.iter().map(|s| s.head.get()).sum();
                assert_eq!(sum % 2, 0, "a read saw half an append: {:?}", response.streams);
                for slice in &response.streams {
                    assert_eq!(slice.events.len() as u64, slice.head.get(), "slice and head agree");
                }
                reads += 1;
                tokio::task::yield_now().await;
            }
            reads
        })
    };
    let mut writers = Vec::new();
    for w in 0..3usize {
        let (store, streams) = (store.clone(), streams.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..20usize {
                let first = (w + i) % 3;
                let second = (w + i + 1) % 3;
                let request = Append::new()
                    .to(&streams[first], ExpectedVersion::Any, 1)
                    .to(&streams[second], ExpectedVersion::Any, 1)
                    .build();
                loop {
                    match store.append(&request).await {
                        Ok(_) => break,
                        Err(e) if is_race_loss(&e) => tokio::task::yield_now().await,
                        Err(e) => panic!("append failed: {e}"),
                    }
                }
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer task");
    }
    done.store(true, Ordering::Release);
    reader.await.expect("reader task");
    let total: u64 = read(&store, &streams).await.iter().map(|s| s.head.get()).sum();
    assert_eq!(total, 3 * 20 * 2);
}
