//! Deciding what one frame means: decode it, check it against the connection's state
//! and limits, and say what the loop should write ([`After`]). Nothing here awaits, so
//! none of it takes room in the connection's task while it waits for the next frame.

use tether_shared::{ClientFrame, ErrorCode, RejectCode, RoomCursor, ServerFrame, User, close};
use tokio_tungstenite::tungstenite::Message;

use super::{Conn, Ending};
use crate::close::Close;
use crate::handshake;
use crate::limits::MAX_STRIKES;
use crate::presence;

/// What the connection loop does after handling one frame. Deciding is synchronous
/// and the loop does the writing: a write future is small, and a join's (with its
/// replay) is boxed, so a connection's task stays small for as long as it lives.
pub(super) enum After {
    /// Nothing to write now (a publish's ack comes through the queue).
    Nothing,
    /// Write this answer (encoded, so that only its text waits in the task).
    Answer(String),
    /// Join these rooms: snapshot and replay, written in order.
    Join(Vec<RoomCursor>),
    /// Ask the app's connect handler who this is (`hello` with a connect handler).
    Hello {
        /// The hello's token.
        token: Option<String>,
        /// The hello's name.
        name: Option<String>,
    },
    /// End the connection.
    End(Ending),
}

impl From<Result<ServerFrame, Ending>> for After {
    fn from(answer: Result<ServerFrame, Ending>) -> Self {
        match answer {
            Ok(frame) => After::Answer(frame.encode()),
            Err(ending) => After::End(ending),
        }
    }
}

impl Conn {
    pub(super) fn error(
        &mut self,
        code: ErrorCode,
        message: impl Into<String>,
        about: Option<&str>,
    ) -> ServerFrame {
        self.context.metrics.error(code);
        ServerFrame::Error { code, message: message.into(), about: about.map(str::to_owned), refusal: None }
    }

    /// An answer to input that should not have been sent; too many end the connection.
    fn strike(&mut self, code: ErrorCode, message: impl Into<String>) -> Result<ServerFrame, Ending> {
        self.strikes += 1;
        if self.strikes > MAX_STRIKES {
            return Err(Ending::Close(Close::new(close::POLICY, "too many invalid frames")));
        }
        Ok(self.error(code, message, None))
    }

    pub(super) fn reject(&self, id: &str, code: RejectCode, message: &str) -> ServerFrame {
        self.context.metrics.rejection(code);
        ServerFrame::Reject { id: id.into(), code, message: message.into(), refusal: None }
    }

    /// A new token for the connection's user: it replaces the credential (its expiry
    /// and rooms) without touching anything else.
    fn refresh(&mut self, token: &str) -> ServerFrame {
        let verified = crate::auth::verify(&self.context.secret, token, crate::auth::unix_now());
        let identity = self.identity.as_mut().expect("after hello");
        let refusal = match verified {
            Ok(claims) if claims.sub == identity.user.id => {
                identity.expires = claims.exp;
                identity.rooms = claims.rooms;
                self.context.metrics.token_refreshes.inc();
                return ServerFrame::Refreshed { expires_at: claims.exp };
            }
            Ok(_) => "the token is for another user",
            Err(crate::auth::TokenError::Expired) => "the token has expired",
            Err(_) => "the token is not valid",
        };
        self.error(ErrorCode::TokenRefused, refusal, None)
    }

    /// The connection is `identity` from now on: its `welcome`.
    fn welcomed(&mut self, identity: handshake::Identity) -> ServerFrame {
        let context = &self.context;
        let welcome = handshake::welcome(&context.config, &context.secret, &identity);
        tracing::Span::current().record("user", identity.user.id.as_str());
        tracing::info!(name = %identity.user.name, "welcomed");
        context.metrics.welcomes.inc();
        context.hub.connected().add(&identity.user.id, &self.out);
        self.connecting = None;
        self.identity = Some(identity);
        welcome
    }

    /// Asks the app's connect handler who this connection is: its `welcome`, or the
    /// close that refuses it (4401 with the app's words; 1011 if the handler failed).
    pub(super) async fn hello_by_app(
        &mut self,
        token: Option<String>,
        name: Option<String>,
    ) -> Result<ServerFrame, Close> {
        let handler = self.context.channels.connect.clone().expect("only with a connect handler");
        let headers = self.connecting.take().map(|headers| *headers).unwrap_or_default();
        let connecting = crate::channels::Connecting { headers, token, name, peer: self.peer };
        match crate::channels::guarded((handler.call)(connecting), handler.patience).await {
            Ok(Ok(admitted)) => match handshake::admitted(admitted) {
                Some(identity) => Ok(self.welcomed(identity)),
                None => Err(Close::new(close::INTERNAL, "the app's connect handler gave an invalid user id")),
            },
            Ok(Err(crate::channels::Refused::App(refused))) => {
                tracing::info!(code = refused.refusal.code, "refused by the app's connect handler");
                Err(Close::new_owned(close::UNAUTHORIZED, refused.message))
            }
            // The backend may be back in a moment: the client retries (1013).
            Ok(Err(crate::channels::Refused::Unavailable(why))) => {
                tracing::warn!(why, "connect hook");
                Err(Close::new_owned(close::TRY_AGAIN_LATER, why))
            }
            Ok(Err(crate::channels::Refused::Broken(why))) => {
                tracing::error!(why, "connect hook");
                Err(Close::new_owned(close::INTERNAL, why))
            }
            Err(fault) => {
                tracing::error!(%fault, "connect handler");
                Err(Close::new(close::INTERNAL, "the app's connect handler failed"))
            }
        }
    }

