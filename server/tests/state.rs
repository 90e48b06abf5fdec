//! Volatile state (`state` frames): delivered to the other members, never stored or
//! replayed, coalesced for a member that falls behind, and rate limited on its own.

mod common;

use common::*;
use serde_json::json;
use tether_shared::{ClientFrame, ErrorCode, ServerFrame};

fn state(room: &str, key: &str, value: serde_json::Value) -> ClientFrame {
    ClientFrame::State { room: room.into(), key: key.into(), value }
}

/// Sends a ping and waits for its pong: everything sent before has been handled.
async fn settle(client: &mut Client, nonce: u64) {
    send(client, &ClientFrame::Ping { nonce }).await;
    until(client, |frame| match frame {
        ServerFrame::State { .. } => panic!("a sender never gets its own state back"),
        ServerFrame::Pong { nonce: n } if n == nonce => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test]
async fn state_reaches_the_other_members_and_is_never_stored_or_replayed() {
    let server = server().await;
    let mut alice = member(server.addr(), "Alice", "board").await;
    let mut bob = member(server.addr(), "Bob", "board").await;
    send(&mut alice, &state("board", "cursor", json!({"x": 10, "y": 20}))).await;
    let (from, key, value) = until(&mut bob, |frame| match frame {
        ServerFrame::State { room, from, key, value } if room == "board" => Some((from, key, value)),
        _ => None,
    })
    .await;
    assert_eq!((from.name.as_str(), key.as_str(), value), ("Alice", "cursor", json!({"x": 10, "y": 20})));
    settle(&mut alice, 1).await;
    // Nothing was numbered: a newcomer resuming from seq 0 is told the room is empty.
    let (mut carol, _, _) = hello(server.addr(), "Carol").await;
    send(&mut carol, &ClientFrame::Join { room: "board".into(), since: Some(0), history: None }).await;
    let head = until(&mut carol, |frame| match frame {
        ServerFrame::Joined { seq, .. } => Some(seq),
        _ => None,
    })
    .await;
    assert_eq!(head, 0, "state takes no seq");
    let replayed_to = until(&mut carol, |frame| match frame {
        ServerFrame::State { .. } | ServerFrame::Message { .. } => panic!("replayed: {frame:?}"),
        ServerFrame::Replayed { to, .. } => Some(to),
        _ => None,
    })
    .await;
    assert_eq!(replayed_to, 0);
}

#[tokio::test]
async fn bad_state_gets_a_typed_error() {
    let server = server().await;
    let mut alice = member(server.addr(), "Alice", "board").await;
    let cases = [
        (state("elsewhere", "cursor", json!(1)), ErrorCode::NotJoined),
        (state("board", "", json!(1)), ErrorCode::InvalidFrame),
        (state("board", "cursor", json!("x".repeat(4096))), ErrorCode::InvalidFrame),
    ];
    for (frame, wanted) in cases {
        send(&mut alice, &frame).await;
        let code = until(&mut alice, |frame| match frame {
            ServerFrame::Error { code, .. } => Some(code),
            _ => None,
        })
        .await;
        assert_eq!(code, wanted);
    }
}

#[tokio::test]
async fn state_has_its_own_rate_limit() {
    let server = server().await;
    let mut alice = member(server.addr(), "Alice", "board").await;
    for i in 0..40 {
        send(&mut alice, &state("board", "cursor", json!(i))).await;
    }
    let limited = until(&mut alice, |frame| match frame {
        ServerFrame::Error { code: ErrorCode::RateLimited, about, .. } => Some(about),
        _ => None,
    })
    .await;
    assert_eq!(limited.as_deref(), Some("board"));
    // Publishes are not touched by it.
    publish(&mut alice, "board", "m1", json!("still fine")).await;
}

#[tokio::test]
async fn a_member_that_falls_behind_gets_the_latest_value_and_is_not_cut_off() {
    let mut config = unthrottled();
    config.state_rate = 1_000_000;
    // Bob says nothing until Alice is done, which on a loaded machine can take longer
    // than the idle timeout: this test is about coalescing, not about silence.
    config.idle_timeout = std::time::Duration::from_secs(300);
    let server = server_with(config).await;
    let mut alice = member(server.addr(), "Alice", "board").await;
    let mut bob = member(server.addr(), "Bob", "board").await;
    // Bob reads nothing while Alice moves her cursor 15,000 times with 1.5 KB values:
    // far more than the socket buffers hold, and far more than Bob's queue of 1,024.
    const MOVES: u64 = 15_000;
    let pad = "p".repeat(1_500);
    for i in 0..MOVES {
        send(&mut alice, &state("board", "cursor", json!({"i": i, "pad": pad}))).await;
    }
    settle(&mut alice, 1).await;
    let mut received = 0u64;
    let last = until(&mut bob, |frame| match frame {
        ServerFrame::State { value, .. } => {
            received += 1;
            let i = value["i"].as_u64().unwrap();
            (i == MOVES - 1).then_some(i)
        }
        _ => None,
    })
    .await;
    assert_eq!(last, MOVES - 1, "the final position always arrives");
    assert!(received < MOVES, "coalesced: {received} of {MOVES} values written");
    // Still connected, not closed as a slow consumer.
    send(&mut bob, &ClientFrame::Ping { nonce: 9 }).await;
    until(&mut bob, |frame| matches!(frame, ServerFrame::Pong { nonce: 9 }).then_some(())).await;
    let (_, _, metrics) = http_get(server.addr(), "/metrics").await;
    assert!(metrics.contains("tether_slow_consumer_drops_total 0"), "no slow consumer");
    println!("coalescing: Bob was written {received} of {MOVES} cursor values");
}
