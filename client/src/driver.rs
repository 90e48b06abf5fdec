//! The tokio driver: performs the core's actions and feeds it what happens.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tether_shared::{Action, Connection, CurrentSocket, Encoding, Event, Input, Millis, SocketId, close};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

use crate::{ClientOptions, TokenProvider};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What a connect attempt reports back to the loop.
enum Dialed {
    Opened(SocketId, Box<Socket>),
    /// The dial failed: the close code it counts as, and why.
    Failed(SocketId, u16, String),
}

/// Runs until the handle is dropped.
pub async fn run(
    options: ClientOptions,
    seed: u64,
    mut inputs: mpsc::UnboundedReceiver<Input>,
    events: mpsc::UnboundedSender<Event>,
    endpoint: tokio::sync::watch::Sender<String>,
    stats: tokio::sync::watch::Sender<tether_shared::ConnectionStats>,
    answers: crate::Answers,
) {
    let ClientOptions { endpoints, connection, token, encoding } = options;
    let mut core = Connection::new(connection, seed);
    core.set_encoding(encoding);
    core.set_endpoints(endpoints);
    core.set_fetch_tokens(token.is_some());
    let mut current: CurrentSocket<Socket> = CurrentSocket::default();
    let mut close_seen: Option<(u16, String)> = None;
    let (dial_tx, mut dialed) = mpsc::unbounded_channel::<Dialed>();
    let (token_tx, mut tokens) = mpsc::unbounded_channel::<Input>();

    loop {
        while let Some(action) = core.poll_action() {
            match action {
                Action::FetchToken => fetch_token(token.as_ref(), &token_tx),
                Action::Open { socket, endpoint: url } => {
                    let dial_tx = dial_tx.clone();
                    tokio::spawn(async move {
                        if let Some(problem) = close::address_problem(&url) {
                            let _ = dial_tx.send(Dialed::Failed(socket, close::INVALID_ADDRESS, problem));
                            return;
                        }
                        let request = match request(&url, encoding) {
                            Ok(request) => request,
                            Err(error) => {
                                let _ = dial_tx.send(Dialed::Failed(
                                    socket,
                                    close::INVALID_ADDRESS,
                                    format!("{url}: {error}"),
                                ));
                                return;
                            }
                        };
                        // Nagle off: acks and pings are small and must not wait for a delayed ACK.
                        let result =
                            match connect_async_with_config(request, Some(socket_config()), true).await {
                                Ok((ws, _)) => Dialed::Opened(socket, Box::new(ws)),
                                Err(tokio_tungstenite::tungstenite::Error::Url(error)) => {
                                    Dialed::Failed(socket, close::INVALID_ADDRESS, format!("{url}: {error}"))
                                }
                                Err(error) => Dialed::Failed(socket, close::ABNORMAL, error.to_string()),
                            };
                        let _ = dial_tx.send(result);
                    });
                }
                Action::Send(socket, _) | Action::SendBinary(socket, _) => {
                    let message = match action {
                        Action::Send(_, text) => Message::text(text),
                        Action::SendBinary(_, bytes) => Message::binary(bytes),
                        _ => unreachable!("matched above"),
                    };
                    if let Some(ws) = current.get(socket) {
                        if let Err(error) = ws.send(message).await {
                            tracing::debug!(%error, "send failed");
                            current.take(socket);
                            core.handle(
                                Input::SocketClosed {
                                    socket,
                                    code: close::ABNORMAL,
                                    reason: error.to_string(),
                                },
                                Millis::monotonic(),
                            );
                        }
                    }
                }
                Action::Close { socket, code, reason } => {
                    if let Some(mut ws) = current.take(socket) {
                        let frame = CloseFrame { code: code.into(), reason: reason.into() };
                        // Best effort: the core has already moved on.
                        tokio::spawn(async move {
                            let _ = ws.close(Some(frame)).await;
                        });
                    }
                }
            }
        }
        while let Some(event) = core.poll_event() {
            crate::answer(&answers, &event);
            let _ = events.send(event);
        }
        endpoint.send_if_modified(|shown| {
            let changed = shown != core.endpoint();
            if changed {
                core.endpoint().clone_into(shown);
            }
            changed
        });
        stats.send_if_modified(|shown| {
            let changed = shown != core.stats();
            if changed {
                shown.clone_from(core.stats());
            }
            changed
        });

        let wake_at = core.poll_timeout();
        let sleep = async {
            match wake_at {
                Some(at) => tokio::time::sleep(Millis::monotonic().until(at)).await,
                None => std::future::pending().await,
            }
        };
        let incoming = async {
            match current.current() {
                Some((_, ws)) => ws.next().await,
                None => std::future::pending().await,
            }
        };

        tokio::select! {
            input = inputs.recv() => match input {
                Some(input) => core.handle(input, Millis::monotonic()),
                None => {
                    core.handle(Input::Disconnect, Millis::monotonic());
                    if let Some((_, mut ws)) = current.take_any() {
                        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                    }
                    return;
                }
            },
            Some(answer) = tokens.recv() => core.handle(answer, Millis::monotonic()),
            Some(dial) = dialed.recv() => match dial {
                Dialed::Opened(socket, ws) => {
                    current.replace(socket, *ws);
                    close_seen = None;
                    core.handle(Input::SocketOpened(socket), Millis::monotonic());
                }
                Dialed::Failed(socket, code, reason) => {
                    core.handle(Input::SocketClosed { socket, code, reason }, Millis::monotonic());
                }
            },
            message = incoming => {
                let socket = current.id().expect("incoming implies a socket");
                match message {
                    Some(Ok(Message::Text(text))) => core.handle(Input::Received(socket, text.to_string()), Millis::monotonic()),
                    Some(Ok(Message::Binary(bytes))) => core.handle(Input::ReceivedBinary(socket, bytes.to_vec()), Millis::monotonic()),
                    Some(Ok(Message::Close(frame))) => {
                        close_seen = Some(frame.map_or((1005, String::new()), |f| (f.code.into(), f.reason.to_string())));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        current.take(socket);
                        let (code, reason) = close_seen.take().unwrap_or((close::ABNORMAL, String::new()));
                        core.handle(Input::SocketClosed { socket, code, reason }, Millis::monotonic());
                    }
                }
            },
            () = sleep => core.handle_timeout(Millis::monotonic()),
        }
    }
}

