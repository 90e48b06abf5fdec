//! A real `redis-server` for the cluster tests: on a free loopback port, in its own
//! temporary folder, with the append-only file fsynced on every write so that a restart
//! gives back everything it acknowledged. Killed and removed when dropped.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A running (or stopped, between [`Redis::stop`] and [`Redis::start`]) Redis server.
pub struct Redis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    /// Starts a fresh server. Panics with the reason if `redis-server` is missing:
    /// `cargo xtask setup` installs it.
    pub fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("tether-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Redis { port, dir, child: None };
        redis.resume();
        redis
    }

    /// The server's process id (while it runs).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis-server is running").id()
    }

    /// `redis://127.0.0.1:<port>`, for `--redis`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL): what it acknowledged is in its append-only file.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and folder, and returns once its log
    /// says it is ready (after loading the append-only file).
    pub fn resume(&mut self) {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--loglevel", "notice"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--save", "", "--appendonly", "yes", "--appendfsync", "always"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("redis-server runs (install it with `cargo xtask setup`)");
        let mut log = BufReader::new(child.stdout.take().expect("piped"));
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            if log.read_line(&mut line).unwrap_or(0) == 0 {
                panic!("redis-server on port {} exited before it was ready:\n{seen}", self.port);
            }
            seen.push_str(&line);
            if line.contains("Ready to accept connections") {
                break;
            }
        }
        // Keep reading its log, so that a full pipe never stops it.
        std::thread::spawn(move || std::io::copy(&mut log, &mut std::io::sink()));
        self.child = Some(child);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
