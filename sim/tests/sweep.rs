//! The bounded sweep every CI run does: at least 1,000 seeds across every
//! profile, no violation, and every required path exercised at least once.
//! `EVENTCORE_SIM_SEEDS=100000` runs a longer sweep;
//! `EVENTCORE_SIM_FIRST_SEED` moves the window.

use eventcore_sim::coverage::REQUIRED;
use eventcore_sim::sweep::{sweep, SweepConfig};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[test]
#[allow(clippy::disallowed_methods)] // wall clock only to report throughput
fn a_bounded_sweep_finds_no_violation_and_covers_every_fault_path() {
    let seeds = env_u64("EVENTCORE_SIM_SEEDS").unwrap_or(1_000);
    let first = env_u64("EVENTCORE_SIM_FIRST_SEED").unwrap_or(0);
    let config = SweepConfig::new(first..first + seeds);
    let started = std::time::Instant::now();
    let report = sweep(&config);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "sim sweep: {} seeds in {secs:.1}s ({:.0} seeds/s), {} steps\ncoverage:\n{}",
        report.runs,
        report.runs as f64 / secs.max(1e-9),
        report.steps,
        report.coverage
    );
    let failures: Vec<String> = report.failures.iter().map(ToString::to_string).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let missing = report.coverage.missing(REQUIRED);
    assert!(
        missing.is_empty(),
        "these paths never ran in {} seeds (a fault injector or recovery path went dead): {missing:?}",
        report.runs
    );
}
