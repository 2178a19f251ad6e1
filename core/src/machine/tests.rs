use super::*;
use crate::view::{AnyEvent, StreamView, ViewKind};
use crate::{
    AppendReceipt, Decision, Event, EventId, EventMetadata, ExpectedVersion, GlobalPosition, Operation, ReadRequest,
    ReadResponse, RecordedEvent, StoreError, StreamVersion,
};
use crate::{Conflict, EventType, Payload, StreamSlice};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;

#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Ev {
    At(u64),
}
impl Event for Ev {}

#[derive(Debug, thiserror::Error)]
#[error("folded out of global order: {0:?}")]
pub(super) struct OutOfOrder(pub(super) Vec<u64>);

/// Folds the global positions it sees (carried in the payload) and
/// refuses if they were applied out of order.
struct Order(Vec<StreamId>);

impl Command for Order {
    type Event = Ev;
    type State = Vec<u64>;
    type Error = OutOfOrder;
    fn streams(&self) -> Vec<StreamId> {
        self.0.clone()
    }
    fn apply(&self, seen: &mut Vec<u64>, _: &StreamId, event: &Ev) {
        let Ev::At(p) = event;
        seen.push(*p);
    }
    fn decide(&self, seen: &Vec<u64>, _: &mut Decision<Ev>) -> Result<(), OutOfOrder> {
        if seen.windows(2).all(|w| w[0] < w[1]) {
            Ok(())
        } else {
            Err(OutOfOrder(seen.clone()))
        }
    }
}

pub(super) fn stream(name: &str) -> StreamId {
    StreamId::new(name).expect("valid")
}

pub(super) fn recorded(stream: &StreamId, version: u64, position: u64) -> RecordedEvent {
    let encoded = Ev::At(position).encode().expect("encodes");
    RecordedEvent {
        event_id: EventId::v7(Time::ZERO, [0; 10]),
        stream_id: stream.clone(),
        version: StreamVersion::new(version),
        position: GlobalPosition::new(position),
        event_type: EventType::new("At").expect("valid"),
        schema_version: 1,
        payload: Payload::from_trusted_json(encoded.payload.as_json().to_owned()),
        metadata: Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [9; 10]), Time::ZERO)),
    }
}

/// A store holding the given streams, answering reads with paging.
fn answer(request: &ReadRequest, data: &[(StreamId, Vec<RecordedEvent>)]) -> ReadResponse {
    let page = request.page_size.map_or(usize::MAX, |p| p.get() as usize);
    ReadResponse {
        streams: request
            .streams
            .iter()
            .map(|read| {
                let events = data
                    .iter()
                    .find(|(s, _)| s == &read.stream)
                    .map(|(_, e)| e.as_slice())
                    .unwrap_or(&[]);
                StreamSlice {
                    stream: read.stream.clone(),
                    head: StreamVersion::new(events.len() as u64),
                    events: events
                        .iter()
                        .skip(read.after.get() as usize)
                        .take(page)
                        .cloned()
                        .collect(),
                    deleted_at: None,
                    removed_through: StreamVersion::NONE,
                }
            })
            .collect(),
    }
}

fn run(
    command: Order,
    policy: ExecutionPolicy,
    data: &[(StreamId, Vec<RecordedEvent>)],
) -> Result<Executed, CommandError<OutOfOrder>> {
    let now = Time::from_unix_millis(1);
    let ctx = ExecutionContext::new(CommandId::v7(now, [1; 10]));
    let mut machine = CommandMachine::new(command, policy, ctx, now, 3);
    for _ in 0..100 {
        match machine.poll() {
            Step::Read {
                id: request_id,
                request,
                ..
            } => machine.on_read(request_id, Ok(answer(&request, data)), now),
            Step::Done(result) => return result,
            other => panic!("unexpected step {other:?}"),
        }
    }
    panic!("did not finish");
}

