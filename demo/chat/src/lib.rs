//! The demo chat's contract, written once: the server's handlers (`tether-demo-server`)
//! and the Yew app (`tether-demo`) both depend on this crate, so a field renamed here
//! is a compile error on both sides.
//!
//! Two channels: [`Chat`] for every room, and [`Poker`] for the planning-poker tables
//! (`poker:…` rooms, in [`poker`]).

pub mod poker;

pub use poker::Poker;

use serde::{Deserialize, Serialize};
use tether_shared::channel::{Channel, ChannelError, Requests};

/// Every room of the demo is a chat room, but the poker tables (`poker:…`).
pub struct Chat;

impl Channel for Chat {
    const ROOMS: &'static str = "*";
    type Message = Post;
    type State = Pointer;
    type Meta = Badge;
    type Error = ChatError;
}

impl Requests for Chat {
    type Request = Question;
    type Reply = RoomStats;
}

/// What a member may ask the chat's server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Question {
    /// How much has been said in the room, and by how many.
    Stats,
}

/// The answer to [`Question::Stats`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoomStats {
    /// Messages the room's history has numbered (its latest seq).
    pub messages: u64,
    /// Users present now.
    pub here: usize,
}

/// Longest text a post may have, in characters.
pub const MAX_TEXT: usize = 500;

/// One chat message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Post {
    /// What was written.
    pub text: String,
}

impl Post {
    /// The server's rule for a post: some text, and not too much. The server applies it
    /// in its publish handler; a client may apply it early, but the server's word is
    /// the one that counts.
    pub fn check(&self) -> Result<(), ChatError> {
        let length = self.text.chars().count();
        if self.text.trim().is_empty() {
            Err(ChatError::Empty)
        } else if length > MAX_TEXT {
            Err(ChatError::TooLong { max: MAX_TEXT, length })
        } else {
            Ok(())
        }
    }
}

/// Where a member's pointer is over the message list, as fractions of its width and
/// height (so screens of any size agree).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pointer {
    /// From the left edge, 0 to 1.
    pub x: f32,
    /// From the top edge, 0 to 1.
    pub y: f32,
}

/// What the server's join handler attaches to a member.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Badge {
    /// The member was the first one in the room when they came.
    pub host: bool,
}

/// Why the server refused a post. Tagged the serde default way (`"empty"`,
/// `{"too_long": {…}}`): the refusal carries the code beside it anyway, and an
/// internally tagged enum's decoder costs the browser bundle a few kilobytes more.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatError {
    /// Nothing but spaces.
    Empty,
    /// Over [`MAX_TEXT`] characters.
    TooLong {
        /// The limit.
        max: usize,
        /// How long it was.
        length: usize,
    },
}

impl ChannelError for ChatError {
    fn code(&self) -> &str {
        match self {
            ChatError::Empty => "empty",
            ChatError::TooLong { .. } => "too_long",
        }
    }

    fn message(&self) -> String {
        match self {
            ChatError::Empty => "a message needs some text".into(),
            ChatError::TooLong { max, length } => format!("{length} characters is too long (at most {max})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_needs_text_and_not_too_much_of_it() {
        assert_eq!(Post { text: "  ".into() }.check(), Err(ChatError::Empty));
        assert_eq!(Post { text: "hi".into() }.check(), Ok(()));
        let long = "é".repeat(MAX_TEXT + 1);
        assert_eq!(
            Post { text: long }.check(),
            Err(ChatError::TooLong { max: MAX_TEXT, length: MAX_TEXT + 1 })
        );
        assert_eq!(Post { text: "é".repeat(MAX_TEXT) }.check(), Ok(()), "counted in characters");
    }
}
