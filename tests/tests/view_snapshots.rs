//! Persisted view snapshots through the executor: a view command over a
//! stream with a small `SNAPSHOT_EVERY`, checking that snapshots are written
//! at the right versions, that a fresh executor starts from one and reads
//! only the tail, that bad snapshots are ignored without changing a
//! decision, and that a broken snapshot store never fails or holds up a
//! command.
//!
//! Every check of a decision compares the state `decide` saw with the state
//! a full fold of the stream gives (tracked by the test as it appends).

// Off the simulated path: a wall clock times the commands.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use eventcore::{
    AnyEvent, Command, CommandError, Decision, Emit, Event, EventId, ExecutionError, ReadRequest, ReadResponse,
    Snapshot, StoreError, StreamId, StreamVersion, Time, View, ViewKind, Views,
};
use eventcore_tokio::{EventStore, Executor, MemoryEventStore, MemorySnapshotStore, SnapshotError, SnapshotStore};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// The domain: deposits and withdrawals, folded by a `Balance` view.
// ---------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
enum Ev {
    Deposited(u64),
    Withdrew(u64),
}
impl Event for Ev {}

/// The balance and how many events were folded into it (which must equal
/// the stream version the view is at).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Balance {
    balance: u64,
    events: u64,
}

impl Balance {
    fn fold(&mut self, event: &Ev) {
        self.events += 1;
        match event {
            Ev::Deposited(n) => self.balance += n,
            Ev::Withdrew(n) => self.balance = self.balance.saturating_sub(*n),
        }
    }
}

impl View for Balance {
    type Event = Ev;
    const NAME: &'static str = "balance";
    const SNAPSHOT_EVERY: u64 = 10;
    fn apply(&mut self, event: &Ev) {
        self.fold(event);
    }
}

/// The same fold under another name, snapshotted after every event: for the
/// tests that pile up snapshot writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct EveryBalance(Balance);

impl View for EveryBalance {
    type Event = Ev;
    const NAME: &'static str = "every-balance";
    const SNAPSHOT_EVERY: u64 = 1;
    fn apply(&mut self, event: &Ev) {
        self.0.fold(event);
    }
}

#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("balance {balance} does not cover {asked}")]
    Insufficient { balance: u64, asked: u64 },
    #[error("the command read no view of its stream")]
    NoView,
}

/// Deposits (`delta > 0`) into or withdraws (`delta < 0`) from one account,
/// refusing a withdrawal the balance does not cover. Written by hand the
/// way `#[derive(Command)]` writes a view command. It records the view it
/// decided on in `seen` (the last `decide` wins, as the last one is what
/// commits).
#[derive(Clone)]
struct Op<V = Balance> {
    account: StreamId,
    delta: i64,
    seen: Arc<Mutex<Option<Balance>>>,
    view: std::marker::PhantomData<fn() -> V>,
}

trait AsBalance: View {
    fn balance(&self) -> Balance;
}
impl AsBalance for Balance {
    fn balance(&self) -> Balance {
        *self
    }
}
impl AsBalance for EveryBalance {
    fn balance(&self) -> Balance {
        self.0
    }
}

impl<V: AsBalance> Op<V> {
    fn new(account: &StreamId, delta: i64) -> Self {
        Op {
            account: account.clone(),
            delta,
            seen: Arc::default(),
            view: std::marker::PhantomData,
        }
    }

    fn seen(&self) -> Option<Balance> {
        *self.seen.lock().expect("not poisoned")
    }
}

impl<V: AsBalance> Command for Op<V> {
    type Event = AnyEvent;
    type State = Views;
    type Error = Refused;

    fn streams(&self) -> Vec<StreamId> {
        vec![self.account.clone()]
    }

    fn view_of(&self, _: &StreamId) -> Option<ViewKind> {
        Some(ViewKind::of::<V>())
    }

    fn views_mut(state: &mut Views) -> Option<&mut Views> {
        Some(state)
    }

    fn apply(&self, _: &mut Views, _: &StreamId, _: &AnyEvent) {}

    fn decide(&self, state: &Views, out: &mut Decision<AnyEvent>) -> Result<(), Refused> {
        let view = state.get::<V>(&self.account).ok_or(Refused::NoView)?.balance();
        *self.seen.lock().expect("not poisoned") = Some(view);
        let amount = self.delta.unsigned_abs();
        if self.delta >= 0 {
            Emit::new(out).emit(&self.account, Ev::Deposited(amount));
        } else if view.balance < amount {
            return Err(Refused::Insufficient {
                balance: view.balance,
                asked: amount,
            });
        } else {
            Emit::new(out).emit(&self.account, Ev::Withdrew(amount));
        }
        Ok(())
    }
}

