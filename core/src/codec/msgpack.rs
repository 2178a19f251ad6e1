//! The MessagePack codec (the `binary-codec` feature): the JSON codec's
//! encoding and decoding with MessagePack bytes instead of JSON text, and
//! the conversions between the two.
//!
//! The payload is what `rmp-serde` writes for the variant's content with
//! structs as maps of their field names (not positional arrays) and
//! human-readable forms (a UUID as its text, as in JSON): the payload keeps
//! the JSON codec's data model, so it still says what it holds without its
//! Rust type. That is what makes upcasting (MessagePack → `serde_json::Value`
//! → upcaster chain → decode), rendering as JSON (`Payload::as_json`, dead
//! letters, operators) and switching a store between codecs work exactly as
//! with JSON. Measured against postcard and positional MessagePack in
//! `docs/benchmarks.md` ("A second codec").

use super::{DecodeErrorKind, EncodeError, EncodedEvent};
use crate::Payload;
use rmp_serde::config::{DefaultConfig, HumanReadableConfig, StructMapConfig};
use rmp_serde::decode::{Error as ReadError, ReadRefReader};
use serde::de::{self, DeserializeOwned, DeserializeSeed, Visitor};
use serde::ser::{self, Serialize};
use std::fmt;

/// The writer's configuration: structs as maps with their field names,
/// human-readable forms.
type Config = HumanReadableConfig<StructMapConfig<DefaultConfig>>;
type Writer<'b> = rmp_serde::Serializer<&'b mut Vec<u8>, Config>;
type Reader<'de> = rmp_serde::Deserializer<ReadRefReader<'de, [u8]>, HumanReadableConfig<DefaultConfig>>;

/// Nesting deeper than this is refused by [`check_storable`]: `serde_json`
/// parses no deeper, so such a payload could not move to a JSON store.
const MAX_DEPTH: u32 = 128;

fn writer(buffer: &mut Vec<u8>) -> Writer<'_> {
    rmp_serde::Serializer::new(buffer)
        .with_struct_map()
        .with_human_readable()
}

fn reader(bytes: &[u8]) -> Reader<'_> {
    rmp_serde::Deserializer::from_read_ref(bytes).with_human_readable()
}

/// [`encode_json`](super::encode_json) with a MessagePack payload: the enum
/// variant name as type, the variant's content as payload.
///
/// ```
/// use eventcore::{decode_msgpack, encode_msgpack, Codec};
/// #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
/// enum E { Deposited { amount: u64 } }
/// let encoded = encode_msgpack(&E::Deposited { amount: 5 }, 1)?;
/// assert_eq!((encoded.event_type.as_str(), encoded.payload.codec()), ("Deposited", Codec::MessagePack));
/// assert_eq!(encoded.payload.as_json(), r#"{"amount":5}"#);
/// let bytes = encoded.payload.as_msgpack().unwrap_or_default();
/// assert_eq!(decode_msgpack::<E>("Deposited", bytes), Ok(E::Deposited { amount: 5 }));
/// # Ok::<(), eventcore::EncodeError>(())
/// ```
pub fn encode_msgpack<E: Serialize + ?Sized>(event: &E, schema_version: u32) -> Result<EncodedEvent, EncodeError> {
    encode_with(event, "", |_| schema_version)
}

/// The MessagePack twin of the JSON codec's `encode_with`.
pub(super) fn encode_with<E: Serialize + ?Sized>(
    event: &E,
    namespace: &'static str,
    version_of: impl Fn(&str) -> u32,
) -> Result<EncodedEvent, EncodeError> {
    super::with_payload_buffer(|buffer| {
        let variant = event
            .serialize(Untagged(&mut writer(&mut *buffer)))
            .map_err(|e| EncodeError::MessagePack(e.to_string()))?;
        let (event_type, schema_version) = super::stored_type::<E>(variant, namespace, version_of)?;
        Ok(EncodedEvent {
            event_type,
            schema_version,
            payload: Payload::from_trusted_msgpack(buffer.as_slice()),
        })
    })
}

