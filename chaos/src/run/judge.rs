//! Judging a run: the read-back of the whole store, the subscribers' checks
//! against the final log, the simulator's checker and the bank audit, and
//! the fault kinds a run must have injected.

use super::report::SubscriberCheck;
use super::ChaosError;
use crate::faults::{FaultKind, FaultReport};
use crate::ledger::LedgerModel;
use crate::record::Recorder;
use eventcore::{EventFilter, GlobalPosition, ReadAllRequest, RecordedEvent};
use eventcore_examples::bank::Audit;
use eventcore_postgres::PostgresStore;
use eventcore_sim::check::{Checker, Violation};
use eventcore_sim::history::History;
use eventcore_tokio::EventStore;
use std::num::NonZeroU32;
use std::time::Duration;
use tokio::time::Instant;

pub(super) async fn read_back(direct: &PostgresStore) -> Result<Vec<RecordedEvent>, ChaosError> {
    let table = format!("\"{}\".events", direct.options().schema);
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(direct.pool())
        .await?;
    let total = usize::try_from(total).unwrap_or(0);
    let mut events: Vec<RecordedEvent> = Vec::with_capacity(total);
    let mut after = GlobalPosition::START;
    let deadline = Instant::now() + Duration::from_secs(60);
    while events.len() < total && Instant::now() < deadline {
        let request = ReadAllRequest {
            after,
            limit: NonZeroU32::new(2_000).unwrap_or(NonZeroU32::MIN),
            filter: EventFilter::all(),
        };
        let response = direct.read_all(&request).await?;
        after = response.complete_through;
        events.extend(response.events);
    }
    Ok(events)
}

/// Checks a subscriber's deliveries against the final log: after dropping
/// re-deliveries (an event at or below a position already delivered, which
/// must be one delivered before, and is allowed only after a restart), the
/// deliveries are the log, in order, each once.
pub(super) fn check_subscriber(
    events: &[RecordedEvent],
    delivered: &[RecordedEvent],
    restarts: u64,
) -> SubscriberCheck {
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut unique: Vec<&RecordedEvent> = Vec::with_capacity(delivered.len());
    let mut redelivered = 0;
    let mut last = GlobalPosition::START;
    for event in delivered {
        if event.position <= last {
            if !seen.contains(&event.event_id) {
                problems.push(format!(
                    "new event {} at position {} delivered after position {} (global order broken)",
                    event.event_id, event.position, last
                ));
            }
            redelivered += 1;
            continue;
        }
        last = event.position;
        seen.insert(event.event_id);
        unique.push(event);
    }
    if redelivered > 0 && restarts == 0 {
        problems.push(format!("{redelivered} events delivered twice without a restart"));
    }
    if unique.len() != events.len() {
        problems.push(format!(
            "delivered {} distinct events, the store holds {}",
            unique.len(),
            events.len()
        ));
    }
    if let Some((i, (d, e))) = unique
        .iter()
        .zip(events)
        .enumerate()
        .find(|(_, (d, e))| d.event_id != e.event_id)
    {
        problems.push(format!(
            "delivery #{i} is event {} at {}, the log has {} at {}",
            d.event_id, d.position, e.event_id, e.position
        ));
    }
    SubscriberCheck {
        delivered: delivered.len(),
        failed_reads: restarts,
        redelivered,
        problems,
        ..SubscriberCheck::default()
    }
}

/// Judges the store's final log: the examples' own bank `Audit`, the
/// history (the recorder's outcomes with the log) and the simulator
/// checker's violations of it.
pub(super) fn judge(recorder: &Recorder, events: Vec<RecordedEvent>) -> (Vec<String>, History, Vec<Violation>) {
    let audit = Audit::of(&events).violations;
    let history = recorder.history(events);
    let checker = Checker::new(vec![Box::new(LedgerModel::default())]);
    let violations = checker.finish(&history, true);
    (audit, history, violations)
}

/// The fault kinds scheduled (or required by what was scheduled) but never
/// injected: a lock hold must have made both `lock_timeout` and
/// `statement_timeout` fire, a pool squeeze a pool timeout.
pub(super) fn missing_faults(faults: &FaultReport) -> Vec<FaultKind> {
    let mut required = Vec::new();
    if faults.scheduled(FaultKind::LockHold) > 0 {
        required.extend([FaultKind::LockTimeout, FaultKind::StatementTimeout]);
    }
    if faults.scheduled(FaultKind::PoolSqueeze) > 0 {
        required.push(FaultKind::PoolTimeout);
    }
    faults.missing(&required)
}
