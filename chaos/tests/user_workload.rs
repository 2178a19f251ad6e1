//! The chaos harness as a library: a domain of its own (bounded counters,
//! not the bank), driven only through the public API
//! ([`ChaosWorkload`], [`ChaosCommand`], [`run_workload`]) against real
//! PostgreSQL through the fault proxy, from an ordinary `#[tokio::test]`.
//!
//! Budget: `EVENTCORE_CHAOS_SECS` seconds of faults (default 10); the seed
//! from `EVENTCORE_CHAOS_SEED` or the clock, printed with the report.
//! Needs PostgreSQL: skipped with a notice when it cannot be reached, a
//! failure under `CI=true`.

use eventcore::{Command, Decision, Event, RecordedEvent, StreamId};
use eventcore_chaos::faults::{FaultKind, FaultRng};
use eventcore_chaos::run::{run_workload, ChaosConfig};
use eventcore_chaos::workload::{ChaosCommand, ChaosWorkload};
use eventcore_sim::check::DomainModel;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const PREFIX: &str = "counter-";

fn counter(n: u64) -> StreamId {
    StreamId::new(format!("{PREFIX}{n}")).unwrap_or_else(|_| unreachable!("counter-<n> is a valid stream id"))
}

/// A counter is created with a limit, then counts up by one per event.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum CounterEvent {
    Created { limit: u64 },
    Incremented { to: u64 },
}

impl Event for CounterEvent {}

#[derive(Debug, thiserror::Error)]
enum CounterError {
    #[error("`{0}` exists already")]
    Exists(StreamId),
    #[error("`{0}` does not exist")]
    Missing(StreamId),
    #[error("`{0}` would pass its limit")]
    Full(StreamId),
}

#[derive(Default)]
struct Counters(BTreeMap<StreamId, (u64, u64)>);

impl Counters {
    fn apply(&mut self, stream: &StreamId, event: &CounterEvent) {
        match event {
            CounterEvent::Created { limit } => {
                self.0.insert(stream.clone(), (0, *limit));
            }
            CounterEvent::Incremented { to } => {
                if let Some((value, _)) = self.0.get_mut(stream) {
                    *value = *to;
                }
            }
        }
    }
}

#[derive(Clone, Debug)]
struct Create {
    counter: StreamId,
    limit: u64,
}

impl Command for Create {
    type Event = CounterEvent;
    type State = Counters;
    type Error = CounterError;

    fn streams(&self) -> Vec<StreamId> {
        vec![self.counter.clone()]
    }

    fn apply(&self, state: &mut Counters, stream: &StreamId, event: &CounterEvent) {
        state.apply(stream, event);
    }

    fn decide(&self, state: &Counters, out: &mut Decision<CounterEvent>) -> Result<(), CounterError> {
        if state.0.contains_key(&self.counter) {
            return Err(CounterError::Exists(self.counter.clone()));
        }
        out.emit(&self.counter, CounterEvent::Created { limit: self.limit });
        Ok(())
    }
}

/// Counts every one of `counters` up by `by`, one event per step, in one
/// atomic append; refused when a counter is missing or would pass its
/// limit.
#[derive(Clone, Debug)]
struct Increment {
    counters: Vec<StreamId>,
    by: u64,
}

impl Command for Increment {
    type Event = CounterEvent;
    type State = Counters;
    type Error = CounterError;

    fn streams(&self) -> Vec<StreamId> {
        self.counters.clone()
    }

    fn apply(&self, state: &mut Counters, stream: &StreamId, event: &CounterEvent) {
        state.apply(stream, event);
    }

    fn decide(&self, state: &Counters, out: &mut Decision<CounterEvent>) -> Result<(), CounterError> {
        for stream in &self.counters {
            let Some(&(value, limit)) = state.0.get(stream) else {
                return Err(CounterError::Missing(stream.clone()));
            };
            if value + self.by > limit {
                return Err(CounterError::Full(stream.clone()));
            }
            for step in 1..=self.by {
                out.emit(stream, CounterEvent::Incremented { to: value + step });
            }
        }
        Ok(())
    }
}

/// The counters' invariants over the committed history: created once, then
/// every increment exactly one more than the last (no lost or doubled
/// update), never past the limit.
#[derive(Default)]
struct CounterModel {
    counters: BTreeMap<StreamId, (u64, u64)>,
    /// A rule the domain does not have (no counter past this), to show that
    /// a broken rule of the user's model fails the report.
    strict: Option<u64>,
}

