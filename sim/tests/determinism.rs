//! Same seed, same run: byte for byte, whatever else is going on.

use eventcore_sim::{run, Profile, SimConfig};

fn config(seed: u64, profile: Profile) -> SimConfig {
    SimConfig {
        profile,
        ..SimConfig::new(seed)
    }
}

#[test]
fn rerunning_a_seed_gives_the_same_trace_hash() {
    for seed in 0..40 {
        let profile = Profile::ALL[(seed % 4) as usize];
        let first = run(&config(seed, profile));
        let second = run(&config(seed, profile));
        assert_eq!(
            first.trace_hash, second.trace_hash,
            "seed {seed} ({profile}) is not deterministic"
        );
        assert_eq!(first.steps, second.steps);
        assert_eq!(first.history, second.history);
    }
}

#[test]
fn keeping_the_trace_does_not_change_the_run() {
    let quiet = run(&config(11, Profile::Chaos));
    let traced = run(&SimConfig {
        keep_trace: true,
        ..config(11, Profile::Chaos)
    });
    assert_eq!(quiet.trace_hash, traced.trace_hash);
    assert!(quiet.trace.is_empty(), "sweeps keep no lines");
    assert!(traced.trace.len() as u64 > traced.steps / 2, "a line per step, roughly");
}

#[test]
fn different_seeds_give_different_runs() {
    let a = run(&config(1, Profile::Default));
    let b = run(&config(2, Profile::Default));
    assert_ne!(a.trace_hash, b.trace_hash);
}

#[test]
fn the_fault_menu_does_not_change_the_workload() {
    // Separate random streams: the workload a seed draws is the same under
    // every profile, so a failure can be narrowed down by changing faults.
    let workload = |profile| {
        let report = run(&config(5, profile));
        let params = report.parameters;
        let start = params.find("workload:").unwrap_or(0);
        let end = params.find("| faults:").unwrap_or(params.len());
        params[start..end].to_owned()
    };
    let calm = workload(Profile::Calm);
    for profile in [Profile::Default, Profile::Chaos, Profile::Extreme] {
        assert_eq!(calm, workload(profile));
    }
}
