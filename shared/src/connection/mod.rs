//! The client's connection as a state machine: events and the current time go in,
//! actions for the driver and events for the UI come out.
//!
//! The driver (gloo in the browser, tokio natively) owns the socket and one timer, and
//! does exactly what [`Action`]s say; everything that decides (when to reconnect, what
//! to resend, when a connection is dead) lives here, where it is tested once for both.
//! Like quinn-proto's, the core keeps its own deadlines and only says when it next
//! needs waking ([`Connection::poll_timeout`]); see [`Connection`] for the contract.
//!
//! Invariants, checked by property tests over random event sequences:
//! - never two sockets at once: a new [`Action::Open`] only after the previous socket
//!   was closed or reported closed;
//! - never a send before the server's `welcome` (the `hello` itself excepted);
//! - never a reconnect after [`Input::Disconnect`] until the next [`Input::Connect`];
//! - time that jumps back never stalls a deadline, and a sleep costs at most one
//!   reconnect, made at once.

mod current;
mod endpoints;
mod rejoins;
mod requests;
mod vocabulary;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde_json::Value;

use crate::backoff::Backoff;
use crate::close;
use crate::encoding::Encoding;
use crate::frame::{
    ClientFrame, ErrorCode, PROTOCOL_VERSION, ReceiptKind, RejectCode, RoomCursor, ServerFrame, User,
};
use crate::outbox::{Envelope, MessageIds, Outbox};
use crate::time::Millis;
use endpoints::Endpoints;
use rejoins::Rejoins;
use requests::Requests;

pub use current::CurrentSocket;
pub use requests::RequestFailure;
pub use vocabulary::{
    Action, ConnectionConfig, ConnectionStats, Event, Input, RoomState, SocketId, State, Timer, TokenError,
};

/// The client's brain. See the module docs.
///
/// # Driving it
///
/// A driver owns the socket and one timer, and repeats:
///
/// 1. Feed what happened with [`Connection::handle`] (an [`Input`] and the current
///    time), or, when the timer fires, call [`Connection::handle_timeout`] with the time.
/// 2. Carry out every [`Action`] from [`Connection::poll_action`] until it returns
///    `None`: open, write or close sockets, always checking that the [`SocketId`] is the
///    current socket's.
/// 3. Hand every [`Event`] from [`Connection::poll_event`] to the UI.
/// 4. Re-arm the one timer for [`Connection::poll_timeout`] (or disarm it on `None`).
///
/// A timer that fires early is harmless, because `handle_timeout` acts only on deadlines
/// that have passed. Time should come from a monotonic clock ([`Millis::monotonic`]),
/// but the core copes with one that jumps: back, and every deadline moves back with it;
/// forward by more than [`ConnectionConfig::sleep_gap`] past a deadline, and the core
/// takes it as a wake from sleep (see [`Connection::handle`]).
pub struct Connection {
    config: ConnectionConfig,
    endpoints: Endpoints,
    /// Whether the current socket was welcomed: a failed attempt moves to the next
    /// endpoint, a lost connection tries its own once more.
    welcomed: bool,
    /// The latest time the core was given, to see the clock jump.
    last_now: Option<Millis>,
    seed: u64,
    tokens: TokenSupply,
    stats: ConnectionStats,
    /// How frames travel (JSON unless the driver chose MessagePack).
    encoding: Encoding,
    /// Whether any socket was welcomed yet: later welcomes are reconnects.
    ever_welcomed: bool,
    /// The ping awaiting its pong, and when it went.
    ping_sent: Option<(u64, Millis)>,
    state: State,
    backoff: Backoff,
    outbox: Outbox,
    ids: MessageIds,
    socket: Option<SocketId>,
    next_socket: u64,
    online: bool,
    rooms: BTreeMap<String, RoomState>,
    rejoins: Rejoins,
    requests: Requests,
    receipts: BTreeMap<(String, ReceiptKind), u64>,
    resume_token: Option<String>,
    user: Option<User>,
    heartbeat: Duration,
    next_nonce: u64,
    timers: BTreeMap<Timer, Millis>,
    last_error: Option<String>,
    reported_queue: (usize, usize),
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
}

impl Connection {
    /// A connection with an empty outbox. `seed` feeds jitter and message ids; give each
    /// client its own (from `crypto.getRandomValues`, the clock, …).
    pub fn new(config: ConnectionConfig, seed: u64) -> Self {
        let outbox = Outbox::new(config.outbox.clone());
        Self::with_outbox(config, outbox, seed)
    }

