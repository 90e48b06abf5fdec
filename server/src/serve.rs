//! The accept loop: hyper serving warp's routes, with the door kept by the server.
//!
//! What warp's own `serve` cannot do is done here. Every TCP connection is counted
//! against its address's quota from the moment it is accepted, not only once it has
//! become a WebSocket, so one address cannot hold every descriptor with requests it
//! never finishes. And no connection is held forever by a peer that stops halfway
//! ([`Guarded`], [`Timely`]): request headers must arrive within [`HEADER_TIMEOUT`] (a
//! connection that sends nothing at all included), a request's body within
//! the body timeout (`--body-timeout`) of its headers, and a write that the peer leaves unread for
//! [`WRITE_STALL`] fails, so that whatever waits on it (a WebSocket's connection task, a
//! response) ends and lets go of the connection.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::{Instant, Sleep};
use tower_service::Service;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use crate::limits::{IpSlot, IpSlots};
use crate::shutdown::Shutdown;

/// A request's headers must arrive within this long after the connection opened (or
/// after the previous response, on a kept-alive connection).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// A write that the peer has left unread for this long fails: its TCP window stayed
/// shut, so it is gone or not reading on purpose. A live client reads at least its
/// heartbeat's pongs far more often.
pub const WRITE_STALL: Duration = Duration::from_secs(10);

/// Connections one address may open beyond its quota, only to be told why they are
/// refused (a close with 1013 after the upgrade). Any more are closed at once.
const REFUSALS_IN_FLIGHT: usize = 8;

/// The peer's address, put on every request of its connection.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// A connection's claim on its address's quota, put on every request of the connection.
/// The WebSocket that the connection becomes takes the slot for as long as it lives;
/// otherwise it goes back when the connection closes. `None` inside means the address
/// was over its quota at accept.
#[derive(Clone)]
pub struct Admission(Arc<Mutex<Option<IpSlot>>>);

impl Admission {
    /// Takes the slot for a WebSocket; `None` if the address was over its quota.
    pub fn take(&self) -> Option<IpSlot> {
        self.0.lock().expect("admission lock").take()
    }
}

/// Who gets in: the per-address quota, and a few refusals beyond it; and how long a
/// request's body may take once its headers are in.
pub struct Door {
    slots: Arc<IpSlots>,
    refusals: Arc<IpSlots>,
    body_timeout: Duration,
}

impl Door {
    /// A door letting each address hold `per_address` connections at once, each
    /// request's body due within `body_timeout` of its headers.
    pub fn new(per_address: usize, body_timeout: Duration) -> Door {
        Door { slots: IpSlots::new(per_address), refusals: IpSlots::new(REFUSALS_IN_FLIGHT), body_timeout }
    }

    /// Admits a connection from `ip`, with a slot if it is within its quota; `None`
    /// means close it unanswered.
    fn admit(&self, ip: IpAddr) -> Option<(Admission, Option<IpSlot>)> {
        match self.slots.acquire(ip) {
            Some(slot) => Some((Admission(Arc::new(Mutex::new(Some(slot)))), None)),
            None => {
                let refusal = self.refusals.acquire(ip)?;
                Some((Admission(Arc::new(Mutex::new(None))), Some(refusal)))
            }
        }
    }
}

/// Accepts and serves until `shutdown`, then waits for open HTTP exchanges to finish.
/// Upgraded sockets are not waited for here: their tasks watch `shutdown` themselves.
pub async fn run(listener: TcpListener, routes: BoxedFilter<(Response,)>, door: Door, shutdown: Shutdown) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, most likely: give closing sockets a moment.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.triggered() => break,
        };
        let Some((admission, refusal)) = door.admit(peer.ip()) else {
            tracing::debug!(%peer, "over its quota of connections: closed unanswered");
            continue;
        };
        let routes = warp::service(routes.clone());
        let body_timeout = door.body_timeout;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(|body| Timely::new(body, body_timeout));
            request.extensions_mut().insert(Peer(peer));
            request.extensions_mut().insert(admission.clone());
            let answer = routes.clone().call(request);
            async move { Ok::<_, Infallible>(answer.await.unwrap_or_else(|never| match never {})) }
        });
        let stream = TokioIo::new(Guarded::new(stream, HEADER_TIMEOUT, WRITE_STALL));
        let connection = builder.serve_connection_with_upgrades(stream, service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "http connection ended");
            }
            drop(refusal);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The opening HTTP/2 speaks with prior knowledge. Until what a connection sent stops
