use super::*;
use crate::store::{EventFilter, Operation, ReadAllRequest, ReadAllResponse, StoreError};
use crate::{CommandId, EventId, EventMetadata, Payload};
use crate::{
    DecodeError, DecodeErrorKind, EventType, GlobalPosition, RecordedEvent, RequestId, StreamId, StreamVersion, Time,
};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

const T0: Time = Time::from_unix_millis(1_000);

fn event(position: u64, stream: &str) -> RecordedEvent {
    RecordedEvent {
        event_id: EventId::v7(T0, [position as u8; 10]),
        stream_id: StreamId::new(stream).expect("valid stream"),
        version: StreamVersion::new(position),
        position: GlobalPosition::new(position),
        event_type: EventType::new("Ticked").expect("valid type"),
        schema_version: 1,
        payload: Payload::from_trusted_json("null"),
        metadata: Arc::new(EventMetadata::new(CommandId::v7(T0, [0; 10]), T0)),
    }
}

fn events(positions: impl IntoIterator<Item = u64>) -> Vec<RecordedEvent> {
    positions.into_iter().map(|p| event(p, "s")).collect()
}

fn policy(batch: u32) -> SubscriptionPolicy {
    SubscriptionPolicy::default()
        .with_batch_size(NonZeroU32::new(batch).expect("non-zero"))
        .with_poll_interval(Duration::from_secs(1))
}

fn machine(batch: u32) -> SubscriptionMachine {
    SubscriptionMachine::new(GlobalPosition::START, EventFilter::all(), policy(batch), T0, 1)
}

fn pos(p: u64) -> GlobalPosition {
    GlobalPosition::new(p)
}

fn expect_fetch(m: &mut SubscriptionMachine) -> (RequestId, ReadAllRequest) {
    match m.poll() {
        SubscriptionStep::Fetch { id, request, .. } => (id, request),
        other => panic!("expected a fetch, got {other:?}"),
    }
}

fn expect_deliver(m: &mut SubscriptionMachine) -> Batch {
    match m.poll() {
        SubscriptionStep::Deliver(batch) => batch,
        other => panic!("expected a delivery, got {other:?}"),
    }
}

fn expect_save(m: &mut SubscriptionMachine) -> (RequestId, GlobalPosition) {
    match m.poll() {
        SubscriptionStep::SaveCheckpoint { id, position } => (id, position),
        other => panic!("expected a checkpoint save, got {other:?}"),
    }
}

fn expect_wait(m: &mut SubscriptionMachine) -> Time {
    match m.poll() {
        SubscriptionStep::Wait { until } => until,
        other => panic!("expected a wait, got {other:?}"),
    }
}

fn answer(m: &mut SubscriptionMachine, id: RequestId, events: Vec<RecordedEvent>, through: u64) {
    m.on_fetched(
        id,
        Ok(ReadAllResponse {
            events,
            complete_through: pos(through),
            removed: vec![],
        }),
        T0,
    );
}

fn positions(batch: &Batch) -> Vec<u64> {
    batch.events.iter().map(|e| e.position.get()).collect()
}

