//! Events as stores see them: type name, schema version, JSON payload and
//! metadata. The typed view (`Command::Event`) lives in [`crate::codec`].

use crate::{CausationId, CommandId, CorrelationId, EventId, GlobalPosition, StreamId, StreamVersion, Time};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The longest event type name accepted, in bytes.
pub const MAX_EVENT_TYPE_BYTES: usize = 255;

/// Why a string is not a valid [`EventType`].
///
/// ```
/// use eventcore::{EventType, InvalidEventType};
/// assert_eq!(EventType::new(""), Err(InvalidEventType::Empty));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidEventType {
    /// The name was empty.
    #[error("event type is empty")]
    Empty,
    /// The name contained a control character or whitespace.
    #[error("event type {name:?} contains whitespace or a control character")]
    BadCharacter {
        /// The rejected name.
        name: String,
    },
    /// The name was longer than [`MAX_EVENT_TYPE_BYTES`].
    #[error("event type is {len} bytes long; the maximum is {max}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// The name an event is stored under, e.g. `Deposited`.
///
/// ```
/// use eventcore::EventType;
/// assert_eq!(EventType::new("Deposited")?.as_str(), "Deposited");
/// assert!(EventType::new("has space").is_err());
/// # Ok::<(), eventcore::InvalidEventType>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventType(Arc<str>);

impl EventType {
    /// Validates and wraps a type name.
    pub fn new(name: impl AsRef<str>) -> Result<Self, InvalidEventType> {
        let name = name.as_ref();
        if name.is_empty() {
            return Err(InvalidEventType::Empty);
        }
        if name.len() > MAX_EVENT_TYPE_BYTES {
            return Err(InvalidEventType::TooLong {
                len: name.len(),
                max: MAX_EVENT_TYPE_BYTES,
            });
        }
        if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(InvalidEventType::BadCharacter { name: name.to_owned() });
        }
        Ok(EventType(Arc::from(name)))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventType({:?})", &*self.0)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        EventType::new(&*raw).map_err(serde::de::Error::custom)
    }
}

/// An event payload: a JSON document, kept as text so that stores can pass it
/// to JSONB columns and decoders can parse it once, straight into the user's
/// type. Cloning is cheap (a reference count).
///
/// ```
/// use eventcore::Payload;
/// let p = Payload::from_json(r#"{"amount":5}"#.to_owned())?;
/// assert_eq!(p.as_json(), r#"{"amount":5}"#);
/// assert!(Payload::from_json("{oops".to_owned()).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Payload(Arc<str>);

impl Payload {
    /// Checks that `json` is one well-formed JSON document and wraps it.
    pub fn from_json(json: String) -> Result<Self, serde_json::Error> {
        serde_json::from_str::<serde::de::IgnoredAny>(&json)?;
        Ok(Payload(Arc::from(json)))
    }

    /// Wraps text that is already known to be JSON: what a store read back
    /// from its own JSON column, or what `serde_json` just wrote. Decoding
    /// reports malformed text as a typed error, so a wrong call here cannot
    /// corrupt anything; it only moves the error to read time.
    pub fn from_trusted_json(json: impl Into<Arc<str>>) -> Self {
        Payload(json.into())
    }

    /// Serializes a value as the payload.
    pub fn from_value<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        Ok(Payload(Arc::from(serde_json::to_string(value)?)))
    }

    /// Checks that the text is one JSON document every store can hold:
    /// well-formed, and without the `\u0000` escape (PostgreSQL's JSONB
    /// cannot store a NUL character). Stores call this on append so that a
    /// payload built with [`Payload::from_trusted_json`] is refused the same
    /// way everywhere.
    ///
    /// ```
    /// use eventcore::Payload;
    /// assert!(Payload::from_trusted_json(r#"{"a":1}"#).check_storable().is_ok());
    /// assert!(Payload::from_trusted_json("{oops").check_storable().is_err());
    /// assert!(Payload::from_trusted_json(r#""nul\u0000""#).check_storable().is_err());
    /// // An escaped backslash followed by `u0000` is no NUL.
    /// assert!(Payload::from_trusted_json(r#""\\u0000""#).check_storable().is_ok());
    /// ```
    pub fn check_storable(&self) -> Result<(), String> {
        serde_json::from_str::<serde::de::IgnoredAny>(&self.0)
            .map_err(|e| format!("payload is not valid JSON: {e}"))?;
        if holds_nul_escape(&self.0) {
            return Err("payload contains \\u0000, which JSON stores cannot hold".to_owned());
        }
        Ok(())
    }

    /// The JSON text.
    pub fn as_json(&self) -> &str {
        &self.0
    }

    /// Size of the JSON text in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if the text is empty (never for a payload built by this crate).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Whether well-formed JSON text holds a `\u0000` escape, a NUL character
