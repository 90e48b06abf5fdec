//! Running commands the way a person would read them: each is echoed before it runs,
//! and a failure says which command failed.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Prints a step heading.
pub fn step(what: &str) {
    println!("\n==> {what}");
}

/// An `Err` with a message, for `?` chains.
pub fn fail<T>(message: impl Into<String>) -> Result<T, String> {
    Err(message.into())
}

/// A command to run in the foreground.
pub struct Cmd {
    command: Command,
    shown: String,
}

impl Cmd {
    /// A new command for `program`.
    pub fn new(program: impl AsRef<std::ffi::OsStr>) -> Self {
        let shown =
            Path::new(program.as_ref()).file_name().unwrap_or_default().to_string_lossy().into_owned();
        Cmd { command: Command::new(program), shown }
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

    /// Puts `dir` first on `PATH`.
    pub fn path_prepend(mut self, dir: PathBuf) -> Self {
        let mut paths = vec![dir];
        if let Some(current) = std::env::var_os("PATH") {
            paths.extend(std::env::split_paths(&current));
        }
        let joined: OsString = std::env::join_paths(paths).expect("PATH entries are joinable");
        self.command.env("PATH", joined);
        self
    }

    /// Runs with inherited output; an unsuccessful exit is an error.
    pub fn run(mut self) -> Result<(), String> {
        println!("$ {}", self.shown);
        let status = self.command.status().map_err(|e| format!("could not start `{}`: {e}", self.shown))?;
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
        let stderr = child.stderr.take().expect("piped");
        let errors = std::thread::spawn(move || tee(stderr, true));
        let mut text = tee(child.stdout.take().expect("piped"), false);
        text.push_str(&errors.join().unwrap_or_default());
        let status = child.wait().map_err(|e| e.to_string())?;
        if status.success() { Ok(text) } else { fail(format!("`{}` failed ({status})", self.shown)) }
    }

    /// Runs quietly and returns stdout, or `None` if it could not run or failed.
    pub fn output(mut self) -> Option<String> {
        let output = self.command.stderr(Stdio::null()).output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }
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