/// What a full fold of the stream gives, kept by the test as it appends.
#[derive(Clone, Copy, Debug, Default)]
struct Truth(Balance);

impl Truth {
    fn record(&mut self, delta: i64) {
        let event = if delta >= 0 {
            Ev::Deposited(delta.unsigned_abs())
        } else {
            Ev::Withdrew(delta.unsigned_abs())
        };
        self.0.fold(&event);
    }
}

/// The amounts of the `i`-th operation: mostly deposits, some withdrawals
/// (always covered), so the balance is not just a count.
fn delta(i: u64) -> i64 {
    if i % 4 == 3 {
        -3
    } else {
        i64::try_from(i % 7 + 1).expect("small")
    }
}

/// Runs `n` operations on `account` through `executor`, each checked
/// against the truth; returns the truth after them.
async fn run_ops<S: EventStore, V: AsBalance>(
    executor: &Executor<S>,
    account: &StreamId,
    n: u64,
    mut truth: Truth,
) -> Truth {
    for i in 0..n {
        let d = delta(i);
        let op = Op::<V>::new(account, d);
        let seen = op.clone();
        executor
            .execute(op)
            .await
            .unwrap_or_else(|e| panic!("operation {i} on {account}: {e}"));
        assert_eq!(seen.seen(), Some(truth.0), "operation {i} decided on the wrong view");
        truth.record(d);
    }
    truth
}

/// Checks that a fresh decision agrees with a full fold: a withdrawal of one
/// more than the true balance is refused with the true balance, and a
/// deposit is decided on exactly the true view. Returns the truth after the
/// deposit.
async fn decides_like_a_full_fold<S: EventStore>(executor: &Executor<S>, account: &StreamId, truth: Truth) -> Truth {
    let too_much = Op::<Balance>::new(account, -(i64::try_from(truth.0.balance).expect("fits") + 1));
    let seen = too_much.clone();
    match executor.execute(too_much).await {
        Err(ExecutionError {
            error: CommandError::Domain(Refused::Insufficient { balance, .. }),
            ..
        }) => {
            assert_eq!(balance, truth.0.balance, "refused on the wrong balance");
        }
        other => panic!("an overdraft must be refused, got {other:?}"),
    }
    assert_eq!(seen.seen(), Some(truth.0));
    run_ops::<S, Balance>(executor, account, 1, truth).await
}

// ---------------------------------------------------------------------------
// Stores for the tests
// ---------------------------------------------------------------------------

/// An event store that counts the events its reads return.
#[derive(Clone)]
struct Counting<S> {
    inner: S,
    events_read: Arc<AtomicU64>,
    reads: Arc<AtomicU64>,
}

impl<S> Counting<S> {
    fn new(inner: S) -> Self {
        Counting {
            inner,
            events_read: Arc::default(),
            reads: Arc::default(),
        }
    }

    /// (reads, events returned) since the last call.
    fn take(&self) -> (u64, u64) {
        (
            self.reads.swap(0, Ordering::Relaxed),
            self.events_read.swap(0, Ordering::Relaxed),
        )
    }
}

impl<S: EventStore> EventStore for Counting<S> {
    async fn read(&self, request: &ReadRequest) -> Result<ReadResponse, StoreError> {
        let response = self.inner.read(request).await?;
        let events: usize = response.streams.iter().map(|s| s.events.len()).sum();
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.events_read.fetch_add(events as u64, Ordering::Relaxed);
        Ok(response)
    }

    fn append(
        &self,
        request: &eventcore::AppendRequest,
    ) -> impl Future<Output = Result<eventcore::AppendReceipt, StoreError>> + Send {
        self.inner.append(request)
    }

    fn read_all(
        &self,
        request: &eventcore::ReadAllRequest,
    ) -> impl Future<Output = Result<eventcore::ReadAllResponse, StoreError>> + Send {
        self.inner.read_all(request)
    }
}

/// How a [`Broken`] snapshot store misbehaves.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Loads find nothing; saves fail at once.
    SaveFails,
    /// Loads find nothing; saves never finish.
    SaveHangs,
    /// Loads never finish; saves succeed.
    LoadHangs,
    /// Loads answer a decodable snapshot of another view version, whatever
    /// was asked (a store that mixes up keys).
    WrongViewVersion,
}

