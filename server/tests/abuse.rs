//! Bad input and limits: each gets a typed answer, and nobody else is hurt.

mod common;

use common::*;
use serde_json::json;
use tether_shared::{ClientFrame, ErrorCode, RejectCode, ServerFrame, close};
use tokio_tungstenite::tungstenite::Message;

async fn expect_error(client: &mut Client, code: ErrorCode) {
    match next_frame(client).await {
        ServerFrame::Error { code: got, .. } => assert_eq!(got, code),
        other => panic!("expected error {code:?}, got {other:?}"),
    }
}

async fn expect_reject(client: &mut Client, id: &str, code: RejectCode) {
    match next_frame(client).await {
        ServerFrame::Reject { id: got, code: got_code, .. } => {
            assert_eq!((got.as_str(), got_code), (id, code))
        }
        other => panic!("expected reject {code:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn each_kind_of_bad_input_gets_its_typed_answer() {
    let mut config = tether_server::Config::for_tests();
    config.max_body_bytes = 100;
    config.max_rooms = 2;
    let server = server_with(config).await;
    let (mut client, _, _) = hello(server.addr(), "Mallory").await;

    send_message(&mut client, Message::text("{{{")).await.unwrap();
    expect_error(&mut client, ErrorCode::MalformedJson).await;
    send_message(&mut client, Message::text(r#"{"type":"nuke"}"#)).await.unwrap();
    expect_error(&mut client, ErrorCode::InvalidFrame).await;
    send_message(&mut client, Message::text(r#"{"type":"join"}"#)).await.unwrap();
    expect_error(&mut client, ErrorCode::InvalidFrame).await;
    send_message(&mut client, Message::binary(vec![0u8; 8])).await.unwrap();
    expect_error(&mut client, ErrorCode::BinaryNotSupported).await;

    send(&mut client, &ClientFrame::Join { room: "bad room!".into(), since: None, history: None }).await;
    expect_error(&mut client, ErrorCode::InvalidRoom).await;

    let publish = |id: &str, room: &str, body| ClientFrame::Publish {
        id: id.into(),
        room: room.into(),
        body,
        priority: 0,
    };
    send(&mut client, &publish("p1", "nowhere", json!(1))).await;
    expect_reject(&mut client, "p1", RejectCode::NotJoined).await;
    join(&mut client, "a", None).await;
    let said_twice = r#"{"type":"publish","id":"p0","room":"a","body":{"text":"hi","text":"bye"}}"#;
    send_message(&mut client, Message::text(said_twice)).await.unwrap();
    expect_error(&mut client, ErrorCode::InvalidFrame).await;
    send(&mut client, &publish("p2", "a", json!("x".repeat(200)))).await;
    expect_reject(&mut client, "p2", RejectCode::TooLarge).await;
    send(&mut client, &publish("", "a", json!(1))).await;
    expect_reject(&mut client, "", RejectCode::InvalidId).await;
    send(&mut client, &publish(&"i".repeat(65), "a", json!(1))).await;
    expect_reject(&mut client, &"i".repeat(65), RejectCode::InvalidId).await;

    send(&mut client, &ClientFrame::Typing { room: "b".into(), active: true }).await;
    expect_error(&mut client, ErrorCode::NotJoined).await;
    join(&mut client, "b", None).await;
    send(&mut client, &ClientFrame::Join { room: "c".into(), since: None, history: None }).await;
    expect_error(&mut client, ErrorCode::TooManyRooms).await;

    // After all that, the connection still works.
    assert_eq!(publish_ok(&mut client).await, 1);
    server.stop().await;
}

async fn publish_ok(client: &mut Client) -> u64 {
    publish(client, "a", "fine", json!("ok")).await.0
}

/// A body nested past the limit could not be read back inside the envelopes history
/// comes in (the API's answer adds three levels) by a decoder that stops at 128.
#[tokio::test]
async fn a_body_nested_past_the_limit_is_too_large_and_one_at_it_is_stored() {
    let server = server().await;
    let (mut client, _, _) = hello(server.addr(), "Deep").await;
    join(&mut client, "a", None).await;
    let nested = |depth: usize| (0..depth).fold(json!(1), |inner, _| json!([inner]));
    let too_deep = ClientFrame::Publish {
        id: "too-deep".into(),
        room: "a".into(),
        body: nested(tether_shared::frame::MAX_BODY_DEPTH + 1),
        priority: 0,
    };
    send(&mut client, &too_deep).await;
    expect_reject(&mut client, "too-deep", RejectCode::TooLarge).await;
    let (seq, _) = publish(&mut client, "a", "deepest", nested(tether_shared::frame::MAX_BODY_DEPTH)).await;
    assert_eq!(seq, 1, "the first message stored in the room");
    server.stop().await;
}

#[tokio::test]
async fn repeated_garbage_closes_with_1008_and_others_carry_on() {
    let server = server().await;
    let (mut alice, _, _) = hello(server.addr(), "Alice").await;
    let (mut bob, _, _) = hello(server.addr(), "Bob").await;
    join(&mut alice, "r", None).await;
    join(&mut bob, "r", None).await;
    let mut mallory = connect(server.addr()).await;
    for _ in 0..20 {
        if send_message(&mut mallory, Message::text("garbage")).await.is_err() {
            break;
        }
    }
    assert_eq!(expect_close(&mut mallory).await, (close::POLICY, "too many invalid frames".into()));
    let (seq, _) = publish(&mut alice, "r", "still-here", json!("hi")).await;
    assert_eq!(next_message_in(&mut bob, "r").await.0, seq);
    server.stop().await;
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    use tokio_tungstenite::tungstenite::protocol::frame::{
        Frame,
        coding::{Data, OpCode},
    };
    let server = server().await;
    let mut client = connect(server.addr()).await;
    let frame = Frame::message(vec![0xff, 0xfe, 0xfd], OpCode::Data(Data::Text), true);
    send_message(&mut client, Message::Frame(frame)).await.unwrap();
    assert_eq!(expect_close(&mut client).await.0, close::INVALID_PAYLOAD);
    server.stop().await;
}

#[tokio::test]
async fn the_publish_rate_limit_rejects_with_a_retryable_code() {
    let mut config = tether_server::Config::for_tests();
    config.publish_rate = 1;
    config.publish_burst = 2;
    let server = server_with(config).await;
    let mut client = member(server.addr(), "Eager", "r").await;
    for i in 0..3 {
        send(
            &mut client,
            &ClientFrame::Publish { id: format!("m{i}"), room: "r".into(), body: json!(i), priority: 0 },
        )
        .await;
    }
    let outcome = until(&mut client, |f| match f {
        ServerFrame::Reject { id, code, .. } => Some((id, code)),
        _ => None,
    })
    .await;
    assert_eq!(outcome, ("m2".to_owned(), RejectCode::RateLimited));
    assert!(RejectCode::RateLimited.retryable());
    server.stop().await;
}

#[tokio::test]
async fn connections_per_ip_are_capped_with_1013() {
    let mut config = tether_server::Config::for_tests();
    config.max_connections_per_ip = 2;
    let server = server_with(config).await;
    let (_a, _, _) = hello(server.addr(), "a").await;
    let (_b, _, _) = hello(server.addr(), "b").await;
    let mut third = connect(server.addr()).await;
    assert_eq!(expect_close(&mut third).await.0, close::TRY_AGAIN_LATER);
    drop(_a);
    // A freed slot is usable again (the server notices the close, then admits).
    let mut admitted = None;
    for _ in 0..50 {
        let mut next = connect(server.addr()).await;
        send(&mut next, &ClientFrame::Ping { nonce: 1 }).await;
        if let Some(Message::Text(_)) = next_message(&mut next).await {
            admitted = Some(next);
            break;
        }
    }
    assert!(admitted.is_some(), "a slot was freed");
    server.stop().await;
}

#[tokio::test]
async fn rooms_have_a_member_cap() {
    let mut config = tether_server::Config::for_tests();
    config.max_members = 1;
    let server = server_with(config).await;
    let (mut a, _, _) = hello(server.addr(), "a").await;
    let (mut b, _, _) = hello(server.addr(), "b").await;
    join(&mut a, "r", None).await;
    send(&mut b, &ClientFrame::Join { room: "r".into(), since: None, history: None }).await;
    expect_error(&mut b, ErrorCode::RoomFull).await;
    server.stop().await;
}

#[tokio::test]
async fn a_slow_consumer_is_closed_with_4001_and_the_publisher_is_unaffected() {
    let mut config = tether_server::Config::for_tests();
    config.send_queue = 8;
    config.publish_rate = 100_000;
    config.publish_burst = 100_000;
    config.max_body_bytes = 60_000;
    let server = server_with(config).await;
    let (mut publisher, _, _) = hello(server.addr(), "Firehose").await;
    let (mut sloth, _, _) = hello(server.addr(), "Sloth").await;
    join(&mut publisher, "r", None).await;
    join(&mut sloth, "r", None).await;
    // The sloth stops reading while the publisher sends ~30 MB, far beyond socket buffers.
    let firehose = tokio::spawn(async move {
        let body = json!("z".repeat(50_000));
        for i in 0..600 {
            publish(&mut publisher, "r", &format!("m{i}"), body.clone()).await;
        }
        publisher
    });
    // Once the server has marked it slow, the sloth reads again: it gets what was
    // already on its way, then the close.
    let addr = server.addr();
    eventually("the sloth marked slow in /metrics", || async {
        http_get(addr, "/metrics").await.2.contains("tether_slow_consumer_drops_total 1")
    })
    .await;
    let code = within("the sloth's close", async {
        loop {
            match next_message(&mut sloth).await {
                Some(Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
                Some(_) => continue,
                None => break None,
            }
        }
    })
    .await;
    assert_eq!(code, Some(close::SLOW_CONSUMER));
    let mut publisher =
        tokio::time::timeout(std::time::Duration::from_secs(60), firehose).await.unwrap().unwrap();
    assert_eq!(publish(&mut publisher, "r", "last", json!("done")).await.0, 601, "every publish was acked");
    server.stop().await;
}

#[tokio::test]
async fn random_bytes_never_hurt_the_server() {
    let server = server().await;
    let mut alice = member(server.addr(), "Alice", "r").await;
    let mut rng = fastrand::Rng::with_seed(7);
    for _round in 0..30 {
        let mut fuzzer = connect(server.addr()).await;
        for _ in 0..8 {
            let length = rng.usize(0..300);
            let bytes: Vec<u8> = (0..length).map(|_| rng.u8(..)).collect();
            let message = if rng.bool() {
                Message::text(String::from_utf8_lossy(&bytes).into_owned())
            } else {
                Message::binary(bytes)
            };
            if send_message(&mut fuzzer, message).await.is_err() {
                break;
            }
        }
        // Every answer is an error frame or a close; never silence, never a crash.
        send(&mut fuzzer, &ClientFrame::Ping { nonce: 1 }).await;
        within("a pong or a close after the noise", async {
            loop {
                match next_message(&mut fuzzer).await {
                    Some(Message::Text(text)) => match ServerFrame::decode(&text).unwrap() {
                        ServerFrame::Pong { .. } => break,
                        ServerFrame::Error { .. } => continue,
                        other => panic!("unexpected {other:?}"),
                    },
                    Some(Message::Close(_)) | None => break,
                    Some(_) => continue,
                }
            }
        })
        .await;
    }
    let (seq, _) = publish(&mut alice, "r", "after-fuzz", json!("still fine")).await;
    assert_eq!(seq, 1);
    server.stop().await;
}

#[tokio::test]
async fn half_sent_upgrades_count_against_the_quota_and_time_out() {
    use tokio::io::AsyncWriteExt;
    let mut config = tether_server::Config::for_tests();
    config.max_connections_per_ip = 20;
    let server = server_with(config).await;
    let addr = server.addr();
    // One address opens far more connections than its quota, each sending half an
    // upgrade request and then nothing.
    let mut attack = Vec::new();
    for _ in 0..200 {
        let mut stream = tcp_from("127.0.0.1", addr).await;
        let _ = stream.write_all(b"GET /ws HTTP/1.1\r\nHost: tether\r\n").await;
        attack.push(stream);
    }
    // The quota (20) and a few connections that are only to be told they are refused (8)
    // are held; beyond them the server closes connections at once.
    let held = 20 + 8;
    for stream in attack.iter_mut().skip(held) {
        tokio::time::timeout(PATIENCE, closed_by_server(stream)).await.expect("closed at the door");
    }
    for stream in &attack[..held] {
        let mut byte = [0u8; 1];
        let pending = stream.try_read(&mut byte);
        assert!(
            matches!(&pending, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "held until its headers are late: {pending:?}"
        );
    }
    // Meanwhile a well-behaved client from another address gets in and is served.
    assert!(pinged_from("127.0.0.2", addr).await, "served while attacked");
    // The attacker's own address is full: its next connection is not served.
    let mut more = tcp_from("127.0.0.1", addr).await;
    let _ = more.write_all(b"GET /healthz HTTP/1.1\r\nHost: tether\r\n\r\n").await;
    tokio::time::timeout(PATIENCE, closed_by_server(&mut more)).await.expect("closed at the door");
    // The half-sent requests the server did hold are closed once their headers are late,
    // and the address can connect again.
    for stream in attack.iter_mut().take(held) {
        tokio::time::timeout(PATIENCE, closed_by_server(stream)).await.expect("headers timed out");
    }
    assert!(pinged_from("127.0.0.1", addr).await, "the quota came back");
    server.stop().await;
}
