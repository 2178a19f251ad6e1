//! Group 8 of the suite, concurrency and cancellation: no lost update, one
//! commit per command id, atomic visibility, a global reader that never
//! misses an event, and appends dropped part-way that are all-or-nothing.

use super::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Many writers appending to one stream with `Exact` expectations lose no
/// update: every success got its own version, conflicts report a newer
/// version, and the stream ends with exactly one event per success.
pub async fn concurrent_exact_appends_lose_no_update<F: StoreFactory>(factory: F) {
    const WRITERS: usize = 8;
    const SUCCESSES_EACH: usize = 5;
    let store = factory.fresh().await;
    let s = stream("contended");
    let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let (store, s, barrier) = (store.clone(), s.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut wins: Vec<(StreamVersion, EventId)> = Vec::new();
            let mut tries = 0;
            while wins.len() < SUCCESSES_EACH {
                tries += 1;
                assert!(tries < 10_000, "a writer starved");
                let seen = head(&store, &s).await;
                let expected = ExpectedVersion::from_read(seen);
                let request = Append::new().to(&s, expected, 1).build();
                match store.append(&request).await {
                    Ok(receipt) => {
                        let commit = &receipt.streams[0];
                        assert_eq!(commit.first_version, seen.next());
                        assert_eq!(commit.last_version, seen.next());
                        wins.push((commit.first_version, request.streams[0].events[0].event_id));
                    }
                    Err(StoreError::Conflict(conflict)) => {
                        assert_eq!(conflict.stream, s);
                        assert_eq!(conflict.expected, expected);
                        assert!(conflict.actual > seen, "the stream moved on, it cannot go back");
                    }
                    Err(StoreError::Transient { .. }) => {}
                    Err(other) => panic!("unexpected error: {other}"),
                }
                tokio::task::yield_now().await;
            }
            wins
        }));
    }
    let mut wins = Vec::new();
    for task in tasks {
        wins.extend(task.await.expect("writer task"));
    }
    wins.sort();
    let won_versions: Vec<u64> = wins.iter().map(|(v, _)| v.get()).collect();
    let total = (WRITERS * SUCCESSES_EACH) as u64;
    assert_eq!(
        won_versions,
        (1..=total).collect::<Vec<_>>(),
        "distinct, gap-free versions"
    );
    let slice = &read(&store, std::slice::from_ref(&s)).await[0];
    assert_eq!(slice.head, StreamVersion::new(total));
    let stored: Vec<(StreamVersion, EventId)> = slice.events.iter().map(|e| (e.version, e.event_id)).collect();
    assert_eq!(stored, wins, "each version holds the event of the writer that won it");
}

/// The same append sent concurrently many times commits once; every other
/// answer is the deduplicated original receipt.
pub async fn concurrent_appends_with_one_command_id_commit_once<F: StoreFactory>(factory: F) {
    const SENDERS: usize = 8;
    let store = factory.fresh().await;
    let (a, b) = (stream("dup-a"), stream("dup-b"));
    let request = Append::new()
        .to(&a, ExpectedVersion::NoStream, 2)
        .to(&b, ExpectedVersion::Any, 1)
        .build();
    let barrier = Arc::new(tokio::sync::Barrier::new(SENDERS));
    let mut tasks = Vec::new();
    for _ in 0..SENDERS {
        let (store, request, barrier) = (store.clone(), request.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            for _ in 0..1_000 {
                match store.append(&request).await {
                    Ok(receipt) => return receipt,
                    Err(StoreError::Transient { .. }) => tokio::task::yield_now().await,
                    Err(other) => panic!("a repeated append must be answered with its receipt: {other}"),
                }
            }
            panic!("transient errors never stopped");
        }));
    }
    let mut receipts = Vec::new();
    for task in tasks {
        receipts.push(task.await.expect("sender task"));
    }
    let originals: Vec<&AppendReceipt> = receipts.iter().filter(|r| !r.deduplicated).collect();
    assert_eq!(originals.len(), 1, "exactly one send committed: {receipts:?}");
    assert!(receipts.iter().all(|r| r.same_commit(originals[0])));
    let slices = read(&store, &[a, b]).await;
    assert_eq!(slices[0].head, StreamVersion::new(2));
    assert_eq!(slices[1].head, StreamVersion::new(1));
    let log = global_log(&store).await;
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|e| e.metadata.command_id == request.command_id()));
}

