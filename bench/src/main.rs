//! `tether-bench`: starts the release server as a separate process and measures it from
//! outside with real WebSocket clients on loopback.
//!
//! - `idle [N]`: resident memory before and after N idle (welcomed, room-joined)
//!   connections; prints bytes per connection.
//! - `throughput [CLIENTS] [SECONDS]`: clients publish with a window of unacked
//!   messages into the durable (SQLite) store; prints acked messages per second.
//!
//! Run through `cargo xtask bench`, which builds the release binaries first.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tether_shared::{ClientFrame, ServerFrame};
use tokio_tungstenite::tungstenite::Message;

type Client = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The server under test; killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    data: PathBuf,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let binary = std::env::current_exe().unwrap().with_file_name("tether-server");
        let data = std::env::temp_dir().join(format!("tether-bench-{}", std::process::id()));
        let mut child = Command::new(&binary)
            .args(["--listen", "127.0.0.1:0", "--log-level", "error", "--data-dir"])
            .arg(&data)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting {}: {e} (build it with cargo build --release)", binary.display())
            });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .trim_start_matches("Tether is running at http://")
            .trim_end_matches('/')
            .parse()
            .unwrap();
        Server { child, addr, data }
    }

    /// Resident set size, from /proc.
    fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kb * 1024
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

async fn send(client: &mut Client, frame: &ClientFrame) {
    client.send(Message::text(frame.encode())).await.unwrap();
}

async fn next(client: &mut Client) -> ServerFrame {
    loop {
        match client.next().await.unwrap().unwrap() {
            Message::Text(text) => return ServerFrame::decode(&text).unwrap(),
            _ => continue,
        }
    }
}

/// Connects, says hello and joins `room`.
async fn member(addr: SocketAddr, room: &str) -> Client {
    let (mut client, _) =
        tokio_tungstenite::connect_async_with_config(format!("ws://{addr}/ws"), None, true).await.unwrap();
    send(
        &mut client,
        &ClientFrame::Hello { v: 1, token: None, name: Some("bench".into()), resume_token: None },
    )
    .await;
    assert!(matches!(next(&mut client).await, ServerFrame::Welcome { .. }));
    send(&mut client, &ClientFrame::Join { room: room.into(), since: None, history: None }).await;
    assert!(matches!(next(&mut client).await, ServerFrame::Joined { .. }));
    client
}

async fn idle(connections: usize) {
    let server =
        Server::start(&["--store", "memory", "--idle-timeout", "10m", "--max-connections-per-ip", "100000"]);
    // Let the process settle, then warm up allocator pools with a few connections.
    let mut warm = Vec::new();
    for i in 0..10 {
        warm.push(member(server.addr, &format!("warm-{i}")).await);
    }
    let before = server.rss_bytes();
    let mut clients = Vec::with_capacity(connections);
    for i in 0..connections {
        clients.push(member(server.addr, &format!("room-{}", i % 100)).await);
    }
    // Everyone has been welcomed and joined; give the server a beat to finish bookkeeping.
    let mut probe = member(server.addr, "probe").await;
    send(&mut probe, &ClientFrame::Ping { nonce: 1 }).await;
    assert!(matches!(next(&mut probe).await, ServerFrame::Pong { .. }));
    let after = server.rss_bytes();
    let per = (after.saturating_sub(before)) as f64 / connections as f64;
    println!("idle: {connections} connections (welcomed, each in one of 100 rooms)");
    println!("idle: server RSS {} KiB before, {} KiB after", before / 1024, after / 1024);
    println!("idle: {per:.0} bytes per idle connection");
}

async fn throughput(clients: usize, seconds: u64) {
    let server = Server::start(&[
        "--store",
        "sqlite",
        "--publish-rate",
        "1000000",
        "--publish-burst",
        "1000000",
        "--send-queue",
        "100000",
    ]);
    const WINDOW: usize = 32;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            // Each client in its own room: the measure is the store and sequencer, not fan-out.
            let room = format!("load-{c}");
            let mut client = member(addr, &room).await;
            let (mut sent, mut acked, mut in_flight) = (0u64, 0u64, 0usize);
            let body = serde_json::json!({"text": "a typical chat message of modest length"});
            while Instant::now() < deadline {
                while in_flight < WINDOW {
                    let frame = ClientFrame::Publish {
                        id: format!("{c}-{sent}"),
                        room: room.clone(),
                        body: body.clone(),
                        priority: 0,
                    };
                    client.feed(Message::text(frame.encode())).await.unwrap();
                    sent += 1;
                    in_flight += 1;
                }
                client.flush().await.unwrap();
                match next(&mut client).await {
                    ServerFrame::Ack { .. } => {
                        acked += 1;
                        in_flight -= 1;
                    }
                    ServerFrame::Reject { code, .. } => panic!("rejected: {code:?}"),
                    _ => {}
                }
            }
            acked
        }));
    }
    let started = Instant::now();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "throughput: {clients} clients, window {WINDOW}, SQLite store (synchronous=FULL, WAL), {elapsed:.1} s"
    );
    println!("throughput: {total} messages acked, {:.0} acked messages per second", total as f64 / elapsed);
}

#[tokio::main]
async fn main() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    match args.first().map(String::as_str) {
        Some("idle") => idle(number(1, 1000) as usize).await,
        Some("throughput") => throughput(number(1, 20) as usize, number(2, 10)).await,
        _ => {
            idle(number(1, 1000) as usize).await;
            throughput(20, 10).await;
        }
    }
}
