//! The servers measured side by side, and how a load client speaks to each.
//!
//! Tether is started with limits raised so that the bench measures the machinery, not
//! the default per-connection rate limits. The peers are a bare tokio-tungstenite
//! server (`tungstenite-peer`, built with the bench), Node's `ws`, and Socket.IO 4; the
//! Node packages live in the tools folder that `cargo xtask setup` fills.

use std::path::PathBuf;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::process::Process;
use crate::raw::RawClient;

/// A WebSocket client of the load generator.
pub type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A server under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// `tether-server --store memory`.
    Tether,
    /// The bare tokio-tungstenite server: the Rust limit.
    Tungstenite,
    /// Node.js `ws`.
    NodeWs,
    /// Node.js Socket.IO 4 (WebSocket transport).
    SocketIo,
    /// Tether with a typed channel, `typed:*`, and a publish handler that accepts
    /// everything (`handler-server`); its plain rooms are [`Peer::Tether`]'s.
    TetherTyped,
    /// Tether mounted in a warp app as a filter (`mount-server`).
    MountedWarp,
    /// Tether mounted in an axum app as a tower service (`mount-server`).
    MountedAxum,
}

/// What the server should do with frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Send each frame back.
    Echo,
    /// Send each frame to every connection (in the room).
    Broadcast,
}

impl Peer {
    /// Every peer, Tether first.
    pub const ALL: [Peer; 4] = [Peer::Tether, Peer::Tungstenite, Peer::NodeWs, Peer::SocketIo];

    /// The room a workload calls `base`, on this server: a `typed:` room (the channel's)
    /// on [`Peer::TetherTyped`], `base` itself everywhere else.
    pub fn room(self, base: &str) -> String {
        match self {
            Peer::TetherTyped => format!("typed:{base}"),
            _ => base.to_owned(),
        }
    }

