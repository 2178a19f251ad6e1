//! The invariant checker. It reads a [`History`] —
//! committed events plus what every execution was told — and nothing else,
//! so the same checks run on the simulator's in-memory store and on a
//! history read back from PostgreSQL by a chaos suite.
//!
//! Use it incrementally ([`Checker::observe_batch`] after every store step,
//! which is how the simulator catches a violation at the step that caused
//! it) and then once at the end ([`Checker::finish`]).

mod contract;
mod domain;
mod outcomes;
mod subscription;
mod tombstones;

pub use domain::DomainModel;
pub use subscription::{check_deliveries, check_subscriber, DeliveryCheck, SubscriberRecord, SubscriberRun};

use crate::history::{Attempt, History};
use eventcore::{CommandId, EventId, GlobalPosition, RecordedEvent, StreamId, StreamVersion};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Which invariant a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Invariant {
    /// Versions contiguous from 1, positions increasing, event ids unique.
    StoreContract,
    /// All events of one command became visible in one step, or none.
    AtomicAppend,
    /// A committed append honoured every expected version it carried.
    ExpectedVersion,
    /// No command id committed twice (or committed a shape it never sent).
    Idempotency,
    /// An acknowledged command appears exactly once, where its receipt says.
    Acknowledged,
    /// An execution that reported "nothing written" wrote nothing.
    NothingWritten,
    /// An execution started after its command committed reported the commit.
    ReexecutionAfterCommit,
    /// An execution kept the machine's protocol: attempts within its
    /// policy, every retry caused by a conflict, a transient error or an
    /// unknown outcome, no error an honest store cannot cause, and every
    /// refusal or empty decision agreeing with a full fold of the store at
    /// the versions it read — versions no older than the execution's start.
    Protocol,
    /// A domain rule of the workload (money, stock).
    Domain,
    /// A stream view (from a cache or a snapshot plus the tail, or folded
    /// by an execution) equals the full fold of its stream at its version,
    /// and a committed view decision rested on exactly that.
    ViewFold,
    /// A subscriber saw every matching event once per run, in global order,
    /// never skipped one across a resume, and caught up after healing.
    Subscription,
    /// A user projection's read model, as committed with its checkpoint,
    /// equals a replay of the events it subscribed to up to that
    /// checkpoint, and obeys the projection's own rules.
    Projection,
    /// No checkpoint or handled batch was accepted from a lease holder whose
    /// fencing token was not the current one.
    Fencing,
    /// A stream ended by a tombstone takes no more events: the tombstone
    /// commits with its append's last event of the stream (never one
    /// without the other), every later append writing the stream is
    /// refused with `StreamDeleted` naming it and the tombstone's version
    /// and writes nothing, reads report `deleted_at` at its last event, and
    /// a command that meets the refusal ends with it.
    Tombstone,
    /// Personal data (crypto-shredding): no stored payload holds a
    /// plaintext or a placeholder; after a subject is forgotten, every read
    /// of its fields yields `Forgotten` (never the value, never an error)
    /// while everything else reads as written, the events stay as many as
    /// they were, and no personal data of it sealed after the forget is
    /// stored (a command writing some is refused with
    /// `PersonalError::SubjectForgotten`).
    Forgotten,
    /// After the faults stopped, every command finished with a definitive
    /// outcome within the bound.
    Liveness,
    /// Appends lock stream heads in one global order, so the database never
    /// reports a deadlock between them (judged by the chaos suites, which
    /// run the real PostgreSQL store).
    LockOrder,
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invariant::StoreContract => "store contract",
            Invariant::AtomicAppend => "atomic multi-stream append",
            Invariant::ExpectedVersion => "expected versions honoured",
            Invariant::Idempotency => "idempotency (no command committed twice)",
            Invariant::Acknowledged => "acknowledged command committed exactly once at its receipt",
            Invariant::NothingWritten => "an error that promises nothing was written",
            Invariant::ReexecutionAfterCommit => "re-execution of a committed command reports the commit",
            Invariant::Protocol => {
                "execution protocol (policy bounds, caused retries, verdicts agree with a full fold)"
            }
            Invariant::Domain => "domain invariant",
            Invariant::ViewFold => "a view equals the full fold of its stream (cache or snapshot + tail == replay)",
            Invariant::Subscription => "subscription delivery (global order, no gaps, once per run)",
            Invariant::Projection => "projection (read model equals the replay of its events, and keeps its rules)",
            Invariant::Fencing => "fencing (writes only from the current lease token)",
            Invariant::Tombstone => {
                "tombstones (a deleted stream takes no more events; its tombstone commits with its last event)"
            }
            Invariant::Forgotten => "forgotten personal data (no plaintext stored; forgotten fields read as forgotten, the rest unchanged; no new data of a forgotten subject)",
            Invariant::Liveness => "liveness after healing",
            Invariant::LockOrder => "one global lock order (no deadlock reported by the database)",
        })
    }
}

