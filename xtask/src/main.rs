//! `cargo xtask`: the two promises of the README, plus the steps they are made of.
//!
//! - `cargo xtask run`  installs what is missing, builds the release bundle and the
//!   server, and serves the app on <http://127.0.0.1:8080>.
//! - `cargo xtask test` installs what is missing (a browser too) and runs every test:
//!   native, wasm in headless Chromium against a real server, and integration.
//!
//! Every install is checked first and skipped when the right version is present, so a
//! second run costs seconds. Written with `std` alone so that it compiles in moments on
//! a fresh machine.

mod bundle;
mod cluster;
mod setup;
mod sh;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use sh::{Cmd, fail};

const USAGE: &str = "\
usage: cargo xtask <command> [args]

commands:
  run [-- server flags]   install tools, build the release bundle and server, serve on :8080
  test                    install tools and a browser, run every test suite
  lint                    cargo fmt --check, clippy (native and wasm32) and cargo doc, warnings denied
  dist                    install tools and build the release bundle into dist/ (prints sizes)
  bench [--quick] [W..]   Tether beside bare tokio-tungstenite, Node ws and Socket.IO: join storm,
                          idle memory, fan-out, echo, durable publishes, the app's frame times
                          under a stream; report in docs/bench/
  cluster [N]             a local Redis and N nodes (default 3) on ports 8080.. serving the app
  fuzz [--minutes M] [--seed S] [--target NAME] [--replay PATH..]
                          fuzz decoders, outbox, tokens, client core and a live server (stable Rust),
                          time split across targets; failures saved under fuzz/reproducers/
  chaos [--cycles N] [--seed S] [--cluster N] [--clients C] [--storm N]
                          checked clients under a seeded fault injector (SIGKILL, restarts,
                          resets, blackholes, latency, Redis restarts), every acked message
                          checked against history; then a reconnect storm of N clients
  soak [--minutes M] [--clients N] [--out DIR]
                          clients churning for M minutes (default 60) while the server's
                          memory, descriptors, tasks and queues are sampled; PNG and CSV
  siege [--connections N] [--seconds S]
                          N connections (default 10,000) that send nothing, silent TCP then
                          upgraded WebSockets, while a good client's RTT and the server's RSS
                          per connection are measured
  setup [--browser] [--bench] [--trunk]
                          only install what is missing (--browser: also what the tests need:
                          chromium, redis-server; --bench: the Node peers; --trunk: trunk, for
                          `trunk serve` while working on the UI)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = match args.split_first() {
        Some((command, rest)) => (command.as_str(), rest),
        None => ("help", &[][..]),
    };
    let result = match command {
        "setup" => {
            let asked = |flag: &str| rest.iter().any(|a| a == flag);
            setup::all(asked("--browser"))
                .and_then(|()| if asked("--bench") { setup::bench_peers() } else { Ok(()) })
                .and_then(|()| if asked("--trunk") { setup::trunk() } else { Ok(()) })
        }
        "dist" => setup::all(false).and_then(|()| dist()),
        "run" => setup::all(false).and_then(|()| run(rest)),
        "cluster" => setup::all(false)
            .and_then(|()| setup::redis_server())
            .and_then(|()| build_app_and_server())
            .and_then(|()| cluster::run(&root(), rest)),
        "test" => setup::all(true).and_then(|()| test()),
        "lint" => setup::wasm_target().and_then(|()| lint()),
        "bench" => setup::bench_peers().and_then(|()| bench(rest)),
        "fuzz" => fuzz(rest),
        "chaos" | "soak" | "siege" => setup::redis_server().and_then(|()| proof(command, rest)),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    };
    sh::timings();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of this crate).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// Builds the release bundles into `dist/` (the poker table into `dist/poker/`, the
/// dashboard into `dist/admin/`) and prints their compressed sizes.
fn dist() -> Result<(), String> {
    bundle::build(&root(), &root().join("dist"))
}

/// Builds the bundle and the release server.
fn build_app_and_server() -> Result<(), String> {
    dist()?;
    sh::step("building the demo's server (cargo build --release -p tether-demo-server)");
    Cmd::new("cargo").args(["build", "--release", "-p", "tether-demo-server"]).dir(root()).run()
}

/// Builds everything and runs the server in the foreground on the bundle.
fn run(server_args: &[String]) -> Result<(), String> {
    build_app_and_server()?;
    let binary = root().join("target/release/tether-demo-server");
    let dist = root().join("dist");
    let mut args = vec!["--static-dir".to_owned(), dist.display().to_string()];
    args.extend(server_args.iter().filter(|a| *a != "--").cloned());
    sh::step("starting the server (Ctrl-C stops it)");
    Cmd::new(binary).args(args).dir(root()).run()
}

/// The workspace's native packages: everything but the browser crates, which build for
/// wasm32. One selection everywhere, so that cargo unifies features the same way each
/// time and never builds a dependency twice over.
const NATIVE: [&str; 5] = ["--workspace", "--exclude", "tether-yew", "--exclude", "tether-demo"];

