//! `scale`: does the PostgreSQL store stay flat as it grows?
//!
//! ```text
//! cargo run --release -p eventcore-benches --bin scale                      # levels 0, 1M and 10M events, 10 s per measurement
//! cargo run --release -p eventcore-benches --bin scale -- --levels 0,200000 --secs 2
//! cargo run --release -p eventcore-benches --bin scale -- --short           # CI smoke test: levels 0 and 20,000, 1 s each
//! ```
//!
//! One `PostgresStore` in a fresh schema `scale_bench_<pid>` (dropped at the
//! end unless `--keep`) is filled up to each level in turn, **through
//! `EventStore::append` only** (never SQL into its tables): appends of 10
//! streams × 100 events, each group of 10 streams filled to 300 events in
//! three appends, `--in-flight` appends at once (default 4); the load rate
//! is printed. The store starts from a base of 2,000 events: 10 streams of
//! 100 events, and 1,000 "hot" streams of one event each. A level is the
//! number of events in the store when its measurements start (events the
//! measurements write count too). After loading, `VACUUM (ANALYZE)` and
//! `CHECKPOINT` (`--no-settle` skips them), so that every level starts from
//! the same state. Then, `--secs` each after a short warm-up:
//!
//! - a control: `SELECT 1` round trips (p50/p99), which do not depend on the
//!   store's size; when they moved between levels, so did the machine;
//! - single-event appends with an exact expected version: to the 1,000 hot
//!   streams, with 1 and with 8 clients (the same working set at every
//!   level, so only the size of the store changes), and to any stream of the
//!   store with 1 client (the working set grows with the store); each client
//!   owns the streams whose index is its own modulo the client count, so it
//!   knows their versions; p50/p99 latency and appends/s;
//! - a read of the first 100 events of a random stream of 100 events or
//!   more, with 1 and with 8 clients: p50/p99, reads/s;
//! - a `read_all` page of 1,000 events from a random position among the most
//!   recent 100,000 events (a subscriber catching up), 1 client: p50/p99,
//!   events/s, and the pages that came back short (`read_all_settle` is
//!   zero, so a transaction elsewhere in the cluster holding the xid horizon
//!   shows up as short pages rather than as waits);
//!
//! and then the sizes (`pg_relation_size`, `pg_indexes_size`,
//! `pg_total_relation_size`): the events heap, each index of `events` and
//! the whole table in bytes per event (= MB per million events), `streams`
//! per stream and `commands` per append (their rows per event depend on the
//! mix of appends, not on scale), other tables in kB.
//!
//! The report is one markdown table, each metric at each level with its
//! ratio to the first level (sizes: to the first level holding at least
//! 100,000 events, below which fixed page overheads dominate); a ratio
//! outside ±20% is flagged. `DATABASE_URL` defaults to
//! `postgres://postgres@127.0.0.1:5432/postgres`. The process exits non-zero
//! if any operation failed.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod load;
mod measure;
mod report;

use eventcore_postgres::{PostgresOptions, PostgresStore};
use load::{fill, State, FILL_EVENTS, FILL_STREAMS};
use report::{fmt_int, metric, report, Kind, Metric, SIZE_BASE_MIN, TOLERANCE};
use sqlx::{Connection, Row};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

type Result<T> = std::result::Result<T, String>;

/// Settings of one run.
struct Config {
    url: String,
    levels: Vec<u64>,
    measure: Duration,
    warmup: Duration,
    in_flight: usize,
    keep: bool,
    settle: bool,
    schema: String,
    command_line: String,
}

