//! Request round trips beside publish acks: N clients, each with one request (or one
//! publish) in flight at a time, into a typed channel's room of `handler-server`, whose
//! request handler answers at once and whose publish handler accepts. A request is
//! answered without being stored; a publish is acked after the memory store numbered it.
//! Beside them, when it is installed, Socket.IO 4's nearest thing: `emitWithAck`, whose
//! server handler acknowledges at once with what it was sent.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::latency;
use crate::peer::{Mode, Peer};

/// One side of one run.
pub struct RoundTrips {
    /// `request`, `publish`, or `emitWithAck` (Socket.IO).
    pub kind: &'static str,
    /// Connections, each with one in flight.
    pub clients: usize,
    /// Answers per second, all clients together.
    pub per_sec: f64,
    /// Send-to-answer latency.
    pub p50: Duration,
    /// Send-to-answer latency.
    pub p99: Duration,
}

/// Requests and publishes, on 1 connection and on 100.
pub async fn run(seconds: u64) -> Result<Vec<RoundTrips>, String> {
    let server = Peer::TetherTyped.start(Mode::Echo, &["--store", "memory", "--send-queue", "100000"])?;
    let mut runs = Vec::new();
    for clients in [1, 100] {
        for kind in ["request", "publish"] {
            let run = round_trips(server.addr, kind, clients, seconds).await;
            println!(
                "  requests: {kind:<8} on {clients:>3} connection(s): {:>8.0}/s, p50 {:?} p99 {:?}",
                run.per_sec, run.p50, run.p99
            );
            runs.push(run);
        }
    }
    drop(server);
    match Peer::SocketIo.start(Mode::Echo, &[]) {
        Ok(peer) => {
            for clients in [1, 100] {
                let run = round_trips_socketio(peer.addr, clients, seconds).await;
                println!(
                    "  requests: Socket.IO emitWithAck on {clients:>3} connection(s): {:>8.0}/s, p50 {:?} p99 {:?}",
                    run.per_sec, run.p50, run.p99
                );
                runs.push(run);
            }
        }
        Err(why) => println!("  requests: Socket.IO left out: {why}"),
    }
    Ok(runs)
}

async fn round_trips(
    addr: std::net::SocketAddr,
    kind: &'static str,
    clients: usize,
    seconds: u64,
) -> RoundTrips {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        tasks.push(tokio::spawn(async move {
            let room = format!("typed:rt-{kind}-{c}");
            let mut client = Peer::TetherTyped.subscriber(addr, &room).await;
            let mut latencies = latency::histogram();
            let mut answered = 0u64;
            let answer = if kind == "request" { r#"{"type":"reply""# } else { r#"{"type":"ack""# };
            while Instant::now() < deadline {
                let frame = format!(
                    r#"{{"type":"{kind}","id":"{c}-{answered}","room":"{room}","body":{{"text":"how is it going"}}}}"#
                );
                let sent = Instant::now();
                client.send(Message::text(frame)).await.expect("send");
                loop {
                    match client.next().await {
                        Some(Ok(Message::Text(text))) if text.starts_with(answer) => break,
                        Some(Ok(Message::Text(text))) if text.starts_with(r#"{"type":"reject""#) => panic!("{text}"),
                        Some(Ok(_)) => {}
                        other => panic!("client lost: {other:?}"),
                    }
                }
                latencies.saturating_record(sent.elapsed().as_micros() as u64);
                answered += 1;
            }
            (answered, latencies)
        }));
    }
    collect(kind, clients, seconds, tasks).await
}

/// `emitWithAck` round trips: each client sends `42<n>["ask",…]` and waits for its
/// acknowledgement `43<n>[…]`, answering Engine.IO's pings meanwhile.
async fn round_trips_socketio(addr: std::net::SocketAddr, clients: usize, seconds: u64) -> RoundTrips {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        tasks.push(tokio::spawn(async move {
            let mut client = Peer::SocketIo.subscriber(addr, &format!("rt-ask-{c}")).await;
            let mut latencies = latency::histogram();
            let mut answered = 0u64;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let frame = format!(r#"42{answered}["ask",{{"text":"how is it going"}}]"#);
                client.send(Message::text(frame)).await.expect("send");
                let ack = format!("43{answered}[");
                loop {
                    match client.next().await {
                        Some(Ok(Message::Text(text))) if text.starts_with(&ack) => break,
                        Some(Ok(Message::Text(text))) => Peer::SocketIo.keepalive(&mut client, &text).await,
                        Some(Ok(_)) => {}
                        other => panic!("client lost: {other:?}"),
                    }
                }
                latencies.saturating_record(sent.elapsed().as_micros() as u64);
                answered += 1;
            }
            (answered, latencies)
        }));
    }
    collect("emitWithAck", clients, seconds, tasks).await
}

/// Every client's count and latencies, as one run's figures.
async fn collect(
    kind: &'static str,
    clients: usize,
    seconds: u64,
    tasks: Vec<tokio::task::JoinHandle<(u64, hdrhistogram::Histogram<u64>)>>,
) -> RoundTrips {
    let started = Instant::now();
    let mut total = 0;
    let mut latencies = latency::histogram();
    for task in tasks {
        let (answered, histogram) = task.await.expect("client task");
        total += answered;
        latencies.add(histogram).expect("same bounds");
    }
    let elapsed = started.elapsed().as_secs_f64().max(seconds as f64);
    RoundTrips {
        kind,
        clients,
        per_sec: total as f64 / elapsed,
        p50: Duration::from_micros(latencies.value_at_quantile(0.50)),
        p99: Duration::from_micros(latencies.value_at_quantile(0.99)),
    }
}
