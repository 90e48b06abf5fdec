//! Typed frames: every message that crosses a Tether WebSocket.
//!
//! Frames travel as JSON in text WebSocket messages, internally tagged by `type`.
//! Keeping the tag inside the object makes frames readable in browser dev tools and easy
//! to produce from any language. Callers only ever see these enums, never JSON, so a
//! compact binary encoding can be added beside `encode`/`decode` without touching them.
//!
//! `PROTOCOL.md` documents each frame with an example; the test suite parses those
//! examples, so the document and this file cannot drift apart.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::channel::Refusal;
use crate::strict_json::Refused;
use crate::time::Millis;

/// The protocol version a client announces in [`ClientFrame::Hello`].
pub const PROTOCOL_VERSION: u32 = 1;

/// A frame sent by a client to the server. It decodes from an object only (see
/// [`crate::object`]): an array in its place, as serde's derive alone would take, is an
/// invalid frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// The first frame on every connection. Nothing else is accepted before it.
    Hello {
        /// Protocol version the client speaks; see [`PROTOCOL_VERSION`].
        v: u32,
        /// A signed token from the integrator's backend. Required when the server has an
        /// auth secret.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// Display name, used in dev mode when no token is given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The `resume_token` of a previous session, so that a reconnect keeps its
        /// identity and presence without a leave/join flicker.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_token: Option<String>,
    },
    /// Join a room. With `since`, the server first replays messages after that seq;
    /// without it, `history` asks for up to that many of the most recent messages.
    Join {
        /// Room name.
        room: String,
        /// Last seq the client has seen in this room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
        /// When there is no `since`: how many recent messages to replay (capped by the server).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        history: Option<u32>,
    },
    /// Rejoin several rooms after a reconnect, each from the last seq the client saw.
    /// Equivalent to one `join` with `since` per room, in one frame.
    Resume {
        /// One cursor per room.
        rooms: Vec<RoomCursor>,
    },
    /// Leave a room.
    Leave {
        /// Room name.
        room: String,
    },
    /// Publish a message to a joined room. Answered by [`ServerFrame::Ack`] or
    /// [`ServerFrame::Reject`] carrying the same `id`.
    Publish {
        /// Client message id, unique per user. Re-sending the same id is safe: the server
        /// answers with the original ack and does not broadcast twice.
        id: String,
        /// Room name.
        room: String,
        /// Any JSON value. An object in it that names a key twice makes the frame
        /// invalid, so every reader of the frame sees the same body.
        #[serde(deserialize_with = "crate::strict_json::value")]
        body: Value,
        /// Higher is sent first from the client's outbox; the server does not reorder.
        #[serde(default, skip_serializing_if = "is_zero")]
        priority: u8,
    },
    /// Ask the room's channel a question: its request handler answers with a
    /// [`ServerFrame::Reply`] carrying the same `id`, or a [`ServerFrame::Reject`]. Not
    /// stored, numbered or fanned out.
    Request {
        /// Request id, unique per user, like a message id.
        id: String,
        /// The room (joined) whose channel answers.
        room: String,
        /// The question, as the channel's request type encodes it.
        #[serde(deserialize_with = "crate::strict_json::value")]
        body: Value,
        /// Safe to ask twice: a client re-sends it after a reconnect under the same id,
        /// and the server answers a repeat from its memory of recent answers instead
        /// of asking the handler again.
        #[serde(default, skip_serializing_if = "is_false")]
        idempotent: bool,
    },
    /// Start or stop the "is typing" indicator. Ephemeral: never stored.
    Typing {
        /// Room name.
        room: String,
        /// `true` while typing.
        active: bool,
    },
    /// Delivered or read "up to seq", for everyone in the room to see.
    Receipt {
        /// Room name.
        room: String,
        /// Delivered or read.
        kind: ReceiptKind,
        /// Everything up to and including this seq.
        seq: u64,
    },
    /// Volatile state for a joined room (a cursor, a selection, a shape being dragged):
    /// the latest value of `key` for this user. Not stored, numbered, acked or replayed;
    /// a member that cannot keep up gets only the latest value per user and key.
    State {
        /// Room name (joined).
        room: String,
        /// What the value is of, 1-64 characters (`cursor`, `selection`, …).
        key: String,
        /// The value, any JSON, at most [`Limits::max_state_bytes`] encoded.
        #[serde(deserialize_with = "crate::strict_json::value")]
        value: Value,
    },
    /// Ask for a page of a room's members, in user-id order. Big rooms announce only a
    /// count ([`PresenceMode::Count`]); this is how a client lists who is there anyway.
    /// Answered by [`ServerFrame::Members`].
    Members {
        /// Room name (joined).
        room: String,
        /// Start after this user id; omit for the first page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        /// Page size (the server caps it; default 100).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Application-level liveness probe. Browsers can't see WebSocket protocol pings, so
    /// a client that wants to detect a dead connection has to ask for itself.
    Ping {
        /// Opaque number echoed back in the matching [`ServerFrame::Pong`].
        nonce: u64,
    },
    /// A new token for the same user, replacing the one the connection was opened with
    /// before it expires: rooms, presence and queued messages stay as they are.
    /// Answered by [`ServerFrame::Refreshed`], or an `error` `token_refused`.
    Refresh {
        /// A signed token for the connection's user.
        token: String,
    },
    /// Ask the server to send `body` straight back. Diagnostics only; needs no hello.
    Echo {
        /// Any JSON value, without duplicate keys, like a publish body.
        #[serde(deserialize_with = "crate::strict_json::value")]
        body: Value,
    },
}

