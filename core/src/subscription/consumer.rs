//! The consumer side: delivering batches, saving checkpoints, parking, and
//! backoff after consumer failures.

use super::fetch::FetchPhase;
use super::{
    Batch, CheckpointMode, ConsumerError, HandleError, SubscriptionError, SubscriptionMachine, SubscriptionStep,
};
use crate::{GlobalPosition, RecordedEvent, RequestId, Time};

#[derive(Debug)]
pub(super) enum ConsumerPhase {
    Idle,
    Delivering {
        id: RequestId,
        len: usize,
        checkpoint: GlobalPosition,
    },
    Saving {
        id: RequestId,
        position: GlobalPosition,
    },
    Parking {
        id: RequestId,
    },
    Backoff {
        until: Time,
    },
}

impl SubscriptionMachine {
    /// Reports that the consumer handled (`Ok`) or failed the batch with
    /// this id. Answers to anything but the batch in flight are ignored.
    pub fn on_handled(&mut self, id: RequestId, result: Result<(), HandleError>, now: Time) {
        self.observe(now);
        let (len, checkpoint) = match self.consumer {
            ConsumerPhase::Delivering {
                id: pending,
                len,
                checkpoint,
            } if pending == id && self.outcome.is_none() => (len, checkpoint),
            _ => {
                self.stats.ignored_responses += 1;
                return;
            }
        };
        self.consumer = ConsumerPhase::Idle;
        match result {
            Ok(()) => {
                let len = len.min(self.buffer.len());
                for event in self.buffer.drain(..len) {
                    self.handled_through = event.position;
                }
                if self.suspect.is_some_and(|s| s.position <= self.handled_through) {
                    self.suspect = None;
                }
                self.consumer_failures = 0;
                self.stats.batches += 1;
                self.stats.events += len as u64;
                match self.policy.checkpoint {
                    CheckpointMode::WithBatch => {
                        self.saved = self.saved.max(checkpoint);
                        self.stats.checkpoints += 1;
                    }
                    CheckpointMode::AfterBatch => {
                        let id = self.new_request_id();
                        self.consumer = ConsumerPhase::Saving {
                            id,
                            position: checkpoint,
                        };
                        self.pending_save = Some((id, checkpoint));
                    }
                }
            }
            Err(HandleError::Consumer(error)) => self.consumer_failed(error),
            Err(HandleError::Poison(poison)) => self.poisoned(poison, len),
        }
    }

    /// Reports the outcome of a checkpoint save.
    pub fn on_checkpoint_saved(&mut self, id: RequestId, result: Result<(), ConsumerError>, now: Time) {
        self.observe(now);
        let position = match self.consumer {
            ConsumerPhase::Saving { id: pending, position } if pending == id && self.outcome.is_none() => position,
            _ => {
                self.stats.ignored_responses += 1;
                return;
            }
        };
        self.consumer = ConsumerPhase::Idle;
        match result {
            Ok(()) => {
                self.consumer_failures = 0;
                self.saved = self.saved.max(position);
                self.stats.checkpoints += 1;
            }
            Err(error) => self.consumer_failed(error),
        }
    }

    /// Reports the outcome of parking the poison event.
    pub fn on_parked(&mut self, id: RequestId, result: Result<(), ConsumerError>, now: Time) {
        self.observe(now);
        match self.consumer {
            ConsumerPhase::Parking { id: pending } if pending == id && self.outcome.is_none() => {}
            _ => {
                self.stats.ignored_responses += 1;
                return;
            }
        }
        self.consumer = ConsumerPhase::Idle;
        match result {
            Ok(()) => {
                self.consumer_failures = 0;
                if let Some(event) = self.buffer.pop_front() {
                    self.handled_through = event.position;
                }
                self.suspect = None;
                self.stats.parked += 1;
            }
            Err(error) => self.consumer_failed(error),
        }
    }

    pub(super) fn consumer_failed(&mut self, error: ConsumerError) {
        self.consumer_failures = self.consumer_failures.saturating_add(1);
        if !error.is_retryable() || self.consumer_failures >= self.policy.retry.max_attempts.max(1) {
            self.stop(SubscriptionError::Consumer {
                attempts: self.consumer_failures,
                last: error,
            });
            return;
        }
        self.stats.transient_errors += 1;
        let until = self.backoff(self.consumer_failures);
        self.consumer = ConsumerPhase::Backoff { until };
    }

    pub(super) fn poll_consumer(&mut self) -> Option<SubscriptionStep> {
        if let Some((id, position)) = self.pending_save.take() {
            return Some(SubscriptionStep::SaveCheckpoint { id, position });
        }
        if let Some((id, poison)) = self.pending_park.take() {
            let event = self.buffer.front().cloned()?;
            return Some(SubscriptionStep::Park { id, event, poison });
        }
        if !matches!(self.consumer, ConsumerPhase::Idle) {
            return None;
        }
        if !self.shutting_down {
            if let Some(batch) = self.next_batch() {
                return Some(SubscriptionStep::Deliver(batch));
            }
        }
        // Nothing to deliver now: save the checkpoint if it is behind and
        // either the subscription is idle (caught up, or waiting on a
        // poison retry) or it is shutting down.
        let safe = self.safe_through();
        let idle = self.shutting_down || self.buffer.is_empty() && matches!(self.fetch, FetchPhase::CaughtUp { .. });
        if safe > self.saved && idle {
            let id = self.new_request_id();
            self.consumer = ConsumerPhase::Saving { id, position: safe };
            return Some(SubscriptionStep::SaveCheckpoint { id, position: safe });
        }
        None
    }

    pub(super) fn next_batch(&mut self) -> Option<Batch> {
        let first = self.buffer.front()?;
        let max = self.policy.batch_size.get() as usize;
        let len = match self.suspect {
            Some(s) if first.position == s.position => {
                if self.now < s.retry_at {
                    return None;
                }
                1
            }
            Some(s) if first.position < s.position => self
                .buffer
                .iter()
                .take(max)
                .take_while(|e| e.position < s.position)
                .count(),
            _ => self.buffer.len().min(max),
        };
        let events: Vec<RecordedEvent> = self.buffer.iter().take(len).cloned().collect();
        debug_assert!(events.first().is_some_and(|e| e.position > self.handled_through));
        let checkpoint = match self.buffer.get(len) {
            Some(next) => GlobalPosition::new(next.position.get().saturating_sub(1)),
            None => self.fetched_through,
        };
        let id = self.new_request_id();
        self.consumer = ConsumerPhase::Delivering { id, len, checkpoint };
        Some(Batch { id, events, checkpoint })
    }

    pub(super) fn consumer_deadline(&self) -> Option<Time> {
        match self.consumer {
            ConsumerPhase::Backoff { until } => Some(until),
            ConsumerPhase::Idle => match (self.suspect, self.buffer.front()) {
                (Some(s), Some(first)) if first.position == s.position && s.retry_at > self.now => Some(s.retry_at),
                _ => None,
            },
            _ => None,
        }
    }
}