/// How long each suite may run before it is stopped and the run fails: far above what
/// it takes (see the step times printed at the end), so only a hang reaches it.
const SUITE_LIMIT: Duration = Duration::from_secs(15 * 60);

/// Runs every suite; stops at the first that fails.
fn test() -> Result<(), String> {
    let root = root();
    // cargo-nextest runs every test binary's tests side by side (most wait on sockets and
    // timers, not the CPU: 65 s instead of 6 min here) and stops any that hangs
    // (`.config/nextest.toml`). Without it, cargo test runs them one binary at a time.
    let nextest = Cmd::new("cargo").args(["nextest", "--version"]).output().is_some();
    if nextest {
        sh::step("building the native tests (cargo nextest, the e2e scenarios too)");
        Cmd::new("cargo").args(["nextest", "run", "--no-run"]).args(NATIVE).dir(&root).run()?;
        sh::step("native tests (cargo nextest run)");
        Cmd::new("cargo")
            .args(["nextest", "run"])
            .args(NATIVE)
            .args(["-E", "not package(tether-e2e)"])
            .dir(&root)
            .limit(SUITE_LIMIT)
            .run()?;
        sh::step("native doctests (cargo test --doc)");
        Cmd::new("cargo").args(["test", "--doc"]).args(NATIVE).dir(&root).limit(SUITE_LIMIT).run()?;
    } else {
        sh::step("native tests (cargo test; install cargo-nextest to run them side by side)");
        Cmd::new("cargo")
            .args(["test"])
            .args(NATIVE)
            .args(["--exclude", "tether-e2e"])
            .dir(&root)
            .limit(SUITE_LIMIT)
            .run()?;
    }
    sh::step("the protocol crate without MessagePack (what a JSON-only app builds)");
    Cmd::new("cargo")
        .args(["test", "-p", "tether-shared", "--no-default-features", "--lib"])
        .dir(&root)
        .limit(SUITE_LIMIT)
        .run()?;

    sh::step("browser tests (wasm-bindgen-test in headless Chromium, against a real server)");
    // The debug server the native tests were built with (their integration tests run it).
    let debug_server = root.join("target/debug/tether-server");
    let server = sh::Server::start(
        &debug_server,
        &[
            "--store",
            "memory",
            "--test-endpoints",
            "--publish-rate",
            "100000",
            "--publish-burst",
            "100000",
            // Short-lived dev tokens, so that the token provider's refresh path runs.
            "--dev-token-ttl",
            "4s",
            "--token-warning",
            "2s",
        ],
    )?;
    // Two more, for the endpoint failover test, which stops one of them.
    let spare = || sh::Server::start(&debug_server, &["--store", "memory", "--test-endpoints"]);
    let spares = [spare()?, spare()?];
    // The demo chat's server, whose channel refuses posts (the demo's own tests).
    Cmd::new("cargo").args(["build", "-p", "tether-demo-server"]).dir(&root).limit(SUITE_LIMIT).run()?;
    let demo_server =
        sh::Server::start(&root.join("target/debug/tether-demo-server"), &["--store", "memory"])?;
    let output = Cmd::new("cargo")
        .args(["test", "-p", "tether-yew", "-p", "tether-demo", "--target", "wasm32-unknown-unknown"])
        .dir(&root)
        .env("CHROMEDRIVER", setup::CHROMEDRIVER)
        .env("WASM_BINDGEN_TEST_TIMEOUT", "120")
        .env("TETHER_TEST_SERVER", format!("ws://{}/ws", server.addr()))
        .env("TETHER_TEST_DEMO_SERVER", format!("ws://{}/ws", demo_server.addr()))
        .env(
            "TETHER_TEST_FAILOVER",
            spares.iter().map(|s| format!("ws://{}/ws", s.addr())).collect::<Vec<_>>().join(" "),
        )
        .limit(SUITE_LIMIT)
        .run_tee();
    drop(server);
    drop(spares);
    drop(demo_server);
    let output = output?;
    if !output.contains("Running headless tests in Chrome") {
        return fail("the wasm tests did not run in headless Chrome; refusing to count them");
    }

    dist()?;
    release_binaries()?;
    sh::step("end-to-end scenarios (release server and bundle, Chromium, fault proxy)");
    let e2e = if nextest {
        // The same selection as the build above, so nothing is built again.
        Cmd::new("cargo").args(["nextest", "run"]).args(NATIVE).args(["-E", "package(tether-e2e)", "-j", "1"])
    } else {
        Cmd::new("cargo").args(["test", "-p", "tether-e2e", "--", "--test-threads=1"])
    };
    e2e.dir(&root).limit(SUITE_LIMIT).run()?;

    sh::step("proof under faults, short versions (cargo xtask chaos, soak, siege)");
    let chaos = |args: &[&str]| {
        sh::step(&format!("tether-chaos {}", args.join(" ")));
        Cmd::new(root.join("target/release/tether-chaos")).args(args).dir(&root).limit(SUITE_LIMIT).run()
    };
    chaos(&["chaos", "--cycles", "10", "--storm", "1000"])?;
    chaos(&["chaos", "--cycles", "6", "--cluster", "3", "--clients", "12", "--storm", "0"])?;
    chaos(&["soak", "--minutes", "1", "--clients", "200", "--every", "1"])?;
    chaos(&["siege", "--connections", "2000", "--seconds", "5"])?;
    println!("all test suites passed; screenshots in target/e2e-artifacts/");
    Ok(())
}

