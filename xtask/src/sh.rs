//! Running commands the way a person would read them: each is echoed before it runs,
//! and a failure says which command failed.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Every step begun in this run, with when it began, for [`timings`].
static STEPS: Mutex<Vec<(String, Instant)>> = Mutex::new(Vec::new());

/// Prints a step heading and notes when it began.
pub fn step(what: &str) {
    println!("\n==> {what}");
    STEPS.lock().unwrap_or_else(|e| e.into_inner()).push((what.to_owned(), Instant::now()));
}

/// How long each step took (until the next began, the last until now), longest first,
/// so that a slow CI run says where its time went.
pub fn timings() {
    let steps = STEPS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(first) = steps.first() else { return };
    let ends = steps.iter().skip(1).map(|(_, began)| *began).chain([Instant::now()]);
    let mut took: Vec<(Duration, &str)> =
        steps.iter().zip(ends).map(|((what, began), end)| (end - *began, what.as_str())).collect();
    took.sort_by_key(|(duration, _)| std::cmp::Reverse(*duration));
    println!("\ntime per step ({} s in all):", first.1.elapsed().as_secs());
    for (duration, what) in took {
        println!("  {:>6.1} s  {what}", duration.as_secs_f64());
    }
}

/// An `Err` with a message, for `?` chains.
pub fn fail<T>(message: impl Into<String>) -> Result<T, String> {
    Err(message.into())
}

/// A command to run in the foreground.
pub struct Cmd {
    command: Command,
    shown: String,
    /// How long it may take before it and everything it started are stopped.
    limit: Option<Duration>,
}

impl Cmd {
    /// A new command for `program`.
    pub fn new(program: impl AsRef<std::ffi::OsStr>) -> Self {
        let shown =
            Path::new(program.as_ref()).file_name().unwrap_or_default().to_string_lossy().into_owned();
        Cmd { command: Command::new(program), shown, limit: None }
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        for arg in args {
            self.shown.push(' ');
            self.shown.push_str(&arg.as_ref().to_string_lossy());
            self.command.arg(arg);
        }
        self
    }

    /// Sets the working directory.
    pub fn dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.command.current_dir(dir);
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    /// Gives it at most `limit`: past that, it and every process it started (cargo, the
    /// test binaries, their browsers and servers) are stopped and the run fails, so that
    /// a suite that hangs fails instead of eating CI's time. They stay in the terminal's
    /// process group, so Ctrl-C still reaches them all.
    pub fn limit(mut self, limit: Duration) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Runs with inherited output; an unsuccessful exit is an error.
    pub fn run(mut self) -> Result<(), String> {
        println!("$ {}", self.shown);
        let mut child = self.command.spawn().map_err(|e| format!("could not start `{}`: {e}", self.shown))?;
        let watchdog = self.limit.map(|limit| Watchdog::start(child.id(), limit));
        let status = child.wait().map_err(|e| e.to_string())?;
        self.judge(status, watchdog)
    }

    /// Success, a failure with its status, or the limit's verdict.
    fn judge(&self, status: ExitStatus, watchdog: Option<Watchdog>) -> Result<(), String> {
        if let Some(limit) = watchdog.and_then(Watchdog::fired) {
            return fail(format!(
                "`{}` took longer than its limit of {} s and was stopped",
                self.shown,
                limit.as_secs()
            ));
        }
        if status.success() { Ok(()) } else { fail(format!("`{}` failed ({status})", self.shown)) }
    }

    /// Runs with output shown live and also returned (stdout and stderr interleaved by line).
    pub fn run_tee(mut self) -> Result<String, String> {
        println!("$ {}", self.shown);
        let mut child = self
            .command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("could not start `{}`: {e}", self.shown))?;
        let watchdog = self.limit.map(|limit| Watchdog::start(child.id(), limit));
        let stderr = child.stderr.take().expect("piped");
        let errors = std::thread::spawn(move || tee(stderr, true));
        let mut text = tee(child.stdout.take().expect("piped"), false);
        text.push_str(&errors.join().unwrap_or_default());
        let status = child.wait().map_err(|e| e.to_string())?;
        self.judge(status, watchdog).map(|()| text)
    }

    /// Runs quietly and returns stdout, or `None` if it could not run or failed.
    pub fn output(mut self) -> Option<String> {
        let output = self.command.stderr(Stdio::null()).output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// Stops a process and everything it started when its time is up, unless ended first.
struct Watchdog {
    cancel: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<Option<Duration>>,
}

impl Watchdog {
    /// Watches the process `pid` and its descendants.
    fn start(pid: u32, limit: Duration) -> Watchdog {
        let (cancel, cancelled) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            if cancelled.recv_timeout(limit) != Err(RecvTimeoutError::Timeout) {
                return None;
            }
            eprintln!("xtask: time is up ({} s): stopping process {pid} and all it started", limit.as_secs());
            signal_tree(pid, "TERM");
            if cancelled.recv_timeout(Duration::from_secs(10)) == Err(RecvTimeoutError::Timeout) {
                signal_tree(pid, "KILL");
            }
            Some(limit)
        });
        Watchdog { cancel, thread }
    }

    /// Ends the watch (the command ended) and says whether the limit had been reached.
    fn fired(self) -> Option<Duration> {
        let _ = self.cancel.send(());
        self.thread.join().ok().flatten()
    }
}

