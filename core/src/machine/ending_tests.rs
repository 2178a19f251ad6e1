//! Ending a stream from a decision (tombstones), and encoding a due append
//! again (`reencode_append`).

use super::*;
use crate::{Decision, Event, ExpectedVersion, ReadResponse, StreamSlice, StreamVersion};
use serde::{Deserialize, Serialize, Serializer};
use std::cell::Cell;

thread_local! {
    /// What `Labelled` writes: stands for context a driver installs around
    /// the machine's calls (a key ring). `None`: encoding fails.
    static LABEL: Cell<Option<u32>> = const { Cell::new(Some(1)) };
}

/// An event whose encoding depends on the thread-local `LABEL`.
#[derive(Debug, Deserialize)]
enum Ev {
    Labelled,
    Closed,
}

impl Serialize for Ev {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Ev::Labelled => match LABEL.with(Cell::get) {
                Some(label) => serializer.serialize_newtype_variant("Ev", 0, "Labelled", &label),
                None => Err(serde::ser::Error::custom("no label installed")),
            },
            Ev::Closed => serializer.serialize_unit_variant("Ev", 1, "Closed"),
        }
    }
}
impl Event for Ev {}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

/// Emits the given events and ends the given streams.
struct Decides {
    streams: Vec<StreamId>,
    emit: Vec<(StreamId, fn() -> Ev)>,
    end: Vec<StreamId>,
}

impl Command for Decides {
    type Event = Ev;
    type State = ();
    type Error = Never;
    fn streams(&self) -> Vec<StreamId> {
        self.streams.clone()
    }
    fn apply(&self, _: &mut (), _: &StreamId, _: &Ev) {}
    fn decide(&self, _: &(), out: &mut Decision<Ev>) -> Result<(), Never> {
        for (stream, event) in &self.emit {
            out.emit(stream, event());
        }
        for stream in &self.end {
            out.end_stream(stream);
        }
        Ok(())
    }
}

fn stream(name: &str) -> StreamId {
    StreamId::new(name).expect("valid")
}

fn now() -> Time {
    Time::from_unix_millis(5)
}

/// Starts `command` and answers its first read with empty streams.
fn read_empty(command: Decides) -> CommandMachine<Decides> {
    let ctx = ExecutionContext::new(CommandId::v7(now(), [2; 10]));
    let mut machine = CommandMachine::new(command, ExecutionPolicy::default(), ctx, now(), 11);
    let Step::Read { id, request, .. } = machine.poll() else {
        panic!("reads first")
    };
    let streams = request
        .streams
        .iter()
        .map(|read| StreamSlice {
            stream: read.stream.clone(),
            head: StreamVersion::NONE,
            events: vec![],
            deleted_at: None,
            removed_through: StreamVersion::NONE,
        })
        .collect();
    machine.on_read(id, Ok(ReadResponse { streams }), now());
    machine
}

#[test]
fn ending_a_stream_writes_its_tombstone_with_its_last_event_and_nothing_else() {
    let (account, ledger) = (stream("account-1"), stream("ledger"));
    let mut machine = read_empty(Decides {
        streams: vec![account.clone(), ledger.clone()],
        emit: vec![(account.clone(), || Ev::Closed), (ledger.clone(), || Ev::Closed)],
        end: vec![account.clone()],
    });
    let Step::Append { request, .. } = machine.poll() else {
        panic!("appends")
    };
    let entry = |s: &StreamId| request.streams.iter().find(|e| &e.stream == s).expect("written");
    assert!(entry(&account).tombstone, "the ended stream carries the tombstone");
    assert!(!entry(&ledger).tombstone, "the other stream stays open");
    assert_eq!(entry(&account).expected, ExpectedVersion::NoStream);
}

#[test]
fn ending_a_stream_without_an_event_to_it_is_refused_before_anything_is_sent() {
    let (account, ledger) = (stream("account-1"), stream("ledger"));
    let mut machine = read_empty(Decides {
        streams: vec![account.clone(), ledger.clone()],
        emit: vec![(ledger, || Ev::Closed)],
        end: vec![account.clone()],
    });
    match machine.poll() {
        Step::Done(Err(CommandError::EndWithoutEvent { stream })) => assert_eq!(stream, account),
        other => panic!("expected EndWithoutEvent, got {other:?}"),
    }
}

#[test]
fn ending_a_stream_that_was_not_read_is_an_unread_stream() {
    let (account, elsewhere) = (stream("account-1"), stream("elsewhere"));
    let mut machine = read_empty(Decides {
        streams: vec![account.clone()],
        emit: vec![(account, || Ev::Closed)],
        end: vec![elsewhere.clone()],
    });
    match machine.poll() {
        Step::Done(Err(CommandError::UnreadStream { stream })) => assert_eq!(stream, elsewhere),
        other => panic!("expected UnreadStream, got {other:?}"),
    }
}

