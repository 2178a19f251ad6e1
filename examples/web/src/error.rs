//! Errors as HTTP answers: one mapping for every command's error.
//!
//! | what failed | status |
//! |---|---|
//! | the request itself (bad JSON, a bad account id or amount, a bad `Idempotency-Key`) | 400 |
//! | the account does not exist | 404 |
//! | the domain refused: account already open | 409 |
//! | the domain refused: not enough money, a transfer to itself, a balance limit | 422 |
//! | an `Idempotency-Key` reused for a different request | 422 |
//! | every attempt met a version conflict (retries exhausted) | 409 |
//! | the outcome is unknown (the append may have committed) | 503, `Retry-After` |
//! | the read model is not yet as of `?after=` (`GET /accounts/{id}`) | 503, `Retry-After` |
//! | the deadline passed, or the database is unavailable (transient errors outlasted the retries included) | 503, `Retry-After` |
//! | anything else (a bug, a permanent store error) | 500 |
//!
//! Every error body is JSON: `{"error": "<text>", "kind": "<kind>"}`, plus
//! `"command_id"` when a command ran: a client that got a 503 for a POST
//! without an `Idempotency-Key` can retry with that id as its key and be
//! sure the command is not applied twice. A command's `kind` is its
//! `CommandErrorKind` (`rejected`, `conflict`, `outcome_unknown`, ...).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use eventcore::{AnyCommandError, CommandErrorKind, CommandId, GlobalPosition, StoreError};
use serde::Serialize;

use crate::domain::{BankError, DepositError};

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// An error answer.
///
/// ```
/// use axum::http::StatusCode;
/// use axum::response::IntoResponse;
/// use eventcore_web_example::ApiError;
/// let response = ApiError::BadRequest("amount must be positive".into()).into_response();
/// assert_eq!(response.status(), StatusCode::BAD_REQUEST);
/// ```
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request cannot be understood (400).
    #[error("{0}")]
    BadRequest(String),
    /// The resource does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The `Idempotency-Key` was used before for another request (422).
    #[error(
        "Idempotency-Key {key} was already used for a different request ({original}); use a new key for a new request"
    )]
    KeyReused {
        /// The key (the command id).
        key: CommandId,
        /// The request it was first used for.
        original: String,
    },
    /// The read model is not yet as of the position asked for (503).
    #[error("the balances read model is as of position {as_of}, not yet {after}; retry shortly")]
    Behind {
        /// Where the read model is.
        as_of: GlobalPosition,
        /// Where the client asked it to be.
        after: GlobalPosition,
    },
    /// A command failed.
    #[error("{error}")]
    Command {
        /// Why, whatever the command's type.
        error: AnyCommandError,
        /// The command id it ran under: a client retries with it as its
        /// `Idempotency-Key` when the outcome is unknown.
        command_id: CommandId,
    },
    /// A store operation outside a command failed (a read, a query of the
    /// read model).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The read model could not be queried.
    #[error("querying the read model failed")]
    ReadModel(#[from] sqlx::Error),
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize)]
struct Body<'a> {
    error: String,
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    command_id: Option<String>,
}

