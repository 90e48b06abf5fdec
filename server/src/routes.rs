//! The HTTP surface: the WebSocket endpoint, health, metrics, dev tokens, and the SPA.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tether_shared::close;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::Instrument;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use crate::auth;
use crate::close::Close;
use crate::connection;
use crate::context::Context;
use crate::identity;
use crate::metrics::CodeLabel;
use crate::upgrade::{self, UpgradeRequest};

/// Path prefixes owned by the server. The SPA fallback never answers under them, so a
/// typo in an API path is a 404 rather than a page of HTML.
pub const RESERVED: &[&str] = &["ws", "rt", "healthz", "readyz", "metrics", "api"];

/// Read buffer per connection. Frames are small and most sockets are idle, so a few
/// KiB is plenty; tungstenite grows it for larger messages.
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Write buffer before a flush is forced.
const WRITE_BUFFER_BYTES: usize = 8 * 1024;

/// All routes, in the order they are tried.
pub fn routes(context: Arc<Context>) -> BoxedFilter<(Response,)> {
    let get_or_head = || warp::get().or(warp::head()).unify();
    // Readable from any page: a browser client on a fallback asks whether plain HTTP
    // reaches the server while its WebSocket does not.
    let healthz =
        warp::path!("healthz").and(get_or_head()).map(|| readable_anywhere(text(StatusCode::OK, "ok\n")));

    let readyz = {
        let context = context.clone();
        warp::path!("readyz").and(get_or_head()).map(move || {
            if context.shutdown.is_triggered() {
                text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
            } else {
                match context.store.head("readyz-probe") {
                    Ok(_) => text(StatusCode::OK, "ready\n"),
                    Err(error) => {
                        text(StatusCode::SERVICE_UNAVAILABLE, &format!("store unavailable: {error}\n"))
                    }
                }
            }
        })
    };

    let metrics = {
        let context = context.clone();
        warp::path!("metrics").and(warp::get()).map(move || {
            context.metrics.rooms.set(context.hub.room_count() as i64);
            let mut response = context.metrics.render().into_response();
            response.headers_mut().insert(
                warp::http::header::CONTENT_TYPE,
                warp::http::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        })
    };

    let token = {
        let context = context.clone();
        warp::path!("api" / "token")
            .and(warp::get().or(warp::post()).unify())
            .and(warp::query::<HashMap<String, String>>())
            .map(move |query: HashMap<String, String>| {
                // Dev mode mints tokens for anyone who asks, so any page may read them.
                readable_anywhere(dev_token(&context, query.get("name"), query.get("sub")))
            })
    };

    let ws = {
        let context = context.clone();
        warp::path!("ws")
            .and(upgrade::request())
            .map(move |request: UpgradeRequest| websocket(&context, request))
    };

    let test_drop = test_endpoint(&context, "drop", |context, _| {
        context.drop_all.send_modify(|generation| *generation += 1);
        serde_json::json!({"dropped": true})
    });
    let test_websockets = test_endpoint(&context, "websockets", |context, query| {
        let allow = query.get("allow").is_none_or(|allow| allow != "false");
        context.refuse_upgrades.store(!allow, std::sync::atomic::Ordering::SeqCst);
        serde_json::json!({"websockets": allow})
    });
    // A real stop, as on SIGTERM: sockets close with 1001 and the process exits.
    let test_stop = test_endpoint(&context, "stop", |context, _| {
        context.shutdown.trigger();
        serde_json::json!({"stopping": true})
    });

    let api =
        warp::path("api").map(|| {
            let body = serde_json::json!({"error": "not_found", "message": "no such endpoint; the server API is under /api/v1/ (see API.md)"});
            json(StatusCode::NOT_FOUND, body)
        });

    healthz
        .or(readyz)
        .unify()
        .or(metrics)
        .unify()
        .or(token)
        .unify()
        .or(test_drop)
        .unify()
        .or(test_websockets)
        .unify()
        .or(test_stop)
        .unify()
        .or(ws)
        .unify()
        .or(crate::api::routes(context.clone()))
        .unify()
        .or(crate::fallback::routes(context.clone()))
        .unify()
        .or(api)
        .unify()
        .or(spa(&context.config.static_dir))
        .unify()
        .boxed()
}

/// `POST /api/test/<name>`, only with `--test-endpoints` (404 otherwise): how the
/// browser tests act on the server (drop every socket, refuse upgrades, stop). `act`
/// gets the query string and returns the JSON answer, readable from the test runner's
/// own origin.
fn test_endpoint<F>(context: &Arc<Context>, name: &'static str, act: F) -> BoxedFilter<(Response,)>
where
    F: Fn(&Context, &HashMap<String, String>) -> serde_json::Value + Clone + Send + Sync + 'static,
{
    let context = context.clone();
    warp::path("api")
        .and(warp::path("test"))
        .and(warp::path(name))
        .and(warp::path::end())
        .and(warp::post())
        .and(warp::query::<HashMap<String, String>>())
        .and_then(move |query: HashMap<String, String>| {
            let (context, act) = (context.clone(), act.clone());
            async move {
                if !context.config.test_endpoints {
                    return Err(warp::reject::not_found());
                }
                Ok::<_, warp::Rejection>(readable_anywhere(json(StatusCode::OK, act(&context, &query))))
            }
        })
        .boxed()
}

/// Lets pages of any origin read `response` (health, dev tokens, test endpoints).
fn readable_anywhere(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(warp::http::header::ACCESS_CONTROL_ALLOW_ORIGIN, warp::http::HeaderValue::from_static("*"));
    response
}

fn text(status: StatusCode, body: &str) -> Response {
    warp::reply::with_status(body.to_owned(), status).into_response()
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

/// `/api/token?name=Ada`: in dev mode, a signed token for a fresh user, or with
/// `&sub=u_…` for that user again (to refresh a connection in place). With an auth
/// secret, tokens come from the integrator's backend, so this answers 404.
fn dev_token(context: &Context, name: Option<&String>, sub: Option<&String>) -> Response {
    if context.config.auth_secret.is_some() {
        return json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "tokens_are_issued_by_your_backend",
                "message": "this server verifies tokens signed with --auth-secret; see the README"}),
        );
    }
    let mut user = identity::dev_user(name.map(String::as_str));
    if let Some(sub) = sub {
        let valid = (1..=64).contains(&sub.len())
            && sub.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !valid {
            return json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": "invalid_sub", "message": "sub is 1-64 characters from [A-Za-z0-9_.-]"}),
            );
        }
        user.color = identity::color_for(sub).into();
        user.id = sub.clone();
    }
    let exp = auth::unix_now() + context.config.dev_token_ttl.as_secs();
    let claims = auth::Claims { sub: user.id.clone(), name: user.name.clone(), rooms: vec!["*".into()], exp };
    let token = auth::sign(&context.secret, &claims);
    json(StatusCode::OK, serde_json::json!({"token": token, "user": user, "expires_at": exp}))
}

