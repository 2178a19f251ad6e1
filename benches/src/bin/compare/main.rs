//! `compare`: EventCore against a raw-SQL floor on the same PostgreSQL, in
//! the same run, one line per workload.
//!
//! ```text
//! cargo run --release -p eventcore-benches --bin compare -- [--secs N] [--short] [--store postgres|memory] [--only W1,W2,...] [--codec json|msgpack|both]
//! ```
//!
//! Each workload runs on both sides in fresh schemas of their own, after a
//! warm-up, in ABBA order (raw, EventCore, EventCore, raw: half the time
//! each) so that drift in the machine or the database hits both sides
//! alike. `DATABASE_URL` defaults to `postgres://postgres@127.0.0.1:5432/postgres`.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod backend;
mod ec;
mod harness;
mod long;
mod raw;

use backend::Backend;
use eventcore::{Codec, StreamId};
use eventcore_benches::bank::AccountEvent;
use eventcore_benches::stream;
use eventcore_tokio::{BatchingOptions, BatchingStore, Executor};
use harness::{drive, Outcome, Tally};
use std::fmt::Write as _;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Measured time per side and workload.
    pub measure: Duration,
    /// Unmeasured warm-up per side and workload.
    pub warmup: Duration,
    /// Events in the W3 stream.
    pub replay_stream_events: usize,
    /// Events in the W3 store besides that stream.
    pub replay_other_events: usize,
    /// Which workloads to run (empty: all).
    pub only: Vec<String>,
    /// The database.
    pub url: String,
    /// Which store the EventCore side uses.
    pub store: String,
    /// The command line, for the report.
    pub command_line: String,
    /// Prefix of every schema this run creates.
    pub schema_prefix: String,
    /// Batches in flight at once in the append-batching rows.
    pub batch_in_flight: usize,
    /// Accounts in the W2L (long streams) rows.
    pub long_accounts: u32,
    /// Events each W2L account holds before the run.
    pub long_events: usize,
    /// Events in the cold-start stream.
    pub cold_events: usize,
    /// Cold starts (and full folds) measured, a fresh executor each.
    pub cold_reps: usize,
    /// The payload codecs the EventCore side's store keeps, one pass each.
    pub codecs: Vec<Codec>,
}

impl Config {
    fn wants(&self, workload: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|w| w.eq_ignore_ascii_case(workload))
    }

    fn schema(&self, workload: &str, side: &str) -> String {
        format!("{}_{}_{}", self.schema_prefix, workload.to_lowercase(), side)
    }
}

fn parse_args() -> Result<Config> {
    let mut secs = 10.0f64;
    let mut short = false;
    let mut only = Vec::new();
    let mut store = backend::DEFAULT.to_string();
    let mut batch_in_flight = 1usize;
    let mut codecs = vec![Codec::Json];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--secs" => {
                let v = args.next().ok_or("--secs needs a value")?;
                secs = v.parse().map_err(|_| format!("--secs: not a number: {v}"))?;
            }
            "--short" => short = true,
            "--batch-in-flight" => {
                let v = args.next().ok_or("--batch-in-flight needs a value")?;
                batch_in_flight = v.parse().map_err(|_| format!("--batch-in-flight: not a number: {v}"))?;
            }
            "--store" => store = args.next().ok_or("--store needs postgres or memory")?,
            "--codec" => {
                codecs = match args.next().as_deref() {
                    Some("json") => vec![Codec::Json],
                    Some("msgpack") => vec![Codec::MessagePack],
                    Some("both") => vec![Codec::Json, Codec::MessagePack],
                    _ => return Err("--codec needs json, msgpack or both".into()),
                }
            }
            "--only" => {
                let v = args.next().ok_or("--only needs a list such as W1,W3")?;
                only = v.split(',').map(|s| s.trim().to_string()).collect();
            }
            "-h" | "--help" => {
                println!(
                    "usage: compare [--secs N] [--short] [--store postgres|memory] [--only W1,W2,W3,W4,W5,W1s,B,W2L,C] [--codec json|msgpack|both]\n\
                     Runs each workload on EventCore and on a raw-SQL floor (plain sqlx) against DATABASE_URL\n\
                     (default postgres://postgres@127.0.0.1:5432/postgres) and prints both rates and their ratio.\n\
                     --secs N   measured seconds per side and workload (default 10)\n\
                     --short    a quick smoke run (CI): 0.3 s per side, small data sets\n\
                     --batch-in-flight N   batches in flight at once in the batching rows (default 1)\n\
                     --codec C  the payload codec of EventCore's store: json (default), msgpack, or both (every row once per codec)\n\
                     W2L: transfers over long streams (accounts of 2,000 events; view Transfer, then PlainTransfer)\n\
                     C:   cold start of a fresh executor on a stream of 100,000 events from a snapshot, against a full fold"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}; try --help")),
        }
    }
    let (measure, warmup, stream_events, other_events) = if short {
        (Duration::from_millis(300), Duration::from_millis(100), 1_000, 9_000)
    } else {
        (
            Duration::from_secs_f64(secs),
            Duration::from_secs_f64((secs / 5.0).clamp(0.2, 2.0)),
            10_000,
            90_000,
        )
    };
    // W2L and C: long streams; small in the CI smoke run.
    let (long_accounts, long_events, cold_events, cold_reps) = if short {
        (20, 200, 2_000, 3)
    } else {
        (100, 2_000, 100_000, 7)
    };
    let command_line = std::iter::once("compare".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Config {
        measure,
        warmup,
        replay_stream_events: stream_events,
        replay_other_events: other_events,
        only,
        url: std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
        store,
        command_line,
        schema_prefix: format!("bench_{}", std::process::id()),
        batch_in_flight,
        long_accounts,
        long_events,
        cold_events,
        cold_reps,
        codecs,
    })
}