/// A frame sent by the server to a client. Unlike client frames, unknown fields are
/// ignored when decoding: a server may add optional fields within a protocol version,
/// and older clients must keep working.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The answer to [`ClientFrame::Hello`]: the session is ready.
    Welcome {
        /// Protocol version the server speaks on this connection.
        v: u32,
        /// This connection's session id, for logs and support.
        session: String,
        /// Send this back in the next `hello` to resume the session.
        resume_token: String,
        /// How often the client should ping. The server drops a connection that stays
        /// silent for about twice this.
        heartbeat_ms: u64,
        /// The limits this server enforces, so a client can respect them up front.
        limits: Limits,
        /// Who the server says this client is.
        user: User,
    },
    /// The client is now in `room`.
    Joined {
        /// Room name.
        room: String,
        /// The room's current (latest) seq; 0 for an empty room.
        seq: u64,
        /// Identifies the room's history. If it changes, seqs from before are meaningless
        /// (history was wiped) and the client must drop its cursor.
        epoch: String,
        /// Who is in the room now, this client included, when `presence` is
        /// [`PresenceMode::Full`]; empty in [`PresenceMode::Count`] (ask with
        /// [`ClientFrame::Members`]).
        members: Vec<User>,
        /// How many users are in the room.
        #[serde(default)]
        count: usize,
        /// How presence in this room is told: every change, or only the count.
        #[serde(default)]
        presence: PresenceMode,
    },
    /// The client is no longer in `room`.
    Left {
        /// Room name.
        room: String,
    },
    /// A published message is stored durably under `seq`.
    Ack {
        /// The client message id from the publish.
        id: String,
        /// Room name.
        room: String,
        /// The message's seq in the room.
        seq: u64,
        /// Server time when the message was first stored.
        ts: Millis,
    },
    /// A publish was refused, and nothing was stored; or a request failed.
    Reject {
        /// The client message id from the publish (or the request's id).
        id: String,
        /// Why, as a stable code.
        code: RejectCode,
        /// Human-readable detail.
        message: String,
        /// With [`RejectCode::Refused`]: the app's own error, from the room's channel.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refusal: Option<Refusal>,
    },
    /// The answer to a [`ClientFrame::Request`].
    Reply {
        /// The request's id.
        id: String,
        /// The room it was asked in.
        room: String,
        /// The answer, as the channel's reply type encodes it.
        body: Value,
    },
    /// A message in a room, live or replayed.
    Message {
        /// Room name.
        room: String,
        /// Strictly increasing per room: every member sees the same order.
        seq: u64,
        /// The sender's client message id.
        id: String,
        /// Who published it, as the server knows them (id, display name, colour).
        from: User,
        /// The body, as published.
        body: Value,
        /// Server time when stored.
        ts: Millis,
    },
    /// The replay that a `join` with `since` or a `resume` asked for is over.
    Replayed {
        /// Room name.
        room: String,
        /// The first seq that could not be replayed is after this: the client has every
        /// message up to `to`.
        to: u64,
        /// `false` when the history no longer holds everything after `since`; then
        /// messages between `since` and `oldest` are lost to this client.
        complete: bool,
        /// The oldest seq the history still holds (0 when empty).
        oldest: u64,
    },
    /// Members who joined or left a room, coalesced: at most one per room per presence
    /// tick. Apply `joined` as add-or-replace and `left` as remove; a diff may repeat
    /// what the client already knows. Only sent in [`PresenceMode::Full`].
    Presence {
        /// Room name.
        room: String,
        /// Members who are present now (arrived, or changed since the last diff).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        joined: Vec<User>,
        /// User ids of members who are gone (their last tab left).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        left: Vec<String>,
        /// How many users are in the room after this diff.
        #[serde(default)]
        count: usize,
        /// `true`: `joined` is the whole member list; forget anyone not in it. Sent when a
        /// room that was announcing counts becomes small enough for a list again.
        #[serde(default, skip_serializing_if = "is_false")]
        snapshot: bool,
    },
    /// How many users are in a big room ([`PresenceMode::Count`]); sent at most once a
    /// second (or per presence tick, if longer), and only when the count changed. The first one in a room that was
    /// in [`PresenceMode::Full`] switches it to counts: no more diffs follow.
    PresenceCount {
        /// Room name.
        room: String,
        /// Users present.
        count: usize,
    },
    /// A page of members, answering [`ClientFrame::Members`].
    Members {
        /// Room name.
        room: String,
        /// Up to the requested number of members, in user-id order.
        members: Vec<User>,
        /// Ask again with `after` set to this for the next page; absent on the last page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
        /// How many users are in the room.
        count: usize,
    },
    /// Someone started or stopped typing. Expires by itself after a few seconds.
    Typing {
        /// Room name.
        room: String,
        /// Who is typing.
        user: User,
        /// `true` while typing.
        active: bool,
    },
    /// Another member's volatile state (see [`ClientFrame::State`]). A member who
    /// leaves the room (a presence `left`) takes their state with them.
    State {
        /// Room name.
        room: String,
        /// Whose it is.
        from: User,
        /// What it is of.
        key: String,
        /// The latest value.
        value: Value,
    },
    /// A member's receipt.
    Receipt {
        /// Room name.
        room: String,
        /// The member's user id.
        user: String,
        /// Delivered or read.
        kind: ReceiptKind,
        /// Up to and including this seq.
        seq: u64,
    },
    /// The connection's credential expires soon: send a [`ClientFrame::Refresh`] with a
    /// new token before `expires_at`, or the connection closes with 4403 then.
    TokenExpiring {
        /// When the connection's credential expires, in seconds since the Unix epoch.
        expires_at: u64,
    },
    /// The answer to an accepted [`ClientFrame::Refresh`].
    Refreshed {
        /// When the new credential expires, in seconds since the Unix epoch.
        expires_at: u64,
    },
    /// The answer to [`ClientFrame::Ping`].
    Pong {
        /// The nonce of the ping this answers.
        nonce: u64,
    },
    /// The answer to [`ClientFrame::Echo`].
    Echo {
        /// The body the client sent, unchanged.
        body: Value,
    },
    /// Something the client sent could not be accepted. The connection stays open.
    Error {
        /// Stable, machine-readable reason.
        code: ErrorCode,
        /// Human-readable detail; wording may change between releases.
        message: String,
        /// The client message id or room the error is about, when there is one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        about: Option<String>,
        /// With [`ErrorCode::Refused`]: the app's own error, from the room's channel.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refusal: Option<Refusal>,
    },
}

