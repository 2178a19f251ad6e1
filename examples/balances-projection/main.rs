//! A balance read model in PostgreSQL, kept by an exactly-once projection
//! while transfers run, and checked against the events all along.
//!
//! 1. Opens `--accounts` accounts and starts the `balances` projection
//!    (PgProjectionStore: every batch of upserts commits in one SQL
//!    transaction with the checkpoint and the lease fence check), woken by
//!    LISTEN/NOTIFY.
//! 2. Runs `--transfers` transfers from `--clients` concurrent clients
//!    through the `Executor`. Meanwhile a checker repeatedly reads, in one
//!    REPEATABLE READ snapshot, the projection's checkpoint, its balances,
//!    and the sum of the events up to that checkpoint: they must be equal
//!    every time. A latency probe opens `probe-*` accounts and measures
//!    commit acknowledged → handler (a second subscription).
//! 3. When the transfers are done, checks the read model once more against
//!    all events, then measures catch-up throughput: a plain subscriber and
//!    a fresh projection each read the whole log from position 0.
//!
//! ```text
//! cargo run --release -p eventcore-examples --example balances-projection -- \
//!     [--accounts N] [--transfers N] [--clients N] [--probes N]
//! ```
//!
//! Uses `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! and the schema `balances_demo`, dropped and recreated on every run.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // off the simulated path: real clocks and hash maps are fine here (see clippy.toml)

use eventcore::{Batch, EventFilter, GlobalPosition, HandleError, RecordedEvent, SubscriptionPolicy};
use eventcore_examples::bank::{account, AccountEvent, OpenAccount, Transfer};
use eventcore_postgres::{
    migrate_subscriptions, PgCheckpointStore, PgLeaseStore, PgNotifier, PgProjectionStore, PgTransaction,
    PostgresOptions, PostgresStore,
};
use eventcore_tokio::{Executor, Projection, ProjectionError, Runner, RunnerStatus, Subscriber};
use sqlx::Connection;
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

const SCHEMA: &str = "balances_demo";
const INITIAL: u64 = 1_000_000;

struct Options {
    accounts: u32,
    transfers: u64,
    clients: u64,
    probes: u64,
}

fn parse() -> Result<Options, String> {
    let mut options = Options {
        accounts: 100,
        transfers: 5_000,
        clients: 8,
        probes: 200,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let n: u64 = value
            .parse()
            .map_err(|_| format!("{flag}: `{value}` is not a number"))?;
        match flag.as_str() {
            "--accounts" if n >= 2 => options.accounts = u32::try_from(n).map_err(|e| e.to_string())?,
            "--transfers" => options.transfers = n,
            "--clients" if n >= 1 => options.clients = n,
            "--probes" => options.probes = n,
            _ => return Err(format!("unknown flag or bad value: {flag} {value}")),
        }
    }
    Ok(options)
}

/// The read model: one row per account.
struct Balances;

impl Projection for Balances {
    type Event = AccountEvent;
    type Store = PgProjectionStore;

    fn filter(&self) -> EventFilter {
        EventFilter::decodable_by::<AccountEvent>().with_stream_prefix("account-")
    }

    async fn apply(
        &mut self,
        tx: &mut PgTransaction,
        event: AccountEvent,
        recorded: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let signed = |v: u64| i64::try_from(v).map_err(|e| ProjectionError::Rejected(e.to_string()));
        let delta = match event {
            AccountEvent::Opened { initial } => signed(initial)?,
            AccountEvent::Deposited { amount } => signed(amount)?,
            AccountEvent::Withdrawn { amount } => -signed(amount)?,
        };
        sqlx::query(&format!(
            "INSERT INTO {SCHEMA}.balances AS b (account, balance) VALUES ($1, $2) \
             ON CONFLICT (account) DO UPDATE SET balance = b.balance + EXCLUDED.balance"
        ))
        .bind(recorded.stream_id.as_str())
        .bind(delta)
        .execute(&mut **tx)
        .await
        .map_err(|e| ProjectionError::Transient(e.to_string()))?;
        Ok(())
    }
}

/// Records when each probe account's event reached the handler.
#[derive(Clone, Default)]
struct ProbeArrivals(Arc<Mutex<BTreeMap<String, Instant>>>);

impl Subscriber for ProbeArrivals {
    async fn handle(&mut self, batch: &Batch) -> Result<(), HandleError> {
        let now = Instant::now();
        let mut arrivals = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for event in &batch.events {
            arrivals.entry(event.stream_id.to_string()).or_insert(now);
        }
        Ok(())
    }
}

/// Counts events: the cheapest possible consumer, to measure delivery.
#[derive(Clone, Default)]
struct Count(Arc<AtomicU64>);

