//! Projections: read models kept up to date from the global log, with the
//! read-model update and the checkpoint committed in **one transaction**, so
//! every event is applied exactly once even when the process dies mid-batch.
//!
//! Two traits split the work:
//! - [`ProjectionStore`] (in `eventcore-store`) is where the read model and its checkpoint live. It
//!   opens a transaction fenced by the lease token and commits it together
//!   with the new checkpoint. PostgreSQL implements it with one SQL
//!   transaction (`eventcore_postgres`); [`MemoryReadModel`] implements it in
//!   memory.
//! - [`Projection`] is the user's logic: it applies decoded events inside
//!   that transaction.
//!
//! A [`Runner::projection`] wires them to an [`EventStore`]: it claims the
//! checkpoint (fencing out older holders), then for every batch begins a
//! transaction, decodes and applies each event, and commits with the batch's
//! checkpoint. A batch that fails is rolled back as a whole.
//!
//! **Rebuild**: run the same projection under a new name into a fresh read
//! model with [`Runner::run_until_caught_up`] while the old one keeps
//! serving, switch readers over ([`Serving`] for memory, a view or table
//! rename in SQL), stop the old runner and keep the new one running.

use crate::{BatchDecoder, Runner, Sink};
use eventcore::{
    Batch, CheckpointMode, ConsumerError, Event, EventFilter, GlobalPosition, HandleError, PoisonEvent, RecordedEvent,
};
use eventcore_store::{CheckpointError, FencingToken, ProjectionStore};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// Why a projection did not apply an event.
///
/// ```
/// use eventcore_tokio::ProjectionError;
/// let e = ProjectionError::Rejected("unknown account".into());
/// assert_eq!(e.to_string(), "event rejected: unknown account");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// This event cannot be applied: it is poison (retried alone, then
    /// parked or stopping the projection, per the poison policy).
    #[error("event rejected: {0}")]
    Rejected(String),
    /// A passing failure (a lost connection, a serialization failure): the
    /// batch is rolled back and retried with backoff.
    #[error("transient projection failure: {0}")]
    Transient(String),
    /// A failure retrying will not fix: the projection stops.
    #[error("permanent projection failure: {0}")]
    Permanent(String),
}

impl From<CheckpointError> for ProjectionError {
    fn from(error: CheckpointError) -> Self {
        match error {
            CheckpointError::Transient(message) => ProjectionError::Transient(message),
            other => ProjectionError::Permanent(other.to_string()),
        }
    }
}

/// A read model kept from the event log: the API to reach for first.
///
/// `apply` runs inside the batch's transaction; everything it writes through
/// `tx` commits together with the checkpoint, or not at all.
///
/// ```
/// use eventcore::{Event, RecordedEvent};
/// use eventcore_tokio::{MemoryReadModel, MemoryTransaction, Projection, ProjectionError};
/// use serde::{Deserialize, Serialize};
/// use std::collections::BTreeMap;
///
/// #[derive(Serialize, Deserialize)]
/// enum Account { Deposited { amount: i64 }, Withdrawn { amount: i64 } }
/// impl Event for Account {}
///
/// struct Balances;
/// impl Projection for Balances {
///     type Event = Account;
///     type Store = MemoryReadModel<BTreeMap<String, i64>>;
///     async fn apply(
///         &mut self,
///         tx: &mut MemoryTransaction<BTreeMap<String, i64>>,
///         event: Account,
///         recorded: &RecordedEvent,
///     ) -> Result<(), ProjectionError> {
///         let balance = tx.state_mut().entry(recorded.stream_id.to_string()).or_default();
///         match event {
///             Account::Deposited { amount } => *balance += amount,
///             Account::Withdrawn { amount } => *balance -= amount,
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Projection: Send + 'static {
    /// The events it reads. By default the projection reads only the
    /// stored types this enum decodes ([`Event::event_types`]), so events
    /// of other modules never reach it; an event of one of its own types
    /// that does not decode is poison.
    type Event: Event;
    /// Where its read model lives.
    type Store: ProjectionStore;

    /// Which events to read, applied by the event store in its query.
    /// Default: [`EventFilter::decodable_by`] the projection's event type.
    /// An override should start from it too
    /// (`EventFilter::decodable_by::<Self::Event>().with_stream_prefix(..)`),
    /// or foreign events matching the override reach `apply` as poison.
    fn filter(&self) -> EventFilter {
        EventFilter::decodable_by::<Self::Event>()
    }

    /// Applies one event inside the batch's transaction.
    fn apply(
        &mut self,
        tx: &mut <Self::Store as ProjectionStore>::Transaction,
        event: Self::Event,
        recorded: &RecordedEvent,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;
}