/// A last-seen seq for one room, sent in [`ClientFrame::Resume`]; an object, like the
/// frame around it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct RoomCursor {
    /// Room name.
    pub room: String,
    /// Last seq seen; `None` when the client has seen nothing in this room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// When there is no `since`: how many recent messages to replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<u32>,
}

crate::objects_only!(serialize: ClientFrame, RoomCursor);

/// A user as others see them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct User {
    /// Stable id: from the token, or assigned in dev mode.
    pub id: String,
    /// Display name.
    pub name: String,
    /// A CSS colour for the user's avatar and name.
    pub color: String,
    /// In presence only: what the room's channel attached to the member when they
    /// joined (a role, an avatar), as its [`Meta`](crate::channel::Channel::Meta) type
    /// encodes it. Absent on messages and for members of rooms without a join handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
}

impl User {
    /// A user with no metadata.
    pub fn new(id: impl Into<String>, name: impl Into<String>, color: impl Into<String>) -> Self {
        User { id: id.into(), name: name.into(), color: color.into(), meta: None }
    }
}

/// How a room tells its members who is there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceMode {
    /// A full member list at join, then coalesced [`ServerFrame::Presence`] diffs.
    #[default]
    Full,
    /// A big room: only [`ServerFrame::PresenceCount`] updates; pages on request.
    Count,
}