/// Static files; a page of its own for a GET under `/<name>/` when `<name>/index.html`
/// exists (the dashboard at `/admin`, the poker table at `/poker`); and `index.html` for
/// any other GET outside the reserved prefixes.
fn spa(dir: &std::path::Path) -> BoxedFilter<(Response,)> {
    let index: PathBuf = dir.join("index.html");
    let not_reserved = warp::path::peek().and_then(|rest: warp::path::Peek| async move {
        let first = rest.segments().next().unwrap_or("");
        if RESERVED.contains(&first) { Err(warp::reject::not_found()) } else { Ok(()) }
    });
    let files = warp::fs::dir(dir.to_path_buf()).map(Reply::into_response);
    // A bundle in a folder of its own (`dist/admin/`, `dist/poker/`): its page answers
    // `/<name>` and every path below it, as `index.html` does for the app at `/`. Looked
    // up on each request, so a bundle built while the server runs is served at once.
    let subpage = {
        let dir = dir.to_path_buf();
        warp::get().and(warp::path::param::<String>()).and_then(move |name: String| {
            let page = dir.join(&name).join("index.html");
            async move {
                // Only a plain folder name: never `..`, a hidden folder or an escape.
                let plain = !name.starts_with('.')
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !plain {
                    return Err(warp::reject::not_found());
                }
                match tokio::fs::read(&page).await {
                    Ok(body) => Ok(warp::reply::html(body).into_response()),
                    Err(_) => Err(warp::reject::not_found()),
                }
            }
        })
    };
    // Without its bundle, `/admin` says so instead of falling through to the app's page.
    let no_dashboard = warp::get().and(warp::path("admin")).map(|| {
        text(
            StatusCode::NOT_FOUND,
            "the dashboard is not built: `cargo xtask dist` builds it into dist/admin/\n",
        )
    });
    let fallback = warp::get().and(warp::fs::file(index)).map(Reply::into_response);
    let pages = files.or(subpage).unify().or(no_dashboard).unify().or(fallback).unify();
    not_reserved.untuple_one().and(pages).boxed()
}

