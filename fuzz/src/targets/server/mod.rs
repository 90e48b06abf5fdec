//! The server targets: a real server (`tether_server::start`, memory store, a free
//! loopback port) in this process, fed misbehaving clients over real sockets: frames
//! over a WebSocket ([`socket`]), the same over the HTTP fallback transports
//! ([`fallback`]), and requests to the server API ([`api`]).
//!
//! What every case must leave true: no panic anywhere in the server (the engine's
//! panic hook sees its tasks' panics too), no 5xx answer, every bad input answered as
//! the protocol says (a typed error frame, a close code, a 4xx JSON body), and a
//! well-behaved client ([`Good`]) can still publish and get its ack afterwards.

pub mod api;
pub mod fallback;
pub(crate) mod http;
pub(crate) mod model;
pub mod socket;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tether_server::{Config, Running};
use tether_shared::{ClientFrame, PROTOCOL_VERSION, ServerFrame};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The API key of the servers started here.
pub const API_KEY: &str = "fuzz-api-key";
/// The token secret of the server started with `--auth-secret`.
pub const AUTH_SECRET: &str = "fuzz-auth-secret";
/// The room the well-behaved client lives in (also one the fuzzed clients join).
pub const GOOD_ROOM: &str = "fuzz";
/// The longest wait for any answer before a case fails.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// A WebSocket client.
pub type Client = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// The server's own account of the connections it ended last (its `connection ended`
/// and `connection failed` lines), so that a case whose connection ended otherwise than
/// the model says can report what the server thought happened.
static ENDINGS: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());
/// How many of those lines are kept.
const ENDINGS_KEPT: usize = 8;

/// Where the server's connection log lines go: into [`ENDINGS`].
struct Endings;

impl std::io::Write for Endings {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let line = String::from_utf8_lossy(buf).trim_end().to_owned();
        let mut endings = ENDINGS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if endings.len() == ENDINGS_KEPT {
            endings.pop_front();
        }
        endings.push_back(line);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The server's last lines about the connections it ended, oldest first.
pub fn endings() -> String {
    let endings = ENDINGS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    endings.iter().map(|line| format!("\n    {line}")).collect()
}

/// A server in this process, with its runtime.
pub struct Live {
    /// The runtime the server and the clients run on.
    pub runtime: tokio::runtime::Runtime,
    /// Dev mode: names instead of tokens; the API on.
    pub dev: Running,
    /// With `--auth-secret`: a signed token is required.
    pub auth: Running,
    /// The well-behaved client, on `dev`.
    pub good: Option<Good>,
    checks: u64,
}

impl Live {
    /// Starts both servers and the well-behaved client.
    pub fn start() -> Live {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("tether_server::connection=info"))
            .with_writer(|| Endings)
            .with_ansi(false)
            .without_time()
            .try_init();
        // A debug build's stack frames are many times a release build's: reading a frame
        // nested to the limit of 128 needs more than tokio's 2 MiB there (the release
        // build that `cargo xtask fuzz` runs fits in it).
        let stack = if cfg!(debug_assertions) { 32 << 20 } else { 2 << 20 };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_stack_size(stack)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let config = |auth: bool| {
            let mut config = Config::for_tests();
            config.api_key = Some(API_KEY.into());
            // Cases open connections faster than closed ones are forgotten, and the
            // well-behaved client publishes once per case: neither is what the limits
            // are for, and both would make a case's answers depend on the ones before.
            config.max_connections_per_ip = 100_000;
            config.publish_rate = 100_000;
            config.publish_burst = 100_000;
            config.room_creations = u32::MAX;
            config.auth_secret = auth.then(|| AUTH_SECRET.into());
            config.static_dir = std::env::temp_dir().join("tether-fuzz-no-static-files");
            config
        };
        let (dev, auth) = runtime.block_on(async {
            let dev = tether_server::start(config(false)).await.expect("the dev server starts");
            let auth = tether_server::start(config(true)).await.expect("the auth server starts");
            (dev, auth)
        });
        let good = runtime.block_on(Good::connect(dev.addr())).expect("the well-behaved client connects");
        Live { runtime, dev, auth, good: Some(good), checks: 0 }
    }

