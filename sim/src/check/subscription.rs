//! Subscriber checks, on a record of what one subscriber handled in each of
//! its runs (a run ends when the subscriber crashes and resumes from its
//! saved checkpoint) against the committed events.
//!
//! The simulator records each run exactly ([`check_subscriber`]). A
//! subscriber outside the simulator (the chaos suite's, on PostgreSQL) only
//! has the flat list of what it was handed and how often it restarted:
//! [`check_deliveries`] checks each delivery's identity against the log,
//! cuts the list into runs, and applies the same rules.

use super::{Invariant, Violation};
use eventcore::{EventFilter, GlobalPosition, RecordedEvent};
use std::collections::{BTreeMap, BTreeSet};

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

/// What [`check_deliveries`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryCheck {
    /// Deliveries at or below a position already delivered (at-least-once
    /// re-deliveries after a restart, or order broken).
    pub redelivered: usize,
    /// Every broken rule.
    pub violations: Vec<Violation>,
}

/// Checks a subscriber observed from outside the simulator: the events it
/// was handed, in order, across `restarts` restarts from its checkpoint,
/// against the committed `events`. It must have caught up.
///
/// Each delivery must be the log's event at its position. A subscriber that
/// never restarted had one run, so every event once and in global order. A
/// restarted one may be handed events again: the list is cut into runs
/// wherever a position is not above the one before, each run taken to
/// resume just before its first delivery, and [`check_subscriber`] judges
/// the runs (at-least-once). The verdict is therefore: after dropping
/// re-deliveries of events handed over before, the deliveries are the
/// matching events of the log, in order, each once.
///
/// ```
/// use eventcore::EventFilter;
/// use eventcore_sim::check::check_deliveries;
/// let check = check_deliveries(&[], "poller", &EventFilter::all(), &[], 0);
/// assert!(check.violations.is_empty());
/// ```
pub fn check_deliveries(
    events: &[RecordedEvent],
    name: &str,
    filter: &EventFilter,
    delivered: &[RecordedEvent],
    restarts: u64,
) -> DeliveryCheck {
    let mut violations = Vec::new();
    let by_position: BTreeMap<GlobalPosition, &RecordedEvent> = events.iter().map(|e| (e.position, e)).collect();
    if let Some(d) = delivered
        .iter()
        .find(|d| by_position.get(&d.position).is_some_and(|e| e.event_id != d.event_id))
    {
        let logged = by_position
            .get(&d.position)
            .map(|e| e.event_id.to_string())
            .unwrap_or_default();
        violations.push(Violation {
            invariant: Invariant::Subscription,
            detail: format!(
                "subscriber {name}: delivered event {} at position {}, the log has {logged} there",
                d.event_id, d.position
            ),
        });
    }
    let mut runs = vec![SubscriberRun::default()];
    let mut redelivered = 0;
    let mut highest = GlobalPosition::START;
    for d in delivered {
        if d.position <= highest {
            redelivered += 1;
        }
        highest = highest.max(d.position);
        let last = runs.last().and_then(|r| r.handled.last()).copied();
        if restarts > 0 && last.is_some_and(|last| d.position <= last) {
            runs.push(SubscriberRun {
                start_after: GlobalPosition::new(d.position.get().saturating_sub(1)),
                handled: Vec::new(),
            });
        }
        if let Some(run) = runs.last_mut() {
            run.handled.push(d.position);
        }
    }
    let record = SubscriberRecord {
        name: name.to_owned(),
        filter: filter.clone(),
        exactly_once: false,
        runs,
        stopped: None,
    };
    violations.extend(check_subscriber(events, &record, true));
    DeliveryCheck {
        redelivered,
        violations,
    }
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

    fn deliveries(log: &[RecordedEvent], positions: &[u64]) -> Vec<RecordedEvent> {
        positions.iter().map(|p| log[*p as usize - 1].clone()).collect()
    }

    #[test]
    fn a_flat_delivery_list_is_judged_by_the_same_rules() {
        let log = events(4);
        let all = EventFilter::all();
        let check =
            |positions: &[u64], restarts| check_deliveries(&log, "t", &all, &deliveries(&log, positions), restarts);
        assert!(check(&[1, 2, 3, 4], 0).violations.is_empty());
        let again = check(&[1, 2, 3, 2, 3, 4], 1);
        assert!(again.violations.is_empty());
        assert_eq!(again.redelivered, 2);
        assert!(
            !check(&[1, 2, 3, 2, 3, 4], 0).violations.is_empty(),
            "re-delivered without a restart"
        );
        assert!(!check(&[1, 2, 4], 1).violations.is_empty(), "a gap");
        assert!(!check(&[1, 2, 3], 1).violations.is_empty(), "not caught up");
        assert!(
            !check(&[1, 2, 3, 4, 2, 4], 1).violations.is_empty(),
            "a skip while re-delivering"
        );
        let mut forged = deliveries(&log, &[1, 2, 3, 4]);
        forged[2].event_id = log[0].event_id;
        assert!(
            !check_deliveries(&log, "t", &all, &forged, 0).violations.is_empty(),
            "not the log's event"
        );
    }
}
