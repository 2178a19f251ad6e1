//! The consumer side: a JetStream stream read back into a [`Projection`]
//! with exactly-once effects. The checkpoint is the message's **stream
//! sequence**, committed in the same transaction as the projection's writes
//! (any [`ProjectionStore`]: `PgProjectionStore` for PostgreSQL,
//! `MemoryReadModel` in memory).

use crate::headers::recorded_from_parts;
use async_nats::jetstream;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use eventcore::{decode_recorded, GlobalPosition};
use eventcore_store::{CheckpointError, FencingToken, ProjectionStore};
use eventcore_tokio::{Projection, ProjectionError};
use futures_util::{FutureExt, StreamExt};
use std::future::Future;
use std::time::Duration;

/// Why a [`JetStreamProjection`] stopped.
///
/// ```
/// use eventcore_nats::ConsumeError;
/// let e = ConsumeError::Rejected { sequence: 7, message: "unknown account".into() };
/// assert_eq!(e.to_string(), "message 7 rejected by the projection: unknown account");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumeError {
    /// A message is not a relayed event, does not decode, or the projection
    /// rejected it. The consumer stops at it: its batch is rolled back, the
    /// checkpoint stays at the last batch committed before it.
    #[error("message {sequence} rejected by the projection: {message}")]
    Rejected {
        /// The message's stream sequence.
        sequence: u64,
        /// Why.
        message: String,
    },
    /// The checkpoint store refused (another instance fenced this one out,
    /// or a permanent failure).
    #[error("the projection store failed")]
    Store(#[from] CheckpointError),
    /// The projection failed permanently.
    #[error("the projection failed: {0}")]
    Projection(String),
}

/// What a run did.
///
/// ```
/// let s = eventcore_nats::ConsumeSummary::default();
/// assert_eq!(s.applied, 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsumeSummary {
    /// The stream sequence committed last.
    pub checkpoint: u64,
    /// Messages applied in this run.
    pub applied: u64,
    /// Messages delivered again but at or below the committed checkpoint,
    /// not applied twice.
    pub skipped: u64,
    /// Transactions committed.
    pub commits: u64,
    /// Transient failures (each followed by a restart from the checkpoint).
    pub retries: u64,
}

/// Reads a JetStream stream written by the relay into a [`Projection`]:
/// every message is decoded back into its event
/// ([`crate::recorded_from_parts`]) and applied inside the batch's
/// transaction, which commits with the batch's last stream sequence as the
/// checkpoint (stored as a `GlobalPosition` under the consumer's name). A
/// crash anywhere re-reads from the committed sequence; a batch whose commit
/// answer was lost is not applied twice (`ProjectionStore::committed`).
///
/// The projection's own `filter` is not applied: every message of the
/// JetStream stream reaches it.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use eventcore::{Event, RecordedEvent};
/// use eventcore_nats::JetStreamProjection;
/// use eventcore_tokio::{MemoryReadModel, MemoryTransaction, Projection, ProjectionError};
/// #[derive(serde::Serialize, serde::Deserialize)] enum Ev { Ticked }
/// impl Event for Ev {}
/// struct Ticks;
/// impl Projection for Ticks {
///     type Event = Ev;
///     type Store = MemoryReadModel<u64>;
///     async fn apply(&mut self, tx: &mut MemoryTransaction<u64>, _: Ev, _: &RecordedEvent) -> Result<(), ProjectionError> {
///         *tx.state_mut() += 1;
///         Ok(())
///     }
/// }
/// let jetstream = async_nats::jetstream::new(async_nats::connect("127.0.0.1:4222").await?);
/// let model = MemoryReadModel::new();
/// let mut consumer = JetStreamProjection::new("ticks", jetstream, "EVENTS", Ticks, model.clone());
/// let summary = consumer.run_until_caught_up().await?;
/// println!("applied {} messages, {} ticks", summary.applied, model.read(|n| *n));
/// # Ok(()) }
/// ```
pub struct JetStreamProjection<P: Projection> {
    name: String,
    jetstream: jetstream::Context,
    stream: String,
    projection: P,
    store: P::Store,
    token: FencingToken,
    batch_size: usize,
    retry_backoff: Duration,
}

impl<P: Projection> std::fmt::Debug for JetStreamProjection<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamProjection")
            .field("name", &self.name)
            .field("stream", &self.stream)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

enum Step {
    CaughtUp,
    Shutdown,
}

