//! The HTTP fallback transports, for networks where a WebSocket cannot be had:
//! Server-Sent Events and long-polling downstream, `POST` upstream.
//!
//! A session is a connection like any other: `POST /rt/open` starts the same
//! connection task a WebSocket gets (`crate::connection::serve`), over a
//! [`session::SessionSocket`] instead of a socket, so the hub, the sequencer, presence,
//! limits, metrics and auth decide exactly as they do for a WebSocket. Only the framing
//! differs, and it lives here:
//!
//! | request | what |
//! |---|---|
//! | `POST /rt/open` | body: the `hello` frame. Answer: `{"session", "event": 1, "frame": welcome}` |
//! | `POST /rt/send?session=S` | body: one client frame, or an array of them. Answer: 204 |
//! | `GET /rt/sse?session=S` | `text/event-stream`: each server frame an event with its id; `Last-Event-ID` resumes |
//! | `GET /rt/poll?session=S&after=N` | the frames after event N, at once if any, else within 25 s |
//! | `POST /rt/close?session=S` | the client leaves, as a WebSocket close would say |
//!
//! A session is bound to the address that opened it: another address presenting its id
//! is refused, as is an unknown id. A session that no downstream request has read for
//! the idle timeout is closed like a silent WebSocket.

pub mod recent;
pub mod session;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::value::RawValue;
use tracing::Instrument;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::context::Context;
use crate::headers;
use crate::serve::Peer;
use session::{Batch, Session};

/// How long a long-poll waits for frames before answering with none.
pub const POLL_WAIT: Duration = Duration::from_secs(25);
/// How often an SSE stream with nothing to say sends a comment, so proxies keep it.
const SSE_KEEPALIVE: Duration = Duration::from_secs(15);
/// How long `open` waits for the connection's answer to its `hello`.
const OPEN_PATIENCE: Duration = Duration::from_secs(10);
/// Frames one `send` may carry.
const MAX_FRAMES_PER_SEND: usize = 64;

/// `?session=…&after=…`
#[derive(serde::Deserialize)]
struct Query {
    session: String,
    after: Option<u64>,
    last_event_id: Option<u64>,
}