/// matching it, hyper's protocol detection waits for more with no deadline.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A connection's socket with the two deadlines hyper does not keep.
///
/// The opening must be told apart within the header timeout: hyper's own starts once
/// its protocol detection has read enough to choose HTTP/1 (a byte off the HTTP/2
/// preface, or all 24 of it; this server speaks HTTP/1 only and refuses the latter),
/// and that detection waits with no deadline, so a connection that sends nothing, or
/// only `PRI`, would be held forever. And a write
/// that stays pending for the stall timeout fails with `TimedOut`, because hyper and
/// tungstenite wait on a write for as long as it takes: a client that never reads
/// would hold its response, or its WebSocket's connection task, forever. The
/// WebSocket a connection becomes reads and writes through this too.
pub struct Guarded<S> {
    inner: S,
    /// Until the protocol is told: when the connection gives up, and how many bytes
    /// so far match the HTTP/2 preface.
    opening: Option<(Pin<Box<Sleep>>, usize)>,
    /// While a write waits for the peer to read: when it gives up.
    stalled: Option<Pin<Box<Sleep>>>,
    stall: Duration,
}

impl<S> Guarded<S> {
    /// `inner`, closed if its protocol cannot be told within `opening`, its writes
    /// failing once the peer has read nothing for `stall`.
    pub fn new(inner: S, opening: Duration, stall: Duration) -> Guarded<S> {
        let opening = Some((Box::pin(tokio::time::sleep(opening)), 0));
        Guarded { inner, opening, stalled: None, stall }
    }

    /// After a write's outcome: one that is done (or failed) ends any stall; one still
    /// pending fails once it has been pending, write after write, for the stall timeout.
    fn wrote<T>(&mut self, outcome: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if outcome.is_ready() {
            self.stalled = None;
            return outcome;
        }
        let stall = self.stall;
        let deadline = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer read nothing for the write stall timeout",
        )))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let outcome = Pin::new(&mut this.inner).poll_read(cx, buf);
        let Some((deadline, matched)) = this.opening.as_mut() else { return outcome };
        match outcome {
            Poll::Ready(Ok(())) => {
                // A byte off the preface means HTTP/1, whose header timeout takes over;
                // all of it, HTTP/2, which is refused.
                let off = buf.filled()[before..].iter().any(|&byte| {
                    let on = H2_PREFACE.get(*matched) == Some(&byte);
                    *matched += usize::from(on);
                    !on
                });
                if off || *matched == H2_PREFACE.len() {
                    this.opening = None;
                }
            }
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                let late = io::Error::new(io::ErrorKind::TimedOut, "no request within the header timeout");
                return Poll::Ready(Err(late));
            }
            _ => {}
        }
        outcome
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let outcome = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(outcome, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let outcome = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(outcome, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let outcome = Pin::new(&mut self.inner).poll_flush(cx);
        self.wrote(outcome, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that must have arrived whole by a deadline; past it, reading it
/// fails (warp then refuses the request, and hyper closes the connection since the
/// body was not read to its end). The timer is only made if the body is not there at
/// once, as small bodies are.
pub struct Timely<B> {
    inner: B,
    patience: Duration,
    deadline: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> Timely<B> {
    /// `inner`, due within `patience` from now.
    pub fn new(inner: B, patience: Duration) -> Timely<B> {
        Timely { inner, patience, deadline: Instant::now() + patience, timer: None }
    }
}

/// Why a body could not be read: it was late.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?} of its headers")]
pub struct BodyTimeout(Duration);

impl<B> Body for Timely<B>
where
    B: Body + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Some(Err(Box::new(BodyTimeout(this.patience)))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