/// Sends `signal` to `pid` and every process below it (children first, read from
/// `/proc`), so a test binary's browsers and servers go with it.
fn signal_tree(pid: u32, signal: &str) {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // After the parenthesised command name: the state, then the parent's pid.
        let parent =
            stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if let Some(parent) = parent {
            parents.push((child, parent));
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let below = tree[i];
        tree.extend(parents.iter().filter(|(_, parent)| *parent == below).map(|(child, _)| *child));
        i += 1;
    }
    let pids: Vec<String> = tree.iter().rev().map(u32::to_string).collect();
    let _ = Command::new("kill").args(["-s", signal, "--"]).args(&pids).status();
}

fn tee(stream: impl Read, to_stderr: bool) -> String {
    let mut text = String::new();
    for line in BufReader::new(stream).lines().map_while(Result::ok) {
        if to_stderr {
            eprintln!("{line}")
        } else {
            println!("{line}")
        }
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// Size of `path` after `gzip -9`.
pub fn gzip_size(path: &Path) -> Result<usize, String> {
    let output = Command::new("gzip").arg("-9c").arg(path).output().map_err(|e| format!("gzip: {e}"))?;
    if output.status.success() { Ok(output.stdout.len()) } else { fail("gzip failed") }
}

/// A `tether-server` started for a test run; stopped (SIGTERM, then waited) on drop.
pub struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts `binary` on a free loopback port and waits for its start-up line.
    pub fn start(binary: &Path, extra: &[&str]) -> Result<Self, String> {
        let mut args = vec!["--listen", "127.0.0.1:0", "--log-level", "warn"];
        args.extend_from_slice(extra);
        let server = Server::spawn(binary, &args)?;
        println!("test server listening on {}", server.addr);
        Ok(server)
    }

    /// Starts `binary` with exactly `args` and waits for its start-up line.
    pub fn spawn(binary: &Path, args: &[&str]) -> Result<Self, String> {
        let mut child = Command::new(binary)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("could not start {}: {e}", binary.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let addr = line
            .trim()
            .strip_prefix("Tether is running at http://")
            .and_then(|rest| rest.trim_end_matches('/').parse().ok());
        match addr {
            Some(addr) => Ok(Server { child, addr }),
            None => {
                let _ = child.kill();
                fail(format!("the server did not report its address (said: {line:?})"))
            }
        }
    }

    /// Waits until the process exits by itself.
    pub fn wait(&mut self) {
        let _ = self.child.wait();
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-s", "TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

impl Cmd {
    /// Adds `--version`.
    pub fn arg_version(self) -> Self {
        self.args(["--version"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_past_its_limit_is_stopped_with_all_it_started() {
        let marker = format!("tether-xtask-limit-{}", std::process::id());
        let started = Instant::now();
        // A shell that starts a grandchild and waits on it: both must go.
        let script = format!("sleep 60 & echo $! > /tmp/{marker}; wait");
        let result = Cmd::new("sh").args(["-c", &script]).limit(Duration::from_secs(1)).run();
        let error = result.expect_err("the limit stops it");
        assert!(error.contains("longer than its limit"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(20), "stopped at once, not after the sleep");
        let grandchild = std::fs::read_to_string(format!("/tmp/{marker}")).unwrap();
        let _ = std::fs::remove_file(format!("/tmp/{marker}"));
        // The signal is on its way when the shell's exit is seen; the grandchild is not a
        // child of this process, so its end can only be watched for in /proc.
        let gone = || {
            std::fs::read_to_string(format!("/proc/{}/stat", grandchild.trim())).map_or(true, |stat| {
                stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !gone() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(gone(), "the grandchild {} was left running", grandchild.trim());
    }

    #[test]
    fn a_command_within_its_limit_runs_as_usual() {
        assert!(Cmd::new("true").limit(Duration::from_secs(30)).run().is_ok());
        assert!(Cmd::new("false").limit(Duration::from_secs(30)).run().unwrap_err().contains("failed"));
    }
}
