//! The lease machine's state, its inputs and `poll`.

use super::{LeaseFailure, LeasePolicy, LeaseStep, LeaseToken};
use crate::entropy::Entropy;
use crate::{RequestId, RequestIds, Time};

/// One instance's hold on a lease. See the module docs for the flow.
///
/// ```
/// use eventcore::*;
/// use std::time::Duration;
/// let ttl = Duration::from_secs(3);
/// let t0 = Time::from_unix_millis(1_000);
/// let mut lease = LeaseMachine::new(LeasePolicy::new(ttl), t0, 7);
/// let LeaseStep::Acquire { id, .. } = lease.poll() else { panic!("acquires first") };
/// lease.on_acquired(id, Ok(Some(LeaseToken::new(4))), t0);
/// assert_eq!(lease.poll(), LeaseStep::Held { token: LeaseToken::new(4), valid_until: t0.saturating_add(ttl) });
/// assert_eq!(lease.token(), Some(LeaseToken::new(4)));
/// let LeaseStep::Wait { until } = lease.poll() else { panic!("then waits to renew") };
/// assert_eq!(until, t0.saturating_add(Duration::from_secs(1)));
/// // Nobody answers the renewals: the validity passes by the machine's clock.
/// lease.on_wake(t0.saturating_add(ttl));
/// assert_eq!(lease.poll(), LeaseStep::Lost { token: LeaseToken::new(4) });
/// assert_eq!(lease.token(), None);
/// ```
#[derive(Debug)]
pub struct LeaseMachine {
    policy: LeasePolicy,
    entropy: Entropy,
    now: Time,
    request_ids: RequestIds,
    phase: Phase,
    /// Transient acquisition failures in a row.
    failures: u32,
    /// Someone else held the lease at the last attempt.
    standby: bool,
    /// The tenure began and `Held` was not returned yet.
    announce: bool,
    end: Option<LeaseStep>,
    finished: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Acquire at `at`.
    Idle {
        at: Time,
    },
    Acquiring {
        id: RequestId,
        sent: Time,
        deadline: Time,
    },
    Held(Tenure),
    Renewing {
        tenure: Tenure,
        id: RequestId,
        sent: Time,
        deadline: Time,
    },
    Over,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tenure {
    token: LeaseToken,
    valid_until: Time,
    renew_at: Time,
}

impl LeaseMachine {
    /// A machine that will try to acquire at once. `seed` is the only
    /// source of its randomness (backoff jitter).
    pub fn new(policy: LeasePolicy, now: Time, seed: u64) -> Self {
        LeaseMachine {
            policy,
            entropy: Entropy::new(seed),
            now,
            request_ids: RequestIds::default(),
            phase: Phase::Idle { at: now },
            failures: 0,
            standby: false,
            announce: false,
            end: None,
            finished: false,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &LeasePolicy {
        &self.policy
    }

    /// The token of the tenure held now, valid at the last input's time:
    /// the fence every write of the tenure carries. `None` while not held.
    pub fn token(&self) -> Option<LeaseToken> {
        self.tenure().map(|t| t.token)
    }

    /// Until when the tenure held now is valid on the machine's clock.
    pub fn valid_until(&self) -> Option<Time> {
        self.tenure().map(|t| t.valid_until)
    }

    /// True while someone else holds the lease (the last attempt found it
    /// taken).
    pub fn is_standby(&self) -> bool {
        self.standby && matches!(self.phase, Phase::Idle { .. } | Phase::Acquiring { .. })
    }

    /// True once a terminal step is due or was returned.
    pub fn is_over(&self) -> bool {
        matches!(self.phase, Phase::Over)
    }

    fn tenure(&self) -> Option<Tenure> {
        match self.phase {
            Phase::Held(t) | Phase::Renewing { tenure: t, .. } => Some(t),
            _ => None,
        }
    }

    /// What to do next. Call it until it returns [`LeaseStep::Wait`] or a
    /// terminal step.
    pub fn poll(&mut self) -> LeaseStep {
        if let Some(end) = self.end.take() {
            self.finished = true;
            return end;
        }
        match self.phase {
            Phase::Over => LeaseStep::Finished,
            Phase::Idle { at } if at <= self.now => {
                let id = self.request_id();
                let deadline = self.now.saturating_add(self.policy.request_timeout);
                self.phase = Phase::Acquiring {
                    id,
                    sent: self.now,
                    deadline,
                };
                LeaseStep::Acquire { id, deadline }
            }
            Phase::Idle { at } => LeaseStep::Wait { until: at },
            Phase::Acquiring { deadline, .. } => LeaseStep::Wait { until: deadline },
            Phase::Held(tenure) if self.announce => {
                self.announce = false;
                LeaseStep::Held {
                    token: tenure.token,
                    valid_until: tenure.valid_until,
                }
            }
            Phase::Held(tenure) if tenure.renew_at <= self.now => {
                let id = self.request_id();
                let deadline = self
                    .now
                    .saturating_add(self.policy.request_timeout)
                    .min(tenure.valid_until);
                self.phase = Phase::Renewing {
                    tenure,
                    id,
                    sent: self.now,
                    deadline,
                };
                LeaseStep::Renew {
                    id,
                    token: tenure.token,
                    deadline,
                }
            }
            Phase::Held(tenure) => LeaseStep::Wait {
                until: tenure.renew_at.min(tenure.valid_until),
            },
            Phase::Renewing { tenure, deadline, .. } => LeaseStep::Wait {
                until: deadline.min(tenure.valid_until),
            },
        }
    }

    /// The answer to [`LeaseStep::Acquire`] `id`: the tenure's token,
    /// `None` when someone else holds the lease, or the failure.
    pub fn on_acquired(&mut self, id: RequestId, result: Result<Option<LeaseToken>, LeaseFailure>, now: Time) {
        self.observe(now);
        let Phase::Acquiring { id: expected, sent, .. } = self.phase else {
            return;
        };
        if id != expected {
            return;
        }
        match result {
            Ok(Some(token)) => {
                self.failures = 0;
                self.standby = false;
                let valid_until = sent.saturating_add(self.policy.ttl);
                if valid_until <= self.now {
                    // Won, but so late that the tenure already lapsed by our
                    // clock: ask again at once (the store extends it if it is
                    // still ours).
                    self.phase = Phase::Idle { at: self.now };
                    return;
                }
                self.announce = true;
                self.phase = Phase::Held(Tenure {
                    token,
                    valid_until,
                    renew_at: self.renew_at(self.policy.renew_every, valid_until),
                });
            }
            Ok(None) => {
                self.failures = 0;
                self.standby = true;
                self.phase = Phase::Idle {
                    at: self.now.saturating_add(self.policy.standby_retry),
                };
            }
            Err(LeaseFailure::Transient(_) | LeaseFailure::Lost) => self.acquire_failed(),
            Err(LeaseFailure::Permanent(message)) => self.over(LeaseStep::Failed(message)),
        }
    }

    /// The answer to [`LeaseStep::Renew`] `id`.
    pub fn on_renewed(&mut self, id: RequestId, result: Result<(), LeaseFailure>, now: Time) {
        self.observe(now);
        let Phase::Renewing {
            tenure,
            id: expected,
            sent,
            ..
        } = self.phase
        else {
            return;
        };
        if id != expected {
            return;
        }
        match result {
            Ok(()) => {
                let valid_until = sent.saturating_add(self.policy.ttl).max(tenure.valid_until);
                self.phase = Phase::Held(Tenure {
                    valid_until,
                    renew_at: self.renew_at(self.policy.renew_every, valid_until),
                    ..tenure
                });
            }
            Err(LeaseFailure::Transient(_)) => self.renew_failed(tenure),
            Err(LeaseFailure::Lost) => self.over(LeaseStep::Lost { token: tenure.token }),
            Err(LeaseFailure::Permanent(message)) => self.over(LeaseStep::Failed(message)),
        }
    }

    /// Time passed: a wait ended or a request's deadline came.
    pub fn on_wake(&mut self, now: Time) {
        self.observe(now);
        match self.phase {
            Phase::Acquiring { deadline, .. } if deadline <= self.now => self.acquire_failed(),
            Phase::Renewing { tenure, deadline, .. } if deadline <= self.now => self.renew_failed(tenure),
            _ => {}
        }
    }

    /// Stop: the next poll returns [`LeaseStep::Stopped`] with the tenure to
    /// release (if one is held).
    pub fn on_shutdown(&mut self, now: Time) {
        self.observe(now);
        if !self.is_over() {
            let token = self.token();
            self.over(LeaseStep::Stopped { token });
        }
    }

    /// Moves the clock; a tenure whose validity passed is lost.
    fn observe(&mut self, now: Time) {
        self.now = self.now.max(now);
        if let Some(tenure) = self.tenure() {
            if tenure.valid_until <= self.now {
                self.over(LeaseStep::Lost { token: tenure.token });
            }
        }
    }

    fn acquire_failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let wait = self.policy.retry.jittered_backoff(self.failures, &mut self.entropy);
        self.phase = Phase::Idle {
            at: self.now.saturating_add(wait),
        };
    }

    fn renew_failed(&mut self, tenure: Tenure) {
        if tenure.valid_until <= self.now {
            self.over(LeaseStep::Lost { token: tenure.token });
            return;
        }
        self.phase = Phase::Held(Tenure {
            renew_at: self.renew_at(self.policy.renew_retry, tenure.valid_until),
            ..tenure
        });
    }

    /// `after` from now, but before the tenure lapses.
    fn renew_at(&self, after: std::time::Duration, valid_until: Time) -> Time {
        self.now.saturating_add(after).min(valid_until)
    }

    fn over(&mut self, end: LeaseStep) {
        if matches!(self.phase, Phase::Over) || self.finished {
            return;
        }
        self.phase = Phase::Over;
        self.announce = false;
        self.end = Some(end);
    }

    fn request_id(&mut self) -> RequestId {
        self.request_ids.next_id()
    }
}
