//! One client's connection: reads frames, answers them, and says goodbye properly.
//!
//! The task owns the socket. Everything else reaches the client through its
//! [`Outbound`] queue, which this task drains, writing every queued frame before one
//! flush. A join's snapshot and replay are written directly, before the queue is
//! drained again, which is what puts history strictly before live messages.
//!
//! This file is the read/write loop and the goodbye; what a frame means is decided in
//! `decide.rs`, a publish is checked in `publish.rs`, and a join runs in `join.rs`.

mod decide;
mod join;
mod publish;
mod request;
mod state;

use std::collections::{BTreeSet, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tether_shared::{Encoding, ServerFrame, close};
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use crate::close::Close;
use crate::context::Context;
use crate::handshake::Identity;
use crate::limits;
use crate::metrics::CodeLabel;
use crate::outbound::{Next, Outbound, Queue, QueueLimits};
use decide::After;

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

struct Conn {
    context: Arc<Context>,
    out: Outbound,
    identity: Option<Identity>,
    rooms: BTreeSet<String>,
    strikes: u32,
    /// How its frames travel, chosen at the upgrade.
    encoding: Encoding,
    /// The client's address, which dev mode's quotas count by.
    peer: Option<std::net::IpAddr>,
    publishes: DefaultDirectRateLimiter,
    /// Volatile `state` frames, limited apart from publishes.
    states: DefaultDirectRateLimiter,
    frames: DefaultDirectRateLimiter,
    /// Publishes awaiting an app's handler, answered in order; started by the first.
    lane: Option<crate::channels::lane::Lane>,
    /// The HTTP request's headers until `hello`, for the app's connect handler; boxed,
    /// so that a connection without one carries a pointer, not a header map.
    connecting: Option<Box<http::HeaderMap>>,
}

fn quota(per_sec: u32, burst: u32) -> Quota {
    let per_sec = NonZeroU32::new(per_sec.max(1)).expect("at least one");
    Quota::per_second(per_sec).allow_burst(NonZeroU32::new(burst.max(1)).expect("at least one"))
}

/// What a connection reads from and writes to: WebSocket messages both ways. A real
/// WebSocket is one; an HTTP session (`crate::session`) is another, so every transport
/// goes through the same decisions, limits and goodbye.
pub trait Transport:
    futures::Stream<Item = Result<Message, WsError>> + futures::Sink<Message, Error = WsError> + Unpin + Send
{
    /// Called once the close frame is written but the client's frames can no longer be
    /// read as frames: the stream ended on the error that closed it (text that is not
    /// UTF-8, a message over the limit), while the client may still be sending. Reads
    /// and drops whatever else comes, until the client closes its side. Letting go of a
    /// socket with bytes unread makes TCP reset it, and the reset throws away what is
    /// still on its way to the client: the close frame, and the end of a replay before
    /// it. The caller bounds the wait.
    fn linger(&mut self) -> impl std::future::Future<Output = ()> + Send {
        async {}
    }
}

impl Transport for crate::upgrade::Socket {
    async fn linger(&mut self) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let raw = self.get_mut();
        // Nothing follows the close frame: the client may close as soon as it reads it.
        let _ = raw.shutdown().await;
        // On the heap, for the linger only: an array here would be part of every
        // connection task's future, idle ones too (4 KB each).
        let mut unread = vec![0u8; 4096];
        while let Ok(1..) = raw.read(&mut unread).await {}
    }
}

impl Transport for crate::fallback::session::SessionSocket {}

/// Sends a frame straight to the socket, bypassing the queue (used before draining it).
async fn write(socket: &mut impl Transport, frame: &ServerFrame, encoding: Encoding) -> Result<(), WsError> {
    let message = match encoding {
        Encoding::Json => Message::text(frame.encode()),
        Encoding::MessagePack => Message::binary(frame.encode_msgpack()),
    };
    socket.feed(message).await
}

/// A frame answered to this connection alone, in its encoding.
fn answer(encoding: Encoding, text: String) -> Message {
    match encoding {
        Encoding::Json => Message::text(text),
        Encoding::MessagePack => Message::Binary(crate::wire::transcode(&text)),
    }
}

/// A queued frame as this connection sends it: the shared JSON text, or its MessagePack
/// form, made once for every MessagePack connection ([`crate::wire::Packed`]).
fn outgoing(context: &Context, encoding: Encoding, frame: Utf8Bytes) -> Message {
    match encoding {
        Encoding::Json => Message::Text(frame),
        Encoding::MessagePack => Message::Binary(context.packed.shared(&frame)),
    }
}

