//! Replaying parked events through the sink, under the lease.

use super::{RunError, Runner, Sink};
use crate::{DeadLetterStore, EventStore, Lease, LeaseStore};
use eventcore::{Batch, GlobalPosition, HandleError, RequestId};

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
