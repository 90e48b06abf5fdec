//! The HTTP surface: the WebSocket endpoint, health checks, and the single-page app.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use crate::config::Config;
use crate::connection;
use crate::shutdown::Shutdown;
use crate::upgrade::{self, UpgradeRequest};

/// Path prefixes owned by the server. The SPA fallback never answers under them, so a
/// typo in an API path is a 404 rather than a page of HTML.
pub const RESERVED: &[&str] = &["ws", "healthz", "readyz", "metrics", "api"];

/// Read buffer per connection. Frames are small and most sockets are idle, so a few
/// KiB is plenty; tungstenite grows it for larger messages.
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Write buffer before a flush is forced.
const WRITE_BUFFER_BYTES: usize = 8 * 1024;

/// Everything the routes need, shared by all requests.
pub struct Context {
    pub(crate) config: Config,
    pub(crate) shutdown: Shutdown,
}

/// All routes, in the order they are tried.
pub fn routes(context: Arc<Context>) -> BoxedFilter<(Response,)> {
    let healthz = warp::path!("healthz")
        .and(warp::get().or(warp::head()).unify())
        .map(|| warp::reply::with_status("ok\n", StatusCode::OK).into_response());

    let ws = {
        let context = context.clone();
        warp::path!("ws")
            .and(upgrade::request())
            .map(move |request: UpgradeRequest| websocket(&context, request))
    };

    let api = warp::path("api").map(|| {
        warp::reply::with_status(
            warp::reply::json(&serde_json::json!({"error": "not_found"})),
            StatusCode::NOT_FOUND,
        )
        .into_response()
    });

    healthz.or(ws).unify().or(api).unify().or(spa(&context.config.static_dir)).unify().boxed()
}

/// Static files, and `index.html` for any other GET outside the reserved prefixes.
fn spa(dir: &std::path::Path) -> BoxedFilter<(Response,)> {
    let index: PathBuf = dir.join("index.html");
    let not_reserved = warp::path::peek().and_then(|rest: warp::path::Peek| async move {
        let first = rest.segments().next().unwrap_or("");
        if RESERVED.contains(&first) { Err(warp::reject::not_found()) } else { Ok(()) }
    });
    let files = warp::fs::dir(dir.to_path_buf()).map(Reply::into_response);
    let fallback = warp::get().and(warp::fs::file(index)).map(Reply::into_response);
    not_reserved.untuple_one().and(files.or(fallback).unify()).boxed()
}

/// Accepts an upgrade and hands the socket to a tracked connection task.
fn websocket(context: &Arc<Context>, request: UpgradeRequest) -> Response {
    if context.shutdown.is_triggered() {
        return warp::reply::with_status("server restarting", StatusCode::SERVICE_UNAVAILABLE)
            .into_response();
    }
    let peer = request.peer;
    let (response, pending) = match request.accept() {
        Ok(accepted) => accepted,
        Err(refusal) => return *refusal,
    };
    let socket_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(Some(context.config.max_message_bytes))
        .max_frame_size(Some(context.config.max_message_bytes));
    let shutdown = context.shutdown.clone();
    let idle_timeout = context.config.idle_timeout;
    context.shutdown.spawn(async move {
        if let Some(socket) = upgrade::finish(pending, socket_config).await {
            tracing::debug!(?peer, "websocket open");
            connection::serve(socket, shutdown, idle_timeout).await;
        }
    });
    response
}
