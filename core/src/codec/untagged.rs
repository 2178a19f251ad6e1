//! Encoding: `serde_json`'s own serializer with the enum tag stripped, so
//! a variant's content is the stored payload and its name the stored type,
//! written in one pass with no intermediate `Value`.

use serde::ser::{self, Serialize};
use std::fmt;

type Json<'b> = serde_json::Serializer<&'b mut Vec<u8>>;
type Compound<'a, 'b> = serde_json::ser::Compound<'a, &'b mut Vec<u8>, serde_json::ser::CompactFormatter>;

/// `serde_json`'s serializer without the enum tag: an externally tagged
/// enum variant writes only its content and answers its name; any other
/// value is written whole and answers `None`.
pub(super) struct Untagged<'a, 'b>(pub(super) &'a mut Json<'b>);

/// A compound value being written by `serde_json`, and the variant name to
/// answer when it ends.
pub(super) struct Named<S> {
    json: S,
    variant: Option<&'static str>,
}

macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(fn $method(self, $($arg: $ty),*) -> Result<Self::Ok, Self::Error> {
            ser::Serializer::$method(self.0, $($arg),*).map(|()| None)
        })*
    };
}

impl<'a, 'b> ser::Serializer for Untagged<'a, 'b> {
    type Ok = Option<&'static str>;
    type Error = serde_json::Error;
    type SerializeSeq = Named<Compound<'a, 'b>>;
    type SerializeTuple = Named<Compound<'a, 'b>>;
    type SerializeTupleStruct = Named<Compound<'a, 'b>>;
    type SerializeTupleVariant = Named<Compound<'a, 'b>>;
    type SerializeMap = Named<Compound<'a, 'b>>;
    type SerializeStruct = Named<Compound<'a, 'b>>;
    type SerializeStructVariant = Named<Compound<'a, 'b>>;

    forward! {
        serialize_bool(v: bool); serialize_i8(v: i8); serialize_i16(v: i16); serialize_i32(v: i32);
        serialize_i64(v: i64); serialize_i128(v: i128); serialize_u8(v: u8); serialize_u16(v: u16);
        serialize_u32(v: u32); serialize_u64(v: u64); serialize_u128(v: u128); serialize_f32(v: f32);
        serialize_f64(v: f64); serialize_char(v: char); serialize_str(v: &str); serialize_bytes(v: &[u8]);
        serialize_none(); serialize_unit(); serialize_unit_struct(name: &'static str);
    }

    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<Self::Ok, Self::Error> {
        ser::Serializer::serialize_some(self.0, value).map(|()| None)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<Self::Ok, Self::Error> {
        ser::Serializer::serialize_newtype_struct(self.0, name, value).map(|()| None)
    }
    fn collect_str<T: ?Sized + fmt::Display>(self, value: &T) -> Result<Self::Ok, Self::Error> {
        ser::Serializer::collect_str(self.0, value).map(|()| None)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, Self::Error> {
        Ok(Named::whole(ser::Serializer::serialize_seq(self.0, len)?))
    }
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, Self::Error> {
        Ok(Named::whole(ser::Serializer::serialize_tuple(self.0, len)?))
    }
    fn serialize_tuple_struct(self, name: &'static str, len: usize) -> Result<Self::SerializeTupleStruct, Self::Error> {
        Ok(Named::whole(ser::Serializer::serialize_tuple_struct(
            self.0, name, len,
        )?))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, Self::Error> {
        Ok(Named::whole(ser::Serializer::serialize_map(self.0, len)?))
    }
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Self::SerializeStruct, Self::Error> {
        Ok(Named::whole(ser::Serializer::serialize_struct(self.0, name, len)?))
    }

    // The variants: the content as serde_json writes it, without the
    // `{"Variant": …}` wrapper (a unit variant has no content: `null`).
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<Self::Ok, Self::Error> {
        ser::Serializer::serialize_unit(self.0)?;
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
        let json = ser::Serializer::serialize_tuple(self.0, len)?;
        Ok(Named {
            json,
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
        let json = ser::Serializer::serialize_struct(self.0, name, len)?;
        Ok(Named {
            json,
            variant: Some(variant),
        })
    }
}

impl<S> Named<S> {
    fn whole(json: S) -> Self {
        Named { json, variant: None }
    }
}

impl<S: ser::SerializeSeq<Ok = (), Error = serde_json::Error>> ser::SerializeSeq for Named<S> {
    type Ok = Option<&'static str>;
    type Error = serde_json::Error;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.json.serialize_element(value)
    }
    fn end(self) -> Result<Self::Ok, Self::Error> {
        self.json.end().map(|()| self.variant)
    }
}

/// A tuple, or a tuple variant's content written as one.
impl<S: ser::SerializeTuple<Ok = (), Error = serde_json::Error>> ser::SerializeTuple for Named<S> {
    type Ok = Option<&'static str>;
    type Error = serde_json::Error;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.json.serialize_element(value)
    }
    fn end(self) -> Result<Self::Ok, Self::Error> {
        self.json.end().map(|()| self.variant)
    }
}

impl<S: ser::SerializeTuple<Ok = (), Error = serde_json::Error>> ser::SerializeTupleVariant for Named<S> {
    type Ok = Option<&'static str>;
    type Error = serde_json::Error;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.json.serialize_element(value)
    }
    fn end(self) -> Result<Self::Ok, Self::Error> {
        self.json.end().map(|()| self.variant)
    }
}

impl<S: ser::SerializeTupleStruct<Ok = (), Error = serde_json::Error>> ser::SerializeTupleStruct for Named<S> {
    type Ok = Option<&'static str>;
    type Error = serde_json::Error;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.json.serialize_field(value)
    }
    fn end(self) -> Result<Self::Ok, Self::Error> {
        self.json.end().map(|()| self.variant)
    }
}

impl<S: ser::SerializeMap<Ok = (), Error = serde_json::Error>> ser::SerializeMap for Named<S> {
    type Ok = Option<&'static str>;
    type Error = serde_json::Error;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), Self::Error> {
        self.json.serialize_key(key)
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.json.serialize_value(value)
    }
    fn serialize_entry<K: ?Sized + Serialize, V: ?Sized + Serialize>(
        &mut self,
        key: &K,
        value: &V,
    ) -> Result<(), Self::Error> {
        self.json.serialize_entry(key, value)
    }
    fn end(self) -> Result<Self::Ok, Self::Error> {
        self.json.end().map(|()| self.variant)
    }
}

impl<S: ser::SerializeStruct<Ok = (), Error = serde_json::Error>> ser::SerializeStruct for Named<S> {
    type Ok = Option<&'static str>;
    type Error = serde_json::Error;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> Result<(), Self::Error> {
        self.json.serialize_field(key, value)
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), Self::Error> {
        self.json.skip_field(key)
    }
    fn end(self) -> Result<Self::Ok, Self::Error> {
        self.json.end().map(|()| self.variant)
    }
}

/// A struct variant's content, written as a struct.
impl<S: ser::SerializeStruct<Ok = (), Error = serde_json::Error>> ser::SerializeStructVariant for Named<S> {
    type Ok = Option<&'static str>;
    type Error = serde_json::Error;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> Result<(), Self::Error> {
        self.json.serialize_field(key, value)
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), Self::Error> {
        self.json.skip_field(key)
    }
    fn end(self) -> Result<Self::Ok, Self::Error> {
        self.json.end().map(|()| self.variant)
    }
}
