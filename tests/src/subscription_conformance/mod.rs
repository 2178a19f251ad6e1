//! The subscription-store conformance suite: the contracts of the stores a
//! subscription runner writes to, checked case by case, so that the memory
//! stores and the PostgreSQL stores answer them identically.
//!
//! One file per store kind, each case a `pub async fn` generic over that
//! kind's factory trait:
//!
//! - [`checkpoints`]: [`CheckpointStore`] (claim, monotonic saves, fencing);
//! - [`leases`]: [`LeaseStore`] (acquire, renew, release, expiry, fencing
//!   tokens);
//! - [`dead_letters`]: [`DeadLetterStore`] (park, list, remove);
//! - [`projections`]: [`ProjectionStore`] (read model and checkpoint in one
//!   fenced transaction).
//!
//! [`crate::subscription_store_conformance!`] turns every case of the four
//! kinds into its own `#[tokio::test]` (in modules `checkpoints`, `leases`,
//! `dead_letters`, `projections`, so a failure names kind and case) for a
//! factory that implements all four factory traits;
//! [`crate::checkpoint_store_conformance!`],
//! [`crate::lease_store_conformance!`],
//! [`crate::dead_letter_store_conformance!`] and
//! [`crate::projection_store_conformance!`] do one kind each.
//!
//! The suite assumes nothing the traits' documentation does not promise.
//! Where it pins down more (which letter stays when a position is parked
//! twice) the case says so. Where the stores disagree today, the case
//! checks what the documentation promises and says so in bold:
//! `projections::begin_before_any_claim_is_refused` checks only the refusal
//! both make (their errors differ). A case one store does not pass can be
//! generated `#[ignore]`d for it (`subscription_store_conformance!(factory,
//! ignore_disputed)`); none is today.
//!
//! ```
//! // In a test target this expands to one `#[tokio::test]` per case.
//! eventcore_tests::subscription_store_conformance!(
//!     eventcore_tests::subscription_conformance::MemorySubscriptionStores
//! );
//!
//! // Each case is also a plain async function, runnable on its own:
//! # fn main() {
//! use eventcore_tests::subscription_conformance::{checkpoints, MemorySubscriptionStores};
//! tokio::runtime::Runtime::new()
//!     .expect("a runtime")
//!     .block_on(checkpoints::an_unknown_subscription_claims_start(MemorySubscriptionStores));
//! # }
//! ```

use eventcore::{
    CausationId, CommandId, CorrelationId, EventId, EventMetadata, EventType, GlobalPosition, Payload, PoisonEvent,
    RecordedEvent, StreamId, StreamVersion, Time,
};
use eventcore_postgres::{PgCheckpointStore, PgDeadLetterStore, PgLeaseStore, PgProjectionStore, PostgresStore};
use eventcore_tokio::{
    CheckpointStore, DeadLetter, DeadLetterStore, LeaseStore, MemoryCheckpointStore, MemoryDeadLetterStore,
    MemoryLeaseStore, MemoryReadModel, ProjectionStore,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub mod checkpoints;
pub mod dead_letters;
pub mod leases;
pub mod projections;

// ---------------------------------------------------------------------------
// Factories
// ---------------------------------------------------------------------------

/// Makes empty checkpoint stores for the suite. Every call must return a
/// store isolated from every other (its own schema or database), so that
/// cases run in parallel.
pub trait CheckpointStoreFactory: Send + Sync + 'static {
    /// The store under test.
    type Checkpoints: CheckpointStore + Clone;

    /// A fresh, empty, isolated store.
    fn fresh_checkpoints(&self) -> impl Future<Output = Self::Checkpoints> + Send;
}

/// Whose clock decides when a lease expires.
///
/// The [`LeaseStore`] contract lets a store with a clock of its own (a
/// database) ignore the `now` its callers pass, so the suite lets time pass
/// in the way the store can see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryClock {
    /// The store expires leases on the `now` its callers pass
    /// (`MemoryLeaseStore`): the suite moves a virtual clock, no waiting.
    Caller,
    /// The store expires leases on a clock of its own (`PgLeaseStore`, on
    /// the database clock): the suite passes the wall clock as `now` and
    /// sleeps for time to pass.
    Store,
}

