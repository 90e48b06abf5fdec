//! One client's connection: reads frames, answers them, and says goodbye properly.
//!
//! The task owns the socket. Everything else reaches the client through its
//! [`Outbound`] queue, which this task drains, writing every queued frame before one
//! flush. A join's snapshot and replay are written directly, before the queue is
//! drained again, which is what puts history strictly before live messages.

use std::collections::{BTreeSet, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::Value;
use tether_shared::frame::valid_room_name;
use tether_shared::{ClientFrame, ErrorCode, RejectCode, RoomCursor, ServerFrame, User, close};
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use crate::auth;
use crate::close::Close;
use crate::context::Context;
use crate::handshake::{self, Identity};
use crate::metrics::{CodeLabel, OutcomeLabel};
use crate::outbound::{Next, Outbound, Queue};
use crate::presence;
use crate::sequencer::Publish;
use crate::upgrade::Socket;

/// Invalid frames tolerated before the connection is closed with 1008.
const MAX_STRIKES: u32 = 10;
/// Frames per second per connection, of any kind; raised to twice the publish rate when
/// that is higher.
const FRAMES_PER_SEC: u32 = 100;
/// Most recent messages a join without a cursor may ask for.
const MAX_JOIN_HISTORY: u32 = 1_000;
/// Longest wait for a closing handshake to be written.
const CLOSE_PATIENCE: Duration = Duration::from_secs(5);
/// Longest wait for in-flight publishes to be acked during shutdown.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

/// Why a connection ended.
#[derive(Debug)]
enum Ending {
    ClientClosed,
    Shutdown,
    Close(Close),
    Transport(String),
}

/// What the connection loop does after handling one frame. Deciding is synchronous
/// and the loop does the writing: a write future is small, and a join's (with its
/// replay) is boxed, so a connection's task stays small for as long as it lives.
enum After {
    /// Nothing to write now (a publish's ack comes through the queue).
    Nothing,
    /// Write this answer (encoded, so that only its text waits in the task).
    Answer(String),
    /// Join these rooms: snapshot and replay, written in order.
    Join(Vec<RoomCursor>),
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

struct Conn {
    context: Arc<Context>,
    out: Outbound,
    identity: Option<Identity>,
    rooms: BTreeSet<String>,
    strikes: u32,
    publishes: DefaultDirectRateLimiter,
    frames: DefaultDirectRateLimiter,
}

fn quota(per_sec: u32, burst: u32) -> Quota {
    let per_sec = NonZeroU32::new(per_sec.max(1)).expect("at least one");
    Quota::per_second(per_sec).allow_burst(NonZeroU32::new(burst.max(1)).expect("at least one"))
}

/// Sends a frame straight to the socket, bypassing the queue (used before draining it).
async fn write(socket: &mut Socket, frame: &ServerFrame) -> Result<(), WsError> {
    socket.feed(Message::text(frame.encode())).await
}

/// Serves one upgraded socket until the client leaves, it goes silent, it misbehaves,
/// or the server shuts down.
pub async fn serve(mut socket: Socket, context: Arc<Context>, id: u64) {
    let (out, mut queue) = Outbound::new(id, context.config.send_queue, context.metrics.clone());
    context.metrics.connections.inc();
    let mut conn = Conn {
        publishes: RateLimiter::direct(quota(context.config.publish_rate, context.config.publish_burst)),
        // Every publish is a frame, so the frame limit never undercuts the publish limit.
        frames: RateLimiter::direct(quota(
            FRAMES_PER_SEC.max(context.config.publish_rate.saturating_mul(2)),
            (FRAMES_PER_SEC * 2).max(context.config.publish_burst.saturating_mul(2)),
        )),
        context: context.clone(),
        out,
        identity: None,
        rooms: BTreeSet::new(),
        strikes: 0,
    };
    // Made once and polled in place: a fresh future per loop turn would register and
    // unregister a waiter on every frame.
    let shutdown = context.shutdown.triggered();
    tokio::pin!(shutdown);
    let mut dropped = context.drop_all.subscribe();
    let idle_timeout = context.config.idle_timeout;
    // The idle timer is moved only when it fires, not on every frame: it then checks
    // when the client was last heard from.
    let mut last_heard = tokio::time::Instant::now();
    let idle = tokio::time::sleep_until(last_heard + idle_timeout);
    tokio::pin!(idle);

    let ending = loop {
        // Backpressure: while replies pile up, the client's next frames wait in the kernel.
        let reading = queue.may_read();
        let result = tokio::select! {
            biased;
            () = &mut shutdown => break Ending::Shutdown,
            Ok(()) = dropped.changed() => break Ending::Close(DROPPED),
            next = queue.next() => match next {
                Next::Slow => break Ending::Close(SLOW_CONSUMER),
                // A client that stops reading blocks this write; slowness and shutdown must
                // still get through. Dropping a half-done write is safe: tungstenite keeps
                // unwritten bytes in its buffer and the closing handshake flushes them.
                Next::Frames(mut batch) => tokio::select! {
                    written = drain(&mut socket, &mut batch) => {
                        queue.recycle(batch);
                        written
                    }
                    () = queue.slow() => break Ending::Close(SLOW_CONSUMER),
                    () = &mut shutdown => break Ending::Shutdown,
                },
            },
            () = &mut idle => {
                let now = tokio::time::Instant::now();
                if !reading {
                    // Not reading is our choice, not the client's silence.
                    last_heard = now;
                }
                if now < last_heard + idle_timeout {
                    idle.as_mut().reset(last_heard + idle_timeout);
                    continue;
                }
                break Ending::Close(Close::new(close::IDLE_TIMEOUT, "idle timeout"));
            }
            next = socket.next(), if reading => {
                last_heard = tokio::time::Instant::now();
                match next {
                    None => break Ending::ClientClosed,
                    Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
                        break Ending::Close(Close::new(close::TOO_BIG, "message too large"));
                    }
                    Some(Err(WsError::Utf8(_))) => break Ending::Close(Close::new(close::INVALID_PAYLOAD, "text message was not valid UTF-8")),
                    Some(Err(error)) => break Ending::Transport(error.to_string()),
                    Some(Ok(Message::Close(_))) => break Ending::ClientClosed,
                    Some(Ok(message)) => match conn.received(message) {
                        After::End(ending) => break ending,
                        After::Nothing => socket.flush().await,
                        After::Answer(text) => match socket.feed(Message::text(text)).await {
                            Ok(()) => socket.flush().await,
                            Err(error) => Err(error),
                        },
                        After::Join(rooms) => match Box::pin(conn.join_all(&mut socket, rooms)).await {
                            Ok(()) => socket.flush().await,
                            Err(error) => Err(error),
                        },
                    },
                }
            }
        };
        if let Err(error) = result {
            break Ending::Transport(error.to_string());
        }
    };

    for room in &conn.rooms {
        context.hub.leave(room, id);
    }
    goodbye(&mut socket, &context, &mut queue, &ending).await;
    context.metrics.connections.dec();
    match ending {
        Ending::Transport(error) => tracing::info!(%error, "connection failed"),
        ending => tracing::info!(?ending, "connection ended"),
    }
}

/// Ends the connection as `ending` says: on shutdown, acks still due first; then the
/// close frame, unless the client already left.
async fn goodbye(socket: &mut Socket, context: &Context, queue: &mut Queue, ending: &Ending) {
    let close = match ending {
        Ending::Shutdown => {
            // Acks for publishes already handed to the sequencer go out before the goodbye.
            let _ = tokio::time::timeout(SHUTDOWN_FLUSH, context.sequencer.barrier()).await;
            let pending = async {
                for frame in queue.take_now() {
                    if socket.feed(Message::Text(frame)).await.is_err() {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(SHUTDOWN_FLUSH, pending).await;
            Some(crate::close::SHUTDOWN)
        }
        Ending::Close(close) => Some(*close),
        Ending::ClientClosed | Ending::Transport(_) => None,
    };
    if let Some(close) = close {
        if close != crate::close::SHUTDOWN {
            context.metrics.refused.get_or_create(&CodeLabel { code: close.code.to_string() }).inc();
        }
        // A client that never reads would hold the goodbye forever.
        let _ = tokio::time::timeout(CLOSE_PATIENCE, socket.close(Some(close.frame()))).await;
    }
}

/// Sent to a subscriber whose queue overflowed; it resumes from history when it returns.
const SLOW_CONSUMER: Close = Close::new(close::SLOW_CONSUMER, "slow consumer: too many frames queued");
/// Sent to every connection by the test endpoint.
const DROPPED: Close = Close::new(close::SERVICE_RESTART, "dropped by the test endpoint");

/// Writes a batch of queued frames, then flushes once.
async fn drain(socket: &mut Socket, batch: &mut VecDeque<Utf8Bytes>) -> Result<(), WsError> {
    while let Some(frame) = batch.pop_front() {
        socket.feed(Message::Text(frame)).await?;
    }
    socket.flush().await
}

impl Conn {
    fn error(&mut self, code: ErrorCode, message: impl Into<String>, about: Option<&str>) -> ServerFrame {
        self.context.metrics.error(code);
        ServerFrame::Error { code, message: message.into(), about: about.map(str::to_owned) }
    }

    /// An answer to input that should not have been sent; too many end the connection.
    fn strike(&mut self, code: ErrorCode, message: impl Into<String>) -> Result<ServerFrame, Ending> {
        self.strikes += 1;
        if self.strikes > MAX_STRIKES {
            return Err(Ending::Close(Close::new(close::POLICY, "too many invalid frames")));
        }
        Ok(self.error(code, message, None))
    }

    fn reject(&self, id: &str, code: RejectCode, message: &str) -> ServerFrame {
        self.context.metrics.rejection(code);
        ServerFrame::Reject { id: id.into(), code, message: message.into() }
    }

    /// Handles one message and says what to write.
    fn received(&mut self, message: Message) -> After {
        self.context.metrics.frames_in.inc();
        if self.frames.check().is_err() {
            self.context.metrics.rate_limited.inc();
            return self.strike(ErrorCode::RateLimited, "too many frames; slow down").into();
        }
        match message {
            Message::Text(text) => match ClientFrame::decode(&text) {
                Ok(frame) => self.frame(frame),
                Err((code, detail)) => self.strike(code, detail).into(),
            },
            Message::Binary(_) => {
                self.strike(ErrorCode::BinaryNotSupported, "Tether frames are JSON text messages").into()
            }
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
                    Ok(identity) => {
                        let welcome = handshake::welcome(&context.config, &context.secret, &identity);
                        tracing::Span::current().record("user", identity.user.id.as_str());
                        tracing::info!(name = %identity.user.name, "welcomed");
                        self.identity = Some(identity);
                        welcome
                    }
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
                }
                ServerFrame::Left { room }
            }
            ClientFrame::Publish { id, room, body, priority: _ } => match self.publish(id, room, body) {
                Some(answer) => answer,
                None => return After::Nothing,
            },
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

    /// Validates a publish and hands it to the sequencer; `Some` is an immediate answer.
    fn publish(&mut self, id: String, room: String, body: Value) -> Option<ServerFrame> {
        self.context.metrics.publishes.inc();
        if id.is_empty() || id.len() > 64 {
            return Some(self.reject(&id, RejectCode::InvalidId, "message ids are 1-64 characters"));
        }
        if !self.rooms.contains(&room) {
            return Some(self.reject(&id, RejectCode::NotJoined, "join the room before publishing to it"));
        }
        let body = serde_json::value::to_raw_value(&body).expect("a JSON value serialises");
        if body.get().len() > self.context.config.max_body_bytes {
            let message = format!("bodies are at most {} bytes", self.context.config.max_body_bytes);
            return Some(self.reject(&id, RejectCode::TooLarge, &message));
        }
        if self.publishes.check().is_err() {
            self.context.metrics.rate_limited.inc();
            let message = format!("at most {} publishes per second", self.context.config.publish_rate);
            return Some(self.reject(&id, RejectCode::RateLimited, &message));
        }
        let user = User::clone(&self.identity.as_ref().expect("after hello").user);
        self.out.begin_publish();
        self.context.sequencer.publish(Publish {
            room,
            id,
            user,
            body: Arc::from(body),
            reply: self.out.clone(),
        });
        None
    }

    /// Joins each room in turn (one for `join`, several for `resume`).
    async fn join_all(&mut self, socket: &mut Socket, rooms: Vec<RoomCursor>) -> Result<(), WsError> {
        for RoomCursor { room, since, history } in rooms {
            self.join(socket, room, since, history).await?;
        }
        Ok(())
    }

    /// Joins a room: snapshot, then (with `since`) the replay, written before any live
    /// frame queued after the join.
    async fn join(
        &mut self,
        socket: &mut Socket,
        room: String,
        since: Option<u64>,
        history: Option<u32>,
    ) -> Result<(), WsError> {
        let identity = self.identity.as_ref().expect("after hello");
        let refusal = if !valid_room_name(&room) {
            Some((ErrorCode::InvalidRoom, "room names are 1-64 characters from [A-Za-z0-9._:-]"))
        } else if !auth::room_allowed(&identity.rooms, &room) {
            Some((ErrorCode::Forbidden, "your token does not allow this room"))
        } else if !self.rooms.contains(&room) && self.rooms.len() >= self.context.config.max_rooms {
            Some((ErrorCode::TooManyRooms, "leave a room before joining another"))
        } else {
            None
        };
        if let Some((code, message)) = refusal {
            let about: String = room.chars().take(64).collect();
            let frame = self.error(code, message, Some(&about));
            return write(socket, &frame).await;
        }
        let user = identity.user.clone();
        let joined = match self.context.hub.join(&room, &user, &self.out) {
            Ok(joined) => joined,
            Err(error) => {
                if let crate::hub::JoinError::Store(cause) = &error {
                    tracing::error!(%cause, room, "join failed");
                }
                let message = if error.code() == ErrorCode::RoomFull {
                    "the room is full"
                } else {
                    "could not join the room"
                };
                let frame = self.error(error.code(), message, Some(&room));
                return write(socket, &frame).await;
            }
        };
        self.rooms.insert(room.clone());
        let epoch = self.context.store.epoch();
        let head = joined.head;
        let presence = joined.presence;
        let frame = ServerFrame::Joined {
            room: room.clone(),
            seq: head,
            epoch,
            members: presence.members,
            count: presence.count,
            presence: presence.mode,
        };
        write(socket, &frame).await?;
        // Without a cursor, `history` asks for the latest messages: a cursor that far back.
        let since = match (since, history) {
            (Some(since), _) => since,
            (None, Some(count)) if count > 0 => head.saturating_sub(u64::from(count.min(MAX_JOIN_HISTORY))),
            (None, _) => return Ok(()),
        };

        // A cursor past the head comes from a history that no longer exists: replay all.
        let after = if since > head { 0 } else { since };
        let store = self.context.store.clone();
        let name = room.clone();
        let read = tokio::task::spawn_blocking(move || {
            Ok::<_, crate::store::StoreError>((store.read(&name, after, head)?, store.oldest(&name)?))
        })
        .await
        .expect("history read does not panic");
        let (messages, oldest) = match read {
            Ok(found) => found,
            Err(error) => {
                tracing::error!(%error, room, "reading history failed");
                let frame =
                    self.error(ErrorCode::Internal, "history is unavailable; rejoin later", Some(&room));
                return write(socket, &frame).await;
            }
        };
        for message in &messages {
            socket.feed(Message::text(message.frame_text())).await?;
        }
        let complete = since <= head && (after == head || (oldest != 0 && oldest <= after + 1));
        let outcome = if complete { "complete" } else { "incomplete" };
        self.context.metrics.resumes.get_or_create(&OutcomeLabel { outcome: outcome.into() }).inc();
        write(socket, &ServerFrame::Replayed { room, to: head, complete, oldest }).await
    }
}