fn parse_args() -> Result<Config> {
    let mut levels = vec![0, 1_000_000, 10_000_000];
    let mut secs = 10.0f64;
    let (mut short, mut keep, mut settle, mut in_flight) = (false, false, true, 4usize);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--levels" => {
                let v = value("--levels")?;
                levels = v
                    .split(',')
                    .map(|s| s.trim().replace('_', "").parse::<u64>())
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|_| format!("--levels: not a list of numbers: {v}"))?;
            }
            "--secs" => {
                let v = value("--secs")?;
                secs = v.parse().map_err(|_| format!("--secs: not a number: {v}"))?;
            }
            "--in-flight" => {
                let v = value("--in-flight")?;
                in_flight = v.parse().map_err(|_| format!("--in-flight: not a number: {v}"))?;
            }
            "--short" => short = true,
            "--keep" => keep = true,
            "--no-settle" => settle = false,
            "-h" | "--help" => {
                println!(
                    "usage: scale [--levels 0,1000000,10000000] [--secs N] [--in-flight N] [--short] [--keep] [--no-settle]\n\
                     Fills a PostgresStore (DATABASE_URL, default {DEFAULT_URL}) through EventStore::append up to each\n\
                     level and measures append, stream-read and read_all latency and throughput, and table sizes per\n\
                     million events, against the first level (ratios outside ±20% flagged).\n\
                     --secs N        seconds per measurement (default 10)\n\
                     --in-flight N   loading appends in flight at once (default 4)\n\
                     --short         CI smoke test: levels 0 and 20,000, 1 s per measurement\n\
                     --keep          keep the schema scale_bench_<pid> at the end\n\
                     --no-settle     no VACUUM (ANALYZE) and CHECKPOINT between loading and measuring"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}; try --help")),
        }
    }
    if short {
        levels = vec![0, 20_000];
        secs = 1.0;
    }
    levels.sort_unstable();
    levels.dedup();
    if levels.is_empty() || secs <= 0.0 || in_flight == 0 {
        return Err("--levels, --secs and --in-flight must be non-empty and positive".into());
    }
    Ok(Config {
        url: std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.into()),
        levels,
        measure: Duration::from_secs_f64(secs),
        warmup: Duration::from_secs_f64((secs / 5.0).clamp(0.2, 2.0)),
        in_flight,
        keep,
        settle,
        schema: format!("scale_bench_{}", std::process::id()),
        command_line: std::iter::once("scale".to_owned())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
    })
}

/// `VACUUM (ANALYZE)` every table of the schema, then `CHECKPOINT`, on a
/// connection of its own (no statement timeout), so that every level is
/// measured from the same state: statistics fresh, the visibility map set,
/// the load's dirty pages on disk. Returns the time it took and, when the
/// checkpoint was refused (it needs superuser or `pg_checkpoint`), why.
async fn settle(cfg: &Config) -> Result<(Duration, Option<String>)> {
    let began = Instant::now();
    let mut conn = sqlx::PgConnection::connect(&cfg.url).await.map_err(|e| e.to_string())?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY 1",
    )
    .bind(&cfg.schema)
    .fetch_all(&mut conn)
    .await
    .map_err(|e| e.to_string())?;
    for table in tables {
        let sql = format!("VACUUM (ANALYZE) \"{}\".\"{table}\"", cfg.schema);
        let vacuum = sqlx::raw_sql(&sql).execute(&mut conn).await;
        vacuum.map_err(|e| format!("{sql}: {e}"))?;
    }
    let checkpoint = sqlx::raw_sql("CHECKPOINT").execute(&mut conn).await;
    let _ = conn.close().await;
    Ok((began.elapsed(), checkpoint.err().map(|e| e.to_string())))
}

