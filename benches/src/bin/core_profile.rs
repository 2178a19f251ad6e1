//! `core_profile`: the criterion workloads as a plain loop, for profilers
//! (`valgrind --tool=callgrind target/release/core_profile 20000`), whose
//! instruction counts do not depend on how busy the machine is.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use eventcore::{ExpectedVersion, Time};
use eventcore_benches::bank::AccountEvent;
use eventcore_benches::{append_request, execute_sync, stream, Deposit, Replay};
use eventcore_memory::MemoryStore;
use std::time::Instant;

fn main() {
    let commands: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let now = Time::from_unix_millis(1_700_000_000_000);
    let names: Vec<_> = (0..commands).map(|i| stream(format!("s-{i}"))).collect();
    let mut store = MemoryStore::new();
    let start = Instant::now();
    for (i, name) in names.iter().enumerate() {
        let command = Deposit {
            account: name.clone(),
            amount: 1,
        };
        execute_sync(&mut store, command, now, i as u64).expect("deposit commits");
    }
    let per_command = start.elapsed().as_nanos() as f64 / commands as f64;
    println!("single-stream command on a new stream: {per_command:.0} ns");

    let mut store = MemoryStore::new();
    let target = stream("fold");
    let events = vec![AccountEvent::Deposited { amount: 1 }; 10_000];
    let load = append_request(&target, ExpectedVersion::NoStream, &events, now, 1_000_000_000);
    store.append(&load).expect("loads");
    let folds = (commands / 10_000).max(3);
    let start = Instant::now();
    for i in 0..folds {
        execute_sync(&mut store, Replay { stream: target.clone() }, now, 2_000_000_000 + i).expect("replays");
    }
    let per_event = start.elapsed().as_nanos() as f64 / (folds * 10_000) as f64;
    println!(
        "fold (read + decode + apply) of 10,000 events: {per_event:.0} ns/event = {:.2}M events/s",
        1e3 / per_event
    );
}
