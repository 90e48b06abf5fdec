//! Cluster mode: several nodes over one real `redis-server`, and every guarantee of one
//! node still true across them.

mod common;

use std::collections::{HashMap, HashSet};

use common::redis::Redis;
use common::*;
use serde_json::json;
use tether_server::Running;
use tether_shared::{ClientFrame, PROTOCOL_VERSION, ServerFrame, User};

/// A node of the cluster on `redis`, without publish limits.
async fn node(redis: &Redis) -> Running {
    let mut config = unthrottled();
    config.redis = Some(redis.url());
    server_with(config).await
}

async fn nodes(redis: &Redis, count: usize) -> Vec<Running> {
    let mut nodes = Vec::new();
    for _ in 0..count {
        nodes.push(node(redis).await);
    }
    nodes
}

/// Says hello with the resume token of an earlier session: the same user, on any node.
async fn hello_again(addr: std::net::SocketAddr, resume_token: &str) -> (Client, User) {
    let mut client = connect(addr).await;
    let frame = ClientFrame::Hello {
        v: PROTOCOL_VERSION,
        token: None,
        name: None,
        resume_token: Some(resume_token.into()),
    };
    send(&mut client, &frame).await;
    match next_frame(&mut client).await {
        ServerFrame::Welcome { user, .. } => (client, user),
        other => panic!("expected welcome, got {other:?}"),
    }
}

#[tokio::test]
async fn one_order_per_room_across_three_nodes() {
    let redis = Redis::start();
    let nodes = nodes(&redis, 3).await;
    let mut subscribers = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        subscribers.push(member(node.addr(), &format!("reader{i}"), "r").await);
    }
    const EACH: usize = 40;
    let mut publishers = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let mut client = member(node.addr(), &format!("writer{i}"), "r").await;
        publishers.push(tokio::spawn(async move {
            for n in 0..EACH {
                let id = format!("w{i}-{n}");
                send(
                    &mut client,
                    &ClientFrame::Publish { id, room: "r".into(), body: json!({"n": n}), priority: 0 },
                )
                .await;
            }
            let mut acked = 0;
            while acked < EACH {
                if let ServerFrame::Ack { .. } = next_frame(&mut client).await {
                    acked += 1;
                }
            }
            client
        }));
    }
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let mut seen_by_first: Option<Vec<(u64, String)>> = None;
    for subscriber in &mut subscribers {
        let mut got = Vec::new();
        while got.len() < 3 * EACH {
            let (seq, id, _) = next_message_in(subscriber, "r").await;
            got.push((seq, id));
        }
        let seqs: Vec<u64> = got.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, (1..=3 * EACH as u64).collect::<Vec<_>>(), "every seq once, in order");
        let ids: HashSet<&String> = got.iter().map(|(_, id)| id).collect();
        assert_eq!(ids.len(), 3 * EACH, "every message once");
        match &seen_by_first {
            None => seen_by_first = Some(got),
            Some(first) => assert_eq!(&got, first, "every node delivers the same order"),
        }
    }
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test]
async fn a_retry_on_another_node_gets_the_original_ack() {
    let redis = Redis::start();
    let nodes = nodes(&redis, 2).await;
    let mut watcher = member(nodes[1].addr(), "Watcher", "r").await;
    let (mut ada, _, token) = hello(nodes[0].addr(), "Ada").await;
    join(&mut ada, "r", None).await;
    let (seq, ts) = publish(&mut ada, "r", "m1", json!("once")).await;
    drop(ada);

    let (mut again, user) = hello_again(nodes[1].addr(), &token).await;
    assert_eq!(user.name, "Ada");
    join(&mut again, "r", None).await;
    assert_eq!(publish(&mut again, "r", "m1", json!("once")).await, (seq, ts), "the original ack");
    assert_eq!(publish(&mut again, "r", "m2", json!("next")).await.0, seq + 1);

    assert_eq!(next_message_in(&mut watcher, "r").await.1, "m1");
    assert_eq!(next_message_in(&mut watcher, "r").await.1, "m2", "m1 was not delivered twice");
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test]
async fn a_client_resumes_on_another_node_from_its_cursor() {
    let redis = Redis::start();
    let nodes = nodes(&redis, 2).await;
    let mut writer = member(nodes[0].addr(), "Writer", "r").await;
    for n in 1..=3 {
        publish(&mut writer, "r", &format!("m{n}"), json!(n)).await;
    }
    let mut reader = member(nodes[0].addr(), "Reader", "r").await;
    send(&mut reader, &ClientFrame::Join { room: "r".into(), since: Some(0), history: None }).await;
    let mut upto = 0;
    while upto < 3 {
        upto = next_message_in(&mut reader, "r").await.0;
    }
    drop(reader);
    for n in 4..=6 {
        publish(&mut writer, "r", &format!("m{n}"), json!(n)).await;
    }

    let (mut reader, _, _) = hello(nodes[1].addr(), "Reader").await;
    send(&mut reader, &ClientFrame::Join { room: "r".into(), since: Some(3), history: None }).await;
    let replayed: Vec<u64> = {
        let mut seqs = Vec::new();
        loop {
            match next_frame(&mut reader).await {
                ServerFrame::Message { seq, .. } => seqs.push(seq),
                ServerFrame::Replayed { to, complete, .. } => {
                    assert_eq!((to, complete), (6, true));
                    break seqs;
                }
                _ => {}
            }
        }
    };
    assert_eq!(replayed, vec![4, 5, 6], "exactly what was missed, from Redis");
    publish(&mut writer, "r", "m7", json!(7)).await;
    assert_eq!(next_message_in(&mut reader, "r").await.0, 7, "then live, from the other node");
    for node in nodes {
        node.stop().await;
    }
}

