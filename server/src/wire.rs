//! The frames the server encodes on its hot paths, in one place: a stored message as
//! its `message` frame, acks and rejections. Each is checked against the shared
//! [`ServerFrame`] type in the tests, so the wire stays what `PROTOCOL.md` says.

use serde_json::value::RawValue;
use tether_shared::{Millis, RejectCode, ServerFrame, User};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::store::StoredMessage;

/// The reason given with `unavailable` when the store fails; the client retries.
pub const STORE_UNAVAILABLE: &str = "storage is unavailable; retry later";
/// The explanation of a `reject` `unconfirmed`.
pub const STORE_UNCONFIRMED: &str =
    "the store did not confirm this message: it may have been stored; send it again with the same id";

/// The wire shape of [`ServerFrame::Message`], borrowing the stored raw body so that a
/// broadcast never parses or copies the body to encode it.
#[derive(serde::Serialize)]
struct MessageFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    room: &'a str,
    seq: u64,
    id: &'a str,
    from: &'a User,
    body: &'a RawValue,
    ts: Millis,
}

/// The `message` frame that delivers `message`: encoded once, then shared by every
/// recipient (and written as is in a replay).
pub fn message(message: &StoredMessage) -> Utf8Bytes {
    let frame = MessageFrame {
        kind: "message",
        room: &message.room,
        seq: message.seq,
        id: &message.id,
        from: &message.user,
        body: &message.body,
        ts: message.ts,
    };
    Utf8Bytes::from(serde_json::to_string(&frame).expect("frames always serialise"))
}

/// The ack of publish `id`, stored as `seq` in `room` at `ts`.
pub fn ack(id: &str, room: &str, seq: u64, ts: Millis) -> Utf8Bytes {
    let frame = ServerFrame::Ack { id: id.to_owned(), room: room.to_owned(), seq, ts };
    Utf8Bytes::from(frame.encode())
}

/// The rejection of publish `id`.
pub fn reject(id: &str, code: RejectCode, message: &str) -> Utf8Bytes {
    let frame = ServerFrame::Reject { id: id.to_owned(), code, message: message.to_owned(), refusal: None };
    Utf8Bytes::from(frame.encode())
}

/// The rejection of publish `id` by the app's publish handler.
pub fn refused(id: &str, refused: crate::channels::AppRefusal) -> Utf8Bytes {
    let frame = ServerFrame::Reject {
        id: id.to_owned(),
        code: RejectCode::Refused,
        message: refused.message,
        refusal: Some(refused.refusal),
    };
    Utf8Bytes::from(frame.encode())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_shared_frame_is_packed_once_for_every_msgpack_connection() {
        let packed = Packed::default();
        let frame = Utf8Bytes::from(ServerFrame::Pong { nonce: 7 }.encode());
        let first = packed.shared(&frame.clone());
        let again = packed.shared(&frame.clone());
        assert_eq!(first.as_ptr(), again.as_ptr(), "the same bytes, not a second encoding");
        assert_eq!(ServerFrame::decode_msgpack(&first).unwrap(), ServerFrame::Pong { nonce: 7 });
        // The same text in another buffer is another frame: packed on its own.
        let other = Utf8Bytes::from(ServerFrame::Pong { nonce: 7 }.encode());
        assert_ne!(packed.shared(&other).as_ptr(), first.as_ptr());
    }

    #[test]
    fn the_borrowed_encoding_is_a_message_frame() {
        let stored = StoredMessage {
            room: "r".into(),
            seq: 3,
            id: "m".into(),
            user: User::new("u", "U", "#000"),
            body: Arc::from(RawValue::from_string(r#"{"text":"hi"}"#.into()).unwrap()),
            ts: Millis(9),
        };
        let decoded = ServerFrame::decode(&message(&stored)).unwrap();
        let expected = ServerFrame::Message {
            room: "r".into(),
            seq: 3,
            id: "m".into(),
            from: stored.user.clone(),
            body: serde_json::json!({"text": "hi"}),
            ts: Millis(9),
        };
        assert_eq!(decoded, expected);
    }

    #[test]
    fn acks_and_rejections_are_server_frames() {
        let ack = ServerFrame::decode(&ack("m1", "r", 7, Millis(5))).unwrap();
        assert_eq!(ack, ServerFrame::Ack { id: "m1".into(), room: "r".into(), seq: 7, ts: Millis(5) });
        let rejected =
            ServerFrame::decode(&reject("m2", RejectCode::Unavailable, STORE_UNAVAILABLE)).unwrap();
        assert!(matches!(rejected, ServerFrame::Reject { code: RejectCode::Unavailable, .. }));
    }
}

/// The MessagePack form of frames that several connections share (a broadcast, a
/// presence diff): made once, on the first MessagePack connection that writes the
/// frame, and reused by the others.
///
/// Frames are queued as JSON text, shared by reference between recipients; an entry is
/// found by the text's buffer address and holds a clone of the text, so the buffer
/// cannot be freed (and its address reused) while the entry exists.
#[derive(Default)]
pub struct Packed {
    entries: std::sync::Mutex<PackedEntries>,
}

#[derive(Default)]
struct PackedEntries {
    by_buffer: std::collections::HashMap<(usize, usize), (Utf8Bytes, bytes::Bytes)>,
    order: std::collections::VecDeque<(usize, usize)>,
}

/// Shared frames remembered at once: a few bursts' worth.
const PACKED_KEPT: usize = 4_096;

impl Packed {
    /// The MessagePack form of a shared frame.
    pub fn shared(&self, text: &Utf8Bytes) -> bytes::Bytes {
        let key = (text.as_str().as_ptr() as usize, text.len());
        if let Some((_, packed)) = self.entries.lock().expect("packed lock").by_buffer.get(&key) {
            return packed.clone();
        }
        let packed = transcode(text.as_str());
        let mut entries = self.entries.lock().expect("packed lock");
        if entries.by_buffer.insert(key, (text.clone(), packed.clone())).is_none() {
            entries.order.push_back(key);
        }
        while entries.order.len() > PACKED_KEPT {
            if let Some(oldest) = entries.order.pop_front() {
                entries.by_buffer.remove(&oldest);
            }
        }
        packed
    }
}

/// The MessagePack form of one JSON frame (the same fields under the same names).
pub fn transcode(text: &str) -> bytes::Bytes {
    let value: serde_json::Value = serde_json::from_str(text).expect("the server's own frames are JSON");
    bytes::Bytes::from(rmp_serde::to_vec_named(&value).expect("JSON values serialise"))
}
