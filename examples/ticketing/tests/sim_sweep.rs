//! The box office under the simulator, through its public API
//! ([`Sweep`] over [`BoxOffice`]): the planted bug (a `Reserve` that does
//! not pin the concert stream it checked the capacity on) is found within a
//! bounded number of seeds, its failure replays to the same trace hash and
//! shrinks; the fixed domain passes its seeds.
//!
//! `EVENTCORE_SIM_SEEDS=10000` widens the fixed domain's sweep (default
//! 300); `EVENTCORE_SIM_SEED=<n>` (with the profile and caps a failure
//! prints) replays one seed inside these tests, its trace printed.

use eventcore_example_ticketing::BoxOffice;
use eventcore_sim::check::Invariant;
use eventcore_sim::harness::{Sweep, SEED_VAR};
use eventcore_sim::Profile;

/// Seeds the buggy domain gets to be caught in.
const FIND_WITHIN: u64 = 300;

fn seeds() -> u64 {
    std::env::var("EVENTCORE_SIM_SEEDS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(300)
}

#[test]
#[allow(clippy::disallowed_methods)] // wall clock only to report throughput
fn the_fixed_box_office_passes_its_seeds() {
    let n = seeds();
    let started = std::time::Instant::now();
    let report = Sweep::new(|| BoxOffice::new(false))
        .seeds(0..n)
        .profiles(&Profile::ALL)
        .run();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "box office sweep: {} seeds in {secs:.2}s ({:.0} seeds/s), {} steps",
        report.runs,
        report.runs as f64 / secs.max(1e-9),
        report.steps
    );
    report.assert_passed();
}

#[test]
#[allow(clippy::disallowed_methods)] // wall clock only to report throughput
fn the_planted_bug_is_found_replayed_and_shrunk() {
    let sweep = Sweep::new(|| BoxOffice::new(true))
        .seeds(0..FIND_WITHIN)
        .profiles(&Profile::ALL);
    let started = std::time::Instant::now();
    let report = sweep.run();
    let secs = started.elapsed().as_secs_f64();
    let failure = report
        .failures
        .first()
        .unwrap_or_else(|| panic!("the planted bug went unnoticed in {} seeds", report.runs));
    eprintln!(
        "planted bug found after {} seeds ({secs:.2}s including re-run and shrinking):\n{failure}",
        report.runs
    );
    assert!(
        failure
            .violations
            .iter()
            .any(|v| v.invariant == Invariant::Domain && v.detail.contains("oversold")),
        "{failure}"
    );
    assert!(failure.deterministic(), "{failure}");
    let replay = sweep.replay_failure(failure);
    assert_eq!(replay.trace_hash, failure.trace_hash, "the replay took another path");
    assert!(!replay.passed());
    assert!(failure.to_string().contains(&format!("{SEED_VAR}={}", failure.seed)));
    if std::env::var_os(SEED_VAR).is_some() {
        // Replaying one seed: no shrinking.
        return;
    }
    let shrunk = failure.shrunk.as_ref().expect("the planted bug shrinks");
    let mut smaller = sweep.config(failure.seed, shrunk.profile);
    smaller.max_clients = shrunk.max_clients;
    smaller.max_commands_per_client = shrunk.max_commands_per_client;
    smaller.faults_off = shrunk.faults_off.clone();
    let small = sweep.run_one(&smaller);
    assert!(!small.passed(), "the shrunk run still fails");
    eprintln!("shrunk run: {}", small.parameters);
    // The same seeds with the bug fixed pass.
    Sweep::new(|| BoxOffice::new(false))
        .seeds(0..failure.seed + 1)
        .profiles(&Profile::ALL)
        .run()
        .assert_passed();
}

/// The printed replay line works as printed: this test binary, run again
/// with the failure's environment, replays that seed alone inside the
/// planted-bug test and prints its trace with the same hash.
#[test]
fn the_printed_replay_line_reproduces_the_trace() {
    if std::env::var_os(SEED_VAR).is_some() {
        return;
    }
    let report = Sweep::new(|| BoxOffice::new(true))
        .seeds(0..FIND_WITHIN)
        .profiles(&Profile::ALL)
        .shrink(false)
        .run();
    let failure = report.failures.first().expect("the planted bug is found");
    let mut child = std::process::Command::new(std::env::current_exe().expect("the test binary"));
    child.args(["--exact", "the_planted_bug_is_found_replayed_and_shrunk", "--nocapture"]);
    for pair in failure.replay_env().split(' ') {
        let (name, value) = pair.split_once('=').expect("NAME=value");
        child.env(name, value);
    }
    let output = child.output().expect("the test binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("trace hash {:016x}", failure.trace_hash)),
        "{stderr}"
    );
}
