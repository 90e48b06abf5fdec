//! [`Handlers`]: what an app writes for one of its channels. Each handler is an async
//! closure that gets a [`Call`] (the app's state, the server API, who and where) and
//! the channel's own types, never JSON.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use serde::{Deserialize, Serialize};
//! # use tether_shared::channel::{Channel, Reason};
//! # #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
//! # pub struct Post { text: String }
//! # pub struct Chat;
//! # impl Channel for Chat {
//! #     const ROOMS: &'static str = "chat:*";
//! #     type Message = Post; type State = (); type Meta = (); type Error = Reason;
//! # }
//! use tether_server::{Config, Handlers, Server};
//!
//! # async fn run(config: Config) -> Result<(), tether_server::StartError> {
//! let chat = Handlers::<Chat>::new().on_publish(|_call, post: Post| async move {
//!     if post.text.trim().is_empty() {
//!         return Err(Reason::new("empty", "a message needs some text"));
//!     }
//!     Ok(post)
//! });
//! let running = Server::new(config).channel(chat).start().await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;
use tether_shared::User;
use tether_shared::channel::{Channel, Requests, decode, encode};

use super::{Answer, AppRefusal, Refused, Route, Verdict, Who};

/// How long a handler call may take unless [`Handlers::patience`] says otherwise.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(5);

/// What a handler is called with.
pub struct Call<S> {
    /// The app's own state, as given to [`Handlers::with_state`].
    pub state: Arc<S>,
    /// The server API: publish from here, read presence and history.
    pub api: crate::Api,
    /// The member (id, name, colour) as the handshake established them.
    pub user: Arc<User>,
    /// The room the call is about.
    pub room: String,
}

/// Why a member is leaving a room, for the leave handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaving {
    /// The client sent `leave`.
    Left,
    /// The connection ended (closed, lost, or the server stopping). The member may be
    /// back in a moment on a new connection, which joins again.
    Disconnected,
}

type JoinHandler<C, S> = Arc<
    dyn Fn(Call<S>) -> BoxFuture<'static, Result<<C as Channel>::Meta, <C as Channel>::Error>> + Send + Sync,
>;
/// The app's publish handler with its answer turned into a [`Verdict`] inside the same
/// future: one allocation per call, not two.
type PublishHandler<C, S> =
    Arc<dyn Fn(Call<S>, <C as Channel>::Message) -> BoxFuture<'static, Verdict> + Send + Sync>;
/// The app's request handler, with decoding and encoding inside: only channels with a
/// request type have one, and the handlers of every channel are held alike.
type RequestHandler<S> =
    Arc<dyn Fn(Call<S>, &Value) -> Result<BoxFuture<'static, Answer>, String> + Send + Sync>;
type LeaveHandler<S> = Arc<dyn Fn(Call<S>, Leaving) -> BoxFuture<'static, ()> + Send + Sync>;

/// One channel's handlers, registered with [`Server::channel`](crate::Server::channel).
///
/// Without handlers, a channel still has its types enforced: a body, or a state
/// value, that does not decode as the channel's type is refused (`invalid_body`) on
/// every transport and through the server API, and nothing is stored.
///
/// Each call runs with a deadline ([`Handlers::patience`]) and a panic boundary: a
/// handler that panics or takes too long fails that one call with `internal`.
pub struct Handlers<C: Channel, S = ()> {
    state: Arc<S>,
    join: Option<JoinHandler<C, S>>,
    publish: Option<PublishHandler<C, S>>,
    request: Option<RequestHandler<S>>,
    leave: Option<LeaveHandler<S>>,
    patience: Duration,
    channel: PhantomData<fn() -> C>,
}

impl<C: Channel> Handlers<C, ()> {
    /// Handlers that need no state of the app's.
    pub fn new() -> Self {
        Handlers::with_state(Arc::new(()))
    }
}

impl<C: Channel> Default for Handlers<C, ()> {
    fn default() -> Self {
        Handlers::new()
    }
}

