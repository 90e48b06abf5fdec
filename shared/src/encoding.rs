//! The two ways a frame may travel: JSON text (the default) and MessagePack binary.
//!
//! The typed frames of [`crate::frame`] are the one definition of both: MessagePack
//! carries the same fields under the same names (`rmp-serde`, maps with field names),
//! so a frame means the same in either, and bodies stay JSON values at the API. A
//! connection picks its encoding once, with a WebSocket subprotocol.
//!
//! MessagePack is the `msgpack` cargo feature (on by default). A browser app that only
//! speaks JSON turns it off (`default-features = false`) and its bundle does not carry
//! the MessagePack codec; the server and the native client always have it.

#[cfg(feature = "msgpack")]
use serde::de::IgnoredAny;

#[cfg(feature = "msgpack")]
use crate::frame::{ClientFrame, ErrorCode, ServerFrame};

/// How a connection's frames are encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// JSON text messages: readable, what every example in `PROTOCOL.md` shows.
    #[default]
    Json,
    /// MessagePack binary messages: smaller, and cheaper to parse for numbers (the
    /// `msgpack` feature).
    #[cfg(feature = "msgpack")]
    MessagePack,
}

impl Encoding {
    /// The WebSocket subprotocol that asks for it.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Encoding::Json => "tether.v1.json",
            #[cfg(feature = "msgpack")]
            Encoding::MessagePack => "tether.v1.msgpack",
        }
    }

    /// Every encoding this build can speak.
    pub const ALL: &[Encoding] = &[
        Encoding::Json,
        #[cfg(feature = "msgpack")]
        Encoding::MessagePack,
    ];

    /// The encoding a `Sec-WebSocket-Protocol` list asks for: the first one known, JSON
    /// when none is (or there is no list).
    pub fn from_offer(offered: Option<&str>) -> Encoding {
        let offered = offered.unwrap_or_default().split(',').map(str::trim);
        offered
            .filter_map(|name| Encoding::ALL.iter().copied().find(|e| e.subprotocol() == name))
            .next()
            .unwrap_or_default()
    }
}

/// How deeply MessagePack may nest arrays and maps: as deeply as serde_json reads JSON
/// (127 levels: its limit of 128 counts from one), and no deeper. A frame is written as JSON too (the server answers and
/// relays in JSON text first and transcodes it; JSON clients share the room), so a
/// frame that decodes from MessagePack must be one JSON can carry.
#[cfg(feature = "msgpack")]
const MAX_DEPTH: usize = 128;

#[cfg(feature = "msgpack")]
fn from_msgpack<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, rmp_serde::decode::Error> {
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(bytes);
    deserializer.set_max_depth(MAX_DEPTH);
    T::deserialize(&mut deserializer)
}

/// Why a binary frame could not be decoded, with the code a server answers with.
#[cfg(feature = "msgpack")]
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct BinaryDecodeError {
    /// [`ErrorCode::MalformedJson`] for bytes that are not MessagePack at all (the same
    /// answer as text that is not JSON), [`ErrorCode::InvalidFrame`] for MessagePack of
    /// the wrong shape.
    pub code: ErrorCode,
    /// What the decoder found.
    pub source: rmp_serde::decode::Error,
}

#[cfg(feature = "msgpack")]
impl ClientFrame {
    /// Decodes a client frame from MessagePack, with the same checks as JSON (duplicate
    /// keys in a body included), once the bytes are shown to hold only what JSON could
    /// (no `bin`, no `ext`, string keys: see `strict_msgpack`).
    pub fn decode_msgpack(bytes: &[u8]) -> Result<Self, BinaryDecodeError> {
        let decoded = crate::strict_msgpack::json_shaped(bytes, MAX_DEPTH).and_then(|()| from_msgpack(bytes));
        decoded.map_err(|source| {
            let code = match rmp_serde::from_slice::<IgnoredAny>(bytes) {
                Ok(_) => ErrorCode::InvalidFrame,
                Err(_) => ErrorCode::MalformedJson,
            };
            BinaryDecodeError { code, source }
        })
    }

    /// Encodes the frame as MessagePack.
    pub fn encode_msgpack(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("frames always serialise")
    }
}