    /// Handles one message and says what to write.
    pub(super) fn received(&mut self, message: Message) -> After {
        self.context.metrics.frames_in.inc();
        if self.frames.check().is_err() {
            self.context.metrics.rate_limited.inc();
            return self.strike(ErrorCode::RateLimited, "too many frames; slow down").into();
        }
        match message {
            Message::Text(_) if self.encoding == tether_shared::Encoding::MessagePack => self
                .strike(
                    ErrorCode::TextNotSupported,
                    "this connection speaks MessagePack: every frame is a binary message",
                )
                .into(),
            Message::Text(text) => match ClientFrame::decode(&text) {
                Ok(frame) => self.frame(frame),
                Err(error) => self.strike(error.code, error.to_string()).into(),
            },
            Message::Binary(bytes) if self.encoding == tether_shared::Encoding::MessagePack => {
                match ClientFrame::decode_msgpack(&bytes) {
                    Ok(frame) => self.frame(frame),
                    Err(error) => self.strike(error.code, error.to_string()).into(),
                }
            }
            Message::Binary(_) => self
                .strike(
                    ErrorCode::BinaryNotSupported,
                    "this connection speaks JSON text (ask for tether.v1.msgpack to send MessagePack)",
                )
                .into(),
            // Tungstenite answers pings itself; the next flush writes the pong.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) | Message::Close(_) => After::Nothing,
        }
    }

    fn frame(&mut self, frame: ClientFrame) -> After {
        let answer = match frame {
            ClientFrame::Echo { body } => ServerFrame::Echo { body },
            ClientFrame::Ping { nonce } => ServerFrame::Pong { nonce },
            ClientFrame::Hello { .. } if self.identity.is_some() => {
                self.error(ErrorCode::AlreadyHello, "this connection already said hello", None)
            }
            ClientFrame::Hello { v, token, name, .. } if self.context.channels.connect.is_some() => {
                if v != tether_shared::PROTOCOL_VERSION {
                    return After::End(Ending::Close(Close::new(
                        close::BAD_HELLO,
                        "unsupported protocol version",
                    )));
                }
                return After::Hello { token, name };
            }
            ClientFrame::Hello { v, token, name, resume_token } => {
                let context = self.context.clone();
                match handshake::authenticate(
                    &context.config,
                    &context.secret,
                    v,
                    token.as_deref(),
                    name.as_deref(),
                    resume_token.as_deref(),
                ) {
                    Ok(identity) => self.welcomed(identity),
                    Err(refusal) => return After::End(Ending::Close(refusal)),
                }
            }
            _ if self.identity.is_none() => {
                return self.strike(ErrorCode::HelloRequired, "send hello first").into();
            }
            ClientFrame::Join { room, since, history } => {
                return After::Join(vec![RoomCursor { room, since, history }]);
            }
            ClientFrame::Resume { rooms } => return After::Join(rooms),
            ClientFrame::Leave { room } => {
                if self.rooms.remove(&room) {
                    self.context.hub.leave(&room, self.out.conn());
                    self.left(&room, crate::channels::Leaving::Left);
                }
                ServerFrame::Left { room }
            }
            ClientFrame::Publish { id, room, body, priority: _ } => match self.publish(id, room, body) {
                Some(answer) => answer,
                None => return After::Nothing,
            },
            ClientFrame::Request { id, room, body, idempotent } => {
                match self.request(id, room, body, idempotent) {
                    Some(answer) => answer,
                    None => return After::Nothing,
                }
            }
            ClientFrame::Typing { room, active } => {
                if !self.rooms.contains(&room) {
                    self.error(ErrorCode::NotJoined, "join the room first", Some(&room))
                } else {
                    let user = User::clone(&self.identity.as_ref().expect("after hello").user);
                    let typing = ServerFrame::Typing { room: room.clone(), user, active };
                    self.context.hub.broadcast(&room, &typing, Some(self.out.conn()));
                    return After::Nothing;
                }
            }
            ClientFrame::State { room, key, value } => match self.state(room, key, value) {
                Some(answer) => answer,
                None => return After::Nothing,
            },
            ClientFrame::Members { room, after, limit } => {
                let page = self.rooms.contains(&room).then(|| {
                    let limit =
                        limit.map_or(presence::DEFAULT_PAGE, |l| (l as usize).min(presence::MAX_PAGE));
                    self.context.hub.members(&room, after.as_deref(), limit)
                });
                match page.flatten() {
                    Some(page) => ServerFrame::Members {
                        room,
                        members: page.members,
                        next: page.next,
                        count: page.count,
                    },
                    None => self.error(ErrorCode::NotJoined, "join the room first", Some(&room)),
                }
            }
            ClientFrame::Refresh { token } => self.refresh(&token),
            ClientFrame::Receipt { room, kind, seq } => {
                if !self.rooms.contains(&room) {
                    self.error(ErrorCode::NotJoined, "join the room first", Some(&room))
                } else {
                    let user = self.identity.as_ref().expect("after hello").user.id.clone();
                    self.context.hub.broadcast(
                        &room,
                        &ServerFrame::Receipt { room: room.clone(), user, kind, seq },
                        None,
                    );
                    return After::Nothing;
                }
            }
        };
        After::Answer(answer.encode())
    }
}
