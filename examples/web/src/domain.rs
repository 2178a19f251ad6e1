//! The service's domain: the bank of `eventcore_examples::bank` (its events,
//! its `Account` view, `OpenAccount` and `Transfer`), plus a deposit.
//!
//! Account `alice` of the HTTP API is the stream `account-alice`. The bank's
//! commands refuse with [`BankError`]; [`Deposit`] refuses with its own
//! [`DepositError`], so the service meets two domain error types and maps
//! both through one function over the type-erased command error
//! (`crate::error`).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use eventcore_examples::bank::OpenAccount;
//! use eventcore_tokio::{Executor, MemoryEventStore};
//! use eventcore_web_example::domain::{account_stream, Deposit};
//! let executor = Executor::new(MemoryEventStore::new());
//! let alice = account_stream("alice")?;
//! executor.execute(OpenAccount { account: alice.clone(), initial: 100 }).await?;
//! executor.execute(Deposit { account: alice, amount: 25 }).await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use eventcore::{require, Command, Decide, Emit, InvalidStreamId, StreamId};
pub use eventcore_examples::bank::{Account, AccountEvent, BankError, OpenAccount, Transfer, PREFIX};

/// The largest amount one request may move or open an account with, and
/// the largest balance a deposit may leave: 2^53 cents, the largest integer
/// every JSON client reads exactly (a JavaScript number), and far below
/// what the `bigint` read model holds.
pub const MAX_AMOUNT: u64 = 1 << 53;

/// The stream of account `id` (`alice` → `account-alice`).
///
/// ```
/// use eventcore_web_example::domain::account_stream;
/// assert_eq!(account_stream("alice")?.as_str(), "account-alice");
/// assert!(account_stream("").is_err(), "an account needs a name");
/// assert!(account_stream("a/b").is_err(), "a name is one path segment");
/// # Ok::<(), eventcore_web_example::domain::InvalidAccountId>(())
/// ```
pub fn account_stream(id: &str) -> Result<StreamId, InvalidAccountId> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(InvalidAccountId::Name(id.to_owned()));
    }
    Ok(StreamId::new(format!("{PREFIX}{id}"))?)
}

/// The account id of an account stream (`account-alice` → `alice`).
///
/// ```
/// use eventcore_web_example::domain::{account_id, account_stream};
/// assert_eq!(account_id(&account_stream("alice")?), "alice");
/// # Ok::<(), eventcore_web_example::domain::InvalidAccountId>(())
/// ```
pub fn account_id(stream: &StreamId) -> &str {
    stream.as_str().strip_prefix(PREFIX).unwrap_or(stream.as_str())
}

/// Why a string is not an account id.
///
/// ```
/// use eventcore_web_example::domain::account_stream;
/// let error = account_stream("no spaces").unwrap_err();
/// assert!(error.to_string().contains("1 to 64 ASCII letters"));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum InvalidAccountId {
    /// Empty, too long, or a character outside `[A-Za-z0-9_-]`.
    #[error("account id `{0}` is not 1 to 64 ASCII letters, digits, `-` or `_`")]
    Name(String),
    /// The stream id it makes is refused (cannot happen for a checked name).
    #[error(transparent)]
    Stream(#[from] InvalidStreamId),
}

/// Why a deposit is refused.
///
/// ```
/// use eventcore_web_example::domain::{account_stream, DepositError};
/// let error = DepositError::NotOpen(account_stream("bob")?);
/// assert_eq!(error.to_string(), "account `account-bob` is not open");
/// # Ok::<(), eventcore_web_example::domain::InvalidAccountId>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DepositError {
    /// The account is not open.
    #[error("account `{0}` is not open")]
    NotOpen(StreamId),
    /// The balance would pass [`MAX_AMOUNT`].
    #[error("account `{account}` holds {balance}; depositing {amount} would pass the limit of {MAX_AMOUNT}")]
    BalanceLimit {
        /// The account.
        account: StreamId,
        /// Its balance.
        balance: u64,
        /// The amount asked for.
        amount: u64,
    },
}

/// Puts money into an open account.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use eventcore::AnyCommandError;
/// use eventcore_tokio::{Executor, MemoryEventStore};
/// use eventcore_web_example::domain::{account_stream, Deposit, DepositError};
/// let executor = Executor::new(MemoryEventStore::new());
/// let nobody = Deposit { account: account_stream("nobody").unwrap(), amount: 5 };
/// let refused = AnyCommandError::from(executor.execute(nobody).await.unwrap_err());
/// assert!(matches!(refused.domain_error::<DepositError>(), Some(DepositError::NotOpen(_))));
/// # });
/// ```
#[derive(Debug, Clone, Command)]
pub struct Deposit {
    /// The account stream.
    #[stream(Account)]
    pub account: StreamId,
    /// Amount in cents.
    pub amount: u64,
}

impl Decide for Deposit {
    type Error = DepositError;

    fn decide(&self, state: &DepositState<'_>, out: &mut Emit<'_>) -> Result<(), DepositError> {
        require!(state.account.open, DepositError::NotOpen(self.account.clone()));
        let balance = state.account.balance;
        require!(
            balance
                .checked_add(self.amount)
                .is_some_and(|after| after <= MAX_AMOUNT),
            DepositError::BalanceLimit {
                account: self.account.clone(),
                balance,
                amount: self.amount,
            }
        );
        out.emit(&self.account, AccountEvent::Deposited { amount: self.amount });
        Ok(())
    }
}
