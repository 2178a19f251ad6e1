//! Property tests of the sans-IO `CommandMachine`, driven directly against a
//! synchronous `MemoryStore` under a proptest-generated schedule of faults:
//! transient errors, other writers slipping in between read and append,
//! appends that commit but report an unknown outcome, lost and late
//! responses, stalls past the timeouts, and stale or duplicated responses
//! re-delivered with old request ids.
//!
//! Properties checked on every schedule:
//!
//! * the machine never appends to a stream it has not read, and pins every
//!   stream to the version it last read;
//! * attempts never exceed `RetryPolicy::max_attempts`;
//! * discovery reaches its fixed point, or fails with `DiscoveryLimit` naming
//!   the streams of the round over the limit;
//! * a stale or duplicated response changes nothing: the run with them and
//!   the run without them emit the same steps and end the same way;
//! * the same scenario (seed and responses) gives the same run, step by step;
//! * a success is committed exactly once, an unknown outcome at most once,
//!   and any other failure not at all (checked in the store).

use eventcore::*;
use eventcore_memory::MemoryStore;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

// ---------------------------------------------------------------------------
// The command under test
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Ev {
    /// Points at the next stream to read (dynamic discovery).
    Link { next: String },
    /// Written by other writers.
    Noise,
    /// Written by the command, once per declared stream; carries a digest
    /// of everything it folded, in fold order.
    Touched { folded: u64 },
}
impl Event for Ev {}

#[derive(Debug, thiserror::Error)]
#[error("refused by the domain")]
struct Refused;

/// Reads its declared streams and follows every `Link` it finds; then
/// touches each declared stream once. Optionally refuses, or also writes to
/// a stream it never read (a buggy command).
struct Probe {
    declared: Vec<StreamId>,
    refuse: bool,
    rogue: Option<StreamId>,
}

impl Command for Probe {
    type Event = Ev;
    type State = Folded;
    type Error = Refused;

    fn streams(&self) -> Vec<StreamId> {
        self.declared.clone()
    }

