//! The servers under test: release `tether-server` processes that can be SIGKILLed,
//! stopped and started again on the same port and store, alone or as a cluster on a
//! real `redis-server`, and read from outside (`/metrics`, the server API, `/proc`).

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
pub use tether_e2e::process::rss_of;
use tether_e2e::process::{Launch, ServerProcess, release_server};
use tether_e2e::{FaultProxy, Redis};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The server API's key on every node started here.
pub const API_KEY: &str = "chaos-api-key";

/// One server process, restartable on its address and store (`kill`, `terminate`,
/// `revive`, `rss` and the rest come from [`ServerProcess`]), read through its API.
pub struct Node {
    process: ServerProcess,
}

impl Deref for Node {
    type Target = ServerProcess;
    fn deref(&self) -> &ServerProcess {
        &self.process
    }
}

impl DerefMut for Node {
    fn deref_mut(&mut self) -> &mut ServerProcess {
        &mut self.process
    }
}

impl Node {
    /// Starts a node with `args` (besides its address and the settings every node here
    /// shares) and waits until it listens.
    pub fn start(args: Vec<String>) -> Node {
        // The harness publishes and connects far more from one address than a person;
        // a node's own `args` may set any of these otherwise.
        let generous = [
            ("--publish-rate", "1000"),
            ("--publish-burst", "2000"),
            ("--max-connections-per-ip", "100000"),
            ("--room-creations", "100000"),
            ("--max-rooms", "64"),
        ];
        let defaults = generous.iter().filter(|(flag, _)| !args.iter().any(|arg| arg == flag));
        let addr = tether_e2e::free_addr().to_string();
        let launch = Launch::new(release_server())
            .args(["--listen", &addr, "--log-level", "error", "--api-key", API_KEY])
            .args(defaults.flat_map(|(flag, value)| [*flag, *value]))
            .args(args);
        Node { process: launch.start() }
    }

    /// Every metric line of `/metrics` as (name, value); empty when it does not answer.
    pub async fn metrics(&self) -> Vec<(String, f64)> {
        let Some(body) = get(self.addr, "/metrics", None).await else { return Vec::new() };
        body.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect()
    }

    /// One metric's value; 0 when absent or the node is down.
    pub async fn metric(&self, name: &str) -> f64 {
        self.metrics().await.into_iter().find(|(n, _)| n == name).map_or(0.0, |(_, v)| v)
    }

    /// A server API call (`GET /api/v1/…`), its JSON answer.
    pub async fn api(&self, path_and_query: &str) -> Option<Value> {
        let body = get(self.addr, &format!("/api/v1/{path_and_query}"), Some(API_KEY)).await?;
        serde_json::from_str(&body).ok()
    }

    /// A server API publish (`POST /api/v1/publish`); whether it was stored.
    pub async fn api_publish(&self, room: &str, body: Value) -> bool {
        let payload = serde_json::json!({ "room": room, "body": body }).to_string();
        let request = format!(
            "POST /api/v1/publish HTTP/1.0\r\nHost: {}\r\nAuthorization: Bearer {API_KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
            self.addr,
            payload.len()
        );
        exchange(self.addr, &request).await.is_some_and(|response| response.starts_with("HTTP/1.0 200"))
    }
}

/// A GET over HTTP/1.0 (so the body is never chunked): the body of a 200, else `None`.
async fn get(addr: SocketAddr, path: &str, key: Option<&str>) -> Option<String> {
    let auth = key.map(|key| format!("Authorization: Bearer {key}\r\n")).unwrap_or_default();
    let response = exchange(addr, &format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n")).await?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200").then(|| body.to_owned())
}

async fn exchange(addr: SocketAddr, request: &str) -> Option<String> {
    let talk = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        Some(response)
    };
    tokio::time::timeout(Duration::from_secs(10), talk).await.ok().flatten()
}

/// What the clients talk to: one node or several on one Redis, each behind its own
/// fault proxy, and a folder for their stores.
pub struct Deployment {
    /// The servers.
    pub nodes: Vec<Node>,
    /// A proxy in front of each node, in the same order.
    pub proxies: Vec<FaultProxy>,
    /// The cluster's Redis (cluster mode only).
    pub redis: Option<Redis>,
    data: PathBuf,
}

impl Deployment {
    /// One node on a durable SQLite store, or `cluster` nodes on a fresh Redis; `extra`
    /// flags go to every node.
    pub async fn start(cluster: Option<usize>, extra: &[&str]) -> Deployment {
        let data =
            std::env::temp_dir().join(format!("tether-chaos-{}-{}", std::process::id(), fastrand::u32(..)));
        std::fs::create_dir_all(&data).expect("a scratch folder");
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (nodes, redis) = match cluster {
            None => {
                let mut args = vec!["--store".into(), "sqlite".into(), "--data-dir".into()];
                args.push(data.display().to_string());
                args.extend(extra);
                (vec![Node::start(args)], None)
            }
            Some(count) => {
                let redis = Redis::start();
                let nodes = (0..count)
                    .map(|_| {
                        let mut args = vec!["--redis".to_owned(), redis.url()];
                        args.extend(extra.iter().cloned());
                        Node::start(args)
                    })
                    .collect();
                (nodes, Some(redis))
            }
        };
        let mut proxies = Vec::new();
        for node in &nodes {
            proxies.push(FaultProxy::start(node.addr).await);
        }
        Deployment { nodes, proxies, redis, data }
    }

    /// The WebSocket URL of every node, through its proxy.
    pub fn endpoints(&self) -> Vec<String> {
        self.proxies.iter().map(|proxy| format!("ws://{}/ws", proxy.addr)).collect()
    }

    /// A node that is up, for reading history and metrics.
    pub fn live_node(&self) -> &Node {
        self.nodes.iter().find(|node| node.running()).expect("a node is up")
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.data);
    }
}
