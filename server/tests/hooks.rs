//! Hooks over HTTP: the standalone server asks a real HTTP backend (an axum app on a
//! free loopback port) to decide connections, joins, publishes and requests, and reads
//! its answers into the same frames an app's in-process handlers give.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use common::*;
use serde_json::{Value, json};
use tether_server::Config;
use tether_shared::{ClientFrame, ErrorCode, RejectCode, ServerFrame};
use tokio::sync::{Notify, mpsc};

/// One call the backend got: which hook, the body, and the `Authorization` it came with.
#[derive(Debug)]
struct Called {
    hook: String,
    body: Value,
    authorization: Option<String>,
}

/// The backend's state: where calls are reported, and a gate a held call waits at.
#[derive(Clone)]
struct Desk {
    calls: mpsc::UnboundedSender<Called>,
    gate: Arc<Notify>,
}

/// A backend on a free port, answering by the rules in [`answer`].
struct Backend {
    addr: SocketAddr,
    calls: mpsc::UnboundedReceiver<Called>,
    gate: Arc<Notify>,
}

impl Backend {
    async fn start() -> Backend {
        let (calls, received) = mpsc::unbounded_channel();
        let gate = Arc::new(Notify::new());
        let desk = Desk { calls, gate: gate.clone() };
        let app = axum::Router::new().route("/hooks/{hook}", axum::routing::post(answer)).with_state(desk);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Backend { addr, calls: received, gate }
    }

    /// A config with every hook pointing here, for the `board:*` rooms.
    fn config(&self) -> Config {
        let mut config = unthrottled();
        let url = |hook: &str| Some(format!("http://{}/hooks/{hook}", self.addr));
        config.hooks.hook_connect = url("connect");
        config.hooks.hook_join = url("join");
        config.hooks.hook_publish = url("publish");
        config.hooks.hook_request = url("request");
        config.hooks.hook_rooms = "board:*".into();
        config
    }

    /// The next call the backend got.
    async fn called(&mut self) -> Called {
        within("a hook call", self.calls.recv()).await.expect("the backend runs")
    }
}

/// The backend's rules, by hook and body.
async fn answer(
    State(desk): State<Desk>,
    Path(hook): Path<String>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let body: Value = serde_json::from_str(&body).expect("the server sends JSON");
    let authorization = headers.get("authorization").map(|value| value.to_str().unwrap().to_owned());
    desk.calls.send(Called { hook: hook.clone(), body: body.clone(), authorization }).unwrap();
    let ok = |answer: Value| (StatusCode::OK, answer.to_string());
    let refuse = |code: &str, message: &str| ok(json!({ "refuse": { "code": code, "message": message } }));
    match hook.as_str() {
        "connect" => {
            let cookies = body["headers"]["cookie"].as_str().unwrap_or_default();
            match cookies.split("; ").find_map(|cookie| cookie.strip_prefix("session=")) {
                Some("ada") => ok(json!({ "user": { "id": "u_ada", "name": "Ada Lovelace" } })),
                Some("down") => (StatusCode::SERVICE_UNAVAILABLE, "maintenance".into()),
                _ => refuse("signed_out", "please sign in again"),
            }
        }
        "join" if body["room"] == "board:locked" => ok(json!({ "refuse": {
            "code": "locked",
            "message": "this board is locked",
            "error": { "code": "locked", "message": "this board is locked", "until": "friday" },
        }})),
        "join" => ok(json!({ "meta": { "role": "editor" } })),
        "publish" => match body["body"]["text"].as_str() {
            Some("") => refuse("empty", "a card needs a title"),
            Some("fail") => (StatusCode::INTERNAL_SERVER_ERROR, "oops".into()),
            Some(text) if text.starts_with('!') => ok(json!({ "body": { "text": text.to_uppercase() } })),
            _ => ok(json!({})),
        },
        "request" => match body["body"]["ask"].as_str() {
            Some("sum") => ok(
                json!({ "reply": body["body"]["of"].as_array().unwrap().iter().map(|n| n.as_i64().unwrap()).sum::<i64>() }),
            ),
            Some("hold") => {
                desk.gate.notified().await;
                ok(json!({ "reply": "released" }))
            }
            Some("nonsense") => ok(json!({ "answer": 42 })),
            _ => refuse("unknown", "no such question"),
        },
        _ => (StatusCode::NOT_FOUND, String::new()),
    }
}