impl<C, S> Handlers<C, S>
where
    C: Channel,
    S: Send + Sync + 'static,
{
    /// Handlers that get `state` in every [`Call`].
    pub fn with_state(state: Arc<S>) -> Self {
        Handlers {
            state,
            join: None,
            publish: None,
            request: None,
            leave: None,
            patience: DEFAULT_PATIENCE,
            channel: PhantomData,
        }
    }

    /// Decides each join: `Ok` lets the member in with this metadata, which everyone in
    /// the room sees in presence (the member's first connection's metadata is the
    /// one shown while they have several); `Err` refuses the room with the app's error
    /// (`error` with code `refused`). Runs on every join, reconnects' rejoins too.
    pub fn on_join<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Call<S>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<C::Meta, C::Error>> + Send + 'static,
    {
        self.join = Some(Arc::new(move |call| handler(call).boxed()));
        self
    }

    /// Decides each message before it is numbered: `Ok` stores, fans out and acks what
    /// it returns (the message as sent, or rewritten); `Err` refuses it with the app's
    /// error (`reject` with code `refused`), and nothing is stored. A message sent again
    /// under the same id (after a reconnect) is decided again; the server then answers
    /// with the original ack if it was stored.
    pub fn on_publish<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Call<S>, C::Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<C::Message, C::Error>> + Send + 'static,
    {
        self.publish = Some(Arc::new(move |call, message| {
            let answer = handler(call, message);
            async move {
                match answer.await {
                    Ok(message) => match serde_json::value::to_raw_value(&message) {
                        Ok(body) => Verdict::Store(body),
                        Err(error) => Verdict::Broken(format!(
                            "the app's handler answered with a message that does not encode: {error}"
                        )),
                    },
                    Err(error) => Verdict::Refuse(AppRefusal::of(&error)),
                }
            }
            .boxed()
        }));
        self
    }

    /// Told when a member's connection leaves one of the channel's rooms, by `leave`
    /// or by disconnecting. Nothing waits for it.
    pub fn on_leave<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Call<S>, Leaving) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.leave = Some(Arc::new(move |call, why| handler(call, why).boxed()));
        self
    }

    /// How long one handler call may take before it fails with `internal` (default 5 s).
    pub fn patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    fn call(&self, who: Who) -> Call<S> {
        Call { state: self.state.clone(), api: who.api, user: who.user, room: who.room }
    }

    pub(crate) fn into_route(self) -> Arc<dyn Route> {
        Arc::new(self)
    }
}

impl<C, S> Handlers<C, S>
where
    C: Requests,
    S: Send + Sync + 'static,
{
    /// Answers each request (a question with one answer, to the one who asked: never
    /// stored or fanned out): `Ok` replies, `Err` refuses with the app's error (`reject`
    /// with code `refused`). The handler may publish through `call.api` as a side
    /// effect. A request marked idempotent and asked again is answered from memory.
    pub fn on_request<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Call<S>, C::Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<C::Reply, C::Error>> + Send + 'static,
    {
        self.request = Some(Arc::new(move |call, body: &Value| {
            let request: C::Request = decode(body).map_err(|undecodable| undecodable.error)?;
            let answer = handler(call, request);
            Ok(async move {
                match answer.await {
                    Ok(reply) => match serde_json::to_value(&reply) {
                        Ok(reply) => Answer::Reply(reply),
                        Err(error) => Answer::Broken(format!(
                            "the app's handler answered with a reply that does not encode: {error}"
                        )),
                    },
                    Err(error) => Answer::Refuse(AppRefusal::of(&error)),
                }
            }
            .boxed())
        }));
        self
    }
}

impl<C, S> Route for Handlers<C, S>
where
    C: Channel,
    S: Send + Sync + 'static,
{
    fn pattern(&self) -> &'static str {
        C::ROOMS
    }

    fn patience(&self) -> Duration {
        self.patience
    }

    fn publish(&self, who: Who, body: &Value) -> Result<Option<BoxFuture<'static, Verdict>>, String> {
        let message: C::Message = decode(body).map_err(|undecodable| undecodable.error)?;
        let Some(handler) = &self.publish else { return Ok(None) };
        Ok(Some(handler(self.call(who), message)))
    }

    fn check_message(&self, body: &Value) -> Result<(), String> {
        decode::<C::Message>(body).map(drop).map_err(|undecodable| undecodable.error)
    }

    fn check_state(&self, value: &Value) -> Result<(), String> {
        decode::<C::State>(value).map(drop).map_err(|undecodable| undecodable.error)
    }

    fn join(&self, who: Who) -> Option<BoxFuture<'static, Result<Option<Value>, Refused>>> {
        let call = self.join.as_ref()?(self.call(who));
        Some(
            async move {
                match call.await {
                    // The default metadata is no metadata: it costs nothing in presence.
                    Ok(meta) if meta == C::Meta::default() => Ok(None),
                    Ok(meta) => Ok(Some(encode(&meta))),
                    Err(error) => Err(Refused::App(AppRefusal::of(&error))),
                }
            }
            .boxed(),
        )
    }

    fn request(&self, who: Who, body: &Value) -> Option<Result<BoxFuture<'static, Answer>, String>> {
        Some(self.request.as_ref()?(self.call(who), body))
    }

    fn leave(&self, who: Who, why: Leaving) -> Option<BoxFuture<'static, ()>> {
        Some(self.leave.as_ref()?(self.call(who), why))
    }
}