/// The [`Sink`] of a projection: one transaction per batch.
#[derive(Debug)]
pub struct ProjectionSink<P: Projection> {
    projection: P,
    store: P::Store,
    claimed: Option<(String, FencingToken)>,
    decoder: BatchDecoder,
}

impl<P: Projection> ProjectionSink<P> {
    /// The projection.
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// The read-model store.
    pub fn store(&self) -> &P::Store {
        &self.store
    }

    /// What decodes its batches.
    pub fn decoder(&self) -> &BatchDecoder {
        &self.decoder
    }

    /// Applies `batch` in one transaction and commits it with its
    /// checkpoint; with `skip_committed`, events at or below the checkpoint
    /// the store had already committed are left out (a redelivery after a
    /// commit whose answer was lost).
    async fn apply_batch(&mut self, batch: &Batch, skip_committed: bool) -> Result<(), HandleError>
    where
        P::Event: Send,
    {
        let (name, token) = self.claimed().map_err(ConsumerError::from)?;
        let mut tx = self.store.begin(name, token).await.map_err(ConsumerError::from)?;
        // Events already committed (a redelivery after a commit whose
        // answer was lost) are not applied again.
        let committed = P::Store::committed(&tx).filter(|_| skip_committed);
        let events = batch.events.iter().filter(|e| committed.is_none_or(|c| e.position > c));
        // Decoded up front, under the codec context if any: the context is
        // installed around synchronous calls only, never across `apply`.
        for (event, recorded) in self.decoder.decode::<P::Event>(events).await? {
            match self.projection.apply(&mut tx, event, recorded).await {
                Ok(()) => {}
                Err(ProjectionError::Rejected(message)) => {
                    return Err(PoisonEvent::handler(recorded, message).into());
                }
                Err(ProjectionError::Transient(message)) => return Err(ConsumerError::Transient(message).into()),
                Err(ProjectionError::Permanent(message)) => return Err(ConsumerError::Permanent(message).into()),
            }
        }
        self.store
            .commit(tx, batch.checkpoint)
            .await
            .map_err(|e| HandleError::Consumer(e.into()))
    }

    fn claimed(&self) -> Result<(&str, FencingToken), CheckpointError> {
        match &self.claimed {
            Some((name, token)) => Ok((name, *token)),
            None => Err(CheckpointError::Permanent(
                "projection used before it was claimed".into(),
            )),
        }
    }
}

impl<P: Projection> Sink for ProjectionSink<P>
where
    P::Event: Send,
{
    fn checkpoint_mode(&self) -> CheckpointMode {
        CheckpointMode::WithBatch
    }

    async fn claim(&mut self, name: &str, token: FencingToken) -> Result<GlobalPosition, CheckpointError> {
        let position = self.store.claim(name, token).await?;
        self.claimed = Some((name.to_owned(), token));
        Ok(position)
    }

    async fn handle(&mut self, batch: &Batch) -> Result<(), HandleError> {
        self.apply_batch(batch, true).await
    }

    async fn replay(&mut self, batch: &Batch) -> Result<(), HandleError> {
        // A replayed letter sits below the checkpoint by nature (it was
        // parked, not applied, when the checkpoint passed it): no skipping.
        self.apply_batch(batch, false).await
    }

    async fn save(&mut self, position: GlobalPosition) -> Result<(), CheckpointError> {
        let (name, token) = self.claimed()?;
        let tx = self.store.begin(name, token).await?;
        self.store.commit(tx, position).await
    }
}

impl<S: crate::EventStore, P: Projection> Runner<S, ProjectionSink<P>>
where
    P::Event: Send,
{
    /// A projection named `name` (its checkpoint, lease and dead-letter key)
    /// reading `events`, writing its read model to `store`. Exactly-once:
    /// each batch and its checkpoint commit in one transaction.
    ///
    /// ```
    /// # use eventcore::{Event, RecordedEvent};
    /// # use eventcore_tokio::*;
    /// # #[derive(serde::Serialize, serde::Deserialize)] enum Ev { Ticked }
    /// # impl Event for Ev {}
    /// struct Ticks;
    /// impl Projection for Ticks {
    ///     type Event = Ev;
    ///     type Store = MemoryReadModel<u64>;
    ///     async fn apply(&mut self, tx: &mut MemoryTransaction<u64>, _: Ev, _: &RecordedEvent) -> Result<(), ProjectionError> {
    ///         *tx.state_mut() += 1;
    ///         Ok(())
    ///     }
    /// }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let events = MemoryEventStore::new();
    /// let model = MemoryReadModel::new();
    /// let mut runner = Runner::projection("ticks", events.clone(), Ticks, model.clone())
    ///     .with_wakeups(events.watch_head());
    /// runner.run_until_caught_up().await.unwrap();
    /// assert_eq!(model.read(|n| *n), 0);
    /// # });
    /// ```
    pub fn projection(name: impl Into<String>, events: S, projection: P, store: P::Store) -> Self {
        let filter = projection.filter();
        Runner::with_sink(
            name,
            events,
            ProjectionSink {
                projection,
                store,
                claimed: None,
                decoder: BatchDecoder::plain(),
            },
            filter,
        )
    }
}

