//! Holding the lease: standby until it is ours, and renewal while it runs.

use super::{RunError, Runner, RunnerState, Sink};
use crate::{Clock, DeadLetterStore, EventStore, Lease, LeaseError, LeaseStore};
use eventcore::Time;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::Instant;

impl<S: EventStore, K: Sink, L: LeaseStore, D: DeadLetterStore> Runner<S, K, L, D> {
    /// Waits in standby until the lease is ours; `None` if shut down first.
    pub(super) async fn acquire(
        &mut self,
        shutdown: &mut Pin<&mut (impl Future<Output = ()> + Send)>,
    ) -> Result<Option<Lease>, RunError> {
        let mut failures = 0u32;
        loop {
            let outcome = self
                .leases
                .try_acquire(&self.name, &self.holder, self.lease_ttl, self.clock.now())
                .await;
            let retry_in = match outcome {
                Ok(Some(lease)) => return Ok(Some(lease)),
                Ok(None) => {
                    self.update(|s| s.state = RunnerState::Standby);
                    self.standby_retry
                }
                Err(LeaseError::Transient(message)) => {
                    failures = failures.saturating_add(1);
                    tracing::debug!(%message, "lease store unavailable");
                    self.policy.retry.backoff_ceiling(failures)
                }
                Err(error) => return Err(error.into()),
            };
            tokio::select! {
                () = tokio::time::sleep(retry_in) => {}
                () = shutdown.as_mut() => return Ok(None),
            }
        }
    }
}

/// How often a held lease is renewed: every third of its TTL.
pub(super) fn renew_every(ttl: Duration) -> Duration {
    (ttl / 3).max(Duration::from_millis(1))
}

/// Renews `lease` at `now` and returns when to renew next: after
/// `renew_every`, or sooner after a transient failure while the lease has
/// not expired. A lease that expired or was lost ends the run.
pub(super) async fn renew<L: LeaseStore>(
    leases: &L,
    lease: &mut Lease,
    ttl: Duration,
    renew_every: Duration,
    clock: Clock,
    now: Time,
) -> Result<Instant, RunError> {
    match leases.renew(lease, ttl, now).await {
        Ok(renewed) => {
            *lease = renewed;
            Ok(Instant::now() + renew_every)
        }
        Err(LeaseError::Transient(message)) if !lease.is_expired(clock.now()) => {
            tracing::debug!(%message, "lease renewal failed; retrying");
            Ok(Instant::now() + (renew_every / 4).max(Duration::from_millis(1)))
        }
        Err(LeaseError::Transient(_)) => Err(LeaseError::Lost {
            name: lease.name.clone(),
            holder: lease.holder.clone(),
        }
        .into()),
        Err(error) => Err(error.into()),
    }
}
