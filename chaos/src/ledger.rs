//! The chaos workload's domain: the examples' bank accounts
//! (`eventcore_examples::bank`), plus owners that link accounts and a
//! discovery command that consolidates an owner's accounts.
//!
//! [`Consolidate`] declares only the owner's stream; reading it discovers
//! the linked accounts, which it then reads too (the dynamic consistency
//! boundary), and it moves a fixed amount from every other linked account
//! that can afford it into the first one — one atomic append over up to
//! five streams, money conserved.

use eventcore::{decode_recorded, Command, Decision, Event, RecordedEvent, StreamId};
use eventcore_examples::bank::{account, AccountEvent};
use eventcore_sim::check::DomainModel;
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

/// The bank's rules as a domain model for the simulator's checker: replays
/// every `account-*` event in global order; no balance may go below zero
/// and, at the end, the money held equals the money opened.
///
/// ```
/// use eventcore_chaos::ledger::LedgerModel;
/// use eventcore_sim::check::DomainModel;
/// let model = LedgerModel::default();
/// assert!(model.finish().is_empty());
/// ```
#[derive(Debug, Default)]
pub struct LedgerModel {
    balances: BTreeMap<StreamId, i128>,
    opened: i128,
}

impl DomainModel for LedgerModel {
    fn name(&self) -> &'static str {
        "bank ledger"
    }

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), String> {
        if !event.stream_id.as_str().starts_with("account-") {
            return Ok(());
        }
        let decoded = decode_recorded::<AccountEvent>(event).map_err(|e| e.to_string())?;
        let balance = self.balances.entry(event.stream_id.clone()).or_default();
        match decoded {
            AccountEvent::Opened { initial } => {
                *balance += i128::from(initial);
                self.opened += i128::from(initial);
            }
            AccountEvent::Withdrawn { amount } => *balance -= i128::from(amount),
            AccountEvent::Deposited { amount } => *balance += i128::from(amount),
        }
        if *balance < 0 {
            return Err(format!(
                "`{}` went negative ({balance}) at version {}",
                event.stream_id, event.version
            ));
        }
        Ok(())
    }

    fn finish(&self) -> Vec<String> {
        let held: i128 = self.balances.values().sum();
        if held == self.opened {
            Vec::new()
        } else {
            vec![format!(
                "money not conserved: opened {} but accounts hold {held}",
                self.opened
            )]
        }
    }
}