    /// The name in tables and plots.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Tether => "Tether",
            Peer::Tungstenite => "bare tokio-tungstenite",
            Peer::NodeWs => "Node ws",
            Peer::SocketIo => "Socket.IO 4",
            Peer::TetherTyped => "Tether, typed channel",
            Peer::MountedWarp => "Tether in warp (filter)",
            Peer::MountedAxum => "Tether in axum (service)",
        }
    }

    /// Starts the server, or says why it can't be here. `tether_args` are flag/value
    /// pairs for Tether.
    pub fn start(self, mode: Mode, tether_args: &[&str]) -> Result<Process, String> {
        let bin = std::env::current_exe().expect("own path").with_file_name("x");
        match self {
            Peer::Tether | Peer::TetherTyped | Peer::MountedWarp | Peer::MountedAxum => {
                let scratch = std::env::temp_dir().join(format!(
                    "tether-bench-{}-{}",
                    std::process::id(),
                    fastrand::u32(..)
                ));
                let mut flags: Vec<(&str, &str)> = vec![
                    ("--listen", "127.0.0.1:0"),
                    ("--log-level", "error"),
                    ("--store", "memory"),
                    ("--publish-rate", "1000000"),
                    ("--publish-burst", "1000000"),
                    ("--max-connections-per-ip", "100000"),
                    ("--idle-timeout", "10m"),
                    ("--max-members", "100000"),
                    ("--room-creations", "1000000"),
                ];
                // A workload's own flags replace the defaults of the same name.
                for pair in tether_args.chunks(2) {
                    if let [flag, value] = pair {
                        flags.retain(|(f, _)| f != flag);
                        flags.push((flag, value));
                    }
                }
                let mut args: Vec<String> =
                    flags.iter().flat_map(|(f, v)| [f.to_string(), v.to_string()]).collect();
                args.push("--data-dir".into());
                args.push(scratch.display().to_string());
                let (binary, env) = match self {
                    Peer::TetherTyped => ("handler-server", vec![]),
                    Peer::MountedWarp => ("mount-server", vec![("TETHER_MOUNT", "warp".to_owned())]),
                    Peer::MountedAxum => ("mount-server", vec![("TETHER_MOUNT", "axum".to_owned())]),
                    _ => ("tether-server", vec![]),
                };
                Ok(Process::start(&bin.with_file_name(binary), &args, &env, Some(scratch)))
            }
            Peer::Tungstenite => {
                let mode = if mode == Mode::Echo { "echo" } else { "broadcast" };
                let args = vec![mode.to_owned(), "127.0.0.1:0".to_owned()];
                Ok(Process::start(&bin.with_file_name("tungstenite-peer"), &args, &[], None))
            }
            Peer::NodeWs | Peer::SocketIo => {
                let modules = tools_dir()?.join("bench/node_modules");
                if !modules.join(if self == Peer::NodeWs { "ws" } else { "socket.io" }).is_dir() {
                    return Err(format!(
                        "not installed in {} (run `cargo xtask setup --bench`)",
                        modules.display()
                    ));
                }
                let script = if self == Peer::NodeWs { "ws-peer.js" } else { "socketio-peer.js" };
                let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers").join(script);
                let mode = if mode == Mode::Echo { "echo" } else { "broadcast" };
                let args = vec![script.display().to_string(), mode.to_owned()];
                let env = [("NODE_PATH", modules.display().to_string())];
                Ok(Process::start(&PathBuf::from("node"), &args, &env, None))
            }
        }
    }

    /// Connects a client and, for Tether and Socket.IO, says hello and joins `room`.
    pub async fn subscriber(self, addr: std::net::SocketAddr, room: &str) -> Client {
        let url = match self {
            Peer::SocketIo => format!("ws://{addr}/socket.io/?EIO=4&transport=websocket"),
            _ => format!("ws://{addr}/ws"),
        };
        let (mut client, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .unwrap_or_else(|e| panic!("{}: connect failed: {e}", self.name()));
        match self {
            Peer::Tether | Peer::TetherTyped | Peer::MountedWarp | Peer::MountedAxum => {
                send(&mut client, r#"{"type":"hello","v":1,"name":"bench"}"#).await;
                wait_for(&mut client, r#""type":"welcome""#).await;
                send(&mut client, &format!(r#"{{"type":"join","room":"{room}"}}"#)).await;
                wait_for(&mut client, r#""type":"joined""#).await;
            }
            Peer::SocketIo => {
                wait_for(&mut client, "0{").await;
                send(&mut client, "40").await;
                wait_for(&mut client, "40{").await;
                send(&mut client, &format!(r#"42["join","{room}"]"#)).await;
                wait_for(&mut client, r#"42["joined""#).await;
            }
            Peer::Tungstenite | Peer::NodeWs => {}
        }
        client
    }

    /// Like [`Peer::subscriber`], on the light [`RawClient`] the fan-out readers use.
    pub async fn raw_subscriber(self, addr: std::net::SocketAddr, room: &str) -> RawClient {
        let path = if self == Peer::SocketIo { "/socket.io/?EIO=4&transport=websocket" } else { "/ws" };
        let mut client = RawClient::connect(addr, path)
            .await
            .unwrap_or_else(|e| panic!("{}: connect failed: {e}", self.name()));
        let step = async {
            match self {
                Peer::Tether | Peer::TetherTyped | Peer::MountedWarp | Peer::MountedAxum => {
                    client.send_text(r#"{"type":"hello","v":1,"name":"bench"}"#).await?;
                    client.wait_for(r#""type":"welcome""#).await?;
                    client.send_text(&format!(r#"{{"type":"join","room":"{room}"}}"#)).await?;
                    client.wait_for(r#""type":"joined""#).await?;
                }
                Peer::SocketIo => {
                    client.wait_for("0{").await?;
                    client.send_text("40").await?;
                    client.wait_for("40{").await?;
                    client.send_text(&format!(r#"42["join","{room}"]"#)).await?;
                    client.wait_for(r#"42["joined""#).await?;
                }
                Peer::Tungstenite | Peer::NodeWs => {}
            }
            std::io::Result::Ok(())
        };
        step.await.unwrap_or_else(|e| panic!("{}: joining failed: {e}", self.name()));
        client
    }

    /// A frame asking for `body` (a JSON string) back.
    pub fn echo_frame(self, body: &str) -> String {
        match self {
            Peer::Tether | Peer::TetherTyped | Peer::MountedWarp | Peer::MountedAxum => {
                format!(r#"{{"type":"echo","body":"{body}"}}"#)
            }
            Peer::SocketIo => format!(r#"42["echo","{body}"]"#),
            Peer::Tungstenite | Peer::NodeWs => body.to_owned(),
        }
    }

    /// A frame publishing a message stamped `t` (microseconds) to `room`.
    pub fn publish_frame(self, room: &str, id: u64, t: u64) -> String {
        match self {
            Peer::Tether | Peer::TetherTyped | Peer::MountedWarp | Peer::MountedAxum => {
                format!(r#"{{"type":"publish","id":"b{id}","room":"{room}","body":{{"t":{t}}}}}"#)
            }
            Peer::SocketIo => format!(r#"42["publish","{room}",{{"t":{t}}}]"#),
            Peer::Tungstenite | Peer::NodeWs => format!(r#"{{"t":{t}}}"#),
        }
    }

    /// Answers what the protocol requires a client to answer (Socket.IO's ping).
    pub async fn keepalive(self, client: &mut Client, text: &str) {
        if self == Peer::SocketIo && text == "2" {
            send(client, "3").await;
        }
    }
}

/// Sends one text frame.
pub async fn send(client: &mut Client, text: &str) {
    client.send(Message::text(text.to_owned())).await.expect("send");
}

/// Reads until a text frame containing `needle`.
pub async fn wait_for(client: &mut Client, needle: &str) -> String {
    loop {
        match client.next().await {
            Some(Ok(Message::Text(text))) if text.contains(needle) => return text.to_string(),
            Some(Ok(_)) => continue,
            other => panic!("waiting for {needle}: {other:?}"),
        }
    }
}

/// Where `cargo xtask setup` put the npm-installed tools: xtask passes the folder in
/// `TETHER_TOOLS_DIR` (it owns the rule for where that is).
fn tools_dir() -> Result<PathBuf, String> {
    std::env::var_os("TETHER_TOOLS_DIR")
        .map(PathBuf::from)
        .ok_or_else(|| "TETHER_TOOLS_DIR is unset (run the bench through `cargo xtask bench`)".into())
}