/// Ada, signed in by the backend.
async fn ada(addr: SocketAddr, backend: &mut Backend) -> Client {
    let mut ada = with_cookie(addr, "session=ada").await;
    send(&mut ada, &hello_frame("Mallory")).await;
    until(&mut ada, |frame| matches!(frame, ServerFrame::Welcome { .. }).then_some(())).await;
    assert_eq!(backend.called().await.hook, "connect");
    ada
}

fn request(id: &str, room: &str, body: Value) -> ClientFrame {
    ClientFrame::Request { id: id.into(), room: room.into(), body, idempotent: false }
}

/// The `reply` or `reject` for request or publish `id`.
async fn answer_to(client: &mut Client, id: &str) -> ServerFrame {
    until(client, |frame| match &frame {
        ServerFrame::Reply { id: of, .. }
        | ServerFrame::Reject { id: of, .. }
        | ServerFrame::Ack { id: of, .. }
            if of == id =>
        {
            Some(frame)
        }
        _ => None,
    })
    .await
}

#[tokio::test]
async fn the_connect_hook_says_who_a_connection_is_refuses_it_or_is_unavailable() {
    let mut backend = Backend::start().await;
    let server = server_with(backend.config()).await;

    let mut ada = with_cookie(server.addr(), "session=ada; theme=dark").await;
    send(&mut ada, &hello_frame("Mallory")).await;
    match next_frame(&mut ada).await {
        ServerFrame::Welcome { user, .. } => {
            assert_eq!((user.id.as_str(), user.name.as_str()), ("u_ada", "Ada Lovelace"))
        }
        other => panic!("expected a welcome, got {other:?}"),
    }
    let call = backend.called().await;
    assert_eq!(call.body["headers"]["cookie"], "session=ada; theme=dark");
    assert_eq!(call.body["name"], "Mallory", "the backend sees what the hello asked for");
    assert_eq!(call.authorization, None, "no API key, no Authorization");

    let mut stranger = with_cookie(server.addr(), "session=forged").await;
    send(&mut stranger, &hello_frame("Mallory")).await;
    assert_eq!(expect_close(&mut stranger).await, (4401, "please sign in again".to_owned()));

    // A backend answering 503 is unavailable: 1013, which a client retries.
    let mut unlucky = with_cookie(server.addr(), "session=down").await;
    send(&mut unlucky, &hello_frame("Mallory")).await;
    let (code, reason) = expect_close(&mut unlucky).await;
    assert_eq!(code, 1013, "{reason}");
    assert!(reason.contains("503"), "{reason}");
    drop((ada, stranger, unlucky));
    server.stop().await;
}

#[tokio::test]
async fn a_backend_that_is_not_there_closes_connections_with_1013_and_the_server_goes_on() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut config = unthrottled();
    config.hooks.hook_connect = Some(format!("http://{closed}/connect"));
    let server = server_with(config).await;
    let mut client = connect(server.addr()).await;
    send(&mut client, &hello_frame("Mallory")).await;
    let (code, reason) = expect_close(&mut client).await;
    assert_eq!(code, 1013);
    assert!(reason.contains("could not be reached"), "{reason}");
    // The HTTP side is untouched.
    assert_eq!(http_get(server.addr(), "/healthz").await.0, 200);
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn the_join_hook_gives_metadata_or_the_apps_typed_refusal() {
    let mut backend = Backend::start().await;
    let server = server_with(backend.config()).await;
    let mut ada = ada(server.addr(), &mut backend).await;

    let (_, members) = join(&mut ada, "board:roadmap", None).await;
    assert_eq!(members[0].meta, Some(json!({ "role": "editor" })));
    let call = backend.called().await;
    assert_eq!((call.hook.as_str(), &call.body["room"]), ("join", &json!("board:roadmap")));
    assert_eq!(call.body["user"], json!({ "id": "u_ada", "name": "Ada Lovelace" }));

    send(&mut ada, &ClientFrame::Join { room: "board:locked".into(), since: None, history: None }).await;
    let refusal = until(&mut ada, |frame| match frame {
        ServerFrame::Error { code: ErrorCode::Refused, message, refusal: Some(refusal), .. } => {
            Some((message, refusal))
        }
        _ => None,
    })
    .await;
    assert_eq!(refusal.0, "this board is locked");
    assert_eq!(refusal.1.code, "locked");
    assert_eq!(refusal.1.error["until"], "friday", "the backend's own error, whole");
    assert_eq!(backend.called().await.body["room"], "board:locked");

    // A room the hooks do not cover asks nothing.
    join(&mut ada, "lobby", None).await;
    assert!(backend.calls.try_recv().is_err() || panic!("only the locked board's join was asked"));
    drop(ada);
    server.stop().await;
}

