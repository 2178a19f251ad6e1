//! The tombstone checks on hand-made store steps: each way a store can get
//! tombstones wrong is played once against the checker, which must report
//! it as `Invariant::Tombstone`; the honest memory store passes.

use eventcore::{
    AppendReceipt, AppendRequest, CommandId, Conflict, EventId, EventMetadata, EventType, ExpectedVersion, NewEvent,
    Payload, ReadRequest, StoreError, StreamAppend, StreamDeleted, StreamId, StreamVersion, Time,
};
use eventcore_memory::MemoryStore;
use eventcore_sim::check::{Checker, Invariant};
use eventcore_sim::history::{Attempt, CommandRecord, ExecutionOutcome, ExecutionRecord, History};
use std::sync::Arc;

fn stream(name: &str) -> StreamId {
    StreamId::new(name).expect("valid")
}

fn id(n: u8) -> CommandId {
    CommandId::v7(Time::ZERO, [n; 10])
}

/// One append of command `n`: one event per stream named, ending the
/// streams marked `true`.
fn append(n: u8, streams: &[(&str, ExpectedVersion, bool)]) -> AppendRequest {
    AppendRequest {
        metadata: Arc::new(EventMetadata::new(id(n), Time::ZERO)),
        streams: streams
            .iter()
            .enumerate()
            .map(|(i, (s, expected, tombstone))| StreamAppend {
                stream: stream(s),
                expected: *expected,
                events: vec![NewEvent {
                    event_id: EventId::v7(Time::ZERO, [n, i as u8, 0, 0, 0, 0, 0, 0, 0, 0]),
                    event_type: EventType::new("E").expect("valid"),
                    schema_version: 1,
                    payload: Payload::from_trusted_json("null"),
                }],
                tombstone: *tombstone,
            })
            .collect(),
    }
}

/// Applies `request` to the honest store and judges it, with the store's
/// own tombstones; returns the invariants broken so far.
fn step(checker: &mut Checker, store: &mut MemoryStore, request: &AppendRequest) -> Vec<Invariant> {
    let before = store.events().len();
    let result = store.append(request);
    let events = store.events()[before..].to_vec();
    checker
        .observe_append(&Attempt::of(request), &result, &events, |s| store.deleted_at(s))
        .iter()
        .map(|v| v.invariant)
        .collect()
}

/// A store with `acct-1` opened (version 1) and closed (version 2, ending
/// it), judged step by step.
fn closed_account() -> (Checker, MemoryStore) {
    let mut checker = Checker::new(Vec::new());
    let mut store = MemoryStore::new();
    let open = append(1, &[("acct-1", ExpectedVersion::NoStream, false)]);
    let close = append(2, &[("acct-1", ExpectedVersion::Exact(StreamVersion::new(1)), true)]);
    assert!(step(&mut checker, &mut store, &open).is_empty());
    assert!(step(&mut checker, &mut store, &close).is_empty());
    assert_eq!(checker.deleted_at(&stream("acct-1")), Some(StreamVersion::new(2)));
    (checker, store)
}

#[test]
fn the_honest_store_passes_a_close_and_the_refused_writes_after_it() {
    let (mut checker, mut store) = closed_account();
    let late = append(3, &[("acct-1", ExpectedVersion::Any, false)]);
    let across = append(
        4,
        &[
            ("acct-0", ExpectedVersion::NoStream, false),
            ("acct-1", ExpectedVersion::Any, false),
        ],
    );
    assert!(step(&mut checker, &mut store, &late).is_empty());
    assert!(step(&mut checker, &mut store, &across).is_empty());
    let read = store.read(&ReadRequest::new([stream("acct-1")])).expect("reads");
    assert!(checker.observe_read(&read).is_empty());
    assert_eq!(store.events().len(), 2, "nothing written after the tombstone");
}

#[test]
fn a_store_that_drops_the_tombstone_of_a_committed_append_is_caught() {
    let mut checker = Checker::new(Vec::new());
    let mut store = MemoryStore::new();
    let close = append(1, &[("acct-1", ExpectedVersion::NoStream, true)]);
    let result = store.append(&close);
    let events = store.events().to_vec();
    // The event committed; the store says the stream is open.
    let found = checker.observe_append(&Attempt::of(&close), &result, &events, |_| None);
    assert!(found.iter().any(|v| v.invariant == Invariant::Tombstone), "{found:?}");
}

#[test]
fn a_tombstone_without_its_event_is_caught() {
    let mut checker = Checker::new(Vec::new());
    let mut store = MemoryStore::new();
    let open = append(1, &[("acct-1", ExpectedVersion::NoStream, false)]);
    let result = store.append(&open);
    let events = store.events().to_vec();
    // An append that does not end the stream, yet the store holds a tombstone.
    let found = checker.observe_append(&Attempt::of(&open), &result, &events, |_| Some(StreamVersion::new(1)));
    assert!(found.iter().any(|v| v.invariant == Invariant::Tombstone), "{found:?}");
}

