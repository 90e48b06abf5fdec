//! Durable throughput: acked publishes per second into SQLite (`synchronous = FULL`),
//! and how long each ack took.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::latency;
use crate::peer::{Mode, Peer};

/// In-flight publishes per client, one run each: fewer in flight trade throughput for
/// latency (by Little's law, mean ack latency = publishes in flight / acked per second).
pub const WINDOWS: [usize; 4] = [4, 8, 16, 32];

/// What a durable run measured.
pub struct Durable {
    /// Publishes each client kept in flight.
    pub window: usize,
    /// Acked publishes per second.
    pub acked_per_sec: f64,
    /// Publish-to-ack latency.
    pub p50: Duration,
    /// Publish-to-ack latency.
    pub p99: Duration,
}

/// `clients` publishers, each in its own room, keep `window` publishes in flight.
pub async fn run(clients: usize, window: usize, seconds: u64) -> Durable {
    let server =
        Peer::Tether.start(Mode::Echo, &["--store", "sqlite", "--send-queue", "100000"]).expect("tether");
    publish_load(&[server.addr], "load", clients, window, seconds).await
}

/// `clients` publishers spread over `addrs` (round robin), each in its own room (named
/// `{rooms}-{client}`), keep `window` publishes in flight for `seconds`.
pub async fn publish_load(
    addrs: &[SocketAddr],
    rooms: &str,
    clients: usize,
    window: usize,
    seconds: u64,
) -> Durable {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let addr = addrs[c % addrs.len()];
        let room = format!("{rooms}-{c}");
        tasks.push(tokio::spawn(async move {
            let mut client = Peer::Tether.subscriber(addr, &room).await;
            let mut sent_at = std::collections::VecDeque::new();
            let mut latencies = latency::histogram();
            let (mut sent, mut acked) = (0u64, 0u64);
            while Instant::now() < deadline {
                while sent_at.len() < window {
                    let frame = format!(
                        r#"{{"type":"publish","id":"{c}-{sent}","room":"{room}","body":{{"text":"a typical chat message of modest length"}}}}"#
                    );
                    client.feed(Message::text(frame)).await.expect("send");
                    sent_at.push_back(Instant::now());
                    sent += 1;
                }
                client.flush().await.expect("flush");
                match client.next().await {
                    Some(Ok(Message::Text(text))) if text.starts_with(r#"{"type":"ack""#) => {
                        let at = sent_at.pop_front().expect("an ack answers a publish");
                        latencies.saturating_record(at.elapsed().as_micros() as u64);
                        acked += 1;
                    }
                    Some(Ok(Message::Text(text))) if text.starts_with(r#"{"type":"reject""#) => panic!("{text}"),
                    Some(Ok(_)) => {}
                    other => panic!("publisher lost: {other:?}"),
                }
            }
            (acked, latencies)
        }));
    }
    let mut total = 0;
    let mut latencies = latency::histogram();
    for task in tasks {
        let (acked, histogram) = task.await.expect("publisher task");
        total += acked;
        latencies.add(histogram).expect("same bounds");
    }
    Durable {
        window,
        acked_per_sec: total as f64 / started.elapsed().as_secs_f64(),
        p50: Duration::from_micros(latencies.value_at_quantile(0.5)),
        p99: Duration::from_micros(latencies.value_at_quantile(0.99)),
    }
}
