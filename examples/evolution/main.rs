//! Events that evolve, on PostgreSQL: the first release of an order module
//! writes `OrderPlaced` events (bare type, schema version 1, one `customer`
//! field) and snapshots its `Purchases` view; the current release reads
//! them all as `order.Placed` version 2 (name split, `total` renamed
//! `amount_cents`, a required `currency` defaulted by the upcaster),
//! through commands, a projection and its views, and never uses the old
//! view snapshots (the view's version changed). See
//! `eventcore_examples::evolution` and `docs/evolving-events.md`.
//!
//! ```text
//! cargo run --example evolution     # each run starts from an empty schema `evolution_example`
//! ```
//!
//! Uses `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).

use eventcore_examples::evolution;
use eventcore_postgres::{PostgresOptions, PostgresStore};
use std::process::ExitCode;

const SCHEMA: &str = "evolution_example";

#[tokio::main]
async fn main() -> ExitCode {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    match tell(&url).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("evolution: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn tell(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    // Start from nothing each run: the story writes the old events itself.
    let pool = sqlx::PgPool::connect(url).await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{SCHEMA}\" CASCADE"))
        .execute(&pool)
        .await?;
    pool.close().await;
    let store = PostgresStore::connect_with(PostgresOptions::new(url).schema(SCHEMA)).await?;
    store.migrate().await?;
    let report = evolution::run(&store).await?;

    println!("stored events (type, schema version), in stream order:");
    for (event_type, version) in &report.stored {
        println!("  {event_type:<14} v{version}");
    }
    println!(
        "first release: {} snapshots of Purchases v1 written; current release: {} loaded, {} not found (v1 snapshots are never looked up by v2)",
        report.old_snapshots_written, report.new_snapshots.loaded, report.new_snapshots.not_found
    );
    for (stream, purchases) in &report.purchases {
        println!(
            "{stream}: {} orders, {} shipped, {} cents in {:?}, last name {:?}",
            purchases.orders, purchases.shipped, purchases.spent_cents, purchases.currencies, purchases.last_name
        );
    }
    println!("an order in dollars: refused: {}", report.refusal);
    println!("order book (projection of the current types, old and new events alike):");
    for (stream, version, first, last, cents, currency) in &report.order_book {
        println!("  {stream}@{version}: {first} {last}, {cents} {currency}");
    }
    Ok(())
}
