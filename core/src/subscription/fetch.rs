//! Reading the global log: fetch requests, checking and buffering the
//! answers, catching up, timeouts and fetch backoff.

use super::machine::SKIPPED_KEPT;
use super::{SubscriptionError, SubscriptionMachine, SubscriptionStep};
use crate::store::{Operation, ReadAllRequest, ReadAllResponse, StoreError};
use crate::{GlobalPosition, RequestId, Time};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FetchPhase {
    Due,
    InFlight { id: RequestId, deadline: Time },
    Backoff { until: Time },
    CaughtUp { until: Time },
}

impl SubscriptionMachine {
    /// Reports the answer to a fetch. Answers to anything but the fetch in
    /// flight are ignored.
    pub fn on_fetched(&mut self, id: RequestId, result: Result<ReadAllResponse, StoreError>, now: Time) {
        self.observe(now);
        match self.fetch {
            FetchPhase::InFlight { id: pending, .. } if pending == id && !self.stopping() => {}
            _ => {
                self.stats.ignored_responses += 1;
                return;
            }
        }
        let response = match result {
            Ok(response) => response,
            Err(error) if error.is_retryable() => {
                self.fetch_failed(error);
                return;
            }
            Err(error) => {
                self.stop(SubscriptionError::Store(error));
                return;
            }
        };
        let after = self.fetched_through;
        if let Err(message) = self.check_response(after, &response) {
            self.stop(SubscriptionError::Store(StoreError::ContractViolation {
                operation: Operation::ReadAll,
                message,
            }));
            return;
        }
        self.fetch_failures = 0;
        // Ranges removed below the reader: it moves past them like past
        // filtered-out events (positions never change), and counts them.
        for range in response.removed {
            if range.last_position <= after {
                continue;
            }
            self.stats.removed_ranges_skipped += 1;
            self.stats.removed_events_skipped += range.events();
            if self.skipped.len() < SKIPPED_KEPT {
                self.skipped.push(range);
            }
        }
        let returned = response.events.len();
        for event in response.events {
            if event.position <= self.fetched_through {
                self.stats.duplicates_dropped += 1;
                continue;
            }
            self.fetched_through = event.position;
            self.buffer.push_back(event);
        }
        self.fetched_through = self.fetched_through.max(response.complete_through);
        self.stats.max_buffered = self.stats.max_buffered.max(self.buffer.len());
        let full = returned >= self.policy.batch_size.get() as usize;
        if full || std::mem::take(&mut self.notified_in_flight) {
            self.fetch = FetchPhase::Due;
        } else {
            let wait = if self.fetched_through < self.known_head {
                self.policy.held_back_retry
            } else {
                self.policy.poll_interval
            };
            self.fetch = FetchPhase::CaughtUp {
                until: self.now.saturating_add(wait),
            };
        }
    }

    pub(super) fn fetch_failed(&mut self, error: StoreError) {
        self.stats.transient_errors += 1;
        self.fetch_failures = self.fetch_failures.saturating_add(1);
        if self.fetch_failures >= self.policy.retry.max_attempts.max(1) {
            self.stop(SubscriptionError::FetchRetriesExhausted {
                attempts: self.fetch_failures,
                last: error,
            });
            return;
        }
        let until = self.backoff(self.fetch_failures);
        self.fetch = FetchPhase::Backoff { until };
    }

    pub(super) fn check_response(&self, after: GlobalPosition, response: &ReadAllResponse) -> Result<(), String> {
        if response.complete_through < after {
            return Err(format!(
                "complete_through {} is below the requested position {after}",
                response.complete_through
            ));
        }
        if response.events.len() > self.policy.batch_size.get() as usize {
            return Err(format!(
                "asked for at most {} events, got {}",
                self.policy.batch_size,
                response.events.len()
            ));
        }
        if let Some(range) = response
            .removed
            .iter()
            .find(|r| r.last_position > response.complete_through)
        {
            return Err(format!(
                "removed range {range} ends beyond complete_through {}",
                response.complete_through
            ));
        }
        let mut previous: Option<GlobalPosition> = None;
        for event in &response.events {
            if previous.is_some_and(|p| event.position <= p) {
                return Err(format!("positions not increasing at {}", event.position));
            }
            if event.position > response.complete_through {
                return Err(format!(
                    "event at {} is beyond complete_through {}",
                    event.position, response.complete_through
                ));
            }
            if !self.filter.matches(event) {
                return Err(format!(
                    "event {}@{} (position {}) does not match the filter",
                    event.stream_id, event.version, event.position
                ));
            }
            previous = Some(event.position);
        }
        Ok(())
    }

    pub(super) fn poll_fetch(&mut self) -> Option<SubscriptionStep> {
        if self.fetch != FetchPhase::Due {
            return None;
        }
        let room = self.policy.effective_buffer_limit().saturating_sub(self.buffer.len());
        if room < self.policy.batch_size.get() as usize {
            return None;
        }
        let id = self.new_request_id();
        let deadline = self.now.saturating_add(self.policy.fetch_timeout);
        self.fetch = FetchPhase::InFlight { id, deadline };
        self.stats.fetches += 1;
        Some(SubscriptionStep::Fetch {
            id,
            deadline,
            request: ReadAllRequest {
                after: self.fetched_through,
                limit: self.policy.batch_size,
                filter: self.filter.clone(),
            },
        })
    }

    pub(super) fn fetch_deadline(&self) -> Option<Time> {
        match self.fetch {
            FetchPhase::InFlight { deadline, .. } => Some(deadline),
            FetchPhase::Backoff { until } | FetchPhase::CaughtUp { until } => Some(until),
            FetchPhase::Due => None,
        }
    }
}
