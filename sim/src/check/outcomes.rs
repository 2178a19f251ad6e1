//! Command-level checks: every committed command matches exactly one append
//! it sent and honoured its expected versions; acknowledgements, "nothing
//! written" promises and re-executions agree with what the store holds.

use super::{Checker, Invariant};
use crate::history::{Attempt, CommandRecord, ExecutionOutcome, History};
use eventcore::{CommandId, EventId, GlobalPosition, RecordedEvent};
use std::collections::{BTreeMap, BTreeSet};

pub(super) fn check(checker: &mut Checker, history: &History, require_resolved: bool) {
    let mut by_command: BTreeMap<CommandId, Vec<&RecordedEvent>> = BTreeMap::new();
    let mut by_event_id: BTreeMap<EventId, &RecordedEvent> = BTreeMap::new();
    for event in &history.events {
        by_command.entry(event.metadata.command_id).or_default().push(event);
        by_event_id.insert(event.event_id, event);
    }
    let mut known = BTreeSet::new();
    for record in &history.commands {
        known.insert(record.command_id);
        let committed = by_command.get(&record.command_id).map(Vec::as_slice).unwrap_or(&[]);
        check_commit(checker, history, record, committed);
        check_executions(checker, record, committed, &by_event_id, require_resolved);
    }
    for (command_id, events) in &by_command {
        if !known.contains(command_id) {
            checker.violate(
                Invariant::Idempotency,
                format!(
                    "{} events of command {command_id}, which no client issued",
                    events.len()
                ),
            );
        }
    }
}

/// The committed events of a command must be exactly one attempt it sent,
/// at versions that honour that attempt's expectations.
fn check_commit(checker: &mut Checker, history: &History, record: &CommandRecord, committed: &[&RecordedEvent]) {
    if committed.is_empty() {
        return;
    }
    let ids: BTreeSet<EventId> = committed.iter().map(|e| e.event_id).collect();
    let attempt =
        record.executions.iter().flat_map(|e| e.attempts.iter()).find(|a| {
            a.event_ids().copied().collect::<BTreeSet<_>>() == ids && a.event_ids().count() == committed.len()
        });
    let Some(attempt) = attempt else {
        checker.violate(
            Invariant::Idempotency,
            format!(
                "command {} ({}) has {} committed events that match no single append it sent (written twice or partially)",
                record.command_id,
                record.label,
                committed.len()
            ),
        );
        return;
    };
    check_expectations(checker, history, record, attempt, committed);
    super::tombstones::check_history_tombstone(checker, &record.label, attempt, committed);
}

fn check_expectations(
    checker: &mut Checker,
    history: &History,
    record: &CommandRecord,
    attempt: &Attempt,
    committed: &[&RecordedEvent],
) {
    let first_position = committed
        .iter()
        .map(|e| e.position)
        .min()
        .unwrap_or(GlobalPosition::START);
    for entry in &attempt.streams {
        let mine: Vec<&&RecordedEvent> = committed.iter().filter(|e| e.stream_id == entry.stream).collect();
        if mine.len() != entry.events.len() || mine.iter().zip(&entry.events).any(|(e, id)| e.event_id != *id) {
            checker.violate(
                Invariant::AtomicAppend,
                format!(
                    "command {} ({}): stream `{}` holds {} of its events, the append sent {}",
                    record.command_id,
                    record.label,
                    entry.stream,
                    mine.len(),
                    entry.events.len()
                ),
            );
            continue;
        }
        // The version the stream had when the append committed: for a
        // stream written, the version before its first new event; for a pure
        // version check, the events of that stream committed before ours.
        let before = match mine.first() {
            Some(first) => first.version.get() - 1,
            None => history
                .events
                .iter()
                .filter(|e| e.stream_id == entry.stream && e.position < first_position)
                .count() as u64,
        };
        if !entry.expected.matches(eventcore::StreamVersion::new(before)) {
            checker.violate(
                Invariant::ExpectedVersion,
                format!(
                    "command {} ({}) committed to `{}` at version {} although it expected {}",
                    record.command_id, record.label, entry.stream, before, entry.expected
                ),
            );
        }
    }
}

fn check_executions(
    checker: &mut Checker,
    record: &CommandRecord,
    committed: &[&RecordedEvent],
    by_event_id: &BTreeMap<EventId, &RecordedEvent>,
    require_resolved: bool,
) {
    let commit_position = committed.iter().map(|e| e.position).max();
    for (n, execution) in record.executions.iter().enumerate() {
        let who = format!("command {} ({}) execution #{}", record.command_id, record.label, n + 1);
        match &execution.outcome {
            ExecutionOutcome::Acknowledged(receipt) => {
                let mut acknowledged = 0;
                for commit in &receipt.streams {
                    let mine: Vec<&&RecordedEvent> =
                        committed.iter().filter(|e| e.stream_id == commit.stream).collect();
                    let versions_ok = mine.first().map(|e| e.version) == Some(commit.first_version)
                        && mine.last().map(|e| e.version) == Some(commit.last_version);
                    let positions: Vec<GlobalPosition> = mine.iter().map(|e| e.position).collect();
                    if !versions_ok || positions != commit.positions {
                        checker.violate(
                            Invariant::Acknowledged,
                            format!(
                                "{who} was acknowledged with `{}` versions {}..={} at positions {:?}, the store holds positions {:?}",
                                commit.stream, commit.first_version, commit.last_version, commit.positions, positions
                            ),
                        );
                    }
                    acknowledged += commit.positions.len();
                }
                if receipt.command_id != record.command_id || acknowledged != committed.len() {
                    checker.violate(
                        Invariant::Acknowledged,
                        format!(
                            "{who} was acknowledged for {acknowledged} events, the store holds {} of the command",
                            committed.len()
                        ),
                    );
                }
            }
            outcome if outcome.claims_nothing_written() => {
                let written: Vec<&RecordedEvent> = execution
                    .attempts
                    .iter()
                    .flat_map(Attempt::event_ids)
                    .filter_map(|id| by_event_id.get(id).copied())
                    .collect();
                if let Some(first) = written.first() {
                    checker.violate(
                        Invariant::NothingWritten,
                        format!(
                            "{who} reported {outcome:?} but its event landed at `{}`@{} (position {})",
                            first.stream_id, first.version, first.position
                        ),
                    );
                }
                // Only a verdict (refused, nothing to do) claims to have seen
                // the state; giving up after transient errors claims nothing
                // about the command, only about this execution.
                if let Some(position) = commit_position
                    .filter(|p| *p <= execution.started_after)
                    .filter(|_| execution.outcome.is_verdict())
                {
                    checker.violate(
                        Invariant::ReexecutionAfterCommit,
                        format!(
                            "{who} started after the command had committed (position {position}) yet reported {outcome:?}"
                        ),
                    );
                }
            }
            _ => {}
        }
    }
    if require_resolved && !record.is_resolved() {
        match record.executions.last().map(|e| &e.outcome) {
            Some(outcome) => checker.violate(
                Invariant::Liveness,
                format!(
                    "command {} ({}) is still unresolved after healing: last execution {outcome:?}",
                    record.command_id, record.label
                ),
            ),
            None => checker.violate(
                Invariant::Liveness,
                format!("command {} ({}) never ran", record.command_id, record.label),
            ),
        }
    }
}
