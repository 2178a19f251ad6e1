//! Banking demo: opens accounts, runs concurrent transfers, prints throughput,
//! conflicts and retries, then audits the store (money conserved, no negative
//! balance, contiguous versions) and exits non-zero if an invariant fails.
//!
//! Runs on the in-memory store, or on PostgreSQL when `DATABASE_URL` is set
//! (schema `banking_demo`, created on first use; accounts and history persist
//! across runs, and the audit covers all of it).
//!
//! ```text
//! cargo run --release --example banking -- [--accounts N] [--tasks T] [--transfers K] [--plain]
//! ```
//!
//! Transfers read both accounts through the `Account` stream view, which the
//! executor caches between commands. `--plain` runs the same transfers as a
//! plain whole-command fold instead (`PlainTransfer`: every transfer reads
//! and folds both streams from version 1), the baseline views are measured
//! against.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo run --release --example banking
//! ```
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // off the simulated path: real clocks and hash maps are fine here (see clippy.toml)

use eventcore::{CommandError, EventFilter, ExecutionError, GlobalPosition, ReadAllRequest, RecordedEvent};
use eventcore_examples::bank::{account, Audit, BankError, OpenAccount, PlainTransfer, Transfer};
use eventcore_postgres::{PostgresOptions, PostgresStore};
use eventcore_tokio::{EventStore, Executor, MemoryEventStore};
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

struct Options {
    accounts: u32,
    tasks: u32,
    transfers: u32,
    plain: bool,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        accounts: 20,
        tasks: 8,
        transfers: 2_000,
        plain: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--plain" {
            options.plain = true;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number: u32 = value
            .parse()
            .map_err(|_| format!("{flag}: `{value}` is not a number"))?;
        match flag.as_str() {
            "--accounts" if number >= 2 => options.accounts = number,
            "--tasks" if number >= 1 => options.tasks = number,
            "--transfers" => options.transfers = number,
            _ => return Err(format!("unknown flag or bad value: {flag} {value}")),
        }
    }
    Ok(options)
}

#[derive(Default)]
struct Tally {
    committed: u64,
    refused: u64,
    attempts: u64,
    conflicts: u64,
}