    fn apply(&self, state: &mut Folded, stream: &StreamId, event: &Ev) {
        // FNV-1a over the stream and the event, chained: the digest depends
        // on the order events were folded in.
        let text = format!("{stream}:{event:?};");
        for byte in text.bytes() {
            state.digest = (state.digest ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        if let Ev::Link { next } = event {
            state.links.insert(next.clone());
        }
    }

    fn decide(&self, state: &Folded, out: &mut Decision<Ev>) -> Result<(), Refused> {
        if self.refuse {
            return Err(Refused);
        }
        for next in &state.links {
            out.read(id(next));
        }
        let touched = Ev::Touched { folded: state.digest };
        if let Some(rogue) = &self.rogue {
            out.emit(rogue, touched.clone());
        }
        for stream in &self.declared {
            out.emit(stream, touched.clone());
        }
        Ok(())
    }
}

/// What the probe folds: the links it found, and a digest of the fold.
#[derive(Debug)]
struct Folded {
    links: BTreeSet<String>,
    digest: u64,
}

impl Default for Folded {
    fn default() -> Self {
        Folded {
            links: BTreeSet::new(),
            digest: 0xcbf2_9ce4_8422_2325,
        }
    }
}

fn id(name: &str) -> StreamId {
    StreamId::new(name).expect("valid stream id")
}

fn pool(i: usize) -> StreamId {
    id(&format!("p{i}"))
}

fn chain(i: usize) -> StreamId {
    id(&format!("c{i}"))
}

const POOL: usize = 4;

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

/// What happens to one request.
#[derive(Clone, Debug)]
enum Fault {
    /// Served and answered normally.
    Deliver,
    /// Answered with a transient error; not served.
    Transient,
    /// Another writer appends to stream `k` first; then served normally.
    Interleave(u8),
    /// Served; the answer is lost as an unknown outcome (a read times out).
    CommitUnknown,
    /// The answer never arrives; an append is served or not.
    Lose { served: bool },
    /// An append is held in flight and lands just before the next request
    /// (or after the machine finished); its answer never arrives.
    Late,
    /// Served, but the clock jumps by this many tens of milliseconds before
    /// the answer; past the machine's deadline the driver wakes it instead.
    Stall(u16),
}

/// A response delivered that the machine is not waiting for.
#[derive(Clone, Debug)]
enum Stale {
    /// An earlier response (by index into the history), re-delivered with
    /// its old request id, before or after the real answer.
    Replay { before: bool, index: u16 },
    /// An answer of the wrong kind carrying the id of the request in flight.
    WrongKind,
}

#[derive(Clone, Debug)]
struct Action {
    fault: Fault,
    latency_ms: u16,
    stale: Option<Stale>,
}

#[derive(Clone, Debug)]
struct Scenario {
    chain_len: usize,
    prefill: Vec<u8>,
    declared_pool: Vec<usize>,
    discovery_limit: u32,
    max_attempts: u32,
    timeout_ms: Option<u64>,
    page_size: Option<u32>,
    refuse: bool,
    rogue: bool,
    seed: u64,
    actions: Vec<Action>,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        6 => Just(Fault::Deliver),
        2 => Just(Fault::Transient),
        3 => any::<u8>().prop_map(Fault::Interleave),
        2 => Just(Fault::CommitUnknown),
        1 => any::<bool>().prop_map(|served| Fault::Lose { served }),
        1 => Just(Fault::Late),
        1 => (1u16..40).prop_map(Fault::Stall),
    ]
}

fn stale() -> impl Strategy<Value = Option<Stale>> {
    prop_oneof![
        3 => Just(None),
        2 => (any::<bool>(), any::<u16>()).prop_map(|(before, index)| Some(Stale::Replay { before, index })),
        1 => Just(Some(Stale::WrongKind)),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    (fault(), 0u16..150, stale()).prop_map(|(fault, latency_ms, stale)| Action {
        fault,
        latency_ms,
        stale,
    })
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        (
            0usize..4,
            proptest::collection::vec(0u8..3, POOL),
            proptest::sample::subsequence((0..POOL).collect::<Vec<_>>(), 0..=3),
            0u32..6,
            prop_oneof![1 => 1u32..3, 3 => 3u32..12],
        ),
        (
            prop_oneof![2 => Just(None), 1 => (20u64..3_000).prop_map(Some)],
            prop_oneof![2 => Just(None), 1 => (1u32..3).prop_map(Some)],
            prop::bool::weighted(0.05),
            prop::bool::weighted(0.05),
            any::<u64>(),
            proptest::collection::vec(action(), 0..30),
        ),
    )
        .prop_map(
            |(
                (chain_len, prefill, declared_pool, discovery_limit, max_attempts),
                (timeout_ms, page_size, refuse, rogue, seed, actions),
            )| Scenario {
                chain_len,
                prefill,
                declared_pool,
                discovery_limit,
                max_attempts,
                timeout_ms,
                page_size,
                refuse,
                rogue,
                seed,
                actions,
            },
        )
}

impl Scenario {
    fn declared(&self) -> Vec<StreamId> {
        let mut declared = vec![chain(0)];
        declared.extend(self.declared_pool.iter().map(|&i| pool(i)));
        declared
    }

    fn policy(&self) -> ExecutionPolicy {
        ExecutionPolicy {
            retry: RetryPolicy {
                max_attempts: self.max_attempts,
                initial_backoff: Duration::from_millis(1),
                multiplier: 2,
                max_backoff: Duration::from_millis(20),
            },
            discovery_limit: self.discovery_limit,
            read_timeout: Duration::from_millis(100),
            append_timeout: Duration::from_millis(100),
            timeout: self.timeout_ms.map(Duration::from_millis),
            page_size: self.page_size.and_then(NonZeroU32::new),
        }
    }

    fn command_id(&self) -> CommandId {
        CommandId::v7(start(), [0xC0; 10])
    }

