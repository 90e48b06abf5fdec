//! A native Tether client: the shared [`Connection`](tether_shared::Connection) core driven by tokio.
//!
//! The core decides everything (when to reconnect, what to resend, when a socket is
//! dead); this crate only opens sockets, moves text, and runs the timers the core asks
//! for. The server's tests, command-line tools and the load generator use it, and it
//! behaves exactly like the browser client because it runs the same core.
//!
//! ```no_run
//! # async fn demo() {
//! use tether_client::Client;
//! use tether_shared::{ConnectionConfig, Event, Input};
//!
//! let mut client = Client::spawn("ws://127.0.0.1:8080/ws", ConnectionConfig::default());
//! client.input(Input::Connect);
//! client.input(Input::Join("general".into()));
//! let id = client.publish("general", serde_json::json!({"text": "hi"}));
//! while let Some(event) = client.next_event().await {
//!     if let Event::Acked { envelope, seq, .. } = event {
//!         if envelope.id == id {
//!             println!("stored as #{seq}");
//!             break;
//!         }
//!     }
//! }
//! # }
//! ```

mod driver;
mod room;
mod token;

use std::time::Duration;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tether_shared::channel::{Requests, encode};
use tether_shared::typed::{Answer, answer_of};
use tether_shared::{ConnectionConfig, ConnectionStats, Event, Input, MessageIds, RequestFailure};
use tokio::sync::{mpsc, oneshot};

pub use room::Room;
pub use tether_shared;
pub use token::{TokenError, TokenProvider, TokenResult};

/// Where a client connects, how, and where its tokens come from.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Addresses of the service (`ws://` or `wss://` URLs). With several, each client
    /// starts at one drawn at random and moves to the next when an attempt fails.
    pub endpoints: Vec<String>,
    /// The core's settings.
    pub connection: ConnectionConfig,
    /// Where tokens come from, for apps whose backend issues them: asked before
    /// connecting, when the server warns that the token expires (the connection is
    /// renewed in place) and after a refused token, with backoff while it fails.
    pub token: Option<TokenProvider>,
    /// How frames travel: JSON text (the default) or MessagePack binary, asked for with
    /// the `tether.v1.msgpack` subprotocol.
    pub encoding: tether_shared::Encoding,
}

impl ClientOptions {
    /// One address, default settings, no token provider.
    pub fn new(url: impl Into<String>) -> ClientOptions {
        ClientOptions {
            endpoints: vec![url.into()],
            connection: ConnectionConfig::default(),
            token: None,
            encoding: tether_shared::Encoding::Json,
        }
    }
}

/// Requests whose answer a future awaits, by id: filled by [`Client::ask`], answered by
/// the driver as the core's events go by.
type Answers = Arc<Mutex<HashMap<String, oneshot::Sender<Result<Value, RequestFailure>>>>>;

/// Hands `event` to the future awaiting it, if it answers a request.
fn answer(answers: &Answers, event: &Event) {
    let (id, answer) = match event {
        Event::Replied { id, body, .. } => (id, Ok(body.clone())),
        Event::RequestFailed { id, failure, .. } => (id, Err(failure.clone())),
        _ => return,
    };
    if let Some(waiting) = answers.lock().expect("answers lock").remove(id) {
        let _ = waiting.send(answer);
    }
}

/// A handle to a client running in its own task. Dropping it disconnects and stops
/// the task.
pub struct Client {
    inputs: mpsc::UnboundedSender<Input>,
    events: mpsc::UnboundedReceiver<Event>,
    endpoint: tokio::sync::watch::Receiver<String>,
    stats: tokio::sync::watch::Receiver<ConnectionStats>,
    ids: MessageIds,
    answers: Answers,
}

impl Client {
    /// Starts a client for `url` (idle until [`Input::Connect`]). Must be called within
    /// a tokio runtime.
    pub fn spawn(url: impl Into<String>, config: ConnectionConfig) -> Client {
        Client::start(ClientOptions { connection: config, ..ClientOptions::new(url) })
    }