#[derive(Clone)]
struct Broken {
    fault: Fault,
    saves: Arc<AtomicU64>,
}

impl Broken {
    fn new(fault: Fault) -> Self {
        Broken {
            fault,
            saves: Arc::default(),
        }
    }
}

impl SnapshotStore for Broken {
    async fn load(&self, stream: &StreamId, view: &str, view_version: u32) -> Result<Option<Snapshot>, SnapshotError> {
        match self.fault {
            Fault::SaveFails | Fault::SaveHangs => Ok(None),
            Fault::LoadHangs => std::future::pending().await,
            Fault::WrongViewVersion => Ok(Some(Snapshot {
                stream: stream.clone(),
                view: view.to_owned(),
                view_version: view_version + 1,
                stream_version: StreamVersion::new(1),
                last_event_id: EventId::v7(Time::ZERO, [0xAB; 10]),
                payload: r#"{"balance": 1000000, "events": 1}"#.to_owned(),
                taken_at: Time::ZERO,
            })),
        }
    }

    async fn save(&self, _: &Snapshot) -> Result<(), SnapshotError> {
        self.saves.fetch_add(1, Ordering::Relaxed);
        match self.fault {
            Fault::SaveFails => Err(SnapshotError::Unavailable("always down".into())),
            Fault::SaveHangs => std::future::pending().await,
            Fault::LoadHangs | Fault::WrongViewVersion => Ok(()),
        }
    }

    async fn discard(&self, _: &Snapshot) -> Result<bool, SnapshotError> {
        Ok(false)
    }

    async fn delete_view(&self, _: &str) -> Result<u64, SnapshotError> {
        Ok(0)
    }
}

fn account(name: &str) -> StreamId {
    StreamId::new(name).expect("valid stream id")
}

async fn load(snapshots: &impl SnapshotStore, stream: &StreamId) -> Option<Snapshot> {
    snapshots
        .load(stream, Balance::NAME, Balance::VERSION)
        .await
        .expect("memory snapshot store answers")
}

/// `n` operations on `account` with a fresh executor writing snapshots to
/// `snapshots`, flushed; returns the truth.
async fn history<S: EventStore + Clone>(
    events: &S,
    snapshots: &(impl SnapshotStore + Clone),
    account: &StreamId,
    n: u64,
) -> Truth {
    let writer = Executor::new(events.clone()).with_snapshots(snapshots.clone());
    let truth = run_ops::<S, Balance>(&writer, account, n, Truth::default()).await;
    writer.flush_snapshots().await;
    truth
}

// ---------------------------------------------------------------------------
// (a) snapshots are written at multiples of SNAPSHOT_EVERY
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_is_written_each_time_a_stream_crosses_a_multiple_of_snapshot_every() {
    let events = MemoryEventStore::new();
    let snapshots = MemorySnapshotStore::new();
    let acc = account("acc-a");
    let executor = Executor::new(events.clone()).with_snapshots(snapshots.clone());

    let truth = run_ops::<_, Balance>(&executor, &acc, 9, Truth::default()).await;
    executor.flush_snapshots().await;
    assert_eq!(load(&snapshots, &acc).await, None, "no multiple of 10 crossed yet");

    let truth = run_ops::<_, Balance>(&executor, &acc, 1, truth).await;
    executor.flush_snapshots().await;
    let at_10 = load(&snapshots, &acc).await.expect("a snapshot at version 10");
    assert_eq!(at_10.stream_version, StreamVersion::new(10));
    assert_eq!(at_10.view_version, Balance::VERSION);
    let view: Balance = serde_json::from_str(&at_10.payload).expect("payload is the view");
    assert_eq!(view, truth.0, "the snapshot holds the view at version 10");

    let truth = run_ops::<_, Balance>(&executor, &acc, 13, truth).await;
    executor.flush_snapshots().await;
    let at_20 = load(&snapshots, &acc).await.expect("a snapshot");
    assert_eq!(
        at_20.stream_version,
        StreamVersion::new(20),
        "the newest multiple of 10 below 23"
    );
    assert_eq!(truth.0.events, 23);
    let stats = executor.snapshot_stats();
    assert_eq!(stats.written, 2, "{stats:?}");
    assert_eq!((stats.write_errors, stats.skipped), (0, 0), "{stats:?}");
}