#[test]
fn paged_reads_of_several_streams_fold_in_global_order() {
    let (a, b) = (stream("a"), stream("b"));
    let data = vec![
        (
            a.clone(),
            vec![recorded(&a, 1, 1), recorded(&a, 2, 3), recorded(&a, 3, 5)],
        ),
        (b.clone(), vec![recorded(&b, 1, 2), recorded(&b, 2, 10)]),
    ];
    let policy = ExecutionPolicy::default().with_page_size(NonZeroU32::new(2));
    let done = run(Order(vec![a, b]), policy, &data).expect("folds 1,2,3,5,10 in order");
    assert_eq!(done.stats.reads, 2, "two pages");
}

#[test]
fn a_response_with_a_gap_is_a_contract_violation_not_a_fold() {
    let a = stream("a");
    let data = vec![(a.clone(), vec![recorded(&a, 1, 1), recorded(&a, 3, 2)])];
    let result = run(Order(vec![a]), ExecutionPolicy::default(), &data);
    assert!(
        matches!(result, Err(CommandError::Store(StoreError::ContractViolation { .. }))),
        "{result:?}"
    );
}

#[test]
fn a_stale_response_is_ignored_and_counted() {
    let a = stream("a");
    let now = Time::from_unix_millis(1);
    let ctx = ExecutionContext::new(CommandId::v7(now, [1; 10]));
    let mut machine = CommandMachine::new(Order(vec![a.clone()]), ExecutionPolicy::default(), ctx, now, 3);
    let Step::Read {
        id: request_id,
        request,
        ..
    } = machine.poll()
    else {
        panic!("reads first")
    };
    let stale = RequestId::new(request_id.get() + 40);
    machine.on_read(stale, Ok(answer(&request, &[])), now);
    assert_eq!(machine.stats().ignored_responses, 1);
    assert_eq!(
        machine.awaiting(),
        Some(request_id),
        "still waiting for the real answer"
    );
    machine.on_read(request_id, Ok(answer(&request, &[])), now);
    assert!(matches!(machine.poll(), Step::Done(Ok(_))));
    assert!(matches!(machine.poll(), Step::Finished));
}

