//! Room hooks: a channel's messages with delivery ticks, its members with their
//! metadata, typing, and a refused join.
//!
//! [`use_channel`] follows a room as a [`Channel`]'s: bodies come typed as the channel's
//! message, or as an [`Undecodable`](tether_shared::channel::Undecodable) in the
//! message's place when a peer built with another version of the contract wrote them.
//! [`use_room`] is the same hook over the [`Json`] channel, any JSON, as rooms were
//! before channels.

mod info;
mod view;

use std::cell::RefCell;
use std::rc::Rc;

use gloo_timers::callback::Interval;
use tether_shared::channel::{self, Channel, Json, Requests};
use tether_shared::typed::{Answer, Failure, Member, answer_of};
use tether_shared::{Event, Input, Millis, PresenceMode, ReceiptKind, User};
use yew::prelude::*;

use crate::hooks::use_link;
use crate::link::{Link, RoomLease, Subscription};

pub use info::RoomInfo;
pub use view::{Delivery, MAX_KEPT, Message, RoomAction, RoomView};

use info::concerns;

/// Members fetched to show beside the count in a big room.
pub const PRESENCE_SAMPLE: u32 = 20;

/// How long a typing indicator lasts without a refresh.
pub const TYPING_TTL_MS: u64 = 6_000;
/// How often an active typist re-announces.
const TYPING_REFRESH_MS: u64 = 3_000;

/// What [`use_channel`] returns.
pub struct UseChannel<C: Channel> {
    /// The room's view as of this render.
    pub view: UseReducerHandle<RoomView<C>>,
    /// The link the room is followed on, for its status (who we are, whether we are
    /// connected).
    pub link: Link,
    room: AttrValue,
    last_typing: Rc<RefCell<u64>>,
}

/// What [`use_room`] returns: a room of any JSON.
pub type UseRoom = UseChannel<Json>;

// By hand: a derive would ask the channel's marker type to be `Clone`.
impl<C: Channel> Clone for UseChannel<C> {
    fn clone(&self) -> Self {
        UseChannel {
            view: self.view.clone(),
            link: self.link.clone(),
            room: self.room.clone(),
            last_typing: self.last_typing.clone(),
        }
    }
}

fn placeholder_me(link: &Link) -> User {
    link.status().user.unwrap_or_else(|| User::new(String::new(), "me", "#888"))
}

impl<C: Requests> UseChannel<C> {
    /// Asks the room's channel a question and resolves to its typed answer: the reply,
    /// the app's refusal, or why there is none (timed out, disconnected, a reply that
    /// does not decode). Never stored or seen by others. If the connection drops while
    /// it is on the wire, it fails as [`RequestError::Disconnected`](tether_shared::typed::RequestError::Disconnected): use
    /// [`UseChannel::request_idempotent`] for questions that are safe to ask twice.
    pub fn request(&self, request: C::Request) -> impl std::future::Future<Output = Answer<C>> + 'static {
        self.ask(request, false)
    }

    /// As [`UseChannel::request`], for a question that is safe to ask twice: sent
    /// again after a reconnect under the same id, and answered once.
    pub fn request_idempotent(
        &self,
        request: C::Request,
    ) -> impl std::future::Future<Output = Answer<C>> + 'static {
        self.ask(request, true)
    }

    /// As [`UseChannel::request`], with the answer handed to `then` (for event handlers
    /// that want no future).
    pub fn request_then(&self, request: C::Request, then: Callback<Answer<C>>) {
        let answer = self.request(request);
        wasm_bindgen_futures::spawn_local(async move { then.emit(answer.await) });
    }

    fn ask(
        &self,
        request: C::Request,
        idempotent: bool,
    ) -> impl std::future::Future<Output = Answer<C>> + 'static {
        let asked = self.link.request(&self.room, channel::encode(&request), idempotent);
        async move { answer_of::<C>(asked.await.as_ref()) }
    }
}