impl DomainModel for CounterModel {
    fn name(&self) -> &'static str {
        "counters"
    }

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), String> {
        if !event.stream_id.as_str().starts_with(PREFIX) {
            return Ok(());
        }
        let payload: serde_json::Value =
            serde_json::from_str(event.payload.as_json()).map_err(|e| format!("undecodable payload: {e}"))?;
        let field = |name: &str| {
            payload
                .get(name)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| format!("no `{name}` in {payload}"))
        };
        let stream = &event.stream_id;
        match event.event_type.as_str() {
            "Created" => {
                let limit = field("limit")?;
                if self.counters.insert(stream.clone(), (0, limit)).is_some() {
                    return Err(format!("`{stream}` created twice"));
                }
            }
            "Incremented" => {
                let to = field("to")?;
                let Some((value, limit)) = self.counters.get_mut(stream) else {
                    return Err(format!("`{stream}` incremented before it was created"));
                };
                if to != *value + 1 {
                    return Err(format!("`{stream}` went from {value} to {to}"));
                }
                if to > *limit {
                    return Err(format!("`{stream}` passed its limit {limit}"));
                }
                *value = to;
                if self.strict.is_some_and(|max| to > max) {
                    return Err(format!("`{stream}` passed the strict bound"));
                }
            }
            other => return Err(format!("unknown event type `{other}`")),
        }
        Ok(())
    }

    fn finish(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Six counters; counter 1 and 2 are hot; counter 6 has a small limit, so
/// that the domain refuses now and then.
struct CounterWorkload {
    strict: Option<u64>,
}

const COUNTERS: u64 = 6;

impl ChaosWorkload for CounterWorkload {
    fn setup(&self) -> Vec<ChaosCommand> {
        (1..=COUNTERS)
            .map(|n| {
                let limit = if n == COUNTERS { 40 } else { 1_000_000 };
                ChaosCommand::new(
                    format!("create counter {n}"),
                    Create {
                        counter: counter(n),
                        limit,
                    },
                )
            })
            .collect()
    }

    fn next(&self, _client: u64, rng: &mut FaultRng) -> ChaosCommand {
        let pick = |rng: &mut FaultRng| {
            if rng.percent(50) {
                rng.between(1, 2)
            } else {
                rng.between(1, COUNTERS)
            }
        };
        let first = pick(rng);
        let mut counters = vec![counter(first)];
        if rng.percent(30) {
            let second = first % COUNTERS + 1;
            counters.push(counter(second));
        }
        // Now and then a counter that was never created: refused.
        if rng.percent(3) {
            counters.push(counter(COUNTERS + 1));
        }
        let by = rng.between(1, 3);
        let names: Vec<&str> = counters.iter().map(StreamId::as_str).collect();
        ChaosCommand::new(
            format!("increment {} by {by}", names.join(", ")),
            Increment { counters, by },
        )
    }

    fn models(&self) -> Vec<Box<dyn DomainModel>> {
        vec![Box::new(CounterModel {
            strict: self.strict,
            ..CounterModel::default()
        })]
    }

    fn audit(&self, events: &[RecordedEvent]) -> Vec<String> {
        let created = events.iter().filter(|e| e.event_type.as_str() == "Created").count() as u64;
        if created == COUNTERS {
            Vec::new()
        } else {
            vec![format!("{created} counters created, expected {COUNTERS}")]
        }
    }

    fn hot_streams(&self) -> Vec<StreamId> {
        vec![counter(1), counter(2)]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_workload_keeps_its_invariants_under_chaos() {
    let mut config = ChaosConfig::from_env(10);
    config.clients = 8;
    println!(
        "chaos seed {}, {} s of faults",
        config.seed,
        config.fault_phase.as_secs()
    );
    let options = eventcore_tests::postgres::options("chaos_user").max_connections(8);
    let Some(direct) = eventcore_tests::postgres::fresh_store_with(options).await else {
        return;
    };
    let seed = config.seed;
    let report = match run_workload(config, direct.clone(), CounterWorkload { strict: None }).await {
        Ok(report) => report,
        Err(error) => panic!("chaos run (seed {seed}) could not be carried out: {error}"),
    };
    println!("{report}");
    if report.passed() {
        let _ = direct.drop_schema().await;
    }
    assert!(report.passed(), "{report}");
    // The user's workload saw the same faults as the bank's.
    for kind in [FaultKind::LostAck, FaultKind::LockHold, FaultKind::ClientCrash] {
        assert!(
            report.faults.injected(kind) > 0,
            "{} never injected\n{report}",
            kind.name()
        );
    }
    assert!(report.commands > COUNTERS as usize, "{report}");
}

/// The user's model is what judges the domain: a rule the history breaks
/// (here one the domain never promised) fails the report, with the model's
/// message. No faults, a short run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_rule_of_the_users_model_fails_the_report() {
    let mut config = ChaosConfig::new(7, std::time::Duration::from_secs(1));
    config.heal_phase = std::time::Duration::from_secs(1);
    config.clients = 2;
    config.mix.per_minute.clear();
    config.mix.crash_percent = 0;
    let options = eventcore_tests::postgres::options("chaos_user_strict").max_connections(4);
    let Some(direct) = eventcore_tests::postgres::fresh_store_with(options).await else {
        return;
    };
    let workload = CounterWorkload { strict: Some(3) };
    let report = match run_workload(config, direct.clone(), workload).await {
        Ok(report) => report,
        Err(error) => panic!("chaos run could not be carried out: {error}"),
    };
    let _ = direct.drop_schema().await;
    assert!(!report.passed(), "{report}");
    assert!(report.missing_faults.is_empty(), "{report}");
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.detail.contains("counters: ") && v.detail.contains("passed the strict bound")),
        "{report}"
    );
}
