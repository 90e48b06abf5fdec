//! A room's view as a reducer, typed by its channel: messages as the channel's type
//! with their delivery ticks, members with their metadata, and a refused join.
//!
//! Every event is read as the channel's types by [`ChannelEvent::read`], the one place a
//! client decodes bodies, metadata and refusals; replays after a resume are message
//! frames like any other and come the same way. What is generic over the channel is
//! only what holds its values; the rest of the bookkeeping is [`RoomInfo`]'s, compiled
//! once however many channels an app uses.

use std::fmt;
use std::rc::Rc;

use tether_shared::channel::{Channel, Undecodable};
use tether_shared::typed::{ChannelEvent, Failure, Member};
use tether_shared::{Event, Millis, ReceiptKind, User};
use yew::Reducible;

use super::info::{Effect, RoomInfo};

/// Where a message is on its way.
#[derive(Clone, Debug, PartialEq)]
pub enum Delivery<E> {
    /// Queued or on the wire, not yet acked.
    Sending,
    /// Stored by the server (acked).
    Sent,
    /// Another member's device has it.
    Delivered,
    /// Another member has seen it.
    Read,
    /// The app's handler on the server refused it, with the channel's error: show its
    /// [`message`](tether_shared::channel::ChannelError::message) on the message.
    Refused(E),
    /// Will not be delivered for another reason, in words: the server's own checks,
    /// the outbox letting it go, or a refusal that is not the channel's error type (a
    /// server built with another version of the contract).
    Failed(String),
}

impl<E> Delivery<E> {
    /// Whether a receipt of `kind` moves a message with this delivery on. Receipts only
    /// ever move a stored message forward, never one that failed.
    fn moved_by(&self, kind: ReceiptKind) -> bool {
        match self {
            Delivery::Sent => true,
            Delivery::Delivered => kind == ReceiptKind::Read,
            _ => false,
        }
    }
}

/// A message as a room shows it.
pub struct Message<C: Channel> {
    /// Client message id.
    pub id: String,
    /// Seq in the room, once known.
    pub seq: Option<u64>,
    /// Who sent it; for our own messages shown while sending, ourselves as we know us.
    pub from: User,
    /// The message as the channel's type, or, for a body written by a client built
    /// with another version of the contract, what it was and why it does not read.
    pub body: Result<C::Message, Undecodable>,
    /// Server time, once stored.
    pub ts: Option<Millis>,
    /// Whether it is ours, and how far it got.
    pub mine: bool,
    /// Delivery status (meaningful for our own messages).
    pub delivery: Delivery<C::Error>,
}

// By hand: a derive would ask the channel's marker type to be `Clone` and `PartialEq`
// too, and only what the channel carries needs to be.
impl<C: Channel> Clone for Message<C> {
    fn clone(&self) -> Self {
        Message {
            id: self.id.clone(),
            seq: self.seq,
            from: self.from.clone(),
            body: self.body.clone(),
            ts: self.ts,
            mine: self.mine,
            delivery: self.delivery.clone(),
        }
    }
}

impl<C: Channel> PartialEq for Message<C> {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.seq == other.seq
            && self.from == other.from
            && self.body == other.body
            && self.ts == other.ts
            && self.mine == other.mine
            && self.delivery == other.delivery
    }
}

impl<C: Channel> fmt::Debug for Message<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id)
            .field("seq", &self.seq)
            .field("from", &self.from.id)
            .field("body", &self.body)
            .field("ts", &self.ts)
            .field("mine", &self.mine)
            .field("delivery", &self.delivery)
            .finish()
    }
}

impl<C: Channel> Message<C> {
    /// One of ours, not yet acked: just sent, or still queued from before a reload.
    pub(crate) fn sending(id: String, from: User, body: Result<C::Message, Undecodable>) -> Self {
        Message { id, seq: None, from, body, ts: None, mine: true, delivery: Delivery::Sending }
    }
}

/// Most messages a room keeps; older ones are let go so long sessions stay smooth.
pub const MAX_KEPT: usize = 1_000;

/// A room's state as the hooks see it.
///
/// Each message sits behind its own `Rc`: a render takes a snapshot of the view, and
/// that costs a pointer per message instead of a deep copy, while a message that
/// changes (an ack, a receipt) is copied alone ([`Rc::make_mut`]) and so is the only
/// one whose component renders again.
pub struct RoomView<C: Channel> {
    /// Messages in order.
    pub messages: Vec<Rc<Message<C>>>,
    /// Members present, one per user, in id order, with their metadata. In a big room
    /// ([`PresenceMode::Count`](tether_shared::PresenceMode::Count)) this is the first
    /// page the hook asked for, not everyone: show [`RoomInfo::count`].
    pub members: Vec<Member<C>>,
    /// Why our join was refused, until the server confirms a join again.
    pub join_failure: Option<Failure<C::Error>>,
    /// Everything else: presence mode and count, typing, the seq reached, joins, replays.
    pub info: RoomInfo,
}

impl<C: Channel> Default for RoomView<C> {
    fn default() -> Self {
        RoomView { messages: Vec::new(), members: Vec::new(), join_failure: None, info: RoomInfo::default() }
    }
}

impl<C: Channel> Clone for RoomView<C> {
    fn clone(&self) -> Self {
        RoomView {
            messages: self.messages.clone(),
            members: self.members.clone(),
            join_failure: self.join_failure.clone(),
            info: self.info.clone(),
        }
    }
}

