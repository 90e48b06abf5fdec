//! What a driver and the core say to each other: the [`Input`]s it feeds in, the
//! [`Action`]s it carries out, the [`Event`]s the UI hears, the [`State`] a connection
//! is in, and its settings. Kept apart so that `connection/mod.rs` reads as the state
//! machine alone.

use std::time::Duration;

use serde_json::Value;

use crate::backoff::BackoffConfig;
use crate::frame::{ReceiptKind, RejectCode, ServerFrame, User};
use crate::outbox::{Dropped, Envelope, OutboxConfig, OutboxError};
use crate::time::Millis;

/// Identifies one socket the driver opened, so that late events from an old socket are
/// never mistaken for the current one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(pub u64);

/// The deadlines the core keeps, one of each kind at most. Drivers never see them one
/// by one: [`Connection::poll_timeout`](super::Connection::poll_timeout) says when the
/// earliest is due; tests name them to ask for a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// The socket must open and the server must welcome us before this.
    Connect,
    /// Time to try connecting again.
    Reconnect,
    /// Time to send the next ping.
    Heartbeat,
    /// The pong (or any frame) must arrive before this, or the connection is dead.
    PongDeadline,
    /// The oldest unacked message is overdue and is to be sent again.
    AckTimeout,
    /// The next queued message runs out of TTL.
    Expiry,
    /// Time to ask the token provider again after it failed.
    TokenRetry,
    /// Time to ask again for rooms the server failed to join (`error internal`).
    Rejoin,
    /// The earliest request runs out of time.
    RequestDeadline,
}

impl Timer {
    /// Every timer kind.
    pub const ALL: [Timer; 9] = [
        Timer::Connect,
        Timer::Reconnect,
        Timer::Heartbeat,
        Timer::PongDeadline,
        Timer::AckTimeout,
        Timer::Expiry,
        Timer::TokenRetry,
        Timer::Rejoin,
        Timer::RequestDeadline,
    ];
}

/// Where the connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Never connected.
    Idle,
    /// Opening a socket and waiting for the server's welcome. `attempt` is 0 for a first
    /// connect and counts retries otherwise.
    Connecting {
        /// Retries so far.
        attempt: u32,
    },
    /// Welcomed: messages flow.
    Open,
    /// Waiting to try again.
    Reconnecting {
        /// The retry that comes next (1 for the first).
        attempt: u32,
        /// When it will be made.
        retry_at: Millis,
    },
    /// The browser says there is no network; nothing is tried until it comes back.
    Offline,
    /// The person disconnected.
    Closed,
    /// Given up: attempts exhausted, or the server said retrying cannot help.
    Failed {
        /// A sentence for a person.
        reason: String,
    },
}

