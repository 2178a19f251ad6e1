//! The fast path of [`crate::encode_json`]: an enum variant's content written
//! straight to JSON text, for the shapes where that text is exactly what the
//! reference path (the content as a `serde_json::Value`, then printed) gives.
//!
//! The two differ only where a `Value` changes what it holds: object keys
//! come out sorted (the `Value` map is ordered by key), `f32` is widened to
//! `f64`, 128-bit integers and serde_json's private newtype tokens are
//! handled specially. So this path writes arrays, scalars, nested variants
//! and structs whose fields arrive in strictly increasing order, and gives
//! up (the caller takes the reference path) on anything else: maps, `f32`,
//! 128-bit integers, bytes, out-of-order or repeated struct fields, and any
//! error at all (the reference path then reports it exactly as before).

use serde::ser::{self, Serialize};
use std::fmt;

/// Writes the content of the enum variant `event` serializes as into `out`
/// and returns the variant's name, or `None` (with `out` in any state) when
/// the reference path must be taken.
pub(crate) fn variant_content<E: Serialize + ?Sized>(event: &E, out: &mut Vec<u8>) -> Option<&'static str> {
    let mut name = None;
    event.serialize(TopLevel { out, name: &mut name }).ok()?;
    name
}

/// Not an error as such: "take the reference path".
#[derive(Debug)]
pub(crate) struct GiveUp;

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not written directly")
    }
}

impl std::error::Error for GiveUp {}

impl ser::Error for GiveUp {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        GiveUp
    }
}

/// Writes a string as a JSON string literal, escaped exactly as serde_json
/// escapes every string (keys included). serde_json escapes only `"`, `\`
/// and control characters below U+0020; a string without them (every field
/// name in practice) is copied between quotes as it is.
fn write_str(out: &mut Vec<u8>, value: &str) -> Result<(), GiveUp> {
    if value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(value.len() + 2);
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
        return Ok(());
    }
    ser::Serializer::serialize_str(&mut serde_json::Serializer::new(out), value).map_err(|_| GiveUp)
}

/// Writes a scalar through serde_json's own serializer (same formatting).
macro_rules! scalar {
    ($($method:ident($ty:ty);)*) => {
        $(fn $method(self, value: $ty) -> Result<(), GiveUp> {
            ser::Serializer::$method(&mut serde_json::Serializer::new(self.out), value).map_err(|_| GiveUp)
        })*
    };
}

macro_rules! give_up {
    ($($method:ident($($arg:ty),*);)*) => {
        $(fn $method(self, $(_: $arg),*) -> Result<(), GiveUp> { Err(GiveUp) })*
    };
}

/// The event itself: only an enum variant is written, as its content alone.
struct TopLevel<'a> {
    out: &'a mut Vec<u8>,
    name: &'a mut Option<&'static str>,
}

impl<'a> ser::Serializer for TopLevel<'a> {
    type Ok = ();
    type Error = GiveUp;
    type SerializeSeq = ser::Impossible<(), GiveUp>;
    type SerializeTuple = ser::Impossible<(), GiveUp>;
    type SerializeTupleStruct = ser::Impossible<(), GiveUp>;
    type SerializeTupleVariant = Array<'a>;
    type SerializeMap = ser::Impossible<(), GiveUp>;
    type SerializeStruct = ser::Impossible<(), GiveUp>;
    type SerializeStructVariant = Object<'a>;