/// Reads presence frames until the names present (by user id) satisfy `wanted`.
async fn presence_until(
    client: &mut Client,
    room: &str,
    mut present: HashMap<String, String>,
    wanted: impl Fn(&HashSet<&str>) -> bool,
) -> HashMap<String, String> {
    while !wanted(&present.values().map(String::as_str).collect()) {
        if let ServerFrame::Presence { room: r, joined, left, .. } = next_frame(client).await
            && r == room
        {
            for user in joined {
                present.insert(user.id, user.name);
            }
            for id in left {
                present.remove(&id);
            }
        }
    }
    present
}

#[tokio::test]
async fn presence_spans_nodes_and_two_tabs_are_one_member() {
    let redis = Redis::start();
    let nodes = nodes(&redis, 2).await;
    let (mut ada, ada_user, _) = hello(nodes[0].addr(), "Ada").await;
    let (_, members) = join(&mut ada, "r", None).await;
    assert_eq!(members.len(), 1);

    let (mut bob, _, bob_token) = hello(nodes[1].addr(), "Bob").await;
    let (_, members) = join(&mut bob, "r", None).await;
    let names: HashSet<String> = members.into_iter().map(|user| user.name).collect();
    assert_eq!(names, HashSet::from(["Ada".to_owned(), "Bob".to_owned()]), "the snapshot lists both nodes");

    let present = HashMap::from([(ada_user.id.clone(), ada_user.name.clone())]);
    let present = presence_until(&mut ada, "r", present, |p| p.contains("Bob")).await;
    // Bob's second tab, on Ada's node: still one Bob.
    let (mut bob_again, _) = hello_again(nodes[0].addr(), &bob_token).await;
    join(&mut bob_again, "r", None).await;
    drop(bob);
    drop(bob_again);
    let present = presence_until(&mut ada, "r", present, |p| !p.contains("Bob")).await;
    assert_eq!(present, HashMap::from([(ada_user.id, ada_user.name)]));
    for node in nodes {
        node.stop().await;
    }
}