#[cfg(feature = "msgpack")]
impl ServerFrame {
    /// Decodes a server frame from MessagePack.
    pub fn decode_msgpack(bytes: &[u8]) -> Result<Self, rmp_serde::decode::Error> {
        from_msgpack(bytes)
    }

    /// Encodes the frame as MessagePack.
    pub fn encode_msgpack(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("frames always serialise")
    }
}

#[cfg(all(test, not(feature = "msgpack")))]
mod json_only_tests {
    use super::*;

    #[test]
    fn without_msgpack_every_offer_gets_json() {
        assert_eq!(Encoding::ALL, [Encoding::Json]);
        assert_eq!(Encoding::from_offer(Some("tether.v1.msgpack")), Encoding::Json);
        assert_eq!(Encoding::from_offer(Some("tether.v1.msgpack, tether.v1.json")), Encoding::Json);
    }
}

#[cfg(all(test, feature = "msgpack"))]
mod msgpack_tests {
    use serde_json::json;

    use super::*;
    use crate::frame::User;
    use crate::time::Millis;

    #[test]
    fn the_offer_picks_the_first_known_encoding() {
        assert_eq!(Encoding::from_offer(None), Encoding::Json);
        assert_eq!(Encoding::from_offer(Some("tether.v1.msgpack")), Encoding::MessagePack);
        assert_eq!(
            Encoding::from_offer(Some("chat, tether.v1.msgpack, tether.v1.json")),
            Encoding::MessagePack
        );
        assert_eq!(Encoding::from_offer(Some("tether.v1.json,tether.v1.msgpack")), Encoding::Json);
        assert_eq!(Encoding::from_offer(Some("tether.v2.cbor")), Encoding::Json);
    }

    #[test]
    fn frames_mean_the_same_in_both_encodings_and_msgpack_is_smaller() {
        let client = ClientFrame::Publish {
            id: "m1".into(),
            room: "general".into(),
            body: json!({"text": "hi", "n": [1, -2, 3.5], "ok": true, "none": null}),
            priority: 0,
        };
        assert_eq!(ClientFrame::decode_msgpack(&client.encode_msgpack()).unwrap(), client);
        let server = ServerFrame::Message {
            room: "general".into(),
            seq: 1_234_567,
            id: "m1".into(),
            from: User::new("u_1", "Ada", "#1f6feb"),
            body: json!({"text": "hi"}),
            ts: Millis(1_764_650_000_000),
        };
        let packed = server.encode_msgpack();
        assert_eq!(ServerFrame::decode_msgpack(&packed).unwrap(), server);
        assert!(packed.len() < server.encode().len(), "{} vs {} bytes", packed.len(), server.encode().len());
    }

    #[test]
    fn bad_binary_is_told_apart_from_binary_of_the_wrong_shape() {
        assert_eq!(ClientFrame::decode_msgpack(&[0xc1]).unwrap_err().code, ErrorCode::MalformedJson);
        let wrong = rmp_serde::to_vec_named(&json!({"type": "publish", "room": 5})).unwrap();
        assert_eq!(ClientFrame::decode_msgpack(&wrong).unwrap_err().code, ErrorCode::InvalidFrame);
        let unknown = rmp_serde::to_vec_named(&json!({"type": "teleport"})).unwrap();
        assert_eq!(ClientFrame::decode_msgpack(&unknown).unwrap_err().code, ErrorCode::InvalidFrame);
    }

    /// MessagePack written by hand, for what serde would never write.
    mod packed {
        pub fn str(text: &str) -> Vec<u8> {
            [&[0xa0 | text.len() as u8][..], text.as_bytes()].concat()
        }
        pub fn bin(bytes: &str) -> Vec<u8> {
            [&[0xc4, bytes.len() as u8][..], bytes.as_bytes()].concat()
        }
        pub fn f64(value: f64) -> Vec<u8> {
            [&[0xcb][..], &value.to_be_bytes()].concat()
        }
        pub fn map(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
            let mut bytes = vec![0x80 | entries.len() as u8];
            for (key, value) in entries {
                bytes.extend(key);
                bytes.extend(value);
            }
            bytes
        }
    }