impl<C: Channel> UseChannel<C> {
    /// Sends a message; it shows at once as "sending" and moves on with acks, receipts,
    /// or the server's refusal ([`Delivery::Refused`] with the channel's error).
    /// Returns its id.
    pub fn send(&self, message: C::Message) -> String {
        let id = self.link.publish(&self.room, channel::encode(&message));
        let sending = Message::sending(id.clone(), placeholder_me(&self.link), Ok(message));
        self.view.dispatch(RoomAction::Sending(Rc::new(sending)));
        stopped_typing(&self.link, &self.room, &self.last_typing);
        id
    }

    /// Who else is typing right now: indicators older than [`TYPING_TTL_MS`] have
    /// expired, and our own never shows. [`use_typing`] re-renders as they expire.
    pub fn typists(&self) -> Vec<User> {
        typists(&self.link, &self.view.info)
    }

    /// Who is here, with their metadata, and how many. Big rooms tell only the count,
    /// and [`use_channel`] fetches a first page of faces to show beside it; small ones
    /// list everyone.
    pub fn presence(&self) -> Presence<C> {
        Presence {
            members: self.view.members.clone(),
            count: self.view.info.count,
            mode: self.view.info.presence,
        }
    }

    /// Why the server refused our join (the app's join handler with the channel's
    /// error, or the server's own checks); `None` once a join is confirmed again.
    pub fn join_failure(&self) -> Option<Failure<C::Error>> {
        self.view.join_failure.clone()
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
        typing(&self.link, &self.room, &self.last_typing);
    }

    /// Call when the message is sent or the field is cleared.
    pub fn stopped_typing(&self) {
        stopped_typing(&self.link, &self.room, &self.last_typing);
    }
}

fn typists(link: &Link, info: &RoomInfo) -> Vec<User> {
    let me = link.status().user.map(|user| user.id);
    let cutoff = Millis::now().0.saturating_sub(TYPING_TTL_MS);
    info.typing
        .values()
        .filter(|(user, at)| at.0 >= cutoff && Some(&user.id) != me.as_ref())
        .map(|(user, _)| user.clone())
        .collect()
}

fn typing(link: &Link, room: &str, last_typing: &RefCell<u64>) {
    let at = Millis::now().0;
    let last = *last_typing.borrow();
    if at.saturating_sub(last) >= TYPING_REFRESH_MS {
        *last_typing.borrow_mut() = at;
        link.handle(Input::Typing { room: room.to_owned(), active: true });
    }
}

fn stopped_typing(link: &Link, room: &str, last_typing: &RefCell<u64>) {
    if last_typing.replace(0) != 0 {
        link.handle(Input::Typing { room: room.to_owned(), active: false });
    }
}

/// Joins `room` while mounted and follows it as a room of channel `C`: messages as
/// `C::Message` with delivery status, members with `C::Meta`, typing, a refused join,
/// and whether a resume was complete. Messages from others are acknowledged as
/// delivered automatically.
///
/// A body that is not a `C::Message` (sent by a client built with another version of
/// the contract, or to a room the server does not check) arrives in its place as an
/// `Err(Undecodable)` with the raw value: never a panic, never dropped.
#[hook]
pub fn use_channel<C: Channel>(room: AttrValue) -> UseChannel<C> {
    let link = use_link(None, None);
    let view = use_reducer(RoomView::<C>::default);
    let last_typing = use_mut_ref(|| 0u64);
    {
        let view = view.dispatcher();
        use_effect_with((link.clone(), room.clone()), move |(link, room)| {
            // Messages still queued from before a reload show as sending, their bodies
            // read by the same `decode` as every message.
            let pending = link
                .queued_in(room)
                .into_iter()
                .map(|envelope| {
                    let body = channel::decode(&envelope.body);
                    Rc::new(Message::sending(envelope.id, placeholder_me(link), body))
                })
                .collect();
            view.dispatch(RoomAction::Reset(pending));
            let following = follow(
                link,
                room,
                Box::new(move |room, me, events| view.dispatch(RoomAction::Events { room, me, events })),
            );
            move || drop(following)
        });
    }
    use_member_sample(&link, &room, view.info.presence, view.info.joins);
    UseChannel { view, link, room, last_typing }
}

