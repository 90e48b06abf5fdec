//! Presence that scales and overload without casualties, with real clients on a real
//! server: coalesced diffs, count mode with pages, the way back to a list, and a
//! publisher that is slowed down rather than cut off.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use futures::SinkExt;
use serde_json::json;
use tether_shared::{ClientFrame, PresenceMode, ServerFrame};
use tokio_tungstenite::tungstenite::Message;

fn config(tick: Duration, limit: usize) -> tether_server::Config {
    let mut config = tether_server::Config::for_tests();
    config.presence_tick = tick;
    config.presence_limit = limit;
    config
}

/// Reads presence diffs into `known` until `done` holds; returns how many diffs it took.
async fn follow_presence(
    client: &mut Client,
    known: &mut BTreeSet<String>,
    done: impl Fn(&BTreeSet<String>) -> bool,
) -> usize {
    let mut diffs = 0;
    while !done(known) {
        let (joined, left) = until(client, |f| match f {
            ServerFrame::Presence { joined, left, .. } => Some((joined, left)),
            _ => None,
        })
        .await;
        diffs += 1;
        known.extend(joined.into_iter().map(|u| u.id));
        for id in left {
            known.remove(&id);
        }
    }
    diffs
}

#[tokio::test]
async fn joins_within_a_tick_reach_members_as_one_diff() {
    let tick = Duration::from_millis(400);
    let server = server_with(config(tick, 1_000)).await;
    let (mut observer, me, _) = hello(server.addr(), "Observer").await;
    join(&mut observer, "r", None).await;
    let mut known = BTreeSet::from([me.id.clone()]);

    let started = Instant::now();
    let mut joiners = Vec::new();
    let mut ids = BTreeSet::new();
    for i in 0..30 {
        let (mut client, user, _) = hello(server.addr(), &format!("j{i}")).await;
        join(&mut client, "r", None).await;
        ids.insert(user.id);
        joiners.push(client);
    }
    let diffs = follow_presence(&mut observer, &mut known, |known| ids.is_subset(known)).await;
    let took = started.elapsed();
    // The observer's own arrival, then at most one diff per tick however slowly this
    // machine ran the joins: a diff per join would blow the bound.
    let bound = 3 + (took.as_millis() / tick.as_millis()) as usize;
    println!("30 joins reached the observer in {took:?} as {diffs} diffs (bound {bound})");
    assert!(diffs <= bound, "{diffs} diffs for 30 joins in {took:?}; at most {bound} expected");
    assert_eq!(known.len(), 31);

    // Leaving is coalesced the same way, and the diff says who is gone.
    let started = Instant::now();
    for client in joiners.iter_mut() {
        hang_up(client).await;
    }
    let diffs = follow_presence(&mut observer, &mut known, |known| known.len() == 1).await;
    let took = started.elapsed();
    let bound = 2 + (took.as_millis() / tick.as_millis()) as usize;
    assert!(diffs <= bound, "{diffs} diffs for 30 leaves in {took:?}; at most {bound} expected");
    assert_eq!(known, BTreeSet::from([me.id]));
    server.stop().await;
}