    /// Every stream another writer may touch.
    fn all_streams(&self) -> Vec<StreamId> {
        let mut all: Vec<StreamId> = (0..POOL).map(pool).collect();
        all.extend((0..=self.chain_len).map(chain));
        all
    }

    /// The store before the command runs: a chain `c0 -> c1 -> ... -> cN`
    /// of links, and some noise in the pool streams.
    fn initial_store(&self) -> MemoryStore {
        let mut store = MemoryStore::new();
        let mut n = 0u64;
        for i in 0..self.chain_len {
            let next = chain(i + 1).as_str().to_owned();
            foreign_write(&mut store, &chain(i), Ev::Link { next }, &mut n);
        }
        for (i, &count) in self.prefill.iter().enumerate() {
            for _ in 0..count {
                foreign_write(&mut store, &pool(i), Ev::Noise, &mut n);
            }
        }
        store
    }
}

fn start() -> Time {
    Time::from_unix_millis(1_700_000_000_000)
}

/// Another writer appends `event` to `stream`.
fn foreign_write(store: &mut MemoryStore, stream: &StreamId, event: Ev, n: &mut u64) {
    *n += 1;
    let mut entropy = [0xF0u8; 10];
    entropy[2..].copy_from_slice(&n.to_le_bytes());
    let encoded = event.encode().expect("encodes");
    let request = AppendRequest {
        metadata: Arc::new(EventMetadata::new(CommandId::v7(start(), entropy), start())),
        streams: vec![StreamAppend {
            stream: stream.clone(),
            expected: ExpectedVersion::Any,
            events: vec![NewEvent {
                event_id: EventId::v7(start(), entropy),
                event_type: encoded.event_type,
                schema_version: encoded.schema_version,
                payload: encoded.payload,
            }],
            tombstone: false,
        }],
    };
    store.append(&request).expect("a foreign write with Any commits");
}

// ---------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Response {
    Read(RequestId, Result<ReadResponse, StoreError>),
    Append(RequestId, Result<AppendReceipt, StoreError>),
}

/// Everything one run produced.
struct Run {
    /// Every step the machine emitted, in order.
    transcript: Vec<String>,
    outcome: Result<Executed, CommandError<Refused>>,
    /// The machine's streams at the end, in the order first requested.
    streams: Vec<StreamId>,
    store: MemoryStore,
    /// Events of the command id already in the store before this run (an
    /// earlier execution's commit, when re-executing).
    own_before: usize,
    /// Whether the machine re-sent events already stored (it found its own
    /// earlier commit and asked for the original receipt).
    settled: bool,
    /// The last append the machine emitted.
    last_append: Option<AppendRequest>,
    /// Contract breaches seen while driving.
    violations: Vec<String>,
}

impl Run {
    /// The outcome, ignoring how many responses were ignored (the only
    /// thing stale deliveries may change).
    fn outcome_ignoring_stale_count(&self) -> String {
        match &self.outcome {
            Ok(executed) => {
                let mut executed = executed.clone();
                executed.stats.ignored_responses = 0;
                format!("{executed:?}")
            }
            Err(error) => format!("{error:?}"),
        }
    }

    fn events_of(&self, command_id: CommandId) -> Vec<&RecordedEvent> {
        self.store
            .events()
            .iter()
            .filter(|e| e.metadata.command_id == command_id)
            .collect()
    }
}

fn drive(scenario: &Scenario, with_stale: bool) -> Run {
    drive_on(scenario, scenario.initial_store(), &scenario.actions, with_stale)
}

