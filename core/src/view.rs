//! Stream views: a fold of one stream's events into a small value that knows
//! nothing about any command, so that it can be cached, shared by every
//! command that reads the stream, and snapshotted.
//!
//! A command built on views (usually with `#[derive(Command)]`) declares,
//! for each stream it reads, which [`View`] folds it. The machine folds each
//! stream into its own view in stream order; the command's `decide` sees the
//! views of every stream it read ([`Views`]) and may emit events of any type
//! to any of them ([`Emit`]), appended atomically in one request.
//!
//! Use views when each stream's contribution to a decision can be computed
//! from that stream alone (an account's balance, an order's status, a
//! product's stock). Use the whole-command fold ([`crate::Command::apply`])
//! when the decision depends on how events of different streams interleave
//! in global order.

use crate::codec::{decode_recorded, DecodeError, EncodeError, EncodedEvent};
use crate::{
    Decision, DecodeErrorKind, Event, EventId, ExpectedVersion, Payload, RecordedEvent, StreamId, StreamVersion,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// A fold of one stream: what a command needs to know about that stream,
/// independent of any command's fields.
///
/// `apply` must be pure (the same events give the same view) and must depend
/// on nothing but the events: that is what lets every command share one
/// cached copy and lets a snapshot stand in for the events it covers. Change
/// [`View::VERSION`] whenever `apply` or the view's shape changes, so that
/// cached and persisted copies of the old fold are ignored.
///
/// ```
/// use eventcore::{Event, View};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// enum AccountEvent { Opened, Deposited { amount: u64 }, Withdrawn { amount: u64 } }
/// impl Event for AccountEvent {}
///
/// #[derive(Clone, Debug, Default, Serialize, Deserialize)]
/// struct Account { open: bool, balance: u64 }
///
/// impl View for Account {
///     type Event = AccountEvent;
///     const NAME: &'static str = "account";
///     fn apply(&mut self, event: &AccountEvent) {
///         match event {
///             AccountEvent::Opened => self.open = true,
///             AccountEvent::Deposited { amount } => self.balance += amount,
///             AccountEvent::Withdrawn { amount } => self.balance = self.balance.saturating_sub(*amount),
///         }
///     }
/// }
///
/// let mut account = Account::default();
/// account.apply(&AccountEvent::Deposited { amount: 5 });
/// assert_eq!(account.balance, 5);
/// ```
pub trait View: Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The events of the streams this view folds.
    type Event: Event;
    /// A stable name: the cache key and the snapshot key. Two views must not
    /// share a name.
    const NAME: &'static str;
    /// The version of the fold. Bump it when `apply` or the shape changes:
    /// cache entries and snapshots of another version are never used.
    const VERSION: u32 = 1;
    /// Persist a snapshot each time the stream crosses a multiple of this
    /// many events; 0 never snapshots this view.
    const SNAPSHOT_EVERY: u64 = 100;

    /// Folds one event of the stream.
    fn apply(&mut self, event: &Self::Event);

    /// Roughly how many bytes the view holds, for the cache's memory bound.
    /// Override it when the view owns growing collections.
    fn approximate_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

/// A view's type, erased: its name, version and snapshot interval, and how
/// to make, decode and fold one. `ViewKind::of::<V>()`.
///
/// ```
/// # use eventcore::{Event, View, ViewKind};
/// # #[derive(serde::Serialize, serde::Deserialize)] enum E { Hit }
/// # impl Event for E {}
/// #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
/// struct Hits(u64);
/// impl View for Hits {
///     type Event = E;
///     const NAME: &'static str = "hits";
///     const VERSION: u32 = 3;
///     fn apply(&mut self, _: &E) { self.0 += 1; }
/// }
/// let kind = ViewKind::of::<Hits>();
/// assert_eq!((kind.name(), kind.version()), ("hits", 3));
/// assert_eq!(kind, ViewKind::of::<Hits>());
/// ```
#[derive(Clone, Copy)]
pub struct ViewKind {
    name: &'static str,
    version: u32,
    snapshot_every: u64,
    new: fn() -> Arc<dyn AnyView>,
    decode: fn(&str) -> Result<Arc<dyn AnyView>, serde_json::Error>,
}

impl ViewKind {
    /// The kind of `V`.
    pub fn of<V: View>() -> Self {
        ViewKind {
            name: V::NAME,
            version: V::VERSION,
            snapshot_every: V::SNAPSHOT_EVERY,
            new: || Arc::new(Typed(V::default())),
            decode: |text| serde_json::from_str::<V>(text).map(|v| Arc::new(Typed(v)) as Arc<dyn AnyView>),
        }
    }

    /// [`View::NAME`].
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// [`View::VERSION`].
    pub fn version(&self) -> u32 {
        self.version
    }

    /// [`View::SNAPSHOT_EVERY`].
    pub fn snapshot_every(&self) -> u64 {
        self.snapshot_every
    }

    /// The view of an empty stream.
    pub fn empty(&self) -> Arc<dyn AnyView> {
        (self.new)()
    }

    /// Rebuilds a view from its snapshot payload ([`AnyView::encode`]).
    pub fn decode(&self, payload: &str) -> Result<Arc<dyn AnyView>, serde_json::Error> {
        (self.decode)(payload)
    }
}

impl PartialEq for ViewKind {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.version == other.version
    }
}

