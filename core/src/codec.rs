//! The typed view of events: how a user's event enum becomes a stored
//! `(event_type, schema_version, payload)` and back.
//!
//! The default codec is serde JSON with no annotations required: for an enum
//! the variant name is the event type and the variant's content is the
//! payload, so an operator querying the store sees `Deposited` /
//! `{"amount": 5}` rather than a wrapper object. Decoding goes straight from
//! the stored text into the enum, without an intermediate `Value`.

use crate::{EventType, InvalidEventType, Payload, RecordedEvent};
use serde::de::{self, DeserializeOwned, DeserializeSeed, Visitor};
use serde::ser::{self, Impossible, Serialize};
use std::fmt;

/// An event the user's commands emit and fold.
///
/// Implement it with an empty block for any serde enum; override
/// [`Event::SCHEMA_VERSION`] and [`Event::upcast`] when a payload's shape
/// changes, or the encode/decode pair to use another naming scheme.
///
/// ```
/// use eventcore::Event;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// enum AccountEvent { Opened, Deposited { amount: u64 } }
/// impl Event for AccountEvent {}
///
/// let encoded = AccountEvent::Deposited { amount: 5 }.encode()?;
/// assert_eq!(encoded.event_type.as_str(), "Deposited");
/// assert_eq!(encoded.payload.as_json(), r#"{"amount":5}"#);
/// let back = AccountEvent::decode("Deposited", 1, &encoded.payload)?;
/// assert_eq!(back, AccountEvent::Deposited { amount: 5 });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Event: Serialize + DeserializeOwned + Send + 'static {
    /// The schema version written with new events of this type.
    const SCHEMA_VERSION: u32 = 1;

    /// Turns the event into its stored form.
    fn encode(&self) -> Result<EncodedEvent, EncodeError> {
        encode_json(self, Self::SCHEMA_VERSION)
    }

    /// Rebuilds an event from its stored form, upcasting older schema
    /// versions through [`Event::upcast`].
    fn decode(event_type: &str, schema_version: u32, payload: &Payload) -> Result<Self, DecodeErrorKind> {
        if schema_version == Self::SCHEMA_VERSION {
            return decode_json(event_type, payload.as_json());
        }
        if schema_version > Self::SCHEMA_VERSION {
            return Err(DecodeErrorKind::UnsupportedSchemaVersion {
                found: schema_version,
                supported: Self::SCHEMA_VERSION,
            });
        }
        let old: serde_json::Value =
            serde_json::from_str(payload.as_json()).map_err(|e| DecodeErrorKind::InvalidPayload(e.to_string()))?;
        let upcast = Self::upcast(event_type, schema_version, old)?;
        let text = serde_json::to_string(&upcast).map_err(|e| DecodeErrorKind::InvalidPayload(e.to_string()))?;
        decode_json(event_type, &text)
    }

    /// Rewrites a payload stored with an older schema version into the
    /// current shape. The default knows no old versions.
    fn upcast(
        event_type: &str,
        schema_version: u32,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, DecodeErrorKind> {
        let _ = (event_type, payload);
        Err(DecodeErrorKind::UnsupportedSchemaVersion {
            found: schema_version,
            supported: Self::SCHEMA_VERSION,
        })
    }
}

/// An event in stored form, before it has an id and a place.
///
/// ```
/// use eventcore::Event;
/// #[derive(serde::Serialize, serde::Deserialize)]
/// enum E { Renamed(String) }
/// impl Event for E {}
/// let encoded = E::Renamed("x".into()).encode()?;
/// assert_eq!((encoded.event_type.as_str(), encoded.payload.as_json()), ("Renamed", "\"x\""));
/// # Ok::<(), eventcore::EncodeError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedEvent {
    /// The type name it is stored under.
    pub event_type: EventType,
    /// Its schema version.
    pub schema_version: u32,
    /// The JSON payload.
    pub payload: Payload,
}

/// Why an event could not be encoded.
///
/// ```
/// use eventcore::encode_json;
/// use std::collections::BTreeMap;
/// // JSON object keys must be strings: a map keyed by tuples cannot be stored.
/// let bad: BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
/// assert!(encode_json(&bad, 1).is_err());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// serde refused to serialize the value.
    #[error("event could not be serialized: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The derived type name is not a valid event type.
    #[error("event type name is invalid: {0}")]
    InvalidType(#[from] InvalidEventType),
}