/// Serves one upgraded socket until the client leaves, it goes silent, it misbehaves,
/// or the server shuts down.
pub async fn serve(
    mut socket: impl Transport,
    context: Arc<Context>,
    id: u64,
    encoding: Encoding,
    peer: Option<std::net::IpAddr>,
    headers: Option<http::HeaderMap>,
) {
    let (out, mut queue) = Outbound::new(
        id,
        QueueLimits { frames: context.config.send_queue, budget: context.send_budget.clone() },
        context.metrics.clone(),
    );
    context.metrics.connections.inc();
    let mut conn = Conn {
        publishes: RateLimiter::direct(quota(context.config.publish_rate, context.config.publish_burst)),
        states: RateLimiter::direct(quota(context.config.state_rate, context.config.state_rate)),
        frames: {
            let (per_sec, burst) = limits::frame_rate(&context.config);
            RateLimiter::direct(quota(per_sec, burst))
        },
        context: context.clone(),
        out,
        identity: None,
        rooms: BTreeSet::new(),
        strikes: 0,
        encoding,
        peer,
        lane: None,
        connecting: headers.map(Box::new),
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
    // The credential's expiry: a warning first, then the close. Re-armed whenever a
    // frame changed it (the hello, a refresh).
    let mut credential = Credential::default();
    let expiry = tokio::time::sleep_until(credential.next(&context.config));
    tokio::pin!(expiry);

    let ending = loop {
        // Backpressure: while replies pile up, the client's next frames wait in the kernel.
        let reading = queue.may_read();
        let result = tokio::select! {
            biased;
            () = &mut shutdown => break Ending::Shutdown,
            Ok(()) = dropped.changed() => break Ending::Close(DROPPED),
            next = queue.next() => match next {
                Next::Slow => break Ending::Close(SLOW_CONSUMER),
                Next::End(close) => break Ending::Close(close),
                // A client that stops reading blocks this write; slowness and shutdown must
                // still get through. Dropping a half-done write is safe: tungstenite keeps
                // unwritten bytes in its buffer and the closing handshake flushes them.
                Next::Frames(mut batch) => tokio::select! {
                    written = drain(&mut socket, &mut batch, &context, encoding) => {
                        queue.recycle(batch);
                        written
                    }
                    () = queue.slow() => break Ending::Close(SLOW_CONSUMER),
                    () = &mut shutdown => break Ending::Shutdown,
                },
            },
            () = &mut expiry => {
                match credential.due(&context.config) {
                    Due::Warn(expires_at) => {
                        credential.warned = true;
                        expiry.as_mut().reset(credential.next(&context.config));
                        conn.out.push_reply(Utf8Bytes::from(ServerFrame::TokenExpiring { expires_at }.encode()));
                        continue;
                    }
                    Due::Close => break Ending::Close(Close::new(close::TOKEN_EXPIRED, "token expired")),
                    Due::Nothing => {
                        expiry.as_mut().reset(credential.next(&context.config));
                        continue;
                    }
                }
            }
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
                        After::Answer(text) => match socket.feed(answer(encoding, text)).await {
                            Ok(()) => socket.flush().await,
                            Err(error) => Err(error),
                        },
                        After::Hello { token, name } => match Box::pin(conn.hello_by_app(token, name)).await {
                            Ok(welcome) => match socket.feed(answer(encoding, welcome.encode())).await {
                                Ok(()) => socket.flush().await,
                                Err(error) => Err(error),
                            },
                            Err(refusal) => break Ending::Close(refusal),
                        },
                        After::Join(rooms) => match Box::pin(conn.join_all(&mut socket, rooms)).await {
                            Ok(None) => socket.flush().await,
                            Ok(Some(ending)) => break ending,
                            Err(error) => Err(error),
                        },
                    },
                }
            }
        };
        if let Err(error) = result {
            break Ending::Transport(error.to_string());
        }
        let expires = conn.identity.as_ref().map(|identity| identity.expires);
        if expires != credential.expires {
            credential = Credential { expires, warned: false };
            expiry.as_mut().reset(credential.next(&context.config));
        }
    };

    for room in &conn.rooms {
        context.hub.leave(room, id);
        conn.left(room, crate::channels::Leaving::Disconnected);
    }
    if let Some(identity) = &conn.identity {
        context.hub.connected().remove(&identity.user.id, id);
    }
    goodbye(&mut socket, &context, &mut queue, &ending, encoding).await;
    context.metrics.connections.dec();
    match ending {
        Ending::Transport(error) => tracing::info!(%error, "connection failed"),
        ending => tracing::info!(?ending, "connection ended"),
    }
}

