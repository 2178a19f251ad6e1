//! Events as stores see them: type name, schema version, payload (JSON, or
//! MessagePack with the `binary-codec` feature) and metadata. The typed
//! view (`Command::Event`) lives in [`crate::codec`].

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

/// How an event's payload is encoded in stored form.
///
/// [`Codec::Json`] is the default everywhere: the payload is JSON text, and
/// a PostgreSQL store keeps it in a `jsonb` column that operators can query.
/// With the `binary-codec` feature, [`Codec::MessagePack`] holds the same
/// data (the same serde data model, structs as maps with their field
/// names) as MessagePack bytes: smaller, and cheaper to write, store and
/// decode; a PostgreSQL store keeps it in a `bytea` column. A store is given
/// one codec (e.g. `PostgresOptions::codec`), executors encode in it, and
/// each stored event says which one its payload is in, so a store switched
/// from one codec to the other reads everything written before.
///
/// ```
/// use eventcore::{Codec, Payload};
/// assert_eq!(Codec::default(), Codec::Json);
/// assert_eq!(Payload::from_trusted_json("{}").codec(), Codec::Json);
/// assert_eq!(Codec::Json.to_string(), "json");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// JSON text (`serde_json`).
    #[default]
    Json,
    /// MessagePack bytes (`rmp-serde`, structs as maps with their field
    /// names, human-readable forms of ids and times, as in JSON), so that a
    /// payload still says what it holds without its Rust type: it renders
    /// as JSON ([`Payload::as_json`]) and upcasts through
    /// [`serde_json::Value`] like a JSON one. Needs the `binary-codec`
    /// feature.
    #[cfg(feature = "binary-codec")]
    MessagePack,
}

impl Codec {
    /// Every codec this build has: [`Codec::Json`], then
    /// [`Codec::MessagePack`] with the `binary-codec` feature.
    ///
    /// ```
    /// assert_eq!(eventcore::Codec::ALL[0], eventcore::Codec::Json);
    /// ```
    pub const ALL: &'static [Codec] = &[
        Codec::Json,
        #[cfg(feature = "binary-codec")]
        Codec::MessagePack,
    ];

    /// The codec's short name: `json` or `msgpack`.
    ///
    /// ```
    /// assert_eq!(eventcore::Codec::Json.name(), "json");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            Codec::Json => "json",
            #[cfg(feature = "binary-codec")]
            Codec::MessagePack => "msgpack",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a payload cannot be converted to another codec, or is not storable.
///
/// ```
/// use eventcore::{Codec, Payload, PayloadError};
/// let bad = Payload::from_trusted_json("{oops");
/// assert!(matches!(bad.to_value(), Err(PayloadError::InvalidJson(_))));
/// assert!(bad.to_codec(Codec::Json).is_ok(), "the same codec: nothing to convert");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The JSON text does not parse.
    #[error("payload is not valid JSON: {0}")]
    InvalidJson(String),
    /// The bytes are not one well-formed MessagePack value.
    #[error("payload is not valid MessagePack: {0}")]
    InvalidMessagePack(String),
}

/// An event payload in stored form: JSON text (the default) or, with the
/// `binary-codec` feature, MessagePack bytes ([`Codec`]). JSON is kept as
/// text so that stores can pass it to JSONB columns and decoders can parse
/// it once, straight into the user's type. Cloning is cheap (a reference
/// count).
///
/// ```
/// use eventcore::Payload;
/// let p = Payload::from_json(r#"{"amount":5}"#.to_owned())?;
/// assert_eq!(p.as_json(), r#"{"amount":5}"#);
/// assert!(Payload::from_json("{oops".to_owned()).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Payload(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Json(Arc<str>),
    #[cfg(feature = "binary-codec")]
    MessagePack(Arc<Binary>),
}

/// MessagePack bytes, and their JSON rendering once someone asked for it.
#[cfg(feature = "binary-codec")]
struct Binary {
    bytes: Bytes,
    json: std::sync::OnceLock<Box<str>>,
}

/// Payloads up to this many bytes live inside their [`Binary`], so that a
/// small MessagePack payload costs one allocation, as a JSON one does.
#[cfg(feature = "binary-codec")]
const INLINE_BYTES: usize = 30;

#[cfg(feature = "binary-codec")]
enum Bytes {
    Inline(u8, [u8; INLINE_BYTES]),
    Heap(Box<[u8]>),
}

#[cfg(feature = "binary-codec")]
impl Bytes {
    fn new(bytes: &[u8]) -> Self {
        match u8::try_from(bytes.len()) {
            Ok(len) if bytes.len() <= INLINE_BYTES => {
                let mut data = [0; INLINE_BYTES];
                data[..bytes.len()].copy_from_slice(bytes);
                Bytes::Inline(len, data)
            }
            _ => Bytes::Heap(bytes.into()),
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Inline(len, data) => &data[..usize::from(*len)],
            Bytes::Heap(bytes) => bytes,
        }
    }
}

