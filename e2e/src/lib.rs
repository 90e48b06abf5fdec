//! The end-to-end harness: the release server as a real process (SIGKILL and restart
//! included), a fault-injecting TCP proxy in front of it, and headless Chromium
//! sessions driven over WebDriver.
//!
//! Each user gets their own proxy: a page is loaded through it, so its WebSocket (same
//! origin) goes through it too, and one user's network can fail while another's works.

pub mod browser;
/// Decoding chunked HTTP bodies, shared with the server's tests.
#[path = "../../server/tests/common/chunked.rs"]
pub mod chunked;
/// Deadlines for every await in a test, shared with the server's tests.
#[path = "../../server/tests/common/deadline.rs"]
pub mod deadline;
pub mod process;
pub mod proxy;
/// A real `redis-server` on a free port, shared with the server's cluster tests.
#[path = "../../server/tests/common/redis.rs"]
pub mod redis;
pub mod server;

pub use browser::{Browser, Page};
pub use process::{Launch, ServerProcess};
pub use proxy::{Fault, FaultProxy};
pub use redis::Redis;
pub use server::Server;

use std::net::SocketAddr;
use std::path::PathBuf;

/// A free loopback port (bound, then released for the caller to bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A loopback address on a free port.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Where screenshots of each state are saved (`target/e2e-artifacts`).
pub fn artifacts() -> PathBuf {
    let dir = root().join("target/e2e-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
