//! The command machine's checking of store answers.
//!
//! A small command (`Probe`: folds the tags of the events it reads, in
//! global order, may discover one more stream, refuse, or write) runs
//! against the in-memory store. The fuzz input (decoded with `arbitrary`)
//! sets up the command and the store's history, then picks, for every
//! request the machine sends, how it is answered: faithfully, after other
//! writers got in, with an error, a timeout, a stale or repeated answer, or
//! with the answer spoiled (slices dropped, swapped or renamed; heads moved;
//! events dropped, repeated, moved to other versions, streams or positions;
//! payloads, types and schema versions broken; receipts with other command
//! ids, versions, positions or streams).
//!
//! Every answer is judged here by a plain statement of the store contract,
//! independently of the machine:
//!
//! - a read answer that breaks the contract must end the execution at once
//!   with `Store(ContractViolation)` (or `Decode`, if an event in it does
//!   not decode either); one whose only fault is an undecodable event, with
//!   `Decode`; the machine must not decide on either;
//! - a receipt that breaks the contract must end it with `OutcomeUnknown`
//!   whose last error is the `ContractViolation`; a coherent one with
//!   `Executed` carrying exactly that receipt;
//! - an answer that keeps the contract must never be called a violation;
//! - never a wrong fold: every state `decide` sees must equal the reference
//!   fold of everything the machine accepted, that is every event delivered
//!   in an accepted answer, sorted by global position. Answers that lie
//!   consistently (a different but coherent position or payload) cannot be
//!   told from the truth by anyone; they stay in the reference as
//!   delivered, so the fold is judged against what the machine was told;
//! - the machine asks for each stream exactly after the events it holds,
//!   sends well-formed appends, and finishes.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use eventcore::{
    AppendLimits, AppendReceipt, AppendRequest, Command, CommandError, CommandId, CommandMachine, Conflict, Decision,
    Event, EventId, EventMetadata, EventType, ExecutionContext, ExecutionPolicy, ExpectedVersion, GlobalPosition,
    NewEvent, Operation, Payload, ReadRequest, ReadResponse, RecordedEvent, RequestId, RetryPolicy, Step, StoreError,
    StreamAppend, StreamId, StreamVersion, Time,
};
use eventcore_memory::MemoryStore;
use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

#[derive(Debug, Serialize, Deserialize)]
enum Ev {
    Tagged(u64),
}

impl Event for Ev {}

#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused")
    }
}

impl std::error::Error for Refused {}

/// A fold: the stream and tag of every event applied, in order.
type Fold = Vec<(StreamId, u64)>;

/// The command under test. Every state it decides on is logged.
struct Probe {
    declared: Vec<StreamId>,
    discover: Option<StreamId>,
    refuse_at: Option<usize>,
    write: bool,
    relax: bool,
    decisions: Arc<Mutex<Vec<Fold>>>,
}

impl Command for Probe {
    type Event = Ev;
    type State = Fold;
    type Error = Refused;

    fn streams(&self) -> Vec<StreamId> {
        self.declared.clone()
    }

    fn apply(&self, fold: &mut Fold, stream: &StreamId, event: &Ev) {
        let Ev::Tagged(tag) = event;
        fold.push((stream.clone(), *tag));
    }

    fn decide(&self, fold: &Fold, out: &mut Decision<Ev>) -> Result<(), Refused> {
        self.decisions.lock().expect("not poisoned").push(fold.clone());
        if let Some(stream) = &self.discover {
            out.read(stream.clone());
        }
        if self.refuse_at.is_some_and(|r| fold.len() % 4 == r) {
            return Err(Refused);
        }
        if self.write {
            out.emit(&self.declared[0], Ev::Tagged(0));
            if let Some(stream) = &self.discover {
                out.emit(stream, Ev::Tagged(0));
            }
        }
        if self.relax {
            out.expect(&self.declared[0], ExpectedVersion::Any);
        }
        Ok(())
    }
}

