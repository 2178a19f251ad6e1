//! Subscriber checks, on a record of what one subscriber handled in each of
//! its runs (a run ends when the subscriber crashes and resumes from its
//! saved checkpoint) against the committed events.

use super::{Invariant, Violation};
use eventcore::{EventFilter, GlobalPosition, RecordedEvent};
use std::collections::BTreeSet;

/// One run of a subscriber: from a saved checkpoint to a crash or the end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscriberRun {
    /// The checkpoint it resumed after.
    pub start_after: GlobalPosition,
    /// Positions of the events it handled successfully, in handling order.
    pub handled: Vec<GlobalPosition>,
}

/// Everything one subscriber did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscriberRecord {
    /// For messages.
    pub name: String,
    /// What it subscribed to.
    pub filter: EventFilter,
    /// True when checkpoints commit with the handled batch: then no event
    /// may be handled twice, even across runs.
    pub exactly_once: bool,
    /// Its runs, in order.
    pub runs: Vec<SubscriberRun>,
    /// Why it stopped, if it stopped with an error.
    pub stopped: Option<String>,
}

/// Checks one subscriber. With `require_caught_up`, every matching event
/// must have been handled by the end.
///
/// ```
/// use eventcore_sim::check::{check_subscriber, SubscriberRecord};
/// assert!(check_subscriber(&[], &SubscriberRecord::default(), true).is_empty());
/// ```
pub fn check_subscriber(
    events: &[RecordedEvent],
    record: &SubscriberRecord,
    require_caught_up: bool,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut violate = |detail: String| {
        violations.push(Violation {
            invariant: Invariant::Subscription,
            detail: format!("subscriber {}: {detail}", record.name),
        })
    };
    let matching: Vec<GlobalPosition> = events
        .iter()
        .filter(|e| record.filter.matches(e))
        .map(|e| e.position)
        .collect();
    let matching_set: BTreeSet<GlobalPosition> = matching.iter().copied().collect();
    let mut handled_before: BTreeSet<GlobalPosition> = BTreeSet::new();
    for (n, run) in record.runs.iter().enumerate() {
        let run_no = n + 1;
        if let Some(w) = run.handled.windows(2).find(|w| w[0] >= w[1]) {
            violate(format!("run {run_no} handled position {} after {}", w[1], w[0]));
        }
        if let Some(p) = run.handled.iter().find(|p| **p <= run.start_after) {
            violate(format!(
                "run {run_no} resumed after {} but handled {p} again",
                run.start_after
            ));
        }
        if let Some(p) = run.handled.iter().find(|p| !matching_set.contains(p)) {
            violate(format!("run {run_no} handled position {p}, which is no matching event"));
        }
        if let Some(last) = run.handled.last() {
            let expected: Vec<GlobalPosition> = matching
                .iter()
                .copied()
                .filter(|p| *p > run.start_after && p <= last)
                .collect();
            if expected != run.handled {
                let missing: Vec<_> = expected.iter().filter(|p| !run.handled.contains(p)).take(5).collect();
                violate(format!(
                    "run {run_no} skipped events: handled {} of the {} matching events in ({}, {last}], missing {missing:?}",
                    run.handled.len(),
                    expected.len(),
                    run.start_after
                ));
            }
        }
        if n > 0 {
            if let Some(p) = matching
                .iter()
                .find(|p| **p <= run.start_after && **p > record.runs[0].start_after && !handled_before.contains(p))
            {
                violate(format!(
                    "run {run_no} resumed after checkpoint {} but event {p} was never handled",
                    run.start_after
                ));
            }
        }
        for p in &run.handled {
            if !handled_before.insert(*p) && record.exactly_once {
                violate(format!("event {p} handled twice with transactional checkpoints"));
            }
        }
    }
    if let Some(error) = &record.stopped {
        violate(format!("stopped with an error: {error}"));
    }
    if require_caught_up {
        let start = record.runs.first().map_or(GlobalPosition::START, |r| r.start_after);
        if let Some(p) = matching.iter().find(|p| **p > start && !handled_before.contains(p)) {
            violate(format!(
                "never handled event {p} ({} of {} matching events handled)",
                handled_before.len(),
                matching.len()
            ));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventcore::{CommandId, EventId, EventMetadata, EventType, Payload, StreamId, StreamVersion, Time};
    use std::sync::Arc;

    fn events(n: u64) -> Vec<RecordedEvent> {
        (1..=n)
            .map(|p| RecordedEvent {
                event_id: EventId::v7(Time::ZERO, [p as u8; 10]),
                stream_id: StreamId::new("s").expect("valid"),
                version: StreamVersion::new(p),
                position: GlobalPosition::new(p),
                event_type: EventType::new("E").expect("valid"),
                schema_version: 1,
                payload: Payload::from_trusted_json("null"),
                metadata: Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [0; 10]), Time::ZERO)),
            })
            .collect()
    }

    fn record(exactly_once: bool, runs: &[(u64, &[u64])]) -> SubscriberRecord {
        SubscriberRecord {
            name: "t".into(),
            filter: EventFilter::all(),
            exactly_once,
            runs: runs
                .iter()
                .map(|(start, handled)| SubscriberRun {
                    start_after: GlobalPosition::new(*start),
                    handled: handled.iter().map(|p| GlobalPosition::new(*p)).collect(),
                })
                .collect(),
            stopped: None,
        }
    }

    #[test]
    fn at_least_once_redelivery_after_a_resume_passes() {
        let r = record(false, &[(0, &[1, 2, 3]), (2, &[3, 4])]);
        assert!(check_subscriber(&events(4), &r, true).is_empty());
    }

    #[test]
    fn a_gap_out_of_order_a_skip_and_a_duplicate_are_each_caught() {
        let gap = record(false, &[(0, &[1, 3])]);
        assert!(!check_subscriber(&events(3), &gap, false).is_empty());
        let order = record(false, &[(0, &[2, 1])]);
        assert!(!check_subscriber(&events(2), &order, false).is_empty());
        let skipped_on_resume = record(false, &[(0, &[1]), (3, &[4])]);
        assert!(!check_subscriber(&events(4), &skipped_on_resume, false).is_empty());
        let twice = record(true, &[(0, &[1, 2]), (1, &[2])]);
        assert!(!check_subscriber(&events(2), &twice, false).is_empty());
        let behind = record(false, &[(0, &[1])]);
        assert!(!check_subscriber(&events(2), &behind, true).is_empty());
    }
}
