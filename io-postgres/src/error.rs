//! How PostgreSQL and sqlx failures map onto the contract's error kinds.
//!
//! | failure | kind |
//! |---|---|
//! | `EV001` raised by `append()` | [`StoreError::Conflict`] with stream, expected and actual |
//! | `EV005` raised by the streams trigger (migration 0008) | [`StoreError::StreamDeleted`] with the stream and its tombstone's version |
//! | serialization failure (also: an append older than its stream's last writer, migration 0006), deadlock, lock not available, statement timeout, too many connections, server starting up | `Transient` |
//! | connection refused, pool timeout, I/O error before the statement was sent | `Transient` |
//! | I/O or protocol error, connection terminated, after an append was sent | `OutcomeUnknown` (the commit may have happened) |
//! | invalid JSON, value too long, invalid text in an append (class 22) | `InvalidAppend::Rejected` naming the stream |
//! | read-only transaction, permission denied, undefined table or function, anything else | `Permanent` |

use eventcore::{AppendRequest, Conflict, InvalidAppend, Operation, StoreError, StreamDeleted, StreamId};
use std::sync::Arc;

/// Whether the statement may have reached the server when the error struck.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Taking a connection from the pool: nothing was sent.
    Connecting,
    /// The statement was (or may have been) sent.
    Executing,
}

/// SQLSTATE raised by `append()` on a version conflict; DETAIL is
/// `"<1-based stream index> <actual version>"` (see [`conflict`]).
pub(crate) const CONFLICT: &str = "EV001";
/// SQLSTATE raised when one transaction would hold more than 2^20 events.
const TOO_MANY_EVENTS: &str = "EV002";
/// SQLSTATE raised by the trigger on `streams` (migration 0008) when a write
/// advances the head of a stream a tombstone ended; DETAIL is
/// `"<deleted_at_version> <stream id>"` (see [`stream_deleted`]).
const STREAM_DELETED: &str = "EV005";

/// SQLSTATE `serialization_failure`. Besides PostgreSQL's own uses, the
/// trigger of migration 0006 raises it when an append's transaction is older
/// than the one that last wrote a stream it writes (its events would take
/// positions below that stream's last event). The statement wrote nothing.
const SERIALIZATION_FAILURE: &str = "40001";

/// Whether `error` is a serialization failure of the statement: it wrote
/// nothing, and the same request in a new transaction may well pass.
pub(crate) fn is_serialization_failure(error: &StoreError) -> bool {
    let StoreError::Transient {
        source: Some(source), ..
    } = error
    else {
        return false;
    };
    match source.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Database(db)) => db.code().as_deref() == Some(SERIALIZATION_FAILURE),
        _ => false,
    }
}

/// Maps a sqlx error; `request` is the append being executed, if any.
pub(crate) fn map_error(
    operation: Operation,
    phase: Phase,
    error: sqlx::Error,
    request: Option<&AppendRequest>,
) -> StoreError {
    let sent_append = operation == Operation::Append && phase == Phase::Executing;
    let kind = match &error {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            if let (CONFLICT, Some(request)) = (code.as_str(), request) {
                if let Some(conflict) = conflict_from_detail(db.as_ref(), request) {
                    return conflict.into();
                }
            }
            if code == STREAM_DELETED {
                if let Some(deleted) = db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .and_then(|pg| stream_deleted(pg.detail()?))
                {
                    return deleted.into();
                }
            }
            if let (TOO_MANY_EVENTS, Some(request)) = (code.as_str(), request) {
                return InvalidAppend::TooManyEvents {
                    count: request.event_count(),
                    max: crate::MAX_EVENTS_PER_TRANSACTION,
                }
                .into();
            }
            if code.starts_with("22") {
                if let Some(stream) = request.and_then(culprit) {
                    return InvalidAppend::Rejected {
                        stream,
                        reason: db.message().to_owned(),
                    }
                    .into();
                }
            }
            classify_sqlstate(&code, sent_append)
        }
        sqlx::Error::PoolTimedOut => Kind::Transient,
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => {
            if sent_append {
                Kind::Unknown
            } else {
                Kind::Transient
            }
        }
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::ColumnNotFound(_) => Kind::Contract,
        _ => Kind::Permanent,
    };
    // Where the sqlx error becomes the source, the message only says what
    // kind of failure it was, so a `{:#}` chain prints sqlx's text once. A
    // contract violation has no source: its message is sqlx's text.
    let message = match kind {
        Kind::Contract => error.to_string(),
        _ => describe(&error),
    };
    let source: Option<eventcore::store::ErrorSource> = Some(Arc::new(error));
    match kind {
        Kind::Transient => StoreError::Transient {
            operation,
            message,
            source,
        },
        Kind::Unknown => StoreError::OutcomeUnknown {
            operation,
            message,
            source,
        },
        Kind::Contract => StoreError::ContractViolation { operation, message },
        Kind::Permanent => StoreError::Permanent {
            operation,
            message,
            source,
        },
    }
}