impl<S: crate::EventStore, P: Projection, L: crate::LeaseStore, D: crate::DeadLetterStore>
    Runner<S, ProjectionSink<P>, L, D>
where
    P::Event: Send,
{
    /// Decodes every batch under `decoder`'s codec context (one session per
    /// batch): with `eventcore_shred::PersonalData`, the projection's
    /// `Personal` fields arrive `Known`, or `Forgotten` once their subject
    /// is, never as poison.
    ///
    /// ```
    /// # use eventcore::{Event, RecordedEvent};
    /// # use eventcore_tokio::*;
    /// # #[derive(serde::Serialize, serde::Deserialize)] enum Ev { Ticked }
    /// # impl Event for Ev {}
    /// # struct Ticks;
    /// # impl Projection for Ticks {
    /// #     type Event = Ev;
    /// #     type Store = MemoryReadModel<u64>;
    /// #     async fn apply(&mut self, tx: &mut MemoryTransaction<u64>, _: Ev, _: &RecordedEvent) -> Result<(), ProjectionError> { Ok(()) }
    /// # }
    /// let runner = Runner::projection("ticks", MemoryEventStore::new(), Ticks, MemoryReadModel::new())
    ///     .with_codec_context(BatchDecoder::plain());
    /// assert!(runner.sink().decoder().context().is_none());
    /// ```
    pub fn with_codec_context(mut self, decoder: BatchDecoder) -> Self {
        self.sink_mut().decoder = decoder;
        self
    }
}

#[derive(Debug)]
struct ModelInner<T> {
    state: T,
    /// Bumped by every commit; a transaction begun on an older version
    /// conflicts (optimistic concurrency between projections that share
    /// one model).
    version: u64,
    checkpoints: BTreeMap<String, (GlobalPosition, FencingToken)>,
}

/// A read model in memory: a value of `T` plus the checkpoints of the
/// projections writing it, committed together.
///
/// A transaction works on a copy of `T` and replaces the value on commit,
/// so keep `T` modest or cheap to clone (`im`-style persistent maps), and
/// read it with [`MemoryReadModel::read`].
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use eventcore::GlobalPosition;
/// use eventcore_tokio::{FencingToken, MemoryReadModel, ProjectionStore};
/// let model = MemoryReadModel::<Vec<u64>>::new();
/// let token = FencingToken::new(1);
/// model.claim("p", token).await.unwrap();
/// let mut tx = model.begin("p", token).await.unwrap();
/// tx.state_mut().push(7);
/// model.commit(tx, GlobalPosition::new(7)).await.unwrap();
/// assert_eq!(model.read(|v| v.clone()), vec![7]);
/// assert_eq!(model.checkpoint("p"), Some(GlobalPosition::new(7)));
/// // A dropped transaction leaves nothing behind.
/// let mut tx = model.begin("p", token).await.unwrap();
/// tx.state_mut().push(8);
/// drop(tx);
/// assert_eq!(model.read(|v| v.len()), 1);
/// # });
/// ```
#[derive(Debug)]
pub struct MemoryReadModel<T> {
    inner: Arc<Mutex<ModelInner<T>>>,
}