/// [`use_channel`] over the [`Json`] channel: any JSON, as rooms were before channels,
/// for apps without a contract and rooms no channel covers.
#[hook]
pub fn use_room(room: AttrValue) -> UseRoom {
    use_channel::<Json>(room)
}

/// Holds a room joined and its events subscribed until dropped (the subscription goes
/// first, then the room is left: fields drop in order).
struct Following {
    _subscription: Subscription,
    _lease: RoomLease,
}

/// Takes a batch of events about a room: the room's name, our user id, the batch.
type Deliver = Box<dyn Fn(Rc<str>, Option<String>, Rc<[Event]>)>;

/// Joins `room` and hands every batch of events about it, with our user id, to
/// `deliver`. Apart from the typed hook, and given a boxed closure rather than a generic
/// one, so that it is compiled once.
fn follow(link: &Link, room: &str, deliver: Deliver) -> Following {
    let lease = link.join(room);
    let room: Rc<str> = Rc::from(room);
    let subscription = link.subscribe(move |events, status| {
        if events.iter().any(|event| concerns(event, &room)) {
            let me = status.user.as_ref().map(|user| user.id.clone());
            deliver(room.clone(), me, events.clone());
        }
    });
    Following { _subscription: subscription, _lease: lease }
}

/// A big room: on entering count mode, and on every join confirmed in it, fetches a
/// first page so there are faces beside the count.
#[hook]
fn use_member_sample(link: &Link, room: &AttrValue, presence: PresenceMode, joins: u64) {
    let (link, room) = (link.clone(), room.clone());
    use_effect_with((presence, joins), move |(presence, _)| {
        if *presence == PresenceMode::Count {
            link.handle(Input::Members { room: room.to_string(), after: None, limit: Some(PRESENCE_SAMPLE) });
        }
    });
}

/// Who is in a room, as [`UseChannel::presence`] tells it.
pub struct Presence<C: Channel> {
    /// Everyone, one entry per user, in id order, with what the server's join handler
    /// attached; in a big room only a first page.
    pub members: Vec<Member<C>>,
    /// How many users are present (always right, in both modes).
    pub count: usize,
    /// [`PresenceMode::Count`] when the room is too big to list.
    pub mode: PresenceMode,
}

impl<C: Channel> Clone for Presence<C> {
    fn clone(&self) -> Self {
        Presence { members: self.members.clone(), count: self.count, mode: self.mode }
    }
}

impl<C: Channel> PartialEq for Presence<C> {
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count && self.mode == other.mode && self.members == other.members
    }
}

impl<C: Channel> std::fmt::Debug for Presence<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let members: Vec<(&str, &Result<C::Meta, _>)> =
            self.members.iter().map(|m| (m.user.id.as_str(), &m.meta)).collect();
        f.debug_struct("Presence")
            .field("members", &members)
            .field("count", &self.count)
            .field("mode", &self.mode)
            .finish()
    }
}

/// Who else is typing in a followed room right now ([`UseChannel::typists`]),
/// re-rendering the component as indicators expire. A selector over the room's one
/// subscription, so a component that shows typing beside messages joins and listens
/// once.
#[hook]
pub fn use_typing<C: Channel>(room: &UseChannel<C>) -> Vec<User> {
    use_typists(&room.link, &room.view.info)
}

#[hook]
fn use_typists(link: &Link, info: &RoomInfo) -> Vec<User> {
    let tick = use_state(|| 0u32);
    {
        let tick = tick.clone();
        let anyone = !info.typing.is_empty();
        use_effect_with(anyone, move |anyone| {
            let interval = anyone.then(|| Interval::new(1_000, move || tick.set(tick.wrapping_add(1))));
            move || drop(interval)
        });
    }
    typists(link, info)
}
