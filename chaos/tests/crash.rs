//! The crash test: the bank workload on the real executor and PostgreSQL
//! store while the server itself is killed (`pg_ctl stop -m immediate`,
//! WAL recovery on start) and cleanly restarted, on top of the proxy's
//! faults, judged by the same checker as the chaos suite and the simulator:
//! every acknowledged command exactly once, every unknown outcome settled to
//! zero or one commit, multi-stream commits all or nothing, the bank's money
//! conserved, and both subscribers (a `read_all` poller and the
//! subscription runner with its checkpoint in PostgreSQL) resuming with no
//! gap and no duplicate.
//!
//! The server is private: `initdb` into a temporary directory, a free port
//! (`eventcore_chaos::private_postgres`); the shared cluster is never
//! touched. Budget: `EVENTCORE_CRASH_SECS` seconds of faults (default 20;
//! about a minute in all), `EVENTCORE_CRASH_SECS=600` for the ten-minute
//! run; the seed comes from `EVENTCORE_CHAOS_SEED` or the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // real clocks, processes and sockets

use eventcore_chaos::faults::{FaultKind, FaultMix};
use eventcore_chaos::private_postgres::PrivatePostgres;
use eventcore_chaos::run::{run, ChaosConfig};
use eventcore_postgres::{PostgresOptions, PostgresStore};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bank_keeps_every_invariant_while_postgres_crashes_and_restarts() {
    let secs = std::env::var("EVENTCORE_CRASH_SECS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(20u64);
    let server = match PrivatePostgres::start() {
        Ok(server) => Arc::new(server),
        Err(error) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI: a private PostgreSQL could not be started: {error}")
        }
        Err(error) => {
            eprintln!("skipped: a private PostgreSQL could not be started: {error}");
            return;
        }
    };
    let mut config = ChaosConfig::from_env(secs);
    config.fault_phase = Duration::from_secs(secs);
    // Crashes every ~7 s and a clean restart every ~20 s, on top of the
    // usual proxy and PostgreSQL-side faults.
    config.mix = FaultMix::default().with_server_faults(8, 3);
    config.server = Some(server.clone());
    let seed = config.seed;
    println!(
        "crash test seed {seed}, {secs} s of faults, server on port {}",
        server.port()
    );
    let direct = PostgresStore::connect_with(
        PostgresOptions::new(server.url())
            .schema("crash_bank")
            .max_connections(8),
    )
    .await
    .expect("connect to the private server");
    direct.migrate().await.expect("migrate");
    let report = match run(config, direct).await {
        Ok(report) => report,
        Err(error) => panic!(
            "crash run (seed {seed}) could not be carried out: {error}\nserver log:\n{}",
            server.log_tail(40)
        ),
    };
    println!("{report}");
    assert!(report.passed(), "{report}\nserver log:\n{}", server.log_tail(40));
    assert!(
        report.faults.injected(FaultKind::ServerCrash) >= 2,
        "at least two crashes: {report}"
    );
    assert!(
        report.faults.injected(FaultKind::ServerRestart) >= 1,
        "a clean restart: {report}"
    );
}
