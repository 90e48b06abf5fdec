//! The browser driver: one shared [`Connection`] core per server URL.
//!
//! A `Link` owns the core, the browser socket, one timeout for the core's next deadline
//! and the window's listeners, and does what the core's actions say. This file is that
//! driver loop; events reach subscribers once per animation frame (`batch.rs`), rooms
//! are held by leases (`rooms.rs`), the browser's online, offline and visibility
//! signals become inputs (`browser.rs`), and the outbox is saved to `localStorage`
//! after it changes ([`crate::persist`]), so a reload keeps unsent messages.
//!
//! Closures hold only weak references: when the last strong `Link` goes, everything
//! (socket, timeout, listeners) is dropped with it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use futures::StreamExt;
use futures::channel::oneshot;
use gloo_events::EventListener;
use gloo_render::AnimationFrame;
use gloo_timers::callback::Timeout;
use serde_json::Value;
use tether_shared::{
    Action, Connection, ConnectionConfig, ConnectionStats, CurrentSocket, Event, Input, Millis, Outbox,
    RequestFailure, SocketId, State, User, close,
};

mod batch;
mod browser;
mod rooms;
mod token;
mod transport;

pub use batch::Subscription;
pub use rooms::RoomLease;
pub use token::{TokenError, TokenProvider, TokenResult};
pub use transport::Transport;

use crate::persist::{self, StorageWarning};
use crate::socket::{BrowserSocket, SocketEvent};
use transport::{AnySocket, Choice};

thread_local! {
    static LIVE_LINKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Links that exist right now: the library's own leak tests count them.
#[doc(hidden)]
pub fn live_links() -> usize {
    LIVE_LINKS.with(|live| live.get())
}

impl Drop for Inner {
    fn drop(&mut self) {
        LIVE_LINKS.with(|live| live.set(live.get() - 1));
    }
}

/// What a UI shows about a connection.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    /// The core's state.
    pub state: State,
    /// Messages waiting for an ack.
    pub queued: usize,
    /// Their bytes.
    pub queued_bytes: usize,
    /// The last reason a connection ended, in words.
    pub last_error: Option<String>,
    /// A problem with saved messages (quota, damaged snapshot); shown in words by its
    /// `Display`.
    pub warning: Option<StorageWarning>,
    /// Who the server says we are.
    pub user: Option<User>,
    /// The retry limit, for "attempt k of N".
    pub max_attempts: Option<u32>,
    /// What the connection travels on (or will, on the next attempt).
    pub transport: Transport,
    /// The server address in use (or the next attempt's), one of the link's endpoints.
    pub endpoint: String,
    /// Round trips from the heartbeat, frames and bytes, reconnects, time connected.
    pub stats: ConnectionStats,
}

type Subscriber = Rc<dyn Fn(&Rc<[Event]>, &Status)>;

struct Inner {
    url: String,
    core: Connection,
    socket: CurrentSocket<AnySocket>,
    /// Which transport the next attempt uses, and when to change it.
    transport: Choice,
    /// The wait before the next WebSocket probe, while on a fallback.
    probe: Option<Timeout>,
    /// The encoding asked for on WebSockets.
    encoding: tether_shared::Encoding,
    /// The app's source of tokens; the core says when to ask it.
    provider: Option<TokenProvider>,
    /// The core's next deadline and the timeout armed for it.
    wake: Option<(Millis, Timeout)>,
    subscribers: Vec<(u64, Subscriber)>,
    next_subscriber: u64,
    pending: Vec<Event>,
    frame: Option<AnimationFrame>,
    save: Option<Timeout>,
    /// Whether the outbox and session are kept in `localStorage` ([`persist`]).
    persist: bool,
    warning: Option<StorageWarning>,
    rooms: HashMap<String, usize>,
    /// Requests whose answer a future awaits, by id.
    answers: HashMap<String, oneshot::Sender<Result<Value, RequestFailure>>>,
    _listeners: Vec<EventListener>,
}

/// A shared connection to one server. Clone freely; the connection lives while any
/// clone does.
#[derive(Clone)]
pub struct Link {
    inner: Rc<RefCell<Inner>>,
}

