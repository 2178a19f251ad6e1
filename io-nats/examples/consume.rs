//! Reads the banking demo's events back from NATS JetStream (the stream
//! `BANK`, written by `cargo run -p eventcore-nats --example relay`) into
//! a balances read model, exactly once per message, then checks that money
//! is conserved: the balances add up to what the accounts were opened
//! with. Exits non-zero otherwise.
//!
//! ```text
//! cargo run -p eventcore-nats --example consume
//! ```
//!
//! The read model is in memory, so each run reads the stream from its
//! start; with `PgProjectionStore` the checkpoint (the stream sequence)
//! would commit with the balances and a restart would resume after it.

use eventcore::RecordedEvent;
use eventcore_examples::bank::AccountEvent;
use eventcore_nats::JetStreamProjection;
use eventcore_tokio::{MemoryReadModel, MemoryTransaction, Projection, ProjectionError};
use std::collections::BTreeMap;
use std::process::ExitCode;

#[derive(Clone, Default)]
struct Balances {
    by_account: BTreeMap<String, i64>,
    opened_with: i64,
}

struct Project;

impl Projection for Project {
    type Event = AccountEvent;
    type Store = MemoryReadModel<Balances>;
    async fn apply(
        &mut self,
        tx: &mut MemoryTransaction<Balances>,
        event: AccountEvent,
        recorded: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let state = tx.state_mut();
        let delta = match event {
            AccountEvent::Opened { initial } => {
                state.opened_with += i64::try_from(initial).map_err(|e| ProjectionError::Rejected(e.to_string()))?;
                initial
            }
            AccountEvent::Deposited { amount } => amount,
            AccountEvent::Withdrawn { amount } => {
                *state.by_account.entry(recorded.stream_id.to_string()).or_default() -=
                    i64::try_from(amount).map_err(|e| ProjectionError::Rejected(e.to_string()))?;
                return Ok(());
            }
        };
        *state.by_account.entry(recorded.stream_id.to_string()).or_default() +=
            i64::try_from(delta).map_err(|e| ProjectionError::Rejected(e.to_string()))?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("consume: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let nats = std::env::var("NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".into());
    let jetstream = async_nats::jetstream::new(async_nats::connect(nats.as_str()).await?);
    let model = MemoryReadModel::<Balances>::new();
    let mut consumer = JetStreamProjection::new("balances", jetstream, "BANK", Project, model.clone());
    let summary = consumer.run_until_caught_up().await?;
    let (balances, opened_with) = model.read(|b| (b.by_account.clone(), b.opened_with));
    for (account, balance) in &balances {
        println!("{account:>12}: {balance:>8}");
    }
    let total: i64 = balances.values().sum();
    println!(
        "{} messages applied in {} transactions (through stream sequence {}); {} accounts hold {total}, opened with {opened_with}",
        summary.applied,
        summary.commits,
        summary.checkpoint,
        balances.len()
    );
    let ok = total == opened_with && balances.values().all(|b| *b >= 0);
    println!(
        "{}",
        if ok {
            "money conserved, no negative balance"
        } else {
            "AUDIT FAILED"
        }
    );
    Ok(ok)
}
