//! The executor's and runners' side of a [`CodecContext`]: one session per
//! execution (or per page), the payloads it is about to decode wanted and
//! prepared before each synchronous call of the machine, and the call run
//! with the context installed. Without a context every step is a no-op.

use eventcore::{AppendRequest, Operation, Payload, ReadResponse, RecordedEvent, StoreError};
use eventcore_store::{CodecContext, CodecSession};
use std::sync::Arc;

/// The context an executor or runner was given, if any.
#[derive(Clone, Default)]
pub(crate) struct Context(pub(crate) Option<Arc<dyn CodecContext>>);

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Some(CodecContext)" } else { "None" })
    }
}

impl Context {
    /// A session for one execution or page.
    pub(crate) fn session(&self) -> Session {
        Session::new(self.0.as_ref())
    }
}

/// One execution's session, or none.
pub(crate) struct Session(Option<Box<dyn CodecSession>>);

impl Session {
    pub(crate) fn new(context: Option<&Arc<dyn CodecContext>>) -> Self {
        Session(context.map(|c| c.session()))
    }

    /// Notes a stored payload about to be decoded.
    pub(crate) fn want(&mut self, payload: &Payload) {
        if let Some(session) = &mut self.0 {
            session.want(payload);
        }
    }

    /// Notes the events about to be decoded.
    pub(crate) fn want_events<'a>(&mut self, events: impl IntoIterator<Item = &'a RecordedEvent>) {
        if let Some(session) = &mut self.0 {
            for event in events {
                session.want(&event.payload);
            }
        }
    }

    /// Notes the events of a read response about to be decoded.
    pub(crate) fn want_response(&mut self, response: &ReadResponse) {
        self.want_events(response.streams.iter().flat_map(|slice| slice.events.iter()));
    }

    /// Puts the context's typed cause back into an execution that ended
    /// with an encode error: serde carried it only as text. Other results
    /// pass through.
    pub(crate) fn type_encode_refusal<E>(
        &mut self,
        result: Result<eventcore::Executed, eventcore::CommandError<E>>,
    ) -> Result<eventcore::Executed, eventcore::CommandError<E>> {
        match (result, &mut self.0) {
            (Err(eventcore::CommandError::Encode { stream, source }), Some(session)) => {
                let source = match session.take_refusal() {
                    Some(cause) => eventcore::EncodeError::Context(cause),
                    None => source,
                };
                Err(eventcore::CommandError::Encode { stream, source })
            }
            (result, _) => result,
        }
    }

    /// Fetches what was wanted and what encodes lacked.
    pub(crate) async fn prepare(&mut self) -> Result<(), StoreError> {
        match &mut self.0 {
            Some(session) => session.prepare().await,
            None => Ok(()),
        }
    }

    /// [`Session::prepare`] without a runtime, for the blocking executor:
    /// the preparation must finish when first polled (a memory key store
    /// does); one that would wait is refused, as nothing here can wake it.
    #[cfg(feature = "memory")]
    pub(crate) fn prepare_now(&mut self) -> Result<(), StoreError> {
        let Some(session) = &mut self.0 else { return Ok(()) };
        let mut future = session.prepare();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(result) => result,
            std::task::Poll::Pending => Err(StoreError::permanent(
                Operation::Other,
                "the codec context did not prepare synchronously: BlockingExecutor needs a key store \
                 that answers at once (MemoryKeyStore); use Executor for any other",
            )),
        }
    }

    /// Runs `f` with the context installed (as it is, without one).
    pub(crate) fn within<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let Some(session) = &mut self.0 else { return f() };
        let mut f = Some(f);
        let mut out = None;
        session.within(&mut || {
            if let Some(f) = f.take() {
                out = Some(f());
            }
        });
        if let Some(f) = f {
            // A session that did not call back: run without the context
            // rather than not at all (an encode then fails, never leaks).
            return f();
        }
        // The closure takes `f` and sets `out` in one step; a panic between
        // the two would have unwound through here.
        out.unwrap_or_else(|| unreachable!("the closure took f without returning"))
    }

    /// Whether an encode lacked context (prepare, then encode again).
    pub(crate) fn needs_prepare(&self) -> bool {
        self.0.as_ref().is_some_and(|s| s.needs_prepare())
    }

    /// Refuses an append that holds a draft (never sent to the store).
    pub(crate) fn check_request(&self, request: &AppendRequest) -> Result<(), StoreError> {
        let Some(session) = &self.0 else { return Ok(()) };
        for append in &request.streams {
            for event in &append.events {
                session.check_outgoing(&event.payload).map_err(|why| {
                    StoreError::permanent(
                        Operation::Append,
                        format!("the append to {} was not sent: {why}", append.stream),
                    )
                })?;
            }
        }
        Ok(())
    }

    /// Whether a snapshot payload (JSON) may be stored.
    pub(crate) fn check_snapshot(&self, json: &str) -> Result<(), String> {
        match &self.0 {
            Some(session) => session.check_outgoing(&Payload::from_trusted_json(json)),
            None => Ok(()),
        }
    }

    /// Whether state folded in this session must not be cached.
    pub(crate) fn holds_secrets(&self) -> bool {
        self.0.as_ref().is_some_and(|s| s.holds_secrets())
    }
}

