//! Server-wide budgets that no single client can exhaust: the history's bytes across
//! every room, the new rooms one address may open, and the bytes waiting in every send
//! queue together. Each is reached through real sockets, and each answer is typed.

mod common;

use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tether_shared::{ClientFrame, ErrorCode, PROTOCOL_VERSION, ServerFrame, close};
use tokio_tungstenite::tungstenite::Message;

/// A metric's value from `/metrics`.
async fn metric(addr: std::net::SocketAddr, name: &str) -> f64 {
    let (_, _, body) = http_get(addr, "/metrics").await;
    body.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} in /metrics"))
        .trim()
        .parse()
        .expect("a number")
}

/// A client that said hello from `source` (any 127.x address works on loopback).
async fn hello_from(source: &str, addr: std::net::SocketAddr, name: &str) -> Client {
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(tcp_from(source, addr).await);
    let (mut client, _) =
        within("the handshake", tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream))
            .await
            .unwrap();
    let frame =
        ClientFrame::Hello { v: PROTOCOL_VERSION, token: None, name: Some(name.into()), resume_token: None };
    send(&mut client, &frame).await;
    until(&mut client, |frame| matches!(frame, ServerFrame::Welcome { .. }).then_some(())).await;
    client
}

/// What a join got: the room's head, or the error it was refused with.
async fn try_join(client: &mut Client, room: &str) -> Result<u64, ErrorCode> {
    send(client, &ClientFrame::Join { room: room.into(), since: None, history: None }).await;
    until(client, |frame| match frame {
        ServerFrame::Joined { room: r, seq, .. } if r == room => Some(Ok(seq)),
        ServerFrame::Error { code, about: Some(about), .. } if about == room => Some(Err(code)),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn history_over_its_byte_cap_loses_the_oldest_messages_of_all_rooms_and_a_resume_is_told() {
    let (mut config, dir) = durable_config();
    config.publish_rate = 10_000;
    config.publish_burst = 10_000;
    config.history_bytes = 64 * 1024;
    let server = server_with(config).await;
    let addr = server.addr();
    let (mut alice, _, _) = hello(addr, "Alice").await;
    let body = json!({ "text": "x".repeat(1000) });
    join(&mut alice, "old", None).await;
    for i in 0..60 {
        publish(&mut alice, "old", &format!("old-{i}"), body.clone()).await;
    }
    join(&mut alice, "new", None).await;
    for i in 0..30 {
        publish(&mut alice, "new", &format!("new-{i}"), body.clone()).await;
    }
    let held = metric(addr, "tether_history_bytes").await;
    assert!(held <= 64.0 * 1024.0, "history held within its cap: {held} bytes");
    assert!(metric(addr, "tether_history_shrunk_bytes_total").await > 0.0);

    // Bob resumes both rooms from the start: the old room lost its oldest messages and
    // says so; the new room is whole.
    let (mut bob, _, _) = hello(addr, "Bob").await;
    send(&mut bob, &ClientFrame::Join { room: "old".into(), since: Some(0), history: None }).await;
    let (replayed, complete, oldest) = replay(&mut bob, "old").await;
    assert!(!complete, "the gap is told");
    assert!(oldest > 1 && replayed.first() == Some(&oldest), "replay starts at the oldest held: {oldest}");
    assert_eq!(replayed.last(), Some(&60), "the latest message stays");
    assert!(replayed.windows(2).all(|pair| pair[1] == pair[0] + 1), "what is held has no holes");
    send(&mut bob, &ClientFrame::Join { room: "new".into(), since: Some(0), history: None }).await;
    let (replayed, complete, _) = replay(&mut bob, "new").await;
    assert!(complete, "the newest room lost nothing");
    assert_eq!(replayed, (1..=30).collect::<Vec<u64>>());
    server.stop().await;
    std::fs::remove_dir_all(dir).ok();
}

/// The seqs a replay of `room` carried, and its `replayed` frame's `complete` and `oldest`.
async fn replay(client: &mut Client, room: &str) -> (Vec<u64>, bool, u64) {
    let mut seqs = Vec::new();
    within("the replay", async {
        loop {
            match next_frame(client).await {
                ServerFrame::Message { room: r, seq, .. } if r == room => seqs.push(seq),
                ServerFrame::Replayed { room: r, complete, oldest, .. } if r == room => {
                    return (seqs, complete, oldest);
                }
                _ => {}
            }
        }
    })
    .await
}

#[tokio::test]
async fn an_address_opening_room_after_room_is_refused_and_nobody_else_is() {
    let mut config = tether_server::Config::for_tests();
    config.room_creations = 5;
    config.max_rooms = 100;
    let server = server_with(config).await;
    let addr = server.addr();
    let mut opener = hello_from("127.0.0.1", addr, "Opener").await;
    for i in 0..5 {
        assert_eq!(try_join(&mut opener, &format!("new-{i}")).await, Ok(0));
    }
    assert_eq!(try_join(&mut opener, "new-5").await, Err(ErrorCode::RateLimited), "the sixth in a minute");
    // Another tab from the same address shares the quota: dev-mode names are free.
    let mut same_address = hello_from("127.0.0.1", addr, "Other name").await;
    assert_eq!(try_join(&mut same_address, "new-6").await, Err(ErrorCode::RateLimited));
    // Rooms that exist are never counted: one with members, one with history.
    assert_eq!(try_join(&mut same_address, "new-0").await, Ok(0), "a room with a member");
    publish(&mut opener, "new-1", "kept", json!("history")).await;
    send(&mut opener, &ClientFrame::Leave { room: "new-1".into() }).await;
    until(&mut opener, |frame| matches!(frame, ServerFrame::Left { .. }).then_some(())).await;
    assert_eq!(try_join(&mut opener, "new-1").await, Ok(1), "an empty room with history");
    // Another address has its own quota.
    let mut neighbour = hello_from("127.0.0.2", addr, "Neighbour").await;
    assert_eq!(try_join(&mut neighbour, "theirs").await, Ok(0));
    assert_eq!(metric(addr, "tether_room_creations_refused_total").await, 2.0);
    server.stop().await;
}

#[tokio::test]
async fn slow_readers_past_the_servers_queue_budget_are_closed_and_readers_that_keep_up_are_not() {
    let mut config = unthrottled();
    config.send_queue = 100_000;
    config.queued_bytes = 2 * 1024 * 1024;
    let server = server_with(config).await;
    let addr = server.addr();
    // Two members that never read, one that does, and a publisher.
    let mut stalled = [member(addr, "Stalled 1", "r").await, member(addr, "Stalled 2", "r").await];
    let mut reader = member(addr, "Reader", "r").await;
    let (mut publisher, _, _) = hello(addr, "Publisher").await;
    join(&mut publisher, "r", None).await;
    let (mut publishing, mut answers) = publisher.split();
    let total = 2_000;
    let acked = tokio::spawn(async move {
        let mut acks = 0;
        while acks < total {
            let next = tokio::time::timeout(PATIENCE, answers.next()).await.expect("acks keep coming");
            if let Some(Ok(Message::Text(text))) = next
                && matches!(ServerFrame::decode(&text), Ok(ServerFrame::Ack { .. }))
            {
                acks += 1;
            }
        }
        acks
    });
    let body = json!({ "text": "x".repeat(8 * 1024) });
    // The reader tells how far it got, and the publisher stays at most 64 messages
    // (512 KiB) ahead of it: the reader keeps up, the stalled members do not.
    let (progress, mut seen_by_reader) = tokio::sync::watch::channel(0usize);
    let reading = tokio::spawn(async move {
        let mut seen = 0;
        while seen < total {
            next_message_in(&mut reader, "r").await;
            seen += 1;
            progress.send_replace(seen);
        }
        seen
    });
    for i in 0..total {
        within("the reader's progress", seen_by_reader.wait_for(|&seen| seen + 64 >= i))
            .await
            .expect("the reader is alive");
        let frame =
            ClientFrame::Publish { id: format!("m{i}"), room: "r".into(), body: body.clone(), priority: 0 };
        within("sending a publish", publishing.send(Message::text(frame.encode()))).await.expect("send");
    }
    assert_eq!(within("every ack", acked).await.unwrap(), total, "every publish is acked");
    let seen = within("every message", reading).await.unwrap();
    assert_eq!(seen, total, "the reader that keeps up gets every message");
    // The stalled members were cut off: reading what reached them ends in a 4001.
    for client in &mut stalled {
        let code = loop {
            match tokio::time::timeout(PATIENCE, client.next()).await.expect("closed in time") {
                Some(Ok(Message::Close(Some(frame)))) => break u16::from(frame.code),
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        };
        assert_eq!(code, close::SLOW_CONSUMER);
    }
    assert_eq!(metric(addr, "tether_slow_consumer_drops_total").await, 2.0);
    // Once the stalled connections' tasks have ended, every queued byte is given back.
    let drained = async {
        while metric(addr, "tether_queued_bytes").await != 0.0 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(PATIENCE, drained).await.expect("the queues' bytes come back to 0");
    server.stop().await;
}