impl Subscriber for Count {
    async fn handle(&mut self, batch: &Batch) -> Result<(), HandleError> {
        self.0.fetch_add(batch.events.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// In one snapshot: the checkpoint, the read model, and the balances the
/// events up to the checkpoint imply. Returns the checkpoint and whether
/// they agree.
async fn check(store: &PostgresStore, name: &str) -> Result<(u64, bool), sqlx::Error> {
    let mut conn = store.pool().acquire().await?;
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await?;
    let checkpoint: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT position FROM {SCHEMA}.subscription_checkpoints WHERE name = $1"
    ))
    .bind(name)
    .fetch_optional(&mut *tx)
    .await?;
    let checkpoint = checkpoint.unwrap_or(0);
    let model: Vec<(String, i64)> = sqlx::query_as(&format!(
        "SELECT account, balance FROM {SCHEMA}.balances ORDER BY account"
    ))
    .fetch_all(&mut *tx)
    .await?;
    let events: Vec<(String, i64)> = sqlx::query_as(&format!(
        "SELECT stream_id, sum(CASE event_type \
             WHEN 'Opened' THEN (payload->>'initial')::int8 \
             WHEN 'Deposited' THEN (payload->>'amount')::int8 \
             ELSE -(payload->>'amount')::int8 END)::int8 \
         FROM {SCHEMA}.events WHERE position <= $1 AND stream_id LIKE 'account-%' \
         GROUP BY stream_id ORDER BY stream_id"
    ))
    .bind(checkpoint)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((u64::try_from(checkpoint).unwrap_or(0), model == events))
}

async fn head(store: &PostgresStore) -> Result<GlobalPosition, sqlx::Error> {
    let newest: Option<i64> = sqlx::query_scalar(&format!("SELECT max(position) FROM {SCHEMA}.events"))
        .fetch_one(store.pool())
        .await?;
    Ok(GlobalPosition::new(
        newest.and_then(|p| u64::try_from(p).ok()).unwrap_or(0),
    ))
}

async fn wait_until(status: &mut watch::Receiver<RunnerStatus>, through: GlobalPosition) {
    let _ = status
        // The checkpoint, not the last handled event: events the filter
        // leaves out (the probes) move only the checkpoint.
        .wait_for(|s| s.checkpoint >= through)
        .await;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let options = parse()?;
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let store = PostgresStore::connect_with(PostgresOptions::new(url).schema(SCHEMA).max_connections(16)).await?;
    store.drop_schema().await?;
    store.migrate().await?;
    migrate_subscriptions(&store).await?;
    sqlx::query(&format!(
        "CREATE TABLE {SCHEMA}.balances (account text PRIMARY KEY, balance bigint NOT NULL)"
    ))
    .execute(store.pool())
    .await?;

    let executor = Arc::new(Executor::new(store.clone()));
    for n in 0..options.accounts {
        executor
            .execute(OpenAccount {
                account: account(n),
                initial: INITIAL,
            })
            .await?;
    }

    // The projection, woken by LISTEN/NOTIFY, one instance via the lease.
    let notifier = PgNotifier::start(&store).await?;
    let mut projection = Runner::projection("balances", store.clone(), Balances, PgProjectionStore::new(&store))
        .with_policy(SubscriptionPolicy::default().with_poll_interval(Duration::from_millis(500)))
        .with_wakeups(notifier.subscribe())
        .with_lease(PgLeaseStore::new(&store), "demo", Duration::from_secs(10));
    let mut projection_status = projection.status();
    let projection_task = tokio::spawn(async move { projection.run().await });

    // Latency probe subscription.
    let arrivals = ProbeArrivals::default();
    let mut probe = Runner::subscription(
        "probe-latency",
        store.clone(),
        PgCheckpointStore::new(&store),
        arrivals.clone(),
    )
    .with_filter(EventFilter::all().with_stream_prefix("probe-"))
    .with_policy(SubscriptionPolicy::default().with_poll_interval(Duration::from_millis(500)))
    .with_wakeups(notifier.subscribe());
    let probe_task = tokio::spawn(async move { probe.run().await });

    // The checker runs while transfers run.
    let done = Arc::new(AtomicBool::new(false));
    let checker = {
        let (store, done) = (store.clone(), done.clone());
        tokio::spawn(async move {
            let (mut checks, mut mismatches, mut last) = (0u64, 0u64, 0u64);
            while !done.load(Ordering::Relaxed) {
                match check(&store, "balances").await {
                    Ok((checkpoint, agree)) => {
                        checks += 1;
                        last = checkpoint;
                        if !agree {
                            mismatches += 1;
                            eprintln!("MISMATCH at checkpoint {checkpoint}");
                        }
                    }
                    Err(error) => eprintln!("check failed: {error}"),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (checks, mismatches, last)
        })
    };

    // Transfers from concurrent clients, and probes alongside.
    let started = Instant::now();
    let per_client = options.transfers / options.clients;
    let mut clients = Vec::new();
    for c in 0..options.clients {
        let executor = executor.clone();
        let accounts = options.accounts;
        clients.push(tokio::spawn(async move {
            let (mut ok, mut refused) = (0u64, 0u64);
            for i in 0..per_client {
                let from = ((c * 7919 + i * 104_729) % u64::from(accounts)) as u32;
                let to = (from + 1 + (i % u64::from(accounts - 1)) as u32) % accounts;
                let transfer = Transfer {
                    from: account(from),
                    to: account(to),
                    amount: 1 + (i % 100),
                };
                match executor.execute(transfer).await {
                    Ok(_) => ok += 1,
                    Err(_) => refused += 1,
                }
            }
            (ok, refused)
        }));
    }
    let probes = {
        let executor = executor.clone();
        let count = options.probes;
        tokio::spawn(async move {
            let mut acked = BTreeMap::new();
            for i in 0..count {
                let stream = format!("probe-{i}");
                let open = OpenAccount {
                    account: eventcore::StreamId::new(&stream).unwrap_or_else(|_| account(0)),
                    initial: 0,
                };
                if executor.execute(open).await.is_ok() {
                    acked.insert(stream, Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            acked
        })
    };
    let (mut ok, mut refused) = (0u64, 0u64);
    for client in clients {
        let (o, r) = client.await?;
        ok += o;
        refused += r;
    }
    let elapsed = started.elapsed();
    let acked = probes.await?;
    let end = head(&store).await?;
    wait_until(&mut projection_status, end).await;
    done.store(true, Ordering::Relaxed);
    let (checks, mismatches, _) = checker.await?;
    let (final_checkpoint, final_agree) = check(&store, "balances").await?;
    let total: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT sum(balance)::int8 FROM {SCHEMA}.balances WHERE account LIKE 'account-%'"
    ))
    .fetch_one(store.pool())
    .await?;
    let expected_total = i64::from(options.accounts) * INITIAL as i64;
    println!(
        "transfers: {ok} committed, {refused} refused in {:.2}s ({:.0} transfers/s, {} clients)",
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64(),
        options.clients
    );
    println!(
        "read model checked {checks} times while transfers ran: {mismatches} mismatches; \
         final check at {final_checkpoint}: {}; total {} (expected {expected_total})",
        if final_agree {
            "equal to the events"
        } else {
            "DIFFERENT"
        },
        total.unwrap_or(0),
    );

    // Live latency: commit acknowledged -> handler.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut latencies: Vec<Duration> = {
        let arrived = arrivals.0.lock().unwrap_or_else(|p| p.into_inner());
        acked
            .iter()
            .filter_map(|(stream, ack)| arrived.get(stream).map(|at| at.saturating_duration_since(*ack)))
            .collect()
    };
    latencies.sort();
    println!(
        "live latency, commit ack -> handler, {} probes {}: median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        if options.transfers > 0 {
            "while transfers ran"
        } else {
            "on an idle store"
        },
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    projection_task.abort();
    probe_task.abort();

    // Catch-up throughput from position 0.
    let events = {
        let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {SCHEMA}.events"))
            .fetch_one(store.pool())
            .await?;
        count
    };
    for batch in [256u32, 1024] {
        let mut rates = Vec::new();
        for attempt in 0..3 {
            let counter = Count::default();
            let mut reader = Runner::subscription(
                format!("catch-up-{batch}-{attempt}"),
                store.clone(),
                PgCheckpointStore::new(&store),
                counter.clone(),
            )
            .with_policy(
                SubscriptionPolicy::default().with_batch_size(NonZeroU32::new(batch).unwrap_or(NonZeroU32::MIN)),
            )
            .with_wakeups(notifier.subscribe());
            let t = Instant::now();
            reader.run_until_caught_up().await?;
            rates.push(counter.0.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64());
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "catch-up, counting subscriber, batch {batch}, {events} events, 3 runs: {:.0} / {:.0} / {:.0} events/s",
            rates[0], rates[1], rates[2]
        );
    }
    sqlx::query(&format!("TRUNCATE {SCHEMA}.balances"))
        .execute(store.pool())
        .await?;
    let mut rebuild = Runner::projection(
        "balances-rebuild",
        store.clone(),
        Balances,
        PgProjectionStore::new(&store),
    )
    .with_wakeups(notifier.subscribe());
    let t = Instant::now();
    let summary = rebuild.run_until_caught_up().await?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "catch-up, balances projection (one upsert per event, one transaction per batch of 256): \
         {} events in {secs:.3}s = {:.0} events/s (log holds {events} events)",
        summary.stats.events,
        summary.stats.events as f64 / secs
    );
    Ok(mismatches == 0 && final_agree && total == Some(expected_total))
}
