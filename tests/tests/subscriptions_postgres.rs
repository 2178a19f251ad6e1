//! Subscriptions and projections on PostgreSQL: catch-up then live through
//! LISTEN/NOTIFY, out-of-order commits never skipped, exactly-once read
//! models under a crash, lease takeover with fencing, poison events parked
//! and replayed, and a listener that reconnects and catches up.
//!
//! Each test uses its own schema (`DATABASE_URL`, see
//! `eventcore_tests::postgres`) and skips loudly when no database answers
//! (fails under `CI=true`). Waits are bounded by a generous guard so that a
//! broken wake-up fails instead of hanging; nothing asserts on durations.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use eventcore::{
    AppendRequest, Batch, CommandId, EventId, EventMetadata, EventType, ExpectedVersion, GlobalPosition, HandleError,
    NewEvent, Payload, PoisonAction, PoisonPolicy, RecordedEvent, StreamAppend, StreamId, SubscriptionPolicy, Time,
};
use eventcore_postgres::{
    migrate_subscriptions, PgCheckpointStore, PgDeadLetterStore, PgLeaseStore, PgNotifier, PgProjectionStore,
    PgTransaction, PostgresStore,
};
use eventcore_tokio::{
    DeadLetterStore, EventStore, Lease, LeaseError, LeaseStore, Projection, ProjectionError, Runner, RunnerStatus,
    Subscriber,
};
use serde::{Deserialize, Serialize};
use sqlx::Connection;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, watch, Notify};

// ---------------------------------------------------------------- fixture

const GUARD: Duration = Duration::from_secs(60);

async fn guarded<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(GUARD, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: nothing happened within {GUARD:?}"),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Account {
    Deposited { amount: i64 },
    Withdrawn { amount: i64 },
}
impl eventcore::Event for Account {}

static NEXT: AtomicU64 = AtomicU64::new(1);

fn entropy() -> [u8; 10] {
    // UUIDv7 overwrites the high nibble of byte 0 and the top bits of byte 2.
    let n = NEXT.fetch_add(1, Ordering::Relaxed).to_le_bytes();
    let pid = std::process::id().to_le_bytes();
    [0, n[0], 0, n[1], n[2], n[3], n[4], pid[0], pid[1], pid[2]]
}

