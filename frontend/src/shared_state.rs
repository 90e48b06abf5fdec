//! `use_shared_state`: volatile state in a room (cursors, selections), sent at most N
//! times a second and received as the latest value of every other member.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

use gloo_timers::callback::Timeout;
use serde_json::Value;
use tether_shared::channel::{self, Channel, Undecodable};
use tether_shared::typed::ChannelEvent;
use tether_shared::{Event, Input, PresenceMode, ServerFrame, User};
use yew::prelude::*;

use crate::link::{Link, Subscription};
use crate::room::UseChannel;

/// A member's value as received: the channel's state type, or, from a client built
/// with another version of the contract, what it was and why it does not read.
pub type Received<S> = Result<S, Undecodable>;

/// The latest value of each member, by user id.
pub type Others<S> = BTreeMap<String, (User, Received<S>)>;

/// What [`use_shared_state`] gives a component.
pub struct UseSharedState<C: Channel> {
    /// The latest value of every other member present, by user id. A member who
    /// cleared their value is not here.
    pub others: Rc<Others<C::State>>,
    /// Sets this member's value (`Some`) or clears it (`None`, a cursor that left the
    /// area); throttled (see [`use_shared_state`]).
    pub set: Callback<Option<C::State>>,
}

// By hand: a derive would ask the channel's marker type to be `Clone`.
impl<C: Channel> Clone for UseSharedState<C> {
    fn clone(&self) -> Self {
        UseSharedState { others: self.others.clone(), set: self.set.clone() }
    }
}

/// The last value seen from each member, as a reducer; `None` for a member who
/// cleared theirs. (Kept as `None` rather than removed: the map's removal code is the
/// bigger part of it in the bundle, and a cleared value is dropped from `others`
/// anyway.)
struct Values<S> {
    values: BTreeMap<String, (User, Option<Received<S>>)>,
}

impl<S: Clone + 'static> Reducible for Values<S> {
    /// A member's new value, or `None` when they cleared it.
    type Action = (User, Option<Received<S>>);

    fn reduce(self: Rc<Self>, (user, value): Self::Action) -> Rc<Self> {
        let mut values = self.values.clone();
        values.insert(user.id.clone(), (user, value));
        Rc::new(Values { values })
    }
}

/// Shares a value of the channel's state type under `key` in `room` (joined by
/// [`crate::use_channel`]) and gives the latest value of every other member.
///
/// Setting sends at most `per_second` values; a value set in between waits and goes
/// when the interval is over, so the **last** value always arrives (a cursor that stops
/// moving shows where it stopped). Nothing is queued while offline: volatile state is
/// only worth its latest value. A member's value disappears when they clear it (on the
/// wire, a JSON `null`), and when presence says they left (in a room too big to list
/// its members, values are kept). Values are read by the same
/// [`ChannelEvent::read`] as messages: one that is not a `C::State` arrives as an
/// `Err(Undecodable)`.
#[hook]
pub fn use_shared_state<C: Channel>(room: &UseChannel<C>, key: &str, per_second: u32) -> UseSharedState<C> {
    let received = use_reducer(|| Values::<C::State> { values: BTreeMap::new() });
    let room_name = room.name();
    {
        let received = received.dispatcher();
        let key = key.to_owned();
        use_effect_with((room.link.clone(), room_name.clone(), key), move |(link, room, key)| {
            let subscription = states_of(
                link,
                room,
                key,
                Box::new(move |room, event| {
                    if let Some(ChannelEvent::State { from, value, .. }) =
                        ChannelEvent::<C>::read(room, event)
                    {
                        received.dispatch((from, value));
                    }
                }),
            );
            move || drop(subscription)
        });
    }
    let send = use_throttle(&room.link, &room_name, key, per_second);
    let set = use_callback(send, |value: Option<C::State>, send| {
        send.emit(value.as_ref().map_or(Value::Null, channel::encode));
    });
    let present: Option<HashSet<&str>> = (room.view.info.presence == PresenceMode::Full)
        .then(|| room.view.members.iter().map(|m| m.user.id.as_str()).collect());
    let me = room.link.status().user.map(|u| u.id);
    let others = received
        .values
        .iter()
        .filter(|(id, _)| Some(id.as_str()) != me.as_deref())
        .filter(|(id, _)| present.as_ref().is_none_or(|present| present.contains(id.as_str())))
        .filter_map(|(id, (user, value))| Some((id.clone(), (user.clone(), value.clone()?))))
        .collect();
    UseSharedState { others: Rc::new(others), set }
}

/// Takes a `state` event and the room it is about.
type OnState = Box<dyn Fn(&str, &Event)>;

/// Hands every `state` event of `room` under `key` to `deliver`, undecoded: only these
/// are read as the channel's type, not the room's messages beside them. Apart from the
/// typed hook, and given a boxed closure rather than a generic one, so that it is
/// compiled once.
fn states_of(link: &Link, room: &str, key: &str, deliver: OnState) -> Subscription {
    let (room, key) = (room.to_owned(), key.to_owned());
    link.subscribe(move |events, _| {
        for event in events.iter() {
            if let Event::Frame(ServerFrame::State { room: r, key: k, .. }) = event
                && *r == room
                && *k == key
            {
                deliver(&room, event);
            }
        }
    })
}

/// Sends this member's value under `key` in `room`, at most `per_second` times a
/// second with the last value always going. A JSON null clears it.
#[hook]
fn use_throttle(link: &Link, room: &str, key: &str, per_second: u32) -> Callback<Value> {
    let throttle = use_mut_ref(Throttle::default);
    let (link, room, key) = (link.clone(), room.to_owned(), key.to_owned());
    let interval = Duration::from_millis(1_000 / u64::from(per_second.max(1)));
    use_callback((link, room, key, interval), move |value: Value, (link, room, key, interval)| {
        let send = {
            let (link, room, key) = (link.clone(), room.clone(), key.clone());
            Rc::new(move |value: Value| {
                link.handle(Input::State { room: room.clone(), key: key.clone(), value });
            })
        };
        Throttle::set(&throttle, value, *interval, send);
    })
}

/// At most one value per interval, and the last one always sent.
#[derive(Default)]
struct Throttle {
    /// When a value last went (ms, the page's clock).
    last_sent: Cell<f64>,
    /// The value waiting for the interval to end.
    pending: RefCell<Option<Value>>,
    /// The timeout that sends it.
    timer: RefCell<Option<Timeout>>,
}

impl Throttle {
    fn set(this: &Rc<RefCell<Throttle>>, value: Value, interval: Duration, send: Rc<dyn Fn(Value)>) {
        let throttle = this.borrow();
        let now = js_sys::Date::now();
        let wait = interval.as_millis() as f64 - (now - throttle.last_sent.get());
        if wait <= 0.0 && throttle.timer.borrow().is_none() {
            throttle.last_sent.set(now);
            send(value);
            return;
        }
        *throttle.pending.borrow_mut() = Some(value);
        if throttle.timer.borrow().is_some() {
            return;
        }
        let weak = Rc::downgrade(this);
        let timer = Timeout::new(wait.max(0.0) as u32, move || {
            let Some(this) = weak.upgrade() else { return };
            let throttle = this.borrow();
            throttle.timer.borrow_mut().take();
            if let Some(value) = throttle.pending.borrow_mut().take() {
                throttle.last_sent.set(js_sys::Date::now());
                send(value);
            }
        });
        *throttle.timer.borrow_mut() = Some(timer);
    }
}
