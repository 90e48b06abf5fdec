//! The servers under test: release `tether-server` processes that can be SIGKILLed,
//! stopped and started again on the same port and store, alone or as a cluster on a
//! real `redis-server`, and read from outside (`/metrics`, the server API, `/proc`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tether_e2e::{FaultProxy, Redis};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The server API's key on every node started here.
pub const API_KEY: &str = "chaos-api-key";

/// One server process, restartable on its address and store.
pub struct Node {
    child: Option<Child>,
    /// Where it listens, the same across restarts.
    pub addr: SocketAddr,
    args: Vec<String>,
}

/// The release server binary; `cargo xtask chaos` builds it.
fn binary() -> PathBuf {
    let path = tether_e2e::root().join("target/release/tether-server");
    assert!(path.exists(), "{} is missing: run `cargo xtask chaos` (it builds it)", path.display());
    path
}

impl Node {
    /// Starts a node with `args` (besides its address and the settings every node here
    /// shares) and waits until it listens.
    pub fn start(args: Vec<String>) -> Node {
        let mut node = Node { child: None, addr: tether_e2e::free_addr(), args };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        // The harness publishes and connects far more from one address than a person;
        // a node's own `args` may set any of these otherwise.
        let generous = [
            ("--publish-rate", "1000"),
            ("--publish-burst", "2000"),
            ("--max-connections-per-ip", "100000"),
            ("--room-creations", "100000"),
            ("--max-rooms", "64"),
        ];
        let defaults = generous.iter().filter(|(flag, _)| !self.args.iter().any(|arg| arg == flag));
        let mut child = Command::new(binary())
            .args(["--listen", &self.addr.to_string(), "--log-level", "error", "--api-key", API_KEY])
            .args(defaults.flat_map(|(flag, value)| [*flag, *value]))
            .args(&self.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tether-server");
        let mut lines = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        lines.read_line(&mut line).expect("the start-up line");
        assert!(line.starts_with("Tether is running at"), "unexpected start-up line {line:?}");
        std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
        self.child = Some(child);
    }

    /// Whether the process is up.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL: no goodbye, no flush. What was acked must survive it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, as a deployment stops a server: sockets are told 1001 and it exits.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let told = Command::new("kill").args(["-s", "TERM", &pid]).status().is_ok_and(|s| s.success());
            if !told {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }

    /// Starts it again (if it is down) on the same address and store.
    pub fn revive(&mut self) {
        if self.child.is_none() {
            self.spawn();
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory in bytes (0 while down).
    pub fn rss(&self) -> u64 {
        self.pid().map_or(0, rss_of)
    }

    /// Open file descriptors (0 while down).
    pub fn fds(&self) -> usize {
        let Some(pid) = self.pid() else { return 0 };
        std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
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

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Resident memory of process `pid` in bytes (0 once it is gone).
pub fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
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