impl<C: Channel> RoomView<C> {
    fn apply(&mut self, room: &str, me: Option<&str>, events: &[Event]) {
        self.info.batches += 1;
        for event in events {
            // The typed part first: a message's echo is recognised by its seq before
            // the bookkeeping moves the room's seq past it.
            if let Some(typed) = ChannelEvent::<C>::read(room, event) {
                self.apply_typed(me, typed);
            }
            match self.info.apply(room, me, event) {
                Effect::None => {}
                Effect::Fail { id, why } => self.settle(id, Delivery::Failed(why)),
                Effect::Receipt { kind, seq } => self.receipt(kind, seq),
                Effect::Page(members) => self.members = members.iter().map(Member::of).collect(),
            }
        }
        if self.messages.len() > MAX_KEPT {
            let excess = self.messages.len() - MAX_KEPT;
            self.messages.drain(..excess);
        }
    }

    fn apply_typed(&mut self, me: Option<&str>, event: ChannelEvent<C>) {
        match event {
            ChannelEvent::Message { seq, id, from, body, ts } => {
                if seq <= self.info.last_seq && self.messages.iter().any(|m| m.seq == Some(seq)) {
                    return;
                }
                let mine = me == Some(from.id.as_str());
                // Only our own messages can already be here (shown while sending).
                match if mine { self.mine_mut(&id) } else { None } {
                    Some(existing) => {
                        existing.seq = Some(seq);
                        existing.ts = Some(ts);
                        // The server's word on who sent it (name and colour), so our
                        // own messages look here as they look on everyone else's
                        // screen, even those shown before we were welcomed.
                        if existing.from != from {
                            existing.from = from;
                        }
                        if matches!(existing.delivery, Delivery::Sending) {
                            existing.delivery = Delivery::Sent;
                        }
                    }
                    None => self.messages.push(Rc::new(Message {
                        id,
                        seq: Some(seq),
                        from,
                        body,
                        ts: Some(ts),
                        mine,
                        delivery: Delivery::Sent,
                    })),
                }
            }
            ChannelEvent::Acked { id, seq, ts } => {
                if let Some(message) = self.mine_mut(&id) {
                    message.seq = Some(seq);
                    message.ts = Some(ts);
                    if matches!(message.delivery, Delivery::Sending) {
                        message.delivery = Delivery::Sent;
                    }
                }
            }
            ChannelEvent::Failed { id, failure } => {
                let delivery = match failure {
                    Failure::Refused(error) => Delivery::Refused(error),
                    Failure::Failed { message, .. } => Delivery::Failed(message),
                };
                self.settle(&id, delivery);
            }
            ChannelEvent::Joined { members, .. } => {
                self.members = members;
                self.join_failure = None;
            }
            ChannelEvent::JoinFailed(failure) => self.join_failure = Some(failure),
            ChannelEvent::Presence { joined, left, snapshot, .. } => {
                if snapshot {
                    self.members.clear();
                }
                self.members
                    .retain(|m| !left.contains(&m.user.id) && !joined.iter().any(|j| j.user.id == m.user.id));
                self.members.extend(joined);
                self.members.sort_by(|a, b| a.user.id.cmp(&b.user.id));
            }
            // Volatile state is `use_shared_state`'s.
            ChannelEvent::State { .. } => {}
        }
    }

    /// Our message `id` will not be delivered.
    fn settle(&mut self, id: &str, delivery: Delivery<C::Error>) {
        if let Some(message) = self.mine_mut(id) {
            message.delivery = delivery;
        }
    }

    /// Another member got (or read) everything up to `seq`: our stored messages up to
    /// it move on.
    fn receipt(&mut self, kind: ReceiptKind, seq: u64) {
        let reached = match kind {
            ReceiptKind::Delivered => Delivery::Delivered,
            ReceiptKind::Read => Delivery::Read,
        };
        for message in self.messages.iter_mut() {
            if message.mine && message.seq.is_some_and(|s| s <= seq) && message.delivery.moved_by(kind) {
                Rc::make_mut(message).delivery = reached.clone();
            }
        }
    }

    /// Our own message `id`, to change (copied first if a render still holds it).
    /// Searched from the newest: acks and echoes are for recent messages.
    fn mine_mut(&mut self, id: &str) -> Option<&mut Message<C>> {
        self.messages.iter_mut().rev().find(|m| m.mine && m.id == id).map(Rc::make_mut)
    }
}

/// What changes a room's view: everything goes through [`RoomView`]'s reducer.
pub enum RoomAction<C: Channel> {
    /// Start over (a new room or link), with our messages still queued from before a
    /// reload shown as sending.
    Reset(Vec<Rc<Message<C>>>),
    /// A batch of the link's events that concerns the room, and who we are.
    Events {
        /// The room's name.
        room: Rc<str>,
        /// Our user id, once welcomed.
        me: Option<String>,
        /// The batch, shared with the link's other subscribers.
        events: Rc<[Event]>,
    },
    /// One of ours, shown at once as sending.
    Sending(Rc<Message<C>>),
}

impl<C: Channel> Reducible for RoomView<C> {
    type Action = RoomAction<C>;

    fn reduce(self: Rc<Self>, action: RoomAction<C>) -> Rc<Self> {
        // Copies the view only if a render still holds it; messages are shared either way.
        let mut view = Rc::unwrap_or_clone(self);
        match action {
            RoomAction::Reset(pending) => view = RoomView { messages: pending, ..RoomView::default() },
            RoomAction::Events { room, me, events } => view.apply(&room, me.as_deref(), &events),
            RoomAction::Sending(message) => view.messages.push(message),
        }
        Rc::new(view)
    }
}
