//! The HTTP handlers.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use eventcore::{GlobalPosition, ReadRequest, StreamRead, StreamVersion};
use eventcore_tokio::EventStore;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::domain::{account_stream, Deposit, OpenAccount, Transfer, MAX_AMOUNT};
use crate::error::ApiError;
use crate::idempotency::{self, Outcome, REPLAYED_HEADER};
use crate::AppState;

/// `POST /accounts`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OpenRequest {
    id: String,
    #[serde(default)]
    initial: u64,
}

/// `POST /accounts/{id}/deposits`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DepositRequest {
    amount: u64,
}

/// `POST /transfers`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TransferRequest {
    from: String,
    to: String,
    amount: u64,
}

/// `GET /accounts/{id}/events?after=&limit=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    #[serde(default)]
    after: u64,
    limit: Option<u32>,
}

/// The most events one `GET /accounts/{id}/events` answers with.
const MAX_PAGE: u32 = 1_000;
const DEFAULT_PAGE: u32 = 100;

fn body<T>(json: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    json.map(|Json(value)| value)
        .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
}

fn amount(name: &str, value: u64, zero_allowed: bool) -> Result<u64, ApiError> {
    if (value == 0 && !zero_allowed) || value > MAX_AMOUNT {
        let least = if zero_allowed { 0 } else { 1 };
        return Err(ApiError::BadRequest(format!(
            "{name} must be {least} to {MAX_AMOUNT} cents; got {value}"
        )));
    }
    Ok(value)
}

fn account(id: &str) -> Result<eventcore::StreamId, ApiError> {
    account_stream(id).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// The request in the canonical form stored with its events.
fn canonical(route: &str, body: &impl Serialize) -> String {
    format!(
        "POST {route} {}",
        serde_json::to_string(body).unwrap_or_else(|e| format!("<unserializable: {e}>"))
    )
}

fn created(outcome: Outcome, location: Option<String>) -> Response {
    let mut response = (StatusCode::CREATED, Json(&outcome.committed)).into_response();
    let headers = response.headers_mut();
    if let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(header::LOCATION, location);
    }
    if outcome.replayed {
        headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    response
}

pub(crate) async fn open_account(
    State(state): State<AppState>,
    headers: HeaderMap,
    json: Result<Json<OpenRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let key = idempotency::key(&headers)?;
    let request = body(json)?;
    let command = OpenAccount {
        account: account(&request.id)?,
        initial: amount("initial", request.initial, true)?,
    };
    let location = format!("/accounts/{}", request.id);
    let outcome = idempotency::run(state.executor(), key, canonical("/accounts", &request), command).await?;
    Ok(created(outcome, Some(location)))
}

pub(crate) async fn deposit(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    json: Result<Json<DepositRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let key = idempotency::key(&headers)?;
    let request = body(json)?;
    let command = Deposit {
        account: account(&id)?,
        amount: amount("amount", request.amount, false)?,
    };
    let route = format!("/accounts/{id}/deposits");
    let outcome = idempotency::run(state.executor(), key, canonical(&route, &request), command).await?;
    Ok(created(outcome, None))
}

pub(crate) async fn transfer(
    State(state): State<AppState>,
    headers: HeaderMap,
    json: Result<Json<TransferRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let key = idempotency::key(&headers)?;
    let request = body(json)?;
    let command = Transfer {
        from: account(&request.from)?,
        to: account(&request.to)?,
        amount: amount("amount", request.amount, false)?,
    };
    let outcome = idempotency::run(state.executor(), key, canonical("/transfers", &request), command).await?;
    Ok(created(outcome, None))
}

/// `GET /accounts/{id}?after=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BalanceQuery {
    after: Option<u64>,
}

/// How long `GET /accounts/{id}?after=` waits for the read model.
const READ_WAIT: Duration = Duration::from_secs(2);

