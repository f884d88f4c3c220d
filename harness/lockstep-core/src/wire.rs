//! A compact binary serde format for the protocol's `Run` and `Result` ([`crate::proto`]): every value is a
//! tag byte and its payload, structs are their fields in order (no field names), integers are
//! varints, strings and bytes are length-prefixed.
//!
//! Under TCG the guest agent's JSON decode of a `Run` was 0.16-0.26x of the kernel's verification
//! time (docs/speed.md, session 12); most of it went to the ~60 strings of a message, most of
//! them field names, each scanned for escapes and checked as UTF-8. Here a struct field costs a
//! tag byte. The format describes itself (so internally tagged enums, which serde buffers, work);
//! a field a `skip_serializing_if` leaves out is written as [`ABSENT`], which the decode gives the
//! struct as a missing element (the field's `#[serde(default)]`). A struct's fields are matched
//! by position: both ends must be built from the same types, which the protocol's version
//! guarantees (the agent is the host's own binary).
//!
//! Why not a crate (the project prefers them): measured at the merge (session 13, cachegrind of
//! decoding every corpus case's `Run` ten times), MessagePack through `rmp-serde` with structs as
//! maps costs as many instructions as the JSON decode (+4%), since the field names are still
//! strings; the positional forms (`rmp-serde`'s tuples, bincode, postcard) cannot carry the
//! fields `Case` leaves out with `skip_serializing_if` (the decode would read the next field in
//! their place). This format is positional and marks a left-out field.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};

const UNIT: u8 = 0;
const SOME: u8 = 1;
const FALSE: u8 = 2;
const TRUE: u8 = 3;
const UINT: u8 = 4;
const SINT: u8 = 5;
const STR: u8 = 6;
const BYTES: u8 = 7;
const SEQ: u8 = 8;
const MAP: u8 = 9;
const STRUCT: u8 = 10;
/// A struct field left out (`skip_serializing_if`).
const ABSENT: u8 = 11;
const VARIANT: u8 = 12;
const F64: u8 = 13;
/// The end of a seq, map or struct.
const END: u8 = 14;

/// An encode or decode error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// `value` in this format.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    let mut s = Serializer { out: Vec::with_capacity(512) };
    value.serialize(&mut s)?;
    Ok(s.out)
}

/// Appends `value` in this format to `out` (the guest's results go straight into its outbox's
/// buffer, without a buffer of their own).
pub fn append<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), Error> {
    let mut s = Serializer { out: std::mem::take(out) };
    let r = value.serialize(&mut s);
    *out = s.out;
    r
}

/// The value `bytes` hold (all of them).
pub fn from_slice<'de, T: de::Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, Error> {
    let mut d = Deserializer { b: bytes, pos: 0 };
    let v = T::deserialize(&mut d)?;
    if d.pos != bytes.len() {
        return Err(Error(format!("{} bytes after the value", bytes.len() - d.pos)));
    }
    Ok(v)
}

struct Serializer {
    out: Vec<u8>,
}

impl Serializer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    fn tagged_uint(&mut self, v: u64) {
        self.out.push(UINT);
        self.varint(v);
    }

    fn tagged_sint(&mut self, v: i64) {
        self.out.push(SINT);
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }

    fn blob(&mut self, tag: u8, b: &[u8]) {
        self.out.push(tag);
        self.varint(b.len() as u64);
        self.out.extend_from_slice(b);
    }

    /// Starts a seq, map or struct (its parts end it with [`END`]).
    fn open(&mut self, tag: u8) -> Result<&mut Self, Error> {
        self.out.push(tag);
        Ok(self)
    }

    fn variant(&mut self, index: u32) {
        self.out.push(VARIANT);
        self.varint(index.into());
    }
}

type Done = ();

/// Narrower numbers as the widest of their kind.
macro_rules! widen {
    ($($method:ident($t:ty) => $to:ident),*) => {$(
        fn $method(self, v: $t) -> Result<Done, Error> {
            self.$to(v.into())
        }
    )*};
}

