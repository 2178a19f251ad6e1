//! Replaying parked events through the sink, under the lease: on demand
//! ([`Runner::replay_parked`]) or, while running, the letters an operator
//! asked for ([`DeadLetterStore::request_replay`]).

use super::lease::Hold;
use super::{RunError, Runner, RunnerStatus, Sink};
use crate::{Clock, DeadLetterStore, EventStore, Lease, LeaseStore};
use eventcore::{Batch, ConsumerError, GlobalPosition, HandleError, PoisonCause, RequestId, SubscriptionError, Time};
use std::time::Duration;
use tokio::sync::watch;

/// The outcome of [`Runner::replay_parked`].
///
/// ```
/// use eventcore_tokio::ReplayReport;
/// let nothing = ReplayReport::default();
/// assert!(nothing.replayed.is_empty() && nothing.still_failing.is_empty());
/// ```
#[derive(Debug, Default)]
pub struct ReplayReport {
    /// Positions handled and removed from the dead-letter store.
    pub replayed: Vec<GlobalPosition>,
    /// Letters that failed again and stay parked.
    pub still_failing: Vec<(GlobalPosition, HandleError)>,
}

impl<S: EventStore, K: Sink, L: LeaseStore, D: DeadLetterStore> Runner<S, K, L, D> {
    /// Replays the parked events of this subscription through the sink, in
    /// position order, removing each one that is handled. Takes the lease
    /// (fencing out a stale holder); fails with [`RunError::LeaseHeld`] while
    /// another instance holds it. Run it while this subscription is not
    /// running elsewhere, after fixing the handler or the data.
    ///
    /// A running runner needs no call: it replays the letters an operator
    /// asked for ([`DeadLetterStore::request_replay`], `eventcore
    /// dead-letters replay`) itself, between batches, looking for requests
    /// at most once per poll interval (counted in
    /// [`RunnerStatus::replayed`] and [`RunnerStatus::replay_failed`]).
    pub async fn replay_parked(&mut self) -> Result<ReplayReport, RunError> {
        let lease = match self
            .leases
            .try_acquire(&self.name, &self.holder, self.lease_ttl, self.clock.now())
            .await?
        {
            Some(lease) => lease,
            None => {
                return Err(RunError::LeaseHeld {
                    name: self.name.clone(),
                })
            }
        };
        let result = self.replay_with(&lease).await;
        let _ = self.leases.release(&lease).await;
        result
    }

    async fn replay_with(&mut self, lease: &Lease) -> Result<ReplayReport, RunError> {
        let checkpoint = self
            .sink
            .claim(&self.name, lease.token)
            .await
            .map_err(RunError::Claim)?;
        let mut report = ReplayReport::default();
        for (n, letter) in self.dead_letters.list(&self.name).await?.into_iter().enumerate() {
            let position = letter.event.position;
            let batch = Batch {
                id: RequestId::new(n as u64 + 1),
                events: vec![letter.event],
                // Never moves the checkpoint back (stores keep the maximum).
                checkpoint: checkpoint.max(position),
            };
            match self.sink.replay(&batch).await {
                Ok(()) => {
                    self.dead_letters.remove(&self.name, position).await?;
                    report.replayed.push(position);
                }
                Err(error) => report.still_failing.push((position, error)),
            }
        }
        Ok(report)
    }
}

/// Replays of letters an operator asked for
/// ([`DeadLetterStore::request_replay`]), done by the running runner
/// through its own sink, under its lease, between batches.
pub(super) struct RequestedReplays<'a, D, L> {
    pub(super) name: &'a str,
    pub(super) dead_letters: &'a D,
    pub(super) leases: &'a L,
    pub(super) status: &'a watch::Sender<RunnerStatus>,
    pub(super) clock: Clock,
    /// How often to look for requests (the policy's poll interval).
    pub(super) every: Duration,
    /// At most this many letters per look, so that shutdown and the
    /// machine's work are not held up by a long list.
    pub(super) limit: usize,
    /// When to look next.
    pub(super) next: Time,
}