#[test]
fn an_event_committed_after_the_tombstone_is_caught() {
    let (mut checker, _) = closed_account();
    // A store without the check: the late write lands at version 3.
    let mut open_store = MemoryStore::new();
    open_store
        .append(&append(1, &[("acct-1", ExpectedVersion::NoStream, false)]))
        .expect("commits");
    open_store
        .append(&append(2, &[("acct-1", ExpectedVersion::Any, false)]))
        .expect("commits");
    let late = append(3, &[("acct-1", ExpectedVersion::Any, false)]);
    let result = open_store.append(&late);
    let events = open_store.events()[2..].to_vec();
    let found = checker.observe_append(&Attempt::of(&late), &result, &events, |_| Some(StreamVersion::new(2)));
    assert!(found.iter().any(|v| v.invariant == Invariant::Tombstone), "{found:?}");
}

#[test]
fn a_refusal_naming_the_wrong_version_is_caught() {
    let (mut checker, _) = closed_account();
    let late = append(3, &[("acct-1", ExpectedVersion::Any, false)]);
    let wrong = Err(StoreError::StreamDeleted(StreamDeleted {
        stream: stream("acct-1"),
        deleted_at: StreamVersion::new(1),
    }));
    let found = checker.observe_append(&Attempt::of(&late), &wrong, &[], |_| Some(StreamVersion::new(2)));
    assert!(found.iter().any(|v| v.invariant == Invariant::Tombstone), "{found:?}");
}

#[test]
fn a_refusal_naming_a_stream_the_append_did_not_write_is_caught() {
    let (mut checker, _) = closed_account();
    let elsewhere = append(3, &[("acct-7", ExpectedVersion::Any, false)]);
    let wrong = Err(StoreError::StreamDeleted(StreamDeleted {
        stream: stream("acct-1"),
        deleted_at: StreamVersion::new(2),
    }));
    let found = checker.observe_append(&Attempt::of(&elsewhere), &wrong, &[], |s| {
        (s.as_str() == "acct-1").then(|| StreamVersion::new(2))
    });
    assert!(found.iter().any(|v| v.invariant == Invariant::Tombstone), "{found:?}");
}

#[test]
fn a_write_to_a_deleted_stream_refused_as_a_conflict_is_caught() {
    let (mut checker, _) = closed_account();
    let late = append(3, &[("acct-1", ExpectedVersion::Exact(StreamVersion::new(1)), false)]);
    let conflict = Err(StoreError::Conflict(Conflict {
        stream: stream("acct-1"),
        expected: ExpectedVersion::Exact(StreamVersion::new(1)),
        actual: StreamVersion::new(2),
    }));
    let found = checker.observe_append(&Attempt::of(&late), &conflict, &[], |_| Some(StreamVersion::new(2)));
    assert!(found.iter().any(|v| v.invariant == Invariant::Tombstone), "{found:?}");
}

#[test]
fn a_write_to_a_deleted_stream_acknowledged_without_events_is_caught() {
    let (mut checker, _) = closed_account();
    let late = append(3, &[("acct-1", ExpectedVersion::Any, false)]);
    let lie: Result<AppendReceipt, StoreError> = Ok(AppendReceipt {
        command_id: id(3),
        streams: Vec::new(),
        deduplicated: false,
    });
    let found = checker.observe_append(&Attempt::of(&late), &lie, &[], |_| Some(StreamVersion::new(2)));
    assert!(found.iter().any(|v| v.invariant == Invariant::Tombstone), "{found:?}");
}

#[test]
fn a_read_that_hides_or_misplaces_the_tombstone_is_caught() {
    let (mut checker, store) = closed_account();
    let honest = store.read(&ReadRequest::new([stream("acct-1")])).expect("reads");
    let mut hidden = honest.clone();
    hidden.streams[0].deleted_at = None;
    assert!(checker
        .observe_read(&hidden)
        .iter()
        .any(|v| v.invariant == Invariant::Tombstone));
    let (mut checker, _) = closed_account();
    let mut early = honest;
    early.streams[0].deleted_at = Some(StreamVersion::new(1));
    assert!(checker
        .observe_read(&early)
        .iter()
        .any(|v| v.invariant == Invariant::Tombstone));
}

#[test]
fn a_history_with_events_past_a_committed_tombstone_fails_at_the_end() {
    // Read back from a store that ignored the tombstone (as a chaos suite
    // would): the history alone shows the late event.
    let mut store = MemoryStore::new();
    let close = append(1, &[("acct-1", ExpectedVersion::NoStream, true)]);
    let late = append(2, &[("acct-1", ExpectedVersion::Any, false)]);
    let mut broken = close.clone();
    broken.streams[0].tombstone = false;
    let first = store.append(&broken).expect("commits");
    let second = store.append(&late).expect("commits");
    let record = |n: u8, request: &AppendRequest, receipt: AppendReceipt| CommandRecord {
        command_id: id(n),
        label: format!("command {n}"),
        executions: vec![ExecutionRecord {
            started_after: eventcore::GlobalPosition::START,
            healed: false,
            attempts: vec![Attempt::of(request)],
            outcome: ExecutionOutcome::Acknowledged(receipt),
        }],
    };
    let history = History {
        events: store.events().to_vec(),
        commands: vec![record(1, &close, first), record(2, &late, second)],
    };
    let found = Checker::new(Vec::new()).finish(&history, true);
    assert!(found.iter().any(|v| v.invariant == Invariant::Tombstone), "{found:?}");
}
