//! The tokio driver: performs the core's actions and feeds it what happens.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tether_shared::{
    Action, Connection, ConnectionConfig, CurrentSocket, Event, Input, Millis, SocketId, close,
};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What a connect attempt reports back to the loop.
enum Dialed {
    Opened(SocketId, Box<Socket>),
    /// The dial failed: the close code it counts as, and why.
    Failed(SocketId, u16, String),
}

/// Runs until the handle is dropped.
pub async fn run(
    url: String,
    config: ConnectionConfig,
    seed: u64,
    mut inputs: mpsc::UnboundedReceiver<Input>,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut core = Connection::new(config, seed);
    let mut current: CurrentSocket<Socket> = CurrentSocket::default();
    let mut close_seen: Option<(u16, String)> = None;
    let (dial_tx, mut dialed) = mpsc::unbounded_channel::<Dialed>();

    loop {
        while let Some(action) = core.poll_action() {
            match action {
                Action::Open(socket) => {
                    let url = url.clone();
                    let dial_tx = dial_tx.clone();
                    tokio::spawn(async move {
                        if let Some(problem) = close::address_problem(&url) {
                            let _ = dial_tx.send(Dialed::Failed(socket, close::INVALID_ADDRESS, problem));
                            return;
                        }
                        // Nagle off: acks and pings are small and must not wait for a delayed ACK.
                        let result = match connect_async_with_config(url.as_str(), None, true).await {
                            Ok((ws, _)) => Dialed::Opened(socket, Box::new(ws)),
                            Err(tokio_tungstenite::tungstenite::Error::Url(error)) => {
                                Dialed::Failed(socket, close::INVALID_ADDRESS, format!("{url}: {error}"))
                            }
                            Err(error) => Dialed::Failed(socket, close::ABNORMAL, error.to_string()),
                        };
                        let _ = dial_tx.send(result);
                    });
                }
                Action::Send(socket, text) => {
                    if let Some(ws) = current.get(socket) {
                        if let Err(error) = ws.send(Message::text(text)).await {
                            tracing::debug!(%error, "send failed");
                            current.take(socket);
                            core.handle(
                                Input::SocketClosed {
                                    socket,
                                    code: close::ABNORMAL,
                                    reason: error.to_string(),
                                },
                                Millis::now(),
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
            let _ = events.send(event);
        }

        let wake_at = core.poll_timeout();
        let sleep = async {
            match wake_at {
                Some(at) => tokio::time::sleep(Millis::now().until(at)).await,
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
                Some(input) => core.handle(input, Millis::now()),
                None => {
                    core.handle(Input::Disconnect, Millis::now());
                    if let Some((_, mut ws)) = current.take_any() {
                        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                    }
                    return;
                }
            },
            Some(dial) = dialed.recv() => match dial {
                Dialed::Opened(socket, ws) => {
                    current.replace(socket, *ws);
                    close_seen = None;
                    core.handle(Input::SocketOpened(socket), Millis::now());
                }
                Dialed::Failed(socket, code, reason) => {
                    core.handle(Input::SocketClosed { socket, code, reason }, Millis::now());
                }
            },
            message = incoming => {
                let socket = current.id().expect("incoming implies a socket");
                match message {
                    Some(Ok(Message::Text(text))) => core.handle(Input::Received(socket, text.to_string()), Millis::now()),
                    Some(Ok(Message::Close(frame))) => {
                        close_seen = Some(frame.map_or((1005, String::new()), |f| (f.code.into(), f.reason.to_string())));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        current.take(socket);
                        let (code, reason) = close_seen.take().unwrap_or((close::ABNORMAL, String::new()));
                        core.handle(Input::SocketClosed { socket, code, reason }, Millis::now());
                    }
                }
            },
            () = sleep => core.handle_timeout(Millis::now()),
        }
    }
}
