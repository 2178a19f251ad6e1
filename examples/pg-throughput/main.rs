//! Throughput of the PostgreSQL store on this machine: single-stream appends
//! with 1 and 8 clients, and 2-stream bank transfers with 8 clients through
//! the real `Executor` (read both accounts, decide, append atomically, retry
//! on conflict). Each run starts from an empty schema `throughput_bench`.
//!
//! ```text
//! cargo run --release --example pg-throughput -- [--appends N] [--transfers N] [--accounts N]
//! ```
//!
//! Uses `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // off the simulated path: real clocks and hash maps are fine here (see clippy.toml)

use eventcore::{
    AppendRequest, CommandError, CommandId, EventId, EventMetadata, EventType, ExecutionError, ExpectedVersion,
    NewEvent, Payload, StreamAppend, StreamId, StreamVersion, Time,
};
use eventcore_examples::bank::{account, BankError, OpenAccount, Transfer};
use eventcore_postgres::{PostgresOptions, PostgresStore};
use eventcore_tokio::{EventStore, Executor};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

struct Options {
    appends: u64,
    transfers: u64,
    accounts: u32,
}

fn parse() -> Result<Options, String> {
    let mut options = Options {
        appends: 2_000,
        transfers: 500,
        accounts: 1_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let n: u64 = value
            .parse()
            .map_err(|_| format!("{flag}: `{value}` is not a number"))?;
        match flag.as_str() {
            "--appends" => options.appends = n,
            "--transfers" => options.transfers = n,
            "--accounts" if n >= 2 => options.accounts = u32::try_from(n).map_err(|e| e.to_string())?,
            _ => return Err(format!("unknown flag or bad value: {flag} {value}")),
        }
    }
    Ok(options)
}

fn one_event(stream: &StreamId, expected: ExpectedVersion, n: u64) -> AppendRequest {
    let now = Time::from_unix_millis(1_700_000_000_000 + n);
    let mut entropy = [0u8; 10];
    entropy[..8].copy_from_slice(&n.to_le_bytes());
    entropy[8] = stream.as_str().len() as u8;
    entropy[9] = stream
        .as_str()
        .bytes()
        .fold(0u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    AppendRequest {
        metadata: Arc::new(EventMetadata::new(CommandId::v7(now, entropy), now)),
        streams: vec![StreamAppend {
            stream: stream.clone(),
            expected,
            events: vec![NewEvent {
                event_id: EventId::v7(now, entropy),
                event_type: EventType::new("Measured").unwrap_or_else(|e| panic!("{e}")),
                schema_version: 1,
                payload: Payload::from_trusted_json(format!("{{\"n\":{n}}}")),
            }],
            tombstone: false,
        }],
    }
}

/// `clients` tasks each append `per_client` single-event appends to their own
/// stream, each pinned to the version it expects. Returns appends/s.
async fn single_stream(store: &PostgresStore, clients: u64, per_client: u64) -> Result<f64, String> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let stream = StreamId::new(format!("bench-{clients}-{client}")).map_err(|e| e.to_string())?;
            for i in 0..per_client {
                let expected = ExpectedVersion::from_read(StreamVersion::new(i));
                let n = (clients * 1_000 + client) * 1_000_000 + i;
                store
                    .append(&one_event(&stream, expected, n))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok((clients * per_client) as f64 / started.elapsed().as_secs_f64())
}

/// 8 tasks run `per_client` transfers each between random accounts.
async fn transfers(store: &PostgresStore, options: &Options) -> Result<(f64, u64, u64), String> {
    let executor = Arc::new(Executor::new(store.clone()));
    for n in 0..options.accounts {
        executor
            .execute(OpenAccount {
                account: account(n),
                initial: 1_000_000,
            })
            .await
            .map_err(|e| e.to_string())?;
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..8u64 {
        let executor = executor.clone();
        let (accounts, per_client) = (u64::from(options.accounts), options.transfers);
        tasks.push(tokio::spawn(async move {
            let mut rng = client * 0x9E37_79B9 + 7;
            let (mut committed, mut conflicts) = (0u64, 0u64);
            for _ in 0..per_client {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let from = rng % accounts;
                let to = (from + 1 + (rng >> 20) % (accounts - 1)) % accounts;
                let transfer = Transfer {
                    from: account(from as u32),
                    to: account(to as u32),
                    amount: 1 + (rng >> 40) % 100,
                };
                match executor.execute(transfer).await {
                    Ok(done) => {
                        committed += 1;
                        conflicts += u64::from(done.stats.conflicts);
                    }
                    Err(ExecutionError {
                        error: CommandError::Domain(BankError::InsufficientFunds { .. }),
                        ..
                    }) => {}
                    Err(error) => return Err(error.to_string()),
                }
            }
            Ok((committed, conflicts))
        }));
    }
    let (mut committed, mut conflicts) = (0, 0);
    for task in tasks {
        let (c, k) = task.await.map_err(|e| e.to_string())??;
        committed += c;
        conflicts += k;
    }
    Ok((committed as f64 / started.elapsed().as_secs_f64(), committed, conflicts))
}

async fn run(options: Options) -> Result<(), String> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let store = PostgresStore::connect_with(PostgresOptions::new(url).schema("throughput_bench").max_connections(16))
        .await
        .map_err(|e| e.to_string())?;
    store.drop_schema().await.map_err(|e| e.to_string())?;
    store.migrate().await.map_err(|e| e.to_string())?;
    let health = store.health().await.map_err(|e| e.to_string())?;
    println!("PostgreSQL {} (schema throughput_bench, fresh)", health.server_version);

    for clients in [1, 8] {
        let rate = single_stream(&store, clients, options.appends / clients.min(2)).await?;
        println!("single-stream appends, {clients} client(s): {rate:.0} appends/s");
    }
    let (rate, committed, conflicts) = transfers(&store, &options).await?;
    println!(
        "2-stream transfers via Executor, 8 clients, {} accounts: {rate:.0} transfers/s ({committed} committed, {conflicts} conflicts retried)",
        options.accounts
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}\nusage: pg-throughput [--appends N] [--transfers N] [--accounts N]");
            return ExitCode::from(2);
        }
    };
    match run(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}