/// Why a stored event could not be decoded (without the stream context,
/// which [`DecodeError`] adds).
///
/// ```
/// use eventcore::{DecodeErrorKind, Event, Payload};
/// #[derive(Debug, serde::Serialize, serde::Deserialize)]
/// enum E { Opened }
/// impl Event for E {}
/// let err = E::decode("Opened", 9, &Payload::from_trusted_json("null")).unwrap_err();
/// assert_eq!(err, DecodeErrorKind::UnsupportedSchemaVersion { found: 9, supported: 1 });
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// No variant of the event enum has this name.
    #[error("unknown event type")]
    UnknownEventType,
    /// The payload did not match the variant's shape.
    #[error("payload does not deserialize: {0}")]
    InvalidPayload(String),
    /// The stored schema version is newer than this code, or older with no
    /// upcaster.
    #[error("schema version {found} is not supported (current version is {supported})")]
    UnsupportedSchemaVersion {
        /// The version found in the store.
        found: u32,
        /// The version this code writes.
        supported: u32,
    },
}

/// A stored event that could not be decoded, with where it is.
///
/// ```
/// use eventcore::*;
/// # use std::sync::Arc;
/// # let recorded = RecordedEvent {
/// #     event_id: EventId::v7(Time::ZERO, [1; 10]), stream_id: StreamId::new("acc-1").expect("valid"),
/// #     version: StreamVersion::new(3), position: GlobalPosition::new(9),
/// #     event_type: EventType::new("Opened").expect("valid"), schema_version: 1,
/// #     payload: Payload::from_trusted_json("{}"),
/// #     metadata: Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [0; 10]), Time::ZERO)),
/// # };
/// let error = DecodeError::at(&recorded, DecodeErrorKind::UnknownEventType);
/// assert_eq!(error.to_string(), "cannot decode event Opened at acc-1@3 (position 9): unknown event type");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode event {event_type} at {stream}@{version} (position {position}): {kind}")]
pub struct DecodeError {
    /// The stream holding the event.
    pub stream: crate::StreamId,
    /// Its version in the stream.
    pub version: crate::StreamVersion,
    /// Its global position.
    pub position: crate::GlobalPosition,
    /// Its stored type name.
    pub event_type: EventType,
    /// What went wrong.
    #[source]
    pub kind: DecodeErrorKind,
}

impl DecodeError {
    /// Attaches the location of `event` to a decode failure.
    pub fn at(event: &RecordedEvent, kind: DecodeErrorKind) -> Self {
        DecodeError {
            stream: event.stream_id.clone(),
            version: event.version,
            position: event.position,
            event_type: event.event_type.clone(),
            kind,
        }
    }
}

/// Decodes a recorded event into `E`, naming the event on failure.
///
/// ```
/// # use eventcore::*;
/// # use std::sync::Arc;
/// #[derive(Debug, serde::Serialize, serde::Deserialize)]
/// enum E { Opened }
/// impl Event for E {}
/// # let cmd = CommandId::v7(Time::ZERO, [0; 10]);
/// let recorded = RecordedEvent {
///     event_type: EventType::new("Closed").expect("valid"),
/// #   event_id: EventId::v7(Time::ZERO, [1; 10]),
/// #   stream_id: StreamId::new("s").expect("valid"),
/// #   version: StreamVersion::new(1),
/// #   position: GlobalPosition::new(1),
/// #   schema_version: 1,
/// #   payload: Payload::from_trusted_json("null"),
/// #   metadata: Arc::new(EventMetadata::new(cmd, Time::ZERO)),
///     // ...
/// };
/// let err = decode_recorded::<E>(&recorded).unwrap_err();
/// assert_eq!(err.kind, DecodeErrorKind::UnknownEventType);
/// ```
pub fn decode_recorded<E: Event>(event: &RecordedEvent) -> Result<E, DecodeError> {
    E::decode(event.event_type.as_str(), event.schema_version, &event.payload)
        .map_err(|kind| DecodeError::at(event, kind))
}

/// The default encoding: enum variant name as type, variant content as
/// payload; a non-enum value is stored whole under its Rust type name.
///
/// ```
/// use eventcore::encode_json;
/// #[derive(serde::Serialize)]
/// enum E { Deposited { amount: u64 } }
/// let encoded = encode_json(&E::Deposited { amount: 5 }, 1)?;
/// assert_eq!(encoded.payload.as_json(), r#"{"amount":5}"#);
/// # Ok::<(), eventcore::EncodeError>(())
/// ```
pub fn encode_json<E: Serialize + ?Sized>(event: &E, schema_version: u32) -> Result<EncodedEvent, EncodeError> {
    let value = serde_json::to_value(event)?;
    let (name, payload) = match event.serialize(VariantProbe) {
        Err(ProbeResult::Variant(name)) => {
            let content = match value {
                serde_json::Value::Object(mut map) if map.len() == 1 => {
                    map.remove(name).unwrap_or(serde_json::Value::Null)
                }
                // Unit variants serialize as a bare string: no content.
                _ => serde_json::Value::Null,
            };
            (name.to_owned(), content)
        }
        _ => (short_type_name::<E>(), value),
    };
    Ok(EncodedEvent {
        event_type: EventType::new(name)?,
        schema_version,
        payload: Payload::from_trusted_json(serde_json::to_string(&payload)?),
    })
}