/// The socket's buffers: frames are small, so the 128 KiB read buffer tungstenite
/// allocates by default would be most of a client's memory (a load generator or a
/// service holding thousands of clients pays it for each).
fn socket_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(8 * 1024)
}

/// The upgrade request for `url`, asking for `encoding`'s subprotocol unless it is JSON
/// (the default, which needs no asking).
fn request(
    url: &str,
    encoding: Encoding,
) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request, tokio_tungstenite::tungstenite::Error>
{
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request()?;
    if encoding != Encoding::Json {
        let protocol = encoding.subprotocol().parse().expect("a subprotocol is a valid header value");
        request.headers_mut().insert("Sec-WebSocket-Protocol", protocol);
    }
    Ok(request)
}

/// Asks the provider in its own task; the answer comes back as the core's input.
fn fetch_token(provider: Option<&TokenProvider>, answers: &mpsc::UnboundedSender<Input>) {
    let Some(provider) = provider.cloned() else {
        // The core asks only when told a provider exists; answer rather than hang.
        let _ = answers.send(Input::TokenFailed("no token provider".into()));
        return;
    };
    let answers = answers.clone();
    tokio::spawn(async move {
        let answer = match provider.fetch().await {
            Ok(token) => Input::RefreshToken(token),
            Err(reason) => Input::TokenFailed(reason),
        };
        let _ = answers.send(answer);
    });
}