/// Something that happened, told to the core.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The app wants to be connected (also "retry now" from a failed or waiting state).
    Connect,
    /// The person wants to be disconnected. No reconnect follows.
    Disconnect,
    /// The socket finished its handshake.
    SocketOpened(SocketId),
    /// A text message arrived.
    Received(SocketId, String),
    /// A binary message arrived (MessagePack, on a connection that chose it).
    ReceivedBinary(SocketId, Vec<u8>),
    /// The socket closed (1006 when it died without a close frame).
    SocketClosed {
        /// The socket that closed; events of a socket the core replaced are ignored.
        socket: SocketId,
        /// Its close code (`tether_shared::close` says which allow a retry).
        code: u16,
        /// Its close reason, shown to people when the core gives up.
        reason: String,
    },
    /// The socket reported an error; a `SocketClosed` follows.
    SocketErrored(SocketId),
    /// The browser reports the network is back.
    NetworkOnline,
    /// The browser reports the network is gone.
    NetworkOffline,
    /// The page became visible again (the person came back to the tab).
    PageVisible,
    /// Queue a message for a room; it is sent when open and kept until acked.
    Publish {
        /// Client message id; see [`Connection::new_message_id`](super::Connection::new_message_id).
        id: String,
        /// The room it goes to; it must be joined by the time it is sent.
        room: String,
        /// The message itself, any JSON value.
        body: Value,
        /// Higher goes first.
        priority: u8,
    },
    /// Ask a joined room's channel a question: answered by [`Event::Replied`] or
    /// [`Event::RequestFailed`], exactly once. It waits for the connection (within its
    /// deadline); see `connection/requests.rs` for what a dropped socket does to it.
    Request {
        /// Request id, unique per user; [`Connection::new_message_id`](super::Connection::new_message_id) makes one.
        id: String,
        /// The room whose channel answers.
        room: String,
        /// The question.
        body: Value,
        /// Safe to ask twice: sent again after a reconnect instead of failing.
        idempotent: bool,
        /// How long to wait for the answer; `None`: [`ConnectionConfig::request_timeout`].
        timeout: Option<Duration>,
    },
    /// Be in a room, now and after every reconnect.
    Join(String),
    /// Stop being in a room.
    Leave(String),
    /// Typing indicator; dropped when not open (it is ephemeral).
    Typing {
        /// The room the person is typing in.
        room: String,
        /// Typing or not.
        active: bool,
    },
    /// A receipt; the latest per room and kind is kept and sent once open.
    Receipt {
        /// The room the receipt is for.
        room: String,
        /// Delivered or read.
        kind: ReceiptKind,
        /// Up to this seq.
        seq: u64,
    },
    /// Volatile state for a room ([`ClientFrame::State`](crate::ClientFrame::State)):
    /// sent only when open, never queued, since only a fresh value matters.
    State {
        /// The room (joined).
        room: String,
        /// What the value is of.
        key: String,
        /// The latest value.
        value: Value,
    },
    /// An echo request (diagnostics); dropped when not open.
    Echo(Value),
    /// Ask for a page of a room's members (answered by a `members` frame); dropped when
    /// not open, like any request whose answer only matters now.
    Members {
        /// The room whose members to list (it must be joined).
        room: String,
        /// Start after this user id.
        after: Option<String>,
        /// Page size.
        limit: Option<u32>,
    },
    /// A new token (the app's answer to a `token_expiring` frame, or ahead of it): used
    /// by every later `hello`, and sent at once as a `refresh` when connected, which
    /// renews the open connection's credential in place.
    RefreshToken(String),
    /// The token provider gave no token (see [`Action::FetchToken`]).
    TokenFailed(TokenError),
}

/// Why a token provider gave no token, which decides what the core does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not now (the backend is down, the network failed): the core asks again after 1 s,
    /// doubling up to 30 s, and shows the reason meanwhile.
    Unavailable(String),
    /// The person is not signed in (any more): asking again cannot help, so the core
    /// stops in `Failed` with the reason, until the app connects again.
    SignedOut(String),
}

impl From<String> for TokenError {
    /// A plain error message is taken as a passing failure, so `?` on a failed request
    /// retries.
    fn from(reason: String) -> TokenError {
        TokenError::Unavailable(reason)
    }
}

impl From<&str> for TokenError {
    /// As for `String`: a passing failure.
    fn from(reason: &str) -> TokenError {
        TokenError::Unavailable(reason.to_owned())
    }
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Unavailable(reason) | TokenError::SignedOut(reason) => formatter.write_str(reason),
        }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Open a new socket under this id, to this address.
    Open {
        /// The id the socket's events are to carry.
        socket: SocketId,
        /// Where to connect: one of the addresses the core was given (see
        /// [`Connection::set_endpoints`](super::Connection::set_endpoints)).
        endpoint: String,
    },
    /// Write one text message on the socket.
    Send(SocketId, String),
    /// Write one binary message on the socket (MessagePack encoding).
    SendBinary(SocketId, Vec<u8>),
    /// Close the socket and forget it; its later events are ignored anyway.
    Close {
        /// The socket to close; a driver closes it only if it is still the current one.
        socket: SocketId,
        /// Close code (1000 or 4000–4999, as browsers require).
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// Ask the app's token provider for a token and answer with [`Input::RefreshToken`]
    /// or [`Input::TokenFailed`]. Only cores told that a provider exists
    /// ([`Connection::set_fetch_tokens`](super::Connection::set_fetch_tokens)) ask, and
    /// never twice before an answer.
    FetchToken,
}

