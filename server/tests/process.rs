//! The real binary: flags, start-up line, and graceful shutdown on SIGTERM and SIGINT.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use common::*;
use tether_shared::{ClientFrame, ServerFrame};

const BINARY: &str = env!("CARGO_BIN_EXE_tether-server");

/// Starts the binary on a free port and reads the address from its start-up line.
fn spawn_server() -> (Spawned, SocketAddr) {
    spawn_server_with(&["--listen", "127.0.0.1:0", "--store", "memory"])
}

/// A spawned server that is killed when dropped, so a failing test leaves no orphan.
struct Spawned(Child);

impl std::ops::Deref for Spawned {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_server_with(args: &[&str]) -> (Spawned, SocketAddr) {
    let mut child = Command::new(BINARY)
        .args(["--log-level", "warn"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn tether-server");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("Tether is running at http://").expect(&line);
    let addr = url.trim_end_matches('/').parse().expect("an address");
    (Spawned(child), addr)
}

#[test]
fn help_lists_every_flag_with_its_environment_variable() {
    use clap::CommandFactory;
    let output = Command::new(BINARY).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    let command = tether_server::Config::command();
    let flags: Vec<_> = command.get_arguments().filter(|a| a.get_long().is_some()).collect();
    assert!(flags.len() >= 18, "the flags are all there: {}", flags.len());
    for arg in flags {
        let long = format!("--{}", arg.get_long().unwrap());
        let env = arg.get_env().unwrap_or_else(|| panic!("{long} has no environment variable"));
        assert!(help.contains(&long), "{long} missing from --help");
        assert!(help.contains(env.to_str().unwrap()), "{env:?} missing from --help");
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
    let status = within("the server exiting", tokio::task::spawn_blocking(move || child.wait()))
        .await
        .unwrap()
        .unwrap();
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

#[tokio::test]
async fn acked_messages_survive_sigkill_and_a_restart() {
    use serde_json::json;
    use tether_shared::RoomCursor;

    let dir = std::env::temp_dir().join(format!("tether-kill-{}", std::process::id()));
    let data = dir.to_str().unwrap().to_owned();
    let durable = |listen: &str| -> Vec<String> {
        ["--listen", listen, "--store", "sqlite", "--data-dir", &data, "--publish-rate", "10000"]
            .map(str::to_owned)
            .to_vec()
    };
    let args = durable("127.0.0.1:0");
    let (mut child, addr) = spawn_server_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (mut alice, _, resume_token) = hello(addr, "Alice").await;
    join(&mut alice, "r", None).await;
    let mut acked = Vec::new();
    for i in 0..50 {
        let (seq, _) = publish(&mut alice, "r", &format!("m{i}"), json!(i)).await;
        acked.push((seq, format!("m{i}")));
    }
    // More publishes in flight, then the process dies without any chance to clean up.
    for i in 50..80 {
        let frame =
            ClientFrame::Publish { id: format!("m{i}"), room: "r".into(), body: json!(i), priority: 0 };
        send(&mut alice, &frame).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Acks that made it out before the kill count as promises too.
    while let Some(Ok(message)) =
        tokio::time::timeout(PATIENCE, futures::StreamExt::next(&mut alice)).await.unwrap()
    {
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            if let Ok(ServerFrame::Ack { id, seq, .. }) = ServerFrame::decode(&text) {
                acked.push((seq, id));
            }
        }
    }
    acked.sort();
    acked.dedup();

    let listen = addr.to_string();
    let args = durable(&listen);
    let (mut child, addr) = spawn_server_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut alice = connect(addr).await;
    send(&mut alice, &ClientFrame::Hello { v: 1, token: None, name: None, resume_token: Some(resume_token) })
        .await;
    next_frame(&mut alice).await;
    send(
        &mut alice,
        &ClientFrame::Resume { rooms: vec![RoomCursor { room: "r".into(), since: Some(0), history: None }] },
    )
    .await;
    let mut replayed = Vec::new();
    let complete = within("the replay", async {
        loop {
            match next_frame(&mut alice).await {
                ServerFrame::Message { seq, id, .. } => replayed.push((seq, id)),
                ServerFrame::Replayed { complete, .. } => break complete,
                _ => {}
            }
        }
    })
    .await;
    assert!(complete);
    for promise in &acked {
        assert!(replayed.contains(promise), "acked {promise:?} was lost");
    }
    let seqs: Vec<u64> = replayed.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "no holes in the history");
    println!("{} acked before SIGKILL, {} stored after restart", acked.len(), replayed.len());

    // A client that never saw its ack re-sends after the restart: the original ack comes back.
    let (last_seq, last_id) = replayed.last().unwrap().clone();
    let (seq, _) = publish(&mut alice, "r", &last_id, json!("again")).await;
    assert_eq!(seq, last_seq, "deduped across the restart");

    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_store_that_cannot_open_is_named_as_the_reason_for_not_starting() {
    // A file where the data folder should be: SQLite cannot create its database there.
    let blocker = std::env::temp_dir().join(format!("tether-not-a-dir-{}", std::process::id()));
    std::fs::write(&blocker, b"in the way").unwrap();
    let output = Command::new(BINARY)
        .args(["--listen", "127.0.0.1:0", "--store", "sqlite", "--data-dir"])
        .arg(&blocker)
        .output()
        .unwrap();
    std::fs::remove_file(&blocker).ok();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("could not open the history store at"), "{stderr}");
    assert!(!stderr.contains("could not start listening"), "{stderr}");
}