/// One line of the report.
pub struct Row {
    workload: String,
    unit: &'static str,
    target: f64,
    eventcore: Tally,
    raw: Tally,
    /// Anything else worth printing (batch sizes).
    extra: String,
    /// The whole line, for rows that are not a rate against the floor
    /// (the cold start).
    text: Option<String>,
}

impl Row {
    fn ratio(&self) -> f64 {
        self.eventcore.rate() / self.raw.rate().max(1e-9)
    }

    fn line(&mut self) -> String {
        if let Some(text) = &self.text {
            return text.clone();
        }
        let ratio = self.ratio();
        let verdict = if ratio >= self.target { "met" } else { "MISSED" };
        let mut notes = String::new();
        for (side, tally) in [("ec", &mut self.eventcore), ("raw", &mut self.raw)] {
            let (client, server) = tally.cpu_per_unit_us();
            // Per-event figures are a microsecond or two: keep two digits.
            let digits = if client.max(server) < 10.0 { 2 } else { 0 };
            let _ = write!(
                notes,
                "{side}: p50 {} µs, p99 {} µs, cpu {:.digits$}+{:.digits$} µs/{}",
                tally.latency_us(0.5),
                tally.latency_us(0.99),
                client,
                server,
                self.unit.trim_end_matches("/s"),
            );
            if tally.round_trips > 0 {
                let _ = write!(
                    notes,
                    ", {:.2} round trips/op",
                    tally.round_trips as f64 / tally.ops.max(1) as f64
                );
            }
            if tally.conflicts + tally.retries > 0 {
                let _ = write!(notes, ", {} conflicts, {} retries", tally.conflicts, tally.retries);
            }
            if tally.errors > 0 {
                let _ = write!(
                    notes,
                    ", {} ERRORS ({})",
                    tally.errors,
                    tally.first_error.as_deref().unwrap_or("")
                );
            }
            notes.push_str("; ");
        }
        if !self.extra.is_empty() {
            let _ = write!(notes, "{}; ", self.extra);
        }
        format!(
            "| {} | {} {} | {} {} | {:.2}× | ≥ {:.1}× {} | {} |",
            self.workload,
            fmt_rate(self.eventcore.rate()),
            self.unit,
            fmt_rate(self.raw.rate()),
            self.unit,
            ratio,
            self.target,
            verdict,
            notes.trim_end_matches("; "),
        )
    }
}