impl<D: DeadLetterStore, L: LeaseStore> RequestedReplays<'_, D, L> {
    /// Whether it is time to look for requests.
    pub(super) fn due(&self) -> bool {
        self.clock.now() >= self.next
    }

    /// Looks for requested letters and replays up to `limit` of them
    /// through `sink` (handled: removed; failed as poison or permanently:
    /// left parked with the request cleared and the new cause; failed
    /// transiently: left requested, tried at the next look). A failing
    /// dead-letter store is logged and tried again at the next look; a
    /// fenced sink or a lost lease ends the run.
    pub(super) async fn run<K: Sink>(
        &mut self,
        sink: &mut K,
        checkpoint: GlobalPosition,
        hold: &mut Hold,
    ) -> Result<(), RunError> {
        let name = self.name;
        self.next = self.clock.now().saturating_add(self.every);
        let letters = match self.dead_letters.replay_requested(name).await {
            Ok(letters) => letters,
            Err(error) => {
                tracing::warn!(subscription = %name, error = &error as &dyn std::error::Error, "looking for requested dead-letter replays failed");
                return Ok(());
            }
        };
        if letters.is_empty() {
            return Ok(());
        }
        let more = letters.len() > self.limit;
        tracing::info!(subscription = %name, requested = letters.len(), "replaying requested dead letters");
        for (n, letter) in letters.into_iter().take(self.limit).enumerate() {
            if self.clock.now() >= hold.wake_at() {
                hold.on_wake(self.leases, self.clock).await?;
            }
            let position = letter.event.position;
            let mut poison = letter.poison.clone();
            let batch = Batch {
                id: RequestId::new(n as u64 + 1),
                events: vec![letter.event],
                // Never moves the checkpoint (stores keep the maximum).
                checkpoint,
            };
            let failure = match sink.replay(&batch).await {
                Ok(()) => {
                    match self.dead_letters.remove(name, position).await {
                        // More than one look's worth, and this one got
                        // somewhere: look again right after the machine
                        // has had its turn.
                        Ok(_) if more => self.next = self.clock.now(),
                        Ok(_) => {}
                        // Handled but still parked: replayed again on the
                        // next look (at least once, as every delivery).
                        Err(error) => {
                            tracing::warn!(subscription = %name, %position, error = &error as &dyn std::error::Error, "a replayed dead letter could not be removed");
                        }
                    }
                    tracing::info!(subscription = %name, %position, "replayed a requested dead letter");
                    self.status.send_modify(|s| s.replayed += 1);
                    continue;
                }
                Err(HandleError::Poison(again)) => again.cause,
                Err(HandleError::Consumer(ConsumerError::Transient(message))) => {
                    tracing::warn!(subscription = %name, %position, %message, "replaying a requested dead letter failed transiently; trying again later");
                    self.next = self.clock.now().saturating_add(self.every);
                    return Ok(());
                }
                Err(HandleError::Consumer(ConsumerError::Permanent(message))) => PoisonCause::Handler(message),
                Err(HandleError::Consumer(fenced @ ConsumerError::Fenced(_))) => {
                    return Err(RunError::Subscription(SubscriptionError::Consumer {
                        attempts: 1,
                        last: fenced,
                    }))
                }
                Err(other) => PoisonCause::Handler(other.to_string()),
            };
            poison.cause = failure;
            tracing::warn!(subscription = %name, %position, poison = %poison, "a requested dead-letter replay failed again; the letter stays parked");
            self.status.send_modify(|s| s.replay_failed += 1);
            match self.dead_letters.replay_failed(name, &poison).await {
                Ok(_) if more => self.next = self.clock.now(),
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(subscription = %name, %position, error = &error as &dyn std::error::Error, "recording a failed dead-letter replay failed");
                }
            }
        }
        Ok(())
    }
}