#[derive(Debug, Arbitrary)]
struct Scenario {
    /// 1 to 3 declared streams.
    streams: u8,
    discover: bool,
    refuse_at: Option<u8>,
    write: bool,
    relax: bool,
    /// 0: no paging, else pages of 1 to 4 events.
    page_size: u8,
    /// 1 to 6.
    max_attempts: u8,
    /// Appends by other writers before the command starts: (stream, events).
    history: Vec<(u8, u8)>,
    /// An earlier execution of the same command id wrote to the first stream.
    committed_earlier: bool,
    /// Seed the first stream from a cache with its first n events.
    prime: Option<u8>,
}

#[derive(Debug, Arbitrary)]
enum ReadAction {
    Faithful,
    WritesFirst { stream: u8, count: u8 },
    Spoil(ReadSpoil),
    Transient,
    Permanent,
    Timeout,
    StaleFirst,
    Twice,
}

#[derive(Debug, Arbitrary)]
enum ReadSpoil {
    DropSlice(u8),
    CopySlice(u8),
    SwapSlices,
    RenameSlice(u8),
    Head { slice: u8, delta: i8 },
    DropEvent { slice: u8, event: u8 },
    CopyEvent { slice: u8, event: u8 },
    Version { slice: u8, event: u8, delta: i8 },
    StreamOf { slice: u8, event: u8 },
    Position { slice: u8, event: u8, position: u8 },
    ShiftPositions { slice: u8, delta: i16 },
    SwapPositions { slice: u8, event: u8 },
    Payload { slice: u8, event: u8, text: PayloadText },
    EventType { slice: u8, event: u8 },
    Schema { slice: u8, event: u8, version: u8 },
    ClearEvents(u8),
}

#[derive(Debug, Arbitrary)]
enum PayloadText {
    Broken,
    WrongShape,
    OtherTag(u8),
    Spaced,
}

#[derive(Debug, Arbitrary)]
enum AppendAction {
    Faithful,
    WritesFirst { stream: u8, count: u8 },
    LostAck,
    UnknownNotApplied,
    Transient,
    Permanent,
    Timeout { applied: bool },
    Spoil(ReceiptSpoil),
    BogusConflict { actual: u8 },
}

#[derive(Debug, Arbitrary)]
enum ReceiptSpoil {
    CommandId,
    FirstVersion(i8),
    LastVersion(i8),
    DropPosition,
    AddPosition(u8),
    ZeroPosition,
    SwapPositions,
    DuplicateStream,
    RenameStream,
    DropStream,
    AddStream,
    FlipDeduplicated,
    Reverse,
}

/// What the next `poll` must say, given the answer just delivered.
#[derive(Debug)]
enum Expect {
    /// Anything but a contract violation.
    Honest,
    /// `Store(ContractViolation)` on the read, or `Decode` when allowed.
    ReadRefused { or_decode: bool },
    /// `Decode`.
    Undecodable,
    /// `Executed` with this receipt.
    Committed(AppendReceipt),
    /// `OutcomeUnknown` whose last error is a contract violation.
    ReceiptRefused,
    /// `Store(Permanent)`.
    Permanent,
}

fn stream(name: &str) -> StreamId {
    StreamId::new(name).expect("valid")
}

struct Harness {
    store: MemoryStore,
    /// Events delivered in accepted answers, per stream, in version order.
    delivered: BTreeMap<StreamId, Vec<RecordedEvent>>,
    next_tag: u64,
    writes: u64,
    now: Time,
}

impl Harness {
    /// Another writer appends `count` events to `stream`.
    fn write(&mut self, stream: &StreamId, count: u8, command_id: Option<CommandId>) {
        if self.store.events().len() > 64 {
            return;
        }
        self.writes += 1;
        let entropy = |n: u64| {
            let mut bytes = [0u8; 10];
            bytes[2..].copy_from_slice(&n.to_be_bytes());
            bytes
        };
        let command_id = command_id.unwrap_or_else(|| CommandId::v7(self.now, entropy(self.writes)));
        let events = (0..count.clamp(1, 4))
            .map(|_| {
                self.next_tag += 1;
                NewEvent {
                    event_id: EventId::v7(self.now, entropy(self.next_tag)),
                    event_type: EventType::new("Tagged").expect("valid"),
                    schema_version: 1,
                    payload: Payload::from_trusted_json(self.next_tag.to_string()),
                }
            })
            .collect();
        let request = AppendRequest {
            metadata: Arc::new(EventMetadata::new(command_id, self.now)),
            streams: vec![StreamAppend {
                stream: stream.clone(),
                expected: ExpectedVersion::Any,
                events,
                tombstone: false,
            }],
        };
        self.store.append(&request).expect("an append with Any commits");
    }

