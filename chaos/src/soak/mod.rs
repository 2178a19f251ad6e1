//! The soak: memory over time on the real stack. Several executors' worth
//! of clients issue bank commands over a large and growing set of account
//! streams on PostgreSQL, with every cache on and bounded far below the
//! working set, a quarter to a half of them through a `BatchingStore`, while
//! two subscriptions and an exactly-once projection consume everything.
//! Every second a sample records the process's resident memory
//! (`/proc/self/status`: `VmRSS`, `VmHWM`) next to what every bounded
//! structure holds; the report checks each bound at every sample and fits
//! the resident memory's slope after warm-up.
//!
//! The soak's jobs, one file each:
//!
//! - this file: the configuration ([`SoakConfig`]) and [`run`], which wires
//!   the store, executors, consumers and sampler together and orders the
//!   phases (setup, load, drain, final checks);
//! - `workload`: the executors (stream, view and snapshot caches; plain or
//!   batching) and the clients' command mix;
//! - `consumers`: the two subscriptions and the projection, their drive
//!   loops and their final checks;
//! - `sample`: one sample ([`Sample`]), reading `/proc/self/status`, the
//!   sampler loop and the CSV;
//! - `report`: what a soak found ([`SoakReport`]): the bound checks, the
//!   resident memory's summary and least-squares slope, the per-minute
//!   table and a text chart.
//!
//! `chaos/src/bin/soak.rs` runs it from the command line (the ten-minute
//! curve in `docs/soak.md`); `chaos/tests/soak.rs` is the short version
//! that CI runs.

mod consumers;
mod report;
mod sample;
mod workload;

pub use report::{least_squares_slope, SoakReport, Summary};
pub use sample::{read_proc_status, ConsumerSample, ExecutorSample, ProcStatus, Sample};
pub use workload::Totals;

use eventcore_postgres::{migrate_subscriptions, PostgresStore};
use eventcore_tokio::BatchingOptions;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything that shapes a soak.
///
/// ```
/// use eventcore_chaos::soak::SoakConfig;
/// use std::time::Duration;
/// let config = SoakConfig::new(Duration::from_secs(600));
/// assert_eq!(config.warmup, Duration::from_secs(60));
/// assert_eq!(config.clients(), 16);
/// ```
#[derive(Clone, Debug)]
pub struct SoakConfig {
    /// How long the clients issue commands (the sampled part), at least.
    pub duration: Duration,
    /// The load goes on past `duration` until this many commands have
    /// finished (so that a slow machine still fills every cache), for at
    /// most `max_duration` in all.
    pub min_commands: u64,
    /// The longest the load may go on when `min_commands` is not reached.
    pub max_duration: Duration,
    /// The first part of it, left out of the slope: pools connect, caches
    /// fill, allocator arenas grow to their working size.
    pub warmup: Duration,
    /// Time between samples.
    pub interval: Duration,
    /// Executors, each with its own caches; every odd-numbered one appends
    /// through its own `BatchingStore`.
    pub executors: usize,
    /// Concurrent clients per executor.
    pub clients_per_executor: usize,
    /// Each executor's stream cache, in events (and streams).
    pub stream_cache_events: usize,
    /// Each executor's view cache, in bytes.
    pub view_cache_bytes: usize,
    /// Accounts opened before the load and written often: view commands
    /// only, so their views are snapshotted (every 100 events) and restored
    /// from snapshots on a cache miss.
    pub hot_accounts: u32,
    /// How many of the most recently opened accounts count as recent.
    pub recent_window: u32,
    /// One command in this many opens a new account.
    pub open_one_in: u64,
    /// The batching executors' options.
    pub batching: BatchingOptions,
    /// The two subscriptions' batch sizes (each buffers at most two
    /// batches).
    pub subscription_batches: [u32; 2],
    /// The projection's batch size (it buffers at most two batches).
    pub projection_batch: u32,
    /// How long the consumers may take to catch up after the load.
    pub drain_timeout: Duration,
    /// Where to write the samples as CSV, if anywhere.
    pub csv: Option<PathBuf>,
    /// Seed of the clients' choices.
    pub seed: u64,
}

