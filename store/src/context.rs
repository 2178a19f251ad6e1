//! Context a driver installs around the command machine's synchronous
//! calls, prepared asynchronously beforehand: [`CodecContext`] and the
//! per-execution [`CodecSession`].
//!
//! serde passes no context to the (de)serializers of a command's events and
//! views, so a codec that needs some (the data keys of `eventcore-shred`'s
//! crypto-shredding) reads it from a thread-local that the driver installs
//! around exactly the calls where the machine decodes and encodes
//! (`on_read`, `poll`, priming, snapshots), never across an `.await`. What
//! it needs is fetched first, asynchronously, from what the driver is about
//! to decode (the payloads read) and from what an encode reported missing.
//! The trait lives here so that a driver (`eventcore-tokio`) and a codec
//! (`eventcore-shred`) can meet without depending on each other.

use crate::BoxFuture;
use eventcore::{Payload, StoreError};

/// A source of per-execution [`CodecSession`]s: what a driver is configured
/// with (`Executor::with_codec_context`, a subscription runner's option).
///
/// ```
/// use eventcore::{Payload, StoreError};
/// use eventcore_store::{BoxFuture, CodecContext, CodecSession};
///
/// /// Needs nothing: runs every call as it is.
/// struct Plain;
/// struct PlainSession;
/// impl CodecContext for Plain {
///     fn session(&self) -> Box<dyn CodecSession> { Box::new(PlainSession) }
/// }
/// impl CodecSession for PlainSession {
///     fn want(&mut self, _payload: &Payload) {}
///     fn prepare(&mut self) -> BoxFuture<'_, Result<(), StoreError>> { Box::pin(async { Ok(()) }) }
///     fn within(&mut self, f: &mut dyn FnMut()) { f() }
///     fn needs_prepare(&self) -> bool { false }
///     fn check_outgoing(&self, _payload: &Payload) -> Result<(), String> { Ok(()) }
///     fn holds_secrets(&self) -> bool { false }
/// }
///
/// let mut session = Plain.session();
/// let mut ran = false;
/// session.within(&mut || ran = true);
/// assert!(ran && !session.needs_prepare());
/// ```
pub trait CodecContext: Send + Sync + 'static {
    /// A fresh session for one execution (or one page of a subscription):
    /// nothing fetched yet.
    fn session(&self) -> Box<dyn CodecSession>;
}

/// The context of one execution. A driver follows this order:
///
/// 1. [`want`](CodecSession::want) every stored payload it is about to
///    have decoded (the events of a read response, cached events, a
///    snapshot's state), then [`prepare`](CodecSession::prepare) (async);
/// 2. run the machine's synchronous call inside
///    [`within`](CodecSession::within);
/// 3. when an encode inside it lacked context
///    ([`needs_prepare`](CodecSession::needs_prepare)), `prepare` again and
///    have the machine encode again inside `within`
///    (`CommandMachine::reencode_append`);
/// 4. before sending anything to a store, pass each payload through
///    [`check_outgoing`](CodecSession::check_outgoing);
/// 5. cache no state folded in a session that
///    [`holds_secrets`](CodecSession::holds_secrets).
pub trait CodecSession: Send {
    /// Notes a stored payload about to be decoded: the next
    /// [`prepare`](CodecSession::prepare) fetches what decoding it needs.
    fn want(&mut self, payload: &Payload);

    /// Fetches what the payloads wanted since the last call, and the
    /// encodes that lacked context, need. A failure is a store error the
    /// driver reports for the operation it was preparing (transient ones
    /// are retried by the machine like any other).
    fn prepare(&mut self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Runs `f` with the context installed on the current thread, and
    /// removes it before returning (also when `f` panics).
    fn within(&mut self, f: &mut dyn FnMut());

    /// The typed cause of the first encode the context refused inside
    /// [`within`](CodecSession::within), taken (a second call gives `None`).
    /// serde carries only text, so when the machine ends with
    /// `CommandError::Encode` the driver puts this cause back as the
    /// error's source (`EncodeError::Context`), where a caller can
    /// downcast it. The default records nothing.
    ///
    /// ```
    /// # use eventcore::{Payload, StoreError};
    /// # use eventcore_store::{BoxFuture, CodecSession};
    /// # struct Plain;
    /// # impl CodecSession for Plain {
    /// #     fn want(&mut self, _: &Payload) {}
    /// #     fn prepare(&mut self) -> BoxFuture<'_, Result<(), StoreError>> { Box::pin(async { Ok(()) }) }
    /// #     fn within(&mut self, f: &mut dyn FnMut()) { f() }
    /// #     fn needs_prepare(&self) -> bool { false }
    /// #     fn check_outgoing(&self, _: &Payload) -> Result<(), String> { Ok(()) }
    /// #     fn holds_secrets(&self) -> bool { false }
    /// # }
    /// assert!(Plain.take_refusal().is_none());
    /// ```
    fn take_refusal(&mut self) -> Option<Box<dyn std::error::Error + Send + Sync + 'static>> {
        None
    }

    /// Whether an encode inside [`within`](CodecSession::within) since the
    /// last [`prepare`](CodecSession::prepare) lacked context: its result
    /// holds drafts and must be encoded again after `prepare`.
    fn needs_prepare(&self) -> bool;

    /// Checks a payload about to be stored (an event appended, a snapshot
    /// saved): `Err` with a description when it holds a draft that must
    /// never reach a store.
    fn check_outgoing(&self, payload: &Payload) -> Result<(), String>;

    /// Whether anything decoded or encoded in this session held data that
    /// must not outlive it (decrypted personal data): state folded in it
    /// is not cached.
    fn holds_secrets(&self) -> bool;
}

/// A shared context is a context: one `PersonalData` can serve an executor
/// and the runners of a service.
///
/// ```
/// use eventcore_store::{CodecContext, CodecSession};
/// use std::sync::Arc;
/// fn takes(_: impl CodecContext) {}
/// fn share<C: CodecContext>(context: Arc<C>) {
///     takes(Arc::clone(&context));
///     takes(context);
/// }
/// # let _ = share::<Arc<dyn CodecContext>>;
/// ```
impl<T: CodecContext + ?Sized> CodecContext for std::sync::Arc<T> {
    fn session(&self) -> Box<dyn CodecSession> {
        (**self).session()
    }
}