/// Limits a server enforces, announced in [`ServerFrame::Welcome`]. Fields after
/// `max_rooms` came later and default to 0 (unknown) when a server leaves them out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest publish `body`, in bytes of JSON.
    pub max_body_bytes: usize,
    /// Publishes per second allowed on one connection, sustained.
    pub publish_per_sec: u32,
    /// Publishes allowed in a burst above the sustained rate.
    pub publish_burst: u32,
    /// Rooms one connection may be in at once.
    pub max_rooms: usize,
    /// Largest WebSocket message; a bigger one closes the connection with 1009.
    #[serde(default)]
    pub max_message_bytes: usize,
    /// Frames per second allowed on one connection, of any kind; above it frames are
    /// answered with `error` `rate_limited`.
    #[serde(default)]
    pub frames_per_sec: u32,
    /// Invalid frames answered with an `error` before the next closes with 1008.
    #[serde(default)]
    pub max_strikes: u32,
    /// Members a room holds; the next join is answered `room_full`.
    #[serde(default)]
    pub max_members: usize,
    /// Frames queued for a connection before it is closed as a slow consumer (4001).
    #[serde(default)]
    pub send_queue: usize,
    /// Connections one address may hold at once; the next is closed with 1013.
    #[serde(default)]
    pub connections_per_address: usize,
    /// How long a message id is remembered for dedupe, in milliseconds.
    #[serde(default)]
    pub dedupe_window_ms: u64,
    /// `state` frames per second allowed on one connection (burst the same); above it
    /// they are answered with `error` `rate_limited`.
    #[serde(default)]
    pub state_per_sec: u32,
    /// Largest `state` value, in bytes of JSON.
    #[serde(default)]
    pub max_state_bytes: usize,
}

/// Delivered or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptKind {
    /// The message reached the member's device.
    Delivered,
    /// The member saw the message.
    Read,
}