/// The release servers (plain, and the demo's) and the chaos harness, in one cargo run,
/// which the e2e scenarios and the proof runs share.
fn release_binaries() -> Result<(), String> {
    sh::step("building the release servers and the chaos harness");
    Cmd::new("cargo")
        .args(["build", "--release", "-p", "tether-server", "-p", "tether-demo-server", "-p", "tether-chaos"])
        .dir(root())
        .run()
}

/// Builds release binaries and runs the benchmarks, which print their figures. The load
/// generator is pinned to CPU 1; it pins every server it starts to CPU 0.
fn bench(args: &[String]) -> Result<(), String> {
    let root = root();
    let workloads: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    if workloads.is_empty() || workloads.iter().any(|w| *w == "stream") {
        // The stream workload opens the release bundle in Chromium.
        setup::all(true)?;
        dist()?;
    }
    sh::step("building release binaries");
    Cmd::new("cargo")
        .args(["build", "--release", "-p", "tether-server", "-p", "tether-bench"])
        .dir(&root)
        .run()?;
    sh::step("benchmarks");
    let bench = root.join("target/release/tether-bench");
    let pinned = Cmd::new("taskset").args(["-c", "1", "true"]).output().is_some();
    let command = if pinned {
        Cmd::new("taskset").args(["-c", "1"]).args([&bench])
    } else {
        println!("taskset is missing or there is no CPU 1: running unpinned, ratios are rougher");
        Cmd::new(bench)
    };
    command.args(args).env("TETHER_TOOLS_DIR", setup::tools_dir()).dir(&root).run()
}

/// Builds the release server and the chaos harness, and runs `tether-chaos <command>`.
fn proof(command: &str, args: &[String]) -> Result<(), String> {
    release_binaries()?;
    sh::step(&format!("tether-chaos {command} {}", args.join(" ")));
    Cmd::new(root().join("target/release/tether-chaos")).args([command]).args(args).dir(root()).run()
}

/// Runs the fuzzer (`fuzz/`), a release build: it prints per target the cases run, the
/// rate, the outcomes seen and the failures, whose reproducers it saves.
fn fuzz(args: &[String]) -> Result<(), String> {
    sh::step("fuzzing (cargo run --release -p tether-fuzz)");
    Cmd::new("cargo").args(["run", "--release", "-p", "tether-fuzz", "--"]).args(args).dir(root()).run()
}

/// Formatting and lints, warnings denied, on both targets.
fn lint() -> Result<(), String> {
    let root = root();
    sh::step("cargo fmt --check");
    Cmd::new("cargo").args(["fmt", "--all", "--check"]).dir(&root).run()?;
    sh::step("clippy, native");
    Cmd::new("cargo")
        .args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])
        .dir(&root)
        .run()?;
    sh::step("clippy, wasm32");
    Cmd::new("cargo")
        .args([
            "clippy",
            "-p",
            "tether-shared",
            "-p",
            "tether-yew",
            "-p",
            "tether-demo",
            "--all-targets",
            "--target",
            "wasm32-unknown-unknown",
        ])
        .args(["--", "-D", "warnings"])
        .dir(&root)
        .run()?;
    sh::step("clippy, wasm32, JSON only (the msgpack feature off)");
    Cmd::new("cargo")
        .args(["clippy", "-p", "tether-shared", "-p", "tether-yew", "--no-default-features", "--all-targets"])
        .args(["--target", "wasm32-unknown-unknown", "--", "-D", "warnings"])
        .dir(&root)
        .run()?;
    sh::step("docs (cargo doc, warnings denied: every link must resolve)");
    Cmd::new("cargo")
        .args(["doc", "--no-deps", "-p", "tether-shared", "-p", "tether-server", "-p", "tether-client"])
        .env("RUSTDOCFLAGS", "-D warnings")
        .dir(&root)
        .run()?;
    Cmd::new("cargo")
        .args([
            "doc",
            "--no-deps",
            "-p",
            "tether-yew",
            "-p",
            "tether-demo",
            "--target",
            "wasm32-unknown-unknown",
        ])
        .env("RUSTDOCFLAGS", "-D warnings")
        .dir(&root)
        .run()
}