fn fmt_rate(rate: f64) -> String {
    let whole = rate.round() as u64;
    let digits = whole.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Warms both sides up, then measures them ABBA: raw, EventCore, EventCore,
/// raw, half the time each. Returns (EventCore, raw).
async fn abba<A, FA, FutA, B, FB, FutB>(cfg: &Config, raw: Vec<A>, fa: FA, ec: Vec<B>, fb: FB) -> (Tally, Tally)
where
    A: Send + 'static,
    FA: Fn(A) -> FutA + Send + Sync + Clone + 'static,
    FutA: Future<Output = (A, Outcome)> + Send + 'static,
    B: Send + 'static,
    FB: Fn(B) -> FutB + Send + Sync + Clone + 'static,
    FutB: Future<Output = (B, Outcome)> + Send + 'static,
{
    let half = cfg.measure / 2;
    let (raw, _) = drive(raw, cfg.warmup, fa.clone()).await;
    let (ec, _) = drive(ec, cfg.warmup, fb.clone()).await;
    let (raw, mut raw_tally) = drive(raw, half, fa.clone()).await;
    let (ec, mut ec_tally) = drive(ec, half, fb.clone()).await;
    let (_ec, more) = drive(ec, half, fb).await;
    ec_tally.merge(more);
    let (_raw, more) = drive(raw, half, fa).await;
    raw_tally.merge(more);
    (ec_tally, raw_tally)
}

type Result<T> = std::result::Result<T, String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// What the batching layer did, for the notes column.
fn batched_note<S>(store: &BatchingStore<S>) -> String {
    let stats = store.stats();
    format!(
        "batching: {} appends in {} batches ({:.1} per batch)",
        stats.appends,
        stats.batches,
        stats.appends as f64 / stats.batches.max(1) as f64
    )
}

async fn w1<B: Backend>(cfg: &Config, backend: &B, clients: usize, batched: bool, max_len: Option<u64>) -> Result<Row> {
    let name = format!(
        "W1n{clients}{}{}",
        if batched { "b" } else { "" },
        if max_len.is_some() { "s" } else { "" }
    );
    let raw = raw::Raw::create(&cfg.url, &cfg.schema(&name, "raw"), clients as u32)
        .await
        .map_err(err)?;
    let raw_clients: Vec<_> = (0..clients)
        .map(|i| raw::StreamClient::new(raw.clone(), format!("w1-{i}"), max_len))
        .collect();
    let store = backend.fresh(&cfg.schema(&name, "ec"), clients as u32).await?;
    let streams: Vec<StreamId> = (0..clients).map(|i| stream(format!("w1-{i}"))).collect();
    let (eventcore, raw, extra) = if batched {
        let store = BatchingStore::with_options(store, batching_options(cfg));
        let executor = Arc::new(Executor::new(store.clone()).with_stream_cache(ec::CACHE_EVENTS));
        let ec_clients: Vec<_> = streams
            .into_iter()
            .map(|s| ec::StreamClient::new(executor.clone(), s, max_len))
            .collect();
        let (e, r) = abba(cfg, raw_clients, |c| c.deposit(), ec_clients, |c| c.deposit()).await;
        (e, r, batched_note(&store))
    } else {
        let executor = Arc::new(Executor::new(store).with_stream_cache(ec::CACHE_EVENTS));
        let ec_clients: Vec<_> = streams
            .into_iter()
            .map(|s| ec::StreamClient::new(executor.clone(), s, max_len))
            .collect();
        let (e, r) = abba(cfg, raw_clients, |c| c.deposit(), ec_clients, |c| c.deposit()).await;
        (e, r, String::new())
    };
    Ok(Row {
        workload: format!(
            "W1 single-stream command, {clients} client{}{}{}",
            if clients == 1 { "" } else { "s" },
            if batched { ", append batching" } else { "" },
            max_len.map_or(String::new(), |n| format!(", streams of {n} events"))
        ),
        unit: "cmd/s",
        target: if batched { 2.0 } else { 0.9 },
        eventcore,
        raw,
        extra,
        text: None,
    })
}

/// Batching as the benchmarks use it: the defaults (no linger; a batch
/// forms from the appends that queue while the previous one commits).
fn batching_options(cfg: &Config) -> BatchingOptions {
    BatchingOptions::default().max_in_flight(cfg.batch_in_flight)
}

/// Events per stream in the W1s rows (aggregate-sized streams).
const SHORT_STREAM: u64 = 100;

const ACCOUNTS: u32 = 100;
pub(crate) const INITIAL: u64 = 1_000_000_000;

async fn w2<B: Backend>(cfg: &Config, backend: &B, batched: bool) -> Result<Row> {
    let clients = 8;
    let name = if batched { "W2b" } else { "W2" };
    let raw = raw::Raw::create(&cfg.url, &cfg.schema(name, "raw"), clients)
        .await
        .map_err(err)?;
    raw::TransferClient::open_all(&raw, ACCOUNTS, INITIAL)
        .await
        .map_err(err)?;
    let cache = raw::AccountCache::default();
    let raw_clients: Vec<_> = (0..clients)
        .map(|i| raw::TransferClient::new(raw.clone(), cache.clone(), u64::from(i) + 1, ACCOUNTS))
        .collect();
    let store = backend.fresh(&cfg.schema(name, "ec"), clients).await?;
    let (eventcore, raw, extra) = if batched {
        let store = BatchingStore::with_options(store, batching_options(cfg));
        let executor = Arc::new(Executor::new(store.clone()).with_stream_cache(ec::CACHE_EVENTS));
        let accounts = Arc::new(ec::TransferClient::open_all(&executor, ACCOUNTS, INITIAL).await?);
        let ec_clients: Vec<_> = (0..clients)
            .map(|i| ec::TransferClient::new(executor.clone(), accounts.clone(), u64::from(i) + 1))
            .collect();
        let (e, r) = abba(cfg, raw_clients, |c| c.transfer(), ec_clients, |c| c.transfer()).await;
        (e, r, batched_note(&store))
    } else {
        let executor = Arc::new(Executor::new(store).with_stream_cache(ec::CACHE_EVENTS));
        let accounts = Arc::new(ec::TransferClient::open_all(&executor, ACCOUNTS, INITIAL).await?);
        let ec_clients: Vec<_> = (0..clients)
            .map(|i| ec::TransferClient::new(executor.clone(), accounts.clone(), u64::from(i) + 1))
            .collect();
        let (e, r) = abba(cfg, raw_clients, |c| c.transfer(), ec_clients, |c| c.transfer()).await;
        (e, r, String::new())
    };
    Ok(Row {
        workload: format!(
            "W2 two-stream transfer, {ACCOUNTS} accounts, {clients} clients{}",
            if batched { ", append batching" } else { "" }
        ),
        unit: "transfers/s",
        target: if batched { 2.0 } else { 1.0 },
        eventcore,
        raw,
        extra,
        text: None,
    })
}

/// The W3 data set: one stream of `stream_events` deposits, then other
/// streams of 1,000 events each.
fn replay_data(cfg: &Config) -> Vec<(String, Vec<AccountEvent>)> {
    let mut data = vec![(
        "replay".to_string(),
        vec![AccountEvent::Deposited { amount: 1 }; cfg.replay_stream_events],
    )];
    for i in 0..cfg.replay_other_events.div_ceil(1_000) {
        data.push((format!("other-{i}"), vec![AccountEvent::Deposited { amount: 2 }; 1_000]));
    }
    data
}

async fn w3<B: Backend>(cfg: &Config, backend: &B) -> Result<Vec<Row>> {
    let raw = raw::Raw::create(&cfg.url, &cfg.schema("W3", "raw"), 1)
        .await
        .map_err(err)?;
    let store = Arc::new(backend.fresh(&cfg.schema("W3", "ec"), 1).await?);
    let data = replay_data(cfg);
    let total: usize = data.iter().map(|(_, e)| e.len()).sum();
    for (name, events) in &data {
        for (i, chunk) in events.chunks(1_000).enumerate() {
            raw.load(name, (i * 1_000) as i64 + 1, chunk).await.map_err(err)?;
        }
        ec::load(&*store, &stream(name), events, 1_000).await?;
    }
    let stream_events = cfg.replay_stream_events as u64;
    let executor = Arc::new(Executor::new(store.clone()));
    let raw_replay = {
        let raw = raw.clone();
        move |(): ()| {
            let raw = raw.clone();
            async move {
                match raw::replay_stream(&raw, "replay").await {
                    Ok(t) if t.events == stream_events => ((), Outcome::done(t.events)),
                    Ok(t) => ((), Outcome::failed(format!("folded {} events", t.events))),
                    Err(e) => ((), Outcome::failed(e)),
                }
            }
        }
    };
    let ec_replay = {
        let executor = executor.clone();
        move |(): ()| {
            let executor = executor.clone();
            async move { ((), ec::replay_stream(&executor, &stream("replay"), stream_events).await) }
        }
    };
    let (eventcore, raw_tally) = abba(cfg, vec![()], raw_replay, vec![()], ec_replay).await;
    let one = Row {
        workload: format!("W3 replay one stream of {} events", fmt_rate(stream_events as f64)),
        unit: "events/s",
        target: 0.9,
        eventcore,
        raw: raw_tally,
        extra: String::new(),
        text: None,
    };
    const PAGE: u32 = 1_000;
    let total_events = total as u64;
    let raw_all = {
        let raw = raw.clone();
        move |(): ()| {
            let raw = raw.clone();
            async move {
                (
                    (),
                    whole_log(total_events, raw::replay_all(&raw, i64::from(PAGE)).await),
                )
            }
        }
    };
    let ec_all = {
        let store = store.clone();
        move |(): ()| {
            let store = store.clone();
            async move {
                let page = NonZeroU32::new(PAGE).unwrap_or(NonZeroU32::MIN);
                ((), whole_log(total_events, ec::replay_all(&*store, page).await))
            }
        }
    };
    let (eventcore, raw_tally) = abba(cfg, vec![()], raw_all, vec![()], ec_all).await;
    let all = Row {
        workload: format!(
            "W3 replay whole store ({} events) from position 0, pages of {PAGE}",
            fmt_rate(total as f64)
        ),
        unit: "events/s",
        target: 0.9,
        eventcore,
        raw: raw_tally,
        extra: String::new(),
        text: None,
    };
    if !cfg.wants("W5") {
        return Ok(vec![one, all]);
    }
    let raw_sub = {
        let raw = raw.clone();
        move |(): ()| {
            let raw = raw.clone();
            async move { ((), whole_log(total_events, raw::catch_up(&raw, i64::from(PAGE)).await)) }
        }
    };
    let ec_sub = {
        let store = store.clone();
        move |(): ()| {
            let store = store.clone();
            async move {
                let batch = NonZeroU32::new(PAGE).unwrap_or(NonZeroU32::MIN);
                ((), whole_log(total_events, ec::catch_up(store, batch).await))
            }
        }
    };
    let (eventcore, raw_tally) = abba(cfg, vec![()], raw_sub, vec![()], ec_sub).await;
    let sub = Row {
        workload: format!(
            "W5 subscription catch-up from 0 ({} events), batches of {PAGE}",
            fmt_rate(total as f64)
        ),
        unit: "events/s",
        target: 0.9,
        eventcore,
        raw: raw_tally,
        extra: String::new(),
        text: None,
    };
    Ok(vec![one, all, sub])
}

const BATCH: usize = 100;

async fn w4<B: Backend>(cfg: &Config, backend: &B, direct: bool) -> Result<Row> {
    let name = if direct { "W4d" } else { "W4" };
    let raw = raw::Raw::create(&cfg.url, &cfg.schema(name, "raw"), 1)
        .await
        .map_err(err)?;
    let raw_clients = vec![raw::BatchWriter::new(raw.clone(), "w4".into(), BATCH)];
    let store = backend.fresh(&cfg.schema(name, "ec"), 1).await?;
    let w4: StreamId = stream("w4");
    let (eventcore, raw) = if direct {
        let ec_clients = vec![ec::DirectWriter::new(Arc::new(store), w4, BATCH)];
        abba(cfg, raw_clients, |c| c.append(), ec_clients, |c| c.append()).await
    } else {
        let executor = Arc::new(Executor::new(store).with_stream_cache(ec::CACHE_EVENTS));
        let ec_clients = vec![ec::BatchClient::new(executor, w4, BATCH)];
        abba(cfg, raw_clients, |c| c.append(), ec_clients, |c| c.append()).await
    };
    Ok(Row {
        workload: if direct {
            format!("W4 one writer, batches of {BATCH} events, EventStore::append")
        } else {
            format!("W4 one writer, batches of {BATCH} events, command path")
        },
        unit: "events/s",
        target: 0.8,
        eventcore,
        raw,
        extra: String::new(),
        text: None,
    })
}

async fn drop_schemas(cfg: &Config) -> Result<()> {
    use sqlx::Row as _;
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&cfg.url)
        .await
        .map_err(err)?;
    let rows = sqlx::query("SELECT nspname FROM pg_namespace WHERE nspname LIKE $1")
        .bind(format!("{}\\_%", cfg.schema_prefix))
        .fetch_all(&admin)
        .await
        .map_err(err)?;
    for row in rows {
        let schema: String = row.try_get(0).map_err(err)?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(&admin)
            .await
            .map_err(err)?;
    }
    admin.close().await;
    Ok(())
}

