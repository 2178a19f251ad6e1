//! The typed view of events: how a user's event enum becomes a stored
//! `(event_type, schema_version, payload)` and back.
//!
//! The default codec is serde JSON with no annotations required: for an enum
//! the variant name is the event type and the variant's content is the
//! payload, so an operator querying the store sees `Deposited` /
//! `{"amount": 5}` rather than a wrapper object. Encoding is `serde_json`'s
//! own serializer with the enum tag stripped (fields in the order serde
//! gives them); decoding goes straight from the stored text into the enum,
//! without an intermediate `Value`.
//!
//! With the `binary-codec` feature, [`Codec::MessagePack`](crate::Codec)
//! encodes the same way into MessagePack bytes (`msgpack.rs`), chosen per
//! store: [`Event::encode_as`] writes in a given codec, and
//! [`Event::decode`] reads a payload in whichever codec it was stored.

use crate::event::PayloadRef;
use crate::{Codec, EventType, InvalidEventType, Payload, RecordedEvent};
use serde::de::DeserializeOwned;
use serde::ser::{self, Serialize};

mod evolution;
pub use evolution::Upcast;
mod stored;
mod untagged;
use stored::StoredEvent;
use untagged::Untagged;
#[cfg(feature = "binary-codec")]
pub(crate) mod msgpack;
#[cfg(feature = "binary-codec")]
pub use msgpack::{decode_msgpack, encode_msgpack};

