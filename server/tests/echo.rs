//! The echo slice and frame-level error answers, over a real socket.

mod common;

use common::*;
use serde_json::json;
use tether_shared::{ClientFrame, ErrorCode, ServerFrame};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn echo_returns_the_body_unchanged() {
    let server = server().await;
    let mut client = connect(server.addr()).await;
    let body = json!({"text": "héllo", "n": [1, 2, 3]});
    send(&mut client, &ClientFrame::Echo { body: body.clone() }).await;
    assert_eq!(next_frame(&mut client).await, ServerFrame::Echo { body });
    server.stop().await;
}

#[tokio::test]
async fn ping_gets_the_matching_pong() {
    let server = server().await;
    let mut client = connect(server.addr()).await;
    send(&mut client, &ClientFrame::Ping { nonce: 42 }).await;
    assert_eq!(next_frame(&mut client).await, ServerFrame::Pong { nonce: 42 });
    server.stop().await;
}

#[tokio::test]
async fn bad_frames_get_typed_errors_and_the_socket_stays_open() {
    let server = server().await;
    let mut client = connect(server.addr()).await;

    send_message(&mut client, Message::text("{not json")).await.unwrap();
    assert!(matches!(
        next_frame(&mut client).await,
        ServerFrame::Error { code: ErrorCode::MalformedJson, .. }
    ));

    send_message(&mut client, Message::text(r#"{"type":"teleport"}"#)).await.unwrap();
    assert!(matches!(
        next_frame(&mut client).await,
        ServerFrame::Error { code: ErrorCode::InvalidFrame, .. }
    ));

    send_message(&mut client, Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert!(matches!(
        next_frame(&mut client).await,
        ServerFrame::Error { code: ErrorCode::BinaryNotSupported, .. }
    ));

    // Still usable after all of that.
    send(&mut client, &ClientFrame::Ping { nonce: 7 }).await;
    assert_eq!(next_frame(&mut client).await, ServerFrame::Pong { nonce: 7 });
    server.stop().await;
}

#[tokio::test]
async fn oversize_message_closes_with_1009() {
    let mut config = tether_server::Config::for_tests();
    config.max_message_bytes = 1024;
    let server = server_with(config).await;
    let mut client = connect(server.addr()).await;
    let body = json!("x".repeat(4096));
    send(&mut client, &ClientFrame::Echo { body }).await;
    assert_eq!(expect_close(&mut client).await.0, 1009);
    server.stop().await;
}

#[tokio::test]
async fn stop_closes_open_sockets_with_1001() {
    let server = server().await;
    let mut first = connect(server.addr()).await;
    let mut second = connect(server.addr()).await;
    // Make sure both connections are fully served before stopping.
    send(&mut first, &ClientFrame::Ping { nonce: 1 }).await;
    send(&mut second, &ClientFrame::Ping { nonce: 2 }).await;
    next_frame(&mut first).await;
    next_frame(&mut second).await;

    let stopping = tokio::spawn(server.stop());
    let expected = (1001, tether_server::SHUTDOWN_CLOSE.reason.to_string());
    assert_eq!(expect_close(&mut first).await, expected);
    assert_eq!(expect_close(&mut second).await, expected);
    tokio::time::timeout(PATIENCE, stopping).await.expect("stop returns").unwrap();
}

#[tokio::test]
async fn the_drop_endpoint_exists_only_when_enabled() {
    let server = server().await;
    assert_eq!(http(server.addr(), "POST", "/api/test/drop").await.0, 404);
    server.stop().await;

    let mut config = tether_server::Config::for_tests();
    config.test_endpoints = true;
    let server = server_with(config).await;
    let mut client = connect(server.addr()).await;
    send(&mut client, &ClientFrame::Ping { nonce: 1 }).await;
    next_frame(&mut client).await;
    assert_eq!(http(server.addr(), "POST", "/api/test/drop").await.0, 200);
    assert_eq!(expect_close(&mut client).await.0, tether_shared::close::SERVICE_RESTART);
    server.stop().await;
}