/// [`decode_json`](super::decode_json) from a MessagePack payload.
///
/// ```
/// use eventcore::decode_msgpack;
/// #[derive(Debug, PartialEq, serde::Deserialize)]
/// enum E { Deposited { amount: u64 } }
/// let payload = [0x81, 0xa6, b'a', b'm', b'o', b'u', b'n', b't', 0x05]; // {"amount": 5}
/// assert_eq!(decode_msgpack::<E>("Deposited", &payload), Ok(E::Deposited { amount: 5 }));
/// ```
pub fn decode_msgpack<E: DeserializeOwned>(event_type: &str, payload: &[u8]) -> Result<E, DecodeErrorKind> {
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

/// Decodes again, tracking the path, to name the field that failed.
fn field_error<E: DeserializeOwned>(event_type: &str, payload: &[u8]) -> Option<DecodeErrorKind> {
    let mut unknown_variant = false;
    let stored = StoredEvent {
        event_type,
        payload,
        unknown_variant: &mut unknown_variant,
    };
    let error = serde_path_to_error::deserialize::<_, E>(stored).err()?;
    super::invalid_field(event_type, error.path(), error.inner().to_string())
}

/// The payload as a `serde_json::Value` (what upcasters are given): maps
/// with keys that are not strings get their keys' JSON text, byte strings
/// become arrays of numbers, non-finite floats `null` (what `serde_json`
/// writes for each).
pub(crate) fn to_value(bytes: &[u8]) -> Result<serde_json::Value, String> {
    ToValue.deserialize(&mut reader(bytes)).map_err(|e| e.to_string())
}

/// The JSON rendering of a MessagePack payload (`Payload::as_json`);
/// `None` when the bytes are not MessagePack.
pub(crate) fn render_json(bytes: &[u8]) -> Option<Box<str>> {
    let value = to_value(bytes).ok()?;
    serde_json::to_string(&value).ok().map(String::into_boxed_str)
}

/// A value as MessagePack, as the codec writes it (a JSON payload moving to
/// a MessagePack store).
pub(crate) fn from_value(value: &serde_json::Value) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    value.serialize(&mut writer(&mut bytes)).map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// `Payload::check_storable` for MessagePack: one well-formed value and
/// nothing after it, no NUL in a string (a JSON store could not take it),
/// nested at most [`MAX_DEPTH`] deep.
pub(crate) fn check_storable(bytes: &[u8]) -> Result<(), String> {
    let invalid = |e: &dyn fmt::Display| format!("payload is not valid MessagePack: {e}");
    let mut rest = bytes;
    {
        let mut de = rmp_serde::Deserializer::new(&mut rest).with_human_readable();
        Storable { depth: 0 }.deserialize(&mut de).map_err(|e| invalid(&e))?;
    }
    if !rest.is_empty() {
        return Err(invalid(&format_args!("{} bytes follow the value", rest.len())));
    }
    Ok(())
}

/// Walks a value, checking what [`check_storable`] promises.
struct Storable {
    depth: u32,
}

impl Storable {
    fn deeper<E: de::Error>(&self) -> Result<Storable, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format_args!("nested more than {MAX_DEPTH} deep")));
        }
        Ok(Storable { depth: self.depth + 1 })
    }
}

impl<'de> DeserializeSeed<'de> for Storable {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Storable {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a MessagePack value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if v.contains('\0') {
            return Err(E::custom(
                "a string holds a NUL character, which JSON stores cannot hold",
            ));
        }
        Ok(())
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }
    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        while seq.next_element_seed(Storable { depth: inner.depth })?.is_some() {}
        Ok(())
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        while map.next_key_seed(Storable { depth: inner.depth })?.is_some() {
            map.next_value_seed(Storable { depth: inner.depth })?;
        }
        Ok(())
    }
}

/// Builds a `serde_json::Value` from any self-describing input, taking
/// whatever JSON has no place for as `serde_json` would write it.
struct ToValue;

impl<'de> DeserializeSeed<'de> for ToValue {
    type Value = serde_json::Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ToValue {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a MessagePack value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        Ok(v.iter().map(|&b| serde_json::Value::from(b)).collect())
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.deserialize(d)
    }
    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(ToValue)? {
            items.push(item);
        }
        Ok(serde_json::Value::Array(items))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key_seed(ToValue)? {
            let key = match key {
                serde_json::Value::String(key) => key,
                other => other.to_string(),
            };
            object.insert(key, map.next_value_seed(ToValue)?);
        }
        Ok(serde_json::Value::Object(object))
    }
}

