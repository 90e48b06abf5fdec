//! The real binary: flags, start-up line, and graceful shutdown on SIGTERM and SIGINT.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use common::*;
use tether_shared::{ClientFrame, ServerFrame};

const BINARY: &str = env!("CARGO_BIN_EXE_tether-server");

/// Starts the binary on a free port and reads the address from its start-up line.
fn spawn_server() -> (Child, SocketAddr) {
    let mut child = Command::new(BINARY)
        .args(["--listen", "127.0.0.1:0", "--log-level", "warn", "--store", "memory"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn tether-server");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("Tether is running at http://").expect(&line);
    let addr = url.trim_end_matches('/').parse().expect("an address");
    (child, addr)
}

#[test]
fn help_lists_every_flag_with_its_environment_variable() {
    let output = Command::new(BINARY).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for (flag, env) in [
        ("--listen", "TETHER_LISTEN"),
        ("--static-dir", "TETHER_STATIC_DIR"),
        ("--log-level", "TETHER_LOG"),
        ("--max-message-bytes", "TETHER_MAX_MESSAGE_BYTES"),
        ("--idle-timeout", "TETHER_IDLE_TIMEOUT"),
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
        assert!(help.contains(env), "{env} missing from --help");
    }
}

async fn signal_closes_sockets_and_exits_zero(signal: &str) {
    let (mut child, addr) = spawn_server();
    let mut client = connect(addr).await;
    send(&mut client, &ClientFrame::Ping { nonce: 9 }).await;
    assert_eq!(next_frame(&mut client).await, ServerFrame::Pong { nonce: 9 });

    let sent = Command::new("kill").args(["-s", signal, &child.id().to_string()]).status();
    assert!(sent.expect("kill").success());
    assert_eq!(expect_close(&mut client).await, (1001, "server restarting".to_owned()));
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn sigterm_closes_sockets_with_1001_and_exits_zero() {
    signal_closes_sockets_and_exits_zero("TERM").await;
}

#[tokio::test]
async fn sigint_closes_sockets_with_1001_and_exits_zero() {
    signal_closes_sockets_and_exits_zero("INT").await;
}
