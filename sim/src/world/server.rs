//! The store side and the network between: latency, and the fault layer
//! that decides what happens to each request and response.

use super::{Endpoint, Msg, Request, Response, World};
use eventcore::{Operation, StoreError};
use std::time::Duration;

impl World {
    /// Draws one fault decision from the fault stream.
    pub(super) fn fault(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.faults.chance(per_mille)
    }

    /// One-way latency of a message; sometimes much slower than usual,
    /// which reorders messages and pushes some past their timeouts.
    pub(super) fn latency(&mut self) -> Duration {
        let (lo, hi) = self.active.latency_us;
        let mut micros = self.net.between(lo, hi);
        if self.fault(self.active.slow) {
            self.coverage.hit("slow_message");
            micros += self.net.between(0, self.active.slow_max_ms * 1_000);
        }
        Duration::from_micros(micros)
    }

    pub(super) fn respond(&mut self, to: Endpoint, response: Response) {
        let epoch = self.store.epoch();
        let delay = self.latency();
        let at = self.clock.after(delay);
        if self.fault(self.active.duplicate) {
            self.coverage.hit("duplicate_response_delivered");
            let extra = self.latency();
            self.push(
                at.saturating_add(extra),
                Msg::Response {
                    to,
                    epoch,
                    response: response.clone(),
                },
            );
        }
        self.push(at, Msg::Response { to, epoch, response });
    }

    /// A request reaches the store. It is served even if the client that
    /// sent it has crashed since: the bytes were already on the wire.
    pub(super) fn on_request(&mut self, to: Endpoint, epoch: u64, request: Request) {
        if epoch != self.store.epoch() {
            self.coverage.hit("request_dropped_by_restart");
            self.log(format_args!("{to} request lost: the store restarted"));
            return;
        }
        if !self.store.is_up() {
            self.log(format_args!("{to} request refused: the store is down"));
            let response = match request {
                Request::Read(r) => {
                    Response::Read(r.id, Err(StoreError::transient(Operation::Read, "connection refused")))
                }
                Request::ReadAll(id, _) => {
                    Response::ReadAll(id, Err(StoreError::transient(Operation::ReadAll, "connection refused")))
                }
                Request::Append(a) => Response::Append(
                    a.id,
                    Err(StoreError::transient(Operation::Append, "connection refused")),
                ),
            };
            self.respond(to, response);
            return;
        }
        match request {
            Request::Read(read) => self.serve_read(to, read),
            Request::ReadAll(id, read) => self.serve_read_all(to, id, read),
            Request::Append(append) => self.serve_append(to, append),
        }
    }