    /// After a case: the well-behaved client publishes and gets its ack, and every
    /// 20th time a new well-behaved client connects, says hello, joins and publishes.
    pub fn check_good(&mut self) -> Result<(), String> {
        self.checks += 1;
        let addr = self.dev.addr();
        let fresh = self.checks % 20 == 0;
        let mut good = self.good.take().ok_or("the well-behaved client is gone")?;
        let result = self.runtime.block_on(async {
            good.publish().await?;
            if fresh {
                let mut other = Good::connect(addr).await?;
                other.publish().await?;
                other.leave().await;
            }
            Ok::<_, String>(())
        });
        self.good = Some(good);
        result.map_err(|e| format!("a well-behaved client could not publish after the case: {e}"))
    }
}

/// A client that does everything right: hello, join, publish, and reads what comes.
pub struct Good {
    client: Client,
    published: u64,
}

impl Good {
    /// Connects to `addr`, says hello and joins [`GOOD_ROOM`].
    pub async fn connect(addr: SocketAddr) -> Result<Good, String> {
        let (client, _) =
            tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(format!("ws://{addr}/ws")))
                .await
                .map_err(|_| "the upgrade took too long".to_string())?
                .map_err(|e| format!("the upgrade failed: {e}"))?;
        let mut good = Good { client, published: 0 };
        let hello = ClientFrame::Hello {
            v: PROTOCOL_VERSION,
            token: None,
            name: Some("good".into()),
            resume_token: None,
        };
        good.send(&hello).await?;
        good.until(|frame| matches!(frame, ServerFrame::Welcome { .. })).await?;
        good.send(&ClientFrame::Join { room: GOOD_ROOM.into(), since: None, history: None }).await?;
        good.until(|frame| matches!(frame, ServerFrame::Joined { room, .. } if room == GOOD_ROOM)).await?;
        Ok(good)
    }

    async fn send(&mut self, frame: &ClientFrame) -> Result<(), String> {
        self.client.send(Message::text(frame.encode())).await.map_err(|e| format!("send: {e}"))
    }

    /// Reads frames (each must decode) until one matches.
    async fn until(&mut self, mut wanted: impl FnMut(&ServerFrame) -> bool) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let next = tokio::time::timeout_at(deadline, self.client.next()).await;
            let message = match next {
                Err(_) => return Err("no answer in time".into()),
                Ok(None) => return Err("the connection ended".into()),
                Ok(Some(Err(error))) => return Err(format!("the connection failed: {error}")),
                Ok(Some(Ok(message))) => message,
            };
            match message {
                Message::Text(text) => {
                    let frame = ServerFrame::decode(&text)
                        .map_err(|e| format!("a frame that does not decode ({e}): {text}"))?;
                    if wanted(&frame) {
                        return Ok(());
                    }
                }
                Message::Close(close) => return Err(format!("the server closed the connection: {close:?}")),
                Message::Binary(_) => return Err("a binary frame on a JSON connection".into()),
                _ => {}
            }
        }
    }

    /// Publishes a message and waits for its ack.
    pub async fn publish(&mut self) -> Result<(), String> {
        self.published += 1;
        let id = format!("good-{}-{}", std::process::id(), self.published);
        let frame = ClientFrame::Publish {
            id: id.clone(),
            room: GOOD_ROOM.into(),
            body: serde_json::json!({"n": self.published}),
            priority: 0,
        };
        self.send(&frame).await?;
        let mut rejected = None;
        self.until(|frame| match frame {
            ServerFrame::Ack { id: acked, .. } => *acked == id,
            ServerFrame::Reject { id: refused, code, .. } if *refused == id => {
                rejected = Some(*code);
                true
            }
            _ => false,
        })
        .await?;
        match rejected {
            Some(code) => Err(format!("its publish was rejected: {code:?}")),
            None => Ok(()),
        }
    }

    async fn leave(mut self) {
        let _ = tokio::time::timeout(Duration::from_millis(200), self.client.close(None)).await;
    }
}
