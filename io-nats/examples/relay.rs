//! Relays the banking demo's events to NATS JetStream.
//!
//! Runs `--transfers N` bank transfers (default 200, between ten accounts
//! it opens if needed) in the PostgreSQL schema the banking demo uses
//! (`banking_demo`; run `cargo run --example banking` with `DATABASE_URL`
//! first to relay its history too), then relays every event not yet relayed
//! to the JetStream stream `BANK` (subjects `bank.<category>.<type>`,
//! created if missing) and stops once caught up. The checkpoint lives in
//! PostgreSQL, so each run relays only what is new. Read the stream with
//! `cargo run -p eventcore-nats --example consume`.
//!
//! ```text
//! cargo run -p eventcore-nats --example relay -- [--transfers N]
//! ```
//!
//! `DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres),
//! `NATS_URL` (default 127.0.0.1:4222).
#![allow(clippy::disallowed_methods)] // an example: real clocks are fine

use async_nats::jetstream::stream;
use eventcore_examples::bank::{account, OpenAccount, Transfer};
use eventcore_nats::{relay, RelayOptions};
use eventcore_postgres::{migrate_subscriptions, PgCheckpointStore, PostgresOptions, PostgresStore};
use eventcore_tokio::Executor;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut transfers = 200u64;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next().map(|v| v.parse::<u64>())) {
            ("--transfers", Some(Ok(n))) => transfers = n,
            _ => return Err(format!("usage: relay [--transfers N] (got {flag})").into()),
        }
    }
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let store = PostgresStore::connect_with(PostgresOptions::new(url).schema("banking_demo")).await?;
    store.migrate().await?;
    migrate_subscriptions(&store).await?;

    // Something new to relay: a few transfers of the banking demo's domain.
    let executor = Executor::new(store.clone());
    for n in 0..10 {
        match executor
            .execute(OpenAccount {
                account: account(n),
                initial: 1_000,
            })
            .await
        {
            Ok(_) => {}
            Err(error) if expected_refusal(&error) => {}
            Err(error) => return Err(error.to_string().into()),
        }
    }
    let mut committed = 0;
    for i in 0..transfers {
        let transfer = Transfer {
            from: account((i % 10) as u32),
            to: account(((i * 3 + 1) % 10) as u32),
            amount: 1 + i % 50,
        };
        if transfer.from == transfer.to {
            continue;
        }
        match executor.execute(transfer).await {
            Ok(_) => committed += 1,
            Err(error) if expected_refusal(&error) => {}
            Err(error) => return Err(error.to_string().into()),
        }
    }
    println!("{committed} transfers committed");

    let nats = std::env::var("NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".into());
    let jetstream = async_nats::jetstream::new(async_nats::connect(nats.as_str()).await?);
    jetstream
        .get_or_create_stream(stream::Config {
            name: "BANK".into(),
            subjects: vec!["bank.>".into()],
            storage: stream::StorageType::File,
            // Only a fallback here (the relay resumes after the stream's last
            // message), but a safe one: longer than any replay.
            duplicate_window: Duration::from_secs(600),
            ..Default::default()
        })
        .await?;
    let mut runner = relay(
        "bank-to-nats",
        store.clone(),
        PgCheckpointStore::new(&store),
        jetstream,
        RelayOptions::new("BANK", "bank"),
    );
    let started = Instant::now();
    let summary = runner.run_until_caught_up().await?;
    let status = runner.sink().status().borrow().clone();
    println!(
        "relayed {} events to BANK in {:.2} s (checkpoint {:?}, stream sequence {}, {} skipped as already there)",
        status.published,
        started.elapsed().as_secs_f64(),
        summary.checkpoint,
        status.stream_sequence,
        status.skipped
    );
    Ok(())
}

/// The bank's refusals this example expects (an account an earlier run
/// opened; a transfer the balance does not cover), told by their message
/// (`BankError`'s `Display`).
fn expected_refusal(error: &impl std::fmt::Display) -> bool {
    let text = error.to_string();
    text.contains("is already open") || text.contains("cannot send")
}