/// Handles every batch and saves every checkpoint until the machine
/// waits; returns the positions delivered.
fn drain(m: &mut SubscriptionMachine) -> Vec<u64> {
    let mut seen = Vec::new();
    loop {
        match m.poll() {
            SubscriptionStep::Deliver(batch) => {
                seen.extend(positions(&batch));
                m.on_handled(batch.id, Ok(()), T0);
            }
            SubscriptionStep::SaveCheckpoint { id, .. } => m.on_checkpoint_saved(id, Ok(()), T0),
            SubscriptionStep::Wait { .. } => return seen,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn a_full_batch_fetches_again_and_a_short_one_means_caught_up() {
    let mut m = machine(2);
    let (id, request) = expect_fetch(&mut m);
    assert_eq!((request.after, request.limit.get()), (pos(0), 2));
    answer(&mut m, id, events([1, 2]), 2);
    let first = expect_deliver(&mut m);
    let (id, request) = expect_fetch(&mut m);
    assert_eq!(
        request.after,
        pos(2),
        "full batch: more may exist, fetched while the consumer works"
    );
    answer(&mut m, id, events([3]), 3);
    m.on_handled(first.id, Ok(()), T0);
    let mut seen = positions(&first);
    seen.extend(drain(&mut m));
    assert_eq!(seen, vec![1, 2, 3]);
    assert!(m.is_caught_up());
    assert_eq!(m.checkpoint(), pos(3));
    assert_eq!(expect_wait(&mut m), T0.saturating_add(Duration::from_secs(1)));
}

#[test]
fn caught_up_it_fetches_on_notification_or_at_the_poll_interval() {
    let mut m = machine(10);
    let (id, _) = expect_fetch(&mut m);
    answer(&mut m, id, vec![], 0);
    let until = expect_wait(&mut m);
    m.on_notified(T0);
    let (id, request) = expect_fetch(&mut m);
    assert_eq!(request.after, pos(0));
    answer(&mut m, id, vec![], 0);
    expect_wait(&mut m);
    m.on_wake(until);
    expect_fetch(&mut m);
}

#[test]
fn a_notification_during_a_fetch_fetches_again_even_after_a_short_answer() {
    let mut m = machine(10);
    let (id, _) = expect_fetch(&mut m);
    m.on_notified(T0);
    answer(&mut m, id, events([1]), 1);
    let batch = expect_deliver(&mut m);
    m.on_handled(batch.id, Ok(()), T0);
    let (save, _) = expect_save(&mut m);
    m.on_checkpoint_saved(save, Ok(()), T0);
    let (_, request) = expect_fetch(&mut m);
    assert_eq!(request.after, pos(1));
}

#[test]
fn an_answer_held_back_below_the_announced_head_is_retried_soon_and_is_not_caught_up() {
    let mut m = machine(10);
    m.on_head(pos(5), T0);
    let (id, _) = expect_fetch(&mut m);
    // An older transaction still runs: the store answers only up to 3.
    answer(&mut m, id, events([1, 2]), 3);
    assert_eq!(drain(&mut m), vec![1, 2]);
    assert!(!m.is_caught_up(), "5 was announced, only 3 is final");
    let until = expect_wait(&mut m);
    assert_eq!(until, T0.saturating_add(m.policy.held_back_retry));
    m.on_wake(until);
    let (id, request) = expect_fetch(&mut m);
    assert_eq!(request.after, pos(3));
    answer(&mut m, id, events([4, 5]), 5);
    assert_eq!(drain(&mut m), vec![4, 5]);
    assert!(m.is_caught_up());
}

#[test]
fn filtered_out_events_move_the_checkpoint_through_complete_through() {
    let filter = EventFilter::all().with_stream_prefix("acc-");
    let mut m = SubscriptionMachine::new(pos(0), filter, policy(10), T0, 1);
    let (id, request) = expect_fetch(&mut m);
    assert_eq!(request.filter.stream_prefix.as_deref(), Some("acc-"));
    m.on_fetched(
        id,
        Ok(ReadAllResponse {
            events: vec![event(4, "acc-1")],
            complete_through: pos(9),
            removed: vec![],
        }),
        T0,
    );
    let batch = expect_deliver(&mut m);
    assert_eq!(batch.checkpoint, pos(9), "nothing else matches up to 9");
    m.on_handled(batch.id, Ok(()), T0);
    assert_eq!(expect_save(&mut m).1, pos(9));
}

#[test]
fn an_empty_answer_still_saves_the_checkpoint_once_caught_up() {
    let mut m = machine(10);
    let (id, _) = expect_fetch(&mut m);
    answer(&mut m, id, vec![], 42);
    let (id, position) = expect_save(&mut m);
    assert_eq!(position, pos(42));
    m.on_checkpoint_saved(id, Ok(()), T0);
    assert!(m.is_caught_up());
}

#[test]
fn overlapping_pages_are_dropped_never_delivered_twice() {
    let mut m = machine(3);
    let (id, _) = expect_fetch(&mut m);
    answer(&mut m, id, events([1, 2, 3]), 3);
    let first = expect_deliver(&mut m);
    let (id, request) = expect_fetch(&mut m);
    assert_eq!(request.after, pos(3));
    // A misbehaving page that repeats old events: they are dropped.
    answer(&mut m, id, events([2, 3, 4]), 4);
    assert_eq!(m.stats().duplicates_dropped, 2);
    let (id, _) = expect_fetch(&mut m);
    answer(&mut m, id, vec![], 4);
    m.on_handled(first.id, Ok(()), T0);
    let mut seen = positions(&first);
    seen.extend(drain(&mut m));
    assert_eq!(seen, vec![1, 2, 3, 4]);
}

#[test]
fn an_answer_that_breaks_the_contract_stops_the_subscription() {
    let mut m = machine(3);
    let (id, _) = expect_fetch(&mut m);
    answer(&mut m, id, events([2, 1]), 2);
    match m.poll() {
        SubscriptionStep::Stopped(Err(SubscriptionError::Store(StoreError::ContractViolation { .. }))) => {}
        other => panic!("expected a contract violation, got {other:?}"),
    }
    assert!(matches!(m.poll(), SubscriptionStep::Finished));
}

#[test]
fn stale_answers_are_ignored() {
    let mut m = machine(3);
    let (id, _) = expect_fetch(&mut m);
    m.on_fetched(
        RequestId::new(99),
        Ok(ReadAllResponse {
            events: events([1]),
            complete_through: pos(1),
            removed: vec![],
        }),
        T0,
    );
    m.on_handled(RequestId::new(98), Ok(()), T0);
    assert_eq!(m.stats().ignored_responses, 2);
    answer(&mut m, id, events([1]), 1);
    m.on_fetched(
        id,
        Ok(ReadAllResponse {
            events: events([1]),
            complete_through: pos(1),
            removed: vec![],
        }),
        T0,
    );
    assert_eq!(m.stats().ignored_responses, 3);
    assert_eq!(drain(&mut m), vec![1]);
}

#[test]
fn transient_fetch_errors_back_off_then_retry_from_the_same_position() {
    let mut m = machine(3);
    let (id, _) = expect_fetch(&mut m);
    m.on_fetched(
        id,
        Err(StoreError::transient(Operation::ReadAll, "connection reset")),
        T0,
    );
    let until = expect_wait(&mut m);
    assert!(until <= T0.saturating_add(m.policy.retry.initial_backoff));
    m.on_wake(until);
    let (_, request) = expect_fetch(&mut m);
    assert_eq!(request.after, pos(0));
    assert_eq!(m.stats().transient_errors, 1);
}

#[test]
fn a_fetch_without_answer_times_out_and_is_retried() {
    let mut m = machine(3);
    let (id, _) = expect_fetch(&mut m);
    let deadline = expect_wait(&mut m);
    assert_eq!(deadline, T0.saturating_add(m.policy.fetch_timeout));
    m.on_wake(deadline);
    let until = expect_wait(&mut m);
    m.on_wake(until);
    let (retry, _) = expect_fetch(&mut m);
    assert_ne!(retry, id);
    m.on_fetched(
        id,
        Ok(ReadAllResponse {
            events: events([1]),
            complete_through: pos(1),
            removed: vec![],
        }),
        T0,
    );
    assert_eq!(m.stats().ignored_responses, 1, "the late answer is stale");
}

#[test]
fn permanent_store_errors_stop_the_subscription() {
    let mut m = machine(3);
    let (id, _) = expect_fetch(&mut m);
    m.on_fetched(
        id,
        Err(StoreError::permanent(Operation::ReadAll, "permission denied")),
        T0,
    );
    assert!(matches!(
        m.poll(),
        SubscriptionStep::Stopped(Err(SubscriptionError::Store(_)))
    ));
}

#[test]
fn fetching_runs_ahead_of_the_consumer_only_up_to_the_buffer_limit() {
    let mut m = SubscriptionMachine::new(pos(0), EventFilter::all(), policy(2).with_buffer_limit(4), T0, 1);
    let (id, _) = expect_fetch(&mut m);
    answer(&mut m, id, events([1, 2]), 2);
    let batch = expect_deliver(&mut m);
    let (id, _) = expect_fetch(&mut m);
    answer(&mut m, id, events([3, 4]), 4);
    // Four buffered (two in delivery): no room for another full batch.
    expect_wait(&mut m);
    assert_eq!(m.buffered(), 4);
    m.on_handled(batch.id, Ok(()), T0);
    let (save, _) = expect_save(&mut m);
    m.on_checkpoint_saved(save, Ok(()), T0);
    let next = expect_deliver(&mut m);
    assert_eq!(positions(&next), vec![3, 4]);
    let (_, request) = expect_fetch(&mut m);
    assert_eq!(request.after, pos(4));
    assert_eq!(m.stats().max_buffered, 4);
}

#[test]
fn a_transient_handler_failure_redelivers_the_same_batch_after_backoff() {
    let mut m = machine(3);
    let (id, _) = expect_fetch(&mut m);
    answer(&mut m, id, events([1, 2]), 2);
    let batch = expect_deliver(&mut m);
    m.on_handled(batch.id, Err(ConsumerError::Transient("db down".into()).into()), T0);
    let until = expect_wait(&mut m);
    m.on_wake(until);
    let again = expect_deliver(&mut m);
    assert_eq!(positions(&again), vec![1, 2]);
    assert_ne!(again.id, batch.id);
}

#[test]
fn a_fenced_consumer_stops_the_subscription() {
    let mut m = machine(3);
    let (id, _) = expect_fetch(&mut m);
    answer(&mut m, id, events([1]), 1);
    let batch = expect_deliver(&mut m);
    m.on_handled(batch.id, Ok(()), T0);
    let (save, _) = expect_save(&mut m);
    m.on_checkpoint_saved(save, Err(ConsumerError::Fenced("token 1 < 2".into())), T0);
    match m.poll() {
        SubscriptionStep::Stopped(Err(e)) => assert!(e.is_fenced()),
        other => panic!("expected fenced, got {other:?}"),
    }
}

fn poison_machine(policy_: PoisonPolicy) -> SubscriptionMachine {
    let mut m = SubscriptionMachine::new(pos(0), EventFilter::all(), policy(5).with_poison(policy_), T0, 1);
    let (id, _) = expect_fetch(&mut m);
    answer(&mut m, id, events([1, 2, 3]), 3);
    m
}

#[test]
fn a_poison_event_is_isolated_then_parked_and_the_rest_continues() {
    let mut m = poison_machine(PoisonPolicy::park());
    let batch = expect_deliver(&mut m);
    let poison = PoisonEvent::handler(&batch.events[1], "bad amount");
    m.on_handled(batch.id, Err(poison.clone().into()), T0);
    // The events before it go again as their own batch ...
    let before = expect_deliver(&mut m);
    assert_eq!(positions(&before), vec![1]);
    assert_eq!(before.checkpoint, pos(1));
    m.on_handled(before.id, Ok(()), T0);
    let (save, at) = expect_save(&mut m);
    assert_eq!(at, pos(1));
    m.on_checkpoint_saved(save, Ok(()), T0);
    // ... then the event alone, which fails again and is parked.
    let alone = expect_deliver(&mut m);
    assert_eq!(positions(&alone), vec![2]);
    m.on_handled(alone.id, Err(poison.clone().into()), T0);
    let SubscriptionStep::Park {
        id,
        event,
        poison: parked,
    } = m.poll()
    else {
        panic!("expected a park");
    };
    assert_eq!(event.position, pos(2));
    assert_eq!(parked.stream.as_str(), "s");
    m.on_parked(id, Ok(()), T0);
    let rest = expect_deliver(&mut m);
    assert_eq!(positions(&rest), vec![3]);
    m.on_handled(rest.id, Ok(()), T0);
    assert_eq!(expect_save(&mut m).1, pos(3));
    assert_eq!(m.stats().parked, 1);
}

#[test]
fn a_poison_event_under_the_stop_policy_stops_with_its_position_and_stream() {
    let mut m = poison_machine(PoisonPolicy::stop());
    let batch = expect_deliver(&mut m);
    let poison = PoisonEvent::handler(&batch.events[0], "nope");
    m.on_handled(batch.id, Err(poison.clone().into()), T0);
    let alone = expect_deliver(&mut m);
    assert_eq!(positions(&alone), vec![1], "isolated first");
    m.on_handled(alone.id, Err(poison.into()), T0);
    match m.poll() {
        SubscriptionStep::Stopped(Err(SubscriptionError::Poison(p))) => {
            assert_eq!((p.position, p.stream.as_str()), (pos(1), "s"));
        }
        other => panic!("expected a poison stop, got {other:?}"),
    }
}

#[test]
fn a_poison_event_is_retried_alone_with_backoff_before_the_policy_gives_up() {
    let mut m = poison_machine(PoisonPolicy::retry(3, PoisonAction::Stop));
    let batch = expect_deliver(&mut m);
    let poison = PoisonEvent::handler(&batch.events[0], "flaky");
    m.on_handled(batch.id, Err(poison.clone().into()), T0);
    let alone = expect_deliver(&mut m);
    m.on_handled(alone.id, Err(poison.clone().into()), T0);
    // Backing off: nothing to deliver until the retry time.
    let until = expect_wait(&mut m);
    assert!(
        until <= T0.saturating_add(Duration::from_millis(10)),
        "first retry within the initial backoff"
    );
    m.on_wake(until);
    let second = expect_deliver(&mut m);
    assert_eq!(positions(&second), vec![1]);
    m.on_handled(second.id, Ok(()), T0);
    let (save, _) = expect_save(&mut m);
    m.on_checkpoint_saved(save, Ok(()), T0);
    assert_eq!(positions(&expect_deliver(&mut m)), vec![2, 3]);
}

#[test]
fn a_decode_failure_is_poison_with_its_location() {
    let e = event(7, "acc-9");
    let decode = DecodeError::at(&e, DecodeErrorKind::UnknownEventType);
    let poison = PoisonEvent::from(decode);
    assert_eq!((poison.position, poison.stream.as_str()), (pos(7), "acc-9"));
    assert_eq!(poison.cause, PoisonCause::Decode(DecodeErrorKind::UnknownEventType));
}

#[test]
fn with_batch_checkpoints_the_consumer_commits_and_no_save_is_asked() {
    let p = policy(2).with_checkpoint_mode(CheckpointMode::WithBatch);
    let mut m = SubscriptionMachine::new(pos(0), EventFilter::all(), p, T0, 1);
    let (id, _) = expect_fetch(&mut m);
    answer(&mut m, id, events([1, 2]), 2);
    let batch = expect_deliver(&mut m);
    m.on_handled(batch.id, Ok(()), T0);
    assert_eq!(m.checkpoint(), pos(2));
    let (id, _) = expect_fetch(&mut m);
    answer(&mut m, id, vec![], 2);
    expect_wait(&mut m);
    assert!(m.is_caught_up());
}

#[test]
fn shutdown_lets_the_batch_in_flight_finish_then_saves_and_stops() {
    let mut m = machine(2);
    let (id, _) = expect_fetch(&mut m);
    answer(&mut m, id, events([1, 2]), 2);
    let batch = expect_deliver(&mut m);
    expect_fetch(&mut m);
    m.on_shutdown(T0);
    assert_eq!(expect_wait(&mut m), Time::MAX, "waits for the batch in flight");
    m.on_handled(batch.id, Ok(()), T0);
    let (save, position) = expect_save(&mut m);
    assert_eq!(position, pos(2));
    m.on_checkpoint_saved(save, Ok(()), T0);
    match m.poll() {
        SubscriptionStep::Stopped(Ok(checkpoint)) => assert_eq!(checkpoint, pos(2)),
        other => panic!("expected a clean stop, got {other:?}"),
    }
}

#[test]
fn resuming_from_a_checkpoint_fetches_after_it() {
    let mut m = SubscriptionMachine::new(pos(17), EventFilter::all(), policy(4), T0, 1);
    let (_, request) = expect_fetch(&mut m);
    assert_eq!(request.after, pos(17));
    assert_eq!(m.checkpoint(), pos(17));
}

fn removed(stream: &str, versions: (u64, u64), positions: (u64, u64)) -> crate::RemovedRange {
    crate::RemovedRange {
        stream: crate::StreamId::new(stream).expect("valid"),
        first_version: crate::StreamVersion::new(versions.0),
        last_version: crate::StreamVersion::new(versions.1),
        first_position: pos(positions.0),
        last_position: pos(positions.1),
        reason: crate::RemovalReason::MaxAge,
        removed_at: T0,
    }
}

#[test]
fn a_subscriber_behind_a_removed_range_skips_it_counts_it_and_checkpoints_past_it() {
    let mut m = machine(10);
    let (id, _) = expect_fetch(&mut m);
    let gone = removed("s", (1, 3), (1, 3));
    m.on_fetched(
        id,
        Ok(ReadAllResponse {
            events: events([4, 5]),
            complete_through: pos(5),
            removed: vec![gone.clone()],
        }),
        T0,
    );
    assert_eq!(drain(&mut m), vec![4, 5], "only what is still there is delivered");
    assert_eq!(m.checkpoint(), pos(5), "the checkpoint moves over the removed range");
    assert_eq!(
        m.take_skipped(),
        vec![gone],
        "the driver is told which range was skipped"
    );
    assert!(m.take_skipped().is_empty(), "and told once");
    assert_eq!(
        (m.stats().removed_ranges_skipped, m.stats().removed_events_skipped),
        (1, 3)
    );
}

#[test]
fn a_removed_range_reported_beyond_complete_through_is_a_contract_violation() {
    let mut m = machine(10);
    let (id, _) = expect_fetch(&mut m);
    m.on_fetched(
        id,
        Ok(ReadAllResponse {
            events: vec![],
            complete_through: pos(5),
            removed: vec![removed("s", (1, 2), (4, 6))],
        }),
        T0,
    );
    assert!(
        matches!(
            m.poll(),
            SubscriptionStep::Stopped(Err(SubscriptionError::Store(StoreError::ContractViolation { .. })))
        ),
        "a reader must not be told of a range it has not reached"
    );
}
