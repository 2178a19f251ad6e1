//! Replays every seed in `sim/regression-seeds.txt`.

use eventcore_sim::sweep::{failure, parse_seed_list};
use eventcore_sim::{run, SimConfig};

#[test]
fn every_regression_seed_passes() {
    let seeds = parse_seed_list(include_str!("../regression-seeds.txt")).expect("well-formed seed list");
    assert!(!seeds.is_empty());
    let mut failures = Vec::new();
    for (seed, profile) in seeds {
        let config = SimConfig {
            profile,
            ..SimConfig::new(seed)
        };
        let report = run(&config);
        if !report.passed() {
            failures.push(failure(&config, &report, None).to_string());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