/// Decodes the events of a subscription's batch under a [`CodecContext`]:
/// what a [`Subscriber`](crate::Subscriber) holds to read events whose
/// decoding needs one (`eventcore_shred::PersonalData`: `Personal` fields
/// read as `Known`, or `Forgotten` once their subject is, never as a
/// decode error). A projection runner uses one too
/// ([`Runner::with_codec_context`](crate::Runner::with_codec_context)).
///
/// Each call prepares a fresh session (the keys of what the batch holds,
/// fetched once for the whole batch) and drops it with the decoded events:
/// nothing decrypted is kept between batches, so a subject forgotten
/// between two batches reads as forgotten in the second.
///
/// ```
/// use eventcore::{Batch, Event, HandleError};
/// use eventcore_tokio::{BatchDecoder, Subscriber};
/// #[derive(serde::Serialize, serde::Deserialize)] enum Ev { Ticked }
/// impl Event for Ev {}
/// struct Count { decoder: BatchDecoder, ticks: usize }
/// impl Subscriber for Count {
///     async fn handle(&mut self, batch: &Batch) -> Result<(), HandleError> {
///         for (event, _recorded) in self.decoder.decode::<Ev>(batch.events.iter()).await? {
///             let Ev::Ticked = event;
///             self.ticks += 1;
///         }
///         Ok(())
///     }
/// }
/// let _ = Count { decoder: BatchDecoder::plain(), ticks: 0 };
/// ```
#[derive(Clone, Debug, Default)]
pub struct BatchDecoder {
    context: Context,
}

impl BatchDecoder {
    /// Decodes under `context`.
    pub fn new(context: impl CodecContext) -> Self {
        BatchDecoder {
            context: Context(Some(Arc::new(context))),
        }
    }

    /// Decodes under a shared `context` (the one an executor uses too).
    ///
    /// ```
    /// use eventcore_tokio::BatchDecoder;
    /// let plain = BatchDecoder::plain();
    /// assert!(plain.context().is_none());
    /// ```
    pub fn shared(context: Arc<dyn CodecContext>) -> Self {
        BatchDecoder {
            context: Context(Some(context)),
        }
    }

    /// Decodes with no context (`eventcore::decode_recorded`).
    pub fn plain() -> Self {
        BatchDecoder::default()
    }

    /// The context, if any.
    pub fn context(&self) -> Option<&Arc<dyn CodecContext>> {
        self.context.0.as_ref()
    }

    /// Decodes `events`, in order, each with the event it came from. An
    /// event that does not decode is poison ([`HandleError::Poison`]); a
    /// context that cannot be prepared (its key store unreachable) is a
    /// transient failure of the batch, retried.
    pub async fn decode<'a, E: eventcore::Event>(
        &self,
        events: impl Iterator<Item = &'a RecordedEvent> + Clone,
    ) -> Result<Vec<(E, &'a RecordedEvent)>, eventcore::HandleError> {
        let mut session = self.context.session();
        session.want_events(events.clone());
        session.prepare().await.map_err(|error| {
            eventcore::HandleError::Consumer(eventcore::ConsumerError::Transient(format!(
                "the codec context could not be prepared for the batch: {error}"
            )))
        })?;
        session.within(|| {
            events
                .map(|recorded| {
                    eventcore::decode_recorded::<E>(recorded)
                        .map(|event| (event, recorded))
                        .map_err(|error| eventcore::HandleError::Poison(eventcore::PoisonEvent::from(error)))
                })
                .collect()
        })
    }
}
