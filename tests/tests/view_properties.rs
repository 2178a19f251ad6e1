//! Stream views change costs, never decisions.
//!
//! * Snapshot + tail == full replay: a view encoded as a snapshot at any
//!   point of any history, decoded and folded on with the rest, equals the
//!   view folded from the first event.
//! * A command over cached and snapshotted views decides exactly as over a
//!   full fold: for random histories and, per stream, a random starting
//!   point (none, exact, stale at any earlier version, or a lying one ahead
//!   of the store), a view `Transfer` refuses or appends exactly what the
//!   whole-fold `PlainTransfer` does on an identical store, and the views it
//!   hands back equal a full fold of the store afterwards.

use eventcore::{
    Command, CommandError, CommandId, CommandMachine, Event, ExecutionContext, ExecutionPolicy, Operation, Snapshot,
    Step, StoreError, StreamId, StreamVersion, StreamView, Time, View, ViewKind,
};
use eventcore_examples::bank::{account, Account, AccountEvent, PlainTransfer, Transfer};
use eventcore_memory::MemoryStore;
use proptest::prelude::*;
use std::sync::Arc;

fn event_strategy() -> impl Strategy<Value = AccountEvent> {
    prop_oneof![
        (0u64..500).prop_map(|initial| AccountEvent::Opened { initial }),
        (0u64..300).prop_map(|amount| AccountEvent::Deposited { amount }),
        (0u64..300).prop_map(|amount| AccountEvent::Withdrawn { amount }),
    ]
}

fn fold(events: &[AccountEvent]) -> Account {
    let mut view = Account::default();
    for event in events {
        View::apply(&mut view, event);
    }
    view
}

proptest! {
    #[test]
    fn snapshot_plus_tail_equals_full_replay(
        events in prop::collection::vec(event_strategy(), 0..60),
        cut in any::<prop::sample::Index>(),
    ) {
        let at = cut.index(events.len() + 1);
        let stream = account(1);
        let kind = ViewKind::of::<Account>();
        let head = fold(&events[..at]);
        let view = StreamView {
            stream: stream.clone(),
            kind,
            version: StreamVersion::new(at as u64),
            base_version: StreamVersion::NONE,
            last_event: Some(eventcore::EventId::v7(Time::ZERO, [at as u8; 10])),
            view: kind.decode(&serde_json::to_string(&head).expect("encodes")).expect("decodes"),
        };
        let snapshot = Snapshot::of(&view, Time::ZERO).expect("encodes");
        let restored = snapshot.restore(&stream, kind).expect("a snapshot of this view restores");
        prop_assert_eq!(restored.version.get(), at as u64);
        let mut resumed = *restored.view.downcast::<Account>().expect("an Account");
        for event in &events[at..] {
            View::apply(&mut resumed, event);
        }
        prop_assert_eq!(resumed, fold(&events));
    }
}

/// Where a view stream starts in the primed execution.
#[derive(Debug, Clone)]
enum Start {
    /// Read from version 1 (a cache miss).
    Cold,
    /// A cache entry: the fold at `back` events before the head (0: exact).
    Behind(usize),
    /// A persisted snapshot `back` events before the head; `honest: false`
    /// means it was taken from another history with as many events.
    Snapshot(usize, bool),
    /// A lying entry `ahead` versions past the head, with a made-up view.
    Ahead(u64, u64),
}

fn start_strategy() -> impl Strategy<Value = Start> {
    prop_oneof![
        Just(Start::Cold),
        (0usize..8).prop_map(Start::Behind),
        (0usize..8, prop::bool::weighted(0.7)).prop_map(|(back, honest)| Start::Snapshot(back, honest)),
        (1u64..5, 0u64..1_000).prop_map(|(ahead, balance)| Start::Ahead(ahead, balance)),
    ]
}

fn seed_store(histories: &[Vec<AccountEvent>]) -> MemoryStore {
    let mut store = MemoryStore::new();
    for (n, events) in histories.iter().enumerate() {
        for (i, event) in events.iter().enumerate() {
            let stream = account(n as u32);
            let now = Time::from_unix_millis(1 + i as u64);
            let encoded = event.encode().expect("encodes");
            let request = eventcore::AppendRequest {
                metadata: Arc::new(eventcore::EventMetadata::new(
                    CommandId::v7(now, [n as u8, i as u8, 1, 2, 3, 4, 5, 6, 7, 8]),
                    now,
                )),
                streams: vec![eventcore::StreamAppend {
                    stream,
                    expected: eventcore::ExpectedVersion::Any,
                    events: vec![eventcore::NewEvent {
                        event_id: eventcore::EventId::v7(now, [n as u8, i as u8, 9, 9, 9, 9, 9, 9, 9, 9]),
                        event_type: encoded.event_type,
                        schema_version: encoded.schema_version,
                        payload: encoded.payload,
                    }],
                    tombstone: false,
                }],
            };
            store.append(&request).expect("seeding appends");
        }
    }
    store
}

