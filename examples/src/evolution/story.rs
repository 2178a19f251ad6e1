//! The story: the first release writes, the current release reads.

use super::{current, first_release};
use eventcore::{
    decode_recorded, CommandError, DecodeError, ExecutionError, ReadRequest, RecordedEvent, StoreError, StreamId, View,
};
use eventcore_postgres::{migrate_subscriptions, PgProjectionStore, PgSnapshotStore, PgTransaction, PostgresStore};
use eventcore_tokio::{EventStore, Executor, Projection, ProjectionError, RunError, Runner, SnapshotStats};
use std::collections::BTreeMap;
use std::time::Duration;

/// The customers: their stream and their whole name.
pub const CUSTOMERS: [(&str, &str); 2] = [("customer-ada", "Ada Lovelace"), ("customer-alan", "Alan Turing")];

/// Orders each customer placed under the first release.
pub const OLD_ORDERS: u64 = 5;

/// What the story saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The stored type and schema version of every event, in order.
    pub stored: Vec<(String, u32)>,
    /// Snapshots the first release wrote (of `Purchases` version 1).
    pub old_snapshots_written: u64,
    /// The current release's snapshot counters after its commands ran.
    pub new_snapshots: SnapshotStats,
    /// Each customer's purchases, folded from every event of their stream
    /// through the current types.
    pub purchases: BTreeMap<String, current::Purchases>,
    /// The refusal of an order in another currency: the old events'
    /// currency came from the upcaster.
    pub refusal: String,
    /// The projection's rows: (stream, version, first name, last name,
    /// cents, currency).
    pub order_book: Vec<(String, i64, String, String, i64, String)>,
}