    /// The reference fold: every accepted event, in global order.
    fn reference(&self) -> Fold {
        let mut all: Vec<&RecordedEvent> = self.delivered.values().flatten().collect();
        all.sort_by_key(|e| e.position);
        all.iter()
            .map(|e| (e.stream_id.clone(), tag_of(e).expect("accepted events decode")))
            .collect()
    }

    /// Judges a read answer by the contract: (breaks it, holds an event
    /// that does not decode).
    fn judge_read(&self, request: &ReadRequest, response: &ReadResponse) -> (bool, bool) {
        let undecodable = response
            .streams
            .iter()
            .flat_map(|s| &s.events)
            .any(|e| tag_of(e).is_none());
        if response.streams.len() != request.streams.len() {
            return (true, undecodable);
        }
        let mut positions: Vec<GlobalPosition> = self.delivered.values().flatten().map(|e| e.position).collect();
        for (read, slice) in request.streams.iter().zip(&response.streams) {
            if slice.stream != read.stream || slice.head < read.after {
                return (true, undecodable);
            }
            let mut version = read.after.get();
            let mut position = self
                .delivered
                .get(&read.stream)
                .and_then(|events| events.last())
                .map_or(0, |e| e.position.get());
            for event in &slice.events {
                version += 1;
                if event.stream_id != read.stream || event.version.get() != version || event.position.get() <= position
                {
                    return (true, undecodable);
                }
                position = event.position.get();
                positions.push(event.position);
            }
            if version > slice.head.get() || (slice.head > read.after && slice.events.is_empty()) {
                return (true, undecodable);
            }
        }
        positions.sort_unstable();
        let unique = positions.windows(2).all(|pair| pair[0] != pair[1]);
        (!unique, undecodable)
    }

    fn accept(&mut self, response: &ReadResponse) {
        for slice in &response.streams {
            self.delivered
                .entry(slice.stream.clone())
                .or_default()
                .extend(slice.events.iter().cloned());
        }
    }
}

/// The tag an event decodes to, if it decodes.
fn tag_of(event: &RecordedEvent) -> Option<u64> {
    let decodes = event.event_type.as_str() == "Tagged" && event.schema_version == 1;
    decodes
        .then(|| serde_json::from_str::<u64>(event.payload.as_json()).ok())
        .flatten()
}

/// Judges a receipt by the contract: may it answer `request`?
fn receipt_fits(request: &AppendRequest, receipt: &AppendReceipt) -> bool {
    if receipt.command_id != request.metadata.command_id {
        return false;
    }
    let mut all_positions = Vec::new();
    let mut streams = Vec::new();
    for commit in &receipt.streams {
        let n = commit.positions.len() as u64;
        let (first, last) = (commit.first_version.get(), commit.last_version.get());
        if n == 0 || first == 0 || last < first || last - first + 1 != n {
            return false;
        }
        let mut previous = 0;
        for position in &commit.positions {
            if position.get() <= previous {
                return false;
            }
            previous = position.get();
        }
        all_positions.extend(commit.positions.iter().copied());
        streams.push(&commit.stream);
    }
    all_positions.sort_unstable();
    streams.sort_unstable();
    if all_positions.windows(2).any(|p| p[0] == p[1]) || streams.windows(2).any(|s| s[0] == s[1]) {
        return false;
    }
    if receipt.deduplicated {
        return true;
    }
    let written: Vec<&StreamAppend> = request.streams.iter().filter(|e| !e.events.is_empty()).collect();
    written.len() == receipt.streams.len()
        && written.iter().zip(&receipt.streams).all(|(entry, commit)| {
            let before = commit.first_version.get() - 1;
            let allowed = match entry.expected {
                ExpectedVersion::Any => true,
                ExpectedVersion::NoStream => before == 0,
                ExpectedVersion::StreamExists => before > 0,
                ExpectedVersion::Exact(v) => before == v.get(),
            };
            entry.stream == commit.stream && commit.positions.len() == entry.events.len() && allowed
        })
}

