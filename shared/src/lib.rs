//! The one vocabulary and the one client brain that Tether's browser client, native
//! clients and server share.
//!
//! Everything here is plain data and pure logic: no sockets, no clock, no runtime, no
//! global randomness. Time comes in as an argument ([`Millis`]) and randomness from a
//! seed, which is what lets the same code run in `wasm32` inside a browser and natively,
//! and lets every behaviour be tested deterministically.
//!
//! - [`channel`]: the app's typed contract for a family of rooms ([`Channel`]).
//! - [`typed`]: the core's events for one room, read as a channel's types.
//! - [`frame`]: the wire protocol (documented in `PROTOCOL.md`), and [`Encoding`]: its
//!   two encodings, JSON text and MessagePack binary.
//! - [`close`]: the close codes and whether each allows a retry.
//! - [`Backoff`]: reconnect delays with jitter.
//! - [`Outbox`]: unacknowledged messages, bounded, prioritised, persisted.
//! - [`Connection`]: the client's state machine, which drives the two above.

pub mod backoff;
pub mod channel;
pub mod close;
pub mod connection;
pub mod encoding;
pub mod frame;
pub mod object;
pub mod outbox;
pub mod strict_json;
#[cfg(feature = "msgpack")]
mod strict_msgpack;
pub mod time;
pub mod typed;

pub use backoff::{Backoff, BackoffConfig, Jitter};
pub use channel::{Channel, ChannelError, Json, Reason, Refusal, Requests, Undecodable};
pub use connection::{
    Action, Connection, ConnectionConfig, ConnectionStats, CurrentSocket, Event, Input, RequestFailure,
    SocketId, State, Timer, TokenError,
};
#[cfg(feature = "msgpack")]
pub use encoding::BinaryDecodeError;
pub use encoding::Encoding;
pub use frame::{
    ClientFrame, DecodeError, ErrorCode, Limits, PROTOCOL_VERSION, PresenceMode, ReceiptKind, RejectCode,
    RoomCursor, ServerFrame, User,
};
pub use outbox::{DropReason, Dropped, Envelope, MessageIds, Outbox, OutboxConfig, OutboxError, Overflow};
pub use time::Millis;

/// serde, for the code that [`objects_only!`] writes in other crates.
#[doc(hidden)]
pub use serde as __serde;
