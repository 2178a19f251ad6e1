//! The `Command` trait: what a user writes to make a decision over several
//! streams.

use crate::view::{ViewKind, Views};
use crate::{Event, ExpectedVersion, StreamId};

/// A command: declares the streams it reads, folds their events into a
/// state, and decides which events to append.
///
/// `apply` and `decide` must be pure: the same events give the same state,
/// the same state gives the same decision. That is what lets the executor
/// retry a command after a conflict, and the simulator replay it.
///
/// ```
/// use eventcore::{Command, Decision, Event, StreamId};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// enum Bank { Deposited { amount: u64 }, Withdrawn { amount: u64 } }
/// impl Event for Bank {}
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("insufficient funds: balance {balance}, needed {needed}")]
/// struct Insufficient { balance: u64, needed: u64 }
///
/// struct Transfer { from: StreamId, to: StreamId, amount: u64 }
///
/// impl Command for Transfer {
///     type Event = Bank;
///     type State = u64; // balance of `from`
///     type Error = Insufficient;
///
///     fn streams(&self) -> Vec<StreamId> { vec![self.from.clone(), self.to.clone()] }
///
///     fn apply(&self, balance: &mut u64, stream: &StreamId, event: &Bank) {
///         if stream != &self.from { return; }
///         match event {
///             Bank::Deposited { amount } => *balance += amount,
///             Bank::Withdrawn { amount } => *balance -= amount,
///         }
///     }
///
///     fn decide(&self, balance: &u64, out: &mut Decision<Bank>) -> Result<(), Insufficient> {
///         if *balance < self.amount {
///             return Err(Insufficient { balance: *balance, needed: self.amount });
///         }
///         out.emit(&self.from, Bank::Withdrawn { amount: self.amount });
///         out.emit(&self.to, Bank::Deposited { amount: self.amount });
///         Ok(())
///     }
/// }
/// ```
pub trait Command: Send + 'static {
    /// The events this command reads and writes.
    type Event: Event;
    /// What the fold builds; starts from `Default`.
    type State: Default + Send + 'static;
    /// Why the domain may refuse the command. Never retried.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The streams to read before the first decision. More can be requested
    /// from `decide` with [`Decision::read`].
    fn streams(&self) -> Vec<StreamId>;

    /// Folds one event of `stream` into the state. Events of all read streams
    /// are applied in global order.
    fn apply(&self, state: &mut Self::State, stream: &StreamId, event: &Self::Event);

    /// Decides what to append, given the folded state of every stream read
    /// so far. Either emit events, ask for more streams, or refuse.
    fn decide(&self, state: &Self::State, decision: &mut Decision<Self::Event>) -> Result<(), Self::Error>;

    /// The view `stream` is folded into, for a command that reads it through
    /// a [`View`](crate::View) instead of `apply`. `#[derive(Command)]` writes
    /// it; a hand-written command that folds everything in `apply` keeps the
    /// default, `None`.
    fn view_of(&self, stream: &StreamId) -> Option<ViewKind> {
        let _ = stream;
        None
    }

    /// Where the state keeps the views of the streams read through one;
    /// `None` (the default) for a command without views. `#[derive(Command)]`
    /// writes it (its state is [`Views`]).
    fn views_mut(state: &mut Self::State) -> Option<&mut Views> {
        let _ = state;
        None
    }
}

/// What `decide` produced: events addressed to streams, streams it still
/// needs to read, and expected-version overrides.
///
/// ```
/// use eventcore::{Decision, ExpectedVersion, StreamId};
/// let order = StreamId::new("order-1")?;
/// let mut d: Decision<&str> = Decision::new();
/// d.read(StreamId::new("product-7")?);
/// d.emit(&order, "Cancelled");
/// d.expect(&order, ExpectedVersion::Any);
/// assert_eq!(d.events().len(), 1);
/// assert_eq!(d.requested_streams().len(), 1);
/// # Ok::<(), eventcore::InvalidStreamId>(())
/// ```
#[derive(Debug)]
pub struct Decision<E> {
    pub(crate) events: Vec<(StreamId, E)>,
    pub(crate) reads: Vec<StreamId>,
    pub(crate) read_views: Vec<(StreamId, ViewKind)>,
    pub(crate) expectations: Vec<(StreamId, ExpectedVersion)>,
    pub(crate) missing_view: Option<(StreamId, ViewKind)>,
    pub(crate) ends: Vec<StreamId>,
}