// ---------------------------------------------------------------------------
// (b) a fresh executor starts from the snapshot and reads only the tail
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_executor_starts_from_the_snapshot_and_reads_only_the_tail() {
    let events = Counting::new(MemoryEventStore::new());
    let snapshots = MemorySnapshotStore::new();
    let (at_head, with_tail) = (account("acc-head"), account("acc-tail"));
    let truth_head = history(&events, &snapshots, &at_head, 20).await;
    let truth_tail = history(&events, &snapshots, &with_tail, 25).await;
    events.take();

    // A new process: empty view cache, same stores.
    let fresh = Executor::new(events.clone()).with_snapshots(snapshots.clone());

    // The snapshot is at the head: the only event read is the one it ends
    // on, which proves the snapshot belongs to this stream's history.
    let truth_head = decides_like_a_full_fold(&fresh, &at_head, truth_head).await;
    let (_, read) = events.take();
    assert_eq!(read, 1, "started from the snapshot at the head");
    assert_eq!(truth_head.0.events, 21);

    // Five events after the snapshot at 20: only those are read, plus the
    // snapshot's own last event (checked, not folded again).
    let fresh = Executor::new(events.clone()).with_snapshots(snapshots.clone());
    let op = Op::<Balance>::new(&with_tail, 1);
    let seen = op.clone();
    let done = fresh.execute(op).await.expect("deposit");
    assert_eq!(seen.seen(), Some(truth_tail.0), "decided on the full view");
    let (_, read) = events.take();
    assert_eq!(read, 1 + 5, "read only the tail after version 20 ({:?})", done.stats);
    assert_eq!(done.stats.stale_views, 0);
    let stats = fresh.snapshot_stats();
    assert_eq!((stats.loaded, stats.rejected), (1, 0), "{stats:?}");
}