impl Eq for ViewKind {}

impl fmt::Debug for ViewKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@v{}", self.name, self.version)
    }
}

impl fmt::Display for ViewKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (version {})", self.name, self.version)
    }
}

/// A view behind a pointer, whatever its type: what caches, snapshot
/// stores and the machine hold. Made by [`ViewKind`]; read back as the
/// concrete type with [`Views::get`] or `downcast`.
pub trait AnyView: Send + Sync + fmt::Debug + 'static {
    /// The view's kind.
    fn kind(&self) -> ViewKind;
    /// Decodes a stored event of the stream and folds it.
    fn apply_recorded(&mut self, event: &RecordedEvent) -> Result<(), DecodeError>;
    /// Folds an event this process emitted (no decoding when its type is
    /// the view's event type).
    fn apply_emitted(&mut self, event: &AnyEvent) -> Result<(), DecodeErrorKind>;
    /// Whether this view can fold `event` (its type decodes as the view's
    /// event type), without folding it.
    fn accepts(&self, event: &AnyEvent) -> Result<(), DecodeErrorKind>;
    /// A copy, for a writer that must not disturb a shared one.
    fn clone_view(&self) -> Arc<dyn AnyView>;
    /// The snapshot payload: the view as JSON.
    fn encode(&self) -> Result<String, serde_json::Error>;
    /// [`View::approximate_bytes`].
    fn approximate_bytes(&self) -> usize;
    /// The concrete view, for `downcast`.
    fn as_any(&self) -> &dyn Any;
}

impl dyn AnyView {
    /// The concrete view, if it is a `V`.
    ///
    /// ```
    /// # use eventcore::{Event, View, ViewKind};
    /// # #[derive(serde::Serialize, serde::Deserialize)] enum E { Hit }
    /// # impl Event for E {}
    /// # #[derive(Clone, Default, Debug, PartialEq, serde::Serialize, serde::Deserialize)] struct Hits(u64);
    /// # impl View for Hits { type Event = E; const NAME: &'static str = "hits"; fn apply(&mut self, _: &E) { self.0 += 1; } }
    /// let view = ViewKind::of::<Hits>().empty();
    /// assert_eq!(view.downcast::<Hits>(), Some(&Hits(0)));
    /// ```
    pub fn downcast<V: View>(&self) -> Option<&V> {
        self.as_any().downcast_ref::<Typed<V>>().map(|t| &t.0)
    }
}

/// The one implementation of [`AnyView`]: a `V` in a newtype, so that the
/// blanket methods need no bounds on user types beyond [`View`].
struct Typed<V>(V);

impl<V: View> fmt::Debug for Typed<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@v{}", V::NAME, V::VERSION)
    }
}

impl<V: View> AnyView for Typed<V> {
    fn kind(&self) -> ViewKind {
        ViewKind::of::<V>()
    }

    fn apply_recorded(&mut self, event: &RecordedEvent) -> Result<(), DecodeError> {
        let event = decode_recorded::<V::Event>(event)?;
        self.0.apply(&event);
        Ok(())
    }

    fn apply_emitted(&mut self, event: &AnyEvent) -> Result<(), DecodeErrorKind> {
        if let Some(typed) = event.downcast::<V::Event>() {
            self.0.apply(typed);
            return Ok(());
        }
        // Emitted as another type than this view folds: fold what a reader
        // would decode from the store, so the cache matches a fresh read.
        let encoded = Event::encode(event).map_err(|e| DecodeErrorKind::InvalidPayload(e.to_string()))?;
        let decoded = V::Event::decode(encoded.event_type.as_str(), encoded.schema_version, &encoded.payload)?;
        self.0.apply(&decoded);
        Ok(())
    }

