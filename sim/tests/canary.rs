//! The canary: a store that skips the expected-version check on the last
//! stream of an append. The sweep must catch it, and the failure must carry
//! the command that replays it — and replaying must fail the same way.

use eventcore_sim::sweep::{sweep, Failure, SweepConfig};
use eventcore_sim::{run, Canary};
use std::ops::Range;

/// The first failure a sweep of `seeds` with `canary` planted finds, and
/// its printed form (shown in the test's output).
fn first_failure(canary: Canary, seeds: Range<u64>) -> (Failure, String) {
    let mut config = SweepConfig::new(seeds.clone());
    config.canary = Some(canary);
    config.stop_at_first = true;
    config.failure_dir = None;
    let failure = sweep(&config)
        .failures
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("the {canary:?} canary must be caught within seeds {seeds:?}"));
    let text = failure.to_string();
    eprintln!("{text}");
    (failure, text)
}

#[test]
fn the_sweep_catches_a_store_that_skips_a_conflict_check() {
    let mut config = SweepConfig::new(0..50);
    config.canary = Some(Canary::SkipLastConflictCheck);
    config.stop_at_first = true;
    let report = sweep(&config);
    let failure = report
        .failures
        .first()
        .expect("the canary must be caught within 50 seeds");
    let text = failure.to_string();
    eprintln!("{text}");
    assert!(
        text.contains(&format!(
            "cargo run -p eventcore-sim --release -- --seed {} --profile {} --canary skip-last-conflict-check",
            failure.config.seed, failure.config.profile
        )),
        "{text}"
    );
    assert!(text.contains("violated:"), "{text}");
    assert!(failure.file.as_ref().is_some_and(|f| f.exists()), "trace written");
    // The replay command reproduces it exactly.
    let again = run(&failure.config);
    assert_eq!(
        again.violations.iter().map(ToString::to_string).collect::<Vec<_>>(),
        failure.violations
    );
}

/// The group-commit canary: a batch that checks each append against the
/// heads at the start of the batch (not as the appends before it in the
/// batch left them) lets two appends decided on the same version both
/// commit. Only runs with group commit can show it.
#[test]
fn the_sweep_catches_a_batch_that_checks_against_stale_heads() {
    let (failure, text) = first_failure(Canary::BatchChecksStaleHeads, 0..300);
    assert!(text.contains("--canary batch-checks-stale-heads"), "{text}");
    assert!(text.contains("violated:"), "{text}");
    let again = run(&failure.config);
    assert_eq!(
        again.violations.iter().map(ToString::to_string).collect::<Vec<_>>(),
        failure.violations
    );
}

#[test]
fn without_the_canary_the_same_seeds_pass() {
    let report = sweep(&SweepConfig {
        failure_dir: None,
        ..SweepConfig::new(0..50)
    });
    assert!(report.failures.is_empty(), "{:?}", report.failures);
}

/// The tombstone canary: a store that writes an ending append's events but
/// drops its tombstone. The checker's own record of the tombstone (from the
/// committed append) disagrees with the store at that very append.
#[test]
fn the_sweep_catches_a_store_that_drops_tombstones() {
    let (_, text) = first_failure(Canary::DropTombstones, 0..100);
    assert!(text.contains("--canary drop-tombstones"), "{text}");
    assert!(text.contains("violated:   tombstones"), "{text}");
}

/// The key-store canary: a forget that keeps serving the subject's key.
/// Forgotten names still read, and new names of the subject still commit.
#[test]
fn the_sweep_catches_a_key_store_that_keeps_forgotten_keys() {
    let (_, text) = first_failure(Canary::KeepForgottenKeys, 0..100);
    assert!(text.contains("--canary keep-forgotten-keys"), "{text}");
    assert!(text.contains("violated:   forgotten personal data"), "{text}");
}