#[cfg(feature = "binary-codec")]
impl PartialEq for Binary {
    fn eq(&self, other: &Self) -> bool {
        self.bytes.as_slice() == other.bytes.as_slice()
    }
}

#[cfg(feature = "binary-codec")]
impl Eq for Binary {}

#[cfg(feature = "binary-codec")]
impl std::hash::Hash for Binary {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bytes.as_slice().hash(state);
    }
}

/// A payload's stored form, borrowed.
pub(crate) enum PayloadRef<'a> {
    Json(&'a str),
    #[cfg(feature = "binary-codec")]
    MessagePack(&'a [u8]),
}

impl Payload {
    /// Checks that `json` is one well-formed JSON document and wraps it.
    pub fn from_json(json: String) -> Result<Self, serde_json::Error> {
        serde_json::from_str::<serde::de::IgnoredAny>(&json)?;
        Ok(Payload(Repr::Json(Arc::from(json))))
    }

    /// Wraps text that is already known to be JSON: what a store read back
    /// from its own JSON column, or what `serde_json` just wrote. Decoding
    /// reports malformed text as a typed error, so a wrong call here cannot
    /// corrupt anything; it only moves the error to read time.
    pub fn from_trusted_json(json: impl Into<Arc<str>>) -> Self {
        Payload(Repr::Json(json.into()))
    }

    /// Serializes a value as the payload (JSON).
    pub fn from_value<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        Ok(Payload(Repr::Json(Arc::from(serde_json::to_string(value)?))))
    }

    /// Checks that `bytes` are one MessagePack value every store can hold
    /// ([`Payload::check_storable`]) and wraps them.
    ///
    /// ```
    /// use eventcore::{Codec, Payload};
    /// let p = Payload::from_msgpack(vec![0x81, 0xa1, b'a', 0x01])?; // {"a": 1}
    /// assert_eq!((p.codec(), p.as_json()), (Codec::MessagePack, r#"{"a":1}"#));
    /// assert!(Payload::from_msgpack(vec![0x81]).is_err(), "a map missing its entry");
    /// # Ok::<(), eventcore::PayloadError>(())
    /// ```
    #[cfg(feature = "binary-codec")]
    pub fn from_msgpack(bytes: impl AsRef<[u8]>) -> Result<Self, PayloadError> {
        let payload = Payload::from_trusted_msgpack(bytes);
        payload.check_storable().map_err(PayloadError::InvalidMessagePack)?;
        Ok(payload)
    }

    /// Wraps bytes already known to be MessagePack: what a store read back
    /// from its own binary column, or what the codec just wrote. As with
    /// [`Payload::from_trusted_json`], malformed bytes are a typed error
    /// when decoded.
    ///
    /// ```
    /// use eventcore::Payload;
    /// let p = Payload::from_trusted_msgpack(vec![0xc0]); // nil
    /// assert_eq!(p.as_msgpack(), Some(&[0xc0][..]));
    /// assert_eq!(p.as_json(), "null");
    /// ```
    #[cfg(feature = "binary-codec")]
    pub fn from_trusted_msgpack(bytes: impl AsRef<[u8]>) -> Self {
        Payload(Repr::MessagePack(Arc::new(Binary {
            bytes: Bytes::new(bytes.as_ref()),
            json: std::sync::OnceLock::new(),
        })))
    }

    /// The codec the payload is in.
    pub fn codec(&self) -> Codec {
        match &self.0 {
            Repr::Json(_) => Codec::Json,
            #[cfg(feature = "binary-codec")]
            Repr::MessagePack(_) => Codec::MessagePack,
        }
    }

    pub(crate) fn stored(&self) -> PayloadRef<'_> {
        match &self.0 {
            Repr::Json(text) => PayloadRef::Json(text),
            #[cfg(feature = "binary-codec")]
            Repr::MessagePack(binary) => PayloadRef::MessagePack(binary.bytes.as_slice()),
        }
    }

    /// Checks that the payload is one value every store can hold, whatever
    /// its codec, so that a store may convert it to its own codec.
    ///
    /// JSON: well-formed, and without the `\u0000` escape (PostgreSQL's
    /// JSONB cannot store a NUL character). MessagePack: one well-formed
    /// value with nothing after it, strings in UTF-8 without NUL, nested at
    /// most as deep as JSON parsers allow (128). Stores call this on append
    /// so that a payload built with [`Payload::from_trusted_json`] is
    /// refused the same way everywhere.
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
        match self.stored() {
            PayloadRef::Json(text) => {
                serde_json::from_str::<serde::de::IgnoredAny>(text)
                    .map_err(|e| format!("payload is not valid JSON: {e}"))?;
                if holds_nul_escape(text) {
                    return Err("payload contains \\u0000, which JSON stores cannot hold".to_owned());
                }
                Ok(())
            }
            #[cfg(feature = "binary-codec")]
            PayloadRef::MessagePack(bytes) => crate::codec::msgpack::check_storable(bytes),
        }
    }

    /// The JSON text: a JSON payload's own text, or the JSON rendering of a
    /// MessagePack payload (computed on the first call, then kept). The
    /// rendering is what the JSON codec writes for the same value, except
    /// that map keys that are not strings become their JSON text (`1` →
    /// `"1"`, as `serde_json` writes integer keys) and byte strings become
    /// arrays of numbers. Bytes that are not MessagePack at all (only a
    /// [`Payload::from_trusted_msgpack`] of garbage) render as the empty
    /// string, which no JSON reader accepts.
    pub fn as_json(&self) -> &str {
        match &self.0 {
            Repr::Json(text) => text,
            #[cfg(feature = "binary-codec")]
            Repr::MessagePack(binary) => binary
                .json
                .get_or_init(|| crate::codec::msgpack::render_json(binary.bytes.as_slice()).unwrap_or_default()),
        }
    }

    /// The MessagePack bytes of a MessagePack payload; `None` for JSON.
    #[cfg(feature = "binary-codec")]
    pub fn as_msgpack(&self) -> Option<&[u8]> {
        match &self.0 {
            Repr::Json(_) => None,
            Repr::MessagePack(binary) => Some(binary.bytes.as_slice()),
        }
    }

    /// The payload as a [`serde_json::Value`], whatever its codec: what
    /// upcasters are given.
    ///
    /// ```
    /// use eventcore::Payload;
    /// let p = Payload::from_trusted_json(r#"{"amount":5}"#);
    /// assert_eq!(p.to_value()?, serde_json::json!({ "amount": 5 }));
    /// # Ok::<(), eventcore::PayloadError>(())
    /// ```
    pub fn to_value(&self) -> Result<serde_json::Value, PayloadError> {
        match self.stored() {
            PayloadRef::Json(text) => serde_json::from_str(text).map_err(|e| PayloadError::InvalidJson(e.to_string())),
            #[cfg(feature = "binary-codec")]
            PayloadRef::MessagePack(bytes) => {
                crate::codec::msgpack::to_value(bytes).map_err(PayloadError::InvalidMessagePack)
            }
        }
    }

    /// The same payload in `codec`: a clone (a reference count) when it is
    /// in that codec already, else converted through its value
    /// ([`Payload::to_value`]). MessagePack to JSON keeps what decoding
    /// needs (a JSON store converts MessagePack payloads so); JSON to
    /// MessagePack does not always: a map's integer keys, which JSON holds
    /// as strings, then stay strings, which a MessagePack decoder does not
    /// read as integers (so stores never convert that way).
    ///
    /// ```
    /// use eventcore::{Codec, Payload};
    /// let json = Payload::from_trusted_json(r#"{"a":[1,"x"]}"#);
    /// for codec in Codec::ALL {
    ///     let converted = json.to_codec(*codec)?;
    ///     assert_eq!(converted.codec(), *codec);
    ///     assert_eq!(converted.to_value()?, json.to_value()?);
    /// }
    /// # Ok::<(), eventcore::PayloadError>(())
    /// ```
    pub fn to_codec(&self, codec: Codec) -> Result<Payload, PayloadError> {
        if self.codec() == codec {
            return Ok(self.clone());
        }
        match codec {
            Codec::Json => Ok(Payload::from_trusted_json(
                serde_json::to_string(&self.to_value()?).map_err(|e| PayloadError::InvalidJson(e.to_string()))?,
            )),
            #[cfg(feature = "binary-codec")]
            Codec::MessagePack => Ok(Payload::from_trusted_msgpack(
                crate::codec::msgpack::from_value(&self.to_value()?).map_err(PayloadError::InvalidMessagePack)?,
            )),
        }
    }

    /// Size of the stored form in bytes (JSON text or MessagePack).
    pub fn len(&self) -> usize {
        match self.stored() {
            PayloadRef::Json(text) => text.len(),
            #[cfg(feature = "binary-codec")]
            PayloadRef::MessagePack(bytes) => bytes.len(),
        }
    }

    /// True if the stored form is empty (never for a payload built by this
    /// crate).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        match &self.0 {
            Repr::Json(text) => write!(f, "Payload({text})"),
            #[cfg(feature = "binary-codec")]
            Repr::MessagePack(_) => write!(f, "Payload(msgpack {})", self.as_json()),
        }
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
