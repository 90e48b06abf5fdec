//! The WebSocket upgrade, done on warp's routing but with our own socket settings.
//!
//! `warp::ws()` cannot set tungstenite's read buffer, which defaults to 128 KiB and is
//! allocated for every connection. Taking hyper's `OnUpgrade` from the request
//! extensions and building the stream with `from_raw_socket` lets the server choose a
//! small read buffer (idle sockets are the common case) while staying on warp.

use std::net::SocketAddr;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use warp::http::{HeaderMap, HeaderValue, StatusCode, header};
use warp::reply::{Reply, Response};

use warp::Filter;

use tether_shared::Encoding;

use crate::close::Close;
use crate::serve::{Admission, Peer};

/// The server's side of an upgraded connection.
pub type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// A request that asked to become a WebSocket, with what the server needs to decide.
pub struct UpgradeRequest {
    accept_key: Option<String>,
    on_upgrade: Option<OnUpgrade>,
    /// The peer's address, for logs.
    pub peer: Option<SocketAddr>,
    /// The connection's claim on its address's quota (see [`crate::serve`]).
    pub admission: Option<Admission>,
    /// The page's origin, as the browser reported it.
    pub origin: Option<String>,
    /// The encoding the client asked for with `Sec-WebSocket-Protocol`, if it named one
    /// the server speaks; JSON otherwise.
    pub encoding: Encoding,
    /// Whether a known subprotocol was named, so the answer must name it back.
    named: bool,
    /// The request's headers, for the app's connect handler.
    pub headers: HeaderMap,
}

/// Extracts an [`UpgradeRequest`] from any request; whether it is a valid upgrade is
/// decided by [`UpgradeRequest::accept`], so that a plain GET gets a clear 400.
pub fn request() -> impl Filter<Extract = (UpgradeRequest,), Error = Infallible> + Clone {
    warp::header::headers_cloned()
        .and(warp::ext::optional::<OnUpgrade>())
        .and(warp::ext::optional::<Peer>())
        .and(warp::ext::optional::<Admission>())
        .map(|headers: HeaderMap, on_upgrade, peer: Option<Peer>, admission| {
            let offered: Vec<&str> = headers
                .get_all(header::SEC_WEBSOCKET_PROTOCOL)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .collect();
            let offered = (!offered.is_empty()).then(|| offered.join(","));
            let encoding = Encoding::from_offer(offered.as_deref());
            let named = offered
                .as_deref()
                .is_some_and(|list| list.split(',').any(|p| p.trim() == encoding.subprotocol()));
            UpgradeRequest {
                accept_key: websocket_key(&headers).map(|key| derive_accept_key(key.as_bytes())),
                on_upgrade,
                peer: peer.map(|Peer(addr)| addr),
                admission,
                origin: headers.get(header::ORIGIN).and_then(|value| value.to_str().ok()).map(str::to_owned),
                encoding,
                named,
                headers,
            }
        })
}

/// The `Sec-WebSocket-Key` of a well-formed version-13 upgrade request.
fn websocket_key(headers: &HeaderMap) -> Option<&str> {
    let has_token = |name, token: &str| {
        headers.get_all(name).iter().any(|value: &HeaderValue| {
            value.to_str().is_ok_and(|v| v.split(',').any(|part| part.trim().eq_ignore_ascii_case(token)))
        })
    };
    let version_ok = headers.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v.as_bytes() == b"13");
    if has_token(header::CONNECTION, "upgrade") && has_token(header::UPGRADE, "websocket") && version_ok {
        headers.get(header::SEC_WEBSOCKET_KEY)?.to_str().ok()
    } else {
        None
    }
}

impl UpgradeRequest {
    /// Answers the handshake: the 101 response plus the pending upgrade, which
    /// [`finish`] turns into a socket once hyper has sent the response. A request that
    /// is not a valid version-13 upgrade gets a 400 that says what was expected.
    pub fn accept(self) -> Result<(Response, OnUpgrade), Box<Response>> {
        let (Some(accept_key), Some(on_upgrade)) = (self.accept_key, self.on_upgrade) else {
            return Err(Box::new(
                warp::reply::with_status(
                    "expected a WebSocket upgrade (GET with Upgrade: websocket, Sec-WebSocket-Version: 13)",
                    StatusCode::BAD_REQUEST,
                )
                .into_response(),
            ));
        };
        let mut response = warp::reply().into_response();
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        let accept = HeaderValue::from_str(&accept_key).expect("base64 is a valid header value");
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        if self.named {
            headers.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(self.encoding.subprotocol()),
            );
        }
        Ok((response, on_upgrade))
    }
}

/// Completes a pending upgrade into a WebSocket with `config`.
pub async fn finish(on_upgrade: OnUpgrade, config: WebSocketConfig) -> Option<Socket> {
    match on_upgrade.await {
        Ok(upgraded) => {
            Some(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await)
        }
        Err(error) => {
            tracing::debug!(%error, "websocket upgrade failed");
            None
        }
    }
}

/// Closes the connection at the door with `code`, for refusals decided at the upgrade.
pub async fn refuse(mut socket: Socket, close: Close) {
    let _ = socket.close(Some(close.frame())).await;
}
