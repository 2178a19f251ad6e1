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

use eventcore::{require, Command, Decide, Decision, Emit, Event, RecordedEvent, StreamId, StreamVersion, View};
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

/// Stream-id prefix of accounts.
pub const PREFIX: &str = "account-";

/// The stream id of account `n`.
///
/// ```
/// assert_eq!(eventcore_examples::bank::account(7).as_str(), "account-7");
/// ```
pub fn account(n: u32) -> StreamId {
    // `account-<digits>` always satisfies the stream id rules.
    StreamId::new(format!("{PREFIX}{n}")).unwrap_or_else(|_| unreachable!("account-<n> is a valid stream id"))
}

/// One account as a stream view: folded from its own events only, so every
/// command that reads an account shares one cached fold, and snapshots of it
/// survive a restart.
///
/// ```
/// use eventcore::View;
/// use eventcore_examples::bank::{Account, AccountEvent};
/// let mut a = Account::default();
/// View::apply(&mut a, &AccountEvent::Opened { initial: 10 });
/// View::apply(&mut a, &AccountEvent::Withdrawn { amount: 4 });
/// assert_eq!(a, Account { open: true, balance: 6 });
/// ```
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Whether it was opened.
    pub open: bool,
    /// Its balance in cents.
    pub balance: u64,
}

impl View for Account {
    type Event = AccountEvent;
    const NAME: &'static str = "bank.account";

    fn apply(&mut self, event: &AccountEvent) {
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
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use eventcore::{CommandError, ExecutionError};
/// use eventcore_examples::bank::{account, BankError, OpenAccount};
/// use eventcore_tokio::{Executor, MemoryEventStore};
/// let executor = Executor::new(MemoryEventStore::new());
/// let open = || OpenAccount { account: account(1), initial: 100 };
/// executor.execute(open()).await.unwrap();
/// let again = executor.execute(open()).await;
/// assert!(matches!(again, Err(ExecutionError { error: CommandError::Domain(BankError::AlreadyOpen(_)), .. })));
/// # });
/// ```
#[derive(Debug, Clone, Command)]
pub struct OpenAccount {
    /// The account stream.
    #[stream(Account)]
    pub account: StreamId,
    /// Initial balance in cents.
    pub initial: u64,
}

impl Decide for OpenAccount {
    type Error = BankError;

    fn decide(&self, state: &OpenAccountState<'_>, out: &mut Emit<'_>) -> Result<(), BankError> {
        require!(!state.account.open, BankError::AlreadyOpen(self.account.clone()));
        out.emit(&self.account, AccountEvent::Opened { initial: self.initial });
        Ok(())
    }
}

/// Moves money between two accounts, atomically: the `Account` view of
/// `from` and of `to`.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use eventcore::{CommandError, ExecutionError};
/// use eventcore_examples::bank::{account, BankError, OpenAccount, Transfer};
/// use eventcore_tokio::{Executor, MemoryEventStore};
/// let executor = Executor::new(MemoryEventStore::new());
/// for (n, initial) in [(1, 10), (2, 0)] {
///     executor.execute(OpenAccount { account: account(n), initial }).await.unwrap();
/// }
/// let too_much = executor.execute(Transfer { from: account(1), to: account(2), amount: 50 }).await;
/// assert!(matches!(too_much, Err(ExecutionError { error: CommandError::Domain(BankError::InsufficientFunds { .. }), .. })));
/// let done = executor.execute(Transfer { from: account(1), to: account(2), amount: 10 }).await.unwrap();
/// assert_eq!(done.appended.map(|r| r.streams.len()), Some(2), "one withdrawal, one deposit");
/// # });
/// ```
#[derive(Debug, Clone, Command)]
pub struct Transfer {
    /// Paying account.
    #[stream(Account)]
    pub from: StreamId,
    /// Receiving account.
    #[stream(Account)]
    pub to: StreamId,
    /// Amount in cents.
    pub amount: u64,
}

impl Decide for Transfer {
    type Error = BankError;

    fn decide(&self, state: &TransferState<'_>, out: &mut Emit<'_>) -> Result<(), BankError> {
        check_transfer(self, state.from, state.to)?;
        out.emit(&self.from, AccountEvent::Withdrawn { amount: self.amount });
        out.emit(&self.to, AccountEvent::Deposited { amount: self.amount });
        Ok(())
    }
}

/// The bank's rules for a transfer, shared by the view command and the
/// whole-fold one.
fn check_transfer(transfer: &Transfer, from: &Account, to: &Account) -> Result<(), BankError> {
    require!(
        transfer.from != transfer.to,
        BankError::SameAccount(transfer.from.clone())
    );
    for (id, account) in [(&transfer.from, from), (&transfer.to, to)] {
        require!(account.open, BankError::NotOpen(id.clone()));
    }
    require!(
        from.balance >= transfer.amount,
        BankError::InsufficientFunds {
            account: transfer.from.clone(),
            balance: from.balance,
            amount: transfer.amount,
        }
    );
    Ok(())
}

/// The same transfer written against the plain [`Command`] trait: one state
/// for the whole command, folded from both streams' events in global order
/// on every execution. Kept to show the trait without the derive, and as the
/// baseline the banking demo measures views against (`--plain`).
///
/// ```
/// use eventcore::{Command, Decision};
/// use eventcore_examples::bank::{account, Account, BankError, PlainTransfer, Transfer};
/// let t = PlainTransfer(Transfer { from: account(1), to: account(2), amount: 50 });
/// let poor = (Account { open: true, balance: 10 }, Account { open: true, balance: 0 });
/// assert!(matches!(t.decide(&poor, &mut Decision::new()), Err(BankError::InsufficientFunds { .. })));
/// let rich = (Account { open: true, balance: 80 }, Account { open: true, balance: 0 });
/// let mut out = Decision::new();
/// t.decide(&rich, &mut out)?;
/// assert_eq!(out.events().len(), 2, "one withdrawal, one deposit");
/// # Ok::<(), BankError>(())
/// ```
#[derive(Debug, Clone)]
pub struct PlainTransfer(pub Transfer);

impl Command for PlainTransfer {
    type Event = AccountEvent;
    type State = (Account, Account);
    type Error = BankError;

    fn streams(&self) -> Vec<StreamId> {
        vec![self.0.from.clone(), self.0.to.clone()]
    }

    fn apply(&self, (from, to): &mut (Account, Account), stream: &StreamId, event: &AccountEvent) {
        if stream == &self.0.from {
            View::apply(from, event)
        } else {
            View::apply(to, event)
        }
    }

    fn decide(&self, (from, to): &(Account, Account), out: &mut Decision<AccountEvent>) -> Result<(), BankError> {
        check_transfer(&self.0, from, to)?;
        out.emit(&self.0.from, AccountEvent::Withdrawn { amount: self.0.amount });
        out.emit(&self.0.to, AccountEvent::Deposited { amount: self.0.amount });
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
            if !recorded.stream_id.as_str().starts_with(PREFIX) {
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
