//! Installing what the build and the tests need, only when it is missing.
//!
//! Versions are pinned where the toolchain facts demand it: a wasm-bindgen CLI equal to
//! the library in `Cargo.lock`, wasm-opt from binaryen 132 on npm (Debian's binaryen is
//! too old for today's rustc), and trunk 0.21 (0.22 needs a newer rustc), which only
//! `trunk serve` needs and only `setup --trunk` installs.

use std::path::PathBuf;

use crate::sh::{Cmd, fail, step};

const TRUNK: &str = "0.21.14";
const WASM_BINDGEN: &str = "0.2.130";
const BINARYEN: &str = "132";
/// The Node servers the benchmarks compare Tether with, at pinned versions.
const BENCH_PEERS: &[&str] = &["ws@8.18.3", "socket.io@4.8.1"];
/// Debian's ChromeDriver, matched to Debian's Chromium.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's Redis server (7.0 on bookworm).
pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// Everything the build needs, plus what the tests need (a browser, Redis) when
/// `for_tests` is set.
pub fn all(for_tests: bool) -> Result<(), String> {
    wasm_target()?;
    cargo_tool("wasm-bindgen", "wasm-bindgen-cli", WASM_BINDGEN, false)?;
    wasm_opt()?;
    if for_tests {
        chromium()?;
        redis_server()?;
    }
    Ok(())
}

/// trunk, for `trunk serve` while working on the UI. The bundle itself is built without
/// it (`bundle.rs`), so the README's two commands never wait for its ten-minute build.
pub fn trunk() -> Result<(), String> {
    cargo_tool("trunk", "trunk", TRUNK, true)
}

/// Debian's `redis-server`, which the cluster tests and `cargo xtask cluster` start on
/// free ports of their own (the package's own service is not used).
pub fn redis_server() -> Result<(), String> {
    if Cmd::new(REDIS_SERVER).arg_version().output().is_some() {
        return Ok(());
    }
    apt(&["redis-server"])?;
    match Cmd::new(REDIS_SERVER).arg_version().output() {
        Some(_) => Ok(()),
        None => fail(format!("{REDIS_SERVER} is still missing after installing it")),
    }
}

/// The wasm32 target for rustc.
pub fn wasm_target() -> Result<(), String> {
    let installed = Cmd::new("rustup").args(["target", "list", "--installed"]).output().unwrap_or_default();
    if installed.lines().any(|line| line.trim() == "wasm32-unknown-unknown") {
        return Ok(());
    }
    step("installing the wasm32-unknown-unknown target");
    Cmd::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]).run()
}

/// A cargo-installed binary at an exact version.
fn cargo_tool(binary: &str, krate: &str, version: &str, locked: bool) -> Result<(), String> {
    let found = Cmd::new(binary).arg_version().output().unwrap_or_default();
    if found.split_whitespace().any(|word| word.trim_start_matches('v') == version) {
        return Ok(());
    }
    step(&format!("installing {krate} {version} (a few minutes, once)"));
    let spec = format!("{krate}@{version}");
    let mut args = vec!["install", spec.as_str()];
    // wasm-bindgen-cli's lock file names a crate version the registry may not serve.
    if locked {
        args.push("--locked");
    }
    Cmd::new("cargo").args(args).run()
}

/// Where npm-installed tools live: outside the repository, so fresh clones reuse them.
pub fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TETHER_TOOLS_DIR") {
        return PathBuf::from(dir);
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    data.join("tether-tools")
}

/// Where wasm-opt is (and the folder to put first on `PATH` for `trunk serve --release`).
pub fn tools_bin() -> PathBuf {
    tools_dir().join("node_modules/.bin")
}

fn wasm_opt() -> Result<(), String> {
    let found = Cmd::new(tools_bin().join("wasm-opt")).arg_version().output().unwrap_or_default();
    if found.contains(&format!("version {BINARYEN}")) {
        return Ok(());
    }
    if Cmd::new("npm").arg_version().output().is_none() {
        apt(&["nodejs", "npm"])?;
    }
    step(&format!("installing wasm-opt (binaryen {BINARYEN} from npm)"));
    let dir = tools_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let spec = format!("binaryen@{BINARYEN}");
    Cmd::new("npm").args(["install", "--no-audit", "--no-fund", "--prefix"]).args([&dir]).args([spec]).run()
}

/// The Node packages of the benchmark peers, in `<tools>/bench/node_modules`.
pub fn bench_peers() -> Result<(), String> {
    let dir = tools_dir().join("bench");
    let installed = |spec: &str| {
        let (name, version) = spec.rsplit_once('@').expect("name@version");
        let manifest = dir.join("node_modules").join(name).join("package.json");
        std::fs::read_to_string(manifest).is_ok_and(|m| m.contains(&format!("\"version\": \"{version}\"")))
    };
    if BENCH_PEERS.iter().all(|spec| installed(spec)) {
        return Ok(());
    }
    if Cmd::new("npm").arg_version().output().is_none() {
        apt(&["nodejs", "npm"])?;
    }
    step(&format!("installing the benchmark peers ({}) from npm", BENCH_PEERS.join(", ")));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Cmd::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .args([&dir])
        .args(BENCH_PEERS)
        .run()
}

fn chromium() -> Result<(), String> {
    let present = |path: &str| std::path::Path::new(path).exists();
    if present(CHROMIUM) && present(CHROMEDRIVER) {
        return Ok(());
    }
    apt(&["chromium", "chromium-driver"])?;
    if present(CHROMIUM) && present(CHROMEDRIVER) {
        Ok(())
    } else {
        fail(format!("{CHROMIUM} and {CHROMEDRIVER} are still missing after installing them"))
    }
}

/// Installs Debian packages, as root or through sudo.
fn apt(packages: &[&str]) -> Result<(), String> {
    step(&format!("installing {} (apt)", packages.join(" ")));
    let is_root = Cmd::new("id").args(["-u"]).output().is_some_and(|uid| uid.trim() == "0");
    let run = |args: Vec<&str>| {
        let cmd = if is_root { Cmd::new(args[0]).args(&args[1..]) } else { Cmd::new("sudo").args(&args) };
        cmd.env("DEBIAN_FRONTEND", "noninteractive").run()
    };
    run(vec!["apt-get", "update"])?;
    let mut install = vec!["apt-get", "install", "-y"];
    install.extend_from_slice(packages);
    run(install)
}