impl ApiError {
    /// The status this error answers with, a short name for its kind, and
    /// whether the client should retry later (`Retry-After`).
    ///
    /// ```
    /// use axum::http::StatusCode;
    /// use eventcore::{AnyCommandError, CommandError, CommandId, Operation, StoreError, Time};
    /// use eventcore_web_example::ApiError;
    /// let command_id = CommandId::v7(Time::ZERO, [0; 10]);
    /// let unknown: CommandError<std::convert::Infallible> = CommandError::OutcomeUnknown {
    ///     command_id,
    ///     attempts: 3,
    ///     last: StoreError::Timeout { operation: Operation::Append, after: std::time::Duration::from_secs(5) },
    /// };
    /// let error = ApiError::Command { error: AnyCommandError::from(unknown), command_id };
    /// assert_eq!(error.status(), (StatusCode::SERVICE_UNAVAILABLE, "outcome_unknown", true));
    /// ```
    pub fn status(&self) -> (StatusCode, &'static str, bool) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request", false),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", false),
            ApiError::KeyReused { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused", false),
            ApiError::Behind { .. } => (StatusCode::SERVICE_UNAVAILABLE, "read_model_behind", true),
            ApiError::Command { error, .. } => command_status(error),
            ApiError::Store(error) if error.is_retryable() => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", true),
            ApiError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store", false),
            ApiError::ReadModel(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", true),
        }
    }
}

/// The one mapping of a command's failure, whatever the command: by the
/// error's kind, and for a refusal by the domain error's type.
fn command_status(error: &AnyCommandError) -> (StatusCode, &'static str, bool) {
    let kind = error.kind();
    let status = match kind {
        CommandErrorKind::Rejected => refusal_status(error),
        // Every attempt met a version conflict: others kept writing the
        // same accounts. Nothing was written; the same request may pass.
        CommandErrorKind::Conflict => StatusCode::CONFLICT,
        // May have committed (exactly once): retry with the same key.
        CommandErrorKind::OutcomeUnknown
        // Nothing was written; the store or the deadline gave out.
        | CommandErrorKind::Timeout
        | CommandErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        // A tombstone ended the stream: nothing was written, and no retry
        // will write it.
        CommandErrorKind::StreamDeleted => StatusCode::GONE,
        // A bug: a misdeclared command, an event that does not decode.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, kind.as_str(), status == StatusCode::SERVICE_UNAVAILABLE)
}

/// A refusal's status: 404 for an account that is not open, 409 for one
/// already open, 422 for every other rule.
fn refusal_status(error: &AnyCommandError) -> StatusCode {
    match (error.domain_error::<BankError>(), error.domain_error::<DepositError>()) {
        (Some(BankError::NotOpen(_)), _) | (_, Some(DepositError::NotOpen(_))) => StatusCode::NOT_FOUND,
        (Some(BankError::AlreadyOpen(_)), _) => StatusCode::CONFLICT,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, retry) = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        let command_id = match &self {
            ApiError::Command { command_id, .. } => Some(command_id.to_string()),
            ApiError::KeyReused { key, .. } => Some(key.to_string()),
            _ => None,
        };
        let body = Body {
            error: self.to_string(),
            kind,
            command_id,
        };
        let mut response = (status, Json(body)).into_response();
        if retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::account_stream;
    use eventcore::{CommandError, Conflict, ExpectedVersion, Operation, StreamVersion, Time};
    use std::time::Duration;

    fn answer<E: std::error::Error + Send + Sync + 'static>(error: CommandError<E>) -> Response {
        let command_id = CommandId::v7(Time::ZERO, [7; 10]);
        ApiError::Command {
            error: AnyCommandError::from(error),
            command_id,
        }
        .into_response()
    }

    fn status<E: std::error::Error + Send + Sync + 'static>(error: CommandError<E>) -> (u16, bool) {
        let response = answer(error);
        (
            response.status().as_u16(),
            response.headers().contains_key(header::RETRY_AFTER),
        )
    }

    #[test]
    fn every_kind_of_command_failure_has_its_status() {
        let alice = account_stream("alice").expect("valid");
        let conflict = StoreError::Conflict(Conflict {
            stream: alice.clone(),
            expected: ExpectedVersion::Exact(StreamVersion::new(1)),
            actual: StreamVersion::new(2),
        });
        let transient = || StoreError::transient(Operation::Append, "connection reset");
        let domain = |e: BankError| CommandError::Domain(e);
        assert_eq!(status(domain(BankError::NotOpen(alice.clone()))), (404, false));
        assert_eq!(status(domain(BankError::AlreadyOpen(alice.clone()))), (409, false));
        assert_eq!(status(domain(BankError::SameAccount(alice.clone()))), (422, false));
        let limit = DepositError::BalanceLimit {
            account: alice.clone(),
            balance: 1,
            amount: 2,
        };
        assert_eq!(status(CommandError::Domain(limit)), (422, false));
        assert_eq!(status(CommandError::Domain(DepositError::NotOpen(alice))), (404, false));
        let exhausted = |last| CommandError::<BankError>::RetriesExhausted { attempts: 5, last };
        assert_eq!(
            status(exhausted(conflict)),
            (409, false),
            "retries exhausted on conflicts"
        );
        assert_eq!(status(exhausted(transient())), (503, true), "on transient errors");
        let unknown = CommandError::<BankError>::OutcomeUnknown {
            command_id: CommandId::v7(Time::ZERO, [7; 10]),
            attempts: 3,
            last: StoreError::Timeout {
                operation: Operation::Append,
                after: Duration::from_secs(5),
            },
        };
        assert_eq!(status(unknown), (503, true));
        let late = CommandError::<BankError>::DeadlineExceeded {
            attempts: 2,
            last: None,
        };
        assert_eq!(status(late), (503, true));
        assert_eq!(status(CommandError::<BankError>::NoStreams), (500, false));
    }

    #[tokio::test]
    async fn an_error_body_has_the_text_the_kind_and_the_command_id() {
        let refused = answer(CommandError::Domain(BankError::SameAccount(
            account_stream("bob").expect("valid"),
        )));
        let bytes = axum::body::to_bytes(refused.into_body(), 4096).await.expect("a body");
        let body: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(body["error"], "cannot transfer from `account-bob` to itself");
        assert_eq!(body["kind"], "rejected");
        assert_eq!(body["command_id"], CommandId::v7(Time::ZERO, [7; 10]).to_string());
    }
}
