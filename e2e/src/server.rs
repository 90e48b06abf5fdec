//! The release server binary, started like a deployment: bundle plus binary, durable store.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::root;

/// A running `tether-server`; killed when dropped.
pub struct Server {
    child: Option<Child>,
    /// Where it listens (kept across restarts).
    pub addr: SocketAddr,
    data: PathBuf,
    extra: Vec<String>,
}

fn binary() -> PathBuf {
    let path = root().join("target/release/tether-server");
    assert!(path.exists(), "{} is missing: run the e2e suite through `cargo xtask test`", path.display());
    path
}

impl Server {
    /// Starts the server on a free port with a fresh SQLite store, serving `dist/`.
    pub fn start(extra: &[&str]) -> Server {
        let dist = root().join("dist");
        assert!(
            dist.join("index.html").exists(),
            "dist/ is missing: run the e2e suite through `cargo xtask test`"
        );
        let data =
            std::env::temp_dir().join(format!("tether-e2e-{}-{}", std::process::id(), crate::free_port()));
        let mut server = Server {
            child: None,
            addr: crate::free_addr(),
            data,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut child = Command::new(binary())
            .args(["--listen", &self.addr.to_string(), "--static-dir"])
            .arg(root().join("dist"))
            .args(["--store", "sqlite", "--data-dir"])
            .arg(&self.data)
            .args(["--log-level", "warn"])
            .args(&self.extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start tether-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("Tether is running at"), "unexpected start-up line {line:?}");
        self.child = Some(child);
    }

    /// Kills the process with SIGKILL: no goodbye, no flush.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Stops it as a deployment does (SIGTERM): sockets are told goodbye with 1001.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let signalled =
                Command::new("kill").args(["-s", "TERM", &pid]).status().is_ok_and(|s| s.success());
            if !signalled {
                let _ = child.kill();
            }
            child.wait().unwrap();
        }
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

    /// Starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}
