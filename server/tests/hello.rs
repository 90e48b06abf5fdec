//! The session handshake: hello, welcome, and what is refused around it.

mod common;

use common::*;
use tether_shared::{ClientFrame, ErrorCode, PROTOCOL_VERSION, ServerFrame};

fn hello(name: Option<&str>) -> ClientFrame {
    ClientFrame::Hello { v: PROTOCOL_VERSION, token: None, name: name.map(Into::into), resume_token: None }
}

#[tokio::test]
async fn hello_is_welcomed_with_an_identity_heartbeat_and_limits() {
    let server = server().await;
    let mut client = connect(server.addr()).await;
    send(&mut client, &hello(Some("Ada"))).await;
    let ServerFrame::Welcome { v, user, heartbeat_ms, limits, session, resume_token } =
        next_frame(&mut client).await
    else {
        panic!("expected welcome");
    };
    assert_eq!(v, PROTOCOL_VERSION);
    assert_eq!(user.name, "Ada");
    assert!(user.id.starts_with("u_") && user.color.starts_with('#'));
    assert_eq!(heartbeat_ms, 5_000, "half the 10 s idle timeout");
    // Every enforced limit is announced, with the value the server runs with.
    let config = tether_server::Config::for_tests();
    let expected = tether_shared::Limits {
        max_body_bytes: config.max_body_bytes,
        publish_per_sec: config.publish_rate,
        publish_burst: config.publish_burst,
        max_rooms: config.max_rooms,
        max_message_bytes: config.max_message_bytes,
        frames_per_sec: 100.max(config.publish_rate * 2),
        max_strikes: 10,
        max_members: config.max_members,
        send_queue: config.send_queue,
        connections_per_address: config.max_connections_per_ip,
        dedupe_window_ms: config.dedupe_window.as_millis() as u64,
        state_per_sec: config.state_rate,
        max_state_bytes: 2048,
    };
    assert_eq!(limits, expected);
    assert_ne!(session, resume_token);
    server.stop().await;
}

#[tokio::test]
async fn room_frames_before_hello_are_refused_but_ping_and_echo_work() {
    let server = server().await;
    let mut client = connect(server.addr()).await;
    send(&mut client, &ClientFrame::Join { room: "general".into(), since: None, history: None }).await;
    assert!(matches!(
        next_frame(&mut client).await,
        ServerFrame::Error { code: ErrorCode::HelloRequired, .. }
    ));
    send(&mut client, &ClientFrame::Ping { nonce: 3 }).await;
    assert_eq!(next_frame(&mut client).await, ServerFrame::Pong { nonce: 3 });
    server.stop().await;
}

#[tokio::test]
async fn a_second_hello_is_refused() {
    let server = server().await;
    let mut client = connect(server.addr()).await;
    send(&mut client, &hello(None)).await;
    let ServerFrame::Welcome { user, .. } = next_frame(&mut client).await else { panic!("expected welcome") };
    assert!(user.name.starts_with("guest-"));
    send(&mut client, &hello(Some("again"))).await;
    assert!(matches!(
        next_frame(&mut client).await,
        ServerFrame::Error { code: ErrorCode::AlreadyHello, .. }
    ));
    server.stop().await;
}