/// The fallback routes, under `/rt`.
pub fn routes(context: Arc<Context>) -> BoxedFilter<(Response,)> {
    let peer = || warp::ext::optional::<Peer>().map(|peer: Option<Peer>| peer.map(|Peer(addr)| addr.ip()));
    let body_limit = (context.config.max_message_bytes * MAX_FRAMES_PER_SEND) as u64;

    let open = {
        let context = context.clone();
        warp::path!("open")
            .and(warp::post())
            .and(headers::raw("origin"))
            .and(peer())
            .and(warp::header::headers_cloned())
            .and(warp::body::content_length_limit(context.config.max_message_bytes as u64))
            .and(crate::body::whole())
            .then(
                move |origin: Option<HeaderValue>, peer: Option<IpAddr>, request: HeaderMap, body: Bytes| {
                    let context = context.clone();
                    // Kept only for an app that signs connections in itself.
                    let request = context.channels.connect.is_some().then_some(request);
                    async move { open(context, headers::text(origin), peer, request, body).await }
                },
            )
    };

    let send = {
        let context = context.clone();
        warp::path!("send")
            .and(warp::post())
            .and(warp::query::<Query>())
            .and(peer())
            .and(warp::body::content_length_limit(body_limit))
            .and(crate::body::whole())
            .then(move |query: Query, peer: Option<IpAddr>, body: Bytes| {
                let context = context.clone();
                async move {
                    let session = match find(&context, &query.session, peer) {
                        Ok(session) => session,
                        Err(refusal) => return refusal.into_response(),
                    };
                    let frames = match split(&body, context.config.max_message_bytes) {
                        Ok(frames) => frames,
                        Err(refusal) => return refusal.into_response(),
                    };
                    if session.send(frames).await {
                        StatusCode::NO_CONTENT.into_response()
                    } else {
                        error(StatusCode::GONE, "session_closed", "the session has ended; open a new one")
                    }
                }
            })
    };

    let poll = {
        let context = context.clone();
        warp::path!("poll").and(warp::get()).and(warp::query::<Query>()).and(peer()).then(
            move |query: Query, peer: Option<IpAddr>| {
                let context = context.clone();
                async move {
                    let session = match find(&context, &query.session, peer) {
                        Ok(session) => session,
                        Err(refusal) => return refusal.into_response(),
                    };
                    let _reading = session.reading();
                    // A poll confirms what it asks to be after: its answer has arrived.
                    let batch = session.after(query.after.unwrap_or(0), 0, POLL_WAIT).await;
                    poll_answer(&batch)
                }
            },
        )
    };

    let sse = {
        let context = context.clone();
        // One that is not an event id is refused as JSON like any other bad request,
        // after the session is known.
        warp::path!("sse")
            .and(warp::get())
            .and(warp::query::<Query>())
            .and(headers::raw("last-event-id"))
            .and(peer())
            .map(move |query: Query, last: Option<HeaderValue>, peer: Option<IpAddr>| {
                let session = match find(&context, &query.session, peer) {
                    Ok(session) => session,
                    Err(refusal) => return refusal.into_response(),
                };
                let Ok(last) = last.map(|value| event_id(&value).ok_or(())).transpose() else {
                    let message = "Last-Event-ID is not an event id this server sent";
                    return error(StatusCode::BAD_REQUEST, "invalid_request", message);
                };
                event_stream(session, last.or(query.last_event_id).unwrap_or(0))
            })
    };

    let close = {
        let context = context.clone();
        warp::path!("close").and(warp::post()).and(warp::query::<Query>()).and(peer()).then(
            move |query: Query, peer: Option<IpAddr>| {
                let context = context.clone();
                async move {
                    match find(&context, &query.session, peer) {
                        Ok(session) => {
                            session.client_closed().await;
                            StatusCode::NO_CONTENT.into_response()
                        }
                        Err(refusal) => refusal.into_response(),
                    }
                }
            },
        )
    };

    // Pages on another origin (allowed by `--allowed-origin`, or any without it) read
    // the answers; requests are "simple" (POST bodies as text/plain), so no preflight.
    let allowed = context.config.allowed_origins.clone();
    let calls =
        open.or(send).unify().or(poll).unify().or(sse).unify().or(close).unify().recover(refused).unify();
    warp::path("rt")
        .and(calls)
        .and(headers::raw("origin"))
        .map(move |mut response: Response, origin: Option<HeaderValue>| {
            let allow = match headers::text(origin) {
                Some(origin) if allowed.is_empty() || allowed.contains(&origin) => origin,
                _ if allowed.is_empty() => "*".to_owned(),
                _ => return response,
            };
            if let Ok(value) = HeaderValue::from_str(&allow) {
                response.headers_mut().insert(warp::http::header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
            }
            response
        })
        .boxed()
}

/// `POST /rt/open`: a new session with a connection task, fed the `hello` in the body.
async fn open(
    context: Arc<Context>,
    origin: Option<String>,
    peer: Option<IpAddr>,
    request: Option<HeaderMap>,
    hello: Bytes,
) -> Response {
    if context.shutdown.is_triggered() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "restarting", "the server is restarting; retry");
    }
    let allowed = &context.config.allowed_origins;
    if !allowed.is_empty() && !origin.as_ref().is_some_and(|origin| allowed.contains(origin)) {
        return error(StatusCode::FORBIDDEN, "origin_forbidden", "origin not allowed");
    }
    let Ok(hello) = String::from_utf8(hello.to_vec()) else {
        return error(StatusCode::BAD_REQUEST, "malformed_json", "the body is not UTF-8 text");
    };
    let id = context.next_conn();
    let seed = format!("{id}:{:?}:{}", std::time::SystemTime::now(), fastrand::u64(..));
    let session_id = crate::auth::unguessable(&context.secret, seed.as_bytes());
    let (session, socket) = Session::new(session_id.clone(), peer);
    if !context.sessions.insert(session.clone(), context.config.max_connections_per_ip) {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            "too many sessions from this address",
        );
    }
    let span =
        tracing::info_span!("conn", id, peer = ?peer, transport = "http", user = tracing::field::Empty);
    let task_context = context.clone();
    let watched = session.clone();
    context.shutdown.spawn(
        async move {
            let idle = task_context.config.idle_timeout;
            let watchdog = tokio::spawn(watch_readers(watched.clone(), idle));
            let encoding = tether_shared::Encoding::Json;
            crate::connection::serve(socket, task_context.clone(), id, encoding, peer, request).await;
            watchdog.abort();
            // Its end stays readable for a while, then the session is forgotten.
            tokio::select! {
                () = tokio::time::sleep(idle) => {}
                () = task_context.shutdown.triggered() => {}
            }
            task_context.sessions.remove(&watched.id);
        }
        .instrument(span),
    );
    session.send(vec![hello]).await;
    let first = session.after(0, 0, OPEN_PATIENCE).await;
    match (first.frames.first(), first.closed) {
        (Some((event, frame)), _) if frame.starts_with(r#"{"type":"welcome""#) => {
            let body = format!(r#"{{"session":"{session_id}","event":{event},"frame":{frame}}}"#);
            json_text(StatusCode::OK, body)
        }
        // A refused hello's session id was never handed out: it is forgotten, not
        // recorded as ended, so that refused hellos cannot push real sessions out of
        // the bounded list of ended ones.
        (Some((_, frame)), _) => {
            context.sessions.forget(&session_id);
            json_text(StatusCode::BAD_REQUEST, format!(r#"{{"error":"hello_refused","frame":{frame}}}"#))
        }
        (None, Some(ended)) => {
            context.sessions.forget(&session_id);
            let status = match ended.code {
                tether_shared::close::UNAUTHORIZED => StatusCode::UNAUTHORIZED,
                tether_shared::close::TOKEN_EXPIRED => StatusCode::FORBIDDEN,
                tether_shared::close::BAD_HELLO => StatusCode::BAD_REQUEST,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            let body = serde_json::json!({"error": "closed", "code": ended.code, "reason": ended.reason});
            warp::reply::with_status(warp::reply::json(&body), status).into_response()
        }
        (None, None) => {
            error(StatusCode::GATEWAY_TIMEOUT, "no_answer", "the server did not answer the hello in time")
        }
    }
}

/// Once no downstream request has read the session for `idle`, tells its connection
/// task that the client left, so that it ends (and leaves its rooms) as a silent
/// WebSocket does.
async fn watch_readers(session: Arc<Session>, idle: Duration) {
    let mut checks = tokio::time::interval(idle / 4);
    loop {
        checks.tick().await;
        if session.abandoned(idle) {
            tracing::info!("no downstream request for the idle timeout; the session is gone");
            session.client_left().await;
            return;
        }
    }
}

/// The open session `id`, if `peer` is the address that opened it.
fn find(context: &Context, id: &str, peer: Option<IpAddr>) -> Result<Arc<Session>, Refusal> {
    match context.sessions.get(id) {
        Some(session) if session.peer == peer => Ok(session),
        Some(_) => Err(Refusal(
            StatusCode::FORBIDDEN,
            "session_not_yours",
            "this session belongs to another address",
        )),
        None if context.sessions.ended(id) => {
            Err(Refusal(StatusCode::GONE, "session_closed", "the session has ended; open a new one"))
        }
        None => Err(Refusal(StatusCode::NOT_FOUND, "unknown_session", "no such session; open a new one")),
    }
}

/// A `send` body as frames: an array's elements, or the body as one frame. A body that
/// is not JSON goes as one frame too, so the connection answers it as it would on a
/// WebSocket (`malformed_json`).
fn split(body: &[u8], max_bytes: usize) -> Result<Vec<String>, Refusal> {
    let Ok(text) = std::str::from_utf8(body) else {
        return Err(Refusal(StatusCode::BAD_REQUEST, "malformed_json", "the body is not UTF-8 text"));
    };
    let frames = match serde_json::from_str::<Vec<Box<RawValue>>>(text) {
        Ok(frames) if text.trim_start().starts_with('[') => {
            frames.into_iter().map(|frame| frame.get().to_owned()).collect()
        }
        _ => vec![text.to_owned()],
    };
    if frames.len() > MAX_FRAMES_PER_SEND {
        return Err(Refusal(StatusCode::PAYLOAD_TOO_LARGE, "too_many_frames", "at most 64 frames per send"));
    }
    if frames.iter().any(|frame| frame.len() > max_bytes) {
        return Err(Refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "frame_too_large",
            "a frame exceeds the message size limit",
        ));
    }
    Ok(frames)
}

/// A long-poll's answer: `{"frames":[{"event":N,"frame":…}…],"closed":null|{code,reason}}`.
fn poll_answer(batch: &Batch) -> Response {
    let mut body = String::from(r#"{"frames":["#);
    for (index, (event, frame)) in batch.frames.iter().enumerate() {
        if index > 0 {
            body.push(',');
        }
        body.push_str(&format!(r#"{{"event":{event},"frame":{frame}}}"#));
    }
    body.push_str(r#"],"closed":"#);
    body.push_str(&serde_json::to_string(&batch.closed).expect("closes serialise"));
    body.push('}');
    json_text(StatusCode::OK, body)
}

/// The SSE stream of a session from event `after` on, ending with a `close` event.
///
/// `after` is the client's `Last-Event-ID`, a confirmation; what the stream goes on to
/// write is not, so it keeps the last [`session::SSE_RESEND`] of those for a reconnect.
fn event_stream(session: Arc<Session>, after: u64) -> Response {
    let reading = session.reading();
    let events = futures::stream::unfold(
        (session, after, 0, reading, false),
        |(session, after, keep, reading, done)| async move {
            if done {
                return None;
            }
            let batch = session.after(after, keep, SSE_KEEPALIVE).await;
            let mut events = Vec::new();
            let mut last = after;
            for (event, frame) in &batch.frames {
                events.push(warp::sse::Event::default().id(event.to_string()).data(frame.as_str()));
                last = *event;
            }
            let done = batch.closed.is_some();
            if let Some(ended) = &batch.closed {
                let data = serde_json::to_string(ended).expect("closes serialise");
                events.push(warp::sse::Event::default().event("close").data(data));
            }
            if events.is_empty() {
                events.push(warp::sse::Event::default().comment("idle"));
            }
            let chunk = futures::stream::iter(events.into_iter().map(Ok::<_, std::convert::Infallible>));
            Some((chunk, (session, last, session::SSE_RESEND, reading, done)))
        },
    )
    .flatten();
    warp::sse::reply(events).into_response()
}

/// The decimal event id in a `Last-Event-ID` header, if that is what it holds.
fn event_id(value: &HeaderValue) -> Option<u64> {
    value.to_str().ok()?.trim().parse().ok()
}

/// Any request under `/rt` that no call took, answered as JSON like the calls' own
/// refusals, so a client on a fallback reads every answer the same way.
async fn refused(rejection: warp::Rejection) -> Result<Response, std::convert::Infallible> {
    let methods = "open, send and close are POST; sse and poll GET";
    let refusal = match crate::rejections::typed(&rejection, methods) {
        Some((status, code, message)) => Refusal(status, code, message),
        None => Refusal(StatusCode::NOT_FOUND, "not_found", "no such fallback call; see PROTOCOL.md"),
    };
    Ok(refusal.into_response())
}

/// A refused request: its status, an error code and words for people.
struct Refusal(StatusCode, &'static str, &'static str);

impl Refusal {
    fn into_response(self) -> Response {
        error(self.0, self.1, self.2)
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": code, "message": message});
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

fn json_text(status: StatusCode, body: String) -> Response {
    let mut response = warp::reply::with_status(body, status).into_response();
    response
        .headers_mut()
        .insert(warp::http::header::CONTENT_TYPE, warp::http::HeaderValue::from_static("application/json"));
    response
}
