//! `soak`: memory over time on the real stack (see `eventcore_chaos::soak`).
//!
//! ```text
//! cargo build --release -p eventcore-chaos --bin soak
//! target/release/soak --secs 600 --csv soak.csv     # the ten-minute run of docs/soak.md
//! target/release/soak --secs 30                     # a quick look
//! ```
//!
//! Runs in a fresh schema `soak_<pid>` of `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped at the end
//! unless `--keep`. Prints the report, a table of the samples every
//! `--table-step` seconds (default 60) and a chart of `VmRSS`; exits
//! non-zero when a bound broke or a final check failed.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use eventcore_chaos::soak::{run, SoakConfig};
use eventcore_postgres::{PostgresOptions, PostgresStore};
use std::path::PathBuf;
use std::time::Duration;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

struct Args {
    config: SoakConfig,
    keep: bool,
    table_step: f64,
}

fn parse_args() -> Result<Args, String> {
    let mut secs = 600.0f64;
    let mut warmup: Option<f64> = None;
    let mut csv = None;
    let mut keep = false;
    let mut table_step = 60.0;
    let mut executors = None;
    let mut clients = None;
    let mut stream_cache = None;
    let mut view_cache = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let number = |name: &str, v: String| v.parse::<f64>().map_err(|_| format!("{name}: not a number: {v}"));
        match arg.as_str() {
            "--secs" => secs = number("--secs", value("--secs")?)?,
            "--warmup" => warmup = Some(number("--warmup", value("--warmup")?)?),
            "--csv" => csv = Some(PathBuf::from(value("--csv")?)),
            "--table-step" => table_step = number("--table-step", value("--table-step")?)?,
            "--executors" => executors = Some(number("--executors", value("--executors")?)? as usize),
            "--clients" => clients = Some(number("--clients", value("--clients")?)? as usize),
            "--stream-cache" => stream_cache = Some(number("--stream-cache", value("--stream-cache")?)? as usize),
            "--view-cache" => view_cache = Some(number("--view-cache", value("--view-cache")?)? as usize),
            "--keep" => keep = true,
            "-h" | "--help" => {
                println!(
                    "usage: soak [--secs 600] [--warmup S] [--csv PATH] [--table-step 60] [--executors 4] [--clients 4]\n\
                     \x20           [--stream-cache 2000] [--view-cache 65536] [--keep]\n\
                     Executors with stream, view and snapshot caches (every other one batching), two subscriptions\n\
                     and an exactly-once projection on PostgreSQL (DATABASE_URL, default {DEFAULT_URL}), sampling\n\
                     VmRSS and every bounded structure each second.\n\
                     --secs S          load duration (default 600)\n\
                     --warmup S        left out of the slope (default a tenth of --secs, at most 60)\n\
                     --csv PATH        write every sample there\n\
                     --table-step S    seconds between the table's rows (default 60)\n\
                     --executors N     executors (default 4); --clients N: clients per executor (default 4)\n\
                     --stream-cache N  each stream cache's bound in events (default 2000)\n\
                     --view-cache N    each view cache's bound in bytes (default 65536)\n\
                     --keep            keep the schema soak_<pid>"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}; try --help")),
        }
    }
    if secs <= 0.0 || table_step <= 0.0 {
        return Err("--secs and --table-step must be positive".into());
    }
    let mut config = SoakConfig::new(Duration::from_secs_f64(secs));
    if let Some(warmup) = warmup {
        config.warmup = Duration::from_secs_f64(warmup.max(0.0));
    }
    config.csv = csv;
    config.executors = executors.unwrap_or(config.executors).max(1);
    config.clients_per_executor = clients.unwrap_or(config.clients_per_executor).max(1);
    config.stream_cache_events = stream_cache.unwrap_or(config.stream_cache_events);
    config.view_cache_bytes = view_cache.unwrap_or(config.view_cache_bytes);
    Ok(Args {
        config,
        keep,
        table_step,
    })
}

#[tokio::main]
async fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("soak: {e}");
        std::process::exit(2);
    });
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.into());
    let schema = format!("soak_{}", std::process::id());
    let clients = args.config.clients() as u32;
    let options = PostgresOptions::new(&url)
        .schema(&schema)
        .max_connections(clients.clamp(8, 16));
    let store = match PostgresStore::connect_with(options).await {
        Ok(store) => store,
        Err(e) => {
            eprintln!("soak: cannot reach PostgreSQL at {url}: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = store.drop_schema().await {
        eprintln!("soak: could not drop schema {schema}: {e}");
        std::process::exit(1);
    }
    let command_line = std::iter::once("soak".to_owned())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    println!(
        "`{command_line}`: schema {schema}, {} CPUs, pool of {} connections",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        store.options().max_connections
    );
    let result = run(args.config, store.clone()).await;
    if args.keep {
        println!("kept schema {schema}");
    } else if let Err(e) = store.drop_schema().await {
        eprintln!("soak: could not drop schema {schema}: {e}");
    }
    let report = result.unwrap_or_else(|e| {
        eprintln!("soak: {e}");
        std::process::exit(1);
    });
    println!("\n{report}");
    println!("{}", report.table(args.table_step));
    println!("{}", report.chart(72, 16));
    if !report.passed() {
        std::process::exit(1);
    }
}
