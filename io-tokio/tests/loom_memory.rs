//! loom models of the in-memory store under concurrent appends: each append
//! is all or nothing, no update is lost, and one command id commits once.
//!
//! Built only with `--cfg eventcore_loom` (see `.ci/loom`); loom runs every
//! interleaving of the store's real critical section
//! ([`MemoryEventStore::append_sync`]: append under the lock, then publish
//! the head) up to the preemption bound.
#![cfg(eventcore_loom)]

use eventcore::{
    AppendReceipt, AppendRequest, CommandId, EventId, EventMetadata, EventType, ExpectedVersion, NewEvent, Payload,
    ReadAllRequest, ReadRequest, RecordedEvent, StoreError, StreamAppend, StreamId, StreamVersion, Time,
};
use eventcore_tokio::MemoryEventStore;
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;

fn stream(name: &str) -> StreamId {
    StreamId::new(name).expect("valid stream id")
}

fn event(tag: u8, n: u8) -> NewEvent {
    NewEvent {
        event_id: EventId::v7(Time::ZERO, [tag, n, 0, 0, 0, 0, 0, 0, 0, 0]),
        event_type: EventType::new("Touched").expect("valid event type"),
        schema_version: 1,
        payload: Payload::from_trusted_json(format!("{{\"by\":{tag},\"n\":{n}}}")),
    }
}

/// An append by command `tag`: `per_stream` events to each of `streams`,
/// each pinned to the given expected version.
fn append(tag: u8, streams: &[(&str, ExpectedVersion)], per_stream: u8) -> AppendRequest {
    AppendRequest {
        metadata: Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [tag; 10]), Time::ZERO)),
        streams: streams
            .iter()
            .map(|(name, expected)| StreamAppend {
                stream: stream(name),
                expected: *expected,
                events: (0..per_stream).map(|n| event(tag, n)).collect(),
                tombstone: false,
            })
            .collect(),
    }
}

/// Read-decide-append with every stream pinned to the version read, retried
/// on conflict: the optimistic-concurrency loop of the executor, minus the
/// async. Bounded: with `writers` competing writers each one conflicts at
/// most `writers - 1` times.
fn read_modify_write(store: &MemoryEventStore, tag: u8, streams: &[&str], writers: usize) -> AppendReceipt {
    for _ in 0..writers {
        let read = ReadRequest::new(streams.iter().map(|s| stream(s)));
        let answer = store.read_sync(&read).expect("read");
        let pinned: Vec<(&str, ExpectedVersion)> = streams
            .iter()
            .zip(&answer.streams)
            .map(|(name, slice)| (*name, ExpectedVersion::from_read(slice.head)))
            .collect();
        match store.append_sync(&append(tag, &pinned, 1)) {
            Ok(receipt) => return receipt,
            Err(StoreError::Conflict(_)) => continue,
            Err(other) => panic!("unexpected append error: {other}"),
        }
    }
    panic!("command {tag} conflicted more often than there are competing writers");
}

fn all_events(store: &MemoryEventStore) -> Vec<RecordedEvent> {
    let request = ReadAllRequest {
        after: eventcore::GlobalPosition::START,
        limit: NonZeroU32::new(1_000).expect("non-zero"),
        filter: eventcore::EventFilter::all(),
    };
    store.read_all_sync(&request).expect("read all").events
}

/// Checks what every store must guarantee, on the final log: each stream's
/// versions are 1..=n, positions strictly increase, and every committed
/// command's events are all there, and only once.
fn check_log(events: &[RecordedEvent], receipts: &[&AppendReceipt]) {
    let mut versions: BTreeMap<&StreamId, u64> = BTreeMap::new();
    let mut last_position = 0;
    for e in events {
        let v = versions.entry(&e.stream_id).or_default();
        *v += 1;
        assert_eq!(
            e.version,
            StreamVersion::new(*v),
            "versions of {} are not contiguous",
            e.stream_id
        );
        assert!(e.position.get() > last_position, "global positions do not increase");
        last_position = e.position.get();
    }
    let committed: usize = receipts
        .iter()
        .map(|r| r.streams.iter().map(|s| s.positions.len()).sum::<usize>())
        .sum();
    assert_eq!(events.len(), committed, "the log holds exactly the committed events");
    for receipt in receipts {
        for commit in &receipt.streams {
            for (i, position) in commit.positions.iter().enumerate() {
                let e = &events[(position.get() - 1) as usize];
                assert_eq!(e.metadata.command_id, receipt.command_id);
                assert_eq!(e.stream_id, commit.stream);
                assert_eq!(e.version.get(), commit.first_version.get() + i as u64);
            }
        }
    }
}

