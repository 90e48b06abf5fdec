//! What a client sends, read so that every reader of it reads the same thing: the
//! frames on every transport and the server API's request bodies.
//!
//! - An object that names a key twice is refused. `serde_json::Value` lets the last of
//!   two equal keys win, so `{"text":"a","text":"b"}` would be stored as `"b"` while a
//!   reader of the raw frame (a log, a proxy, another parser that keeps the first key)
//!   sees `"a"`. Two readings of one frame are how smuggling bugs start.
//! - A number JSON cannot write (NaN, an infinity: MessagePack can carry them) is
//!   refused, where `Value` would turn it into `null` and change the body on the way.
//! - An integer written in JSON that 64 bits cannot hold (past `u64::MAX` or below
//!   `i64::MIN`) is refused, where serde_json would read it as the nearest double and
//!   store `2^70+1` as `1.1805916207174113e21`. Numbers are read as what they are in
//!   Rust: an integer exactly, anything with a fraction or an exponent as the nearest
//!   IEEE double (as JavaScript reads every number). Keeping wider integers as written
//!   would take serde_json's `arbitrary_precision`, which changes every `Value` in the
//!   workspace (the browser bundle's included) and cannot be written as MessagePack; a
//!   refusal says plainly what a silent rounding would hide.

use std::fmt;

use serde::Deserializer;
use serde::de::{DeserializeOwned, DeserializeSeed, Error, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Deserialises any JSON value, failing on an object that names one key twice, at any
/// depth, and on a number JSON cannot write. Use with
/// `#[serde(deserialize_with = "tether_shared::strict_json::value")]`.
pub fn value<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    deserializer.deserialize_any(StrictValue)
}

/// Why JSON text was refused by [`from_str`].
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The text is not JSON at all.
    #[error("{0}")]
    NotJson(serde_json::Error),
    /// JSON, but not of the shape asked for, or holding what cannot be read exactly.
    #[error("{0}")]
    Invalid(serde_json::Error),
}

/// Reads JSON text as `T`, refusing an integer that 64 bits cannot hold anywhere in it
/// (see the module's words), and telling text that is not JSON from JSON of the wrong
/// shape.
///
/// One pass on the hot path; only a failed read checks the text again, because serde
/// stops at a wrong field before it has seen the rest of the text, and because what the
/// typed pass calls a syntax error may be JSON all the same (a number too large for any
/// field, `1e999`, or a lone surrogate escape): JSON is what the grammar says, which is
/// what `IgnoredAny` reads.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, Refused> {
    let read =
        serde_json::from_str(text).map_err(|error| match serde_json::from_str::<IgnoredAny>(text) {
            Err(syntax) => Refused::NotJson(syntax),
            Ok(_) => Refused::Invalid(error),
        })?;
    match wide_integer(text) {
        None => Ok(read),
        Some(wide) => {
            let shown: String = wide.chars().take(24).collect();
            let more = if shown.len() < wide.len() { "…" } else { "" };
            Err(Refused::Invalid(serde_json::Error::custom(format_args!(
                "the integer {shown}{more} does not fit in 64 bits and would not be kept exactly; send it as a string"
            ))))
        }
    }
}

/// The first integer (a number with no fraction and no exponent) in `text`, which is
/// JSON, that neither `i64` nor `u64` holds.
fn wide_integer(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    // Such an integer has at least 19 digits in a row: most texts have no such run and
    // are done with in one quick look.
    let mut run = 0;
    let long_run = bytes.iter().any(|b| {
        run = if b.is_ascii_digit() { run + 1 } else { 0 };
        run >= 19
    });
    if !long_run {
        return None;
    }
    let (mut at, mut in_string) = (0, false);
    while at < bytes.len() {
        let byte = bytes[at];
        if in_string {
            match byte {
                // Whatever is escaped, it is not the string's end.
                b'\\' => at += 1,
                b'"' => in_string = false,
                _ => {}
            }
            at += 1;
            continue;
        }
        match byte {
            b'"' => {
                in_string = true;
                at += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = at;
                at += 1;
                while bytes.get(at).is_some_and(u8::is_ascii_digit) {
                    at += 1;
                }
                let integer = &text[start..at];
                if matches!(bytes.get(at), Some(b'.' | b'e' | b'E')) {
                    // A double: the rest of it (fraction, exponent) is no integer.
                    while bytes
                        .get(at)
                        .is_some_and(|b| matches!(b, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-'))
                    {
                        at += 1;
                    }
                } else if integer.parse::<i64>().is_err() && integer.parse::<u64>().is_err() {
                    return Some(integer);
                }
            }
            _ => at += 1,
        }
    }
    None
}

struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON value without duplicate object keys or numbers JSON cannot write")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: Error>(self, value: f64) -> Result<Value, E> {
        // JSON text cannot hold NaN or infinities; MessagePack can.
        Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format_args!("{value} is not a number JSON can write")))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(A::Error::custom(format_args!("duplicate key `{key}` in body")));
            }
            let value = map.next_value_seed(StrictValue)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}
