//! Judging a run: the read-back of the whole store, the subscribers' checks
//! against the final log, the simulator's checker and the bank audit, and
//! the fault kinds a run must have injected.

use super::report::SubscriberCheck;
use super::ChaosError;
use crate::faults::{FaultKind, FaultReport};
use crate::record::Recorder;
use crate::workload::ChaosWorkload;
use eventcore::{EventFilter, GlobalPosition, ReadAllRequest, RecordedEvent};
use eventcore_postgres::PostgresStore;
use eventcore_sim::check::{check_deliveries, Checker, Invariant, Violation};
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

/// Checks a subscriber's deliveries against the final log with the
/// simulator's subscriber rules ([`check_deliveries`]): after dropping
/// re-deliveries (allowed only after a restart, and only of events
/// delivered before), the deliveries are the log, in order, each once.
pub(super) fn check_subscriber(
    name: &str,
    events: &[RecordedEvent],
    delivered: &[RecordedEvent],
    restarts: u64,
) -> SubscriberCheck {
    let check = check_deliveries(events, name, &EventFilter::all(), delivered, restarts);
    SubscriberCheck {
        delivered: delivered.len(),
        failed_reads: restarts,
        redelivered: check.redelivered,
        problems: check.violations.into_iter().map(|v| v.detail).collect(),
        ..SubscriberCheck::default()
    }
}

/// Judges the store's final log: the workload's own audit, the history
/// (the recorder's outcomes with the log) and the simulator checker's
/// violations of it, with the workload's domain models.
pub(super) fn judge(
    recorder: &Recorder,
    workload: &dyn ChaosWorkload,
    events: Vec<RecordedEvent>,
) -> (Vec<String>, History, Vec<Violation>) {
    let audit = workload.audit(&events);
    let history = recorder.history(events);
    let checker = Checker::new(workload.models());
    let mut violations = checker.finish(&history, true);
    violations.extend(recorder.deadlocks().into_iter().map(|detail| Violation {
        invariant: Invariant::LockOrder,
        detail: format!("an append met a database deadlock: {detail}"),
    }));
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