/// Runs the scenario's command against `store`, answering requests as
/// `actions` say (then normally once they run out).
fn drive_on(scenario: &Scenario, mut store: MemoryStore, actions: &[Action], with_stale: bool) -> Run {
    let declared = scenario.declared();
    let rogue = scenario.rogue.then(|| id("rogue"));
    let command = Probe {
        declared: declared.clone(),
        refuse: scenario.refuse,
        rogue,
    };
    let context = ExecutionContext::new(scenario.command_id());
    let mut machine = CommandMachine::new(command, scenario.policy(), context, start(), scenario.seed);
    let deadline = scenario
        .timeout_ms
        .map_or(Time::MAX, |ms| start().saturating_add(Duration::from_millis(ms)));
    let all_streams = scenario.all_streams();
    let max_attempts = scenario.max_attempts;

    let own_before = store
        .events()
        .iter()
        .filter(|e| e.metadata.command_id == scenario.command_id())
        .count();
    let mut settled = false;
    let mut now = start();
    let mut actions = actions.iter();
    let mut history: Vec<Response> = Vec::new();
    let mut late: Vec<AppendRequest> = Vec::new();
    let mut heads: BTreeMap<StreamId, StreamVersion> = BTreeMap::new();
    let mut last_append: Option<AppendRequest> = None;
    let mut transcript = Vec::new();
    let mut violations = Vec::new();
    let mut foreign = 1_000u64;
    let default_action = Action {
        fault: Fault::Deliver,
        latency_ms: 1,
        stale: None,
    };

    let outcome = 'run: {
        for _ in 0..5_000 {
            if machine.attempts() > max_attempts {
                violations.push(format!("{} attempts, max {max_attempts}", machine.attempts()));
            }
            let step = machine.poll();
            match step {
                Step::Read {
                    id: request_id,
                    request,
                    ..
                } => {
                    if now >= deadline {
                        violations.push(format!("read emitted at {now:?}, past the deadline {deadline:?}"));
                    }
                    transcript.push(format!("{request:?}"));
                    for append in late.drain(..) {
                        let _ = store.append(&append);
                    }
                    let action = actions.next().unwrap_or(&default_action);
                    deliver_stale(&mut machine, &action.stale, true, &history, now, with_stale, true);
                    if let Fault::Interleave(k) = action.fault {
                        let stream = &all_streams[usize::from(k) % all_streams.len()];
                        foreign_write(&mut store, stream, Ev::Noise, &mut foreign);
                    }
                    now = now.saturating_add(Duration::from_millis(u64::from(action.latency_ms)));
                    let served = store.read(&request);
                    let answer = match action.fault {
                        Fault::Deliver | Fault::Interleave(_) => Some(served.clone()),
                        Fault::Transient => Some(Err(StoreError::transient(Operation::Read, "injected"))),
                        Fault::CommitUnknown => Some(Err(StoreError::Timeout {
                            operation: Operation::Read,
                            after: Duration::from_millis(100),
                        })),
                        Fault::Lose { .. } | Fault::Late => None,
                        Fault::Stall(tens) => {
                            now = now.saturating_add(Duration::from_millis(10 * u64::from(tens)));
                            if machine.next_wake().is_some_and(|wake| now >= wake) {
                                None
                            } else {
                                Some(served.clone())
                            }
                        }
                    };
                    history.push(Response::Read(request_id, served));
                    if let Some(answer) = answer {
                        if let Ok(response) = &answer {
                            for slice in &response.streams {
                                heads.insert(slice.stream.clone(), slice.head);
                            }
                        }
                        machine.on_read(request_id, answer, now);
                    } else if matches!(action.fault, Fault::Stall(_)) {
                        machine.on_wake(now);
                    }
                    deliver_stale(&mut machine, &action.stale, false, &history, now, with_stale, true);
                }
                Step::Append {
                    id: request_id,
                    request,
                    ..
                } => {
                    if now >= deadline {
                        violations.push(format!("append emitted at {now:?}, past the deadline {deadline:?}"));
                    }
                    transcript.push(format!("{request:?}"));
                    let resend = last_append
                        .as_ref()
                        .is_some_and(|last| last.streams == request.streams && last.metadata == request.metadata);
                    // Re-sending events already stored settles an earlier
                    // commit: each stream is pinned below its first stored
                    // event, so that the append could never write again.
                    let stored_version = |event: &NewEvent| {
                        store
                            .events()
                            .iter()
                            .find(|e| e.event_id == event.event_id)
                            .map(|e| e.version)
                    };
                    for entry in &request.streams {
                        let settle_pin = entry
                            .events
                            .first()
                            .and_then(stored_version)
                            .map(|v| ExpectedVersion::Exact(StreamVersion::new(v.get() - 1)));
                        settled |= settle_pin.is_some();
                        let pin = settle_pin.or(heads.get(&entry.stream).map(|&h| ExpectedVersion::from_read(h)));
                        match heads.get(&entry.stream) {
                            None => violations.push(format!("append to unread stream `{}`", entry.stream)),
                            Some(&head) if !resend && Some(entry.expected) != pin => {
                                violations.push(format!(
                                    "`{}` pinned to {} but last read at version {head}",
                                    entry.stream, entry.expected
                                ));
                            }
                            Some(_) => {}
                        }
                    }
                    if request.command_id() != scenario.command_id() {
                        violations.push("append under another command id".to_owned());
                    }
                    last_append = Some(AppendRequest::clone(&request));
                    for append in late.drain(..) {
                        let _ = store.append(&append);
                    }
                    let action = actions.next().unwrap_or(&default_action);
                    deliver_stale(&mut machine, &action.stale, true, &history, now, with_stale, false);
                    if let Fault::Interleave(k) = action.fault {
                        let stream = &all_streams[usize::from(k) % all_streams.len()];
                        foreign_write(&mut store, stream, Ev::Noise, &mut foreign);
                    }
                    now = now.saturating_add(Duration::from_millis(u64::from(action.latency_ms)));
                    let unknown = || StoreError::OutcomeUnknown {
                        operation: Operation::Append,
                        message: "injected".into(),
                        source: None,
                    };
                    let (served, answer) = match action.fault {
                        Fault::Deliver | Fault::Interleave(_) => {
                            let served = store.append(&request);
                            (Some(served.clone()), Some(served))
                        }
                        Fault::Transient => (None, Some(Err(StoreError::transient(Operation::Append, "injected")))),
                        Fault::CommitUnknown => (Some(store.append(&request)), Some(Err(unknown()))),
                        Fault::Lose { served: true } => (Some(store.append(&request)), None),
                        Fault::Lose { served: false } => (None, None),
                        Fault::Late => {
                            late.push(AppendRequest::clone(&request));
                            (None, None)
                        }
                        Fault::Stall(tens) => {
                            let served = store.append(&request);
                            now = now.saturating_add(Duration::from_millis(10 * u64::from(tens)));
                            if machine.next_wake().is_some_and(|wake| now >= wake) {
                                (Some(served), None)
                            } else {
                                (Some(served.clone()), Some(served))
                            }
                        }
                    };
                    if let Some(served) = served {
                        history.push(Response::Append(request_id, served));
                    }
                    if let Some(answer) = answer {
                        machine.on_append(request_id, answer, now);
                    } else if matches!(action.fault, Fault::Stall(_)) {
                        machine.on_wake(now);
                    }
                    deliver_stale(&mut machine, &action.stale, false, &history, now, with_stale, false);
                }
                Step::Wait { until } => {
                    transcript.push(format!("wait until {until:?}"));
                    now = now.max(until);
                    machine.on_wake(now);
                }
                Step::Done(outcome) => break 'run outcome,
                Step::Finished => {
                    violations.push("Finished before Done".to_owned());
                    break 'run Err(CommandError::NoStreams);
                }
            }
        }
        violations.push("the machine did not finish in 5000 steps".to_owned());
        Err(CommandError::NoStreams)
    };
    if !matches!(machine.poll(), Step::Finished) {
        violations.push("poll after Done must return Finished".to_owned());
    }
    // Whatever was still in flight lands after the machine gave up.
    for append in late.drain(..) {
        let _ = store.append(&append);
    }
    Run {
        transcript,
        outcome,
        streams: machine.streams().cloned().collect(),
        store,
        own_before,
        settled,
        last_append,
        violations,
    }
}