fn spoil_read(response: &mut ReadResponse, spoil: &ReadSpoil) {
    let slices = response.streams.len();
    if slices == 0 {
        return;
    }
    let pick = |i: u8| usize::from(i) % slices;
    let bump = |v: u64, d: i64| v.saturating_add_signed(d);
    match *spoil {
        ReadSpoil::DropSlice(i) => {
            response.streams.remove(pick(i));
        }
        ReadSpoil::CopySlice(i) => {
            let copy = response.streams[pick(i)].clone();
            response.streams.push(copy);
        }
        ReadSpoil::SwapSlices => response.streams.reverse(),
        ReadSpoil::RenameSlice(i) => response.streams[pick(i)].stream = stream("elsewhere"),
        ReadSpoil::ClearEvents(i) => response.streams[pick(i)].events.clear(),
        ReadSpoil::Head { slice, delta } => {
            let s = &mut response.streams[pick(slice)];
            s.head = StreamVersion::new(bump(s.head.get(), i64::from(delta)));
        }
        ReadSpoil::ShiftPositions { slice, delta } => {
            for e in &mut response.streams[pick(slice)].events {
                e.position = GlobalPosition::new(bump(e.position.get(), i64::from(delta)));
            }
        }
        ref spoil => {
            let events = &mut response.streams[pick(match spoil {
                ReadSpoil::DropEvent { slice, .. }
                | ReadSpoil::CopyEvent { slice, .. }
                | ReadSpoil::Version { slice, .. }
                | ReadSpoil::StreamOf { slice, .. }
                | ReadSpoil::Position { slice, .. }
                | ReadSpoil::SwapPositions { slice, .. }
                | ReadSpoil::Payload { slice, .. }
                | ReadSpoil::EventType { slice, .. }
                | ReadSpoil::Schema { slice, .. } => *slice,
                _ => 0,
            })]
            .events;
            if events.is_empty() {
                return;
            }
            let n = events.len();
            let at = |i: u8| usize::from(i) % n;
            match spoil {
                ReadSpoil::DropEvent { event, .. } => {
                    events.remove(at(*event));
                }
                ReadSpoil::CopyEvent { event, .. } => {
                    let copy = events[at(*event)].clone();
                    events.insert(at(*event), copy);
                }
                ReadSpoil::Version { event, delta, .. } => {
                    let e = &mut events[at(*event)];
                    e.version = StreamVersion::new(bump(e.version.get(), i64::from(*delta)));
                }
                ReadSpoil::StreamOf { event, .. } => events[at(*event)].stream_id = stream("elsewhere"),
                ReadSpoil::Position { event, position, .. } => {
                    events[at(*event)].position = GlobalPosition::new(u64::from(*position));
                }
                ReadSpoil::SwapPositions { event, .. } => {
                    let (i, j) = (at(*event), (at(*event) + 1) % n);
                    let (a, b) = (events[i].position, events[j].position);
                    events[i].position = b;
                    events[j].position = a;
                }
                ReadSpoil::Payload { event, text, .. } => {
                    events[at(*event)].payload = Payload::from_trusted_json(match text {
                        PayloadText::Broken => "{".to_owned(),
                        PayloadText::WrongShape => "\"five\"".to_owned(),
                        PayloadText::OtherTag(tag) => tag.to_string(),
                        PayloadText::Spaced => format!(" {} ", events[at(*event)].payload.as_json()),
                    });
                }
                ReadSpoil::EventType { event, .. } => {
                    events[at(*event)].event_type = EventType::new("Other").expect("valid");
                }
                ReadSpoil::Schema { event, version, .. } => events[at(*event)].schema_version = u32::from(*version),
                _ => {}
            }
        }
    }
}