impl<P: Projection> JetStreamProjection<P>
where
    P::Event: Send,
{
    /// A consumer named `name` (its checkpoint's key in `store`) of the
    /// JetStream stream `stream`. Its fencing token is the current Unix
    /// time in milliseconds, so a consumer started later fences out an older
    /// one still running ([`JetStreamProjection::with_token`] to choose).
    pub fn new(
        name: impl Into<String>,
        jetstream: jetstream::Context,
        stream: impl Into<String>,
        projection: P,
        store: P::Store,
    ) -> Self {
        #[allow(clippy::disallowed_methods)] // a fencing token, not simulated time
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        JetStreamProjection {
            name: name.into(),
            jetstream,
            stream: stream.into(),
            projection,
            store,
            token: FencingToken::new(millis),
            batch_size: 256,
            retry_backoff: Duration::from_millis(200),
        }
    }

    /// Uses `token` to claim and fence the checkpoint.
    pub fn with_token(mut self, token: FencingToken) -> Self {
        self.token = token;
        self
    }

    /// At most `n` messages per transaction (at least 1; default 256).
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// The projection.
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// The read-model store.
    pub fn store(&self) -> &P::Store {
        &self.store
    }

    /// Runs until the stream's last message (when the run started) is
    /// applied, then returns.
    pub async fn run_until_caught_up(&mut self) -> Result<ConsumeSummary, ConsumeError> {
        self.run_inner(std::future::pending(), true).await
    }

    /// Runs until `shutdown` completes (the transaction in flight is
    /// finished first).
    pub async fn run_until(
        &mut self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<ConsumeSummary, ConsumeError> {
        self.run_inner(shutdown, false).await
    }

    async fn run_inner(
        &mut self,
        shutdown: impl Future<Output = ()> + Send,
        until_caught_up: bool,
    ) -> Result<ConsumeSummary, ConsumeError> {
        tokio::pin!(shutdown);
        let mut summary = ConsumeSummary::default();
        let mut target: Option<u64> = None;
        loop {
            match self
                .session(&mut shutdown, until_caught_up, &mut target, &mut summary)
                .await
            {
                Ok(Step::CaughtUp | Step::Shutdown) => return Ok(summary),
                Err(Attempt::Stop(error)) => return Err(error),
                Err(Attempt::Retry(message)) => {
                    summary.retries += 1;
                    tracing::warn!(consumer = %self.name, %message, "JetStream consumer retrying");
                    tokio::select! {
                        biased;
                        () = shutdown.as_mut() => return Ok(summary),
                        () = tokio::time::sleep(self.retry_backoff) => {}
                    }
                }
            }
        }
    }

    /// One ordered consumer from the committed checkpoint, until an error,
    /// the end or shutdown.
    async fn session(
        &mut self,
        shutdown: &mut std::pin::Pin<&mut (impl Future<Output = ()> + Send)>,
        until_caught_up: bool,
        target: &mut Option<u64>,
        summary: &mut ConsumeSummary,
    ) -> Result<Step, Attempt> {
        let checkpoint = self
            .store
            .claim(&self.name, self.token)
            .await
            .map_err(store_error)?
            .get();
        summary.checkpoint = checkpoint;
        let stream = self.jetstream.get_stream(&self.stream).await.map_err(retry)?;
        let last = stream.cached_info().state.last_sequence;
        let target = *target.get_or_insert(last);
        if until_caught_up && checkpoint >= target {
            return Ok(Step::CaughtUp);
        }
        let consumer = stream
            .create_consumer(OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: checkpoint + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(retry)?;
        let mut messages = consumer.messages().await.map_err(retry)?;
        loop {
            let first = tokio::select! {
                biased;
                () = shutdown.as_mut() => return Ok(Step::Shutdown),
                next = messages.next() => next,
            };
            let mut batch = Vec::with_capacity(self.batch_size);
            match first {
                Some(Ok(message)) => batch.push(message),
                Some(Err(error)) => return Err(retry(error)),
                None => return Err(Attempt::Retry("the consumer's message stream ended".into())),
            }
            while batch.len() < self.batch_size {
                match messages.next().now_or_never() {
                    Some(Some(Ok(message))) => batch.push(message),
                    Some(Some(Err(error))) => return Err(retry(error)),
                    _ => break,
                }
            }
            let through = self.apply(&batch, summary).await?;
            if until_caught_up && through >= target {
                return Ok(Step::CaughtUp);
            }
        }
    }

    /// Applies `batch` in one transaction; returns the sequence committed.
    async fn apply(&mut self, batch: &[jetstream::Message], summary: &mut ConsumeSummary) -> Result<u64, Attempt> {
        let mut tx = self.store.begin(&self.name, self.token).await.map_err(store_error)?;
        let committed = P::Store::committed(&tx).map_or(0, GlobalPosition::get);
        let mut through = committed;
        let mut applied = 0;
        for message in batch {
            let sequence = message.info().map_err(retry)?.stream_sequence;
            if sequence <= committed {
                summary.skipped += 1;
                continue;
            }
            let rejected = |message: String| Attempt::Stop(ConsumeError::Rejected { sequence, message });
            let headers = message.headers.clone().unwrap_or_default();
            let recorded = recorded_from_parts(&headers, &message.payload).map_err(|e| rejected(e.to_string()))?;
            let event = decode_recorded::<P::Event>(&recorded).map_err(|e| rejected(e.to_string()))?;
            match self.projection.apply(&mut tx, event, &recorded).await {
                Ok(()) => {}
                Err(ProjectionError::Rejected(message)) => return Err(rejected(message)),
                Err(ProjectionError::Transient(message)) => return Err(Attempt::Retry(message)),
                Err(error) => return Err(Attempt::Stop(ConsumeError::Projection(error.to_string()))),
            }
            applied += 1;
            through = sequence;
        }
        self.store
            .commit(tx, GlobalPosition::new(through))
            .await
            .map_err(store_error)?;
        summary.applied += applied;
        summary.commits += 1;
        summary.checkpoint = through;
        Ok(through)
    }
}

enum Attempt {
    Retry(String),
    Stop(ConsumeError),
}

fn retry(error: impl std::fmt::Display) -> Attempt {
    Attempt::Retry(error.to_string())
}

fn store_error(error: CheckpointError) -> Attempt {
    match error {
        CheckpointError::Transient(message) => Attempt::Retry(message),
        other => Attempt::Stop(ConsumeError::Store(other)),
    }
}
