//! Bad input at the machine and executor level: each case gets a typed,
//! descriptive error, and nothing stored is lost or altered.

use eventcore::*;
use eventcore_examples::bank::{account, AccountEvent, OpenAccount};
use eventcore_memory::MemoryStore;
use eventcore_tokio::{EventStore, Executor, MemoryEventStore};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

fn start() -> Time {
    Time::from_unix_millis(1_700_000_000_000)
}

fn id(name: &str) -> StreamId {
    StreamId::new(name).expect("valid stream id")
}

static NEXT_COMMAND: AtomicU32 = AtomicU32::new(1);

/// A context with a command id no other execution in this file uses.
fn context() -> ExecutionContext {
    let n = NEXT_COMMAND.fetch_add(1, Ordering::SeqCst);
    let mut entropy = [0u8; 10];
    entropy[6..].copy_from_slice(&n.to_le_bytes());
    ExecutionContext::new(CommandId::v7(start(), entropy))
}

/// What a machine asked for, in order.
#[derive(Debug, PartialEq, Eq)]
enum Asked {
    Read(Vec<StreamId>),
    Append(Vec<StreamId>),
    Wait,
}

/// Runs `machine` to completion against `store`, synchronously.
fn run<C: Command>(
    store: &mut MemoryStore,
    mut machine: CommandMachine<C>,
) -> (Vec<Asked>, Result<Executed, CommandError<C::Error>>) {
    let mut now = start();
    let mut asked = Vec::new();
    for _ in 0..1_000 {
        match machine.poll() {
            Step::Read {
                id: request_id,
                request,
                ..
            } => {
                asked.push(Asked::Read(request.streams.iter().map(|s| s.stream.clone()).collect()));
                let answer = store.read(&request);
                machine.on_read(request_id, answer, now);
            }
            Step::Append {
                id: request_id,
                request,
                ..
            } => {
                asked.push(Asked::Append(
                    request.streams.iter().map(|s| s.stream.clone()).collect(),
                ));
                let answer = store.append(&request);
                machine.on_append(request_id, answer, now);
            }
            Step::Wait { until } => {
                asked.push(Asked::Wait);
                now = now.max(until);
                machine.on_wake(now);
            }
            Step::Done(result) => {
                assert!(matches!(machine.poll(), Step::Finished), "Done is returned once");
                return (asked, result);
            }
            Step::Finished => panic!("Finished before Done"),
        }
    }
    panic!("the machine did not finish in 1000 steps");
}

fn machine<C: Command>(command: C) -> CommandMachine<C> {
    CommandMachine::new(command, ExecutionPolicy::default(), context(), start(), 7)
}

fn no_appends(asked: &[Asked]) -> bool {
    !asked.iter().any(|a| matches!(a, Asked::Append(_)))
}

/// A store with a little history: `account-1` (bank events) and `plain`
/// (`Ev` events).
fn seeded_store() -> MemoryStore {
    let mut store = MemoryStore::new();
    let (_, result) = run(
        &mut store,
        machine(OpenAccount {
            account: account(1),
            initial: 50,
        }),
    );
    result.expect("account 1 opens");
    let (_, result) = run(&mut store, machine(Touch::new(&["plain"], &["plain"])));
    result.expect("plain is written");
    store
}

fn snapshot(store: &MemoryStore) -> Vec<RecordedEvent> {
    store.events().to_vec()
}

#[derive(Debug, Serialize, Deserialize)]
enum Ev {
    Touched,
}
impl Event for Ev {}

#[derive(Debug, thiserror::Error)]
#[error("refused")]
struct Refused;

/// Reads `read`, then emits to `write`, with optional expectations.
struct Touch {
    read: Vec<StreamId>,
    write: Vec<StreamId>,
    expect: Vec<(StreamId, ExpectedVersion)>,
}

impl Touch {
    fn new(read: &[&str], write: &[&str]) -> Self {
        Touch {
            read: read.iter().map(|s| id(s)).collect(),
            write: write.iter().map(|s| id(s)).collect(),
            expect: Vec::new(),
        }
    }
}

