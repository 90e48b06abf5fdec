//! Room hooks: messages with delivery ticks, presence, and typing.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use gloo_timers::callback::Interval;
use serde_json::Value;
use tether_shared::{DropReason, Event, Input, Millis, PresenceMode, ReceiptKind, ServerFrame, User};
use yew::prelude::*;

use crate::hooks::use_link;
use crate::link::{Link, RoomLease};

/// Where a message is on its way.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Delivery {
    /// Queued or on the wire, not yet acked.
    Sending,
    /// Stored by the server (acked).
    Sent,
    /// Another member's device has it.
    Delivered,
    /// Another member has seen it.
    Read,
    /// Will not be delivered; the reason, in words.
    Failed(String),
}

/// A message as a room shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatMessage {
    /// Client message id.
    pub id: String,
    /// Seq in the room, once known.
    pub seq: Option<u64>,
    /// Who sent it; for our own messages shown while sending, ourselves as we know us.
    pub from: User,
    /// The message itself, any JSON value (the demo reads `text`).
    pub body: Value,
    /// Server time, once stored.
    pub ts: Option<Millis>,
    /// Whether it is ours, and how far it got.
    pub mine: bool,
    /// Delivery status (meaningful for our own messages).
    pub delivery: Delivery,
}

/// Most messages a room keeps; older ones are let go so long sessions stay smooth.
pub const MAX_KEPT: usize = 1_000;

/// A room's state as the hooks see it.
///
/// Each message sits behind its own `Rc`: a render takes a snapshot of the view, and
/// that costs a pointer per message instead of a deep copy, while a message that
/// changes (an ack, a receipt) is copied alone ([`Rc::make_mut`]) and so is the only
/// one whose component renders again.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoomView {
    /// Messages in order.
    pub messages: Vec<Rc<ChatMessage>>,
    /// After a resume: whether the replay covered everything (`Some(false)` means a gap).
    pub replay_complete: Option<bool>,
    /// Members present, one per user. In a big room ([`PresenceMode::Count`]) this is
    /// the first page the hook asked for, not everyone: show [`RoomView::count`].
    pub members: Vec<User>,
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