/// Defines a fieldless enum as written, with `ALL`: every variant, in order. The list
/// is made from the definition itself, so no code can be left out of a check that
/// walks them all (PROTOCOL.md's tables).
macro_rules! with_all {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$variant_meta:meta])* $variant:ident,)* }) => {
        $(#[$meta])*
        pub enum $name { $($(#[$variant_meta])* $variant,)* }

        impl $name {
            /// Every code, in the order of its definition.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
        }
    };
}

with_all! {
/// Why a publish was refused ([`ServerFrame::Reject`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// The connection exceeded its publish rate. Retry later; the message was not stored.
    RateLimited,
    /// The body exceeds `max_body_bytes`. Retrying will not help.
    TooLarge,
    /// The client is not in that room. Join first; resending alone will not help.
    NotJoined,
    /// The token does not allow publishing there.
    Forbidden,
    /// The id is empty or too long.
    InvalidId,
    /// The server could not store the message, and did not: nothing was stored. Retry
    /// later.
    Unavailable,
    /// The server handed the message to its store and lost the answer (Redis went away
    /// with the write in flight): it may have been stored, and delivered. Send it again
    /// with the same id: a stored one gets its original ack, one that was not is stored
    /// then. Never under a new id, which could store it twice.
    Unconfirmed,
    /// The app's publish handler refused it: the `refusal` holds the app's own error.
    Refused,
    /// The body is not the room's channel type (a client built with another version of
    /// the contract); the message says which field.
    InvalidBody,
    /// The app's handler for it panicked or did not answer in time. That one publish
    /// failed; the connection goes on.
    Internal,
    /// A request to a room whose channel has no request handler.
    NotHandled,
}
}

impl RejectCode {
    /// Whether sending the same message again later can succeed.
    pub fn retryable(self) -> bool {
        matches!(self, RejectCode::RateLimited | RejectCode::Unavailable | RejectCode::Unconfirmed)
    }
}

with_all! {
/// Stable error codes carried by [`ServerFrame::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The text was not valid JSON.
    MalformedJson,
    /// Valid JSON, but not a frame this server knows, or a field is missing or mistyped.
    InvalidFrame,
    /// A binary WebSocket message arrived where text frames are expected.
    BinaryNotSupported,
    /// A text WebSocket message arrived on a connection that asked for MessagePack,
    /// where every frame is binary.
    TextNotSupported,
    /// A frame other than `hello`, `ping` or `echo` arrived before `hello`.
    HelloRequired,
    /// A second `hello` on the same connection.
    AlreadyHello,
    /// The room name is empty, too long, or uses characters outside `[A-Za-z0-9._:-]`.
    InvalidRoom,
    /// The token does not allow joining that room.
    Forbidden,
    /// The connection is in as many rooms as it may be.
    TooManyRooms,
    /// Typing or a receipt for a room the connection has not joined.
    NotJoined,
    /// The room has as many members as it may have.
    RoomFull,
    /// Too many frames; slow down.
    RateLimited,
    /// The frame exceeded a size limit.
    TooLarge,
    /// The server failed; the frame may be retried.
    Internal,
    /// A join's `since` is beyond the room's latest seq: the cursor belongs to a history
    /// the room no longer has. The whole held history follows, ending in `replayed` with
    /// `complete: false`; the client should drop its cursor for the room.
    CursorAhead,
    /// A `refresh` whose token is forged, expired, or for another user. The connection
    /// keeps its old credential (and closes with 4403 when that expires).
    TokenRefused,
    /// The app's join handler refused the room (`about`): the `refusal` holds the app's
    /// own error.
    Refused,
    /// A `state` value that is not the room's channel type.
    InvalidBody,
}
}

fn is_zero(value: &u8) -> bool {
    *value == 0
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Why a client frame could not be decoded: the code to answer with, and serde's error
/// (with line and column) as the detail.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct DecodeError {
    /// [`ErrorCode::MalformedJson`] or [`ErrorCode::InvalidFrame`].
    pub code: ErrorCode,
    /// What the parser found.
    pub source: serde_json::Error,
}

impl ClientFrame {
    /// Decodes a client frame, telling malformed JSON from a well-formed but unknown or
    /// incomplete frame, so that a server can answer each with its own [`ErrorCode`].
    /// Read as [`crate::strict_json::from_str`] reads: an integer past 64 bits anywhere
    /// in it makes the frame invalid.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        crate::strict_json::from_str(text).map_err(|refused| match refused {
            Refused::NotJson(source) => DecodeError { code: ErrorCode::MalformedJson, source },
            Refused::Invalid(source) => DecodeError { code: ErrorCode::InvalidFrame, source },
        })
    }

    /// Encodes the frame as JSON text.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("frames always serialise")
    }

    /// The frame's `type` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientFrame::Hello { .. } => "hello",
            ClientFrame::Join { .. } => "join",
            ClientFrame::Resume { .. } => "resume",
            ClientFrame::Leave { .. } => "leave",
            ClientFrame::Publish { .. } => "publish",
            ClientFrame::Request { .. } => "request",
            ClientFrame::Typing { .. } => "typing",
            ClientFrame::Receipt { .. } => "receipt",
            ClientFrame::State { .. } => "state",
            ClientFrame::Members { .. } => "members",
            ClientFrame::Ping { .. } => "ping",
            ClientFrame::Refresh { .. } => "refresh",
            ClientFrame::Echo { .. } => "echo",
        }
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

    /// The room the frame is about, if it is about one.
    pub fn room(&self) -> Option<&str> {
        match self {
            ServerFrame::Joined { room, .. }
            | ServerFrame::Left { room }
            | ServerFrame::Ack { room, .. }
            | ServerFrame::Message { room, .. }
            | ServerFrame::Reply { room, .. }
            | ServerFrame::Replayed { room, .. }
            | ServerFrame::Presence { room, .. }
            | ServerFrame::PresenceCount { room, .. }
            | ServerFrame::Members { room, .. }
            | ServerFrame::Typing { room, .. }
            | ServerFrame::State { room, .. }
            | ServerFrame::Receipt { room, .. } => Some(room),
            ServerFrame::Welcome { .. }
            | ServerFrame::Reject { .. }
            | ServerFrame::Pong { .. }
            | ServerFrame::TokenExpiring { .. }
            | ServerFrame::Refreshed { .. }
            | ServerFrame::Echo { .. }
            | ServerFrame::Error { .. } => None,
        }
    }

    /// The frame's `type` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerFrame::Welcome { .. } => "welcome",
            ServerFrame::Joined { .. } => "joined",
            ServerFrame::Left { .. } => "left",
            ServerFrame::Ack { .. } => "ack",
            ServerFrame::Reject { .. } => "reject",
            ServerFrame::Message { .. } => "message",
            ServerFrame::Reply { .. } => "reply",
            ServerFrame::Replayed { .. } => "replayed",
            ServerFrame::Presence { .. } => "presence",
            ServerFrame::PresenceCount { .. } => "presence_count",
            ServerFrame::Members { .. } => "members",
            ServerFrame::Typing { .. } => "typing",
            ServerFrame::Receipt { .. } => "receipt",
            ServerFrame::State { .. } => "state",
            ServerFrame::Pong { .. } => "pong",
            ServerFrame::TokenExpiring { .. } => "token_expiring",
            ServerFrame::Refreshed { .. } => "refreshed",
            ServerFrame::Echo { .. } => "echo",
            ServerFrame::Error { .. } => "error",
        }
    }
}