impl Command for Touch {
    type Event = Ev;
    type State = ();
    type Error = Refused;
    fn streams(&self) -> Vec<StreamId> {
        self.read.clone()
    }
    fn apply(&self, _: &mut (), _: &StreamId, _: &Ev) {}
    fn decide(&self, _: &(), out: &mut Decision<Ev>) -> Result<(), Refused> {
        for stream in &self.write {
            out.emit(stream, Ev::Touched);
        }
        for (stream, expected) in &self.expect {
            out.expect(stream, *expected);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Stream ids and event types
// ---------------------------------------------------------------------------

#[test]
fn each_stream_id_rule_has_its_own_error() {
    assert_eq!(StreamId::new(""), Err(InvalidStreamId::Empty));
    assert_eq!(
        StreamId::new(" \t "),
        Err(InvalidStreamId::ControlCharacter {
            id: " \t ".to_owned(),
            index: 1,
            code: 9
        }),
        "a tab is a control character, which is checked before whitespace"
    );
    assert_eq!(
        StreamId::new("   "),
        Err(InvalidStreamId::WhitespaceOnly { id: "   ".to_owned() })
    );
    for padded in [" account-1", "account-1 ", "\u{a0}account-1"] {
        assert_eq!(
            StreamId::new(padded),
            Err(InvalidStreamId::SurroundingWhitespace { id: padded.to_owned() }),
            "{padded:?}"
        );
    }
    assert_eq!(
        StreamId::new("a\0b"),
        Err(InvalidStreamId::ControlCharacter {
            id: "a\0b".to_owned(),
            index: 1,
            code: 0
        }),
        "NUL, which PostgreSQL text cannot hold"
    );
    assert_eq!(
        StreamId::new("ab\ncd"),
        Err(InvalidStreamId::ControlCharacter {
            id: "ab\ncd".to_owned(),
            index: 2,
            code: 10
        })
    );
    let longest = "x".repeat(MAX_STREAM_ID_BYTES);
    assert!(StreamId::new(&longest).is_ok(), "exactly the maximum is accepted");
    let too_long = "x".repeat(MAX_STREAM_ID_BYTES + 1);
    assert_eq!(
        StreamId::new(&too_long),
        Err(InvalidStreamId::TooLong {
            prefix: "x".repeat(32),
            len: MAX_STREAM_ID_BYTES + 1,
            max: MAX_STREAM_ID_BYTES
        })
    );
    // The prefix in the error is cut on a character boundary.
    let wide = "é".repeat(200);
    match StreamId::new(&wide) {
        Err(InvalidStreamId::TooLong { prefix, len, .. }) => {
            assert_eq!(len, 400);
            assert_eq!(prefix, "é".repeat(16));
        }
        other => panic!("expected TooLong, got {other:?}"),
    }
    // Every way in applies the same rules.
    assert_eq!(StreamId::try_from(""), Err(InvalidStreamId::Empty));
    assert_eq!(
        StreamId::try_from(" x".to_owned()),
        Err(InvalidStreamId::SurroundingWhitespace { id: " x".into() })
    );
    let from_json = serde_json::from_str::<StreamId>("\"  \"").expect_err("whitespace-only id in JSON");
    assert!(from_json.to_string().contains("whitespace only"), "{from_json}");
}

#[test]
fn stream_id_errors_describe_the_problem() {
    let cases = [
        ("", "stream id is empty"),
        ("  ", "stream id \"  \" is whitespace only"),
        (" a", "stream id \" a\" starts or ends with whitespace"),
        (
            "a\u{7}",
            "stream id \"a\\u{7}\" contains control character U+0007 at byte 1",
        ),
    ];
    for (input, message) in cases {
        let error = StreamId::new(input).expect_err("invalid");
        assert_eq!(error.to_string(), message);
    }
    let long = StreamId::new("y".repeat(300)).expect_err("too long");
    assert!(
        long.to_string().ends_with("is 300 bytes long; the maximum is 255"),
        "{long}"
    );
}

#[test]
fn each_event_type_rule_has_its_own_error() {
    assert_eq!(EventType::new(""), Err(InvalidEventType::Empty));
    assert_eq!(
        EventType::new("Money Deposited"),
        Err(InvalidEventType::BadCharacter {
            name: "Money Deposited".to_owned()
        })
    );
    assert_eq!(
        EventType::new("Tab\tbed"),
        Err(InvalidEventType::BadCharacter {
            name: "Tab\tbed".to_owned()
        })
    );
    assert!(EventType::new("x".repeat(MAX_EVENT_TYPE_BYTES)).is_ok());
    assert_eq!(
        EventType::new("x".repeat(MAX_EVENT_TYPE_BYTES + 1)),
        Err(InvalidEventType::TooLong {
            len: MAX_EVENT_TYPE_BYTES + 1,
            max: MAX_EVENT_TYPE_BYTES
        })
    );
}

// ---------------------------------------------------------------------------
// Commands that cannot run
// ---------------------------------------------------------------------------

#[test]
fn a_command_with_no_streams_fails_before_any_request() {
    let mut store = seeded_store();
    let before = snapshot(&store);
    let (asked, result) = run(&mut store, machine(Touch::new(&[], &["nowhere"])));
    assert!(matches!(result, Err(CommandError::NoStreams)), "{result:?}");
    assert!(asked.is_empty(), "not even a read: {asked:?}");
    assert_eq!(snapshot(&store), before);
}

#[tokio::test]
async fn the_executor_reports_no_streams_without_touching_the_store() {
    let store = MemoryEventStore::new();
    let executor = Executor::new(store.clone());
    let result = executor.execute(Touch::new(&[], &[])).await;
    assert!(
        matches!(
            result,
            Err(ExecutionError {
                error: CommandError::NoStreams,
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(
        result.expect_err("fails").to_string(),
        "command declares no streams to read"
    );
    assert!(store.inspect(|s| s.events().is_empty()));
}

#[test]
fn a_decision_without_events_succeeds_and_writes_nothing() {
    let mut store = seeded_store();
    let before = snapshot(&store);
    let (asked, result) = run(&mut store, machine(Touch::new(&["plain", "empty"], &[])));
    let done = result.expect("nothing to do is a success");
    assert_eq!(done.appended, None);
    assert_eq!(done.attempts, 1);
    assert_eq!(
        asked,
        vec![Asked::Read(vec![id("plain"), id("empty")])],
        "read, then done"
    );
    assert_eq!(snapshot(&store), before);
    assert!(
        store.receipt(&done.command_id).is_none(),
        "no command id recorded either"
    );
}

#[test]
fn an_append_without_events_is_refused_by_the_store() {
    let mut store = seeded_store();
    let before = snapshot(&store);
    let command_id = CommandId::v7(start(), [9; 10]);
    let request = AppendRequest {
        metadata: Arc::new(EventMetadata::new(command_id, start())),
        streams: vec![
            StreamAppend {
                stream: account(1),
                expected: ExpectedVersion::Exact(StreamVersion::new(1)),
                events: vec![],
                tombstone: false,
            },
            StreamAppend {
                stream: id("other"),
                expected: ExpectedVersion::Any,
                events: vec![],
                tombstone: false,
            },
        ],
    };
    let error = store.append(&request).expect_err("no events");
    assert!(
        matches!(error, StoreError::InvalidAppend(InvalidAppend::NoEvents)),
        "{error:?}"
    );
    assert_eq!(error.to_string(), "append carries no events");
    assert!(!error.is_retryable(), "bad input is never retried");
    assert_eq!(snapshot(&store), before);
    assert!(store.receipt(&command_id).is_none());
}

#[tokio::test]
async fn the_async_store_refuses_an_append_without_events_too() {
    let store = MemoryEventStore::from_store(seeded_store());
    let before = store.inspect(snapshot);
    let request = AppendRequest {
        metadata: Arc::new(EventMetadata::new(CommandId::v7(start(), [9; 10]), start())),
        streams: vec![StreamAppend {
            stream: account(1),
            expected: ExpectedVersion::Any,
            events: vec![],
            tombstone: false,
        }],
    };
    let result = store.append(&request).await;
    assert!(
        matches!(result, Err(StoreError::InvalidAppend(InvalidAppend::NoEvents))),
        "{result:?}"
    );
    assert_eq!(store.inspect(snapshot), before);
}

/// Asks for a brand-new stream on every decision: never settles.
struct Wanderer {
    rounds: AtomicU32,
}

impl Command for Wanderer {
    type Event = Ev;
    type State = ();
    type Error = Refused;
    fn streams(&self) -> Vec<StreamId> {
        vec![id("wander-0")]
    }
    fn apply(&self, _: &mut (), _: &StreamId, _: &Ev) {}
    fn decide(&self, _: &(), out: &mut Decision<Ev>) -> Result<(), Refused> {
        let n = self.rounds.fetch_add(1, Ordering::SeqCst) + 1;
        out.read(id(&format!("wander-{n}")));
        out.emit(&id("wander-0"), Ev::Touched);
        Ok(())
    }
}

#[test]
fn discovery_that_never_settles_hits_the_limit_and_names_the_streams() {
    let mut store = seeded_store();
    let before = snapshot(&store);
    let policy = ExecutionPolicy::default().with_discovery_limit(3);
    let m = CommandMachine::new(
        Wanderer {
            rounds: AtomicU32::new(0),
        },
        policy,
        context(),
        start(),
        7,
    );
    let (asked, result) = run(&mut store, m);
    match &result {
        Err(error @ CommandError::DiscoveryLimit { limit, pending }) => {
            assert_eq!(*limit, 3);
            assert_eq!(
                pending,
                &vec![id("wander-4")],
                "the streams asked for in the round over the limit"
            );
            assert!(error.to_string().contains("wander-4"), "{error}");
            assert!(error.to_string().contains("3 rounds"), "{error}");
        }
        other => panic!("expected DiscoveryLimit, got {other:?}"),
    }
    let reads: Vec<&Asked> = asked.iter().collect();
    assert_eq!(
        reads,
        vec![
            &Asked::Read(vec![id("wander-0")]),
            &Asked::Read(vec![id("wander-1")]),
            &Asked::Read(vec![id("wander-2")]),
            &Asked::Read(vec![id("wander-3")]),
        ],
        "one read per round, only of the new stream"
    );
    assert_eq!(snapshot(&store), before);
}

#[tokio::test]
async fn the_executor_reports_the_discovery_limit_and_writes_nothing() {
    let store = MemoryEventStore::new();
    let executor = Executor::new(store.clone()).with_policy(ExecutionPolicy::default().with_discovery_limit(0));
    let result = executor
        .execute(Wanderer {
            rounds: AtomicU32::new(0),
        })
        .await;
    match result {
        Err(ExecutionError {
            error: CommandError::DiscoveryLimit { limit: 0, pending },
            ..
        }) => assert_eq!(pending, vec![id("wander-1")]),
        other => panic!("expected DiscoveryLimit, got {other:?}"),
    }
    assert!(store.inspect(|s| s.events().is_empty()));
}

#[test]
fn a_deadline_already_passed_fails_before_any_request() {
    for deadline in [start(), Time::from_unix_millis(1)] {
        let mut store = seeded_store();
        let before = snapshot(&store);
        let m = CommandMachine::new(
            Touch::new(&["plain"], &["plain"]),
            ExecutionPolicy::default(),
            context().with_deadline(deadline),
            start(),
            7,
        );
        let (asked, result) = run(&mut store, m);
        match &result {
            Err(
                error @ CommandError::DeadlineExceeded {
                    attempts: 0,
                    last: None,
                },
            ) => {
                assert_eq!(error.to_string(), "deadline exceeded after 0 attempts");
                assert!(!error.may_have_committed());
            }
            other => panic!("expected DeadlineExceeded, got {other:?}"),
        }
        assert!(asked.is_empty(), "{asked:?}");
        assert_eq!(snapshot(&store), before);
    }
}

#[test]
fn a_zero_timeout_fails_before_any_request() {
    let mut store = seeded_store();
    let m = CommandMachine::new(
        Touch::new(&["plain"], &["plain"]),
        ExecutionPolicy::default().with_timeout(Duration::ZERO),
        context(),
        start(),
        7,
    );
    let (asked, result) = run(&mut store, m);
    assert!(
        matches!(
            result,
            Err(CommandError::DeadlineExceeded {
                attempts: 0,
                last: None
            })
        ),
        "{result:?}"
    );
    assert!(asked.is_empty());
}

/// Regression: an answer that arrived at or after the overall deadline used
/// to let the machine decide and send an append past its deadline.
#[test]
fn an_answer_arriving_after_the_deadline_starts_no_new_request() {
    let store = seeded_store();
    let before = snapshot(&store);
    let mut m = CommandMachine::new(
        Touch::new(&["plain"], &["plain"]),
        ExecutionPolicy::default().with_timeout(Duration::from_millis(20)),
        context(),
        start(),
        7,
    );
    let Step::Read {
        id: read_id,
        request: read,
        ..
    } = m.poll()
    else {
        panic!("reads first")
    };
    let late = start().saturating_add(Duration::from_millis(25));
    m.on_read(read_id, store.read(&read), late);
    match m.poll() {
        Step::Done(Err(CommandError::DeadlineExceeded {
            attempts: 1,
            last: None,
        })) => {}
        other => panic!("expected DeadlineExceeded instead of a request past the deadline, got {other:?}"),
    }
    assert_eq!(snapshot(&store), before);
}

#[tokio::test]
async fn the_executor_reports_a_passed_deadline_without_touching_the_store() {
    let store = MemoryEventStore::new();
    let executor = Executor::new(store.clone());
    let past = ExecutionContext::new(executor.new_command_id()).with_deadline(Time::from_unix_millis(1));
    let result = executor
        .execute_with(
            OpenAccount {
                account: account(1),
                initial: 1,
            },
            past,
        )
        .await;
    assert!(
        matches!(
            result,
            Err(ExecutionError {
                error: CommandError::DeadlineExceeded { attempts: 0, .. },
                ..
            })
        ),
        "{result:?}"
    );
    assert!(store.inspect(|s| s.events().is_empty()));
}

#[test]
fn writing_to_an_unread_stream_is_refused_and_nothing_is_appended() {
    let mut store = seeded_store();
    let before = snapshot(&store);
    let (asked, result) = run(&mut store, machine(Touch::new(&["plain"], &["plain", "sneaky"])));
    match &result {
        Err(error @ CommandError::UnreadStream { stream }) => {
            assert_eq!(stream, &id("sneaky"));
            assert!(error.to_string().contains("`sneaky`"), "{error}");
            assert!(!error.may_have_committed());
        }
        other => panic!("expected UnreadStream, got {other:?}"),
    }
    assert!(no_appends(&asked), "{asked:?}");
    assert_eq!(snapshot(&store), before);
}

#[test]
fn an_expectation_on_an_unread_stream_is_refused_too() {
    let mut store = seeded_store();
    let before = snapshot(&store);
    let mut command = Touch::new(&["plain"], &["plain"]);
    command.expect.push((id("elsewhere"), ExpectedVersion::NoStream));
    let (asked, result) = run(&mut store, machine(command));
    assert!(
        matches!(&result, Err(CommandError::UnreadStream { stream }) if stream == &id("elsewhere")),
        "{result:?}"
    );
    assert!(no_appends(&asked));
    assert_eq!(snapshot(&store), before);
}

// ---------------------------------------------------------------------------
// Stored events that do not decode
// ---------------------------------------------------------------------------

/// Writes one raw event into `account-1` (version 2) behind the codec's back.
fn store_with_raw_event(event_type: &str, schema_version: u32, payload: &str) -> MemoryStore {
    let mut store = seeded_store();
    let request = AppendRequest {
        metadata: Arc::new(EventMetadata::new(CommandId::v7(start(), [8; 10]), start())),
        streams: vec![StreamAppend {
            stream: account(1),
            expected: ExpectedVersion::Exact(StreamVersion::new(1)),
            events: vec![NewEvent {
                event_id: EventId::v7(start(), [8; 10]),
                event_type: EventType::new(event_type).expect("valid type"),
                schema_version,
                payload: Payload::from_trusted_json(payload),
            }],
            tombstone: false,
        }],
    };
    store.append(&request).expect("raw event stored");
    store
}

fn assert_decode_error(store: &mut MemoryStore, event_type: &str, expected: DecodeErrorKind) {
    let before = snapshot(store);
    let (asked, result) = run(
        store,
        machine(OpenAccount {
            account: account(1),
            initial: 1,
        }),
    );
    match &result {
        Err(CommandError::Decode(error)) => {
            assert_eq!(error.stream, account(1));
            assert_eq!(error.version, StreamVersion::new(2));
            assert_eq!(error.position, GlobalPosition::new(3), "after account-1 and plain");
            assert_eq!(error.event_type.as_str(), event_type);
            assert_eq!(error.kind, expected);
            let text = result.as_ref().expect_err("failed").to_string();
            assert!(text.contains("account-1@2"), "the message locates the event: {text}");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert!(no_appends(&asked), "a decode failure is not retried and writes nothing");
    assert_eq!(asked.len(), 1, "one read, no retry: {asked:?}");
    assert_eq!(snapshot(store), before, "the stored event is left as it was");
}

#[test]
fn a_payload_that_does_not_deserialize_is_a_typed_decode_error() {
    let mut store = store_with_raw_event("Deposited", 1, r#"{"amount":"lots"}"#);
    let before = snapshot(&store);
    let (_, result) = run(
        &mut store,
        machine(OpenAccount {
            account: account(1),
            initial: 1,
        }),
    );
    match result {
        // The error names the field that failed (issue 16).
        Err(CommandError::Decode(DecodeError {
            kind: DecodeErrorKind::InvalidField { path, reason },
            schema_version: 1,
            ..
        })) => {
            assert_eq!(path, "amount");
            assert!(reason.contains("invalid type"), "{reason}");
        }
        other => panic!("expected InvalidField, got {other:?}"),
    }
    assert_eq!(snapshot(&store), before);
}

#[test]
fn malformed_json_read_back_from_a_store_is_a_typed_decode_error() {
    // Stores refuse malformed JSON on append (see the conformance suite), so
    // the corruption happens between the store and the machine: the machine
    // must still answer with a typed error naming the event, not a panic.
    let store = store_with_raw_event("Deposited", 1, r#"{"amount": 5}"#);
    let mut m = machine(OpenAccount {
        account: account(1),
        initial: 1,
    });
    let Step::Read {
        id: request_id,
        request,
        ..
    } = m.poll()
    else {
        panic!("the machine reads first")
    };
    let mut answer = store.read(&request).expect("read");
    let corrupted = answer.streams[0]
        .events
        .iter_mut()
        .find(|e| e.version == StreamVersion::new(2))
        .expect("account-1@2 exists");
    corrupted.payload = Payload::from_trusted_json(r#"{"amount": 5"#);
    m.on_read(request_id, Ok(answer), start());
    match m.poll() {
        Step::Done(Err(CommandError::Decode(DecodeError {
            kind: DecodeErrorKind::InvalidPayload(_),
            stream,
            version,
            ..
        }))) => {
            assert_eq!((stream, version), (account(1), StreamVersion::new(2)));
        }
        other => panic!("expected an InvalidPayload decode error, got {other:?}"),
    }
}

#[test]
fn an_unknown_event_type_is_a_typed_decode_error() {
    let mut store = store_with_raw_event("Frozen", 1, "null");
    assert_decode_error(&mut store, "Frozen", DecodeErrorKind::UnknownEventType);
}

#[test]
fn a_newer_schema_version_is_a_typed_decode_error() {
    let mut store = store_with_raw_event("Deposited", 2, r#"{"amount":5}"#);
    assert_decode_error(
        &mut store,
        "Deposited",
        DecodeErrorKind::UnsupportedSchemaVersion { found: 2, supported: 1 },
    );
}

// ---------------------------------------------------------------------------
// Events the store refuses
// ---------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
enum Unencodable {
    /// JSON object keys must be strings; tuple keys cannot be written.
    Grid(BTreeMap<(u8, u8), u8>),
}
impl Event for Unencodable {}

struct WriteGrid;

impl Command for WriteGrid {
    type Event = Unencodable;
    type State = ();
    type Error = Refused;
    fn streams(&self) -> Vec<StreamId> {
        vec![id("grid")]
    }
    fn apply(&self, _: &mut (), _: &StreamId, _: &Unencodable) {}
    fn decide(&self, _: &(), out: &mut Decision<Unencodable>) -> Result<(), Refused> {
        out.emit(&id("grid"), Unencodable::Grid(BTreeMap::from([((1, 2), 3)])));
        Ok(())
    }
}

#[test]
fn an_event_that_cannot_be_encoded_is_refused_before_appending() {
    let mut store = seeded_store();
    let before = snapshot(&store);
    let (asked, result) = run(&mut store, machine(WriteGrid));
    match &result {
        Err(CommandError::Encode { stream, .. }) => assert_eq!(stream, &id("grid")),
        other => panic!("expected an encode error, got {other:?}"),
    }
    assert!(no_appends(&asked));
    assert_eq!(snapshot(&store), before);
}

/// Emits `count` events with a payload of about `size` bytes.
struct Bulk {
    count: usize,
    size: usize,
}

#[derive(Debug, Serialize, Deserialize)]
enum Blob {
    Blob(String),
}
impl Event for Blob {}

impl Command for Bulk {
    type Event = Blob;
    type State = ();
    type Error = Refused;
    fn streams(&self) -> Vec<StreamId> {
        vec![id("bulk")]
    }
    fn apply(&self, _: &mut (), _: &StreamId, _: &Blob) {}
    fn decide(&self, _: &(), out: &mut Decision<Blob>) -> Result<(), Refused> {
        for _ in 0..self.count {
            out.emit(&id("bulk"), Blob::Blob("b".repeat(self.size)));
        }
        Ok(())
    }
}

fn small_limits() -> AppendLimits {
    AppendLimits {
        max_streams: 4,
        max_events: 3,
        max_payload_bytes: 64,
    }
}

#[tokio::test]
async fn an_oversized_event_is_refused_by_the_store_and_not_retried() {
    let store = MemoryEventStore::with_limits(small_limits());
    let executor = Executor::new(store.clone());
    let result = executor.execute(Bulk { count: 1, size: 100 }).await;
    match &result {
        Err(ExecutionError {
            error:
                CommandError::Store(StoreError::InvalidAppend(InvalidAppend::PayloadTooLarge {
                    stream,
                    event_type,
                    size,
                    max,
                })),
            ..
        }) => {
            assert_eq!(stream, &id("bulk"));
            assert_eq!(event_type.as_str(), "Blob");
            assert_eq!((*size, *max), (102, 64), "a 100-letter JSON string is 102 bytes");
        }
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    assert!(store.inspect(|s| s.events().is_empty()));
}

#[tokio::test]
async fn too_many_events_in_one_decision_are_refused_by_the_store() {
    let store = MemoryEventStore::with_limits(small_limits());
    let executor = Executor::new(store.clone());
    let result = executor.execute(Bulk { count: 4, size: 1 }).await;
    assert!(
        matches!(
            &result,
            Err(ExecutionError {
                error: CommandError::Store(StoreError::InvalidAppend(InvalidAppend::TooManyEvents {
                    count: 4,
                    max: 3
                })),
                ..
            })
        ),
        "{result:?}"
    );
    assert!(store.inspect(|s| s.events().is_empty()));
    // Within the limits the same command goes through.
    executor
        .execute(Bulk { count: 3, size: 1 })
        .await
        .expect("within limits");
    assert_eq!(store.inspect(|s| s.events().len()), 3);
}

#[test]
fn the_domain_refusing_writes_nothing() {
    let mut store = seeded_store();
    let before = snapshot(&store);
    let (asked, result) = run(
        &mut store,
        machine(OpenAccount {
            account: account(1),
            initial: 5,
        }),
    );
    assert!(matches!(result, Err(CommandError::Domain(_))), "{result:?}");
    assert!(no_appends(&asked));
    assert_eq!(snapshot(&store), before);
    // The event the store holds is still account 1's opening.
    let opened = decode_recorded::<AccountEvent>(&store.events()[0]).expect("decodes");
    assert_eq!(opened, AccountEvent::Opened { initial: 50 });
}
