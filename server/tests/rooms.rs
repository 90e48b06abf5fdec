//! Rooms end to end: ordering, acks, dedupe, history and resume, presence, typing,
//! receipts, with real clients on a real server.

mod common;

use common::*;
use serde_json::json;
use tether_shared::{ClientFrame, ReceiptKind, ServerFrame};

#[tokio::test]
async fn members_see_the_same_order_and_the_sender_gets_acks_with_seqs() {
    let server = server().await;
    let (mut alice, _, _) = hello(server.addr(), "Alice").await;
    let (mut bob, _, _) = hello(server.addr(), "Bob").await;
    join(&mut alice, "general", None).await;
    join(&mut bob, "general", None).await;

    // Interleaved publishers, without waiting for acks in between.
    for i in 0..10 {
        let (client, who) = if i % 2 == 0 { (&mut alice, "a") } else { (&mut bob, "b") };
        let frame = ClientFrame::Publish {
            id: format!("{who}{i}"),
            room: "general".into(),
            body: json!(i),
            priority: 0,
        };
        send(client, &frame).await;
    }
    let mut seen = Vec::new();
    for client in [&mut alice, &mut bob] {
        let mut order = Vec::new();
        for _ in 0..10 {
            order.push(next_message_in(client, "general").await);
        }
        seen.push(order);
    }
    assert_eq!(seen[0], seen[1], "both members see one total order");
    let seqs: Vec<u64> = seen[0].iter().map(|(seq, _, _)| *seq).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>(), "seqs start at 1 and increase by one");
    server.stop().await;
}

#[tokio::test]
async fn a_resent_message_gets_its_original_ack_and_is_not_broadcast_twice() {
    let server = server().await;
    let (mut alice, _, _) = hello(server.addr(), "Alice").await;
    let (mut bob, _, _) = hello(server.addr(), "Bob").await;
    join(&mut alice, "r", None).await;
    join(&mut bob, "r", None).await;

    let first = publish(&mut alice, "r", "dup-1", json!("hello")).await;
    let again = publish(&mut alice, "r", "dup-1", json!("hello")).await;
    assert_eq!(first, again, "same seq and timestamp");
    publish(&mut alice, "r", "after", json!("sentinel")).await;

    assert_eq!(next_message_in(&mut bob, "r").await.1, "dup-1");
    assert_eq!(next_message_in(&mut bob, "r").await.1, "after", "no second copy in between");
    server.stop().await;
}

#[tokio::test]
async fn resume_replays_exactly_what_was_missed_then_goes_live() {
    let server = server().await;
    let (mut alice, _, _) = hello(server.addr(), "Alice").await;
    let (mut bob, _, resume_token) = hello(server.addr(), "Bob").await;
    join(&mut alice, "r", None).await;
    join(&mut bob, "r", None).await;
    let (seen, _) = publish(&mut alice, "r", "m1", json!(1)).await;
    assert_eq!(next_message_in(&mut bob, "r").await.0, seen);

    hang_up(&mut bob).await;
    for i in 2..=4 {
        publish(&mut alice, "r", &format!("m{i}"), json!(i)).await;
    }

    let mut bob = connect(server.addr()).await;
    let hello = ClientFrame::Hello { v: 1, token: None, name: None, resume_token: Some(resume_token) };
    send(&mut bob, &hello).await;
    next_frame(&mut bob).await;
    send(
        &mut bob,
        &ClientFrame::Resume {
            rooms: vec![tether_shared::RoomCursor { room: "r".into(), since: Some(seen), history: None }],
        },
    )
    .await;
    let ServerFrame::Joined { seq: head, .. } = next_frame(&mut bob).await else { panic!("joined first") };
    assert_eq!(head, 4);
    let replayed: Vec<u64> =
        [next_frame(&mut bob).await, next_frame(&mut bob).await, next_frame(&mut bob).await]
            .into_iter()
            .map(|f| if let ServerFrame::Message { seq, .. } = f { seq } else { panic!("{f:?}") })
            .collect();
    assert_eq!(replayed, [2, 3, 4]);
    assert_eq!(
        next_frame(&mut bob).await,
        ServerFrame::Replayed { room: "r".into(), to: 4, complete: true, oldest: 1 }
    );
    publish(&mut alice, "r", "m5", json!(5)).await;
    assert_eq!(next_message_in(&mut bob, "r").await.0, 5, "live after the replay, no gap, no duplicate");
    server.stop().await;
}

#[tokio::test]
async fn a_gap_older_than_the_history_is_reported_not_hidden() {
    let mut config = unthrottled();
    config.history_messages = 10;
    let server = server_with(config).await;
    let mut alice = member(server.addr(), "Alice", "r").await;
    for i in 0..130 {
        publish(&mut alice, "r", &format!("m{i}"), json!(i)).await;
    }
    let (mut late, _, _) = hello(server.addr(), "Late").await;
    send(&mut late, &ClientFrame::Join { room: "r".into(), since: Some(1), history: None }).await;
    let replayed = until(&mut late, |f| match f {
        ServerFrame::Replayed { complete, oldest, to, .. } => Some((complete, oldest, to)),
        _ => None,
    })
    .await;
    assert!(!replayed.0, "incomplete");
    assert!(replayed.1 > 2, "oldest held is past the cursor: {replayed:?}");
    assert_eq!(replayed.2, 130);
    server.stop().await;
}

