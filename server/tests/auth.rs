//! Tokens, room authorization, the Origin allow-list, and the dev token endpoint.

mod common;

use common::*;
use tether_server::{Claims, sign_token};
use tether_shared::{ClientFrame, ErrorCode, ServerFrame, close};

const SECRET: &str = "test-secret-of-decent-length";

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn token(secret: &str, rooms: &[&str], exp: u64) -> String {
    let claims = Claims {
        sub: "u_ada".into(),
        name: "Ada".into(),
        rooms: rooms.iter().map(|r| r.to_string()).collect(),
        exp,
    };
    sign_token(secret.as_bytes(), &claims)
}

async fn secured() -> Running {
    let mut config = tether_server::Config::for_tests();
    config.auth_secret = Some(SECRET.into());
    server_with(config).await
}

async fn hello_with(addr: std::net::SocketAddr, token: Option<String>) -> Client {
    let mut client = connect(addr).await;
    send(&mut client, &ClientFrame::Hello { v: 1, token, name: Some("Ada".into()), resume_token: None })
        .await;
    client
}

#[tokio::test]
async fn with_a_secret_a_valid_token_is_required() {
    let server = secured().await;
    let mut anonymous = hello_with(server.addr(), None).await;
    assert_eq!(expect_close(&mut anonymous).await, (close::UNAUTHORIZED, "a token is required".into()));

    let mut forged = hello_with(server.addr(), Some(token("wrong-secret", &["*"], now() + 60))).await;
    assert_eq!(expect_close(&mut forged).await, (close::UNAUTHORIZED, "invalid token".into()));

    let mut expired = hello_with(server.addr(), Some(token(SECRET, &["*"], now() - 1))).await;
    assert_eq!(expect_close(&mut expired).await, (close::TOKEN_EXPIRED, "token expired".into()));
    assert!(!tether_shared::close::retry_allowed(close::TOKEN_EXPIRED));

    let mut valid = hello_with(server.addr(), Some(token(SECRET, &["*"], now() + 60))).await;
    let ServerFrame::Welcome { user, .. } = next_frame(&mut valid).await else { panic!("welcome") };
    assert_eq!((user.id.as_str(), user.name.as_str()), ("u_ada", "Ada"));
    server.stop().await;
}

#[tokio::test]
async fn rooms_are_authorized_at_join() {
    let server = secured().await;
    let mut client = hello_with(server.addr(), Some(token(SECRET, &["team-*"], now() + 60))).await;
    next_frame(&mut client).await;
    let (head, _) = join(&mut client, "team-7", None).await;
    assert_eq!(head, 0);
    send(&mut client, &ClientFrame::Join { room: "general".into(), since: None, history: None }).await;
    match next_frame(&mut client).await {
        ServerFrame::Error { code, about, .. } => {
            assert_eq!((code, about.as_deref()), (ErrorCode::Forbidden, Some("general")));
        }
        other => panic!("expected forbidden, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn an_unsupported_protocol_version_is_refused_for_good() {
    let server = server().await;
    let mut client = connect(server.addr()).await;
    send(&mut client, &ClientFrame::Hello { v: 99, token: None, name: None, resume_token: None }).await;
    assert_eq!(expect_close(&mut client).await.0, close::BAD_HELLO);
    server.stop().await;
}

#[tokio::test]
async fn origins_outside_the_allow_list_are_closed_with_4408() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut config = tether_server::Config::for_tests();
    config.allowed_origins = vec!["https://chat.example".into()];
    let server = server_with(config).await;
    let with_origin = |origin: &str| {
        let mut request = format!("ws://{}/ws", server.addr()).into_client_request().unwrap();
        request.headers_mut().insert("Origin", origin.parse().unwrap());
        request
    };
    let (mut evil, _) =
        within("the handshake", tokio_tungstenite::connect_async(with_origin("https://evil.example")))
            .await
            .unwrap();
    assert_eq!(expect_close(&mut evil).await, (close::ORIGIN_FORBIDDEN, "origin not allowed".into()));
    let (mut good, _) =
        within("the handshake", tokio_tungstenite::connect_async(with_origin("https://chat.example")))
            .await
            .unwrap();
    send(&mut good, &ClientFrame::Ping { nonce: 1 }).await;
    assert_eq!(next_frame(&mut good).await, ServerFrame::Pong { nonce: 1 });
    server.stop().await;
}

#[tokio::test]
async fn dev_mode_hands_out_tokens_that_the_server_accepts() {
    let server = server().await;
    let (status, _, body) = http_get(server.addr(), "/api/token?name=Grace").await;
    assert_eq!(status, 200);
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = answer["token"].as_str().unwrap().to_owned();
    assert_eq!(answer["user"]["name"], "Grace");
    let mut client = hello_with(server.addr(), Some(token)).await;
    let ServerFrame::Welcome { user, .. } = next_frame(&mut client).await else { panic!("welcome") };
    assert_eq!((user.name.as_str(), user.id.as_str()), ("Grace", answer["user"]["id"].as_str().unwrap()));
    server.stop().await;

    let server = secured().await;
    let (status, _, body) = http_get(server.addr(), "/api/token?name=Grace").await;
    assert_eq!(status, 404, "with a secret, tokens come from the integrator's backend");
    assert!(body.contains("tokens_are_issued_by_your_backend"));
    server.stop().await;
}

#[tokio::test]
async fn metrics_and_readiness() {
    let server = server().await;
    let mut alice = member(server.addr(), "Alice", "r").await;
    publish(&mut alice, "r", "m1", serde_json::json!(1)).await;
    publish(&mut alice, "r", "m1", serde_json::json!(1)).await;
    send(&mut alice, &ClientFrame::Join { room: "no way".into(), since: None, history: None }).await;
    next_frame(&mut alice).await;

    let (status, head, metrics) = http_get(server.addr(), "/metrics").await;
    assert_eq!(status, 200);
    assert!(head.contains("openmetrics-text"), "{head}");
    for line in [
        "tether_connections 1",
        "tether_rooms 1",
        "tether_acks_total 1",
        "tether_duplicates_suppressed_total 1",
        "tether_publishes_total 2",
        "tether_errors_total{code=\"invalid_room\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing `{line}` in\n{metrics}");
    }
    assert!(metrics.contains("tether_store_commit_seconds_count 1"), "{metrics}");
    let (status, _, body) = http_get(server.addr(), "/readyz").await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    server.stop().await;
}

