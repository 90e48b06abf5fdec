//! One client's connection: reads frames, answers them, and says goodbye properly.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tether_shared::{ClientFrame, ErrorCode, Limits, PROTOCOL_VERSION, ServerFrame, User};

use crate::identity;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::shutdown::Shutdown;
use crate::upgrade::Socket;

/// Close code and reason sent to every client when the server shuts down. Clients
/// treat 1001 as "come back soon" and reconnect with backoff.
pub const SHUTDOWN_CLOSE: (u16, &str) = (1001, "server restarting");

/// Why a connection ended, for logs.
#[derive(Debug)]
enum Ending {
    ClientClosed,
    Shutdown,
    Idle,
    TooLarge,
    BadUtf8,
    Transport(String),
}

/// Serves one upgraded socket until the client leaves, it goes silent, or the server
/// shuts down.
pub async fn serve(mut socket: Socket, shutdown: Shutdown, idle_timeout: Duration) {
    let mut session = Session::default();
    let ending = loop {
        let next = tokio::select! {
            biased;
            _ = shutdown.triggered() => break Ending::Shutdown,
            next = tokio::time::timeout(idle_timeout, socket.next()) => next,
        };
        let message = match next {
            Err(_elapsed) => break Ending::Idle,
            Ok(None) => break Ending::ClientClosed,
            Ok(Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. })))) => {
                break Ending::TooLarge;
            }
            Ok(Some(Err(WsError::Utf8(_)))) => break Ending::BadUtf8,
            Ok(Some(Err(error))) => break Ending::Transport(error.to_string()),
            Ok(Some(Ok(message))) => message,
        };
        let reply = match message {
            Message::Text(text) => Some(session.answer(&text, idle_timeout)),
            Message::Binary(_) => Some(ServerFrame::Error {
                code: ErrorCode::BinaryNotSupported,
                message: "Tether frames are JSON text messages".into(),
                about: None,
            }),
            Message::Close(_) => break Ending::ClientClosed,
            // Tungstenite queues the pong itself; the next send or flush writes it.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => None,
        };
        let sent = match reply {
            Some(frame) => socket.send(Message::text(frame.encode())).await,
            None => socket.flush().await,
        };
        if let Err(error) = sent {
            break Ending::Transport(error.to_string());
        }
    };

    let close = match &ending {
        Ending::Shutdown => Some(SHUTDOWN_CLOSE),
        Ending::TooLarge => Some((1009, "message too large")),
        Ending::BadUtf8 => Some((1007, "text message was not valid UTF-8")),
        Ending::ClientClosed | Ending::Idle | Ending::Transport(_) => None,
    };
    if let Some((code, reason)) = close {
        let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
        let _ = socket.close(Some(frame)).await;
    }
    match ending {
        Ending::Transport(error) => tracing::debug!(%error, "connection failed"),
        ending => tracing::debug!(?ending, "connection ended"),
    }
}

/// What the server knows about one connection's peer.
#[derive(Default)]
struct Session {
    user: Option<User>,
}

impl Session {
    /// The reply to one text frame.
    fn answer(&mut self, text: &str, idle_timeout: Duration) -> ServerFrame {
        let error = |code, message: &str| ServerFrame::Error { code, message: message.into(), about: None };
        let frame = match ClientFrame::decode(text) {
            Ok(frame) => frame,
            Err((code, message)) => return ServerFrame::Error { code, message, about: None },
        };
        match frame {
            ClientFrame::Echo { body } => ServerFrame::Echo { body },
            ClientFrame::Ping { nonce } => ServerFrame::Pong { nonce },
            ClientFrame::Hello { .. } if self.user.is_some() => {
                error(ErrorCode::AlreadyHello, "this connection already said hello")
            }
            ClientFrame::Hello { name, .. } => {
                let user = identity::dev_user(name.as_deref());
                self.user = Some(user.clone());
                ServerFrame::Welcome {
                    v: PROTOCOL_VERSION,
                    session: identity::random_id("c"),
                    resume_token: identity::random_id("rt"),
                    // Half the idle timeout, so one lost ping never gets a live client dropped.
                    heartbeat_ms: (idle_timeout.as_millis() / 2) as u64,
                    limits: Limits {
                        max_body_bytes: 16 * 1024,
                        publish_per_sec: 20,
                        publish_burst: 40,
                        max_rooms: 32,
                    },
                    user,
                }
            }
            _ if self.user.is_none() => error(ErrorCode::HelloRequired, "send hello first"),
            other => {
                error(ErrorCode::Internal, &format!("`{}` is not supported by this server yet", other.kind()))
            }
        }
    }
}