/// `GET /accounts/{id}`: the balance from the read model, with the
/// position the read model is at (`as_of`). With `?after=P` (the `position`
/// a POST answered with) it waits, up to [`READ_WAIT`], until the read model
/// is as of `P` at least, so the balance includes that POST: read-your-writes
/// on an eventually consistent model. Still behind then: 503, `Retry-After`.
pub(crate) async fn balance(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<BalanceQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    let stream = account(&id)?;
    let after = GlobalPosition::new(query.after.unwrap_or(0));
    let deadline = tokio::time::Instant::now() + READ_WAIT;
    let (balance, as_of) = loop {
        let (balance, as_of) = state.balances().balance(state.store(), stream.as_str()).await?;
        if as_of >= after {
            break (balance, as_of);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::Behind { as_of, after });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    match balance {
        Some(balance) => Ok(Json(json!({ "account": id, "balance": balance, "as_of": as_of.get() })).into_response()),
        None => Err(ApiError::NotFound(format!(
            "account `{id}` is not in the balances read model as of position {as_of} \
             (not opened, or opened after that position)"
        ))),
    }
}

/// One event of `GET /accounts/{id}/events`.
#[derive(Debug, Serialize)]
struct EventView {
    version: u64,
    position: u64,
    event_type: String,
    schema_version: u32,
    data: serde_json::Value,
    metadata: MetadataView,
}

#[derive(Debug, Serialize)]
struct MetadataView {
    event_id: String,
    command_id: String,
    correlation_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    causation_id: Option<String>,
    /// When the command decided, in Unix milliseconds.
    decided_at_ms: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    user: BTreeMap<String, String>,
}

/// `GET /accounts/{id}/events`: the account stream's events after version
/// `after` (default 0), at most `limit` (default 100, at most 1000) of
/// them, with their metadata; `next` is the `after` of the next page.
pub(crate) async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    let stream = account(&id)?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    let page = NonZeroU32::new(limit)
        .filter(|l| l.get() <= MAX_PAGE)
        .ok_or_else(|| ApiError::BadRequest(format!("limit must be 1 to {MAX_PAGE}; got {limit}")))?;
    let request = ReadRequest {
        streams: vec![StreamRead {
            stream,
            after: StreamVersion::new(query.after),
        }],
        page_size: Some(page),
    };
    let response = state.store().read(&request).await?;
    let Some(slice) = response.streams.into_iter().next() else {
        return Err(ApiError::NotFound(format!("account `{id}` has no events")));
    };
    if slice.head == StreamVersion::NONE {
        return Err(ApiError::NotFound(format!("account `{id}` has no events")));
    }
    let next = slice
        .events
        .last()
        .filter(|last| last.version < slice.head)
        .map(|last| last.version.get());
    let events: Vec<EventView> = slice
        .events
        .iter()
        .map(|event| EventView {
            version: event.version.get(),
            position: event.position.get(),
            event_type: event.event_type.as_str().to_owned(),
            schema_version: event.schema_version,
            // A payload that is not JSON shows as its text (never here:
            // this service's store keeps JSON).
            data: event
                .payload
                .to_value()
                .unwrap_or_else(|_| serde_json::Value::String(event.payload.as_json().to_owned())),
            metadata: MetadataView {
                event_id: event.event_id.to_string(),
                command_id: event.metadata.command_id.to_string(),
                correlation_id: event.metadata.correlation_id.to_string(),
                causation_id: event.metadata.causation_id.map(|c| c.to_string()),
                decided_at_ms: event.metadata.timestamp.as_unix_millis(),
                user: event.metadata.user.clone(),
            },
        })
        .collect();
    Ok(Json(json!({
        "account": id,
        "version": slice.head.get(),
        "events": events,
        "next": next,
    }))
    .into_response())
}

/// `GET /health`: 200 when the database answers and the schema is
/// migrated, 503 otherwise; with the projection's state.
pub(crate) async fn health(State(state): State<AppState>) -> Response {
    let projection = {
        let status = state.projection().borrow();
        json!({
            "name": crate::projection::PROJECTION,
            "state": format!("{:?}", status.state),
            "checkpoint": status.checkpoint.get(),
            "caught_up": status.caught_up,
        })
    };
    match state.store().health().await {
        Ok(health) if health.migrated => Json(json!({
            "status": "ok",
            "database": {
                "status": "ok",
                "server_version": health.server_version,
                "migrated": true,
                "connections": health.connections,
                "idle": health.idle,
            },
            "projection": projection,
        }))
        .into_response(),
        Ok(_) => unavailable(json!({ "status": "unavailable", "database": {
            "status": "not migrated",
            "schema": state.store().options().schema,
        }, "projection": projection })),
        Err(error) => unavailable(json!({ "status": "unavailable", "database": {
            "status": "unreachable",
            "error": error.to_string(),
        }, "projection": projection })),
    }
}

fn unavailable(body: serde_json::Value) -> Response {
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(crate::error::RETRY_AFTER_SECONDS),
    );
    response
}

/// `GET /metrics`: everything recorded through the `metrics` facade (the
/// library's `eventcore_*` metrics among them), in Prometheus' text format.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    match state.prometheus() {
        Some(handle) => {
            handle.run_upkeep();
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4"),
                )],
                handle.render(),
            )
                .into_response()
        }
        None => ApiError::NotFound("no Prometheus recorder: another metrics recorder was installed first".to_owned())
            .into_response(),
    }
}