#[tokio::test]
async fn the_publish_hook_stores_as_sent_rewrites_refuses_or_is_unavailable() {
    let mut backend = Backend::start().await;
    let server = server_with(backend.config()).await;
    let mut ada = ada(server.addr(), &mut backend).await;
    join(&mut ada, "board:roadmap", None).await;
    backend.called().await;

    publish(&mut ada, "board:roadmap", "m1", json!({ "text": "ship it" })).await;
    let call = backend.called().await;
    assert_eq!((call.hook.as_str(), &call.body["body"]), ("publish", &json!({ "text": "ship it" })));
    publish(&mut ada, "board:roadmap", "m2", json!({ "text": "!loud" })).await;

    send(
        &mut ada,
        &ClientFrame::Publish {
            id: "m3".into(),
            room: "board:roadmap".into(),
            body: json!({ "text": "" }),
            priority: 0,
        },
    )
    .await;
    match answer_to(&mut ada, "m3").await {
        ServerFrame::Reject { code: RejectCode::Refused, message, refusal: Some(refusal), .. } => {
            assert_eq!(message, "a card needs a title");
            assert_eq!(
                refusal.error,
                json!({ "code": "empty", "message": "a card needs a title" }),
                "a Reason"
            );
        }
        other => panic!("expected the backend's refusal, got {other:?}"),
    }

    send(
        &mut ada,
        &ClientFrame::Publish {
            id: "m4".into(),
            room: "board:roadmap".into(),
            body: json!({ "text": "fail" }),
            priority: 0,
        },
    )
    .await;
    match answer_to(&mut ada, "m4").await {
        ServerFrame::Reject { code: RejectCode::Unavailable, message, .. } => {
            assert!(message.contains("500"), "{message}")
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    // The first as sent, the second as rewritten; nothing refused or failed.
    let page = server.api().history("board:roadmap", None, None).await.unwrap();
    let bodies: Vec<_> = page.messages.iter().map(|message| message.body.clone()).collect();
    assert_eq!(bodies, [json!({ "text": "ship it" }), json!({ "text": "!LOUD" })]);
    drop(ada);
    server.stop().await;
}

#[tokio::test]
async fn the_request_hook_replies_refuses_and_an_unreadable_answer_is_internal() {
    let mut backend = Backend::start().await;
    let mut config = backend.config();
    config.api_key = Some("k3y".into());
    let server = server_with(config).await;
    let mut ada = ada(server.addr(), &mut backend).await;
    join(&mut ada, "board:roadmap", None).await;

    send(&mut ada, &request("r1", "board:roadmap", json!({ "ask": "sum", "of": [2, 3] }))).await;
    assert_eq!(
        answer_to(&mut ada, "r1").await,
        ServerFrame::Reply { id: "r1".into(), room: "board:roadmap".into(), body: json!(5) }
    );
    backend.called().await; // the join
    let call = backend.called().await;
    assert_eq!(call.hook, "request");
    assert_eq!(call.authorization.as_deref(), Some("Bearer k3y"), "the backend can tell the server's calls");

    send(&mut ada, &request("r2", "board:roadmap", json!({ "ask": "why" }))).await;
    match answer_to(&mut ada, "r2").await {
        ServerFrame::Reject { code: RejectCode::Refused, refusal: Some(refusal), .. } => {
            assert_eq!(refusal.code, "unknown")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    send(&mut ada, &request("r3", "board:roadmap", json!({ "ask": "nonsense" }))).await;
    match answer_to(&mut ada, "r3").await {
        ServerFrame::Reject { code: RejectCode::Internal, message, .. } => {
            assert!(message.contains("no `reply`"), "{message}")
        }
        other => panic!("expected internal, got {other:?}"),
    }
    // Rooms the hooks do not cover have no request handler.
    join(&mut ada, "lobby", None).await;
    send(&mut ada, &request("r4", "lobby", json!({ "ask": "sum", "of": [1] }))).await;
    match answer_to(&mut ada, "r4").await {
        ServerFrame::Reject { code, .. } => assert_eq!(code, RejectCode::NotHandled),
        other => panic!("expected not_handled, got {other:?}"),
    }
    drop(ada);
    server.stop().await;
}

#[tokio::test]
async fn calls_past_the_bound_wait_for_a_slot_and_the_connection_is_served_meanwhile() {
    let mut backend = Backend::start().await;
    let mut config = backend.config();
    config.hooks.hook_concurrency = 1;
    let server = server_with(config).await;
    let mut ada = ada(server.addr(), &mut backend).await;
    join(&mut ada, "board:roadmap", None).await;
    backend.called().await;

    // The first request holds the only slot until the backend's gate opens.
    send(&mut ada, &request("held", "board:roadmap", json!({ "ask": "hold" }))).await;
    assert_eq!(backend.called().await.body["body"]["ask"], "hold");
    // A second waits for the slot; meanwhile the connection is served (the server reads
    // its frames in order, so the ack below comes after the second request was taken).
    send(&mut ada, &request("waiting", "board:roadmap", json!({ "ask": "sum", "of": [1] }))).await;
    join(&mut ada, "lobby", None).await;
    publish(&mut ada, "lobby", "m1", json!("still here")).await;
    assert!(backend.calls.try_recv().is_err(), "the bound keeps the second call from the backend");

    backend.gate.notify_one();
    let before =
        frames_until(&mut ada, |frame| matches!(frame, ServerFrame::Reply { id, .. } if id == "held")).await;
    assert_eq!(
        before.last(),
        Some(&ServerFrame::Reply {
            id: "held".into(),
            room: "board:roadmap".into(),
            body: json!("released")
        })
    );
    assert!(
        !before.iter().any(|frame| matches!(frame, ServerFrame::Reply { id, .. } if id == "waiting")),
        "the second is answered only once the first let go of the slot: {before:?}"
    );
    assert_eq!(backend.called().await.body["body"]["ask"], "sum", "then it gets the slot");
    assert_eq!(
        answer_to(&mut ada, "waiting").await,
        ServerFrame::Reply { id: "waiting".into(), room: "board:roadmap".into(), body: json!(1) }
    );
    drop(ada);
    server.stop().await;
}

#[tokio::test]
async fn a_backend_past_its_timeout_is_unavailable_and_holds_nothing_else() {
    let mut backend = Backend::start().await;
    let mut config = backend.config();
    config.hooks.hook_timeout = Duration::from_millis(300);
    let server = server_with(config).await;
    let mut ada = ada(server.addr(), &mut backend).await;
    join(&mut ada, "board:roadmap", None).await;
    join(&mut ada, "lobby", None).await;

    send(&mut ada, &request("held", "board:roadmap", json!({ "ask": "hold" }))).await;
    publish(&mut ada, "lobby", "m1", json!("served while the backend thinks")).await;
    match answer_to(&mut ada, "held").await {
        ServerFrame::Reject { code: RejectCode::Unavailable, message, .. } => {
            assert!(message.contains("did not answer within 300 ms"), "{message}")
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    drop(ada);
    server.stop().await;
}