/// What the UI may want to know.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The state changed.
    State(State),
    /// The server welcomed us as this user.
    Welcome {
        /// Who the server says we are.
        user: User,
    },
    /// A frame for the app: `message`, `joined`, `left`, `replayed`, `presence`,
    /// `typing`, `receipt`, `echo` or `error`.
    Frame(ServerFrame),
    /// The server stored a message of ours.
    Acked {
        /// The message, as it was queued.
        envelope: Envelope,
        /// Its seq in the room.
        seq: u64,
        /// When it was stored.
        ts: Millis,
    },
    /// The server refused a message.
    Rejected {
        /// The message, as it was queued.
        envelope: Envelope,
        /// The server's reason; [`RejectCode::retryable`] says whether it is tried again.
        code: RejectCode,
        /// The server's explanation, for people.
        message: String,
        /// With [`RejectCode::Refused`]: the app's own error, to decode as the room's
        /// channel error type.
        refusal: Option<crate::channel::Refusal>,
        /// Whether it stays queued and will be sent again.
        will_retry: bool,
    },
    /// The answer to a request.
    Replied {
        /// The request's id.
        id: String,
        /// Its room.
        room: String,
        /// The answer.
        body: Value,
    },
    /// A request will get no answer.
    RequestFailed {
        /// The request's id.
        id: String,
        /// Its room.
        room: String,
        /// Why.
        failure: super::requests::RequestFailure,
    },
    /// The outbox could not take a message.
    Refused {
        /// The message id.
        id: String,
        /// Why the outbox refused it (too big, or full with a reject-new policy).
        error: OutboxError,
    },
    /// The outbox let go of a message without an ack (overflow or TTL).
    Dropped(Dropped),
    /// A heartbeat's pong arrived; [`Connection::stats`](super::Connection::stats) has
    /// the new round trip.
    RoundTrip {
        /// The round trip just measured.
        rtt: Duration,
    },
    /// The outbox's size changed; persist it now if you persist it.
    Queue {
        /// Messages waiting for an ack.
        messages: usize,
        /// Their bytes.
        bytes: usize,
    },
}

/// What a connection has done so far, for a "connection details" panel and an
/// indicator's tooltip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// The last heartbeat's round trip (ping sent to pong received).
    pub rtt: Option<Duration>,
    /// Round trips smoothed as TCP does (each new one counts for an eighth), so one
    /// slow pong does not make the number jump.
    pub smoothed_rtt: Option<Duration>,
    /// Frames written, the `hello`s included.
    pub frames_sent: u64,
    /// Frames received on the current sockets.
    pub frames_received: u64,
    /// Bytes of the frames written (their JSON text).
    pub bytes_sent: u64,
    /// Bytes of the frames received.
    pub bytes_received: u64,
    /// Welcomes after the first: how often the connection came back.
    pub reconnects: u32,
    /// Publishes written again, after a reconnect or an ack timeout; the server answers
    /// those it already stored with their first ack.
    pub resent: u64,
    /// When the current connection was welcomed; `None` while not open.
    pub connected_since: Option<Millis>,
}

/// Connection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionConfig {
    /// Socket open plus welcome must take less than this.
    pub connect_timeout: Duration,
    /// Ping interval until the server's welcome says otherwise.
    pub heartbeat: Duration,
    /// A ping unanswered (no frame at all) for this long means the connection is dead.
    pub pong_timeout: Duration,
    /// A sent message unacked for this long is sent again.
    pub ack_timeout: Duration,
    /// How long a request waits for its answer unless it says otherwise.
    pub request_timeout: Duration,
    /// Messages sent but unacked at once.
    pub max_in_flight: usize,
    /// Reconnect automatically after an unexpected close.
    pub auto_reconnect: bool,
    /// Reconnect delays.
    pub backoff: BackoffConfig,
    /// Outbox bounds and policy.
    pub outbox: OutboxConfig,
    /// Token for `hello`.
    pub token: Option<String>,
    /// Display name for `hello` (dev mode).
    pub name: Option<String>,
    /// Recent messages to ask for when joining a room the client has seen nothing of.
    pub join_history: u32,
    /// A deadline missed by more than this means the device slept (or the tab was
    /// frozen): the core then checks the connection at once, or reconnects at once,
    /// instead of acting on timers that ran out while nothing could run.
    pub sleep_gap: Duration,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            connect_timeout: Duration::from_secs(10),
            heartbeat: Duration::from_secs(5),
            pong_timeout: Duration::from_secs(5),
            ack_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            max_in_flight: 64,
            auto_reconnect: true,
            backoff: BackoffConfig::default(),
            outbox: OutboxConfig::default(),
            token: None,
            name: None,
            join_history: 50,
            sleep_gap: Duration::from_secs(15),
        }
    }
}

/// What the core remembers about a room the app wants to be in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomState {
    /// The highest seq received; resume asks for what comes after it.
    pub last_seq: Option<u64>,
    /// The history epoch the seqs belong to.
    pub epoch: Option<String>,
    /// Whether the server confirmed the join on the current connection.
    pub joined: bool,
}