#[tokio::test]
async fn a_cursor_beyond_the_head_is_named_then_everything_held_is_replayed() {
    let server = server().await;
    let mut alice = member(server.addr(), "Alice", "r").await;
    for i in 0..2 {
        publish(&mut alice, "r", &format!("m{i}"), json!(i)).await;
    }
    // A cursor from a history this room no longer has (say, before its store was wiped).
    let (mut stale, _, _) = hello(server.addr(), "Stale").await;
    send(&mut stale, &ClientFrame::Join { room: "r".into(), since: Some(50), history: None }).await;
    let seen: Vec<String> = frames_until(&mut stale, |f| matches!(f, ServerFrame::Replayed { .. }))
        .await
        .into_iter()
        .filter_map(|frame| match frame {
            ServerFrame::Joined { seq, .. } => Some(format!("joined {seq}")),
            ServerFrame::Error { code, about, .. } => Some(format!("error {code:?} {about:?}")),
            ServerFrame::Message { seq, .. } => Some(format!("message {seq}")),
            ServerFrame::Replayed { complete, .. } => Some(format!("replayed complete={complete}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        seen,
        ["joined 2", "error CursorAhead Some(\"r\")", "message 1", "message 2", "replayed complete=false"]
    );
    server.stop().await;
}

#[tokio::test]
async fn presence_snapshot_diffs_and_tabs_of_one_user_count_once() {
    let server = server().await;
    let (mut alice, alice_user, alice_token) = hello(server.addr(), "Alice").await;
    join(&mut alice, "r", None).await;
    let (mut bob, bob_user, _) = hello(server.addr(), "Bob").await;
    let (_, members) = join(&mut bob, "r", None).await;
    let mut names: Vec<String> = members.iter().map(|u| u.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["Alice", "Bob"]);
    // Diffs may repeat what a client knows (Alice's own arrival); Bob's arrives as a diff.
    let joined = until(&mut alice, |f| match f {
        ServerFrame::Presence { joined, .. } if joined.iter().any(|u| u.id == bob_user.id) => Some(joined),
        _ => None,
    })
    .await;
    assert_eq!(joined, std::slice::from_ref(&bob_user));

    // A second tab of Alice: same user through the resume token, no presence change.
    let mut tab = connect(server.addr()).await;
    send(&mut tab, &ClientFrame::Hello { v: 1, token: None, name: None, resume_token: Some(alice_token) })
        .await;
    let ServerFrame::Welcome { user, .. } = next_frame(&mut tab).await else { panic!("welcome") };
    assert_eq!(user.id, alice_user.id);
    let (_, members) = join(&mut tab, "r", None).await;
    assert_eq!(members.len(), 2, "two users, not three members");
    hang_up(&mut tab).await;
    // The tab is gone from the server (its rooms are left before its connection is let go).
    let api = server.api();
    eventually("the second tab let go", || async { api.stats().await.connections == 2 }).await;

    // Bob hears nothing about Alice's second tab closing. Presence is told at most once
    // a tick, so a ping is no marker for it: Carol's arrival is, a diff that would carry
    // (or come after) anything the closing tab set off.
    let (mut carol, carol_user, _) = hello(server.addr(), "Carol").await;
    join(&mut carol, "r", None).await;
    let heard = frames_until(
        &mut bob,
        |f| matches!(f, ServerFrame::Presence { joined, .. } if joined.iter().any(|u| u.id == carol_user.id)),
    )
    .await;
    for frame in &heard {
        if let ServerFrame::Presence { left, count, joined, .. } = frame {
            let expected = if joined.iter().any(|u| u.id == carol_user.id) { 3 } else { 2 };
            assert!(left.is_empty() && *count == expected, "Bob heard of the tab closing: {heard:?}");
        }
    }

    // Bob leaves: Alice hears it.
    hang_up(&mut bob).await;
    let (left, count) = until(&mut alice, |f| match f {
        ServerFrame::Presence { left, count, .. } if !left.is_empty() => Some((left, count)),
        _ => None,
    })
    .await;
    assert_eq!((left, count), (vec![bob_user.id], 2), "Alice and Carol are left");
    server.stop().await;
}

#[tokio::test]
async fn a_vanished_client_leaves_presence_within_the_idle_timeout() {
    use tether_shared::{ConnectionConfig, Event, Input};
    let mut config = tether_server::Config::for_tests();
    config.idle_timeout = std::time::Duration::from_millis(600);
    let server = server_with(config).await;
    // Alice is a real client: it heartbeats at the pace the welcome sets, so it stays.
    let alice_config = ConnectionConfig { name: Some("Alice".into()), ..ConnectionConfig::default() };
    let mut alice = tether_client::Client::spawn(format!("ws://{}/ws", server.addr()), alice_config);
    alice.input(Input::Join("r".into()));
    alice.input(Input::Connect);
    alice
        .wait_for(PATIENCE, |e| matches!(e, Event::Frame(ServerFrame::Joined { .. })).then_some(()))
        .await
        .expect("alice joined");
    // The ghost joins, then goes silent without closing: a vanished laptop.
    let (mut ghost, ghost_user, _) = hello(server.addr(), "Ghost").await;
    join(&mut ghost, "r", None).await;
    let silent_since = std::time::Instant::now();
    let left = alice
        .wait_for(PATIENCE, |e| match e {
            Event::Frame(ServerFrame::Presence { left, .. }) if !left.is_empty() => Some(left.clone()),
            _ => None,
        })
        .await
        .expect("the ghost left presence");
    let waited = silent_since.elapsed();
    assert_eq!(left, [ghost_user.id]);
    assert!(waited >= std::time::Duration::from_millis(500), "left too soon: {waited:?}");
    println!("a silent client left presence after {waited:?} (idle timeout 600 ms)");
    assert_eq!(expect_close(&mut ghost).await.0, tether_shared::close::IDLE_TIMEOUT);
    server.stop().await;
}

#[tokio::test]
async fn typing_reaches_others_and_receipts_reach_the_room() {
    let server = server().await;
    let (mut alice, alice_user, _) = hello(server.addr(), "Alice").await;
    let (mut bob, bob_user, _) = hello(server.addr(), "Bob").await;
    join(&mut alice, "r", None).await;
    join(&mut bob, "r", None).await;
    send(&mut alice, &ClientFrame::Typing { room: "r".into(), active: true }).await;
    let typing = until(&mut bob, |f| {
        if let ServerFrame::Typing { user, active, .. } = f { Some((user, active)) } else { None }
    })
    .await;
    assert_eq!(typing, (alice_user, true));

    send(&mut bob, &ClientFrame::Receipt { room: "r".into(), kind: ReceiptKind::Read, seq: 7 }).await;
    // Everything Alice got since her join, none skipped: Bob's receipt, then up to a pong.
    let mut heard = frames_until(&mut alice, |f| matches!(f, ServerFrame::Receipt { .. })).await;
    let Some(ServerFrame::Receipt { user, kind, seq, .. }) = heard.last().cloned() else { unreachable!() };
    assert_eq!((user, kind, seq), (bob_user.id, ReceiptKind::Read, 7));
    heard.extend(frames_until_pong(&mut alice).await);
    // The typist does not hear their own typing.
    assert!(
        !heard.iter().any(|f| matches!(f, ServerFrame::Typing { .. })),
        "Alice heard her own typing: {heard:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn shutdown_acks_what_was_received_before_saying_goodbye() {
    let config = unthrottled();
    let server = server_with(config).await;
    let mut alice = member(server.addr(), "Alice", "r").await;
    for i in 0..50 {
        send(
            &mut alice,
            &ClientFrame::Publish { id: format!("m{i}"), room: "r".into(), body: json!(i), priority: 0 },
        )
        .await;
    }
    // Every publish was read once the echo comes back: the server reads in order.
    send(&mut alice, &ClientFrame::Echo { body: json!("all sent") }).await;
    let mut acked = frames_until(&mut alice, |f| matches!(f, ServerFrame::Echo { .. }))
        .await
        .iter()
        .filter(|f| matches!(f, ServerFrame::Ack { .. }))
        .count();
    let before_stop = acked;
    let stopping = tokio::spawn(server.stop());
    let close = within("the goodbye", async {
        loop {
            match next_message(&mut alice).await {
                Some(tokio_tungstenite::tungstenite::Message::Text(text)) => {
                    if let ServerFrame::Ack { .. } = ServerFrame::decode(&text).unwrap() {
                        acked += 1;
                    }
                }
                Some(tokio_tungstenite::tungstenite::Message::Close(frame)) => {
                    break frame.map(|f| u16::from(f.code));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(close, Some(1001));
    within("the server stopping", stopping).await.unwrap();
    assert_eq!(acked, 50, "every publish received before the shutdown was acked before the close");
    println!("{} of 50 acks arrived after the shutdown began", acked - before_stop);
}

#[tokio::test]
async fn a_first_join_can_ask_for_recent_history() {
    let server = server().await;
    let mut alice = member(server.addr(), "Alice", "r").await;
    for i in 1..=5 {
        publish(&mut alice, "r", &format!("m{i}"), json!(i)).await;
    }
    let (mut bob, _, _) = hello(server.addr(), "Bob").await;
    send(&mut bob, &ClientFrame::Join { room: "r".into(), since: None, history: Some(2) }).await;
    let ServerFrame::Joined { seq, .. } = next_frame(&mut bob).await else { panic!("joined") };
    assert_eq!(seq, 5);
    let recent: Vec<u64> = [next_frame(&mut bob).await, next_frame(&mut bob).await]
        .into_iter()
        .map(|f| if let ServerFrame::Message { seq, .. } = f { seq } else { panic!("{f:?}") })
        .collect();
    assert_eq!(recent, [4, 5]);
    assert_eq!(
        next_frame(&mut bob).await,
        ServerFrame::Replayed { room: "r".into(), to: 5, complete: true, oldest: 1 }
    );
    server.stop().await;
}
