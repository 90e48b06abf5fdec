//! Equality of JSON values up to serde_json's float parsing.
//!
//! Without its `float_roundtrip` feature (which this workspace does not enable),
//! serde_json parses some decimal floats to a neighbour of the nearest double: the
//! shortest text of a double can come back one unit in the last place (ULP) away. So
//! a float that goes through JSON text may change by a ULP or two, and the round-trip
//! checks accept up to four ULPs, and say when they needed to (the targets label it,
//! so every run shows how often it happens).

use serde::Serialize;
use serde_json::Value;

/// How two values compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Same {
    /// Identical.
    Exactly,
    /// Identical but for floats a few ULPs apart (at most four).
    WithinUlp,
    /// Different.
    No,
}

/// Compares two serialisable values as JSON.
pub fn same(a: &impl Serialize, b: &impl Serialize) -> Same {
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(a), Ok(b)) => values(&a, &b),
        _ => Same::No,
    }
}

/// Compares two JSON values.
pub fn values(a: &Value, b: &Value) -> Same {
    if a == b {
        return Same::Exactly;
    }
    let all = |pairs: &mut dyn Iterator<Item = (&Value, &Value)>| {
        let mut result = Same::Exactly;
        for (a, b) in pairs {
            match values(a, b) {
                Same::No => return Same::No,
                Same::WithinUlp => result = Same::WithinUlp,
                Same::Exactly => {}
            }
        }
        result
    };
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() && y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or_default(), y.as_f64().unwrap_or_default());
            let apart = (x.to_bits() as i64).wrapping_sub(y.to_bits() as i64).unsigned_abs();
            if x.is_sign_negative() == y.is_sign_negative() && apart <= 4 {
                Same::WithinUlp
            } else {
                Same::No
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => all(&mut x.iter().zip(y)),
        (Value::Object(x), Value::Object(y)) if x.len() == y.len() && x.keys().eq(y.keys()) => {
            all(&mut x.values().zip(y.values()))
        }
        _ => Same::No,
    }
}