/// Every `type` tag a client may send, for documentation checks.
pub const CLIENT_KINDS: &[&str] = &[
    "hello", "join", "resume", "leave", "publish", "request", "typing", "receipt", "state", "members",
    "ping", "refresh", "echo",
];

/// Every `type` tag a server may send, for documentation checks.
pub const SERVER_KINDS: &[&str] = &[
    "welcome",
    "joined",
    "left",
    "ack",
    "reject",
    "message",
    "reply",
    "replayed",
    "presence",
    "presence_count",
    "members",
    "typing",
    "receipt",
    "state",
    "token_expiring",
    "refreshed",
    "pong",
    "echo",
    "error",
];

/// How deeply a publish body may nest arrays and objects. The server puts stored bodies
/// inside envelopes (a `message` frame, a long-poll answer, the server API's history),
/// and each must stay within the 128 levels that serde_json and most other decoders read
/// by default; 64 leaves room for all of them.
pub const MAX_BODY_DEPTH: usize = 64;

/// How deeply `value` nests arrays and objects: 0 for a scalar, 1 for `[1]` or
/// `{"a": 1}`, 2 for `[[1]]`.
pub fn nesting(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(nesting).max().unwrap_or(0),
        serde_json::Value::Object(fields) => 1 + fields.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

/// The most characters a message id or a `state` key may have (and, at the server API,
/// a sender's user id).
pub const MAX_ID_CHARS: usize = 64;

/// Whether `id` is 1–[`MAX_ID_CHARS`] characters. Characters are Unicode scalar values,
/// as the documents count them: an `é` is one (two bytes of UTF-8), so 64 of them are a
/// valid id. A JavaScript string's `length` counts UTF-16 units, never fewer, so a
/// browser that checks with it never sends what this refuses.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && (id.len() <= MAX_ID_CHARS || id.chars().count() <= MAX_ID_CHARS)
}