/// A serializer without the enum tag, over any serializer: an externally
/// tagged enum variant writes only its content (a unit variant `nil`) and
/// answers its name; any other value is written whole and answers `None`.
/// The MessagePack twin of the JSON codec's own.
struct Untagged<S>(S);

/// A compound value being written, and the variant name to answer when it
/// ends.
struct Named<S> {
    inner: S,
    variant: Option<&'static str>,
}

impl<S> Named<S> {
    fn whole(inner: S) -> Self {
        Named { inner, variant: None }
    }
}

macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(fn $method(self, $($arg: $ty),*) -> Result<Self::Ok, Self::Error> {
            ser::Serializer::$method(self.0, $($arg),*).map(|()| None)
        })*
    };
}

impl<S: ser::Serializer<Ok = ()>> ser::Serializer for Untagged<S> {
    type Ok = Option<&'static str>;
    type Error = S::Error;
    type SerializeSeq = Named<S::SerializeSeq>;
    type SerializeTuple = Named<S::SerializeTuple>;
    type SerializeTupleStruct = Named<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Named<S::SerializeTuple>;
    type SerializeMap = Named<S::SerializeMap>;
    type SerializeStruct = Named<S::SerializeStruct>;
    type SerializeStructVariant = Named<S::SerializeStruct>;

