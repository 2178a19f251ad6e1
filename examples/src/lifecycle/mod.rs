//! A bank's customers and their accounts, with the data lifecycle: a
//! customer's name and e-mail address are personal data (sealed per
//! customer, forgotten on request), and an account that was closed ends its
//! stream with a tombstone, so a retention run may remove it.
//!
//! ```
//! use eventcore_examples::lifecycle::{customer_stream, CustomerEvent};
//! use eventcore_shred::{Personal, SubjectId};
//! let ann = SubjectId::new("customer-7")?;
//! let registered = CustomerEvent::Registered {
//!     name: Personal::new(ann.clone(), "Ann Example".into()),
//!     email: Personal::new(ann, "ann@example.com".into()),
//!     country: "NL".into(),
//! };
//! assert_eq!(customer_stream(7).as_str(), "customer-7");
//! // Without an encryption scope (the executor's), the event refuses to encode:
//! // personal data is never written in the clear by accident.
//! assert!(eventcore::Event::encode(&registered).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use eventcore::{Command, Decision, Event, StreamId};
use eventcore_shred::{Personal, SubjectId};
use serde::{Deserialize, Serialize};

mod story;
pub use story::{run, LifecycleReport, ReadBack, CLOSED_ACCOUNT, FORGOTTEN_CUSTOMER, KEPT_CUSTOMER, PLAINTEXTS};

/// The stream of customer `n`: `customer-<n>`. Its subject id (whose key
/// seals the customer's personal data) is the same text: an internal id,
/// never the name or the e-mail address.
///
/// ```
/// assert_eq!(eventcore_examples::lifecycle::customer_stream(1).as_str(), "customer-1");
/// ```
pub fn customer_stream(n: u32) -> StreamId {
    valid_id(format!("customer-{n}"))
}

/// The data subject of customer `n`.
///
/// ```
/// assert_eq!(eventcore_examples::lifecycle::customer_subject(1).as_str(), "customer-1");
/// ```
pub fn customer_subject(n: u32) -> SubjectId {
    match SubjectId::new(format!("customer-{n}")) {
        Ok(subject) => subject,
        Err(_) => unreachable!("`customer-<n>` is a valid subject id"),
    }
}

/// The stream of savings account `n`: `savings-<n>`.
///
/// ```
/// assert_eq!(eventcore_examples::lifecycle::savings_stream(3).as_str(), "savings-3");
/// ```
pub fn savings_stream(n: u32) -> StreamId {
    valid_id(format!("savings-{n}"))
}

fn valid_id(id: String) -> StreamId {
    match StreamId::new(id) {
        Ok(id) => id,
        Err(_) => unreachable!("`<prefix>-<n>` is a valid stream id"),
    }
}

/// What happens to a customer.
///
/// ```
/// use eventcore_examples::lifecycle::CustomerEvent;
/// let moved = CustomerEvent::Moved { country: "BE".into() };
/// assert_eq!(eventcore::Event::encode(&moved)?.event_type.as_str(), "Moved");
/// # Ok::<(), eventcore::EncodeError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CustomerEvent {
    /// The customer registered.
    Registered {
        /// Full name: personal data.
        name: Personal<String>,
        /// E-mail address: personal data.
        email: Personal<String>,
        /// Country of residence (kept for statistics; not personal here).
        country: String,
    },
    /// The customer changed their e-mail address.
    EmailChanged {
        /// The new address: personal data.
        email: Personal<String>,
    },
    /// The customer moved to another country.
    Moved {
        /// The new country.
        country: String,
    },
}

impl Event for CustomerEvent {}

/// What happens to a savings account.
///
/// ```
/// use eventcore_examples::lifecycle::SavingsEvent;
/// assert_eq!(eventcore::Event::encode(&SavingsEvent::Closed)?.event_type.as_str(), "Closed");
/// # Ok::<(), eventcore::EncodeError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SavingsEvent {
    /// The account was opened for a customer.
    Opened {
        /// The customer's stream id.
        customer: String,
    },
    /// Money arrived.
    Deposited {
        /// Amount in cents.
        amount: u64,
    },
    /// Money left.
    Withdrawn {
        /// Amount in cents.
        amount: u64,
    },
    /// The account was closed: its stream's last event.
    Closed,
}

