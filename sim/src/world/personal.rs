//! Personal data in the world: the scope a driver installs around every
//! synchronous machine call (keys of the subjects the execution read, and
//! of new subjects once created), forgets at scheduled times, and the
//! [`Invariant::Forgotten`] checks on every commit, read and forget.

use super::{Msg, World};
use crate::actors::ExecId;
use crate::check::Invariant;
use crate::exec::{Execution, Sent};
use crate::personal::{check_stored, is_customer, read_back, reads_forgotten};
use crate::rng::{Purpose, SimRng};
use eventcore::{AppendRequest, ReadResponse, RecordedEvent};
use eventcore_shred::{subjects_in_events, PersonalError, Scope, SubjectId};
use std::collections::BTreeSet;
use std::time::Duration;

/// Forgets are scheduled within this window after the clients start.
const FORGET_WINDOW_US: u64 = 400_000;
/// A forget that finds no subject with a key tries again after this.
const FORGET_RETRY: Duration = Duration::from_millis(50);

impl World {
    /// Runs `f` on an execution's machine inside an execute scope holding
    /// the keys of every subject the execution has read (forgotten ones
    /// marked), as a driver that fetched them would. Subjects written
    /// without a key, and the first personal-data error, are kept on the
    /// execution.
    pub(super) fn in_scope<R>(&mut self, exec: ExecId, f: impl FnOnce(&mut dyn Execution) -> R) -> Option<R> {
        let running = self.execs.get_mut(&exec)?;
        let ring = self.vault.ring_for(&running.subjects);
        let scope = Scope::execute(&ring, self.vault.nonces());
        let result = f(running.machine.as_mut());
        running.missing.extend(scope.missing_keys());
        if let Some(error) = scope.take_error() {
            running.personal_error.get_or_insert(error);
        }
        drop(scope);
        Some(result)
    }

