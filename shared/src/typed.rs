//! The core's events for one room, read as a channel's types: the one place where a
//! client decodes bodies, state values, member metadata and refusals, so the browser's
//! hooks and the native client treat a body of the wrong shape the same way (an
//! [`Undecodable`] in the message's place, never a panic and never a silent drop).
//!
//! Everything here works on [`Event`]s as the core emits them; nothing holds state.

use crate::channel::{Channel, ChannelError, Refusal, Requests, Undecodable, decode};
use crate::connection::{Event, RequestFailure};
use crate::frame::{ErrorCode, RejectCode, ServerFrame, User};
use crate::time::Millis;

/// A member of a channel's room with their metadata, typed.
pub struct Member<C: Channel> {
    /// Who they are. Its `meta` is the raw form of [`Member::meta`].
    pub user: User,
    /// What the join handler attached; the default when it attached nothing.
    pub meta: Result<C::Meta, Undecodable>,
}

// By hand: derived, they would ask the channel's marker type to be `Clone`, `PartialEq`
// and `Debug` too, which nothing needs it to be.
impl<C: Channel> Clone for Member<C> {
    fn clone(&self) -> Self {
        Member { user: self.user.clone(), meta: self.meta.clone() }
    }
}

impl<C: Channel> PartialEq for Member<C> {
    fn eq(&self, other: &Self) -> bool {
        self.user == other.user && self.meta == other.meta
    }
}

impl<C: Channel> std::fmt::Debug for Member<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member").field("user", &self.user).field("meta", &self.meta).finish()
    }
}

impl<C: Channel> Member<C> {
    /// Reads a member as the server sent them.
    pub fn of(user: &User) -> Self {
        let meta = match &user.meta {
            None => Ok(C::Meta::default()),
            Some(raw) => decode(raw),
        };
        Member { user: user.clone(), meta }
    }
}

/// Why the server refused one of our messages, or our join, as the app can show it.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure<E> {
    /// The app's handler refused it with its own error.
    Refused(E),
    /// Anything else: the server's limits and checks (`invalid_body`, `too_large`,
    /// `internal`, …), or an app refusal that is not this channel's error type. The
    /// code, and the server's words.
    Failed {
        /// The server's code (`reject` codes for messages, `error` codes for joins), in
        /// its wire spelling.
        code: String,
        /// For people.
        message: String,
    },
}

impl<E: ChannelError> Failure<E> {
    fn read(code: String, message: &str, refusal: Option<&Refusal>) -> Self {
        match refusal.and_then(Refusal::decode::<E>) {
            Some(error) => Failure::Refused(error),
            None => Failure::Failed { code, message: message.to_owned() },
        }
    }

    /// For people: the app's message, or the server's.
    pub fn message(&self) -> String {
        match self {
            Failure::Refused(error) => error.message(),
            Failure::Failed { message, .. } => message.clone(),
        }
    }
}

