//! Bank transfers across many accounts, a few of them hot: the classic
//! multi-stream write with contention. Money must be conserved and no
//! balance may ever go below zero.

use crate::check::DomainModel;
use eventcore::{Command, Decision, Event, ExpectedVersion, RecordedEvent, StreamId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Stream-id prefix of accounts.
pub const PREFIX: &str = "acct-";

/// The stream of account `n`.
pub fn account(n: u32) -> StreamId {
    crate::workload::stream(PREFIX, n)
}

/// The bank's rules stream: a transfer limit, and an audit trail some
/// transfers append to. Transfers that only check the limit read it without
/// writing it — a pure version check in their append.
pub fn rules() -> StreamId {
    // A fixed ASCII name always satisfies the stream-id rules.
    StreamId::new("bank-rules").unwrap_or_else(|_| unreachable!("`bank-rules` is a valid stream id"))
}

/// What happens to an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BankEvent {
    /// Opened with an initial balance.
    Opened {
        /// Initial balance.
        initial: u64,
    },
    /// Money left.
    Withdrawn {
        /// Amount.
        amount: u64,
    },
    /// Money arrived.
    Deposited {
        /// Amount.
        amount: u64,
    },
    /// Money paid out of the bank ([`PayOut`]: one stream, read and
    /// written at the version read).
    PaidOut {
        /// Amount.
        amount: u64,
    },
    /// The account was closed, its balance paid out ([`CloseAccount`]):
    /// the account stream's last event, written with its tombstone.
    Closed {
        /// The balance paid out on closing.
        paid_out: u64,
    },
    /// The transfer limit was set (rules stream).
    LimitSet {
        /// Largest amount one checked transfer may move.
        max: u64,
    },
    /// A transfer was audited (rules stream).
    Audited {
        /// Its amount.
        amount: u64,
    },
}

impl Event for BankEvent {}

/// Why the bank refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BankError {
    /// Opening an open account.
    #[error("account `{0}` is already open")]
    AlreadyOpen(StreamId),
    /// Using an account that is not open.
    #[error("account `{0}` is not open")]
    NotOpen(StreamId),
    /// Above the transfer limit.
    #[error("transfer of {amount} exceeds the limit of {max}")]
    OverLimit {
        /// The amount.
        amount: u64,
        /// The limit.
        max: u64,
    },
    /// Not enough money.
    #[error("account `{account}` holds {balance}, cannot send {amount}")]
    Insufficient {
        /// The paying account.
        account: StreamId,
        /// Its balance.
        balance: u64,
        /// The amount.
        amount: u64,
    },
}

/// An account's folded state.
#[derive(Clone, Copy, Debug, Default)]
pub struct Account {
    /// Opened yet?
    pub open: bool,
    /// Balance.
    pub balance: u64,
}

impl Account {
    fn apply(&mut self, event: &BankEvent) {
        match event {
            BankEvent::Opened { initial } => {
                self.open = true;
                self.balance = *initial;
            }
            // Saturating: the fold must not panic even on a corrupt history;
            // the domain model reports the negative balance instead.
            BankEvent::Withdrawn { amount } | BankEvent::PaidOut { amount } => {
                self.balance = self.balance.saturating_sub(*amount)
            }
            BankEvent::Deposited { amount } => self.balance = self.balance.saturating_add(*amount),
            // A closed account takes nothing more: its stream is ended.
            BankEvent::Closed { .. } => {
                self.open = false;
                self.balance = 0;
            }
            BankEvent::LimitSet { .. } | BankEvent::Audited { .. } => {}
        }
    }
}

/// Closes an account: pays out its balance and ends its stream with that
/// last event ([`Decision::end_stream`]), so the store refuses every later
/// write to it with `StoreError::StreamDeleted`. A transfer that read the
/// account open and raced the close meets that refusal and ends with it.
///
/// ```
/// use eventcore::Command;
/// use eventcore_sim::workload::bank::{account, CloseAccount};
/// let close = CloseAccount { account: account(2) };
/// assert_eq!(close.streams(), vec![account(2)]);
/// ```
#[derive(Clone, Debug)]
pub struct CloseAccount {
    /// The account to close.
    pub account: StreamId,
}

impl Command for CloseAccount {
    type Event = BankEvent;
    type State = Account;
    type Error = BankError;

    fn streams(&self) -> Vec<StreamId> {
        vec![self.account.clone()]
    }