impl Event for SavingsEvent {}

/// Why a command is refused.
///
/// ```
/// use eventcore_examples::lifecycle::{savings_stream, LifecycleError};
/// let e = LifecycleError::NotEmpty { account: savings_stream(1), balance: 5 };
/// assert_eq!(e.to_string(), "account `savings-1` still holds 5; withdraw it before closing");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    /// The customer is already registered.
    #[error("customer `{0}` is already registered")]
    AlreadyRegistered(StreamId),
    /// The account is already open (or was closed).
    #[error("account `{0}` was already opened")]
    AlreadyOpened(StreamId),
    /// The account is not open.
    #[error("account `{0}` is not open")]
    NotOpen(StreamId),
    /// The account cannot be closed while it holds money.
    #[error("account `{account}` still holds {balance}; withdraw it before closing")]
    NotEmpty {
        /// The account.
        account: StreamId,
        /// Its balance in cents.
        balance: u64,
    },
    /// Not enough money.
    #[error("account `{account}` holds {balance}, cannot pay out {amount}")]
    InsufficientFunds {
        /// The account.
        account: StreamId,
        /// Its balance.
        balance: u64,
        /// The amount asked for.
        amount: u64,
    },
}

/// Something done to customer `customer`: register, change the e-mail
/// address, or move. The name and the address are personal data, sealed
/// under the customer's own key by an executor with personal data enabled;
/// once the customer is forgotten, a new address is refused (their key is
/// gone and no new one is made), while a move, which folds the stream
/// (personal fields decoding as `Forgotten`), still commits.
///
/// ```
/// use eventcore::Command;
/// use eventcore_examples::lifecycle::{CustomerAction, CustomerCommand};
/// let moved = CustomerCommand { customer: 2, action: CustomerAction::Move { country: "BE".into() } };
/// assert_eq!(moved.streams()[0].as_str(), "customer-2");
/// ```
#[derive(Debug, Clone)]
pub struct CustomerCommand {
    /// The customer's number.
    pub customer: u32,
    /// What to do.
    pub action: CustomerAction,
}

/// What a [`CustomerCommand`] does.
#[derive(Debug, Clone)]
pub enum CustomerAction {
    /// Register the customer. Refused if already registered.
    Register {
        /// Full name.
        name: String,
        /// E-mail address.
        email: String,
        /// Country of residence.
        country: String,
    },
    /// Change the e-mail address. Refused unless registered.
    ChangeEmail {
        /// The new address.
        email: String,
    },
    /// Move to another country. Refused unless registered.
    Move {
        /// The new country.
        country: String,
    },
}

/// What a customer's stream folds to.
#[derive(Debug, Default)]
pub struct CustomerState {
    /// Whether the customer registered.
    pub registered: bool,
}

impl Command for CustomerCommand {
    type Event = CustomerEvent;
    type State = CustomerState;
    type Error = LifecycleError;

    fn streams(&self) -> Vec<StreamId> {
        vec![customer_stream(self.customer)]
    }

    fn apply(&self, state: &mut CustomerState, _: &StreamId, event: &CustomerEvent) {
        if let CustomerEvent::Registered { .. } = event {
            state.registered = true;
        }
    }

