//! `cargo xtask cluster [N]`: a local Redis and N nodes serving the app, for trying
//! cluster mode by hand (two browsers on two nodes share one chat).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::setup::REDIS_SERVER;
use crate::sh::{Server, fail, step};

/// Nodes started when no count is given.
const DEFAULT_NODES: usize = 3;
/// The first node's port; the others follow.
const FIRST_PORT: u16 = 8080;

/// A child process stopped (SIGTERM, then waited for) when dropped.
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-s", "TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

/// Starts Redis (AOF on, fsync on every write) on a free port with its data in
/// `target/cluster/redis`, then `nodes` servers on consecutive ports from 8080, and
/// waits until one of them exits (Ctrl-C stops them all).
pub fn run(root: &Path, args: &[String]) -> Result<(), String> {
    let nodes = match args.first() {
        Some(count) => count.parse::<usize>().map_err(|_| format!("`{count}` is not a number of nodes"))?,
        None => DEFAULT_NODES,
    };
    if nodes == 0 {
        return fail("a cluster needs at least one node");
    }
    let binary = root.join("target/release/tether-demo-server");
    let data = root.join("target/cluster/redis");
    std::fs::create_dir_all(&data).map_err(|e| format!("creating {}: {e}", data.display()))?;
    let port =
        TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();

    step(&format!("starting Redis on 127.0.0.1:{port} (append-only file in {})", data.display()));
    let mut redis = Command::new(REDIS_SERVER)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--loglevel", "notice"])
        .arg("--dir")
        .arg(&data)
        .args(["--save", "", "--appendonly", "yes", "--appendfsync", "always"])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start {REDIS_SERVER}: {e}"))?;
    let log = redis.stdout.take().expect("piped");
    let redis = Stopped(redis);
    wait_for_line(log, "Ready to accept connections")?;
    let url = format!("redis://127.0.0.1:{port}");

    step(&format!("starting {nodes} nodes (Ctrl-C stops them all)"));
    let dist = root.join("dist").display().to_string();
    let mut running = Vec::new();
    for index in 0..nodes {
        let listen = format!("127.0.0.1:{}", FIRST_PORT as usize + index);
        let node = Server::spawn(&binary, &["--listen", &listen, "--redis", &url, "--static-dir", &dist])?;
        println!("  node {}: http://{}/", index + 1, node.addr());
        running.push(node);
    }
    println!("  redis:  {url}");
    println!("Open two of the nodes in two browsers: one chat, whichever node serves it.");
    // Ctrl-C reaches every process of the terminal's group: the nodes close their
    // sockets and exit, then this returns and stops whatever is left.
    running[0].wait();
    drop(running);
    drop(redis);
    Ok(())
}

/// Reads `log` until a line contains `ready`, then keeps draining it in the background.
fn wait_for_line(log: impl std::io::Read + Send + 'static, ready: &str) -> Result<(), String> {
    let mut log = BufReader::new(log);
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if log.read_line(&mut line).unwrap_or(0) == 0 {
            return fail(format!("redis-server exited before it was ready:\n{seen}"));
        }
        seen.push_str(&line);
        if line.contains(ready) {
            std::thread::spawn(move || std::io::copy(&mut log, &mut std::io::sink()));
            return Ok(());
        }
    }
}