/// Makes empty lease stores for the suite. Every call must return a store
/// isolated from every other, so that cases run in parallel.
pub trait LeaseStoreFactory: Send + Sync + 'static {
    /// The store under test.
    type Leases: LeaseStore + Clone;

    /// A fresh, empty, isolated store.
    fn fresh_leases(&self) -> impl Future<Output = Self::Leases> + Send;

    /// Whose clock decides expiry in these stores.
    fn expiry_clock(&self) -> ExpiryClock;
}

/// Makes empty dead-letter stores for the suite. Every call must return a
/// store isolated from every other, so that cases run in parallel.
pub trait DeadLetterStoreFactory: Send + Sync + 'static {
    /// The store under test.
    type DeadLetters: DeadLetterStore + Clone;

    /// A fresh, empty, isolated store.
    fn fresh_dead_letters(&self) -> impl Future<Output = Self::DeadLetters> + Send;
}

/// Makes empty projection stores for the suite, and reads and writes their
/// read model.
///
/// A [`ProjectionStore`] writes through its own transaction type, so the
/// suite's read model is the store's to define: a map from text keys to
/// counters, to which [`ProjectionStoreFactory::add`] adds inside a
/// transaction and which [`ProjectionStoreFactory::read_model`] reads as
/// committed.
pub trait ProjectionStoreFactory: Send + Sync + 'static {
    /// The store under test.
    type Projections: ProjectionStore + Clone;
    /// What the factory needs to read the read model and to reopen the store
    /// (the memory model itself; the PostgreSQL store of the schema).
    type Model: Clone + Send + Sync + 'static;

    /// A fresh, empty, isolated store with an empty read model.
    fn fresh_projections(&self) -> impl Future<Output = (Self::Projections, Self::Model)> + Send;

    /// The same read model and checkpoints, as a new process would open
    /// them (a restart).
    fn reopen(&self, model: &Self::Model) -> impl Future<Output = Self::Projections> + Send;

    /// Adds `delta` to the counter `key` of the read model, inside `tx`.
    fn add(
        &self,
        model: &Self::Model,
        tx: &mut <Self::Projections as ProjectionStore>::Transaction,
        key: &str,
        delta: i64,
    ) -> impl Future<Output = ()> + Send;

    /// The committed read model: every counter, by key.
    fn read_model(&self, model: &Self::Model) -> impl Future<Output = BTreeMap<String, i64>> + Send;

    /// The committed checkpoint of projection `name`, if it was ever
    /// claimed.
    fn committed_checkpoint(
        &self,
        model: &Self::Model,
        name: &str,
    ) -> impl Future<Output = Option<GlobalPosition>> + Send;
}

/// The read model of [`MemorySubscriptionStores`]: counters by key.
pub type MemoryCounters = MemoryReadModel<BTreeMap<String, i64>>;