    fn accepts(&self, event: &AnyEvent) -> Result<(), DecodeErrorKind> {
        if event.downcast::<V::Event>().is_some() {
            return Ok(());
        }
        let encoded = Event::encode(event).map_err(|e| DecodeErrorKind::InvalidPayload(e.to_string()))?;
        V::Event::decode(encoded.event_type.as_str(), encoded.schema_version, &encoded.payload).map(|_| ())
    }

    fn clone_view(&self) -> Arc<dyn AnyView> {
        Arc::new(Typed(self.0.clone()))
    }

    fn encode(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(&self.0)
    }

    fn approximate_bytes(&self) -> usize {
        self.0.approximate_bytes()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Mutable access to a shared view: in place when nobody else holds it, on a
/// fresh copy otherwise (copy-on-write, like `Arc::make_mut`).
pub(crate) fn view_mut(slot: &mut Arc<dyn AnyView>) -> &mut dyn AnyView {
    if Arc::get_mut(slot).is_none() {
        *slot = slot.clone_view();
    }
    match Arc::get_mut(slot) {
        Some(view) => view,
        // A fresh copy has no other owner, so the first branch always
        // succeeds; this arm only keeps the function total.
        None => unreachable_view(),
    }
}

#[cold]
fn unreachable_view() -> ! {
    unreachable!("a freshly cloned view has exactly one owner")
}

/// One stream read through a view: the view folded up to `version`.
///
/// What a driver takes out of a finished machine ([`CommandMachine::take_views`](crate::CommandMachine::take_views))
/// to cache or snapshot, and what it primes the next machine with
/// ([`CommandMachine::prime_view`](crate::CommandMachine::prime_view)).
#[derive(Clone, Debug)]
pub struct StreamView {
    /// The stream folded.
    pub stream: StreamId,
    /// The view's kind.
    pub kind: ViewKind,
    /// The stream version the view is folded up to (0: empty stream).
    pub version: StreamVersion,
    /// The version the execution started from (what a cache or snapshot
    /// gave it, 0 when it read the stream from the start): a driver
    /// snapshots when `version` crossed a multiple of the view's interval
    /// since then.
    pub base_version: StreamVersion,
    /// The id of the event at `version`, when known: what a persisted
    /// snapshot is checked against before it is trusted (a snapshot of
    /// another history with the same event count must not pass).
    pub last_event: Option<EventId>,
    /// The folded view.
    pub view: Arc<dyn AnyView>,
}

impl StreamView {
    /// Whether a snapshot is due: the stream crossed a multiple of the view's
    /// [`View::SNAPSHOT_EVERY`] since the execution's starting point.
    ///
    /// ```
    /// # use eventcore::*;
    /// # #[derive(serde::Serialize, serde::Deserialize)] enum E { Hit }
    /// # impl Event for E {}
    /// # #[derive(Clone, Default, Debug, serde::Serialize, serde::Deserialize)] struct Hits(u64);
    /// # impl View for Hits { type Event = E; const NAME: &'static str = "hits"; fn apply(&mut self, _: &E) { self.0 += 1; } }
    /// let kind = ViewKind::of::<Hits>(); // every 100 events
    /// let at = |base, version| StreamView {
    ///     stream: StreamId::new("s").unwrap(), kind, view: kind.empty(),
    ///     base_version: StreamVersion::new(base), version: StreamVersion::new(version),
    ///     last_event: Some(EventId::v7(Time::ZERO, [1; 10])),
    /// };
    /// assert!(at(99, 100).snapshot_due());
    /// assert!(!at(100, 199).snapshot_due());
    /// assert!(at(0, 250).snapshot_due());
    /// ```
    pub fn snapshot_due(&self) -> bool {
        let every = self.kind.snapshot_every();
        every != 0 && self.last_event.is_some() && self.version.get() / every > self.base_version.get() / every
    }
}

/// The views of every stream a command read: the state a view command
/// decides on.
///
/// ```
/// # use eventcore::*;
/// # #[derive(serde::Serialize, serde::Deserialize)] enum E { Hit }
/// # impl Event for E {}
/// # #[derive(Clone, Default, Debug, PartialEq, serde::Serialize, serde::Deserialize)] struct Hits(u64);
/// # impl View for Hits { type Event = E; const NAME: &'static str = "hits"; fn apply(&mut self, _: &E) { self.0 += 1; } }
/// let views = Views::default();
/// assert!(views.get::<Hits>(&StreamId::new("page-1")?).is_none(), "nothing read yet");
/// # Ok::<(), InvalidStreamId>(())
/// ```
#[derive(Debug, Default)]
pub struct Views {
    pub(crate) slots: Vec<ViewSlot>,
}

#[derive(Debug)]
pub(crate) struct ViewSlot {
    pub(crate) stream: StreamId,
    pub(crate) kind: ViewKind,
    pub(crate) view: Arc<dyn AnyView>,
}

impl Views {
    /// The `V` view of `stream`, if the command read it through `V`.
    pub fn get<V: View>(&self, stream: &StreamId) -> Option<&V> {
        self.slots
            .iter()
            .find(|s| &s.stream == stream)
            .and_then(|s| s.view.downcast::<V>())
    }

    /// The streams read through a view, in the order they were requested.
    pub fn streams(&self) -> impl Iterator<Item = &StreamId> {
        self.slots.iter().map(|s| &s.stream)
    }

    pub(crate) fn slot_mut(&mut self, stream: &StreamId) -> Option<&mut ViewSlot> {
        self.slots.iter_mut().find(|s| &s.stream == stream)
    }

    pub(crate) fn ensure(&mut self, stream: &StreamId, kind: ViewKind) {
        if self.slot_mut(stream).is_none() {
            self.slots.push(ViewSlot {
                stream: stream.clone(),
                kind,
                view: kind.empty(),
            });
        }
    }
}

/// An event of any type, as a view command emits it: the typed value, kept
/// so that the command's own views fold it without decoding, and encoded
/// only when the append is built. Events read back from a store arrive in
/// stored form.
///
/// ```
/// use eventcore::{AnyEvent, Event};
/// #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
/// enum Stock { Reserved { qty: u32 } }
/// impl Event for Stock {}
/// let any = AnyEvent::new(Stock::Reserved { qty: 2 });
/// assert_eq!(any.downcast::<Stock>(), Some(&Stock::Reserved { qty: 2 }));
/// assert_eq!(any.encode()?.event_type.as_str(), "Reserved");
/// # Ok::<(), eventcore::EncodeError>(())
/// ```
pub struct AnyEvent(AnyEventInner);

enum AnyEventInner {
    Typed(Box<dyn EmittedEvent>),
    Stored(EncodedEvent),
}

trait EmittedEvent: Send + 'static {
    fn encode_event(&self) -> Result<EncodedEvent, EncodeError>;
    fn encode_event_as(&self, codec: crate::Codec) -> Result<EncodedEvent, EncodeError>;
    fn as_any(&self) -> &dyn Any;
}

impl<E: Event> EmittedEvent for E {
    fn encode_event(&self) -> Result<EncodedEvent, EncodeError> {
        Event::encode(self)
    }
    fn encode_event_as(&self, codec: crate::Codec) -> Result<EncodedEvent, EncodeError> {
        Event::encode_as(self, codec)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl AnyEvent {
    /// Wraps a typed event.
    pub fn new<E: Event>(event: E) -> Self {
        AnyEvent(AnyEventInner::Typed(Box::new(event)))
    }

    pub(crate) fn stored(encoded: EncodedEvent) -> Self {
        AnyEvent(AnyEventInner::Stored(encoded))
    }

    /// The typed event, if this is an `E` emitted in this process.
    pub fn downcast<E: Event>(&self) -> Option<&E> {
        match &self.0 {
            AnyEventInner::Typed(event) => event.as_any().downcast_ref::<E>(),
            AnyEventInner::Stored(_) => None,
        }
    }
}

impl fmt::Debug for AnyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            AnyEventInner::Typed(_) => f.write_str("AnyEvent(typed)"),
            AnyEventInner::Stored(e) => write!(f, "AnyEvent({} v{})", e.event_type, e.schema_version),
        }
    }
}