    fn apply(&self, state: &mut Account, _: &StreamId, event: &BankEvent) {
        state.apply(event);
    }

    fn decide(&self, state: &Account, out: &mut Decision<BankEvent>) -> Result<(), BankError> {
        if !state.open {
            return Err(BankError::NotOpen(self.account.clone()));
        }
        out.emit(
            &self.account,
            BankEvent::Closed {
                paid_out: state.balance,
            },
        );
        out.end_stream(&self.account);
        Ok(())
    }
}

/// Pays money out of one account: the bank's one-stream read-modify-write.
/// Its balance check rests on the version it read, which the append pins,
/// so a store that skipped a one-stream expected-version check lets two
/// payouts overdraw the account ([`BankModel`] reports the negative
/// balance).
///
/// ```
/// use eventcore::Command;
/// use eventcore_sim::workload::bank::{account, PayOut};
/// let payout = PayOut { account: account(1), amount: 5 };
/// assert_eq!(payout.streams(), vec![account(1)]);
/// ```
#[derive(Clone, Debug)]
pub struct PayOut {
    /// The account paying out.
    pub account: StreamId,
    /// Amount.
    pub amount: u64,
}

impl Command for PayOut {
    type Event = BankEvent;
    type State = Account;
    type Error = BankError;

    fn streams(&self) -> Vec<StreamId> {
        vec![self.account.clone()]
    }

    fn apply(&self, state: &mut Account, _: &StreamId, event: &BankEvent) {
        state.apply(event);
    }

    fn decide(&self, state: &Account, out: &mut Decision<BankEvent>) -> Result<(), BankError> {
        if !state.open {
            return Err(BankError::NotOpen(self.account.clone()));
        }
        if state.balance < self.amount {
            return Err(BankError::Insufficient {
                account: self.account.clone(),
                balance: state.balance,
                amount: self.amount,
            });
        }
        out.emit(&self.account, BankEvent::PaidOut { amount: self.amount });
        Ok(())
    }
}

/// Sets the transfer limit (setup).
#[derive(Clone, Debug)]
pub struct SetLimit {
    /// The limit.
    pub max: u64,
}

impl Command for SetLimit {
    type Event = BankEvent;
    type State = ();
    type Error = BankError;

    fn streams(&self) -> Vec<StreamId> {
        vec![rules()]
    }

    fn apply(&self, _: &mut (), _: &StreamId, _: &BankEvent) {}

    fn decide(&self, _: &(), out: &mut Decision<BankEvent>) -> Result<(), BankError> {
        out.emit(&rules(), BankEvent::LimitSet { max: self.max });
        Ok(())
    }
}

/// Opens an account.
#[derive(Clone, Debug)]
pub struct OpenAccount {
    /// The account.
    pub account: StreamId,
    /// Initial balance.
    pub initial: u64,
}

impl Command for OpenAccount {
    type Event = BankEvent;
    type State = Account;
    type Error = BankError;

    fn streams(&self) -> Vec<StreamId> {
        vec![self.account.clone()]
    }

    fn apply(&self, state: &mut Account, _: &StreamId, event: &BankEvent) {
        state.apply(event);
    }

    fn decide(&self, state: &Account, out: &mut Decision<BankEvent>) -> Result<(), BankError> {
        if state.open {
            return Err(BankError::AlreadyOpen(self.account.clone()));
        }
        out.emit(&self.account, BankEvent::Opened { initial: self.initial });
        Ok(())
    }
}

/// Moves money between two different accounts atomically.
#[derive(Clone, Debug)]
pub struct Transfer {
    /// Paying account.
    pub from: StreamId,
    /// Receiving account.
    pub to: StreamId,
    /// Amount.
    pub amount: u64,
    /// Relax the receiving account to `ExpectedVersion::Any`: a deposit
    /// does not depend on its balance, so concurrent deposits need not
    /// conflict.
    pub relax_to: bool,
    /// Read the rules stream and refuse amounts above the limit (a pure
    /// version check unless `audit` also writes it).
    pub check_limit: bool,
    /// Append an audit entry to the rules stream.
    pub audit: bool,
}

/// Folded state of a transfer.
#[derive(Clone, Copy, Debug, Default)]
pub struct TransferState {
    from: Account,
    to: Account,
    limit: Option<u64>,
}

impl Command for Transfer {
    type Event = BankEvent;
    type State = TransferState;
    type Error = BankError;

    fn streams(&self) -> Vec<StreamId> {
        let mut streams = vec![self.from.clone(), self.to.clone()];
        if self.check_limit || self.audit {
            streams.push(rules());
        }
        streams
    }

