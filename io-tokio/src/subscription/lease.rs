//! Holding the lease: the driver of the core's [`LeaseMachine`]. Standby
//! until the lease is ours, then renewal while the subscription runs; the
//! machine decides when to try, when to renew and when the lease is lost,
//! this file only talks to the [`LeaseStore`] and converts its values.

use super::runner::mix;
use super::{RunError, Runner, RunnerState, Sink};
use crate::{Clock, DeadLetterStore, EventStore, Lease, LeaseError, LeaseStore};
use eventcore::{LeaseFailure, LeaseMachine, LeasePolicy, LeaseStep, LeaseToken, SubscriptionError, Time};
use std::future::Future;
use std::pin::Pin;

/// A held lease: the machine that keeps it and the store's value of it.
#[derive(Debug)]
pub(super) struct Hold {
    machine: LeaseMachine,
    lease: Lease,
    /// When the machine wants to be woken (to renew, or to notice that the
    /// tenure lapsed).
    wake: Time,
}

impl<S: EventStore, K: Sink, L: LeaseStore, D: DeadLetterStore> Runner<S, K, L, D> {
    /// Waits in standby until the lease is ours; `None` if shut down first.
    pub(super) async fn acquire(
        &mut self,
        shutdown: &mut Pin<&mut (impl Future<Output = ()> + Send)>,
    ) -> Result<Option<Hold>, RunError> {
        let policy = LeasePolicy::new(self.lease_ttl)
            .with_standby_retry(self.standby_retry)
            .with_retry(self.policy.retry.clone());
        let clock = self.clock;
        let mut machine = LeaseMachine::new(policy, clock.now(), mix(self.seed_base ^ self.runs ^ LEASE_SEED));
        let mut won: Option<Lease> = None;
        loop {
            match machine.poll() {
                LeaseStep::Acquire { id, deadline } => {
                    let call = self
                        .leases
                        .try_acquire(&self.name, &self.holder, self.lease_ttl, clock.now());
                    let outcome = tokio::select! {
                        outcome = tokio::time::timeout_at(clock.instant_at(deadline), call) => outcome,
                        () = shutdown.as_mut() => return Ok(None),
                    };
                    let now = clock.now();
                    match outcome {
                        Ok(Ok(Some(lease))) => {
                            let token = LeaseToken::new(lease.token.get());
                            won = Some(lease);
                            machine.on_acquired(id, Ok(Some(token)), now);
                        }
                        Ok(Ok(None)) => {
                            self.update(|s| s.state = RunnerState::Standby);
                            machine.on_acquired(id, Ok(None), now);
                        }
                        Ok(Err(LeaseError::Transient(message))) => {
                            tracing::warn!(subscription = %self.name, %message, "lease store unavailable; retrying");
                            machine.on_acquired(id, Err(LeaseFailure::Transient(message)), now);
                        }
                        Ok(Err(error)) => return Err(error.into()),
                        Err(_elapsed) => {
                            tracing::warn!(subscription = %self.name, "lease acquisition timed out; retrying");
                            machine.on_wake(now);
                        }
                    }
                }
                LeaseStep::Held { token, .. } => {
                    let Some(lease) = won.take().filter(|l| l.token.get() == token.get()) else {
                        return Err(internal("a tenure without the lease that won it"));
                    };
                    let mut hold = Hold {
                        machine,
                        lease,
                        wake: Time::MAX,
                    };
                    hold.settle()?;
                    return Ok(Some(hold));
                }
                LeaseStep::Wait { until } => {
                    tokio::select! {
                        () = tokio::time::sleep_until(clock.instant_at(until)) => machine.on_wake(clock.now()),
                        () = shutdown.as_mut() => return Ok(None),
                    }
                }
                LeaseStep::Failed(message) => return Err(LeaseError::Permanent(message).into()),
                LeaseStep::Renew { .. } | LeaseStep::Lost { .. } | LeaseStep::Stopped { .. } | LeaseStep::Finished => {
                    return Err(internal("the lease machine went on without a tenure"));
                }
            }
        }
    }
}

impl Hold {
    /// The store's value of the lease (its token fences every write).
    pub(super) fn lease(&self) -> &Lease {
        &self.lease
    }

    /// When to call [`Hold::on_wake`].
    pub(super) fn wake_at(&self) -> Time {
        self.wake
    }

    /// The wake came: renews if due (awaited here, bounded by the
    /// machine's deadline). A lease that was lost, or whose validity passed
    /// by this clock, ends the run.
    pub(super) async fn on_wake<L: LeaseStore>(&mut self, leases: &L, clock: Clock) -> Result<(), RunError> {
        self.machine.on_wake(clock.now());
        loop {
            match self.machine.poll() {
                LeaseStep::Renew { id, deadline, .. } => {
                    let ttl = self.machine.policy().ttl;
                    let call = leases.renew(&self.lease, ttl, clock.now());
                    let outcome = tokio::time::timeout_at(clock.instant_at(deadline), call).await;
                    let now = clock.now();
                    match outcome {
                        Ok(Ok(renewed)) => {
                            self.lease = renewed;
                            self.machine.on_renewed(id, Ok(()), now);
                        }
                        Ok(Err(LeaseError::Transient(message))) => {
                            tracing::warn!(subscription = %self.lease.name, %message, "lease renewal failed; retrying");
                            self.machine.on_renewed(id, Err(LeaseFailure::Transient(message)), now);
                        }
                        Ok(Err(LeaseError::Lost { .. })) => self.machine.on_renewed(id, Err(LeaseFailure::Lost), now),
                        Ok(Err(error)) => return Err(error.into()),
                        Err(_elapsed) => {
                            tracing::warn!(subscription = %self.lease.name, "lease renewal timed out; retrying");
                            self.machine.on_wake(now);
                        }
                    }
                }
                step => return self.settled(step),
            }
        }
    }

    /// Polls until the machine waits.
    fn settle(&mut self) -> Result<(), RunError> {
        let step = self.machine.poll();
        self.settled(step)
    }

    fn settled(&mut self, step: LeaseStep) -> Result<(), RunError> {
        match step {
            LeaseStep::Wait { until } => {
                self.wake = until;
                Ok(())
            }
            LeaseStep::Lost { .. } => Err(LeaseError::Lost {
                name: self.lease.name.clone(),
                holder: self.lease.holder.clone(),
            }
            .into()),
            LeaseStep::Failed(message) => Err(LeaseError::Permanent(message).into()),
            LeaseStep::Renew { .. } => Err(internal("a renewal left unsent")),
            LeaseStep::Acquire { .. } | LeaseStep::Held { .. } | LeaseStep::Stopped { .. } | LeaseStep::Finished => {
                Err(internal("the lease machine left its tenure"))
            }
        }
    }
}

/// Keeps the lease machine's jitter apart from the subscription machine's.
const LEASE_SEED: u64 = 0x1ea5_e000_0000_0000;

fn internal(message: &str) -> RunError {
    RunError::Subscription(SubscriptionError::Consumer {
        attempts: 1,
        last: eventcore::ConsumerError::Permanent(format!("runner bug: {message}")),
    })
}
