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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_run_keeps_every_invariant() {
    let config = ChaosConfig::from_env(45);
    let seed = config.seed;
    println!("chaos seed {seed}, {} s of faults", config.fault_phase.as_secs());
    let options = eventcore_tests::postgres::options("chaos").max_connections(8);
    let Some(direct) = eventcore_tests::postgres::fresh_store_with(options).await else {
        return;
    };
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