impl Serialize for AnyEvent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeStruct};
        let encoded = Event::encode(self).map_err(S::Error::custom)?;
        let payload: serde_json::Value = serde_json::from_str(encoded.payload.as_json()).map_err(S::Error::custom)?;
        let mut out = serializer.serialize_struct("AnyEvent", 3)?;
        out.serialize_field("type", encoded.event_type.as_str())?;
        out.serialize_field("schema_version", &encoded.schema_version)?;
        out.serialize_field("payload", &payload)?;
        out.end()
    }
}

impl<'de> serde::Deserialize<'de> for AnyEvent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(serde::Deserialize)]
        struct Stored {
            #[serde(rename = "type")]
            event_type: crate::EventType,
            schema_version: u32,
            payload: serde_json::Value,
        }
        let stored = Stored::deserialize(deserializer)?;
        let payload = Payload::from_value(&stored.payload).map_err(D::Error::custom)?;
        Ok(AnyEvent(AnyEventInner::Stored(EncodedEvent {
            event_type: stored.event_type,
            schema_version: stored.schema_version,
            payload,
        })))
    }
}

impl Event for AnyEvent {
    fn encode(&self) -> Result<EncodedEvent, EncodeError> {
        match &self.0 {
            AnyEventInner::Typed(event) => event.encode_event(),
            AnyEventInner::Stored(encoded) => Ok(encoded.clone()),
        }
    }