fn wire_name<T: serde::Serialize>(code: &T) -> String {
    match serde_json::to_value(code) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

/// One thing that happened in a channel's room. (Read from an event and matched at
/// once, it is neither cloned nor compared; [`Member`] is both.)
pub enum ChannelEvent<C: Channel> {
    /// A message, live or replayed; ours too (the echo of what we sent).
    Message {
        /// Its seq in the room.
        seq: u64,
        /// The sender's message id.
        id: String,
        /// Who sent it.
        from: User,
        /// The body as the channel's type, or why it is not one.
        body: Result<C::Message, Undecodable>,
        /// When it was stored.
        ts: Millis,
    },
    /// One of ours was stored.
    Acked {
        /// Our message id.
        id: String,
        /// Its seq.
        seq: u64,
        /// When it was stored.
        ts: Millis,
    },
    /// One of ours will not be stored (a refusal that will be retried is not told).
    Failed {
        /// Our message id.
        id: String,
        /// The app's error, or the server's reason.
        failure: Failure<C::Error>,
    },
    /// We are in the room; who is here.
    Joined {
        /// Everyone present, with their metadata (in a big room, nobody: see the count).
        members: Vec<Member<C>>,
        /// How many users are present.
        count: usize,
    },
    /// Our join was refused (by the app's join handler, or the server's checks).
    JoinFailed(Failure<C::Error>),
    /// Members arrived or changed (`joined`), or left (`left`, by user id).
    Presence {
        /// Arrived or changed.
        joined: Vec<Member<C>>,
        /// Gone.
        left: Vec<String>,
        /// How many users are present now.
        count: usize,
        /// `true`: `joined` is everyone; forget the rest.
        snapshot: bool,
    },
    /// A member's volatile state under `key`.
    State {
        /// Whose it is.
        from: User,
        /// What it is of.
        key: String,
        /// The value as the channel's state type, or why it is not one. `None`: the
        /// member cleared it.
        value: Option<Result<C::State, Undecodable>>,
    },
}

impl<C: Channel> ChannelEvent<C> {
    /// Reads `event` as an event of `room`; `None` when it is about something else (or
    /// is not a channel event: typing, receipts and the connection's state stay
    /// untyped and are read from the event itself).
    pub fn read(room: &str, event: &Event) -> Option<Self> {
        Some(match event {
            Event::Frame(ServerFrame::Message { room: r, seq, id, from, body, ts }) if r == room => {
                ChannelEvent::Message {
                    seq: *seq,
                    id: id.clone(),
                    from: from.clone(),
                    body: decode(body),
                    ts: *ts,
                }
            }
            Event::Acked { envelope, seq, ts } if envelope.room == room => {
                ChannelEvent::Acked { id: envelope.id.clone(), seq: *seq, ts: *ts }
            }
            Event::Rejected { envelope, code, message, refusal, will_retry: false }
                if envelope.room == room =>
            {
                ChannelEvent::Failed {
                    id: envelope.id.clone(),
                    failure: Failure::read(wire_name::<RejectCode>(code), message, refusal.as_ref()),
                }
            }
            Event::Frame(ServerFrame::Joined { room: r, members, count, .. }) if r == room => {
                ChannelEvent::Joined { members: members.iter().map(Member::of).collect(), count: *count }
            }
            Event::Frame(ServerFrame::Error { code, message, about: Some(about), refusal })
                if about == room && is_join_refusal(*code) =>
            {
                ChannelEvent::JoinFailed(Failure::read(
                    wire_name::<ErrorCode>(code),
                    message,
                    refusal.as_ref(),
                ))
            }
            Event::Frame(ServerFrame::Presence { room: r, joined, left, count, snapshot }) if r == room => {
                ChannelEvent::Presence {
                    joined: joined.iter().map(Member::of).collect(),
                    left: left.clone(),
                    count: *count,
                    snapshot: *snapshot,
                }
            }
            Event::Frame(ServerFrame::State { room: r, from, key, value }) if r == room => {
                ChannelEvent::State {
                    from: from.clone(),
                    key: key.clone(),
                    value: (!value.is_null()).then(|| decode(value)),
                }
            }
            _ => return None,
        })
    }
}

/// Why a request got no reply the app can use.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestError<E> {
    /// The app's request handler refused it with its own error.
    Refused(E),
    /// The server refused it (`not_joined`, `invalid_body`, `not_handled`, `internal`,
    /// …, or an app refusal that is not this channel's error): its code and words.
    Failed {
        /// The server's `reject` code, in its wire spelling.
        code: String,
        /// For people.
        message: String,
    },
    /// No answer within the request's deadline.
    TimedOut,
    /// The connection dropped while it was on the wire and it was not idempotent (it
    /// may or may not have run), or the app disconnected.
    Disconnected,
    /// The answer is not the channel's reply type (a server built with another version
    /// of the contract).
    Undecodable(Undecodable),
}

impl<E: ChannelError> std::fmt::Display for RequestError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Refused(error) => f.write_str(&error.message()),
            RequestError::Failed { message, .. } => f.write_str(message),
            RequestError::TimedOut => f.write_str("no answer in time"),
            RequestError::Disconnected => f.write_str("the connection dropped before the answer"),
            RequestError::Undecodable(undecodable) => write!(f, "{undecodable}"),
        }
    }
}

/// What a request of channel `C` comes to: its reply, or why there is none.
pub type Answer<C> = Result<<C as Requests>::Reply, RequestError<<C as Channel>::Error>>;

/// `event` as the answer to one of our requests, typed: (request id, answer). `None`
/// when it answers no request.
pub fn read_answer<C: Requests>(event: &Event) -> Option<(String, Answer<C>)> {
    match event {
        Event::Replied { id, body, .. } => Some((id.clone(), answer_of::<C>(Ok(body)))),
        Event::RequestFailed { id, failure, .. } => Some((id.clone(), answer_of::<C>(Err(failure)))),
        _ => None,
    }
}

