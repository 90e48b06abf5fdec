//! A server under test as a child process: started, waited for until it names its
//! address, stopped with SIGKILL (no goodbye) or SIGTERM (as a deployment stops it),
//! started again with the same arguments, and measured from `/proc`.
//!
//! The e2e scenarios, the chaos harness and the benchmarks all run their servers
//! (Tether's and the benchmarks' peers) through this one type.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a server may take to name its address after it starts.
const STARTUP: Duration = Duration::from_secs(30);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOPPING: Duration = Duration::from_secs(30);

/// How to start a server: the program, its arguments and environment, and the core it
/// is pinned to, if any.
#[derive(Clone, Debug)]
pub struct Launch {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cpu: Option<String>,
}

impl Launch {
    /// `program` with no arguments yet.
    pub fn new(program: impl Into<PathBuf>) -> Launch {
        Launch { program: program.into(), args: Vec::new(), env: Vec::new(), cpu: None }
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, args: I) -> Launch {
        self.args.extend(args.into_iter().map(|arg| arg.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Launch {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    /// Pins it to `cpu` with `taskset`, where pinning works here (a benchmark's server
    /// and its load generator each get a core of their own).
    pub fn pinned(mut self, cpu: &str) -> Launch {
        if taskset_works(cpu) {
            self.cpu = Some(cpu.to_owned());
        }
        self
    }

    /// Starts it and waits for its start-up line.
    pub fn start(self) -> ServerProcess {
        let mut process =
            ServerProcess { launch: self, child: None, addr: SocketAddr::from(([0, 0, 0, 0], 0)) };
        process.spawn();
        process
    }
}

/// A running (or stopped, and startable again) server; killed when dropped.
pub struct ServerProcess {
    launch: Launch,
    child: Option<Child>,
    /// Where it listens, as its start-up line said (the same across restarts when its
    /// arguments name the address).
    pub addr: SocketAddr,
}

impl ServerProcess {
    fn spawn(&mut self) {
        let launch = &self.launch;
        let mut command = match &launch.cpu {
            Some(cpu) => {
                let mut command = Command::new("taskset");
                command.args(["-c", cpu]).arg(&launch.program);
                command
            }
            None => Command::new(&launch.program),
        };
        command.args(&launch.args).stdout(Stdio::piped()).stderr(Stdio::inherit());
        command.envs(launch.env.iter().map(|(k, v)| (k, v)));
        let program = launch.program.display().to_string();
        let mut child = command.spawn().unwrap_or_else(|e| panic!("starting {program}: {e}"));
        // Lines are read on a thread of their own, which keeps draining stdout after the
        // address (so the child never blocks on a full pipe), and the wait for the
        // address has a deadline.
        let stdout = child.stdout.take().expect("piped stdout");
        let (found, addresses) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = address_in(&line) {
                    let _ = found.send(addr);
                }
            }
        });
        match addresses.recv_timeout(STARTUP) {
            Ok(addr) => self.addr = addr,
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{program} did not name its address within {STARTUP:?} ({why:?}: it exited or hung)");
            }
        }
        self.child = Some(child);
    }

    /// Whether the process is up (it has not been stopped here).
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// The process id, while it runs. (Under `taskset` the child execs the program, so
    /// this is the server's own.)
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no goodbye, no flush. What was acknowledged must survive it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, as a deployment stops a server: its sockets are told goodbye (1001).
    /// One that has not exited after [`STOPPING`] is killed.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let told = Command::new("kill").args(["-s", "TERM", &pid]).status().is_ok_and(|s| s.success());
            let deadline = std::time::Instant::now() + STOPPING;
            // std has no wait with a timeout: ask every few milliseconds until it exits.
            while told && std::time::Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again with the same arguments, if it is down.
    pub fn revive(&mut self) {
        if self.child.is_none() {
            self.spawn();
        }
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

    /// CPU time (user and system) it has used so far.
    pub fn cpu(&self) -> Duration {
        let Some(pid) = self.pid() else { return Duration::ZERO };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The fields after the parenthesised command name; utime and stime are the 14th
        // and 15th of the whole line.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        Duration::from_millis((ticks(11) + ticks(12)) * 1000 / clock_ticks())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The address a start-up line names: Tether's `Tether is running at http://ADDR/`, or
/// a benchmark peer's `listening on ADDR`.
fn address_in(line: &str) -> Option<SocketAddr> {
    let found = line
        .strip_prefix("listening on ")
        .or_else(|| line.strip_prefix("Tether is running at http://").map(|a| a.trim_end_matches('/')))?;
    found.trim().parse().ok()
}

/// The release `tether-server`, which `cargo xtask test` (and `chaos`, `bench`) builds.
pub fn release_server() -> PathBuf {
    release_binary("tether-server")
}

/// The release `tether-demo-server`: the server with the demo chat's channel, which the
/// demo app's scenarios run against.
pub fn release_demo_server() -> PathBuf {
    release_binary("tether-demo-server")
}

fn release_binary(name: &str) -> PathBuf {
    let path = crate::root().join("target/release").join(name);
    assert!(path.exists(), "{} is missing: run this through `cargo xtask` (it builds it)", path.display());
    path
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

/// Whether processes can be pinned to `cpu` here (`taskset` present and the core exists).
pub fn taskset_works(cpu: &str) -> bool {
    Command::new("taskset")
        .args(["-c", cpu, "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn clock_ticks() -> u64 {
    let output = Command::new("getconf").arg("CLK_TCK").output().ok();
    output.and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(100)
}