impl ser::Serializer for &mut Serializer {
    type Ok = Done;
    type Error = Error;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn is_human_readable(&self) -> bool {
        false
    }
    fn serialize_bool(self, v: bool) -> Result<Done, Error> {
        self.out.push(if v { TRUE } else { FALSE });
        Ok(())
    }
    widen!(
        serialize_i8(i8) => serialize_i64,
        serialize_i16(i16) => serialize_i64,
        serialize_i32(i32) => serialize_i64,
        serialize_u8(u8) => serialize_u64,
        serialize_u16(u16) => serialize_u64,
        serialize_u32(u32) => serialize_u64,
        serialize_f32(f32) => serialize_f64
    );
    fn serialize_i64(self, v: i64) -> Result<Done, Error> {
        self.tagged_sint(v);
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<Done, Error> {
        self.tagged_uint(v);
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<Done, Error> {
        self.out.push(F64);
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<Done, Error> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<Done, Error> {
        self.blob(STR, v.as_bytes());
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Done, Error> {
        self.blob(BYTES, v);
        Ok(())
    }
    fn serialize_none(self) -> Result<Done, Error> {
        self.out.push(UNIT);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<Done, Error> {
        self.out.push(SOME);
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<Done, Error> {
        self.out.push(UNIT);
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Done, Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(self, _: &'static str, index: u32, _: &'static str) -> Result<Done, Error> {
        self.variant(index);
        self.out.push(UNIT);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<Done, Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        v: &T,
    ) -> Result<Done, Error> {
        self.variant(index);
        v.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, Error> {
        self.open(SEQ)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, Error> {
        self.serialize_seq(None)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Error> {
        self.serialize_seq(None)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Error> {
        self.variant(index);
        self.serialize_seq(None)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, Error> {
        self.open(MAP)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Error> {
        self.open(STRUCT)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Error> {
        self.variant(index);
        self.open(STRUCT)
    }
}

/// The sequence-like parts: elements in order, then [`END`].
macro_rules! elements_then_end {
    ($($trait:ident::$method:ident),*) => {$(
        impl ser::$trait for &mut Serializer {
            type Ok = Done;
            type Error = Error;
            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
                v.serialize(&mut **self)
            }
            fn end(self) -> Result<Done, Error> {
                self.out.push(END);
                Ok(())
            }
        }
    )*};
}

elements_then_end!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for &mut Serializer {
    type Ok = Done;
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), Error> {
        k.serialize(&mut **self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        v.serialize(&mut **self)
    }
    fn end(self) -> Result<Done, Error> {
        self.out.push(END);
        Ok(())
    }
}

/// Structs: the fields in order without their names, a field left out as [`ABSENT`], then
/// [`END`].
macro_rules! fields_then_end {
    ($($trait:ident),*) => {$(
        impl ser::$trait for &mut Serializer {
            type Ok = Done;
            type Error = Error;
            fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, v: &T) -> Result<(), Error> {
                v.serialize(&mut **self)
            }
            fn skip_field(&mut self, _: &'static str) -> Result<(), Error> {
                self.out.push(ABSENT);
                Ok(())
            }
            fn end(self) -> Result<Done, Error> {
                self.out.push(END);
                Ok(())
            }
        }
    )*};
}

fields_then_end!(SerializeStruct, SerializeStructVariant);

struct Deserializer<'de> {
    b: &'de [u8],
    pos: usize,
}

impl<'de> Deserializer<'de> {
    fn eof() -> Error {
        Error("the message ends inside a value".into())
    }

    fn peek(&self) -> Result<u8, Error> {
        self.b.get(self.pos).copied().ok_or_else(Self::eof)
    }

    fn byte(&mut self) -> Result<u8, Error> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, Error> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Error("a varint longer than 64 bits".into()))
    }

    fn blob(&mut self) -> Result<&'de [u8], Error> {
        let len = self.varint()? as usize;
        let end = self.pos.checked_add(len).filter(|&e| e <= self.b.len()).ok_or_else(Self::eof)?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn expect(&mut self, tag: u8) -> Result<(), Error> {
        let got = self.byte()?;
        if got != tag {
            return Err(Error(format!("tag {got} where {tag} belongs")));
        }
        Ok(())
    }

    /// Reads past one value.
    fn skip(&mut self) -> Result<(), Error> {
        match self.byte()? {
            UNIT | ABSENT | FALSE | TRUE => {}
            SOME => self.skip()?,
            UINT | SINT => {
                self.varint()?;
            }
            STR | BYTES => {
                self.blob()?;
            }
            F64 => {
                self.pos = self.pos.checked_add(8).filter(|&e| e <= self.b.len()).ok_or_else(Self::eof)?;
            }
            SEQ | MAP | STRUCT => {
                while self.peek()? != END {
                    self.skip()?;
                }
                self.pos += 1;
            }
            VARIANT => {
                self.varint()?;
                self.skip()?;
            }
            t => return Err(Error(format!("unknown tag {t}"))),
        }
        Ok(())
    }

    /// A seq, map or struct's elements, then its [`END`] if the visitor left it.
    fn elements<V: Visitor<'de>>(&mut self, tag: u8, visitor: V) -> Result<V::Value, Error> {
        let mut access = Elements { de: self, done: false };
        let v = if tag == MAP { visitor.visit_map(&mut access)? } else { visitor.visit_seq(&mut access)? };
        if !access.done {
            self.expect(END)?;
        }
        Ok(v)
    }
}

impl<'de> de::Deserializer<'de> for &mut Deserializer<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.byte()? {
            UNIT | ABSENT => visitor.visit_unit(),
            SOME => visitor.visit_some(self),
            FALSE => visitor.visit_bool(false),
            TRUE => visitor.visit_bool(true),
            UINT => visitor.visit_u64(self.varint()?),
            SINT => {
                let z = self.varint()?;
                visitor.visit_i64(((z >> 1) as i64) ^ -((z & 1) as i64))
            }
            STR => {
                let b = self.blob()?;
                visitor.visit_borrowed_str(std::str::from_utf8(b).map_err(|e| Error(e.to_string()))?)
            }
            BYTES => visitor.visit_borrowed_bytes(self.blob()?),
            F64 => {
                let end =
                    self.pos.checked_add(8).filter(|&e| e <= self.b.len()).ok_or_else(Deserializer::eof)?;
                let v = f64::from_le_bytes(self.b[self.pos..end].try_into().expect("8 bytes"));
                self.pos = end;
                visitor.visit_f64(v)
            }
            t @ (SEQ | MAP | STRUCT) => self.elements(t, visitor),
            VARIANT => visitor.visit_enum(Variant { de: self }),
            t => Err(Error(format!("unknown tag {t}"))),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.peek()? {
            UNIT => {
                self.pos += 1;
                visitor.visit_none()
            }
            SOME => {
                self.pos += 1;
                visitor.visit_some(self)
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.peek()? {
            VARIANT => {
                self.pos += 1;
                visitor.visit_enum(Variant { de: self })
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.peek()? {
            // A unit variant as an identifier (an adjacently tagged enum's tag).
            VARIANT => {
                self.pos += 1;
                let index = self.varint()?;
                self.expect(UNIT)?;
                visitor.visit_u64(index)
            }
            _ => self.deserialize_any(visitor),
        }
    }

    /// Skipped whole, fields left out included ([`Deserializer::skip`]).
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.skip()?;
        visitor.visit_unit()
    }

    fn is_human_readable(&self) -> bool {
        false
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct
    }
}

/// The elements of a seq or struct, or the entries of a map, up to [`END`].
struct Elements<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    /// [`END`] was read.
    done: bool,
}

impl<'de> Elements<'_, 'de> {
    /// Whether the next element is [`END`] (read).
    fn at_end(&mut self) -> Result<bool, Error> {
        if self.done {
            return Ok(true);
        }
        if self.de.peek()? == END {
            self.de.pos += 1;
            self.done = true;
        }
        Ok(self.done)
    }
}

impl<'de> de::SeqAccess<'de> for Elements<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        if self.done {
            return Ok(None);
        }
        // One look at the next tag for both the end and a field left out.
        match self.de.peek()? {
            END => {
                self.de.pos += 1;
                self.done = true;
                Ok(None)
            }
            // A struct field left out: the struct takes its default.
            ABSENT => {
                self.de.pos += 1;
                Ok(None)
            }
            _ => seed.deserialize(&mut *self.de).map(Some),
        }
    }
}

impl<'de> de::MapAccess<'de> for Elements<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        if self.at_end()? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(&mut *self.de)
    }
}

/// An enum value after its [`VARIANT`] tag: the variant index, then the content.
struct Variant<'a, 'de> {
    de: &'a mut Deserializer<'de>,
}

impl<'a, 'de> de::EnumAccess<'de> for Variant<'a, 'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Error> {
        let index = self.de.varint()?;
        let index = u32::try_from(index).map_err(|_| Error(format!("variant index {index}")))?;
        let v = seed.deserialize(index.into_deserializer())?;
        Ok((v, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        self.de.expect(UNIT)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(&mut *self.de)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_any(&mut *self.de, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_any(&mut *self.de, visitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum Inner {
        A { name: String },
        B { n: u32, flag: bool },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Outer {
        Unit,
        New(i32),
        Tuple(u8, String),
        Struct { x: Option<u64> },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct S {
        a: u64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        skipped: Vec<u32>,
        neg: i64,
        s: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        opt: Option<String>,
        none: Option<u8>,
        inner: Vec<Inner>,
        outer: Vec<Outer>,
        map: BTreeMap<String, (u8, bool)>,
        #[serde(with = "serde_bytes_like")]
        bytes: Vec<u8>,
        f: f64,
        last: char,
    }

    mod serde_bytes_like {
        pub fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(b)
        }
        pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            <&[u8] as serde::Deserialize>::deserialize(d).map(<[u8]>::to_vec)
        }
    }

    fn sample(skipped: Vec<u32>, opt: Option<String>) -> S {
        S {
            a: 300,
            skipped,
            neg: i64::MIN,
            s: "ünï\n".into(),
            opt,
            none: None,
            inner: vec![Inner::A { name: "m".into() }, Inner::B { n: u32::MAX, flag: true }],
            outer: vec![
                Outer::Unit,
                Outer::New(-5),
                Outer::Tuple(7, "t".into()),
                Outer::Struct { x: Some(1) },
            ],
            map: [("k".to_string(), (1, false))].into(),
            bytes: vec![0, 10, 255],
            f: -0.5,
            last: 'z',
        }
    }

    #[test]
    fn values_round_trip_with_fields_left_out_and_in() {
        for v in [sample(Vec::new(), None), sample(vec![1, 2], Some("o".into()))] {
            let b = to_vec(&v).unwrap();
            assert_eq!(from_slice::<S>(&b).unwrap(), v);
        }
    }

    /// `append` adds to what the buffer holds the bytes `to_vec` gives.
    #[test]
    fn append_adds_what_to_vec_gives() {
        let v = sample(vec![3], Some("o".into()));
        let mut out = b"head".to_vec();
        append(&mut out, &v).unwrap();
        assert_eq!(&out[..4], b"head");
        assert_eq!(out[4..], to_vec(&v).unwrap()[..]);
        assert_eq!(from_slice::<S>(&out[4..]).unwrap(), v);
    }

    /// A value read as `IgnoredAny` is skipped whole, with its fields left out.
    #[test]
    fn an_ignored_value_is_skipped_whole() {
        let b = to_vec(&(7u64, sample(Vec::new(), None), true)).unwrap();
        let (id, _, last) = from_slice::<(u64, de::IgnoredAny, bool)>(&b).unwrap();
        assert_eq!((id, last), (7, true));
    }

    #[test]
    fn truncated_or_padded_input_is_an_error() {
        let b = to_vec(&sample(vec![1], None)).unwrap();
        for n in 0..b.len() {
            assert!(from_slice::<S>(&b[..n]).is_err(), "a prefix of {n} bytes");
        }
        let mut longer = b.clone();
        longer.push(UNIT);
        assert!(from_slice::<S>(&longer).is_err());
    }
}