/// One broken invariant, with the evidence in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// What was broken.
    pub invariant: Invariant,
    /// The evidence.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.invariant, self.detail)
    }
}

/// Checks a history, incrementally and at the end.
///
/// ```
/// use eventcore_sim::check::Checker;
/// use eventcore_sim::history::History;
/// let checker = Checker::new(Vec::new());
/// assert!(checker.finish(&History::default(), false).is_empty());
/// ```
pub struct Checker {
    heads: BTreeMap<StreamId, StreamVersion>,
    last_position: GlobalPosition,
    event_ids: BTreeSet<EventId>,
    /// The batch each command id first became visible in.
    commands: BTreeMap<CommandId, usize>,
    batches: usize,
    observed: usize,
    domains: Vec<Box<dyn DomainModel>>,
    violations: Vec<Violation>,
    /// Streams ended by a committed tombstone, at the version of their
    /// last event.
    deleted: BTreeMap<StreamId, StreamVersion>,
}

impl Checker {
    /// A checker that also replays the given domain models.
    pub fn new(domains: Vec<Box<dyn DomainModel>>) -> Self {
        Checker {
            heads: BTreeMap::new(),
            last_position: GlobalPosition::START,
            event_ids: BTreeSet::new(),
            commands: BTreeMap::new(),
            batches: 0,
            observed: 0,
            domains,
            violations: Vec::new(),
            deleted: BTreeMap::new(),
        }
    }

    /// Feeds the events that became visible in one store step, in global
    /// order. Returns the violations found so far (all of them, so a caller
    /// can stop at the first).
    pub fn observe_batch(&mut self, events: &[RecordedEvent]) -> &[Violation] {
        self.batches += 1;
        for event in events {
            self.observe_event(event);
        }
        &self.violations
    }

    /// Like [`Checker::observe_batch`] for the events one append committed:
    /// first checks that every stream was at a version the append expected
    /// (what the client sent, not what the store says it checked), so a
    /// store that skips a check is caught at the step that did it.
    pub fn observe_commit(&mut self, attempt: &Attempt, events: &[RecordedEvent]) -> &[Violation] {
        for entry in &attempt.streams {
            let head = self.heads.get(&entry.stream).copied().unwrap_or_default();
            if !entry.expected.matches(head) {
                let command = events
                    .first()
                    .map(|e| e.metadata.command_id.to_string())
                    .unwrap_or_default();
                self.violate(
                    Invariant::ExpectedVersion,
                    format!(
                        "command {command} committed to `{}` at version {head} although it expected {}",
                        entry.stream, entry.expected
                    ),
                );
            }
        }
        self.observe_batch(events);
        tombstones::record(self, attempt, events);
        &self.violations
    }

    fn observe_event(&mut self, event: &RecordedEvent) {
        self.observed += 1;
        contract::check_event(self, event);
        tombstones::check_event(self, event);
        let command_id = event.metadata.command_id;
        match self.commands.get(&command_id) {
            Some(&batch) if batch != self.batches => self.violate(
                Invariant::AtomicAppend,
                format!(
                    "command {command_id} became visible in two store steps (event `{}`@{} at position {})",
                    event.stream_id, event.version, event.position
                ),
            ),
            Some(_) => {}
            None => {
                self.commands.insert(command_id, self.batches);
            }
        }
        for domain in &mut self.domains {
            if let Err(detail) = domain.apply(event) {
                self.violations.push(Violation {
                    invariant: Invariant::Domain,
                    detail: format!("{}: {detail}", domain.name()),
                });
            }
        }
    }

    /// Violations found so far.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    fn violate(&mut self, invariant: Invariant, detail: String) {
        self.violations.push(Violation { invariant, detail });
    }

    /// Runs the end-of-run checks: events not yet observed are observed as
    /// one batch, then every command's executions are checked against the
    /// events. With `require_resolved`, a command whose last execution has
    /// no definitive outcome is a liveness violation.
    pub fn finish(mut self, history: &History, require_resolved: bool) -> Vec<Violation> {
        if self.observed < history.events.len() {
            let rest = &history.events[self.observed..];
            self.batches += 1;
            for event in rest {
                self.observe_event(event);
            }
        }
        outcomes::check(&mut self, history, require_resolved);
        for domain in &self.domains {
            for detail in domain.finish() {
                self.violations.push(Violation {
                    invariant: Invariant::Domain,
                    detail: format!("{}: {detail}", domain.name()),
                });
            }
        }
        self.violations
    }
}
