//! The consumer side: a JetStream stream written by the relay, read back
//! into a PostgreSQL projection whose writes and checkpoint (the stream
//! sequence) commit in one transaction. Killed mid-way several times, it
//! applies every message exactly once.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

mod common;

use common::*;
use eventcore::{Event, RecordedEvent};
use eventcore_nats::{relay, JetStreamProjection, RelayOptions};
use eventcore_postgres::{PgProjectionStore, PgTransaction, PostgresOptions};
use eventcore_tests::postgres::{database_url, fresh_store_with, unique_schema};
use eventcore_tokio::{MemoryCheckpointStore, MemoryEventStore, Projection, ProjectionError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Serialize, Deserialize)]
enum Acct {
    Deposited { amount: i64, tag: i64 },
    Withdrawn { amount: i64, tag: i64 },
}
impl Event for Acct {}

/// One row per applied message: a message applied twice shows as two rows.
struct Seen {
    schema: String,
}

impl Projection for Seen {
    type Event = Acct;
    type Store = PgProjectionStore;
    async fn apply(
        &mut self,
        tx: &mut PgTransaction,
        event: Acct,
        recorded: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let amount = match event {
            Acct::Deposited { amount, .. } => amount,
            Acct::Withdrawn { amount, .. } => -amount,
        };
        sqlx::query(&format!(
            "INSERT INTO {}.seen (event_id, position, amount) VALUES ($1, $2, $3)",
            self.schema
        ))
        .bind(recorded.event_id.as_uuid())
        .bind(i64::try_from(recorded.position.get()).unwrap_or(i64::MAX))
        .bind(amount)
        .execute(&mut **tx)
        .await
        .map_err(|e| ProjectionError::Transient(e.to_string()))?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_mid_way_applies_every_message_exactly_once() {
    let Some(client) = connect().await else { return };
    let schema = unique_schema("nats_consume");
    let Some(store) = fresh_store_with(
        PostgresOptions::new(database_url())
            .schema(schema.clone())
            .max_connections(4),
    )
    .await
    else {
        return;
    };
    sqlx::query(&format!(
        "CREATE TABLE {schema}.seen (event_id uuid NOT NULL, position bigint NOT NULL, amount bigint NOT NULL)"
    ))
    .execute(store.pool())
    .await
    .unwrap();

    // The log, relayed.
    let js = async_nats::jetstream::new(client);
    let name = unique_name("consume");
    create_stream(&js, &name, &name.to_lowercase(), |_| {}).await;
    let events = MemoryEventStore::new();
    append_workload(&events, 9, 500, 6, 2).await;
    relay(
        "relay",
        events.clone(),
        MemoryCheckpointStore::new(),
        js.clone(),
        RelayOptions::new(&name, name.to_lowercase()),
    )
    .run_until_caught_up()
    .await
    .unwrap();
    let log = read_log(&events).await;

    // The consumer, killed six times.
    let model = PgProjectionStore::new(&store);
    for round in 0..6u64 {
        let mut consumer = JetStreamProjection::new(
            "seen",
            js.clone(),
            &name,
            Seen { schema: schema.clone() },
            model.clone(),
        )
        .with_batch_size(50);
        let task = tokio::spawn(async move { consumer.run_until(std::future::pending()).await });
        // Killed once it made progress, at a different point each round.
        let goal = (round + 1) * 250 + round * 7;
        for _ in 0..500 {
            let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.seen"))
                .fetch_one(store.pool())
                .await
                .unwrap();
            if n as u64 >= goal {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        task.abort();
        let _ = task.await;
    }
    let mut consumer = JetStreamProjection::new(
        "seen",
        js.clone(),
        &name,
        Seen { schema: schema.clone() },
        model.clone(),
    );
    let summary = consumer.run_until_caught_up().await.unwrap();

    let rows: Vec<(uuid::Uuid, i64)> = sqlx::query_as(&format!(
        "SELECT event_id, position FROM {schema}.seen ORDER BY position"
    ))
    .fetch_all(store.pool())
    .await
    .unwrap();
    let distinct: std::collections::BTreeSet<_> = rows.iter().map(|(id, _)| *id).collect();
    assert_eq!(distinct.len(), rows.len(), "a message was applied twice");
    assert_eq!(rows.len(), log.len(), "every message applied");
    assert_eq!(
        rows.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        log.iter().map(|e| e.event_id.as_uuid()).collect::<Vec<_>>(),
    );
    let checkpoint = model.checkpoint("seen").await.unwrap().map(|p| p.get());
    assert_eq!(
        checkpoint,
        Some(log.len() as u64),
        "the checkpoint is the last stream sequence"
    );
    println!(
        "consume: {} messages applied exactly once across 6 kills; the last run applied {} and skipped {}",
        rows.len(),
        summary.applied,
        summary.skipped
    );
    let _ = js.delete_stream(&name).await;
    let _ = store.drop_schema().await;
}