    /// The subjects whose sealed fields `events` hold: their keys join the
    /// execution's ring (a driver fetches them with the read).
    pub(super) fn learn_subjects<'a>(&mut self, exec: ExecId, events: impl IntoIterator<Item = &'a RecordedEvent>) {
        let subjects = subjects_in_events(events).unwrap_or_default();
        if let Some(running) = self.execs.get_mut(&exec) {
            running.subjects.extend(subjects);
        }
    }

    /// Before an append leaves: creates the keys the encoder found missing
    /// (a forgotten subject gets none) and encodes the append again with
    /// them. Returns false when the new encoding failed: the execution then
    /// ends with the encode error at its next poll.
    pub(super) fn seal_append(&mut self, exec: ExecId, request: &mut Sent<AppendRequest>) -> bool {
        let now = self.steps;
        let Some(running) = self.execs.get_mut(&exec) else {
            return true;
        };
        if !running.missing.is_empty() {
            let missing = std::mem::take(&mut running.missing);
            for subject in &missing {
                if self.vault.create(subject) {
                    self.coverage.hit("personal_key_created");
                }
            }
            running.subjects.extend(missing);
            self.coverage.hit("personal_append_reencoded");
            match self.in_scope(exec, |machine| machine.reencode_append()) {
                Some(Some(again)) => request.request = again,
                _ => return false,
            }
        }
        for event in request.streams.iter().flat_map(|s| s.events.iter()) {
            self.sealed_at.entry(event.event_id).or_insert(now);
        }
        true
    }

    /// Draws when subjects are forgotten (0 to 2 forgets, from a stream of
    /// their own).
    pub(super) fn schedule_forgets(&mut self) {
        let mut rng = SimRng::new(self.config.seed, Purpose::Forgets);
        let start = self.now();
        for _ in 0..rng.below(3) {
            let at = start.saturating_add(Duration::from_micros(rng.between(0, FORGET_WINDOW_US)));
            let pick = rng.next_u64();
            self.push(at, Msg::Forget { pick });
        }
    }

    /// A subject with a key is forgotten (its key deleted); then every
    /// stored event is read back with the keys left.
    pub(super) fn on_forget(&mut self, pick: u64) {
        let live = self.vault.live_subjects();
        if live.is_empty() {
            // No personal data yet: try again a little later, while the
            // clients still run.
            self.coverage.hit("forget_found_no_subject");
            if self.healed_at.is_none() {
                let at = self.clock.after(FORGET_RETRY);
                self.push(at, Msg::Forget { pick });
            }
            return;
        }
        let subject = live[(pick % live.len() as u64) as usize].clone();
        let before = self.store.data().events().len();
        self.vault.forget(&subject, self.steps);
        self.coverage.hit("subject_forgotten");
        self.log(format_args!("FORGET {subject}"));
        let after = self.store.data().events().len();
        if before != after {
            self.violation(
                Invariant::Forgotten,
                format!("forgetting `{subject}` changed the number of events from {before} to {after}"),
            );
        }
        self.read_back_store(&format!("after forgetting `{subject}`"));
    }

    /// Judges the events one append committed: nothing stored in plain or
    /// as a placeholder, nothing sealed after its subject was forgotten;
    /// keeps what each customer event reads as now, to compare later reads.
    pub(super) fn check_committed_personal(&mut self, events: &[RecordedEvent]) {
        let mut found = Vec::new();
        for event in events {
            found.extend(check_stored(
                event,
                &self.vault,
                self.sealed_at.get(&event.event_id).copied(),
            ));
            if is_customer(event) {
                match eventcore_shred::open_recorded(event, &self.vault.full_ring()) {
                    Ok(written) => {
                        self.written.insert(event.event_id, written);
                    }
                    Err(error) => found.push(format!(
                        "`{}`@{} does not read back as it is committed: {error}",
                        event.stream_id, event.version
                    )),
                }
            }
        }
        for detail in found {
            self.violation(Invariant::Forgotten, detail);
        }
    }

    /// Judges a read's customer events: each decodes, forgotten fields read
    /// as forgotten, the rest as written.
    pub(super) fn check_read_personal(&mut self, response: &ReadResponse) {
        let events: Vec<&RecordedEvent> = response
            .streams
            .iter()
            .flat_map(|s| s.events.iter())
            .filter(|e| is_customer(e))
            .collect();
        if events.is_empty() {
            return;
        }
        let ring = self.vault.full_ring();
        let forgotten: BTreeSet<SubjectId> = self.vault.forgotten().cloned().collect();
        let mut found = Vec::new();
        for event in events {
            let Some(written) = self.written.get(&event.event_id) else {
                continue;
            };
            match read_back(event, written, &ring, &forgotten) {
                Ok(read) if reads_forgotten(&read) => self.coverage.hit("forgotten_field_read"),
                Ok(_) => {}
                Err(detail) => found.push(detail),
            }
        }
        for detail in found {
            self.violation(Invariant::Forgotten, detail);
        }
    }

    /// Reads every stored customer event back with the keys left.
    pub(super) fn read_back_store(&mut self, when: &str) {
        let ring = self.vault.full_ring();
        let forgotten: BTreeSet<SubjectId> = self.vault.forgotten().cloned().collect();
        let mut found = Vec::new();
        for event in self.store.data().events().iter().filter(|e| is_customer(e)) {
            match self.written.get(&event.event_id) {
                Some(written) => {
                    if let Err(detail) = read_back(event, written, &ring, &forgotten) {
                        found.push(format!("{when}: {detail}"));
                    }
                }
                None => found.push(format!(
                    "{when}: `{}`@{} was never judged at its commit",
                    event.stream_id, event.version
                )),
            }
        }
        for detail in found {
            self.violation(Invariant::Forgotten, detail);
        }
    }

    /// An execution that met a forgotten subject while encoding must have
    /// been refused for it, with the subject really forgotten; an encode
    /// error without that cause is one the simulator cannot cause. One
    /// exception: a decision on streams primed from a cache is confirmed by
    /// a read before an encode failure ends the command, and what the read
    /// leads to may be anything (the settle of the command's own earlier
    /// commit, a domain refusal, another decision); what it stores is
    /// judged by the rule that nothing sealed after a forget is stored.
    pub(super) fn judge_personal(
        &mut self,
        exec: ExecId,
        error: Option<&PersonalError>,
        primed: bool,
        error_kind: Option<&'static str>,
        outcome: &crate::history::ExecutionOutcome,
    ) {
        match error {
            Some(PersonalError::SubjectForgotten { subject }) => {
                self.coverage.hit("forgotten_subject_write_refused");
                let refused =
                    error_kind == Some("encode") && matches!(outcome, crate::history::ExecutionOutcome::Refused { .. });
                if !refused && primed {
                    self.coverage.hit("forgotten_subject_write_confirmed_by_read");
                } else if !refused {
                    self.violation(
                        Invariant::Forgotten,
                        format!("x{exec} wrote personal data of the forgotten `{subject}` and ended {outcome:?}, not refused for it"),
                    );
                }
                if self.vault.forgotten_at(subject).is_none() {
                    self.violation(
                        Invariant::Forgotten,
                        format!("x{exec} was refused for writing `{subject}`, which was never forgotten"),
                    );
                }
            }
            Some(other) if error_kind == Some("encode") => self.violation(
                Invariant::Forgotten,
                format!("x{exec} failed to encode personal data: {other}"),
            ),
            _ if error_kind == Some("encode") => self.violation(
                Invariant::Protocol,
                format!("x{exec} ended with an encode error the simulator cannot cause: {outcome:?}"),
            ),
            _ => {}
        }
    }
}