/// Ends the connection as `ending` says: on shutdown, acks still due first; then the
/// close frame, unless the client already left.
async fn goodbye(
    socket: &mut impl Transport,
    context: &Context,
    queue: &mut Queue,
    ending: &Ending,
    encoding: Encoding,
) {
    let close = match ending {
        Ending::Shutdown => {
            // Acks for publishes already handed to the sequencer go out before the goodbye.
            let _ = tokio::time::timeout(SHUTDOWN_FLUSH, context.engine.barrier()).await;
            let pending = async {
                for frame in queue.take_now() {
                    if socket.feed(outgoing(context, encoding, frame)).await.is_err() {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(SHUTDOWN_FLUSH, pending).await;
            Some(crate::close::SHUTDOWN)
        }
        Ending::Close(close) => Some(close.clone()),
        Ending::ClientClosed | Ending::Transport(_) => None,
    };
    if let Some(close) = close {
        if close != crate::close::SHUTDOWN {
            context.metrics.refused.get_or_create(&CodeLabel { code: close.code.to_string() }).inc();
        }
        // The closing handshake: the client's own close (or its end) is read before the
        // socket is let go. Frames it sent meanwhile would otherwise lie unread in the
        // kernel, and closing a socket over them resets it, which can throw away the
        // close frame on its way to the client. A client that never reads or answers
        // would hold the goodbye forever: it is bounded.
        let closing = async {
            socket.send(Message::Close(Some(close.frame()))).await?;
            loop {
                match socket.next().await {
                    None => {
                        socket.linger().await;
                        break;
                    }
                    Some(Ok(Message::Close(_))) => break,
                    Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed | WsError::Io(_))) => break,
                    // Whatever else the client sent, or sent wrong, is read past.
                    Some(_) => {}
                }
            }
            SinkExt::close(socket).await
        };
        let _ = tokio::time::timeout(CLOSE_PATIENCE, closing).await;
    }
}

/// Where a connection's credential stands: when it expires, and whether the client was
/// told it soon will.
#[derive(Default)]
struct Credential {
    /// Seconds since the epoch; `None` before the hello.
    expires: Option<u64>,
    warned: bool,
}

/// What the credential's timer means when it fires.
enum Due {
    Warn(u64),
    Close,
    Nothing,
}

impl Credential {
    /// When the timer should fire next: the warning, then the expiry itself.
    fn next(&self, config: &crate::config::Config) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        let far = now + Duration::from_secs(365 * 24 * 3600);
        let Some(expires) = self.expires else { return far };
        let at = if self.warned { expires } else { expires.saturating_sub(config.token_warning.as_secs()) };
        let left = at.saturating_sub(crate::auth::unix_now());
        // A token may say it never expires (`exp` near u64::MAX): further than an
        // Instant can reach, so as far as a credential with no expiry.
        now.checked_add(Duration::from_secs(left)).unwrap_or(far)
    }

    /// What to do now that the timer fired. It may fire with the warning not yet due:
    /// for a token that expires further off than a timer is set (a year), it is only
    /// set again.
    fn due(&self, config: &crate::config::Config) -> Due {
        let Some(expires) = self.expires else { return Due::Nothing };
        let now = crate::auth::unix_now();
        if now >= expires {
            Due::Close
        } else if !self.warned && now >= expires.saturating_sub(config.token_warning.as_secs()) {
            Due::Warn(expires)
        } else {
            Due::Nothing
        }
    }
}

/// Sent to a subscriber whose queue overflowed; it resumes from history when it returns.
const SLOW_CONSUMER: Close = Close::new(close::SLOW_CONSUMER, "slow consumer: too many frames queued");
/// Sent to every connection by the test endpoint.
const DROPPED: Close = Close::new(close::SERVICE_RESTART, "dropped by the test endpoint");

/// Writes a batch of queued frames, then flushes once.
async fn drain(
    socket: &mut impl Transport,
    batch: &mut VecDeque<Utf8Bytes>,
    context: &Context,
    encoding: Encoding,
) -> Result<(), WsError> {
    while let Some(frame) = batch.pop_front() {
        socket.feed(outgoing(context, encoding, frame)).await?;
    }
    socket.flush().await
}

#[cfg(test)]
mod tests {
    use super::{Credential, Due};
    use crate::config::Config;

    #[test]
    fn a_credential_warns_only_within_the_warning_of_its_expiry() {
        let config = Config::for_tests();
        let now = crate::auth::unix_now();
        let warning = config.token_warning.as_secs();
        let due = |expires: u64, warned: bool| Credential { expires: Some(expires), warned }.due(&config);
        // The timer's longest wait is a year: a token good for ten gets no warning then.
        assert!(matches!(due(now + 10 * 365 * 24 * 3600, false), Due::Nothing));
        assert!(matches!(due(u64::MAX, false), Due::Nothing));
        assert!(matches!(due(now + warning - 1, false), Due::Warn(_)));
        assert!(matches!(due(now + warning - 1, true), Due::Nothing));
        assert!(matches!(due(now, true), Due::Close));
        assert!(matches!(Credential::default().due(&config), Due::Nothing));
    }
}