/// An event the user's commands emit and fold.
///
/// Implement it with an empty block for any serde enum: the variant name is
/// the stored event type and every variant is at schema version 1. As the
/// enum evolves, say so with constants, never by hand-written passes:
///
/// - [`Event::NAMESPACE`] stores `order.Created` instead of `Created`, so
///   two enums with same-named variants share one store;
///   [`Event::READS_UNQUALIFIED`] keeps reading what was written before.
/// - [`Event::VERSIONS`] gives a changed variant its own version and
///   [`Event::UPCASTS`] the steps from each old version to the next; other
///   variants need nothing.
/// - [`Event::ALIASES`] maps a stored name to the variant that now reads
///   it (a rename, or a variant moved here from another enum).
///
/// See `docs/evolving-events.md` for the whole path.
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
///
/// Namespaced, with a renamed variant still read under its old name:
///
/// ```
/// use eventcore::Event;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// enum OrderEvent { Created { id: u32 }, Shipped }
/// impl Event for OrderEvent {
///     const NAMESPACE: &'static str = "order";
///     const READS_UNQUALIFIED: bool = true; // logs from before the namespace
///     const ALIASES: &'static [(&'static str, &'static str)] = &[("Dispatched", "Shipped")];
/// }
///
/// assert_eq!(OrderEvent::Shipped.encode()?.event_type.as_str(), "order.Shipped");
/// let null = eventcore::Payload::from_trusted_json("null");
/// assert_eq!(OrderEvent::decode("order.Dispatched", 1, &null)?, OrderEvent::Shipped);
/// assert_eq!(OrderEvent::decode("Dispatched", 1, &null)?, OrderEvent::Shipped);
/// assert!(OrderEvent::decode("user.Shipped", 1, &null).is_err(), "another enum's type");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Event: Serialize + DeserializeOwned + Send + 'static {
    /// The schema version of every variant [`Event::VERSIONS`] does not
    /// list.
    const SCHEMA_VERSION: u32 = 1;

    /// Prefix of the stored type names: `"order"` stores `order.Created`.
    /// Empty (the default): the bare variant name.
    const NAMESPACE: &'static str = "";

    /// With a [`Event::NAMESPACE`], also read bare variant names (events
    /// written before the namespace was set).
    const READS_UNQUALIFIED: bool = false;

    /// The current version of each variant that is not at
    /// [`Event::SCHEMA_VERSION`], by variant name.
    const VERSIONS: &'static [(&'static str, u32)] = &[];

    /// Every step of every variant's upcaster chain.
    const UPCASTS: &'static [Upcast] = &[];

    /// Stored type names read as another variant: `("Dispatched", "Shipped")`
    /// for a rename (the old name under this enum's namespace, or bare), or
    /// `("user.Created", "Created")` for a variant moved from another enum.
    /// Versions and upcasters continue from the old name's.
    const ALIASES: &'static [(&'static str, &'static str)] = &[];

    /// Turns the event into its stored form.
    fn encode(&self) -> Result<EncodedEvent, EncodeError> {
        encode_event(self)
    }

    /// Turns the event into its stored form with its payload in `codec`
    /// (what a command's append is encoded in: its store's codec).
    /// [`Codec::Json`] is [`Event::encode`]; [`Codec::MessagePack`] is the
    /// same encoding (type name, namespace, versions) with a MessagePack
    /// payload. A type that overrides [`Event::encode`] overrides this too
    /// if it is to be stored in MessagePack its own way.
    ///
    /// ```
    /// use eventcore::{Codec, Event};
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// enum E { Deposited { amount: u64 } }
    /// impl Event for E {}
    /// for codec in Codec::ALL {
    ///     let encoded = E::Deposited { amount: 5 }.encode_as(*codec)?;
    ///     assert_eq!((encoded.event_type.as_str(), encoded.payload.codec()), ("Deposited", *codec));
    ///     assert_eq!(encoded.payload.as_json(), r#"{"amount":5}"#);
    /// }
    /// # Ok::<(), eventcore::EncodeError>(())
    /// ```
    fn encode_as(&self, codec: Codec) -> Result<EncodedEvent, EncodeError> {
        match codec {
            Codec::Json => self.encode(),
            #[cfg(feature = "binary-codec")]
            Codec::MessagePack => msgpack::encode_with(self, Self::NAMESPACE, evolution::version_of::<Self>),
        }
    }

    /// Rebuilds an event from its stored form, in whichever codec its
    /// payload is: resolves namespace and aliases, then upcasts an older
    /// schema version through [`Event::upcast`] (a MessagePack payload
    /// through the same `serde_json::Value` as a JSON one).
    fn decode(event_type: &str, schema_version: u32, payload: &Payload) -> Result<Self, DecodeErrorKind> {
        let variant = evolution::resolve::<Self>(event_type).ok_or(DecodeErrorKind::UnknownEventType)?;
        let current = evolution::version_of::<Self>(variant);
        if schema_version == current {
            return match payload.stored() {
                PayloadRef::Json(text) => decode_json(variant, text),
                #[cfg(feature = "binary-codec")]
                PayloadRef::MessagePack(bytes) => decode_msgpack(variant, bytes),
            };
        }
        if schema_version > current {
            return Err(DecodeErrorKind::UnsupportedSchemaVersion {
                found: schema_version,
                supported: current,
            });
        }
        let old: serde_json::Value = match payload.stored() {
            PayloadRef::Json(text) => {
                serde_json::from_str(text).map_err(|e| DecodeErrorKind::InvalidPayload(e.to_string()))?
            }
            #[cfg(feature = "binary-codec")]
            PayloadRef::MessagePack(bytes) => msgpack::to_value(bytes).map_err(DecodeErrorKind::InvalidPayload)?,
        };
        let upcast = Self::upcast(variant, schema_version, old)?;
        let text = serde_json::to_string(&upcast).map_err(|e| DecodeErrorKind::InvalidPayload(e.to_string()))?;
        decode_json(variant, &text)
    }

    /// Rewrites a payload of `variant` stored at an older schema version
    /// into the current shape. The default walks [`Event::UPCASTS`] one
    /// version at a time; override it only for what a chain of steps cannot
    /// say.
    fn upcast(
        variant: &str,
        schema_version: u32,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, DecodeErrorKind> {
        evolution::upcast_chain::<Self>(variant, schema_version, evolution::version_of::<Self>(variant), payload)
    }

    /// Every stored type name this enum decodes (each variant under the
    /// namespace, bare ones too with [`Event::READS_UNQUALIFIED`], every
    /// alias): what a projection of these events subscribes to. `None` when
    /// no list can be given (not an enum, or a type that decodes anything).
    ///
    /// ```
    /// use eventcore::Event;
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// enum OrderEvent { Created, Shipped }
    /// impl Event for OrderEvent { const NAMESPACE: &'static str = "order"; }
    /// let types: Vec<String> = OrderEvent::event_types().unwrap_or_default().iter().map(|t| t.to_string()).collect();
    /// assert_eq!(types, ["order.Created", "order.Shipped"]);
    /// ```
    fn event_types() -> Option<Vec<EventType>> {
        evolution::decodable_types::<Self>()
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
    /// The payload (JSON from [`Event::encode`]; [`Event::encode_as`] may
    /// give another codec).
    pub payload: Payload,
}

/// Why an event could not be encoded.
///
/// The message says which step failed; the underlying error is the
/// [`source`](std::error::Error::source), so a `{:#}` chain (anyhow, eyre)
/// prints each part once.
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
    #[error("event could not be serialized")]
    Serialize(#[from] serde_json::Error),
    /// The derived type name is not a valid event type.
    #[error("event type name is invalid")]
    InvalidType(#[from] InvalidEventType),
    /// serde refused to serialize the value as MessagePack.
    #[error("event could not be serialized as MessagePack: {0}")]
    MessagePack(String),
    /// The context a driver installs around encoding refused the value,
    /// with its own typed cause as the source: for crypto-shredding,
    /// `eventcore_shred::PersonalError::SubjectForgotten` when the event
    /// holds new personal data of a forgotten subject. serde carries only
    /// text, so the driver puts the cause back here
    /// (`CodecSession::take_refusal` in `eventcore-store`).
    ///
    /// ```
    /// use eventcore::EncodeError;
    /// #[derive(Debug, thiserror::Error)]
    /// #[error("subject customer-1 is forgotten")]
    /// struct Forgotten;
    /// let error = EncodeError::Context(Box::new(Forgotten));
    /// let cause = std::error::Error::source(&error).expect("the cause");
    /// assert!(cause.downcast_ref::<Forgotten>().is_some());
    /// ```
    #[error("the encoding context refused the event")]
    Context(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
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
    /// The payload did not match the variant's shape, or is not JSON (or
    /// MessagePack).
    #[error("payload does not deserialize: {0}")]
    InvalidPayload(String),
    /// One field of the payload did not match the variant's shape.
    #[error("field `{path}` does not deserialize: {reason}")]
    InvalidField {
        /// Where in the payload, as serde names it (`customer.address.zip`,
        /// `lines[2].sku`).
        path: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A step of the variant's upcaster chain refused the old payload.
    #[error("upcasting from schema version {from} failed: {reason}")]
    UpcastFailed {
        /// The version the failing step reads.
        from: u32,
        /// What the step said.
        reason: String,
    },
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
/// assert_eq!(
///     error.to_string(),
///     "cannot decode event Opened (schema version 1) at acc-1@3 (position 9): unknown event type"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot decode event {event_type} (schema version {schema_version}) at {stream}@{version} (position {position}): {kind}"
)]
pub struct DecodeError {
    /// The stream holding the event.
    pub stream: crate::StreamId,
    /// Its version in the stream.
    pub version: crate::StreamVersion,
    /// Its global position.
    pub position: crate::GlobalPosition,
    /// Its stored type name.
    pub event_type: EventType,
    /// The schema version it was stored with.
    pub schema_version: u32,
    /// What went wrong. Its text is part of this error's message, so it is
    /// not also given as the source (a `{:#}` chain would print it twice).
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
            schema_version: event.schema_version,
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
/// The payload is what `serde_json` writes for the variant's content, in
/// the order serde gives it (struct fields in declaration order).
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
    encode_with(event, "", |_| schema_version)
}

/// What [`Event::encode`] does by default: [`encode_json`]'s encoding, with
/// the type name under the enum's [`Event::NAMESPACE`] and the variant's own
/// version ([`Event::VERSIONS`]).
///
/// ```
/// use eventcore::{encode_event, Event};
/// #[derive(serde::Serialize, serde::Deserialize)]
/// enum OrderEvent { Placed { total: u32 }, Cancelled }
/// impl Event for OrderEvent {
///     const NAMESPACE: &'static str = "order";
///     const VERSIONS: &'static [(&'static str, u32)] = &[("Placed", 3)];
/// }
/// let placed = encode_event(&OrderEvent::Placed { total: 5 })?;
/// assert_eq!((placed.event_type.as_str(), placed.schema_version), ("order.Placed", 3));
/// assert_eq!(encode_event(&OrderEvent::Cancelled)?.schema_version, 1);
/// # Ok::<(), eventcore::EncodeError>(())
/// ```
pub fn encode_event<E: Event>(event: &E) -> Result<EncodedEvent, EncodeError> {
    encode_with(event, E::NAMESPACE, evolution::version_of::<E>)
}

fn encode_with<E: Serialize + ?Sized>(
    event: &E,
    namespace: &'static str,
    version_of: impl Fn(&str) -> u32,
) -> Result<EncodedEvent, EncodeError> {
    with_payload_buffer(|buffer| {
        let variant = event.serialize(Untagged(&mut serde_json::Serializer::new(&mut *buffer)))?;
        let (event_type, schema_version) = stored_type::<E>(variant, namespace, version_of)?;
        let text = std::str::from_utf8(buffer).map_err(<serde_json::Error as ser::Error>::custom)?;
        Ok(EncodedEvent {
            event_type,
            schema_version,
            payload: Payload::from_trusted_json(text),
        })
    })
}

/// The stored type name and version of an encoded event: its variant's
/// (`variant`, as the untagging serializer answered it) under `namespace`,
/// or the type's own short name when it is not an enum.
fn stored_type<E: ?Sized>(
    variant: Option<&'static str>,
    namespace: &'static str,
    version_of: impl Fn(&str) -> u32,
) -> Result<(EventType, u32), EncodeError> {
    Ok(match variant {
        Some(name) => (variant_event_type(namespace, name)?, version_of(name)),
        None => {
            let name = short_type_name::<E>();
            let stored = if namespace.is_empty() {
                name.clone()
            } else {
                format!("{namespace}.{name}")
            };
            (EventType::new(stored)?, version_of(&name))
        }
    })
}

/// The per-thread cache of event types has `1 << TYPE_SLOT_BITS` slots,
/// direct-mapped by a hash of the name: a collision only costs a
/// validation and an allocation.
const TYPE_SLOT_BITS: u32 = 6;

/// A cached event type: (namespace, variant name, the stored type).
type CachedType = (&'static str, &'static str, EventType);

thread_local! {
    /// Event types of the enum variants encoded on this thread, by name:
    /// each is validated and allocated once, then shared (a reference
    /// count) by every event of that variant.
    static EVENT_TYPES: std::cell::RefCell<[Option<CachedType>; 1 << TYPE_SLOT_BITS]> =
        const { std::cell::RefCell::new([const { None }; 1 << TYPE_SLOT_BITS]) };

    /// A reusable buffer for payload text, so that an encode allocates only
    /// the payload's own `Arc<str>`.
    static PAYLOAD_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Payload buffers that grew past this are not kept for the next encode.
const MAX_KEPT_BUFFER: usize = 64 * 1024;

/// The event type of a variant name under a namespace, from the
/// per-thread cache. Only valid names are cached, so an invalid one is
/// refused every time.
fn variant_event_type(namespace: &'static str, name: &'static str) -> Result<EventType, InvalidEventType> {
    let slot = type_slot(namespace, name);
    let cached = EVENT_TYPES.with(|types| match types.try_borrow() {
        Ok(types) => match &types[slot] {
            Some((cached_namespace, cached, event_type))
                if (std::ptr::eq(*cached, name) || *cached == name) && *cached_namespace == namespace =>
            {
                Some(event_type.clone())
            }
            _ => None,
        },
        Err(_) => None,
    });
    if let Some(event_type) = cached {
        return Ok(event_type);
    }
    let event_type = if namespace.is_empty() {
        EventType::new(name)?
    } else {
        EventType::new(format!("{namespace}.{name}"))?
    };
    EVENT_TYPES.with(|types| {
        if let Ok(mut types) = types.try_borrow_mut() {
            types[slot] = Some((namespace, name, event_type.clone()));
        }
    });
    Ok(event_type)
}

/// The cache slot of a variant name: a multiplicative hash of its bytes,
/// eight at a time (a variant name is short), top bits kept.
fn type_slot(namespace: &str, name: &str) -> usize {
    let mut hash = (name.len() as u64) ^ ((namespace.len() as u64) << 32);
    for chunk in name.as_bytes().chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        hash = (hash.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    (hash >> (u64::BITS - TYPE_SLOT_BITS)) as usize
}

/// Runs `f` with the per-thread payload buffer, emptied (or with a fresh one
/// if an encode on this thread is already using it, say from inside a
/// `Serialize` impl).
fn with_payload_buffer<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    PAYLOAD_BUFFER.with(|buffer| match buffer.try_borrow_mut() {
        Ok(mut buffer) => {
            buffer.clear();
            let result = f(&mut buffer);
            if buffer.capacity() > MAX_KEPT_BUFFER {
                *buffer = Vec::new();
            }
            result
        }
        Err(_) => f(&mut Vec::new()),
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
        Err(e) => Err(field_error::<E>(event_type, payload).unwrap_or(DecodeErrorKind::InvalidPayload(e.to_string()))),
    }
}

/// Decodes again, tracking the path, to name the field that failed: the
/// fast path above keeps no path, and failures are rare.
fn field_error<E: DeserializeOwned>(event_type: &str, payload: &str) -> Option<DecodeErrorKind> {
    let mut unknown_variant = false;
    let stored = StoredEvent {
        event_type,
        payload,
        unknown_variant: &mut unknown_variant,
    };
    let error = serde_path_to_error::deserialize::<_, E>(stored).err()?;
    invalid_field(event_type, error.path(), error.inner().to_string())
}

/// The error naming the field at `path` (as serde_path_to_error found it,
/// starting with the variant), if it names one.
fn invalid_field(event_type: &str, path: &serde_path_to_error::Path, reason: String) -> Option<DecodeErrorKind> {
    let path = path.to_string();
    // The first segment is the variant itself (the enum's tag).
    let path = path
        .strip_prefix(event_type)
        .map(|rest| rest.trim_start_matches('.'))
        .unwrap_or(&path)
        .to_owned();
    if path.is_empty() || path == "?" {
        return None;
    }
    Some(DecodeErrorKind::InvalidField { path, reason })
}

fn short_type_name<E: ?Sized>() -> String {
    let full = std::any::type_name::<E>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base).to_owned()
}

#[cfg(test)]
mod tests;
