//! A small bank: accounts are streams; a transfer is one command that reads
//! two account streams and appends to both atomically.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use eventcore_examples::bank::{account, OpenAccount, Transfer};
//! use eventcore_tokio::{Executor, MemoryEventStore};
//! let executor = Executor::new(MemoryEventStore::new());
//! executor.execute(OpenAccount { account: account(1), initial: 100 }).await.unwrap();
//! executor.execute(OpenAccount { account: account(2), initial: 0 }).await.unwrap();
//! executor.execute(Transfer { from: account(1), to: account(2), amount: 30 }).await.unwrap();
//! # });
//! ```

use eventcore::{Command, Decision, Event, RecordedEvent, StreamId, StreamVersion};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What happens to an account.
///
/// ```
/// use eventcore::Event;
/// use eventcore_examples::bank::AccountEvent;
/// let encoded = AccountEvent::Deposited { amount: 5 }.encode()?;
/// assert_eq!(encoded.event_type.as_str(), "Deposited");
/// # Ok::<(), eventcore::EncodeError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountEvent {
    /// The account was opened with an initial balance.
    Opened {
        /// Initial balance in cents.
        initial: u64,
    },
    /// Money left the account.
    Withdrawn {
        /// Amount in cents.
        amount: u64,
    },
    /// Money arrived.
    Deposited {
        /// Amount in cents.
        amount: u64,
    },
}

impl Event for AccountEvent {}

/// Why the bank refuses a command.
///
/// ```
/// use eventcore_examples::bank::{account, BankError};
/// let e = BankError::InsufficientFunds { account: account(1), balance: 3, amount: 5 };
/// assert_eq!(e.to_string(), "account `account-1` holds 3, cannot send 5");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BankError {
    /// The account is not open.
    #[error("account `{0}` is not open")]
    NotOpen(StreamId),
    /// The account is already open.
    #[error("account `{0}` is already open")]
    AlreadyOpen(StreamId),
    /// Not enough money.
    #[error("account `{account}` holds {balance}, cannot send {amount}")]
    InsufficientFunds {
        /// The account.
        account: StreamId,
        /// Its balance.
        balance: u64,
        /// The amount asked for.
        amount: u64,
    },
    /// A transfer from an account to itself.
    #[error("cannot transfer from `{0}` to itself")]
    SameAccount(StreamId),
}

/// The stream id of account `n`.
///
/// ```
/// assert_eq!(eventcore_examples::bank::account(7).as_str(), "account-7");
/// ```
pub fn account(n: u32) -> StreamId {
    // `account-<digits>` always satisfies the stream id rules.
    StreamId::new(format!("account-{n}")).unwrap_or_else(|_| unreachable!("account-<n> is a valid stream id"))
}

/// One account's state.
///
/// ```
/// use eventcore_examples::bank::{Account, AccountEvent};
/// let mut a = Account::default();
/// a.apply(&AccountEvent::Opened { initial: 10 });
/// a.apply(&AccountEvent::Withdrawn { amount: 4 });
/// assert_eq!(a, Account { open: true, balance: 6 });
/// ```
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    /// Whether it was opened.
    pub open: bool,
    /// Its balance in cents.
    pub balance: u64,
}

impl Account {
    /// Folds one event.
    pub fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { initial } => {
                self.open = true;
                self.balance = *initial;
            }
            AccountEvent::Withdrawn { amount } => self.balance = self.balance.saturating_sub(*amount),
            AccountEvent::Deposited { amount } => self.balance += amount,
        }
    }
}

/// Opens an account with an initial balance.
///
/// ```
/// use eventcore::{Command, Decision};
/// use eventcore_examples::bank::{account, Account, BankError, OpenAccount};
/// let open = OpenAccount { account: account(1), initial: 100 };
/// let mut out = Decision::new();
/// open.decide(&Account::default(), &mut out)?;
/// assert_eq!(out.events().len(), 1);
/// let already = Account { open: true, balance: 0 };
/// assert!(matches!(open.decide(&already, &mut Decision::new()), Err(BankError::AlreadyOpen(_))));
/// # Ok::<(), BankError>(())
/// ```
#[derive(Debug, Clone)]
pub struct OpenAccount {
    /// The account stream.
    pub account: StreamId,
    /// Initial balance in cents.
    pub initial: u64,
}

impl Command for OpenAccount {
    type Event = AccountEvent;
    type State = Account;
    type Error = BankError;

    fn streams(&self) -> Vec<StreamId> {
        vec![self.account.clone()]
    }

    fn apply(&self, state: &mut Account, _: &StreamId, event: &AccountEvent) {
        state.apply(event);
    }

    fn decide(&self, state: &Account, out: &mut Decision<AccountEvent>) -> Result<(), BankError> {
        if state.open {
            return Err(BankError::AlreadyOpen(self.account.clone()));
        }
        out.emit(&self.account, AccountEvent::Opened { initial: self.initial });
        Ok(())
    }
}