type Outcome = Result<Vec<(StreamId, StreamVersion, String, String)>, String>;

/// Runs `machine` against `store` to the end; the outcome as comparable text.
fn run<C: Command>(store: &mut MemoryStore, machine: &mut CommandMachine<C>) -> Outcome {
    let mut now = Time::from_unix_millis(10_000);
    loop {
        match machine.poll() {
            Step::Read {
                id: request_id,
                request,
                ..
            } => {
                let answer = store.read(&request);
                machine.on_read(request_id, answer, now);
            }
            Step::Append {
                id: request_id,
                request,
                ..
            } => {
                let answer = store.append(&request);
                machine.on_append(request_id, answer, now);
            }
            Step::Wait { until } => {
                now = now.max(until);
                machine.on_wake(now);
            }
            Step::Done(Ok(done)) => {
                let Some(receipt) = done.appended else {
                    return Ok(Vec::new());
                };
                let written = store
                    .events()
                    .iter()
                    .filter(|e| e.metadata.command_id == receipt.command_id)
                    .map(|e| {
                        (
                            e.stream_id.clone(),
                            e.version,
                            e.event_type.as_str().to_owned(),
                            e.payload.as_json().to_owned(),
                        )
                    })
                    .collect();
                return Ok(written);
            }
            Step::Done(Err(CommandError::Domain(refusal))) => return Err(refusal.to_string()),
            Step::Done(Err(other)) => return Err(format!("not a domain outcome: {other}")),
            Step::Finished => {
                return Err(StoreError::permanent(Operation::Other, "finished without a result").to_string())
            }
        }
    }
}

fn machine<C: Command>(command: C) -> CommandMachine<C> {
    let now = Time::from_unix_millis(10_000);
    let context = ExecutionContext::new(CommandId::v7(now, [7; 10]));
    CommandMachine::new(command, ExecutionPolicy::default(), context, now, 11)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn views_from_any_cache_state_decide_exactly_as_a_full_fold(
        from_events in prop::collection::vec(event_strategy(), 0..25),
        to_events in prop::collection::vec(event_strategy(), 0..25),
        starts in (start_strategy(), start_strategy()),
        amount in 0u64..400,
        same_account in prop::bool::weighted(0.05),
    ) {
        let histories = vec![from_events, to_events];
        let to = if same_account { account(0) } else { account(1) };
        let transfer = Transfer { from: account(0), to: to.clone(), amount };

        let mut plain_store = seed_store(&histories);
        let expected = run(&mut plain_store, &mut machine(PlainTransfer(transfer.clone())));

        let mut store = seed_store(&histories);
        let mut primed = machine(transfer);
        let mut lied = 0;
        for ((n, events), start) in histories.iter().enumerate().zip([&starts.0, &starts.1]) {
            let stream = account(n as u32);
            let kind = ViewKind::of::<Account>();
            let at = |version: u64, view: Account, last_event| StreamView {
                stream: stream.clone(),
                kind,
                version: StreamVersion::new(version),
                base_version: StreamVersion::new(version),
                last_event,
                view: kind.decode(&serde_json::to_string(&view).expect("encodes")).expect("decodes"),
            };
            match start {
                Start::Cold => {}
                Start::Behind(back) => {
                    let version = events.len().saturating_sub(*back);
                    primed.prime_view(at(version as u64, fold(&events[..version]), None));
                }
                Start::Snapshot(back, honest) => {
                    let version = events.len().saturating_sub(*back);
                    let stored = store.events().iter().find(|e| e.stream_id == stream && e.version.get() == version as u64);
                    let Some(stored) = stored else { continue };
                    let (view, last_event) = if *honest {
                        (fold(&events[..version]), stored.event_id)
                    } else {
                        lied += 1;
                        (Account { open: true, balance: 999 }, eventcore::EventId::v7(Time::ZERO, [0xEE; 10]))
                    };
                    primed.prime_snapshot(at(version as u64, view, Some(last_event)));
                }
                Start::Ahead(ahead, balance) => {
                    lied += 1;
                    let version = events.len() as u64 + ahead;
                    primed.prime_view(at(version, Account { open: true, balance: *balance }, None));
                }
            }
        }
        let actual = run(&mut store, &mut primed);
        prop_assert_eq!(&actual, &expected);

        // Every view handed back is exactly the fold of the store's stream up
        // to the version it claims: safe to cache whatever happened.
        for view in primed.take_views() {
            let held: Vec<AccountEvent> = store
                .events()
                .iter()
                .filter(|e| e.stream_id == view.stream && e.version <= view.version)
                .map(|e| eventcore::decode_recorded::<AccountEvent>(e).expect("decodes"))
                .collect();
            prop_assert_eq!(held.len() as u64, view.version.get(), "{} claims a version the store has", view.stream);
            prop_assert_eq!(view.view.downcast::<Account>(), Some(&fold(&held)));
        }
        // A lying entry was either never needed (an earlier refusal) or caught.
        prop_assert!(primed.stale_views().len() <= lied);
    }
}