impl<E> Default for Decision<E> {
    fn default() -> Self {
        Decision::new()
    }
}

impl<E> Decision<E> {
    /// An empty decision.
    pub fn new() -> Self {
        Decision {
            events: Vec::new(),
            reads: Vec::new(),
            read_views: Vec::new(),
            expectations: Vec::new(),
            missing_view: None,
            ends: Vec::new(),
        }
    }

    /// Appends `event` to `stream`. The stream must have been read.
    pub fn emit(&mut self, stream: &StreamId, event: E) {
        self.events.push((stream.clone(), event));
    }

    /// Ends `stream` with this decision: the append writes a tombstone with
    /// the events emitted to it, atomically, and every later append to the
    /// stream is refused with [`StoreError::StreamDeleted`](crate::StoreError::StreamDeleted)
    /// (a command meeting it fails with [`CommandErrorKind::StreamDeleted`](crate::CommandErrorKind::StreamDeleted)).
    /// The stream stays readable until a retention run removes it. The
    /// stream must have been read and must receive at least one event in
    /// this decision (its last, say `AccountClosed`); otherwise the
    /// execution ends with [`CommandError::EndWithoutEvent`](crate::CommandError::EndWithoutEvent).
    ///
    /// ```
    /// use eventcore::{Decision, StreamId};
    /// let account = StreamId::new("account-42")?;
    /// let mut decision = Decision::new();
    /// decision.emit(&account, "AccountClosed");
    /// decision.end_stream(&account);
    /// assert_eq!(decision.ended_streams(), &[account]);
    /// # Ok::<(), eventcore::InvalidStreamId>(())
    /// ```
    pub fn end_stream(&mut self, stream: &StreamId) {
        if !self.ends.contains(stream) {
            self.ends.push(stream.clone());
        }
    }

    /// The streams this decision ends ([`Decision::end_stream`]).
    pub fn ended_streams(&self) -> &[StreamId] {
        &self.ends
    }

    /// Asks to read `stream` before deciding again (dynamic discovery).
    /// Requesting a stream already read changes nothing.
    pub fn read(&mut self, stream: StreamId) {
        if !self.reads.contains(&stream) {
            self.reads.push(stream);
        }
    }

    /// Asks to read `stream` through the view `kind` before deciding again
    /// (discovery for view commands; see [`crate::Emit::read`]).
    pub fn read_view(&mut self, stream: StreamId, kind: ViewKind) {
        if !self.read_views.iter().any(|(s, _)| s == &stream) {
            self.read_views.push((stream.clone(), kind));
        }
        self.read(stream);
    }

    /// Replaces the expected version used for `stream` in the append. By
    /// default every stream read is pinned to the version read
    /// ([`ExpectedVersion::from_read`]), so the whole decision is checked for
    /// concurrent changes; relax it only for streams whose changes cannot
    /// invalidate the decision.
    pub fn expect(&mut self, stream: &StreamId, expected: ExpectedVersion) {
        self.expectations.retain(|(s, _)| s != stream);
        self.expectations.push((stream.clone(), expected));
    }

    /// The events emitted so far, in order.
    pub fn events(&self) -> &[(StreamId, E)] {
        &self.events
    }

    /// The streams requested with [`Decision::read`].
    pub fn requested_streams(&self) -> &[StreamId] {
        &self.reads
    }

    /// The expected-version overrides.
    pub fn expectations(&self) -> &[(StreamId, ExpectedVersion)] {
        &self.expectations
    }
}
