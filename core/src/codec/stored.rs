//! Decoding: a stored `(event_type, payload)` pair presented to the
//! user's enum as the externally tagged `{event_type: payload}`, straight
//! from the stored text, without building that document.

use serde::de::{self, DeserializeSeed, Visitor};
use serde::Deserialize as _;

/// A deserializer over a stored `(event_type, payload)` pair that presents
/// it to an enum as the externally tagged `{event_type: payload}` without
/// building that document.
pub(super) struct StoredEvent<'a> {
    pub(super) event_type: &'a str,
    pub(super) payload: &'a str,
    pub(super) unknown_variant: &'a mut bool,
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

pub(super) struct StoredPayload<'a>(&'a str);

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