#[test]
fn reencoding_a_due_append_takes_the_new_context_and_keeps_ids_and_tombstones() {
    let account = stream("account-1");
    LABEL.with(|l| l.set(Some(1)));
    let mut machine = read_empty(Decides {
        streams: vec![account.clone()],
        emit: vec![(account.clone(), || Ev::Labelled), (account.clone(), || Ev::Closed)],
        end: vec![account.clone()],
    });
    let Step::Append { request: first, .. } = machine.poll() else {
        panic!("appends")
    };
    assert!(first.streams[0].events[0].payload.as_json().contains('1'));
    LABEL.with(|l| l.set(Some(7)));
    let again = machine.reencode_append().expect("the append is due");
    let (before, after) = (&first.streams[0], &again.streams[0]);
    assert!(
        after.events[0].payload.as_json().contains('7'),
        "{:?}",
        after.events[0].payload
    );
    assert_eq!(after.tombstone, before.tombstone);
    assert_eq!(after.expected, before.expected);
    assert_eq!(again.metadata, first.metadata);
    for (a, b) in before.events.iter().zip(&after.events) {
        assert_eq!(a.event_id, b.event_id);
    }
    // The re-encoded request is the one in flight: a receipt for it commits.
    let Step::Wait { .. } = machine.poll() else {
        panic!("waits for the append")
    };
}

#[test]
fn a_failed_reencode_ends_the_execution_with_an_encode_error() {
    let account = stream("account-1");
    LABEL.with(|l| l.set(Some(1)));
    let mut machine = read_empty(Decides {
        streams: vec![account.clone()],
        emit: vec![(account.clone(), || Ev::Labelled)],
        end: vec![],
    });
    let Step::Append { .. } = machine.poll() else {
        panic!("appends")
    };
    LABEL.with(|l| l.set(None));
    assert!(machine.reencode_append().is_none());
    LABEL.with(|l| l.set(Some(1)));
    match machine.poll() {
        Step::Done(Err(CommandError::Encode { stream, .. })) => assert_eq!(stream, account),
        other => panic!("expected Encode, got {other:?}"),
    }
}

#[test]
fn an_append_whose_outcome_is_unknown_is_resent_as_it_was() {
    let account = stream("account-1");
    LABEL.with(|l| l.set(Some(1)));
    let mut machine = read_empty(Decides {
        streams: vec![account.clone()],
        emit: vec![(account.clone(), || Ev::Labelled)],
        end: vec![],
    });
    let Step::Append { id, request: first, .. } = machine.poll() else {
        panic!("appends")
    };
    let lost = StoreError::Timeout {
        operation: crate::Operation::Append,
        after: std::time::Duration::from_secs(1),
    };
    machine.on_append(id, Err(lost), now());
    let resent = loop {
        match machine.poll() {
            Step::Append { request, .. } => break request,
            Step::Wait { until } => machine.on_wake(until),
            other => panic!("expected a re-send, got {other:?}"),
        }
    };
    LABEL.with(|l| l.set(Some(9)));
    let again = machine.reencode_append().expect("due");
    assert_eq!(again.streams[0].events[0].payload, first.streams[0].events[0].payload);
    assert!(Arc::ptr_eq(&again, &resent));
}

#[test]
fn an_encode_failure_on_a_stream_primed_from_a_cache_is_confirmed_by_a_read_first() {
    let account = stream("account-1");
    let ctx = ExecutionContext::new(CommandId::v7(now(), [3; 10]));
    let command = Decides {
        streams: vec![account.clone()],
        emit: vec![(account.clone(), || Ev::Labelled)],
        end: vec![],
    };
    let mut machine = CommandMachine::new(command, ExecutionPolicy::default(), ctx, now(), 13);
    // The cached copy says the stream is empty, and the encode fails on it
    // (a forgotten subject's data): the cache may be stale, so the machine
    // reads before it gives up.
    LABEL.with(|l| l.set(None));
    assert!(machine.prime(&account, &[]));
    let Step::Read { id, request, .. } = machine.poll() else {
        panic!("an encode failure on unconfirmed cached state reads first")
    };
    assert_eq!(request.streams[0].stream, account);
    let slice = StreamSlice {
        stream: account.clone(),
        head: StreamVersion::NONE,
        events: vec![],
        deleted_at: None,
        removed_through: StreamVersion::NONE,
    };
    machine.on_read(id, Ok(ReadResponse { streams: vec![slice] }), now());
    // Confirmed by the read: now the failure is final.
    match machine.poll() {
        Step::Done(Err(CommandError::Encode { stream, .. })) => assert_eq!(stream, account),
        other => panic!("expected Encode after the read, got {other:?}"),
    }
    LABEL.with(|l| l.set(Some(1)));
}
