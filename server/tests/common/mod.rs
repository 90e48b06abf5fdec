//! Helpers shared by the server's integration tests: a real server on a free port, a
//! real WebSocket client, and plain HTTP/1.1 requests.
#![allow(dead_code, missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tether_server::{Config, Running};
use tether_shared::{ClientFrame, ServerFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Client = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Upper bound on any single wait, so a broken server fails a test instead of hanging it.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub async fn server() -> Running {
    server_with(Config::for_tests()).await
}

pub async fn server_with(config: Config) -> Running {
    tether_server::start(config).await.expect("server starts")
}

pub async fn connect(addr: SocketAddr) -> Client {
    let (client, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await.expect("websocket handshake");
    client
}

pub async fn send(client: &mut Client, frame: &ClientFrame) {
    client.send(Message::text(frame.encode())).await.expect("send");
}

/// The next message of any kind, within [`PATIENCE`].
pub async fn next_message(client: &mut Client) -> Option<Message> {
    tokio::time::timeout(PATIENCE, client.next())
        .await
        .expect("server answered in time")
        .map(|result| result.expect("websocket stays healthy"))
}

/// The next frame, decoded; panics on anything that is not a text frame.
pub async fn next_frame(client: &mut Client) -> ServerFrame {
    match next_message(client).await {
        Some(Message::Text(text)) => ServerFrame::decode(&text).expect("server frames decode"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Reads until the close frame and returns its code and reason.
pub async fn expect_close(client: &mut Client) -> (u16, String) {
    loop {
        match tokio::time::timeout(PATIENCE, client.next()).await.expect("close in time") {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.to_string());
            }
            Some(Ok(Message::Close(None))) => return (1005, String::new()),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// A minimal HTTP/1.1 GET: returns the status code, the headers as text, and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write request");
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read response");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).expect("status");
    (status, head.to_owned(), body.to_owned())
}
