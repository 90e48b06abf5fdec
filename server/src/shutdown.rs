//! Shutdown: one signal that the listener and every open socket obey.
//!
//! Warp's graceful shutdown stops accepting and drains HTTP requests, but an upgraded
//! WebSocket has left hyper's hands, so it would be cut without a close frame. Each
//! connection task therefore watches this token itself, says goodbye with 1001, and is
//! tracked so that the process exits only after every goodbye was written.

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Shared by the listener and every connection task.
#[derive(Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tasks: TaskTracker,
}

impl Shutdown {
    /// Starts shutting down: connections close with 1001 and no new ones are accepted.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Resolves once shutdown has begun.
    pub async fn triggered(&self) {
        self.token.cancelled().await
    }

    /// Whether shutdown has begun.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Runs a connection task that shutdown will wait for.
    pub fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Waits until every tracked task has finished. Call after [`Shutdown::trigger`].
    pub async fn drained(&self) {
        self.tasks.close();
        self.tasks.wait().await
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn os_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        _ = term => tracing::info!("SIGTERM received, shutting down"),
    }
}