/// The default decoding, the inverse of [`encode_json`].
///
/// ```
/// use eventcore::decode_json;
/// #[derive(Debug, PartialEq, serde::Deserialize)]
/// enum E { Deposited { amount: u64 } }
/// assert_eq!(decode_json::<E>("Deposited", r#"{"amount":5}"#), Ok(E::Deposited { amount: 5 }));
/// ```
pub fn decode_json<E: DeserializeOwned>(event_type: &str, payload: &str) -> Result<E, DecodeErrorKind> {
    let mut unknown_variant = false;
    let result = E::deserialize(StoredEvent {
        event_type,
        payload,
        unknown_variant: &mut unknown_variant,
    });
    match result {
        Ok(event) => Ok(event),
        Err(_) if unknown_variant => Err(DecodeErrorKind::UnknownEventType),
        Err(e) => Err(DecodeErrorKind::InvalidPayload(e.to_string())),
    }
}

fn short_type_name<E: ?Sized>() -> String {
    let full = std::any::type_name::<E>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base).to_owned()
}

/// Finds out whether a value serializes as an enum variant, and which, by
/// failing on the first call with the answer.
struct VariantProbe;

#[derive(Debug)]
enum ProbeResult {
    Variant(&'static str),
    NotAVariant,
}

impl fmt::Display for ProbeResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for ProbeResult {}

impl ser::Error for ProbeResult {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        ProbeResult::NotAVariant
    }
}

macro_rules! not_a_variant {
    ($($method:ident($($arg:ty),*);)*) => {
        $(fn $method(self, $(_: $arg),*) -> Result<Self::Ok, Self::Error> { Err(ProbeResult::NotAVariant) })*
    };
}

impl ser::Serializer for VariantProbe {
    type Ok = ();
    type Error = ProbeResult;
    type SerializeSeq = Impossible<(), ProbeResult>;
    type SerializeTuple = Impossible<(), ProbeResult>;
    type SerializeTupleStruct = Impossible<(), ProbeResult>;
    type SerializeTupleVariant = Impossible<(), ProbeResult>;
    type SerializeMap = Impossible<(), ProbeResult>;
    type SerializeStruct = Impossible<(), ProbeResult>;
    type SerializeStructVariant = Impossible<(), ProbeResult>;