/// Delivers a stale response, if the action has one at this point.
fn deliver_stale(
    machine: &mut CommandMachine<Probe>,
    stale: &Option<Stale>,
    before: bool,
    history: &[Response],
    now: Time,
    enabled: bool,
    in_flight_is_read: bool,
) {
    if !enabled {
        return;
    }
    match stale {
        Some(Stale::Replay { before: b, index }) if *b == before && !history.is_empty() => {
            let old = &history[usize::from(*index) % history.len()];
            match old {
                Response::Read(id, answer) if machine.awaiting() != Some(*id) => {
                    machine.on_read(*id, answer.clone(), now);
                }
                Response::Append(id, answer) if machine.awaiting() != Some(*id) => {
                    machine.on_append(*id, answer.clone(), now);
                }
                _ => {}
            }
        }
        Some(Stale::WrongKind) if before => {
            if let Some(current) = machine.awaiting() {
                let error = StoreError::transient(Operation::Other, "wrong kind");
                if in_flight_is_read {
                    machine.on_append(current, Err(error), now);
                } else {
                    machine.on_read(current, Err(error), now);
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

/// Checks the properties every run must have. `first` is false for a
/// re-execution, which may settle an earlier commit before it has read
/// everything a first execution would.
fn check_run(scenario: &Scenario, run: &Run, first: bool) -> Result<(), TestCaseError> {
    prop_assert!(run.violations.is_empty(), "violations: {:?}", run.violations);
    let max = scenario.max_attempts;
    let command_id = scenario.command_id();
    let declared = scenario.declared();
    let ours = run.events_of(command_id);

    // Attempts.
    match &run.outcome {
        Ok(done) => prop_assert!(done.attempts >= 1 && done.attempts <= max, "{} attempts", done.attempts),
        Err(CommandError::RetriesExhausted { attempts, .. }) => prop_assert_eq!(*attempts, max),
        Err(CommandError::OutcomeUnknown { attempts, .. }) | Err(CommandError::DeadlineExceeded { attempts, .. }) => {
            prop_assert!(*attempts <= max)
        }
        Err(_) => {}
    }

    // Commits: exactly once on success, at most once when unknown, and
    // nothing new otherwise. (A re-execution that fails before it could
    // read, say after exhausting its retries on reads, does not learn about
    // an earlier commit under its command id, so "nothing written" holds for
    // this execution only.)
    match &run.outcome {
        Ok(done) => {
            let receipt = done.appended.as_ref().expect("the probe always emits");
            prop_assert_eq!(receipt.command_id, command_id);
            let stored = run.store.receipt(&command_id).expect("a success is in the store");
            prop_assert!(
                receipt.same_commit(stored),
                "reported {:?}, stored {:?}",
                receipt,
                stored
            );
            prop_assert_eq!(ours.len(), declared.len(), "one event per declared stream, once");
            let touched: BTreeSet<&StreamId> = ours.iter().map(|e| &e.stream_id).collect();
            prop_assert_eq!(touched, declared.iter().collect::<BTreeSet<_>>());
        }
        Err(error) if error.may_have_committed() => {
            prop_assert!(ours.is_empty() || ours.len() == declared.len(), "{} events", ours.len());
        }
        Err(error) => prop_assert_eq!(ours.len(), run.own_before, "{:?} but events were written", error),
    }

    // Once the machine has seen its own commit, no failure may claim that
    // nothing was written.
    if run.settled {
        if let Err(error) = &run.outcome {
            prop_assert!(error.may_have_committed(), "{:?} after finding its own commit", error);
        }
    }

    // The fold: `apply` saw exactly the events read, each once, in global
    // order. The append pins every stream read to the version its decision
    // saw, so those events can be found in the store afterwards.
    if let (Ok(_), true, false) = (&run.outcome, first, run.settled) {
        let append = run.last_append.as_ref().expect("a success appended");
        let pinned: BTreeMap<&StreamId, u64> = append
            .streams
            .iter()
            .map(|entry| {
                let version = match entry.expected {
                    ExpectedVersion::Exact(v) => v.get(),
                    ExpectedVersion::NoStream => 0,
                    other => panic!("the probe never relaxes expectations, got {other}"),
                };
                (&entry.stream, version)
            })
            .collect();
        prop_assert_eq!(
            pinned.keys().copied().collect::<BTreeSet<_>>(),
            run.streams.iter().collect::<BTreeSet<_>>(),
            "every stream read is pinned"
        );
        let probe = Probe {
            declared: Vec::new(),
            refuse: false,
            rogue: None,
        };
        let mut expected = Folded::default();
        for event in run.store.events() {
            if pinned.get(&event.stream_id).is_some_and(|&v| event.version.get() <= v) {
                let decoded = decode_recorded::<Ev>(event).expect("decodes");
                probe.apply(&mut expected, &event.stream_id, &decoded);
            }
        }
        for event in &ours {
            let decoded = decode_recorded::<Ev>(event).expect("decodes");
            prop_assert_eq!(
                decoded,
                Ev::Touched {
                    folded: expected.digest
                },
                "the decision folded exactly the events read, in global order"
            );
        }
    }

    // Discovery.
    let links_needed = scenario.chain_len as u32;
    if run.outcome.is_ok() && first {
        prop_assert!(links_needed <= scenario.discovery_limit);
        let mut expected = declared.clone();
        expected.extend((1..=scenario.chain_len).map(chain));
        prop_assert_eq!(
            &run.streams,
            &expected,
            "read every declared and discovered stream, in order"
        );
    }
    if let Err(CommandError::DiscoveryLimit { limit, pending }) = &run.outcome {
        prop_assert_eq!(*limit, scenario.discovery_limit);
        prop_assert!(links_needed > scenario.discovery_limit);
        prop_assert_eq!(pending, &vec![chain(scenario.discovery_limit as usize + 1)]);
    }
    if scenario.refuse {
        prop_assert!(
            matches!(
                run.outcome,
                Err(CommandError::Domain(_))
                    | Err(CommandError::RetriesExhausted { .. })
                    | Err(CommandError::DeadlineExceeded { .. })
            ),
            "{:?}",
            run.outcome
        );
    }
    if scenario.rogue {
        prop_assert!(run.outcome.is_err());
        prop_assert!(!run.transcript.iter().any(|s| s.starts_with("AppendRequest")));
        prop_assert!(ours.is_empty());
    }
    if links_needed > scenario.discovery_limit && first {
        prop_assert!(run.outcome.is_err(), "discovery past the limit cannot succeed");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 400,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_machine_keeps_its_promises_under_faults(scenario in scenario()) {
        let run = drive(&scenario, true);
        check_run(&scenario, &run, true)?;
    }

    #[test]
    fn an_unknown_outcome_is_settled_by_re_executing_with_the_same_command_id(scenario in scenario()) {
        let run = drive(&scenario, true);
        if let Err(error) = &run.outcome {
            if error.may_have_committed() {
                let earlier = run.store.receipt(&scenario.command_id()).cloned();
                // A re-execution under the same faults keeps every promise
                // (a failed settle must still say "may have committed")...
                let faulty = drive_on(&scenario, run.store.clone(), &scenario.actions, true);
                check_run(&scenario, &faulty, false)?;
                // ...and a fault-free one settles it.
                let again = drive_on(&scenario, run.store.clone(), &[], false);
                check_run(&scenario, &again, false)?;
                let done = again.outcome.as_ref().expect("a fault-free re-execution succeeds");
                let receipt = done.appended.as_ref().expect("appended");
                match earlier {
                    Some(earlier) => {
                        prop_assert!(receipt.deduplicated, "the earlier commit is found, not repeated");
                        prop_assert!(receipt.same_commit(&earlier));
                    }
                    None => prop_assert!(!receipt.deduplicated),
                }
            }
        }
    }

    #[test]
    fn re_executing_a_committed_command_under_faults_never_commits_twice(scenario in scenario()) {
        let first = drive_on(&scenario, scenario.initial_store(), &[], false);
        if let Ok(Executed { appended: Some(original), .. }) = &first.outcome {
            let again = drive_on(&scenario, first.store.clone(), &scenario.actions, true);
            check_run(&scenario, &again, false)?;
            prop_assert_eq!(again.events_of(scenario.command_id()).len(), scenario.declared().len());
            if let Ok(done) = &again.outcome {
                let receipt = done.appended.as_ref().expect("appended");
                prop_assert!(receipt.deduplicated && receipt.same_commit(original));
            }
        }
    }

    #[test]
    fn stale_and_duplicate_responses_change_nothing(scenario in scenario()) {
        let with = drive(&scenario, true);
        let without = drive(&scenario, false);
        prop_assert_eq!(&with.transcript, &without.transcript);
        prop_assert_eq!(with.outcome_ignoring_stale_count(), without.outcome_ignoring_stale_count());
        prop_assert_eq!(with.store.events(), without.store.events());
        check_run(&scenario, &without, true)?;
    }

    #[test]
    fn paging_changes_how_many_reads_not_what_is_decided(scenario in scenario()) {
        let whole = Scenario { page_size: None, ..scenario.clone() };
        let paged = Scenario { page_size: Some(1), ..scenario };
        let a = drive_on(&whole, whole.initial_store(), &[], false);
        let b = drive_on(&paged, paged.initial_store(), &[], false);
        check_run(&paged, &b, true)?;
        // Paged reads take longer, so timestamps (and the time part of event
        // ids) differ; what was written must not.
        let content = |run: &Run| -> Vec<(StreamId, StreamVersion, GlobalPosition, String, String)> {
            run.store
                .events()
                .iter()
                .map(|e| {
                    (
                        e.stream_id.clone(),
                        e.version,
                        e.position,
                        e.event_type.to_string(),
                        e.payload.as_json().to_owned(),
                    )
                })
                .collect()
        };
        prop_assert_eq!(content(&a), content(&b), "same events, same fold digests");
        match (&a.outcome, &b.outcome) {
            (Ok(x), Ok(y)) => prop_assert!(x.appended.as_ref().zip(y.appended.as_ref()).is_some_and(|(x, y)| x.same_commit(y))),
            (x, y) => prop_assert_eq!(format!("{:?}", x), format!("{:?}", y)),
        }
    }

    #[test]
    fn the_same_scenario_gives_the_same_run(scenario in scenario()) {
        let first = drive(&scenario, true);
        let second = drive(&scenario, true);
        prop_assert_eq!(&first.transcript, &second.transcript);
        prop_assert_eq!(format!("{:?}", first.outcome), format!("{:?}", second.outcome));
        prop_assert_eq!(first.store.events(), second.store.events());
    }
}

/// Regression: re-executing with the command id of an execution that did
/// commit used to decide again on a state that already held its own events,
/// so a command whose decision depends on them (here: one that now refuses)
/// failed, although it had committed. It now settles with the original
/// receipt, without deciding and without writing.
#[test]
fn re_executing_a_committed_command_id_returns_the_original_receipt() {
    let scenario = Scenario {
        chain_len: 1,
        prefill: vec![1, 0, 0, 0],
        declared_pool: vec![0, 2],
        discovery_limit: 8,
        max_attempts: 3,
        timeout_ms: None,
        page_size: None,
        refuse: false,
        rogue: false,
        seed: 42,
        actions: vec![],
    };
    let first = drive(&scenario, false);
    assert!(first.violations.is_empty(), "{:?}", first.violations);
    let original = first
        .outcome
        .as_ref()
        .expect("commits")
        .appended
        .clone()
        .expect("appended");
    assert!(!original.deduplicated);

    let refusing = Scenario {
        refuse: true,
        seed: 7,
        ..scenario.clone()
    };
    let again = drive_on(&refusing, first.store.clone(), &[], false);
    assert!(again.violations.is_empty(), "{:?}", again.violations);
    let settled = again
        .outcome
        .as_ref()
        .expect("the earlier commit settles the command; decide is not called again")
        .appended
        .clone()
        .expect("appended");
    assert!(settled.deduplicated);
    assert!(settled.same_commit(&original));
    assert_eq!(again.store.events(), first.store.events(), "nothing written twice");
}