    forward! {
        serialize_bool(v: bool); serialize_i8(v: i8); serialize_i16(v: i16); serialize_i32(v: i32);
        serialize_i64(v: i64); serialize_i128(v: i128); serialize_u8(v: u8); serialize_u16(v: u16);
        serialize_u32(v: u32); serialize_u64(v: u64); serialize_u128(v: u128); serialize_f32(v: f32);
        serialize_f64(v: f64); serialize_char(v: char); serialize_str(v: &str); serialize_bytes(v: &[u8]);
        serialize_none(); serialize_unit(); serialize_unit_struct(name: &'static str);
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<Self::Ok, Self::Error> {
        self.0.serialize_some(value).map(|()| None)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<Self::Ok, Self::Error> {
        self.0.serialize_newtype_struct(name, value).map(|()| None)
    }
    fn collect_str<T: ?Sized + fmt::Display>(self, value: &T) -> Result<Self::Ok, Self::Error> {
        self.0.collect_str(value).map(|()| None)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, Self::Error> {
        Ok(Named::whole(self.0.serialize_seq(len)?))
    }
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, Self::Error> {
        Ok(Named::whole(self.0.serialize_tuple(len)?))
    }
    fn serialize_tuple_struct(self, name: &'static str, len: usize) -> Result<Self::SerializeTupleStruct, Self::Error> {
        Ok(Named::whole(self.0.serialize_tuple_struct(name, len)?))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, Self::Error> {
        Ok(Named::whole(self.0.serialize_map(len)?))
    }
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Self::SerializeStruct, Self::Error> {
        Ok(Named::whole(self.0.serialize_struct(name, len)?))
    }

    // The variants: the content alone, without the `{"Variant": …}`
    // wrapper (a unit variant has no content: `nil`, JSON's `null`).
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<Self::Ok, Self::Error> {
        self.0.serialize_unit()?;
        Ok(Some(variant))
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Self::Ok, Self::Error> {
        value.serialize(self.0)?;
        Ok(Some(variant))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, Self::Error> {
        Ok(Named {
            inner: self.0.serialize_tuple(len)?,
            variant: Some(variant),
        })
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, Self::Error> {
        Ok(Named {
            inner: self.0.serialize_struct(name, len)?,
            variant: Some(variant),
        })
    }
}

impl<S: ser::SerializeSeq<Ok = ()>> ser::SerializeSeq for Named<S> {
    type Ok = Option<&'static str>;
    type Error = S::Error;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.inner.serialize_element(value)
    }
    fn end(self) -> Result<Self::Ok, Self::Error> {
        self.inner.end().map(|()| self.variant)
    }
}

impl<S: ser::SerializeTuple<Ok = ()>> ser::SerializeTuple for Named<S> {
    type Ok = Option<&'static str>;
    type Error = S::Error;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.inner.serialize_element(value)
    }
    fn end(self) -> Result<Self::Ok, Self::Error> {
        self.inner.end().map(|()| self.variant)
    }
}

/// A tuple variant's content, written as a tuple.
impl<S: ser::SerializeTuple<Ok = ()>> ser::SerializeTupleVariant for Named<S> {
    type Ok = Option<&'static str>;
    type Error = S::Error;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.inner.serialize_element(value)
    }
    fn end(self) -> Result<Self::Ok, Self::Error> {
        self.inner.end().map(|()| self.variant)
    }
}

impl<S: ser::SerializeTupleStruct<Ok = ()>> ser::SerializeTupleStruct for Named<S> {
    type Ok = Option<&'static str>;
    type Error = S::Error;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.inner.serialize_field(value)
    }
    fn end(self) -> Result<Self::Ok, Self::Error> {
        self.inner.end().map(|()| self.variant)
    }
}

impl<S: ser::SerializeMap<Ok = ()>> ser::SerializeMap for Named<S> {
    type Ok = Option<&'static str>;
    type Error = S::Error;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), Self::Error> {
        self.inner.serialize_key(key)
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.inner.serialize_value(value)
    }
    fn serialize_entry<K: ?Sized + Serialize, V: ?Sized + Serialize>(
        &mut self,
        key: &K,
        value: &V,
    ) -> Result<(), Self::Error> {
        self.inner.serialize_entry(key, value)
    }
    fn end(self) -> Result<Self::Ok, Self::Error> {
        self.inner.end().map(|()| self.variant)
    }
}

impl<S: ser::SerializeStruct<Ok = ()>> ser::SerializeStruct for Named<S> {
    type Ok = Option<&'static str>;
    type Error = S::Error;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> Result<(), Self::Error> {
        self.inner.serialize_field(key, value)
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), Self::Error> {
        self.inner.skip_field(key)
    }
    fn end(self) -> Result<Self::Ok, Self::Error> {
        self.inner.end().map(|()| self.variant)
    }
}

/// A struct variant's content, written as a struct.
impl<S: ser::SerializeStruct<Ok = ()>> ser::SerializeStructVariant for Named<S> {
    type Ok = Option<&'static str>;
    type Error = S::Error;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> Result<(), Self::Error> {
        self.inner.serialize_field(key, value)
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), Self::Error> {
        self.inner.skip_field(key)
    }
    fn end(self) -> Result<Self::Ok, Self::Error> {
        self.inner.end().map(|()| self.variant)
    }
}

/// A deserializer over a stored `(event_type, payload)` pair that presents
/// it to an enum as the externally tagged `{event_type: payload}`, as the
/// JSON codec's own does.
struct StoredEvent<'a> {
    event_type: &'a str,
    payload: &'a [u8],
    unknown_variant: &'a mut bool,
}

impl<'de> de::Deserializer<'de> for StoredEvent<'de> {
    type Error = ReadError;

    fn is_human_readable(&self) -> bool {
        true
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        de::Deserializer::deserialize_any(&mut reader(self.payload), visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        de::Deserializer::deserialize_struct(&mut reader(self.payload), name, fields, visitor)
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
    type Error = ReadError;
    type Variant = StoredPayload<'de>;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self::Variant), Self::Error> {
        let name = de::value::BorrowedStrDeserializer::<ReadError>::new(self.event_type);
        match seed.deserialize(name) {
            Ok(variant) => Ok((variant, StoredPayload(self.payload))),
            Err(e) => {
                *self.unknown_variant = true;
                Err(e)
            }
        }
    }
}

struct StoredPayload<'a>(&'a [u8]);

impl<'de> de::VariantAccess<'de> for StoredPayload<'de> {
    type Error = ReadError;

    fn unit_variant(self) -> Result<(), Self::Error> {
        <() as de::Deserialize>::deserialize(&mut reader(self.0))
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Self::Error> {
        seed.deserialize(&mut reader(self.0))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Self::Error> {
        de::Deserializer::deserialize_tuple(&mut reader(self.0), len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        de::Deserializer::deserialize_struct(&mut reader(self.0), "", fields, visitor)
    }
}

#[cfg(test)]
mod tests;
