//! The app's seam: typed channels with handlers.
//!
//! An app registers, per [`Channel`](tether_shared::Channel), the [`Handlers`] that
//! decide its rooms: who may join and with what metadata, which messages are stored
//! and in what form, and what happens when a member leaves. The server keeps them
//! here, type-erased behind [`Route`], and asks for a room's route wherever a frame
//! enters: a join (`connection/join.rs`), a publish (`connection/publish.rs`), a state
//! value (`connection/state.rs`), a leave, and the server API's publishes.
//!
//! A room no registered channel covers is a plain JSON room, as before channels.
//!
//! - `handlers.rs`: [`Handlers`], the typed builder an app writes, and [`Call`].
//! - `guard.rs`: running one handler call with a deadline and a panic boundary.
//! - `lane.rs`: a connection's publishes through handlers, answered in the order sent.
//! - `answers.rs`: recent answers to idempotent requests, for repeats.

pub(crate) mod answers;
pub(crate) mod connect;
mod guard;
mod handlers;
pub(crate) mod lane;

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;
use tether_shared::{Refusal, User};

pub use connect::{Admitted, Connecting};
pub(crate) use guard::{Fault, guarded, poll_once};
pub use handlers::{Call, Handlers, Leaving};

/// Who a handler call is about: the same for join, publish and leave.
pub(crate) struct Who {
    /// The server API, for handlers that publish or look around.
    pub api: crate::Api,
    /// The member, as the handshake established (no metadata).
    pub user: Arc<User>,
    /// The room.
    pub room: String,
}

/// What a publish handler said.
pub(crate) enum Verdict {
    /// Store this body: the message it returned, encoded straight from its type.
    Store(Box<serde_json::value::RawValue>),
    /// The app's refusal.
    Refuse(AppRefusal),
    /// What it returned could not be encoded (a map with keys that are not strings,
    /// say), or a backend's answer could not be read: a bug in the app, which fails
    /// that publish with `internal` and these words.
    Broken(String),
    /// The app's backend could not be asked ([HTTP hooks](crate::hooks)): the publish
    /// fails with `unavailable`, which the client retries.
    Unavailable(String),
}

/// What a request handler said.
pub(crate) enum Answer {
    /// The reply, encoded.
    Reply(Value),
    /// The app's refusal.
    Refuse(AppRefusal),
    /// The reply could not be encoded, or a backend's answer could not be read: a bug
    /// in the app. The words say which.
    Broken(String),
    /// The app's backend could not be asked ([HTTP hooks](crate::hooks)).
    Unavailable(String),
}

/// An app's error as the wire carries it: the [`Refusal`] and the error's own words,
/// which go in the frame's `message`.
pub(crate) struct AppRefusal {
    pub refusal: Refusal,
    pub message: String,
}

/// Why a join or a connection was not let in by the app.
pub(crate) enum Refused {
    /// The app said no, in its own words.
    App(AppRefusal),
    /// The app's backend could not be asked ([HTTP hooks](crate::hooks)): down, too
    /// slow, too busy, or answering with an error. Trying again later may work.
    Unavailable(String),
    /// The backend answered with something that is not a hook answer: a bug in the
    /// app, which trying again will not fix.
    Broken(String),
}

impl From<AppRefusal> for Refused {
    fn from(refusal: AppRefusal) -> Self {
        Refused::App(refusal)
    }
}

impl AppRefusal {
    pub(crate) fn of<E: tether_shared::ChannelError>(error: &E) -> Self {
        AppRefusal { refusal: Refusal::of(error), message: error.message() }
    }
}

/// One channel's handlers with their types erased, so that the server holds channels
/// of any types in one list. Every typed step (decoding a body as the channel's
/// message, encoding the handler's answer) happens behind it.
pub(crate) trait Route: Send + Sync {
    /// The rooms it covers ([`Channel::ROOMS`](tether_shared::Channel::ROOMS)).
    fn pattern(&self) -> &'static str;
    /// Longest a handler call may take.
    fn patience(&self) -> std::time::Duration;
    /// Decodes a publish body as the channel's message: `Err` says why it is not one.
    /// `Ok(None)`: no publish handler, store the body as it came. `Ok(Some)`: run this
    /// call to learn what to store.
    fn publish(&self, who: Who, body: &Value) -> Result<Option<BoxFuture<'static, Verdict>>, String>;
    /// Whether `body` is the channel's message type; `Err` says why not.
    fn check_message(&self, body: &Value) -> Result<(), String>;
    /// Whether `value` is the channel's state type; `Err` says why not.
    fn check_state(&self, value: &Value) -> Result<(), String>;
    /// The join handler's call, if there is one: the member's metadata, encoded, or
    /// the app's refusal.
    fn join(&self, who: Who) -> Option<BoxFuture<'static, Result<Option<Value>, Refused>>>;
    /// The request handler's call: `None` when the channel answers no requests,
    /// `Some(Err)` when `body` is not its request type (why).
    fn request(&self, who: Who, body: &Value) -> Option<Result<BoxFuture<'static, Answer>, String>>;
    /// The leave handler's call, if there is one.
    fn leave(&self, who: Who, why: Leaving) -> Option<BoxFuture<'static, ()>>;
}

/// Every registered channel, most specific pattern first, and the app's connect
/// handler.
#[derive(Clone, Default)]
pub struct Channels {
    routes: Vec<Arc<dyn Route>>,
    pub(crate) connect: Option<connect::ConnectHandler>,
}

impl Channels {
    /// Adds a channel's handlers. A second registration of the same pattern replaces
    /// the first.
    pub(crate) fn add(&mut self, route: Arc<dyn Route>) {
        self.routes.retain(|r| r.pattern() != route.pattern());
        self.routes.push(route);
        self.routes.sort_by_key(|r| std::cmp::Reverse(tether_shared::channel::specificity(r.pattern())));
    }

    /// Whether a channel is registered for exactly this pattern.
    pub(crate) fn has_pattern(&self, pattern: &str) -> bool {
        self.routes.iter().any(|route| route.pattern() == pattern)
    }

    /// The channel `room` belongs to; `None` for a plain JSON room.
    pub(crate) fn route(&self, room: &str) -> Option<&Arc<dyn Route>> {
        self.routes.iter().find(|r| tether_shared::channel::covers(r.pattern(), room))
    }
}