#[test]
fn an_append_abandoned_at_the_deadline_reports_an_unknown_outcome() {
    struct Write(StreamId);
    impl Command for Write {
        type Event = Ev;
        type State = ();
        type Error = OutOfOrder;
        fn streams(&self) -> Vec<StreamId> {
            vec![self.0.clone()]
        }
        fn apply(&self, _: &mut (), _: &StreamId, _: &Ev) {}
        fn decide(&self, _: &(), out: &mut Decision<Ev>) -> Result<(), OutOfOrder> {
            out.emit(&self.0, Ev::At(0));
            Ok(())
        }
    }
    let a = stream("a");
    let now = Time::from_unix_millis(1);
    let policy = ExecutionPolicy::default().with_timeout(std::time::Duration::from_secs(1));
    let ctx = ExecutionContext::new(CommandId::v7(now, [1; 10]));
    let mut machine = CommandMachine::new(Write(a), policy, ctx, now, 3);
    let Step::Read {
        id: request_id,
        request,
        ..
    } = machine.poll()
    else {
        panic!("reads first")
    };
    machine.on_read(request_id, Ok(answer(&request, &[])), now);
    let Step::Append { .. } = machine.poll() else {
        panic!("then appends")
    };
    let Step::Wait { until } = machine.poll() else {
        panic!("then waits")
    };
    assert_eq!(
        until,
        now.saturating_add(std::time::Duration::from_secs(1)),
        "bounded by the overall deadline"
    );
    machine.on_wake(until);
    match machine.poll() {
        Step::Done(Err(CommandError::OutcomeUnknown { last, .. })) => {
            assert!(
                matches!(
                    last,
                    StoreError::Timeout {
                        operation: Operation::Append,
                        ..
                    }
                ),
                "{last:?}"
            );
        }
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
}

#[test]
fn a_failed_settle_of_an_own_commit_never_claims_nothing_was_written() {
    // A re-execution finds its own command id already committed; the
    // append that would fetch the original receipt fails transiently and
    // no retries are left. The command did commit, so the error must say
    // it may have, not that nothing was written.
    struct Write(StreamId);
    impl Command for Write {
        type Event = Ev;
        type State = ();
        type Error = OutOfOrder;
        fn streams(&self) -> Vec<StreamId> {
            vec![self.0.clone()]
        }
        fn apply(&self, _: &mut (), _: &StreamId, _: &Ev) {}
        fn decide(&self, _: &(), out: &mut Decision<Ev>) -> Result<(), OutOfOrder> {
            out.emit(&self.0, Ev::At(0));
            Ok(())
        }
    }
    let a = stream("a");
    let now = Time::from_unix_millis(1);
    let command_id = CommandId::v7(now, [1; 10]);
    let mut committed = recorded(&a, 1, 1);
    committed.metadata = Arc::new(EventMetadata::new(command_id, now));
    let data = vec![(a.clone(), vec![committed])];
    let policy = ExecutionPolicy::default().with_retry(crate::RetryPolicy::no_retries());
    let mut machine = CommandMachine::new(Write(a), policy, ExecutionContext::new(command_id), now, 3);
    let Step::Read {
        id: request_id,
        request,
        ..
    } = machine.poll()
    else {
        panic!("reads first")
    };
    machine.on_read(request_id, Ok(answer(&request, &data)), now);
    let Step::Append { id: settle_id, .. } = machine.poll() else {
        panic!("then settles")
    };
    machine.on_append(
        settle_id,
        Err(StoreError::transient(Operation::Append, "connection reset")),
        now,
    );
    match machine.poll() {
        Step::Done(Err(error)) => assert!(error.may_have_committed(), "{error:?}"),
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
}

#[test]
fn a_refusal_never_rests_on_unconfirmed_cached_events() {
    // The cache says the account is empty; the store says it holds 50.
    // Refusing a withdrawal of 10 from the cache alone would be wrong:
    // the machine must confirm by reading before it refuses.
    #[derive(Debug, thiserror::Error)]
    #[error("insufficient funds: {0}")]
    struct Insufficient(u64);
    struct Withdraw(StreamId, u64);
    impl Command for Withdraw {
        type Event = Ev;
        type State = u64;
        type Error = Insufficient;
        fn streams(&self) -> Vec<StreamId> {
            vec![self.0.clone()]
        }
        fn apply(&self, balance: &mut u64, _: &StreamId, event: &Ev) {
            let Ev::At(amount) = event;
            *balance += amount;
        }
        fn decide(&self, balance: &u64, out: &mut Decision<Ev>) -> Result<(), Insufficient> {
            if *balance < self.1 {
                return Err(Insufficient(*balance));
            }
            out.emit(&self.0, Ev::At(0));
            Ok(())
        }
    }
    let a = stream("a");
    let now = Time::from_unix_millis(1);
    let ctx = ExecutionContext::new(CommandId::v7(now, [1; 10]));
    let mut machine = CommandMachine::new(Withdraw(a.clone(), 10), ExecutionPolicy::default(), ctx, now, 3);
    assert!(machine.prime(&a, &[]), "stale: the cache saw the stream empty");
    let Step::Read {
        id: request_id,
        request,
        ..
    } = machine.poll()
    else {
        panic!("a refusal from cached state must be confirmed by a read first")
    };
    assert_eq!(request.streams[0].after, StreamVersion::NONE);
    let data = vec![(a.clone(), vec![recorded(&a, 1, 50)])];
    machine.on_read(request_id, Ok(answer(&request, &data)), now);
    let Step::Append { request: append, .. } = machine.poll() else {
        panic!("the real balance covers the withdrawal")
    };
    assert_eq!(
        append.streams[0].expected,
        ExpectedVersion::Exact(StreamVersion::new(1))
    );
}

#[test]
fn a_discovery_limit_refusal_never_rests_on_unconfirmed_cached_events() {
    // The cached `a` is empty, so the command would go looking for another
    // stream and hit a limit of zero rounds; the store's `a` holds an event
    // that makes the search unnecessary. (Found by the simulator's
    // re-decision check, see docs/testing.md.)
    struct Follow(StreamId, StreamId);
    impl Command for Follow {
        type Event = Ev;
        type State = u64;
        type Error = OutOfOrder;
        fn streams(&self) -> Vec<StreamId> {
            vec![self.0.clone()]
        }
        fn apply(&self, seen: &mut u64, _: &StreamId, _: &Ev) {
            *seen += 1;
        }
        fn decide(&self, seen: &u64, out: &mut Decision<Ev>) -> Result<(), OutOfOrder> {
            if *seen == 0 {
                out.read(self.1.clone());
            }
            Ok(())
        }
    }
    let (a, b) = (stream("a"), stream("b"));
    let now = Time::from_unix_millis(1);
    let ctx = ExecutionContext::new(CommandId::v7(now, [1; 10]));
    let policy = ExecutionPolicy {
        discovery_limit: 0,
        ..ExecutionPolicy::default()
    };
    let mut machine = CommandMachine::new(Follow(a.clone(), b), policy, ctx, now, 3);
    assert!(machine.prime(&a, &[]), "stale: the cache saw the stream empty");
    let Step::Read { id, request, .. } = machine.poll() else {
        panic!("a discovery-limit refusal from cached state must be confirmed by a read first")
    };
    let data = vec![(a.clone(), vec![recorded(&a, 1, 1)])];
    machine.on_read(id, Ok(answer(&request, &data)), now);
    match machine.poll() {
        Step::Done(Ok(executed)) => assert!(executed.appended.is_none()),
        other => panic!("the real stream needs no discovery: {other:?}"),
    }
}

/// A counter view: how many events its stream holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Count(u64);

impl crate::View for Count {
    type Event = Ev;
    const NAME: &'static str = "count";
    fn apply(&mut self, _: &Ev) {
        self.0 += 1;
    }
}

/// A view command written by hand (what `#[derive(Command)]` writes):
/// reads every stream through `Count`, appends one event to the first.
struct Bump(Vec<StreamId>);

impl Command for Bump {
    type Event = AnyEvent;
    type State = crate::Views;
    type Error = OutOfOrder;
    fn streams(&self) -> Vec<StreamId> {
        self.0.clone()
    }
    fn view_of(&self, _: &StreamId) -> Option<ViewKind> {
        Some(ViewKind::of::<Count>())
    }
    fn views_mut(state: &mut crate::Views) -> Option<&mut crate::Views> {
        Some(state)
    }
    fn apply(&self, _: &mut crate::Views, _: &StreamId, _: &AnyEvent) {}
    fn decide(&self, _: &crate::Views, out: &mut Decision<AnyEvent>) -> Result<(), OutOfOrder> {
        crate::Emit::new(out).emit(&self.0[0], Ev::At(0));
        Ok(())
    }
}

fn count(stream: &StreamId, n: u64) -> StreamView {
    count_ending(stream, n, None)
}

fn count_ending(stream: &StreamId, n: u64, last_event: Option<EventId>) -> StreamView {
    let kind = ViewKind::of::<Count>();
    StreamView {
        stream: stream.clone(),
        kind,
        version: StreamVersion::new(n),
        base_version: StreamVersion::new(n),
        last_event,
        view: kind.decode(&n.to_string()).expect("a count decodes"),
    }
}

fn count_of(views: &[StreamView], stream: &StreamId) -> Option<(u64, u64)> {
    views
        .iter()
        .find(|v| &v.stream == stream)
        .map(|v| (v.version.get(), v.view.downcast::<Count>().map_or(u64::MAX, |c| c.0)))
}

#[test]
fn a_primed_view_that_is_stale_costs_a_conflict_and_a_read_of_the_tail() {
    let (a, b) = (stream("a"), stream("b"));
    let now = Time::from_unix_millis(1);
    let ctx = ExecutionContext::new(CommandId::v7(now, [1; 10]));
    let mut machine = CommandMachine::new(
        Bump(vec![a.clone(), b.clone()]),
        ExecutionPolicy::default(),
        ctx,
        now,
        3,
    );
    assert_eq!(machine.unprimed_views().len(), 2);
    assert!(machine.prime_view(count(&a, 1)));
    assert!(machine.prime_view(count(&b, 1)));
    let Step::Append {
        id: append_id,
        request: append,
        ..
    } = machine.poll()
    else {
        panic!("no read needed")
    };
    assert_eq!(
        append.streams[0].expected,
        ExpectedVersion::Exact(StreamVersion::new(1))
    );
    let conflict = Conflict {
        stream: a.clone(),
        expected: append.streams[0].expected,
        actual: StreamVersion::new(2),
    };
    machine.on_append(append_id, Err(StoreError::Conflict(conflict)), now);
    let Step::Read {
        id: reread_id,
        request: reread,
        ..
    } = machine.poll()
    else {
        panic!("re-reads after the conflict")
    };
    assert!(
        reread.streams.iter().all(|r| r.after == StreamVersion::new(1)),
        "only the tail: {reread:?}"
    );
    let data = vec![
        (a.clone(), vec![recorded(&a, 1, 90), recorded(&a, 2, 50)]),
        (b.clone(), vec![recorded(&b, 1, 100)]),
    ];
    machine.on_read(reread_id, Ok(answer(&reread, &data)), now);
    let Step::Append {
        id: retry_id,
        request: retry,
        ..
    } = machine.poll()
    else {
        panic!("decides again on the tail")
    };
    assert_eq!(retry.streams[0].expected, ExpectedVersion::Exact(StreamVersion::new(2)));
    let receipt = AppendReceipt {
        command_id: retry.command_id(),
        streams: vec![crate::StreamCommit {
            stream: a.clone(),
            first_version: StreamVersion::new(3),
            last_version: StreamVersion::new(3),
            positions: vec![GlobalPosition::new(101)],
        }],
        deduplicated: false,
    };
    machine.on_append(retry_id, Ok(receipt), now);
    assert!(matches!(machine.poll(), Step::Done(Ok(_))));
    let views = machine.take_views();
    assert_eq!(count_of(&views, &a), Some((3, 3)), "cached 1 + tail 1 + own commit 1");
    assert_eq!(count_of(&views, &b), Some((1, 1)));
    assert!(machine.stale_views().is_empty());
}

#[test]
fn a_primed_view_ahead_of_the_store_is_dropped_and_the_stream_folded_from_the_start() {
    let a = stream("a");
    let now = Time::from_unix_millis(1);
    let ctx = ExecutionContext::new(CommandId::v7(now, [1; 10]));
    let mut machine = CommandMachine::new(Bump(vec![a.clone()]), ExecutionPolicy::default(), ctx, now, 3);
    // A snapshot claiming 5 events of a stream that has 2.
    assert!(machine.prime_view(count(&a, 5)));
    let Step::Append {
        id: append_id,
        request: append,
        ..
    } = machine.poll()
    else {
        panic!("no read needed")
    };
    let conflict = Conflict {
        stream: a.clone(),
        expected: append.streams[0].expected,
        actual: StreamVersion::new(2),
    };
    machine.on_append(append_id, Err(StoreError::Conflict(conflict)), now);
    let Step::Read {
        id: full_id,
        request: full,
        ..
    } = machine.poll()
    else {
        panic!("the conflict shows the view ahead of the store: read from the start")
    };
    assert_eq!(full.streams[0].after, StreamVersion::NONE);
    let data = vec![(a.clone(), vec![recorded(&a, 1, 1), recorded(&a, 2, 2)])];
    machine.on_read(full_id, Ok(answer(&full, &data)), now);
    let Step::Append { request: retry, .. } = machine.poll() else {
        panic!("decides on the real stream")
    };
    assert_eq!(retry.streams[0].expected, ExpectedVersion::Exact(StreamVersion::new(2)));
    assert_eq!(machine.stale_views().len(), 1);
    assert_eq!(machine.stats().stale_views, 1);
    let views = machine.take_views();
    assert_eq!(count_of(&views, &a), Some((2, 2)), "the fold of the store's two events");
}

#[test]
fn a_snapshot_is_used_only_if_the_stream_holds_the_event_it_ends_on() {
    let a = stream("a");
    let now = Time::from_unix_millis(1);
    let history = vec![(a.clone(), (1..=4).map(|v| recorded(&a, v, v)).collect::<Vec<_>>())];
    let at_3 = history[0].1[2].event_id;
    for (claimed, last_event, trusted) in [
        (3, at_3, true),
        // Another history with as many events: same version, other event.
        (3, EventId::v7(now, [0xEE; 10]), false),
        // More events than the stream has.
        (9, at_3, false),
    ] {
        let ctx = ExecutionContext::new(CommandId::v7(now, [1; 10]));
        let mut machine = CommandMachine::new(Bump(vec![a.clone()]), ExecutionPolicy::default(), ctx, now, 3);
        // The snapshot's count is made up (100) so that a fold that used
        // it shows.
        let mut snapshot = count_ending(&a, claimed, Some(last_event));
        snapshot.view = ViewKind::of::<Count>().decode("100").expect("decodes");
        assert!(machine.prime_snapshot(snapshot));
        let Step::Read {
            id: read_id,
            request: read,
            ..
        } = machine.poll()
        else {
            panic!("a snapshot is checked by a read")
        };
        assert_eq!(
            read.streams[0].after,
            StreamVersion::new(claimed - 1),
            "from its last event"
        );
        machine.on_read(read_id, Ok(answer(&read, &history)), now);
        if !trusted {
            let Step::Read {
                id: full_id,
                request: full,
                ..
            } = machine.poll()
            else {
                panic!("claimed {claimed}: dropped, read from the start")
            };
            assert_eq!(full.streams[0].after, StreamVersion::NONE);
            machine.on_read(full_id, Ok(answer(&full, &history)), now);
        }
        let Step::Append {
            id: append_id,
            request: append,
            ..
        } = machine.poll()
        else {
            panic!("decides")
        };
        assert_eq!(
            append.streams[0].expected,
            ExpectedVersion::Exact(StreamVersion::new(4))
        );
        machine.on_append(append_id, Err(StoreError::transient(Operation::Append, "x")), now);
        let views = machine.take_views();
        let expected = if trusted { 101 } else { 4 };
        assert_eq!(count_of(&views, &a), Some((4, expected)), "claimed {claimed}");
        assert_eq!(machine.stale_views().len(), usize::from(!trusted));
    }
}

#[test]
fn a_cached_view_that_conflicted_and_was_not_read_again_is_not_handed_back() {
    let a = stream("a");
    let now = Time::from_unix_millis(1);
    let ctx = ExecutionContext::new(CommandId::v7(now, [1; 10]));
    let policy = ExecutionPolicy::default().with_retry(crate::RetryPolicy::no_retries());
    let mut machine = CommandMachine::new(Bump(vec![a.clone()]), policy, ctx, now, 3);
    assert!(machine.prime_view(count(&a, 1)));
    let Step::Append {
        id: append_id,
        request: append,
        ..
    } = machine.poll()
    else {
        panic!("no read needed")
    };
    let conflict = Conflict {
        stream: a.clone(),
        expected: append.streams[0].expected,
        actual: StreamVersion::new(2),
    };
    machine.on_append(append_id, Err(StoreError::Conflict(conflict)), now);
    assert!(matches!(
        machine.poll(),
        Step::Done(Err(CommandError::RetriesExhausted { .. }))
    ));
    assert!(machine.take_views().is_empty(), "the stale entry must not go back");
    assert_eq!(machine.stale_views(), vec![(a, ViewKind::of::<Count>())]);
}

// Store answers the machine must refuse rather than fold (found while
// writing the machine fuzz target, fuzz/fuzz_targets/machine_store_responses.rs).

#[test]
fn positions_that_do_not_rise_along_a_stream_are_a_contract_violation() {
    // Folded in global order, version 2 (position 2) would be applied
    // before version 1 (position 4).
    let (a, b) = (stream("a"), stream("b"));
    let data = vec![
        (a.clone(), vec![recorded(&a, 1, 4), recorded(&a, 2, 2)]),
        (b.clone(), vec![recorded(&b, 1, 3)]),
    ];
    let result = run(Order(vec![a, b]), ExecutionPolicy::default(), &data);
    assert!(
        matches!(&result, Err(CommandError::Store(StoreError::ContractViolation { message, .. })) if message.contains("does not follow position 4")),
        "{result:?}"
    );
}

#[test]
fn a_later_page_below_the_streams_last_position_is_a_contract_violation() {
    let a = stream("a");
    let data = vec![(a.clone(), vec![recorded(&a, 1, 5), recorded(&a, 2, 3)])];
    let policy = ExecutionPolicy::default().with_page_size(NonZeroU32::new(1));
    let result = run(Order(vec![a]), policy, &data);
    assert!(
        matches!(&result, Err(CommandError::Store(StoreError::ContractViolation { message, .. })) if message.contains("does not follow position 5")),
        "{result:?}"
    );
}

#[test]
fn two_streams_with_an_event_at_the_same_position_are_a_contract_violation() {
    let (a, b) = (stream("a"), stream("b"));
    let data = vec![
        (a.clone(), vec![recorded(&a, 1, 1), recorded(&a, 2, 3)]),
        (b.clone(), vec![recorded(&b, 1, 3)]),
    ];
    let result = run(Order(vec![a, b]), ExecutionPolicy::default(), &data);
    assert!(
        matches!(&result, Err(CommandError::Store(StoreError::ContractViolation { message, .. })) if message.contains("position 3")),
        "{result:?}"
    );
}

/// Writes one event to its stream, whatever it read.
struct WriteOne(StreamId);

impl Command for WriteOne {
    type Event = Ev;
    type State = ();
    type Error = OutOfOrder;
    fn streams(&self) -> Vec<StreamId> {
        vec![self.0.clone()]
    }
    fn apply(&self, _: &mut (), _: &StreamId, _: &Ev) {}
    fn decide(&self, _: &(), out: &mut Decision<Ev>) -> Result<(), OutOfOrder> {
        out.emit(&self.0, Ev::At(0));
        Ok(())
    }
}

/// Runs [`WriteOne`] on a stream at version 2 and answers its append with
/// the receipt `answer` makes of the correct one.
fn answer_append(answer: impl FnOnce(AppendReceipt) -> AppendReceipt) -> Result<Executed, CommandError<OutOfOrder>> {
    let a = stream("a");
    let now = Time::from_unix_millis(1);
    let command_id = CommandId::v7(now, [1; 10]);
    let mut machine = CommandMachine::new(
        WriteOne(a.clone()),
        ExecutionPolicy::default(),
        ExecutionContext::new(command_id),
        now,
        3,
    );
    let Step::Read { id, request, .. } = machine.poll() else {
        panic!("reads first")
    };
    let data = vec![(a.clone(), vec![recorded(&a, 1, 1), recorded(&a, 2, 2)])];
    machine.on_read(id, Ok(super::tests::answer(&request, &data)), now);
    let Step::Append { id, request, .. } = machine.poll() else {
        panic!("then appends")
    };
    assert_eq!(
        request.streams[0].expected,
        ExpectedVersion::Exact(StreamVersion::new(2))
    );
    let correct = AppendReceipt {
        command_id,
        streams: vec![crate::StreamCommit {
            stream: a,
            first_version: StreamVersion::new(3),
            last_version: StreamVersion::new(3),
            positions: vec![GlobalPosition::new(7)],
        }],
        deduplicated: false,
    };
    machine.on_append(id, Ok(answer(correct)), now);
    match machine.poll() {
        Step::Done(result) => result,
        other => panic!("expected the end, got {other:?}"),
    }
}

fn refused_receipt(result: Result<Executed, CommandError<OutOfOrder>>) -> String {
    match result {
        Err(CommandError::OutcomeUnknown {
            last:
                StoreError::ContractViolation {
                    operation: Operation::Append,
                    message,
                },
            ..
        }) => message,
        other => panic!("expected a refused receipt, got {other:?}"),
    }
}

#[test]
fn a_coherent_receipt_is_accepted() {
    let done = answer_append(|receipt| receipt).expect("committed");
    assert_eq!(done.appended.map(|r| r.last_position()), Some(GlobalPosition::new(7)));
}

#[test]
fn a_receipt_that_breaks_the_contract_is_an_unknown_outcome_naming_the_violation() {
    let other_command = CommandId::v7(Time::ZERO, [5; 10]);
    type Spoil = Box<dyn FnOnce(AppendReceipt) -> AppendReceipt>;
    let cases: Vec<(&str, Spoil)> = vec![
        (
            "answered an append of command",
            Box::new(move |r| AppendReceipt {
                command_id: other_command,
                ..r
            }),
        ),
        (
            "which the expectation",
            Box::new(|mut r| {
                // Written after version 4 although the append expected 2.
                r.streams[0].first_version = StreamVersion::new(5);
                r.streams[0].last_version = StreamVersion::new(5);
                r
            }),
        ),
        (
            "with 2 positions",
            Box::new(|mut r| {
                r.streams[0].positions.push(GlobalPosition::new(8));
                r
            }),
        ),
        (
            "do not increase",
            Box::new(|mut r| {
                r.streams[0].positions = vec![GlobalPosition::START];
                r
            }),
        ),
        (
            "lists 0 streams",
            Box::new(|mut r| {
                r.streams.clear();
                r
            }),
        ),
        (
            "where the append wrote",
            Box::new(|mut r| {
                r.streams[0].stream = stream("b");
                r
            }),
        ),
        (
            "lists stream `a` twice",
            Box::new(|mut r| {
                let mut twin = r.streams[0].clone();
                twin.positions = vec![GlobalPosition::new(9)];
                r.streams.push(twin);
                r.deduplicated = true;
                r
            }),
        ),
        (
            "position 7 twice",
            Box::new(|mut r| {
                let mut other = r.streams[0].clone();
                other.stream = stream("b");
                r.streams.push(other);
                r.deduplicated = true;
                r
            }),
        ),
    ];
    for (expected, answer) in cases {
        let message = refused_receipt(answer_append(answer));
        assert!(message.contains(expected), "{expected:?} not in {message:?}");
    }
}

#[test]
fn a_deduplicated_receipt_of_another_decision_is_accepted() {
    // An earlier execution with the same command id committed something
    // else: the store answers with that commit's receipt.
    let done = answer_append(|r| AppendReceipt {
        streams: vec![crate::StreamCommit {
            stream: stream("elsewhere"),
            first_version: StreamVersion::new(1),
            last_version: StreamVersion::new(2),
            positions: vec![GlobalPosition::new(3), GlobalPosition::new(4)],
        }],
        deduplicated: true,
        ..r
    })
    .expect("committed earlier");
    assert!(done.appended.is_some_and(|r| r.deduplicated));
}

#[test]
fn a_write_to_a_deleted_stream_ends_the_command_at_once() {
    // A tombstone ended the stream: no retry can write it, so the machine
    // neither re-reads nor retries, and the error says what happened.
    let a = stream("a");
    let now = Time::from_unix_millis(1);
    let mut machine = CommandMachine::new(
        WriteOne(a.clone()),
        ExecutionPolicy::default(),
        ExecutionContext::new(CommandId::v7(now, [1; 10])),
        now,
        3,
    );
    let Step::Read { id, request, .. } = machine.poll() else {
        panic!("reads first")
    };
    let data = vec![(a.clone(), vec![recorded(&a, 1, 1)])];
    machine.on_read(id, Ok(answer(&request, &data)), now);
    let Step::Append { id, .. } = machine.poll() else {
        panic!("then appends")
    };
    let deleted = crate::StreamDeleted {
        stream: a.clone(),
        deleted_at: StreamVersion::new(1),
    };
    machine.on_append(id, Err(deleted.clone().into()), now);
    match machine.poll() {
        Step::Done(Err(error)) => {
            assert!(
                matches!(&error, CommandError::Store(StoreError::StreamDeleted(d)) if *d == deleted),
                "{error:?}"
            );
            assert_eq!(error.kind(), crate::CommandErrorKind::StreamDeleted);
            assert!(!error.kind().is_retryable());
            assert!(!error.may_have_committed());
        }
        other => panic!("expected the command to end, got {other:?}"),
    }
}