impl PartialEq for Link {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

/// Options for a link.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkOptions {
    /// The core's settings: reconnect backoff, heartbeat, timeouts, outbox bounds.
    pub connection: ConnectionConfig,
    /// Keep unsent messages in `localStorage` across reloads (under this URL's key).
    pub persist: bool,
    /// Connect as soon as the link exists.
    pub auto_connect: bool,
    /// Only this transport, with no fallback; `None` (the default) starts on the
    /// WebSocket and falls back to SSE, then long-polling, when it can't be had.
    pub transport: Option<Transport>,
    /// On a fallback, how long until the first probe of the WebSocket (it doubles after
    /// each failed probe, up to five minutes).
    pub probe_after: std::time::Duration,
    /// Where tokens come from, for apps whose backend issues them: asked before the first
    /// connect, when the server says the token is about to expire (the connection is
    /// renewed in place), and after a refused token, with backoff while it fails.
    pub token: Option<TokenProvider>,
    /// How frames travel on a WebSocket: JSON text (the default) or MessagePack binary
    /// (`tether.v1.msgpack`, with the `msgpack` feature, on by default). The HTTP
    /// fallbacks always carry JSON.
    pub encoding: tether_shared::Encoding,
    /// More addresses of the same service, besides the link's URL. With any, each link
    /// starts at one of them all drawn at random (so a fleet spreads out), moves to the
    /// next when an attempt fails, and resumes its session there.
    pub endpoints: Vec<String>,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            connection: ConnectionConfig::default(),
            persist: true,
            auto_connect: true,
            transport: None,
            probe_after: std::time::Duration::from_millis(u64::from(transport::FIRST_PROBE_MS)),
            token: None,
            endpoints: Vec::new(),
            encoding: tether_shared::Encoding::Json,
        }
    }
}

impl Link {
    /// Creates the link for `url`, restoring a persisted outbox if there is one.
    pub fn new(url: &str, options: LinkOptions) -> Link {
        let (outbox, warning) = match options.persist {
            true => persist::restore(url, &options.connection.outbox),
            false => (Outbox::new(options.connection.outbox.clone()), None),
        };
        let seed = (js_sys::Math::random() * 2f64.powi(53)) as u64;
        LIVE_LINKS.with(|live| live.set(live.get() + 1));
        let mut core = Connection::with_outbox(options.connection.clone(), outbox, seed);
        core.set_endpoints(
            std::iter::once(url.to_owned()).chain(options.endpoints.iter().cloned()).collect(),
        );
        core.set_fetch_tokens(options.token.is_some());
        if options.persist {
            core.set_resume_token(persist::resume_token(url));
        }
        let inner = Rc::new(RefCell::new(Inner {
            url: url.to_owned(),
            core,
            socket: CurrentSocket::default(),
            transport: Choice::new(
                options.transport,
                options.probe_after.as_millis().min(u32::MAX as u128) as u32,
            ),
            probe: None,
            provider: options.token.clone(),
            encoding: options.encoding,
            wake: None,
            subscribers: Vec::new(),
            next_subscriber: 0,
            pending: Vec::new(),
            frame: None,
            save: None,
            persist: options.persist,
            warning,
            rooms: HashMap::new(),
            answers: HashMap::new(),
            _listeners: Vec::new(),
        }));
        let link = Link { inner };
        link.listen_to_the_browser();
        if options.auto_connect {
            link.handle(Input::Connect);
        }
        link
    }

    fn weak(&self) -> Weak<RefCell<Inner>> {
        Rc::downgrade(&self.inner)
    }

    fn upgrade(weak: &Weak<RefCell<Inner>>) -> Option<Link> {
        weak.upgrade().map(|inner| Link { inner })
    }

    /// The URL the link was made for (its first endpoint, and its name).
    pub fn url(&self) -> String {
        self.inner.borrow().url.clone()
    }

    /// The address in use now, or the one the next attempt will use.
    pub fn endpoint(&self) -> String {
        self.inner.borrow().core.endpoint().to_owned()
    }

    /// Feeds an input to the core and carries out what it says.
    pub fn handle(&self, input: Input) {
        self.inner.borrow_mut().core.handle(input, Millis::monotonic());
        self.pump();
    }

