//! What a connection must answer, worked out on the client's side from `PROTOCOL.md`'s
//! rules: for every message a case sends, the frame the server writes back at once (a
//! welcome, an error with its code, a pong, a join's snapshot and replay…), the close
//! code that ends the connection, and the publishes that must be acked.
//!
//! Frames the server queues (acks, messages, presence, typing, state, receipts) can
//! interleave with those answers; everything else arrives in the order the messages
//! were sent, because one task reads and answers them in turn. So the answers are
//! compared in order, and queued frames apart.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use tether_shared::frame::valid_room_name;
use tether_shared::{ClientFrame, Encoding, ErrorCode, PROTOCOL_VERSION, RejectCode, ServerFrame, close};

use crate::targets::token::auth;

/// One message a case sends on a connection.
#[derive(Debug, Clone)]
pub enum Sent {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A text message whose payload is not UTF-8.
    BadUtf8,
    /// A message over the server's 64 KiB limit.
    TooBig,
    /// A WebSocket-level ping (answered by the protocol layer, not the connection).
    Ping,
}

/// An answer the server must write, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// The `welcome`.
    Welcome,
    /// An `error` with this code and `about`.
    Error(ErrorCode, Option<String>),
    /// A `pong` with this nonce.
    Pong(u64),
    /// An `echo` of this body.
    Echo(Value),
    /// A `joined` for the room, then (when the join asked for it) an optional
    /// `cursor_ahead` error and the replay's `replayed`.
    Joined(String, bool),
    /// A `left`.
    Left(String),
    /// A `members` page.
    Members(String),
    /// A `refreshed`.
    Refreshed,
    /// A publish refused.
    Reject(String, RejectCode),
}

/// The connection as the server must see it.
#[derive(Debug)]
pub struct Model {
    auth: bool,
    encoding: Encoding,
    now: u64,
    /// The user (sub) and room patterns, once welcomed.
    identity: Option<(Option<String>, Vec<String>)>,
    strikes: u32,
    joined: BTreeSet<String>,
    /// The answers, in order.
    pub expected: Vec<Expect>,
    /// The close code that ends the connection, if one must.
    pub close: Option<u16>,
    /// Publishes that must be acked, by id, with how many times.
    pub acks: BTreeMap<String, usize>,
}

/// What the server does with frames of the wrong kind before `hello`, once too often,
/// and so on: these are its limits, as `Config::for_tests` and `limits.rs` set them.
const MAX_STRIKES: u32 = 10;
const MAX_ROOMS: usize = 32;
const MAX_BODY_BYTES: usize = 16 * 1024;
const MAX_STATE_BYTES: usize = 2 * 1024;

/// Whether a publish body is refused as `too_large`: over [`MAX_BODY_BYTES`] as compact
/// JSON, or nested past [`tether_shared::frame::MAX_BODY_DEPTH`] (PROTOCOL.md, *Publish*).
pub fn too_large(body: &serde_json::Value) -> bool {
    serde_json::to_string(body).map_or(0, |t| t.len()) > MAX_BODY_BYTES
        || tether_shared::frame::nesting(body) > tether_shared::frame::MAX_BODY_DEPTH
}

impl Model {
    /// A new connection to the dev server or (`auth`) the one that wants tokens, at
    /// `now` (seconds since the epoch).
    pub fn new(auth: bool, encoding: Encoding, now: u64) -> Model {
        Model {
            auth,
            encoding,
            now,
            identity: None,
            strikes: 0,
            joined: BTreeSet::new(),
            expected: Vec::new(),
            close: None,
            acks: BTreeMap::new(),
        }
    }

    /// Whether the connection is over.
    pub fn closed(&self) -> bool {
        self.close.is_some()
    }

    /// The server reads one more message.
    pub fn feed(&mut self, sent: &Sent) {
        if self.closed() {
            return;
        }
        match sent {
            Sent::Text(_) if self.encoding == Encoding::MessagePack => {
                self.strike(ErrorCode::TextNotSupported)
            }
            Sent::Text(text) => match ClientFrame::decode(text) {
                Ok(frame) => self.frame(frame),
                Err(error) => self.strike(error.code),
            },
            Sent::Binary(_) if self.encoding == Encoding::Json => self.strike(ErrorCode::BinaryNotSupported),
            Sent::Binary(bytes) => match ClientFrame::decode_msgpack(bytes) {
                Ok(frame) => self.frame(frame),
                Err(error) => self.strike(error.code),
            },
            Sent::BadUtf8 => self.close = Some(close::INVALID_PAYLOAD),
            Sent::TooBig => self.close = Some(close::TOO_BIG),
            Sent::Ping => {}
        }
    }

