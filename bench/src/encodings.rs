//! JSON beside MessagePack on the same workloads, in the same run: bytes on the wire and
//! server CPU per delivery, for the fan-out of a chat message and of a cursor update.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::json;
use tether_shared::{ClientFrame, Encoding, PROTOCOL_VERSION, ServerFrame};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::peer::{Mode, Peer};

type Client = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Subscribers per encoding.
const SUBSCRIBERS: usize = 50;
/// Frames the publisher sends per workload.
const FRAMES: usize = 2_000;

/// One encoding on one workload.
pub struct Figures {
    /// "JSON" or "MessagePack".
    pub encoding: &'static str,
    /// "chat message" or "cursor update".
    pub workload: &'static str,
    /// Bytes of one delivered frame, on average (the WebSocket payload).
    pub bytes_per_delivery: f64,
    /// Server CPU per delivery.
    pub cpu_per_delivery: Duration,
    /// Frames delivered over all subscribers.
    pub delivered: u64,
}

/// Runs both encodings on both workloads against one server.
pub async fn run() -> Vec<Figures> {
    let server = Peer::Tether
        .start(Mode::Broadcast, &["--send-queue", "100000", "--state-rate", "1000000"])
        .expect("tether");
    let mut figures = Vec::new();
    for encoding in [Encoding::Json, Encoding::MessagePack] {
        for workload in ["chat message", "cursor update"] {
            let room = format!("enc-{}-{}", encoding.subprotocol(), workload.replace(' ', "-"));
            let mut subscribers = Vec::new();
            for _ in 0..SUBSCRIBERS {
                subscribers.push(client(server.addr, encoding, &room).await);
            }
            let mut publisher = client(server.addr, Encoding::Json, &room).await;
            let before = server.cpu();
            let readers: Vec<_> =
                subscribers.into_iter().map(|socket| tokio::spawn(count(socket, workload))).collect();
            for i in 0..FRAMES {
                let frame = match workload {
                    "chat message" => ClientFrame::Publish {
                        id: format!("m{i}"),
                        room: room.clone(),
                        body: json!({"text": format!("message number {i} of the benchmark"), "reply_to": null}),
                        priority: 0,
                    },
                    _ => ClientFrame::State {
                        room: room.clone(),
                        key: "cursor".into(),
                        value: json!({"x": 0.125 + i as f64 / 10_000.0, "y": 0.5}),
                    },
                };
                publisher.send(Message::text(frame.encode())).await.expect("send");
                // Cursors move at a pointer's pace (about one update a millisecond here),
                // not in one burst, so that what is measured is delivery, not coalescing.
                if workload == "cursor update" {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            let mut bytes = 0u64;
            let mut delivered = 0u64;
            for reader in readers {
                let (b, n) = reader.await.expect("reader");
                bytes += b;
                delivered += n;
            }
            let cpu = server.cpu().saturating_sub(before);
            let per = delivered.max(1);
            figures.push(Figures {
                encoding: if encoding == Encoding::Json { "JSON" } else { "MessagePack" },
                workload,
                bytes_per_delivery: bytes as f64 / per as f64,
                cpu_per_delivery: cpu / per as u32,
                delivered,
            });
        }
    }
    figures
}

/// A subscriber in `room` speaking `encoding`.
async fn client(addr: SocketAddr, encoding: Encoding, room: &str) -> Client {
    let mut request = format!("ws://{addr}/ws").into_client_request().expect("a URL");
    if encoding == Encoding::MessagePack {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", encoding.subprotocol().parse().expect("a header"));
    }
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(request, None, true).await.expect("connects");
    let hello = ClientFrame::Hello {
        v: PROTOCOL_VERSION,
        token: None,
        name: Some("bench".into()),
        resume_token: None,
    };
    let join = ClientFrame::Join { room: room.into(), since: None, history: None };
    for frame in [hello, join] {
        let message = match encoding {
            Encoding::Json => Message::text(frame.encode()),
            Encoding::MessagePack => Message::binary(frame.encode_msgpack()),
        };
        socket.send(message).await.expect("send");
    }
    loop {
        if let Some(ServerFrame::Joined { .. }) = next(&mut socket).await.map(|(frame, _)| frame) {
            return socket;
        }
    }
}

/// The next frame and its payload size.
async fn next(socket: &mut Client) -> Option<(ServerFrame, usize)> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await.ok()?? {
            Ok(Message::Text(text)) => return Some((ServerFrame::decode(&text).ok()?, text.len())),
            Ok(Message::Binary(bytes)) => {
                return Some((ServerFrame::decode_msgpack(&bytes).ok()?, bytes.len()));
            }
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// Reads the workload's frames: every chat message, or cursor values until the last
/// one (coalescing may skip some); returns (bytes, frames).
async fn count(mut socket: Client, workload: &'static str) -> (u64, u64) {
    let (mut bytes, mut frames) = (0u64, 0u64);
    while let Some((frame, size)) = next(&mut socket).await {
        let done = match (&frame, workload) {
            (ServerFrame::Message { seq, .. }, "chat message") => *seq as usize >= FRAMES,
            (ServerFrame::State { value, .. }, "cursor update") => {
                value["x"].as_f64().is_some_and(|x| x >= 0.125 + (FRAMES - 1) as f64 / 10_000.0 - 1e-9)
            }
            _ => continue,
        };
        bytes += size as u64;
        frames += 1;
        if done {
            break;
        }
    }
    (bytes, frames)
}
