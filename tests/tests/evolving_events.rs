//! Two modules in one store: same-named variants of two namespaced enums
//! never read each other, and a projection of one module's events skips
//! the other's — filtered in the store's query — without parking or
//! stopping, on memory and on PostgreSQL. An event of the projection's own
//! type that does not decode is still poison.

use eventcore::{
    AppendRequest, Command, CommandId, Decision, DecodeErrorKind, Event, EventFilter, EventId, EventMetadata,
    EventType, ExpectedVersion, NewEvent, Payload, PoisonAction, PoisonCause, PoisonPolicy, RecordedEvent,
    StreamAppend, StreamId, SubscriptionPolicy, Time,
};
use eventcore_postgres::{migrate_subscriptions, PgProjectionStore, PgTransaction, PostgresStore};
use eventcore_tokio::{
    DeadLetterStore, EventStore, Executor, MemoryDeadLetterStore, MemoryEventStore, MemoryReadModel, MemoryTransaction,
    Projection, ProjectionError, Runner,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;

/// The orders module's events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum OrderEvent {
    Created { id: u32 },
}
impl Event for OrderEvent {
    const NAMESPACE: &'static str = "order";
}

/// The users module's events: the same variant name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum UserEvent {
    Created { login: String },
}
impl Event for UserEvent {
    const NAMESPACE: &'static str = "user";
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

struct CreateOrder(u32);
impl Command for CreateOrder {
    type Event = OrderEvent;
    type State = ();
    type Error = Never;
    fn streams(&self) -> Vec<StreamId> {
        vec![StreamId::new(format!("order-{}", self.0)).expect("valid")]
    }
    fn apply(&self, _: &mut (), _: &StreamId, _: &OrderEvent) {}
    fn decide(&self, _: &(), out: &mut Decision<OrderEvent>) -> Result<(), Never> {
        out.emit(&self.streams()[0], OrderEvent::Created { id: self.0 });
        Ok(())
    }
}

struct CreateUser(String);
impl Command for CreateUser {
    type Event = UserEvent;
    type State = ();
    type Error = Never;
    fn streams(&self) -> Vec<StreamId> {
        vec![StreamId::new(format!("user-{}", self.0)).expect("valid")]
    }
    fn apply(&self, _: &mut (), _: &StreamId, _: &UserEvent) {}
    fn decide(&self, _: &(), out: &mut Decision<UserEvent>) -> Result<(), Never> {
        out.emit(&self.streams()[0], UserEvent::Created { login: self.0.clone() });
        Ok(())
    }
}

/// Both modules write, interleaved: 3 orders, 3 users.
async fn both_modules_write<S: EventStore>(executor: &Executor<S>) {
    for n in 1..=3 {
        executor.execute(CreateOrder(n)).await.expect("order created");
        executor
            .execute(CreateUser(format!("u{n}")))
            .await
            .expect("user created");
    }
}

fn policy() -> SubscriptionPolicy {
    SubscriptionPolicy::default()
        .with_batch_size(NonZeroU32::new(2).expect("non-zero"))
        .with_poison(PoisonPolicy::retry(1, PoisonAction::Park))
}

/// Order ids by stream, in memory.
#[derive(Clone, Default)]
struct OrdersInMemory;

impl Projection for OrdersInMemory {
    type Event = OrderEvent;
    type Store = MemoryReadModel<BTreeMap<String, u32>>;

