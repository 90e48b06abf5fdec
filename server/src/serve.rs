//! The accept loop: hyper serving warp's routes, with the door kept by the server.
//!
//! Two things warp's own `serve` cannot do are done here. Every TCP connection is
//! counted against its address's quota from the moment it is accepted, not only once it
//! has become a WebSocket, so one address cannot hold every descriptor with requests it
//! never finishes. And request headers must arrive within [`HEADER_TIMEOUT`], so a
//! half-sent upgrade is closed instead of held forever.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower_service::Service;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use crate::limits::{IpSlot, IpSlots};
use crate::shutdown::Shutdown;

/// A request's headers must arrive within this long after the connection opened (or
/// after the previous response, on a kept-alive connection).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Who gets in: the per-address quota, and a few refusals beyond it.
pub struct Door {
    slots: Arc<IpSlots>,
    refusals: Arc<IpSlots>,
}

impl Door {
    /// A door letting each address hold `per_address` connections at once.
    pub fn new(per_address: usize) -> Door {
        Door { slots: IpSlots::new(per_address), refusals: IpSlots::new(REFUSALS_IN_FLIGHT) }
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
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(Peer(peer));
            request.extensions_mut().insert(admission.clone());
            let answer = routes.clone().call(request);
            async move { Ok::<_, Infallible>(answer.await.unwrap_or_else(|never| match never {})) }
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
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
