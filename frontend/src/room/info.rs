//! What a room's events say that no channel type is in: the presence mode and count,
//! who is typing, how far the room's seq has come, joins and replays, and which of our
//! messages the outbox or a receipt moved on.
//!
//! Kept apart from the typed view and free of the channel's type parameter on purpose:
//! this is most of a room's bookkeeping, and code generic over the channel is compiled
//! once per channel an app uses. Here it is compiled once.

use std::collections::BTreeMap;

use tether_shared::{DropReason, Event, Millis, PresenceMode, ReceiptKind, ServerFrame, User};

/// A room's untyped state, as [`RoomView::info`](super::RoomView::info) holds it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoomInfo {
    /// After a resume: whether the replay covered everything (`Some(false)` means a gap).
    pub replay_complete: Option<bool>,
    /// Users present, as the server last said.
    pub count: usize,
    /// Whether the room lists its members or only counts them.
    pub presence: PresenceMode,
    /// Who is typing, with when we last heard.
    pub typing: BTreeMap<String, (User, Millis)>,
    /// The highest seq received.
    pub last_seq: u64,
    /// How many times the server has confirmed the join (once more after each reconnect).
    pub joins: u64,
    /// Event batches applied, for render accounting.
    pub batches: u64,
}

/// What an untyped event does to the room's messages or members, for the typed view
/// to carry out.
pub(crate) enum Effect<'a> {
    /// Nothing beyond the bookkeeping here.
    None,
    /// Our message `id` will not be delivered, for a reason that is not the app's.
    Fail {
        /// Our message id.
        id: &'a str,
        /// Why, in words.
        why: String,
    },
    /// Another member's device has (or has shown) everything up to `seq`.
    Receipt {
        /// How far they got.
        kind: ReceiptKind,
        /// Up to this seq.
        seq: u64,
    },
    /// A page of members of a room too big to list (answering our `members` request).
    Page(&'a [User]),
}

impl RoomInfo {
    /// Applies `event` (about `room`, heard by user `me`) and says what it does to the
    /// messages and members. A channel event (a message, an ack, a refusal, presence)
    /// is read by the typed view too; this takes only its untyped part.
    pub(crate) fn apply<'a>(&mut self, room: &str, me: Option<&str>, event: &'a Event) -> Effect<'a> {
        match event {
            Event::Frame(ServerFrame::Message { room: r, seq, from, .. }) if r == room => {
                self.last_seq = self.last_seq.max(*seq);
                self.typing.remove(&from.id);
            }
            Event::Dropped(dropped) if dropped.envelope.room == room => {
                let why = match dropped.reason {
                    DropReason::Overflow => "the send queue was full",
                    DropReason::Expired => "it waited too long to be sent",
                };
                return Effect::Fail { id: &dropped.envelope.id, why: why.into() };
            }
            Event::Refused { id, error } => return Effect::Fail { id, why: error.to_string() },
            Event::Frame(ServerFrame::Receipt { room: r, user, kind, seq })
                if r == room && me != Some(user) =>
            {
                return Effect::Receipt { kind: *kind, seq: *seq };
            }
            Event::Frame(ServerFrame::Replayed { room: r, complete, .. }) if r == room => {
                self.replay_complete = Some(*complete);
            }
            Event::Frame(ServerFrame::Joined { room: r, seq, count, presence, .. }) if r == room => {
                self.joins += 1;
                self.count = *count;
                self.presence = *presence;
                if self.last_seq == 0 {
                    self.last_seq = *seq;
                }
            }
            Event::Frame(ServerFrame::Presence { room: r, left, count, .. }) if r == room => {
                self.count = *count;
                self.presence = PresenceMode::Full;
                for gone in left {
                    self.typing.remove(gone);
                }
            }
            Event::Frame(ServerFrame::PresenceCount { room: r, count }) if r == room => {
                self.count = *count;
                self.presence = PresenceMode::Count;
            }
            Event::Frame(ServerFrame::Members { room: r, members, count, .. })
                if r == room && self.presence == PresenceMode::Count =>
            {
                self.count = *count;
                return Effect::Page(members);
            }
            Event::Frame(ServerFrame::Typing { room: r, user, active }) if r == room => {
                if *active {
                    self.typing.insert(user.id.clone(), (user.clone(), Millis::now()));
                } else {
                    self.typing.remove(&user.id);
                }
            }
            _ => {}
        }
        Effect::None
    }
}

/// Whether `event` has anything to do with `room` (an outbox refusal names no room, so
/// every room hears of it).
pub(crate) fn concerns(event: &Event, room: &str) -> bool {
    match event {
        Event::Frame(frame) => frame.room().is_none_or(|r| r == room),
        Event::Acked { envelope, .. } | Event::Rejected { envelope, .. } => envelope.room == room,
        Event::Dropped(dropped) => dropped.envelope.room == room,
        Event::Refused { .. } => true,
        // Answers to requests go to the futures that asked (`Link::request`).
        Event::Replied { .. } | Event::RequestFailed { .. } => false,
        Event::State(_) | Event::Welcome { .. } | Event::Queue { .. } | Event::RoundTrip { .. } => false,
    }
}
