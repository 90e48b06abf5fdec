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

mod chunked;
pub mod redis;

pub use chunked::dechunk;

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
    http(addr, "GET", path).await
}

/// A minimal HTTP/1.1 request without a body.
pub async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    http_with(addr, method, path, &[], "").await
}

/// A minimal HTTP/1.1 request with extra headers and a body; a chunked body is decoded.
pub async fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.expect("write request");
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read response");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).expect("status");
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, head.to_owned(), body)
}

use serde_json::Value;
use tether_shared::{PROTOCOL_VERSION, User};

/// Connects and says hello as `name`; returns the client and who the server says it is.
pub async fn hello(addr: SocketAddr, name: &str) -> (Client, User, String) {
    let mut client = connect(addr).await;
    let frame =
        ClientFrame::Hello { v: PROTOCOL_VERSION, token: None, name: Some(name.into()), resume_token: None };
    send(&mut client, &frame).await;
    match next_frame(&mut client).await {
        ServerFrame::Welcome { user, resume_token, .. } => (client, user, resume_token),
        other => panic!("expected welcome, got {other:?}"),
    }
}

/// Frames until one matches, skipping others (presence, typing…). Panics on a close.
pub async fn until<T>(client: &mut Client, mut wanted: impl FnMut(ServerFrame) -> Option<T>) -> T {
    loop {
        if let Some(found) = wanted(next_frame(client).await) {
            return found;
        }
    }
}

/// Joins `room` (optionally from `since`) and returns the `joined` frame's head seq and
/// members.
/// A client that said hello as `name` and joined `room`.
pub async fn member(addr: SocketAddr, name: &str, room: &str) -> Client {
    let (mut client, _, _) = hello(addr, name).await;
    join(&mut client, room, None).await;
    client
}

/// The test config with publish limits high enough never to get in a test's way.
pub fn unthrottled() -> Config {
    let mut config = Config::for_tests();
    config.publish_rate = 10_000;
    config.publish_burst = 10_000;
    config
}

pub async fn join(client: &mut Client, room: &str, since: Option<u64>) -> (u64, Vec<User>) {
    send(client, &ClientFrame::Join { room: room.into(), since, history: None }).await;
    until(client, |frame| match frame {
        ServerFrame::Joined { room: r, seq, members, .. } if r == room => Some((seq, members)),
        _ => None,
    })
    .await
}

/// Publishes and waits for the ack; returns (seq, ts).
pub async fn publish(client: &mut Client, room: &str, id: &str, body: Value) -> (u64, u64) {
    send(client, &ClientFrame::Publish { id: id.into(), room: room.into(), body, priority: 0 }).await;
    until(client, |frame| match frame {
        ServerFrame::Ack { id: acked, seq, ts, .. } if acked == id => Some((seq, ts.0)),
        ServerFrame::Reject { id: rejected, code, message } if rejected == id => {
            panic!("rejected {code:?}: {message}")
        }
        _ => None,
    })
    .await
}

/// The next `message` frame in `room`: (seq, id, body).
pub async fn next_message_in(client: &mut Client, room: &str) -> (u64, String, Value) {
    until(client, |frame| match frame {
        ServerFrame::Message { room: r, seq, id, body, .. } if r == room => Some((seq, id, body)),
        _ => None,
    })
    .await
}

/// A config with the durable store in a fresh temporary folder.
pub fn durable_config() -> (Config, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("tether-test-{}-{}", std::process::id(), fastrand::u64(..)));
    let mut config = Config::for_tests();
    config.store = "sqlite".into();
    config.data_dir = dir.clone();
    (config, dir)
}

/// Opens a TCP connection from `source` (any 127.x address works on loopback).
pub async fn tcp_from(source: &str, server: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(server).await.unwrap()
}

/// Whether a WebSocket client connecting from `source` gets an answer to a ping.
pub async fn pinged_from(source: &str, server: std::net::SocketAddr) -> bool {
    let socket = tokio_tungstenite::MaybeTlsStream::Plain(tcp_from(source, server).await);
    let (mut client, _) = tokio_tungstenite::client_async(format!("ws://{server}/ws"), socket).await.unwrap();
    send(&mut client, &ClientFrame::Ping { nonce: 7 }).await;
    matches!(next_message(&mut client).await, Some(Message::Text(_)))
}

/// Resolves when the server closes `stream` (EOF or reset).
pub async fn closed_by_server(stream: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}