impl<T> Clone for MemoryReadModel<T> {
    fn clone(&self) -> Self {
        MemoryReadModel {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Default> Default for MemoryReadModel<T> {
    fn default() -> Self {
        MemoryReadModel::with_state(T::default())
    }
}

impl<T: Default> MemoryReadModel<T> {
    /// A model holding `T::default()` and no checkpoints.
    pub fn new() -> Self {
        MemoryReadModel::default()
    }
}

impl<T> MemoryReadModel<T> {
    /// A model starting from `state`.
    pub fn with_state(state: T) -> Self {
        MemoryReadModel {
            inner: Arc::new(Mutex::new(ModelInner {
                state,
                version: 0,
                checkpoints: BTreeMap::new(),
            })),
        }
    }

    /// Reads the committed state.
    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.lock().state)
    }

    /// The committed checkpoint of projection `name`, if any.
    pub fn checkpoint(&self, name: &str) -> Option<GlobalPosition> {
        self.lock().checkpoints.get(name).map(|(p, _)| *p)
    }

    fn lock(&self) -> MutexGuard<'_, ModelInner<T>> {
        // Commits replace the state in one assignment: never half-written.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A transaction on a [`MemoryReadModel`]: a private copy of the state.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use eventcore_tokio::{FencingToken, MemoryReadModel, ProjectionStore};
/// let model = MemoryReadModel::with_state(1u32);
/// model.claim("p", FencingToken::new(3)).await.unwrap();
/// let mut tx = model.begin("p", FencingToken::new(3)).await.unwrap();
/// *tx.state_mut() += 1;
/// assert_eq!((*tx.state(), model.read(|n| *n)), (2, 1), "invisible until committed");
/// assert_eq!(tx.token(), FencingToken::new(3));
/// # });
/// ```
#[derive(Debug)]
pub struct MemoryTransaction<T> {
    name: String,
    token: FencingToken,
    base_version: u64,
    state: T,
    committed: GlobalPosition,
}

impl<T> MemoryTransaction<T> {
    /// The state as this transaction sees it.
    pub fn state(&self) -> &T {
        &self.state
    }

    /// The state, to change; committed with the checkpoint.
    pub fn state_mut(&mut self) -> &mut T {
        &mut self.state
    }

    /// The fencing token the transaction was begun with.
    pub fn token(&self) -> FencingToken {
        self.token
    }
}

fn fenced(name: &str, token: FencingToken, current: FencingToken) -> CheckpointError {
    CheckpointError::Fenced {
        name: name.to_owned(),
        token,
        current,
    }
}

impl<T: Clone + Send + 'static> ProjectionStore for MemoryReadModel<T> {
    type Transaction = MemoryTransaction<T>;

    async fn claim(&self, name: &str, token: FencingToken) -> Result<GlobalPosition, CheckpointError> {
        let mut inner = self.lock();
        let entry = inner
            .checkpoints
            .entry(name.to_owned())
            .or_insert((GlobalPosition::START, token));
        if entry.1 > token {
            return Err(fenced(name, token, entry.1));
        }
        entry.1 = token;
        Ok(entry.0)
    }

    async fn begin(&self, name: &str, token: FencingToken) -> Result<MemoryTransaction<T>, CheckpointError> {
        let inner = self.lock();
        match inner.checkpoints.get(name) {
            Some((committed, current)) if *current == token => Ok(MemoryTransaction {
                name: name.to_owned(),
                token,
                committed: *committed,
                base_version: inner.version,
                state: inner.state.clone(),
            }),
            Some((_, current)) => Err(fenced(name, token, *current)),
            None => Err(CheckpointError::Permanent(format!(
                "projection `{name}` was never claimed"
            ))),
        }
    }

    async fn commit(&self, tx: MemoryTransaction<T>, checkpoint: GlobalPosition) -> Result<(), CheckpointError> {
        let mut inner = self.lock();
        let current = inner
            .checkpoints
            .get(&tx.name)
            .map(|(_, fence)| *fence)
            .unwrap_or_default();
        if current != tx.token {
            return Err(fenced(&tx.name, tx.token, current));
        }
        if inner.version != tx.base_version {
            return Err(CheckpointError::Transient(format!(
                "read model changed under projection `{}`; retrying",
                tx.name
            )));
        }
        inner.state = tx.state;
        inner.version += 1;
        if let Some(entry) = inner.checkpoints.get_mut(&tx.name) {
            entry.0 = entry.0.max(checkpoint);
        }
        Ok(())
    }

    fn committed(transaction: &MemoryTransaction<T>) -> Option<GlobalPosition> {
        Some(transaction.committed)
    }
}

/// The read model readers are served from, switchable in one step: how a
/// rebuilt model replaces the old one.
///
/// ```
/// use eventcore_tokio::{MemoryReadModel, Serving};
/// let old = MemoryReadModel::with_state(1u32);
/// let serving = Serving::new(old);
/// assert_eq!(serving.current().read(|n| *n), 1);
/// let previous = serving.switch(MemoryReadModel::with_state(2u32));
/// assert_eq!((previous.read(|n| *n), serving.current().read(|n| *n)), (1, 2));
/// ```
#[derive(Debug)]
pub struct Serving<M> {
    current: Arc<RwLock<M>>,
}

impl<M> Clone for Serving<M> {
    fn clone(&self) -> Self {
        Serving {
            current: self.current.clone(),
        }
    }
}

impl<M: Clone> Serving<M> {
    /// Serves `model`.
    pub fn new(model: M) -> Self {
        Serving {
            current: Arc::new(RwLock::new(model)),
        }
    }

    /// The model to read from now.
    pub fn current(&self) -> M {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Serves `model` from now on; returns the one it replaces.
    pub fn switch(&self, model: M) -> M {
        let mut current = self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::replace(&mut *current, model)
    }
}
