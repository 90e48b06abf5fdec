//! Helpers shared by the server's integration tests: a real server on a free port, a
//! real WebSocket client, and plain HTTP/1.1 requests.
#![allow(dead_code, missing_docs)]

use std::net::SocketAddr;

use futures::{SinkExt, StreamExt};
use tether_server::Config;
use tether_shared::{ClientFrame, ServerFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

mod chunked;
mod deadline;
pub mod redis;

pub use chunked::dechunk;
#[allow(unused_imports)] // not every suite uses every helper
pub use deadline::{PATIENCE, eventually, within, within_for};

pub type Client = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// A server under test: the real [`tether_server::Running`] (its address, its API), with
/// a start and a stop that have deadlines like every other await in a test.
pub struct Running(tether_server::Running);

impl std::ops::Deref for Running {
    type Target = tether_server::Running;

    fn deref(&self) -> &tether_server::Running {
        &self.0
    }
}

impl Running {
    /// Stops the server (a shutdown that hangs fails the test).
    pub async fn stop(self) {
        within("the server stopping", self.0.stop()).await;
    }
}

pub async fn server() -> Running {
    server_with(Config::for_tests()).await
}

pub async fn server_with(config: Config) -> Running {
    Running(within("the server starting", tether_server::start(config)).await.expect("server starts"))
}

pub async fn connect(addr: SocketAddr) -> Client {
    let (client, _) =
        within("the websocket handshake", tokio_tungstenite::connect_async(format!("ws://{addr}/ws")))
            .await
            .expect("websocket handshake");
    client
}

pub async fn send(client: &mut Client, frame: &ClientFrame) {
    send_message(client, Message::text(frame.encode())).await.expect("send");
}

/// Sends any message (raw text, binary, a hand-made frame) within [`PATIENCE`]; the
/// result tells whether the connection took it.
pub async fn send_message(
    client: &mut Client,
    message: Message,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    within("sending a message", client.send(message)).await
}

/// Closes the connection from the client's side (the close frame sent), within [`PATIENCE`].
pub async fn hang_up(client: &mut Client) {
    within("sending the close", client.close(None)).await.expect("close sent");
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
    within("the close frame", async {
        loop {
            match client.next().await {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (u16::from(frame.code), frame.reason.to_string());
                }
                Some(Ok(Message::Close(None))) => return (1005, String::new()),
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
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
    let mut stream = within("connecting", tokio::net::TcpStream::connect(addr)).await.expect("connect");
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    request.push_str(body);
    within("writing the request", stream.write_all(request.as_bytes())).await.expect("write request");
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

/// A `hello` that asks for the name `name`, with no token.
pub fn hello_frame(name: &str) -> ClientFrame {
    ClientFrame::Hello { v: PROTOCOL_VERSION, token: None, name: Some(name.into()), resume_token: None }
}

/// Opens a WebSocket whose upgrade request carries `cookie`, as a browser's would.
pub async fn with_cookie(addr: SocketAddr, cookie: &str) -> Client {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    request.headers_mut().insert("Cookie", cookie.parse().unwrap());
    let (client, _) = within("the handshake", tokio_tungstenite::connect_async(request)).await.unwrap();
    client
}

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
///
/// What it skips is never looked at: a test that says some frame must *not* come asserts
/// on [`frames_until`] or [`frames_until_pong`] instead.
pub async fn until<T>(client: &mut Client, mut wanted: impl FnMut(ServerFrame) -> Option<T>) -> T {
    within("the frame awaited", async {
        loop {
            if let Some(found) = wanted(next_frame(client).await) {
                return found;
            }
        }
    })
    .await
}

/// Every frame up to and including the first that `marker` matches, none skipped: for
/// asserting that something did *not* arrive before the marker. Panics on a close.
pub async fn frames_until(
    client: &mut Client,
    mut marker: impl FnMut(&ServerFrame) -> bool,
) -> Vec<ServerFrame> {
    within("the marker frame", async {
        let mut frames = Vec::new();
        loop {
            let frame = next_frame(client).await;
            let done = marker(&frame);
            frames.push(frame);
            if done {
                return frames;
            }
        }
    })
    .await
}

/// Sends a ping and returns every frame that came before its pong (the pong left out).
/// The server answers a connection's frames in order, so whatever it had queued for this
/// client before it read the ping is in here.
pub async fn frames_until_pong(client: &mut Client) -> Vec<ServerFrame> {
    let nonce = fastrand::u64(..);
    send(client, &ClientFrame::Ping { nonce }).await;
    let mut frames = frames_until(client, |frame| *frame == ServerFrame::Pong { nonce }).await;
    frames.pop();
    frames
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
        ServerFrame::Reject { id: rejected, code, message, .. } if rejected == id => {
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
    within("connecting", socket.connect(server)).await.unwrap()
}

/// Whether a WebSocket client connecting from `source` gets an answer to a ping.
pub async fn pinged_from(source: &str, server: std::net::SocketAddr) -> bool {
    let socket = tokio_tungstenite::MaybeTlsStream::Plain(tcp_from(source, server).await);
    let (mut client, _) = within(
        "the websocket handshake",
        tokio_tungstenite::client_async(format!("ws://{server}/ws"), socket),
    )
    .await
    .unwrap();
    send(&mut client, &ClientFrame::Ping { nonce: 7 }).await;
    matches!(next_message(&mut client).await, Some(Message::Text(_)))
}

/// Resolves when the server closes `stream` (EOF or reset). Every caller says how long
/// it may take (`tokio::time::timeout`): some wait out the server's own timeouts.
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

/// A server built by the app (typed channels and handlers registered), started.
pub async fn started(server: tether_server::Server) -> Running {
    Running(within("the server starting", server.start()).await.expect("server starts"))
}