/// The memory stores of `eventcore-tokio`: [`MemoryCheckpointStore`],
/// [`MemoryLeaseStore`] (expiring on the caller's clock),
/// [`MemoryDeadLetterStore`] and [`MemoryReadModel`].
///
/// ```
/// use eventcore_tests::subscription_conformance::{CheckpointStoreFactory, MemorySubscriptionStores};
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(async {
/// let store = MemorySubscriptionStores.fresh_checkpoints().await;
/// assert_eq!(store.get("anything"), None);
/// # });
/// ```
#[derive(Clone, Copy, Debug)]
pub struct MemorySubscriptionStores;

impl CheckpointStoreFactory for MemorySubscriptionStores {
    type Checkpoints = MemoryCheckpointStore;

    async fn fresh_checkpoints(&self) -> MemoryCheckpointStore {
        MemoryCheckpointStore::new()
    }
}

impl LeaseStoreFactory for MemorySubscriptionStores {
    type Leases = MemoryLeaseStore;

    async fn fresh_leases(&self) -> MemoryLeaseStore {
        MemoryLeaseStore::new()
    }

    fn expiry_clock(&self) -> ExpiryClock {
        ExpiryClock::Caller
    }
}

impl DeadLetterStoreFactory for MemorySubscriptionStores {
    type DeadLetters = MemoryDeadLetterStore;

    async fn fresh_dead_letters(&self) -> MemoryDeadLetterStore {
        MemoryDeadLetterStore::new()
    }
}

impl ProjectionStoreFactory for MemorySubscriptionStores {
    type Projections = MemoryCounters;
    type Model = MemoryCounters;

    async fn fresh_projections(&self) -> (MemoryCounters, MemoryCounters) {
        let model = MemoryCounters::new();
        (model.clone(), model)
    }

    async fn reopen(&self, model: &MemoryCounters) -> MemoryCounters {
        model.clone()
    }

    async fn add(
        &self,
        _model: &MemoryCounters,
        tx: &mut eventcore_tokio::MemoryTransaction<BTreeMap<String, i64>>,
        key: &str,
        delta: i64,
    ) {
        *tx.state_mut().entry(key.to_owned()).or_default() += delta;
    }

    async fn read_model(&self, model: &MemoryCounters) -> BTreeMap<String, i64> {
        model.read(|counters| counters.clone())
    }

    async fn committed_checkpoint(&self, model: &MemoryCounters, name: &str) -> Option<GlobalPosition> {
        model.checkpoint(name)
    }
}

/// The PostgreSQL stores of `eventcore-postgres` ([`PgCheckpointStore`],
/// [`PgLeaseStore`], [`PgDeadLetterStore`], [`PgProjectionStore`]), each
/// on a freshly created and migrated schema. The projections' read model
/// is a table `conformance_counters (key text PRIMARY KEY, value bigint)`
/// in that schema.
///
/// Use it through [`pg_subscription_stores!`](crate::pg_subscription_stores),
/// which returns early from the test (skipping it) when no database answers
/// and `CI` is not `true`.
///
/// ```no_run
/// # async fn demo() {
/// use eventcore_tests::subscription_conformance::{CheckpointStoreFactory, PgSubscriptionStores};
/// if let Some(factory) = PgSubscriptionStores::available().await {
///     let _checkpoints = factory.fresh_checkpoints().await;
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct PgSubscriptionStores;

impl PgSubscriptionStores {
    /// The factory if the database answers; `None` (after a loud notice)
    /// when it cannot be reached and `CI` is not `true`.
    ///
    /// # Panics
    ///
    /// When the database cannot be reached and `CI=true`.
    pub async fn available() -> Option<PgSubscriptionStores> {
        crate::postgres::PostgresFactory::available().await?;
        Some(PgSubscriptionStores)
    }

    async fn schema(label: &str) -> PostgresStore {
        match crate::postgres::fresh_store(label).await {
            Some(store) => store,
            None => panic!("PostgreSQL became unreachable after the probe succeeded"),
        }
    }

    fn counters(store: &PostgresStore) -> String {
        format!("\"{}\".conformance_counters", store.options().schema)
    }
}

impl CheckpointStoreFactory for PgSubscriptionStores {
    type Checkpoints = PgCheckpointStore;

    async fn fresh_checkpoints(&self) -> PgCheckpointStore {
        PgCheckpointStore::new(&PgSubscriptionStores::schema("sub_checkpoints").await)
    }
}

impl LeaseStoreFactory for PgSubscriptionStores {
    type Leases = PgLeaseStore;

    async fn fresh_leases(&self) -> PgLeaseStore {
        PgLeaseStore::new(&PgSubscriptionStores::schema("sub_leases").await)
    }

    fn expiry_clock(&self) -> ExpiryClock {
        ExpiryClock::Store
    }
}

impl DeadLetterStoreFactory for PgSubscriptionStores {
    type DeadLetters = PgDeadLetterStore;

    async fn fresh_dead_letters(&self) -> PgDeadLetterStore {
        PgDeadLetterStore::new(&PgSubscriptionStores::schema("sub_dead_letters").await)
    }
}

impl ProjectionStoreFactory for PgSubscriptionStores {
    type Projections = PgProjectionStore;
    type Model = PostgresStore;

    async fn fresh_projections(&self) -> (PgProjectionStore, PostgresStore) {
        let store = PgSubscriptionStores::schema("sub_projections").await;
        let table = PgSubscriptionStores::counters(&store);
        sqlx::query(&format!(
            "CREATE TABLE {table} (key text PRIMARY KEY, value bigint NOT NULL)"
        ))
        .execute(store.pool())
        .await
        .unwrap_or_else(|e| panic!("creating {table}: {e}"));
        (PgProjectionStore::new(&store), store)
    }

    async fn reopen(&self, model: &PostgresStore) -> PgProjectionStore {
        PgProjectionStore::new(model)
    }

    async fn add(&self, model: &PostgresStore, tx: &mut eventcore_postgres::PgTransaction, key: &str, delta: i64) {
        let table = PgSubscriptionStores::counters(model);
        sqlx::query(&format!(
            "INSERT INTO {table} AS c (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = c.value + EXCLUDED.value"
        ))
        .bind(key)
        .bind(delta)
        .execute(&mut **tx)
        .await
        .unwrap_or_else(|e| panic!("adding {delta} to {key}: {e}"));
    }

    async fn read_model(&self, model: &PostgresStore) -> BTreeMap<String, i64> {
        let table = PgSubscriptionStores::counters(model);
        let rows: Vec<(String, i64)> = sqlx::query_as(&format!("SELECT key, value FROM {table} ORDER BY key"))
            .fetch_all(model.pool())
            .await
            .unwrap_or_else(|e| panic!("reading {table}: {e}"));
        rows.into_iter().collect()
    }

    async fn committed_checkpoint(&self, model: &PostgresStore, name: &str) -> Option<GlobalPosition> {
        PgProjectionStore::new(model)
            .checkpoint(name)
            .await
            .unwrap_or_else(|e| panic!("reading the checkpoint of {name}: {e}"))
    }
}

/// Evaluates to a [`PgSubscriptionStores`], or returns from the enclosing
/// test (after a loud skip notice) when PostgreSQL cannot be reached and
/// `CI` is not `true`:
/// `subscription_store_conformance!(pg_subscription_stores!())`.
#[macro_export]
macro_rules! pg_subscription_stores {
    () => {
        match $crate::subscription_conformance::PgSubscriptionStores::available().await {
            Some(factory) => factory,
            None => return,
        }
    };
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

static UNIQUE: AtomicU64 = AtomicU64::new(1);

/// Ten bytes of entropy never handed out before in this process (the
/// counter kept clear of the UUIDv7 version and variant bits).
fn unique_entropy() -> [u8; 10] {
    let n = UNIQUE.fetch_add(1, Ordering::Relaxed).to_le_bytes();
    [0, n[0], 0, n[1], n[2], n[3], n[4], n[5], n[6], n[7]]
}

/// A time with sub-microsecond digits, which must round-trip exactly.
///
/// ```
/// assert_eq!(eventcore_tests::subscription_conformance::suite_time().as_unix_nanos() % 1_000, 789);
/// ```
pub fn suite_time() -> eventcore::Time {
    Time::from_unix_nanos(1_700_000_000_123_456_789)
}

/// A stream id the suite knows to be valid.
///
/// ```
/// assert_eq!(eventcore_tests::subscription_conformance::stream("acc-1").as_str(), "acc-1");
/// ```
pub fn stream(name: &str) -> StreamId {
    StreamId::new(name).expect("the suite only uses valid stream ids")
}

/// A recorded event at `position` (version 1 of stream `acc-<position>`)
/// with rich metadata (causation id, user keys beyond ASCII) and a payload
/// recording the position.
///
/// ```
/// use eventcore::GlobalPosition;
/// let event = eventcore_tests::subscription_conformance::recorded(7);
/// assert_eq!(event.position, GlobalPosition::new(7));
/// ```
pub fn recorded(position: u64) -> RecordedEvent {
    let metadata = EventMetadata {
        command_id: CommandId::v7(suite_time(), unique_entropy()),
        correlation_id: CorrelationId::v7(suite_time(), unique_entropy()),
        causation_id: Some(CausationId::v7(suite_time(), unique_entropy())),
        timestamp: suite_time(),
        user: BTreeMap::from([
            ("user".to_owned(), "ada".to_owned()),
            ("tenant ✓".to_owned(), "acme \"quoted\" \\ back".to_owned()),
            ("empty".to_owned(), String::new()),
        ]),
    };
    RecordedEvent {
        event_id: EventId::v7(suite_time(), unique_entropy()),
        stream_id: stream(&format!("acc-{position}")),
        version: StreamVersion::new(1),
        position: GlobalPosition::new(position),
        event_type: EventType::new("Deposited").expect("valid event type"),
        schema_version: 1,
        payload: Payload::from_value(&serde_json::json!({ "at": position, "note": "café ☕ \"q\"" }))
            .expect("a JSON value serializes"),
        metadata: Arc::new(metadata),
    }
}

/// A letter of `subscription` parking [`recorded`]`(position)` as a handler
/// failure, parked at [`suite_time`].
///
/// ```
/// use eventcore::GlobalPosition;
/// let letter = eventcore_tests::subscription_conformance::letter("balances", 4);
/// assert_eq!(letter.poison.position, GlobalPosition::new(4));
/// ```
pub fn letter(subscription: &str, position: u64) -> DeadLetter {
    let event = recorded(position);
    DeadLetter {
        subscription: subscription.to_owned(),
        poison: PoisonEvent::handler(&event, format!("cannot apply {position}")),
        event,
        parked_at: suite_time(),
        replay_requested_at: None,
    }
}

fn json(payload: &Payload) -> serde_json::Value {
    serde_json::from_str(payload.as_json())
        .unwrap_or_else(|e| panic!("stored payload is not JSON ({e}): {}", payload.as_json()))
}

/// Asserts that `listed` is `expected`: every field exactly, the payload as
/// JSON (as the event-store suite compares payloads).
///
/// ```
/// use eventcore_tests::subscription_conformance::{assert_same_letter, letter};
/// let parked = letter("balances", 4);
/// assert_same_letter(&parked, &parked);
/// ```
#[track_caller]
pub fn assert_same_letter(listed: &DeadLetter, expected: &DeadLetter) {
    assert_eq!(
        json(&listed.event.payload),
        json(&expected.event.payload),
        "payload of the letter at {}",
        expected.event.position
    );
    let strip = |l: &DeadLetter| {
        let mut l = l.clone();
        l.event.payload = Payload::from_trusted_json("null");
        l
    };
    assert_eq!(strip(listed), strip(expected));
}

/// Asserts that `listed` are `expected`, in that order.
///
/// ```
/// use eventcore_tests::subscription_conformance::{assert_same_letters, letter};
/// let parked = vec![letter("balances", 4), letter("balances", 5)];
/// assert_same_letters(&parked, &parked);
/// ```
#[track_caller]
pub fn assert_same_letters(listed: &[DeadLetter], expected: &[DeadLetter]) {
    let positions = |ls: &[DeadLetter]| ls.iter().map(|l| l.event.position.get()).collect::<Vec<_>>();
    assert_eq!(
        positions(listed),
        positions(expected),
        "the letters' positions, in order"
    );
    for (listed, expected) in listed.iter().zip(expected) {
        assert_same_letter(listed, expected);
    }
}

/// Expands to one `#[tokio::test]` per case of all four subscription-store
/// suites for `$factory` (an expression evaluated in each test, so it may
/// `.await` or `return`, as [`pg_subscription_stores!`](crate::pg_subscription_stores)
/// does), in modules `checkpoints`, `leases`, `dead_letters` and
/// `projections`.
///
/// With `, ignore_disputed` the cases memory and PostgreSQL answer
/// differently today (each explained in its documentation) are generated
/// `#[ignore]`d, for the store that does not pass them (see
/// [`crate::projection_store_conformance!`]).
///
/// ```
/// eventcore_tests::subscription_store_conformance!(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores
/// );
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! subscription_store_conformance {
    ($factory:expr) => {
        $crate::subscription_store_conformance!(@kinds $factory; $crate::projection_store_conformance!($factory););
    };
    ($factory:expr, ignore_disputed) => {
        $crate::subscription_store_conformance!(@kinds $factory;
            $crate::projection_store_conformance!($factory, ignore_disputed););
    };
    (@kinds $factory:expr; $projections:item) => {
        mod checkpoints {
            $crate::checkpoint_store_conformance!($factory);
        }
        mod leases {
            $crate::lease_store_conformance!($factory);
        }
        mod dead_letters {
            $crate::dead_letter_store_conformance!($factory);
        }
        mod projections {
            $projections
        }
    };
    (@cases $kind:ident; $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::subscription_conformance::$kind::$case($factory).await;
            }
        )*
    };
    (@ignored_cases $kind:ident; $factory:expr; $reason:literal; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = $reason]
            async fn $case() {
                $crate::subscription_conformance::$kind::$case($factory).await;
            }
        )*
    };
}