/// in a string. In valid JSON a backslash appears only inside a string,
/// where it starts an escape unless it is itself escaped: the `\` of a
/// `\u0000` starts one when it ends an odd run of backslashes. (A plain
/// search would also refuse `"\\u0000"`, a backslash and the text `u0000`,
/// which every store holds; found by the `ids_and_event_types` fuzz
/// target.)
fn holds_nul_escape(json: &str) -> bool {
    json.match_indices("\\u0000").any(|(at, _)| {
        let before = json.as_bytes().get(..at).unwrap_or_default();
        let escaped = before.iter().rev().take_while(|&&b| b == b'\\').count();
        escaped % 2 == 0
    })
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({})", &*self.0)
    }
}

/// Metadata shared by every event of one append: who wrote it, why, and when.
///
/// ```
/// use eventcore::{CommandId, EventMetadata, Time};
/// let id = CommandId::v7(Time::ZERO, [0; 10]);
/// let meta = EventMetadata::new(id, Time::from_unix_millis(5)).with_user("tenant", "acme");
/// assert_eq!(meta.user.get("tenant").map(String::as_str), Some("acme"));
/// assert_eq!(meta.correlation_id.as_uuid(), id.as_uuid());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// The command execution that wrote the events; the idempotency key.
    pub command_id: CommandId,
    /// Groups events that stem from one user request.
    pub correlation_id: CorrelationId,
    /// What caused the command, if known.
    pub causation_id: Option<CausationId>,
    /// When the command decided, on the driver's clock.
    pub timestamp: Time,
    /// Free-form key/values supplied by the caller (user id, tenant, ...).
    pub user: BTreeMap<String, String>,
}

impl EventMetadata {
    /// Metadata for `command_id` decided at `timestamp`; the correlation id
    /// defaults to the command id.
    pub fn new(command_id: CommandId, timestamp: Time) -> Self {
        EventMetadata {
            command_id,
            correlation_id: CorrelationId::from_uuid(command_id.as_uuid()),
            causation_id: None,
            timestamp,
            user: BTreeMap::new(),
        }
    }

    /// Adds one user key/value.
    pub fn with_user(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.user.insert(key.into(), value.into());
        self
    }
}

/// An event about to be appended.
///
/// ```
/// use eventcore::{EventId, EventType, NewEvent, Payload, Time};
/// let e = NewEvent {
///     event_id: EventId::v7(Time::ZERO, [0; 10]),
///     event_type: EventType::new("Opened").expect("valid"),
///     schema_version: 1,
///     payload: Payload::from_trusted_json("{}"),
/// };
/// assert_eq!(e.event_type.as_str(), "Opened");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// Identity of the event (UUIDv7).
    pub event_id: EventId,
    /// The stored type name.
    pub event_type: EventType,
    /// The payload's schema version; old versions are upcast on read.
    pub schema_version: u32,
    /// The payload.
    pub payload: Payload,
}

/// An event as stored: the new event plus where it landed.
///
/// ```
/// use eventcore::*;
/// use std::sync::Arc;
/// let cmd = CommandId::v7(Time::ZERO, [0; 10]);
/// let e = RecordedEvent {
///     event_id: EventId::v7(Time::ZERO, [1; 10]),
///     stream_id: StreamId::new("s").expect("valid"),
///     version: StreamVersion::new(1),
///     position: GlobalPosition::new(1),
///     event_type: EventType::new("Opened").expect("valid"),
///     schema_version: 1,
///     payload: Payload::from_trusted_json("{}"),
///     metadata: Arc::new(EventMetadata::new(cmd, Time::ZERO)),
/// };
/// assert_eq!(e.version.get(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedEvent {
    /// Identity of the event.
    pub event_id: EventId,
    /// The stream it belongs to.
    pub stream_id: StreamId,
    /// Its version within the stream (1-based, contiguous).
    pub version: StreamVersion,
    /// Its position in the global order.
    pub position: GlobalPosition,
    /// The stored type name.
    pub event_type: EventType,
    /// The payload's schema version.
    pub schema_version: u32,
    /// The payload.
    pub payload: Payload,
    /// Metadata of the append that wrote it (shared by all its events).
    pub metadata: Arc<EventMetadata>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_real_nul_escape_makes_a_payload_unstorable() {
        let storable = |json: &str| Payload::from_trusted_json(json).check_storable().is_ok();
        assert!(!storable(r#""\u0000""#));
        assert!(!storable(r#"{"k\u0000":1}"#));
        assert!(!storable(r#"["\\\u0000"]"#), "an escaped backslash, then a NUL");
        assert!(storable(r#""\\u0000""#), "a backslash, then the text u0000");
        assert!(storable(r#"["\\\\u0000", "u0000"]"#));
        assert!(!storable("{oops"));
    }
}