    /// A connection that starts with a restored outbox (see [`Outbox::restore`]).
    pub fn with_outbox(config: ConnectionConfig, outbox: Outbox, seed: u64) -> Self {
        let reported_queue = (outbox.len(), outbox.bytes());
        Connection {
            backoff: Backoff::new(config.backoff.clone(), seed),
            ids: MessageIds::new(seed ^ 0x9E37_79B9_7F4A_7C15),
            heartbeat: config.heartbeat,
            config,
            endpoints: Endpoints::new(Vec::new(), seed),
            welcomed: false,
            last_now: None,
            seed,
            tokens: TokenSupply::default(),
            stats: ConnectionStats::default(),
            ever_welcomed: false,
            encoding: Encoding::Json,
            ping_sent: None,
            state: State::Idle,
            outbox,
            socket: None,
            next_socket: 0,
            online: true,
            rooms: BTreeMap::new(),
            rejoins: Rejoins::default(),
            requests: Requests::default(),
            receipts: BTreeMap::new(),
            resume_token: None,
            user: None,
            next_nonce: 0,
            timers: BTreeMap::new(),
            last_error: None,
            reported_queue,
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Round trips, frames and bytes, reconnects and time connected.
    pub fn stats(&self) -> &ConnectionStats {
        &self.stats
    }

    /// The outbox, for counts and persistence.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The rooms the app wants to be in, with their cursors.
    pub fn rooms(&self) -> &BTreeMap<String, RoomState> {
        &self.rooms
    }

    /// The last reason a connection ended, in words for a person.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Who the server says we are, once welcomed.
    pub fn user(&self) -> Option<&User> {
        self.user.as_ref()
    }

    /// The settings it was made with.
    pub fn config(&self) -> &ConnectionConfig {
        &self.config
    }

    /// The session's resume token, to keep the identity across a page reload.
    pub fn resume_token(&self) -> Option<&str> {
        self.resume_token.as_deref()
    }

    /// Restores a resume token saved by an earlier page.
    pub fn set_resume_token(&mut self, token: Option<String>) {
        self.resume_token = token;
    }

    /// The addresses to connect to: several addresses of one service, of which each
    /// client starts at one drawn from its seed (so a fleet spreads out) and moves to the
    /// next when an attempt fails. Takes effect from the next attempt.
    pub fn set_endpoints(&mut self, endpoints: Vec<String>) {
        self.endpoints = Endpoints::new(endpoints, self.seed.rotate_left(29));
    }

    /// The address in use, or the one the next attempt will use.
    pub fn endpoint(&self) -> &str {
        self.endpoints.current()
    }

    /// Chooses how frames travel: JSON text (the default) or MessagePack binary. The
    /// driver asks the server for the same with the WebSocket subprotocol
    /// ([`Encoding::subprotocol`]) and feeds binary messages as [`Input::ReceivedBinary`].
    pub fn set_encoding(&mut self, encoding: Encoding) {
        self.encoding = encoding;
    }

    /// How frames travel.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Says the driver has a token provider. The core then asks it ([`Action::FetchToken`])
    /// before connecting without a fresh token, when the server warns that the token
    /// expires (the answer renews the open connection in place), and after the server
    /// refused the token (4401, 4403), which then counts as a lost connection and is
    /// retried with backoff instead of ending in `Failed`. A provider that fails is asked
    /// again after 1 s, doubling up to 30 s.
    pub fn set_fetch_tokens(&mut self, enabled: bool) {
        self.tokens.enabled = enabled;
    }

    /// Replaces the token used by the next `hello` (after fetching a fresh one).
    pub fn set_token(&mut self, token: Option<String>) {
        self.config.token = token;
    }

    /// A fresh client message id (see [`MessageIds`]); the seed should differ per page
    /// load.
    pub fn new_message_id(&mut self) -> String {
        self.ids.next_id()
    }

    /// Queues `body` for `room` and returns its id. Shorthand for [`Input::Publish`].
    pub fn publish(&mut self, room: &str, body: Value, priority: u8, now: Millis) -> String {
        let id = self.new_message_id();
        self.handle(Input::Publish { id: id.clone(), room: room.into(), body, priority }, now);
        id
    }

    /// When the core next needs [`Connection::handle_timeout`]: the earliest deadline it
    /// keeps, or `None` while it waits for nothing but input.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.timers.values().min().copied()
    }

    /// The deadline of one kind of timer, if armed (for tests and diagnostics).
    pub fn deadline(&self, timer: Timer) -> Option<Millis> {
        self.timers.get(&timer).copied()
    }

    /// Acts on every deadline that has passed by `now`, earliest first. Calling it early,
    /// or twice, does nothing.
    pub fn handle_timeout(&mut self, now: Millis) {
        if self.observe_clock(now) {
            self.woke(now);
        }
        let mut due: Vec<(Millis, Timer)> =
            self.timers.iter().filter(|(_, at)| **at <= now).map(|(timer, at)| (*at, *timer)).collect();
        due.sort();
        for (_, timer) in due {
            // An earlier timer's work may have re-armed or cancelled this one.
            if self.timers.get(&timer).is_some_and(|at| *at <= now) {
                self.timers.remove(&timer);
                self.fire(timer, now);
            }
        }
        self.after(now);
    }

    /// The next thing the driver must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next thing to tell the UI.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Feeds one input at time `now`.
    ///
    /// Like [`Connection::handle_timeout`], it first looks at the clock. Time that went
    /// back moves every deadline back by as much. Time more than
    /// [`ConnectionConfig::sleep_gap`] past the earliest deadline means nothing could run
    /// for a while (the laptop slept, the tab was frozen), so the deadlines that ran out
    /// meanwhile say nothing about the connection: a wait to reconnect ends now with a
    /// fresh backoff, an attempt in progress starts afresh, and an open connection is
    /// checked with a ping under a fresh deadline, so that one sleep never counts as two
    /// failures.
    pub fn handle(&mut self, input: Input, now: Millis) {
        let slept = self.observe_clock(now);
        match input {
            Input::Connect => match self.state {
                State::Idle | State::Closed | State::Failed { .. } | State::Offline => {
                    self.backoff.reset();
                    self.open_socket(now);
                }
                State::Reconnecting { .. } => self.open_socket(now),
                State::Connecting { .. } | State::Open => {}
            },
            Input::Disconnect => {
                if let Some(socket) = self.socket.take() {
                    self.actions.push_back(Action::Close {
                        socket,
                        code: close::NORMAL,
                        reason: "client disconnect".into(),
                    });
                }
                for timer in Timer::ALL {
                    self.cancel(timer);
                }
                self.tokens.waiting = false;
                self.outbox.requeue_all();
                let abandoned = self.requests.abandon_all();
                self.fail_requests(abandoned, RequestFailure::Disconnected);
                self.mark_rooms_unjoined();
                self.set_state(State::Closed);
            }
            Input::SocketOpened(socket) => {
                if self.socket == Some(socket) && matches!(self.state, State::Connecting { .. }) {
                    let hello = ClientFrame::Hello {
                        v: PROTOCOL_VERSION,
                        token: self.config.token.clone(),
                        name: self.config.name.clone(),
                        resume_token: self.resume_token.clone(),
                    };
                    self.write(socket, &hello);
                }
            }
            Input::Received(socket, text) => {
                if self.socket == Some(socket) {
                    self.stats.frames_received += 1;
                    self.stats.bytes_received += text.len() as u64;
                    self.received(ServerFrame::decode(&text).map_err(|e| e.to_string()), now);
                }
            }
            Input::ReceivedBinary(socket, bytes) => {
                if self.socket == Some(socket) {
                    self.stats.frames_received += 1;
                    self.stats.bytes_received += bytes.len() as u64;
                    #[cfg(feature = "msgpack")]
                    let decoded = ServerFrame::decode_msgpack(&bytes).map_err(|e| e.to_string());
                    #[cfg(not(feature = "msgpack"))]
                    let decoded =
                        Err("a binary frame, and this build reads JSON only (the msgpack feature is off)"
                            .into());
                    self.received(decoded, now);
                }
            }
            Input::SocketClosed { socket, code, reason } => {
                if self.socket == Some(socket) {
                    self.socket = None;
                    self.lost(code, &reason, now);
                }
            }
            Input::SocketErrored(socket) => {
                if self.socket == Some(socket) {
                    self.last_error = Some("The connection failed".into());
                }
            }
            Input::NetworkOffline => {
                self.online = false;
                if let Some(socket) = self.socket.take() {
                    self.actions.push_back(Action::Close {
                        socket,
                        code: close::NORMAL,
                        reason: "network offline".into(),
                    });
                    self.lost(close::ABNORMAL, "network offline", now);
                } else if matches!(self.state, State::Reconnecting { .. } | State::Connecting { .. }) {
                    // Connecting without a socket: waiting for a token, which is kept.
                    self.cancel(Timer::Reconnect);
                    self.set_state(State::Offline);
                }
            }
            Input::NetworkOnline => {
                self.online = true;
                if matches!(self.state, State::Offline | State::Reconnecting { .. }) {
                    self.backoff.reset();
                    self.open_socket(now);
                }
            }
            Input::PageVisible => match self.state {
                State::Reconnecting { .. } => {
                    self.backoff.reset();
                    self.open_socket(now);
                }
                // A tab that slept may hold a dead socket: check now, not at the next beat.
                State::Open => self.ping(now),
                _ => {}
            },
            Input::Publish { id, room, body, priority } => {
                let envelope = Envelope { id: id.clone(), room, body, priority, created: now, expires: None };
                match self.outbox.push(envelope) {
                    Ok(pushed) => self.events.extend(pushed.dropped.into_iter().map(Event::Dropped)),
                    Err(error) => self.events.push_back(Event::Refused { id, error }),
                }
                self.flush(now);
            }
            Input::Request { id, room, body, idempotent, timeout } => {
                let deadline = now.after(timeout.unwrap_or(self.config.request_timeout));
                self.requests.add(id, room, body, idempotent, deadline);
                self.send_requests();
            }
            Input::Join(room) => {
                let since = self.rooms.entry(room.clone()).or_default().last_seq;
                let history = self.history_for(since);
                self.send(ClientFrame::Join { room, since, history });
            }
            Input::Leave(room) => {
                if self.rooms.remove(&room).is_some() {
                    self.receipts.retain(|(r, _), _| *r != room);
                    self.send(ClientFrame::Leave { room });
                }
            }
            Input::Typing { room, active } => self.send(ClientFrame::Typing { room, active }),
            Input::State { room, key, value } => self.send(ClientFrame::State { room, key, value }),
            Input::Receipt { room, kind, seq } => {
                let latest = self.receipts.entry((room.clone(), kind)).or_insert(seq);
                *latest = (*latest).max(seq);
                let seq = *latest;
                self.send(ClientFrame::Receipt { room, kind, seq });
            }
            Input::Echo(body) => self.send(ClientFrame::Echo { body }),
            Input::RefreshToken(token) => {
                self.send(ClientFrame::Refresh { token: token.clone() });
                self.config.token = Some(token);
                let waiting = self.tokens.arrived();
                self.cancel(Timer::TokenRetry);
                if waiting && matches!(self.state, State::Connecting { .. }) && self.socket.is_none() {
                    self.open_socket(now);
                }
            }
            Input::TokenFailed(TokenError::Unavailable(reason)) => {
                if self.tokens.fetching {
                    let delay = self.tokens.failed();
                    self.last_error = Some(format!("Could not get a sign-in token: {reason}"));
                    self.arm(Timer::TokenRetry, now.after(delay));
                }
            }
            Input::TokenFailed(TokenError::SignedOut(reason)) => {
                self.tokens.fetching = false;
                let reason = format!("Sign-in failed: {reason}");
                self.last_error = Some(reason.clone());
                // An open connection keeps its credential until it expires; a connect
                // that waited for the token stops here.
                if std::mem::take(&mut self.tokens.waiting) && self.socket.is_none() {
                    self.set_state(State::Failed { reason });
                }
            }
            Input::Members { room, after, limit } => self.send(ClientFrame::Members { room, after, limit }),
        }
        // After the input: a disconnect needs no wake-up, a close seen on waking is
        // followed by a reconnect at once.
        if slept {
            self.woke(now);
        }
        self.after(now);
    }

    /// Opens a new socket; the previous one, if any, is closed first. With a token
    /// provider and no fresh token, it asks for one first and opens when it arrives.
    fn open_socket(&mut self, now: Millis) {
        if let Some(socket) = self.socket.take() {
            self.actions.push_back(Action::Close {
                socket,
                code: close::NORMAL,
                reason: "reconnecting".into(),
            });
        }
        self.cancel(Timer::Reconnect);
        if self.tokens.enabled && !self.tokens.fresh {
            self.cancel(Timer::Connect);
            self.fetch_token();
            self.tokens.waiting = true;
            self.set_state(State::Connecting { attempt: self.backoff.attempt() });
            return;
        }
        self.next_socket += 1;
        let socket = SocketId(self.next_socket);
        self.socket = Some(socket);
        self.welcomed = false;
        self.actions.push_back(Action::Open { socket, endpoint: self.endpoints.current().to_owned() });
        self.arm(Timer::Connect, now.after(self.config.connect_timeout));
        self.set_state(State::Connecting { attempt: self.backoff.attempt() });
    }

    /// The current socket is gone: decide between offline, failed and a retry.
    fn lost(&mut self, code: u16, reason: &str, now: Millis) {
        self.stats.connected_since = None;
        self.ping_sent = None;
        for timer in [Timer::Connect, Timer::Heartbeat, Timer::PongDeadline, Timer::AckTimeout] {
            self.cancel(timer);
        }
        self.outbox.requeue_all();
        let lost = self.requests.socket_lost();
        self.fail_requests(lost, RequestFailure::Disconnected);
        self.mark_rooms_unjoined();
        let described = close::describe(code, reason);
        self.last_error = Some(described.clone());
        if matches!(self.state, State::Closed) {
            return;
        }
        if !std::mem::take(&mut self.welcomed) {
            if code == close::INVALID_ADDRESS && self.endpoints.drop_current() {
                // One bad address among several: the others may work, so try one now.
                if self.online {
                    self.open_socket(now);
                } else {
                    self.set_state(State::Offline);
                }
                return;
            }
            self.endpoints.advance();
        }
        let refused = matches!(code, close::UNAUTHORIZED | close::TOKEN_EXPIRED);
        if refused {
            self.tokens.fresh = false;
        }
        let retry = close::retry_allowed(code) || (refused && self.tokens.enabled);
        if !self.online {
            self.set_state(State::Offline);
        } else if !retry || !self.config.auto_reconnect {
            self.set_state(State::Failed { reason: described });
        } else {
            match self.backoff.next_retry() {
                Some((attempt, delay)) => {
                    let retry_at = now.after(delay);
                    self.arm(Timer::Reconnect, retry_at);
                    self.set_state(State::Reconnecting { attempt, retry_at });
                }
                None => {
                    let tries = self.backoff.attempt();
                    let reason = format!("Gave up after {tries} attempts. {described}");
                    self.set_state(State::Failed { reason });
                }
            }
        }
    }

    /// Closes the current socket from our side for `reason` and handles the loss.
    fn abandon(&mut self, code: u16, reason: &str, now: Millis) {
        if let Some(socket) = self.socket.take() {
            self.actions.push_back(Action::Close { socket, code, reason: reason.into() });
            self.lost(code, reason, now);
        }
    }

    fn received(&mut self, decoded: Result<ServerFrame, String>, now: Millis) {
        // Any frame proves the connection alive.
        self.cancel(Timer::PongDeadline);
        let frame = match decoded {
            Ok(frame) => frame,
            Err(error) => {
                let message = format!("unreadable frame from the server: {error}");
                self.events.push_back(Event::Frame(ServerFrame::Error {
                    code: ErrorCode::InvalidFrame,
                    message,
                    about: None,
                    refusal: None,
                }));
                return;
            }
        };
        match frame {
            ServerFrame::Welcome { resume_token, heartbeat_ms, user, .. } => {
                if !matches!(self.state, State::Connecting { .. }) {
                    return;
                }
                self.cancel(Timer::Connect);
                self.backoff.reset();
                self.welcomed = true;
                self.last_error = None;
                if std::mem::replace(&mut self.ever_welcomed, true) {
                    self.stats.reconnects += 1;
                }
                self.stats.connected_since = Some(now);
                self.resume_token = Some(resume_token);
                self.user = Some(user.clone());
                if heartbeat_ms > 0 {
                    self.heartbeat = Duration::from_millis(heartbeat_ms);
                }
                self.arm(Timer::Heartbeat, now.after(self.heartbeat));
                self.set_state(State::Open);
                self.rejoins.clear();
                self.cancel(Timer::Rejoin);
                self.events.push_back(Event::Welcome { user });
                if !self.rooms.is_empty() {
                    let rooms = self
                        .rooms
                        .iter()
                        .map(|(room, state)| RoomCursor {
                            room: room.clone(),
                            since: state.last_seq,
                            history: self.history_for(state.last_seq),
                        })
                        .collect();
                    self.send(ClientFrame::Resume { rooms });
                }
                let receipts: Vec<_> = self.receipts.iter().map(|((r, k), s)| (r.clone(), *k, *s)).collect();
                for (room, kind, seq) in receipts {
                    self.send(ClientFrame::Receipt { room, kind, seq });
                }
                // After the resume: the server reads them with their rooms joined again.
                self.send_requests();
                self.flush(now);
            }
            ServerFrame::Ack { id, seq, ts, .. } => {
                if let Some(envelope) = self.outbox.ack(&id) {
                    self.events.push_back(Event::Acked { envelope, seq, ts });
                    self.flush(now);
                }
            }
            ServerFrame::Reply { id, room: _, body } => {
                if let Some(room) = self.requests.answered(&id) {
                    self.events.push_back(Event::Replied { id, room, body });
                }
            }
            ServerFrame::Reject { id, code, message, refusal } => {
                // A request's (a reject names no room: the request knows its own).
                if let Some(room) = self.requests.answered(&id) {
                    let failure = RequestFailure::Rejected { code, message, refusal };
                    self.events.push_back(Event::RequestFailed { id, room, failure });
                    return;
                }
                // `not_joined` in a room whose join the server failed (and which is asked
                // again) is not the message's fault: it waits for the join like a retryable
                // refusal. It may be stored already (an earlier send whose ack was lost), so
                // it could never be called failed here.
                let rejoining = code == RejectCode::NotJoined
                    && self.outbox.iter().any(|e| e.id == id && self.rejoins.outside(&e.room));
                let will_retry = code.retryable() || rejoining;
                // A retryable refusal stays in flight and is re-sent when its ack is overdue,
                // which paces retries instead of hammering a rate limit.
                let envelope = if will_retry {
                    self.outbox.iter().find(|e| e.id == id).cloned()
                } else {
                    self.outbox.remove(&id)
                };
                if let Some(envelope) = envelope {
                    self.events.push_back(Event::Rejected { envelope, code, message, refusal, will_retry });
                    self.flush(now);
                }
            }
            ServerFrame::Pong { nonce } => {
                if let Some((sent, at)) = self.ping_sent
                    && nonce >= sent
                {
                    self.ping_sent = None;
                    let rtt = now.since(at);
                    let smoothed = match self.stats.smoothed_rtt {
                        Some(smoothed) => (smoothed * 7 + rtt) / 8,
                        None => rtt,
                    };
                    self.stats.rtt = Some(rtt);
                    self.stats.smoothed_rtt = Some(smoothed);
                    self.events.push_back(Event::RoundTrip { rtt });
                }
            }
            ServerFrame::Joined { ref room, seq, ref epoch, .. } => {
                let asked_history = self.history_for(None).is_some();
                if let Some(state) = self.rooms.get_mut(room) {
                    if state.epoch.as_ref().is_some_and(|known| known != epoch) {
                        state.last_seq = None;
                    }
                    state.epoch = Some(epoch.clone());
                    // A join without a cursor asked for recent history: the cursor waits
                    // for the replayed messages, so a connection lost before them asks
                    // for the history again instead of resuming past it.
                    if !(state.last_seq.is_none() && asked_history) {
                        state.last_seq.get_or_insert(seq);
                    }
                    state.joined = true;
                }
                if self.rejoins.joined(room) {
                    // Back in after a failed join: what the server refused `not_joined`
                    // meanwhile goes again now.
                    self.outbox.requeue_room(room);
                    self.events.push_back(Event::Frame(frame));
                    self.flush(now);
                    return;
                }
                self.events.push_back(Event::Frame(frame));
            }
            ServerFrame::Message { ref room, seq, .. } => {
                if let Some(state) = self.rooms.get_mut(room) {
                    state.last_seq = Some(state.last_seq.map_or(seq, |last| last.max(seq)));
                }
                self.events.push_back(Event::Frame(frame));
            }
            ServerFrame::Left { ref room } => {
                if let Some(state) = self.rooms.get_mut(room) {
                    state.joined = false;
                }
                self.events.push_back(Event::Frame(frame));
            }
            ServerFrame::Error { code: ErrorCode::Internal, about: Some(ref room), .. }
                if self.rooms.get(room).is_some_and(|state| !state.joined) =>
            {
                // The server could not join us for a reason of its own: ask again later.
                let delay = self.rejoins.failed(room);
                if self.deadline(Timer::Rejoin).is_none() {
                    self.arm(Timer::Rejoin, now.after(delay));
                }
                self.events.push_back(Event::Frame(frame));
            }
            ServerFrame::Error { code: ErrorCode::CursorAhead, about: Some(ref room), .. } => {
                // The cursor is from a history the room no longer has: the replay that
                // follows starts the room afresh.
                if let Some(state) = self.rooms.get_mut(room) {
                    state.last_seq = None;
                }
                self.events.push_back(Event::Frame(frame));
            }
            ServerFrame::TokenExpiring { .. } => {
                self.tokens.fresh = false;
                self.fetch_token();
                self.events.push_back(Event::Frame(frame));
            }
            other => self.events.push_back(Event::Frame(other)),
        }
    }

    fn fire(&mut self, timer: Timer, now: Millis) {
        match timer {
            Timer::Connect => self.abandon(close::CONNECT_TIMEOUT, "connect timeout", now),
            Timer::Reconnect => {
                if matches!(self.state, State::Reconnecting { .. }) {
                    self.open_socket(now);
                }
            }
            Timer::Heartbeat => {
                if self.state == State::Open {
                    self.ping(now);
                    self.arm(Timer::Heartbeat, now.after(self.heartbeat));
                }
            }
            Timer::PongDeadline => self.abandon(close::HEARTBEAT_TIMEOUT, "heartbeat timeout", now),
            Timer::AckTimeout => {
                if self.state == State::Open {
                    for envelope in self.outbox.overdue(now, self.config.ack_timeout) {
                        self.send(envelope.frame());
                    }
                    self.stats.resent = self.outbox.resent();
                }
            }
            Timer::Expiry => {
                let expired = self.outbox.expire(now);
                self.events.extend(expired.into_iter().map(Event::Dropped));
            }
            Timer::Rejoin => {
                for room in self.rejoins.take() {
                    if self.state == State::Open
                        && let Some(state) = self.rooms.get(&room).filter(|state| !state.joined)
                    {
                        let since = state.last_seq;
                        let history = self.history_for(since);
                        self.send(ClientFrame::Join { room, since, history });
                    }
                }
            }
            Timer::TokenRetry => {
                if self.tokens.waiting || self.state == State::Open {
                    self.fetch_token();
                }
            }
            Timer::RequestDeadline => {
                let expired = self.requests.expired(now);
                self.fail_requests(expired, RequestFailure::TimedOut);
            }
        }
    }

    /// Sends every request not on the wire yet, if the connection is open.
    fn send_requests(&mut self) {
        if self.state == State::Open {
            for frame in self.requests.sendable() {
                self.send(frame);
            }
        }
    }

    /// Tells the app that these requests will get no answer.
    fn fail_requests(&mut self, requests: Vec<(String, String)>, failure: RequestFailure) {
        for (id, room) in requests {
            self.events.push_back(Event::RequestFailed { id, room, failure: failure.clone() });
        }
    }

    /// Asks the driver's provider for a token, unless an answer is awaited already.
    fn fetch_token(&mut self) {
        if self.tokens.enabled && !std::mem::replace(&mut self.tokens.fetching, true) {
            self.cancel(Timer::TokenRetry);
            self.actions.push_back(Action::FetchToken);
        }
    }

    /// Sees the clock jump (see [`Connection::handle`]) before anything acts on `now`:
    /// moves deadlines back with the clock, and says whether the device slept.
    fn observe_clock(&mut self, now: Millis) -> bool {
        let last = self.last_now.replace(now);
        if let Some(last) = last
            && now < last
        {
            let back = last.since(now);
            self.outbox.shift_back(back);
            for at in self.timers.values_mut() {
                *at = Millis(at.0.saturating_sub(back.as_millis() as u64));
            }
            if let State::Reconnecting { attempt, retry_at } = self.state {
                let retry_at = Millis(retry_at.0.saturating_sub(back.as_millis() as u64));
                self.set_state(State::Reconnecting { attempt, retry_at });
            }
            return false;
        }
        self.poll_timeout().is_some_and(|due| now.since(due) > self.config.sleep_gap)
    }

    /// Nothing could run for a while: deadlines that ran out meanwhile say nothing about
    /// the connection, so try or check it now.
    fn woke(&mut self, now: Millis) {
        match self.state {
            State::Reconnecting { .. } | State::Connecting { .. } => {
                self.backoff.reset();
                self.open_socket(now);
            }
            State::Open => {
                self.cancel(Timer::PongDeadline);
                self.arm(Timer::Heartbeat, now.after(self.heartbeat));
                self.ping(now);
            }
            State::Idle | State::Offline | State::Closed | State::Failed { .. } => {}
        }
    }

    /// Recent history to ask for when there is no cursor.
    fn history_for(&self, since: Option<u64>) -> Option<u32> {
        (since.is_none() && self.config.join_history > 0).then_some(self.config.join_history)
    }

    fn ping(&mut self, now: Millis) {
        self.next_nonce += 1;
        self.send(ClientFrame::Ping { nonce: self.next_nonce });
        if self.ping_sent.is_none() {
            // Timed from the oldest unanswered ping: a pong answers it or a later one.
            self.ping_sent = Some((self.next_nonce, now));
        }
        if !self.timers.contains_key(&Timer::PongDeadline) {
            self.arm(Timer::PongDeadline, now.after(self.config.pong_timeout));
        }
    }

    /// Writes a frame if open; otherwise it is not sent (callers keep what must survive).
    fn send(&mut self, frame: ClientFrame) {
        if let (State::Open, Some(socket)) = (&self.state, self.socket) {
            self.write(socket, &frame);
        }
    }

    /// Asks the driver to write `frame` in the connection's encoding, counting it.
    fn write(&mut self, socket: SocketId, frame: &ClientFrame) {
        self.stats.frames_sent += 1;
        let action = match self.encoding {
            Encoding::Json => {
                let text = frame.encode();
                self.stats.bytes_sent += text.len() as u64;
                Action::Send(socket, text)
            }
            #[cfg(feature = "msgpack")]
            Encoding::MessagePack => {
                let bytes = frame.encode_msgpack();
                self.stats.bytes_sent += bytes.len() as u64;
                Action::SendBinary(socket, bytes)
            }
        };
        self.actions.push_back(action);
    }

    /// Sends what the outbox allows.
    fn flush(&mut self, now: Millis) {
        if self.state == State::Open {
            for envelope in self.outbox.take_sendable(now, self.config.max_in_flight) {
                self.send(envelope.frame());
            }
            self.stats.resent = self.outbox.resent();
        }
    }

    /// Housekeeping after every input: outbox timers and the queue-size event.
    fn after(&mut self, now: Millis) {
        let expired = self.outbox.expire(now);
        self.events.extend(expired.into_iter().map(Event::Dropped));
        match self.outbox.next_ack_deadline(self.config.ack_timeout).filter(|_| self.state == State::Open) {
            Some(at) => self.arm(Timer::AckTimeout, at),
            None => self.cancel(Timer::AckTimeout),
        }
        match self.outbox.next_expiry() {
            Some(at) => self.arm(Timer::Expiry, at),
            None => self.cancel(Timer::Expiry),
        }
        match self.requests.next_deadline() {
            Some(at) => self.arm(Timer::RequestDeadline, at),
            None => self.cancel(Timer::RequestDeadline),
        }
        let queue = (self.outbox.len(), self.outbox.bytes());
        if queue != self.reported_queue {
            self.reported_queue = queue;
            self.events.push_back(Event::Queue { messages: queue.0, bytes: queue.1 });
        }
    }

    fn mark_rooms_unjoined(&mut self) {
        for state in self.rooms.values_mut() {
            state.joined = false;
        }
    }

    fn arm(&mut self, timer: Timer, at: Millis) {
        self.timers.insert(timer, at);
    }

    fn cancel(&mut self, timer: Timer) {
        self.timers.remove(&timer);
    }

    fn set_state(&mut self, state: State) {
        if self.state != state {
            self.state = state.clone();
            self.events.push_back(Event::State(state));
        }
    }
}

/// Convenience for drivers and tests: everything queued, in order.
impl Connection {
    /// Drains all pending actions.
    pub fn drain_actions(&mut self) -> Vec<Action> {
        self.actions.drain(..).collect()
    }

    /// Drains all pending events.
    pub fn drain_events(&mut self) -> Vec<Event> {
        self.events.drain(..).collect()
    }
}

/// What the core knows about the app's token provider.
#[derive(Debug, Default)]
struct TokenSupply {
    /// The driver has a provider.
    enabled: bool,
    /// The token in hand has not been refused or warned about.
    fresh: bool,
    /// An [`Action::FetchToken`] awaits its answer.
    fetching: bool,
    /// A connect waits for the answer.
    waiting: bool,
    /// Failures in a row, for the retry delay.
    failures: u32,
}

impl TokenSupply {
    /// A token arrived; returns whether a connect was waiting for it.
    fn arrived(&mut self) -> bool {
        self.fresh = true;
        self.fetching = false;
        self.failures = 0;
        std::mem::take(&mut self.waiting)
    }

    /// The provider failed; returns how long to wait before asking again.
    fn failed(&mut self) -> Duration {
        self.fetching = false;
        self.failures = self.failures.saturating_add(1);
        let millis = 1_000u64.saturating_mul(1 << self.failures.min(6).saturating_sub(1));
        Duration::from_millis(millis.min(30_000))
    }
}