async fn describe(cfg: &Config) -> Result<String> {
    use sqlx::Row as _;
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&cfg.url)
        .await
        .map_err(err)?;
    let version: String = sqlx::query("SELECT current_setting('server_version')")
        .fetch_one(&admin)
        .await
        .map_err(err)?
        .try_get(0)
        .map_err(err)?;
    let mut settings = Vec::new();
    for name in [
        "fsync",
        "synchronous_commit",
        "wal_sync_method",
        "shared_buffers",
        "max_wal_size",
        "checkpoint_timeout",
    ] {
        let value: String = sqlx::query("SELECT current_setting($1)")
            .bind(name)
            .fetch_one(&admin)
            .await
            .map_err(err)?
            .try_get(0)
            .map_err(err)?;
        settings.push(format!("{name}={value}"));
    }
    admin.close().await;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    Ok(format!(
        "machine: {cores} cores, {cpu}\nPostgreSQL {version}: {}\nEventCore store: {}, payloads in {}\ncommand: {}\nper side and workload: {:.1} s measured (ABBA halves) after {:.1} s warm-up",
        settings.join(", "),
        cfg.store,
        cfg.codecs.iter().map(|c| c.name()).collect::<Vec<_>>().join(" then "),
        cfg.command_line,
        cfg.measure.as_secs_f64(),
        cfg.warmup.as_secs_f64(),
    ))
}