    not_a_variant! {
        serialize_bool(bool); serialize_i8(i8); serialize_i16(i16); serialize_i32(i32); serialize_i64(i64);
        serialize_u8(u8); serialize_u16(u16); serialize_u32(u32); serialize_u64(u64);
        serialize_f32(f32); serialize_f64(f64); serialize_char(char); serialize_str(&str);
        serialize_bytes(&[u8]); serialize_none(); serialize_unit(); serialize_unit_struct(&'static str);
    }

    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<(), ProbeResult> {
        Err(ProbeResult::NotAVariant)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), ProbeResult> {
        Err(ProbeResult::Variant(variant))
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, _: &T) -> Result<(), ProbeResult> {
        Err(ProbeResult::NotAVariant)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: &T,
    ) -> Result<(), ProbeResult> {
        Err(ProbeResult::Variant(variant))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, ProbeResult> {
        Err(ProbeResult::NotAVariant)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, ProbeResult> {
        Err(ProbeResult::NotAVariant)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, ProbeResult> {
        Err(ProbeResult::NotAVariant)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, ProbeResult> {
        Err(ProbeResult::Variant(variant))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, ProbeResult> {
        Err(ProbeResult::NotAVariant)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, ProbeResult> {
        Err(ProbeResult::NotAVariant)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, ProbeResult> {
        Err(ProbeResult::Variant(variant))
    }
}

/// A deserializer over a stored `(event_type, payload)` pair that presents
/// it to an enum as the externally tagged `{event_type: payload}` without
/// building that document.
struct StoredEvent<'a> {
    event_type: &'a str,
    payload: &'a str,
    unknown_variant: &'a mut bool,
}

fn parse_whole<'a, T>(
    payload: &'a str,
    f: impl FnOnce(&mut serde_json::Deserializer<serde_json::de::StrRead<'a>>) -> Result<T, serde_json::Error>,
) -> Result<T, serde_json::Error> {
    let mut json = serde_json::Deserializer::from_str(payload);
    let value = f(&mut json)?;
    json.end()?;
    Ok(value)
}

impl<'de> de::Deserializer<'de> for StoredEvent<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        parse_whole(self.payload, |json| de::Deserializer::deserialize_any(json, visitor))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        parse_whole(self.payload, |json| {
            de::Deserializer::deserialize_struct(json, name, fields, visitor)
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map identifier ignored_any
    }
}

impl<'de> de::EnumAccess<'de> for StoredEvent<'de> {
    type Error = serde_json::Error;
    type Variant = StoredPayload<'de>;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self::Variant), Self::Error> {
        let name = de::value::BorrowedStrDeserializer::<serde_json::Error>::new(self.event_type);
        match seed.deserialize(name) {
            Ok(variant) => Ok((variant, StoredPayload(self.payload))),
            Err(e) => {
                *self.unknown_variant = true;
                Err(e)
            }
        }
    }
}

struct StoredPayload<'a>(&'a str);

impl<'de> de::VariantAccess<'de> for StoredPayload<'de> {
    type Error = serde_json::Error;

    fn unit_variant(self) -> Result<(), Self::Error> {
        parse_whole(self.0, |json| <()>::deserialize(json))
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Self::Error> {
        parse_whole(self.0, |json| seed.deserialize(json))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Self::Error> {
        parse_whole(self.0, |json| de::Deserializer::deserialize_tuple(json, len, visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        parse_whole(self.0, |json| {
            de::Deserializer::deserialize_struct(json, "", fields, visitor)
        })
    }
}

use serde::Deserialize as _;

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Unit,
        Newtype(u32),
        Tuple(u8, String),
        Struct { a: i64, b: Option<String> },
    }
    impl Event for Shape {}

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Plain {
        x: u8,
    }
    impl Event for Plain {}

    fn round_trip<E: Event + PartialEq + fmt::Debug>(e: E) -> EncodedEvent {
        let enc = e.encode().expect("encodes");
        let back = E::decode(enc.event_type.as_str(), enc.schema_version, &enc.payload).expect("decodes");
        assert_eq!(back, e);
        enc
    }

    #[test]
    fn every_variant_shape_round_trips_with_variant_name_as_type() {
        let enc = round_trip(Shape::Unit);
        assert_eq!((enc.event_type.as_str(), enc.payload.as_json()), ("Unit", "null"));
        let enc = round_trip(Shape::Newtype(7));
        assert_eq!((enc.event_type.as_str(), enc.payload.as_json()), ("Newtype", "7"));
        let enc = round_trip(Shape::Tuple(1, "x".into()));
        assert_eq!(enc.payload.as_json(), r#"[1,"x"]"#);
        let enc = round_trip(Shape::Struct { a: -1, b: None });
        assert_eq!(enc.payload.as_json(), r#"{"a":-1,"b":null}"#);
    }

    #[test]
    fn structs_are_stored_under_their_type_name() {
        let enc = round_trip(Plain { x: 3 });
        assert_eq!(enc.event_type.as_str(), "Plain");
    }

    #[test]
    fn unknown_type_and_bad_payload_are_distinguished() {
        assert_eq!(
            Shape::decode("Triangle", 1, &Payload::from_trusted_json("null")),
            Err(DecodeErrorKind::UnknownEventType)
        );
        assert!(matches!(
            Shape::decode("Struct", 1, &Payload::from_trusted_json(r#"{"a":"no"}"#)),
            Err(DecodeErrorKind::InvalidPayload(_))
        ));
        assert!(matches!(
            Shape::decode("Newtype", 1, &Payload::from_trusted_json("7 8")),
            Err(DecodeErrorKind::InvalidPayload(_))
        ));
        assert_eq!(
            Shape::decode("Unit", 2, &Payload::from_trusted_json("null")),
            Err(DecodeErrorKind::UnsupportedSchemaVersion { found: 2, supported: 1 })
        );
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum V2 {
        Deposited { cents: u64 },
    }
    impl Event for V2 {
        const SCHEMA_VERSION: u32 = 2;
        fn upcast(
            event_type: &str,
            schema_version: u32,
            payload: serde_json::Value,
        ) -> Result<serde_json::Value, DecodeErrorKind> {
            match (event_type, schema_version) {
                ("Deposited", 1) => {
                    let dollars = payload["dollars"]
                        .as_u64()
                        .ok_or(DecodeErrorKind::InvalidPayload("dollars".into()))?;
                    Ok(serde_json::json!({ "cents": dollars * 100 }))
                }
                _ => Err(DecodeErrorKind::UnsupportedSchemaVersion {
                    found: schema_version,
                    supported: 2,
                }),
            }
        }
    }

    #[test]
    fn old_schema_versions_are_upcast_on_read() {
        let old = Payload::from_trusted_json(r#"{"dollars":3}"#);
        assert_eq!(V2::decode("Deposited", 1, &old), Ok(V2::Deposited { cents: 300 }));
        assert_eq!(V2::Deposited { cents: 1 }.encode().expect("encodes").schema_version, 2);
    }
}
