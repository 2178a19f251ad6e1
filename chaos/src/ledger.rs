//! The chaos workload's domain: the examples' bank accounts
//! (`eventcore_examples::bank`), plus owners that link accounts and a
//! discovery command that consolidates an owner's accounts.
//!
//! [`Consolidate`] declares only the owner's stream; reading it discovers
//! the linked accounts, which it then reads too (the dynamic consistency
//! boundary), and it moves a fixed amount from every other linked account
//! that can afford it into the first one — one atomic append over up to
//! five streams, money conserved.
//!
//! The money rules are judged by the simulator's own bank model
//! (`eventcore_sim::workload::bank::BankModel` on the `account-` streams),
//! whose events have the names and shapes of [`AccountEvent`].

use eventcore::{Command, Decision, Event, StreamId};
use eventcore_examples::bank::account;
#[cfg(doc)]
use eventcore_examples::bank::AccountEvent;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Stream-id prefix of owners.
pub const OWNER_PREFIX: &str = "owner-";

/// The stream of owner `n`.
pub fn owner(n: u32) -> StreamId {
    StreamId::new(format!("{OWNER_PREFIX}{n}")).unwrap_or_else(|_| unreachable!("owner-<n> is a valid stream id"))
}

/// The events the ledger commands write or read. The account variants have
/// the names and shapes of [`AccountEvent`], so both decode the same
/// stored events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LedgerEvent {
    /// As [`AccountEvent::Opened`].
    Opened {
        /// Initial balance.
        initial: u64,
    },
    /// As [`AccountEvent::Withdrawn`].
    Withdrawn {
        /// Amount.
        amount: u64,
    },
    /// As [`AccountEvent::Deposited`].
    Deposited {
        /// Amount.
        amount: u64,
    },
    /// An account was linked to the owner whose stream this is.
    Linked {
        /// The account number (stream `account-<n>`).
        account: u32,
    },
}

impl Event for LedgerEvent {}

/// Why a ledger command is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The account is already linked to this owner.
    #[error("account {account} is already linked to `{owner}`")]
    AlreadyLinked {
        /// The owner.
        owner: StreamId,
        /// The account.
        account: u32,
    },
    /// No linked account could contribute.
    #[error("nothing to consolidate for `{0}`")]
    NothingToMove(StreamId),
}

/// Links account `account` to owner stream `owner`.
#[derive(Clone, Debug)]
pub struct Link {
    /// The owner stream.
    pub owner: StreamId,
    /// The account number.
    pub account: u32,
}

impl Command for Link {
    type Event = LedgerEvent;
    type State = Vec<u32>;
    type Error = LedgerError;

    fn streams(&self) -> Vec<StreamId> {
        vec![self.owner.clone()]
    }

    fn apply(&self, linked: &mut Vec<u32>, _: &StreamId, event: &LedgerEvent) {
        if let LedgerEvent::Linked { account } = event {
            linked.push(*account);
        }
    }

    fn decide(&self, linked: &Vec<u32>, out: &mut Decision<LedgerEvent>) -> Result<(), LedgerError> {
        if linked.contains(&self.account) {
            return Err(LedgerError::AlreadyLinked {
                owner: self.owner.clone(),
                account: self.account,
            });
        }
        out.emit(&self.owner, LedgerEvent::Linked { account: self.account });
        Ok(())
    }
}

/// Moves `amount` from every other account linked to `owner` that holds
/// at least that much into the first linked account. Discovers the
/// accounts from the owner stream.
#[derive(Clone, Debug)]
pub struct Consolidate {
    /// The owner stream.
    pub owner: StreamId,
    /// Amount taken from each contributing account.
    pub amount: u64,
}

/// What [`Consolidate`] folds.
#[derive(Clone, Debug, Default)]
pub struct Holdings {
    /// Linked accounts, in link order.
    pub linked: Vec<u32>,
    /// Balance per account stream read so far.
    pub balances: BTreeMap<StreamId, u64>,
}

impl Command for Consolidate {
    type Event = LedgerEvent;
    type State = Holdings;
    type Error = LedgerError;

    fn streams(&self) -> Vec<StreamId> {
        vec![self.owner.clone()]
    }

    fn apply(&self, state: &mut Holdings, stream: &StreamId, event: &LedgerEvent) {
        if stream == &self.owner {
            if let LedgerEvent::Linked { account } = event {
                state.linked.push(*account);
            }
            return;
        }
        let balance = state.balances.entry(stream.clone()).or_default();
        match event {
            LedgerEvent::Opened { initial } => *balance = *initial,
            LedgerEvent::Withdrawn { amount } => *balance = balance.saturating_sub(*amount),
            LedgerEvent::Deposited { amount } => *balance = balance.saturating_add(*amount),
            LedgerEvent::Linked { .. } => {}
        }
    }

    fn decide(&self, state: &Holdings, out: &mut Decision<LedgerEvent>) -> Result<(), LedgerError> {
        let accounts: Vec<StreamId> = state.linked.iter().map(|n| account(*n)).collect();
        let unread: Vec<&StreamId> = accounts.iter().filter(|a| !state.balances.contains_key(*a)).collect();
        if !unread.is_empty() {
            for stream in unread {
                out.read(stream.clone());
            }
            return Ok(());
        }
        let Some((target, others)) = accounts.split_first() else {
            return Err(LedgerError::NothingToMove(self.owner.clone()));
        };
        let mut moved = 0;
        for other in others {
            if other != target && state.balances.get(other).copied().unwrap_or(0) >= self.amount {
                out.emit(other, LedgerEvent::Withdrawn { amount: self.amount });
                moved += self.amount;
            }
        }
        if moved == 0 {
            return Err(LedgerError::NothingToMove(self.owner.clone()));
        }
        out.emit(target, LedgerEvent::Deposited { amount: moved });
        Ok(())
    }
}