    fn serve_read(&mut self, to: Endpoint, read: crate::exec::Sent<eventcore::ReadRequest>) {
        if self.fault(self.active.read_transient) {
            self.coverage.hit("read_transient");
            self.log(format_args!("{to} store: read {} fails (transient)", read.id));
            let error = StoreError::transient(Operation::Read, "injected: serialization failure");
            self.respond(to, Response::Read(read.id, Err(error)));
            return;
        }
        if self.fault(self.active.read_lost) {
            self.coverage.hit("read_timeout");
            self.log(format_args!("{to} store: read {} answer lost", read.id));
            return;
        }
        let result = self.store.read(&read);
        if let Ok(response) = &result {
            if response.streams.iter().any(|s| s.deleted_at.is_some()) {
                self.coverage.hit("tombstone_read");
            }
            self.check_read_personal(response);
            let seen = self.checker.violations().len();
            let found = self.checker.observe_read(response);
            if found.len() > seen {
                let first = found[seen].to_string();
                self.log(format_args!("VIOLATION {first}"));
                self.failed = true;
            }
            if response.streams.iter().zip(&read.streams).any(|(slice, asked)| {
                slice.head.get() - asked.after.get().min(slice.head.get()) > slice.events.len() as u64
            }) {
                self.coverage.hit("paged_read");
            }
            self.log(format_args!(
                "{to} store: read {} -> [{}]",
                read.id,
                response
                    .streams
                    .iter()
                    .map(|s| format!("{}:{}/{}", s.stream, s.events.len(), s.head))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        self.respond(to, Response::Read(read.id, result));
    }

    fn serve_read_all(&mut self, to: Endpoint, id: eventcore::RequestId, read: eventcore::ReadAllRequest) {
        if self.fault(self.active.read_transient) {
            self.coverage.hit("read_all_transient");
            self.log(format_args!("{to} store: fetch {id} fails (transient)"));
            let error = StoreError::transient(Operation::ReadAll, "injected: statement timeout");
            self.respond(to, Response::ReadAll(id, Err(error)));
            return;
        }
        if self.fault(self.active.read_lost) {
            self.coverage.hit("fetch_timeout");
            self.log(format_args!("{to} store: fetch {id} answer lost"));
            return;
        }
        let result = self.store.read_all(&read);
        if let Ok(response) = &result {
            self.log(format_args!(
                "{to} store: fetch {id} -> {} events, complete through {}",
                response.events.len(),
                response.complete_through
            ));
        }
        self.respond(to, Response::ReadAll(id, result));
    }

    fn serve_append(&mut self, to: Endpoint, append: crate::exec::Sent<eventcore::AppendRequest>) {
        if self.active.batch_window_us > 0 {
            if self.batch.is_empty() {
                let at = self.clock.after(Duration::from_micros(self.active.batch_window_us));
                let epoch = self.store.epoch();
                self.push(at, Msg::FlushBatch { epoch });
            }
            self.log(format_args!(
                "{to} store: append {} joins the open batch ({} before it)",
                append.id,
                self.batch.len()
            ));
            self.batch.push((to, append));
            return;
        }
        if self.fault(self.active.append_fail) {
            self.coverage.hit("append_failed_before_commit");
            self.log(format_args!("{to} store: append {} fails before commit", append.id));
            let error = StoreError::transient(Operation::Append, "injected: connection reset before commit");
            self.respond(to, Response::Append(append.id, Err(error)));
            return;
        }
        let (result, committed) = self.apply_append(to, &append);
        let lost = result.is_ok() && self.fault(self.active.lost_ack);
        let unknown = lost && self.fault(self.active.lost_ack_reports_unknown);
        self.answer_append(to, &append, result, committed, lost.then_some(unknown));
    }

    /// The open batch closes: its appends are applied in arrival order as
    /// one transaction would apply them — each sees the ones before it, a
    /// conflict or refusal fails only its own append — and the faults that
    /// strike a whole transaction strike every member: a failure before
    /// commit fails them all with nothing written, a lost acknowledgement
    /// loses every member's answer (committed or not).
    pub(super) fn flush_batch(&mut self, epoch: u64) {
        if epoch != self.store.epoch() {
            // Opened before a restart, whose `store_down` dropped it.
            return;
        }
        let members = std::mem::take(&mut self.batch);
        if members.is_empty() {
            return;
        }
        self.coverage.hit("append_batch_applied");
        if members.len() > 1 {
            self.coverage.hit("append_batch_shared");
        }
        self.log(format_args!("store: batch of {} appends closes", members.len()));
        if self.fault(self.active.append_fail) {
            self.coverage.hit("append_batch_failed_before_commit");
            self.log(format_args!("store: the batch fails before commit; nothing written"));
            for (to, append) in members {
                let error =
                    StoreError::transient(Operation::Append, "injected: batch transaction failed before commit");
                self.respond(to, Response::Append(append.id, Err(error)));
            }
            return;
        }
        let lost = self.fault(self.active.lost_ack);
        let unknown = lost && self.fault(self.active.lost_ack_reports_unknown);
        if lost {
            self.coverage.hit("append_batch_ack_lost");
        }
        let (mut committed_any, mut refused_any) = (false, false);
        self.store.begin_batch();
        for (to, append) in members {
            let (result, committed) = self.apply_append(to, &append);
            committed_any |= committed;
            refused_any |= matches!(result, Err(StoreError::Conflict(_)));
            self.answer_append(to, &append, result, committed, lost.then_some(unknown));
        }
        self.store.end_batch();
        if committed_any && refused_any {
            self.coverage.hit("append_batch_conflict_alone");
        }
    }

    /// Applies one append to the store, logs it, and judges the commit at
    /// once; answers whether it committed.
    fn apply_append(
        &mut self,
        to: Endpoint,
        append: &crate::exec::Sent<eventcore::AppendRequest>,
    ) -> (Result<eventcore::AppendReceipt, StoreError>, bool) {
        let before = self.store.last_position().get() as usize;
        let result = self.store.append(append);
        let after = self.store.last_position().get() as usize;
        let committed = after > before;
        match &result {
            Ok(receipt) => self.log(format_args!(
                "{to} store: append {} {} at positions {}..={}",
                append.id,
                if receipt.deduplicated {
                    "deduplicated, first committed"
                } else {
                    "committed"
                },
                receipt
                    .streams
                    .iter()
                    .flat_map(|s| s.positions.first())
                    .min()
                    .map_or(0, |p| p.get()),
                receipt.last_position()
            )),
            Err(error) => self.log(format_args!("{to} store: append {} refused: {error}", append.id)),
        }
        if committed {
            self.notify_subscribers();
            let events = self.store.data().events()[before..after].to_vec();
            self.check_committed_personal(&events);
        }
        if committed && append.streams.iter().any(|s| s.tombstone) {
            self.coverage.hit("tombstone_written");
        }
        if let Some(receipt) = result.as_ref().ok().filter(|r| r.deduplicated) {
            // A re-sent ending append answered with its original receipt.
            let data = self.store.data();
            if receipt
                .streams
                .iter()
                .any(|s| data.deleted_at(&s.stream) == Some(s.last_version))
            {
                self.coverage.hit("tombstone_append_deduplicated");
            }
        }
        if matches!(result, Err(StoreError::StreamDeleted(_))) {
            self.coverage.hit("tombstone_refused_write");
        }
        // The continuous check: every store step is judged at once, so a
        // violation is reported at the step that caused it.
        let seen = self.checker.violations().len();
        let attempt = crate::history::Attempt::of(append);
        let data = self.store.data();
        let found = self
            .checker
            .observe_append(&attempt, &result, &data.events()[before..after], |s| data.deleted_at(s));
        if found.len() > seen {
            let first = found[seen].to_string();
            self.log(format_args!("VIOLATION {first}"));
            self.failed = true;
        }
        (result, committed)
    }

    /// Sends an append's answer: as it is, or — when `lost` is
    /// `Some(unknown)` — lost on the way, the client then told that the
    /// outcome is unknown (`true`) or told nothing (`false`). A client whose
    /// append committed may crash before it hears back.
    fn answer_append(
        &mut self,
        to: Endpoint,
        append: &crate::exec::Sent<eventcore::AppendRequest>,
        result: Result<eventcore::AppendReceipt, StoreError>,
        committed: bool,
        lost: Option<bool>,
    ) {
        match lost {
            Some(true) => {
                self.coverage.hit("lost_ack_unknown_reported");
                self.log(format_args!(
                    "{to} ack of {} lost; client told: outcome unknown",
                    append.id
                ));
                let error = StoreError::OutcomeUnknown {
                    operation: Operation::Append,
                    message: "injected: connection lost after commit was sent".to_owned(),
                    source: None,
                };
                self.respond(to, Response::Append(append.id, Err(error)));
            }
            Some(false) => {
                self.coverage.hit("lost_ack_silent");
                self.log(format_args!("{to} ack of {} lost silently", append.id));
            }
            None => self.respond(to, Response::Append(append.id, result)),
        }
        if committed && self.fault(self.active.crash_after_commit) {
            if let Some(client) = to.exec().and_then(|e| self.execs.get(&e)).map(|r| r.client) {
                self.coverage.hit("crash_after_commit");
                self.crash(client, "between commit and acknowledgement");
            }
        }
    }
}