/// Three read-modify-write commands on overlapping streams ({a, b}, {b, c}
/// and {c, a}: every pair shares a stream) and a reader of all three: every
/// success is distinct, versions stay contiguous (no lost update: each
/// stream ends with exactly its two writers' events), and the reader sees
/// each command's events on all its streams or on none.
#[test]
fn overlapping_appends_are_atomic_and_lose_no_update() {
    loom::model(|| {
        let store = MemoryEventStore::new();
        let first = {
            let store = store.clone();
            loom::thread::spawn(move || read_modify_write(&store, 1, &["a", "b"], 3))
        };
        let second = {
            let store = store.clone();
            loom::thread::spawn(move || read_modify_write(&store, 2, &["b", "c"], 3))
        };
        let third = {
            let store = store.clone();
            loom::thread::spawn(move || read_modify_write(&store, 3, &["c", "a"], 3))
        };

        // The reader: one read of all three streams is one snapshot, so a
        // command is either wholly in it or wholly absent.
        let snapshot = store
            .read_sync(&ReadRequest::new([stream("a"), stream("b"), stream("c")]))
            .expect("read");
        let touched = |name: &str, tag: u8| {
            snapshot
                .streams
                .iter()
                .find(|s| s.stream.as_str() == name)
                .is_some_and(|s| {
                    s.events
                        .iter()
                        .any(|e| e.metadata.command_id == CommandId::v7(Time::ZERO, [tag; 10]))
                })
        };
        assert_eq!(touched("a", 1), touched("b", 1), "command 1 half visible: {snapshot:?}");
        assert_eq!(touched("b", 2), touched("c", 2), "command 2 half visible: {snapshot:?}");
        assert_eq!(touched("c", 3), touched("a", 3), "command 3 half visible: {snapshot:?}");

        let first = first.join().expect("first writer");
        let second = second.join().expect("second writer");
        let third = third.join().expect("third writer");
        let receipts = [&first, &second, &third];
        assert!(receipts.iter().all(|r| !r.deduplicated));
        let mut positions: Vec<_> = receipts.iter().map(|r| r.last_position()).collect();
        positions.dedup();
        assert_eq!(positions.len(), 3, "two successes share a position");

        let events = all_events(&store);
        check_log(&events, &receipts);
        for name in ["a", "b", "c"] {
            let writes = events.iter().filter(|e| e.stream_id.as_str() == name).count();
            assert_eq!(writes, 2, "an update of `{name}` was lost");
        }
        assert_eq!(
            store.head().position(),
            events.last().map(|e| e.position).unwrap_or_default()
        );
    });
}

/// A conflicting multi-stream append writes nothing, even when its first
/// stream would have matched: `a` is expected empty (true), `b` is expected
/// empty but another thread may have written it first.
#[test]
fn a_conflict_on_one_stream_writes_no_stream() {
    loom::model(|| {
        let store = MemoryEventStore::new();
        let blocker = {
            let store = store.clone();
            loom::thread::spawn(move || store.append_sync(&append(1, &[("b", ExpectedVersion::NoStream)], 1)))
        };
        let both = store.append_sync(&append(
            2,
            &[("a", ExpectedVersion::NoStream), ("b", ExpectedVersion::NoStream)],
            2,
        ));
        let blocker = blocker.join().expect("blocker");

        let events = all_events(&store);
        match (&both, &blocker) {
            (Ok(both), Err(StoreError::Conflict(_))) => check_log(&events, &[both]),
            (Err(StoreError::Conflict(c)), Ok(blocker)) => {
                assert_eq!(c.stream.as_str(), "b");
                check_log(&events, &[blocker]);
                assert!(
                    events.iter().all(|e| e.stream_id.as_str() != "a"),
                    "the failed append wrote `a`"
                );
            }
            other => panic!("exactly one of the two must commit, got {other:?}"),
        }
    });
}

/// The same command sent twice at once (a retry racing the original after
/// an unknown outcome): one commit, one deduplicated copy of its receipt,
/// and the events are in the log once.
#[test]
fn one_command_id_commits_once() {
    loom::model(|| {
        let store = MemoryEventStore::new();
        let request = append(7, &[("a", ExpectedVersion::Any), ("b", ExpectedVersion::Any)], 1);
        let retry = {
            let (store, request) = (store.clone(), request.clone());
            loom::thread::spawn(move || store.append_sync(&request).expect("retry"))
        };
        let original = store.append_sync(&request).expect("original");
        let retry = retry.join().expect("retry thread");

        assert!(original.same_commit(&retry), "{original:?} vs {retry:?}");
        assert_eq!(
            [original.deduplicated, retry.deduplicated]
                .iter()
                .filter(|d| !**d)
                .count(),
            1,
            "exactly one of the two appends writes"
        );
        let committed = if original.deduplicated { &retry } else { &original };
        check_log(&all_events(&store), &[committed]);
    });
}
