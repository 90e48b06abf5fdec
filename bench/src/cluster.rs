//! Cluster mode: three nodes over one Redis beside one node on SQLite, in the same run.
//!
//! Every node and Redis run pinned to the server core, so the cluster's figures are
//! what the whole cluster does on one core, next to what one node does on it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tether_e2e::Redis;
use tokio_tungstenite::tungstenite::Message;

use crate::durable::{self, Durable};
use crate::latency;
use crate::peer::{Mode, Peer};
use crate::process::{Process, SERVER_CPU, rss_of, taskset_works};
use crate::storm::{self, Storm};

/// Nodes in the cluster under test.
pub const NODES: usize = 3;
/// Publishers and their in-flight window in the acked-throughput run.
const PUBLISHERS: usize = 20;
const WINDOW: usize = 32;
/// Messages per second in the delivery-latency run, and its subscribers per node.
const LATENCY_RATE: u64 = 500;
const SUBSCRIBERS_PER_NODE: usize = 10;

/// What the cluster workload measured, each beside one node's figure.
pub struct ClusterRun {
    /// Acked publishes per second and ack latency: one node on SQLite, then the cluster.
    pub acked: (Durable, Durable),
    /// Publish→deliver latency (p50, p99): on one node, then publisher on node 1 and
    /// subscribers on the others.
    pub deliver: ((Duration, Duration), (Duration, Duration)),
    /// One room filled by `storm_clients`: on one node, then spread over the nodes.
    pub storm: (Storm, Storm),
    /// Redis's RSS after the cluster's join storm.
    pub redis_rss: u64,
}

/// A fresh Redis (append-only, fsync always: acked means on disk, as SQLite's FULL) and
/// [`NODES`] nodes on it.
fn cluster() -> (Redis, Vec<Process>) {
    let redis = Redis::start();
    if taskset_works(SERVER_CPU) {
        let _ = std::process::Command::new("taskset")
            .args(["-cp", SERVER_CPU, &redis.pid().to_string()])
            .stdout(std::process::Stdio::null())
            .status();
    }
    let url = redis.url();
    let nodes = (0..NODES)
        .map(|_| {
            Peer::Tether.start(Mode::Broadcast, &["--redis", &url, "--send-queue", "100000"]).expect("a node")
        })
        .collect();
    (redis, nodes)
}

/// Runs the three comparisons.
pub async fn run(seconds: u64, storm_clients: usize) -> ClusterRun {
    let single = durable::run(PUBLISHERS, WINDOW, seconds).await;
    let (redis, nodes) = cluster();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|node| node.addr).collect();
    let clustered = durable::publish_load(&addrs, "load", PUBLISHERS, WINDOW, seconds).await;
    drop(nodes);
    drop(redis);

    let one = Peer::Tether.start(Mode::Broadcast, &["--store", "sqlite"]).expect("tether");
    let deliver_single = deliver_latency(one.addr, &[one.addr], seconds).await;
    drop(one);
    let (redis, nodes) = cluster();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|node| node.addr).collect();
    let deliver_cluster = deliver_latency(addrs[0], &addrs[1..], seconds).await;
    drop(nodes);
    drop(redis);

    let storm_single = storm::run(storm_clients).await;
    let (redis, nodes) = cluster();
    let storm_cluster = storm::fill(&nodes.iter().collect::<Vec<_>>(), storm_clients).await;
    let redis_rss = rss_of(redis.pid());
    drop(nodes);
    drop(redis);
    ClusterRun {
        acked: (single, clustered),
        deliver: (deliver_single, deliver_cluster),
        storm: (storm_single, storm_cluster),
        redis_rss,
    }
}

/// One publisher on `publisher` sends [`LATENCY_RATE`] messages a second stamped with
/// the time since the run began; subscribers on `subscribers` note how long each took.
async fn deliver_latency(
    publisher: SocketAddr,
    subscribers: &[SocketAddr],
    seconds: u64,
) -> (Duration, Duration) {
    let origin = Instant::now();
    let mut readers = Vec::new();
    for &addr in subscribers {
        for _ in 0..SUBSCRIBERS_PER_NODE {
            readers.push(Peer::Tether.subscriber(addr, "latency").await);
        }
    }
    let total = LATENCY_RATE * seconds;
    let mut tasks = Vec::new();
    for mut reader in readers {
        tasks.push(tokio::spawn(async move {
            let mut latencies = latency::histogram();
            let mut got = 0;
            while got < total {
                match tokio::time::timeout(Duration::from_secs(10), reader.next()).await {
                    Ok(Some(Ok(Message::Text(text)))) if text.starts_with(r#"{"type":"message""#) => {
                        let frame: serde_json::Value = serde_json::from_str(&text).expect("a message frame");
                        let sent = frame["body"]["t"].as_u64().expect("stamped");
                        let now = origin.elapsed().as_micros() as u64;
                        latencies.saturating_record(now.saturating_sub(sent));
                        got += 1;
                    }
                    Ok(Some(Ok(_))) => {}
                    _ => break,
                }
            }
            latencies
        }));
    }
    let mut writer = Peer::Tether.subscriber(publisher, "latency").await;
    latency::publish_stamped(&mut writer, "latency", LATENCY_RATE, total, origin).await;
    let mut all = latency::histogram();
    for task in tasks {
        all.add(task.await.expect("reader")).expect("same bounds");
    }
    (Duration::from_micros(all.value_at_quantile(0.5)), Duration::from_micros(all.value_at_quantile(0.99)))
}
