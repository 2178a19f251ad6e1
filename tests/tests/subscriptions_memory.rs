//! Subscriptions and projections on the in-memory store: what a consumer of
//! the global log can rely on.
//!
//! Every test runs on tokio's paused clock, so leases expiring and poll
//! intervals passing are deterministic; nothing asserts on elapsed time.

use eventcore::{
    AppendRequest, Batch, CommandId, EventFilter, EventId, EventMetadata, EventType, ExpectedVersion, GlobalPosition,
    HandleError, NewEvent, Payload, PoisonAction, PoisonCause, PoisonPolicy, ReadAllRequest, RecordedEvent,
    StreamAppend, StreamId, SubscriptionPolicy, Time,
};
use eventcore_tokio::{
    DeadLetterStore, EventStore, Lease, LeaseError, LeaseStore, MemoryCheckpointStore, MemoryDeadLetterStore,
    MemoryEventStore, MemoryLeaseStore, MemoryReadModel, MemoryTransaction, Projection, ProjectionError, Runner,
    RunnerStatus, Serving, Subscriber,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, watch, Notify};

// ---------------------------------------------------------------- fixture

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Account {
    Deposited { amount: i64 },
    Withdrawn { amount: i64 },
}
impl eventcore::Event for Account {}

static NEXT: AtomicU64 = AtomicU64::new(1);

fn entropy() -> [u8; 10] {
    // UUIDv7 overwrites the high nibble of byte 0 (version) and the top
    // bits of byte 2 (variant): keep the counter out of those.
    let n = NEXT.fetch_add(1, Ordering::Relaxed).to_le_bytes();
    [0, n[0], 0, n[1], n[2], n[3], n[4], n[5], n[6], n[7]]
}

fn raw(event_type: &str, payload: String) -> NewEvent {
    NewEvent {
        event_id: EventId::v7(Time::from_unix_millis(1), entropy()),
        event_type: EventType::new(event_type).expect("valid type"),
        schema_version: 1,
        payload: Payload::from_json(payload).expect("valid json"),
    }
}

