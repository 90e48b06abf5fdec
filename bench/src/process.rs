//! A server under test: a child process pinned to its own core, measured from /proc.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The core the server under test runs on; the load generator takes the other one.
pub const SERVER_CPU: &str = "0";

/// A running server process; killed on drop.
pub struct Process {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    scratch: Option<PathBuf>,
}

impl Process {
    /// Starts `program args…` pinned to [`SERVER_CPU`] (when `taskset` exists) and waits
    /// for the line on stdout that names its address: `listening on ADDR` or Tether's
    /// `Tether is running at http://ADDR/`.
    pub fn start(
        program: &Path,
        args: &[String],
        env: &[(&str, String)],
        scratch: Option<PathBuf>,
    ) -> Process {
        let mut command = if taskset_works() {
            let mut command = Command::new("taskset");
            command.args(["-c", SERVER_CPU]).arg(program);
            command
        } else {
            Command::new(program)
        };
        command.args(args).stdout(Stdio::piped()).stderr(Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let addr = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("{} exited before naming its address", program.display()))
                .expect("stdout is text");
            let found = line.strip_prefix("listening on ").or_else(|| {
                line.strip_prefix("Tether is running at http://").map(|a| a.trim_end_matches('/'))
            });
            if let Some(addr) = found.and_then(|a| a.trim().parse().ok()) {
                break addr;
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Process { child, addr, scratch }
    }

    /// Resident set size in bytes.
    pub fn rss(&self) -> u64 {
        rss_of(self.pid())
    }

    /// CPU time (user + system) the process has used so far.
    pub fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are 14th and 15th.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        let total = ticks(11) + ticks(12);
        Duration::from_millis(total * 1000 / clock_ticks())
    }

    fn pid(&self) -> u32 {
        // Under taskset the child execs the program, so the pid is the server's own.
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Resident set size of process `pid`, in bytes (0 once it is gone).
pub fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn clock_ticks() -> u64 {
    let output = Command::new("getconf").arg("CLK_TCK").output().ok();
    output.and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(100)
}

/// Whether processes can be pinned here (`taskset` present and the core exists).
pub fn taskset_works() -> bool {
    Command::new("taskset")
        .args(["-c", SERVER_CPU, "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