/// Loads and measures every level in turn.
async fn run(cfg: &Config, store: PostgresStore, errors: &mut Vec<String>) -> Result<Vec<(u64, Vec<Metric>)>> {
    let mut state = State {
        store,
        slots: Arc::new(Vec::new()),
        hot: Arc::new(Vec::new()),
        anchors: Vec::new(),
        stored: 0,
        commands: 0,
        groups: 0,
        next: Arc::new(AtomicU64::new(1)),
    };
    load::base(&mut state).await?;
    let mut results = Vec::new();
    for (i, &level) in cfg.levels.iter().enumerate() {
        let mut metrics = Vec::new();
        if let Some((events, took)) = fill(&mut state, level, cfg.in_flight).await? {
            let rate = events as f64 / took.as_secs_f64().max(1e-9);
            println!(
                "level {}: loaded {} events in {:.1} s: {} events/s (appends of {FILL_STREAMS} streams × {FILL_EVENTS} \
                 events, {} in flight)",
                fmt_int(level as f64),
                fmt_int(events as f64),
                took.as_secs_f64(),
                fmt_int(rate),
                cfg.in_flight
            );
            metrics.push(metric("load rate before measuring (events/s)", rate, Kind::Info));
        }
        if cfg.settle {
            let (took, refused) = settle(cfg).await?;
            let checkpoint = refused.map_or("CHECKPOINT".to_owned(), |e| format!("no CHECKPOINT ({e})"));
            let took = took.as_secs_f64();
            println!(
                "level {}: VACUUM (ANALYZE), {checkpoint}: {took:.1} s",
                fmt_int(level as f64)
            );
        }
        metrics.extend(measure::measure(cfg, &mut state, i, errors).await?);
        println!("level {}: measured", fmt_int(level as f64));
        results.push((level, metrics));
    }
    Ok(results)
}

#[tokio::main]
async fn main() {
    let cfg = parse_args().unwrap_or_else(|e| {
        eprintln!("scale: {e}");
        std::process::exit(2);
    });
    let options = PostgresOptions::new(&cfg.url)
        .schema(&cfg.schema)
        .max_connections(cfg.in_flight.max(8) as u32 + 2)
        .read_all_settle(Duration::ZERO);
    let store = match PostgresStore::connect_with(options).await {
        Ok(store) => store,
        Err(e) => {
            eprintln!("scale: cannot reach PostgreSQL at {}: {e}", cfg.url);
            std::process::exit(1);
        }
    };
    let setup = async {
        store.drop_schema().await.map_err(|e| e.to_string())?;
        store.migrate().await.map_err(|e| e.to_string())?;
        let row = sqlx::query("SELECT current_setting('server_version'), current_setting('shared_buffers')")
            .fetch_one(store.pool())
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((row.get::<String, _>(0), row.get::<String, _>(1)))
    };
    let mut errors = Vec::new();
    let result = match setup.await {
        Ok((version, buffers)) => {
            println!(
                "`{}`: PostgreSQL {version}, shared_buffers {buffers}, schema {}, {} s per measurement, {} CPUs\n",
                cfg.command_line,
                cfg.schema,
                cfg.measure.as_secs_f64(),
                std::thread::available_parallelism().map_or(0, |n| n.get()),
            );
            run(&cfg, store.clone(), &mut errors).await
        }
        Err(e) => Err(e),
    };
    if cfg.keep {
        println!("kept schema {}", cfg.schema);
    } else if let Err(e) = store.drop_schema().await {
        eprintln!("scale: could not drop schema {}: {e}", cfg.schema);
    }
    let results = result.unwrap_or_else(|e| {
        eprintln!("scale: {e}");
        std::process::exit(1);
    });
    let (table, flagged) = report(&results);
    println!("\n{table}\n");
    println!(
        "Ratios: to level {} (sizes, in MB per million events = bytes per event: to the first level holding at \
         least {} events); ⚠ marks a ratio outside ±{:.0}%.",
        fmt_int(results.first().map_or(0, |r| r.0) as f64),
        fmt_int(SIZE_BASE_MIN as f64),
        TOLERANCE * 100.0
    );
    if flagged.is_empty() {
        println!("Every metric is within ±{:.0}% of its base.", TOLERANCE * 100.0);
    } else {
        println!("Outside ±{:.0}%: {}.", TOLERANCE * 100.0, flagged.join("; "));
    }
    if !errors.is_empty() {
        eprintln!("scale: operations failed: {}", errors.join("; "));
        std::process::exit(1);
    }
}
