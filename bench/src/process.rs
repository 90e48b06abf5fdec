//! A server under test for the benchmarks: Tether or a peer, pinned to a core of its own
//! (the load generator takes the other), measured from /proc, with a scratch folder that
//! goes when it stops.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tether_e2e::process::{Launch, ServerProcess};
pub use tether_e2e::process::{rss_of, taskset_works};

/// The core the server under test runs on; the load generator takes the other one.
pub const SERVER_CPU: &str = "0";

/// A running server process; killed on drop.
pub struct Process {
    server: ServerProcess,
    /// Where it listens.
    pub addr: SocketAddr,
    scratch: Option<PathBuf>,
}

impl Process {
    /// Starts `program args…` pinned to [`SERVER_CPU`] (where pinning works) and waits
    /// for the line on stdout that names its address: `listening on ADDR` or Tether's
    /// `Tether is running at http://ADDR/`.
    pub fn start(
        program: &Path,
        args: &[String],
        env: &[(&str, String)],
        scratch: Option<PathBuf>,
    ) -> Process {
        let launch =
            env.iter().fold(Launch::new(program).args(args).pinned(SERVER_CPU), |launch, (key, value)| {
                launch.env(key, value.clone())
            });
        let server = launch.start();
        Process { addr: server.addr, server, scratch }
    }

    /// Resident set size in bytes.
    pub fn rss(&self) -> u64 {
        self.server.rss()
    }

    /// CPU time (user + system) the process has used so far.
    pub fn cpu(&self) -> Duration {
        self.server.cpu()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.server.kill();
        if let Some(dir) = &self.scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
