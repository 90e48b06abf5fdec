//! The demo's release server, started like a deployment: bundle plus binary, durable
//! store. It is `tether-server` with the demo chat's channel registered.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::process::{Launch, ServerProcess, release_demo_server};
use crate::root;

/// A running `tether-demo-server` serving `dist/` from a fresh SQLite store; killed and its
/// store removed when dropped.
pub struct Server {
    process: ServerProcess,
    /// Where it listens (kept across restarts).
    pub addr: SocketAddr,
    data: PathBuf,
}

impl Server {
    /// Starts the server on a free port with a fresh SQLite store, serving `dist/`.
    pub fn start(extra: &[&str]) -> Server {
        let dist = root().join("dist");
        assert!(
            dist.join("index.html").exists(),
            "dist/ is missing: run the e2e suite through `cargo xtask test`"
        );
        let addr = crate::free_addr();
        let data = std::env::temp_dir().join(format!("tether-e2e-{}-{}", std::process::id(), addr.port()));
        let launch = Launch::new(release_demo_server())
            .args(["--listen", &addr.to_string(), "--static-dir", &dist.display().to_string()])
            .args(["--store", "sqlite", "--data-dir", &data.display().to_string(), "--log-level", "warn"])
            .args(extra);
        Server { process: launch.start(), addr, data }
    }

    /// Kills the process with SIGKILL: no goodbye, no flush.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Stops it as a deployment does (SIGTERM): sockets are told goodbye with 1001.
    pub fn stop(&mut self) {
        self.process.terminate();
    }

    /// The value of one metric (a counter's or gauge's line in `/metrics`), 0 if absent.
    pub async fn metric(&self, name: &str) -> f64 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let response = crate::deadline::within("the server's /metrics", async {
            let mut stream = tokio::net::TcpStream::connect(self.addr).await.expect("the server answers");
            let request = format!("GET /metrics HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr);
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            response
        })
        .await;
        response
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Starts it again on the same port and store (after a SIGKILL if it still runs).
    pub fn restart(&mut self) {
        self.process.kill();
        self.process.revive();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.process.kill();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}
