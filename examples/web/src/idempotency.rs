//! Idempotency keys: a POST that a client retries after a lost response is
//! applied once, and the retry gets the original answer.
//!
//! The `Idempotency-Key` header must be a UUID (any version; a random v4 is
//! what a client would make): it **is** the command id the command runs
//! under. Taking it as it is, instead of hashing an arbitrary string into a
//! UUID, keeps the event log readable: the key a client logged is the
//! `command_id` an operator finds on the events (`eventcore stream
//! account-alice`), with no namespace to keep stable forever. Anything else
//! is a 400 that says so.
//!
//! Every command also carries its request, in a canonical form, in the
//! events' user metadata ([`REQUEST_METADATA`]). With a key, [`run`]:
//!
//! 1. looks the key up in the store (`PostgresStore::command_events`, one
//!    index probe): if an append committed under it, the request was
//!    applied before. The same request gets the original answer, built
//!    from those events alone (so it is byte for byte the first answer:
//!    201, the same positions), with the header `Idempotent-Replayed:
//!    true`; a different request under the same key is a 422
//!    ([`ApiError::KeyReused`]) and does not run.
//! 2. otherwise executes the command under that id. The store never commits
//!    two appends with one command id, so copies of a request racing each
//!    other commit once: the loser finds the winner's commit among the
//!    streams it reads (the executor then re-sends it and the store answers
//!    with the original receipt, flagged deduplicated), or is refused by the
//!    domain on the winner's state; either way it looks the key up again
//!    and answers as in 1.
//!
//! The executor alone would settle a retry of the *same* command (step 2's
//! dedup), but only after reading every stream the command reads and an
//! append round trip; the lookup is one probe. And a key reused for
//! another request must be caught before that request runs: it reads other
//! streams or decides differently, and would be refused, or deduplicated
//! into the first request's receipt, for reasons unrelated to it.
//!
//! Without a key every POST is a new command with a fresh id.

use axum::http::HeaderMap;
use eventcore::{
    AnyCommandError, AppendReceipt, Command, CommandErrorKind, CommandId, ExecutionContext, RecordedEvent,
};
use eventcore_postgres::PostgresStore;
use eventcore_tokio::Executor;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::account_id;
use crate::error::ApiError;

/// The request header carrying the key.
pub const HEADER: &str = "idempotency-key";
/// The response header set on an answer replayed for a retried key.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// The user-metadata key holding the request on every event it wrote.
pub const REQUEST_METADATA: &str = "http.request";

/// The command id an `Idempotency-Key` header names, if the request has one.
///
/// ```
/// use axum::http::{HeaderMap, HeaderValue};
/// use eventcore_web_example::idempotency::{key, HEADER};
/// let mut headers = HeaderMap::new();
/// assert!(key(&headers)?.is_none());
/// headers.insert(HEADER, HeaderValue::from_static("0b6a3a8e-51d6-4b55-9fd5-2a4ad4ee0c4f"));
/// assert_eq!(key(&headers)?.map(|id| id.to_string()).as_deref(), Some("0b6a3a8e-51d6-4b55-9fd5-2a4ad4ee0c4f"));
/// headers.insert(HEADER, HeaderValue::from_static("retry-1"));
/// assert!(key(&headers).unwrap_err().to_string().contains("must be a UUID"));
/// # Ok::<(), eventcore_web_example::ApiError>(())
/// ```
pub fn key(headers: &HeaderMap) -> Result<Option<CommandId>, ApiError> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::BadRequest("Idempotency-Key must be a UUID; got non-ASCII bytes".to_owned()))?;
    let uuid = Uuid::parse_str(text.trim()).map_err(|e| {
        ApiError::BadRequest(format!(
            "Idempotency-Key must be a UUID (for example a random v4: 0b6a3a8e-51d6-4b55-9fd5-2a4ad4ee0c4f); `{text}`: {e}"
        ))
    })?;
    if uuid.is_nil() {
        return Err(ApiError::BadRequest(
            "Idempotency-Key must not be the nil UUID: every request needs its own key".to_owned(),
        ));
    }
    Ok(Some(CommandId::from_uuid(uuid)))
}

/// What a committed command answers with: the same for the first answer
/// and every replay of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// The command id (the `Idempotency-Key`, when there was one).
    pub command_id: Uuid,
    /// The highest global position written. `GET /accounts/{id}` answers
    /// with the position its balance is as of: once that reaches this one,
    /// the balance includes this command.
    pub position: u64,
    /// Every event written, in global order.
    pub events: Vec<CommittedEvent>,
}