    /// Queues `body` for `room` (sent when open, kept until acked); returns its id.
    pub fn publish(&self, room: &str, body: Value) -> String {
        let id = self.inner.borrow_mut().core.new_message_id();
        self.handle(Input::Publish { id: id.clone(), room: room.into(), body, priority: 0 });
        id
    }

    /// Asks `room`'s channel a question (see `Input::Request`): the answer's body, or
    /// why there is none. Dropping the future does not take the question back.
    pub fn request(
        &self,
        room: &str,
        body: Value,
        idempotent: bool,
    ) -> impl std::future::Future<Output = Result<Value, RequestFailure>> + 'static {
        let (answer, answered) = oneshot::channel();
        let id = {
            let mut inner = self.inner.borrow_mut();
            let id = inner.core.new_message_id();
            inner.answers.insert(id.clone(), answer);
            id
        };
        self.handle(Input::Request { id, room: room.into(), body, idempotent, timeout: None });
        // A link that goes away answers nothing more.
        async move { answered.await.unwrap_or(Err(RequestFailure::Disconnected)) }
    }

    /// What a UI shows right now.
    pub fn status(&self) -> Status {
        let inner = self.inner.borrow();
        Status {
            state: inner.core.state().clone(),
            queued: inner.core.outbox().len(),
            queued_bytes: inner.core.outbox().bytes(),
            last_error: inner.core.last_error().map(str::to_owned),
            warning: inner.warning.clone(),
            user: inner.core.user().cloned(),
            max_attempts: inner.core.config().backoff.max_attempts,
            transport: inner.transport.current(),
            endpoint: inner.core.endpoint().to_owned(),
            stats: inner.core.stats().clone(),
        }
    }

    /// Ids of the messages still waiting for an ack, in send order.
    pub fn queued_ids(&self) -> Vec<String> {
        self.inner.borrow().core.outbox().iter().map(|e| e.id.clone()).collect()
    }

    /// Whether a socket is open or opening.
    pub fn has_socket(&self) -> bool {
        self.inner.borrow().socket.id().is_some()
    }

    /// Carries out the core's actions and collects its events.
    fn pump(&self) {
        loop {
            let action = self.inner.borrow_mut().core.poll_action();
            let Some(action) = action else { break };
            match action {
                Action::Open { socket, endpoint } => self.open(socket, endpoint),
                Action::FetchToken => self.fetch_token(),
                // The link leaves its core on JSON (it never calls `set_encoding`), so
                // the core never asks it for a binary frame.
                Action::SendBinary(id, bytes) => {
                    let mut inner = self.inner.borrow_mut();
                    if let Some(socket) = inner.socket.get(id)
                        && socket.send_bytes(&bytes).is_err()
                    {
                        drop(inner);
                        let reason = "send failed".to_owned();
                        self.handle(Input::SocketClosed { socket: id, code: close::ABNORMAL, reason });
                        return;
                    }
                }
                Action::Send(id, text) => {
                    let mut inner = self.inner.borrow_mut();
                    if let Some(socket) = inner.socket.get(id) {
                        if socket.send(&text).is_err() {
                            drop(inner);
                            self.handle(Input::SocketClosed {
                                socket: id,
                                code: close::ABNORMAL,
                                reason: "send failed".into(),
                            });
                            return;
                        }
                    }
                }
                Action::Close { socket, code, reason } => {
                    let mut inner = self.inner.borrow_mut();
                    if let Some(socket) = inner.socket.take(socket) {
                        socket.close(code, &reason);
                    }
                }
            }
        }
        let mut queue_changed = false;
        let mut probe_after = None;
        {
            let mut inner = self.inner.borrow_mut();
            while let Some(event) = inner.core.poll_event() {
                queue_changed |= matches!(event, Event::Queue { .. });
                if matches!(event, Event::Welcome { .. }) {
                    if inner.persist
                        && let Some(token) = inner.core.resume_token()
                    {
                        persist::save_resume_token(&inner.url, token);
                    }
                    probe_after = inner.transport.welcomed();
                }
                let answer = match &event {
                    Event::Replied { id, body, .. } => Some((id, Ok(body.clone()))),
                    Event::RequestFailed { id, failure, .. } => Some((id, Err(failure.clone()))),
                    _ => None,
                };
                if let Some((id, answer)) = answer
                    && let Some(waiting) = inner.answers.remove(id)
                {
                    let _ = waiting.send(answer);
                }
                inner.pending.push(event);
            }
        }
        if queue_changed {
            self.schedule_save();
        }
        if let Some(delay) = probe_after {
            self.schedule_probe(delay);
        }
        self.schedule_flush();
        self.schedule_wake();
    }

    /// Keeps one timeout armed for the core's next deadline (quinn's `poll_timeout`).
    fn schedule_wake(&self) {
        let deadline = self.inner.borrow().core.poll_timeout();
        let mut inner = self.inner.borrow_mut();
        if inner.wake.as_ref().map(|(at, _)| *at) == deadline {
            return;
        }
        inner.wake = deadline.map(|at| {
            let delay = Millis::monotonic().until(at).as_millis().min(u32::MAX as u128) as u32;
            let weak = self.weak();
            let timeout = Timeout::new(delay, move || {
                if let Some(link) = Link::upgrade(&weak) {
                    link.inner.borrow_mut().wake = None;
                    link.inner.borrow_mut().core.handle_timeout(Millis::monotonic());
                    link.pump();
                }
            });
            (at, timeout)
        });
    }

    fn open(&self, id: SocketId, url: String) {
        if let Some(problem) = close::address_problem(&url) {
            return self.report_unopenable(id, close::INVALID_ADDRESS, problem);
        }
        let opened = {
            let mut inner = self.inner.borrow_mut();
            inner.transport.attempt();
            // MessagePack on a WebSocket that asks for it; JSON on the HTTP fallbacks.
            let encoding = match inner.transport.current() {
                Transport::WebSocket => inner.encoding,
                Transport::Sse | Transport::LongPoll => tether_shared::Encoding::Json,
            };
            inner.core.set_encoding(encoding);
            let subprotocol = (encoding != tether_shared::Encoding::Json).then(|| encoding.subprotocol());
            inner.transport.open(&url, subprotocol)
        };
        match opened {
            Ok((socket, mut events)) => {
                self.inner.borrow_mut().socket.replace(id, socket);
                let weak = self.weak();
                wasm_bindgen_futures::spawn_local(async move {
                    while let Some(event) = events.next().await {
                        let Some(link) = Link::upgrade(&weak) else { break };
                        let input = match event {
                            SocketEvent::Opened => Input::SocketOpened(id),
                            SocketEvent::Text(text) => Input::Received(id, text),
                            SocketEvent::Closed { code, reason, .. } => {
                                let current = link.inner.borrow_mut().socket.take(id).is_some();
                                // Only the current attempt's end counts towards a fallback.
                                if current {
                                    link.judge_failure(code, &reason);
                                }
                                link.handle(Input::SocketClosed { socket: id, code, reason });
                                continue;
                            }
                            SocketEvent::Error => Input::SocketErrored(id),
                            SocketEvent::Binary(bytes) => Input::ReceivedBinary(id, bytes),
                        };
                        link.handle(input);
                    }
                });
            }
            // The browser refused to even construct the socket: the address is at fault.
            Err(reason) => self.report_unopenable(id, close::INVALID_ADDRESS, format!("{url}: {reason}")),
        }
    }

    /// Reports a socket that could not be opened at all, asynchronously, as a browser
    /// would, so the core sees a normal close.
    fn report_unopenable(&self, id: SocketId, code: u16, reason: String) {
        let weak = self.weak();
        wasm_bindgen_futures::spawn_local(async move {
            if let Some(link) = Link::upgrade(&weak) {
                link.handle(Input::SocketClosed { socket: id, code, reason });
            }
        });
    }

    /// Asks the app's provider for a token, as the core said to, and hands the answer
    /// back; the core paces a failing provider and decides what the token is for.
    fn fetch_token(&self) {
        let provider = self.inner.borrow().provider.clone();
        let weak = self.weak();
        wasm_bindgen_futures::spawn_local(async move {
            let answer = match provider {
                Some(provider) => provider.fetch().await,
                // The core asks only when told a provider exists; answer rather than hang.
                None => Err("no token provider".into()),
            };
            let answer = match answer {
                Ok(token) => Input::RefreshToken(token),
                Err(reason) => Input::TokenFailed(reason),
            };
            if let Some(link) = Link::upgrade(&weak) {
                link.handle(answer);
            }
        });
    }

    /// Decides whether an attempt's end says something about its transport: a
    /// WebSocket that failed before its welcome while `/healthz` answers over plain HTTP
    /// is blocked on the way; an SSE session whose stream was refused needs polling.
    fn judge_failure(&self, code: u16, reason: &str) {
        let (transport, welcomed) = {
            let inner = self.inner.borrow();
            (inner.transport.current(), inner.transport.was_welcomed())
        };
        match transport {
            Transport::WebSocket if code == close::ABNORMAL && !welcomed => {
                let health = format!("{}/healthz", crate::http_socket::http_base(&self.endpoint()));
                let weak = self.weak();
                wasm_bindgen_futures::spawn_local(async move {
                    // The server's own answer, not just any 200: a development server or
                    // a proxy that answers every path with the app's page is not Tether.
                    let healthy = match gloo_net::http::Request::get(&health).send().await {
                        Ok(response) if response.ok() => {
                            response.text().await.is_ok_and(|body| body.trim() == "ok")
                        }
                        _ => false,
                    };
                    if healthy && let Some(link) = Link::upgrade(&weak) {
                        link.inner.borrow_mut().transport.websocket_blocked();
                    }
                });
            }
            Transport::Sse if reason == crate::http_socket::STREAM_REFUSED => {
                self.inner.borrow_mut().transport.stream_refused();
            }
            _ => {}
        }
    }

    /// While on a fallback: after `delay_ms`, try a WebSocket; if it opens, reconnect on
    /// it (a resume: nothing is lost or repeated), else wait longer and try again.
    fn schedule_probe(&self, delay_ms: u32) {
        let weak = self.weak();
        let timeout = Timeout::new(delay_ms, move || {
            let Some(link) = Link::upgrade(&weak) else { return };
            link.inner.borrow_mut().probe = None;
            let Ok((probe, mut events)) = BrowserSocket::open(&link.endpoint()) else { return };
            let weak = link.weak();
            wasm_bindgen_futures::spawn_local(async move {
                let opened = matches!(events.next().await, Some(SocketEvent::Opened));
                probe.close(close::NORMAL, "probe");
                drop(probe);
                let Some(link) = Link::upgrade(&weak) else { return };
                if opened {
                    link.move_to_websocket();
                } else {
                    let delay = link.inner.borrow_mut().transport.probe_failed();
                    link.schedule_probe(delay);
                }
            });
        });
        self.inner.borrow_mut().probe = Some(timeout);
    }

    /// Ends the fallback attempt and connects again on a WebSocket at once.
    fn move_to_websocket(&self) {
        let current = {
            let mut inner = self.inner.borrow_mut();
            inner.transport.probe_opened();
            let current = inner.socket.id();
            if let Some(id) = current
                && let Some(socket) = inner.socket.take(id)
            {
                socket.close(close::NORMAL, "moving to a WebSocket");
            }
            current
        };
        if let Some(socket) = current {
            let reason = "moving to a WebSocket".to_owned();
            self.handle(Input::SocketClosed { socket, code: close::SERVICE_RESTART, reason });
            self.handle(Input::Connect);
        }
    }

    fn schedule_save(&self) {
        let mut inner = self.inner.borrow_mut();
        if !inner.persist || inner.save.is_some() {
            return;
        }
        let weak = self.weak();
        inner.save = Some(Timeout::new(0, move || {
            if let Some(link) = Link::upgrade(&weak) {
                link.save();
            }
        }));
    }

    fn save(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.save = None;
        inner.warning = match persist::save(&inner.url, inner.core.outbox()) {
            Ok(()) => inner.warning.take().filter(|w| *w != StorageWarning::SaveFailed),
            Err(warning) => Some(warning),
        };
    }
}