#[tokio::test]
async fn a_big_room_tells_counts_pages_its_members_and_lists_again_when_small() {
    let server = server_with(config(Duration::from_millis(50), 4)).await;
    let (mut observer, me, _) = hello(server.addr(), "Observer").await;
    join(&mut observer, "big", None).await;
    let mut others = Vec::new();
    let mut everyone = BTreeSet::from([me.id.clone()]);
    for i in 0..5 {
        let (mut client, user, _) = hello(server.addr(), &format!("m{i}")).await;
        join(&mut client, "big", None).await;
        everyone.insert(user.id);
        others.push(client);
    }
    // Six users is above the limit of four: the observer is switched to counts.
    let count = until(&mut observer, |f| match f {
        ServerFrame::PresenceCount { count, .. } if count == 6 => Some(count),
        _ => None,
    })
    .await;
    assert_eq!(count, 6);

    // A late joiner gets a bounded answer: the count, no list.
    let (mut late, late_user, _) = hello(server.addr(), "Late").await;
    send(&mut late, &ClientFrame::Join { room: "big".into(), since: None, history: None }).await;
    let (members, count, mode) = until(&mut late, |f| match f {
        ServerFrame::Joined { members, count, presence, .. } => Some((members, count, presence)),
        _ => None,
    })
    .await;
    assert_eq!((members.len(), count, mode), (0, 7, PresenceMode::Count));
    everyone.insert(late_user.id.clone());

    // Pages walk everyone once, in id order.
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        send(&mut late, &ClientFrame::Members { room: "big".into(), after: after.clone(), limit: Some(3) })
            .await;
        let (members, next, count) = until(&mut late, |f| match f {
            ServerFrame::Members { members, next, count, .. } => Some((members, next, count)),
            _ => None,
        })
        .await;
        assert_eq!(count, 7);
        assert!(members.len() <= 3);
        listed.extend(members.into_iter().map(|u| u.id));
        match next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted, "id order");
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), everyone);

    // Down to two users (half the limit): everyone gets the whole list again.
    for client in others.iter_mut() {
        hang_up(client).await;
    }
    let list = until(&mut observer, |f| match f {
        ServerFrame::Presence { joined, snapshot: true, .. } => Some(joined),
        _ => None,
    })
    .await;
    let list: BTreeSet<String> = list.into_iter().map(|u| u.id).collect();
    assert!(list.contains(&me.id) && list.contains(&late_user.id), "{list:?}");
    // The list may come while the last leaves are still arriving; diffs then finish it.
    let mut known = list;
    follow_presence(&mut observer, &mut known, |known| known.len() == 2).await;
    assert_eq!(known, BTreeSet::from([me.id, late_user.id]));
    server.stop().await;
}

#[tokio::test]
async fn members_of_a_room_not_joined_is_an_error() {
    let server = server().await;
    let (mut alice, _, _) = hello(server.addr(), "Alice").await;
    send(&mut alice, &ClientFrame::Members { room: "elsewhere".into(), after: None, limit: None }).await;
    let code = until(&mut alice, |f| match f {
        ServerFrame::Error { code, about, .. } => Some((code, about)),
        _ => None,
    })
    .await;
    assert_eq!(code, (tether_shared::ErrorCode::NotJoined, Some("elsewhere".into())));
    server.stop().await;
}

#[tokio::test]
async fn a_publisher_is_slowed_down_never_cut_off_by_its_own_acks_and_echoes() {
    // A queue of four frames: any batch of three publishes yields six acks and echoes.
    let mut config = tether_server::Config::for_tests();
    config.send_queue = 4;
    config.publish_rate = 100_000;
    config.publish_burst = 100_000;
    let server = server_with(config).await;
    let mut publisher = member(server.addr(), "Firehose", "r").await;
    // Two thousand publishes in one write, read only afterwards.
    within("writing the publishes", async {
        for i in 0..2_000 {
            let frame =
                ClientFrame::Publish { id: format!("m{i}"), room: "r".into(), body: json!(i), priority: 0 };
            publisher.feed(Message::text(frame.encode())).await.unwrap();
        }
        publisher.flush().await.unwrap();
    })
    .await;
    let (mut acks, mut echoes) = (0, 0);
    while acks < 2_000 || echoes < 2_000 {
        match next_message(&mut publisher).await {
            Some(Message::Text(text)) => match ServerFrame::decode(&text).unwrap() {
                ServerFrame::Ack { seq, .. } => {
                    acks += 1;
                    assert_eq!(seq, acks, "acks in order");
                }
                ServerFrame::Message { .. } => echoes += 1,
                ServerFrame::Presence { .. } => {}
                other => panic!("unexpected {other:?}"),
            },
            other => panic!("the publisher was cut off: {other:?}"),
        }
    }
    server.stop().await;
}