    fn decide(&self, state: &CustomerState, out: &mut Decision<CustomerEvent>) -> Result<(), LifecycleError> {
        let stream = customer_stream(self.customer);
        let subject = customer_subject(self.customer);
        let event = match &self.action {
            CustomerAction::Register { .. } if state.registered => {
                return Err(LifecycleError::AlreadyRegistered(stream))
            }
            CustomerAction::Register { name, email, country } => CustomerEvent::Registered {
                name: Personal::new(subject.clone(), name.clone()),
                email: Personal::new(subject, email.clone()),
                country: country.clone(),
            },
            _ if !state.registered => return Err(LifecycleError::NotOpen(stream)),
            CustomerAction::ChangeEmail { email } => CustomerEvent::EmailChanged {
                email: Personal::new(subject, email.clone()),
            },
            CustomerAction::Move { country } => CustomerEvent::Moved {
                country: country.clone(),
            },
        };
        out.emit(&stream, event);
        Ok(())
    }
}

/// The balance of one savings account.
#[derive(Debug, Default)]
pub struct Savings {
    /// Whether the account was opened.
    pub opened: bool,
    /// Whether it was closed.
    pub closed: bool,
    /// Balance in cents.
    pub balance: u64,
}

fn fold_savings(state: &mut Savings, event: &SavingsEvent) {
    match event {
        SavingsEvent::Opened { .. } => state.opened = true,
        SavingsEvent::Deposited { amount } => state.balance = state.balance.saturating_add(*amount),
        SavingsEvent::Withdrawn { amount } => state.balance = state.balance.saturating_sub(*amount),
        SavingsEvent::Closed => state.closed = true,
    }
}

/// Something done to savings account `account`: open it for a customer,
/// deposit, withdraw, or close it (which ends its stream).
///
/// ```
/// use eventcore::Command;
/// use eventcore_examples::lifecycle::{SavingsCommand, SavingsAction};
/// let close = SavingsCommand { account: 4, action: SavingsAction::Close };
/// assert_eq!(close.streams()[0].as_str(), "savings-4");
/// ```
#[derive(Debug, Clone)]
pub struct SavingsCommand {
    /// The account's number.
    pub account: u32,
    /// What to do.
    pub action: SavingsAction,
}

/// What a [`SavingsCommand`] does.
#[derive(Debug, Clone)]
pub enum SavingsAction {
    /// Open the account for customer `n`.
    Open {
        /// The customer's number.
        customer: u32,
    },
    /// Deposit cents.
    Deposit(u64),
    /// Withdraw cents.
    Withdraw(u64),
    /// Close the account: its last event, with a tombstone. Refused while
    /// it holds money.
    Close,
}

impl Command for SavingsCommand {
    type Event = SavingsEvent;
    type State = Savings;
    type Error = LifecycleError;

    fn streams(&self) -> Vec<StreamId> {
        vec![savings_stream(self.account)]
    }

    fn apply(&self, state: &mut Savings, _: &StreamId, event: &SavingsEvent) {
        fold_savings(state, event);
    }

    fn decide(&self, state: &Savings, out: &mut Decision<SavingsEvent>) -> Result<(), LifecycleError> {
        let account = savings_stream(self.account);
        if let SavingsAction::Open { customer } = self.action {
            if state.opened {
                return Err(LifecycleError::AlreadyOpened(account));
            }
            out.emit(
                &account,
                SavingsEvent::Opened {
                    customer: customer_stream(customer).to_string(),
                },
            );
            return Ok(());
        }
        if !state.opened || state.closed {
            return Err(LifecycleError::NotOpen(account));
        }
        match self.action {
            SavingsAction::Open { .. } => {}
            SavingsAction::Deposit(amount) => out.emit(&account, SavingsEvent::Deposited { amount }),
            SavingsAction::Withdraw(amount) => {
                if amount > state.balance {
                    return Err(LifecycleError::InsufficientFunds {
                        account,
                        balance: state.balance,
                        amount,
                    });
                }
                out.emit(&account, SavingsEvent::Withdrawn { amount });
            }
            SavingsAction::Close => {
                if state.balance > 0 {
                    return Err(LifecycleError::NotEmpty {
                        account,
                        balance: state.balance,
                    });
                }
                out.emit(&account, SavingsEvent::Closed);
                out.end_stream(&account);
            }
        }
        Ok(())
    }
}