fn deposit(amount: i64) -> NewEvent {
    raw("Deposited", format!(r#"{{"amount":{amount}}}"#))
}

async fn append(store: &MemoryEventStore, stream: &str, events: Vec<NewEvent>) -> GlobalPosition {
    let request = AppendRequest {
        metadata: Arc::new(EventMetadata::new(
            CommandId::v7(Time::from_unix_millis(1), entropy()),
            Time::from_unix_millis(1),
        )),
        streams: vec![StreamAppend {
            stream: StreamId::new(stream).expect("valid stream"),
            expected: ExpectedVersion::Any,
            events,
            tombstone: false,
        }],
    };
    store.append(&request).await.expect("append").last_position()
}

/// `n` deposits of 1, spread over accounts `acc-0..acc-4`.
async fn deposits(store: &MemoryEventStore, n: usize) -> GlobalPosition {
    let mut last = GlobalPosition::START;
    for i in 0..n {
        last = append(store, &format!("acc-{}", i % 5), vec![deposit(1)]).await;
    }
    last
}

fn batch_of(n: u32) -> SubscriptionPolicy {
    SubscriptionPolicy::default()
        .with_batch_size(NonZeroU32::new(n).expect("non-zero"))
        .with_poll_interval(Duration::from_millis(100))
}

fn pos(p: u64) -> GlobalPosition {
    GlobalPosition::new(p)
}

async fn until_handled(status: &mut watch::Receiver<RunnerStatus>, through: GlobalPosition) -> RunnerStatus {
    status
        .wait_for(|s| s.handled_through >= through && s.checkpoint >= through)
        .await
        .expect("runner alive")
        .clone()
}

/// Records every position it is handed, in order.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<u64>>>,
    /// Stops forever (like a killed process) when it reaches this position,
    /// after recording the events of the batch before it.
    hang_at: Option<u64>,
    reached: Arc<Mutex<Option<oneshot::Sender<()>>>>,
}

impl Recorder {
    fn seen(&self) -> Vec<u64> {
        self.seen.lock().expect("lock").clone()
    }
}

impl Subscriber for Recorder {
    async fn handle(&mut self, batch: &Batch) -> Result<(), HandleError> {
        for event in &batch.events {
            if Some(event.position.get()) == self.hang_at {
                if let Some(tx) = self.reached.lock().expect("lock").take() {
                    let _ = tx.send(());
                }
                std::future::pending::<()>().await;
            }
            self.seen.lock().expect("lock").push(event.position.get());
        }
        Ok(())
    }
}

/// Balances per stream plus how many times each position was applied.
#[derive(Clone, Debug, Default, PartialEq)]
struct Balances {
    balances: BTreeMap<String, i64>,
    applied: BTreeMap<u64, u32>,
}

/// The projection under test: rejects negative deposits (poison) unless
/// told they are fine; can hang at a position to simulate a dying process.
#[derive(Clone, Default)]
struct BalanceProjection {
    accept_negative: Arc<Mutex<bool>>,
    hang_at: Option<u64>,
    reached: Arc<Mutex<Option<oneshot::Sender<()>>>>,
    gate: Option<Arc<Notify>>,
}

impl Projection for BalanceProjection {
    type Event = Account;
    type Store = MemoryReadModel<Balances>;

    async fn apply(
        &mut self,
        tx: &mut MemoryTransaction<Balances>,
        event: Account,
        recorded: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        if Some(recorded.position.get()) == self.hang_at {
            if let Some(reached) = self.reached.lock().expect("lock").take() {
                let _ = reached.send(());
            }
            match &self.gate {
                Some(gate) => gate.notified().await,
                None => std::future::pending::<()>().await,
            }
        }
        let delta = match event {
            Account::Deposited { amount } if amount < 0 && !*self.accept_negative.lock().expect("lock") => {
                return Err(ProjectionError::Rejected(format!("negative deposit {amount}")));
            }
            Account::Deposited { amount } => amount,
            Account::Withdrawn { amount } => -amount,
        };
        let state = tx.state_mut();
        *state.balances.entry(recorded.stream_id.to_string()).or_default() += delta;
        *state.applied.entry(recorded.position.get()).or_default() += 1;
        Ok(())
    }
}

fn hanging_at(position: u64) -> (BalanceProjection, oneshot::Receiver<()>) {
    let (tx, rx) = oneshot::channel();
    let projection = BalanceProjection {
        hang_at: Some(position),
        reached: Arc::new(Mutex::new(Some(tx))),
        ..BalanceProjection::default()
    };
    (projection, rx)
}

fn applied_once(model: &MemoryReadModel<Balances>, through: u64) {
    let applied = model.read(|b| b.applied.clone());
    let expected: BTreeMap<u64, u32> = (1..=through).map(|p| (p, 1)).collect();
    assert_eq!(applied, expected, "every event applied exactly once");
}

// ---------------------------------------------------------------- catch-up and live

#[tokio::test(start_paused = true)]
async fn catches_up_then_follows_live_appends_without_gap_or_duplicate() {
    let store = MemoryEventStore::new();
    deposits(&store, 25).await;
    let recorder = Recorder::default();
    let mut runner = Runner::subscription("audit", store.clone(), MemoryCheckpointStore::new(), recorder.clone())
        .with_policy(batch_of(4))
        .with_wakeups(store.watch_head());
    let mut status = runner.status();
    let task = tokio::spawn(async move { runner.run().await });

    until_handled(&mut status, pos(25)).await;
    for _ in 0..3 {
        let head = deposits(&store, 7).await;
        until_handled(&mut status, head).await;
    }
    assert_eq!(recorder.seen(), (1..=46).collect::<Vec<_>>());
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn without_notifications_it_still_sees_new_events_by_polling() {
    let store = MemoryEventStore::new();
    let recorder = Recorder::default();
    let mut runner = Runner::subscription("poller", store.clone(), MemoryCheckpointStore::new(), recorder.clone())
        .with_policy(batch_of(4));
    let mut status = runner.status();
    let task = tokio::spawn(async move { runner.run().await });
    status.wait_for(|s| s.caught_up).await.expect("alive");
    let head = deposits(&store, 5).await;
    until_handled(&mut status, head).await;
    assert_eq!(recorder.seen(), vec![1, 2, 3, 4, 5]);
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_saves_the_last_checkpoint_and_a_restart_resumes_after_it() {
    let store = MemoryEventStore::new();
    deposits(&store, 10).await;
    let checkpoints = MemoryCheckpointStore::new();
    let first = Recorder::default();
    let mut runner = Runner::subscription("audit", store.clone(), checkpoints.clone(), first.clone())
        .with_policy(batch_of(3))
        .with_wakeups(store.watch_head());
    let (stop, stopped) = oneshot::channel::<()>();
    let mut status = runner.status();
    let task = tokio::spawn(async move {
        runner
            .run_until(async {
                let _ = stopped.await;
            })
            .await
    });
    until_handled(&mut status, pos(10)).await;
    stop.send(()).expect("runner waiting");
    let summary = task.await.expect("joined").expect("clean stop");
    assert_eq!(summary.checkpoint, Some(pos(10)));
    assert_eq!(checkpoints.get("audit"), Some(pos(10)));

    deposits(&store, 2).await;
    let second = Recorder::default();
    let mut again = Runner::subscription("audit", store.clone(), checkpoints.clone(), second.clone());
    again.run_until_caught_up().await.expect("caught up");
    assert_eq!(second.seen(), vec![11, 12], "resumes after the checkpoint");
}

// ---------------------------------------------------------------- crashes

#[tokio::test(start_paused = true)]
async fn a_subscriber_killed_mid_batch_resumes_from_its_checkpoint_at_least_once() {
    let store = MemoryEventStore::new();
    deposits(&store, 10).await;
    let checkpoints = MemoryCheckpointStore::new();
    let (tx, reached) = oneshot::channel();
    let dying = Recorder {
        hang_at: Some(7),
        reached: Arc::new(Mutex::new(Some(tx))),
        ..Recorder::default()
    };
    let mut runner =
        Runner::subscription("audit", store.clone(), checkpoints.clone(), dying.clone()).with_policy(batch_of(4));
    let task = tokio::spawn(async move { runner.run().await });
    reached.await.expect("reached position 7");
    task.abort();
    assert_eq!(dying.seen(), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(
        checkpoints.get("audit"),
        Some(pos(4)),
        "checkpoint of the first batch only"
    );

    let resumed = Recorder::default();
    let mut runner =
        Runner::subscription("audit", store.clone(), checkpoints.clone(), resumed.clone()).with_policy(batch_of(4));
    runner.run_until_caught_up().await.expect("caught up");
    assert_eq!(
        resumed.seen(),
        vec![5, 6, 7, 8, 9, 10],
        "the unfinished batch is delivered again"
    );
    assert_eq!(checkpoints.get("audit"), Some(pos(10)));
}

#[tokio::test(start_paused = true)]
async fn a_projection_killed_mid_batch_applies_every_event_exactly_once() {
    let store = MemoryEventStore::new();
    deposits(&store, 10).await;
    let model = MemoryReadModel::<Balances>::new();
    let (dying, reached) = hanging_at(7);
    let mut runner = Runner::projection("balances", store.clone(), dying, model.clone()).with_policy(batch_of(4));
    let task = tokio::spawn(async move { runner.run().await });
    reached.await.expect("reached position 7");
    task.abort();
    applied_once(&model, 4);
    assert_eq!(model.checkpoint("balances"), Some(pos(4)));

    let mut runner = Runner::projection("balances", store.clone(), BalanceProjection::default(), model.clone())
        .with_policy(batch_of(4));
    runner.run_until_caught_up().await.expect("caught up");
    applied_once(&model, 10);
    assert_eq!(model.read(|b| b.balances.values().sum::<i64>()), 10);
    assert_eq!(model.checkpoint("balances"), Some(pos(10)));
}

// ---------------------------------------------------------------- leases and fencing

/// A lease store seen by a holder that believes its lease never lapses (a
/// process frozen past its lease, clock skew): renewals "succeed" locally.
#[derive(Clone)]
struct Oblivious(MemoryLeaseStore);

impl LeaseStore for Oblivious {
    async fn try_acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: Time,
    ) -> Result<Option<Lease>, LeaseError> {
        self.0.try_acquire(name, holder, ttl, now).await
    }

    async fn renew(&self, lease: &Lease, ttl: Duration, now: Time) -> Result<Lease, LeaseError> {
        Ok(Lease {
            expires_at: now.saturating_add(ttl),
            ..lease.clone()
        })
    }

    async fn release(&self, lease: &Lease) -> Result<(), LeaseError> {
        self.0.release(lease).await
    }
}

#[tokio::test(start_paused = true)]
async fn only_the_lease_holder_runs_and_a_standby_takes_over_when_it_dies() {
    let store = MemoryEventStore::new();
    deposits(&store, 6).await;
    let leases = MemoryLeaseStore::new();
    let model = MemoryReadModel::<Balances>::new();
    let ttl = Duration::from_secs(3);
    let mut a = Runner::projection("balances", store.clone(), BalanceProjection::default(), model.clone())
        .with_wakeups(store.watch_head())
        .with_lease(leases.clone(), "a", ttl);
    let mut b = Runner::projection("balances", store.clone(), BalanceProjection::default(), model.clone())
        .with_wakeups(store.watch_head())
        .with_lease(leases.clone(), "b", ttl);
    let (mut a_status, mut b_status) = (a.status(), b.status());
    let a_task = tokio::spawn(async move { a.run().await });
    until_handled(&mut a_status, pos(6)).await;
    let b_task = tokio::spawn(async move { b.run().await });
    b_status
        .wait_for(|s| s.state == eventcore_tokio::RunnerState::Standby)
        .await
        .expect("alive");

    // a dies without releasing its lease; b takes over once it expires.
    a_task.abort();
    let _ = a_task.await;
    let head = deposits(&store, 4).await;
    let status = until_handled(&mut b_status, head).await;
    assert!(status.token > a_status.borrow().token, "a new tenure, a higher token");
    assert_eq!(leases.holder("balances").map(|(h, _)| h), Some("b".to_owned()));
    applied_once(&model, 10);
    b_task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_stale_holder_that_wakes_up_after_a_takeover_is_fenced_out() {
    let store = MemoryEventStore::new();
    deposits(&store, 10).await;
    let leases = MemoryLeaseStore::new();
    let model = MemoryReadModel::<Balances>::new();
    let ttl = Duration::from_secs(3);

    // a freezes in the middle of its first batch, still sure of its lease.
    let gate = Arc::new(Notify::new());
    let (mut frozen, reached) = hanging_at(5);
    frozen.gate = Some(gate.clone());
    let mut a = Runner::projection("balances", store.clone(), frozen, model.clone()).with_lease(
        Oblivious(leases.clone()),
        "a",
        ttl,
    );
    let a_task = tokio::spawn(async move { a.run().await });
    reached.await.expect("a is mid-batch");

    let mut b = Runner::projection("balances", store.clone(), BalanceProjection::default(), model.clone())
        .with_wakeups(store.watch_head())
        .with_lease(leases.clone(), "b", ttl);
    let mut b_status = b.status();
    let b_task = tokio::spawn(async move { b.run().await });
    until_handled(&mut b_status, pos(10)).await;

    // a wakes up and tries to commit its batch: rejected by the fence.
    gate.notify_one();
    let a_result = a_task.await.expect("joined");
    match a_result {
        Err(error) => assert!(error.is_fenced(), "expected a fenced error, got {error}"),
        Ok(summary) => panic!("a stale holder committed: {summary:?}"),
    }
    applied_once(&model, 10);
    assert_eq!(model.read(|b| b.balances.values().sum::<i64>()), 10);
    b_task.abort();
}

// ---------------------------------------------------------------- poison events

#[tokio::test(start_paused = true)]
async fn a_poison_event_is_parked_the_rest_continues_and_a_replay_applies_it() {
    let store = MemoryEventStore::new();
    deposits(&store, 3).await;
    let bad = append(&store, "acc-9", vec![deposit(-5)]).await;
    deposits(&store, 3).await;
    let model = MemoryReadModel::<Balances>::new();
    let dead_letters = MemoryDeadLetterStore::new();
    let projection = BalanceProjection::default();
    let mut runner = Runner::projection("balances", store.clone(), projection.clone(), model.clone())
        .with_policy(batch_of(10).with_poison(PoisonPolicy::retry(2, PoisonAction::Park)))
        .with_dead_letters(dead_letters.clone());
    let summary = runner.run_until_caught_up().await.expect("caught up");
    assert_eq!(summary.checkpoint, Some(pos(7)));
    assert_eq!(summary.stats.parked, 1);

    let parked = dead_letters.list("balances").await.expect("list");
    assert_eq!(parked.len(), 1);
    let letter = &parked[0];
    assert_eq!((letter.poison.position, letter.poison.stream.as_str()), (bad, "acc-9"));
    assert!(matches!(&letter.poison.cause, PoisonCause::Handler(m) if m.contains("negative deposit")));
    assert_eq!(model.read(|b| b.applied.len()), 6, "everything but the poison event");

    // The handler is fixed; the parked event is replayed and removed.
    *projection.accept_negative.lock().expect("lock") = true;
    let report = runner.replay_parked().await.expect("replay");
    assert_eq!(report.replayed, vec![bad]);
    assert!(report.still_failing.is_empty());
    assert!(dead_letters.list("balances").await.expect("list").is_empty());
    applied_once(&model, 7);
    assert_eq!(model.read(|b| b.balances["acc-9"]), -5);
    assert_eq!(
        model.checkpoint("balances"),
        Some(pos(7)),
        "a replay never moves the checkpoint back"
    );
}

#[tokio::test(start_paused = true)]
async fn under_the_stop_policy_a_poison_event_stops_the_projection_with_its_position_and_stream() {
    let store = MemoryEventStore::new();
    deposits(&store, 2).await;
    let bad = append(&store, "acc-9", vec![deposit(-1)]).await;
    deposits(&store, 2).await;
    let model = MemoryReadModel::<Balances>::new();
    let mut runner = Runner::projection("balances", store.clone(), BalanceProjection::default(), model.clone())
        .with_policy(batch_of(10).with_poison(PoisonPolicy::stop()));
    let error = runner.run_until_caught_up().await.expect_err("stops");
    match error {
        eventcore_tokio::RunError::Subscription(eventcore::SubscriptionError::Poison(p)) => {
            assert_eq!((p.position, p.stream.as_str()), (bad, "acc-9"));
        }
        other => panic!("expected a poison error, got {other}"),
    }
    applied_once(&model, 2);
    assert_eq!(
        model.checkpoint("balances"),
        Some(pos(2)),
        "everything before it is committed"
    );
}

#[tokio::test(start_paused = true)]
async fn an_event_that_does_not_decode_is_poison_too() {
    let store = MemoryEventStore::new();
    deposits(&store, 1).await;
    let bad = append(&store, "acc-1", vec![raw("Deposited", r#"{"amount":"lots"}"#.into())]).await;
    let dead_letters = MemoryDeadLetterStore::new();
    let mut runner = Runner::projection(
        "balances",
        store.clone(),
        BalanceProjection::default(),
        MemoryReadModel::new(),
    )
    .with_policy(batch_of(10).with_poison(PoisonPolicy::park()))
    .with_dead_letters(dead_letters.clone());
    runner.run_until_caught_up().await.expect("caught up");
    let parked = dead_letters.list("balances").await.expect("list");
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].event.position, bad);
    assert!(matches!(parked[0].poison.cause, PoisonCause::Decode(_)));
}

// ---------------------------------------------------------------- filters

#[tokio::test]
async fn the_store_filters_by_stream_prefix_and_type_and_limits_after_filtering() {
    let store = MemoryEventStore::new();
    for i in 0..10 {
        append(&store, &format!("acc-{i}"), vec![deposit(1)]).await;
        append(
            &store,
            &format!("order-{i}"),
            vec![raw("Withdrawn", r#"{"amount":1}"#.into())],
        )
        .await;
    }
    let read = |filter: EventFilter, limit: u32| {
        let store = store.clone();
        async move {
            store
                .read_all(&ReadAllRequest {
                    after: GlobalPosition::START,
                    limit: NonZeroU32::new(limit).expect("non-zero"),
                    filter,
                })
                .await
                .expect("read")
        }
    };
    let by_prefix = read(EventFilter::all().with_stream_prefix("order-"), 3).await;
    assert_eq!(by_prefix.events.len(), 3, "the limit counts matching events only");
    assert!(by_prefix
        .events
        .iter()
        .all(|e| e.stream_id.as_str().starts_with("order-")));
    assert_eq!(by_prefix.complete_through, by_prefix.events[2].position);

    let stream = StreamId::new("acc-3").expect("valid");
    let by_stream = read(EventFilter::all().with_streams([stream.clone()]), 5).await;
    assert_eq!(by_stream.events.len(), 1);
    assert_eq!(by_stream.events[0].stream_id, stream);
    assert_eq!(
        by_stream.complete_through,
        pos(20),
        "nothing else matches up to the head"
    );

    let withdrawn = EventType::new("Withdrawn").expect("valid");
    let by_type = read(EventFilter::all().with_event_types([withdrawn.clone()]), 100).await;
    assert_eq!(by_type.events.len(), 10);
    assert!(by_type.events.iter().all(|e| e.event_type == withdrawn));
}

#[tokio::test(start_paused = true)]
async fn a_filtered_subscription_sees_only_matches_and_checkpoints_past_the_rest() {
    let store = MemoryEventStore::new();
    for i in 0..6 {
        append(&store, &format!("acc-{i}"), vec![deposit(1)]).await;
        append(&store, &format!("order-{i}"), vec![deposit(1)]).await;
    }
    let checkpoints = MemoryCheckpointStore::new();
    let recorder = Recorder::default();
    let mut runner = Runner::subscription("orders", store.clone(), checkpoints.clone(), recorder.clone())
        .with_policy(batch_of(2))
        .with_filter(EventFilter::all().with_stream_prefix("order-"));
    runner.run_until_caught_up().await.expect("caught up");
    assert_eq!(recorder.seen(), vec![2, 4, 6, 8, 10, 12]);
    append(&store, "acc-99", vec![deposit(1)]).await;
    runner.run_until_caught_up().await.expect("caught up");
    assert_eq!(recorder.seen().len(), 6);
    assert_eq!(
        checkpoints.get("orders"),
        Some(pos(13)),
        "moved past the filtered-out event"
    );
}

// ---------------------------------------------------------------- backpressure

/// Handles one batch per permit: as slow as the test wants.
struct Throttled {
    permits: Arc<tokio::sync::Semaphore>,
    seen: Arc<Mutex<Vec<u64>>>,
}

impl Subscriber for Throttled {
    async fn handle(&mut self, batch: &Batch) -> Result<(), HandleError> {
        let permit = self.permits.acquire().await.expect("open");
        permit.forget();
        self.seen
            .lock()
            .expect("lock")
            .extend(batch.events.iter().map(|e| e.position.get()));
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_consumer_bounds_how_far_fetching_runs_ahead() {
    let store = MemoryEventStore::new();
    deposits(&store, 200).await;
    let permits = Arc::new(tokio::sync::Semaphore::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let policy = batch_of(5).with_buffer_limit(15);
    let mut runner = Runner::subscription(
        "slow",
        store.clone(),
        MemoryCheckpointStore::new(),
        Throttled {
            permits: permits.clone(),
            seen: seen.clone(),
        },
    )
    .with_policy(policy);
    let mut status = runner.status();
    let task = tokio::spawn(async move { runner.run().await });
    // Stuck on the first batch: fetching stops once the buffer is full.
    status.wait_for(|s| s.stats.fetches >= 3).await.expect("alive");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(status.borrow().stats.fetches, 3, "no room for a fourth batch");
    permits.add_permits(1_000);
    until_handled(&mut status, pos(200)).await;
    let stats = status.borrow().stats.clone();
    assert!(stats.max_buffered <= 15, "buffered {} > 15", stats.max_buffered);
    assert_eq!(seen.lock().expect("lock").clone(), (1..=200).collect::<Vec<_>>());
    task.abort();
}

// ---------------------------------------------------------------- rebuild

#[tokio::test(start_paused = true)]
async fn a_projection_is_rebuilt_into_a_fresh_model_while_the_old_serves_then_switched() {
    let store = MemoryEventStore::new();
    deposits(&store, 8).await;
    let old = MemoryReadModel::<Balances>::new();
    let serving = Serving::new(old.clone());
    let mut live = Runner::projection("balances-v1", store.clone(), BalanceProjection::default(), old.clone())
        .with_wakeups(store.watch_head());
    let mut live_status = live.status();
    let live_task = tokio::spawn(async move { live.run().await });
    until_handled(&mut live_status, pos(8)).await;

    // Rebuild from position 0 into a fresh model; the old one keeps serving
    // (and keeps following new events) meanwhile.
    let fresh = MemoryReadModel::<Balances>::new();
    let mut rebuild = Runner::projection(
        "balances-v2",
        store.clone(),
        BalanceProjection::default(),
        fresh.clone(),
    )
    .with_wakeups(store.watch_head());
    let head = deposits(&store, 2).await;
    rebuild.run_until_caught_up().await.expect("rebuilt");
    until_handled(&mut live_status, head).await;
    assert_eq!(serving.current().read(|b| b.balances.values().sum::<i64>()), 10);
    assert_eq!(fresh.read(|b| b.balances.clone()), old.read(|b| b.balances.clone()));

    let replaced = serving.switch(fresh.clone());
    live_task.abort();
    let mut rebuild_status = rebuild.status();
    let rebuild_task = tokio::spawn(async move { rebuild.run().await });
    let head = deposits(&store, 3).await;
    until_handled(&mut rebuild_status, head).await;
    assert_eq!(serving.current().read(|b| b.balances.values().sum::<i64>()), 13);
    applied_once(&serving.current(), 13);
    assert!(replaced.read(|b| b.applied.len()) <= 13);
    rebuild_task.abort();
}
