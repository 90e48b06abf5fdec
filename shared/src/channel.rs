//! Typed channels: the app's own contract for a family of rooms, written once in a crate
//! that the server's handlers and the browser's hooks both depend on.
//!
//! The wire stays as it is: a body is JSON (or its MessagePack form) inside a `publish`
//! frame. What a channel adds is the Rust type each side reads and writes it as. The
//! server decodes every body sent to a channel's rooms as [`Channel::Message`] before it
//! is numbered or stored, and refuses one that does not decode (`invalid_body`); the
//! hooks decode once per message and hand the app [`Channel::Message`] values, or an
//! [`Undecodable`] for a body written by an older or newer peer. So a field renamed on
//! one side is a compile error in the app, and a client that was not rebuilt gets a typed
//! refusal instead of storing a body nobody can read.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use tether_shared::channel::{Channel, ChannelError};
//!
//! #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
//! pub struct Post { pub text: String }
//!
//! #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
//! #[serde(tag = "code", rename_all = "snake_case")]
//! pub enum PostError { Empty, TooLong { max: usize } }
//!
//! impl ChannelError for PostError {
//!     fn code(&self) -> &str {
//!         match self { PostError::Empty => "empty", PostError::TooLong { .. } => "too_long" }
//!     }
//!     fn message(&self) -> String {
//!         match self {
//!             PostError::Empty => "write something first".into(),
//!             PostError::TooLong { max } => format!("at most {max} characters"),
//!         }
//!     }
//! }
//!
//! pub struct Chat;
//! impl Channel for Chat {
//!     const ROOMS: &'static str = "chat:*";
//!     type Message = Post;
//!     type State = ();
//!     type Meta = ();
//!     type Error = PostError;
//! }
//!
//! assert!(Chat::covers("chat:lobby") && !Chat::covers("lobby"));
//! ```

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What every type a channel carries must be: sent as JSON or MessagePack, compared
/// (the hooks re-render only what changed), printable in logs, and plain data that a
/// server's handler may hold across threads.
pub trait Payload: Serialize + DeserializeOwned + Clone + PartialEq + Debug + Send + Sync + 'static {}

impl<T: Serialize + DeserializeOwned + Clone + PartialEq + Debug + Send + Sync + 'static> Payload for T {}

/// The app's contract for a family of rooms. A marker type implements it; nothing of it
/// exists at run time but the types.
pub trait Channel: 'static {
    /// The rooms it covers: an exact name (`lobby`), a prefix ending in `*` (`chat:*`),
    /// or `*` for every room. The server picks, for a room, the registered channel with
    /// the longest pattern that covers it.
    const ROOMS: &'static str;
    /// What members publish: stored, numbered, fanned out, replayed.
    type Message: Payload;
    /// Volatile state (a cursor, a selection): the latest value per member and key.
    type State: Payload;
    /// What the server's join handler attaches to a member, for everyone to see in
    /// presence (a role, an avatar, a status). A member without any has the default.
    type Meta: Payload + Default;
    /// The app's refusal of a join or a publish, which the sender gets back typed.
    type Error: ChannelError;

    /// Whether `room` is one of this channel's rooms.
    fn covers(room: &str) -> bool {
        covers(Self::ROOMS, room)
    }
}

/// A channel that answers questions: a request handler on the server takes a
/// [`Requests::Request`] and answers with a [`Requests::Reply`] or the channel's error.
/// Requests are answered to the one who asked, never stored or fanned out.
pub trait Requests: Channel {
    /// What a member asks.
    type Request: Payload;
    /// What the server answers.
    type Reply: Payload;
}

/// The app's reason for refusing a join or a publish. It travels inside the `reject` or
/// `error` frame as a [`Refusal`]: its stable code beside the whole value, so a client
/// in another language can still branch on the code and show the message.
pub trait ChannelError: Payload {
    /// Stable and machine-readable (`empty`, `not_a_member`): what a client branches on.
    fn code(&self) -> &str;
    /// For people: what the UI shows on the refused message.
    fn message(&self) -> String;
}

/// Whether a channel's room pattern covers `room` (see [`Channel::ROOMS`]).
pub fn covers(pattern: &str, room: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => room.starts_with(prefix),
        None => pattern == room,
    }
}

/// How specific a pattern is: among the channels that cover a room, the most specific
/// one is the room's. An exact name beats every prefix.
pub fn specificity(pattern: &str) -> usize {
    match pattern.strip_suffix('*') {
        Some(prefix) => prefix.len(),
        None => usize::MAX,
    }
}

