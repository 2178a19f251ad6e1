//! The data lifecycle on PostgreSQL: forgetting a customer
//! (crypto-shredding) and removing a closed account (a tombstone, then a
//! retention run). See `eventcore_examples::lifecycle` and
//! `docs/data-lifecycle.md`.
//!
//! ```text
//! cargo run -p eventcore-examples --example data-lifecycle   # each run starts from an empty schema `lifecycle_example`
//! ```
//!
//! Uses `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).

use eventcore_examples::lifecycle::{self, ReadBack};
use eventcore_postgres::{PostgresOptions, PostgresStore};
use std::process::ExitCode;

const SCHEMA: &str = "lifecycle_example";

#[tokio::main]
async fn main() -> ExitCode {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    match tell(&url).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("data-lifecycle: {error}");
            ExitCode::FAILURE
        }
    }
}

fn show(who: &str, back: &ReadBack) {
    let field = |value: &Option<String>| value.clone().unwrap_or_else(|| "<forgotten>".into());
    println!(
        "  {who:<28} name {:<14} email {:<22} country {} ({} events)",
        field(&back.name),
        field(&back.email),
        back.country,
        back.events
    );
}

async fn tell(url: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let pool = sqlx::PgPool::connect(url).await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{SCHEMA}\" CASCADE"))
        .execute(&pool)
        .await?;
    pool.close().await;
    let store = PostgresStore::connect_with(PostgresOptions::new(url).schema(SCHEMA)).await?;
    store.migrate().await?;
    let report = lifecycle::run(&store).await?;

    println!("customers, read back through the key store:");
    show("Ann, before she is forgotten", &report.before_forget);
    show("Ann, after", &report.after_forget);
    show("Ben, after", &report.kept);
    println!(
        "a command folding Ann's stream after the forget (her fields decode as forgotten) committed: {}",
        report.moved_after_forget
    );
    println!(
        "a new e-mail address for Ann: refused ({}): {}",
        report.new_data_refused.as_str(),
        report.new_data_refusal
    );
    println!(
        "a deposit to Ann's closed account: {} (the domain folds `Closed`)",
        report.deposit_after_close.as_str()
    );
    for range in &report.removed {
        println!(
            "retention removed {} events of {} (versions {}..={}, positions {}..={}, {})",
            range.events(),
            range.stream,
            range.first_version,
            range.last_version,
            range.first_position,
            range.last_position,
            range.reason.as_str()
        );
    }
    println!("archived first: {} events (table events_archive)", report.archived);
    let (left, removed_through, deleted_at) = report.closed_after_removal;
    println!(
        "the closed account now: {left} events, removed through version {removed_through}, deleted at version {}",
        deleted_at.map_or_else(|| "-".to_owned(), |v| v.to_string())
    );
    println!(
        "opening it again: {} (the tombstone outlives the events)",
        report.reopen_after_removal.as_str()
    );
    println!("Ben's account keeps its {} events", report.kept_account_events);
    println!("(schema `{SCHEMA}` is left for a look: `eventcore --schema {SCHEMA} stream customer-1`)");
    Ok(())
}
