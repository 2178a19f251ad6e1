//! The headers a relayed message carries, and reading an event back from a
//! message ([`recorded_from_message`]).

use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use eventcore::{
    CausationId, CommandId, CorrelationId, EventId, EventMetadata, EventType, GlobalPosition, Payload, RecordedEvent,
    StreamId, StreamVersion, Time,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The event id (also sent as `Nats-Msg-Id`).
pub const EVENT_ID: &str = "Eventcore-Event-Id";
/// The stored event type.
pub const EVENT_TYPE: &str = "Eventcore-Event-Type";
/// The payload's schema version.
pub const SCHEMA_VERSION: &str = "Eventcore-Schema-Version";
/// The stream id.
pub const STREAM_ID: &str = "Eventcore-Stream-Id";
/// The event's version in its stream.
pub const STREAM_VERSION: &str = "Eventcore-Stream-Version";
/// The event's global position in the event store.
pub const GLOBAL_POSITION: &str = "Eventcore-Global-Position";
/// The command that wrote it.
pub const COMMAND_ID: &str = "Eventcore-Command-Id";
/// The correlation id.
pub const CORRELATION_ID: &str = "Eventcore-Correlation-Id";
/// The causation id, when there is one.
pub const CAUSATION_ID: &str = "Eventcore-Causation-Id";
/// When the command decided, Unix nanoseconds.
pub const TIMESTAMP: &str = "Eventcore-Timestamp";
/// The user metadata as a JSON object, when not empty.
pub const USER_METADATA: &str = "Eventcore-User-Metadata";

/// Why a message could not be read back as an event.
///
/// ```
/// use eventcore_nats::HeaderError;
/// let e = HeaderError::Missing("Eventcore-Event-Id");
/// assert_eq!(e.to_string(), "the message has no `Eventcore-Event-Id` header");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// A header the relay always writes is missing: not a relayed event.
    #[error("the message has no `{0}` header")]
    Missing(&'static str),
    /// A header does not parse.
    #[error("the `{header}` header `{value}` is invalid: {reason}")]
    Invalid {
        /// The header.
        header: &'static str,
        /// Its value.
        value: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The message has no headers at all.
    #[error("the message has no headers: not a relayed event")]
    NoHeaders,
}

/// The headers of `event`'s message: every `Eventcore-*` header above,
/// `Nats-Msg-Id` (the event id) and `Content-Type: application/json`.
///
/// ```
/// # use eventcore::*;
/// # use std::sync::Arc;
/// # let event = RecordedEvent {
/// #     event_id: EventId::v7(Time::ZERO, [1; 10]), stream_id: StreamId::new("account-42").expect("valid"),
/// #     version: StreamVersion::new(1), position: GlobalPosition::new(3),
/// #     event_type: EventType::new("Deposited").expect("valid"), schema_version: 1,
/// #     payload: Payload::from_trusted_json("{}"),
/// #     metadata: Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [0; 10]), Time::ZERO)) };
/// let headers = eventcore_nats::headers_of(&event);
/// assert_eq!(headers.get("Eventcore-Global-Position").map(|v| v.as_str()), Some("3"));
/// assert_eq!(headers.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.to_string()), Some(event.event_id.to_string()));
/// let back = eventcore_nats::recorded_from_parts(&headers, b"{}")?;
/// assert_eq!(back.event_id, event.event_id);
/// # Ok::<(), eventcore_nats::HeaderError>(())
/// ```
pub fn headers_of(event: &RecordedEvent) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let id = event.event_id.to_string();
    headers.insert(NATS_MESSAGE_ID, id.as_str());
    headers.insert(EVENT_ID, id.as_str());
    headers.insert(EVENT_TYPE, event.event_type.as_str());
    headers.insert(SCHEMA_VERSION, event.schema_version.to_string().as_str());
    headers.insert(STREAM_ID, event.stream_id.as_str());
    headers.insert(STREAM_VERSION, event.version.get().to_string().as_str());
    headers.insert(GLOBAL_POSITION, event.position.get().to_string().as_str());
    let metadata = &event.metadata;
    headers.insert(COMMAND_ID, metadata.command_id.to_string().as_str());
    headers.insert(CORRELATION_ID, metadata.correlation_id.to_string().as_str());
    if let Some(causation) = metadata.causation_id {
        headers.insert(CAUSATION_ID, causation.to_string().as_str());
    }
    headers.insert(TIMESTAMP, metadata.timestamp.as_unix_nanos().to_string().as_str());
    if !metadata.user.is_empty() {
        if let Ok(json) = serde_json::to_string(&metadata.user) {
            headers.insert(USER_METADATA, json.as_str());
        }
    }
    headers.insert("Content-Type", "application/json");
    headers
}

/// The global position a relayed message carries.
///
/// ```
/// let mut headers = async_nats::HeaderMap::new();
/// headers.insert("Eventcore-Global-Position", "42");
/// assert_eq!(eventcore_nats::position_of(&headers)?, eventcore::GlobalPosition::new(42));
/// # Ok::<(), eventcore_nats::HeaderError>(())
/// ```
pub fn position_of(headers: &HeaderMap) -> Result<GlobalPosition, HeaderError> {
    parse_u64(headers, GLOBAL_POSITION).map(GlobalPosition::new)
}

/// A relayed event back from its headers and payload (JSON, as the relay
/// sends it).
///
/// ```
/// let headers = async_nats::HeaderMap::new();
/// assert!(eventcore_nats::recorded_from_parts(&headers, b"{}").is_err());
/// ```
pub fn recorded_from_parts(headers: &HeaderMap, payload: &[u8]) -> Result<RecordedEvent, HeaderError> {
    let event_id = EventId::from_uuid(parse_uuid(headers, EVENT_ID)?);
    let stream_id = StreamId::new(get(headers, STREAM_ID)?).map_err(|e| invalid(headers, STREAM_ID, e))?;
    let event_type = EventType::new(get(headers, EVENT_TYPE)?).map_err(|e| invalid(headers, EVENT_TYPE, e))?;
    let schema_version =
        u32::try_from(parse_u64(headers, SCHEMA_VERSION)?).map_err(|e| invalid(headers, SCHEMA_VERSION, e))?;
    let text = std::str::from_utf8(payload).map_err(|e| HeaderError::Invalid {
        header: "payload",
        value: String::new(),
        reason: e.to_string(),
    })?;
    let payload = Payload::from_json(text.to_owned()).map_err(|e| HeaderError::Invalid {
        header: "payload",
        value: text.chars().take(64).collect(),
        reason: e.to_string(),
    })?;
    let mut metadata = EventMetadata::new(
        CommandId::from_uuid(parse_uuid(headers, COMMAND_ID)?),
        Time::from_unix_nanos(parse_u64(headers, TIMESTAMP)?),
    );
    metadata.correlation_id = CorrelationId::from_uuid(parse_uuid(headers, CORRELATION_ID)?);
    if headers.get(CAUSATION_ID).is_some() {
        metadata.causation_id = Some(CausationId::from_uuid(parse_uuid(headers, CAUSATION_ID)?));
    }
    if let Some(user) = headers.get(USER_METADATA) {
        metadata.user = serde_json::from_str::<BTreeMap<String, String>>(user.as_str())
            .map_err(|e| invalid(headers, USER_METADATA, e))?;
    }
    Ok(RecordedEvent {
        event_id,
        stream_id,
        version: StreamVersion::new(parse_u64(headers, STREAM_VERSION)?),
        position: GlobalPosition::new(parse_u64(headers, GLOBAL_POSITION)?),
        event_type,
        schema_version,
        payload,
        metadata: Arc::new(metadata),
    })
}

fn get<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, HeaderError> {
    headers.get(name).map(|v| v.as_str()).ok_or(HeaderError::Missing(name))
}

fn invalid(headers: &HeaderMap, header: &'static str, reason: impl ToString) -> HeaderError {
    HeaderError::Invalid {
        header,
        value: headers.get(header).map(|v| v.to_string()).unwrap_or_default(),
        reason: reason.to_string(),
    }
}

fn parse_u64(headers: &HeaderMap, name: &'static str) -> Result<u64, HeaderError> {
    get(headers, name)?.parse().map_err(|e| invalid(headers, name, e))
}

fn parse_uuid(headers: &HeaderMap, name: &'static str) -> Result<uuid::Uuid, HeaderError> {
    uuid::Uuid::parse_str(get(headers, name)?).map_err(|e| invalid(headers, name, e))
}