/// Why the story could not be told.
#[derive(Debug, thiserror::Error)]
pub enum StoryError {
    /// The store failed.
    #[error("the store failed")]
    Store(#[from] StoreError),
    /// A stored event did not decode through the current types.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// SQL of the read model failed.
    #[error("SQL of the read model failed")]
    Sql(#[from] sqlx::Error),
    /// The projection stopped.
    #[error("the projection stopped")]
    Projection(#[from] RunError),
    /// A command failed where it should not have.
    #[error("command {command}: {reason}")]
    Command {
        /// Which command.
        command: &'static str,
        /// Its error.
        reason: String,
    },
    /// What the story expected did not happen.
    #[error("{0}")]
    Unexpected(String),
}

fn customer(stream: &str) -> Result<StreamId, StoryError> {
    StreamId::new(stream).map_err(|e| StoryError::Unexpected(e.to_string()))
}

fn failed<E: std::fmt::Display>(command: &'static str) -> impl Fn(E) -> StoryError {
    move |e| StoryError::Command {
        command,
        reason: e.to_string(),
    }
}

/// Plays both releases against `store` (a schema of its own: the story
/// writes its events and an `order_book` table there).
pub async fn run(store: &PostgresStore) -> Result<Report, StoryError> {
    let mut report = Report::default();
    let snapshots = PgSnapshotStore::new(store);

    // The first release: bare type names, version 1 everywhere.
    let first = Executor::new(store.clone()).with_snapshots(snapshots.clone());
    for (stream, name) in CUSTOMERS {
        for n in 0..OLD_ORDERS {
            let order = first_release::PlaceOrder {
                customer: customer(stream)?,
                name: name.to_owned(),
                total: 1_000 + 100 * n,
            };
            first
                .execute(order)
                .await
                .map_err(failed("first_release::PlaceOrder"))?;
        }
        let ship = first_release::ShipLatest {
            customer: customer(stream)?,
        };
        first.execute(ship).await.map_err(failed("first_release::ShipLatest"))?;
    }
    // Snapshots are written off the command's path: wait for them.
    let wanted = CUSTOMERS.len() as u64;
    for _ in 0..200 {
        if first.snapshot_stats().written >= wanted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    report.old_snapshots_written = first.snapshot_stats().written;

    // The current release, a new process: no cache, the old snapshots in
    // the store.
    let now = Executor::new(store.clone()).with_snapshots(snapshots);
    for (stream, name) in CUSTOMERS {
        let (first_name, last_name) = name.split_once(' ').unwrap_or((name, ""));
        let order = current::PlaceOrder {
            customer: customer(stream)?,
            first_name: first_name.to_owned(),
            last_name: last_name.to_owned(),
            amount_cents: 2_000,
            currency: "EUR".to_owned(),
        };
        now.execute(order).await.map_err(failed("current::PlaceOrder"))?;
    }
    let in_dollars = current::PlaceOrder {
        customer: customer(CUSTOMERS[0].0)?,
        first_name: "Ada".to_owned(),
        last_name: "Lovelace".to_owned(),
        amount_cents: 500,
        currency: "USD".to_owned(),
    };
    report.refusal = match now.execute(in_dollars).await {
        Err(ExecutionError {
            error: CommandError::Domain(refused),
            ..
        }) => refused.to_string(),
        other => {
            return Err(StoryError::Unexpected(format!(
                "an order in dollars should be refused, got {other:?}"
            )))
        }
    };
    report.new_snapshots = now.snapshot_stats();

    // Every event, read back through the current types.
    for (stream, _) in CUSTOMERS {
        let events = read_stream(store, &customer(stream)?).await?;
        let mut purchases = current::Purchases::default();
        for event in &events {
            report.stored.push((event.event_type.to_string(), event.schema_version));
            purchases.apply(&decode_recorded::<current::OrderEvent>(event)?);
        }
        report.purchases.insert(stream.to_owned(), purchases);
    }

    // A projection of the current types over the whole log.
    migrate_subscriptions(store).await?;
    let schema = store.options().schema.clone();
    sqlx::query(&format!(
        "CREATE TABLE IF NOT EXISTS \"{schema}\".order_book (stream text NOT NULL, version bigint NOT NULL, \
         first_name text NOT NULL, last_name text NOT NULL, amount_cents bigint NOT NULL, currency text NOT NULL, \
         PRIMARY KEY (stream, version))"
    ))
    .execute(store.pool())
    .await?;
    let book = OrderBook { schema: schema.clone() };
    let mut runner = Runner::projection("order-book", store.clone(), book, PgProjectionStore::new(store));
    runner.run_until_caught_up().await?;
    report.order_book = sqlx::query_as(&format!(
        "SELECT stream, version, first_name, last_name, amount_cents, currency FROM \"{schema}\".order_book \
         ORDER BY stream, version"
    ))
    .fetch_all(store.pool())
    .await?;
    Ok(report)
}

async fn read_stream(store: &PostgresStore, stream: &StreamId) -> Result<Vec<RecordedEvent>, StoryError> {
    let response = store.read(&ReadRequest::new([stream.clone()])).await?;
    let slice = response
        .streams
        .into_iter()
        .next()
        .ok_or_else(|| StoryError::Unexpected(format!("no answer for `{stream}`")))?;
    Ok(slice.events)
}

/// Every order placed, one row each, in PostgreSQL.
struct OrderBook {
    schema: String,
}

impl Projection for OrderBook {
    type Event = current::OrderEvent;
    type Store = PgProjectionStore;

    async fn apply(
        &mut self,
        tx: &mut PgTransaction,
        event: current::OrderEvent,
        recorded: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let current::OrderEvent::Placed {
            first_name,
            last_name,
            amount_cents,
            currency,
        } = event
        else {
            return Ok(());
        };
        let sql = format!(
            "INSERT INTO \"{}\".order_book (stream, version, first_name, last_name, amount_cents, currency) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            self.schema
        );
        sqlx::query(&sql)
            .bind(recorded.stream_id.as_str())
            .bind(i64::try_from(recorded.version.get()).unwrap_or(i64::MAX))
            .bind(first_name)
            .bind(last_name)
            .bind(i64::try_from(amount_cents).unwrap_or(i64::MAX))
            .bind(currency)
            .execute(&mut **tx)
            .await
            .map_err(|e| ProjectionError::Transient(e.to_string()))?;
        Ok(())
    }
}
