//! Both example apps, served for real: the app's sign-in, its own routes, and Tether
//! under `/live` signing connections in with the app's session cookie.

#[path = "../../server/tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;

use common::*;
use serde_json::json;
use tether_examples::Sessions;
use tether_shared::{ClientFrame, PROTOCOL_VERSION, ServerFrame};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn built(sessions: &Sessions) -> tether_server::Tether {
    within("building", tether_examples::tether(sessions)).await.expect("built")
}

/// A WebSocket on the app's `/live/ws` with `cookie`, after its hello: the first
/// message back.
async fn live(addr: SocketAddr, cookie: Option<&str>) -> (Client, Option<Message>) {
    let mut request = format!("ws://{addr}/live/ws").into_client_request().unwrap();
    if let Some(cookie) = cookie {
        request.headers_mut().insert("Cookie", cookie.parse().unwrap());
    }
    let (mut client, _) = within("the handshake", tokio_tungstenite::connect_async(request)).await.unwrap();
    let hello = ClientFrame::Hello { v: PROTOCOL_VERSION, token: None, name: None, resume_token: None };
    send(&mut client, &hello).await;
    let first = next_message(&mut client).await;
    (client, first)
}

/// What both apps do.
async fn the_app_and_tether_share_one_sign_in(addr: SocketAddr) {
    let (status, head, _) = http_get(addr, "/login?name=Ada").await;
    assert_eq!(status, 200);
    let cookie = head
        .lines()
        .find_map(|line| line.strip_prefix("set-cookie: ").or_else(|| line.strip_prefix("Set-Cookie: ")))
        .and_then(|value| value.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let (status, _, body) = http_with(addr, "GET", "/me", &[("Cookie", &cookie)], "").await;
    assert_eq!((status, body.as_str()), (200, "Ada"));

    let (mut ada, welcome) = live(addr, Some(&cookie)).await;
    match welcome.and_then(|message| ServerFrame::decode(message.to_text().ok()?).ok()) {
        Some(ServerFrame::Welcome { user, .. }) => {
            assert_eq!((user.id.as_str(), user.name.as_str()), ("u_ada", "Ada"))
        }
        other => panic!("expected Ada's welcome, got {other:?}"),
    }
    join(&mut ada, "news", None).await;
    let (status, _, body) = http_with(addr, "POST", "/announce?text=hello", &[], "").await;
    assert_eq!((status, body.as_str()), (200, "announced as #1\n"));
    assert_eq!(next_message_in(&mut ada, "news").await.2, json!({"text": "hello"}));

    let (stranger, refused) = live(addr, None).await;
    match refused {
        Some(Message::Close(Some(frame))) => {
            assert_eq!((u16::from(frame.code), frame.reason.as_str()), (4401, "sign in at /login first"));
        }
        other => panic!("expected a 4401 close, got {other:?}"),
    }
    drop((ada, stranger));
}

#[tokio::test]
async fn the_axum_app() {
    let sessions = Sessions::default();
    let tether = built(&sessions).await;
    let app = tether_examples::axum_app::router(
        tether_examples::axum_app::App { sessions, api: tether.api() },
        &tether,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    the_app_and_tether_share_one_sign_in(addr).await;
    server.abort();
    within("stopping", tether.stop()).await;
}

#[tokio::test]
async fn the_warp_app() {
    let sessions = Sessions::default();
    let tether = built(&sessions).await;
    let routes = tether_examples::warp_app::routes(sessions, &tether);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(warp::serve(routes).incoming(listener).run());
    the_app_and_tether_share_one_sign_in(addr).await;
    server.abort();
    within("stopping", tether.stop()).await;
}