impl RoomView {
    fn apply(&mut self, room: &str, me: Option<&str>, events: &[Event]) {
        self.batches += 1;
        for event in events {
            match event {
                Event::Frame(ServerFrame::Message { room: r, seq, id, from, body, ts }) if r == room => {
                    if *seq <= self.last_seq && self.messages.iter().any(|m| m.seq == Some(*seq)) {
                        continue;
                    }
                    self.last_seq = self.last_seq.max(*seq);
                    let mine = me == Some(from.id.as_str());
                    // Only our own messages can already be here (shown while sending).
                    let existing = if mine { self.mine_mut(id) } else { None };
                    match existing {
                        Some(existing) => {
                            existing.seq = Some(*seq);
                            existing.ts = Some(*ts);
                            // The server's word on who sent it (name and colour), so our
                            // own messages look here as they look on everyone else's
                            // screen, even those shown before we were welcomed.
                            if existing.from != *from {
                                existing.from = from.clone();
                            }
                            if existing.delivery == Delivery::Sending {
                                existing.delivery = Delivery::Sent;
                            }
                        }
                        None => self.messages.push(Rc::new(ChatMessage {
                            id: id.clone(),
                            seq: Some(*seq),
                            from: from.clone(),
                            body: body.clone(),
                            ts: Some(*ts),
                            mine,
                            delivery: Delivery::Sent,
                        })),
                    }
                    self.typing.remove(&from.id);
                }
                Event::Acked { envelope, seq, ts } if envelope.room == room => {
                    if let Some(message) = self.mine_mut(&envelope.id) {
                        message.seq = Some(*seq);
                        message.ts = Some(*ts);
                        if message.delivery == Delivery::Sending {
                            message.delivery = Delivery::Sent;
                        }
                    }
                }
                Event::Rejected { envelope, message, will_retry: false, .. } if envelope.room == room => {
                    self.fail(&envelope.id, message.clone());
                }
                Event::Dropped(dropped) if dropped.envelope.room == room => {
                    let why = match dropped.reason {
                        DropReason::Overflow => "the send queue was full",
                        DropReason::Expired => "it waited too long to be sent",
                    };
                    self.fail(&dropped.envelope.id, why.into());
                }
                Event::Refused { id, error } => self.fail(id, error.to_string()),
                Event::Frame(ServerFrame::Receipt { room: r, user, kind, seq })
                    if r == room && me != Some(user) =>
                {
                    let reached = match kind {
                        ReceiptKind::Delivered => Delivery::Delivered,
                        ReceiptKind::Read => Delivery::Read,
                    };
                    for message in self.messages.iter_mut() {
                        let behind = message.mine
                            && message.seq.is_some_and(|s| s <= *seq)
                            && matches!(message.delivery, Delivery::Sent | Delivery::Delivered)
                            && message.delivery < reached;
                        if behind {
                            Rc::make_mut(message).delivery = reached.clone();
                        }
                    }
                }
                Event::Frame(ServerFrame::Replayed { room: r, complete, .. }) if r == room => {
                    self.replay_complete = Some(*complete);
                }
                Event::Frame(ServerFrame::Joined { room: r, members, seq, count, presence, .. })
                    if r == room =>
                {
                    self.joins += 1;
                    self.members = members.clone();
                    self.count = *count;
                    self.presence = *presence;
                    if self.last_seq == 0 {
                        self.last_seq = *seq;
                    }
                }
                Event::Frame(ServerFrame::Presence { room: r, joined, left, count, snapshot })
                    if r == room =>
                {
                    if *snapshot {
                        self.members.clear();
                    }
                    self.members.retain(|m| !left.contains(&m.id) && !joined.iter().any(|j| j.id == m.id));
                    self.members.extend(joined.iter().cloned());
                    self.members.sort_by(|a, b| a.id.cmp(&b.id));
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
                    self.members = members.clone();
                    self.count = *count;
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
        }
        if self.messages.len() > MAX_KEPT {
            let excess = self.messages.len() - MAX_KEPT;
            self.messages.drain(..excess);
        }
    }

    fn fail(&mut self, id: &str, why: String) {
        if let Some(message) = self.mine_mut(id) {
            message.delivery = Delivery::Failed(why);
        }
    }

    /// Our own message `id`, to change (copied first if a render still holds it).
    /// Searched from the newest: acks and echoes are for recent messages.
    fn mine_mut(&mut self, id: &str) -> Option<&mut ChatMessage> {
        self.messages.iter_mut().rev().find(|m| m.mine && m.id == id).map(Rc::make_mut)
    }
}

/// Members fetched to show beside the count in a big room.
pub const PRESENCE_SAMPLE: u32 = 20;

/// How long a typing indicator lasts without a refresh.
pub const TYPING_TTL_MS: u64 = 6_000;
/// How often an active typist re-announces.
const TYPING_REFRESH_MS: u64 = 3_000;

/// What changes a room's view: everything goes through [`RoomView`]'s reducer.
pub enum RoomAction {
    /// Start over (a new room or link), with our messages still queued from before a
    /// reload shown as sending.
    Reset(Vec<Rc<ChatMessage>>),
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
    Sending(Rc<ChatMessage>),
}

impl Reducible for RoomView {
    type Action = RoomAction;

    fn reduce(self: Rc<Self>, action: RoomAction) -> Rc<Self> {
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

/// What [`use_room`] returns.
#[derive(Clone)]
pub struct UseRoom {
    /// The room's view as of this render.
    pub view: UseReducerHandle<RoomView>,
    /// The link the room is followed on, for its status (who we are, whether we are
    /// connected).
    pub link: Link,
    room: AttrValue,
    last_typing: Rc<RefCell<u64>>,
}

fn placeholder_me(link: &Link) -> User {
    link.status().user.unwrap_or_else(|| User::new(String::new(), "me", "#888"))
}

impl UseRoom {
    /// Sends a message; it shows at once as "sending" and moves on with acks and receipts.
    pub fn send(&self, body: Value) -> String {
        let id = self.link.publish(&self.room, body.clone());
        self.view.dispatch(RoomAction::Sending(Rc::new(ChatMessage {
            id: id.clone(),
            seq: None,
            from: placeholder_me(&self.link),
            body,
            ts: None,
            mine: true,
            delivery: Delivery::Sending,
        })));
        self.stopped_typing();
        id
    }

    /// Who else is typing right now: indicators older than [`TYPING_TTL_MS`] have
    /// expired, and our own never shows. [`use_typing`] re-renders as they expire.
    pub fn typists(&self) -> Vec<User> {
        let me = self.link.status().user.map(|user| user.id);
        let cutoff = Millis::now().0.saturating_sub(TYPING_TTL_MS);
        self.view
            .typing
            .values()
            .filter(|(user, at)| at.0 >= cutoff && Some(&user.id) != me.as_ref())
            .map(|(user, _)| user.clone())
            .collect()
    }

    /// Who is here and how many. Big rooms tell only the count, and [`use_room`] fetches
    /// a first page of faces to show beside it; small ones list everyone.
    pub fn presence(&self) -> Presence {
        Presence { members: self.view.members.clone(), count: self.view.count, mode: self.view.presence }
    }

    /// The room's name.
    pub fn name(&self) -> AttrValue {
        self.room.clone()
    }

    /// Tells the room we have read everything up to `seq`.
    pub fn mark_read(&self, seq: u64) {
        self.link.handle(Input::Receipt { room: self.room.to_string(), kind: ReceiptKind::Read, seq });
    }

    /// Call on every keystroke: announces typing at most every few seconds.
    pub fn typing(&self) {
        let at = Millis::now().0;
        let last = *self.last_typing.borrow();
        if at.saturating_sub(last) >= TYPING_REFRESH_MS {
            *self.last_typing.borrow_mut() = at;
            self.link.handle(Input::Typing { room: self.room.to_string(), active: true });
        }
    }

    /// Call when the message is sent or the field is cleared.
    pub fn stopped_typing(&self) {
        if self.last_typing.replace(0) != 0 {
            self.link.handle(Input::Typing { room: self.room.to_string(), active: false });
        }
    }
}

/// Joins `room` while mounted and follows it: messages with delivery status, presence,
/// typing, and whether a resume was complete. Messages from others are acknowledged as
/// delivered automatically.
#[hook]
pub fn use_room(room: AttrValue) -> UseRoom {
    let link = use_link(None, None);
    let view = use_reducer(RoomView::default);
    let last_typing = use_mut_ref(|| 0u64);
    {
        let view = view.dispatcher();
        use_effect_with((link.clone(), room.clone()), move |(link, room)| {
            // Messages still queued from before a reload show as sending.
            let pending: Vec<Rc<ChatMessage>> = link
                .queued_in(room)
                .into_iter()
                .map(|envelope| ChatMessage {
                    id: envelope.id,
                    seq: None,
                    from: placeholder_me(link),
                    body: envelope.body,
                    ts: None,
                    mine: true,
                    delivery: Delivery::Sending,
                })
                .map(Rc::new)
                .collect();
            view.dispatch(RoomAction::Reset(pending));
            let lease: RoomLease = link.join(room);
            let room_name: Rc<str> = Rc::from(room.as_str());
            let subscription = link.subscribe(move |events, status| {
                if !events.iter().any(|event| concerns(event, &room_name)) {
                    return;
                }
                let me = status.user.as_ref().map(|user| user.id.clone());
                view.dispatch(RoomAction::Events { room: room_name.clone(), me, events: events.clone() });
            });
            move || {
                drop(subscription);
                drop(lease);
            }
        });
    }
    {
        // A big room: on entering count mode, and on every join confirmed in it, fetch a
        // first page so there are faces beside the count.
        let (link, room) = (link.clone(), room.clone());
        use_effect_with((view.presence, view.joins), move |(presence, _)| {
            if *presence == PresenceMode::Count {
                link.handle(Input::Members {
                    room: room.to_string(),
                    after: None,
                    limit: Some(PRESENCE_SAMPLE),
                });
            }
        });
    }
    UseRoom { view, link, room, last_typing }
}

/// Whether `event` has anything to do with `room` (an outbox refusal names no room, so
/// every room hears of it).
fn concerns(event: &Event, room: &str) -> bool {
    match event {
        Event::Frame(frame) => frame.room().is_none_or(|r| r == room),
        Event::Acked { envelope, .. } | Event::Rejected { envelope, .. } => envelope.room == room,
        Event::Dropped(dropped) => dropped.envelope.room == room,
        Event::Refused { .. } => true,
        Event::State(_) | Event::Welcome { .. } | Event::Queue { .. } | Event::RoundTrip { .. } => false,
    }
}

/// Who is in a room, as [`UseRoom::presence`] tells it.
#[derive(Clone, Debug, PartialEq)]
pub struct Presence {
    /// Everyone, one entry per user, in id order; in a big room only a first page.
    pub members: Vec<User>,
    /// How many users are present (always right, in both modes).
    pub count: usize,
    /// [`PresenceMode::Count`] when the room is too big to list.
    pub mode: PresenceMode,
}

/// Who else is typing in a followed room right now ([`UseRoom::typists`]), re-rendering
/// the component as indicators expire. A selector over the room's one subscription, so
/// a component that shows typing beside messages joins and listens once.
#[hook]
pub fn use_typing(room: &UseRoom) -> Vec<User> {
    let tick = use_state(|| 0u32);
    {
        let tick = tick.clone();
        let anyone = !room.view.typing.is_empty();
        use_effect_with(anyone, move |anyone| {
            let interval = anyone.then(|| Interval::new(1_000, move || tick.set(tick.wrapping_add(1))));
            move || drop(interval)
        });
    }
    room.typists()
}