// ---------------------------------------------------------------------------
// (c) bad snapshots are ignored and the decision is the full fold's
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_payload_is_ignored_and_counted() {
    let events = Counting::new(MemoryEventStore::new());
    let snapshots = MemorySnapshotStore::new();
    let acc = account("acc-corrupt");
    let truth = history(&events, &snapshots, &acc, 25).await;
    let good = load(&snapshots, &acc).await.expect("a snapshot at 20");
    snapshots.put_raw(Snapshot {
        payload: r#"{"balance": "lots"}"#.to_owned(),
        ..good
    });
    events.take();

    let fresh = Executor::new(events.clone()).with_snapshots(snapshots.clone());
    decides_like_a_full_fold(&fresh, &acc, truth).await;
    let stats = fresh.snapshot_stats();
    assert_eq!((stats.loaded, stats.rejected), (0, 1), "{stats:?}");
    let (_, read) = events.take();
    assert_eq!(read, 25, "folded from the first event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_another_view_version_is_ignored() {
    let events = MemoryEventStore::new();
    let snapshots = MemorySnapshotStore::new();
    let acc = account("acc-version");
    let truth = history(&events, &snapshots, &acc, 15).await;
    // Drop the good one, plant one of another (say, a future) view version
    // whose content would be badly wrong if used.
    assert_eq!(snapshots.delete_view(Balance::NAME).await.expect("delete"), 1);
    snapshots.put_raw(Snapshot {
        stream: acc.clone(),
        view: Balance::NAME.to_owned(),
        view_version: Balance::VERSION + 1,
        stream_version: StreamVersion::new(15),
        last_event_id: EventId::v7(Time::ZERO, [0xAB; 10]),
        payload: r#"{"balance": 1000000, "events": 15}"#.to_owned(),
        taken_at: Time::ZERO,
    });
    let fresh = Executor::new(events.clone()).with_snapshots(snapshots.clone());
    let truth = decides_like_a_full_fold(&fresh, &acc, truth).await;
    let stats = fresh.snapshot_stats();
    assert_eq!(stats.loaded, 0, "{stats:?}");
    assert_eq!(stats.not_found, 1, "looked up under its own version only: {stats:?}");

    // A store that answers with the wrong version anyway is caught by the
    // check of the record itself.
    let lying = Executor::new(events.clone()).with_snapshots(Broken::new(Fault::WrongViewVersion));
    decides_like_a_full_fold(&lying, &acc, truth).await;
    let stats = lying.snapshot_stats();
    assert_eq!((stats.loaded, stats.rejected), (0, 1), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_ahead_of_the_stream_is_dropped_and_the_stream_folded() {
    let events = Counting::new(MemoryEventStore::new());
    let snapshots = MemorySnapshotStore::new();
    let acc = account("acc-ahead");
    let truth = history(&events, &snapshots, &acc, 12).await;
    // A snapshot that decodes, but claims versions the stream does not have
    // (restored from another database, say).
    snapshots.put_raw(Snapshot {
        stream: acc.clone(),
        view: Balance::NAME.to_owned(),
        view_version: Balance::VERSION,
        stream_version: StreamVersion::new(1000),
        last_event_id: EventId::v7(Time::ZERO, [0xAB; 10]),
        payload: r#"{"balance": 1000000, "events": 1000}"#.to_owned(),
        taken_at: Time::ZERO,
    });
    events.take();

    let fresh = Executor::new(events.clone()).with_snapshots(snapshots.clone());
    let op = Op::<Balance>::new(&acc, 5);
    let seen = op.clone();
    let done = fresh.execute(op).await.expect("deposit");
    assert_eq!(seen.seen(), Some(truth.0), "decided on the full fold, not the lie");
    assert_eq!(done.stats.stale_views, 1, "{:?}", done.stats);
    let (_, read) = events.take();
    assert_eq!(read, 12, "folded from the first event");
    let mut truth = truth;
    truth.record(5);
    // The executor's next decision is right too (the cache holds the
    // rebuilt view, not the lie).
    decides_like_a_full_fold(&fresh, &acc, truth).await;
}

// ---------------------------------------------------------------------------
// (d) a broken snapshot store never fails or holds up a command
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_store_whose_saves_fail_never_fails_a_command() {
    let events = MemoryEventStore::new();
    let broken = Broken::new(Fault::SaveFails);
    let executor = Executor::new(events.clone()).with_snapshots(broken.clone());
    let acc = account("acc-save-fails");
    let truth = run_ops::<_, EveryBalance>(&executor, &acc, 30, Truth::default()).await;
    executor.flush_snapshots().await;
    assert_eq!(truth.0.events, 30);
    let stats = executor.snapshot_stats();
    assert_eq!(stats.written, 0, "{stats:?}");
    assert!(stats.write_errors > 0, "failures are counted: {stats:?}");
    assert_eq!(stats.write_errors + stats.skipped, 30, "{stats:?}");
    assert_eq!(broken.saves.load(Ordering::Relaxed), stats.write_errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_store_whose_saves_hang_never_holds_up_a_command() {
    let events = MemoryEventStore::new();
    let broken = Broken::new(Fault::SaveHangs);
    let executor = Executor::new(events.clone()).with_snapshots(broken.clone());
    let acc = account("acc-save-hangs");
    let started = Instant::now();
    let truth = tokio::time::timeout(
        Duration::from_secs(10),
        run_ops::<_, EveryBalance>(&executor, &acc, 30, Truth::default()),
    )
    .await
    .expect("commands finish although every snapshot write hangs");
    assert_eq!(truth.0.events, 30);
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "30 commands took {elapsed:?}");
    let stats = executor.snapshot_stats();
    // Writes in flight are bounded; the rest are skipped, not queued.
    // (The spawned writes may not all have reached the store yet.)
    let started_writes = broken.saves.load(Ordering::Relaxed);
    assert!(stats.skipped >= 20, "{stats:?}");
    assert!(
        started_writes <= 30 - stats.skipped,
        "{started_writes} writes hang at once; {stats:?}"
    );
    assert_eq!(stats.written + stats.write_errors, 0, "{stats:?}");
}

/// A hung save is given up after the write timeout (counted as a write
/// error), so it cannot hold its in-flight slot for ever, and
/// `flush_snapshots` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_snapshot_writes_are_given_up_on() {
    let executor = Executor::new(MemoryEventStore::new()).with_snapshots(Broken::new(Fault::SaveHangs));
    run_ops::<_, EveryBalance>(&executor, &account("acc-hung"), 3, Truth::default()).await;
    tokio::time::timeout(Duration::from_secs(30), executor.flush_snapshots())
        .await
        .expect("flush_snapshots returns once hung writes time out");
    assert_eq!(executor.snapshot_stats().write_errors, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_store_whose_loads_hang_costs_a_bounded_wait_and_a_full_read() {
    let events = MemoryEventStore::new();
    let acc = account("acc-load-hangs");
    let truth = run_ops::<_, Balance>(
        &Executor::new(events.clone()).with_view_cache(None),
        &acc,
        12,
        Truth::default(),
    )
    .await;
    let executor = Executor::new(events.clone()).with_snapshots(Broken::new(Fault::LoadHangs));
    let op = Op::<Balance>::new(&acc, 2);
    let seen = op.clone();
    tokio::time::timeout(Duration::from_secs(10), executor.execute(op))
        .await
        .expect("the load is given up on")
        .expect("deposit");
    assert_eq!(seen.seen(), Some(truth.0));
    assert_eq!(executor.snapshot_stats().load_errors, 1);
}

// ---------------------------------------------------------------------------
// (e) delete_view, then a fresh executor folds from the start
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_delete_view_a_fresh_executor_folds_the_whole_stream() {
    let events = Counting::new(MemoryEventStore::new());
    let snapshots = MemorySnapshotStore::new();
    let (a, b) = (account("acc-del-1"), account("acc-del-2"));
    let truth_a = history(&events, &snapshots, &a, 22).await;
    let truth_b = history(&events, &snapshots, &b, 31).await;
    assert_eq!(snapshots.delete_view(Balance::NAME).await.expect("delete"), 2);
    events.take();

    let fresh = Executor::new(events.clone()).with_snapshots(snapshots.clone());
    let truth_a = decides_like_a_full_fold(&fresh, &a, truth_a).await;
    decides_like_a_full_fold(&fresh, &b, truth_b).await;
    let (_, read) = events.take();
    assert_eq!(read, 22 + 31, "both streams folded from their first event");
    let stats = fresh.snapshot_stats();
    assert_eq!((stats.loaded, stats.not_found), (0, 2), "{stats:?}");

    // Snapshots come back as the streams grow again.
    run_ops::<_, Balance>(&fresh, &a, 10, truth_a).await;
    fresh.flush_snapshots().await;
    let back = load(&snapshots, &a).await.expect("a new snapshot");
    assert_eq!(back.stream_version, StreamVersion::new(30));
}

// ---------------------------------------------------------------------------
// PostgreSQL: the same cold start on PostgresStore + PgSnapshotStore
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_fresh_executor_starts_from_a_pg_snapshot_and_reads_only_the_tail() {
    let Some(store) = eventcore_tests::postgres::fresh_store("view_snapshots").await else {
        return;
    };
    let snapshots = eventcore_postgres::PgSnapshotStore::new(&store);
    let events = Counting::new(store.clone());
    let acc = account("acc-pg");
    let truth = history(&events, &snapshots, &acc, 25).await;
    let held = snapshots
        .load(&acc, Balance::NAME, Balance::VERSION)
        .await
        .expect("load")
        .expect("a snapshot");
    assert_eq!(held.stream_version, StreamVersion::new(20));
    let loads_before = snapshots.loads();
    events.take();

    let fresh = Executor::new(events.clone()).with_snapshots(snapshots.clone());
    let op = Op::<Balance>::new(&acc, 1);
    let seen = op.clone();
    fresh.execute(op).await.expect("deposit");
    assert_eq!(seen.seen(), Some(truth.0));
    let (_, read) = events.take();
    assert_eq!(
        read,
        1 + 5,
        "read only the snapshot's last event and the tail after version 20"
    );
    assert_eq!(snapshots.loads(), loads_before + 1, "one snapshot row fetched");
    let _ = store.drop_schema().await;
}

/// A snapshot ahead of its stream is discarded from the store by the cold
/// start that finds it out, so newest-wins cannot keep the lie: the next
/// true snapshot takes its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_ahead_of_the_stream_is_replaced_by_the_next_true_one() {
    let events = MemoryEventStore::new();
    let snapshots = MemorySnapshotStore::new();
    let acc = account("acc-ahead-kept");
    let truth = history(&events, &snapshots, &acc, 5).await;
    snapshots.put_raw(Snapshot {
        stream: acc.clone(),
        view: Balance::NAME.to_owned(),
        view_version: Balance::VERSION,
        stream_version: StreamVersion::new(1000),
        last_event_id: EventId::v7(Time::ZERO, [0xAB; 10]),
        payload: r#"{"balance": 1000000, "events": 1000}"#.to_owned(),
        taken_at: Time::ZERO,
    });
    let fresh = Executor::new(events.clone()).with_snapshots(snapshots.clone());
    run_ops::<_, Balance>(&fresh, &acc, 10, truth).await;
    fresh.flush_snapshots().await;
    let held = load(&snapshots, &acc).await.expect("a snapshot");
    assert_eq!(
        held.stream_version,
        StreamVersion::new(10),
        "the true snapshot at 10 replaced the lie"
    );
}
