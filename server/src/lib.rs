//! Tether's server: a Warp + tokio process that speaks the protocol in `tether-shared`
//! over `/ws` and serves the built single-page app beside it.
//!
//! The binary in `main.rs` is a thin shell around [`start`], which tests call too: they
//! get a real server on a free loopback port and talk to it with real WebSocket clients.

pub mod config;
mod connection;
mod identity;
mod routes;
mod shutdown;
mod upgrade;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::Config;
pub use connection::SHUTDOWN_CLOSE;
pub use routes::RESERVED;

use shutdown::Shutdown;

/// A server that is listening. Dropping it does not stop it; call [`Running::stop`].
pub struct Running {
    addr: SocketAddr,
    shutdown: Shutdown,
    listener: tokio::task::JoinHandle<()>,
}

/// Binds the configured address and starts serving in the background.
pub async fn start(config: Config) -> std::io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    if !config.static_dir.join("index.html").is_file() {
        tracing::warn!(
            dir = %config.static_dir.display(),
            "no index.html in the static folder; build the app with `trunk build --release` or pass --static-dir"
        );
    }
    let shutdown = Shutdown::default();
    let context = Arc::new(routes::Context { config, shutdown: shutdown.clone() });
    let signal = {
        let shutdown = shutdown.clone();
        async move { shutdown.triggered().await }
    };
    let server = warp::serve(routes::routes(context)).incoming(listener).graceful(signal);
    let listener = tokio::spawn(server.run());
    Ok(Running { addr, shutdown, listener })
}

impl Running {
    /// The address the server listens on (useful when the configured port was 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, closes every WebSocket with 1001 "server restarting", and
    /// returns once all of them are closed.
    pub async fn stop(self) {
        self.shutdown.trigger();
        let _ = self.listener.await;
        self.shutdown.drained().await;
    }
}

/// Waits for SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    shutdown::os_signal().await
}
