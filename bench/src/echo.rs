//! Echo, closed loop: each client sends 32 bytes and waits for them to come back.
//! The figure that matters is the server's CPU per round trip.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::peer::{Mode, Peer};

/// What an echo run measured.
pub struct Echo {
    /// Round trips per second, all clients together.
    pub round_trips_per_sec: f64,
    /// Server CPU (user + system) per round trip.
    pub cpu_per_round_trip: Duration,
}

/// `clients` connections echo 32-byte bodies for `seconds`.
pub async fn run(peer: Peer, clients: usize, seconds: u64) -> Result<Echo, String> {
    let server = peer.start(Mode::Echo, &[])?;
    let body = "x".repeat(32);
    let frame = peer.echo_frame(&body);
    let count = Arc::new(AtomicU64::new(0));
    let mut sockets = Vec::new();
    for _ in 0..clients {
        sockets.push(peer.subscriber(server.addr, "echo").await);
    }
    let cpu_before = server.cpu();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for mut socket in sockets {
        let (frame, body, count) = (frame.clone(), body.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                if socket.send(Message::text(frame.clone())).await.is_err() {
                    return;
                }
                loop {
                    match socket.next().await {
                        Some(Ok(Message::Text(text))) if text.contains(&body) => break,
                        Some(Ok(Message::Text(text))) => peer.keepalive(&mut socket, &text).await,
                        Some(Ok(_)) => {}
                        _ => return,
                    }
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed();
    let cpu = server.cpu().saturating_sub(cpu_before);
    let trips = count.load(Ordering::Relaxed).max(1);
    Ok(Echo {
        round_trips_per_sec: trips as f64 / elapsed.as_secs_f64(),
        cpu_per_round_trip: cpu / trips as u32,
    })
}