    fn apply(&self, state: &mut TransferState, stream: &StreamId, event: &BankEvent) {
        if stream == &self.from {
            state.from.apply(event);
        } else if stream == &self.to {
            state.to.apply(event);
        } else if let BankEvent::LimitSet { max } = event {
            state.limit = Some(*max);
        }
    }

    fn decide(&self, state: &TransferState, out: &mut Decision<BankEvent>) -> Result<(), BankError> {
        for (id, account) in [(&self.from, &state.from), (&self.to, &state.to)] {
            if !account.open {
                return Err(BankError::NotOpen(id.clone()));
            }
        }
        if state.from.balance < self.amount {
            return Err(BankError::Insufficient {
                account: self.from.clone(),
                balance: state.from.balance,
                amount: self.amount,
            });
        }
        if let Some(max) = state.limit.filter(|max| self.check_limit && self.amount > *max) {
            return Err(BankError::OverLimit {
                amount: self.amount,
                max,
            });
        }
        out.emit(&self.from, BankEvent::Withdrawn { amount: self.amount });
        out.emit(&self.to, BankEvent::Deposited { amount: self.amount });
        if self.audit {
            out.emit(&rules(), BankEvent::Audited { amount: self.amount });
        }
        if self.relax_to {
            out.expect(&self.to, ExpectedVersion::Any);
        }
        Ok(())
    }
}

/// Replays account events: no balance below zero at any event, and the
/// total held equals the total opened.
///
/// It reads the three account events (`Opened`, `Withdrawn`, `Deposited`)
/// of any bank whose account streams share a prefix: [`PREFIX`] by default,
/// and the chaos suite's accounts (the examples' bank, `account-<n>`) with
/// [`BankModel::for_prefix`], whose `AccountEvent` has the same variants.
///
/// ```
/// use eventcore_sim::check::DomainModel;
/// use eventcore_sim::workload::bank::BankModel;
/// assert!(BankModel::for_prefix("account-").finish().is_empty());
/// ```
#[derive(Debug)]
pub struct BankModel {
    prefix: &'static str,
    balances: BTreeMap<StreamId, i128>,
    opened: i128,
    paid_out: i128,
}

impl Default for BankModel {
    fn default() -> Self {
        BankModel::for_prefix(PREFIX)
    }
}

impl BankModel {
    /// A model of the accounts whose stream ids start with `prefix`.
    pub fn for_prefix(prefix: &'static str) -> Self {
        BankModel {
            prefix,
            balances: BTreeMap::new(),
            opened: 0,
            paid_out: 0,
        }
    }
}

impl DomainModel for BankModel {
    fn name(&self) -> &'static str {
        "bank"
    }

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), String> {
        if !event.stream_id.as_str().starts_with(self.prefix) {
            return Ok(());
        }
        let decoded = eventcore::decode_recorded::<BankEvent>(event).map_err(|e| e.to_string())?;
        let balance = self.balances.entry(event.stream_id.clone()).or_default();
        match decoded {
            BankEvent::Opened { initial } => {
                self.opened += i128::from(initial);
                *balance += i128::from(initial);
            }
            BankEvent::Withdrawn { amount } => *balance -= i128::from(amount),
            BankEvent::PaidOut { amount } => {
                *balance -= i128::from(amount);
                self.paid_out += i128::from(amount);
            }
            BankEvent::Deposited { amount } => *balance += i128::from(amount),
            BankEvent::Closed { paid_out } => {
                if i128::from(paid_out) != *balance {
                    return Err(format!(
                        "`{}` was closed paying out {paid_out} but held {balance} (version {}, position {})",
                        event.stream_id, event.version, event.position
                    ));
                }
                *balance = 0;
                self.paid_out += i128::from(paid_out);
            }
            BankEvent::LimitSet { .. } | BankEvent::Audited { .. } => {}
        }
        if *balance < 0 {
            return Err(format!(
                "`{}` went negative ({balance}) at version {} (position {})",
                event.stream_id, event.version, event.position
            ));
        }
        Ok(())
    }

    fn finish(&self) -> Vec<String> {
        let total: i128 = self.balances.values().sum();
        if total + self.paid_out == self.opened {
            Vec::new()
        } else {
            vec![format!(
                "money not conserved: opened {} but accounts hold {total} and {} was paid out",
                self.opened, self.paid_out
            )]
        }
    }
}