async fn run<B: Backend>(cfg: &Config, backend: &B, codec: Codec) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut report = |mut row: Row| {
        if codec != Codec::Json {
            row.workload.push_str(&format!(" [{codec}]"));
        }
        println!("{}", row.line());
        rows.push(row);
    };
    if cfg.wants("W1") {
        report(w1(cfg, backend, 1, false, None).await?);
        report(w1(cfg, backend, 8, false, None).await?);
    }
    if cfg.wants("W2") {
        report(w2(cfg, backend, false).await?);
    }
    if cfg.wants("W3") || cfg.wants("W5") {
        for row in w3(cfg, backend).await? {
            report(row);
        }
    }
    if cfg.wants("W4") {
        report(w4(cfg, backend, false).await?);
        report(w4(cfg, backend, true).await?);
    }
    if cfg.wants("W1s") {
        report(w1(cfg, backend, 1, false, Some(SHORT_STREAM)).await?);
        report(w1(cfg, backend, 8, false, Some(SHORT_STREAM)).await?);
    }
    if cfg.wants("B") {
        report(w1(cfg, backend, 8, true, None).await?);
        report(w2(cfg, backend, true).await?);
    }
    if cfg.wants("W2L") {
        for row in long::w2_long(cfg, backend).await? {
            report(row);
        }
    }
    if cfg.wants("C") {
        report(long::cold_start(cfg, backend).await?);
    }
    Ok(rows)
}

