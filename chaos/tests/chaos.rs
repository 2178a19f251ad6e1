//! The chaos suite: the real executor and PostgreSQL store behind the
//! fault-injecting proxy, judged by the simulator's invariant checker.
//!
//! Budget: `EVENTCORE_CHAOS_SECS` seconds of faults (default 45), then a
//! short healing phase, setup and read-back (about a minute in all).
//! `EVENTCORE_CHAOS_SOAK=1` makes the default ten minutes;
//! `EVENTCORE_CHAOS_INTENSITY=N` multiplies every fault rate by N. The seed comes
//! from `EVENTCORE_CHAOS_SEED` or the clock, and is printed with the fault
//! counts and the invariant results. Needs PostgreSQL: skipped with a
//! notice when it cannot be reached, a failure under `CI=true`.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // real clocks and sockets

use eventcore_chaos::run::{run, ChaosConfig};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_run_keeps_every_invariant() {
    let soak = std::env::var("EVENTCORE_CHAOS_SOAK").is_ok_and(|v| v == "1");
    let secs = env_u64("EVENTCORE_CHAOS_SECS").unwrap_or(if soak { 600 } else { 45 });
    let seed = env_u64("EVENTCORE_CHAOS_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    println!("chaos seed {seed}, {secs} s of faults");
    let options = eventcore_tests::postgres::options("chaos").max_connections(8);
    let Some(direct) = eventcore_tests::postgres::fresh_store_with(options).await else {
        return;
    };
    let mut config = ChaosConfig::new(seed, Duration::from_secs(secs));
    if let Some(factor) = env_u64("EVENTCORE_CHAOS_INTENSITY") {
        config.mix = config.mix.scaled(u32::try_from(factor).unwrap_or(1).max(1));
    }
    let report = match run(config, direct.clone()).await {
        Ok(report) => report,
        Err(error) => panic!("chaos run (seed {seed}) could not be carried out: {error}"),
    };
    println!("{report}");
    if report.passed() {
        let _ = direct.drop_schema().await;
    }
    assert!(report.passed(), "{report}");
}