/// A request's outcome as the core tells it (the reply's body, or why there is none),
/// read as channel `C`'s.
pub fn answer_of<C: Requests>(outcome: Result<&serde_json::Value, &RequestFailure>) -> Answer<C> {
    match outcome {
        Ok(body) => decode(body).map_err(RequestError::Undecodable),
        Err(RequestFailure::TimedOut) => Err(RequestError::TimedOut),
        Err(RequestFailure::Disconnected) => Err(RequestError::Disconnected),
        Err(RequestFailure::Rejected { code, message, refusal }) => {
            Err(match Failure::<C::Error>::read(wire_name(code), message, refusal.as_ref()) {
                Failure::Refused(error) => RequestError::Refused(error),
                Failure::Failed { code, message } => RequestError::Failed { code, message },
            })
        }
    }
}

/// Error codes that answer a join (about the room) with "you are not in".
fn is_join_refusal(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::Refused
            | ErrorCode::Forbidden
            | ErrorCode::InvalidRoom
            | ErrorCode::TooManyRooms
            | ErrorCode::RoomFull
    )
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    use super::*;
    use crate::channel::Reason;
    use crate::outbox::Envelope;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Post {
        text: String,
    }

    #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Role {
        host: bool,
    }

    struct Chat;
    impl Channel for Chat {
        const ROOMS: &'static str = "chat:*";
        type Message = Post;
        type State = Post;
        type Meta = Role;
        type Error = Reason;
    }

    fn envelope(id: &str) -> Envelope {
        Envelope {
            id: id.into(),
            room: "chat:a".into(),
            body: json!({"text": "hi"}),
            priority: 0,
            created: Millis(0),
            expires: None,
        }
    }

    #[test]
    fn a_body_of_another_shape_is_read_as_undecodable_with_its_raw_value() {
        let frame = |body| {
            Event::Frame(ServerFrame::Message {
                room: "chat:a".into(),
                seq: 1,
                id: "m".into(),
                from: User::new("u", "U", "#000"),
                body,
                ts: Millis(5),
            })
        };
        let Some(ChannelEvent::Message { body: Ok(post), .. }) =
            ChannelEvent::<Chat>::read("chat:a", &frame(json!({"text": "hi"})))
        else {
            panic!("a Post reads as a Post")
        };
        assert_eq!(post.text, "hi");
        let Some(ChannelEvent::Message { body: Err(undecodable), .. }) =
            ChannelEvent::<Chat>::read("chat:a", &frame(json!({"txt": "typo"})))
        else {
            panic!("a body of another shape is still an event")
        };
        assert_eq!(undecodable.raw, json!({"txt": "typo"}));
        assert!(ChannelEvent::<Chat>::read("chat:b", &frame(json!({"text": "hi"}))).is_none());
    }

    #[test]
    fn a_refusal_reads_as_the_apps_error_and_other_rejections_as_failed() {
        let rejected = |code, refusal| Event::Rejected {
            envelope: envelope("m"),
            code,
            message: "server words".into(),
            refusal,
            will_retry: false,
        };
        let refusal = Refusal::of(&Reason::new("empty", "write something"));
        let Some(ChannelEvent::Failed { failure: Failure::Refused(error), .. }) =
            ChannelEvent::<Chat>::read("chat:a", &rejected(RejectCode::Refused, Some(refusal)))
        else {
            panic!("the app's refusal")
        };
        assert_eq!(error, Reason::new("empty", "write something"));
        let Some(ChannelEvent::Failed { failure: Failure::Failed { code, .. }, .. }) =
            ChannelEvent::<Chat>::read("chat:a", &rejected(RejectCode::InvalidBody, None))
        else {
            panic!("the server's check")
        };
        assert_eq!(code, "invalid_body");
    }

    #[test]
    fn members_carry_their_metadata_typed_or_the_default_when_there_is_none() {
        let mut host = User::new("a", "A", "#000");
        host.meta = Some(json!({"host": true}));
        let plain = User::new("b", "B", "#000");
        let mut odd = User::new("c", "C", "#000");
        odd.meta = Some(json!("not a role"));
        let joined = Event::Frame(ServerFrame::Joined {
            room: "chat:a".into(),
            seq: 0,
            epoch: "e".into(),
            members: vec![host, plain, odd],
            count: 3,
            presence: Default::default(),
        });
        let Some(ChannelEvent::Joined { members, .. }) = ChannelEvent::<Chat>::read("chat:a", &joined) else {
            panic!("joined")
        };
        assert_eq!(members[0].meta, Ok(Role { host: true }));
        assert_eq!(members[1].meta, Ok(Role::default()));
        assert!(members[2].meta.is_err());
    }
}