fn spoil_receipt(receipt: &mut AppendReceipt, spoil: &ReceiptSpoil) {
    let bump = |v: StreamVersion, d: i8| StreamVersion::new(v.get().saturating_add_signed(i64::from(d)));
    match spoil {
        ReceiptSpoil::CommandId => receipt.command_id = CommandId::v7(Time::ZERO, [9; 10]),
        ReceiptSpoil::FlipDeduplicated => receipt.deduplicated = !receipt.deduplicated,
        ReceiptSpoil::Reverse => receipt.streams.reverse(),
        ReceiptSpoil::DropStream => {
            receipt.streams.pop();
        }
        ReceiptSpoil::AddStream => receipt.streams.push(eventcore::StreamCommit {
            stream: stream("elsewhere"),
            first_version: StreamVersion::new(1),
            last_version: StreamVersion::new(1),
            positions: vec![GlobalPosition::new(1_000)],
        }),
        ReceiptSpoil::DuplicateStream => {
            if let Some(commit) = receipt.streams.first().cloned() {
                receipt.streams.push(commit);
            }
        }
        spoil => {
            let Some(commit) = receipt.streams.first_mut() else {
                return;
            };
            match spoil {
                ReceiptSpoil::FirstVersion(d) => commit.first_version = bump(commit.first_version, *d),
                ReceiptSpoil::LastVersion(d) => commit.last_version = bump(commit.last_version, *d),
                ReceiptSpoil::DropPosition => {
                    commit.positions.pop();
                }
                ReceiptSpoil::AddPosition(p) => commit.positions.push(GlobalPosition::new(u64::from(*p))),
                ReceiptSpoil::ZeroPosition => {
                    if let Some(p) = commit.positions.first_mut() {
                        *p = GlobalPosition::START;
                    }
                }
                ReceiptSpoil::SwapPositions => commit.positions.reverse(),
                ReceiptSpoil::RenameStream => commit.stream = stream("elsewhere"),
                _ => {}
            }
        }
    }
}

fn is_violation(error: &StoreError) -> bool {
    matches!(error, StoreError::ContractViolation { .. })
}