/// A room name is 1–64 characters from `[A-Za-z0-9._:-]`. Clients check before sending
/// and servers check again.
pub fn valid_room_name(room: &str) -> bool {
    (1..=64).contains(&room.len())
        && room.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_frames_tolerate_fields_added_later() {
        let text = r#"{"type":"left","room":"r","reason":"a field from a newer server"}"#;
        assert_eq!(ServerFrame::decode(text).unwrap(), ServerFrame::Left { room: "r".into() });
        let strict = r#"{"type":"leave","room":"r","reason":"a typo"}"#;
        assert_eq!(ClientFrame::decode(strict).unwrap_err().code, ErrorCode::InvalidFrame);
    }

    #[test]
    fn echo_encodes_with_an_inner_tag() {
        let frame = ClientFrame::Echo { body: json!({"text": "hi"}) };
        let text = frame.encode();
        assert_eq!(text, r#"{"type":"echo","body":{"text":"hi"}}"#);
        assert_eq!(ClientFrame::decode(&text).unwrap(), frame);
    }

    #[test]
    fn decode_tells_malformed_from_unknown() {
        assert_eq!(ClientFrame::decode("{nope").unwrap_err().code, ErrorCode::MalformedJson);
        assert_eq!(ClientFrame::decode(r#"{"type":"launch"}"#).unwrap_err().code, ErrorCode::InvalidFrame);
        assert_eq!(ClientFrame::decode(r#"{"type":"ping"}"#).unwrap_err().code, ErrorCode::InvalidFrame);
        assert_eq!(ClientFrame::decode(r#"[1,2]"#).unwrap_err().code, ErrorCode::InvalidFrame);
        let extra = r#"{"type":"ping","nonce":1,"extra":true}"#;
        assert_eq!(ClientFrame::decode(extra).unwrap_err().code, ErrorCode::InvalidFrame);
        // JSON that no field can hold is still JSON: the same code whatever the type.
        for too_big in [
            r#"{"type":"ping","nonce":1e999}"#,
            r#"{"limit":{},"presence":1e999}"#,
            r#"{"type":"echo","body":"\ud800"}"#,
        ] {
            assert_eq!(ClientFrame::decode(too_big).unwrap_err().code, ErrorCode::InvalidFrame, "{too_big}");
        }
        let broken_after_an_unknown_type = r#"{"type":"launch","x":"#;
        assert_eq!(
            ClientFrame::decode(broken_after_an_unknown_type).unwrap_err().code,
            ErrorCode::MalformedJson
        );
    }

    #[test]
    fn nesting_counts_arrays_and_objects() {
        assert_eq!(nesting(&json!(1)), 0);
        assert_eq!(nesting(&json!([])), 1);
        assert_eq!(nesting(&json!({"a": [1, {"b": [[2]]}], "c": 3})), 5);
        let deep = (0..MAX_BODY_DEPTH).fold(json!(1), |inner, _| json!([inner]));
        assert_eq!(nesting(&deep), MAX_BODY_DEPTH);
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        for twice in [
            r#"{"type":"join","type":"leave","room":"a"}"#,
            r#"{"type":"leave","room":"a","room":"b"}"#,
            r#"{"type":"publish","id":"m","room":"r","body":{"text":"a","text":"b"}}"#,
            r#"{"type":"publish","id":"m","room":"r","body":[1,{"x":{"k":1,"k":2}}]}"#,
            r#"{"type":"echo","body":{"a":1,"a":1}}"#,
        ] {
            assert_eq!(ClientFrame::decode(twice).unwrap_err().code, ErrorCode::InvalidFrame, "{twice}");
        }
        let nested =
            r#"{"type":"publish","id":"m","room":"r","body":{"a":{"a":[{"a":1.5,"b":null}]},"b":-2}}"#;
        let parsed = ClientFrame::decode(nested).unwrap();
        let ClientFrame::Publish { body, .. } = parsed else { panic!("{parsed:?}") };
        assert_eq!(body, json!({"a": {"a": [{"a": 1.5, "b": null}]}, "b": -2}));
    }

    #[test]
    fn an_array_is_not_a_frame() {
        for array in [
            r#"["ping",7]"#,
            r#"["hello",1]"#,
            r#"["echo",{"text":"hi"}]"#,
            r#"{"type":"resume","rooms":[["general",5]]}"#,
        ] {
            assert_eq!(ClientFrame::decode(array).unwrap_err().code, ErrorCode::InvalidFrame, "{array}");
        }
        let objects = r#"{"type":"resume","rooms":[{"room":"general","since":5}]}"#;
        let cursor = RoomCursor { room: "general".into(), since: Some(5), history: None };
        assert_eq!(ClientFrame::decode(objects).unwrap(), ClientFrame::Resume { rooms: vec![cursor] });
    }

    #[test]
    fn integers_past_64_bits_are_refused_and_the_rest_kept_exactly() {
        let echo =
            |number: &str| ClientFrame::decode(&format!(r#"{{"type":"echo","body":{{"n":[{number}]}}}}"#));
        for wide in [
            "1180591620717411303425",
            "18446744073709551616",
            "-9223372036854775809",
            "1".repeat(300).as_str(),
        ] {
            let error = echo(wide).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidFrame, "{wide}");
            assert!(error.to_string().contains("64 bits"), "{error}");
        }
        let body = |frame: ClientFrame| match frame {
            ClientFrame::Echo { body } => body["n"][0].clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(body(echo("18446744073709551615").unwrap()), json!(u64::MAX));
        assert_eq!(body(echo("-9223372036854775808").unwrap()), json!(i64::MIN));
        // Written with a fraction or an exponent, a number is a double: the nearest one.
        assert_eq!(body(echo("1180591620717411303425.0").unwrap()), json!(2f64.powi(70)));
        assert_eq!(body(echo("1.1805916207174113e21").unwrap()), json!(2f64.powi(70)));
        assert_eq!(body(echo("0.1").unwrap()), json!(0.1));
        // Digits in a string are text, however many.
        let quoted = r#"{"type":"echo","body":"1180591620717411303425 \" 1180591620717411303425"}"#;
        assert!(ClientFrame::decode(quoted).is_ok());
    }

    #[test]
    fn priority_zero_is_omitted_and_defaulted() {
        let frame = ClientFrame::Publish { id: "m1".into(), room: "r".into(), body: json!(1), priority: 0 };
        assert!(!frame.encode().contains("priority"));
        let parsed = ClientFrame::decode(r#"{"type":"publish","id":"m1","room":"r","body":1}"#).unwrap();
        assert_eq!(parsed, frame);
    }

    #[test]
    fn room_names() {
        for good in ["general", "team-7", "a", "org:42.chat_main"] {
            assert!(valid_room_name(good), "{good}");
        }
        let long = "x".repeat(65);
        for bad in ["", "has space", "emoji😀", "slash/room", long.as_str()] {
            assert!(!valid_room_name(bad), "{bad}");
        }
    }

    #[test]
    fn ids_are_counted_in_characters() {
        for good in ["m", "é".repeat(64).as_str(), "😀".repeat(64).as_str(), "x".repeat(64).as_str()] {
            assert!(valid_id(good), "{good}");
        }
        for bad in ["", "é".repeat(65).as_str(), "x".repeat(65).as_str()] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn retryable_rejections() {
        assert!(RejectCode::RateLimited.retryable());
        assert!(!RejectCode::TooLarge.retryable());
        assert!(!RejectCode::Forbidden.retryable());
    }
}