    #[test]
    fn an_array_is_not_a_frame_in_msgpack_either() {
        for array in [json!(["ping", 7]), json!(["hello", 1]), json!(["leave", "r"])] {
            let bytes = rmp_serde::to_vec_named(&array).unwrap();
            assert_eq!(
                ClientFrame::decode_msgpack(&bytes).unwrap_err().code,
                ErrorCode::InvalidFrame,
                "{array}"
            );
        }
        let cursors = rmp_serde::to_vec_named(&json!({"type": "resume", "rooms": [["general", 5]]})).unwrap();
        assert_eq!(ClientFrame::decode_msgpack(&cursors).unwrap_err().code, ErrorCode::InvalidFrame);
        let objects =
            rmp_serde::to_vec_named(&json!({"type": "resume", "rooms": [{"room": "general"}]})).unwrap();
        assert!(ClientFrame::decode_msgpack(&objects).is_ok());
    }

    #[test]
    fn msgpack_holds_only_what_json_can() {
        use packed::{bin, map, str};
        let ping = |key: Vec<u8>, kind: Vec<u8>| map(&[(key, kind), (str("nonce"), vec![0x07])]);
        assert_eq!(
            ClientFrame::decode_msgpack(&ping(str("type"), str("ping"))).unwrap(),
            ClientFrame::Ping { nonce: 7 }
        );
        let refused = [
            ("a bin type", ping(str("type"), bin("ping"))),
            ("a bin key", ping(bin("type"), str("ping"))),
            ("a bin room", map(&[(str("type"), str("leave")), (str("room"), bin("r"))])),
            (
                "a bin in a body",
                map(&[(str("type"), str("echo")), (str("body"), map(&[(bin("k"), str("v"))]))]),
            ),
            ("a number for a key", map(&[(str("type"), str("ping")), (vec![0x00], vec![0x07])])),
            ("an ext", map(&[(str("type"), str("echo")), (str("body"), vec![0xd4, 0x01, 0x00])])),
        ];
        for (what, bytes) in refused {
            let error = ClientFrame::decode_msgpack(&bytes).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidFrame, "{what}: {error}");
        }
    }

    #[test]
    fn numbers_json_cannot_write_are_refused_in_bodies_and_state() {
        use packed::{f64, map, str};
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let echo = map(&[(str("type"), str("echo")), (str("body"), f64(bad))]);
            let state = map(&[
                (str("type"), str("state")),
                (str("room"), str("r")),
                (str("key"), str("k")),
                (str("value"), map(&[(str("x"), f64(bad))])),
            ]);
            let publish = map(&[
                (str("type"), str("publish")),
                (str("id"), str("m")),
                (str("room"), str("r")),
                (str("body"), [&[0x91][..], &f64(bad)].concat()),
            ]);
            for bytes in [echo, state, publish] {
                let error = ClientFrame::decode_msgpack(&bytes).unwrap_err();
                assert_eq!(error.code, ErrorCode::InvalidFrame, "{bad}: {error}");
            }
        }
        let finite = map(&[(str("type"), str("echo")), (str("body"), f64(-0.5))]);
        assert_eq!(ClientFrame::decode_msgpack(&finite).unwrap(), ClientFrame::Echo { body: json!(-0.5) });
    }

    #[test]
    fn msgpack_nests_no_deeper_than_json_can() {
        // An echo whose body is arrays nested `depth` deep, under the frame's own map.
        let echo = |depth: usize| {
            let mut bytes = vec![
                0x82, 0xa4, b't', b'y', b'p', b'e', 0xa4, b'e', b'c', b'h', b'o', 0xa4, b'b', b'o', b'd',
                b'y',
            ];
            bytes.extend(std::iter::repeat_n(0x91, depth));
            bytes.push(0x01);
            bytes
        };
        let deepest = ClientFrame::decode_msgpack(&echo(126)).unwrap();
        assert_eq!(ClientFrame::decode(&deepest.encode()).unwrap(), deepest);
        assert_eq!(ClientFrame::decode_msgpack(&echo(127)).unwrap_err().code, ErrorCode::InvalidFrame);
        assert!(ServerFrame::decode_msgpack(&echo(1_000)).is_err());
    }
}
