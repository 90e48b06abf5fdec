//! Tether's server: a Warp + tokio process that speaks the protocol in `tether-shared`
//! over `/ws` and serves the built single-page app beside it.
//!
//! The binary in `main.rs` is a thin shell around [`start`], which tests call too: they
//! get a real server on a free loopback port and talk to it with real WebSocket clients.
//!
//! How a publish travels: `connection` validates it and hands it to the `sequencer`,
//! which numbers it, commits it to the `store` (many per transaction), then has the
//! `hub` deliver it to the room's members and queues the ack to the sender; each
//! connection drains its own `outbound` queue to its socket.

pub mod api;
mod auth;
mod body;
mod channels;
pub mod cli;
mod close;
pub mod config;
mod connected;
mod connection;
mod context;
mod creations;
mod engine;
mod fallback;
mod handshake;
mod headers;
mod hooks;
mod hub;
mod identity;
mod limits;
mod metrics;
mod mount;
mod outbound;
mod presence;
mod rejections;
mod routes;
mod samples;
mod serve;
mod shutdown;
pub mod store;
mod upgrade;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

pub use api::Api;
pub use auth::{Claims, sign as sign_token};
pub use channels::{Admitted, Call, Connecting, Handlers, Leaving};
pub use close::{Close, SHUTDOWN as SHUTDOWN_CLOSE};
pub use config::{Config, HookConfig};
pub use hooks::HookError;
pub use mount::{Tether, TetherService};
pub use routes::RESERVED;

use shutdown::Shutdown;

/// A server that is listening. Dropping it does not stop it; call [`Running::stop`].
pub struct Running {
    addr: SocketAddr,
    listener: tokio::task::JoinHandle<()>,
    tether: Tether,
}

