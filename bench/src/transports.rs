//! Delivery latency over each transport: subscribers on a WebSocket, on Server-Sent
//! Events and on long-polls hear one WebSocket publisher, in the same run.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use hdrhistogram::Histogram;

use crate::latency;
use crate::peer::{Mode, Peer};

/// Messages per second from the publisher.
const RATE: u64 = 200;
/// Subscribers per transport.
const SUBSCRIBERS: usize = 10;

/// One transport's figures.
pub struct Delivery {
    /// "WebSocket", "SSE", "long-polling".
    pub transport: &'static str,
    /// Publish-to-deliver latency.
    pub p50: Duration,
    /// Publish-to-deliver latency.
    pub p99: Duration,
    /// Messages received over all its subscribers.
    pub received: u64,
}

/// Runs all three side by side for `seconds`.
pub async fn run(seconds: u64) -> Vec<Delivery> {
    let server = Peer::Tether.start(Mode::Broadcast, &["--send-queue", "100000"]).expect("tether");
    let addr = server.addr;
    let origin = Instant::now();
    let total = RATE * seconds;
    let mut tasks: Vec<(&'static str, tokio::task::JoinHandle<Histogram<u64>>)> = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut socket = Peer::Tether.subscriber(addr, "transports").await;
        tasks.push((
            "WebSocket",
            tokio::spawn(async move {
                let mut seen = latency::histogram();
                let mut got = 0;
                while got < total {
                    match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
                        Ok(Some(Ok(Message::Text(text)))) => {
                            if let Some(sent) = stamp(&text) {
                                seen.saturating_record(elapsed_since(origin, sent));
                                got += 1;
                            }
                        }
                        Ok(Some(Ok(_))) => {}
                        _ => break,
                    }
                }
                seen
            }),
        ));
        let session = open_session(addr).await;
        tasks.push(("SSE", tokio::spawn(sse_subscriber(addr, session, origin, total))));
        let session = open_session(addr).await;
        tasks.push(("long-polling", tokio::spawn(poll_subscriber(addr, session, origin, total))));
    }
    let mut writer = Peer::Tether.subscriber(addr, "transports").await;
    latency::publish_stamped(&mut writer, "transports", RATE, total, origin).await;
    let mut results = Vec::new();
    for name in ["WebSocket", "SSE", "long-polling"] {
        let mut all = latency::histogram();
        for (_, task) in tasks.iter_mut().filter(|(transport, _)| *transport == name) {
            all.add(task.await.expect("subscriber")).expect("same bounds");
        }
        results.push(Delivery {
            transport: name,
            p50: Duration::from_micros(all.value_at_quantile(0.5)),
            p99: Duration::from_micros(all.value_at_quantile(0.99)),
            received: all.len(),
        });
    }
    results
}

fn elapsed_since(origin: Instant, sent: u64) -> u64 {
    (origin.elapsed().as_micros() as u64).saturating_sub(sent)
}

/// The `t` stamp of a `message` frame's text.
fn stamp(text: &str) -> Option<u64> {
    if !text.starts_with(r#"{"type":"message""#) {
        return None;
    }
    stamp_of(&serde_json::from_str(text).ok()?)
}

/// The `t` stamp of a `message` frame.
fn stamp_of(frame: &Value) -> Option<u64> {
    (frame["type"] == "message").then(|| frame["body"]["t"].as_u64()).flatten()
}

/// One HTTP/1.1 request on its own connection: (status, body), chunked bodies decoded.
async fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        tether_e2e::chunked::dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

/// Opens a session and joins the room; returns the session id.
async fn open_session(addr: SocketAddr) -> String {
    let (status, body) = request(addr, "POST", "/rt/open", r#"{"type":"hello","v":1,"name":"bench"}"#).await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("json");
    let session = answer["session"].as_str().expect("a session").to_owned();
    let join = r#"{"type":"join","room":"transports"}"#;
    let (status, _) = request(addr, "POST", &format!("/rt/send?session={session}"), join).await;
    assert_eq!(status, 204);
    session
}

/// Reads one SSE stream, recording each stamped message's latency.
async fn sse_subscriber(addr: SocketAddr, session: String, origin: Instant, total: u64) -> Histogram<u64> {
    let mut seen = latency::histogram();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!("GET /rt/sse?session={session}&last_event_id=1 HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut buffer = String::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < total {
        let n = match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => break,
        };
        buffer.push_str(&String::from_utf8_lossy(&chunk[..n]));
        while let Some(end) = buffer.find('\n') {
            let line: String = buffer.drain(..=end).collect();
            if let Some(data) = line.trim_end().strip_prefix("data:")
                && let Some(sent) = stamp(data.trim_start())
            {
                seen.saturating_record(elapsed_since(origin, sent));
                got += 1;
            }
        }
    }
    seen
}

/// Long-polls one session, recording each stamped message's latency.
async fn poll_subscriber(addr: SocketAddr, session: String, origin: Instant, total: u64) -> Histogram<u64> {
    let mut seen = latency::histogram();
    let mut after = 1;
    let mut got = 0;
    while got < total {
        let (status, body) =
            request(addr, "GET", &format!("/rt/poll?session={session}&after={after}"), "").await;
        if status != 200 {
            break;
        }
        let answer: Value = serde_json::from_str(&body).expect("json");
        for entry in answer["frames"].as_array().into_iter().flatten() {
            after = entry["event"].as_u64().unwrap_or(after);
            if let Some(sent) = stamp_of(&entry["frame"]) {
                seen.saturating_record(elapsed_since(origin, sent));
                got += 1;
            }
        }
    }
    seen
}