    fn strike(&mut self, code: ErrorCode) {
        self.strikes += 1;
        if self.strikes > MAX_STRIKES {
            self.close = Some(close::POLICY);
        } else {
            self.expected.push(Expect::Error(code, None));
        }
    }

    fn error(&mut self, code: ErrorCode, about: &str) {
        self.expected.push(Expect::Error(code, Some(about.to_owned())));
    }

    fn frame(&mut self, frame: ClientFrame) {
        let joined = |model: &Model, room: &str| model.joined.contains(room);
        match frame {
            ClientFrame::Echo { body } => self.expected.push(Expect::Echo(body)),
            ClientFrame::Ping { nonce } => self.expected.push(Expect::Pong(nonce)),
            ClientFrame::Hello { .. } if self.identity.is_some() => {
                self.expected.push(Expect::Error(ErrorCode::AlreadyHello, None));
            }
            ClientFrame::Hello { v, token, .. } => {
                if v != PROTOCOL_VERSION {
                    self.close = Some(close::BAD_HELLO);
                    return;
                }
                match (token, self.auth) {
                    // The dev server's secret is its own: no token made here verifies.
                    (Some(_), false) => self.close = Some(close::UNAUTHORIZED),
                    (None, false) => {
                        self.identity = Some((None, vec!["*".into()]));
                        self.expected.push(Expect::Welcome);
                    }
                    (None, true) => self.close = Some(close::UNAUTHORIZED),
                    (Some(token), true) => {
                        match auth::verify(super::AUTH_SECRET.as_bytes(), &token, self.now) {
                            Ok(claims) => {
                                self.identity = Some((Some(claims.sub), claims.rooms));
                                self.expected.push(Expect::Welcome);
                            }
                            Err(auth::TokenError::Expired) => self.close = Some(close::TOKEN_EXPIRED),
                            Err(_) => self.close = Some(close::UNAUTHORIZED),
                        }
                    }
                }
            }
            _ if self.identity.is_none() => self.strike(ErrorCode::HelloRequired),
            ClientFrame::Join { room, since, history } => {
                self.join(room, since.is_some() || history.is_some_and(|h| h > 0))
            }
            ClientFrame::Resume { rooms } => {
                for cursor in rooms {
                    self.join(cursor.room, cursor.since.is_some() || cursor.history.is_some_and(|h| h > 0));
                }
            }
            ClientFrame::Leave { room } => {
                self.joined.remove(&room);
                self.expected.push(Expect::Left(room));
            }
            ClientFrame::Publish { id, room, body, .. } => {
                let code = if id.is_empty() || id.chars().count() > 64 {
                    Some(RejectCode::InvalidId)
                } else if !joined(self, &room) {
                    Some(RejectCode::NotJoined)
                } else if too_large(&body) {
                    Some(RejectCode::TooLarge)
                } else {
                    None
                };
                match code {
                    Some(code) => self.expected.push(Expect::Reject(id, code)),
                    None => *self.acks.entry(id).or_default() += 1,
                }
            }
            // The fuzzed server has no channels: no room answers requests.
            ClientFrame::Request { id, room, .. } => {
                let code = if id.is_empty() || id.chars().count() > 64 {
                    RejectCode::InvalidId
                } else if !joined(self, &room) {
                    RejectCode::NotJoined
                } else {
                    RejectCode::NotHandled
                };
                self.expected.push(Expect::Reject(id, code));
            }
            ClientFrame::Typing { room, .. } | ClientFrame::Receipt { room, .. } => {
                if !joined(self, &room) {
                    self.error(ErrorCode::NotJoined, &room);
                }
            }
            ClientFrame::State { room, key, value } => {
                if !joined(self, &room) {
                    self.error(ErrorCode::NotJoined, &room);
                } else if key.is_empty()
                    || key.chars().count() > 64
                    || serde_json::to_string(&value).map_or(0, |t| t.len()) > MAX_STATE_BYTES
                {
                    self.error(ErrorCode::InvalidFrame, &room);
                }
            }
            ClientFrame::Members { room, .. } => {
                if joined(self, &room) {
                    self.expected.push(Expect::Members(room));
                } else {
                    self.error(ErrorCode::NotJoined, &room);
                }
            }
            ClientFrame::Refresh { token } => {
                let verified = if self.auth {
                    auth::verify(super::AUTH_SECRET.as_bytes(), &token, self.now).ok()
                } else {
                    None
                };
                let identity = self.identity.as_mut().expect("after hello");
                match verified {
                    Some(claims) if Some(&claims.sub) == identity.0.as_ref() => {
                        identity.1 = claims.rooms;
                        self.expected.push(Expect::Refreshed);
                    }
                    _ => self.expected.push(Expect::Error(ErrorCode::TokenRefused, None)),
                }
            }
        }
    }