/// Binds the listening socket. Nagle's algorithm is turned off here because accepted
/// sockets inherit the option (Linux), and hyper's upgrade wrapper hides the TCP stream
/// later: small frames such as acks and pongs must not wait for a delayed ACK.
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Why the server could not start, with the failure that stopped it as its source.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listening socket could not be bound.
    #[error("could not listen on {addr}")]
    Listen {
        /// The configured address.
        addr: SocketAddr,
        /// The operating system's refusal (address in use, not permitted, …).
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error("could not open the history store at {path}")]
    Store {
        /// The database file.
        path: std::path::PathBuf,
        /// SQLite's refusal, or the folder that could not be made.
        source: store::StoreError,
    },
    /// The dedupe window could not be read back from the store.
    #[error("could not read recent publishes back from the store")]
    Dedupe(#[source] store::StoreError),
    /// A hook's URL or header cannot be used.
    #[error(transparent)]
    Hook(#[from] hooks::HookError),
    /// Cluster mode: Redis could not be reached or refused.
    #[error("could not join the cluster through Redis at {url}")]
    Redis {
        /// The configured URL.
        url: String,
        /// Why.
        source: store::StoreError,
    },
}

/// Opens the configured store.
fn open_store(config: &Config) -> Result<Arc<dyn store::Store>, StartError> {
    match config.store.as_str() {
        "memory" => Ok(Arc::new(store::MemoryStore::new())),
        _ => {
            let path = config.data_dir.join("tether.db");
            let opened = store::SqliteStore::open(&path)
                .map_err(|source| StartError::Store { path: path.clone(), source })?;
            tracing::info!(path = %path.display(), "history stored in SQLite");
            Ok(Arc::new(opened))
        }
    }
}

/// Binds the configured address, opens the store, and starts serving in the background,
/// with plain JSON rooms only. An app with channels of its own builds a [`Server`].
pub async fn start(config: Config) -> Result<Running, StartError> {
    Server::new(config).start().await
}

/// A server to start: the configuration, and the app's typed channels with their
/// handlers. Rooms no channel covers are plain JSON rooms.
pub struct Server {
    config: Config,
    channels: channels::Channels,
}

impl Server {
    /// A server with this configuration and no channels yet.
    pub fn new(config: Config) -> Self {
        Server { config, channels: channels::Channels::default() }
    }

    /// Registers a channel: its types are enforced on every body and state value sent
    /// to its rooms ([`Channel::ROOMS`](tether_shared::Channel::ROOMS)), and its
    /// handlers decide joins and publishes there. Among channels that cover a room, the
    /// one with the most specific pattern is the room's.
    pub fn channel<C, S>(mut self, handlers: Handlers<C, S>) -> Self
    where
        C: tether_shared::Channel,
        S: Send + Sync + 'static,
    {
        self.channels.add(handlers.into_route());
        self
    }

    /// Signs connections in the app's own way: `handler` reads the connection's HTTP
    /// request (cookies, headers) and its `hello`, and answers with who it is, or the
    /// app's refusal, which closes it with 4401 and the app's words (the client's
    /// indicator shows them; it does not retry). It decides every `hello`, instead of
    /// signed tokens, within 5 s and behind a panic boundary (a failure closes with 1011).
    pub fn on_connect<F, Fut, E>(mut self, handler: F) -> Self
    where
        F: Fn(Connecting) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Admitted, E>> + Send + 'static,
        E: tether_shared::ChannelError,
    {
        self.channels.connect = Some(channels::connect::handler(handler));
        self
    }

    /// Binds the configured address, opens the store, and starts serving in the background.
    pub async fn start(self) -> Result<Running, StartError> {
        serve_with(self.config, self.channels).await
    }

    /// Opens the store and builds the core without a listener, for an app that mounts
    /// Tether in its own warp or axum server ([`Tether::filter`], [`Tether::service`]).
    /// `config.listen` is not used.
    pub async fn build(self) -> Result<Tether, StartError> {
        build(self.config, self.channels).await
    }
}

/// Opens the store (or joins the cluster) and builds the core: everything but a
/// listener.
async fn build(config: Config, mut channels: channels::Channels) -> Result<Tether, StartError> {
    hooks::install(&config.hooks, config.api_key.as_deref(), &mut channels)?;
    if !config.static_dir.join("index.html").is_file() {
        tracing::warn!(
            dir = %config.static_dir.display(),
            "no index.html in the static folder; build the app with `cargo xtask dist` or pass --static-dir"
        );
    }
    let metrics = Arc::new(metrics::Metrics::default());
    let presence = presence::PresenceConfig { tick: config.presence_tick, limit: config.presence_limit };
    let (store, hub, engine): (Arc<dyn store::History>, _, Arc<dyn engine::Engine>) = match &config.redis {
        Some(url) => {
            let redis_error = |source| StartError::Redis { url: url.clone(), source };
            let cluster = engine::redis::Cluster::connect(url).await.map_err(redis_error)?;
            let hub = hub::RoomHub::start(cluster.history.clone(), config.max_members, presence);
            let engine = cluster.start(&hub, metrics.clone(), &config).await.map_err(redis_error)?;
            (cluster.history.clone(), hub, Arc::new(engine))
        }
        None => {
            let store = open_store(&config)?;
            let hub = hub::RoomHub::start(store.clone(), config.max_members, presence);
            let retention = engine::local::Retention {
                max_messages: config.history_messages,
                max_age: config.history_age,
                dedupe_window: config.dedupe_window,
                max_bytes: config.history_bytes,
            };
            let engine =
                engine::local::LocalEngine::start(store.clone(), hub.clone(), retention, metrics.clone())
                    .map_err(StartError::Dedupe)?;
            (store, hub, Arc::new(engine))
        }
    };
    let shutdown = Shutdown::default();
    let context = Arc::new(context::Context::new(
        config,
        shutdown.clone(),
        hub.clone(),
        engine.clone(),
        store,
        metrics,
        channels,
    ));
    api::stats::spawn(context.clone());
    let api = Api::new(context.clone());
    let routes = routes::routes(context.clone());
    Ok(Tether { context, shutdown, engine, api, routes })
}

/// Binds the configured address, builds the core and serves it there.
async fn serve_with(config: Config, channels: channels::Channels) -> Result<Running, StartError> {
    let bind = config.listen;
    let listen_error = |source| StartError::Listen { addr: bind, source };
    let listener = listen(bind).map_err(listen_error)?;
    let addr = listener.local_addr().map_err(listen_error)?;
    let tether = build(config, channels).await?;
    let config = &tether.context.config;
    let door = serve::Door::new(config.max_connections_per_ip, config.body_timeout);
    let listener = tokio::spawn(serve::run(listener, tether.filter(), door, tether.shutdown.clone()));
    Ok(Running { addr, listener, tether })
}

impl Running {
    /// The address the server listens on (useful when the configured port was 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server API (what `/api/v1/…` answers), for apps that embed the server: publish
    /// from the backend, read presence and history, disconnect users, read the stats.
    /// Works whether or not `--api-key` opened it over HTTP.
    pub fn api(&self) -> Api {
        self.tether.api()
    }

    /// Resolves once something asked the server to stop from inside (with
    /// `--test-endpoints`, `POST /api/test/stop`); the binary then stops as on a signal.
    pub async fn stop_requested(&self) {
        self.tether.stop_requested().await
    }

    /// Stops accepting, lets in-flight publishes commit and their acks go out, closes
    /// every WebSocket with 1001 "server restarting", and returns once all are closed
    /// (and, in cluster mode, once the other nodes have been told its members left).
    pub async fn stop(self) {
        self.tether.shutdown.trigger();
        let _ = self.listener.await;
        self.tether.stop().await;
    }
}

/// Waits for SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    shutdown::os_signal().await
}
