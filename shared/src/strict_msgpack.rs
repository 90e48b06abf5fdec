//! MessagePack that JSON could have carried.
//!
//! A frame means the same in both encodings: the server answers and relays in JSON text
//! first and transcodes it, and JSON clients share the room. So a client's MessagePack
//! may hold only what JSON holds: maps with string keys, arrays, strings, numbers,
//! booleans and nil. serde's derive would read more: a `bin` as a string (its bytes, if
//! they are UTF-8), so that a `type`, a room or a field name could come as bytes, and a
//! map key that is a number as a field (by its index), so that `{"type":"ping", 0: 7}`
//! would be a ping. A frame of that kind means something JSON cannot say, so it is
//! refused before the typed decode reads it.
//!
//! Numbers JSON cannot write (NaN, infinities) are refused where values are read
//! (`strict_json::value`), since only a body or a state value can hold them.

use std::fmt;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// Walks `bytes` once, nesting no deeper than `max_depth`, and fails on the first thing
/// JSON has no form for: a `bin`, an `ext`, or a map key that is not a string.
pub(crate) fn json_shaped(bytes: &[u8], max_depth: usize) -> Result<(), rmp_serde::decode::Error> {
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(bytes);
    deserializer.set_max_depth(max_depth);
    serde::Deserializer::deserialize_any(&mut deserializer, Shaped)
}

/// Any value JSON can hold. What it does not implement (bytes, an `ext` as a newtype)
/// is refused by serde's default: "invalid type: byte array, expected a value JSON can
/// hold".
struct Shaped;

impl<'de> DeserializeSeed<'de> for Shaped {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Shaped {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a value JSON can hold")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Shaped)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Key)?.is_some() {
            map.next_value_seed(Shaped)?;
        }
        Ok(())
    }
}

/// A map key: a string, as in JSON.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a string key, as JSON has")
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
}