#[tokio::main]
async fn main() {
    let cfg = match parse_args() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("compare: {e}");
            std::process::exit(2);
        }
    };
    match describe(&cfg).await {
        Ok(text) => println!("{text}\n"),
        Err(e) => {
            eprintln!("compare: cannot reach PostgreSQL at {}: {e}", cfg.url);
            std::process::exit(1);
        }
    }
    println!("| workload | EventCore | raw SQL | ratio | target | notes (p50/p99 latency; CPU per unit: this process + PostgreSQL) |");
    println!("|---|---|---|---|---|---|");
    let result = backend::run_with(&cfg).await;
    if let Err(e) = drop_schemas(&cfg).await {
        eprintln!("compare: could not drop the benchmark schemas: {e}");
    }
    match result {
        Ok(rows) => {
            let failed: u64 = rows.iter().map(|r| r.eventcore.errors + r.raw.errors).sum();
            if failed > 0 {
                eprintln!("compare: {failed} operations failed (see ERRORS above)");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("compare: {e}");
            std::process::exit(1);
        }
    }
}

/// The outcome of a replay that must fold exactly `total` events.
fn whole_log(total: u64, result: std::result::Result<eventcore_benches::Totals, String>) -> Outcome {
    match result {
        Ok(t) if t.events == total => Outcome::done(t.events),
        Ok(t) => Outcome::failed(format!("folded {} events of {total}", t.events)),
        Err(e) => Outcome::failed(e),
    }
}