    fn join(&mut self, room: String, replay: bool) {
        let rooms = &self.identity.as_ref().expect("after hello").1;
        let about: String = room.chars().take(64).collect();
        if !valid_room_name(&room) {
            self.error(ErrorCode::InvalidRoom, &about);
        } else if !auth::room_allowed(rooms, &room) {
            self.error(ErrorCode::Forbidden, &about);
        } else if !self.joined.contains(&room) && self.joined.len() >= MAX_ROOMS {
            self.error(ErrorCode::TooManyRooms, &about);
        } else {
            self.joined.insert(room.clone());
            self.expected.push(Expect::Joined(room, replay));
        }
    }
}

/// Whether the server writes `frame` as an answer, in order (rather than from the
/// connection's queue, interleaved).
pub fn answered(frame: &ServerFrame) -> bool {
    !matches!(
        frame,
        ServerFrame::Ack { .. }
            | ServerFrame::Message { .. }
            | ServerFrame::Presence { .. }
            | ServerFrame::PresenceCount { .. }
            | ServerFrame::Typing { .. }
            | ServerFrame::State { .. }
            | ServerFrame::Receipt { .. }
            | ServerFrame::TokenExpiring { .. }
    )
}

/// Compares the answers received (in order, queued frames left out) with the model's,
/// followed by the pong of the `sentinel` ping when the connection stays open. With
/// `cut`, the connection may have been cut short and the answers may stop early (a
/// message over the size limit is refused while the client still writes it, and the
/// close can reset the connection before every answer was read).
pub fn compare(model: &Model, got: &[ServerFrame], sentinel: Option<u64>, cut: bool) -> Result<(), String> {
    let mut at = 0;
    let mismatch = |at: usize, wanted: &str| {
        let shown: Vec<String> = got.iter().map(|f| abbreviate(&format!("{f:?}"))).collect();
        let expected: Vec<String> = model.expected.iter().map(|e| abbreviate(&format!("{e:?}"))).collect();
        format!(
            "answer {at} should be {wanted}\n  expected: {expected:?} then close {:?}\n  got:      {shown:?}",
            model.close
        )
    };
    for expect in &model.expected {
        if cut && at == got.len() {
            return Ok(());
        }
        let frame = got.get(at);
        let ok = match (expect, frame) {
            (Expect::Welcome, Some(ServerFrame::Welcome { .. })) => true,
            (Expect::Error(code, about), Some(ServerFrame::Error { code: c, about: a, .. })) => {
                code == c && about == a
            }
            (Expect::Pong(nonce), Some(ServerFrame::Pong { nonce: n })) => nonce == n,
            (Expect::Echo(body), Some(ServerFrame::Echo { body: b })) => body == b,
            (Expect::Left(room), Some(ServerFrame::Left { room: r })) => room == r,
            (Expect::Members(room), Some(ServerFrame::Members { room: r, .. })) => room == r,
            (Expect::Refreshed, Some(ServerFrame::Refreshed { .. })) => true,
            (Expect::Reject(id, code), Some(ServerFrame::Reject { id: i, code: c, .. })) => {
                id == i && code == c
            }
            (Expect::Joined(room, replay), Some(ServerFrame::Joined { room: r, .. })) if room == r => {
                if *replay {
                    if let Some(ServerFrame::Error { code: ErrorCode::CursorAhead, about: Some(a), .. }) =
                        got.get(at + 1)
                        && a == room
                    {
                        at += 1;
                    }
                    at += 1;
                    if cut && at >= got.len() {
                        return Ok(());
                    }
                    matches!(got.get(at), Some(ServerFrame::Replayed { room: r, .. }) if r == room)
                } else {
                    true
                }
            }
            _ => false,
        };
        if !ok {
            return Err(mismatch(at, &format!("{expect:?}")));
        }
        at += 1;
    }
    if let Some(nonce) = sentinel {
        match got.get(at) {
            Some(ServerFrame::Pong { nonce: n }) if *n == nonce => at += 1,
            _ => return Err(mismatch(at, &format!("the pong of the last ping ({nonce})"))),
        }
    }
    if at < got.len() {
        return Err(mismatch(at, "nothing more"));
    }
    Ok(())
}

fn abbreviate(text: &str) -> String {
    if text.chars().count() > 160 {
        format!("{}…", text.chars().take(160).collect::<String>())
    } else {
        text.to_owned()
    }
}