/// One event a command wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedEvent {
    /// The account.
    pub account: String,
    /// Its version in the account's stream.
    pub version: u64,
    /// Its global position.
    pub position: u64,
}

impl Committed {
    /// The answer from a fresh append's receipt.
    pub fn from_receipt(receipt: &AppendReceipt) -> Committed {
        let events = receipt.streams.iter().flat_map(|commit| {
            (commit.first_version.get()..=commit.last_version.get())
                .zip(&commit.positions)
                .map(|(version, position)| CommittedEvent {
                    account: account_id(&commit.stream).to_owned(),
                    version,
                    position: position.get(),
                })
        });
        Committed::new(receipt.command_id, events.collect())
    }

    /// The answer from the events an earlier append committed.
    pub fn from_events(command_id: CommandId, events: &[RecordedEvent]) -> Committed {
        let events = events.iter().map(|event| CommittedEvent {
            account: account_id(&event.stream_id).to_owned(),
            version: event.version.get(),
            position: event.position.get(),
        });
        Committed::new(command_id, events.collect())
    }

    fn new(command_id: CommandId, mut events: Vec<CommittedEvent>) -> Committed {
        events.sort_by_key(|e| e.position);
        Committed {
            command_id: command_id.as_uuid(),
            position: events.last().map_or(0, |e| e.position),
            events,
        }
    }
}

/// How a command ended: committed now, or committed by an earlier request
/// with the same key (replayed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The answer.
    pub committed: Committed,
    /// True when an earlier request with the same key committed it.
    pub replayed: bool,
}

/// Runs `command` for a request: under the key's command id when there is
/// one (see the module's documentation), else under a fresh id. `request`
/// is the request in a canonical form, stored in the events' metadata and
/// compared on a retry.
///
/// # Errors
///
/// The command's failure, [`ApiError::KeyReused`], or a failed lookup.
pub async fn run<C>(
    executor: &Executor<PostgresStore>,
    key: Option<CommandId>,
    request: String,
    command: C,
) -> Result<Outcome, ApiError>
where
    C: Command,
    C::Error: std::error::Error + Send + Sync + 'static,
{
    let store = executor.store();
    let id = match key {
        Some(id) => {
            if let Some(outcome) = earlier(store, id, &request).await? {
                return Ok(outcome);
            }
            id
        }
        None => executor.new_command_id(),
    };
    let context = ExecutionContext::new(id).with_user(REQUEST_METADATA, request.clone());
    let failed = |error| ApiError::Command { error, command_id: id };
    match executor
        .execute_as(command, context)
        .await
        .map_err(AnyCommandError::from)
    {
        Ok(done) => match &done.appended {
            // A copy of this request committed first: answer as it did.
            Some(receipt) if receipt.deduplicated => replay(store, id, &request).await,
            _ => Ok(fresh(&done.appended, id)),
        },
        // A copy of this request may have committed first, and this run
        // decided on its result.
        Err(error) if key.is_some() && error.kind() == CommandErrorKind::Rejected => {
            match earlier(store, id, &request).await? {
                Some(outcome) => Ok(outcome),
                None => Err(failed(error)),
            }
        }
        Err(error) => Err(failed(error)),
    }
}

fn fresh(appended: &Option<AppendReceipt>, command_id: CommandId) -> Outcome {
    let committed = match appended {
        Some(receipt) => Committed::from_receipt(receipt),
        None => Committed::from_events(command_id, &[]),
    };
    Outcome {
        committed,
        replayed: false,
    }
}

/// The earlier commit under `id`, when it exists: the replayed answer if
/// it served the same request, [`ApiError::KeyReused`] if not.
async fn earlier(store: &PostgresStore, id: CommandId, request: &str) -> Result<Option<Outcome>, ApiError> {
    let events = store.command_events(id).await?;
    let Some(first) = events.first() else {
        return Ok(None);
    };
    let original = first.metadata.user.get(REQUEST_METADATA).map(String::as_str);
    if original != Some(request) {
        return Err(ApiError::KeyReused {
            key: id,
            original: original.unwrap_or("a request of another service").to_owned(),
        });
    }
    Ok(Some(Outcome {
        committed: Committed::from_events(id, &events),
        replayed: true,
    }))
}

async fn replay(store: &PostgresStore, id: CommandId, request: &str) -> Result<Outcome, ApiError> {
    earlier(store, id, request).await?.ok_or_else(|| {
        ApiError::Store(eventcore::StoreError::permanent(
            eventcore::Operation::Read,
            format!("the store deduplicated command {id} but has no events for it"),
        ))
    })
}
