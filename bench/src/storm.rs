//! Join storm: many clients join one room at once. Before presence was coalesced, this
//! cost N²/2 frames; now it is bounded by the presence tick.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::peer::{Mode, Peer};
use crate::process::Process;

/// Handshakes in flight at once, so the listen backlog never overflows.
const CONCURRENT_CONNECTS: usize = 200;

/// What a join storm measured.
pub struct Storm {
    /// Clients that joined.
    pub clients: usize,
    /// From the first connect to the last `joined`.
    pub elapsed: Duration,
    /// Server RSS once everyone is in.
    pub rss: u64,
    /// Server CPU time spent while they joined.
    pub server_cpu: Duration,
    /// Presence frames (diffs or counts) one member received on average.
    pub presence_frames_per_member: f64,
}

/// `clients` connect, say hello and join one room; reports when the last one is in.
pub async fn run(clients: usize) -> Storm {
    let server = Peer::Tether.start(Mode::Broadcast, &[]).expect("tether starts");
    fill(&[&server], clients).await
}

/// `clients` join one room spread over `servers` (round robin); CPU and RSS are the
/// servers' together.
pub async fn fill(servers: &[&Process], clients: usize) -> Storm {
    let addrs: Vec<SocketAddr> = servers.iter().map(|server| server.addr).collect();
    let joined = Arc::new(AtomicUsize::new(0));
    let presence = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(CONCURRENT_CONNECTS));
    let (stop, _) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for index in 0..clients {
        let addr = addrs[index % addrs.len()];
        let (joined, presence, gate) = (joined.clone(), presence.clone(), gate.clone());
        let mut stop = stop.subscribe();
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.expect("open");
            let mut client = Peer::Tether.subscriber(addr, "storm").await;
            drop(permit);
            joined.fetch_add(1, Ordering::Relaxed);
            // Members keep reading, as a browser tab would.
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    next = client.next() => match next {
                        Some(Ok(Message::Text(text))) if text.contains(r#""type":"presence"#) => {
                            presence.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(Ok(_)) => {}
                        _ => return,
                    }
                }
            }
        }));
    }
    while joined.load(Ordering::Relaxed) < clients {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let server_cpu = servers.iter().map(|server| server.cpu()).sum();
    // Let the last presence tick reach everyone, then weigh the servers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = servers.iter().map(|server| server.rss()).sum();
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    Storm {
        clients,
        elapsed,
        rss,
        server_cpu,
        presence_frames_per_member: presence.load(Ordering::Relaxed) as f64 / clients as f64,
    }
}
