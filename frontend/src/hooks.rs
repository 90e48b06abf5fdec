//! Hooks over a shared [`Link`]: connection status, raw frames, and the connection UI's
//! numbers.

use std::collections::VecDeque;
use std::rc::Rc;

use gloo_timers::callback::Interval;
use serde_json::Value;
use tether_shared::{Event, Input, Millis, ServerFrame, State};
use yew::prelude::*;

use crate::link::{Link, LinkOptions, Status};
use crate::provider::TetherContext;

/// The shared link for `url` (the provider's default when `None`), kept alive while the
/// component is mounted.
#[hook]
pub fn use_link(url: Option<AttrValue>, options: Option<LinkOptions>) -> Link {
    let context = use_context::<TetherContext>().expect("use Tether hooks inside a WebSocketProvider");
    let url = url.unwrap_or_else(|| context.default_url.clone());
    let lease = use_memo((context, url), move |(context, url)| context.acquire(url, options.as_ref()));
    lease.link.clone()
}

/// The link's status, re-rendering when it changes (at most once per frame).
#[hook]
pub fn use_status(link: &Link) -> Status {
    let status = use_state(|| link.status());
    {
        let status = status.clone();
        use_effect_with(link.clone(), move |link| {
            status.set(link.status());
            let setter = status.clone();
            let subscription = link.subscribe(move |_, latest| {
                if *setter != *latest {
                    setter.set(latest.clone());
                }
            });
            move || drop(subscription)
        });
    }
    (*status).clone()
}

/// Options for [`use_websocket`].
#[derive(Clone, Debug, PartialEq)]
pub struct UseWebSocketOptions {
    /// Settings for the link if this hook creates it (reconnect backoff and attempts,
    /// heartbeat, outbox size, persistence, auto-connect).
    pub link: Option<LinkOptions>,
    /// Keep received frames in `history`.
    pub keep_history: bool,
    /// Most frames kept in `history`; the oldest go first.
    pub max_history_size: usize,
    /// Queue publishes while disconnected; when `false`, `send` refuses them instead.
    pub queue_while_disconnected: bool,
}

impl Default for UseWebSocketOptions {
    fn default() -> Self {
        UseWebSocketOptions {
            link: None,
            keep_history: true,
            max_history_size: 500,
            queue_while_disconnected: true,
        }
    }
}

/// What [`use_websocket`] returns.
#[derive(Clone, PartialEq)]
pub struct UseWebSocket {
    /// Connection status.
    pub status: Status,
    /// The last frame received.
    pub last_message: Option<ServerFrame>,
    /// Received frames, oldest first, bounded by `max_history_size`. Every frame of a
    /// burst is here, not just the last.
    pub history: Rc<VecDeque<ServerFrame>>,
    /// Whether `send` queues while disconnected.
    pub queue_while_disconnected: bool,
    /// Connects (or retries now).
    pub connect: Callback<()>,
    /// Disconnects; no reconnect follows until `connect`.
    pub disconnect: Callback<()>,
    /// The underlying link.
    pub link: Link,
}

impl UseWebSocket {
    /// Publishes `body` to `room` and returns the message id. While disconnected it is
    /// queued (and persisted) unless queueing is off, in which case `None` is returned.
    pub fn send(&self, room: &str, body: Value) -> Option<String> {
        if !self.queue_while_disconnected && self.status.state != State::Open {
            return None;
        }
        Some(self.link.publish(room, body))
    }
}

#[derive(Clone, Default, PartialEq)]
struct Frames {
    last: Option<ServerFrame>,
    history: Rc<VecDeque<ServerFrame>>,
}

/// A connection with its status and the frames it received.
#[hook]
pub fn use_websocket(url: Option<AttrValue>, options: UseWebSocketOptions) -> UseWebSocket {
    let link = use_link(url, options.link.clone());
    let status = use_status(&link);
    let frames = use_mut_ref(Frames::default);
    let version = use_state(|| 0u64);
    {
        let frames = frames.clone();
        let version = version.clone();
        let (keep, max) = (options.keep_history, options.max_history_size);
        use_effect_with(link.clone(), move |link| {
            let subscription = link.subscribe(move |events, _| {
                let mut changed = false;
                let mut store = frames.borrow_mut();
                let mut history = (*store.history).clone();
                for event in events.iter() {
                    if let Event::Frame(frame) = event {
                        store.last = Some(frame.clone());
                        if keep {
                            history.push_back(frame.clone());
                            while history.len() > max {
                                history.pop_front();
                            }
                        }
                        changed = true;
                    }
                }
                if changed {
                    store.history = Rc::new(history);
                    version.set(*version + 1);
                }
            });
            move || drop(subscription)
        });
    }
    let connect = {
        let link = link.clone();
        Callback::from(move |()| link.handle(Input::Connect))
    };
    let disconnect = {
        let link = link.clone();
        Callback::from(move |()| link.handle(Input::Disconnect))
    };
    let frames = frames.borrow().clone();
    UseWebSocket {
        status,
        last_message: frames.last,
        history: frames.history,
        queue_while_disconnected: options.queue_while_disconnected,
        connect,
        disconnect,
        link,
    }
}

/// The connection UI's numbers, in words and figures a person understands.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionView {
    /// Connection status.
    pub status: Status,
    /// Whole seconds until the next retry, while waiting to reconnect.
    pub retry_in_secs: Option<u64>,
    /// The retry that comes next, and the limit if there is one.
    pub attempt: Option<(u32, Option<u32>)>,
}

/// Status plus a per-second countdown to the next retry, and a way to retry now.
#[hook]
pub fn use_connection(url: Option<AttrValue>) -> (ConnectionView, Callback<()>) {
    let link = use_link(url, None);
    let status = use_status(&link);
    let tick = use_state(|| 0u32);
    {
        let tick = tick.clone();
        let waiting = matches!(status.state, State::Reconnecting { .. });
        use_effect_with(waiting, move |waiting| {
            let interval = waiting.then(|| Interval::new(1_000, move || tick.set(tick.wrapping_add(1))));
            move || drop(interval)
        });
    }
    let (retry_in_secs, attempt) = match status.state {
        State::Reconnecting { attempt, retry_at } => (
            Some(Millis::monotonic().until(retry_at).as_millis().div_ceil(1000) as u64),
            Some((attempt, status.max_attempts)),
        ),
        _ => (None, None),
    };
    let retry_now = {
        let link = link.clone();
        Callback::from(move |()| link.handle(Input::Connect))
    };
    (ConnectionView { status, retry_in_secs, attempt }, retry_now)
}
