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

    fn serve_read(&mut self, to: Endpoint, read: eventcore::ReadRequest) {
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

    fn serve_append(&mut self, to: Endpoint, append: eventcore::AppendRequest) {
        if self.fault(self.active.append_fail) {
            self.coverage.hit("append_failed_before_commit");
            self.log(format_args!("{to} store: append {} fails before commit", append.id));
            let error = StoreError::transient(Operation::Append, "injected: connection reset before commit");
            self.respond(to, Response::Append(append.id, Err(error)));
            return;
        }
        let before = self.store.last_position().get() as usize;
        let result = self.store.append(&append);
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
            // The continuous check: every store step is judged at once, so
            // a violation is reported at the step that caused it.
            let seen = self.checker.violations().len();
            let attempt = crate::history::Attempt::of(&append);
            let found = self
                .checker
                .observe_commit(&attempt, &self.store.data().events()[before..after]);
            if found.len() > seen {
                let first = found[seen].to_string();
                self.log(format_args!("VIOLATION {first}"));
                self.failed = true;
            }
        }
        if result.is_ok() && self.fault(self.active.lost_ack) {
            if self.fault(self.active.lost_ack_reports_unknown) {
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
            } else {
                self.coverage.hit("lost_ack_silent");
                self.log(format_args!("{to} ack of {} lost silently", append.id));
            }
        } else {
            self.respond(to, Response::Append(append.id, result));
        }
        if committed && self.fault(self.active.crash_after_commit) {
            if let Some(client) = to.exec().and_then(|e| self.execs.get(&e)).map(|r| r.client) {
                self.coverage.hit("crash_after_commit");
                self.crash(client, "between commit and acknowledgement");
            }
        }
    }
}
