//! What the lease machine asks of its driver, and the answers it takes.

#[cfg(doc)]
use super::LeaseMachine;
use crate::{RequestId, Time};
use std::fmt;

/// The fencing token of one tenure: it grows every time the lease changes
/// hands, and stores accept writes only from the newest. Drivers convert it
/// to and from their lease store's token type.
///
/// ```
/// use eventcore::LeaseToken;
/// assert!(LeaseToken::new(2) > LeaseToken::new(1));
/// assert_eq!(LeaseToken::new(7).get(), 7);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LeaseToken(u64);

impl LeaseToken {
    /// Wraps a raw token.
    pub const fn new(raw: u64) -> Self {
        LeaseToken(raw)
    }

    /// The raw token.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fence#{}", self.0)
    }
}

/// Why a lease-store request failed, as the machine needs to know it.
///
/// ```
/// use eventcore::LeaseFailure;
/// assert!(LeaseFailure::Transient("timeout".into()).is_transient());
/// assert!(!LeaseFailure::Lost.is_transient());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseFailure {
    /// A passing failure (connection lost, timeout); try again.
    Transient(String),
    /// The lease changed hands (only a renewal can answer this).
    Lost,
    /// A failure retrying will not fix.
    Permanent(String),
}

impl LeaseFailure {
    /// True for [`LeaseFailure::Transient`].
    pub fn is_transient(&self) -> bool {
        matches!(self, LeaseFailure::Transient(_))
    }
}

/// What the driver should do next.
///
/// ```
/// use eventcore::*;
/// use std::time::Duration;
/// let mut lease = LeaseMachine::new(LeasePolicy::new(Duration::from_secs(3)), Time::ZERO, 1);
/// assert!(matches!(lease.poll(), LeaseStep::Acquire { .. }));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseStep {
    /// Try to take the lease (for the policy's TTL); report with
    /// [`LeaseMachine::on_acquired`], or call [`LeaseMachine::on_wake`] at
    /// `deadline` if no answer came.
    Acquire {
        /// Correlates the answer.
        id: RequestId,
        /// When to give up on the answer.
        deadline: Time,
    },
    /// Extend the tenure of `token`; report with [`LeaseMachine::on_renewed`],
    /// or call [`LeaseMachine::on_wake`] at `deadline` if no answer came.
    Renew {
        /// Correlates the answer.
        id: RequestId,
        /// The tenure to extend.
        token: LeaseToken,
        /// When to give up on the answer.
        deadline: Time,
    },
    /// The lease is ours: a new tenure begins. Returned once per tenure;
    /// writes of the tenure carry `token`.
    Held {
        /// The tenure's fencing token.
        token: LeaseToken,
        /// Valid until then on the machine's clock, unless renewed.
        valid_until: Time,
    },
    /// Nothing to start now. Call [`LeaseMachine::on_wake`] at `until`
    /// unless an answer comes first.
    Wait {
        /// When to wake the machine.
        until: Time,
    },
    /// The tenure of `token` ended without a shutdown: a renewal was refused
    /// or the validity passed by the machine's clock. Stop writing; the
    /// driver may start a new machine to compete again. Terminal.
    Lost {
        /// The tenure that ended.
        token: LeaseToken,
    },
    /// A permanent lease-store failure. Terminal.
    Failed(String),
    /// Shut down ([`LeaseMachine::on_shutdown`]); `token` is the tenure to
    /// release, if one was held. Terminal.
    Stopped {
        /// The tenure to give up.
        token: Option<LeaseToken>,
    },
    /// The terminal step was already returned.
    Finished,
}
