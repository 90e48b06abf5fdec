//! Typed frames: every message that crosses a Tether WebSocket.
//!
//! Frames travel as JSON in text WebSocket messages, internally tagged by `type`.
//! Keeping the tag inside the object (rather than wrapping it) makes frames readable in
//! browser dev tools and easy to produce from any language.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version a client announces and a server speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// A frame sent by a client to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Ask the server to send `body` straight back. Used for diagnostics and the demo's
    /// echo page; it touches no room and is never stored.
    Echo {
        /// Any JSON value.
        body: Value,
    },
    /// Application-level liveness probe. Browsers can't see WebSocket protocol pings,
    /// so a client that wants to detect a dead connection has to ask for itself.
    Ping {
        /// Opaque number echoed back in the matching [`ServerFrame::Pong`].
        nonce: u64,
    },
}

/// A frame sent by the server to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerFrame {
    /// The answer to [`ClientFrame::Echo`].
    Echo {
        /// The body the client sent, unchanged.
        body: Value,
    },
    /// The answer to [`ClientFrame::Ping`].
    Pong {
        /// The nonce of the ping this answers.
        nonce: u64,
    },
    /// Something the client sent could not be accepted. The connection stays open.
    Error {
        /// Stable, machine-readable reason.
        code: ErrorCode,
        /// Human-readable detail; wording may change between releases.
        message: String,
    },
}

/// Stable error codes carried by [`ServerFrame::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The text was not valid JSON.
    MalformedJson,
    /// The JSON was valid but not a frame this server knows, or a field was missing.
    InvalidFrame,
    /// A binary WebSocket message arrived where text frames are expected.
    BinaryNotSupported,
    /// The frame exceeded the server's size limit.
    TooLarge,
}

impl ClientFrame {
    /// Decodes a client frame, telling apart malformed JSON from a well-formed but
    /// unknown frame, so that a server can answer each with its own [`ErrorCode`].
    pub fn decode(text: &str) -> Result<Self, (ErrorCode, String)> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| (ErrorCode::MalformedJson, e.to_string()))?;
        serde_json::from_value(value).map_err(|e| (ErrorCode::InvalidFrame, e.to_string()))
    }

    /// Encodes the frame as JSON text.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("frames always serialise")
    }
}

impl ServerFrame {
    /// Decodes a server frame from JSON text.
    pub fn decode(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Encodes the frame as JSON text.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("frames always serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn echo_round_trips() {
        let frame = ClientFrame::Echo { body: json!({"text": "hi"}) };
        let text = frame.encode();
        assert_eq!(text, r#"{"type":"echo","body":{"text":"hi"}}"#);
        assert_eq!(ClientFrame::decode(&text).unwrap(), frame);
    }

    #[test]
    fn decode_tells_malformed_from_unknown() {
        assert_eq!(ClientFrame::decode("{nope").unwrap_err().0, ErrorCode::MalformedJson);
        assert_eq!(
            ClientFrame::decode(r#"{"type":"launch_rockets"}"#).unwrap_err().0,
            ErrorCode::InvalidFrame
        );
        assert_eq!(ClientFrame::decode(r#"{"type":"ping"}"#).unwrap_err().0, ErrorCode::InvalidFrame);
    }
}