/// Accepts an upgrade and hands the socket to a tracked connection task. Refusals
/// decided here (origin, per-IP cap) still complete the upgrade, so the browser sees a
/// close code it can act on instead of an opaque failed handshake.
fn websocket(context: &Arc<Context>, mut request: UpgradeRequest) -> Response {
    if context.shutdown.is_triggered() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "server restarting");
    }
    if context.refuse_upgrades.load(std::sync::atomic::Ordering::SeqCst) {
        return text(StatusCode::FORBIDDEN, "WebSockets refused (test endpoint)");
    }
    let allowed = &context.config.allowed_origins;
    let origin_ok =
        allowed.is_empty() || request.origin.as_ref().is_some_and(|origin| allowed.contains(origin));
    let peer = request.peer;
    let encoding = request.encoding;
    // Kept only for an app that signs connections in itself.
    let headers = context.channels.connect.is_some().then(|| std::mem::take(&mut request.headers));
    let admission = request.admission.take();
    let (response, pending) = match request.accept() {
        Ok(accepted) => accepted,
        Err(refusal) => return *refusal,
    };
    // Mounted in an app's own server, no accept loop counted the connection: there is
    // no quota to take (the app's listener is the app's to guard).
    let quota = match admission {
        Some(admission) => admission.take().map(Some).ok_or(()),
        None => Ok(None),
    };
    let refusal = if !origin_ok {
        Some(Close::new(close::ORIGIN_FORBIDDEN, "origin not allowed"))
    } else if quota.is_err() {
        Some(Close::new(close::TRY_AGAIN_LATER, "too many connections from this address"))
    } else {
        None
    };
    let socket_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(Some(context.config.max_message_bytes))
        .max_frame_size(Some(context.config.max_message_bytes));
    let context = context.clone();
    let tracker = context.shutdown.clone();
    tracker.spawn(async move {
        let Some(socket) = upgrade::finish(pending, socket_config).await else { return };
        match refusal {
            Some(close) => {
                context.metrics.refused.get_or_create(&CodeLabel { code: close.code.to_string() }).inc();
                tracing::info!(?peer, code = close.code, reason = %close.reason, "connection refused");
                upgrade::refuse(socket, close).await;
            }
            None => {
                let _slot = quota;
                let id = context.next_conn();
                let span = tracing::info_span!("conn", id, peer = ?peer, user = tracing::field::Empty);
                connection::serve(socket, context, id, encoding, peer.map(|peer| peer.ip()), headers)
                    .instrument(span)
                    .await;
            }
        }
    });
    response
}