fn token_for(sub: &str, secret: &str, exp: u64) -> String {
    let claims = Claims { sub: sub.into(), name: sub.into(), rooms: vec!["*".into()], exp };
    sign_token(secret.as_bytes(), &claims)
}

#[tokio::test]
async fn a_token_is_refreshed_in_place_before_it_expires() {
    let server = secured().await;
    // The warning (30 s ahead by default) is due at once for a token that expires in 5 s.
    let mut client = hello_with(server.addr(), Some(token(SECRET, &["*"], now() + 5))).await;
    assert!(matches!(next_frame(&mut client).await, ServerFrame::Welcome { .. }));
    // The warning is pushed at once; the join's answer may come before or after it.
    send(&mut client, &ClientFrame::Join { room: "r".into(), since: None, history: None }).await;
    let (mut joined, mut expiring) = (false, None);
    within("joined and warned", async {
        while !joined || expiring.is_none() {
            match next_frame(&mut client).await {
                ServerFrame::Joined { .. } => joined = true,
                ServerFrame::TokenExpiring { expires_at } => expiring = Some(expires_at),
                _ => {}
            }
        }
    })
    .await;
    let expiring = expiring.expect("warned");
    assert!(expiring > now(), "told before it expires");

    let refusals = [
        (token_for("u_mallory", SECRET, now() + 60), "another user's token"),
        (token_for("u_ada", "wrong-secret", now() + 60), "a forged token"),
        (token_for("u_ada", SECRET, now() - 1), "an expired token"),
        (String::new(), "an empty token"),
        ("not a token".into(), "words"),
        ("a.b.c".into(), "three parts of nothing"),
        ("%%%.%%%".into(), "not base64"),
        ("x".repeat(8_000), "8 KB of one letter"),
        (token_for("u_ada", SECRET, now() + 60).replace('.', ".."), "a token with its parts doubled"),
    ];
    for (refused, what) in refusals {
        send(&mut client, &ClientFrame::Refresh { token: refused }).await;
        match next_frame(&mut client).await {
            ServerFrame::Error { code: ErrorCode::TokenRefused, .. } => {}
            other => panic!("{what}: {other:?}"),
        }
    }

    let renewed = now() + 3;
    send(&mut client, &ClientFrame::Refresh { token: token_for("u_ada", SECRET, renewed) }).await;
    assert_eq!(next_frame(&mut client).await, ServerFrame::Refreshed { expires_at: renewed });
    // The same socket, still in its room: a publish goes through. The new credential
    // has its own warning, due at once too.
    let publish =
        ClientFrame::Publish { id: "m1".into(), room: "r".into(), body: serde_json::json!(1), priority: 0 };
    send(&mut client, &publish).await;
    let (mut acked, mut warned) = (false, false);
    within("acked and warned again", async {
        while !(acked && warned) {
            match next_frame(&mut client).await {
                ServerFrame::Ack { seq: 1, .. } => acked = true,
                ServerFrame::TokenExpiring { expires_at } if expires_at == renewed => warned = true,
                _ => {}
            }
        }
    })
    .await;
    // Unrefreshed, it closes the connection when it expires.
    assert_eq!(expect_close(&mut client).await, (close::TOKEN_EXPIRED, "token expired".into()));
    assert!(now() >= renewed, "closed at the renewed expiry, not before");
    server.stop().await;
}