/// Opens the accounts, runs the transfers, and returns the tally.
async fn run<S: EventStore>(executor: Arc<Executor<S>>, options: &Options) -> Result<Tally, String> {
    for n in 0..options.accounts {
        match executor
            .execute(OpenAccount {
                account: account(n),
                initial: 1_000,
            })
            .await
        {
            Ok(_)
            | Err(ExecutionError {
                error: CommandError::Domain(BankError::AlreadyOpen(_)),
                ..
            }) => {}
            Err(error) => return Err(format!("opening account {n}: {error}")),
        }
    }
    let mut handles = Vec::new();
    for task in 0..options.tasks {
        let executor = executor.clone();
        let (accounts, transfers, plain) = (options.accounts, options.transfers, options.plain);
        handles.push(tokio::spawn(async move {
            let mut rng = u64::from(task) * 0x9E37_79B9 + 1;
            let mut tally = Tally::default();
            for _ in 0..transfers {
                let from = next(&mut rng) % u64::from(accounts);
                let to = (from + 1 + next(&mut rng) % u64::from(accounts - 1)) % u64::from(accounts);
                let amount = 1 + next(&mut rng) % 200;
                let transfer = Transfer {
                    from: account(from as u32),
                    to: account(to as u32),
                    amount,
                };
                let result = if plain {
                    executor.execute(PlainTransfer(transfer)).await
                } else {
                    executor.execute(transfer).await
                };
                match result {
                    Ok(done) => {
                        tally.committed += 1;
                        tally.attempts += u64::from(done.attempts);
                        tally.conflicts += u64::from(done.stats.conflicts);
                    }
                    Err(ExecutionError {
                        error: CommandError::Domain(BankError::InsufficientFunds { .. }),
                        ..
                    }) => tally.refused += 1,
                    Err(error) => return Err(format!("transfer failed: {error}")),
                }
            }
            Ok(tally)
        }));
    }
    let mut total = Tally::default();
    for handle in handles {
        let tally = handle.await.map_err(|e| format!("task panicked: {e}"))??;
        total.committed += tally.committed;
        total.refused += tally.refused;
        total.attempts += tally.attempts;
        total.conflicts += tally.conflicts;
    }
    Ok(total)
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn report(options: &Options, tally: &Tally, seconds: f64, events: &[RecordedEvent]) -> ExitCode {
    let executed = tally.committed + tally.refused;
    println!(
        "transfers ({}): {} committed, {} refused (insufficient funds) by {} tasks in {:.2}s = {:.0} commands/s",
        if options.plain {
            "plain whole-command fold"
        } else {
            "Account stream views"
        },
        tally.committed,
        tally.refused,
        options.tasks,
        seconds,
        executed as f64 / seconds
    );
    println!(
        "retries: {} conflicts retried, {} attempts for {} commits ({:.3} attempts/commit)",
        tally.conflicts,
        tally.attempts,
        tally.committed,
        tally.attempts as f64 / tally.committed.max(1) as f64
    );
    let audit = Audit::of(events);
    println!(
        "audit: {} events, {} accounts, opened {} and hold {}",
        events.len(),
        audit.balances.len(),
        audit.opened_total,
        audit.final_total
    );
    if let Some(peak) = peak_memory_kib() {
        println!("peak memory: {:.1} MiB (resident, whole process)", peak as f64 / 1024.0);
    }
    if audit.violations.is_empty() {
        println!("invariants: OK (money conserved, no negative balance, versions contiguous)");
        ExitCode::SUCCESS
    } else {
        for violation in &audit.violations {
            eprintln!("invariant violated: {violation}");
        }
        ExitCode::FAILURE
    }
}

/// The process's peak resident set (`VmHWM`), where the OS reports it.
fn peak_memory_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Every event in the store, in global order, page by page.
async fn whole_log<S: EventStore>(store: &S) -> Result<Vec<RecordedEvent>, String> {
    let mut after = GlobalPosition::START;
    let mut log = Vec::new();
    loop {
        let page = store
            .read_all(&ReadAllRequest {
                after,
                limit: NonZeroU32::new(1_000).unwrap_or(NonZeroU32::MIN),
                filter: EventFilter::all(),
            })
            .await
            .map_err(|e| format!("reading the log: {e}"))?;
        if page.events.is_empty() && page.complete_through == after {
            return Ok(log);
        }
        after = page.complete_through;
        log.extend(page.events);
    }
}

/// Runs the demo on `store` and audits it.
async fn demo<S: EventStore>(store: S, options: &Options) -> ExitCode {
    let executor = Arc::new(Executor::new(store));
    let started = Instant::now();
    let tally = match run(executor.clone(), options).await {
        Ok(tally) => tally,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    match whole_log(executor.store()).await {
        Ok(events) => report(options, &tally, seconds, &events),
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}\nusage: banking [--accounts N] [--tasks T] [--transfers K] [--plain]");
            return ExitCode::from(2);
        }
    };
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            println!(
                "banking demo on PostgreSQL (schema banking_demo): {} accounts, {} tasks x {} transfers",
                options.accounts, options.tasks, options.transfers
            );
            let pg_options = PostgresOptions::new(url)
                .schema("banking_demo")
                .max_connections(options.tasks.clamp(2, 32));
            let store = match PostgresStore::connect_with(pg_options).await {
                Ok(store) => store,
                Err(error) => {
                    eprintln!("cannot use PostgreSQL: {error}");
                    return ExitCode::FAILURE;
                }
            };
            if let Err(error) = store.migrate().await {
                eprintln!("{error}");
                eprintln!(
                    "(a schema left by an older EventCore may not migrate: \
                     `DROP SCHEMA banking_demo CASCADE` starts the demo afresh)"
                );
                return ExitCode::FAILURE;
            }
            demo(store, &options).await
        }
        _ => {
            println!(
                "banking demo on the in-memory store: {} accounts, {} tasks x {} transfers",
                options.accounts, options.tasks, options.transfers
            );
            demo(MemoryEventStore::new(), &options).await
        }
    }
}