/// Writers appending to overlapping pairs of streams, in differing orders,
/// all finish (no deadlock), and every commit landed whole.
pub async fn concurrent_overlapping_multi_stream_appends_stay_atomic<F: StoreFactory>(factory: F) {
    const WRITERS: usize = 6;
    const SUCCESSES_EACH: usize = 4;
    let store = factory.fresh().await;
    let streams = [stream("ring-x"), stream("ring-y"), stream("ring-z")];
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (store, streams) = (store.clone(), streams.clone());
        tasks.push(tokio::spawn(async move {
            // Writer w uses the pair (w, w+1) mod 3, in one order or the other.
            let (i, j) = if w % 2 == 0 {
                (w % 3, (w + 1) % 3)
            } else {
                ((w + 1) % 3, w % 3)
            };
            let pair = [streams[i].clone(), streams[j].clone()];
            let mut receipts = Vec::new();
            let mut tries = 0;
            while receipts.len() < SUCCESSES_EACH {
                tries += 1;
                assert!(tries < 10_000, "a writer starved");
                let slices = read(&store, &pair).await;
                let request = Append::new()
                    .to(&pair[0], ExpectedVersion::from_read(slices[0].head), 1)
                    .to(&pair[1], ExpectedVersion::from_read(slices[1].head), 1)
                    .build();
                match store.append(&request).await {
                    Ok(receipt) => receipts.push(receipt),
                    Err(e) if is_race_loss(&e) => tokio::task::yield_now().await,
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
            receipts
        }));
    }
    let mut receipts = Vec::new();
    for task in tasks {
        receipts.extend(task.await.expect("writer task"));
    }
    let slices = read(&store, &streams).await;
    let total_events: usize = slices.iter().map(|s| s.events.len()).sum();
    assert_eq!(total_events, receipts.len() * 2);
    let by_command: BTreeMap<CommandId, Vec<(StreamId, StreamVersion)>> = slices
        .iter()
        .flat_map(|s| s.events.iter())
        .fold(BTreeMap::new(), |mut map, e| {
            map.entry(e.metadata.command_id)
                .or_default()
                .push((e.stream_id.clone(), e.version));
            map
        });
    for receipt in &receipts {
        let mut landed = by_command.get(&receipt.command_id).cloned().unwrap_or_default();
        landed.sort();
        let mut promised: Vec<(StreamId, StreamVersion)> = receipt
            .streams
            .iter()
            .map(|c| (c.stream.clone(), c.first_version))
            .collect();
        promised.sort();
        assert_eq!(landed, promised, "commit {} landed whole", receipt.command_id);
    }
    for slice in &slices {
        let expected: Vec<u64> = (1..=slice.head.get()).collect();
        assert_eq!(versions(slice), expected, "`{}` is gap-free", slice.stream);
    }
}

/// A reader following `read_all` by `complete_through` while writers commit
/// concurrently sees every event exactly once, in increasing position order,
/// and never an event below a position it already passed.
pub async fn a_global_reader_never_misses_or_reorders_events<F: StoreFactory>(factory: F) {
    const WRITERS: usize = 4;
    const APPENDS_EACH: usize = 25;
    let store = factory.fresh().await;
    let writers_done = Arc::new(AtomicBool::new(false));

    let follower = {
        let (store, writers_done) = (store.clone(), writers_done.clone());
        tokio::spawn(async move {
            let mut checkpoint = GlobalPosition::START;
            let mut seen: Vec<RecordedEvent> = Vec::new();
            let mut idle_after_done = 0u32;
            loop {
                let done = writers_done.load(Ordering::Acquire);
                let page = store
                    .read_all(&read_all_request(checkpoint, 7, EventFilter::all()))
                    .await
                    .expect("read_all");
                assert!(page.complete_through >= checkpoint, "complete_through went back");
                for event in &page.events {
                    assert!(
                        event.position > checkpoint,
                        "saw position {} after checkpointing {checkpoint}",
                        event.position
                    );
                    if let Some(last) = seen.last() {
                        assert!(event.position > last.position, "positions must increase");
                    }
                    assert!(event.position <= page.complete_through);
                    seen.push(event.clone());
                }
                checkpoint = page.complete_through;
                if done && page.events.is_empty() {
                    idle_after_done += 1;
                    if idle_after_done > 3 {
                        return (seen, checkpoint);
                    }
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..APPENDS_EACH {
                let mut append = Append::new().to(&stream(&format!("follow-{w}")), ExpectedVersion::Any, 1 + i % 2);
                if i % 3 == 0 {
                    append = append.to(&stream("follow-shared"), ExpectedVersion::Any, 1);
                }
                let request = append.build();
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
    writers_done.store(true, Ordering::Release);
    let (seen, checkpoint) = follower.await.expect("follower task");
    let log = global_log(&store).await;
    let last = log.last().expect("writers wrote").position;
    assert!(
        checkpoint >= last,
        "the reader caught up to {last}, stopped at {checkpoint}"
    );
    assert_eq!(
        event_ids(&seen),
        event_ids(&log),
        "the reader saw the whole log, once, in order"
    );
    let distinct: BTreeSet<EventId> = seen.iter().map(|e| e.event_id).collect();
    assert_eq!(distinct.len(), seen.len());
}

/// An append whose future is dropped part-way (as the executor does on a
/// timeout) leaves all of its events or none, and re-sending it settles the
/// outcome: afterwards every append is stored exactly once, whole.
pub async fn a_dropped_append_is_all_or_nothing_and_settled_by_resending<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let streams = [stream("drop-a"), stream("drop-b"), stream("drop-c")];
    let mut requests = Vec::new();
    for i in 0..24u64 {
        let request = Append::new()
            .to(&streams[0], ExpectedVersion::Any, 2)
            .to(&streams[1], ExpectedVersion::Any, 1)
            .to(&streams[2], ExpectedVersion::Any, 3)
            .build();
        // Cut the append off after a varying amount of work: never polled,
        // polled once, or given a few microseconds to a few milliseconds.
        match i % 4 {
            0 => drop(store.append(&request)),
            1 => {
                let mut future = std::pin::pin!(store.append(&request));
                let waker = std::task::Waker::noop();
                let _ = std::future::Future::poll(future.as_mut(), &mut std::task::Context::from_waker(waker));
            }
            _ => {
                let _ =
                    tokio::time::timeout(std::time::Duration::from_micros(i * i * 10), store.append(&request)).await;
            }
        }
        requests.push(request);
    }
    for request in &requests {
        let mut tries = 0;
        loop {
            tries += 1;
            assert!(tries < 1_000, "re-sending never settled");
            match store.append(request).await {
                Ok(receipt) => {
                    assert_eq!(receipt.command_id, request.command_id());
                    break;
                }
                Err(StoreError::Transient { .. }) => tokio::task::yield_now().await,
                Err(other) => panic!("re-sending a dropped append failed: {other}"),
            }
        }
    }
    let log = global_log(&store).await;
    assert_eq!(log.len(), requests.len() * 6, "every append stored exactly once");
    for request in &requests {
        let stored: Vec<EventId> = log
            .iter()
            .filter(|e| e.metadata.command_id == request.command_id())
            .map(|e| e.event_id)
            .collect();
        let sent: Vec<EventId> = request
            .streams
            .iter()
            .flat_map(|s| s.events.iter().map(|e| e.event_id))
            .collect();
        assert_eq!(stored, sent, "append {} is whole, in order", request.command_id());
    }
    for slice in read(&store, &streams).await {
        let expected: Vec<u64> = (1..=slice.head.get()).collect();
        assert_eq!(versions(&slice), expected, "`{}` is gap-free", slice.stream);
    }
}