    /// Starts a client with several addresses or a token provider (idle until
    /// [`Input::Connect`]). Must be called within a tokio runtime.
    pub fn start(options: ClientOptions) -> Client {
        let (inputs, input_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let seed = fastrand::u64(..);
        let (endpoint_tx, endpoint) = tokio::sync::watch::channel(String::new());
        let (stats_tx, stats) = tokio::sync::watch::channel(ConnectionStats::default());
        let answers = Answers::default();
        tokio::spawn(driver::run(options, seed, input_rx, event_tx, endpoint_tx, stats_tx, answers.clone()));
        Client { inputs, events, endpoint, stats, ids: MessageIds::new(seed.rotate_left(17)), answers }
    }

    /// Feeds an input to the core (connect, join, publish, network changes, …).
    pub fn input(&self, input: Input) {
        // The task only ends when this handle is dropped, so sending cannot fail here.
        let _ = self.inputs.send(input);
    }

    /// The address in use, or the one the next attempt will use.
    pub fn endpoint(&self) -> String {
        self.endpoint.borrow().clone()
    }

    /// What the connection has done so far: round trips, frames, reconnects, resends.
    pub fn stats(&self) -> ConnectionStats {
        self.stats.borrow().clone()
    }

    /// Queues a message for `room` and returns its client message id.
    pub fn publish(&mut self, room: &str, body: Value) -> String {
        let id = self.ids.next_id();
        self.input(Input::Publish { id: id.clone(), room: room.into(), body, priority: 0 });
        id
    }

    /// Queues a channel's message for `room` and returns its client message id. Its
    /// answer comes as a [`ChannelEvent`](tether_shared::typed::ChannelEvent) through
    /// [`Room::read`]: acked, or failed with the app's typed refusal.
    pub fn send<C: tether_shared::Channel>(&mut self, room: &Room<C>, message: &C::Message) -> String {
        self.publish(room.name(), tether_shared::channel::encode(message))
    }

    /// Asks `room`'s channel a question (any JSON) and resolves to the reply's body, or
    /// why there is none. The answer also comes through [`Client::next_event`] as
    /// [`Event::Replied`] or [`Event::RequestFailed`].
    pub fn ask(
        &mut self,
        room: &str,
        body: Value,
        idempotent: bool,
    ) -> impl std::future::Future<Output = Result<Value, RequestFailure>> + 'static {
        let id = self.ids.next_id();
        let (answer, answered) = oneshot::channel();
        self.answers.lock().expect("answers lock").insert(id.clone(), answer);
        self.input(Input::Request { id, room: room.into(), body, idempotent, timeout: None });
        async move { answered.await.unwrap_or(Err(RequestFailure::Disconnected)) }
    }

    /// Asks a channel's room a typed question: the reply, the app's refusal, or why
    /// there is none (timed out, disconnected, a reply that does not decode).
    pub fn request<C: Requests>(
        &mut self,
        room: &Room<C>,
        request: &C::Request,
    ) -> impl std::future::Future<Output = Answer<C>> + 'static {
        let asked = self.ask(room.name(), encode(request), false);
        async move { answer_of::<C>(asked.await.as_ref()) }
    }

    /// As [`Client::request`], for a question safe to ask twice: sent again after a
    /// reconnect under the same id, and answered once.
    pub fn request_idempotent<C: Requests>(
        &mut self,
        room: &Room<C>,
        request: &C::Request,
    ) -> impl std::future::Future<Output = Answer<C>> + 'static {
        let asked = self.ask(room.name(), encode(request), true);
        async move { answer_of::<C>(asked.await.as_ref()) }
    }

    /// The next event from the core, in order.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Skips events until `wanted` returns `Some`, and returns that; `None` if `patience`
    /// runs out first or the client stopped.
    pub async fn wait_for<T>(
        &mut self,
        patience: Duration,
        mut wanted: impl FnMut(&Event) -> Option<T>,
    ) -> Option<T> {
        let search = async {
            while let Some(event) = self.events.recv().await {
                if let Some(found) = wanted(&event) {
                    return Some(found);
                }
            }
            None
        };
        tokio::time::timeout(patience, search).await.ok().flatten()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.inputs.send(Input::Disconnect);
    }
}
