//! Types that decode from an object (a MessagePack map) and from nothing else.
//!
//! serde's derive reads a struct from a sequence as well as from a map (its fields in
//! order), and an internally tagged enum from a sequence whose first element is the tag.
//! Left alone, `["ping", 7]` would be answered as `{"type":"ping","nonce":7}`, and a
//! `resume` could name its rooms as `[["general", 5]]`. The protocol and the server API
//! say that every frame and every request body is an object: a second reading that only
//! some parsers allow is how two readers of one frame come to disagree, so the types
//! that make up what a client sends refuse anything but a map, at whatever depth they
//! sit and whichever decoder reads them (JSON, MessagePack, or a value buffered by
//! serde for a tagged enum, where a wrapper around the decoder could not reach).
//!
//! A type opts in by deriving with `#[serde(remote = "Self")]`, which turns the derived
//! `Deserialize` (and `Serialize`) into inherent functions, and by naming itself in
//! [`objects_only!`](crate::objects_only), which implements the traits over them, the
//! `Deserialize` behind a visitor that accepts a map and nothing else.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserializer;
use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};

/// A type's derived reading, which [`from_object`] calls once it has a map in hand.
/// Implemented by [`objects_only!`](crate::objects_only).
pub trait Derived<'de>: Sized {
    /// The derived `Deserialize`, as `#[serde(remote = "Self")]` made it.
    fn derived<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error>;
}

/// Reads a `T` from a map, refusing any other kind of value (an array above all) as
/// "invalid type: sequence, expected an object".
pub fn from_object<'de, T: Derived<'de>, D: Deserializer<'de>>(deserializer: D) -> Result<T, D::Error> {
    deserializer.deserialize_map(Object(PhantomData))
}

struct Object<T>(PhantomData<T>);

impl<'de, T: Derived<'de>> Visitor<'de> for Object<T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::derived(MapAccessDeserializer::new(map))
    }
}

/// Gives each named type, derived with `#[serde(remote = "Self")]`, a `Deserialize`
/// that reads a map only (see [`object`](crate::object)). With `serialize:` first, it
/// also gives them back their derived `Serialize`.
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// #[serde(remote = "Self", deny_unknown_fields)]
/// pub struct Cursor {
///     room: String,
/// }
/// tether_shared::objects_only!(serialize: Cursor);
///
/// assert!(serde_json::from_str::<Cursor>(r#"{"room":"general"}"#).is_ok());
/// assert!(serde_json::from_str::<Cursor>(r#"["general"]"#).is_err());
/// ```
#[macro_export]
macro_rules! objects_only {
    (@deserialize $ty:ty) => {
        impl<'de> $crate::object::Derived<'de> for $ty {
            fn derived<D: $crate::__serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                // The inherent function that `remote = "Self"` derived, not the trait's.
                <$ty>::deserialize(deserializer)
            }
        }
        impl<'de> $crate::__serde::Deserialize<'de> for $ty {
            fn deserialize<D: $crate::__serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                $crate::object::from_object(deserializer)
            }
        }
    };
    (@serialize $ty:ty) => {
        impl $crate::__serde::Serialize for $ty {
            fn serialize<S: $crate::__serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                <$ty>::serialize(self, serializer)
            }
        }
    };
    (serialize: $($ty:ty),+ $(,)?) => {
        $( $crate::objects_only!(@deserialize $ty); $crate::objects_only!(@serialize $ty); )+
    };
    ($($ty:ty),+ $(,)?) => {
        $( $crate::objects_only!(@deserialize $ty); )+
    };
}