    give_up! {
        serialize_bool(bool); serialize_i8(i8); serialize_i16(i16); serialize_i32(i32); serialize_i64(i64);
        serialize_u8(u8); serialize_u16(u16); serialize_u32(u32); serialize_u64(u64);
        serialize_f32(f32); serialize_f64(f64); serialize_char(char); serialize_str(&str);
        serialize_bytes(&[u8]); serialize_none(); serialize_unit(); serialize_unit_struct(&'static str);
    }

    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), GiveUp> {
        // No content: the payload is `null`.
        *self.name = Some(variant);
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, _: &T) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), GiveUp> {
        *self.name = Some(variant);
        value.serialize(Json { out: self.out })
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, GiveUp> {
        *self.name = Some(variant);
        Ok(Array::open(self.out, b"]"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, GiveUp> {
        *self.name = Some(variant);
        Ok(Object::open(self.out, b"}"))
    }
}

/// Any value inside the content, written as the reference path prints it.
struct Json<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Json<'a> {
    /// `{"variant":` before a variant's content (a one-key object, which no
    /// ordering can change).
    fn open_variant(self, variant: &'static str) -> Result<&'a mut Vec<u8>, GiveUp> {
        self.out.push(b'{');
        write_str(self.out, variant)?;
        self.out.push(b':');
        Ok(self.out)
    }
}

impl<'a> ser::Serializer for Json<'a> {
    type Ok = ();
    type Error = GiveUp;
    type SerializeSeq = Array<'a>;
    type SerializeTuple = Array<'a>;
    type SerializeTupleStruct = Array<'a>;
    type SerializeTupleVariant = Array<'a>;
    type SerializeMap = ser::Impossible<(), GiveUp>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Object<'a>;

    scalar! {
        serialize_bool(bool); serialize_i8(i8); serialize_i16(i16); serialize_i32(i32); serialize_i64(i64);
        serialize_u8(u8); serialize_u16(u16); serialize_u32(u32); serialize_u64(u64);
        serialize_f64(f64);
    }

    fn serialize_char(self, value: char) -> Result<(), GiveUp> {
        write_str(self.out, value.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, value: &str) -> Result<(), GiveUp> {
        write_str(self.out, value)
    }

    // A `Value` widens f32 to f64 (different digits), turns bytes into an
    // array and 128-bit integers into errors or numbers by feature: leave
    // them to the reference path.
    give_up! {
        serialize_f32(f32); serialize_i128(i128); serialize_u128(u128); serialize_bytes(&[u8]);
    }

    fn serialize_none(self) -> Result<(), GiveUp> {
        self.serialize_unit()
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), GiveUp> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), GiveUp> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), GiveUp> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), GiveUp> {
        write_str(self.out, variant)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, name: &'static str, value: &T) -> Result<(), GiveUp> {
        if name.starts_with("$serde_json") {
            // serde_json's private tokens (raw values, arbitrary-precision
            // numbers) mean something else to a `Value`.
            return Err(GiveUp);
        }
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), GiveUp> {
        let out = self.open_variant(variant)?;
        value.serialize(Json { out: &mut *out })?;
        out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, GiveUp> {
        Ok(Array::open(self.out, b"]"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, GiveUp> {
        Ok(Array::open(self.out, b"]"))
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, GiveUp> {
        Ok(Array::open(self.out, b"]"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, GiveUp> {
        let out = self.open_variant(variant)?;
        Ok(Array::open(out, b"]}"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, GiveUp> {
        // Map keys go through their own conversion in a `Value`, and come
        // out sorted: not worth reproducing here.
        Err(GiveUp)
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Self::SerializeStruct, GiveUp> {
        if name.starts_with("$serde_json") {
            return Err(GiveUp);
        }
        Ok(Object::open(self.out, b"}"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, GiveUp> {
        let out = self.open_variant(variant)?;
        Ok(Object::open(out, b"}}"))
    }
}

/// A JSON array being written; `close` ends it (and any variant wrapper).
struct Array<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    close: &'static [u8],
}

impl<'a> Array<'a> {
    fn open(out: &'a mut Vec<u8>, close: &'static [u8]) -> Self {
        out.push(b'[');
        Array {
            out,
            first: true,
            close,
        }
    }

    fn element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), GiveUp> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        value.serialize(Json { out: &mut *self.out })
    }

    fn close(self) -> Result<(), GiveUp> {
        self.out.extend_from_slice(self.close);
        Ok(())
    }
}

impl ser::SerializeSeq for Array<'_> {
    type Ok = ();
    type Error = GiveUp;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), GiveUp> {
        self.element(value)
    }
    fn end(self) -> Result<(), GiveUp> {
        self.close()
    }
}

impl ser::SerializeTuple for Array<'_> {
    type Ok = ();
    type Error = GiveUp;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), GiveUp> {
        self.element(value)
    }
    fn end(self) -> Result<(), GiveUp> {
        self.close()
    }
}

impl ser::SerializeTupleStruct for Array<'_> {
    type Ok = ();
    type Error = GiveUp;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), GiveUp> {
        self.element(value)
    }
    fn end(self) -> Result<(), GiveUp> {
        self.close()
    }
}

impl ser::SerializeTupleVariant for Array<'_> {
    type Ok = ();
    type Error = GiveUp;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), GiveUp> {
        self.element(value)
    }
    fn end(self) -> Result<(), GiveUp> {
        self.close()
    }
}

/// A JSON object being written from struct fields, which must arrive in
/// strictly increasing key order (the order a `Value` would print them in).
struct Object<'a> {
    out: &'a mut Vec<u8>,
    last_key: Option<&'static str>,
    close: &'static [u8],
}

impl<'a> Object<'a> {
    fn open(out: &'a mut Vec<u8>, close: &'static [u8]) -> Self {
        out.push(b'{');
        Object {
            out,
            last_key: None,
            close,
        }
    }

    fn field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> Result<(), GiveUp> {
        match self.last_key {
            Some(last) if last >= key => return Err(GiveUp),
            Some(_) => self.out.push(b','),
            None => {}
        }
        self.last_key = Some(key);
        write_str(self.out, key)?;
        self.out.push(b':');
        value.serialize(Json { out: &mut *self.out })
    }

    fn close(self) -> Result<(), GiveUp> {
        self.out.extend_from_slice(self.close);
        Ok(())
    }
}

impl ser::SerializeStruct for Object<'_> {
    type Ok = ();
    type Error = GiveUp;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> Result<(), GiveUp> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), GiveUp> {
        self.close()
    }
}

impl ser::SerializeStructVariant for Object<'_> {
    type Ok = ();
    type Error = GiveUp;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> Result<(), GiveUp> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), GiveUp> {
        self.close()
    }
}