/// An app's refusal on the wire, in a `reject` (publish) or `error` (join) frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    /// [`ChannelError::code`].
    pub code: String,
    /// The app's error, serialised whole.
    pub error: Value,
}

impl Refusal {
    /// The wire form of an app's error.
    pub fn of<E: ChannelError>(error: &E) -> Self {
        Refusal { code: error.code().to_owned(), error: serde_json::to_value(error).unwrap_or(Value::Null) }
    }

    /// The app's error back, typed; `None` when it is not an `E` (a server built with
    /// another version of the contract).
    pub fn decode<E: ChannelError>(&self) -> Option<E> {
        E::deserialize(&self.error).ok()
    }
}

/// A body, value or refusal that did not decode as the channel's type: written by a
/// client or server built with another version of the contract. The hooks hand it to
/// the app in the message's place, so it can be shown or logged, never dropped silently.
#[derive(Debug, Clone, PartialEq)]
pub struct Undecodable {
    /// What it was sent as, unchanged.
    pub raw: Value,
    /// Why it is not the channel's type (serde's words: the field, the line).
    pub error: String,
}

impl std::fmt::Display for Undecodable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not this channel's type: {}", self.error)
    }
}

impl std::error::Error for Undecodable {}

/// Decodes `raw` as `T`, or says why not.
pub fn decode<T: DeserializeOwned>(raw: &Value) -> Result<T, Undecodable> {
    T::deserialize(raw).map_err(|error| Undecodable { raw: raw.clone(), error: error.to_string() })
}

/// The encoded form of a typed value, for the wire.
pub fn encode<T: Serialize>(value: &T) -> Value {
    // A `Payload` whose `Serialize` fails (a map with non-string keys) is a bug in the
    // app's contract, found the first time it is sent: null is sent, and the server's
    // check of the channel's type refuses it with a typed answer.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The default channel: any JSON, as rooms were before channels. Every room no other
/// channel covers is a `Json` room, with no checks and no handlers unless the app
/// registers some.
pub struct Json;

impl Channel for Json {
    const ROOMS: &'static str = "*";
    type Message = Value;
    type State = Value;
    type Meta = Value;
    type Error = Reason;
}

/// Any JSON question, any JSON answer: for rooms whose requests are answered by a
/// handler with no Rust types of its own (the server's HTTP request hook, a backend in
/// another language). Where nothing answers, a request is refused `not_handled`.
impl Requests for Json {
    type Request = Value;
    type Reply = Value;
}

/// A refusal with only a code and words: the [`Json`] channel's error type, and what
/// an app uses when it needs nothing richer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Stable and machine-readable.
    pub code: String,
    /// For people.
    pub message: String,
}

impl Reason {
    /// A refusal with this code and message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Reason { code: code.into(), message: message.into() }
    }
}

impl ChannelError for Reason {
    fn code(&self) -> &str {
        &self.code
    }

    fn message(&self) -> String {
        self.message.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patterns_cover_an_exact_name_or_a_prefix() {
        assert!(covers("lobby", "lobby"));
        assert!(!covers("lobby", "lobby2"));
        assert!(covers("chat:*", "chat:"));
        assert!(covers("chat:*", "chat:rust"));
        assert!(!covers("chat:*", "chatroom"));
        assert!(covers("*", "anything"));
        assert!(specificity("chat:rust") > specificity("chat:*"));
        assert!(specificity("chat:*") > specificity("*"));
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "code", rename_all = "snake_case")]
    enum PostError {
        TooLong { max: usize },
    }

    impl ChannelError for PostError {
        fn code(&self) -> &str {
            "too_long"
        }
        fn message(&self) -> String {
            "too long".into()
        }
    }

    #[test]
    fn a_refusal_carries_the_code_beside_the_whole_error_and_decodes_back() {
        let refusal = Refusal::of(&PostError::TooLong { max: 5 });
        assert_eq!(
            serde_json::to_value(&refusal).unwrap(),
            json!({
                "code": "too_long",
                "error": {"code": "too_long", "max": 5}
            })
        );
        assert_eq!(refusal.decode::<PostError>(), Some(PostError::TooLong { max: 5 }));
        assert_eq!(refusal.decode::<Reason>(), None, "a Reason needs a message");
    }

    #[test]
    fn a_body_of_another_shape_is_undecodable_with_serdes_reason_and_the_raw_value() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Post {
            text: String,
        }
        let raw = json!({"txt": "typo"});
        let undecodable = decode::<Post>(&raw).unwrap_err();
        assert_eq!(undecodable.raw, raw);
        assert!(undecodable.error.contains("missing field `text`"), "{}", undecodable.error);
    }
}
