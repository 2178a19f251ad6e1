//! A user-defined domain driven only through the public simulation API
//! (`Domain`, `DomainCommand`, `DomainModel`, `harness::Sweep`): a small
//! inventory whose stock must never go negative. The correct domain passes
//! a sweep over every profile; a planted bug (takes that skip the
//! optimistic-concurrency check, `ExpectedVersion::Any`) is found within a
//! bounded number of seeds, and its replay reproduces the same trace.

use eventcore::{Command, Decision, Event, ExpectedVersion, RecordedEvent, StreamId};
use eventcore_sim::check::{DomainModel, Invariant};
use eventcore_sim::harness::Sweep;
use eventcore_sim::rng::SimRng;
use eventcore_sim::{Domain, DomainCommand, Profile};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const PREFIX: &str = "item-";

fn item(n: u64) -> StreamId {
    StreamId::new(format!("{PREFIX}{n}")).expect("valid stream id")
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Stock {
    Added { qty: u64 },
    Taken { qty: u64 },
}

impl Event for Stock {}

#[derive(Debug, thiserror::Error)]
#[error("only {have} in stock, {wanted} wanted")]
struct OutOfStock {
    have: u64,
    wanted: u64,
}

fn fold(state: &mut u64, event: &Stock) {
    match event {
        Stock::Added { qty } => *state += qty,
        Stock::Taken { qty } => *state = state.saturating_sub(*qty),
    }
}

#[derive(Clone, Debug)]
struct Restock {
    item: StreamId,
    qty: u64,
}

impl Command for Restock {
    type Event = Stock;
    type State = u64;
    type Error = OutOfStock;

    fn streams(&self) -> Vec<StreamId> {
        vec![self.item.clone()]
    }

    fn apply(&self, state: &mut u64, _: &StreamId, event: &Stock) {
        fold(state, event);
    }

    fn decide(&self, _: &u64, out: &mut Decision<Stock>) -> Result<(), OutOfStock> {
        out.emit(&self.item, Stock::Added { qty: self.qty });
        Ok(())
    }
}

#[derive(Clone, Debug)]
struct Take {
    item: StreamId,
    qty: u64,
    /// The planted bug: skip the expected-version check on the item.
    buggy: bool,
}

impl Command for Take {
    type Event = Stock;
    type State = u64;
    type Error = OutOfStock;

    fn streams(&self) -> Vec<StreamId> {
        vec![self.item.clone()]
    }

    fn apply(&self, state: &mut u64, _: &StreamId, event: &Stock) {
        fold(state, event);
    }

    fn decide(&self, stock: &u64, out: &mut Decision<Stock>) -> Result<(), OutOfStock> {
        if *stock < self.qty {
            return Err(OutOfStock {
                have: *stock,
                wanted: self.qty,
            });
        }
        out.emit(&self.item, Stock::Taken { qty: self.qty });
        if self.buggy {
            out.expect(&self.item, ExpectedVersion::Any);
        }
        Ok(())
    }
}

/// Stock never goes below zero; what was added minus what was taken is
/// what is left.
#[derive(Default)]
struct StockModel {
    stock: BTreeMap<StreamId, i128>,
}

impl DomainModel for StockModel {
    fn name(&self) -> &'static str {
        "inventory"
    }

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), String> {
        if !event.stream_id.as_str().starts_with(PREFIX) {
            return Ok(());
        }
        let decoded = eventcore::decode_recorded::<Stock>(event).map_err(|e| e.to_string())?;
        let stock = self.stock.entry(event.stream_id.clone()).or_default();
        match decoded {
            Stock::Added { qty } => *stock += i128::from(qty),
            Stock::Taken { qty } => *stock -= i128::from(qty),
        }
        if *stock < 0 {
            return Err(format!(
                "`{}` went negative ({stock}) at version {}",
                event.stream_id, event.version
            ));
        }
        Ok(())
    }

    fn finish(&self) -> Vec<String> {
        Vec::new()
    }
}

struct Inventory {
    items: u64,
    buggy: bool,
}

impl Inventory {
    fn new(buggy: bool) -> Self {
        Inventory { items: 0, buggy }
    }
}

impl Domain for Inventory {
    fn name(&self) -> String {
        if self.buggy { "inventory (buggy)" } else { "inventory" }.to_string()
    }

    fn setup(&mut self, rng: &mut SimRng) -> Vec<DomainCommand> {
        self.items = rng.between(1, 3);
        (0..self.items)
            .map(|n| {
                let qty = rng.between(0, 10);
                DomainCommand::new(format!("restock {n} +{qty}"), Restock { item: item(n), qty })
            })
            .collect()
    }

