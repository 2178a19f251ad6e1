//! Poison events: isolating the failing event, retrying it alone with
//! backoff, then parking it or stopping.

use super::consumer::ConsumerPhase;
use super::{PoisonAction, PoisonEvent, SubscriptionError, SubscriptionMachine};
use crate::{GlobalPosition, Time};

#[derive(Debug, Clone, Copy)]
pub(super) struct Suspect {
    pub(super) position: GlobalPosition,
    /// Failed tries of the event alone.
    pub(super) attempts: u32,
    /// Not before this time.
    pub(super) retry_at: Time,
}

impl SubscriptionMachine {
    pub(super) fn poisoned(&mut self, poison: PoisonEvent, len: usize) {
        self.stats.poison_failures += 1;
        let len = len.min(self.buffer.len());
        let index = self.buffer.iter().take(len).position(|e| e.position == poison.position);
        let Some(index) = index else {
            // The consumer blamed an event that is not in the batch: a bug
            // in the consumer. Blame the batch's first event instead of
            // guessing, so nothing is skipped.
            let blamed = match self.buffer.front() {
                Some(first) => PoisonEvent {
                    position: first.position,
                    stream: first.stream_id.clone(),
                    version: first.version,
                    event_type: first.event_type.clone(),
                    cause: poison.cause,
                },
                None => poison,
            };
            self.stop(SubscriptionError::Poison(blamed));
            return;
        };
        if index > 0 || len > 1 {
            // Isolate: the events before it go again as their own batch,
            // then the event alone. This failure does not count.
            self.suspect = Some(Suspect {
                position: poison.position,
                attempts: 0,
                retry_at: self.now,
            });
            return;
        }
        let attempts = match self.suspect {
            Some(s) if s.position == poison.position => s.attempts + 1,
            _ => 1,
        };
        if attempts < self.policy.poison.attempts.max(1) {
            let retry_at = self.backoff(attempts);
            self.suspect = Some(Suspect {
                position: poison.position,
                attempts,
                retry_at,
            });
            return;
        }
        match self.policy.poison.then {
            PoisonAction::Stop => self.stop(SubscriptionError::Poison(poison)),
            PoisonAction::Park => {
                let id = self.new_request_id();
                self.consumer = ConsumerPhase::Parking { id };
                self.pending_park = Some((id, poison));
            }
        }
    }
}