fn deposit(amount: i64) -> NewEvent {
    NewEvent {
        event_id: EventId::v7(Time::from_unix_millis(1), entropy()),
        event_type: EventType::new("Deposited").expect("valid type"),
        schema_version: 1,
        payload: Payload::from_json(format!(r#"{{"amount":{amount}}}"#)).expect("json"),
    }
}

fn request(stream: &str, events: Vec<NewEvent>) -> AppendRequest {
    AppendRequest {
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
    }
}

async fn append(store: &PostgresStore, stream: &str, events: Vec<NewEvent>) -> GlobalPosition {
    store
        .append(&request(stream, events))
        .await
        .expect("append")
        .last_position()
}

async fn deposits(store: &PostgresStore, n: usize) -> GlobalPosition {
    let mut last = GlobalPosition::START;
    for i in 0..n {
        last = append(store, &format!("acc-{}", i % 5), vec![deposit(1)]).await;
    }
    last
}

/// Every committed position, straight from the table (a global read would
/// hold back events behind transactions of other tests still running).
async fn all_positions(store: &PostgresStore) -> Vec<u64> {
    let s = &store.options().schema;
    let rows: Vec<i64> = sqlx::query_scalar(&format!("SELECT position FROM \"{s}\".events ORDER BY position"))
        .fetch_all(store.pool())
        .await
        .expect("positions");
    rows.into_iter().map(|p| u64::try_from(p).unwrap_or(0)).collect()
}

/// A fresh schema with the subscription tables and a balances read model;
/// `None` (skip) without a database.
async fn fresh(label: &str) -> Option<PostgresStore> {
    let store = eventcore_tests::postgres::fresh_store(label).await?;
    migrate_subscriptions(&store).await.expect("subscription schema");
    let s = &store.options().schema;
    for ddl in [
        format!("CREATE TABLE \"{s}\".balances (account text PRIMARY KEY, balance bigint NOT NULL)"),
        format!("CREATE TABLE \"{s}\".applied (position bigint PRIMARY KEY, times int NOT NULL)"),
    ] {
        sqlx::query(&ddl).execute(store.pool()).await.expect("read model table");
    }
    Some(store)
}

fn policy(batch: u32) -> SubscriptionPolicy {
    SubscriptionPolicy::default()
        .with_batch_size(NonZeroU32::new(batch).expect("non-zero"))
        // Live mode comes from notifications; polling is the fallback.
        .with_poll_interval(Duration::from_secs(2))
}

async fn until_handled(status: &mut watch::Receiver<RunnerStatus>, through: GlobalPosition) {
    guarded("waiting for the subscription", async {
        status
            .wait_for(|s| s.handled_through >= through && s.checkpoint >= through)
            .await
            .expect("runner alive");
    })
    .await;
}

/// The balances projection, in PostgreSQL.
#[derive(Clone, Default)]
struct PgBalances {
    schema: String,
    accept_negative: Arc<Mutex<bool>>,
    hang_at: Option<GlobalPosition>,
    reached: Arc<Mutex<Option<oneshot::Sender<()>>>>,
    gate: Option<Arc<Notify>>,
}

impl PgBalances {
    fn new(store: &PostgresStore) -> Self {
        PgBalances {
            schema: store.options().schema.clone(),
            ..PgBalances::default()
        }
    }

    fn hanging_at(store: &PostgresStore, position: u64, gate: Option<Arc<Notify>>) -> (Self, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let projection = PgBalances {
            hang_at: Some(GlobalPosition::new(position)),
            reached: Arc::new(Mutex::new(Some(tx))),
            gate,
            ..PgBalances::new(store)
        };
        (projection, rx)
    }
}

fn transient(error: sqlx::Error) -> ProjectionError {
    ProjectionError::Transient(error.to_string())
}

impl Projection for PgBalances {
    type Event = Account;
    type Store = PgProjectionStore;

    async fn apply(
        &mut self,
        tx: &mut PgTransaction,
        event: Account,
        recorded: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        if Some(recorded.position) == self.hang_at {
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
        let s = &self.schema;
        sqlx::query(&format!(
            "INSERT INTO \"{s}\".balances AS b (account, balance) VALUES ($1, $2) \
             ON CONFLICT (account) DO UPDATE SET balance = b.balance + EXCLUDED.balance"
        ))
        .bind(recorded.stream_id.as_str())
        .bind(delta)
        .execute(&mut **tx)
        .await
        .map_err(transient)?;
        sqlx::query(&format!(
            "INSERT INTO \"{s}\".applied AS a (position, times) VALUES ($1, 1) \
             ON CONFLICT (position) DO UPDATE SET times = a.times + 1"
        ))
        .bind(i64::try_from(recorded.position.get()).unwrap_or(i64::MAX))
        .execute(&mut **tx)
        .await
        .map_err(transient)?;
        Ok(())
    }
}

/// Every stored event applied exactly once, and the balances add up.
async fn assert_exactly_once(store: &PostgresStore) {
    let s = &store.options().schema;
    let applied: Vec<(i64, i32)> = sqlx::query_as(&format!(
        "SELECT position, times FROM \"{s}\".applied ORDER BY position"
    ))
    .fetch_all(store.pool())
    .await
    .expect("applied");
    let positions: Vec<u64> = applied.iter().map(|(p, _)| u64::try_from(*p).unwrap_or(0)).collect();
    assert_eq!(positions, all_positions(store).await, "every event applied");
    assert!(
        applied.iter().all(|(_, times)| *times == 1),
        "each exactly once: {applied:?}"
    );
    let total: Option<i64> = sqlx::query_scalar(&format!("SELECT sum(balance)::int8 FROM \"{s}\".balances"))
        .fetch_one(store.pool())
        .await
        .expect("sum");
    assert_eq!(total.unwrap_or(0), applied.len() as i64);
}

/// Records the positions it is handed.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<u64>>>);

impl Subscriber for Recorder {
    async fn handle(&mut self, batch: &Batch) -> Result<(), HandleError> {
        self.0
            .lock()
            .expect("lock")
            .extend(batch.events.iter().map(|e| e.position.get()));
        Ok(())
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_up_then_follows_live_commits_through_notifications() {
    let Some(store) = fresh("sub_live").await else { return };
    deposits(&store, 30).await;
    let notifier = PgNotifier::start(&store).await.expect("listener");
    let mut runner = Runner::projection(
        "balances",
        store.clone(),
        PgBalances::new(&store),
        PgProjectionStore::new(&store),
    )
    .with_policy(policy(8))
    .with_wakeups(notifier.subscribe());
    let mut status = runner.status();
    let task = tokio::spawn(async move { runner.run().await });
    for _ in 0..3 {
        let head = deposits(&store, 10).await;
        until_handled(&mut status, head).await;
    }
    assert_exactly_once(&store).await;
    assert!(notifier.notifications() > 0);
    task.abort();
    let _ = store.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_committed_late_below_a_seen_position_is_never_skipped() {
    let Some(store) = fresh("sub_order").await else { return };
    let notifier = PgNotifier::start(&store).await.expect("listener");
    let recorder = Recorder::default();
    let mut runner = Runner::subscription("audit", store.clone(), PgCheckpointStore::new(&store), recorder.clone())
        .with_policy(policy(8))
        .with_wakeups(notifier.subscribe());
    let mut status = runner.status();
    let task = tokio::spawn(async move { runner.run().await });
    guarded("caught up", status.wait_for(|s| s.caught_up))
        .await
        .expect("alive");

    // A takes its position first but commits last.
    let mut conn = store.pool().acquire().await.expect("connection");
    let mut held = conn.begin().await.expect("begin");
    let a = store
        .append_in(&mut held, &request("acc-a", vec![deposit(1)]))
        .await
        .expect("append a")
        .last_position();
    let before = status.borrow().stats.fetches;
    let b = append(&store, "acc-b", vec![deposit(1)]).await;
    assert!(a < b, "a's transaction is older: {a} < {b}");
    // The subscriber is woken by b's commit and reads while a is open.
    guarded("fetch after b", status.wait_for(|s| s.stats.fetches > before))
        .await
        .expect("alive");
    held.commit().await.expect("commit a");
    until_handled(&mut status, b).await;
    let seen = recorder.0.lock().expect("lock").clone();
    assert_eq!(seen, vec![a.get(), b.get()], "a is delivered, before b");
    task.abort();
    let _ = store.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_killed_mid_batch_applies_every_event_exactly_once() {
    let Some(store) = fresh("sub_kill").await else { return };
    deposits(&store, 20).await;
    let positions = all_positions(&store).await;
    let (dying, reached) = PgBalances::hanging_at(&store, positions[7], None);
    let mut runner =
        Runner::projection("balances", store.clone(), dying, PgProjectionStore::new(&store)).with_policy(policy(5));
    let task = tokio::spawn(async move { runner.run().await });
    guarded("reaching the 8th event", reached).await.expect("reached");
    task.abort();
    let _ = task.await;

    // What committed is whole batches before the 8th event, each applied
    // once; the batch in flight left nothing behind.
    let read_models = PgProjectionStore::new(&store);
    let checkpoint = read_models
        .checkpoint("balances")
        .await
        .expect("checkpoint")
        .unwrap_or(GlobalPosition::START);
    assert!(checkpoint.get() < positions[7], "the batch in flight did not commit");
    let s = &store.options().schema;
    let applied: Vec<i64> = sqlx::query_scalar(&format!("SELECT position FROM \"{s}\".applied ORDER BY position"))
        .fetch_all(store.pool())
        .await
        .expect("applied");
    let committed: Vec<i64> = positions
        .iter()
        .filter(|p| **p <= checkpoint.get())
        .map(|p| i64::try_from(*p).unwrap_or(i64::MAX))
        .collect();
    assert_eq!(applied, committed);

    // The notifier tells the runner how far the head is, so "caught up" is
    // not declared while another transaction holds events back.
    let notifier = PgNotifier::start(&store).await.expect("listener");
    let mut runner = Runner::projection("balances", store.clone(), PgBalances::new(&store), read_models)
        .with_policy(policy(5))
        .with_wakeups(notifier.subscribe());
    guarded("resuming", runner.run_until_caught_up())
        .await
        .expect("caught up");
    assert_exactly_once(&store).await;
    let _ = store.drop_schema().await;
}

/// What a holder frozen past its lease believes: renewals always succeed.
#[derive(Clone)]
struct Oblivious(PgLeaseStore);

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_fences_the_stale_holder_out_of_the_read_model() {
    let Some(store) = fresh("sub_fence").await else { return };
    deposits(&store, 10).await;
    let positions = all_positions(&store).await;
    let leases = PgLeaseStore::new(&store);
    let ttl = Duration::from_millis(500);

    let gate = Arc::new(Notify::new());
    let (frozen, reached) = PgBalances::hanging_at(&store, positions[2], Some(gate.clone()));
    let mut a = Runner::projection("balances", store.clone(), frozen, PgProjectionStore::new(&store)).with_lease(
        Oblivious(leases.clone()),
        "a",
        ttl,
    );
    let a_status = a.status();
    let a_task = tokio::spawn(async move { a.run().await });
    guarded("a mid-batch", reached).await.expect("reached");
    let a_token = a_status.borrow().token.expect("a holds the lease");

    let notifier = PgNotifier::start(&store).await.expect("listener");
    let mut b = Runner::projection(
        "balances",
        store.clone(),
        PgBalances::new(&store),
        PgProjectionStore::new(&store),
    )
    .with_lease(leases.clone(), "b", ttl)
    .with_wakeups(notifier.subscribe());
    let mut b_status = b.status();
    let b_task = tokio::spawn(async move { b.run().await });
    guarded(
        "b takes over",
        b_status.wait_for(|s| s.token.is_some_and(|t| t > a_token)),
    )
    .await
    .expect("alive");

    // a wakes up and finishes its batch: its commit is rejected.
    gate.notify_one();
    match guarded("a's commit", a_task).await.expect("joined") {
        Err(error) => assert!(error.is_fenced(), "expected a fenced error, got {error}"),
        Ok(summary) => panic!("the stale holder committed: {summary:?}"),
    }
    let head = deposits(&store, 3).await;
    until_handled(&mut b_status, head).await;
    assert_exactly_once(&store).await;
    b_task.abort();
    let _ = store.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_parked_in_postgres_and_replayed_after_a_fix() {
    let Some(store) = fresh("sub_poison").await else { return };
    deposits(&store, 3).await;
    let bad = append(&store, "acc-9", vec![deposit(-5)]).await;
    deposits(&store, 3).await;
    let dead_letters = PgDeadLetterStore::new(&store);
    let projection = PgBalances::new(&store);
    let notifier = PgNotifier::start(&store).await.expect("listener");
    let mut runner = Runner::projection(
        "balances",
        store.clone(),
        projection.clone(),
        PgProjectionStore::new(&store),
    )
    .with_policy(policy(10).with_poison(PoisonPolicy::retry(2, PoisonAction::Park)))
    .with_dead_letters(dead_letters.clone())
    .with_wakeups(notifier.subscribe());
    let summary = guarded("first run", runner.run_until_caught_up())
        .await
        .expect("caught up");
    assert_eq!(summary.stats.parked, 1);

    let parked = dead_letters.list("balances").await.expect("list");
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].poison.position, bad);
    assert_eq!(parked[0].poison.stream.as_str(), "acc-9");
    assert_eq!(parked[0].event.payload.as_json(), r#"{"amount": -5}"#);

    *projection.accept_negative.lock().expect("lock") = true;
    let report = guarded("replay", runner.replay_parked()).await.expect("replay");
    assert_eq!(report.replayed, vec![bad]);
    assert!(dead_letters.list("balances").await.expect("list").is_empty());
    let s = &store.options().schema;
    let total: Option<i64> = sqlx::query_scalar(&format!("SELECT sum(balance)::int8 FROM \"{s}\".balances"))
        .fetch_one(store.pool())
        .await
        .expect("sum");
    assert_eq!(total, Some(6 - 5));
    let _ = store.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_listener_reconnects_and_the_subscriber_catches_up() {
    let Some(store) = fresh("sub_reconnect").await else {
        return;
    };
    let notifier = PgNotifier::start(&store).await.expect("listener");
    let recorder = Recorder::default();
    let mut runner = Runner::subscription("audit", store.clone(), PgCheckpointStore::new(&store), recorder.clone())
        .with_policy(policy(8))
        .with_wakeups(notifier.subscribe());
    let mut status = runner.status();
    let task = tokio::spawn(async move { runner.run().await });
    let first = deposits(&store, 3).await;
    until_handled(&mut status, first).await;

    // Kill the listener's connection, then commit while it is gone.
    let killed: Vec<bool> =
        sqlx::query_scalar("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1")
            .bind(notifier.application_name())
            .fetch_all(store.pool())
            .await
            .expect("terminate");
    assert_eq!(killed, vec![true], "one listener connection");
    let head = deposits(&store, 4).await;
    until_handled(&mut status, head).await;
    assert!(notifier.reconnects() >= 1);
    let seen = recorder.0.lock().expect("lock").clone();
    assert_eq!(seen, all_positions(&store).await);
    task.abort();
    let _ = store.drop_schema().await;
}
