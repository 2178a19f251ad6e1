//! A user domain's projection under the simulator: the read model is built
//! by an exactly-once subscription under the subscribers' faults, compared
//! at the end with a replay of the events it subscribed to, and held to its
//! own rules. The three tests: a correct projection passes a sweep over
//! every profile; a broken read-model rule is reported with its seed; a
//! read model that depends on more than its events is caught.

use eventcore::{Command, Decision, Event, EventFilter, RecordedEvent, StreamId};
use eventcore_sim::check::{DomainModel, Invariant};
use eventcore_sim::harness::Sweep;
use eventcore_sim::rng::SimRng;
use eventcore_sim::{run_with, Domain, DomainCommand, DomainProjection, Profile, SimConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Added {
    amount: u64,
}
impl Event for Added {}

#[derive(Clone, Debug)]
struct Add {
    tally: StreamId,
    amount: u64,
}

impl Command for Add {
    type Event = Added;
    type State = ();
    type Error = std::convert::Infallible;
    fn streams(&self) -> Vec<StreamId> {
        vec![self.tally.clone()]
    }
    fn apply(&self, _: &mut (), _: &StreamId, _: &Added) {}
    fn decide(&self, _: &(), out: &mut Decision<Added>) -> Result<(), Self::Error> {
        out.emit(&self.tally, Added { amount: self.amount });
        Ok(())
    }
}

/// How the test's projection misbehaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flaw {
    None,
    /// Its rule (no tally above 40) is broken by the workload.
    RuleBroken,
    /// Its read model counts calls across every instance (a global), so it
    /// is not a function of its events.
    DependsOnAGlobal,
}

static CALLS: AtomicU64 = AtomicU64::new(0);

/// Per stream, the sum of what was added.
struct Totals {
    totals: BTreeMap<String, u64>,
    flaw: Flaw,
}

impl DomainProjection for Totals {
    fn name(&self) -> String {
        "totals".into()
    }
    fn filter(&self) -> EventFilter {
        EventFilter::all().with_stream_prefix("tally-")
    }
    fn apply(&mut self, event: &RecordedEvent) {
        let amount = eventcore::decode_recorded::<Added>(event).map_or(0, |a| a.amount);
        let extra = if self.flaw == Flaw::DependsOnAGlobal {
            CALLS.fetch_add(1, Ordering::Relaxed)
        } else {
            0
        };
        *self.totals.entry(event.stream_id.to_string()).or_default() += amount + extra;
    }
    fn state(&self) -> String {
        format!("{:?}", self.totals)
    }
    fn check(&self) -> Vec<String> {
        if self.flaw != Flaw::RuleBroken {
            return Vec::new();
        }
        self.totals
            .iter()
            .filter(|(_, t)| **t > 40)
            .map(|(s, t)| format!("`{s}` shows {t}, above 40"))
            .collect()
    }
}

struct Tallies(Flaw);

impl Domain for Tallies {
    fn name(&self) -> String {
        "tallies".into()
    }
    fn setup(&mut self, _: &mut SimRng) -> Vec<DomainCommand> {
        Vec::new()
    }
    fn next_command(&mut self, rng: &mut SimRng) -> DomainCommand {
        let (n, amount) = (rng.below(3), rng.between(1, 9));
        let tally = StreamId::new(format!("tally-{n}")).expect("valid stream id");
        DomainCommand::new(format!("add {amount} to {n}"), Add { tally, amount })
    }
    fn models(&self) -> Vec<Box<dyn DomainModel>> {
        Vec::new()
    }
    fn projections(&self) -> Vec<Box<dyn DomainProjection>> {
        vec![Box::new(Totals {
            totals: BTreeMap::new(),
            flaw: self.0,
        })]
    }
}

#[test]
fn a_correct_projection_passes_a_sweep_over_every_profile() {
    let report = Sweep::new(|| Tallies(Flaw::None))
        .seeds(0..150)
        .profiles(&Profile::ALL)
        .run();
    report.assert_passed();
    let one = run_with(&SimConfig::new(3), Tallies(Flaw::None));
    assert!(
        one.parameters.contains("projection totals, exactly-once"),
        "{}",
        one.parameters
    );
    assert!(one.coverage.get("subscriber_batch_handled") > 0);
}

#[test]
fn a_broken_read_model_rule_is_reported_with_its_seed() {
    let report = Sweep::new(|| Tallies(Flaw::RuleBroken))
        .seeds(0..50)
        .profiles(&[Profile::Calm])
        .run();
    let failure = report.failures.first().expect("some tally passes 40 within 50 seeds");
    assert!(
        failure
            .violations
            .iter()
            .any(|v| v.invariant == Invariant::Projection && v.detail.contains("above 40")),
        "{:?}",
        failure.violations
    );
}

#[test]
fn a_read_model_that_is_not_a_function_of_its_events_is_caught() {
    let report = run_with(&SimConfig::new(1), Tallies(Flaw::DependsOnAGlobal));
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.invariant == Invariant::Projection && v.detail.contains("a replay of its events gives")),
        "{:?}",
        report.violations
    );
}