impl SoakConfig {
    /// A soak of `duration` with the defaults (see the type's example): no
    /// minimum of commands, a tenth of the duration (at most a minute, at
    /// least a second) of warm-up, a sample a second, 4 executors of 4
    /// clients (two of them batching), stream caches of 2,000 events, view
    /// caches of 64 KiB, 64 hot accounts, a recent window of 256 accounts,
    /// one command in 8 opening an account, subscriptions in batches of 100
    /// and 250, the projection in batches of 200.
    pub fn new(duration: Duration) -> Self {
        SoakConfig {
            duration,
            min_commands: 0,
            max_duration: duration,
            warmup: (duration / 10).clamp(Duration::from_secs(1), Duration::from_secs(60)),
            interval: Duration::from_secs(1),
            executors: 4,
            clients_per_executor: 4,
            stream_cache_events: 2_000,
            view_cache_bytes: 64 << 10,
            hot_accounts: 64,
            recent_window: 256,
            open_one_in: 8,
            batching: BatchingOptions::default().max_batch(16),
            subscription_batches: [100, 250],
            projection_batch: 200,
            drain_timeout: Duration::from_secs(120),
            csv: None,
            seed: 0x50A4,
        }
    }

    /// Clients in all.
    ///
    /// ```
    /// let mut config = eventcore_chaos::soak::SoakConfig::new(std::time::Duration::from_secs(60));
    /// config.executors = 2;
    /// assert_eq!(config.clients(), 2 * config.clients_per_executor);
    /// ```
    pub fn clients(&self) -> usize {
        self.executors * self.clients_per_executor
    }
}

/// Runs a soak on `store`, a fresh schema (migrated here, with the
/// subscription trigger, the projection's table and the hot accounts).
/// `Err` when it could not be carried out; what it found, bounds broken
/// included, is in the report.
///
/// ```no_run
/// # async fn demo() -> Result<(), String> {
/// use eventcore_chaos::soak::{run, SoakConfig};
/// use eventcore_postgres::{PostgresOptions, PostgresStore};
/// use std::time::Duration;
/// let options = PostgresOptions::new("postgres://postgres@127.0.0.1:5432/postgres").schema("soak_demo");
/// let store = PostgresStore::connect_with(options).await.map_err(|e| e.to_string())?;
/// let report = run(SoakConfig::new(Duration::from_secs(30)), store).await?;
/// println!("{report}\n{}", report.chart(60, 12));
/// assert!(report.passed());
/// # Ok(()) }
/// ```
pub async fn run(config: SoakConfig, store: PostgresStore) -> Result<SoakReport, String> {
    migrate_subscriptions(&store)
        .await
        .map_err(|e| format!("migrating: {e}"))?;
    consumers::create_read_model(&store).await?;
    let executors = workload::Executors::build(&config, &store);
    let shared = Arc::new(workload::Shared::new(&config));
    executors.open_hot_accounts(&config, &shared).await?;

    let consumers = consumers::Consumers::start(&config, &store).await?;
    let mut csv = match &config.csv {
        Some(path) => Some(sample::CsvWriter::create(path, &executors, &consumers)?),
        None => None,
    };

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = executors.spawn_clients(&config, &shared, &stop);
    let mut samples = Vec::new();
    let mut ticks = tokio::time::interval(config.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let sample = sample::take(started, &store, &executors, &consumers, &shared);
        if let Some(csv) = csv.as_mut() {
            csv.write(&sample)?;
        }
        let t = &sample.totals;
        let finished = t.committed + t.refused + t.failed;
        samples.push(sample);
        let elapsed = started.elapsed();
        if elapsed >= config.duration && (finished >= config.min_commands || elapsed >= config.max_duration) {
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.map_err(|e| format!("a client panicked: {e}"))?;
    }
    executors.flush_snapshots().await;
    let load_secs = started.elapsed().as_secs_f64();

    let drained = consumers.drain(&store, config.drain_timeout).await;
    let problems = consumers.check(&store, &shared, drained).await;
    let (totals, errors) = (shared.totals(), shared.errors());
    Ok(SoakReport::new(&config, samples, load_secs, totals, errors, problems))
}
