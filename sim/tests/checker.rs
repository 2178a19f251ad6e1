//! The invariant checker on hand-made histories: each invariant it claims
//! to check is broken once on purpose and must be reported.

use eventcore::{
    AppendRequest, CommandId, EventId, EventMetadata, EventType, ExpectedVersion, NewEvent, Payload, StreamAppend,
    StreamId, StreamVersion, Time,
};
use eventcore_memory::MemoryStore;
use eventcore_sim::check::{Checker, Invariant};
use eventcore_sim::history::{Attempt, CommandRecord, ExecutionOutcome, ExecutionRecord, History};
use std::sync::Arc;

fn stream(name: &str) -> StreamId {
    StreamId::new(name).expect("valid")
}

fn append(command: CommandId, seed: u8, streams: &[(&str, ExpectedVersion, usize)]) -> AppendRequest {
    let mut n = 0u8;
    AppendRequest {
        metadata: Arc::new(EventMetadata::new(command, Time::ZERO)),
        streams: streams
            .iter()
            .map(|(s, expected, count)| StreamAppend {
                stream: stream(s),
                expected: *expected,
                events: (0..*count)
                    .map(|_| {
                        n += 1;
                        NewEvent {
                            event_id: EventId::v7(Time::ZERO, [seed, n, 0, 0, 0, 0, 0, 0, 0, 0]),
                            event_type: EventType::new("E").expect("valid"),
                            schema_version: 1,
                            payload: Payload::from_trusted_json("null"),
                        }
                    })
                    .collect(),
                tombstone: false,
            })
            .collect(),
    }
}

fn run(attempts: &[&AppendRequest], outcome: ExecutionOutcome) -> ExecutionRecord {
    ExecutionRecord {
        started_after: eventcore::GlobalPosition::START,
        healed: false,
        attempts: attempts.iter().map(|a| Attempt::of(a)).collect(),
        outcome,
    }
}

fn check(history: &History, require_resolved: bool) -> Vec<Invariant> {
    Checker::new(Vec::new())
        .finish(history, require_resolved)
        .into_iter()
        .map(|v| v.invariant)
        .collect()
}

fn id(n: u8) -> CommandId {
    CommandId::v7(Time::ZERO, [n; 10])
}

#[test]
fn a_correct_history_passes() {
    let mut store = MemoryStore::new();
    let a = append(
        id(1),
        1,
        &[("a", ExpectedVersion::NoStream, 2), ("b", ExpectedVersion::NoStream, 1)],
    );
    let receipt = store.append(&a).expect("commits");
    let history = History {
        events: store.events().to_vec(),
        commands: vec![CommandRecord {
            command_id: id(1),
            label: "a+b".into(),
            executions: vec![run(&[&a], ExecutionOutcome::Acknowledged(receipt))],
        }],
    };
    assert_eq!(check(&history, true), vec![]);
}

#[test]
fn a_command_committed_twice_is_caught() {
    // Two stores stitched together fake a store without idempotency.
    let mut store = MemoryStore::new();
    let first = append(id(1), 1, &[("a", ExpectedVersion::Any, 1)]);
    let second = append(id(2), 2, &[("a", ExpectedVersion::Any, 1)]);
    store.append(&first).expect("commits");
    store.append(&second).expect("commits");
    let mut events = store.events().to_vec();
    events[1].metadata = events[0].metadata.clone();
    let history = History {
        events,
        commands: vec![CommandRecord {
            command_id: id(1),
            label: "twice".into(),
            executions: vec![run(&[&first, &second], ExecutionOutcome::Crashed)],
        }],
    };
    let found = check(&history, false);
    assert!(found.contains(&Invariant::Idempotency), "{found:?}");
}

#[test]
fn an_ignored_expected_version_is_caught() {
    let mut store = MemoryStore::new();
    let setup = append(id(1), 1, &[("a", ExpectedVersion::NoStream, 1)]);
    let setup_receipt = store.append(&setup).expect("commits");
    let stale = append(id(2), 2, &[("a", ExpectedVersion::NoStream, 1)]);
    // What a store that skipped the check would have written.
    let mut forced = stale.clone();
    forced.streams[0].expected = ExpectedVersion::Any;
    let receipt = store.append(&forced).expect("commits");
    let history = History {
        events: store.events().to_vec(),
        commands: vec![
            CommandRecord {
                command_id: id(1),
                label: "setup".into(),
                executions: vec![run(&[&setup], ExecutionOutcome::Acknowledged(setup_receipt))],
            },
            CommandRecord {
                command_id: id(2),
                label: "stale".into(),
                executions: vec![run(&[&stale], ExecutionOutcome::Acknowledged(receipt))],
            },
        ],
    };
    assert_eq!(check(&history, true), vec![Invariant::ExpectedVersion]);
}

#[test]
fn a_wrong_acknowledgement_a_false_nothing_written_and_an_open_outcome_are_caught() {
    let mut store = MemoryStore::new();
    let a = append(id(1), 1, &[("a", ExpectedVersion::NoStream, 1)]);
    let mut receipt = store.append(&a).expect("commits");
    receipt.streams[0].last_version = StreamVersion::new(7);
    let b = append(id(2), 2, &[("b", ExpectedVersion::NoStream, 1)]);
    store.append(&b).expect("commits");
    let history = History {
        events: store.events().to_vec(),
        commands: vec![
            CommandRecord {
                command_id: id(1),
                label: "wrong ack".into(),
                executions: vec![run(&[&a], ExecutionOutcome::Acknowledged(receipt))],
            },
            CommandRecord {
                command_id: id(2),
                label: "lied".into(),
                executions: vec![run(
                    &[&b],
                    ExecutionOutcome::GaveUp {
                        reason: "said nothing was written".into(),
                    },
                )],
            },
            CommandRecord {
                command_id: id(3),
                label: "open".into(),
                executions: vec![run(
                    &[],
                    ExecutionOutcome::Unknown {
                        reason: "timeout".into(),
                    },
                )],
            },
        ],
    };
    let found = check(&history, true);
    for expected in [Invariant::Acknowledged, Invariant::NothingWritten, Invariant::Liveness] {
        assert!(found.contains(&expected), "{expected:?} missing from {found:?}");
    }
}