/// Checks the end of the execution against what the last answer implies.
fn check_done(result: &Result<eventcore::Executed, CommandError<Refused>>, expect: &Expect) {
    match (expect, result) {
        (Expect::ReadRefused { .. }, Err(CommandError::Store(StoreError::ContractViolation { operation, .. }))) => {
            assert_eq!(*operation, Operation::Read);
        }
        (Expect::ReadRefused { or_decode: true }, Err(CommandError::Decode(_))) => {}
        (Expect::Undecodable, Err(CommandError::Decode(_))) => {}
        (Expect::Committed(receipt), Ok(executed)) => {
            assert_eq!(
                executed.appended.as_ref(),
                Some(receipt),
                "the receipt handed on is not the one given"
            );
        }
        (
            Expect::ReceiptRefused,
            Err(CommandError::OutcomeUnknown {
                last: StoreError::ContractViolation { operation, .. },
                ..
            }),
        ) => assert_eq!(*operation, Operation::Append),
        (Expect::Permanent, Err(CommandError::Store(StoreError::Permanent { .. }))) => {}
        (Expect::Honest, result) => {
            let violation = match result {
                Err(CommandError::Decode(_)) => true,
                Err(CommandError::Store(e)) => is_violation(e),
                Err(CommandError::OutcomeUnknown { last, .. } | CommandError::RetriesExhausted { last, .. }) => {
                    is_violation(last)
                }
                Err(CommandError::DeadlineExceeded { last: Some(last), .. }) => is_violation(last),
                _ => false,
            };
            assert!(!violation, "honest answers were called broken: {result:?}");
        }
        (expect, result) => panic!("expected {expect:?}, the machine ended with {result:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(scenario) = Scenario::arbitrary(&mut u) else {
        return;
    };
    let names = ["s0", "s1", "s2"];
    let declared: Vec<StreamId> = names[..usize::from(scenario.streams % 3) + 1]
        .iter()
        .map(|n| stream(n))
        .collect();
    let discovered = stream("found");
    let now = Time::from_unix_millis(1_000);
    let command_id = CommandId::v7(now, [1; 10]);
    let decisions = Arc::new(Mutex::new(Vec::new()));
    let probe = Probe {
        declared: declared.clone(),
        discover: scenario.discover.then(|| discovered.clone()),
        refuse_at: scenario.refuse_at.map(|r| usize::from(r % 4)),
        write: scenario.write,
        relax: scenario.relax,
        decisions: Arc::clone(&decisions),
    };
    let policy = ExecutionPolicy::default()
        .with_page_size(NonZeroU32::new(u32::from(scenario.page_size % 5)))
        .with_retry(RetryPolicy {
            max_attempts: u32::from(scenario.max_attempts % 6) + 1,
            ..RetryPolicy::default()
        });

    let mut h = Harness {
        store: MemoryStore::new(),
        delivered: BTreeMap::new(),
        next_tag: 0,
        writes: 0,
        now,
    };
    let all_streams: Vec<StreamId> = names.iter().map(|n| stream(n)).chain([discovered.clone()]).collect();
    for &(s, count) in scenario.history.iter().take(8) {
        h.write(&all_streams[usize::from(s) % all_streams.len()], count, None);
    }
    if scenario.committed_earlier {
        h.write(&declared[0], 1, Some(command_id));
    }

    let mut machine = CommandMachine::new(probe, policy, ExecutionContext::new(command_id), now, 7);
    if let Some(n) = scenario.prime {
        let whole = h
            .store
            .read(&ReadRequest::new([declared[0].clone()]))
            .expect("a valid read");
        let events: Vec<RecordedEvent> = whole.streams[0].events.iter().take(usize::from(n)).cloned().collect();
        assert!(machine.prime(&declared[0], &events), "a contiguous prefix primes");
        h.delivered.entry(declared[0].clone()).or_default().extend(events);
    }

    // Every decision rests on the reference fold at the time it is made:
    // checked after each answer and after each poll (which decides when
    // every stream was primed).
    let mut checked = 0;
    let mut check_decisions = |h: &Harness| {
        let log = decisions.lock().expect("not poisoned");
        for fold in &log[checked..] {
            assert_eq!(*fold, h.reference(), "decide saw a wrong fold");
        }
        checked = log.len();
    };
    let mut expect = Expect::Honest;
    for _ in 0..10_000 {
        check_decisions(&h);
        let step = machine.poll();
        check_decisions(&h);
        if !matches!(expect, Expect::Honest) && !matches!(step, Step::Done(_)) {
            panic!("expected the execution to end ({expect:?}), got {step:?}");
        }
        match step {
            Step::Done(result) => {
                check_done(&result, &expect);
                assert!(matches!(machine.poll(), Step::Finished));
                return;
            }
            Step::Finished => panic!("finished without a result"),
            Step::Wait { until } => {
                h.now = h.now.max(until);
                machine.on_wake(h.now);
            }
            Step::Read { id, deadline, request } => {
                assert!(request.validate().is_ok(), "{request:?}");
                for read in &request.streams {
                    let held = h.delivered.get(&read.stream).map_or(0, Vec::len) as u64;
                    assert_eq!(
                        read.after.get(),
                        held,
                        "asked for `{}` after what it holds",
                        read.stream
                    );
                }
                let action = ReadAction::arbitrary(&mut u).unwrap_or(ReadAction::Faithful);
                if let ReadAction::WritesFirst { stream, count } = action {
                    h.write(&all_streams[usize::from(stream) % all_streams.len()], count, None);
                }
                let mut response = h.store.read(&request).expect("a valid read");
                let before = machine.stats().ignored_responses;
                match action {
                    ReadAction::Transient => {
                        machine.on_read(id, Err(StoreError::transient(Operation::Read, "fuzz")), h.now);
                        continue;
                    }
                    ReadAction::Permanent => {
                        machine.on_read(id, Err(StoreError::permanent(Operation::Read, "fuzz")), h.now);
                        expect = Expect::Permanent;
                        continue;
                    }
                    ReadAction::Timeout => {
                        h.now = h.now.max(deadline);
                        machine.on_wake(h.now);
                        continue;
                    }
                    ReadAction::StaleFirst => {
                        machine.on_read(RequestId::new(id.get() + 1_000), Ok(response.clone()), h.now);
                        assert_eq!(machine.stats().ignored_responses, before + 1, "a stale answer was used");
                    }
                    ReadAction::Spoil(ref spoil) => spoil_read(&mut response, spoil),
                    _ => {}
                }
                let (violation, undecodable) = h.judge_read(&request, &response);
                let seen = decisions.lock().expect("not poisoned").len();
                machine.on_read(id, Ok(response.clone()), h.now);
                if violation || undecodable {
                    assert_eq!(
                        decisions.lock().expect("not poisoned").len(),
                        seen,
                        "decided on a broken answer: {response:?}"
                    );
                    expect = if violation {
                        Expect::ReadRefused { or_decode: undecodable }
                    } else {
                        Expect::Undecodable
                    };
                    continue;
                }
                h.accept(&response);
                if let ReadAction::Twice = action {
                    let ignored = machine.stats().ignored_responses;
                    machine.on_read(id, Ok(response), h.now);
                    assert_eq!(
                        machine.stats().ignored_responses,
                        ignored + 1,
                        "an answer was used twice"
                    );
                }
            }
            Step::Append { id, deadline, request } => {
                assert!(request.validate(&AppendLimits::default()).is_ok(), "{request:?}");
                assert_eq!(request.metadata.command_id, command_id);
                let action = AppendAction::arbitrary(&mut u).unwrap_or(AppendAction::Faithful);
                if let AppendAction::WritesFirst { stream, count } = action {
                    let target = &request.streams[usize::from(stream) % request.streams.len()].stream;
                    h.write(target, count, None);
                }
                let answer = match action {
                    AppendAction::Faithful | AppendAction::WritesFirst { .. } => h.store.append(&request),
                    AppendAction::LostAck => {
                        let _ = h.store.append(&request);
                        Err(StoreError::OutcomeUnknown {
                            operation: Operation::Append,
                            message: "fuzz: acknowledgement lost".into(),
                            source: None,
                        })
                    }
                    AppendAction::UnknownNotApplied => Err(StoreError::OutcomeUnknown {
                        operation: Operation::Append,
                        message: "fuzz".into(),
                        source: None,
                    }),
                    AppendAction::Transient => Err(StoreError::transient(Operation::Append, "fuzz")),
                    AppendAction::Permanent => Err(StoreError::permanent(Operation::Append, "fuzz")),
                    AppendAction::Timeout { applied } => {
                        if applied {
                            let _ = h.store.append(&request);
                        }
                        h.now = h.now.max(deadline);
                        machine.on_wake(h.now);
                        continue;
                    }
                    AppendAction::Spoil(ref spoil) => h.store.append(&request).map(|mut receipt| {
                        spoil_receipt(&mut receipt, spoil);
                        receipt
                    }),
                    AppendAction::BogusConflict { actual } => Err(StoreError::Conflict(Conflict {
                        stream: request.streams[0].stream.clone(),
                        expected: request.streams[0].expected,
                        actual: StreamVersion::new(u64::from(actual)),
                    })),
                };
                expect = match &answer {
                    Ok(receipt) if receipt_fits(&request, receipt) => Expect::Committed(receipt.clone()),
                    Ok(receipt) => {
                        assert!(
                            matches!(action, AppendAction::Spoil(_)),
                            "the memory store's own receipt does not fit: {receipt:?} for {request:?}"
                        );
                        Expect::ReceiptRefused
                    }
                    Err(_) => Expect::Honest,
                };
                machine.on_append(id, answer, h.now);
            }
        }
    }
    panic!("the execution did not finish");
});
