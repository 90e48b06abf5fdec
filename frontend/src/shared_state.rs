//! `use_shared_state`: volatile state in a room (cursors, selections), sent at most N
//! times a second and received as the latest value of every other member.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use gloo_timers::callback::Timeout;
use serde_json::Value;
use tether_shared::{Event, Input, PresenceMode, ServerFrame, User};
use yew::prelude::*;

use crate::room::UseRoom;

/// What [`use_shared_state`] gives a component.
#[derive(Clone)]
pub struct UseSharedState {
    /// The latest value of every other member present, by user id.
    pub others: Rc<BTreeMap<String, (User, Value)>>,
    /// Sets this member's value; throttled (see [`use_shared_state`]).
    pub set: Callback<Value>,
}

/// The last value seen from each member, as a reducer.
#[derive(Default, PartialEq)]
struct Received {
    values: BTreeMap<String, (User, Value)>,
}

impl Reducible for Received {
    type Action = (User, Value);

    fn reduce(self: Rc<Self>, (user, value): Self::Action) -> Rc<Self> {
        let mut values = self.values.clone();
        values.insert(user.id.clone(), (user, value));
        Rc::new(Received { values })
    }
}

/// Shares a value under `key` in `room` (joined by [`crate::use_room`]) and gives the
/// latest value of every other member.
///
/// Setting sends at most `per_second` values; a value set in between waits and goes
/// when the interval is over, so the **last** value always arrives (a cursor that stops
/// moving shows where it stopped). Nothing is queued while offline: volatile state is
/// only worth its latest value. A member's value disappears when presence says they
/// left (in a room too big to list its members, values are kept).
#[hook]
pub fn use_shared_state(room: &UseRoom, key: &str, per_second: u32) -> UseSharedState {
    let received = use_reducer(Received::default);
    let room_name = room.name();
    {
        let received = received.dispatcher();
        let key = key.to_owned();
        use_effect_with((room.link.clone(), room_name.clone(), key), move |(link, room, key)| {
            let (room, key) = (room.to_string(), key.clone());
            let subscription = link.subscribe(move |events, _| {
                for event in events.iter() {
                    if let Event::Frame(ServerFrame::State { room: r, from, key: k, value }) = event
                        && *r == room
                        && *k == key
                    {
                        received.dispatch((from.clone(), value.clone()));
                    }
                }
            });
            move || drop(subscription)
        });
    }
    let throttle = use_mut_ref(Throttle::default);
    let set = {
        let (link, room, key) = (room.link.clone(), room_name.to_string(), key.to_owned());
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
    };
    let presence = room.presence();
    let present: Option<std::collections::HashSet<&str>> = (presence.mode == PresenceMode::Full)
        .then(|| presence.members.iter().map(|u| u.id.as_str()).collect());
    let me = room.link.status().user.map(|u| u.id);
    let others = received
        .values
        .iter()
        .filter(|(id, _)| Some(id.as_str()) != me.as_deref())
        .filter(|(id, _)| present.as_ref().is_none_or(|present| present.contains(id.as_str())))
        .map(|(id, entry)| (id.clone(), entry.clone()))
        .collect();
    UseSharedState { others: Rc::new(others), set }
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