    async fn apply(
        &mut self,
        tx: &mut MemoryTransaction<BTreeMap<String, u32>>,
        event: OrderEvent,
        recorded: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let OrderEvent::Created { id } = event;
        tx.state_mut().insert(recorded.stream_id.to_string(), id);
        Ok(())
    }
}

#[test]
fn the_default_projection_filter_is_the_types_its_enum_decodes() {
    let filter = OrdersInMemory.filter();
    let types: Vec<&str> = filter.event_types.iter().map(EventType::as_str).collect();
    assert_eq!(types, ["order.Created"]);
    assert_eq!(filter, EventFilter::decodable_by::<OrderEvent>());
}

#[tokio::test(start_paused = true)]
async fn a_projection_skips_another_modules_same_named_events_in_memory() {
    let store = MemoryEventStore::new();
    both_modules_write(&Executor::new(store.clone())).await;
    let model = MemoryReadModel::<BTreeMap<String, u32>>::new();
    let dead_letters = MemoryDeadLetterStore::new();
    let mut runner = Runner::projection("orders", store.clone(), OrdersInMemory, model.clone())
        .with_policy(policy())
        .with_dead_letters(dead_letters.clone());
    let summary = runner.run_until_caught_up().await.expect("caught up, not stopped");
    assert_eq!(
        summary.stats.parked, 0,
        "a user event is not poison to the orders projection"
    );
    assert!(dead_letters.list("orders").await.expect("list").is_empty());
    let orders = model.read(|m| m.clone());
    assert_eq!(
        orders,
        BTreeMap::from([
            ("order-1".to_owned(), 1),
            ("order-2".to_owned(), 2),
            ("order-3".to_owned(), 3)
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn an_event_of_its_own_type_that_does_not_decode_is_still_poison() {
    let store = MemoryEventStore::new();
    both_modules_write(&Executor::new(store.clone())).await;
    let corrupt = store
        .append(&AppendRequest {
            metadata: Arc::new(EventMetadata::new(
                CommandId::v7(Time::from_unix_millis(1), [7; 10]),
                Time::from_unix_millis(1),
            )),
            streams: vec![StreamAppend {
                stream: StreamId::new("order-9").expect("valid"),
                expected: ExpectedVersion::Any,
                events: vec![NewEvent {
                    event_id: EventId::v7(Time::from_unix_millis(1), [8; 10]),
                    event_type: EventType::new("order.Created").expect("valid"),
                    schema_version: 1,
                    payload: Payload::from_json(r#"{"id":"nine"}"#.to_owned()).expect("json"),
                }],
                tombstone: false,
            }],
        })
        .await
        .expect("append")
        .last_position();
    let model = MemoryReadModel::<BTreeMap<String, u32>>::new();
    let dead_letters = MemoryDeadLetterStore::new();
    let mut runner = Runner::projection("orders", store.clone(), OrdersInMemory, model.clone())
        .with_policy(policy())
        .with_dead_letters(dead_letters.clone());
    let summary = runner.run_until_caught_up().await.expect("caught up");
    assert_eq!(summary.stats.parked, 1);
    let parked = dead_letters.list("orders").await.expect("list");
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].poison.position, corrupt);
    match &parked[0].poison.cause {
        PoisonCause::Decode(DecodeErrorKind::InvalidField { path, .. }) => assert_eq!(path, "id"),
        other => panic!("expected a field error, got {other:?}"),
    }
    assert_eq!(model.read(|m| m.len()), 3, "the good order events are applied");
}

/// Order ids in a PostgreSQL table, committed with the checkpoint.
#[derive(Clone)]
struct OrdersInPostgres {
    schema: String,
}

impl Projection for OrdersInPostgres {
    type Event = OrderEvent;
    type Store = PgProjectionStore;

    async fn apply(
        &mut self,
        tx: &mut PgTransaction,
        event: OrderEvent,
        recorded: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let OrderEvent::Created { id } = event;
        let sql = format!("INSERT INTO \"{}\".orders (stream, id) VALUES ($1, $2)", self.schema);
        sqlx::query(&sql)
            .bind(recorded.stream_id.as_str())
            .bind(i64::from(id))
            .execute(&mut **tx)
            .await
            .map_err(|e| ProjectionError::Rejected(e.to_string()))?;
        Ok(())
    }
}

async fn fresh(label: &str) -> Option<PostgresStore> {
    let store = eventcore_tests::postgres::fresh_store(label).await?;
    migrate_subscriptions(&store).await.expect("subscription schema");
    let s = &store.options().schema;
    sqlx::query(&format!(
        "CREATE TABLE \"{s}\".orders (stream text PRIMARY KEY, id bigint NOT NULL)"
    ))
    .execute(store.pool())
    .await
    .expect("read model table");
    Some(store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_modules_share_a_postgres_store_and_a_projection_skips_the_foreign_one() {
    let Some(store) = fresh("two_modules").await else {
        return;
    };
    both_modules_write(&Executor::new(store.clone())).await;
    let types: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT event_type FROM \"{}\".events ORDER BY position",
        store.options().schema
    ))
    .fetch_all(store.pool())
    .await
    .expect("stored types");
    assert_eq!(
        types,
        [
            "order.Created",
            "user.Created",
            "order.Created",
            "user.Created",
            "order.Created",
            "user.Created"
        ]
    );
    let projection = OrdersInPostgres {
        schema: store.options().schema.clone(),
    };
    let dead_letters = eventcore_postgres::PgDeadLetterStore::new(&store);
    let mut runner = Runner::projection("orders", store.clone(), projection, PgProjectionStore::new(&store))
        .with_policy(policy())
        .with_dead_letters(dead_letters.clone());
    let summary = runner.run_until_caught_up().await.expect("caught up, not stopped");
    assert_eq!(summary.stats.parked, 0);
    assert!(dead_letters.list("orders").await.expect("list").is_empty());
    let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
        "SELECT stream, id FROM \"{}\".orders ORDER BY stream",
        store.options().schema
    ))
    .fetch_all(store.pool())
    .await
    .expect("orders");
    assert_eq!(
        rows,
        [
            ("order-1".to_owned(), 1),
            ("order-2".to_owned(), 2),
            ("order-3".to_owned(), 3)
        ]
    );
}
