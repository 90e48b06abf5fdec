//! The app's own sign-in: a connect handler reads the connection's cookie and decides
//! who it is, or refuses it with the app's words, on the WebSocket and the fallback.

mod common;

use common::*;
use serde_json::{Value, json};
use tether_server::{Admitted, Connecting, Server};
use tether_shared::ServerFrame;
use tether_shared::channel::Reason;

/// Signs in by the `session` cookie: `ada` is Ada, `boom` breaks the handler, anything
/// else is refused.
async fn signing_in(connecting: Connecting) -> Result<Admitted, Reason> {
    let cookie = connecting.headers.get("cookie").and_then(|value| value.to_str().ok()).unwrap_or("");
    match cookie.strip_prefix("session=") {
        Some("ada") => Ok(Admitted::user("u_ada", "Ada Lovelace")),
        Some("boom") => panic!("the session store broke"),
        _ => Err(Reason::new("signed_out", "please sign in again")),
    }
}

async fn server() -> Running {
    started(Server::new(unthrottled()).on_connect(signing_in)).await
}

#[tokio::test]
async fn the_apps_connect_handler_says_who_a_connection_is_or_refuses_it_in_its_own_words() {
    let server = server().await;
    let mut ada = with_cookie(server.addr(), "session=ada").await;
    send(&mut ada, &hello_frame("Mallory")).await;
    match next_frame(&mut ada).await {
        ServerFrame::Welcome { user, .. } => {
            assert_eq!(
                (user.id.as_str(), user.name.as_str()),
                ("u_ada", "Ada Lovelace"),
                "the app's word, not the hello's name"
            );
        }
        other => panic!("expected a welcome, got {other:?}"),
    }

    let mut stranger = with_cookie(server.addr(), "session=forged").await;
    send(&mut stranger, &hello_frame("Mallory")).await;
    assert_eq!(expect_close(&mut stranger).await, (4401, "please sign in again".to_owned()));

    let mut broken = with_cookie(server.addr(), "session=boom").await;
    send(&mut broken, &hello_frame("Mallory")).await;
    assert_eq!(expect_close(&mut broken).await.0, 1011, "a handler that fails fails that connection");

    // The fallback's open request carries the cookie too.
    let body = json!({"type": "hello", "v": 1}).to_string();
    let (status, _, opened) =
        http_with(server.addr(), "POST", "/rt/open", &[("Cookie", "session=ada")], &body).await;
    assert_eq!(status, 200, "{opened}");
    let opened: Value = serde_json::from_str(&opened).unwrap();
    assert_eq!(opened["frame"]["user"]["id"], "u_ada");

    // Ada is still connected and served.
    join(&mut ada, "lobby", None).await;
    drop((ada, stranger, broken));
    server.stop().await;
}
