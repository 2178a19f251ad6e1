//! `client_profile`: the client side of the command path as plain loops, for
//! profilers whose counts do not depend on how busy the machine is
//! (`valgrind --tool=callgrind`, `valgrind --tool=dhat`, `heaptrack`).
//!
//! - `client_profile machine N`: `N` single-stream `Deposit` commands on new
//!   streams through the sans-IO machine and the synchronous `MemoryStore`
//!   (the criterion `machine/single_stream_command/0_events` loop);
//! - `client_profile w4 N`: `N` `DepositMany(100)` commands on one stream
//!   through the tokio `Executor` (stream and state caches on, as in the
//!   `compare` W4 command path) over `MemoryEventStore`, on a
//!   current-thread runtime.
//!
//! Run each mode at two sizes and take the difference to cancel the fixed
//! setup cost: `(cost(2N) - cost(N)) / N` per command.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use eventcore::Time;
use eventcore_benches::{execute_sync, stream, Deposit, DepositMany};
use eventcore_memory::MemoryStore;
use eventcore_tokio::{Executor, MemoryEventStore};
use std::time::Instant;

/// Events per W4 command, as in `compare`.
const BATCH: usize = 100;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "machine".to_owned());
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    match mode.as_str() {
        "machine" => machine(n),
        "w4" => w4(n),
        other => {
            eprintln!("unknown mode {other:?}; use `machine N` or `w4 N`");
            std::process::exit(2);
        }
    }
}

fn machine(n: u64) {
    let now = Time::from_unix_millis(1_700_000_000_000);
    let names: Vec<_> = (0..n).map(|i| stream(format!("s-{i}"))).collect();
    let mut store = MemoryStore::new();
    let start = Instant::now();
    for (i, name) in names.iter().enumerate() {
        let command = Deposit {
            account: name.clone(),
            amount: 1,
        };
        execute_sync(&mut store, command, now, i as u64).expect("deposit commits");
    }
    let per_command = start.elapsed().as_nanos() as f64 / n as f64;
    println!("machine: {n} single-stream commands on new streams: {per_command:.0} ns/command");
}

fn w4(n: u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // The same cache sizes as `compare` (ec::CACHE_EVENTS).
        let executor = Executor::new(MemoryEventStore::new()).with_stream_cache(1_000_000);
        let account = stream("w4");
        let start = Instant::now();
        for _ in 0..n {
            let command = DepositMany {
                account: account.clone(),
                count: BATCH,
            };
            executor.execute(command).await.expect("deposits commit");
        }
        let elapsed = start.elapsed().as_secs_f64();
        let events = (n as usize * BATCH) as f64;
        println!(
            "w4: {n} commands of {BATCH} events through the executor: {:.0} events/s ({:.1} µs/command)",
            events / elapsed,
            elapsed * 1e6 / n as f64
        );
    });
}