    fn next_command(&mut self, rng: &mut SimRng) -> DomainCommand {
        let n = rng.below(self.items);
        // Weighted: mostly takes, some restocks.
        match rng.weighted(&[8, 2]) {
            Some(0) => {
                let qty = rng.between(1, 4);
                DomainCommand::new(
                    format!("take {n} -{qty}"),
                    Take {
                        item: item(n),
                        qty,
                        buggy: self.buggy,
                    },
                )
            }
            _ => {
                let qty = rng.between(1, 6);
                DomainCommand::new(format!("restock {n} +{qty}"), Restock { item: item(n), qty })
            }
        }
    }

    fn models(&self) -> Vec<Box<dyn DomainModel>> {
        vec![Box::<StockModel>::default()]
    }
}

#[test]
#[allow(clippy::disallowed_methods)] // wall clock only to report throughput
fn a_correct_user_domain_passes_a_sweep_over_every_profile() {
    let started = std::time::Instant::now();
    let report = Sweep::new(|| Inventory::new(false))
        .seeds(0..200)
        .profiles(&Profile::ALL)
        .run();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "user domain sweep: {} seeds in {secs:.2}s ({:.0} seeds/s), {} steps",
        report.runs,
        report.runs as f64 / secs.max(1e-9),
        report.steps
    );
    report.assert_passed();
}

#[test]
#[allow(clippy::disallowed_methods)] // wall clock only to report throughput
fn a_planted_domain_bug_is_found_and_its_replay_reproduces_the_trace() {
    let sweep = Sweep::new(|| Inventory::new(true))
        .seeds(0..300)
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
        failure.violations.iter().any(|v| v.invariant == Invariant::Domain),
        "{failure}"
    );
    assert!(failure.deterministic(), "{failure}");
    let replay = sweep.replay_failure(failure);
    assert_eq!(replay.trace_hash, failure.trace_hash, "the replay took another path");
    assert!(!replay.passed());
    assert!(!replay.trace.is_empty(), "a replay keeps its trace");
    assert!(failure
        .to_string()
        .contains(&format!("EVENTCORE_SIM_SEED={}", failure.seed)));
    if std::env::var_os(eventcore_sim::harness::SEED_VAR).is_some() {
        // Replaying one seed: no shrinking.
        return;
    }
    let shrunk = failure.shrunk.as_ref().expect("the planted bug shrinks");
    let mut smaller = sweep.config(failure.seed, shrunk.profile);
    smaller.max_clients = shrunk.max_clients;
    smaller.max_commands_per_client = shrunk.max_commands_per_client;
    assert!(!sweep.run_one(&smaller).passed(), "the shrunk run still fails");
    // The shrunk run replays through its printed environment too.
    let mut child = std::process::Command::new(std::env::current_exe().expect("the test binary"));
    child.args([
        "--exact",
        "a_planted_domain_bug_is_found_and_its_replay_reproduces_the_trace",
        "--nocapture",
    ]);
    for pair in shrunk.replay_env(failure.seed).split(' ') {
        let (name, value) = pair.split_once('=').expect("NAME=value");
        child.env(name, value);
    }
    let output = child.output().expect("the test binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("max clients"), "the caps reach the replay: {stderr}");
}

/// The replay line a failure prints works as printed: this test binary, run
/// again with the failure's environment, runs just that seed inside the
/// planted-bug test and prints its trace with the same hash.
#[test]
fn the_printed_replay_environment_replays_the_seed_inside_the_test() {
    if std::env::var_os(eventcore_sim::harness::SEED_VAR).is_some() {
        // A replay is running (this child, or a user replaying a seed).
        return;
    }
    let report = Sweep::new(|| Inventory::new(true))
        .seeds(0..300)
        .profiles(&Profile::ALL)
        .shrink(false)
        .run();
    let failure = report.failures.first().expect("the planted bug is found");
    let mut child = std::process::Command::new(std::env::current_exe().expect("the test binary"));
    child.args([
        "--exact",
        "a_planted_domain_bug_is_found_and_its_replay_reproduces_the_trace",
        "--nocapture",
    ]);
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
    assert!(
        stderr.contains("VIOLATION"),
        "the replay prints the trace up to the violation"
    );
}

/// The shrinker's last knob: a run with fault kinds switched off is still a
/// deterministic run of the same seed, and says so in its parameters.
#[test]
fn a_run_with_every_fault_kind_switched_off_is_deterministic() {
    let mut config = eventcore_sim::SimConfig::new(11);
    config.profile = Profile::Chaos;
    config.faults_off = eventcore_sim::faults::FAULT_KINDS
        .iter()
        .map(|kind| (*kind).to_string())
        .collect();
    let a = eventcore_sim::run_with(&config, Inventory::new(false));
    let b = eventcore_sim::run_with(&config, Inventory::new(false));
    assert!(a.passed(), "{:?}", a.violations);
    assert_eq!(a.trace_hash, b.trace_hash);
    assert!(a.parameters.contains("faults off: slow,"), "{}", a.parameters);
    assert!(a.parameters.contains("read_lost=0‰ append_fail=0‰"), "{}", a.parameters);
}