    /// A typed event in its own type's encoding; one read back from a
    /// store as it was stored (the store converts it to its codec).
    fn encode_as(&self, codec: crate::Codec) -> Result<EncodedEvent, EncodeError> {
        match &self.0 {
            AnyEventInner::Typed(event) => event.encode_event_as(codec),
            AnyEventInner::Stored(encoded) => Ok(encoded.clone()),
        }
    }

    fn decode(event_type: &str, schema_version: u32, payload: &Payload) -> Result<Self, DecodeErrorKind> {
        let event_type =
            crate::EventType::new(event_type).map_err(|e| DecodeErrorKind::InvalidPayload(e.to_string()))?;
        Ok(AnyEvent(AnyEventInner::Stored(EncodedEvent {
            event_type,
            schema_version,
            payload: payload.clone(),
        })))
    }
}

/// What a view command's `decide` writes: events of any type to any stream
/// it read, streams to read next (each through its view), and
/// expected-version overrides.
///
/// ```
/// use eventcore::{AnyEvent, Decision, Emit, Event, StreamId, View};
/// # #[derive(serde::Serialize, serde::Deserialize)] enum OrderEvent { Cancelled }
/// # impl Event for OrderEvent {}
/// # #[derive(serde::Serialize, serde::Deserialize)] enum StockEvent { Released { qty: u32 } }
/// # impl Event for StockEvent {}
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)] struct Stock(u32);
/// # impl View for Stock { type Event = StockEvent; const NAME: &'static str = "stock"; fn apply(&mut self, _: &StockEvent) {} }
/// let (order, product) = (StreamId::new("order-1")?, StreamId::new("stock-7")?);
/// let mut decision: Decision<AnyEvent> = Decision::new();
/// let mut out = Emit::new(&mut decision);
/// out.read::<Stock>(product.clone());
/// out.emit(&order, OrderEvent::Cancelled);
/// out.emit(&product, StockEvent::Released { qty: 2 });
/// assert_eq!(decision.events().len(), 2);
/// # Ok::<(), eventcore::InvalidStreamId>(())
/// ```
#[derive(Debug)]
pub struct Emit<'a> {
    decision: &'a mut Decision<AnyEvent>,
}

impl<'a> Emit<'a> {
    /// Wraps the decision the machine hands a view command.
    pub fn new(decision: &'a mut Decision<AnyEvent>) -> Self {
        Emit { decision }
    }

    /// Appends `event` to `stream`, which must have been read.
    pub fn emit<E: Event>(&mut self, stream: &StreamId, event: E) {
        self.decision.emit(stream, AnyEvent::new(event));
    }

    /// Ends `stream` with this decision: its last event (emitted to it in
    /// this decision) is written with a tombstone, and later appends to it
    /// are refused (see [`Decision::end_stream`]).
    ///
    /// ```
    /// use eventcore::{AnyEvent, Decision, Emit, Event, StreamId};
    /// use serde::{Deserialize, Serialize};
    /// #[derive(Serialize, Deserialize)]
    /// enum AccountEvent { Closed }
    /// impl Event for AccountEvent {}
    /// let account = StreamId::new("account-42")?;
    /// let mut decision: Decision<AnyEvent> = Decision::new();
    /// let mut out = Emit::new(&mut decision);
    /// out.emit(&account, AccountEvent::Closed);
    /// out.end_stream(&account);
    /// assert_eq!(decision.ended_streams(), &[account]);
    /// # Ok::<(), eventcore::InvalidStreamId>(())
    /// ```
    pub fn end_stream(&mut self, stream: &StreamId) {
        self.decision.end_stream(stream);
    }

