//! The frames the server encodes on its hot paths, in one place: a stored message as
//! its `message` frame, acks and rejections. Each is checked against the shared
//! [`ServerFrame`] type in the tests, so the wire stays what `PROTOCOL.md` says.

use serde_json::value::RawValue;
use tether_shared::{Millis, RejectCode, ServerFrame, User};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::store::StoredMessage;

/// The reason given with `unavailable` when the store fails; the client retries.
pub const STORE_UNAVAILABLE: &str = "storage is unavailable; retry later";

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
    let frame = ServerFrame::Reject { id: id.to_owned(), code, message: message.to_owned() };
    Utf8Bytes::from(frame.encode())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn the_borrowed_encoding_is_a_message_frame() {
        let stored = StoredMessage {
            room: "r".into(),
            seq: 3,
            id: "m".into(),
            user: User { id: "u".into(), name: "U".into(), color: "#000".into() },
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
