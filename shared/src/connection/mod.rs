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
//! - never a reconnect after [`Input::Disconnect`] until the next [`Input::Connect`].

mod current;
mod vocabulary;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde_json::Value;

use crate::backoff::Backoff;
use crate::close;
use crate::frame::{ClientFrame, ErrorCode, PROTOCOL_VERSION, ReceiptKind, RoomCursor, ServerFrame, User};
use crate::outbox::{Envelope, MessageIds, Outbox};
use crate::time::Millis;

pub use current::CurrentSocket;
pub use vocabulary::{Action, ConnectionConfig, Event, Input, RoomState, SocketId, State, Timer};

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
/// Time only has to be monotonic enough for deadlines: a timer that fires early is
/// harmless, because `handle_timeout` acts only on deadlines that have passed.
pub struct Connection {
    config: ConnectionConfig,
    state: State,
    backoff: Backoff,
    outbox: Outbox,
    ids: MessageIds,
    socket: Option<SocketId>,
    next_socket: u64,
    online: bool,
    rooms: BTreeMap<String, RoomState>,
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
            state: State::Idle,
            outbox,
            socket: None,
            next_socket: 0,
            online: true,
            rooms: BTreeMap::new(),
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
    pub fn handle(&mut self, input: Input, now: Millis) {
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
                self.outbox.requeue_all();
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
                    self.actions.push_back(Action::Send(socket, hello.encode()));
                }
            }
            Input::Received(socket, text) => {
                if self.socket == Some(socket) {
                    self.received(&text, now);
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
                } else if matches!(self.state, State::Reconnecting { .. }) {
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
            }
            Input::Members { room, after, limit } => self.send(ClientFrame::Members { room, after, limit }),
        }
        self.after(now);
    }

    /// Opens a new socket; the previous one, if any, is closed first.
    fn open_socket(&mut self, now: Millis) {
        if let Some(socket) = self.socket.take() {
            self.actions.push_back(Action::Close {
                socket,
                code: close::NORMAL,
                reason: "reconnecting".into(),
            });
        }
        self.cancel(Timer::Reconnect);
        self.next_socket += 1;
        let socket = SocketId(self.next_socket);
        self.socket = Some(socket);
        self.actions.push_back(Action::Open(socket));
        self.arm(Timer::Connect, now.after(self.config.connect_timeout));
        self.set_state(State::Connecting { attempt: self.backoff.attempt() });
    }

    /// The current socket is gone: decide between offline, failed and a retry.
    fn lost(&mut self, code: u16, reason: &str, now: Millis) {
        for timer in [Timer::Connect, Timer::Heartbeat, Timer::PongDeadline, Timer::AckTimeout] {
            self.cancel(timer);
        }
        self.outbox.requeue_all();
        self.mark_rooms_unjoined();
        let described = close::describe(code, reason);
        self.last_error = Some(described.clone());
        if matches!(self.state, State::Closed) {
            return;
        }
        if !self.online {
            self.set_state(State::Offline);
        } else if !close::retry_allowed(code) || !self.config.auto_reconnect {
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

    fn received(&mut self, text: &str, now: Millis) {
        // Any frame proves the connection alive.
        self.cancel(Timer::PongDeadline);
        let frame = match ServerFrame::decode(text) {
            Ok(frame) => frame,
            Err(error) => {
                let message = format!("unreadable frame from the server: {error}");
                self.events.push_back(Event::Frame(ServerFrame::Error {
                    code: ErrorCode::InvalidFrame,
                    message,
                    about: None,
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
                self.last_error = None;
                self.resume_token = Some(resume_token);
                self.user = Some(user.clone());
                if heartbeat_ms > 0 {
                    self.heartbeat = Duration::from_millis(heartbeat_ms);
                }
                self.arm(Timer::Heartbeat, now.after(self.heartbeat));
                self.set_state(State::Open);
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
                self.flush(now);
            }
            ServerFrame::Ack { id, seq, ts, .. } => {
                if let Some(envelope) = self.outbox.ack(&id) {
                    self.events.push_back(Event::Acked { envelope, seq, ts });
                    self.flush(now);
                }
            }
            ServerFrame::Reject { id, code, message } => {
                let will_retry = code.retryable();
                // A retryable refusal stays in flight and is re-sent when its ack is overdue,
                // which paces retries instead of hammering a rate limit.
                let envelope = if will_retry {
                    self.outbox.iter().find(|e| e.id == id).cloned()
                } else {
                    self.outbox.remove(&id)
                };
                if let Some(envelope) = envelope {
                    self.events.push_back(Event::Rejected { envelope, code, message, will_retry });
                    self.flush(now);
                }
            }
            ServerFrame::Pong { .. } => {}
            ServerFrame::Joined { ref room, seq, ref epoch, .. } => {
                if let Some(state) = self.rooms.get_mut(room) {
                    if state.epoch.as_ref().is_some_and(|known| known != epoch) {
                        state.last_seq = None;
                    }
                    state.epoch = Some(epoch.clone());
                    state.last_seq.get_or_insert(seq);
                    state.joined = true;
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
            ServerFrame::Error { code: ErrorCode::CursorAhead, about: Some(ref room), .. } => {
                // The cursor is from a history the room no longer has: the replay that
                // follows starts the room afresh.
                if let Some(state) = self.rooms.get_mut(room) {
                    state.last_seq = None;
                }
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
                }
            }
            Timer::Expiry => {
                let expired = self.outbox.expire(now);
                self.events.extend(expired.into_iter().map(Event::Dropped));
            }
        }
    }

    /// Recent history to ask for when there is no cursor.
    fn history_for(&self, since: Option<u64>) -> Option<u32> {
        (since.is_none() && self.config.join_history > 0).then_some(self.config.join_history)
    }

    fn ping(&mut self, now: Millis) {
        self.next_nonce += 1;
        self.send(ClientFrame::Ping { nonce: self.next_nonce });
        if !self.timers.contains_key(&Timer::PongDeadline) {
            self.arm(Timer::PongDeadline, now.after(self.config.pong_timeout));
        }
    }

    /// Writes a frame if open; otherwise it is not sent (callers keep what must survive).
    fn send(&mut self, frame: ClientFrame) {
        if let (State::Open, Some(socket)) = (&self.state, self.socket) {
            self.actions.push_back(Action::Send(socket, frame.encode()));
        }
    }

    /// Sends what the outbox allows.
    fn flush(&mut self, now: Millis) {
        if self.state == State::Open {
            for envelope in self.outbox.take_sendable(now, self.config.max_in_flight) {
                self.send(envelope.frame());
            }
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