    /// Asks to read `stream` through the view `V` before deciding again
    /// (dynamic discovery).
    pub fn read<V: View>(&mut self, stream: StreamId) {
        self.decision.read_view(stream, ViewKind::of::<V>());
    }

    /// Replaces the expected version of `stream` in the append (see
    /// [`Decision::expect`]).
    pub fn expect(&mut self, stream: &StreamId, expected: ExpectedVersion) {
        self.decision.expect(stream, expected);
    }

    /// Records that a view the command needs was not read (a declared
    /// stream missing from [`Views`]): the machine ends the execution with
    /// [`crate::CommandError::MissingView`] instead of deciding on a guess.
    /// Called by code that `#[derive(Command)]` writes.
    pub fn missing_view(&mut self, stream: &StreamId, kind: ViewKind) {
        self.decision.missing_view = Some((stream.clone(), kind));
    }
}

/// The decision half of a command built on views, written by hand next to
/// `#[derive(Command)]`, which writes the rest (the streams, each stream's
/// view, and the typed state `{Command}State` passed here).
///
/// ```
/// use eventcore::{require, Command, Decide, Emit, Event, StreamId, View};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// enum AccountEvent { Deposited { amount: u64 }, Withdrawn { amount: u64 } }
/// impl Event for AccountEvent {}
///
/// #[derive(Clone, Default, Serialize, Deserialize)]
/// struct Account { balance: u64 }
/// impl View for Account {
///     type Event = AccountEvent;
///     const NAME: &'static str = "account";
///     fn apply(&mut self, event: &AccountEvent) {
///         match event {
///             AccountEvent::Deposited { amount } => self.balance += amount,
///             AccountEvent::Withdrawn { amount } => self.balance -= amount,
///         }
///     }
/// }
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("insufficient funds")]
/// struct InsufficientFunds;
///
/// #[derive(Command)]
/// struct Transfer {
///     #[stream(Account)]
///     from: StreamId,
///     #[stream(Account)]
///     to: StreamId,
///     amount: u64,
/// }
///
/// impl Decide for Transfer {
///     type Error = InsufficientFunds;
///     fn decide(&self, state: &TransferState<'_>, out: &mut Emit<'_>) -> Result<(), InsufficientFunds> {
///         require!(state.from.balance >= self.amount, InsufficientFunds);
///         out.emit(&self.from, AccountEvent::Withdrawn { amount: self.amount });
///         out.emit(&self.to, AccountEvent::Deposited { amount: self.amount });
///         Ok(())
///     }
/// }
/// # let _ = Transfer { from: StreamId::new("a").unwrap(), to: StreamId::new("b").unwrap(), amount: 1 };
/// ```
pub trait Decide: ComposeViews {
    /// Why the domain may refuse the command. Never retried.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Decides what to append, given the view of every stream read.
    fn decide(&self, state: &Self::State<'_>, out: &mut Emit<'_>) -> Result<(), Self::Error>;
}

/// How a view command's typed state is put together from the views read:
/// written by `#[derive(Command)]`.
pub trait ComposeViews {
    /// The typed state: a reference to the view of each annotated field.
    type State<'a>
    where
        Self: 'a;
}

/// Returns `Err(error.into())` from the enclosing function unless
/// `condition` holds: the guard clause of a `decide`.
///
/// ```
/// use eventcore::require;
/// #[derive(Debug, PartialEq)]
/// struct TooLarge { max: u64 }
/// fn check(amount: u64) -> Result<(), TooLarge> {
///     require!(amount <= 100, TooLarge { max: 100 });
///     Ok(())
/// }
/// assert_eq!(check(5), Ok(()));
/// assert_eq!(check(500), Err(TooLarge { max: 100 }));
/// ```
#[macro_export]
macro_rules! require {
    ($condition:expr, $error:expr $(,)?) => {
        if !$condition {
            return ::core::result::Result::Err(::core::convert::From::from($error));
        }
    };
}
