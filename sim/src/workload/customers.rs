//! Account holders with personal data: each customer stream carries its
//! holder's name as a [`Personal`] field of one subject, sealed with that
//! subject's key (crypto-shredding, `eventcore-shred`). The simulator keeps
//! the keys ([`crate::personal::KeyVault`]) and forgets subjects while the
//! clients run; forgotten names must read as [`Personal::Forgotten`] and
//! can no longer be written.

use eventcore::{Command, Decision, Event, StreamId};
use eventcore_shred::{Personal, SubjectId};
use serde::{Deserialize, Serialize};

/// Stream-id prefix of customers.
pub const PREFIX: &str = "cust-";

/// How many customers the built-in workload names.
pub const CUSTOMERS: u32 = 3;

/// Every name the workload writes starts with this, so that a scan of the
/// stored payloads for it finds any plaintext that leaked.
pub const PLAINTEXT_MARK: &str = "secret-holder-";

/// The stream of customer `n`.
pub fn customer(n: u32) -> StreamId {
    crate::workload::stream(PREFIX, n)
}

/// The data subject of customer `n`: whose personal data its names are.
pub fn subject(n: u32) -> SubjectId {
    // A short ASCII prefix and digits always make a valid subject id.
    SubjectId::new(format!("subject-{n}")).unwrap_or_else(|_| unreachable!("`subject-<n>` is a valid subject id"))
}

/// The `k`-th name the workload gives customer `n` (a plaintext that must
/// never be stored).
pub fn name(n: u32, k: u32) -> String {
    format!("{PLAINTEXT_MARK}{n}-{k}")
}

/// What happens to a customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CustomerEvent {
    /// Registered with a holder's name (personal) and a tier (not).
    Registered {
        /// The holder's name.
        name: Personal<String>,
        /// Not personal: must read the same after a forget.
        tier: u32,
    },
    /// The holder's name changed.
    Renamed {
        /// The new name.
        name: Personal<String>,
        /// Not personal: how many names the customer had before.
        previous: u32,
    },
}

impl Event for CustomerEvent {}

/// Why a customer command is refused (besides a forgotten subject, which
/// the encoder refuses: `PersonalError::SubjectForgotten`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomerError {
    /// The name read back is not the subject's own (a decode bug).
    #[error("customer `{stream}` holds a name of subject `{found}`, expected `{expected}`")]
    WrongSubject {
        /// The customer.
        stream: StreamId,
        /// Its subject.
        expected: SubjectId,
        /// The subject found.
        found: SubjectId,
    },
}

/// A customer's folded state.
#[derive(Clone, Debug, Default)]
pub struct Holder {
    /// The current name, once registered (forgotten after a forget).
    pub name: Option<Personal<String>>,
    /// Names given so far.
    pub names: u32,
}

/// Sets the holder's name of customer `n`: registers the customer (the
/// subject's first personal data: its key does not exist yet, so the
/// driver creates it and encodes the append again) or renames it. After
/// the subject is forgotten the encoder refuses the new name.
///
/// ```
/// use eventcore::Command;
/// use eventcore_sim::workload::customers::{customer, SetHolder};
/// let set = SetHolder { customer: 1, name: "secret-holder-1-0".into() };
/// assert_eq!(set.streams(), vec![customer(1)]);
/// ```
#[derive(Clone, Debug)]
pub struct SetHolder {
    /// The customer's number.
    pub customer: u32,
    /// The new name (plaintext).
    pub name: String,
}

impl Command for SetHolder {
    type Event = CustomerEvent;
    type State = Holder;
    type Error = CustomerError;

    fn streams(&self) -> Vec<StreamId> {
        vec![customer(self.customer)]
    }

    fn apply(&self, state: &mut Holder, _: &StreamId, event: &CustomerEvent) {
        match event {
            CustomerEvent::Registered { name, .. } | CustomerEvent::Renamed { name, .. } => {
                state.name = Some(name.clone());
                state.names += 1;
            }
        }
    }

    fn decide(&self, state: &Holder, out: &mut Decision<CustomerEvent>) -> Result<(), CustomerError> {
        let subject = subject(self.customer);
        let name = Personal::new(subject.clone(), self.name.clone());
        let stream = customer(self.customer);
        match &state.name {
            None => out.emit(
                &stream,
                CustomerEvent::Registered {
                    name,
                    tier: self.customer,
                },
            ),
            Some(old) if old.subject() != &subject => {
                return Err(CustomerError::WrongSubject {
                    stream,
                    expected: subject,
                    found: old.subject().clone(),
                })
            }
            Some(_) => out.emit(
                &stream,
                CustomerEvent::Renamed {
                    name,
                    previous: state.names,
                },
            ),
        }
        Ok(())
    }
}