/// What kind of sqlx failure `error` is, in words that do not repeat its
/// own message (which becomes the [`StoreError`]'s source).
fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("the database raised SQLSTATE {code}"),
            None => "the database raised an error".to_owned(),
        },
        sqlx::Error::PoolTimedOut => "no pooled connection became free in time".to_owned(),
        sqlx::Error::PoolClosed => "the connection pool is closed".to_owned(),
        sqlx::Error::Io(_) => "I/O error on the connection".to_owned(),
        sqlx::Error::Tls(_) => "TLS error on the connection".to_owned(),
        sqlx::Error::Protocol(_) => "PostgreSQL protocol error".to_owned(),
        sqlx::Error::WorkerCrashed => "the connection's background worker stopped".to_owned(),
        sqlx::Error::Configuration(_) => "invalid connection configuration".to_owned(),
        _ => "the database driver failed".to_owned(),
    }
}

enum Kind {
    Transient,
    Unknown,
    Contract,
    Permanent,
}

fn classify_sqlstate(code: &str, sent_append: bool) -> Kind {
    match code {
        // serialization_failure, deadlock_detected, lock_not_available,
        // query_canceled (statement_timeout), cannot_connect_now.
        SERIALIZATION_FAILURE | "40P01" | "55P03" | "57014" | "57P03" => Kind::Transient,
        // admin_shutdown (pg_terminate_backend), crash_shutdown: the session
        // died while running the statement.
        "57P01" | "57P02" => {
            if sent_append {
                Kind::Unknown
            } else {
                Kind::Transient
            }
        }
        // Class 08: connection exception; class 53: insufficient resources.
        c if c.starts_with("08") => {
            if sent_append {
                Kind::Unknown
            } else {
                Kind::Transient
            }
        }
        c if c.starts_with("53") => Kind::Transient,
        // read_only_sql_transaction, insufficient_privilege, undefined
        // table/function, invalid schema, and everything not listed.
        _ => Kind::Permanent,
    }
}

fn conflict_from_detail(db: &dyn sqlx::error::DatabaseError, request: &AppendRequest) -> Option<Conflict> {
    let pg = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()?;
    conflict(request, pg.detail()?)
}

/// Rebuilds the conflict of `request` from the DETAIL of an [`CONFLICT`]
/// (EV001) error, `"<1-based stream index> <actual version>"`: raised by the
/// append statements, and reported per request by `append_batch()`.
pub(crate) fn conflict(request: &AppendRequest, detail: &str) -> Option<Conflict> {
    let mut parts = detail.split(' ');
    let index: usize = parts.next()?.parse().ok()?;
    let actual: u64 = parts.next()?.parse().ok()?;
    let entry = request.streams.get(index.checked_sub(1)?)?;
    Some(Conflict {
        stream: entry.stream.clone(),
        expected: entry.expected,
        actual: eventcore::StreamVersion::new(actual),
    })
}

/// Rebuilds the refusal from the DETAIL of a [`STREAM_DELETED`] (EV005)
/// error, `"<deleted_at_version> <stream id>"` (the stream id is the rest of
/// the text, spaces included).
pub(crate) fn stream_deleted(detail: &str) -> Option<StreamDeleted> {
    let (version, stream) = detail.split_once(' ')?;
    Some(StreamDeleted {
        stream: StreamId::new(stream).ok()?,
        deleted_at: eventcore::StreamVersion::new(version.parse().ok()?),
    })
}

/// The stream whose data the database most likely rejected: the first event
/// whose payload is not one PostgreSQL can store (malformed, or holding a
/// NUL: `Payload::check_storable`), else the first stream that carries
/// events.
fn culprit(request: &AppendRequest) -> Option<StreamId> {
    let bad_payload = request
        .streams
        .iter()
        .find(|entry| entry.events.iter().any(|event| event.payload.check_storable().is_err()));
    bad_payload
        .or_else(|| request.streams.iter().find(|entry| !entry.events.is_empty()))
        .or_else(|| request.streams.first())
        .map(|entry| entry.stream.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detail_of_a_refused_write_to_a_deleted_stream_names_it() {
        let deleted = stream_deleted("4 account 7 closed").expect("a well-formed detail");
        assert_eq!(
            deleted.stream.as_str(),
            "account 7 closed",
            "the rest of the detail, spaces and all"
        );
        assert_eq!(deleted.deleted_at, eventcore::StreamVersion::new(4));
        assert_eq!(stream_deleted("x account"), None, "a version that is not a number");
        assert_eq!(stream_deleted("4"), None, "no stream");
    }
}