/// Moves money between two accounts, atomically.
///
/// ```
/// use eventcore::{Command, Decision};
/// use eventcore_examples::bank::{account, Account, BankError, Transfer};
/// let t = Transfer { from: account(1), to: account(2), amount: 50 };
/// let poor = (Account { open: true, balance: 10 }, Account { open: true, balance: 0 });
/// assert!(matches!(t.decide(&poor, &mut Decision::new()), Err(BankError::InsufficientFunds { .. })));
/// let rich = (Account { open: true, balance: 80 }, Account { open: true, balance: 0 });
/// let mut out = Decision::new();
/// t.decide(&rich, &mut out)?;
/// assert_eq!(out.events().len(), 2, "one withdrawal, one deposit");
/// # Ok::<(), BankError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Transfer {
    /// Paying account.
    pub from: StreamId,
    /// Receiving account.
    pub to: StreamId,
    /// Amount in cents.
    pub amount: u64,
}

impl Command for Transfer {
    type Event = AccountEvent;
    type State = (Account, Account);
    type Error = BankError;

    fn streams(&self) -> Vec<StreamId> {
        vec![self.from.clone(), self.to.clone()]
    }

    fn apply(&self, (from, to): &mut (Account, Account), stream: &StreamId, event: &AccountEvent) {
        if stream == &self.from {
            from.apply(event)
        } else {
            to.apply(event)
        }
    }

    fn decide(&self, (from, to): &(Account, Account), out: &mut Decision<AccountEvent>) -> Result<(), BankError> {
        if self.from == self.to {
            return Err(BankError::SameAccount(self.from.clone()));
        }
        for (id, account) in [(&self.from, from), (&self.to, to)] {
            if !account.open {
                return Err(BankError::NotOpen(id.clone()));
            }
        }
        if from.balance < self.amount {
            return Err(BankError::InsufficientFunds {
                account: self.from.clone(),
                balance: from.balance,
                amount: self.amount,
            });
        }
        out.emit(&self.from, AccountEvent::Withdrawn { amount: self.amount });
        out.emit(&self.to, AccountEvent::Deposited { amount: self.amount });
        Ok(())
    }
}

/// What an audit of the whole store found.
///
/// ```
/// use eventcore_examples::bank::Audit;
/// let audit = Audit::of(&[]);
/// assert!(audit.violations.is_empty());
/// assert_eq!(audit.final_total, 0);
/// ```
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Audit {
    /// Final balance per account.
    pub balances: BTreeMap<StreamId, u64>,
    /// Sum of initial balances.
    pub opened_total: u64,
    /// Sum of final balances.
    pub final_total: u64,
    /// Every invariant violation found, in words.
    pub violations: Vec<String>,
}

impl Audit {
    /// Replays every account event in global order and checks: versions are
    /// contiguous from 1, no balance ever goes below zero, and money is
    /// conserved (final total equals the total opened).
    pub fn of<'a>(events: impl IntoIterator<Item = &'a RecordedEvent>) -> Audit {
        let mut audit = Audit::default();
        let mut versions: BTreeMap<StreamId, StreamVersion> = BTreeMap::new();
        let mut accounts: BTreeMap<StreamId, i128> = BTreeMap::new();
        for recorded in events {
            if !recorded.stream_id.as_str().starts_with("account-") {
                continue;
            }
            let version = versions.entry(recorded.stream_id.clone()).or_default();
            if recorded.version != version.next() {
                audit.violations.push(format!(
                    "`{}` jumps from version {} to {}",
                    recorded.stream_id, version, recorded.version
                ));
            }
            *version = recorded.version;
            let event = match eventcore::decode_recorded::<AccountEvent>(recorded) {
                Ok(event) => event,
                Err(error) => {
                    audit.violations.push(error.to_string());
                    continue;
                }
            };
            let balance = accounts.entry(recorded.stream_id.clone()).or_default();
            match event {
                AccountEvent::Opened { initial } => {
                    audit.opened_total += initial;
                    *balance += i128::from(initial);
                }
                AccountEvent::Withdrawn { amount } => *balance -= i128::from(amount),
                AccountEvent::Deposited { amount } => *balance += i128::from(amount),
            }
            if *balance < 0 {
                audit.violations.push(format!(
                    "`{}` went negative ({balance}) at version {}",
                    recorded.stream_id, recorded.version
                ));
            }
        }
        for (id, balance) in accounts {
            let balance = u64::try_from(balance).unwrap_or(0);
            audit.final_total += balance;
            audit.balances.insert(id, balance);
        }
        if audit.final_total != audit.opened_total {
            audit.violations.push(format!(
                "money not conserved: opened {} but accounts hold {}",
                audit.opened_total, audit.final_total
            ));
        }
        audit
    }
}
